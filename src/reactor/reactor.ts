// The reactor: one driver, one thread, one loop, and the policy around it: timers, busy
// polling, yielding to Bun, flushing coalesced output, connection limits, ids, shutdown.
//
// Each turn: flush pending output -> poll -> dispatch ready fds -> run due timers -> flush.
// The driver (src/driver/) does every syscall of the data path; the reactor knows streams
// and listeners only as entries it registers with the driver.
//
// A loop blocked in epoll_wait starves Bun's own event loop (timers, promises, signal
// handlers), so this one is async: it yields to Bun at least every YIELD_EVERY_MS, caps its
// sleeps at maxPollMs (Bun's timers are not fd-driven) and at asyncPollMs while a handler's
// promise is pending. docs/ARCHITECTURE.md, "Event-loop integration".
//
// Ids. Stream ids are index * ID_LANE + n, n = 1, 2, ...: the reactor's index (unique among
// the thread's live reactors, or given) is derivable from any id, and ids are unique in the
// process for every open stream. A lane that wraps skips ids still in use.

import { Errno, errorFromRc } from "../../ffi/index.ts";
import { threadPool, type BufferPool } from "../buffers/pool.ts";
import { KIND_STREAM, READABLE, WRITABLE } from "../driver/driver.ts";
import { EpollDriver, wakeEventFd, type EpollDriverOptions } from "../driver/epoll.ts";
import { startConnect } from "../driver/sockets.ts";
import { StreamState, type Handler, type Stream } from "../stream/stream.ts";
import { TcpStream, connectionOptions, type ConnectionOptions } from "../stream/tcp-stream.ts";
import { Listener, type ListenerConfig } from "./listener.ts";
import { SpinWindow } from "./spin.ts";
import { ReactorStats } from "./stats.ts";
import { TimerHeap, Timer } from "./timers.ts";
import { LatencyTrace, Phase } from "./trace.ts";

/** Yield to Bun's event loop at least this often while busy. */
const YIELD_EVERY_MS = 1;
/** How often the buffer pool gives back what sat unused (BufferPool.trim). */
const TRIM_EVERY_MS = 250;
/** Bytes sent per flush pass from queues over LARGE_QUEUE before the loop polls again. */
const FLUSH_BUDGET = 128 * 1024;
const LARGE_QUEUE = 64 * 1024;
/** `await null`s after each dispatch: promise chains this deep resume before the next poll. */
const MICROTASK_ROUNDS = 3;

/** Ids per reactor lane (2^26): ids fit a u32 for 64 reactors. */
export const ID_LANE = 1 << 26;
/** Reactors whose ids a u32 can carry: indexes 0..63. */
export const MAX_REACTORS = 64;

/** The index of the reactor that owns stream `id`. */
export function reactorIndexOf(id: number): number {
  return Math.floor(id / ID_LANE);
}

/** Indexes of this thread's live reactors (module state is per Worker). */
const indexesInUse = new Set<number>();

function claimIndex(wanted: number | undefined): number {
  if (wanted !== undefined) {
    if (!Number.isInteger(wanted) || wanted < 0 || wanted >= MAX_REACTORS) throw new RangeError(`reactor index must be an integer 0..${MAX_REACTORS - 1}, got ${wanted}`);
    if (indexesInUse.has(wanted)) throw new RangeError(`reactor index ${wanted} is in use by another reactor of this thread`);
    indexesInUse.add(wanted);
    return wanted;
  }
  for (let i = 0; i < MAX_REACTORS; i++) {
    if (!indexesInUse.has(i)) {
      indexesInUse.add(i);
      return i;
    }
  }
  throw new RangeError(`more than ${MAX_REACTORS} reactors in one thread`);
}

export interface ReactorOptions extends Omit<EpollDriverOptions, "poller"> {
  /** Upper bound of one poll, so Bun's timers run on time (ms). Default 10. */
  maxPollMs?: number;
  /**
   * Upper bound of one poll while a handler's promise is pending (ms). Default 0: the loop
   * alternates poll(0) and a yield, so Bun I/O a handler awaits completes at Bun's own
   * speed, at the price of a busy core while the promise is pending.
   */
  asyncPollMs?: number;
  /**
   * This reactor's index, the high part of its stream ids (0..63). Default: the lowest one
   * free in this thread. Reactors in several Workers pass theirs, so ids stay unique in the
   * process.
   */
  index?: number;
  /** Connections past this are accepted, told so (Handler.full) and closed. */
  maxConnections?: number;
  /**
   * Busy polling (µs, default 0: off): the longest the loop keeps polling with a zero
   * timeout after events before sleeping. A request that arrives meanwhile is served without
   * the sleep and wake-up, at the price of a core that spins through the gaps. The window
   * adapts (spin.ts): it grows while events keep coming within this bound and drops to 0
   * when they come later, so sparse traffic costs no spinning. Bun's loop still gets its
   * turn every YIELD_EVERY_MS.
   */
  busyPollUs?: number;
  /**
   * Time the loop's stretches away from epoll_wait by phase and log a summary every second
   * (trace.ts): for finding where tail latency goes. Default false.
   */
  traceLatency?: boolean;
  /** Where diagnostics go; `context` says what a line is about (for structured logs). */
  log?: (line: string, context?: LogContext) => void;
  /** A scripted poller for tests (EpollDriverOptions.poller). */
  poller?: EpollDriverOptions["poller"];
  /**
   * Reactors in several threads that share one connection limit: `counts` (shared memory)
   * holds each one's open connections, this one's at `counts[slot]`; maxConnections is
   * compared with their sum.
   */
  sharedConnections?: { counts: Int32Array; slot: number };
  /**
   * Called once per turn, after the turn's events are dispatched and before the coalesced
   * output is flushed (the hub's cross-thread rings are drained and published here).
   */
  onTurn?: () => void;
  /**
   * Threads that must close each other's fds after a crash (a dead Worker does not close
   * what it opened through FFI): `table[fd]` is set to `tag` while this reactor owns fd.
   */
  fdOwners?: { table: Uint8Array; tag: number };
}

/** What a diagnostic line is about: src/log.ts prints it as fields with --log-format json. */
export interface LogContext {
  /** A short stable name: "slow_consumer", "frame_timeout", "handler_error"... */
  event: string;
  level: "info" | "warn" | "error";
  connection?: number;
  reason?: string;
  /** The connection's peer, read (getpeername) only if the line is printed. */
  peer?: { readonly remoteAddress: string; readonly remotePort: number };
  /** Lines like this one left out in the last second (logThrottled). */
  suppressed?: number;
}

export interface StopOptions {
  /** Flush queued output and reply to requests already received (default true). */
  graceful?: boolean;
  /** Give up flushing after this long and close what is left (ms, default 5000). */
  drainTimeoutMs?: number;
}

export class Reactor implements Disposable {
  readonly driver: EpollDriver;
  readonly stats = new ReactorStats();
  readonly timers = new TimerHeap();
  readonly index: number;
  /** Output buffers: the thread's pool (shared with decoders and broadcast payloads). */
  readonly bufferPool: BufferPool = threadPool;
  readonly maxPollMs: number;
  readonly asyncPollMs: number;
  /** Adaptive busy polling (ReactorOptions.busyPollUs); null when off. */
  readonly spin: SpinWindow | null;
  maxConnections: number;
  /** Flush passes so far (TcpStream.readPass: read from in the current pass). */
  flushPass = 0;
  /** performance.now() at the start of the current turn. */
  now = performance.now();
  readonly log: (line: string, context?: LogContext) => void;
  /** ReactorOptions.traceLatency; null when off. */
  private readonly trace: LatencyTrace | null;

  private readonly dirty: TcpStream<any>[] = [];
  /** Open connections. Found through the driver's table (no per-connection Set entry: memory). */
  private connections = 0;
  private readonly listeners = new Set<Listener<any>>();
  /** Registered listeners + connections: the loop runs while this is > 0. */
  private refs = 0;
  /** The next id's position in this reactor's lane (see the top). */
  private seq = 1;
  /** After a lane wrap: ids that were open then, skipped until the next wrap. */
  private liveAtWrap: Set<number> | null = null;
  private readonly pendingConnects = new Map<TcpStream<any>, (err: Error | null) => void>();
  private readonly throttle = new Map<string, { last: number; suppressed: number }>();
  private pendingAsync = 0;
  private yieldRequested = false;
  private running: Promise<void> | null = null;
  private stopping: Promise<void> | null = null;
  private disposed = false;
  private readonly forceClose = new Timer(() => this.closeAll("shutdown"));
  private readonly shared: { counts: Int32Array; slot: number } | null;
  private readonly onTurn: (() => void) | null;
  private readonly fdOwners: { table: Uint8Array; tag: number } | null;

  constructor(options: ReactorOptions = {}) {
    this.log = options.log ?? ((line) => console.error(`[bunpoll] ${line}`));
    this.maxPollMs = options.maxPollMs ?? 10;
    this.asyncPollMs = options.asyncPollMs ?? 0;
    this.maxConnections = options.maxConnections ?? Infinity;
    const busyPollUs = options.busyPollUs ?? 0;
    if (!(busyPollUs >= 0) || !Number.isFinite(busyPollUs)) throw new RangeError(`busyPollUs must be a finite number >= 0, got ${busyPollUs}`);
    this.spin = busyPollUs > 0 ? new SpinWindow(busyPollUs / 1000) : null;
    this.shared = options.sharedConnections ?? null;
    this.onTurn = options.onTurn ?? null;
    this.fdOwners = options.fdOwners ?? null;
    this.trace = options.traceLatency ? new LatencyTrace((line) => this.log(line, { event: "trace_latency", level: "info" })) : null;
    this.index = claimIndex(options.index);
    using stack = new DisposableStack();
    stack.defer(() => indexesInUse.delete(this.index));
    this.driver = stack.use(new EpollDriver(this.stats, options));
    stack.move(); // constructed: [Symbol.dispose] owns the driver and the index from here
  }

  // --- registration ---------------------------------------------------------------------

  /** Enters a listener or stream into the driver and counts it. Throws a SyscallError. */
  register(entry: TcpStream<any> | Listener<any>, interest: number): void {
    this.driver.attach(entry, interest);
    const owners = this.fdOwners;
    if (owners !== null && entry.fd < owners.table.length) Atomics.store(owners.table, entry.fd, owners.tag);
    this.refs++;
    if (entry.kind === KIND_STREAM) {
      this.connections++;
      if (this.shared !== null) Atomics.add(this.shared.counts, this.shared.slot, 1);
    } else this.listeners.add(entry);
  }

  /** Removes a closing entry; the driver closes its fd. */
  forget(entry: TcpStream<any> | Listener<any>): void {
    // Cleared before the close: after it, another thread may get the same fd number.
    const owners = this.fdOwners;
    if (owners !== null && entry.fd < owners.table.length) Atomics.store(owners.table, entry.fd, 0);
    this.driver.close(entry);
    if (entry.kind === KIND_STREAM) {
      this.connections--;
      if (this.shared !== null) Atomics.sub(this.shared.counts, this.shared.slot, 1);
    } else this.listeners.delete(entry);
    this.refs--;
  }

  /** The next stream id (see the top). */
  private nextId(): number {
    for (;;) {
      if (this.seq >= ID_LANE) {
        this.seq = 1;
        this.liveAtWrap = new Set(this.openStreams().map((s) => s.id));
      }
      const id = this.index * ID_LANE + this.seq++;
      if (this.liveAtWrap === null || !this.liveAtWrap.has(id)) return id;
    }
  }

  /** Open connections of every reactor sharing the limit (sharedConnections). */
  private sharedTotal(): number {
    const c = this.shared!.counts;
    let n = 0;
    for (let i = 0; i < c.length; i++) n += Atomics.load(c, i);
    return n;
  }

  /** Takes ownership of an accepted, non-blocking fd and opens a stream on it. */
  adopt<T>(fd: number, handler: Handler<T>, options: ConnectionOptions): TcpStream<T> | null {
    // Runs on every accept: no guard object here (a `using` Fd per accept was garbage that the
    // idle-memory benchmark counted). Until registered the fd is closed by this catch.
    const stream = new TcpStream<T>(this, fd, this.nextId(), handler, options);
    try {
      this.register(stream, READABLE);
    } catch (e) {
      this.driver.closeFd(fd);
      this.log(`could not register connection fd ${fd}: ${(e as Error).message}`, { event: "register_failed", level: "error" });
      return null;
    }
    this.stats.connectionsActive++;
    this.stats.connectionsTotal++;
    if ((this.shared === null ? this.connections : this.sharedTotal()) > this.maxConnections) {
      this.stats.rejectedFull++;
      stream.rejectFull();
    } else {
      stream.start();
    }
    return stream;
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
      handOff: config.handOff,
    });
    this.start();
    return listener;
  }

  /** Connects to host:port (IP literal or "localhost"); resolves once connected. */
  connect<T>(host: string, port: number, handler: Handler<T>, options: Partial<ConnectionOptions> = {}): Promise<Stream<T>> {
    const opts = connectionOptions(options); // before the socket exists: a bad option leaks nothing
    const started = startConnect(host, port);
    using fd = started.fd;
    // Until connected only WRITABLE (connect completion) is wanted.
    const stream = new TcpStream<T>(this, fd.value, this.nextId(), handler, opts, true);
    this.register(stream, WRITABLE);
    fd.release();
    this.stats.connectionsActive++;
    this.stats.connectionsTotal++;
    return new Promise<Stream<T>>((resolve, reject) => {
      this.pendingConnects.set(stream, (err) => (err ? reject(err) : resolve(stream)));
      stream.start();
      if (!started.inProgress) stream.onWritable();
      this.start();
    });
  }

  /** A connect() finished: resolves or rejects its promise. */
  connectSettled(stream: TcpStream<any>, err: Error | null): void {
    const cb = this.pendingConnects.get(stream);
    if (cb === undefined) return;
    this.pendingConnects.delete(stream);
    cb(err);
  }

  /**
   * Keeps the loop running with nothing registered: a reactor that other threads feed with
   * connections (adopt) has no listener of its own. release() undoes it.
   */
  retain(): void {
    this.refs++;
    this.start();
  }

  release(): void {
    this.refs--;
    this.wake();
  }

  markDirty(stream: TcpStream<any>): void {
    this.dirty.push(stream);
  }

  /**
   * Counts a promise returned by a handler: while any is pending, polls are kept short. A
   * rejection closes the stream; with `pause`, the stream reads again once it settles.
   */
  trackAsync(p: PromiseLike<unknown>, stream: TcpStream<any>, pause: boolean): void {
    this.pendingAsync++;
    p.then(
      () => {
        this.pendingAsync--;
        if (pause) stream.asyncSettled();
      },
      (e) => {
        this.pendingAsync--;
        if (pause) stream.asyncSettled();
        stream.fail(e);
      },
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
  logThrottled(key: string, line: string, context?: LogContext): void {
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
    if (t.suppressed > 0) this.log(`${line} (and ${t.suppressed} more like it in the last second)`, context && { ...context, suppressed: t.suppressed });
    else this.log(line, context);
    t.last = now;
    t.suppressed = 0;
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
    let nextTrim = lastYield + TRIM_EVERY_MS;
    let spunMs = 0; // spinning since the last events or window end (busy polling)
    const spin = this.spin;
    const trace = this.trace;
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
        const t = performance.now();
        if (t < until) {
          if (trace !== null) trace.pollStart(t);
          n = this.spinPoll(until);
          this.now = performance.now();
          if (trace !== null) trace.pollEnd(this.now, n, true, 0);
          spinning = n !== 0 || this.now < windowEnd;
          // The spin's ledger (spin.ts): a spin cut short for Bun or a timer goes on after it.
          spunMs += this.now - t;
          if (!spinning || n > 0) {
            spin.afterSpin(n > 0, spunMs);
            spunMs = 0;
          }
        }
      }
      if (!spinning) {
        // After a dispatch, keep serving without yielding for up to YIELD_EVERY_MS: sleeping in
        // epoll_wait right away saves a yield (and Bun's own epoll_pwait) per message.
        const timeout = dispatched ? this.busyPollTimeout(lastYield) : this.pollTimeout();
        if (trace !== null) trace.pollStart(performance.now());
        n = this.driver.poll(timeout);
        this.now = performance.now();
        if (trace !== null) trace.pollEnd(this.now, n, false, timeout);
        // Events after a sleep: adapt the spin window to the gap (spin.ts).
        if (n > 0 && spin !== null) spin.afterSleep(this.now - lastEvents);
      }
      if (n > 0) {
        lastEvents = this.now;
        this.driver.dispatch(n);
        if (trace !== null) trace.phase(Phase.Dispatch, performance.now());
        if (this.timers.nextDeadline() <= this.now) this.timers.runExpired(this.now);
        if (this.onTurn !== null) this.onTurn();
        this.flushDirty();
        if (trace !== null) trace.phase(Phase.Flush, performance.now());
        dispatched = true;
        // Microtask checkpoint: continuations of promises that handlers resolved (a client
        // awaiting its reply) run now, not after the next sleep. No Bun I/O happens here.
        for (let i = 0; i < MICROTASK_ROUNDS; i++) await null;
        if (trace !== null) trace.phase(Phase.Microtasks, performance.now());
        if (this.now - lastYield < YIELD_EVERY_MS && !this.yieldRequested) continue;
      } else {
        if (n < 0 && n !== -Errno.EINTR) throw errorFromRc("epoll_wait", n);
        if (this.timers.nextDeadline() <= this.now) this.timers.runExpired(this.now);
        if (this.onTurn !== null) this.onTurn();
        this.flushDirty();
        // Busy polling, window still open: spin on (a timer was due), yielding to Bun no more
        // often than when busy. After EINTR (n < 0) the loop yields: a signal handler waits.
        if (n === 0 && spinning && this.now - lastYield < YIELD_EVERY_MS && !this.yieldRequested) continue;
      }
      if (trace !== null) trace.phase(Phase.Other, performance.now());
      await yieldToBun();
      lastYield = this.now = performance.now();
      if (trace !== null) trace.phase(Phase.Yield, this.now);
      dispatched = false;
      if (this.now >= nextTrim) {
        this.bufferPool.trim();
        nextTrim = this.now + TRIM_EVERY_MS;
      }
      this.yieldRequested = false;
    }
  }

  /**
   * Polls with a zero timeout until events (or -errno, e.g. EINTR) or `until` (a
   * performance.now() time); returns what the last poll returned. A tight loop of its own,
   * not turns of loop(): only this small function runs hot while spinning, so the JIT's top
   * tier compiles it and not the whole loop, which costs memory (bench/README.md, "Figures
   * behind design choices").
   */
  private spinPoll(until: number): number {
    const d = this.driver;
    for (;;) {
      const n = d.poll(0);
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
          c.updateInterest(); // a backpressured stream stops reading before the next poll
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

  /** Interrupts the poll from this thread; other threads call wakeReactor(wakeFdNumber). */
  wake(): void {
    this.driver.wake();
  }

  get wakeFdNumber(): number {
    return this.driver.wakeFd;
  }

  // --- shutdown -------------------------------------------------------------------------

  /** Stops accepting; then flushes (graceful) or drops output; resolves when all are closed. */
  stop(options: StopOptions = {}): Promise<void> {
    if (this.stopping) return this.stopping;
    const graceful = options.graceful ?? true;
    // Connections the kernel completed but we had not accepted yet are taken in first: closing
    // the listener would reset them, though their clients may already have sent requests.
    if (graceful) for (const l of this.listeners) this.driver.acceptNow(l, 4096);
    for (const l of [...this.listeners]) l.close();
    this.now = performance.now();
    if (!graceful) {
      this.closeAll("shutdown");
    } else {
      for (const s of this.openStreams()) {
        // Requests that already arrived get their replies: each stream reads on until the
        // peer goes quiet and its output is flushed, then ends (beginDrain).
        if (s.state === StreamState.Connecting) s.close("shutdown");
        else s.beginDrain();
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

  /** A snapshot of the open streams (shutdown paths and id wraps only: it scans the fd table). */
  private openStreams(): TcpStream<any>[] {
    return this.driver.entriesOfKind(KIND_STREAM) as TcpStream<any>[];
  }

  private closeAll(reason: "shutdown"): void {
    for (const s of this.openStreams()) s.close(reason);
  }

  /** Closes every fd this reactor owns and frees its index. Safe to call twice. */
  [Symbol.dispose](): void {
    if (this.disposed) return;
    for (const l of [...this.listeners]) l.close();
    this.closeAll("shutdown");
    this.disposed = true;
    this.driver[Symbol.dispose]();
    indexesInUse.delete(this.index);
  }
}

/** Interrupts a reactor's poll from any thread, given its wakeFdNumber. */
export function wakeReactor(eventFd: number): void {
  wakeEventFd(eventFd);
}

/** Lets Bun's event loop run one tick (timers, I/O callbacks, signal handlers). */
function yieldToBun(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
