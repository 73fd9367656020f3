// Declarative bun:ffi bindings to OpenSSL 3 (libssl.so.3 + libcrypto.so.3, Debian's
// `libssl3`): contexts, certificate and key loading, SSL objects over memory BIOs, the
// handshake/read/write/shutdown calls, ALPN and SNI callbacks, and the error queue. Nothing
// here but symbol specs, constants and the one error translation point (sslError); the TLS
// stream (src/stream/tls-stream.ts) and context (src/stream/tls-context.ts) use them.
//
// Many OpenSSL "functions" are macros over SSL_CTX_ctrl / SSL_ctrl / BIO_ctrl: those are
// bound once and the macro's control numbers are listed below (from ssl.h, bio.h, tls1.h).
// Return types are i32 or i64_fast: long and size_t returns would otherwise be BigInts.

import { dlopen, FFIType as T, type FFIFunction } from "bun:ffi";

const ssl = {
  TLS_server_method: { args: [], returns: "ptr" },
  TLS_client_method: { args: [], returns: "ptr" },
  SSL_CTX_new: { args: [T.ptr], returns: "ptr" },
  SSL_CTX_free: { args: [T.ptr], returns: T.void },
  SSL_CTX_set_options: { args: [T.ptr, T.u64], returns: T.u64 },
  SSL_CTX_ctrl: { args: [T.ptr, T.i32, T.i64, T.ptr], returns: T.i64_fast },
  SSL_CTX_callback_ctrl: { args: [T.ptr, T.i32, T.ptr], returns: T.i64_fast },
  SSL_CTX_use_certificate: { args: [T.ptr, T.ptr], returns: T.i32 },
  SSL_CTX_use_PrivateKey: { args: [T.ptr, T.ptr], returns: T.i32 },
  SSL_CTX_check_private_key: { args: [T.ptr], returns: T.i32 },
  SSL_CTX_set_cipher_list: { args: [T.ptr, T.ptr], returns: T.i32 },
  SSL_CTX_set_alpn_select_cb: { args: [T.ptr, T.ptr, T.ptr], returns: T.void },
  SSL_CTX_set_verify: { args: [T.ptr, T.i32, T.ptr], returns: T.void },
  SSL_CTX_get_cert_store: { args: [T.ptr], returns: "ptr" },
  SSL_CTX_set_default_verify_paths: { args: [T.ptr], returns: T.i32 },
  SSL_new: { args: [T.ptr], returns: "ptr" },
  SSL_free: { args: [T.ptr], returns: T.void },
  SSL_set_bio: { args: [T.ptr, T.ptr, T.ptr], returns: T.void },
  SSL_set_accept_state: { args: [T.ptr], returns: T.void },
  SSL_set_connect_state: { args: [T.ptr], returns: T.void },
  SSL_do_handshake: { args: [T.ptr], returns: T.i32 },
  SSL_read: { args: [T.ptr, T.ptr, T.i32], returns: T.i32 },
  SSL_write: { args: [T.ptr, T.ptr, T.i32], returns: T.i32 },
  SSL_shutdown: { args: [T.ptr], returns: T.i32 },
  SSL_get_error: { args: [T.ptr, T.i32], returns: T.i32 },
  SSL_has_pending: { args: [T.ptr], returns: T.i32 },
  SSL_ctrl: { args: [T.ptr, T.i32, T.i64, T.ptr], returns: T.i64_fast },
  SSL_get_servername: { args: [T.ptr, T.i32], returns: "ptr" },
  SSL_set_SSL_CTX: { args: [T.ptr, T.ptr], returns: "ptr" },
  SSL_set_alpn_protos: { args: [T.ptr, T.ptr, T.u32], returns: T.i32 },
  SSL_get0_alpn_selected: { args: [T.ptr, T.ptr, T.ptr], returns: T.void },
  SSL_get1_peer_certificate: { args: [T.ptr], returns: "ptr" },
  SSL_get_verify_result: { args: [T.ptr], returns: T.i64_fast },
  SSL_get_version: { args: [T.ptr], returns: T.cstring },
  SSL_set1_host: { args: [T.ptr, T.ptr], returns: T.i32 },
} as const satisfies Record<string, FFIFunction>;

const crypto = {
  BIO_s_mem: { args: [], returns: "ptr" },
  BIO_new: { args: [T.ptr], returns: "ptr" },
  BIO_free: { args: [T.ptr], returns: T.i32 },
  BIO_new_mem_buf: { args: [T.ptr, T.i32], returns: "ptr" },
  BIO_read: { args: [T.ptr, T.ptr, T.i32], returns: T.i32 },
  BIO_write: { args: [T.ptr, T.ptr, T.i32], returns: T.i32 },
  BIO_ctrl_pending: { args: [T.ptr], returns: T.i64_fast },
  BIO_ctrl: { args: [T.ptr, T.i32, T.i64, T.ptr], returns: T.i64_fast },
  // Error codes are unsigned long; OpenSSL 3 packs them in 32 bits, so i64_fast is a number.
  ERR_get_error: { args: [], returns: T.i64_fast },
  ERR_clear_error: { args: [], returns: T.void },
  ERR_error_string_n: { args: [T.u64, T.ptr, T.u64], returns: T.void },
  ERR_reason_error_string: { args: [T.u64], returns: T.cstring },
  PEM_read_bio_X509: { args: [T.ptr, T.ptr, T.ptr, T.ptr], returns: "ptr" },
  PEM_read_bio_PrivateKey: { args: [T.ptr, T.ptr, T.ptr, T.ptr], returns: "ptr" },
  X509_free: { args: [T.ptr], returns: T.void },
  EVP_PKEY_free: { args: [T.ptr], returns: T.void },
  X509_get_subject_name: { args: [T.ptr], returns: "ptr" },
  X509_NAME_oneline: { args: [T.ptr, T.ptr, T.i32], returns: "ptr" },
  X509_STORE_add_cert: { args: [T.ptr, T.ptr], returns: T.i32 },
} as const satisfies Record<string, FFIFunction>;

/** Why OpenSSL could not be loaded, or null when it was (the TLS features need it). */
export let opensslMissing: string | null = null;

function load() {
  try {
    return {
      ssl: dlopen("libssl.so.3", ssl).symbols,
      crypto: dlopen("libcrypto.so.3", crypto).symbols,
    };
  } catch (e) {
    opensslMissing = `OpenSSL 3 is not installed (libssl.so.3: ${(e as Error).message}); on Debian/Ubuntu: apt-get install libssl3`;
    return null;
  }
}

const libs = load();

/** The libssl and libcrypto entry points; throws a clear error when OpenSSL 3 is missing. */
export function openssl(): NonNullable<typeof libs> {
  if (libs === null) throw new Error(opensslMissing!);
  return libs;
}

// --- constants (ssl.h, tls1.h, bio.h, x509_vfy.h) ----------------------------------------

export const TLS1_VERSION = 0x0301;
export const TLS1_1_VERSION = 0x0302;
export const TLS1_2_VERSION = 0x0303;
export const TLS1_3_VERSION = 0x0304;

export const SSL_CTRL_EXTRA_CHAIN_CERT = 14;
export const SSL_CTRL_MODE = 33;
export const SSL_CTRL_SET_TLSEXT_SERVERNAME_CB = 53;
export const SSL_CTRL_SET_TLSEXT_SERVERNAME_ARG = 54;
export const SSL_CTRL_SET_TLSEXT_HOSTNAME = 55;
export const SSL_CTRL_SET_MIN_PROTO_VERSION = 123;
export const SSL_CTRL_SET_MAX_PROTO_VERSION = 124;
export const TLSEXT_NAMETYPE_host_name = 0;

export const SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER = 0x2;
export const SSL_MODE_RELEASE_BUFFERS = 0x10;

export const SSL_OP_NO_COMPRESSION = 1n << 17n;
export const SSL_OP_CIPHER_SERVER_PREFERENCE = 1n << 22n;
export const SSL_OP_NO_RENEGOTIATION = 1n << 30n;

export const SSL_ERROR_NONE = 0;
export const SSL_ERROR_SSL = 1;
export const SSL_ERROR_WANT_READ = 2;
export const SSL_ERROR_WANT_WRITE = 3;
export const SSL_ERROR_SYSCALL = 5;
export const SSL_ERROR_ZERO_RETURN = 6;

export const SSL_VERIFY_NONE = 0;
export const SSL_VERIFY_PEER = 1;
export const SSL_VERIFY_FAIL_IF_NO_PEER_CERT = 2;

export const SSL_TLSEXT_ERR_OK = 0;
export const SSL_TLSEXT_ERR_ALERT_FATAL = 2;
export const SSL_TLSEXT_ERR_NOACK = 3;

export const X509_V_OK = 0;

// --- the error queue: the one translation point -------------------------------------------

const errText = new Uint8Array(new ArrayBuffer(256));

/** OpenSSL's reason text for an error code ("key values mismatch"), or its full string. */
export function errorReason(code: number): string {
  const c = openssl().crypto;
  const reason = c.ERR_reason_error_string(code);
  if (reason) return String(reason);
  c.ERR_error_string_n(code, errText, errText.length);
  const end = errText.indexOf(0);
  return new TextDecoder().decode(errText.subarray(0, end < 0 ? errText.length : end));
}

/**
 * Empties this thread's error queue and returns the first (oldest) reason, or null. Called
 * after every failing call, so that one connection's error never shows up as another's.
 */
export function takeError(): string | null {
  const c = openssl().crypto;
  let first: string | null = null;
  for (;;) {
    const code = c.ERR_get_error() as number;
    if (!code) return first;
    if (first === null) first = errorReason(code);
  }
}

export class OpenSSLError extends Error {
  /** The OpenSSL call that failed, e.g. "SSL_CTX_use_PrivateKey". */
  readonly call: string;
  /** OpenSSL's reason, e.g. "key values mismatch" (null: none queued). */
  readonly reason: string | null;
  constructor(call: string, reason: string | null, detail?: string) {
    super(`${call}: ${reason ?? "failed"}${detail ? ` (${detail})` : ""}`);
    this.name = "OpenSSLError";
    this.call = call;
    this.reason = reason;
  }
}

/** The error for a failed call, with the reason taken from the error queue (emptied). */
export function sslError(call: string, detail?: string): OpenSSLError {
  return new OpenSSLError(call, takeError(), detail);
}

/** NUL-terminated bytes for a `const char *` argument. */
export function cString(s: string): Uint8Array {
  return new TextEncoder().encode(s + "\0");
}
