// The epoll driver: the only place in src/ that calls libc for data-path I/O (with
// sockets.ts, which sets sockets up). Level-triggered on purpose: a stream may stop reading
// before EAGAIN (a per-event byte budget, a short read that already emptied the socket) and
// epoll reports it again on the next turn. That saves the read(2) -> EAGAIN per message
// that edge-triggered mode would cost.
//
// Dispatch goes through a table indexed by fd (no Map), and every registration carries a
// generation in epoll_event.data next to the fd: an event queued for an fd that was closed
// and reused within the same batch carries the old generation and is dropped.

import { ptr, type Pointer } from "bun:ffi";
import {
  libc, rc, check, errorFromRc, epollEvent, Errno, IOVEC_WORDS, MSGHDR_SIZE, msghdr, MSG_NOSIGNAL, MSG_MORE, SHUT_WR,
  EPOLL_CLOEXEC, EPOLL_CTL_ADD, EPOLL_CTL_MOD, EFD_NONBLOCK, EFD_CLOEXEC, SOCK_NONBLOCK, SOCK_CLOEXEC,
} from "../../ffi/index.ts";
import { setReceiveView, setWord64, type WriteQueue } from "../buffers/write-queue.ts";
import {
  ERROR, HANGUP, KIND_LISTENER, KIND_STREAM, KIND_WAKE, READABLE, ReadNext, WRITABLE,
  type Driver, type IoCounters, type IoEntry, type IoListener, type IoStream,
} from "./driver.ts";
import { closeFd, openReserveFd, pendingSocketError, setNoDelay } from "./sockets.ts";

/** The kernel's readiness API as the driver needs it: a seam for a scripted poller in tests. */
export interface Poller extends Disposable {
  add(fd: number, generation: number, interest: number): number;
  modify(fd: number, generation: number, interest: number): number;
  /** Waits up to timeoutMs (-1: forever) and returns the number of ready events or -errno. */
  poll(timeoutMs: number): number;
  /** Fields of the i-th ready event of the last poll. */
  eventFd(i: number): number;
  eventGeneration(i: number): number;
  eventMask(i: number): number;
}

export class EpollPoller implements Poller {
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

/** Accepts per wake-up (Redis: MAX_ACCEPTS_PER_CALL = 1000; we keep turns short). */
export const ACCEPTS_PER_WAKEUP = 64;
/** iovecs per sendmsg. Far below IOV_MAX (1024); what is left goes in the next send. */
const MAX_IOV = 64;

// Scratch for sendmsg, shared by every queue of the thread (a send never nests).
const iov = new Uint32Array(new ArrayBuffer(MAX_IOV * IOVEC_WORDS * 4));
const msg = new Uint32Array(new ArrayBuffer(MSGHDR_SIZE));
setWord64(msg, msghdr.iovWord, ptr(iov));
const msgPtr = ptr(msg);

/**
 * One send of everything `q` holds: send(2) for one contiguous range, sendmsg(2) (a gather
 * send) when shared segments are queued, sendWithFile when a file range is. Consumes what the kernel took; returns it, or
 * -errno. MSG_NOSIGNAL: a peer that went away gives EPIPE instead of killing the process.
 */
export function sendQueue(fd: number, q: WriteQueue): number {
  let r: number;
  if (q.contiguous) {
    const n = q.contiguousLength;
    if (n === 0) return 0;
    r = rc(libc.send(fd, q.contiguousAddress as Pointer, n, MSG_NOSIGNAL));
  } else if (q.hasFile) {
    return sendWithFile(fd, q);
  } else {
    const count = q.exportIov(iov, MAX_IOV);
    if (count === 1) {
      // One shared range and nothing else (a fan-out recipient's usual turn): plain send.
      r = rc(libc.send(fd, (iov[0]! + iov[1]! * 0x1_0000_0000) as Pointer, iov[2]!, MSG_NOSIGNAL));
    } else {
      setWord64(msg, msghdr.iovLenWord, count);
      r = rc(libc.sendmsg(fd, msgPtr as Pointer, MSG_NOSIGNAL));
    }
  }
  if (r > 0) q.consume(r);
  return r;
}

/** sendfile's off_t, in and out (two words, low first). */
const fileOffset = new Uint32Array(new ArrayBuffer(8));
/** The most sendfile moves in one call (Linux's own cap on a single transfer). */
const SENDFILE_MAX = 0x7fff_f000;

/**
 * A queue holding a file range: the memory before it with send/sendmsg (MSG_MORE: its
 * header and the file's first bytes share segments), then, if all of that went, the range
 * with sendfile(2). At most two syscalls; what is left waits for WRITABLE like any rest.
 * Returns the bytes taken (consumed), or -errno when nothing was. A file that ended before
 * the range did (truncated since it was opened) is -EIO: its response can never complete.
 */
function sendWithFile(fd: number, q: WriteQueue): number {
  let sent = 0;
  const count = q.exportIovBeforeFile(iov, MAX_IOV);
  if (count > 0) {
    const want = q.exportedBytes;
    const flags = MSG_NOSIGNAL | MSG_MORE;
    let r: number;
    if (count === 1) r = rc(libc.send(fd, (iov[0]! + iov[1]! * 0x1_0000_0000) as Pointer, iov[2]!, flags));
    else {
      setWord64(msg, msghdr.iovLenWord, count);
      r = rc(libc.sendmsg(fd, msgPtr as Pointer, flags));
    }
    if (r <= 0) return r;
    q.consume(r);
    if (r < want) return r;
    sent = r;
  }
  const head = q.fileHead();
  if (head === null) return sent; // more memory first (past MAX_IOV): the next send
  setWord64(fileOffset, 0, head.start);
  const n = rc(libc.sendfile(fd, head.file.fd, fileOffset, Math.min(head.end - head.start, SENDFILE_MAX)));
  if (n > 0) {
    q.consume(n);
    return sent + n;
  }
  if (sent > 0) return sent; // EAGAIN, or an error the next send reports
  return n === 0 ? -Errno.EIO : n;
}

const wakeValue = new BigUint64Array(new ArrayBuffer(8));
wakeValue[0] = 1n;

/** Writes a driver's wake eventfd, possibly one polled by another thread. */
export function wakeEventFd(fd: number): void {
  libc.write(fd, wakeValue, 8);
}

export interface EpollDriverOptions {
  /** Size of the one receive buffer shared by every stream of this driver. */
  recvBufferSize?: number;
  /** Max bytes read from one stream per readiness event (fairness). */
  readBudget?: number;
  /** Max events per epoll_wait. */
  maxEvents?: number;
  /** Initial size of the fd-indexed tables (they grow by doubling). */
  fdCapacity?: number;
  /** A scripted poller for tests; default epoll. */
  poller?: Poller;
}

interface WakeEntry {
  readonly kind: typeof KIND_WAKE;
  readonly fd: number;
  interest: number;
}

export class EpollDriver implements Driver {
  readonly poller: Poller;
  readonly wakeFd: number;
  readonly readBudget: number;
  /** The shared receive buffer. Own ArrayBuffer: its address never moves. */
  readonly recvBuffer: Uint8Array;
  private readonly recvPtr: number;
  /** The last view of recvBuffer[0, n) handed to onData, reused while n repeats. */
  private recvView: Uint8Array;
  private entries: (IoEntry | WakeEntry | undefined)[] = [];
  private generations: Uint32Array;
  private readonly wakeBuf = new BigUint64Array(new ArrayBuffer(8));
  private reserveFd = -1;
  private disposed = false;

  constructor(private readonly counters: IoCounters, options: EpollDriverOptions = {}) {
    this.readBudget = options.readBudget ?? 1024 * 1024;
    this.generations = new Uint32Array(options.fdCapacity ?? 1024);
    using stack = new DisposableStack();
    this.poller = stack.use(options.poller ?? new EpollPoller(options.maxEvents ?? 256));
    this.recvBuffer = new Uint8Array(new ArrayBuffer(options.recvBufferSize ?? 256 * 1024));
    this.recvView = this.recvBuffer.subarray(0, 0);
    this.recvPtr = ptr(this.recvBuffer);
    const wakeFd = check("eventfd", libc.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    stack.defer(() => libc.close(wakeFd));
    this.wakeFd = wakeFd;
    // The wake fd goes through attach() like any entry, so its generation is stored however
    // high its number is (the table grows).
    this.attachEntry({ kind: KIND_WAKE, fd: wakeFd, interest: 0 }, READABLE);
    this.reserveFd = openReserveFd();
    stack.move(); // constructed: [Symbol.dispose] owns the poller, the wake fd and the reserve fd
  }

  /** The fds the driver itself holds (the poll set, the wake eventfd, the EMFILE reserve). */
  ownFds(): number[] {
    const out = [this.wakeFd];
    if (this.poller instanceof EpollPoller) out.push(this.poller.epfd);
    if (this.reserveFd >= 0) out.push(this.reserveFd);
    return out;
  }

  // --- registration ---------------------------------------------------------------------

  attach(entry: IoEntry, interest: number): void {
    this.attachEntry(entry, interest);
  }

  private attachEntry(entry: IoEntry | WakeEntry, interest: number): void {
    const fd = entry.fd;
    if (fd >= this.generations.length) {
      let size = this.generations.length * 2;
      while (size <= fd) size *= 2;
      const g = new Uint32Array(size);
      g.set(this.generations);
      this.generations = g;
    }
    const gen = (this.generations[fd]! + 1) >>> 0;
    this.generations[fd] = gen;
    const r = this.poller.add(fd, gen, interest);
    if (r < 0) throw errorFromRc("epoll_ctl", r, `fd ${fd}`);
    entry.interest = interest;
    this.entries[fd] = entry;
  }

  /** The registered entries of one kind (shutdown paths only: it scans the table). */
  entriesOfKind(kind: number): IoEntry[] {
    const out: IoEntry[] = [];
    for (const e of this.entries) if (e !== undefined && e.kind === kind) out.push(e as IoEntry);
    return out;
  }

  /** The generation fd is registered with (tests, diagnostics). */
  generationOf(fd: number): number {
    return this.generations[fd]!;
  }

  setInterest(entry: IoEntry, interest: number): number {
    if (interest === entry.interest) return 0;
    entry.interest = interest;
    return this.poller.modify(entry.fd, this.generations[entry.fd]!, interest);
  }

  close(entry: IoEntry): void {
    const fd = entry.fd;
    if (this.entries[fd] === entry) this.entries[fd] = undefined;
    // close(2) also removes the fd from the epoll set (we never dup it): no EPOLL_CTL_DEL.
    libc.close(fd);
  }

  closeFd(fd: number): void {
    closeFd(fd);
  }

  // --- I/O ------------------------------------------------------------------------------

  send(fd: number, queue: WriteQueue): number {
    const r = sendQueue(fd, queue);
    this.counters.writeCalls++;
    if (r > 0) this.counters.bytesOut += r;
    return r;
  }

  shutdownWrite(fd: number): number {
    return rc(libc.shutdown(fd, SHUT_WR));
  }

  socketError(fd: number): number {
    return pendingSocketError(fd);
  }

  /**
   * recvBuffer[0, n) as a view for onData. subarray() allocates a view per call; reads of
   * one size repeat (a ping-pong client, a pipelining client's batches), so the last view
   * is reused when the length matches.
   */
  received(n: number): Uint8Array {
    let v = this.recvView;
    if (v.length !== n) this.recvView = v = this.recvBuffer.subarray(0, n);
    setReceiveView(v, this.recvPtr); // several drivers may share the thread: set every time
    return v;
  }

  readNow(s: IoStream): void {
    this.readReady(s);
  }

  /** Level-triggered read path: recv into the one receive buffer, bounded by readBudget. */
  private readReady(s: IoStream): void {
    const buf = this.recvBuffer;
    const fd = s.fd;
    let budget = this.readBudget;
    for (;;) {
      const n = rc(libc.recv(fd, buf, buf.length, 0));
      if (n > 0) {
        this.counters.bytesIn += n;
        this.counters.readCalls++;
        const next = s.onData(this.received(n));
        if (next === ReadNext.Stop) return;
        // A short read emptied the socket (level-triggered: epoll says if more comes).
        if (n < buf.length && next !== ReadNext.ToEmpty) return;
        budget -= n;
        if (budget <= 0) return;
        continue;
      }
      if (n === 0) return s.onEnd();
      if (n === -Errno.EAGAIN) return s.onEmpty();
      if (n === -Errno.EINTR) continue;
      return s.onReadError(n);
    }
  }

  /** Bounded accepts per wake-up, so a connection storm cannot starve established streams. */
  /** Accepts what waits in a listener's backlog now, up to max (a graceful stop takes them in). */
  acceptNow(l: IoListener, max: number): void {
    this.acceptReady(l, max);
  }

  private acceptReady(l: IoListener, max = ACCEPTS_PER_WAKEUP): void {
    const lfd = l.fd;
    for (let i = 0; i < max && this.entries[lfd] === l; i++) {
      // No address out-parameters: the peer address is fetched lazily if a handler asks.
      const fd = rc(libc.accept4(lfd, null, null, SOCK_NONBLOCK | SOCK_CLOEXEC));
      if (fd >= 0) {
        setNoDelay(fd); // replies are already coalesced per turn; Nagle would only add delay
        l.onAccept(fd);
        continue;
      }
      if (fd === -Errno.EAGAIN) return;
      if (fd === -Errno.EINTR || fd === -Errno.ECONNABORTED) continue;
      this.counters.acceptErrors++;
      l.onAcceptError(fd);
      return;
    }
  }

  /**
   * Out of fds (after libuv's uv__emfile_trick): give back the reserve fd, accept the
   * waiting connection and close it at once, take the reserve again.
   */
  shedPending(listenFd: number, max: number): number {
    if (this.reserveFd < 0) this.reserveFd = openReserveFd();
    let shed = 0;
    for (let i = 0; i < max; i++) {
      if (this.reserveFd < 0) break;
      libc.close(this.reserveFd);
      this.reserveFd = -1;
      const fd = rc(libc.accept4(listenFd, null, null, SOCK_NONBLOCK | SOCK_CLOEXEC));
      if (fd >= 0) {
        libc.close(fd);
        shed++;
      }
      this.reserveFd = openReserveFd();
      if (fd < 0) return shed; // EAGAIN: backlog empty
    }
    if (this.reserveFd < 0) this.reserveFd = openReserveFd();
    return this.reserveFd < 0 ? -1 : shed;
  }

  // --- polling ----------------------------------------------------------------------------

  poll(timeoutMs: number): number {
    return this.poller.poll(timeoutMs);
  }

  dispatch(n: number): void {
    const p = this.poller;
    for (let i = 0; i < n; i++) {
      const fd = p.eventFd(i);
      const e = this.entries[fd];
      // Stale-event guard: fd closed in this batch (undefined) or closed and reused (its
      // generation moved on). The table is read afresh for every event: an attach() during
      // this batch may have replaced it with a larger one.
      if (e === undefined || this.generations[fd] !== p.eventGeneration(i)) continue;
      const mask = p.eventMask(i);
      if (e.kind === KIND_STREAM) this.streamEvent(e, mask);
      else if (e.kind === KIND_LISTENER) this.acceptReady(e);
      else this.drainWake();
    }
  }

  private streamEvent(s: IoStream, mask: number): void {
    const fd = s.fd;
    if (mask & (READABLE | ERROR | HANGUP) && s.interest & READABLE) this.readReady(s);
    if (mask & WRITABLE && this.entries[fd] === s) s.onWritable();
    // Reading was off (paused, half-closed, connecting) or did not see the error.
    if (mask & (ERROR | HANGUP) && this.entries[fd] === s) s.onHangup(mask & ERROR ? pendingSocketError(fd) : 0);
  }

  private drainWake(): void {
    rc(libc.read(this.wakeFd, this.wakeBuf, 8));
  }

  wake(): void {
    wakeEventFd(this.wakeFd);
  }

  /** Closes the poll set, the wake fd and the reserve fd. Entries are closed by their owners first. */
  [Symbol.dispose](): void {
    if (this.disposed) return;
    this.disposed = true;
    if (this.reserveFd >= 0) libc.close(this.reserveFd);
    this.reserveFd = -1;
    this.entries[this.wakeFd] = undefined;
    libc.close(this.wakeFd);
    this.poller[Symbol.dispose]();
  }
}
