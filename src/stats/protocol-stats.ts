// Protocol-level counters shared by every listener of a process: messages in/out per
// kind, errors per code, and the per-message processing-time histogram. The reactor's own
// counters (connections, bytes, backpressure) live in ReactorStats.
//
// The vocabularies are open: this module knows no protocol. Each protocol registers, at
// setup, the message kinds it counts (by name; the returned dense index is what the hot
// path increments), its error codes (code, name) and the close reasons it can cause (so
// they show as 0 before the first one happens).
//
// Cost model. Counters are Float64Array slots: an increment is a load and a store.
// The clock is the expensive part. Bun.nanoseconds() is a call into the host; the JIT
// inlines performance.now(), which has sub-microsecond resolution, so the default clock is
// performance.now() scaled to ns. A `data` call is timed as one batch by default (two
// clock reads per read(2), however many messages it held) and each message of the batch is
// recorded with the batch's mean time: exact for one message per read (request/response
// clients). `latencyMode: "message"` reads the clock after every message instead.

import { LatencyHistogram } from "./histogram.ts";

export type LatencyMode = "batch" | "message";

/** Monotonic ns as a double (performance.now() is ms with sub-µs resolution). */
function monotonicNs(): number {
  return performance.now() * 1e6;
}

export interface ProtocolStatsOptions {
  /** Master switch for counters and histogram (default true). */
  enabled?: boolean;
  latencyMode?: LatencyMode;
  /** Monotonic clock in nanoseconds (default performance.now() x 1e6); injectable for tests. */
  now?: () => number;
}

export class ProtocolStats {
  /**
   * When false nothing is counted or timed. Checked once per `data` call and once per
   * message by the protocols; flip it at runtime to compare the cost.
   */
  enabled: boolean;
  perMessageTiming: boolean;
  /**
   * Counters indexed by the dense kind index `registerKind` returns. Registration
   * replaces these arrays (a larger copy), so read them through the ProtocolStats each
   * time; never keep a reference across a registration.
   */
  messagesIn = new Float64Array(0);
  messagesOut = new Float64Array(0);
  /** Counters indexed by registered error code (unregistered slots stay 0). */
  errors = new Float64Array(0);
  readonly latency = new LatencyHistogram();
  readonly now: () => number;

  // Batch timer state. One timer per process is enough: `data` calls never nest (the
  // reactor is single-threaded and a write never re-enters a read handler).
  private batchStart = 0;
  private lastTick = 0;
  private batchMessages = 0;
  private timing = false;

  private readonly kindNames: string[] = [];
  private readonly kindIndexes = new Map<string, number>();
  /** errorNames[code]: sparse, like the codes. */
  private readonly errorNames: string[] = [];
  private readonly errorCodes = new Map<string, number>();
  private readonly closeReasonNames: string[] = [];

  constructor(opts: ProtocolStatsOptions = {}) {
    this.enabled = opts.enabled ?? true;
    this.perMessageTiming = opts.latencyMode === "message";
    this.now = opts.now ?? monotonicNs;
  }

  /**
   * Register a message kind; returns its dense index (0, 1, 2... in registration order).
   * Registering a name again returns the index it already has, so protocols that share
   * a kind ("ping" in two protocols) share its counter.
   */
  registerKind(name: string): number {
    const known = this.kindIndexes.get(name);
    if (known !== undefined) return known;
    const idx = this.kindNames.length;
    this.kindNames.push(name);
    this.kindIndexes.set(name, idx);
    this.messagesIn = grown(this.messagesIn, idx + 1);
    this.messagesOut = grown(this.messagesOut, idx + 1);
    return idx;
  }

  /** Dense index of a registered kind; -1 when it is not registered. */
  kindIndex(name: string): number {
    return this.kindIndexes.get(name) ?? -1;
  }

  /** Name of the kind at a dense index; undefined when there is none. */
  kindName(idx: number): string | undefined {
    return this.kindNames[idx];
  }

  /** Registered kind names, index order. */
  get kinds(): readonly string[] {
    return this.kindNames;
  }

  /**
   * Register an error code and its name (the stats key, e.g. "bad_body"). The code is
   * the counter index, so keep codes small. Registering the same pair again is a no-op;
   * a code or a name already registered with a different partner throws, because two
   * protocols would then count different errors in one counter.
   */
  registerError(code: number, name: string): void {
    if (!Number.isInteger(code) || code < 0 || code > MAX_ERROR_CODE) {
      throw new RangeError(`error code ${code} for "${name}": must be an integer in 0..${MAX_ERROR_CODE}`);
    }
    const byCode = this.errorNames[code];
    const byName = this.errorCodes.get(name);
    if (byCode === name && byName === code) return;
    if (byCode !== undefined) throw new Error(`error code ${code} is already registered as "${byCode}", not "${name}"`);
    if (byName !== undefined) throw new Error(`error name "${name}" is already registered with code ${byName}, not ${code}`);
    this.errorNames[code] = name;
    this.errorCodes.set(name, code);
    if (code >= this.errors.length) this.errors = grown(this.errors, code + 1);
  }

  /** Name of a registered error code; undefined when it is not registered. */
  errorName(code: number): string | undefined {
    return this.errorNames[code];
  }

  /**
   * Register a close reason a protocol can cause. The reactor counts close reasons by
   * name whatever they are; registered ones are listed in snapshots even while 0.
   */
  registerCloseReason(name: string): void {
    if (!this.closeReasonNames.includes(name)) this.closeReasonNames.push(name);
  }

  /** Registered close reasons, registration order. */
  get registeredCloseReasons(): readonly string[] {
    return this.closeReasonNames;
  }

  /**
   * Start timing a `data` call. Returns the clock reading it took (ns), or 0 when stats
   * are disabled, so a caller that needs the time anyway (rate limiting) can reuse it.
   */
  beginBatch(): number {
    if (!this.enabled) {
      this.timing = false;
      return 0;
    }
    const t = this.now();
    this.timing = true;
    this.batchStart = t;
    this.lastTick = t;
    this.batchMessages = 0;
    return t;
  }

  /** One message of the current batch has been handled (its replies are queued). */
  tick(): void {
    if (!this.timing) return;
    if (this.perMessageTiming) {
      const t = this.now();
      this.latency.record(t - this.lastTick);
      this.lastTick = t;
    } else {
      this.batchMessages++;
    }
  }

  endBatch(): void {
    if (!this.timing) return;
    this.timing = false;
    const n = this.batchMessages;
    if (n === 0) return;
    this.latency.record((this.now() - this.batchStart) / n, n);
  }

  /** `kind`: an index registerKind returned (the hot paths may also increment messagesIn[kind] directly). */
  countIn(kind: number): void {
    if (this.enabled) this.messagesIn[kind]++;
  }

  countOut(kind: number, n = 1): void {
    if (this.enabled) this.messagesOut[kind] += n;
  }

  /** `code`: a registered error code. */
  countError(code: number): void {
    if (this.enabled) this.errors[code]++;
  }

  get messagesInTotal(): number {
    return sum(this.messagesIn);
  }

  get messagesOutTotal(): number {
    return sum(this.messagesOut);
  }

  get errorsTotal(): number {
    return sum(this.errors);
  }

  reset(): void {
    this.messagesIn.fill(0);
    this.messagesOut.fill(0);
    this.errors.fill(0);
    this.latency.reset();
  }
}

/** Largest error code: codes index a counter array, so they must stay small. */
export const MAX_ERROR_CODE = 0xffff;

/** A copy of `a` with `length` slots (the new ones 0). */
function grown(a: Float64Array, length: number): Float64Array<ArrayBuffer> {
  const b = new Float64Array(length);
  b.set(a);
  return b;
}

function sum(a: Float64Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]!;
  return s;
}
