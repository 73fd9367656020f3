// A listening socket inside the reactor: accepts in the epoll flow, a bounded number per
// wake-up so a connection storm cannot starve established connections.

import { libc, rc, Errno, SOCK_NONBLOCK, SOCK_CLOEXEC, errorFromRc, type SocketAddress } from "../../ffi/index.ts";
import type { Handler } from "../types.ts";
import { READABLE } from "./backend.ts";
import type { ConnectionOptions } from "./connection.ts";
import { createListenSocket, localAddress, openReserveFd, setNoDelay, type Fd, type ListenOptions } from "./socket.ts";
import type { Reactor } from "./reactor.ts";
import { Timer } from "./timers.ts";

export const KIND_LISTENER = 2;

/** Accepts per wake-up (Redis: MAX_ACCEPTS_PER_CALL = 1000; we keep turns short). */
export const ACCEPTS_PER_WAKEUP = 64;

export interface ListenerConfig<T> extends ListenOptions {
  handler: Handler<T>;
  connection: ConnectionOptions;
}

export class Listener<T = unknown> implements Disposable {
  readonly kind = KIND_LISTENER;
  readonly fd: number;
  readonly generation: number;
  readonly address: SocketAddress;
  private closed = false;
  /** Accepting is paused (fd exhaustion with no reserve fd left); a timer re-arms it. */
  private paused = false;
  private readonly rearm = new Timer(() => this.resumeAccepting());
  private lastExhaustionLog = -Infinity; // performance.now() starts near 0

  constructor(readonly reactor: Reactor, readonly config: ListenerConfig<T>) {
    using stack = new DisposableStack();
    const fd: Fd = stack.use(createListenSocket(config));
    this.address = localAddress(fd.value);
    this.generation = reactor.register(this, fd.value, READABLE);
    stack.move(); // registered: the reactor owns the fd now and closes it in close()
    this.fd = fd.release();
  }

  get port(): number {
    return this.address.port;
  }

  onEvent(_mask: number): void {
    const r = this.reactor;
    for (let i = 0; i < ACCEPTS_PER_WAKEUP && !this.closed; i++) {
      // No address out-parameters: the peer address is fetched lazily if a handler asks.
      const fd = rc(libc.accept4(this.fd, null, null, SOCK_NONBLOCK | SOCK_CLOEXEC));
      if (fd >= 0) {
        setNoDelay(fd); // replies are already coalesced per turn; Nagle would only add delay
        r.adopt(fd, this.config.handler, this.config.connection);
        continue;
      }
      if (fd === -Errno.EAGAIN) return;
      if (fd === -Errno.EINTR || fd === -Errno.ECONNABORTED) continue;
      r.stats.acceptErrors++;
      if (fd === -Errno.EMFILE || fd === -Errno.ENFILE) {
        this.onFdExhaustion(fd);
        return;
      }
      r.log(`accept4 on ${this.describe()}: ${errorFromRc("accept4", fd).message}`);
      return;
    }
  }

  /**
   * Out of fds (after libuv's uv__emfile_trick): give back the reserve fd, accept the
   * waiting connection and close it at once, take the reserve again. The backlog does not
   * stall and the level-triggered listener does not spin. If the reserve is gone too,
   * stop accepting for 100 ms.
   */
  private onFdExhaustion(err: number): void {
    const r = this.reactor;
    const now = r.now;
    if (now - this.lastExhaustionLog >= 1000) {
      this.lastExhaustionLog = now;
      r.log(`accept4 on ${this.describe()}: ${errorFromRc("accept4", err).message}: out of file descriptors, refusing new connections`);
    }
    for (let i = 0; i < ACCEPTS_PER_WAKEUP; i++) {
      if (!r.releaseReserveFd()) break;
      const fd = rc(libc.accept4(this.fd, null, null, SOCK_NONBLOCK | SOCK_CLOEXEC));
      if (fd >= 0) {
        libc.close(fd);
        r.stats.closeReasons["server-full"]++;
      }
      r.takeReserveFd();
      if (fd < 0) return; // EAGAIN: backlog empty
    }
    if (!r.hasReserveFd()) {
      this.paused = true;
      r.backend.modify(this.fd, this.generation, 0);
      r.timers.schedule(this.rearm, now + 100);
    }
  }

  private resumeAccepting(): void {
    if (this.closed || !this.paused) return;
    this.paused = false;
    this.reactor.takeReserveFd();
    this.reactor.backend.modify(this.fd, this.generation, READABLE);
  }

  describe(): string {
    const a = this.address;
    return a.family === 6 ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
  }

  /** Stops accepting and closes the listening socket. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.reactor.timers.cancel(this.rearm);
    this.reactor.forget(this);
    libc.close(this.fd);
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

export { openReserveFd };
