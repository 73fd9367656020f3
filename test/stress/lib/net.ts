// node:net client helpers for the stress clients. Request/response clients for the framed
// and json protocols: replies come back in request order, and broadcasts / direct
// messages from other clients may arrive in between (they are passed to `onPush`).

import net from "node:net";
import { FrameReader, Msg, jsonFrame, frame, type JsonStats } from "./wire.ts";

export const HOST = "127.0.0.1";

export interface ConnectOptions {
  host?: string;
  /** Source address, e.g. "127.0.0.7": spreads connections over several 4-tuples. */
  localAddress?: string;
  timeoutMs?: number;
  allowHalfOpen?: boolean;
}

export function connectSocket(port: number, opts: ConnectOptions = {}): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({
      port,
      host: opts.host ?? HOST,
      ...(opts.localAddress !== undefined && { localAddress: opts.localAddress }),
      allowHalfOpen: opts.allowHalfOpen ?? false,
    });
    s.setNoDelay(true);
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`connect to ${port} timed out after ${opts.timeoutMs ?? 10_000} ms`));
    }, opts.timeoutMs ?? 10_000);
    const onError = (e: Error) => {
      clearTimeout(timer);
      s.destroy();
      reject(e);
    };
    s.once("error", onError);
    s.once("connect", () => {
      clearTimeout(timer);
      s.off("error", onError);
      resolve(s);
    });
  });
}

interface Pending<T> {
  resolve: (v: T) => void;
  reject: (e: Error) => void;
  timer: ReturnType<typeof setTimeout> | null;
}

/** How a connection ended, as the client saw it. */
export type EndKind = "open" | "eof" | "reset" | "error" | "local";

abstract class RequestClient<Reply> {
  protected readonly pending: Pending<Reply>[] = [];
  ended: EndKind = "open";
  endError = "";
  onPush: (reply: Reply) => void = () => {};
  onEnd: (kind: EndKind) => void = () => {};

  constructor(readonly socket: net.Socket) {
    socket.on("data", (chunk: Buffer) => {
      try {
        this.push(chunk);
      } catch (e) {
        this.finish("error", (e as Error).message);
        socket.destroy();
      }
    });
    socket.on("end", () => this.finish("eof", ""));
    socket.on("error", (e: NodeJS.ErrnoException) => this.finish(e.code === "ECONNRESET" || e.code === "EPIPE" ? "reset" : "error", e.message));
    socket.on("close", () => this.finish("local", ""));
  }

  protected abstract push(chunk: Buffer): void;
  protected abstract isPush(reply: Reply): boolean;

  protected deliver(reply: Reply): void {
    if (this.isPush(reply)) {
      this.onPush(reply);
      return;
    }
    const p = this.pending.shift();
    if (p === undefined) {
      this.onPush(reply);
      return;
    }
    if (p.timer !== null) clearTimeout(p.timer);
    p.resolve(reply);
  }

  protected expect(timeoutMs: number, what: string): Promise<Reply> {
    if (this.ended !== "open") return Promise.reject(new Error(`${what}: connection already ended (${this.ended})`));
    return new Promise<Reply>((resolve, reject) => {
      const p: Pending<Reply> = { resolve, reject, timer: null };
      if (timeoutMs > 0) {
        p.timer = setTimeout(() => {
          const i = this.pending.indexOf(p);
          if (i >= 0) this.pending.splice(i, 1);
          reject(new Error(`${what}: no reply within ${timeoutMs} ms`));
          // The reply order is lost now: this connection is no longer usable.
          this.socket.destroy();
        }, timeoutMs);
      }
      this.pending.push(p);
    });
  }

  private finish(kind: EndKind, message: string): void {
    if (this.ended !== "open") return;
    this.ended = kind;
    this.endError = message;
    for (const p of this.pending.splice(0)) {
      if (p.timer !== null) clearTimeout(p.timer);
      p.reject(new Error(`connection ended (${kind}${message ? `: ${message}` : ""}) with a request outstanding`));
    }
    this.onEnd(kind);
  }

  close(): void {
    this.socket.destroy();
  }
}

export interface FramedReply {
  type: number;
  body: Buffer;
}

export class FramedClient extends RequestClient<FramedReply> {
  private readonly reader = new FrameReader((type, body) => this.deliver({ type, body: Buffer.from(body) }));
  protected push(chunk: Buffer): void {
    this.reader.push(chunk);
  }
  protected isPush(r: FramedReply): boolean {
    return r.type === Msg.BROADCAST_MSG || r.type === Msg.DIRECT_MSG;
  }
  /** Sends one frame and resolves with its reply. */
  request(type: number, body?: Uint8Array, timeoutMs = 10_000): Promise<FramedReply> {
    const p = this.expect(timeoutMs, `framed request 0x${type.toString(16)}`);
    this.socket.write(frame(type, body));
    return p;
  }
  static async connect(port: number, opts?: ConnectOptions): Promise<FramedClient> {
    return new FramedClient(await connectSocket(port, opts));
  }
}

export type JsonReply = Record<string, unknown> & { type: string };

export class JsonClient extends RequestClient<JsonReply> {
  private readonly reader = new FrameReader((_t, body) => this.deliver(JSON.parse(body.toString("utf8")) as JsonReply), "json");
  protected push(chunk: Buffer): void {
    this.reader.push(chunk);
  }
  protected isPush(r: JsonReply): boolean {
    return r.type === "broadcast" || r.type === "message";
  }
  request(value: object, timeoutMs = 10_000): Promise<JsonReply> {
    const p = this.expect(timeoutMs, `json request ${JSON.stringify(value).slice(0, 60)}`);
    this.socket.write(jsonFrame(value));
    return p;
  }
  static async connect(port: number, opts?: ConnectOptions): Promise<JsonClient> {
    return new JsonClient(await connectSocket(port, opts));
  }
}

/** One `get_stats` over a fresh json connection, closed afterwards. */
export async function jsonStats(port: number, timeoutMs = 10_000): Promise<JsonStats> {
  const c = await JsonClient.connect(port, { timeoutMs });
  try {
    const r = await c.request({ type: "get_stats" }, timeoutMs);
    if (r.type !== "server_stats") throw new Error(`get_stats answered ${JSON.stringify(r).slice(0, 200)}`);
    return r as unknown as JsonStats;
  } finally {
    c.socket.end(); // our FIN first: the server sees EOF and closes its side
  }
}

/**
 * Raw echo client, one request at a time: `request` sends bytes and resolves with the next
 * as many bytes the server sends back. An echo connection is no hub member: it never
 * receives broadcasts, so its round trip is the server loop's responsiveness alone.
 */
export class EchoClient {
  ended: EndKind = "open";
  endError = "";
  private buf: Buffer = Buffer.alloc(0);
  private waiter: { want: number; resolve: (b: Buffer) => void; reject: (e: Error) => void; timer: ReturnType<typeof setTimeout> } | null = null;

  constructor(readonly socket: net.Socket) {
    socket.on("data", (chunk: Buffer) => {
      this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
      const w = this.waiter;
      if (w !== null && this.buf.length >= w.want) {
        this.waiter = null;
        clearTimeout(w.timer);
        const out = Buffer.from(this.buf.subarray(0, w.want));
        this.buf = this.buf.subarray(w.want);
        w.resolve(out);
      }
    });
    socket.on("end", () => this.finish("eof", ""));
    socket.on("error", (e: NodeJS.ErrnoException) => this.finish(e.code === "ECONNRESET" || e.code === "EPIPE" ? "reset" : "error", e.message));
    socket.on("close", () => this.finish("local", ""));
  }

  request(bytes: Uint8Array, timeoutMs = 10_000): Promise<Buffer> {
    if (this.ended !== "open") return Promise.reject(new Error(`echo request: connection already ended (${this.ended})`));
    if (this.waiter !== null) return Promise.reject(new Error("echo request: one at a time"));
    const p = new Promise<Buffer>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = null;
        reject(new Error(`echo request: no reply within ${timeoutMs} ms`));
        this.socket.destroy();
      }, timeoutMs);
      this.waiter = { want: bytes.length, resolve, reject, timer };
    });
    this.socket.write(bytes);
    return p;
  }

  private finish(kind: EndKind, message: string): void {
    if (this.ended !== "open") return;
    this.ended = kind;
    this.endError = message;
    const w = this.waiter;
    this.waiter = null;
    if (w !== null) {
      clearTimeout(w.timer);
      w.reject(new Error(`connection ended (${kind}${message ? `: ${message}` : ""}) with a request outstanding`));
    }
  }

  close(): void {
    this.socket.destroy();
  }

  static async connect(port: number, opts?: ConnectOptions): Promise<EchoClient> {
    return new EchoClient(await connectSocket(port, opts));
  }
}
