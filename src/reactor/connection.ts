// One TCP connection: its state machine, read path and write path.
//
//   Open --peer FIN (read 0)--> HalfClosed --output flushed--> Closed
//   Open --end()--------------> Closing --flushed, shutdown(WR), peer FIN or linger--> Closed
//   any  --close()/error/reset/timeout-----------------------------------------------> Closed
//
// Epoll interest is derived from that state (updateInterest) and changed only when it
// changes something: EPOLLIN while we want to read, EPOLLOUT only while the kernel has
// refused part of our output.

import { libc, rc, Errno, errorFromRc, SHUT_WR, type SocketAddress } from "../../ffi/index.ts";
import { ConnState, type CloseReason, type Connection, type Handler } from "../types.ts";
import { READABLE, WRITABLE, ERROR, HANGUP } from "./backend.ts";
import type { TimerNode } from "./timers.ts";
import { WriteQueue, type SharedBytes } from "./write-queue.ts";
import { peerAddress, socketError } from "./socket.ts";
import type { Reactor } from "./reactor.ts";

export const KIND_CONNECTION = 1;


export interface ConnectionOptions {
  /** Close after this many ms without bytes in either direction (0: never). */
  idleTimeoutMs: number;
  /** Queue size at which write() returns false and reading pauses. */
  highWaterMark: number;
  /** Queue size past which the connection is closed as a slow consumer. */
  maxBuffered: number;
  /** How long to wait for the peer's FIN after our end() before closing anyway. */
  lingerMs: number;
  /** Close when a started frame stays incomplete this long (0: never). Needs Handler.inFrame. */
  frameTimeoutMs: number;
}

export const DEFAULT_CONNECTION_OPTIONS: ConnectionOptions = {
  idleTimeoutMs: 0,
  highWaterMark: 256 * 1024,
  maxBuffered: 1024 * 1024,
  lingerMs: 2000,
  frameTimeoutMs: 0,
};

/**
 * The defaults with `partial` on top (undefined fields keep their default), checked: every
 * field a finite number >= 0, highWaterMark >= 1, and maxBuffered >= highWaterMark (below
 * it a connection would be dropped as a slow consumer before its reads ever paused).
 * Throws a RangeError naming the field. Called once per listener or outgoing connection.
 */
export function connectionOptions(partial: Partial<ConnectionOptions> = {}): ConnectionOptions {
  const o = { ...DEFAULT_CONNECTION_OPTIONS };
  for (const key of Object.keys(o) as (keyof ConnectionOptions)[]) {
    const v = partial[key];
    if (v === undefined) continue;
    if (typeof v !== "number" || !Number.isFinite(v) || v < 0) throw new RangeError(`${key} must be a finite number >= 0, got ${String(v)}`);
    o[key] = v;
  }
  if (o.highWaterMark < 1) throw new RangeError(`highWaterMark must be at least 1, got ${o.highWaterMark}`);
  if (o.maxBuffered < o.highWaterMark) {
    throw new RangeError(`maxBuffered (${o.maxBuffered}) must be at least highWaterMark (${o.highWaterMark}): a connection would be closed as a slow consumer before its reads paused`);
  }
  return o;
}

const F_WANT_WRITABLE = 1, F_USER_PAUSED = 2, F_BACKPRESSURED = 4, F_NEED_DRAIN = 8;
const F_LINGERING = 16, F_PEER_ENDED = 32, F_DRAINING = 64, F_DIRTY = 128;

export class TcpConnection<T = unknown> implements Connection<T>, TimerNode, Disposable {
  /** On the prototype, not in each instance (see the end of this file). */
  declare readonly kind: typeof KIND_CONNECTION;
  data: T = undefined as T;
  state: ConnState = ConnState.Open;
  /** Output queue, created on the first write: an idle connection holds none (memory). */
  private outq: WriteQueue | null = null;
  /** Current epoll interest mask, as registered. */
  interest = 0;
  /** What a close that completes an end() is counted as. */
  private endReason: CloseReason | null = null;
  /** Non-blocking connect() in flight (client side). */
  connecting: ((err: Error | null) => void) | null = null;
  /**
   * The boolean state below, packed into one field: an idle connection is a few words
   * smaller (10,000 idle connections are the memory benchmark). Accessors keep call sites plain.
   */
  private flags = 0;
  /** Output is pending and the kernel refused it: EPOLLOUT is wanted. */
  private get wantWritable(): boolean { return (this.flags & F_WANT_WRITABLE) !== 0; }
  private set wantWritable(v: boolean) { this.flags = v ? this.flags | F_WANT_WRITABLE : this.flags & ~F_WANT_WRITABLE; }
  private get userPaused(): boolean { return (this.flags & F_USER_PAUSED) !== 0; }
  private set userPaused(v: boolean) { this.flags = v ? this.flags | F_USER_PAUSED : this.flags & ~F_USER_PAUSED; }
  /** Reading paused because our output queue passed the high-water mark. */
  private get backpressured(): boolean { return (this.flags & F_BACKPRESSURED) !== 0; }
  private set backpressured(v: boolean) { this.flags = v ? this.flags | F_BACKPRESSURED : this.flags & ~F_BACKPRESSURED; }
  private get needDrain(): boolean { return (this.flags & F_NEED_DRAIN) !== 0; }
  private set needDrain(v: boolean) { this.flags = v ? this.flags | F_NEED_DRAIN : this.flags & ~F_NEED_DRAIN; }
  /** After end(): our FIN is sent, we read and discard until the peer's FIN. */
  private get lingering(): boolean { return (this.flags & F_LINGERING) !== 0; }
  private set lingering(v: boolean) { this.flags = v ? this.flags | F_LINGERING : this.flags & ~F_LINGERING; }
  private get peerEnded(): boolean { return (this.flags & F_PEER_ENDED) !== 0; }
  private set peerEnded(v: boolean) { this.flags = v ? this.flags | F_PEER_ENDED : this.flags & ~F_PEER_ENDED; }
  /** Graceful stop: keep serving until the peer goes quiet (EAGAIN) and output is flushed, then end(). */
  private get draining(): boolean { return (this.flags & F_DRAINING) !== 0; }
  private set draining(v: boolean) { this.flags = v ? this.flags | F_DRAINING : this.flags & ~F_DRAINING; }
  /** Listed in the reactor's pending-flush list for this turn. */
  get dirty(): boolean { return (this.flags & F_DIRTY) !== 0; }
  set dirty(v: boolean) { this.flags = v ? this.flags | F_DIRTY : this.flags & ~F_DIRTY; }
  /**
   * The reactor's flush pass in which this connection last read bytes. Read from in the
   * current pass: its output likely ends with a reply, so the flush budget never defers it
   * (a PING answered at once even behind a large broadcast). Expires by itself when the pass
   * ends, whether or not the connection had output.
   */
  readPass = -1;
  lastActive: number;
  /** When the frame now in progress started (0: none). */
  frameStarted = 0;
  timerDeadline = 0;
  timerIndex = -1;
  private peer: SocketAddress | null = null;

  /**
   * Registration generation (stale-event guard). Kept by the reactor (generations[fd]), not
   * here: an idle connection is the memory benchmark, and each own field counts.
   */
  get generation(): number {
    return this.reactor.generationOf(this.fd);
  }

  constructor(
    readonly reactor: Reactor,
    readonly fd: number,
    readonly id: number,
    readonly handler: Handler<T>,
    readonly options: ConnectionOptions,
  ) {
    this.lastActive = reactor.now;
  }

  // --- Connection API -------------------------------------------------------------------

  get remoteAddress(): string {
    return this.peerInfo().address;
  }

  get remotePort(): number {
    return this.peerInfo().port;
  }

  get bufferedAmount(): number {
    return this.outq === null ? 0 : this.outq.length;
  }

  private peerInfo(): SocketAddress {
    // getpeername on first use: most protocols never ask, so accept stays one syscall.
    if (this.peer === null) {
      try {
        this.peer = this.state === ConnState.Closed ? { family: 4, address: "", port: 0 } : peerAddress(this.fd);
      } catch {
        this.peer = { family: 4, address: "", port: 0 };
      }
    }
    return this.peer;
  }

  write(bytes: Uint8Array | string, start = 0, end = -1): boolean {
    // After end() writes are still taken until our FIN is sent (lingering): a protocol can
    // answer what arrives meanwhile (e.g. SHUTTING_DOWN during a graceful stop).
    if (this.state === ConnState.Closed || this.lingering) return false;
    const isString = typeof bytes === "string";
    if (!isString) {
      if (end < 0) end = bytes.length;
      checkRange(bytes.length, start, end);
    }
    const out = this.queueFor(isString ? bytes.length : end - start);
    if (out === null) return false;
    if (isString) out.appendString(bytes);
    else out.append(bytes, start, end);
    return this.queued(out);
  }

  /** write() of a big-endian u32 `prefix` followed by bytes[start, end), in one call. */
  writePrefixed(prefix: number, bytes: Uint8Array, start = 0, end = bytes.length): boolean {
    if (this.state === ConnState.Closed || this.lingering) return false;
    checkRange(bytes.length, start, end);
    const out = this.queueFor(end - start + 4);
    if (out === null) return false;
    out.appendPrefixed(prefix, bytes, start, end);
    return this.queued(out);
  }

  /**
   * Queues shared.bytes[start, end) by reference: no copy. For one large payload sent to
   * many connections (a broadcast); the bytes must never change afterwards.
   */
  writeShared(shared: SharedBytes, start = 0, end = shared.length): boolean {
    if (this.state === ConnState.Closed || this.lingering) return false;
    checkRange(shared.length, start, end);
    const out = this.queueFor(end - start);
    if (out === null) return false;
    out.appendShared(shared, start, end);
    return this.queued(out);
  }

  /**
   * The queue to append n bytes to (created on the first write), or null when they may not
   * be queued. The hard limit is checked before the bytes are queued: a consumer already
   * behind must not make the queue grow (and its buffer double) only to be dropped, so past
   * maxBuffered it is closed instead. A single large write into an empty queue is allowed;
   * write()'s false return is the flow control.
   */
  private queueFor(n: number): WriteQueue | null {
    const q = this.outq;
    if (q === null) return (this.outq = new WriteQueue(this.reactor.bufferPool));
    const before = q.length;
    if (before === 0 || before + n <= this.options.maxBuffered) return q;
    this.reactor.stats.slowConsumersDropped++;
    this.reactor.logThrottled("slow-consumer", `connection ${this.id}: closed as slow consumer (${before} bytes queued, the next write would pass maxBuffered ${this.options.maxBuffered})`);
    this.close("slow-consumer");
    return null;
  }

  /** After an append: schedule the flush; past the high-water mark, pause reading. */
  private queued(out: WriteQueue): boolean {
    if (!this.dirty && !this.wantWritable) {
      this.dirty = true;
      this.reactor.markDirty(this);
    }
    if (out.length < this.options.highWaterMark) return true;
    if (!this.needDrain) {
      this.needDrain = true;
      this.reactor.stats.highWaterCrossings++;
    }
    if (!this.backpressured) {
      this.backpressured = true;
      this.reactor.stats.pausedReads++;
      this.updateInterest();
    }
    return false;
  }

  end(reason?: CloseReason): void {
    if (this.state >= ConnState.Closing) return;
    if (reason) this.endReason = reason;
    if (this.state === ConnState.HalfClosed) this.peerEnded = true;
    this.state = ConnState.Closing;
    if (this.bufferedAmount === 0 && !this.dirty) this.finishClosing();
    else this.updateInterest();
  }

  close(reason: CloseReason = "local", error?: Error): void {
    if (this.state === ConnState.Closed) return;
    this.state = ConnState.Closed;
    const r = this.reactor;
    r.timers.cancel(this);
    this.outq?.clear();
    // close(2) also removes the fd from the epoll set (we never dup it): no EPOLL_CTL_DEL.
    r.forget(this);
    libc.close(this.fd);
    r.stats.connectionsActive--;
    r.stats.closeReasons[reason]++;
    if (this.connecting) {
      const cb = this.connecting;
      this.connecting = null;
      cb(error ?? new Error(`connection closed (${reason}) before it was established`));
      return;
    }
    const h = this.handler.close;
    if (h) {
      try {
        h.call(this.handler, this, reason, error);
      } catch (e) {
        r.log(`connection ${this.id}: close handler threw: ${(e as Error)?.stack ?? e}`);
      }
    }
  }

  pause(): void {
    if (this.userPaused) return;
    this.userPaused = true;
    this.updateInterest();
  }

  resume(): void {
    if (!this.userPaused) return;
    this.userPaused = false;
    this.updateInterest();
  }

  [Symbol.dispose](): void {
    this.close("local");
  }

  // --- Reactor side ---------------------------------------------------------------------

  /** Level-triggered read path; called for EPOLLIN/ERR/HUP while reading is wanted. */
  onReadable(): void {
    const r = this.reactor;
    const buf = r.recvBuffer;
    let budget = r.readBudget;
    while (this.state !== ConnState.Closed) {
      const n = rc(libc.recv(this.fd, buf, buf.length, 0));
      if (n > 0) {
        r.stats.bytesIn += n;
        r.stats.readCalls++;
        this.lastActive = r.now;
        this.readPass = r.flushPass;
        if (this.lingering) {
          // Our FIN is sent: discard what the peer still sends until its FIN.
        } else {
          const h = this.handler.data;
          if (h) {
            try {
              const ret = h.call(this.handler, this, r.received(n));
              if (ret !== undefined) r.trackAsync(ret, this);
            } catch (e) {
              this.fail(e);
              return;
            }
          }
        }
        if (this.options.frameTimeoutMs > 0) this.trackFrame();
        // A short read emptied the socket (level-triggered: epoll tells us if more comes).
        // While draining we read on to EAGAIN: that is how we learn the peer went quiet.
        if (n < buf.length && !this.draining) return;
        budget -= n;
        if (budget <= 0 || !this.wantsRead()) return;
        continue;
      }
      if (n === 0) {
        this.onPeerEnd();
        return;
      }
      if (n === -Errno.EAGAIN) {
        if (this.draining) this.drainStep();
        return;
      }
      if (n === -Errno.EINTR) continue;
      this.close("reset", errorFromRc("recv", n));
      return;
    }
  }

  onWritable(): void {
    if (this.connecting) {
      this.finishConnect();
      return;
    }
    this.flush();
  }

  /** One event from the poll backend. */
  onEvent(mask: number): void {
    if (mask & (READABLE | ERROR | HANGUP) && this.interest & READABLE) this.onReadable();
    if (this.state !== ConnState.Closed && mask & WRITABLE) this.onWritable();
    if (this.state !== ConnState.Closed && mask & (ERROR | HANGUP)) {
      // Reading was off (paused, half-closed, connecting) or did not see the error.
      if (this.connecting) this.finishConnect();
      else this.close("reset", mask & ERROR ? errorFromRc("socket", -socketError(this.fd)) : undefined);
    }
  }

  /** Sends what is queued: one send(2). Called at the end of a reactor turn and on EPOLLOUT. */
  flush(): void {
    if (this.state === ConnState.Closed || this.connecting) return;
    const out = this.outq;
    if (out !== null && out.length > 0) {
      const r = this.reactor;
      const n = out.flushTo(this.fd);
      r.stats.writeCalls++;
      if (n > 0) {
        r.stats.bytesOut += n;
        this.lastActive = r.now;
      } else if (n < 0 && n !== -Errno.EAGAIN && n !== -Errno.EINTR) {
        // EPIPE / ECONNRESET: the peer is gone; what is queued can never be delivered.
        this.close("reset", errorFromRc("send", n));
        return;
      }
    }
    if (out !== null && out.length > 0) {
      // The kernel took less than everything: its buffer is full, wait for EPOLLOUT
      // rather than spend a send(2) that would return EAGAIN.
      if (!this.wantWritable) {
        this.wantWritable = true;
        this.updateInterest();
      }
      if (out.length > this.options.highWaterMark >> 1) return;
    } else if (this.wantWritable) {
      this.wantWritable = false;
      this.updateInterest();
    }
    // Below the low-water mark (half the high-water mark): resume reading, signal drain.
    if (this.backpressured) {
      this.backpressured = false;
      this.updateInterest();
    }
    if (this.needDrain) {
      this.needDrain = false;
      const h = this.handler.drain;
      if (h) {
        try {
          h.call(this.handler, this);
        } catch (e) {
          this.fail(e);
          return;
        }
      }
    }
    if (this.bufferedAmount === 0) {
      if (this.draining && this.state === ConnState.Open) this.onReadable(); // quiet yet?
      else if (this.state === ConnState.HalfClosed) this.close("end");
      else if (this.state === ConnState.Closing && !this.lingering) this.finishClosing();
    }
  }

  /** The idle timeout or the linger deadline. */
  onTimer(now: number): void {
    if (this.state === ConnState.Closed) return;
    if (this.lingering) {
      this.close(this.endReason ?? "end");
      return;
    }
    const frameTimeout = this.options.frameTimeoutMs;
    if (this.frameStarted > 0 && frameTimeout > 0 && now - this.frameStarted >= frameTimeout) {
      this.reactor.logThrottled("frame-timeout", `connection ${this.id}: closed: a frame stayed incomplete for ${frameTimeout} ms`);
      this.close("frame-timeout");
      return;
    }
    const idle = this.options.idleTimeoutMs;
    const due = this.nextDeadline();
    if (idle <= 0 || now < this.lastActive + idle) {
      if (due < Infinity) this.reactor.timers.schedule(this, due); // active since: lazy refresh
      return;
    }
    const h = this.handler.timeout;
    if (!h) {
      this.close("idle-timeout");
      return;
    }
    try {
      h.call(this.handler, this);
    } catch (e) {
      this.fail(e);
      return;
    }
    if ((this.state as ConnState) !== ConnState.Closed) {
      // The handler kept the connection: next idle check one period from now (lastActive + idle
      // is in the past and would fire again at once), or the frame deadline if earlier.
      const frame = this.options.frameTimeoutMs;
      const frameDue = this.frameStarted > 0 && frame > 0 ? this.frameStarted + frame : Infinity;
      this.reactor.timers.schedule(this, Math.min(now + idle, frameDue));
    }
  }

  /** The earliest of the idle and frame deadlines (Infinity: none). */
  private nextDeadline(): number {
    const idle = this.options.idleTimeoutMs;
    const frame = this.options.frameTimeoutMs;
    const a = idle > 0 ? this.lastActive + idle : Infinity;
    const b = this.frameStarted > 0 && frame > 0 ? this.frameStarted + frame : Infinity;
    return a < b ? a : b;
  }

  /** After a read: has a frame started, or completed? Arms the frame deadline. */
  private trackFrame(): void {
    const inFrame = this.handler.inFrame;
    if (!inFrame || this.state === ConnState.Closed) return;
    if (inFrame.call(this.handler, this)) {
      if (this.frameStarted === 0) {
        this.frameStarted = this.reactor.now;
        const due = this.frameStarted + this.options.frameTimeoutMs;
        if (this.timerIndex < 0 || due < this.timerDeadline) this.reactor.timers.schedule(this, due);
      }
    } else {
      this.frameStarted = 0; // the idle timer (if any) reschedules lazily
    }
  }

  /** Called by the reactor right after registration. */
  start(): void {
    const due = this.nextDeadline();
    if (due < Infinity) this.reactor.timers.schedule(this, due);
    if (this.connecting) return;
    this.open();
  }

  /**
   * Graceful stop (reactor.stop): everything the peer sent before it went quiet is read and
   * answered; once a read finds the socket empty and our output is flushed, end().
   */
  beginDrain(): void {
    if (this.state !== ConnState.Open || this.draining) return;
    this.draining = true;
    if (this.interest & READABLE) this.onReadable();
    else this.drainStep();
  }

  private drainStep(): void {
    if (this.state === ConnState.Open && this.bufferedAmount === 0 && !this.dirty) this.end();
  }

  /** Accepted past the connection limit: let the protocol say so, then end. */
  rejectFull(): void {
    const h = this.handler.full;
    if (h) {
      try {
        h.call(this.handler, this);
      } catch (e) {
        this.fail(e);
        return;
      }
    }
    this.end();
  }

  private open(): void {
    const h = this.handler.open;
    if (!h) return;
    try {
      const ret = h.call(this.handler, this);
      if (ret !== undefined) this.reactor.trackAsync(ret, this);
    } catch (e) {
      this.fail(e);
    }
  }

  private finishConnect(): void {
    const err = socketError(this.fd);
    const cb = this.connecting!;
    if (err !== 0) {
      this.close("reset", errorFromRc("connect", -err));
      return;
    }
    this.connecting = null;
    this.updateInterest();
    cb(null);
    if (this.state !== ConnState.Closed) this.open();
  }

  /** A handler threw: report it, close this connection only. */
  fail(e: unknown): void {
    const err = e instanceof Error ? e : new Error(String(e));
    const h = this.handler.error;
    if (h) {
      try {
        h.call(this.handler, this, err);
      } catch (e2) {
        this.reactor.log(`connection ${this.id}: error handler threw: ${(e2 as Error)?.stack ?? e2}`);
      }
    } else {
      this.reactor.log(`connection ${this.id}: handler threw, closing it: ${err.stack ?? err}`);
    }
    this.close("error", err);
  }

  private onPeerEnd(): void {
    this.peerEnded = true;
    if (this.lingering || this.state === ConnState.Closing) {
      if (this.bufferedAmount === 0 && !this.dirty) this.close(this.endReason ?? (this.lingering ? "end" : "local"));
      else this.updateInterest();
      return;
    }
    this.state = ConnState.HalfClosed;
    const h = this.handler.end;
    if (h) {
      try {
        h.call(this.handler, this);
      } catch (e) {
        this.fail(e);
        return;
      }
    }
    if (this.state !== ConnState.HalfClosed) return; // the handler closed or ended it
    if (this.bufferedAmount === 0 && !this.dirty) this.close("end");
    else this.updateInterest(); // stop reading (EOF is level-triggered), keep writing
  }

  /**
   * Our output is flushed after end(). If the peer already sent FIN, close. Otherwise send
   * our FIN and read until theirs: closing a socket with unread input makes the kernel send
   * RST, which can destroy replies still in flight to the peer.
   */
  private finishClosing(): void {
    if (this.peerEnded) {
      this.close(this.endReason ?? "local");
      return;
    }
    if (rc(libc.shutdown(this.fd, SHUT_WR)) < 0) {
      this.close(this.endReason ?? "local");
      return;
    }
    this.lingering = true;
    this.updateInterest();
    this.reactor.timers.schedule(this, this.reactor.now + this.options.lingerMs);
  }

  private wantsRead(): boolean {
    if (this.connecting || this.peerEnded) return false;
    if (this.lingering) return true;
    return (this.state === ConnState.Open || this.state === ConnState.Closing) && !this.userPaused && !this.backpressured;
  }

  /** Applies the interest our state implies; one epoll_ctl only when it changes. */
  updateInterest(): void {
    if (this.state === ConnState.Closed) return;
    const want = (this.wantsRead() ? READABLE : 0) | (this.wantWritable || this.connecting ? WRITABLE : 0);
    if (want === this.interest) return;
    this.interest = want;
    const r = this.reactor.backend.modify(this.fd, this.generation, want);
    if (r < 0) this.close("error", errorFromRc("epoll_ctl", r));
  }
}

/**
 * Copies go through memcpy/sendmsg, which would read past the buffer where subarray()
 * clamps: a bad range must be an error, not bytes of neighbouring memory on the wire.
 */
function checkRange(length: number, start: number, end: number): void {
  if (!(start >= 0 && start <= end && end <= length && start === (start | 0) && end === (end | 0))) {
    throw new RangeError(`write range [${start}, ${end}) is outside the buffer (length ${length})`);
  }
}

// The dispatch tag lives on the prototype: one word less per connection.
Object.defineProperty(TcpConnection.prototype, "kind", { value: KIND_CONNECTION });
