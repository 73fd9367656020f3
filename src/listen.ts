// listen(): the TCP server API in the shape of Bun.listen. A server is a reactor with one
// listener; several listeners or client connections can share a reactor by passing it in.

import type { SocketAddress } from "../ffi/index.ts";
import type { Listener } from "./reactor/listener.ts";
import { Reactor, type ReactorOptions, type StopOptions } from "./reactor/reactor.ts";
import type { CloseReason, Handler, Stream } from "./stream/stream.ts";
import type { ConnectionOptions } from "./stream/tcp-stream.ts";
import { serverContext, tlsServerHandler, type TlsOptions } from "./tls-options.ts";

/** The `socket` handlers of listen(), as Bun.listen takes them. */
export interface SocketHandler<T = undefined> {
  open?(socket: Stream<T>): void | Promise<void>;
  /** `data` is a view valid during the call only: copy what you keep. */
  data?(socket: Stream<T>, data: Uint8Array): void | Promise<void>;
  drain?(socket: Stream<T>): void;
  /** The peer sent FIN; pending output is still flushed. */
  end?(socket: Stream<T>): void;
  /** After Bun's (socket, error) comes why it closed: "end", "reset", "idle-timeout"... */
  close?(socket: Stream<T>, error: Error | undefined, reason: CloseReason): void;
  /** A handler threw or its promise rejected; the socket closes right after. */
  error?(socket: Stream<T>, error: Error): void;
  /** The idle timeout (idleTimeoutMs) expired; without this handler the socket is closed. */
  timeout?(socket: Stream<T>): void;
  /** Stop reading while a promise returned by `data` is pending (inbound backpressure). */
  pauseWhileAsync?: boolean;
}

export interface ListenOptions<T = undefined> extends Partial<ConnectionOptions> {
  /** IPv4 or IPv6 literal, or "localhost". Default 127.0.0.1. */
  hostname?: string;
  /** 0 picks a free port (read it back from server.port). */
  port: number;
  socket: SocketHandler<T>;
  /** Each socket's initial `data` (the same value for all; build per-socket state in open). */
  data?: T;
  /** Run on this reactor instead of a new one owned by the server. */
  reactor?: Reactor;
  reactorOptions?: ReactorOptions;
  backlog?: number;
  reusePort?: boolean;
  ipv6Only?: boolean;
  /** Serve over TLS (Bun's shape: PEM strings, bytes or Bun.file(); an array adds SNI names). */
  tls?: TlsOptions | readonly TlsOptions[];
}

export interface Server extends AsyncDisposable {
  readonly hostname: string;
  readonly port: number;
  readonly address: SocketAddress;
  /** Open connections on this server's reactor. */
  readonly connections: number;
  readonly reactor: Reactor;
  readonly listener: Listener<any>;
  /** Stops accepting, flushes (unless graceful: false), closes; resolves when done. */
  stop(options?: StopOptions): Promise<void>;
  /** Settles when the reactor loop ends. */
  readonly finished: Promise<void>;
}

/** Bun.listen's handlers as the reactor's Handler table. */
export function handlerOf<T>(socket: SocketHandler<T>, initialData?: T): Handler<T> {
  const h: Handler<T> = {
    data: socket.data,
    drain: socket.drain,
    end: socket.end,
    error: socket.error,
    timeout: socket.timeout,
    pauseWhileAsync: socket.pauseWhileAsync,
    close: socket.close ? (s, reason, error) => socket.close!(s, error, reason) : undefined,
  };
  if (initialData === undefined) h.open = socket.open;
  else {
    const open = socket.open;
    h.open = (s) => {
      s.data = initialData;
      return open?.(s);
    };
  }
  return h;
}

export function listen<T = undefined>(options: ListenOptions<T>): Server {
  return serveHandler(options, handlerOf(options.socket, options.data));
}

/** The server around one listener with a reactor Handler table (what listen() and serve() build on). */
export function serveHandler<T>(options: Omit<ListenOptions<T>, "socket" | "data">, handler: Handler<T>, alpn: readonly string[] = []): Server {
  const owned = options.reactor === undefined;
  using stack = new DisposableStack(); // owns a reactor made here until the listener is open
  // TLS contexts first: a bad certificate or key throws before anything listens.
  const tls = options.tls !== undefined ? serverContext(options.tls, alpn) : null;
  if (tls !== null) stack.use(tls.ctx);
  const reactor = options.reactor ?? stack.use(new Reactor(options.reactorOptions));
  const listener = reactor.listen<T>({
    hostname: options.hostname ?? "127.0.0.1",
    port: options.port,
    handler: tls !== null ? (tlsServerHandler(handler, tls.ctx, tls.handshakeTimeoutMs) as Handler<T>) : handler,
    backlog: options.backlog,
    reusePort: options.reusePort,
    ipv6Only: options.ipv6Only,
    // Undefined fields keep their defaults; reactor.listen() checks the values.
    connection: {
      idleTimeoutMs: options.idleTimeoutMs,
      highWaterMark: options.highWaterMark,
      maxBuffered: options.maxBuffered,
      lingerMs: options.lingerMs,
      frameTimeoutMs: options.frameTimeoutMs,
    },
  });
  stack.move(); // the server owns it now: disposed when its loop ends
  const finished = reactor.start().finally(() => {
    if (owned) reactor[Symbol.dispose]();
    tls?.ctx[Symbol.dispose]();
  });
  const stop = async (opts?: StopOptions) => {
    if (owned) {
      await reactor.stop(opts);
      await finished;
    } else {
      listener.close();
    }
  };
  return {
    hostname: listener.address.address,
    port: listener.address.port,
    address: listener.address,
    get connections() {
      return reactor.connectionCount;
    },
    reactor,
    listener,
    stop,
    finished,
    [Symbol.asyncDispose]: () => stop(),
  };
}
