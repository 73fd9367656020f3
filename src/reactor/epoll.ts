// The epoll backend. Level-triggered on purpose: a connection may stop reading before
// EAGAIN (per-event byte budget, a short read that already emptied the socket) and epoll
// reports it again on the next turn. That saves the extra read(2) -> EAGAIN per message
// that edge-triggered mode would cost (~700 ns on this VM).

import {
  libc, rc, check, epollEvent,
  EPOLL_CLOEXEC, EPOLL_CTL_ADD, EPOLL_CTL_DEL, EPOLL_CTL_MOD,
} from "../../ffi/index.ts";
import type { PollBackend } from "./backend.ts";

export class EpollBackend implements PollBackend {
  readonly epfd: number;
  readonly maxEvents: number;
  // Both buffers sit on their own ArrayBuffer and are passed as TypedArrays on every call:
  // never a cached ptr() (small JIT-managed arrays can move; BUN-FFI-NOTES "stale pointers").
  private readonly events: Uint8Array;
  private readonly words: Uint32Array;
  private readonly ctlEvent = new Uint8Array(new ArrayBuffer(16));
  private readonly ctlWords = new Uint32Array(this.ctlEvent.buffer);
  private closed = false;

  constructor(maxEvents = 256) {
    this.maxEvents = maxEvents;
    this.epfd = check("epoll_create1", libc.epoll_create1(EPOLL_CLOEXEC));
    this.events = new Uint8Array(new ArrayBuffer(maxEvents * epollEvent.size));
    this.words = new Uint32Array(this.events.buffer);
  }

  private ctl(op: number, fd: number, generation: number, interest: number): number {
    const w = this.ctlWords;
    w[epollEvent.eventsWord] = interest;
    w[epollEvent.dataLoWord] = fd;
    w[epollEvent.dataHiWord] = generation;
    return rc(libc.epoll_ctl(this.epfd, op, fd, this.ctlEvent));
  }

  add(fd: number, generation: number, interest: number): number {
    return this.ctl(EPOLL_CTL_ADD, fd, generation, interest);
  }

  modify(fd: number, generation: number, interest: number): number {
    return this.ctl(EPOLL_CTL_MOD, fd, generation, interest);
  }

  remove(fd: number): number {
    return rc(libc.epoll_ctl(this.epfd, EPOLL_CTL_DEL, fd, null));
  }

  poll(timeoutMs: number): number {
    return rc(libc.epoll_wait(this.epfd, this.events, this.maxEvents, timeoutMs));
  }

  eventFd(i: number): number {
    return this.words[i * epollEvent.words + epollEvent.dataLoWord]!;
  }

  eventGeneration(i: number): number {
    return this.words[i * epollEvent.words + epollEvent.dataHiWord]!;
  }

  eventMask(i: number): number {
    return this.words[i * epollEvent.words + epollEvent.eventsWord]!;
  }

  [Symbol.dispose](): void {
    if (this.closed) return;
    this.closed = true;
    libc.close(this.epfd);
  }
}
