// The poll backend interface: the 4 operations a reactor needs from the kernel's readiness
// API (after Redis ae's aeApi* and mio's Selector). epoll implements it today; a fake
// backend in tests or io_uring tomorrow can too.
//
// Each registration carries a token (fd, generation). The reactor bumps an fd's generation
// every time it registers that fd, so an event queued for a closed fd whose number was
// reused within the same batch carries the old generation and is recognised as stale.

export const READABLE = 0x001; // EPOLLIN
export const WRITABLE = 0x004; // EPOLLOUT
export const ERROR = 0x008; // EPOLLERR
export const HANGUP = 0x010; // EPOLLHUP

export interface PollBackend extends Disposable {
  add(fd: number, generation: number, interest: number): number;
  modify(fd: number, generation: number, interest: number): number;
  remove(fd: number): number;
  /** Waits up to timeoutMs (-1: forever) and returns the number of ready events or -errno. */
  poll(timeoutMs: number): number;
  /** Fields of the i-th ready event of the last poll. */
  eventFd(i: number): number;
  eventGeneration(i: number): number;
  eventMask(i: number): number;
}
