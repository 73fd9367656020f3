// What the server CLI serves, built from its flags: the protocol context (hub, stats), one
// reactor and its listeners. The main thread builds it once with one worker; with several,
// each Worker builds its own from the same (structured-clonable) config (src/workers/).

import type { FlagValue } from "./args.ts";
import { processLog as log } from "../log.ts";
import { Reactor, type ReactorOptions } from "../reactor/reactor.ts";
import type { Listener } from "../reactor/listener.ts";
import { SyscallError, formatHostPort } from "../../ffi/index.ts";
import type { Handler } from "../stream/stream.ts";
import { connectionOptions, type ConnectionOptions } from "../stream/tcp-stream.ts";
import { PROTOCOLS, type ProtocolName } from "../protocols/registry.ts";
import { createProtocolContext, type ProtocolContext } from "../protocols/context.ts";
import { fdLimit } from "../driver/sockets.ts";
import { builtinApp } from "../protocols/http/app.ts";
import { createHttpProtocol } from "../protocols/http/server.ts";
import { staticFiles } from "../protocols/http/static.ts";
import { tlsFromFlags, tlsHandler, type TlsConfig } from "./tls.ts";

export interface ListenSpec {
  protocol: ProtocolName;
  host: string;
  port: number;
  /** PROTO+tls: the listener speaks TLS (the --tls-* flags). */
  tls?: boolean;
}

/** Everything a serving thread needs, as plain data (it crosses to Workers). */
export interface ServingConfig {
  specs: ListenSpec[];
  flags: Record<string, FlagValue | undefined>;
  authToken?: string;
}

export interface Serving {
  ctx: ProtocolContext;
  reactor: Reactor;
  listeners: { listener: Listener<any>; spec: ListenSpec }[];
  /** Per spec, in order: its handler table and connection options (what an accepted fd gets). */
  handlers: { handler: Handler<any>; connection: ConnectionOptions; spec: ListenSpec }[];
  /** The TLS contexts of this thread's listeners (SIGHUP reloads them), or null. */
  tls: TlsConfig | null;
}

/** A listener could not open: which address, and why. */
export class ListenFailure extends Error {
  constructor(readonly address: string, readonly code: string | undefined, message: string) {
    super(message);
  }
  /** One line for the log: "cannot listen on ADDR: address already in use (EADDRINUSE)". */
  static of(address: string, e: unknown): ListenFailure {
    if (e instanceof SyscallError && e.code === "EADDRINUSE") {
      return new ListenFailure(address, e.code, `cannot listen on ${address}: address already in use (EADDRINUSE)`);
    }
    return new ListenFailure(address, e instanceof SyscallError ? e.code : undefined, `cannot listen on ${address}: ${(e as Error).message}`);
  }
}

/** The connection limit: --max-conns, or below the fd limit with headroom. */
export function maxConnections(flags: ServingConfig["flags"]): number {
  // Headroom below the fd limit: epoll, eventfd, the EMFILE reserve fd, stdio and Bun's own.
  return (flags["max-conns"] as number | undefined) ?? Math.max(16, fdLimit() - 64);
}

/**
 * Opens the context, the reactor and every listener (all or none: on a failure everything
 * opened is closed and a ListenFailure thrown). `reactor` adds to the reactor's options
 * (a worker's index, shared counters, its turn hook); `reusePort` lets every worker bind.
 */
export function openServing(
  cfg: ServingConfig,
  reactor: Partial<ReactorOptions> = {},
  reusePort = false,
  setup?: (ctx: ProtocolContext) => void,
  /** False: build the handlers but open no listener (another thread accepts, --balance acceptor). */
  listen = true,
): Serving {
  const flags = cfg.flags;
  const rate = flags["rate-limit"] as number;
  const ctx = createProtocolContext({
    options: {
      maxFrame: flags["max-frame"] as number | undefined,
      maxLine: flags["max-line"] as number,
      authToken: cfg.authToken || undefined,
      rateLimit: rate > 0 ? { messagesPerSecond: rate } : undefined,
    },
    stats: { enabled: flags.stats as boolean },
  });
  setup?.(ctx);
  const files = flags.static !== undefined ? staticFiles(flags.static as string) : undefined;
  const r = new Reactor({
    maxConnections: maxConnections(flags),
    busyPollUs: flags["busy-poll"] as number,
    traceLatency: flags["trace-latency"] as boolean,
    log: log.component,
    ...reactor,
  });
  ctx.addReactor(r.stats);
  const connection = connectionOptions({
    idleTimeoutMs: (flags["idle-timeout"] as number) * 1000,
    frameTimeoutMs: (flags["frame-timeout"] as number) * 1000,
    highWaterMark: flags["high-water"] as number,
    maxBuffered: flags["max-buffered"] as number,
  });
  // Each thread builds its own TLS contexts from the files (an SSL_CTX is used by one thread).
  const tls = cfg.specs.some((s) => s.tls) ? tlsFromFlags(flags, true) : null;
  const listeners: Serving["listeners"] = [];
  const handlers: Serving["handlers"] = [];
  for (const spec of cfg.specs) {
    try {
      const handler: Handler<any> = spec.protocol === "http"
        ? createHttpProtocol(builtinApp(ctx, undefined, {
          files,
          limits: {
            maxBodySize: flags["max-body"] as number,
            maxRequestLine: flags["max-request-line"] as number,
            maxHeaderBytes: flags["max-header-bytes"] as number,
          },
          bodyTimeoutMs: (flags["body-timeout"] as number) * 1000,
          wsOrigins: flags["ws-origin"] as string[],
          tls: spec.tls,
        }))
        : PROTOCOLS[spec.protocol].create(ctx);
      const served = spec.tls && tls !== null ? tlsHandler(handler, tls, tls.context(spec.protocol === "http" ? ["http/1.1"] : [])) : handler;
      // Each listener's streams count their bytes into their protocol's counters (/metrics).
      const conn = { ...connection, traffic: ctx.trafficOf(spec.protocol) };
      handlers.push({ handler: served, connection: conn, spec });
      if (listen) listeners.push({ listener: r.listen({ hostname: spec.host, port: spec.port, handler: served, connection: conn, reusePort }), spec });
    } catch (e) {
      r[Symbol.dispose]();
      throw ListenFailure.of(formatHostPort(spec.host, spec.port), e);
    }
  }
  return { ctx, reactor: r, listeners, handlers, tls };
}
