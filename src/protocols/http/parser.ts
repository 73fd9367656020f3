// A strict, incremental HTTP/1.1 request parser (RFC 9112). Resumable at any byte split:
// push() takes whatever a read delivered and calls the sink as a request head, body bytes
// and the request's end become known. Pipelined requests in one read are parsed one after
// the other. Nothing is lenient: every framing ambiguity that request smuggling feeds on
// (Content-Length with Transfer-Encoding, differing or malformed lengths, chunk sizes with
// signs or prefixes, whitespace before a colon, obs-fold, bare CR or LF, control bytes) is
// an error with the status a server answers before it closes, and nothing after an error is
// interpreted.
//
// No copy of header bytes until asked: a head that arrives whole in one read is parsed where
// it lies, and its fields are spans into that buffer, valid during onHead only (as any data
// view). A head split across reads is gathered into the parser's own buffer first.

export interface HttpLimits {
  /** Longest request line, bytes (414 past it). */
  maxRequestLine: number;
  /** Longest head (request line + fields + blank line), bytes (431 past it). */
  maxHeaderBytes: number;
  /** Largest body, bytes (413 past it). */
  maxBodySize: number;
  /** Largest trailer section of a chunked body, bytes (431 past it). */
  maxTrailerBytes: number;
}

export const DEFAULT_HTTP_LIMITS: HttpLimits = {
  maxRequestLine: 8 * 1024,
  maxHeaderBytes: 16 * 1024,
  maxBodySize: 128 * 1024 * 1024,
  maxTrailerBytes: 16 * 1024,
};

/** A request the parser refused: the status to answer with (then close) and why. */
export class HttpParseError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
    this.name = "HttpParseError";
  }
}

export interface HttpParserSink {
  /** A request head is complete; `head` and its spans are valid during the call only. */
  onHead(head: RequestHead): void;
  /** Body bytes (de-chunked), buf[offset, offset + length), valid during the call only. */
  onBody(buf: Uint8Array, offset: number, length: number): void;
  /** The request is complete; `trailers` are a chunked body's trailer fields ([lower-case name, value]). */
  onEnd(trailers: readonly [string, string][]): void;
  /** The request is malformed: answer error.status, then close. No further call follows. */
  onError(error: HttpParseError): void;
}

const MAX_FIELDS = 128;

/**
 * Bytes as ISO-8859-1 text, one code point per byte (what fetch's Headers call a ByteString).
 * Not TextDecoder("latin1"): by the Encoding standard that label is windows-1252, which maps
 * 0x80-0x9F elsewhere.
 */
const latin1 = {
  decode(b: Uint8Array): string {
    return latin1Range(b, 0, b.length);
  },
};

/** b[start, end) as ISO-8859-1 text (see latin1), without a subarray view. */
export function latin1Range(b: Uint8Array, start: number, end: number): string {
  if (end - start <= 64) {
    let s = "";
    for (let i = start; i < end; i++) s += String.fromCharCode(b[i]!);
    return s;
  }
  return Buffer.from(b.buffer, b.byteOffset + start, end - start).toString("latin1");
}

/** Common methods, recognised without allocating a string. */
const METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"].map((m) => ({
  name: m,
  bytes: Uint8Array.from(m, (c) => c.charCodeAt(0)),
}));

/** tchar (RFC 9110 §5.6.2): the bytes of a token. */
const TCHAR = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~") TCHAR[c.charCodeAt(0)] = 1;
for (let c = 0x30; c <= 0x39; c++) TCHAR[c] = 1;
for (let c = 0x41; c <= 0x5a; c++) TCHAR[c] = 1;
for (let c = 0x61; c <= 0x7a; c++) TCHAR[c] = 1;

/** Bytes allowed in a field value: VCHAR, obs-text, SP, HTAB. */
const FIELD_VALUE = new Uint8Array(256);
for (let c = 0x21; c <= 0x7e; c++) FIELD_VALUE[c] = 1;
for (let c = 0x80; c <= 0xff; c++) FIELD_VALUE[c] = 1;
FIELD_VALUE[0x20] = 1;
FIELD_VALUE[0x09] = 1;

/** Bytes of a URI host's reg-name or IPv4 form: unreserved, pct-encoded ("%"), sub-delims. */
const REG_NAME = new Uint8Array(256);
for (let c = 0x30; c <= 0x39; c++) REG_NAME[c] = 1;
for (let c = 0x41; c <= 0x5a; c++) REG_NAME[c] = 1;
for (let c = 0x61; c <= 0x7a; c++) REG_NAME[c] = 1;
for (const c of "-._~%!$&'()*+,;=") REG_NAME[c.charCodeAt(0)] = 1;

const HEX = new Int8Array(256).fill(-1);
for (let c = 0; c < 10; c++) HEX[0x30 + c] = c;
for (let c = 0; c < 6; c++) {
  HEX[0x41 + c] = 10 + c;
  HEX[0x61 + c] = 10 + c;
}

const CR = 13, LF = 10, SP = 32, HTAB = 9, COLON = 58;
const NO_BYTES = new Uint8Array(0);
const NO_TRAILERS: [string, string][] = [];

/** The head of one request. Reused by its parser from request to request. */
export class RequestHead {
  /** The bytes the spans point into (valid during onHead only). */
  raw: Uint8Array = new Uint8Array(0);
  /** raw[headStart, headEnd) is the whole head, request line to blank line. */
  headStart = 0;
  headEnd = 0;
  method = "";
  /** HTTP/1.x minor version: 0 or 1. */
  versionMinor = 1;
  targetStart = 0;
  targetEnd = 0;
  fieldCount = 0;
  readonly nameStart = new Int32Array(MAX_FIELDS);
  readonly nameEnd = new Int32Array(MAX_FIELDS);
  readonly valueStart = new Int32Array(MAX_FIELDS);
  readonly valueEnd = new Int32Array(MAX_FIELDS);
  /** Body length from Content-Length; -1 without one (chunked, or no body). */
  contentLength = -1;
  chunked = false;
  /** The connection stays open after this request (HTTP/1.1 unless "close"; 1.0 with "keep-alive"). */
  keepAlive = true;
  /** "Expect: 100-continue": answer 100 before reading the body. */
  expectContinue = false;
  /** "Connection: upgrade" with an Upgrade field. */
  upgrade = false;

  /** The request-target as text (a copy). */
  get target(): string {
    return latin1Range(this.raw, this.targetStart, this.targetEnd);
  }

  /** Field i's name, lower-cased (a copy). */
  name(i: number): string {
    return latin1Range(this.raw, this.nameStart[i]!, this.nameEnd[i]!).toLowerCase();
  }

  /** Field i's value, without surrounding whitespace (a copy). */
  value(i: number): string {
    return latin1Range(this.raw, this.valueStart[i]!, this.valueEnd[i]!);
  }

  /** The first field named `name` (case-insensitive), or null. Compares bytes: no copy until found. */
  get(name: string): string | null {
    const i = this.indexOf(name, 0);
    return i < 0 ? null : this.value(i);
  }

  /** Index of the first field named `name` (lower-case ASCII) at or after `from`; -1 when none. */
  indexOf(name: string, from: number): number {
    const raw = this.raw;
    outer: for (let i = from; i < this.fieldCount; i++) {
      const s = this.nameStart[i]!;
      if (this.nameEnd[i]! - s !== name.length) continue;
      for (let k = 0; k < name.length; k++) if ((raw[s + k]! | 0x20) !== name.charCodeAt(k)) continue outer;
      return i;
    }
    return -1;
  }

  /** Every field as [name, value] (lower-case names; copies). */
  entries(): [string, string][] {
    const out: [string, string][] = [];
    for (let i = 0; i < this.fieldCount; i++) out.push([this.name(i), this.value(i)]);
    return out;
  }
}

const sharedHead = new RequestHead();

const enum State {
  Head,
  BodyLength,
  ChunkSize,
  ChunkData,
  ChunkDataEnd,
  Trailers,
  Failed,
}

export class HttpParser {
  private state = State.Head;
  /**
   * The head being parsed. One per thread: a head is complete and handed over within one
   * push(), so parsers never share it across reads, and an idle connection holds no spans.
   */
  readonly head = sharedHead;
  /** Gathered bytes of a head, chunk-size line or trailer section split across reads. */
  /** Created when a head, chunk line or trailer section is split across reads (idle: none). */
  private acc: Uint8Array = NO_BYTES;
  private accLen = 0;
  /** Body bytes still expected (Content-Length, or the current chunk). */
  private remaining = 0;
  private bodyTotal = 0;
  /** CRLF bytes after a chunk's data seen so far (0..2). */
  private crlfSeen = 0;
  private trailers: [string, string][] = NO_TRAILERS;
  private stopped = false;
  private rest: Uint8Array | null = null;
  /** A transfer coding other than chunked appeared in this head's Transfer-Encoding fields. */
  private teOther = false;

  constructor(private sink: HttpParserSink, readonly limits: HttpLimits = DEFAULT_HTTP_LIMITS) {}

  /**
   * Hands an idle parser (between requests) to another sink: connections share a few
   * parsers instead of holding one each while idle (HttpApp.takeParser).
   */
  rebind(sink: HttpParserSink): void {
    if (!this.idle) throw new Error("HttpParser.rebind: a request is in progress");
    this.sink = sink;
  }

  get failed(): boolean {
    return this.state === State.Failed;
  }

  /** Part of a head has arrived and is gathered: the header timeout's window. */
  get inHead(): boolean {
    return this.state === State.Head && this.accLen > 0;
  }

  /** True between requests: no byte of a next request has arrived. */
  get idle(): boolean {
    return this.state === State.Head && this.accLen === 0;
  }

  /** Stops parsing without an error: nothing pushed from now on is interpreted. */
  stop(): void {
    this.state = State.Failed;
    this.stopped = true;
    this.accLen = 0;
    this.acc = NO_BYTES;
  }

  /**
   * The bytes of the last push() after the point stop() was called at (a view, valid during
   * the caller's data call), e.g. the first WebSocket frames behind an Upgrade request.
   */
  takeRest(): Uint8Array | null {
    const r = this.rest;
    this.rest = null;
    return r;
  }

  /** Feeds bytes; calls the sink for what they complete. */
  push(buf: Uint8Array): void {
    let pos = 0;
    const end = buf.length;
    while (pos < end) {
      switch (this.state) {
        case State.Head:
          pos = this.headBytes(buf, pos, end);
          if ((this.state as State) === State.Failed && this.stopped && this.rest === null) {
            this.rest = buf.subarray(pos, end);
            return;
          }
          break;
        case State.BodyLength: {
          const n = Math.min(this.remaining, end - pos);
          this.remaining -= n;
          this.sink.onBody(buf, pos, n);
          pos += n;
          if (this.remaining === 0 && this.state === State.BodyLength) this.finish();
          break;
        }
        case State.ChunkSize:
          pos = this.lineBytes(buf, pos, end, 4096, (line, s, e) => this.chunkSize(line, s, e));
          break;
        case State.ChunkData: {
          const n = Math.min(this.remaining, end - pos);
          this.remaining -= n;
          this.sink.onBody(buf, pos, n);
          pos += n;
          if (this.remaining === 0 && this.state === State.ChunkData) {
            this.state = State.ChunkDataEnd;
            this.crlfSeen = 0;
          }
          break;
        }
        case State.ChunkDataEnd: {
          const b = buf[pos++]!;
          if (b !== (this.crlfSeen === 0 ? CR : LF)) return this.fail(400, "chunk data not followed by CRLF");
          if (++this.crlfSeen === 2) this.state = State.ChunkSize;
          break;
        }
        case State.Trailers:
          pos = this.lineBytes(buf, pos, end, this.limits.maxTrailerBytes, (line, s, e) => this.trailerLine(line, s, e));
          break;
        case State.Failed:
          return;
      }
    }
  }

  // --- head -------------------------------------------------------------------------------

  /** Looks for the end of the head (CRLF CRLF) from pos; parses it in place when it is all here. */
  private headBytes(buf: Uint8Array, pos: number, end: number): number {
    const limits = this.limits;
    if (this.accLen === 0) {
      // RFC 9112 §2.2: empty lines before a request line (a client's stray CRLF after a body) are ignored.
      while (pos + 1 < end && buf[pos] === CR && buf[pos + 1] === LF) pos += 2;
      if (pos === end) return pos;
      const stop = findHeadEnd(buf, pos, end);
      if (stop >= 0) {
        if (stop - pos > limits.maxHeaderBytes) return this.failHeadSize(buf, pos, end);
        this.parseHead(buf, pos, stop);
        return stop;
      }
      // Incomplete: gather it (the limits are checked on what is here so far).
      if (end - pos > limits.maxHeaderBytes) return this.failHeadSize(buf, pos, end);
      this.append(buf, pos, end);
      return this.checkPartialHead(end);
    }
    // Continue a gathered head: look for its end across the seam (at most 3 bytes back).
    const from = this.accLen;
    const take = Math.min(end - pos, limits.maxHeaderBytes + 1 - from);
    this.append(buf, pos, pos + take);
    const stop = findHeadEnd(this.acc, Math.max(0, from - 3), this.accLen);
    if (stop >= 0) {
      const used = stop - from; // bytes of buf that belong to this head
      this.accLen = 0;
      const gathered = this.acc;
      this.acc = NO_BYTES; // an idle connection keeps no buffer
      this.parseHead(gathered, 0, stop);
      return pos + used;
    }
    if (this.accLen > limits.maxHeaderBytes) return this.failHeadSize(this.acc, 0, this.accLen);
    return this.checkPartialHead(pos + take);
  }

  /** A partial head: refuse an over-long request line early (414), else wait for more. */
  private checkPartialHead(ret: number): number {
    const a = this.acc;
    const n = this.accLen;
    const lim = Math.min(n, this.limits.maxRequestLine + 2);
    let lf = -1;
    for (let i = 0; i < lim; i++) if (a[i] === LF) { lf = i; break; }
    if (lf < 0 && n > this.limits.maxRequestLine + 1) this.fail(414, `request line longer than ${this.limits.maxRequestLine} bytes`);
    return ret;
  }

  private failHeadSize(buf: Uint8Array, pos: number, end: number): number {
    // An over-long request line is a 414 even when the head as a whole is too long too.
    let lf = -1;
    const lim = Math.min(end, pos + this.limits.maxRequestLine + 2);
    for (let i = pos; i < lim; i++) if (buf[i] === LF) { lf = i; break; }
    if (lf < 0) this.fail(414, `request line longer than ${this.limits.maxRequestLine} bytes`);
    else this.fail(431, `request header section larger than ${this.limits.maxHeaderBytes} bytes`);
    return end;
  }

  private append(buf: Uint8Array, from: number, to: number): void {
    const n = to - from;
    if (this.accLen + n > this.acc.length) {
      let size = Math.max(this.acc.length * 2, 1024);
      while (size < this.accLen + n) size *= 2;
      const bigger = new Uint8Array(size);
      bigger.set(this.acc.subarray(0, this.accLen));
      this.acc = bigger;
    }
    this.acc.set(buf.subarray(from, to), this.accLen);
    this.accLen += n;
  }

  /** Parses buf[start, stop) (stop is just past the blank line's LF) and starts the body. */
  private parseHead(buf: Uint8Array, start: number, stop: number): void {
    const h = this.head;
    h.raw = buf;
    h.headStart = start;
    h.headEnd = stop;
    h.fieldCount = 0;
    h.contentLength = -1;
    h.chunked = false;
    h.expectContinue = false;
    h.upgrade = false;
    this.trailers = NO_TRAILERS;
    // Request line: method SP request-target SP HTTP-version CRLF.
    let p = start;
    const lineEnd = lineEndOf(buf, p, stop);
    if (lineEnd < 0) return this.fail(400, "bare CR or LF in the request line");
    if (lineEnd - p > this.limits.maxRequestLine) return this.fail(414, `request line longer than ${this.limits.maxRequestLine} bytes`);
    const mStart = p;
    while (p < lineEnd && TCHAR[buf[p]!] === 1) p++;
    if (p === mStart || buf[p] !== SP) return this.fail(400, "malformed method in the request line");
    h.method = methodName(buf, mStart, p);
    p++;
    h.targetStart = p;
    while (p < lineEnd && buf[p]! > SP && buf[p]! < 0x7f) p++;
    h.targetEnd = p;
    if (p === h.targetStart || buf[p] !== SP) return this.fail(400, "malformed request-target (control, space or non-ASCII byte)");
    p++;
    if (lineEnd - p !== 8 || !isHttpPrefix(buf, p)) return this.fail(400, "malformed HTTP version in the request line");
    const major = buf[p + 5]! - 0x30, dot = buf[p + 6]!, minor = buf[p + 7]! - 0x30;
    if (major < 0 || major > 9 || dot !== 0x2e || minor < 0 || minor > 9) return this.fail(400, "malformed HTTP version in the request line");
    if (major !== 1 || minor > 1) return this.fail(505, `HTTP/${major}.${minor} is not supported (HTTP/1.0 and HTTP/1.1 are)`);
    h.versionMinor = minor;
    if (h.targetStart + 1 === h.targetEnd && buf[h.targetStart] === 0x2a && h.method !== "OPTIONS") {
      return this.fail(400, "request-target * is for OPTIONS only");
    }
    // Fields.
    p = lineEnd + 2;
    while (p < stop - 2) {
      const e = lineEndOf(buf, p, stop);
      if (e < 0) return this.fail(400, "bare CR or LF in a header field");
      if (!this.field(buf, p, e)) return;
      p = e + 2;
    }
    if (!this.semantics()) return;
    this.bodyTotal = 0;
    this.sink.onHead(h);
    if (this.state === State.Failed) return;
    if (h.chunked) this.state = State.ChunkSize;
    else if (h.contentLength > 0) {
      this.state = State.BodyLength;
      this.remaining = h.contentLength;
    } else this.finish();
  }

  /** One field line buf[p, e): name ":" OWS value OWS. False after a failure. */
  private field(buf: Uint8Array, p: number, e: number): boolean {
    const h = this.head;
    const b0 = buf[p]!;
    if (b0 === SP || b0 === HTAB) return this.failed0(400, "obsolete line folding (a field line starting with whitespace)");
    const ns = p;
    while (p < e && TCHAR[buf[p]!] === 1) p++;
    if (p === ns) return this.failed0(400, "empty or invalid field name");
    if (p === e || buf[p] !== COLON) {
      const b = buf[p];
      return this.failed0(400, b === SP || b === HTAB ? "whitespace between a field name and its colon" : "invalid character in a field name");
    }
    const ne = p++;
    while (p < e && (buf[p] === SP || buf[p] === HTAB)) p++;
    const vs = p;
    let ve = p;
    for (; p < e; p++) {
      const b = buf[p]!;
      if (FIELD_VALUE[b] !== 1) return this.failed0(400, b === 0 ? "NUL in a field value" : "control character in a field value");
      if (b !== SP && b !== HTAB) ve = p + 1;
    }
    if (h.fieldCount === MAX_FIELDS) return this.failed0(431, `more than ${MAX_FIELDS} header fields`);
    const i = h.fieldCount++;
    h.nameStart[i] = ns;
    h.nameEnd[i] = ne;
    h.valueStart[i] = vs;
    h.valueEnd[i] = ve;
    return true;
  }

  /** Framing and connection fields (RFC 9112 §6, §9; RFC 9110 §7.2). False after a failure. */
  private semantics(): boolean {
    const h = this.head;
    const raw = h.raw;
    let hosts = 0, hostIndex = -1;
    let te = -1;
    this.teOther = false;
    let connectionClose = false, connectionKeepAlive = false, connectionUpgrade = false, upgradeField = false;
    for (let i = 0; i < h.fieldCount; i++) {
      const ns = h.nameStart[i]!, len = h.nameEnd[i]! - ns;
      const vs = h.valueStart[i]!, ve = h.valueEnd[i]!;
      const c0 = raw[ns]! | 0x20;
      if (len === 4 && c0 === 0x68 && nameIs(raw, ns, "host")) {
        hosts++;
        hostIndex = i;
      } else if (len === 14 && c0 === 0x63 && nameIs(raw, ns, "content-length")) {
        const n = parseContentLength(raw, vs, ve);
        if (n < 0) return this.failed0(400, `invalid Content-Length "${latin1.decode(raw.subarray(vs, ve))}"`);
        if (h.contentLength >= 0 && h.contentLength !== n) return this.failed0(400, "differing Content-Length values");
        h.contentLength = n;
      } else if (len === 17 && c0 === 0x74 && nameIs(raw, ns, "transfer-encoding")) {
        if (te >= 0) {
          // Several fields form one list; the last coding must be chunked (checked below).
          const r = this.transferCodings(raw, vs, ve, h.chunked);
          if (r < 0) return false;
        } else {
          const r = this.transferCodings(raw, vs, ve, false);
          if (r < 0) return false;
        }
        te = i;
      } else if (len === 10 && c0 === 0x63 && nameIs(raw, ns, "connection")) {
        forEachToken(raw, vs, ve, (s, e) => {
          if (tokenIs(raw, s, e, "close")) connectionClose = true;
          else if (tokenIs(raw, s, e, "keep-alive")) connectionKeepAlive = true;
          else if (tokenIs(raw, s, e, "upgrade")) connectionUpgrade = true;
        });
      } else if (len === 6 && c0 === 0x65 && nameIs(raw, ns, "expect")) {
        if (!tokenIs(raw, vs, ve, "100-continue")) return this.failed0(417, `unsupported expectation "${latin1.decode(raw.subarray(vs, ve))}"`);
        h.expectContinue = true;
      } else if (len === 7 && c0 === 0x75 && nameIs(raw, ns, "upgrade")) {
        upgradeField = true;
      }
    }
    if (te >= 0 && h.chunked && this.teOther) return this.failed0(501, "transfer codings other than chunked are not implemented");
    if (te >= 0) {
      if (h.contentLength >= 0) return this.failed0(400, "both Content-Length and Transfer-Encoding (a request smuggling vector)");
      if (h.versionMinor === 0) return this.failed0(400, "Transfer-Encoding in an HTTP/1.0 request");
      if (!h.chunked) return this.failed0(400, "Transfer-Encoding whose final coding is not chunked");
    }
    if (h.versionMinor === 1 && hosts === 0) return this.failed0(400, "missing Host header (required in HTTP/1.1)");
    if (hosts > 1) return this.failed0(400, "more than one Host header");
    if (hostIndex >= 0 && !validHost(raw, h.valueStart[hostIndex]!, h.valueEnd[hostIndex]!)) {
      return this.failed0(400, `invalid Host "${latin1.decode(raw.subarray(h.valueStart[hostIndex]!, h.valueEnd[hostIndex]!))}"`);
    }
    if (h.contentLength > this.limits.maxBodySize) return this.failed0(413, `body of ${h.contentLength} bytes is over the limit of ${this.limits.maxBodySize}`);
    h.keepAlive = h.versionMinor === 1 ? !connectionClose : connectionKeepAlive && !connectionClose;
    h.upgrade = connectionUpgrade && upgradeField;
    return true;
  }

  /**
   * Checks a Transfer-Encoding list: every coding a token, chunked at most once and last.
   * Sets head.chunked when the list ends with chunked. Returns -1 after a failure.
   */
  private transferCodings(raw: Uint8Array, vs: number, ve: number, chunkedBefore: boolean): number {
    const h = this.head;
    let count = 0, chunkedAt = -1, bad = false, other = false;
    let seenChunked = chunkedBefore;
    forEachToken(raw, vs, ve, (s, e) => {
      if (s === e) return;
      for (let k = s; k < e; k++) if (TCHAR[raw[k]!] !== 1) bad = true;
      if (tokenIs(raw, s, e, "chunked")) {
        if (seenChunked) bad = true; // chunked applied twice
        seenChunked = true;
        chunkedAt = count;
      } else {
        if (seenChunked) bad = true; // a coding after chunked: the final coding is not chunked
        other = true;
      }
      count++;
    });
    if (other) this.teOther = true;
    if (count === 0 || bad) {
      if (!bad && count === 0) return (this.fail(400, "empty Transfer-Encoding"), -1);
      // After chunked comes another coding (or chunked again): not chunked last, or twice.
      return (this.fail(400, "Transfer-Encoding whose final coding is not chunked"), -1);
    }
    if (chunkedAt === count - 1 && other) return (this.fail(501, "transfer codings other than chunked are not implemented"), -1);
    h.chunked = chunkedAt === count - 1 || (chunkedBefore && count === 0);
    if (!h.chunked && other) {
      // A final coding that is not chunked: refused in semantics() (400) unless chunked follows in a later field.
      h.chunked = false;
    }
    return 0;
  }

  // --- chunked body -------------------------------------------------------------------------

  /**
   * Gathers one CRLF-terminated line from buf[pos, end) (possibly across reads) and hands it
   * to `done` as (bytes, start, endBeforeCRLF). `max` bounds the line (and, for trailers, the
   * section).
   */
  private lineBytes(buf: Uint8Array, pos: number, end: number, max: number, done: (line: Uint8Array, s: number, e: number) => void): number {
    if (this.accLen === 0) {
      for (let i = pos; i < end; i++) {
        if (buf[i] === LF) {
          if (i === pos || buf[i - 1] !== CR) return (this.fail(400, "bare LF in a chunked body"), end);
          done(buf, pos, i - 1);
          return i + 1;
        }
      }
      if (end - pos > max) return (this.fail(this.state === State.Trailers ? 431 : 400, this.state === State.Trailers ? "trailer section too large" : "chunk-size line too long"), end);
      this.append(buf, pos, end);
      return end;
    }
    for (let i = pos; i < end; i++) {
      if (buf[i] === LF) {
        this.append(buf, pos, i + 1);
        const a = this.acc, n = this.accLen;
        this.accLen = 0;
        this.acc = NO_BYTES;
        if (n < 2 || a[n - 2] !== CR) return (this.fail(400, "bare LF in a chunked body"), end);
        done(a, 0, n - 2);
        return i + 1;
      }
    }
    this.append(buf, pos, end);
    if (this.accLen > max) this.fail(this.state === State.Trailers ? 431 : 400, this.state === State.Trailers ? "trailer section too large" : "chunk-size line too long");
    return end;
  }

  /** chunk-size [ chunk-ext ]: 1*HEXDIG only (no sign, prefix, underscore or space before it). */
  private chunkSize(line: Uint8Array, s: number, e: number): void {
    let p = s, size = 0, digits = 0;
    while (p < e && HEX[line[p]!]! >= 0) {
      size = size * 16 + HEX[line[p]!]!;
      p++;
      if (++digits > 13) return this.fail(400, "chunk size over 2^53"); // 14 hex digits can pass 2^53
    }
    const next = line[p];
    if (digits === 0 || (p < e && next !== 0x3b && next !== SP && next !== HTAB)) {
      return this.fail(400, `invalid chunk size "${latin1.decode(line.subarray(s, Math.min(e, s + 20)))}" (hex digits only: no sign, prefix or separator)`);
    }
    if (size > Number.MAX_SAFE_INTEGER) return this.fail(400, "chunk size over 2^53");
    // chunk-ext: *( BWS ";" BWS ext-name [ BWS "=" BWS ext-value ] ); anything else is an error.
    if (p < e && !validChunkExt(line, p, e)) return this.fail(400, "invalid chunk extension");
    for (let k = s; k < e; k++) if (line[k] === CR || line[k] === 0) return this.fail(400, "bare CR or NUL in a chunk-size line");
    if (size === 0) {
      this.state = State.Trailers;
      this.remaining = 0;
      return;
    }
    this.bodyTotal += size;
    if (this.bodyTotal > this.limits.maxBodySize) return this.fail(413, `body over the limit of ${this.limits.maxBodySize} bytes`);
    this.remaining = size;
    this.state = State.ChunkData;
  }

  /** A trailer field line, or the blank line that ends the request. */
  private trailerLine(line: Uint8Array, s: number, e: number): void {
    if (s === e) {
      this.finish();
      return;
    }
    this.remaining += e - s + 2;
    if (this.remaining > this.limits.maxTrailerBytes) return this.fail(431, "trailer section too large");
    const b0 = line[s]!;
    if (b0 === SP || b0 === HTAB) return this.fail(400, "obsolete line folding in a trailer");
    let p = s;
    while (p < e && TCHAR[line[p]!] === 1) p++;
    if (p === s || line[p] !== COLON) return this.fail(400, "malformed trailer field");
    const name = latin1.decode(line.subarray(s, p)).toLowerCase();
    p++;
    while (p < e && (line[p] === SP || line[p] === HTAB)) p++;
    let ve = p;
    for (let k = p; k < e; k++) {
      const b = line[k]!;
      if (FIELD_VALUE[b] !== 1) return this.fail(400, "control character in a trailer value");
      if (b !== SP && b !== HTAB) ve = k + 1;
    }
    if (this.trailers === NO_TRAILERS) this.trailers = [];
    this.trailers.push([name, latin1.decode(line.subarray(p, ve))]);
  }

  private finish(): void {
    this.state = State.Head;
    this.remaining = 0;
    const t = this.trailers;
    this.trailers = NO_TRAILERS;
    this.sink.onEnd(t);
  }

  private fail(status: number, message: string): void {
    if (this.state === State.Failed) return;
    this.state = State.Failed;
    this.accLen = 0;
    this.acc = NO_BYTES;
    this.sink.onError(new HttpParseError(status, message));
  }

  private failed0(status: number, message: string): false {
    this.fail(status, message);
    return false;
  }
}

// --- byte helpers -------------------------------------------------------------------------

/** Index just past the CRLF CRLF that ends a head starting at `from`, or -1. */
function findHeadEnd(buf: Uint8Array, from: number, end: number): number {
  // A JS scan: a head is a few hundred bytes, and a native indexOf per line costs more.
  for (let i = from + 1; i + 2 < end; i++) {
    if (buf[i] === LF && buf[i + 1] === CR && buf[i + 2] === LF) return i + 3;
  }
  return -1;
}

/**
 * The index of the CR of the CRLF ending the line at p (before stop), or -1 when the line
 * holds a bare CR or a bare LF.
 */
function lineEndOf(buf: Uint8Array, p: number, stop: number): number {
  for (let i = p; i < stop; i++) {
    const b = buf[i]!;
    if (b === CR) return buf[i + 1] === LF ? i : -1;
    if (b === LF) return -1;
  }
  return -1;
}

function isHttpPrefix(buf: Uint8Array, p: number): boolean {
  return buf[p] === 0x48 && buf[p + 1] === 0x54 && buf[p + 2] === 0x54 && buf[p + 3] === 0x50 && buf[p + 4] === 0x2f;
}

function methodName(buf: Uint8Array, s: number, e: number): string {
  outer: for (const m of METHODS) {
    const b = m.bytes;
    if (b.length !== e - s) continue;
    for (let k = 0; k < b.length; k++) if (buf[s + k] !== b[k]) continue outer;
    return m.name;
  }
  return latin1.decode(buf.subarray(s, e));
}

/** Field name bytes equal `lower` case-insensitively (length already checked). */
function nameIs(buf: Uint8Array, s: number, lower: string): boolean {
  for (let k = 0; k < lower.length; k++) if ((buf[s + k]! | 0x20) !== lower.charCodeAt(k)) return false;
  return true;
}

function tokenIs(buf: Uint8Array, s: number, e: number, lower: string): boolean {
  return e - s === lower.length && nameIs(buf, s, lower);
}

/** Calls fn(start, end) for each comma-separated element of buf[s, e), trimmed of OWS. */
function forEachToken(buf: Uint8Array, s: number, e: number, fn: (s: number, e: number) => void): void {
  let p = s;
  while (p <= e) {
    let q = p;
    while (q < e && buf[q] !== 0x2c) q++;
    let a = p, b = q;
    while (a < b && (buf[a] === SP || buf[a] === HTAB)) a++;
    while (b > a && (buf[b - 1] === SP || buf[b - 1] === HTAB)) b--;
    if (b > a) fn(a, b);
    p = q + 1;
  }
}

/**
 * Content-Length: 1*DIGIT, or a list of identical such values ("5, 5"). Returns -1 for
 * anything else (a sign, hex, spaces inside, an empty value, or over 2^53).
 */
function parseContentLength(buf: Uint8Array, s: number, e: number): number {
  let value = -1, ok = true;
  forEachToken(buf, s, e, (a, b) => {
    let n = 0;
    if (b - a > 16) ok = false;
    for (let k = a; k < b && ok; k++) {
      const d = buf[k]! - 0x30;
      if (d < 0 || d > 9) ok = false;
      n = n * 10 + d;
    }
    if (n > Number.MAX_SAFE_INTEGER) ok = false;
    if (value >= 0 && value !== n) ok = false;
    value = n;
  });
  if (!ok || value < 0) return -1;
  // A list must not hide empty elements ("5,,5" is tolerated by RFC 9110's list rule; a value
  // that is all separators is not).
  return value;
}

/** host [ ":" port ]: reg-name or IPv4 (unreserved, pct-encoded, sub-delims) or [IPv6]. */
function validHost(buf: Uint8Array, s: number, e: number): boolean {
  if (s === e) return false;
  let p = s;
  if (buf[p] === 0x5b) {
    p++;
    while (p < e && buf[p] !== 0x5d) {
      const b = buf[p]!;
      if (!(HEX[b]! >= 0 || b === COLON || b === 0x2e)) return false;
      p++;
    }
    if (p === e) return false;
    p++;
  } else {
    while (p < e && buf[p] !== COLON) {
      const b = buf[p]!;
      if (REG_NAME[b] !== 1) return false;
      p++;
    }
  }
  if (p === e) return true;
  if (buf[p] !== COLON) return false;
  p++;
  if (p === e) return true; // "host:" (an empty port) is allowed by the URI grammar
  if (e - p > 5) return false;
  let port = 0;
  for (; p < e; p++) {
    const d = buf[p]! - 0x30;
    if (d < 0 || d > 9) return false;
    port = port * 10 + d;
  }
  return port <= 65535;
}

/** ( BWS ";" BWS token [ BWS "=" BWS ( token / quoted-string ) ] )* up to e. */
function validChunkExt(buf: Uint8Array, p: number, e: number): boolean {
  const bws = () => {
    while (p < e && (buf[p] === SP || buf[p] === HTAB)) p++;
  };
  while (p < e) {
    bws();
    if (buf[p] !== 0x3b) return false;
    p++;
    bws();
    const ns = p;
    while (p < e && TCHAR[buf[p]!] === 1) p++;
    if (p === ns) return false;
    bws();
    if (p < e && buf[p] === 0x3d) {
      p++;
      bws();
      if (buf[p] === 0x22) {
        p++;
        while (p < e && buf[p] !== 0x22) {
          if (buf[p] === 0x5c) p++;
          else if (FIELD_VALUE[buf[p]!] !== 1) return false;
          p++;
        }
        if (p >= e) return false;
        p++;
      } else {
        const vs = p;
        while (p < e && TCHAR[buf[p]!] === 1) p++;
        if (p === vs) return false;
      }
    }
  }
  return true;
}
