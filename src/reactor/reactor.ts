// The reactor: one epoll set, one thread, one loop.
//
// Each turn: flush pending output -> poll -> dispatch ready fds -> run due timers -> flush.
// Dispatch goes through a table indexed by fd (no Map lookups), and every registration
// carries a generation so that an event for an fd closed and reused inside the same batch
// is dropped (see backend.ts).
//
// Event-loop integration (docs/ARCHITECTURE.md has the measurements): a JS loop that blocks
// in epoll_wait starves Bun's own event loop (timers, promises resolved by Bun I/O, signal
// handlers). So the loop is async and yields to Bun with setImmediate at least every
// YIELD_EVERY_MS while busy, and before every sleep longer than that. The epoll_wait timeout
// is capped (maxPollMs) because Bun's timers are not fd-driven, and is 0 (asyncPollMs) while
// a handler's promise is pending, so Bun I/O it awaits is not held up by our sleeps. A
// signal interrupts epoll_wait with EINTR, so SIGTERM is seen at once.
//
// One reactor per thread. Nothing here is process-global: several reactors run in several
// Workers, each with its own SO_REUSEPORT listener, connection-id lane and wake eventfd.

import { libc, rc, check, Errno, errorFromRc, EFD_NONBLOCK, EFD_CLOEXEC } from "../../ffi/index.ts";
import { ConnState, type Connection, type Handler } from "../types.ts";
import { READABLE, WRITABLE, type PollBackend } from "./backend.ts";
import { EpollBackend } from "./epoll.ts";
import { SpinWindow } from "./spin.ts";
import { TcpConnection, KIND_CONNECTION, connectionOptions, type ConnectionOptions } from "./connection.ts";
import { Listener, KIND_LISTENER, type ListenerConfig } from "./listener.ts";
import { openReserveFd, startConnect } from "./socket.ts";
import { ReactorStats } from "./stats.ts";
import { TimerHeap, Timer } from "./timers.ts";
import { ptr } from "bun:ffi";
import { setReceiveView, threadPool, type BufferPool } from "./write-queue.ts";

const KIND_WAKE = 3;

/** Yield to Bun's event loop at least this often while busy. */
const YIELD_EVERY_MS = 1;
/** Bytes sent per flush pass from queues over LARGE_QUEUE before the loop polls again. */
const FLUSH_BUDGET = 128 * 1024;
const LARGE_QUEUE = 64 * 1024;
/** `await null`s after each dispatch: promise chains this deep resume before the next poll. */
const MICROTASK_ROUNDS = 3;

export interface ReactorOptions {
  /** Size of the one receive buffer shared by all connections of this reactor. */
  recvBufferSize?: number;
  /** Max bytes read from one connection per readiness event (fairness). */
  readBudget?: number;
  /** Max events per epoll_wait. */
  maxEvents?: number;
  /** Upper bound of one epoll_wait, so Bun's timers run on time (ms). Default 10. */
  maxPollMs?: number;
  /**
   * Upper bound of one epoll_wait while a handler's promise is pending (ms). Default 0: the
   * loop alternates poll(0) and a yield, so Bun I/O a handler awaits completes at Bun's own
   * speed, at the price of a busy core while the promise is pending.
   */
  asyncPollMs?: number;
  /** Connection ids are idBase + 1 + n * idStride: disjoint lanes for several reactors. */
  idBase?: number;
  idStride?: number;
  /** Connections past this are accepted, told so (Handler.full) and closed. */
  maxConnections?: number;
  /**
   * Busy polling (µs, default 0: off): the longest the loop keeps polling with a zero
   * timeout after events before sleeping in epoll_wait. A request that arrives meanwhile is
   * served without the sleep and wake-up (several µs of latency on this VM), at the price of
   * a core that spins through the gaps. The window adapts (spin.ts): it grows while events
   * keep coming within this bound and drops to 0 when they come later, so sparse traffic
   * costs no spinning. For latency-bound request/response (a trading gateway); Bun's loop
   * still gets its turn every YIELD_EVERY_MS.
   */
  busyPollUs?: number;
  /** Where diagnostics go. */
  log?: (line: string) => void;
  backend?: PollBackend;
}

interface WakeEntry {
  readonly kind: typeof KIND_WAKE;
  onEvent(mask: number): void;
}

type Entry = TcpConnection<any> | Listener<any> | WakeEntry;

export interface StopOptions {
  /** Flush queued output and reply to requests already received (default true). */
  graceful?: boolean;
  /** Give up flushing after this long and close what is left (ms, default 5000). */
  drainTimeoutMs?: number;
}

export class Reactor implements Disposable {
  readonly backend: PollBackend;
  readonly stats = new ReactorStats();
  readonly timers = new TimerHeap();
  /** Output buffers: the thread's pool (shared with decoders and broadcast payloads). */
  readonly bufferPool: BufferPool = threadPool;
  /** The shared receive buffer. Own ArrayBuffer: its address never moves. */
  readonly recvBuffer: Uint8Array;
  /** The last view of recvBuffer[0, n) handed to a data handler, reused while n repeats. */
  private recvView: Uint8Array;
  /** recvBuffer's address (its own ArrayBuffer: it never moves). */
  private readonly recvPtr: number;
  readonly readBudget: number;
  readonly maxPollMs: number;
  readonly asyncPollMs: number;
  /** Adaptive busy polling (ReactorOptions.busyPollUs); null when off. */
  readonly spin: SpinWindow | null;
  maxConnections: number;
  /** Flush passes so far (TcpConnection.readPass: read from in the current pass). */
  flushPass = 0;
  /** performance.now() at the start of the current turn. */
  now = performance.now();
  readonly log: (line: string) => void;

  private entries: (Entry | undefined)[] = [];
  private generations = new Uint32Array(1024);
  private readonly dirty: TcpConnection<any>[] = [];
  /** Open connections. They are found through `entries` (no per-connection Set entry: memory). */
  private connections = 0;
  private readonly listeners = new Set<Listener<any>>();
  /** Registered listeners + connections: the loop runs while this is > 0. */
  private refs = 0;
  private nextSeq = 0;
  private readonly idBase: number;
  private readonly idStride: number;
  private readonly throttle = new Map<string, { last: number; suppressed: number }>();
  private pendingAsync = 0;
  private yieldRequested = false;
  private running: Promise<void> | null = null;
  private stopping: Promise<void> | null = null;
  private readonly wakeFd: number;
  private readonly wakeBuf = new BigUint64Array(new ArrayBuffer(8));
  private reserveFd = -1;
  private disposed = false;
  private readonly forceClose = new Timer(() => this.closeAll("shutdown"));

  constructor(options: ReactorOptions = {}) {
    this.log = options.log ?? ((line) => console.error(`[bunpoll] ${line}`));
    this.readBudget = options.readBudget ?? 1024 * 1024;
    this.maxPollMs = options.maxPollMs ?? 10;
    this.asyncPollMs = options.asyncPollMs ?? 0;
    this.maxConnections = options.maxConnections ?? Infinity;
    const busyPollUs = options.busyPollUs ?? 0;
    if (!(busyPollUs >= 0) || !Number.isFinite(busyPollUs)) throw new RangeError(`busyPollUs must be a finite number >= 0, got ${busyPollUs}`);
    this.spin = busyPollUs > 0 ? new SpinWindow(busyPollUs / 1000) : null;
    this.idBase = options.idBase ?? 0;
    this.idStride = options.idStride ?? 1;
    using stack = new DisposableStack();
    this.backend = stack.use(options.backend ?? new EpollBackend(options.maxEvents ?? 256));
    this.recvBuffer = new Uint8Array(new ArrayBuffer(options.recvBufferSize ?? 256 * 1024));
    this.recvView = this.recvBuffer.subarray(0, 0);
    this.recvPtr = ptr(this.recvBuffer);
    this.wakeFd = check("eventfd", libc.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    stack.defer(() => libc.close(this.wakeFd));
    const wake: WakeEntry = { kind: KIND_WAKE, onEvent: () => this.drainWake() };
    this.generations[this.wakeFd] = 1;
    this.entries[this.wakeFd] = wake;
    check("epoll_ctl(eventfd)", this.backend.add(this.wakeFd, 1, READABLE));
    this.reserveFd = openReserveFd();
    stack.move(); // constructed: [Symbol.dispose] owns backend and wake fd from here
  }

  // --- registration ---------------------------------------------------------------------

  /** The generation fd was registered with (valid while it is registered). */
  generationOf(fd: number): number {
    return this.generations[fd]!;
  }

  /** Enters fd into the dispatch table and the epoll set. Returns its new generation. */
  register(entry: TcpConnection<any> | Listener<any>, fd: number, interest: number): number {
    if (fd >= this.generations.length) {
      let size = this.generations.length * 2;
      while (size <= fd) size *= 2;
      const g = new Uint32Array(size);
      g.set(this.generations);
      this.generations = g;
    }
    const gen = (this.generations[fd]! + 1) >>> 0;
    this.generations[fd] = gen;
    const r = this.backend.add(fd, gen, interest);
    if (r < 0) throw errorFromRc("epoll_ctl", r);
    this.entries[fd] = entry;
    this.refs++;
    if (entry.kind === KIND_CONNECTION) this.connections++;
    else this.listeners.add(entry);
    return gen;
  }

  /** Removes a closing fd from the dispatch table (its owner closes the fd). */
  forget(entry: TcpConnection<any> | Listener<any>): void {
    if (this.entries[entry.fd] !== entry) return;
    this.entries[entry.fd] = undefined;
    if (entry.kind === KIND_CONNECTION) this.connections--;
    else this.listeners.delete(entry);
    this.refs--;
  }

  /** Takes ownership of an accepted, non-blocking fd and opens a connection on it. */
  adopt<T>(fd: number, handler: Handler<T>, options: ConnectionOptions): TcpConnection<T> | null {
    let conn: TcpConnection<T>;
    try {
      conn = this.registerConnection(fd, handler, options, READABLE);
    } catch (e) {
      libc.close(fd);
      this.log(`could not register connection fd ${fd}: ${(e as Error).message}`);
      return null;
    }
    if (this.connections > this.maxConnections) {
      this.stats.rejectedFull++;
      conn.rejectFull();
    } else {
      conn.start();
    }
    return conn;
  }

  /** Creates a connection on an owned fd, enters it in the dispatch table and epoll, counts it. */
  private registerConnection<T>(fd: number, handler: Handler<T>, options: ConnectionOptions, interest: number): TcpConnection<T> {
    const id = this.idBase + 1 + this.nextSeq++ * this.idStride;
    const conn = new TcpConnection<T>(this, fd, id, handler, options);
    conn.interest = interest;
    this.register(conn, fd, interest);
    this.stats.connectionsActive++;
    this.stats.connectionsTotal++;
    return conn;
  }

  /** Opens a listening socket served by this reactor and starts the loop. */
  listen<T>(
    config: Partial<Omit<ListenerConfig<T>, "connection">> & { port: number; handler: Handler<T>; connection?: Partial<ConnectionOptions> },
  ): Listener<T> {
    const listener = new Listener<T>(this, {
      hostname: config.hostname ?? "127.0.0.1",
      port: config.port,
      backlog: config.backlog,
      reusePort: config.reusePort,
      ipv6Only: config.ipv6Only,
      handler: config.handler,
      connection: connectionOptions(config.connection),
    });
    this.start();
    return listener;
  }

  /** Connects to host:port (IP literal or "localhost"); resolves once connected. */
  connect<T>(host: string, port: number, handler: Handler<T>, options: Partial<ConnectionOptions> = {}): Promise<Connection<T>> {
    const opts = connectionOptions(options); // before the socket exists: a bad option leaks nothing
    const { fd: owned, inProgress } = startConnect(host, port);
    const fd = owned.release();
    return new Promise<Connection<T>>((resolve, reject) => {
      let conn: TcpConnection<T>;
      try {
        // Until connected we only want EPOLLOUT (connect completion).
        conn = this.registerConnection(fd, handler, opts, WRITABLE);
      } catch (e) {
        libc.close(fd);
        reject(e);
        return;
      }
      conn.connecting = (err) => (err ? reject(err) : resolve(conn));
      conn.start();
      if (!inProgress) conn.onWritable();
      this.start();
    });
  }

  /**
   * recvBuffer[0, n) as a view for a data handler. A subarray() costs ~100 ns; reads of one
   * size repeat (a ping-pong client, a pipelining client's batches), so the last view is
   * reused when the length matches. Handlers may only use the view during the call.
   */
  received(n: number): Uint8Array {
    let v = this.recvView;
    if (v.length !== n) this.recvView = v = this.recvBuffer.subarray(0, n);
    setReceiveView(v, this.recvPtr); // several reactors may share the thread: set every time
    return v;
  }

  markDirty(conn: TcpConnection<any>): void {
    this.dirty.push(conn);
  }

  /** Counts a promise returned by a handler: while any is pending, polls are kept short. */
  trackAsync(p: PromiseLike<unknown>, conn: TcpConnection<any>): void {
    this.pendingAsync++;
    p.then(
      () => { this.pendingAsync--; },
      (e) => { this.pendingAsync--; conn.fail(e); },
    );
  }

  /**
   * Asks the loop to yield to Bun's event loop right after the current dispatch instead of
   * within YIELD_EVERY_MS: for code that hands work to Bun (timers, Bun I/O) from a handler
   * and wants it to start at once.
   */
  requestYield(): void {
    this.yieldRequested = true;
  }

  get connectionCount(): number {
    return this.connections;
  }

  get isRunning(): boolean {
    return this.running !== null;
  }

  /**
   * Logs at most one line per second per `key`; the next line says how many were
   * suppressed. 2,000 slowloris connections timing out together make one line, not 2,000.
   */
  logThrottled(key: string, line: string): void {
    const now = performance.now();
    let t = this.throttle.get(key);
    if (t === undefined) {
      t = { last: -Infinity, suppressed: 0 };
      this.throttle.set(key, t);
    }
    if (now - t.last < 1000) {
      t.suppressed++;
      return;
    }
    this.log(t.suppressed > 0 ? `${line} (and ${t.suppressed} more like it in the last second)` : line);
    t.last = now;
    t.suppressed = 0;
  }

  // --- fd reserve (EMFILE) --------------------------------------------------------------

  hasReserveFd(): boolean {
    return this.reserveFd >= 0;
  }

  releaseReserveFd(): boolean {
    if (this.reserveFd < 0) return false;
    libc.close(this.reserveFd);
    this.reserveFd = -1;
    return true;
  }

  takeReserveFd(): void {
    if (this.reserveFd < 0) this.reserveFd = openReserveFd();
  }

  // --- the loop -------------------------------------------------------------------------

  /** Starts the loop if it is not running. Returns a promise that settles when it ends. */
  start(): Promise<void> {
    if (this.disposed) throw new Error("reactor is disposed");
    if (!this.running) {
      this.running = this.loop().finally(() => {
        this.running = null;
      });
    }
    return this.running;
  }

  private async loop(): Promise<void> {
    // The first turn runs after the caller's synchronous code (listen(), then connect()...).
    await yieldToBun();
    let lastYield = performance.now();
    let lastEvents = -Infinity; // when a poll last returned events (busy polling)
    let dispatched = false; // dispatched since the last yield
    const spin = this.spin;
    while (this.refs > 0 && !this.disposed) {
      this.flushDirty();
      let n = 0;
      // Busy polling: inside the spin window after the last events, poll without sleeping.
      // A spin stops at the window's end, when Bun is owed its turn, or when a timer is due;
      // in the last two cases the window is still open, so the loop yields or runs the timer
      // and spins on instead of sleeping. No spinning while output waits for the next pass
      // (the flush budget), a yield was requested, or a handler's promise waits on Bun I/O.
      let spinning = false;
      if (spin !== null && this.pendingAsync === 0 && this.dirty.length === 0 && !this.yieldRequested) {
        const windowEnd = lastEvents + spin.ms;
        let until = windowEnd;
        if (lastYield + YIELD_EVERY_MS < until) until = lastYield + YIELD_EVERY_MS;
        const next = this.timers.nextDeadline();
        if (next < until) until = next;
        if (performance.now() < until) {
          n = this.spinPoll(until);
          this.now = performance.now();
          spinning = n !== 0 || this.now < windowEnd;
        }
      }
      if (!spinning) {
        // After a dispatch, keep serving without yielding for up to YIELD_EVERY_MS: sleeping in
        // epoll_wait right away saves a yield (and Bun's own epoll_pwait) per message.
        n = this.backend.poll(dispatched ? this.busyPollTimeout(lastYield) : this.pollTimeout());
        this.now = performance.now();
        // Events after a sleep: adapt the spin window to the gap (spin.ts).
        if (n > 0 && spin !== null) spin.afterSleep(this.now - lastEvents);
      }
      if (n > 0) {
        lastEvents = this.now;
        this.dispatch(n);
        if (this.timers.nextDeadline() <= this.now) this.timers.runExpired(this.now);
        this.flushDirty();
        dispatched = true;
        // Microtask checkpoint: continuations of promises that handlers resolved (a client
        // awaiting its reply) run now, not after the next sleep. No Bun I/O happens here.
        for (let i = 0; i < MICROTASK_ROUNDS; i++) await null;
        if (this.now - lastYield < YIELD_EVERY_MS && !this.yieldRequested) continue;
      } else {
        if (n < 0 && n !== -Errno.EINTR) throw errorFromRc("epoll_wait", n);
        if (this.timers.nextDeadline() <= this.now) this.timers.runExpired(this.now);
        this.flushDirty();
        // Busy polling, window still open: spin on (a timer was due), yielding to Bun no more
        // often than when busy. After EINTR (n < 0) the loop yields: a signal handler waits.
        if (n === 0 && spinning && this.now - lastYield < YIELD_EVERY_MS && !this.yieldRequested) continue;
      }
      await yieldToBun();
      lastYield = this.now = performance.now();
      dispatched = false;
      this.yieldRequested = false;
    }
  }

  /**
   * Polls with a zero timeout until events (or -errno, e.g. EINTR) or `until` (a
   * performance.now() time); returns what the last poll returned. A tight loop of its own,
   * not turns of loop(): only this small function runs hot while spinning, so the JIT's top
   * tier compiles it and not the whole loop (that cost ~1 MiB of RSS, the idle benchmark).
   */
  private spinPoll(until: number): number {
    const b = this.backend;
    for (;;) {
      const n = b.poll(0);
      if (n !== 0 || performance.now() >= until) return n;
    }
  }

  /** Poll timeout while we owe Bun's loop a turn: never past lastYield + YIELD_EVERY_MS. */
  private busyPollTimeout(lastYield: number): number {
    if (this.pendingAsync > 0) return 0;
    const owed = Math.ceil(lastYield + YIELD_EVERY_MS - performance.now());
    if (owed <= 0) return 0;
    const t = this.pollTimeout();
    return t < owed ? t : owed;
  }

  private pollTimeout(): number {
    if (this.dirty.length > 0) return 0;
    const cap = this.pendingAsync > 0 ? this.asyncPollMs : this.maxPollMs;
    const next = this.timers.nextDeadline();
    if (next === Infinity) return cap;
    const ms = Math.ceil(next - performance.now());
    return ms <= 0 ? 0 : ms < cap ? ms : cap;
  }

  private dispatch(n: number): void {
    const b = this.backend;
    const gens = this.generations;
    for (let i = 0; i < n; i++) {
      const fd = b.eventFd(i);
      const entry = this.entries[fd];
      // Stale-event guard: fd closed in this batch (undefined) or closed and reused (generation).
      if (entry === undefined || gens[fd] !== b.eventGeneration(i)) continue;
      entry.onEvent(b.eventMask(i));
    }
  }

  /**
   * Sends each pending connection's coalesced output: one send(2) per connection per turn.
   * Small queues and connections read from since the last pass (their queue ends with a
   * reply) always go at once. Other large ones (bulk, fan-out of big messages) share
   * FLUSH_BUDGET bytes per pass; the rest stay listed and go after the next poll. So a
   * client that PINGs while a 64 KiB broadcast is on its way to 50 others gets the
   * broadcast and its PONG at once, not after the other 50 sends.
   */
  private flushDirty(): void {
    const list = this.dirty;
    let budget = FLUSH_BUDGET;
    let kept = 0;
    // Index loop: a flush may close a connection whose close handler writes to another one
    // (appended to the list, and flushed in this pass).
    for (let i = 0; i < list.length; i++) {
      const c = list[i]!;
      const queued = c.bufferedAmount;
      if (queued > LARGE_QUEUE && c.readPass !== this.flushPass) {
        if (budget <= 0) {
          list[kept++] = c; // still dirty: next pass
          continue;
        }
        budget -= queued;
      }
      c.dirty = false;
      c.flush();
    }
    list.length = kept;
    this.flushPass++;
  }

  private drainWake(): void {
    rc(libc.read(this.wakeFd, this.wakeBuf, 8));
  }

  /**
   * Interrupts epoll_wait from any thread. Other threads pass the fd (wakeFdNumber) and call
   * `wakeReactor(fd)`; a stop command travels beside it (e.g. a SharedArrayBuffer flag).
   */
  wake(): void {
    wakeReactor(this.wakeFd);
  }

  get wakeFdNumber(): number {
    return this.wakeFd;
  }

  // --- shutdown -------------------------------------------------------------------------

  /** Stops accepting; then flushes (graceful) or drops output; resolves when all are closed. */
  stop(options: StopOptions = {}): Promise<void> {
    if (this.stopping) return this.stopping;
    const graceful = options.graceful ?? true;
    for (const l of [...this.listeners]) l.close();
    this.now = performance.now();
    if (!graceful) {
      this.closeAll("shutdown");
    } else {
      for (const c of this.openConnections()) {
        // Requests that already arrived get their replies: each connection reads on until
        // the peer goes quiet and its output is flushed, then ends (beginDrain).
        if (c.connecting) c.close("shutdown");
        else c.beginDrain();
      }
      this.timers.schedule(this.forceClose, this.now + (options.drainTimeoutMs ?? 5000));
    }
    this.wake();
    const done = this.running ?? Promise.resolve();
    this.stopping = done.finally(() => {
      this.timers.cancel(this.forceClose);
      this.stopping = null;
    });
    return this.stopping;
  }

  /** A snapshot of the open connections (shutdown paths only: it scans the fd table). */
  private openConnections(): TcpConnection<any>[] {
    const out: TcpConnection<any>[] = [];
    for (const e of this.entries) if (e !== undefined && e.kind === KIND_CONNECTION) out.push(e);
    return out;
  }

  private closeAll(reason: "shutdown"): void {
    for (const c of this.openConnections()) c.close(reason);
  }

  /** Closes every fd this reactor owns. Safe to call twice. */
  [Symbol.dispose](): void {
    if (this.disposed) return;
    for (const l of [...this.listeners]) l.close();
    this.closeAll("shutdown");
    this.disposed = true;
    if (this.reserveFd >= 0) libc.close(this.reserveFd);
    this.reserveFd = -1;
    libc.close(this.wakeFd);
    this.backend[Symbol.dispose]();
  }
}

const wakeValue = new BigUint64Array(new ArrayBuffer(8));
wakeValue[0] = 1n;

/** Writes the eventfd of a reactor (possibly one running in another thread). */
export function wakeReactor(eventFd: number): void {
  libc.write(eventFd, wakeValue, 8);
}

/** Lets Bun's event loop run one tick (timers, I/O callbacks, signal handlers). ~2 us. */
function yieldToBun(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
