// A listening socket served by a reactor. The driver accepts (a bounded number per wake-up)
// and hands each accepted fd here; this side decides what becomes of it and what to do when
// the process runs out of fds.

import { errorFromRc, Errno, type SocketAddress } from "../../ffi/index.ts";
import { KIND_LISTENER, READABLE, type IoListener } from "../driver/driver.ts";
import { ACCEPTS_PER_WAKEUP } from "../driver/epoll.ts";
import { createListenSocket, formatHostPort, localAddress, type Fd, type ListenOptions } from "../driver/sockets.ts";
import type { Handler } from "../stream/stream.ts";
import type { ConnectionOptions } from "../stream/tcp-stream.ts";
import type { Reactor } from "./reactor.ts";
import { Timer } from "./timers.ts";

export interface ListenerConfig<T> extends ListenOptions {
  handler: Handler<T>;
  connection: ConnectionOptions;
  /**
   * Takes each accepted fd instead of this reactor (which then owns none of them): an
   * acceptor thread handing connections to other reactors (src/workers/).
   */
  handOff?: (fd: number) => void;
}

export class Listener<T = unknown> implements IoListener, Disposable {
  declare readonly kind: typeof KIND_LISTENER;
  readonly fd: number;
  readonly address: SocketAddress;
  interest = 0;
  private closed = false;
  /** Accepting is paused (fd exhaustion with no reserve fd left); a timer re-arms it. */
  private paused = false;
  private readonly rearm = new Timer(() => this.resumeAccepting());
  private lastExhaustionLog = -Infinity; // performance.now() starts near 0

  constructor(readonly reactor: Reactor, readonly config: ListenerConfig<T>) {
    using fd: Fd = createListenSocket(config);
    this.address = localAddress(fd.value);
    this.fd = fd.value;
    reactor.register(this, READABLE);
    fd.release(); // registered: the reactor owns the fd now and closes it in close()
  }

  get port(): number {
    return this.address.port;
  }

  onAccept(fd: number): void {
    const handOff = this.config.handOff;
    if (handOff !== undefined) handOff(fd);
    else this.reactor.adopt(fd, this.config.handler, this.config.connection);
  }

  onAcceptError(err: number): void {
    if (err === -Errno.EMFILE || err === -Errno.ENFILE) this.onFdExhaustion(err);
    else this.reactor.log(`accept4 on ${this.describe()}: ${errorFromRc("accept4", err).message}`, { event: "accept_error", level: "error" });
  }

  /**
   * Out of fds: the driver sheds the waiting connections with its reserve fd (accept, close),
   * so the backlog does not stall and the level-triggered listener does not spin. If the
   * reserve is gone too, stop accepting for 100 ms.
   */
  private onFdExhaustion(err: number): void {
    const r = this.reactor;
    const now = r.now;
    if (now - this.lastExhaustionLog >= 1000) {
      this.lastExhaustionLog = now;
      r.log(`accept4 on ${this.describe()}: ${errorFromRc("accept4", err).message}: out of file descriptors, refusing new connections`, { event: "fd_exhaustion", level: "error" });
    }
    const shed = r.driver.shedPending(this.fd, ACCEPTS_PER_WAKEUP);
    if (shed > 0) r.stats.countClose("server-full", shed);
    if (shed < 0) {
      this.paused = true;
      r.driver.setInterest(this, 0);
      r.timers.schedule(this.rearm, now + 100);
    }
  }

  private resumeAccepting(): void {
    if (this.closed || !this.paused) return;
    this.paused = false;
    this.reactor.driver.setInterest(this, READABLE);
  }

  describe(): string {
    return formatHostPort(this.address.address, this.address.port);
  }

  /** Stops accepting and closes the listening socket. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.reactor.timers.cancel(this.rearm);
    this.reactor.forget(this);
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

Object.defineProperty(Listener.prototype, "kind", { value: KIND_LISTENER });
