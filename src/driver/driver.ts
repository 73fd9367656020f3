// The I/O driver seam. A driver owns every syscall on the data path: accept, recv, send and
// sendmsg, shutdown, close of sockets, the wake eventfd, and interest changes. Streams and
// listeners above it never call libc for I/O; they receive completions:
//
//   driver -> stream:   onData(bytes)  onEnd()  onEmpty()  onWritable()  onHangup(err)
//   driver -> listener: onAccept(fd)   onAcceptError(err)
//   stream -> driver:   send(fd, queue)  shutdownWrite(fd)  setInterest(entry, mask)  close(entry)
//
// The epoll driver (epoll.ts) reports readiness and performs the I/O at once, so onData is
// called with a view of the driver's one receive buffer and send() returns the bytes the
// kernel took. A completion driver (io_uring) fits the same calls: onData is a completed
// recv into a buffer the driver chose (valid during the call, then recycled), send() pins
// the queue and returns SEND_PENDING, and onSendComplete(n) reports the result later.
// docs/ARCHITECTURE.md ("The driver seam") says what such a driver owns.

import type { WriteQueue } from "../buffers/write-queue.ts";

/** Interest and event bits (the epoll values, so the epoll driver passes them through). */
export const READABLE = 0x001; // EPOLLIN
export const WRITABLE = 0x004; // EPOLLOUT
export const ERROR = 0x008; // EPOLLERR
export const HANGUP = 0x010; // EPOLLHUP

/** Entry kinds in a driver's dispatch table; the tag lives on each class's prototype. */
export const KIND_STREAM = 1;
export const KIND_LISTENER = 2;
export const KIND_WAKE = 3;

/** What a stream's onData asks of the driver for the rest of this readiness event. */
export const ReadNext = {
  /** Stop reading for now (paused, closed, or the budget is spent). */
  Stop: 0,
  /** Read again only if the last read filled the buffer (a short read emptied the socket). */
  IfFull: 1,
  /** Read until the socket is empty (EAGAIN), then call onEmpty: a graceful drain. */
  ToEmpty: 2,
} as const;

/** send() result of a completion driver: the queue is pinned until onSendComplete. */
export const SEND_PENDING = -0x10000;

/** A connected socket as a driver sees it (TcpStream implements it). */
export interface IoStream {
  readonly kind: typeof KIND_STREAM;
  readonly fd: number;
  /** The interest registered for fd; only the driver's setInterest changes it. */
  interest: number;
  /** Bytes arrived; the view is valid during the call only. Returns a ReadNext value. */
  onData(bytes: Uint8Array): number;
  /** The peer sent FIN (a 0-byte read). */
  onEnd(): void;
  /** A read found the socket empty (only after ReadNext.ToEmpty). */
  onEmpty(): void;
  /** The socket can take output (readiness), or a non-blocking connect finished. */
  onWritable(): void;
  /** A send the driver returned SEND_PENDING for completed with n (bytes, or -errno). */
  onSendComplete(n: number): void;
  /** A read failed (-errno, e.g. ECONNRESET). */
  onReadError(negErrno: number): void;
  /**
   * EPOLLERR/EPOLLHUP: negErrno is -(the socket's pending error), 0 for a plain hang-up,
   * or -(getsockopt's errno) when even reading the error failed. Never thrown.
   */
  onHangup(negErrno: number): void;
}

/** A listening socket as a driver sees it (Listener implements it). */
export interface IoListener {
  readonly kind: typeof KIND_LISTENER;
  readonly fd: number;
  interest: number;
  /** A connection was accepted: fd is non-blocking, close-on-exec, TCP_NODELAY; the listener owns it now. */
  onAccept(fd: number): void;
  /** accept failed with -errno (EMFILE, ENFILE, ENOBUFS...); EAGAIN and EINTR are handled. */
  onAcceptError(negErrno: number): void;
}

export type IoEntry = IoStream | IoListener;

/** Byte and call counters a driver keeps (ReactorStats has these fields). */
export interface IoCounters {
  bytesIn: number;
  bytesOut: number;
  readCalls: number;
  writeCalls: number;
  acceptErrors: number;
}

export interface Driver extends Disposable {
  /** Enters fd into the dispatch table and the poll set. Throws a SyscallError. */
  attach(entry: IoEntry, interest: number): void;
  /** Changes fd's interest when it differs from entry.interest; returns 0 or -errno. */
  setInterest(entry: IoEntry, interest: number): number;
  /** Removes the entry and closes its fd (close also leaves the epoll set). */
  close(entry: IoEntry): void;
  /** Closes an fd that was never attached (an accepted fd refused before registration). */
  closeFd(fd: number): void;
  /** Sends what `queue` holds; returns bytes taken (consumed from the queue), -errno, or SEND_PENDING. */
  send(fd: number, queue: WriteQueue): number;
  /**
   * Runs the read path for a stream now, outside an event: a graceful drain asks whether
   * the peer has gone quiet. (A completion driver, whose reads are always posted, reports
   * the answer with its next completion instead.)
   */
  readNow(stream: IoStream): void;
  /** Accepts up to max connections waiting in a listener's backlog now (a graceful stop). */
  acceptNow(listener: IoListener, max: number): void;
  /** shutdown(SHUT_WR): our FIN. Returns 0 or -errno. */
  shutdownWrite(fd: number): number;
  /** The socket's pending error (SO_ERROR) as -errno, 0 when none; never throws. */
  socketError(fd: number): number;
  /** Waits up to timeoutMs (-1: forever; 0: poll) for events; returns their number or -errno. */
  poll(timeoutMs: number): number;
  /** The registered entries of one kind (shutdown paths: a scan, not a hot-path call). */
  entriesOfKind(kind: number): IoEntry[];
  /** Delivers the events of the last poll to their entries. */
  dispatch(n: number): void;
  /** Interrupts a poll from any thread. */
  wake(): void;
  readonly wakeFd: number;
  /**
   * Out of fds: accepts and closes up to `max` waiting connections of a listener with the
   * help of the reserve fd, so the backlog does not stall. Returns how many were shed, or
   * -1 when the reserve fd is gone too.
   */
  shedPending(listenFd: number, max: number): number;
}
