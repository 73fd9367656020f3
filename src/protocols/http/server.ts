// HTTP/1.1 on a stream: the parser per connection, the app (routes, fetch), and responses
// written strictly in request order, whatever order async handlers finish in.
//
// Each request takes a slot in its connection's queue when its head arrives; a slot is
// written once its response is known and every slot before it has been written. A static
// route answers from bytes serialized once, with no request object at all. After a
// response that closes (Connection: close, HTTP/1.0, a refused request, shutdown) nothing
// more is read or written.

import { StreamState, type Handler, type Stream } from "../../stream/stream.ts";
import type { ProtocolTrafficCount } from "../../stats/snapshot.ts";
import { DEFAULT_HTTP_LIMITS, HttpParseError, HttpParser, latin1Range, type HttpLimits, type HttpParserSink, type RequestHead } from "./parser.ts";
import { HttpRequest } from "./request.ts";
import { DateField, errorResponse, headInfo, headLines, STATUS_TEXT, wholeResponse, type StaticResponse } from "./response.ts";
import { compileRoutes, type RouteMatch, type Routes, type RouteTable } from "./routes.ts";
import { acceptKey, checkUpgrade, deflateConfig, negotiateDeflate, type DeflateConfig, type DeflateParams } from "../ws/handshake.ts";
import { upgradeStream, WsHubEncoder, type WebSocketHandler, type WsTopics } from "../ws/socket.ts";
import { Hub } from "../../hub.ts";
import { FileResponse } from "./static.ts";

/** Idle parsers an app keeps for reuse (HttpApp.takeParser). */
const MAX_SPARE_PARSERS = 1024;
/** Pipelined requests queued per connection before reading pauses. */
const MAX_PIPELINE = 64;
/** Bodies larger than this are written a piece at a time, following the stream's drain. */
const BODY_PIECE = 64 * 1024;
const utf8 = new TextEncoder();
const CRLF = utf8.encode("\r\n");
const CONTINUE = utf8.encode("HTTP/1.1 100 Continue\r\n\r\n");
const EMPTY = new Uint8Array(0);

export type FetchHandler = (req: HttpRequest, server: HttpServerInfo) => Response | Promise<Response> | undefined | Promise<Response | undefined>;

/** What handlers can ask of the server (Bun.serve's `server` argument). */
export interface HttpServerInfo {
  requestIP(req: HttpRequest): { address: string; port: number; family: "IPv4" | "IPv6" } | null;
  /**
   * Makes this request's connection a WebSocket (the `websocket` handlers): true when the
   * request is a valid Upgrade and `websocket` is set; then return nothing from the handler.
   * Call it before the handler returns or awaits.
   */
  upgrade(req: HttpRequest, options?: { data?: unknown; headers?: Record<string, string> }): boolean;
}

interface AcceptedUpgrade {
  key: string;
  /** The subprotocol the handler chose (Sec-WebSocket-Protocol in its headers), or "". */
  protocol: string;
  /** permessage-deflate as agreed: the Sec-WebSocket-Extensions answer and its parameters, or null. */
  deflate: { header: string; params: DeflateParams } | null;
  data: unknown;
  headers: Record<string, string> | undefined;
}

export interface HttpAppOptions {
  fetch?: FetchHandler;
  routes?: Routes;
  /** Turns a thrown error into a response (default: 500 with a short text). */
  error?: (error: Error) => Response | Promise<Response>;
  limits?: Partial<HttpLimits>;
  /** Requests arrived over TLS (the URL's scheme). */
  tls?: boolean;
  /** A request body must arrive within this many ms of its head (408 past it; 0: no limit). */
  bodyTimeoutMs?: number;
  /** WebSocket handlers: what server.upgrade(req) hands a connection to. */
  websocket?: WebSocketHandler<any>;
  /** The hub WebSocket topics live in (the process's, for the CLI); default a hub of this app's own. */
  hub?: Hub;
  /** Counts requests in and responses out (the CLI's /metrics, by protocol); and WebSocket messages. */
  traffic?: { messagesIn: number; messagesOut: number };
  wsTraffic?: ProtocolTrafficCount;
  /** Where responses are counted by status class (default: an array of this app's own). */
  byClass?: Float64Array;
  /** True while the server stops: responses say Connection: close. */
  shuttingDown?: () => boolean;
  log?: (line: string) => void;
}

/** What every connection of an HTTP listener shares. */
export class HttpApp implements HttpServerInfo {
  readonly limits: HttpLimits;
  readonly routes: RouteTable;
  readonly date = new DateField();
  readonly fetch: FetchHandler | undefined;
  readonly onError: ((error: Error) => Response | Promise<Response>) | undefined;
  readonly tls: boolean;
  readonly bodyTimeoutMs: number;
  readonly websocket: WebSocketHandler<any> | undefined;
  /** permessage-deflate as the websocket handlers configure it (null: not negotiated). */
  readonly deflate: DeflateConfig | null;
  /** WebSocket topics: the hub and its "ws" channel. */
  readonly topics: WsTopics;
  /** The request whose handler is running (server.upgrade may only take that one), and its upgrade. */
  upgradeTarget: { req: HttpRequest; accepted: AcceptedUpgrade | null } | null = null;
  readonly shuttingDown: () => boolean;
  readonly log: (line: string) => void;
  /** Where response heads are encoded before they are copied into a stream's queue. */
  scratch = new Uint8Array(4096);
  /** Requests answered, by status class (1xx..5xx at 1..5). */
  readonly byClass: Float64Array;
  readonly traffic: { messagesIn: number; messagesOut: number } | null;
  /** Idle parsers: a connection holds one only while a request's bytes are arriving. */
  private readonly spareParsers: HttpParser[] = [];

  constructor(options: HttpAppOptions) {
    this.limits = { ...DEFAULT_HTTP_LIMITS, ...options.limits };
    this.routes = compileRoutes(options.routes ?? {});
    this.fetch = options.fetch;
    this.onError = options.error;
    this.tls = options.tls ?? false;
    this.bodyTimeoutMs = options.bodyTimeoutMs ?? 0;
    this.websocket = options.websocket;
    this.deflate = deflateConfig(options.websocket?.perMessageDeflate);
    const hub = options.hub ?? new Hub();
    this.topics = {
      hub, channel: hub.channel("ws", new WsHubEncoder()), deflateChannel: hub.channel("ws-deflate", new WsHubEncoder(true)),
      traffic: options.wsTraffic ?? null,
    };
    this.traffic = options.traffic ?? null;
    this.byClass = options.byClass ?? new Float64Array(6);
    this.shuttingDown = options.shuttingDown ?? (() => false);
    this.log = options.log ?? ((l) => console.error(`[bunpoll] ${l}`));
  }

  takeParser(sink: HttpParserSink): HttpParser {
    const p = this.spareParsers.pop();
    if (p === undefined) return new HttpParser(sink, this.limits);
    p.rebind(sink);
    return p;
  }

  /** Takes back an idle parser (the pool never outgrows the connections once busy at once). */
  recycleParser(p: HttpParser): void {
    if (this.spareParsers.length < MAX_SPARE_PARSERS) this.spareParsers.push(p);
  }

  /** A message to every WebSocket subscribed to topic; returns the recipients. */
  publish(topic: string, data: string | Uint8Array): number {
    const isText = typeof data === "string";
    return this.topics.hub.publish(topic, isText ? utf8.encode(data) : data, isText, null);
  }

  subscriberCount(topic: string): number {
    return this.topics.hub.subscriberCount(topic);
  }

  upgrade(req: HttpRequest, options?: { data?: unknown; headers?: Record<string, string> }): boolean {
    const t = this.upgradeTarget;
    if (this.websocket === undefined || t === null || t.req !== req || t.accepted !== null) return false;
    const check = checkUpgrade(req);
    if (!check.ok) return false;
    const protocol = upgradeHeaders(req, options?.headers);
    const deflate = negotiateDeflate(req.header("sec-websocket-extensions"), this.deflate);
    t.accepted = { key: check.key, deflate, data: options?.data, headers: options?.headers, protocol };
    return true;
  }

  requestIP(req: HttpRequest): { address: string; port: number; family: "IPv4" | "IPv6" } | null {
    const s = req.peer;
    if (s === null || s.remoteAddress === "") return null;
    return { address: s.remoteAddress, port: s.remotePort, family: s.remoteAddress.includes(":") ? "IPv6" : "IPv4" };
  }
}


const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** Fields of the 101 the server writes itself. */
const OWN_FIELDS = new Set(["upgrade", "connection", "sec-websocket-accept", "sec-websocket-extensions", "content-length", "transfer-encoding"]);

/**
 * Checks the fields a handler adds to the 101 (server.upgrade's `headers`), so that none can
 * break the response or the protocol: names are tokens, values hold no CR, LF or NUL, the
 * server's own fields are left to it, and a Sec-WebSocket-Protocol is one the client offered
 * (RFC 6455 §4.2.2: a client fails a connection that answers with another). Returns that
 * subprotocol, or "". A mistake throws a TypeError naming it, in the handler's call.
 */
function upgradeHeaders(req: HttpRequest, headers: Record<string, string> | undefined): string {
  let protocol = "";
  if (headers === undefined) return protocol;
  for (const [name, raw] of Object.entries(headers)) {
    const value = String(raw);
    const lower = name.toLowerCase();
    if (!TOKEN.test(name)) throw new TypeError(`upgrade(): the header name ${JSON.stringify(name)} is not a token`);
    if (/[\r\n\0]/.test(value)) throw new TypeError(`upgrade(): the value of ${name} holds CR, LF or NUL`);
    if (OWN_FIELDS.has(lower)) throw new TypeError(`upgrade(): ${name} is set by the server`);
    if (lower !== "sec-websocket-protocol") continue;
    protocol = value.trim();
    const offered = (req.header("sec-websocket-protocol") ?? "").split(",").map((p) => p.trim()).filter((p) => p !== "");
    if (!offered.includes(protocol)) {
      throw new TypeError(`upgrade(): Sec-WebSocket-Protocol ${JSON.stringify(protocol)} was not offered by the client (it offered ${offered.length === 0 ? "none" : offered.map((p) => JSON.stringify(p)).join(", ")})`);
    }
  }
  return protocol;
}

interface Slot {
  /** The response, once known. */
  response: Response | null;
  /** A static route's response (no Response object). */
  fixed: StaticResponse | null;
  /** A refused request's status and reason (written, then the connection closes). */
  errorStatus: number;
  errorMessage: string;
  /** The body bytes, once known (a pending body is awaited first). */
  body: Uint8Array | null;
  ready: boolean;
  isHead: boolean;
  keepAlive: boolean;
  needContinue: boolean;
  request: HttpRequest | null;
  /** Taken out of the queue (its request will not complete): never written. */
  dropped?: boolean;
  /** server.upgrade() took this request: a 101, then the connection is a WebSocket. */
  upgrade?: AcceptedUpgrade;
}

/** Per-connection state (stream.data). */
export class HttpSession implements HttpParserSink {
  /**
   * The parser, held only while a request is arriving: between requests it goes back to the
   * app (10,000 idle keep-alive connections hold none).
   */
  private parser: HttpParser | null = null;
  private readonly queue: Slot[] = [];
  /** The request whose body is arriving. */
  private current: HttpRequest | null = null;
  /** The head of the queue is being written, or a response closed the connection. */
  private done = false;
  private paused = false;
  /** The client sent FIN: close once every response is written. */
  peerEnded = false;
  /** Bounds the body in progress (HttpApp.bodyTimeoutMs). */
  private bodyTimer: ReturnType<typeof setTimeout> | null = null;
  /** A large body's last piece hit the high-water mark: nothing more until drain. */
  private awaitingDrain = false;
  /** A large body being written piece by piece (flow control: the stream's drain). */
  private sending: { bytes: Uint8Array; offset: number; keepAlive: boolean } | null = null;
  /** closed() ran: a file response settling later releases its file at once (static files). */
  private gone = false;

  constructor(private readonly app: HttpApp, readonly stream: Stream<HttpSession>) {}

  /** Bytes from the stream. */
  data(bytes: Uint8Array): void {
    if (this.done) return; // after a closing response nothing more is interpreted
    const p = this.parser ?? (this.parser = this.app.takeParser(this));
    p.push(bytes);
    const rest = p.takeRest();
    if (rest !== null && rest.length > 0) this.upgradeRest = rest.slice(); // the first WebSocket frames
    if (p.idle && this.parser === p) {
      this.parser = null;
      this.app.recycleParser(p);
    }
    this.flush();
  }

  /** Bytes read behind an Upgrade request: the WebSocket's, handed over with the connection. */
  private upgradeRest: Uint8Array | null = null;

  /** A head is being received (the frame-timeout hook: slowloris). */
  get inHead(): boolean {
    return this.parser !== null && this.parser.inHead;
  }

  onHead(h: RequestHead): void {
    const app = this.app;
    if (app.traffic !== null) app.traffic.messagesIn++;
    const keepAlive = h.keepAlive && !app.shuttingDown();
    const hasBody = h.chunked || h.contentLength > 0;
    const slot: Slot = {
      response: null, fixed: null, errorStatus: 0, errorMessage: "", body: null, ready: false,
      isHead: h.method === "HEAD", keepAlive, needContinue: h.expectContinue && hasBody, request: null,
    };
    this.queue.push(slot);
    // Route lookup on the target's path, without a request object for static routes, and
    // for exact routes without making a string of the path.
    const raw = h.raw;
    const ts = h.targetStart, te = h.targetEnd;
    if (te - ts === 1 && raw[ts] === 0x2a && app.fetch === undefined) {
      // OPTIONS * (the parser allows * for OPTIONS only): the server's own capabilities.
      slot.response = new Response(null, { status: 204, headers: { allow: "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS" } });
      this.settle(slot);
      return;
    }
    let match: RouteMatch | null = null;
    if (raw[ts] === 0x2f) {
      let pe = ts;
      while (pe < te && raw[pe] !== 0x3f) pe++; // the path ends at "?"
      const exact = app.routes.matchExactBytes(h.method, raw, ts, pe);
      match = exact !== undefined ? exact : app.routes.match(h.method, latin1Range(raw, ts, pe));
    }
    if (match !== null && match.fixed !== null && !hasBody) {
      slot.fixed = match.fixed;
      slot.ready = true;
      return;
    }
    if (match !== null && match.status !== 0) {
      // 405: the path exists, the method does not.
      slot.response = new Response(`${STATUS_TEXT[405]}\n`, { status: 405, headers: { allow: match.allow, "content-type": "text/plain; charset=utf-8" } });
      this.settle(slot);
      return;
    }
    const req = new HttpRequest(h, h.headStart, h.headEnd, app.tls);
    req.peer = this.stream;
    slot.request = req;
    if (hasBody) {
      this.current = req;
      if (app.bodyTimeoutMs > 0) {
        // Bodies are not the fast path: a Bun timer per request body is cheap enough.
        this.bodyTimer = setTimeout(() => this.bodyTimedOut(), app.bodyTimeoutMs);
      }
    }
    this.dispatch(slot, req, match);
  }

  onBody(buf: Uint8Array, offset: number, length: number): void {
    this.current?.pushBody(buf, offset, length);
  }

  private bodyTimedOut(): void {
    this.bodyTimer = null;
    if (this.current === null || this.done) return;
    this.parser?.stop();
    this.onError(new HttpParseError(408, `request body did not arrive within ${this.app.bodyTimeoutMs / 1000} s`));
    this.flush();
  }

  private clearBodyTimer(): void {
    if (this.bodyTimer !== null) {
      clearTimeout(this.bodyTimer);
      this.bodyTimer = null;
    }
  }

  onEnd(): void {
    this.clearBodyTimer();
    this.current?.endBody();
    this.current = null;
    const last = this.queue[this.queue.length - 1];
    if (last !== undefined && !last.keepAlive) {
      this.done = true; // nothing after a closing request is read
      this.parser?.stop();
    }
    if (this.queue.length >= MAX_PIPELINE && !this.paused) {
      this.paused = true;
      this.stream.pause();
    }
  }

  onError(e: HttpParseError): void {
    // An error in a request's body: that request gets the error, not its handler's answer.
    this.dropCurrent(e.message);
    this.queue.push({
      response: null, fixed: null, errorStatus: e.status, errorMessage: e.message, body: null, ready: true,
      isHead: false, keepAlive: false, needContinue: false, request: null,
    });
    this.done = true;
  }

  /** The request whose body is arriving will not complete: its slot is dropped, its handler told. */
  private dropCurrent(reason: string): void {
    this.clearBodyTimer();
    const req = this.current;
    if (req === null) return;
    this.current = null;
    const q = this.queue;
    for (let i = q.length - 1; i >= 0; i--) {
      const slot = q[i]!;
      if (slot.request !== req) continue;
      slot.dropped = true;
      if (slot.response instanceof FileResponse) slot.response[Symbol.dispose](); // static files
      q.splice(i, 1);
      break;
    }
    req.abort(reason);
  }

  /** The client sent FIN: answer what arrived; a request it cut short cannot complete. */
  peerEnd(): void {
    this.peerEnded = true;
    if (this.current !== null || (this.parser !== null && !this.parser.idle)) {
      this.dropCurrent("the client ended before the request was complete");
      this.parser?.stop();
      this.done = true;
    }
    this.flush();
  }

  /** The connection closed: requests still waiting lose their client. */
  closed(): void {
    this.gone = true;
    for (const s of this.queue) if (s.response instanceof FileResponse) s.response[Symbol.dispose](); // static files
    this.clearBodyTimer();
    this.current?.abort("the client closed the connection");
    for (const s of this.queue) s.request?.abort("the client closed the connection");
    this.queue.length = 0;
  }

  private dispatch(slot: Slot, req: HttpRequest, match: RouteMatch | null): void {
    const app = this.app;
    let ret: ReturnType<FetchHandler>;
    app.upgradeTarget = req.header("upgrade") !== null ? { req, accepted: null } : null;
    try {
      if (match !== null && match.handler !== null) {
        req.params = match.params;
        ret = match.handler(req, app);
      } else if (match !== null && match.fixed !== null) {
        ret = new Response(match.fixed.body, { status: match.fixed.status }); // a static route with a request body
      } else if (app.fetch !== undefined) {
        ret = app.fetch(req, app);
      } else {
        ret = new Response(`${STATUS_TEXT[404]}\n`, { status: 404, headers: { "content-type": "text/plain; charset=utf-8" } });
      }
    } catch (e) {
      app.upgradeTarget = null;
      this.failed(slot, e);
      return;
    }
    const up = app.upgradeTarget?.accepted ?? null;
    app.upgradeTarget = null;
    if (up !== null) {
      // The connection becomes a WebSocket once this slot's 101 is written; nothing after the
      // Upgrade request is HTTP.
      if (ret !== undefined && !(ret instanceof Response)) ret.then(undefined, (e) => app.log(`http: handler threw after upgrade(): ${(e as Error)?.stack ?? e}`));
      slot.upgrade = up;
      slot.ready = true;
      this.parser?.stop();
      this.done = true;
      return;
    }
    if (ret instanceof Response) {
      slot.response = ret;
      this.settle(slot);
    } else if (ret === undefined) {
      slot.response = new Response(`${STATUS_TEXT[404]}\n`, { status: 404 });
      this.settle(slot);
    } else {
      ret.then(
        (r) => {
          slot.response = r instanceof Response ? r : new Response(`${STATUS_TEXT[404]}\n`, { status: 404 });
          this.settle(slot);
          this.flush();
        },
        (e) => {
          this.failed(slot, e);
          this.flush();
        },
      );
    }
  }

  /** A handler threw: the app's error handler answers, else a 500. */
  private failed(slot: Slot, e: unknown): void {
    const err = e instanceof Error ? e : new Error(String(e));
    const onError = this.app.onError;
    if (onError !== undefined) {
      try {
        const r = onError(err);
        if (r instanceof Response) {
          slot.response = r;
          this.settle(slot);
          return;
        }
        r.then(
          (res) => {
            slot.response = res;
            this.settle(slot);
            this.flush();
          },
          (e2) => {
            this.app.log(`http: error handler threw: ${(e2 as Error)?.stack ?? e2}`);
            this.internalError(slot);
            this.flush();
          },
        );
        return;
      } catch (e2) {
        this.app.log(`http: error handler threw: ${(e2 as Error)?.stack ?? e2}`);
      }
    } else {
      this.app.log(`http: handler threw: ${err.stack ?? err}`);
    }
    this.internalError(slot);
  }

  private internalError(slot: Slot): void {
    slot.response = new Response(`${STATUS_TEXT[500]}\n`, { status: 500, headers: { "content-type": "text/plain; charset=utf-8" } });
    this.settle(slot);
  }

  /** The slot's response is known: get its body bytes (at once when they are in memory). */
  private settle(slot: Slot): void {
    const res = slot.response!;
    if (res instanceof FileResponse) {
      // Static files: the body is an open file, written with stream.writeFile().
      if (this.gone || slot.dropped) res[Symbol.dispose]();
      slot.body = EMPTY;
      slot.ready = true;
      return;
    }
    // An in-memory body (null, text, bytes, JSON) is there at once: no stream is made for it.
    const p = res.bytes();
    const v = Bun.peek(p);
    if (v instanceof Uint8Array) {
      slot.body = v;
      slot.ready = true;
      return;
    }
    // A body still being produced (a stream): sent once complete.
    p.then(
      (b) => {
        slot.body = b;
        slot.ready = true;
        this.flush();
      },
      (e) => this.bodyFailed(slot, e),
    );
  }

  /** The stream drained: go on with a large body. */
  drained(): void {
    this.awaitingDrain = false;
    if (this.sending !== null) this.flush();
  }

  /** Writes pieces of the large body in progress until the stream pushes back; true when done. */
  private pump(): boolean {
    const b = this.sending!;
    const s = this.stream;
    while (b.offset < b.bytes.length) {
      const end = Math.min(b.bytes.length, b.offset + BODY_PIECE);
      const ok = s.write(b.bytes, b.offset, end);
      b.offset = end;
      if (s.state >= StreamState.Lingering) return false; // the stream is gone
      if (!ok && b.offset < b.bytes.length) {
        this.awaitingDrain = true; // the next piece waits for drain, whatever else settles
        return false;
      }
    }
    this.sending = null;
    if (!b.keepAlive) {
      this.done = true;
      this.closed();
      s.end();
      return false;
    }
    return true;
  }

  private bodyFailed(slot: Slot, e: unknown): void {
    this.app.log(`http: response body failed: ${(e as Error)?.message ?? e}`);
    slot.response = new Response(null, { status: 500 });
    slot.body = EMPTY;
    slot.ready = true;
    this.flush();
  }

  /** Writes every ready response at the head of the queue, in order. */
  flush(): void {
    const q = this.queue;
    const s = this.stream;
    if (this.sending !== null && (this.awaitingDrain || !this.pump())) return;
    while (q.length > 0) {
      const slot = q[0]!;
      if (slot.needContinue) {
        slot.needContinue = false;
        s.write(CONTINUE);
      }
      if (!slot.ready) break;
      q.shift();
      if (slot.upgrade !== undefined) {
        this.switchProtocols(slot.upgrade);
        return;
      }
      this.write(slot);
      if (slot.request !== null && slot.request === this.current) slot.request.discardUnread();
      if (this.sending !== null) {
        if (!this.pump()) return;
        continue;
      }
      if (!slot.keepAlive) {
        this.done = true;
        this.closed();
        s.end();
        return;
      }
    }
    if (this.peerEnded && q.length === 0 && this.current === null && this.sending === null) {
      s.end();
      return;
    }
    if (this.paused && q.length < MAX_PIPELINE / 2) {
      this.paused = false;
      s.resume();
    }
  }

  /** Writes the 101 and hands the connection to the WebSocket handlers, with the bytes already read. */
  private switchProtocols(up: AcceptedUpgrade): void {
    const app = this.app;
    app.byClass[1]++;
    if (app.traffic !== null) app.traffic.messagesOut++;
    let head = `HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: ${acceptKey(up.key)}\r\n`;
    if (up.deflate !== null) head += `sec-websocket-extensions: ${up.deflate.header}\r\n`;
    if (up.headers !== undefined) for (const [k, v] of Object.entries(up.headers)) head += `${k}: ${v}\r\n`;
    this.writeAscii(head + "\r\n");
    this.queue.length = 0;
    const rest = this.upgradeRest ?? undefined;
    this.upgradeRest = null;
    upgradeStream(this.stream, app.websocket!, up.data, app.topics, up.deflate?.params ?? null, up.protocol, rest);
  }

  /** Writes a response head through the app's scratch buffer (no view or length scan per string). */
  private writeAscii(text: string): void {
    const app = this.app;
    if (app.scratch.length < text.length * 3) app.scratch = new Uint8Array(text.length * 3);
    const { written } = utf8.encodeInto(text, app.scratch);
    this.stream.write(app.scratch, 0, written);
  }

  private write(slot: Slot): void {
    const s = this.stream;
    const app = this.app;
    if (app.traffic !== null) app.traffic.messagesOut++;
    const date = app.date.get();
    if (slot.errorStatus !== 0) {
      app.byClass[(slot.errorStatus / 100) | 0]++;
      s.write(errorResponse(slot.errorStatus, slot.errorMessage, app.date));
      return;
    }
    const f = slot.fixed;
    if (f !== null && slot.keepAlive) {
      // One copy of bytes assembled once a second.
      app.byClass[(f.status / 100) | 0]++;
      const whole = wholeResponse(f, app.date);
      s.write(whole, 0, slot.isHead ? f.headLength! : whole.length);
      return;
    }
    if (f !== null) {
      app.byClass[(f.status / 100) | 0]++;
      s.write(f.head);
      s.write(date);
      s.write(f.lengthLine);
      if (!slot.keepAlive) s.write("connection: close\r\n");
      s.write(CRLF);
      if (!slot.isHead) s.write(f.body);
      return;
    }
    const res = slot.response!;
    const status = res.status;
    app.byClass[(status / 100) | 0]++;
    const body = slot.body ?? EMPTY;
    const file = res instanceof FileResponse ? res : null; // static files
    let head = headLines(status, res.statusText, res.headers) + date;
    if (headInfo.connectionClose) slot.keepAlive = false;
    // Bun.serve labels a body without a Content-Type text/plain;charset=utf-8 (a Blob's own
    // type is already in the headers): so do we.
    if (!headInfo.hasContentType && body.length > 0 && file === null) head += "content-type: text/plain;charset=utf-8\r\n";
    const noBody = status === 204 || status === 304 || (status >= 100 && status < 200);
    if (!noBody) head += `content-length: ${file !== null ? file.length : body.length}\r\n`;
    if (!slot.keepAlive) head += "connection: close\r\n";
    this.writeAscii(head + "\r\n");
    if (file !== null) {
      // Static files: the range is queued by reference (sendfile), then our reference goes.
      if (!slot.isHead && !noBody && file.file !== null) s.writeFile(file.file, file.start, file.end);
      file[Symbol.dispose]();
      return;
    }
    if (slot.isHead || noBody || body.length === 0) return;
    if (body.length <= BODY_PIECE) s.write(body);
    else this.sending = { bytes: body, offset: 0, keepAlive: slot.keepAlive };
  }
}

/** The handler table of an HTTP listener. */
export function createHttpProtocol(app: HttpApp): Handler<HttpSession> {
  return {
    open(stream) {
      stream.data = new HttpSession(app, stream);
    },
    data(stream, bytes) {
      stream.data.data(bytes);
    },
    drain(stream) {
      stream.data?.drained();
    },
    end(stream) {
      // The client finished sending: answer what arrived, then close (no half-open replies).
      stream.data?.peerEnd();
    },
    close(stream) {
      stream.data?.closed();
    },
    inFrame(stream) {
      return stream.data !== undefined && stream.data.inHead;
    },
    allowHalfOpen: true,
  };
}
