// serve(): the one-call API. A server is a Reactor with one listener; several listeners or
// client connections can share a reactor by passing it in.

import type { Handler } from "./stream/stream.ts";
import { Reactor, type ReactorOptions, type StopOptions } from "./reactor/reactor.ts";
import type { Listener } from "./reactor/listener.ts";
import type { ConnectionOptions } from "./stream/tcp-stream.ts";
import type { SocketAddress } from "../ffi/index.ts";

export interface ServeOptions<T> extends Partial<ConnectionOptions> {
  /** IPv4 or IPv6 literal, or "localhost". Default 127.0.0.1. */
  hostname?: string;
  /** 0 picks a free port (read it back from server.port). */
  port: number;
  handler: Handler<T>;
  /** Run on this reactor instead of a new one owned by the server. */
  reactor?: Reactor;
  reactorOptions?: ReactorOptions;
  backlog?: number;
  reusePort?: boolean;
  ipv6Only?: boolean;
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

export function serve<T = undefined>(options: ServeOptions<T>): Server {
  const owned = options.reactor === undefined;
  const reactor = options.reactor ?? new Reactor(options.reactorOptions);
  let listener: Listener<T>;
  try {
    listener = reactor.listen<T>({
      hostname: options.hostname ?? "127.0.0.1",
      port: options.port,
      handler: options.handler,
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
  } catch (e) {
    if (owned) reactor[Symbol.dispose]();
    throw e;
  }
  const finished = reactor.start().finally(() => {
    if (owned) reactor[Symbol.dispose]();
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
