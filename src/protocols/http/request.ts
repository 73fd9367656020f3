// The request a fetch handler receives: it behaves as a standard Request for what handlers
// do with one (method, url, headers, text/json/arrayBuffer/bytes/blob/formData, body as a
// ReadableStream, signal, clone), and costs per request only what the handler asks for.
// The head's bytes are copied once, as one block; the URL string, the Headers object, the
// body stream and the AbortSignal are built on first use. A standard Request costs several
// µs to construct (bench/README.md), most of it for things a handler seldom reads.

import type { RequestHead } from "./parser.ts";

/** b[s, e) as ISO-8859-1 text (a byte per code point), decoded natively. */
const latin1 = (b: Buffer, s: number, e: number): string => b.toString("latin1", s, e);

const EMPTY = new Uint8Array(0);
/** A request without route parameters shares this one (frozen: nothing to fill in). */
const NO_PARAMS: Record<string, string> = Object.freeze({}) as Record<string, string>;

export class HttpRequest {
  readonly method: string;
  /** Route parameters (`/users/:id` -> { id }); empty without routes. */
  params: Record<string, string> = NO_PARAMS;
  /** The connection it came on (server.requestIP); set by the HTTP session. */
  peer: { readonly remoteAddress: string; readonly remotePort: number } | null = null;
  /** The head's bytes, owned (a copy of the read buffer's). */
  private readonly raw: Buffer;
  private readonly spans: Int32Array;
  private readonly fieldCount: number;
  private readonly targetEnd: number;
  private readonly scheme: string;
  private _url: string | null = null;
  private _headers: Headers | null = null;
  private _abort: AbortController | null = null;
  // Body: chunks until a consumer asks; then either a whole-body promise or a stream.
  private readonly hasBody: boolean;
  /** Body chunks not yet taken by a consumer (null until the first arrives). */
  private chunks: Uint8Array[] | null = null;
  private ended: boolean;
  private bodyError: Error | null = null;
  private waiters: (() => void)[] | null = null;
  private streamCtl: ReadableStreamDefaultController<Uint8Array> | null = null;
  private _body: ReadableStream<Uint8Array> | null = null;
  private used = false;
  /** The response went out before the body was read: what is left of it is not kept. */
  private discarding = false;

  constructor(head: RequestHead, headStart: number, headStop: number, tls: boolean) {
    this.method = head.method;
    this.scheme = tls ? "https" : "http";
    // One copy of the head; spans are rebased onto it.
    const raw = Buffer.allocUnsafe(headStop - headStart);
    raw.set(head.raw.subarray(headStart, headStop));
    this.raw = raw;
    const n = head.fieldCount;
    const spans = new Int32Array(2 + n * 4);
    spans[0] = head.targetStart - headStart;
    this.targetEnd = head.targetEnd - headStart;
    for (let i = 0; i < n; i++) {
      spans[2 + i * 4] = head.nameStart[i]! - headStart;
      spans[3 + i * 4] = head.nameEnd[i]! - headStart;
      spans[4 + i * 4] = head.valueStart[i]! - headStart;
      spans[5 + i * 4] = head.valueEnd[i]! - headStart;
    }
    this.spans = spans;
    this.fieldCount = n;
    this.hasBody = head.chunked || head.contentLength > 0;
    this.ended = !this.hasBody;
  }

  /** The request-target as sent (path and query for the usual origin form). */
  get target(): string {
    return latin1(this.raw, this.spans[0]!, this.targetEnd);
  }

  /** The path of the target, without the query. */
  get pathname(): string {
    const t = this.target;
    if (t.charCodeAt(0) !== 0x2f) return new URL(this.url).pathname;
    const q = t.indexOf("?");
    return q < 0 ? t : t.slice(0, q);
  }

  get url(): string {
    if (this._url !== null) return this._url;
    const t = this.target;
    if (t.charCodeAt(0) === 0x2f) this._url = `${this.scheme}://${this.header("host") ?? "localhost"}${t}`;
    else if (t === "*") this._url = `${this.scheme}://${this.header("host") ?? "localhost"}/*`;
    else if (/^[a-z][a-z0-9+.-]*:\/\//i.test(t)) this._url = t;
    else this._url = `${this.scheme}://${t}/`; // authority form (CONNECT)
    return this._url;
  }

  /** The first field named `lower` (lower-case), or null: no Headers object needed. */
  header(lower: string): string | null {
    const raw = this.raw, s = this.spans;
    outer: for (let i = 0; i < this.fieldCount; i++) {
      const ns = s[2 + i * 4]!, ne = s[3 + i * 4]!;
      if (ne - ns !== lower.length) continue;
      for (let k = 0; k < lower.length; k++) if ((raw[ns + k]! | 0x20) !== lower.charCodeAt(k)) continue outer;
      return latin1(raw, s[4 + i * 4]!, s[5 + i * 4]!);
    }
    return null;
  }

  get headers(): Headers {
    if (this._headers !== null) return this._headers;
    const h = new Headers();
    const raw = this.raw, s = this.spans;
    for (let i = 0; i < this.fieldCount; i++) {
      h.append(latin1(raw, s[2 + i * 4]!, s[3 + i * 4]!), latin1(raw, s[4 + i * 4]!, s[5 + i * 4]!));
    }
    return (this._headers = h);
  }

  /** Aborted when the client goes away before the response is sent. */
  get signal(): AbortSignal {
    return (this._abort ??= new AbortController()).signal;
  }

  get bodyUsed(): boolean {
    return this.used;
  }

  get body(): ReadableStream<Uint8Array> | null {
    if (!this.hasBody) return null;
    if (this._body !== null) return this._body;
    this._body = new ReadableStream<Uint8Array>({
      start: (ctl) => {
        this.streamCtl = ctl;
        if (this.chunks !== null) for (const c of this.chunks) ctl.enqueue(c);
        this.chunks = null;
        if (this.bodyError !== null) ctl.error(this.bodyError);
        else if (this.ended) ctl.close();
      },
    });
    return this._body;
  }

  async bytes(): Promise<Uint8Array> {
    this.consume();
    if (!this.hasBody) return EMPTY;
    if (this._body !== null) return new Uint8Array(await new Response(this._body).arrayBuffer());
    while (!this.ended) await new Promise<void>((r) => (this.waiters ??= []).push(r));
    if (this.bodyError !== null) throw this.bodyError;
    const chunks = this.chunks ?? [];
    if (chunks.length === 1) return chunks[0]!;
    let n = 0;
    for (const c of chunks) n += c.length;
    const out = new Uint8Array(n);
    let p = 0;
    for (const c of chunks) {
      out.set(c, p);
      p += c.length;
    }
    return out;
  }

  async arrayBuffer(): Promise<ArrayBuffer> {
    const b = await this.bytes();
    return b.byteOffset === 0 && b.byteLength === b.buffer.byteLength ? (b.buffer as ArrayBuffer) : (b.slice().buffer as ArrayBuffer);
  }

  async text(): Promise<string> {
    return new TextDecoder().decode(await this.bytes());
  }

  async json(): Promise<unknown> {
    return JSON.parse(await this.text());
  }

  async blob(): Promise<Blob> {
    return new Blob([await this.bytes()], { type: this.header("content-type") ?? "" });
  }

  async formData(): Promise<Awaited<ReturnType<Request["formData"]>>> {
    return this.toRequest(await this.bytes()).formData();
  }

  clone(): Request {
    throw new TypeError("HttpRequest.clone(): call toRequest() first (a standard Request can be cloned)");
  }

  /** A standard Request with the same method, URL, headers and (given) body. */
  toRequest(body?: Uint8Array): Request {
    const init: RequestInit = { method: this.method, headers: this.headers };
    if (body !== undefined && this.method !== "GET" && this.method !== "HEAD") init.body = body;
    return new Request(this.url, init);
  }

  private consume(): void {
    if (this.used) throw new TypeError("Body already used");
    this.used = true;
  }

  // --- the connection's side ----------------------------------------------------------------

  /** Body bytes from the parser (a view valid during the call: copied). */
  pushBody(buf: Uint8Array, offset: number, length: number): void {
    if (this.discarding) return;
    const copy = buf.slice(offset, offset + length);
    if (this.streamCtl !== null) this.streamCtl.enqueue(copy);
    else (this.chunks ??= []).push(copy);
  }

  /** The response is written and the body was never read: stop keeping it (memory). */
  discardUnread(): void {
    if (this.used || this._body !== null || this.ended) return;
    this.discarding = true;
    this.chunks = null;
  }

  endBody(): void {
    if (this.ended) return;
    this.ended = true;
    this.streamCtl?.close();
    this.wake();
  }

  /** The client went away: abort the signal and fail a body still being read. */
  abort(reason: string): void {
    this._abort?.abort(new Error(reason));
    if (!this.ended) {
      this.bodyError = new Error(`request body incomplete: ${reason}`);
      this.ended = true;
      this.streamCtl?.error(this.bodyError);
      this.wake();
    }
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = null;
    if (w !== null) for (const f of w) f();
  }
}
