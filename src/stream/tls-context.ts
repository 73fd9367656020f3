// TLS contexts: an SSL_CTX built from PEM contents (certificate chain, key, CAs), OpenSSL's
// secure defaults with TLS 1.2 as the floor, renegotiation refused, ALPN and SNI answered
// by callbacks, and reload: a server context swaps in a new SSL_CTX for new handshakes
// while open connections keep theirs (SSL_new takes a reference on its context).
//
// Callbacks are JSCallbacks, one per thread: OpenSSL calls them synchronously from inside
// SSL_do_handshake, which this thread's reactor called, so they run on the right thread.

import { readFileSync } from "node:fs";
import { JSCallback, FFIType as T, toArrayBuffer, CString, type Pointer } from "bun:ffi";
import {
  cString, openssl, sslError, SSL_CTRL_EXTRA_CHAIN_CERT, SSL_CTRL_MODE, SSL_CTRL_SET_MAX_PROTO_VERSION, SSL_CTRL_SET_MIN_PROTO_VERSION,
  SSL_CTRL_SET_TLSEXT_SERVERNAME_ARG, SSL_CTRL_SET_TLSEXT_SERVERNAME_CB, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER, SSL_MODE_RELEASE_BUFFERS,
  SSL_OP_CIPHER_SERVER_PREFERENCE, SSL_OP_NO_COMPRESSION, SSL_OP_NO_RENEGOTIATION, SSL_TLSEXT_ERR_ALERT_FATAL, SSL_TLSEXT_ERR_NOACK,
  SSL_TLSEXT_ERR_OK, SSL_VERIFY_FAIL_IF_NO_PEER_CERT, SSL_VERIFY_NONE, SSL_VERIFY_PEER, TLS1_2_VERSION, TLS1_3_VERSION,
} from "../../ffi/openssl.ts";

/** PEM contents: a string, bytes, or a Bun.file() (read when the context is built). */
export type PemSource = string | Uint8Array | ArrayBuffer | { text(): Promise<string> } | Blob;
/** What the library's `tls` option resolves to: PEM bytes, not paths. */
export type PemInput = string | Uint8Array;

export type TlsVersion = "1.2" | "1.3";
export const TLS_VERSIONS: readonly TlsVersion[] = ["1.2", "1.3"];

export interface TlsServerOptions {
  /** Certificate chain (PEM, leaf first). */
  cert: PemInput;
  key: PemInput;
  /** CAs that client certificates must chain to; when set, a client certificate is required. */
  ca?: PemInput;
  /** Extra names: SNI host name -> its own certificate and key. */
  sni?: Record<string, { cert: PemInput; key: PemInput }>;
  /** Lowest protocol version accepted (default 1.2). */
  minVersion?: TlsVersion;
  /** OpenSSL cipher list for TLS 1.2 (TLS 1.3 suites keep OpenSSL's defaults). */
  ciphers?: string;
  /** ALPN protocols the server speaks, in preference order (e.g. ["http/1.1"]). */
  alpn?: readonly string[];
}

/** Where the contexts' settings are checked: bad options are RangeErrors before OpenSSL runs. */
export function checkServerOptions(o: TlsServerOptions): void {
  if (o.cert === undefined || o.cert === null || o.key === undefined || o.key === null) throw new RangeError("tls: cert and key are both required");
  if (o.minVersion !== undefined && !TLS_VERSIONS.includes(o.minVersion)) throw new RangeError(`tls: minVersion must be one of ${TLS_VERSIONS.join(", ")}, got ${String(o.minVersion)}`);
}

const utf8 = new TextEncoder();
function pemBytes(p: PemInput): Uint8Array {
  return typeof p === "string" ? utf8.encode(p) : p;
}

/** A read-only memory BIO over `bytes` (kept alive by the caller until freed). */
function withMemBio<R>(bytes: Uint8Array, what: string, f: (bio: Pointer) => R): R {
  const { crypto } = openssl();
  if (bytes.length === 0) throw new Error(`${what}: empty`);
  const bio = crypto.BIO_new_mem_buf(bytes, bytes.length) as Pointer | null;
  if (!bio) throw sslError("BIO_new_mem_buf", what);
  try {
    return f(bio);
  } finally {
    crypto.BIO_free(bio);
  }
}

/** Every certificate in a PEM text, in order (X509 pointers the caller frees). */
function readCerts(pem: PemInput, what: string): Pointer[] {
  const { crypto } = openssl();
  const bytes = pemBytes(pem);
  return withMemBio(bytes, what, (bio) => {
    const certs: Pointer[] = [];
    for (;;) {
      const x = crypto.PEM_read_bio_X509(bio, null, null, null) as Pointer | null;
      if (!x) break;
      certs.push(x);
    }
    // Reading stops with "no start line" at the end of the text: expected once some were read.
    const err = sslError("PEM_read_bio_X509", what);
    if (certs.length === 0) throw err;
    return certs;
  });
}

function readKey(pem: PemInput, what: string): Pointer {
  const { crypto } = openssl();
  return withMemBio(pemBytes(pem), what, (bio) => {
    const k = crypto.PEM_read_bio_PrivateKey(bio, null, null, null) as Pointer | null;
    if (!k) throw sslError("PEM_read_bio_PrivateKey", what);
    return k;
  });
}

/** OpenSSL's defaults, the version floor, no renegotiation, no compression. */
function baseContext(server: boolean, minVersion: TlsVersion, ciphers: string | undefined): Pointer {
  const { ssl } = openssl();
  const ctx = ssl.SSL_CTX_new(server ? ssl.TLS_server_method() : ssl.TLS_client_method()) as Pointer | null;
  if (!ctx) throw sslError("SSL_CTX_new");
  try {
    ssl.SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | (server ? SSL_OP_CIPHER_SERVER_PREFERENCE : 0n));
    const min = minVersion === "1.3" ? TLS1_3_VERSION : TLS1_2_VERSION;
    if (ssl.SSL_CTX_ctrl(ctx, SSL_CTRL_SET_MIN_PROTO_VERSION, min, null) !== 1) throw sslError("SSL_CTX_set_min_proto_version");
    if (ssl.SSL_CTX_ctrl(ctx, SSL_CTRL_SET_MAX_PROTO_VERSION, TLS1_3_VERSION, null) !== 1) throw sslError("SSL_CTX_set_max_proto_version");
    // Memory BIOs never refuse a write: SSL_write takes everything at once. RELEASE_BUFFERS
    // frees an idle connection's record buffers (memory per idle connection).
    ssl.SSL_CTX_ctrl(ctx, SSL_CTRL_MODE, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS, null);
    if (ciphers !== undefined && ssl.SSL_CTX_set_cipher_list(ctx, cString(ciphers)) !== 1) throw sslError("SSL_CTX_set_cipher_list", `--tls-ciphers ${ciphers}`);
    return ctx;
  } catch (e) {
    ssl.SSL_CTX_free(ctx);
    throw e;
  }
}

function useCertAndKey(ctx: Pointer, certPem: PemInput, keyPem: PemInput, what: string): void {
  const { ssl, crypto } = openssl();
  const certs = readCerts(certPem, `${what} certificate`);
  let i = 0;
  try {
    if (ssl.SSL_CTX_use_certificate(ctx, certs[0]!) !== 1) throw sslError("SSL_CTX_use_certificate", what);
    // The chain: SSL_CTX_add_extra_chain_cert takes ownership of each certificate.
    for (i = 1; i < certs.length; i++) {
      if (ssl.SSL_CTX_ctrl(ctx, SSL_CTRL_EXTRA_CHAIN_CERT, 0, certs[i]!) !== 1) throw sslError("SSL_CTX_add_extra_chain_cert", what);
    }
  } finally {
    crypto.X509_free(certs[0]!); // use_certificate took its own reference
    for (let j = i + 1; j < certs.length; j++) crypto.X509_free(certs[j]!);
  }
  const key = readKey(keyPem, `${what} key`);
  try {
    if (ssl.SSL_CTX_use_PrivateKey(ctx, key) !== 1) throw sslError("SSL_CTX_use_PrivateKey", what);
  } finally {
    crypto.EVP_PKEY_free(key);
  }
  if (ssl.SSL_CTX_check_private_key(ctx) !== 1) throw sslError("SSL_CTX_use_PrivateKey", what);
}

function trustCAs(ctx: Pointer, caPem: PemInput, what: string): void {
  const { ssl, crypto } = openssl();
  const store = ssl.SSL_CTX_get_cert_store(ctx);
  for (const x of readCerts(caPem, what)) {
    const ok = crypto.X509_STORE_add_cert(store, x);
    crypto.X509_free(x);
    if (ok !== 1) throw sslError("X509_STORE_add_cert", what);
  }
}

// --- callbacks (one per thread) -----------------------------------------------------------

/** Server contexts by the id passed to OpenSSL as the callback argument. */
const servers = new Map<number, TlsServerContext>();
let nextServerId = 1;

let sniCallback: JSCallback | null = null;
let alpnCallback: JSCallback | null = null;

function sni(): JSCallback {
  // int cb(SSL *ssl, int *alert, void *arg): switch to the named certificate's context.
  return (sniCallback ??= new JSCallback(
    (sslPtr: Pointer, _alert: Pointer, arg: number) => {
      const server = servers.get(arg);
      if (server === undefined) return SSL_TLSEXT_ERR_NOACK;
      const { ssl } = openssl();
      const p = ssl.SSL_get_servername(sslPtr, 0);
      if (!p) return SSL_TLSEXT_ERR_NOACK;
      const name = new CString(p).toString().toLowerCase();
      const ctx = server.contextFor(name);
      if (ctx === 0) return SSL_TLSEXT_ERR_NOACK; // the default certificate answers
      ssl.SSL_set_SSL_CTX(sslPtr, ctx);
      return SSL_TLSEXT_ERR_OK;
    },
    { args: [T.ptr, T.ptr, T.ptr], returns: T.i32 },
  ));
}

function alpn(): JSCallback {
  // int cb(SSL *, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
  //        unsigned int inlen, void *arg): pick the first of our protocols the client offers.
  // *out points into `in` (the client's list), which OpenSSL keeps for the handshake.
  return (alpnCallback ??= new JSCallback(
    (_ssl: Pointer, out: Pointer, outLen: Pointer, inPtr: Pointer, inLen: number, arg: number) => {
      const server = servers.get(arg);
      if (server === undefined || !inPtr || inLen === 0) return SSL_TLSEXT_ERR_NOACK;
      const offered = new Uint8Array(toArrayBuffer(inPtr, 0, inLen));
      for (const want of server.alpn) {
        for (let i = 0; i < inLen; ) {
          const n = offered[i]!;
          if (n === want.length && offered.subarray(i + 1, i + 1 + n).every((b, j) => b === want[j])) {
            new DataView(toArrayBuffer(out, 0, 8)).setBigUint64(0, BigInt(inPtr + i + 1), true);
            new Uint8Array(toArrayBuffer(outLen, 0, 1))[0] = n;
            return SSL_TLSEXT_ERR_OK;
          }
          i += 1 + n;
        }
      }
      // RFC 7301 §3.2: no protocol in common is a fatal no_application_protocol alert.
      return SSL_TLSEXT_ERR_ALERT_FATAL;
    },
    { args: [T.ptr, T.ptr, T.ptr, T.ptr, T.u32, T.ptr], returns: T.i32 },
  ));
}

// --- server -------------------------------------------------------------------------------

/**
 * The contexts of one TLS listener: the default certificate, one per SNI name, reloadable.
 * `current` is what SSL_new uses for the next handshake.
 */
export class TlsServerContext implements Disposable {
  readonly id = nextServerId++;
  current: Pointer | 0 = 0;
  private byName = new Map<string, Pointer>();
  readonly alpn: Uint8Array[];
  private options: TlsServerOptions;

  constructor(options: TlsServerOptions) {
    checkServerOptions(options);
    this.options = options;
    this.alpn = (options.alpn ?? []).map((p) => utf8.encode(p));
    const built = this.build(options);
    this.current = built.ctx;
    this.byName = built.byName;
    servers.set(this.id, this);
  }

  /** The SSL_CTX for an SNI name, or 0 (the default context). Exact names, then "*.suffix". */
  contextFor(name: string): Pointer | 0 {
    const exact = this.byName.get(name);
    if (exact !== undefined) return exact;
    const dot = name.indexOf(".");
    return dot > 0 ? this.byName.get(`*${name.slice(dot)}`) ?? 0 : 0;
  }

  private build(o: TlsServerOptions): { ctx: Pointer; byName: Map<string, Pointer> } {
    const made: Pointer[] = [];
    try {
      const one = (cert: PemInput, key: PemInput, what: string) => {
        const ctx = baseContext(true, o.minVersion ?? "1.2", o.ciphers);
        made.push(ctx);
        useCertAndKey(ctx, cert, key, what);
        this.configure(ctx, o);
        return ctx;
      };
      const ctx = one(o.cert, o.key, "tls");
      const byName = new Map<string, Pointer>();
      for (const [name, pair] of Object.entries(o.sni ?? {})) byName.set(name.toLowerCase(), one(pair.cert, pair.key, `SNI ${name}`));
      return { ctx, byName };
    } catch (e) {
      for (const c of made) openssl().ssl.SSL_CTX_free(c);
      throw e;
    }
  }

  private configure(ctx: Pointer, o: TlsServerOptions): void {
    const { ssl } = openssl();
    const arg = this.id;
    if (o.sni !== undefined && Object.keys(o.sni).length > 0) {
      ssl.SSL_CTX_callback_ctrl(ctx, SSL_CTRL_SET_TLSEXT_SERVERNAME_CB, sni().ptr);
      ssl.SSL_CTX_ctrl(ctx, SSL_CTRL_SET_TLSEXT_SERVERNAME_ARG, 0, arg as Pointer);
    }
    if (this.alpn.length > 0) ssl.SSL_CTX_set_alpn_select_cb(ctx, alpn().ptr, arg as Pointer);
    if (o.ca !== undefined) {
      trustCAs(ctx, o.ca, "tls client CA");
      ssl.SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, null);
    }
  }

  /**
   * Builds contexts from new PEM contents and, if that works, uses them for every new
   * handshake; open connections keep the context they started with (each SSL holds a
   * reference). On error the old contexts stay and the error is thrown.
   */
  reload(options: Partial<TlsServerOptions>): void {
    const next = { ...this.options, ...options };
    checkServerOptions(next);
    const built = this.build(next);
    this.free();
    this.options = next;
    this.current = built.ctx;
    this.byName = built.byName;
  }

  private free(): void {
    const { ssl } = openssl();
    if (this.current) ssl.SSL_CTX_free(this.current);
    for (const c of this.byName.values()) ssl.SSL_CTX_free(c);
    this.current = 0;
    this.byName.clear();
  }

  [Symbol.dispose](): void {
    this.free();
    servers.delete(this.id);
  }
}

// --- client -------------------------------------------------------------------------------

export interface TlsClientOptions {
  /** CAs to trust (PEM); default: the system's. */
  ca?: PemInput;
  /** Skip certificate verification (testing only). */
  insecure?: boolean;
  /** The name to send as SNI and to check the certificate against (default: the host). */
  serverName?: string;
  /** ALPN protocols to offer. */
  alpn?: readonly string[];
  minVersion?: TlsVersion;
}

/** A client SSL_CTX: verifies the server against `ca` (or the system store) unless insecure. */
export function createClientContext(o: TlsClientOptions): Pointer {
  const { ssl } = openssl();
  const ctx = baseContext(false, o.minVersion ?? "1.2", undefined);
  try {
    if (o.insecure) ssl.SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, null);
    else {
      if (o.ca !== undefined) trustCAs(ctx, o.ca, "tls CA");
      else if (ssl.SSL_CTX_set_default_verify_paths(ctx) !== 1) throw sslError("SSL_CTX_set_default_verify_paths");
      ssl.SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, null);
    }
    return ctx;
  } catch (e) {
    ssl.SSL_CTX_free(ctx);
    throw e;
  }
}

/** ALPN wire format: each name prefixed by its length. */
export function alpnWire(protocols: readonly string[]): Uint8Array {
  const parts = protocols.map((p) => utf8.encode(p));
  const out = new Uint8Array(new ArrayBuffer(parts.reduce((n, p) => n + 1 + p.length, 0)));
  let at = 0;
  for (const p of parts) {
    out[at++] = p.length;
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * Resolves a library `tls` option's PEM source to bytes: a string or bytes as they are, a
 * Bun.file() read now (synchronously: listen() and serve() return a running server).
 */
export function readPem(source: PemSource, what: string): PemInput {
  if (typeof source === "string" || source instanceof Uint8Array) return source;
  if (source instanceof ArrayBuffer) return new Uint8Array(source);
  const name = (source as { name?: unknown }).name;
  if (typeof name === "string") return readFileSync(name);
  throw new TypeError(`tls.${what}: expected PEM text, bytes or Bun.file(), got ${Object.prototype.toString.call(source)}`);
}
