// serve(): the HTTP server in the shape of Bun.serve: `fetch(req, server)` returning a
// Response or a promise of one, `routes` (exact paths, `:params`, per-method handlers,
// static Responses written as bytes), `error`, `maxRequestBodySize`, `idleTimeout` in
// seconds. HTTP/1.1 over bunpoll's reactor (src/protocols/http/).

import type { SocketAddress } from "../ffi/index.ts";
import { serveHandler } from "./listen.ts";
import { HttpApp, createHttpProtocol, type FetchHandler } from "./protocols/http/server.ts";
import type { HttpRequest } from "./protocols/http/request.ts";
import type { Routes } from "./protocols/http/routes.ts";
import type { WebSocketHandler } from "./protocols/ws/socket.ts";
import type { TlsOptions } from "./tls-options.ts";

export { SendStatus, type ServerWebSocket, type WebSocketHandler } from "./protocols/ws/socket.ts";
import type { Reactor, ReactorOptions, StopOptions } from "./reactor/reactor.ts";

export type { HttpRequest } from "./protocols/http/request.ts";
export type { Routes, RouteHandler, MethodTable } from "./protocols/http/routes.ts";

export interface ServeOptions {
  /** IPv4 or IPv6 literal, or "localhost". Default 127.0.0.1. */
  hostname?: string;
  /** 0 picks a free port (read it back from server.port). Default 3000, as Bun. */
  port?: number;
  fetch?: FetchHandler;
  routes?: Routes;
  /** What `server.upgrade(req)` hands a connection to (Bun.serve's `websocket`). */
  websocket?: WebSocketHandler<any>;
  /** Turns an error a handler threw into a response (default: 500). */
  error?: (error: Error) => Response | Promise<Response>;
  /** Largest request body, bytes (413 past it). Default 128 MiB, as Bun. */
  maxRequestBodySize?: number;
  /** Seconds a keep-alive connection may stay silent (default 10, as Bun; 0: never). */
  idleTimeout?: number;
  /** Seconds a request body may take to arrive after its head (408 past it; default 0: no limit). */
  bodyTimeout?: number;
  /** Seconds a started request head may take to arrive (slowloris; default 10; 0: never). */
  headerTimeout?: number;
  /** Longest request line / header section, bytes (414 / 431 past them). */
  maxRequestLine?: number;
  maxHeaderBytes?: number;
  /** Run on this reactor instead of a new one owned by the server. */
  reactor?: Reactor;
  reactorOptions?: ReactorOptions;
  /** SO_REUSEPORT: several servers (one per worker thread) may listen on one port. */
  reusePort?: boolean;
  /** https and wss (Bun's shape: PEM strings, bytes or Bun.file(); an array adds SNI names). ALPN: http/1.1. */
  tls?: TlsOptions | readonly TlsOptions[];
}

export interface HttpServer extends AsyncDisposable {
  readonly hostname: string;
  readonly port: number;
  readonly url: URL;
  readonly address: SocketAddress;
  /** Open connections on this server's reactor. */
  readonly connections: number;
  readonly reactor: Reactor;
  /** A message to every WebSocket subscribed to topic (ws.subscribe); returns the recipients. */
  publish(topic: string, data: string | Uint8Array): number;
  subscriberCount(topic: string): number;
  /** Makes the request's connection a WebSocket (see `websocket`); true when it did. */
  upgrade(req: HttpRequest, options?: { data?: unknown; headers?: Record<string, string> }): boolean;
  /** The client's address, as Bun's server.requestIP(req). */
  requestIP(req: HttpRequest): { address: string; port: number; family: "IPv4" | "IPv6" } | null;
  /** Stops accepting; answers what arrived (Connection: close), then closes; resolves when done. */
  stop(options?: StopOptions): Promise<void>;
  readonly finished: Promise<void>;
}

export function serve(options: ServeOptions): HttpServer {
  let stopping = false;
  for (const [k, v] of [["idleTimeout", options.idleTimeout], ["headerTimeout", options.headerTimeout], ["maxRequestBodySize", options.maxRequestBodySize], ["bodyTimeout", options.bodyTimeout]] as const) {
    if (v !== undefined && (typeof v !== "number" || !Number.isFinite(v) || v < 0)) throw new RangeError(`${k} must be a finite number >= 0, got ${String(v)}`);
  }
  const app = new HttpApp({
    fetch: options.fetch,
    routes: options.routes,
    error: options.error,
    limits: definedOnly({
      maxBodySize: options.maxRequestBodySize,
      maxRequestLine: options.maxRequestLine,
      maxHeaderBytes: options.maxHeaderBytes,
    }),
    shuttingDown: () => stopping,
    websocket: options.websocket,
    bodyTimeoutMs: (options.bodyTimeout ?? 0) * 1000,
    tls: options.tls !== undefined,
  });
  const server = serveHandler(
    {
      hostname: options.hostname,
      port: options.port ?? 3000,
      reactor: options.reactor,
      reactorOptions: options.reactorOptions,
      reusePort: options.reusePort,
      idleTimeoutMs: (options.idleTimeout ?? 10) * 1000,
      frameTimeoutMs: (options.headerTimeout ?? 10) * 1000,
      tls: options.tls,
    },
    createHttpProtocol(app),
    ["http/1.1"],
  );
  const host = server.address.family === 6 ? `[${server.address.address}]` : server.address.address;
  return {
    hostname: server.hostname,
    port: server.port,
    url: new URL(`${options.tls !== undefined ? "https" : "http"}://${host}:${server.port}/`),
    address: server.address,
    get connections() {
      return server.connections;
    },
    reactor: server.reactor,
    requestIP: (req) => app.requestIP(req),
    upgrade: (req, opts) => app.upgrade(req, opts),
    publish: (topic, data) => app.publish(topic, data),
    subscriberCount: (topic) => app.subscriberCount(topic),
    stop(opts?: StopOptions) {
      stopping = true;
      return server.stop(opts);
    },
    finished: server.finished,
    [Symbol.asyncDispose]() {
      stopping = true;
      return server.stop();
    },
  };
}

/** The fields that are set (an undefined option keeps the default). */
function definedOnly<T extends Record<string, number | undefined>>(o: T): Partial<Record<keyof T, number>> {
  const out: Partial<Record<keyof T, number>> = {};
  for (const k of Object.keys(o) as (keyof T)[]) if (o[k] !== undefined) out[k] = o[k] as number;
  return out;
}
