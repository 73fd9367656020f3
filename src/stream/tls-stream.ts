// TLS over a TCP stream, with OpenSSL driven through two memory BIOs (Node's TLSWrap
// approach): the reactor does all socket I/O; wire bytes it reads go into the read BIO,
// SSL_read turns them into plaintext for the protocol; plaintext the protocol writes is
// held for the turn and encrypted at the TCP stream's flush (Handler.flush) in one
// SSL_write, so a turn's replies become as few records as possible and leave in one send.
//
//   protocol <- deliver(plain) - SSL_read  <- rbio <- BIO_write(wire) <- TcpStream.data
//   protocol -> write(plain) -> held -> [flush] SSL_write -> wbio -> BIO_read -> TcpStream.write
//
// A TLS record may split anywhere: the read BIO buffers partial records. The protocol's
// `open` runs once the handshake is complete, so it sees the negotiated ALPN protocol and
// the client certificate's subject. Handshake failures close this connection only, counted
// by reason (TLS_CLOSE_REASONS); the SSL (and its BIOs) is freed on every close path.

import { CString, type Pointer } from "bun:ffi";
import {
  cString, openssl, takeError, SSL_CTRL_SET_TLSEXT_HOSTNAME, SSL_ERROR_WANT_READ, SSL_ERROR_ZERO_RETURN,
  TLSEXT_NAMETYPE_host_name, X509_V_OK, OpenSSLError,
} from "../../ffi/openssl.ts";
import type { TimerNode } from "../reactor/timers.ts";
import { WrappingStream } from "./wrap.ts";
import type { CloseReason, Handler, Stream } from "./stream.ts";
import type { TcpStream } from "./tcp-stream.ts";
import { alpnWire } from "./tls-context.ts";
import { readFileInto } from "../driver/files.ts";
import type { SharedFile } from "../buffers/shared-file.ts";

/** Why a TLS connection closed, in the stats' close reasons. */
export const TLS_CLOSE_REASONS = [
  "tls-not-tls", // the first bytes were not a TLS record: plaintext (HTTP, a line) or garbage
  "tls-version", // the client offered only versions below the floor (TLS 1.0/1.1)
  "tls-handshake", // any other handshake failure: no shared cipher, bad certificate, ALPN...
  "tls-handshake-timeout", // the handshake did not finish in time
  "tls-truncated", // the peer closed in the middle of a record or of the handshake
  "tls-error", // a protocol error after the handshake (bad record MAC, renegotiation...)
] as const;

/** A file is read and encrypted this much at a time. */
const FILE_PIECE = 64 * 1024;
/** Plaintext held past this is encrypted at once (a full record), not at the flush. */
const RECORD = 16 * 1024;
/** SSL_read output and BIO_read output, one of each per thread (this module per Worker). */
const SCRATCH = 64 * 1024;
// Own ArrayBuffers: never moved, so the pointers bun:ffi takes from them stay valid.
const readScratch = new Uint8Array(new ArrayBuffer(SCRATCH));
const wireScratch = new Uint8Array(new ArrayBuffer(SCRATCH));
/** Reused view of readScratch[0, n) while n repeats (a subarray is an allocation). */
let readView = readScratch.subarray(0, 0);
const nameBuf = new Uint8Array(new ArrayBuffer(512));
const utf8 = new TextEncoder();

function viewOf(n: number): Uint8Array {
  let v = readView;
  if (v.length !== n) readView = v = readScratch.subarray(0, n);
  return v;
}

/** Sorts an OpenSSL handshake failure into a close reason. */
function classify(reason: string | null): CloseReason {
  if (reason === null) return "tls-handshake";
  if (/http request|https proxy request|wrong version number|unknown protocol|packet length too long|record layer failure|bad record type|record too large|invalid record|unexpected message/.test(reason)) return "tls-not-tls";
  if (/unsupported protocol|no protocols available|version too low|tlsv1 alert protocol version/.test(reason)) return "tls-version";
  return "tls-handshake";
}

export interface TlsStreamOptions {
  /** The SSL_CTX to start from (SNI may switch it during the handshake). */
  ctx: Pointer;
  server: boolean;
  /** Close a handshake that is not done after this many ms (0: no limit). */
  handshakeTimeoutMs: number;
  /** Client: the name sent as SNI and checked against the certificate. */
  serverName?: string;
  /** Client: check the certificate's name against serverName. */
  verifyName?: boolean;
  /** Client: ALPN protocols to offer. */
  alpn?: readonly string[];
  /** Counts handshakes (the listener's stats), if given. */
  onHandshake?: (stream: TlsStream<any>) => void;
}

export class TlsStream<T = unknown> extends WrappingStream<T> implements TimerNode {
  /** The SSL object (0 once freed); it owns both memory BIOs. */
  private ssl: Pointer | null = null;
  private rbio: Pointer | null = null;
  private wbio: Pointer | null = null;
  /** Plaintext written this turn, not yet encrypted (a pooled buffer while non-empty). */
  private plain: Uint8Array | null = null;
  private plainLen = 0;
  private established = false;
  private opened = false;
  private ending = false;
  private paused = false;
  private reading = false;
  /** The negotiated ALPN protocol ("http/1.1") or "". */
  alpnProtocol = "";
  /** "TLSv1.3" / "TLSv1.2" once the handshake is done. */
  protocol = "";
  /** The SNI name the client sent, or "". */
  servername = "";
  /** The verified client certificate's subject ("/CN=alice"), or null. */
  peerSubject: string | null = null;
  timerDeadline = 0;
  timerIndex = -1;

  constructor(override readonly inner: TcpStream<any>, handler: Handler<T>, private readonly options: TlsStreamOptions) {
    super(inner, handler);
    const { ssl, crypto } = openssl();
    const s = ssl.SSL_new(options.ctx) as Pointer | null;
    if (!s) throw new OpenSSLError("SSL_new", takeError());
    const rbio = crypto.BIO_new(crypto.BIO_s_mem()) as Pointer | null;
    const wbio = crypto.BIO_new(crypto.BIO_s_mem()) as Pointer | null;
    if (!rbio || !wbio) {
      if (rbio) crypto.BIO_free(rbio);
      if (wbio) crypto.BIO_free(wbio);
      ssl.SSL_free(s);
      throw new OpenSSLError("BIO_new", takeError());
    }
    ssl.SSL_set_bio(s, rbio, wbio); // the SSL owns both BIOs from here: SSL_free frees them
    this.ssl = s;
    this.rbio = rbio;
    this.wbio = wbio;
    if (options.server) ssl.SSL_set_accept_state(s);
    else {
      ssl.SSL_set_connect_state(s);
      const name = options.serverName;
      if (name !== undefined && name !== "" && !/^[\d.]+$|:/.test(name)) {
        // SNI carries host names only, never IP literals (RFC 6066 §3).
        ssl.SSL_ctrl(s, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name, cString(name));
      }
      if (name !== undefined && options.verifyName) ssl.SSL_set1_host(s, cString(name));
      if (options.alpn !== undefined && options.alpn.length > 0) {
        const w = alpnWire(options.alpn);
        ssl.SSL_set_alpn_protos(s, w, w.length);
      }
    }
  }

  /**
   * Takes over the TCP stream (its handler becomes this stream's) and starts the
   * handshake: a client sends its hello now.
   */
  start(): this {
    const self = this;
    const r = this.inner.reactor;
    this.inner.setHandler<unknown>({
      data: (_s, wire) => self.onWire(wire),
      drain: () => {
        self.pumpFiles();
        if (self.opened && self.files === null) self.handler.drain?.(self);
      },
      end: () => self.onPeerEnd(),
      close: (_s, reason, error) => self.onClosed(reason, error),
      error: (_s, error) => {
        if (self.opened) self.handler.error?.(self, error);
        else r.log(`connection ${self.id}: TLS: ${error.message}`, { event: "tls_error", level: "warn", connection: self.id, reason: "error", peer: self });
      },
      get timeout() {
        return self.opened && self.handler.timeout ? () => self.handler.timeout!(self) : undefined;
      },
      inFrame: () => (self.opened ? self.handler.inFrame?.(self) ?? false : false),
      get pauseWhileAsync() {
        return self.handler.pauseWhileAsync;
      },
      get allowHalfOpen() {
        return self.handler.allowHalfOpen;
      },
      shutdown: () => {
        if (self.opened) self.handler.shutdown?.(self);
        else self.inner.close("shutdown");
      },
      flush: () => {
        self.encodeHeld();
        self.pumpFiles();
      },
    });
    if (this.options.handshakeTimeoutMs > 0) r.timers.schedule(this, r.now + this.options.handshakeTimeoutMs);
    if (!this.options.server) this.handshake();
    return this;
  }

  // --- read side ----------------------------------------------------------------------------

  private onWire(wire: Uint8Array): void | Promise<void> {
    const s = this.ssl;
    if (s === null) return;
    // A memory BIO grows to take everything: no partial writes to handle.
    openssl().crypto.BIO_write(this.rbio, wire, wire.length);
    if (!this.established && !this.handshake()) return;
    return this.readPlain();
  }

  /** Advances the handshake; true once it is complete (the protocol is open then). */
  private handshake(): boolean {
    const { ssl } = openssl();
    const s = this.ssl;
    const rc = ssl.SSL_do_handshake(s);
    if (rc === 1) {
      this.established = true;
      this.inner.reactor.timers.cancel(this);
      this.describeSession();
      this.pumpOut(); // the server's last flight, session tickets
      this.options.onHandshake?.(this);
      this.opened = true;
      const h = this.handler.open;
      if (h !== undefined) {
        const ret = h.call(this.handler, this);
        if (ret !== undefined) Promise.resolve(ret).catch((e) => this.inner.fail(e));
      }
      if (this.ssl !== null && (this.plainLen > 0 || this.files !== null)) this.inner.requestFlush(); // written before the handshake finished
      return this.ssl !== null;
    }
    const err = ssl.SSL_get_error(s, rc);
    const reason = err === SSL_ERROR_WANT_READ ? null : takeError();
    this.pumpOut(); // our flight, or the alert that says why we refuse
    if (err === SSL_ERROR_WANT_READ) return false;
    this.fail(classify(reason), reason, "handshake");
    return false;
  }

  private describeSession(): void {
    const { ssl, crypto } = openssl();
    const s = this.ssl;
    this.protocol = String(ssl.SSL_get_version(s) ?? "");
    const name = ssl.SSL_get_servername(s, 0);
    if (name) this.servername = new CString(name).toString();
    // ALPN: SSL_get0_alpn_selected(ssl, &data, &len).
    const out = new BigUint64Array(new ArrayBuffer(16));
    ssl.SSL_get0_alpn_selected(s, out, out.subarray(1));
    const len = Number(out[1]! & 0xffffffffn);
    if (out[0] !== 0n && len > 0) this.alpnProtocol = new CString(Number(out[0]), 0, len).toString();
    const cert = ssl.SSL_get1_peer_certificate(s);
    if (cert) {
      if (Number(ssl.SSL_get_verify_result(s)) === X509_V_OK) {
        crypto.X509_NAME_oneline(crypto.X509_get_subject_name(cert), nameBuf, nameBuf.length);
        const end = nameBuf.indexOf(0);
        this.peerSubject = new TextDecoder().decode(nameBuf.subarray(0, end < 0 ? nameBuf.length : end));
      }
      crypto.X509_free(cert);
    }
  }

  /** Plaintext out of the read BIO to the protocol, until OpenSSL wants more wire bytes. */
  private readPlain(): void | Promise<void> {
    if (this.reading) return;
    this.reading = true;
    const { ssl } = openssl();
    let ret: void | Promise<void> = undefined;
    try {
      while (this.ssl !== null && !this.paused) {
        const n = ssl.SSL_read(this.ssl, readScratch, SCRATCH);
        if (n > 0) {
          if (!this.ending) ret = this.deliver(viewOf(n));
          continue;
        }
        const err = ssl.SSL_get_error(this.ssl, n);
        if (err === SSL_ERROR_WANT_READ) break;
        if (err === SSL_ERROR_ZERO_RETURN) {
          // close_notify: the peer is done writing. Answer with ours once our output is out.
          takeError();
          this.onPeerEnd();
          break;
        }
        const reason = takeError();
        this.pumpOut(); // an alert, if OpenSSL made one
        this.fail("tls-error", reason, "read");
        break;
      }
      if (this.ssl !== null) this.pumpOut(); // key updates, tickets, our answers to the peer's alerts
    } finally {
      this.reading = false;
    }
    return ret;
  }

  /** The peer's FIN (or close_notify). */
  private onPeerEnd(): void {
    if (this.ssl === null) return;
    if (!this.established) {
      this.fail("tls-truncated", "the peer closed during the handshake", "handshake");
      return;
    }
    // Part of a record in the read BIO, or already taken into OpenSSL's record buffer.
    if (openssl().crypto.BIO_ctrl_pending(this.rbio) > 0 || openssl().ssl.SSL_has_pending(this.ssl) === 1) {
      this.fail("tls-truncated", "the peer closed in the middle of a record", "read");
      return;
    }
    if (this.opened) this.handler.end?.(this);
    if (this.ssl !== null && !this.handler.allowHalfOpen) this.end();
  }

  // --- write side ---------------------------------------------------------------------------

  protected decode(wire: Uint8Array): void | Promise<void> {
    return this.onWire(wire);
  }

  protected encode(bytes: Uint8Array, start: number, end: number): boolean {
    if (this.files !== null) return this.queueAfterFiles(bytes.slice(start, end));
    const n = end - start;
    const buf = this.reserve(n);
    if (buf === null) return false;
    const at = this.plainLen;
    if (start === 0 && end === bytes.length) buf.set(bytes, at);
    else if (n <= 64) for (let i = 0; i < n; i++) buf[at + i] = bytes[start + i]!;
    else buf.set(bytes.subarray(start, end), at);
    this.plainLen = at + n;
    return this.held();
  }

  override write(bytes: Uint8Array | string, start = 0, end = -1): boolean {
    if (typeof bytes !== "string") return super.write(bytes, start, end);
    if (this.files !== null) return this.queueAfterFiles(utf8.encode(bytes));
    const buf = this.reserve(bytes.length * 3);
    if (buf === null) return false;
    this.plainLen += utf8.encodeInto(bytes, buf.subarray(this.plainLen)).written;
    return this.held();
  }

  override writePrefixed(prefix: number, bytes: Uint8Array, start = 0, end = bytes.length): boolean {
    if (!(start >= 0 && start <= end && end <= bytes.length)) throw new RangeError(`write range [${start}, ${end}) is outside the buffer (length ${bytes.length})`);
    if (this.files !== null) {
      const b = new Uint8Array(4 + end - start);
      new DataView(b.buffer).setUint32(0, prefix >>> 0);
      b.set(bytes.subarray(start, end), 4);
      return this.queueAfterFiles(b);
    }
    const buf = this.reserve(4 + end - start);
    if (buf === null) return false;
    const at = this.plainLen;
    buf[at] = prefix >>> 24;
    buf[at + 1] = prefix >>> 16;
    buf[at + 2] = prefix >>> 8;
    buf[at + 3] = prefix;
    this.plainLen = at + 4;
    return this.encode(bytes, start, end);
  }

  /** The held buffer with room for n more bytes, or null when the stream takes no writes. */
  private reserve(n: number): Uint8Array | null {
    if (this.ssl === null || this.ending) return null;
    const need = this.plainLen + n;
    let buf = this.plain;
    if (buf !== null && need <= buf.length) return buf;
    const pool = this.inner.reactor.bufferPool;
    const bigger = pool.acquire(need);
    if (buf !== null) {
      bigger.set(buf.subarray(0, this.plainLen));
      pool.release(buf);
    }
    return (this.plain = bigger);
  }

  /** After bytes were held: encrypt now past a full record, else at this turn's flush. */
  private held(): boolean {
    if (this.established) {
      if (this.plainLen >= RECORD) this.encodeHeld();
      else this.inner.requestFlush();
    }
    return this.bufferedAmount < this.inner.options.highWaterMark;
  }

  /** Encrypts what was held (one SSL_write) and queues the records on the TCP stream. */
  private encodeHeld(): void {
    const len = this.plainLen;
    const buf = this.plain;
    if (len === 0 || buf === null || !this.established || this.ssl === null) return;
    const { ssl } = openssl();
    let done = 0;
    while (done < len) {
      // SSL_write reads from the start of its buffer: the held bytes always start at 0.
      const n = ssl.SSL_write(this.ssl, done === 0 ? buf : buf.subarray(done), len - done);
      if (n <= 0) {
        const reason = takeError();
        this.fail("tls-error", reason, "write");
        return;
      }
      done += n;
    }
    this.plainLen = 0;
    this.plain = null;
    this.inner.reactor.bufferPool.release(buf);
    this.pumpOut();
  }

  /** Moves what OpenSSL wrote into the write BIO onto the TCP stream's queue. */
  private pumpOut(): void {
    const { crypto } = openssl();
    const wbio = this.wbio;
    if (this.ssl === null) return;
    let pending = crypto.BIO_ctrl_pending(wbio) as number;
    while (pending > 0) {
      const n = crypto.BIO_read(wbio, wireScratch, pending < SCRATCH ? pending : SCRATCH);
      if (n <= 0) break;
      this.inner.write(wireScratch, 0, n);
      // The write may have closed the stream (a slow consumer): the SSL and its BIOs are freed.
      if (this.ssl === null) return;
      pending -= n;
    }
  }

  override get bufferedAmount(): number {
    return this.inner.bufferedAmount + this.plainLen + this.fileBytes;
  }

  // --- files ------------------------------------------------------------------------------
  //
  // No sendfile under TLS (no kTLS): a file range is read (pread) straight into the held
  // plaintext a piece at a time and encrypted, only while the TCP stream's queue is below its
  // high-water mark; the rest waits for its drain. So a 1 GiB file costs at most about a
  // high-water mark of memory, and writes made after it wait behind it, in order.

  /** File ranges (and bytes written after them) not yet encrypted, in order; null: none. */
  private files: ({ file: SharedFile; at: number; end: number } | Uint8Array)[] | null = null;
  /** Bytes in `files`. */
  private fileBytes = 0;

  override writeFile(file: SharedFile, start = 0, end = file.size): boolean {
    if (!(Number.isSafeInteger(start) && Number.isSafeInteger(end) && start >= 0 && start <= end && end <= file.size)) {
      throw new RangeError(`writeFile range [${start}, ${end}) is outside the file (size ${file.size})`);
    }
    if (this.ssl === null || this.ending) return false;
    if (start === end) return true;
    file.retain();
    (this.files ??= []).push({ file, at: start, end });
    this.fileBytes += end - start;
    if (this.established) this.inner.requestFlush();
    return this.bufferedAmount < this.inner.options.highWaterMark;
  }

  private queueAfterFiles(bytes: Uint8Array): boolean {
    if (this.ssl === null || this.ending) return false;
    this.files!.push(bytes);
    this.fileBytes += bytes.length;
    return this.bufferedAmount < this.inner.options.highWaterMark;
  }

  /** Encrypts queued file pieces while the TCP stream's queue has room. */
  private pumpFiles(): void {
    const q = this.files;
    if (q === null || !this.established) return;
    const high = this.inner.options.highWaterMark;
    while (q.length > 0 && this.ssl !== null && this.inner.bufferedAmount < high) {
      const head = q[0]!;
      if (head instanceof Uint8Array) {
        q.shift();
        this.fileBytes -= head.length;
        const buf = this.reserve(head.length);
        if (buf === null) return;
        buf.set(head, this.plainLen);
        this.plainLen += head.length;
      } else {
        const n = Math.min(FILE_PIECE, head.end - head.at);
        const buf = this.reserve(n);
        if (buf === null) return;
        try {
          readFileInto(head.file, head.at, head.at + n, buf, this.plainLen);
        } catch (e) {
          this.inner.fail(e);
          return;
        }
        this.plainLen += n;
        head.at += n;
        this.fileBytes -= n;
        if (head.at === head.end) {
          q.shift();
          head.file.release();
        }
      }
      this.encodeHeld();
    }
    if (q.length === 0 && this.files === q) {
      this.files = null;
      const r = this.endAfterFiles;
      if (r !== null) {
        this.endAfterFiles = null;
        this.end(r);
      }
    }
  }

  private releaseFiles(): void {
    const q = this.files;
    if (q === null) return;
    this.files = null;
    this.fileBytes = 0;
    for (const e of q) if (!(e instanceof Uint8Array)) e.file.release();
  }

  override writeShared(shared: import("../buffers/shared-bytes.ts").SharedBytes, start = 0, end = shared.length): boolean {
    return this.write(shared.bytes, start, end);
  }

  // --- lifecycle ----------------------------------------------------------------------------

  /** Sends what is held, then close_notify, then FIN (the TCP stream's end). */
  override end(reason?: CloseReason): void {
    if (this.ssl === null || this.ending) return;
    if (this.files !== null) {
      // A file is still being sent: end once it is (after the last piece leaves the queue).
      this.endAfterFiles = reason ?? "local";
      return;
    }
    if (this.established) {
      this.encodeHeld();
      if (this.ssl === null) return;
      openssl().ssl.SSL_shutdown(this.ssl);
      takeError();
      this.pumpOut();
    }
    this.ending = true;
    this.inner.end(reason);
  }

  override pause(): void {
    this.paused = true;
    this.inner.pause();
  }

  override resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.inner.resume();
    // Records already read into the BIO would otherwise wait for the next wire bytes.
    // Deferred: resume() may be called from inside another stream's data handler, which
    // is still reading the shared scratch buffer.
    if (this.established) queueMicrotask(() => {
      if (this.ssl !== null && !this.paused) this.readPlain();
    });
  }

  /** Closes this connection for a TLS failure: counted by reason, logged (throttled). */
  private fail(reason: CloseReason, detail: string | null, during: string): void {
    const r = this.inner.reactor;
    r.logThrottled(String(reason), `connection ${this.id}: TLS ${during} failed (${reason}${detail ? `: ${detail}` : ""}), closing it`, { event: "tls_failed", level: "warn", connection: this.id, reason: String(reason), peer: this });
    const err = new Error(`TLS ${during} failed: ${detail ?? reason}`);
    if (!this.established && !this.options.server) this.clientError = err;
    // Alerts already queued go out before the FIN; what the peer still sends is discarded.
    this.ending = true;
    if (this.inner.bufferedAmount > 0) this.inner.end(reason);
    else this.inner.close(reason, err);
  }

  /** end() was called while a file was queued: the reason, to end with once it is sent. */
  private endAfterFiles: CloseReason | null = null;

  /** Client: why the handshake failed (for the caller waiting on it). */
  clientError: Error | null = null;

  onTimer(): void {
    if (this.ssl === null || this.established) return;
    this.fail("tls-handshake-timeout", null, `handshake (${this.options.handshakeTimeoutMs} ms)`);
  }

  private onClosed(reason: CloseReason, error?: Error): void {
    const s = this.ssl;
    if (s === null) return;
    this.ssl = null;
    this.inner.reactor.timers.cancel(this);
    openssl().ssl.SSL_free(s); // frees both BIOs
    takeError();
    this.releaseFiles();
    if (this.plain !== null) {
      this.inner.reactor.bufferPool.release(this.plain);
      this.plain = null;
      this.plainLen = 0;
    }
    if (this.opened) this.handler.close?.(this, reason, error);
    else if (!this.options.server) this.handler.close?.(this, reason, this.clientError ?? error);
  }
}

/** The handler a TLS listener accepts with: each connection becomes a TlsStream around `protocol`. */
export function tlsAcceptor<T>(protocol: Handler<T>, options: () => Omit<TlsStreamOptions, "server">): Handler<unknown> {
  return {
    open(tcp: Stream<unknown>) {
      new TlsStream<T>(tcp as TcpStream<unknown>, protocol, { ...options(), server: true }).start();
    },
  };
}

