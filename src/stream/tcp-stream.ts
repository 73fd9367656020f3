// A TCP stream: one connected socket's state machine, read side and write side, over a
// driver that does its I/O. The state is one explicit enum (StreamState in stream.ts, drawn
// in docs/ARCHITECTURE.md), changed by driver events (onData, onEnd, onWritable, onHangup...)
// and by the stream's own end() and close() only.
//
// Interest is derived from the state (updateInterest) and changed only when it changes
// something: READABLE while we want to read, WRITABLE only while the kernel has refused
// part of our output (or a connect is in flight).

import { Errno, errorFromRc, type SocketAddress } from "../../ffi/index.ts";
import { recycleQueue, takeQueue, utf8Length, type WriteQueue } from "../buffers/write-queue.ts";
import type { SharedBytes } from "../buffers/shared-bytes.ts";
import type { SharedFile } from "../buffers/shared-file.ts";
import { KIND_STREAM, READABLE, ReadNext, SEND_PENDING, WRITABLE, type IoStream } from "../driver/driver.ts";
import { peerAddress } from "../driver/sockets.ts";
import type { Reactor } from "../reactor/reactor.ts";
import type { TimerNode } from "../reactor/timers.ts";
import { StreamState, type CloseReason, type Handler, type Stream, type TrafficCounters } from "./stream.ts";

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
  /**
   * Where this listener's streams add the bytes they receive and send (the CLI keeps one per
   * protocol for /metrics); null: only the reactor's totals. Shared, never copied.
   */
  traffic: TrafficCounters | null;
}

export const DEFAULT_CONNECTION_OPTIONS: ConnectionOptions = {
  idleTimeoutMs: 0,
  highWaterMark: 256 * 1024,
  maxBuffered: 1024 * 1024,
  lingerMs: 2000,
  frameTimeoutMs: 0,
  traffic: null,
};

/**
 * The defaults with `partial` on top (undefined fields keep their default), checked: every
 * field a finite number >= 0, highWaterMark >= 1, and maxBuffered >= highWaterMark (below
 * it a connection would be dropped as a slow consumer before its reads ever paused).
 * Throws a RangeError naming the field. Called once per listener or outgoing connection.
 */
export function connectionOptions(partial: Partial<ConnectionOptions> = {}): ConnectionOptions {
  const o = { ...DEFAULT_CONNECTION_OPTIONS };
  o.traffic = partial.traffic ?? null;
  for (const key of Object.keys(o) as (keyof ConnectionOptions)[]) {
    if (key === "traffic") continue;
    const v = partial[key];
    if (v === undefined) continue;
    if (typeof v !== "number" || !Number.isFinite(v) || v < 0) throw new RangeError(`${key} must be a finite number >= 0, got ${String(v)}`);
    (o as unknown as Record<string, number>)[key] = v;
  }
  if (o.highWaterMark < 1) throw new RangeError(`highWaterMark must be at least 1, got ${o.highWaterMark}`);
  if (o.maxBuffered < o.highWaterMark) {
    throw new RangeError(`maxBuffered (${o.maxBuffered}) must be at least highWaterMark (${o.highWaterMark}): a connection would be closed as a slow consumer before its reads paused`);
  }
  return o;
}

const F_WANT_WRITABLE = 1, F_USER_PAUSED = 2, F_BACKPRESSURED = 4, F_NEED_DRAIN = 8;
const F_ASYNC_PAUSED = 16, F_DRAINING = 32, F_DIRTY = 64;

const NO_PEER: SocketAddress = { family: 4, address: "", port: 0 };

export class TcpStream<T = unknown> implements Stream<T>, IoStream, TimerNode, Disposable {
  /** On the prototype, not in each instance (see the end of this file). */
  declare readonly kind: typeof KIND_STREAM;
  data: T = undefined as T;
  state: StreamState;
  handler: Handler<T>;
  /** Output queue, created on the first write: an idle stream holds none (memory). */
  private outq: WriteQueue | null = null;
  /** Interest as registered with the driver (the driver's setInterest keeps it). */
  interest = 0;
  /** What a close that completes an end() is counted as. */
  private endReason: CloseReason | null = null;
  /**
   * The boolean state below, packed into one field: an idle stream is a few words smaller
   * (10,000 idle connections are the memory benchmark). Accessors keep call sites plain.
   */
  private flags = 0;
  /** Output is pending and the kernel refused it: WRITABLE is wanted. */
  private get wantWritable(): boolean { return (this.flags & F_WANT_WRITABLE) !== 0; }
  private set wantWritable(v: boolean) { this.flags = v ? this.flags | F_WANT_WRITABLE : this.flags & ~F_WANT_WRITABLE; }
  private get userPaused(): boolean { return (this.flags & F_USER_PAUSED) !== 0; }
  private set userPaused(v: boolean) { this.flags = v ? this.flags | F_USER_PAUSED : this.flags & ~F_USER_PAUSED; }
  /** Reading paused because our output queue passed the high-water mark. */
  private get backpressured(): boolean { return (this.flags & F_BACKPRESSURED) !== 0; }
  private set backpressured(v: boolean) { this.flags = v ? this.flags | F_BACKPRESSURED : this.flags & ~F_BACKPRESSURED; }
  private get needDrain(): boolean { return (this.flags & F_NEED_DRAIN) !== 0; }
  private set needDrain(v: boolean) { this.flags = v ? this.flags | F_NEED_DRAIN : this.flags & ~F_NEED_DRAIN; }
  /** Reading paused while a `data` promise is pending (Handler.pauseWhileAsync). */
  private get asyncPaused(): boolean { return (this.flags & F_ASYNC_PAUSED) !== 0; }
  private set asyncPaused(v: boolean) { this.flags = v ? this.flags | F_ASYNC_PAUSED : this.flags & ~F_ASYNC_PAUSED; }
  /** Graceful stop: keep serving until the peer goes quiet and output is flushed, then end(). */
  private get draining(): boolean { return (this.flags & F_DRAINING) !== 0; }
  private set draining(v: boolean) { this.flags = v ? this.flags | F_DRAINING : this.flags & ~F_DRAINING; }
  /** Listed in the reactor's pending-flush list for this turn. */
  get dirty(): boolean { return (this.flags & F_DIRTY) !== 0; }
  set dirty(v: boolean) { this.flags = v ? this.flags | F_DIRTY : this.flags & ~F_DIRTY; }
  /**
   * The reactor's flush pass in which this stream last read bytes. Read from in the current
   * pass: its output likely ends with a reply, so the flush budget never defers it (a PING
   * answered at once even behind a large broadcast).
   */
  readPass = -1;
  lastActive: number;
  /** When the frame now in progress started (0: none). */
  frameStarted = 0;
  timerDeadline = 0;
  timerIndex = -1;
  private peer: SocketAddress | null = null;

  constructor(
    readonly reactor: Reactor,
    readonly fd: number,
    readonly id: number,
    handler: Handler<T>,
    public options: ConnectionOptions,
    connecting = false,
  ) {
    this.handler = handler;
    this.state = connecting ? StreamState.Connecting : StreamState.Open;
    this.lastActive = reactor.now;
  }

  // --- Stream API -----------------------------------------------------------------------

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
        this.peer = this.state === StreamState.Closed ? NO_PEER : peerAddress(this.fd);
      } catch {
        this.peer = NO_PEER;
      }
    }
    return this.peer;
  }

  /** Writes are taken until our FIN is sent (Lingering): a protocol can answer late requests. */
  private get writable(): boolean {
    return this.state < StreamState.Lingering;
  }

  write(bytes: Uint8Array | string, start = 0, end = -1): boolean {
    if (!this.writable) return false;
    const isString = typeof bytes === "string";
    if (!isString) {
      if (end < 0) end = bytes.length;
      checkRange(bytes.length, start, end);
    }
    // maxBuffered counts bytes on the wire: a string's UTF-8 length, not its UTF-16 length.
    // Counted only when the worst case (3 bytes a unit) could pass the limit.
    const out = this.queueFor(isString ? (this.bufferedAmount + bytes.length * 3 <= this.options.maxBuffered ? bytes.length : utf8Length(bytes)) : end - start);
    if (out === null) return false;
    if (isString) out.appendString(bytes);
    else out.append(bytes, start, end);
    return this.queued(out);
  }

  writePrefixed(prefix: number, bytes: Uint8Array, start = 0, end = bytes.length): boolean {
    if (!this.writable) return false;
    checkRange(bytes.length, start, end);
    const out = this.queueFor(end - start + 4);
    if (out === null) return false;
    out.appendPrefixed(prefix, bytes, start, end);
    return this.queued(out);
  }

  writeShared(shared: SharedBytes, start = 0, end = shared.length): boolean {
    if (!this.writable) return false;
    checkRange(shared.length, start, end);
    const out = this.queueFor(end - start);
    if (out === null) return false;
    out.appendShared(shared, start, end);
    return this.queued(out);
  }

  /**
   * Queues file[start, end) by reference; the driver sends it with sendfile(2). It counts
   * towards bufferedAmount and the high-water mark (flow control: drain comes once most of
   * it is sent) but not towards maxBuffered, which bounds memory: a file range holds an fd
   * reference, no bytes.
   */
  writeFile(file: SharedFile, start = 0, end = file.size): boolean {
    if (!this.writable) return false;
    checkFileRange(file, start, end);
    const out = this.outq ?? (this.outq = takeQueue(this.reactor.bufferPool));
    out.appendFile(file, start, end);
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
    if (q === null) return (this.outq = takeQueue(this.reactor.bufferPool));
    const before = q.memoryLength; // file ranges hold no memory (writeFile)
    if (before === 0 || before + n <= this.options.maxBuffered) return q;
    this.reactor.stats.slowConsumersDropped++;
    this.reactor.logThrottled("slow-consumer", `connection ${this.id}: closed as slow consumer (${before} bytes queued, the next write would pass maxBuffered ${this.options.maxBuffered})`, { event: "slow_consumer", level: "warn", connection: this.id, reason: "slow-consumer", peer: this });
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
      // Reading stops at once (wantsRead); the kernel is told only if the flush at the end of
      // this turn leaves the queue full: a large response that the kernel takes in one send
      // costs no epoll_ctl. A stream already waiting for WRITABLE is not flushed this turn.
      if (this.wantWritable) this.updateInterest();
    }
    return false;
  }

  private get flushed(): boolean {
    return this.bufferedAmount === 0 && !this.dirty;
  }

  end(reason?: CloseReason): void {
    switch (this.state) {
      case StreamState.Connecting:
        this.close(reason ?? "local");
        return;
      case StreamState.Open:
        if (reason) this.endReason = reason;
        if (this.flushed) this.sendFin();
        else {
          this.state = StreamState.Flushing;
          this.updateInterest();
        }
        return;
      case StreamState.HalfClosed:
        if (reason) this.endReason = reason;
        if (this.flushed) this.close(this.endReason ?? "local");
        else {
          this.state = StreamState.Closing;
          this.updateInterest();
        }
        return;
      default:
        return; // already ending or closed
    }
  }

  close(reason: CloseReason = "local", error?: Error): void {
    if (this.state === StreamState.Closed) return;
    const wasConnecting = this.state === StreamState.Connecting;
    this.state = StreamState.Closed;
    const r = this.reactor;
    r.timers.cancel(this);
    this.outq?.clear();
    r.forget(this); // the driver closes the fd
    r.stats.connectionsActive--;
    r.stats.countClose(reason);
    if (wasConnecting) {
      r.connectSettled(this, error ?? new Error(`connection closed (${reason}) before it was established`));
      return;
    }
    const h = this.handler.close;
    if (h) {
      try {
        h.call(this.handler, this, reason, error);
      } catch (e) {
        r.log(`connection ${this.id}: close handler threw: ${(e as Error)?.stack ?? e}`, { event: "handler_error", level: "error", connection: this.id, reason });
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

  setHandler<U>(handler: Handler<U>, pending?: Uint8Array): Stream<U> {
    const self = this as unknown as TcpStream<U>;
    self.handler = handler;
    if (this.state === StreamState.Closed) return self;
    self.open();
    if (pending !== undefined && pending.length > 0 && this.writable) self.deliver(pending);
    return self;
  }

  setIdleTimeout(ms: number): void {
    if (!(ms >= 0) || !Number.isFinite(ms)) throw new RangeError(`idle timeout must be a finite number >= 0, got ${ms}`);
    if (ms === this.options.idleTimeoutMs || this.state === StreamState.Closed) return;
    this.options = withOption(this.options, "idleTimeoutMs", ms); // shared, like the listener's: no object per stream
    this.lastActive = this.reactor.now;
    const due = this.nextDeadline();
    if (due < Infinity && (this.timerIndex < 0 || due < this.timerDeadline)) this.reactor.timers.schedule(this, due);
  }

  setTraffic(traffic: TrafficCounters | null, carried = 0): void {
    const old = this.options.traffic;
    if (traffic === old) return;
    // Bytes queued now were written under the old counters (the 101 before a WebSocket's
    // frames): they count there when the send that takes them counts under the new ones.
    const queued = this.bufferedAmount;
    if (old !== null) {
      old.bytesIn -= carried;
      old.bytesOut += queued;
    }
    if (traffic !== null) {
      traffic.bytesIn += carried;
      traffic.bytesOut -= queued;
    }
    this.options = withOption(this.options, "traffic", traffic);
  }

  setMaxBuffered(bytes: number): void {
    if (!(bytes >= 0) || !Number.isFinite(bytes)) throw new RangeError(`maxBuffered must be a finite number >= 0, got ${bytes}`);
    // Never below the high-water mark: reads must pause before a stream is closed as slow.
    const n = Math.max(bytes, this.options.highWaterMark);
    if (n !== this.options.maxBuffered) this.options = withOption(this.options, "maxBuffered", n);
  }

  [Symbol.dispose](): void {
    this.close("local");
  }

  // --- driver events ----------------------------------------------------------------------

  onData(bytes: Uint8Array): number {
    const r = this.reactor;
    this.lastActive = r.now;
    const t = this.options.traffic;
    if (t !== null) t.bytesIn += bytes.length;
    this.readPass = r.flushPass;
    // Lingering: our FIN is sent; what the peer still sends is discarded until its FIN.
    if (this.state !== StreamState.Lingering && !this.deliver(bytes)) return ReadNext.Stop;
    if (this.options.frameTimeoutMs > 0) this.trackFrame();
    if (!this.wantsRead()) return ReadNext.Stop;
    // While draining we read on to EAGAIN: that is how we learn the peer went quiet.
    return this.draining ? ReadNext.ToEmpty : ReadNext.IfFull;
  }

  /** Calls the data handler; false when it threw (the stream is closed then). */
  private deliver(bytes: Uint8Array): boolean {
    const h = this.handler.data;
    if (!h) return true;
    try {
      const ret = h.call(this.handler, this, bytes);
      if (ret !== undefined) this.trackAsync(ret, this.handler.pauseWhileAsync === true);
      return true;
    } catch (e) {
      this.fail(e);
      return false;
    }
  }

  onEnd(): void {
    switch (this.state) {
      case StreamState.Lingering:
        this.close(this.endReason ?? "end");
        return;
      case StreamState.Flushing:
        this.state = StreamState.Closing;
        if (this.flushed) this.close(this.endReason ?? "local");
        else this.updateInterest();
        return;
      case StreamState.Open:
        break;
      default:
        return;
    }
    this.state = StreamState.HalfClosed;
    if (!this.notify(this.handler.end)) return;
    if (this.state !== StreamState.HalfClosed) return; // the handler closed or ended it
    if (this.flushed && !this.handler.allowHalfOpen) this.close("end");
    else this.updateInterest(); // stop reading (EOF is level-triggered), keep writing
  }

  onEmpty(): void {
    if (this.draining) this.drainStep();
  }

  onReadError(negErrno: number): void {
    this.close("reset", errorFromRc("recv", negErrno));
  }

  onWritable(): void {
    if (this.state === StreamState.Connecting) this.finishConnect(this.reactor.driver.socketError(this.fd));
    else this.flush();
  }

  onHangup(negErrno: number): void {
    if (this.state === StreamState.Connecting) {
      this.finishConnect(negErrno !== 0 ? negErrno : this.reactor.driver.socketError(this.fd));
      return;
    }
    this.close("reset", negErrno < 0 ? errorFromRc("socket", negErrno) : undefined);
  }

  /**
   * Lists the stream for this turn's flush without queuing bytes: a wrapping stream (TLS)
   * holds a turn's output and encodes it all at once in its handler's `flush`.
   */
  requestFlush(): void {
    if (this.state === StreamState.Closed || this.dirty || this.wantWritable) return;
    this.dirty = true;
    this.reactor.markDirty(this);
  }

  /** Sends what is queued: one send. Called at the end of a reactor turn and when writable. */
  flush(): void {
    if (this.state === StreamState.Closed || this.state === StreamState.Connecting) return;
    const before = this.handler.flush;
    if (before !== undefined) {
      // Marked dirty during the call: the bytes it writes join this send, not another pass.
      const wasDirty = this.dirty;
      this.dirty = true;
      before.call(this.handler, this);
      this.dirty = wasDirty;
      if ((this.state as StreamState) === StreamState.Closed) return;
    }
    const out = this.outq;
    if (out !== null && out.length > 0) {
      const n = this.reactor.driver.send(this.fd, out);
      if (n === SEND_PENDING) return; // a completion driver: onSendComplete follows
      if (!this.sent(n)) return;
    }
    this.afterFlush();
  }

  onSendComplete(n: number): void {
    this.outq?.unpin();
    if (this.state === StreamState.Closed) return;
    if (this.sent(n)) this.afterFlush();
  }

  /** Accounts a send's result; false when it closed the stream. */
  private sent(n: number): boolean {
    if (n > 0) {
      this.lastActive = this.reactor.now;
      const t = this.options.traffic;
      if (t !== null) t.bytesOut += n;
    }
    else if (n < 0 && n !== -Errno.EAGAIN && n !== -Errno.EINTR) {
      // EPIPE / ECONNRESET: the peer is gone; what is queued can never be delivered.
      this.close("reset", errorFromRc("send", n));
      return false;
    }
    return true;
  }

  private afterFlush(): void {
    const out = this.outq;
    if (out !== null && out.length > 0) {
      // The kernel took less than everything: its buffer is full, wait for WRITABLE rather
      // than spend a send that would return EAGAIN.
      if (!this.wantWritable) {
        this.wantWritable = true;
        this.updateInterest();
      }
      if (out.length > this.options.highWaterMark >> 1) return;
    } else {
      if (this.wantWritable) {
        this.wantWritable = false;
        this.updateInterest();
      }
      if (out !== null && !out.isPinned) {
        this.outq = null; // emptied: back to the thread's spares (memory of idle streams)
        recycleQueue(out);
      }
    }
    // Below the low-water mark (half the high-water mark): resume reading, signal drain.
    if (this.backpressured) {
      this.backpressured = false;
      this.updateInterest();
    }
    if (this.needDrain) {
      this.needDrain = false;
      if (!this.notify(this.handler.drain)) return;
    }
    if (this.bufferedAmount !== 0) return;
    switch (this.state) {
      case StreamState.Open:
        if (this.draining) this.drainRead(); // quiet yet?
        return;
      case StreamState.HalfClosed:
        if (!this.handler.allowHalfOpen) this.close("end");
        return;
      case StreamState.Flushing:
        this.sendFin();
        return;
      case StreamState.Closing:
        this.close(this.endReason ?? "local");
        return;
    }
  }

  /** The idle timeout, the frame timeout or the linger deadline. */
  onTimer(now: number): void {
    if (this.state === StreamState.Closed) return;
    if (this.state === StreamState.Lingering) {
      this.close(this.endReason ?? "end");
      return;
    }
    const frameTimeout = this.options.frameTimeoutMs;
    if (this.frameStarted > 0 && frameTimeout > 0 && now - this.frameStarted >= frameTimeout) {
      this.reactor.logThrottled("frame-timeout", `connection ${this.id}: closed: a frame stayed incomplete for ${frameTimeout} ms`, { event: "frame_timeout", level: "warn", connection: this.id, reason: "frame-timeout", peer: this });
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
    if (!this.notify(h)) return;
    if ((this.state as StreamState) !== StreamState.Closed) {
      // The handler kept the stream: next idle check one period from now (lastActive + idle
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
    if (!inFrame || this.state === StreamState.Closed) return;
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

  // --- reactor side ---------------------------------------------------------------------

  /** Called by the reactor right after registration. */
  start(): void {
    const due = this.nextDeadline();
    if (due < Infinity) this.reactor.timers.schedule(this, due);
    if (this.state !== StreamState.Connecting) this.open();
  }

  /**
   * Graceful stop (reactor.stop): everything the peer sent before it went quiet is read and
   * answered; once a read finds the socket empty and our output is flushed, end().
   */
  beginDrain(): void {
    if (this.state !== StreamState.Open || this.draining) return;
    this.draining = true;
    // The protocol says goodbye first; it may have ended or closed the stream.
    if (!this.notify(this.handler.shutdown) || this.state !== StreamState.Open) return;
    this.drainRead();
  }

  private drainRead(): void {
    if (this.interest & READABLE) this.reactor.driver.readNow(this);
    else this.drainStep();
  }

  private drainStep(): void {
    if (this.state === StreamState.Open && this.flushed) this.end();
  }

  /** Accepted past the connection limit: let the protocol say so, then end. */
  rejectFull(): void {
    if (!this.notify(this.handler.full)) return;
    this.end();
  }

  private open(): void {
    const h = this.handler.open;
    if (!h) return;
    try {
      const ret = h.call(this.handler, this);
      if (ret !== undefined) this.trackAsync(ret, false);
    } catch (e) {
      this.fail(e);
    }
  }

  /**
   * A handler returned a promise: the reactor keeps its polls short while it is pending, a
   * rejection closes this stream, and with `pause` reading stops until it settles.
   */
  private trackAsync(p: PromiseLike<unknown>, pause: boolean): void {
    if (pause && !this.asyncPaused) {
      this.asyncPaused = true;
      this.updateInterest();
    } else pause = false;
    this.reactor.trackAsync(p, this, pause);
  }

  /** A promise tracked with pause settled (Reactor.trackAsync). */
  asyncSettled(): void {
    if (!this.asyncPaused) return;
    this.asyncPaused = false;
    this.updateInterest();
  }

  private finishConnect(negErrno: number): void {
    if (negErrno < 0) {
      this.close("reset", errorFromRc("connect", negErrno));
      return;
    }
    this.state = StreamState.Open;
    this.updateInterest();
    this.reactor.connectSettled(this, null);
    if (this.state === StreamState.Open) this.open();
  }

  /** Calls an optional one-argument handler; false when it threw (the stream is closed then). */
  private notify(h: ((stream: Stream<T>) => void) | undefined): boolean {
    if (!h) return true;
    try {
      h.call(this.handler, this);
      return true;
    } catch (e) {
      this.fail(e);
      return false;
    }
  }

  /** A handler threw: report it, close this stream only. */
  fail(e: unknown): void {
    const err = e instanceof Error ? e : new Error(String(e));
    const h = this.handler.error;
    if (h) {
      try {
        h.call(this.handler, this, err);
      } catch (e2) {
        this.reactor.log(`connection ${this.id}: error handler threw: ${(e2 as Error)?.stack ?? e2}`, { event: "handler_error", level: "error", connection: this.id, reason: "error", peer: this });
      }
    } else {
      this.reactor.log(`connection ${this.id}: handler threw, closing it: ${err.stack ?? err}`, { event: "handler_error", level: "error", connection: this.id, reason: "error", peer: this });
    }
    this.close("error", err);
  }

  /**
   * Our output is flushed after end() and the peer has not ended: send our FIN and read
   * until theirs. Closing a socket with unread input makes the kernel send RST, which can
   * destroy replies still in flight to the peer.
   */
  private sendFin(): void {
    if (this.reactor.driver.shutdownWrite(this.fd) < 0) {
      this.close(this.endReason ?? "local");
      return;
    }
    this.state = StreamState.Lingering;
    this.updateInterest();
    this.reactor.timers.schedule(this, this.reactor.now + this.options.lingerMs);
  }

  private wantsRead(): boolean {
    switch (this.state) {
      case StreamState.Open:
      case StreamState.Flushing:
        return (this.flags & (F_USER_PAUSED | F_BACKPRESSURED | F_ASYNC_PAUSED)) === 0;
      case StreamState.Lingering:
        return true;
      default:
        return false; // connecting, or the peer has ended, or closed
    }
  }

  /** Applies the interest the state implies; the driver changes it only when it differs. */
  updateInterest(): void {
    if (this.state === StreamState.Closed) return;
    const want = (this.wantsRead() ? READABLE : 0) | (this.wantWritable || this.state === StreamState.Connecting ? WRITABLE : 0);
    if (want === this.interest) return;
    const r = this.reactor.driver.setInterest(this, want);
    if (r < 0) this.close("error", errorFromRc("epoll_ctl", r));
  }
}

/** The options of `base` with one field changed, one shared object per (base, field, value). */
const variants = new WeakMap<ConnectionOptions, Map<string, ConnectionOptions>>();
function withOption<K extends "idleTimeoutMs" | "maxBuffered" | "traffic">(base: ConnectionOptions, field: K, value: ConnectionOptions[K]): ConnectionOptions {
  let m = variants.get(base);
  if (m === undefined) variants.set(base, (m = new Map()));
  // Traffic objects are told apart by identity: each gets a key of its own.
  const key = field === "traffic" ? trafficKey(value as TrafficCounters | null) : `${field}=${value}`;
  let o = m.get(key);
  if (o === undefined) m.set(key, (o = { ...base, [field]: value }));
  return o;
}

const trafficKeys = new WeakMap<TrafficCounters, string>();
let nextTrafficKey = 0;
function trafficKey(t: TrafficCounters | null): string {
  if (t === null) return "traffic=null";
  let k = trafficKeys.get(t);
  if (k === undefined) trafficKeys.set(t, (k = `traffic=${nextTrafficKey++}`));
  return k;
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

function checkFileRange(file: SharedFile, start: number, end: number): void {
  if (file.released) throw new Error("writeFile: the file was already released");
  if (!(Number.isSafeInteger(start) && Number.isSafeInteger(end) && start >= 0 && start <= end && end <= file.size)) {
    throw new RangeError(`writeFile range [${start}, ${end}) is outside the file (size ${file.size})`);
  }
}

// The dispatch tag lives on the prototype: one word less per stream.
Object.defineProperty(TcpStream.prototype, "kind", { value: KIND_STREAM });
