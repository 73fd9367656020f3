// Protocol-level counters shared by every listener of a process: messages in/out per
// kind, errors per code, and the per-message processing-time histogram. The reactor's own
// counters (connections, bytes, backpressure) live in ReactorStats.
//
// Cost model. Counters are Float64Array slots: an increment is a load and a store.
// The clock is the expensive part. Bun.nanoseconds() costs ~47 ns per call on the reference
// VM (a host call); performance.now() ~6 ns (the JIT inlines it) with sub-microsecond
// resolution, so the default clock is performance.now() scaled to ns. Either way a `data`
// call is timed as one batch by default (two clock reads per read(2), however many
// messages it held) and each message of the batch is recorded with the batch's mean time.
// For one message per read (request/response clients) that is exact. `latencyMode:
// "message"` reads the clock after every message instead, for exact per-message times.

import { ERROR_CODE_SLOTS } from "../protocols/codec/errors.ts";
import { KIND_COUNT } from "../protocols/codec/kinds.ts";
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
  readonly messagesIn = new Float64Array(KIND_COUNT);
  readonly messagesOut = new Float64Array(KIND_COUNT);
  readonly errors = new Float64Array(ERROR_CODE_SLOTS);
  readonly latency = new LatencyHistogram();
  readonly now: () => number;

  // Batch timer state. One timer per process is enough: `data` calls never nest (the
  // reactor is single-threaded and a write never re-enters a read handler).
  private batchStart = 0;
  private lastTick = 0;
  private batchMessages = 0;
  private timing = false;

  constructor(opts: ProtocolStatsOptions = {}) {
    this.enabled = opts.enabled ?? true;
    this.perMessageTiming = opts.latencyMode === "message";
    this.now = opts.now ?? monotonicNs;
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

  countIn(kind: number): void {
    if (this.enabled) this.messagesIn[kind]++;
  }

  countOut(kind: number, n = 1): void {
    if (this.enabled) this.messagesOut[kind] += n;
  }

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

function sum(a: Float64Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]!;
  return s;
}
