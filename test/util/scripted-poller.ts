// A Poller whose events are scripted by the test: the driver's seam for exact control of
// what one poll returns (fd, generation, mask), including stale events.

import { Errno } from "../../ffi/index.ts";
import type { Poller } from "../../src/driver/epoll.ts";

/** A poll backend whose events are scripted by the test; it records interest changes. */
export class ScriptedBackend implements Poller {
  readonly interest = new Map<number, { gen: number; mask: number }>();
  private readonly queue: (() => [fd: number, gen: number, mask: number][])[] = [];
  private current: [number, number, number][] = [];
  polls = 0;
  /** Poll count at which each scripted batch was handed out. */
  readonly deliveredAt: number[] = [];

  add(fd: number, generation: number, interest: number): number {
    if (this.interest.has(fd)) return -Errno.EEXIST;
    this.interest.set(fd, { gen: generation, mask: interest });
    return 0;
  }
  modify(fd: number, generation: number, interest: number): number {
    if (!this.interest.has(fd)) return -Errno.ENOENT;
    this.interest.set(fd, { gen: generation, mask: interest });
    return 0;
  }
  remove(fd: number): number {
    return this.interest.delete(fd) ? 0 : -Errno.ENOENT;
  }
  /** Queues one batch; the function runs when the reactor polls (so it sees fresh generations). */
  script(batch: () => [number, number, number][]): void {
    this.queue.push(batch);
  }
  poll(_timeoutMs: number): number {
    this.polls++;
    const next = this.queue.shift();
    this.current = next ? next() : [];
    if (next) this.deliveredAt.push(this.polls);
    return this.current.length;
  }
  eventFd(i: number): number {
    return this.current[i]![0];
  }
  eventGeneration(i: number): number {
    return this.current[i]![1];
  }
  eventMask(i: number): number {
    return this.current[i]![2];
  }
  /** close(2) removes an fd from a real epoll set; mirror that for closed fds. */
  forgetClosed(fd: number): void {
    this.interest.delete(fd);
  }
  [Symbol.dispose](): void {}
}

