// The client library: one TCP connection on bunpoll's own reactor, speaking one protocol.
//
// Requests are matched to replies FIFO: every protocol answers a connection's requests in
// the order they arrived, and broadcasts / direct messages that arrive in between are
// events, never replies. A request that times out keeps its place in the queue (its reply
// may still come, and must not be taken for the next request's), it is only settled early.

import { isIP } from "node:net";
import { lookup } from "node:dns/promises";
import { SyscallError } from "../../ffi/errno.ts";
import type { ConnectionOptions } from "../stream/tcp-stream.ts";
import { Reactor } from "../reactor/reactor.ts";
import type { CloseReason, Connection, Handler } from "../stream/stream.ts";
import { EchoWire } from "./echo-wire.ts";
import {
  ClientError,
  ConnectError,
  ConnectionClosedError,
  NotSupportedError,
  ProtocolMismatchError,
  RequestTimeoutError,
  ServerError,
} from "./errors.ts";
import { Listeners } from "./events.ts";
import { FramedWire } from "./framed-wire.ts";
import { JsonWire } from "./json-wire.ts";
import { LineWire } from "./line-wire.ts";
import { WsWire } from "./ws-wire.ts";
import { tlsConnector, type ClientTlsOptions } from "./tls.ts";
import {
  DEFAULT_PORTS,
  DEFAULT_WS_PATH,
  SUPPORTED_OPS,
  utf8,
  utf8Lossy,
  type ClientProtocolName,
  type Encoded,
  type IncomingMessage,
  type Op,
  type Reply,
  type ServerNotice,
  type ServerStats,
  type TransportSink,
  type Wire,
} from "./protocol.ts";

export interface ClientOptions {
  /** IPv4/IPv6 literal, "localhost", or a name resolved with the system resolver. Default 127.0.0.1. */
  host?: string;
  /** Default: the protocol's default port (framed 7000, json 9999, line 7070, echo 5050, ws 8080). */
  port?: number;
  /** Default "framed". */
  protocol?: ClientProtocolName;
  /** Sent first: framed HELLO body, json `auth` message, line first line (ws: `Authorization: Bearer`). */
  authToken?: string;
  /** ws: the resource to open (default /ws/echo; /ws/chat is the chat). */
  path?: string;
  /** Reply timeout per request, and the bound on connect + handshake (ms). 0: none. Default 5000. */
  timeoutMs?: number;
  /** Run on this reactor (e.g. one shared by many clients). Default: one reactor shared by this process's clients. */
  reactor?: Reactor;
  /** Reactor connection options (high-water mark, max buffered...). */
  connection?: Partial<ConnectionOptions>;
  /** Connect over TLS: true (verify against the system's CAs) or { ca, insecure, serverName }. */
  tls?: boolean | ClientTlsOptions;
}

export interface CloseInfo {
  reason: CloseReason;
  /** True when close()/destroy() was called on this side. */
  byClient: boolean;
  /** What closed it: a socket error, a protocol mismatch, a throwing listener. */
  error?: Error;
  /** The last error the server sent without a request waiting (e.g. "unauthorized"). */
  lastNotice?: ServerNotice;
  /** How the server closed, when the protocol says (a WebSocket close frame's code and reason). */
  peerClose?: string;
}

export interface ClientEvents {
  /** A broadcast or direct message from another client. */
  message: (m: IncomingMessage) => void;
  /** The server said something that answers no request (line `ERR`, an unsolicited error). */
  notice: (n: ServerNotice) => void;
  close: (info: CloseInfo) => void;
}

/** Low-level reply callback: exactly one call per request. */
export type ReplyCallback = (err: Error | null, reply: Reply | null) => void;

interface Pending {
  op: Op;
  cb: ReplyCallback;
  timer: ReturnType<typeof setTimeout> | null;
  /** Already answered by a timeout: its late reply is dropped when it comes. */
  settled: boolean;
}

export const DEFAULT_TIMEOUT_MS = 5000;
/** How long close() waits for the answer to a close the protocol starts (a WebSocket close frame). */
const CLOSE_ANSWER_MS = 2000;


let sharedReactor: Reactor | null = null;

/**
 * The reactor shared by clients that bring none. Its loop runs while it has connections,
 * and it owns only its epoll fd, wake eventfd and EMFILE reserve fd between uses.
 */
export function defaultReactor(): Reactor {
  sharedReactor ??= new Reactor();
  return sharedReactor;
}

export function createWire(protocol: ClientProtocolName, sink: TransportSink, where: { host: string; port: number; path?: string } = { host: "127.0.0.1", port: DEFAULT_PORTS[protocol] }): Wire {
  switch (protocol) {
    case "framed":
      return new FramedWire(sink);
    case "json":
      return new JsonWire(sink);
    case "line":
      return new LineWire(sink);
    case "echo":
      return new EchoWire(sink);
    case "ws":
      return new WsWire(sink, { host: where.host, port: where.port, path: where.path ?? DEFAULT_WS_PATH });
  }
}

export class Client {
  readonly protocol: ClientProtocolName;
  readonly host: string;
  readonly port: number;
  readonly timeoutMs: number;
  /** Our id as the server knows it (framed WELCOME, json auth_ok); null for line and echo. */
  clientId: number | null = null;
  /** json: the "ip:port" label other json clients can address us by. */
  label: string | null = null;
  readonly wire: Wire;
  private conn: Connection<unknown> | null = null;
  private readonly pending: Pending[] = [];
  private head = 0;
  private readonly listeners = new Listeners<ClientEvents>();
  private closeInfo: CloseInfo | null = null;
  private closingByClient = false;
  private failure: Error | null = null;
  private lastNotice: ServerNotice | undefined;
  private closeAnswerTimer: ReturnType<typeof setTimeout> | null = null;
  private resolveClosed!: (info: CloseInfo) => void;
  /** Settles when the connection is closed, for whatever reason. Never rejects. */
  readonly closed: Promise<CloseInfo>;

  /** Use connect(): it opens the connection and completes the handshake. */
  constructor(protocol: ClientProtocolName, host: string, port: number, timeoutMs: number, readonly reactor: Reactor, path?: string) {
    this.protocol = protocol;
    this.host = host;
    this.port = port;
    this.timeoutMs = timeoutMs;
    this.closed = new Promise((r) => (this.resolveClosed = r));
    const sink: TransportSink = {
      reply: (r) => this.onReply(r),
      error: (code, message) => this.onServerError(code, message),
      message: (m) => this.emit("message", m),
      notice: (n) => this.onNotice(n),
      mismatch: (detail) => this.onFail(new ProtocolMismatchError(detail)),
      write: (bytes) => void this.conn?.write(bytes),
      end: () => this.conn?.end(),
      fail: (error, farewell) => this.onFail(error, farewell),
    };
    this.wire = createWire(protocol, sink, { host, port, path });
  }

  // --- events ---------------------------------------------------------------------------

  /** Adds a listener; returns a function that removes it. */
  on<K extends keyof ClientEvents>(event: K, listener: ClientEvents[K]): () => void {
    return this.listeners.on(event, listener);
  }

  private emit<K extends keyof ClientEvents>(event: K, ...args: Parameters<ClientEvents[K]>): void {
    // A throwing listener propagates into the reactor's data handler, which closes this
    // connection with reason "error" (CloseInfo.error says why): loud, and the decoder is
    // never left half-way through a frame on a connection that goes on.
    this.listeners.emit(event, ...args);
  }

  // --- state ----------------------------------------------------------------------------

  get isOpen(): boolean {
    return this.conn !== null && this.closeInfo === null;
  }

  /** Requests sent and not yet answered (timed-out ones included until their reply comes). */
  get inFlight(): number {
    return this.pending.length - this.head;
  }

  /** Bytes queued on this connection that the kernel has not taken yet. */
  get bufferedAmount(): number {
    return this.conn?.bufferedAmount ?? 0;
  }

  supports(op: Op): boolean {
    return SUPPORTED_OPS[this.protocol].includes(op);
  }

  // --- typed requests -------------------------------------------------------------------

  /** One round trip; resolves with the round-trip time in ms. */
  async ping(payload: Uint8Array | string = ""): Promise<number> {
    const bytes = typeof payload === "string" ? utf8.encode(payload) : payload;
    const t0 = performance.now();
    await this.ask("ping", () => this.wire.ping(bytes));
    return performance.now() - t0;
  }

  /** Sends `payload`, resolves with what the server echoed (same type as given). */
  echo(payload: string): Promise<string>;
  echo(payload: Uint8Array): Promise<Uint8Array>;
  async echo(payload: string | Uint8Array): Promise<string | Uint8Array> {
    const r = (await this.ask("echo", () => this.wire.echo(payload))) as Extract<Reply, { op: "echo" }>;
    if (typeof payload === "string") return r.text ?? utf8Lossy.decode(r.bytes!);
    return r.bytes ?? utf8.encode(r.text ?? "");
  }

  /**
   * Sends to every other client; resolves with how many received it, or null on the line
   * protocol, which acknowledges nothing (it resolves once the line is queued).
   */
  async broadcast(payload: string | Uint8Array): Promise<number | null> {
    const r = await this.ask("broadcast", () => this.wire.broadcast(payload));
    return r === null ? null : (r as Extract<Reply, { op: "broadcast" }>).recipients;
  }

  /** A direct message to client `to` (an id; json also takes an "ip:port" label). */
  async send(to: number | string, payload: string | Uint8Array): Promise<void> {
    await this.ask("send", () => this.wire.send(to, payload));
  }

  async stats(): Promise<ServerStats> {
    const r = (await this.ask("stats", () => this.wire.stats())) as Extract<Reply, { op: "stats" }>;
    return r.stats;
  }

  private ask(op: Op, encode: () => Encoded): Promise<Reply | null> {
    return new Promise((resolve, reject) => {
      if (!this.supports(op)) throw new NotSupportedError(op, this.protocol);
      const encoded = encode();
      // The caller's await resumes in the reactor's microtask checkpoint after this dispatch.
      this.request(op, encoded, (err, reply) => {
        if (err) reject(err);
        else resolve(reply);
      }, this.timeoutMs);
    });
  }

  // --- low level ------------------------------------------------------------------------

  /**
   * Writes an encoded request (from `client.wire`) and calls `cb` once with its reply.
   * No promise, no timer unless `timeoutMs` > 0: the bench issues millions of these.
   * Returns write()'s backpressure signal (false: the output queue is past its high-water mark).
   */
  request(op: Op, encoded: Encoded, cb: ReplyCallback, timeoutMs = 0): boolean {
    const conn = this.conn;
    if (conn === null || this.closeInfo !== null || this.closingByClient) {
      cb(this.failure ?? new ConnectionClosedError(this.closeInfo ? describeClose(this.closeInfo) : "not connected"), null);
      return false;
    }
    this.wire.beforeWrite?.(op, encoded);
    const ok = conn.write(encoded.bytes);
    this.wire.requestWritten?.(op, encoded);
    if (!encoded.expectsReply) {
      cb(null, null);
      return ok;
    }
    const p: Pending = { op, cb, timer: null, settled: false };
    if (timeoutMs > 0) {
      p.timer = setTimeout(() => {
        p.timer = null;
        if (p.settled) return;
        p.settled = true;
        p.cb(new RequestTimeoutError(op, timeoutMs), null);
      }, timeoutMs);
    }
    this.pending.push(p);
    return ok;
  }

  private takePending(): Pending | null {
    if (this.head >= this.pending.length) return null;
    const p = this.pending[this.head]!;
    this.pending[this.head++] = undefined as unknown as Pending;
    // Compact now and then rather than shift() per reply (O(n) on a deep pipeline).
    if (this.head === this.pending.length) {
      this.pending.length = 0;
      this.head = 0;
    } else if (this.head >= 1024 && this.head * 2 >= this.pending.length) {
      this.pending.splice(0, this.head);
      this.head = 0;
    }
    return p;
  }

  private settle(p: Pending, err: Error | null, reply: Reply | null): void {
    if (p.timer !== null) {
      clearTimeout(p.timer);
      p.timer = null;
    }
    if (p.settled) return;
    p.settled = true;
    p.cb(err, reply);
  }

  private onReply(r: Reply): void {
    const p = this.takePending();
    if (p === null) {
      this.onFail(new ProtocolMismatchError(`a ${this.wire.names[r.op][1]} reply arrived with no request waiting`));
      return;
    }
    if (p.op !== r.op) {
      this.onFail(new ProtocolMismatchError(`a ${this.wire.names[r.op][1]} reply arrived where ${this.wire.names[p.op][1]} was expected`));
      this.settle(p, this.failure, null);
      return;
    }
    this.settle(p, null, r);
  }

  private onServerError(code: string, message: string): void {
    const p = this.takePending();
    if (p === null) {
      this.onNotice({ code, message });
      return;
    }
    this.settle(p, new ServerError(code, message), null);
  }

  private onNotice(n: ServerNotice): void {
    this.lastNotice = n;
    this.emit("notice", n);
  }

  /** The stream cannot go on: close it (after `farewell`, flushed), failing what waits with `error`. */
  private onFail(error: Error, farewell?: Uint8Array): void {
    if (this.failure === null) this.failure = error;
    if (farewell === undefined) {
      this.conn?.close("protocol");
      return;
    }
    this.conn?.write(farewell);
    this.conn?.end("protocol");
  }

  // --- lifecycle ------------------------------------------------------------------------

  /** The reactor handler of this client's connection. */
  handler(): Handler<unknown> {
    return {
      data: (_conn, bytes) => this.wire.push(bytes),
      end: () => this.wire.finish(),
      error: (_conn, err) => {
        if (this.failure === null) this.failure = err;
      },
      close: (_conn, reason, error) => this.onClose(reason, error),
    };
  }

  attach(conn: Connection<unknown>): void {
    this.conn = conn;
  }

  private onClose(reason: CloseReason, error?: Error): void {
    const info: CloseInfo = { reason, byClient: this.closingByClient };
    const err = this.failure ?? error;
    if (err) info.error = err;
    if (this.lastNotice) info.lastNotice = this.lastNotice;
    if (this.wire.peerClose) info.peerClose = this.wire.peerClose;
    if (this.closeAnswerTimer !== null) clearTimeout(this.closeAnswerTimer);
    this.closeInfo = info;
    const why = this.failure ?? new ConnectionClosedError(describeClose(info));
    while (this.head < this.pending.length) this.settle(this.takePending()!, why, null);
    this.resolveClosed(info);
    this.emit("close", info);
  }

  /**
   * Flushes what is queued, sends FIN, resolves once closed. Requests still waiting are
   * rejected at once: their replies are not waited for. A protocol with its own close (a
   * WebSocket close frame) sends it first and ends once the server answers, or after
   * CLOSE_ANSWER_MS.
   */
  async close(): Promise<void> {
    if (this.conn === null || this.closeInfo !== null) return;
    if (this.closingByClient) return void (await this.closed);
    this.closingByClient = true;
    const why = new ConnectionClosedError("closed by the client");
    while (this.head < this.pending.length) this.settle(this.takePending()!, why, null);
    const farewell = this.wire.farewell?.() ?? null;
    if (farewell === null) this.conn.end();
    else {
      this.conn.write(farewell);
      const conn = this.conn;
      this.closeAnswerTimer = setTimeout(() => conn.end(), CLOSE_ANSWER_MS);
    }
    await this.closed;
  }

  /** Closes at once, dropping queued output. */
  destroy(): void {
    if (this.conn === null || this.closeInfo !== null) return;
    this.closingByClient = true;
    this.conn.close("local");
  }

  /** Sends HELLO / auth / the token line, as the protocol wants. */
  async handshake(token: string | undefined): Promise<void> {
    const hello = this.wire.hello(token);
    if (hello === null) return;
    const r = await new Promise<Reply | null>((resolve, reject) => {
      this.request("hello", hello, (err, reply) => (err ? reject(err) : resolve(reply)));
    });
    if (r !== null && r.op === "hello") {
      this.clientId = r.clientId;
      this.label = r.label;
    }
  }
}

export function describeClose(info: CloseInfo): string {
  if (info.byClient) return "closed by the client";
  if (info.lastNotice) return `the server said "${info.lastNotice.code}" and closed the connection`;
  if (info.peerClose && info.reason !== "protocol") return `the server closed the WebSocket with ${info.peerClose}`;
  switch (info.reason) {
    case "end":
      return "the server closed the connection";
    case "reset":
      return `the connection was reset${info.error ? ` (${info.error.message})` : ""}`;
    case "protocol":
      return info.error?.message ?? "protocol error";
    case "error":
      return `error: ${info.error?.message ?? "unknown"}`;
    default:
      // TLS failures: "tls-handshake" and the like carry OpenSSL's reason in the error.
      return info.reason.startsWith("tls-") && info.error ? `${info.error.message} (${info.reason})` : info.reason;
  }
}

const ERRNO_TEXT: Record<string, string> = {
  ECONNREFUSED: "connection refused (ECONNREFUSED; is the server running?)",
  ETIMEDOUT: "timed out (ETIMEDOUT)",
  EHOSTUNREACH: "host unreachable (EHOSTUNREACH)",
  ENETUNREACH: "network unreachable (ENETUNREACH)",
  EADDRNOTAVAIL: "address not available (EADDRNOTAVAIL)",
  ECONNRESET: "connection reset during connect (ECONNRESET)",
};

/** IP literal for `host`: literals and "localhost" as they are, names through the resolver. */
async function resolveHost(host: string): Promise<string> {
  if (host === "localhost" || isIP(host) !== 0) return host;
  const { address } = await lookup(host);
  return address;
}

/**
 * Opens a connection and completes the protocol's handshake (framed HELLO/WELCOME, json
 * auth/auth_ok, the line token). Rejects with ConnectError when the server is absent or
 * the handshake fails (ServerError as `cause` when the server refused us).
 */
export async function connect(options: ClientOptions = {}): Promise<Client> {
  const protocol = options.protocol ?? "framed";
  const host = options.host ?? "127.0.0.1";
  const port = options.port ?? DEFAULT_PORTS[protocol];
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const reactor = options.reactor ?? defaultReactor();
  const client = new Client(protocol, host, port, timeoutMs, reactor, options.path);

  let timer: ReturnType<typeof setTimeout> | null = null;
  let timedOut = false;
  const deadline = new Promise<never>((_, reject) => {
    if (timeoutMs > 0) {
      timer = setTimeout(() => {
        timedOut = true;
        reject(new ConnectError(host, port, "timeout", `no answer within ${timeoutMs} ms`));
      }, timeoutMs);
    }
  });
  deadline.catch(() => {});
  try {
    let address: string;
    try {
      address = await Promise.race([resolveHost(host), deadline]);
    } catch (e) {
      if (e instanceof ConnectError) throw e;
      throw new ConnectError(host, port, "ENOTFOUND", `cannot resolve "${host}": ${(e as Error).message}`, e);
    }
    const tls = options.tls ? tlsConnector(client.handler(), host, options.tls === true ? {} : options.tls, timeoutMs) : null;
    const opening = (async () => reactor.connect(address, port, tls?.handler ?? client.handler(), options.connection ?? {}))();
    // A connect that completes after the deadline is closed at once.
    opening.then((c) => timedOut && c.close("local"), () => {});
    let conn: Connection<unknown>;
    try {
      conn = await Promise.race([opening, deadline]);
    } catch (e) {
      if (e instanceof ConnectError) throw e;
      const code = e instanceof SyscallError ? e.code : "error";
      throw new ConnectError(host, port, code, ERRNO_TEXT[code] ?? (e as Error).message, e);
    }
    client.attach(tls?.stream() ?? conn);
    try {
      await Promise.race([client.handshake(options.authToken), deadline]);
    } catch (e) {
      client.destroy();
      if (e instanceof ConnectError) throw new ConnectError(host, port, "timeout", `no ${client.wire.names.hello[1]} within ${timeoutMs} ms; is the server speaking the ${protocol} protocol?`);
      if (e instanceof ServerError) throw new ConnectError(host, port, e.code, `the server refused the handshake: ${e.message}`, e);
      if (e instanceof ClientError) throw new ConnectError(host, port, e.code, e.message, e);
      throw e;
    }
    return client;
  } finally {
    if (timer !== null) clearTimeout(timer);
  }
}
