// Latency trace (`--trace-latency`): where the loop's time goes between polls, so that a
// slow request can be attributed to what the loop was doing when it arrived.
//
// A request that arrives while the loop polls is seen at once; one that arrives while the
// loop is elsewhere waits until the next poll. So the trace times every stretch "away" from
// epoll_wait (from the end of one poll to the start of the next) and splits it into phases:
// dispatch (handlers), timers and flush, the microtask checkpoint, the yield to Bun's event
// loop (Bun's timers, its own I/O and whatever its tick runs: GC among them). It also counts
// how polls ended (a spin that caught events, a sleep that was woken, a sleep that timed out)
// and, from JSC's heap size, the bytes allocated per event.
//
// Every `intervalMs` it hands one line to `report`: per phase the total, the max, and how
// many stretches over SLOW_US that phase dominated. The cost is a clock read per phase edge
// and a heapSize() per report: for diagnosis, not for production.

import { heapSize } from "bun:jsc";

/** The phases of a stretch away from epoll_wait (indexes). */
export const Phase = { Dispatch: 0, Flush: 1, Microtasks: 2, Yield: 3, Other: 4 } as const;
export type Phase = (typeof Phase)[keyof typeof Phase];
const PHASES = ["dispatch", "flush", "microtasks", "yield", "other"];
/** A stretch away from polling longer than this is "slow" (µs). */
const SLOW_US = 100;

export class LatencyTrace {
  private readonly phaseUs = new Float64Array(5);
  private readonly totalUs = new Float64Array(5);
  private readonly maxUs = new Float64Array(5);
  private readonly slowBy = new Float64Array(5);
  private mark = 0;
  private pollEndAt = 0;
  private turns = 0;
  private events = 0;
  private awayMaxUs = 0;
  private awayTotalUs = 0;
  private slow = 0;
  private slowOver1ms = 0;
  private spinHits = 0;
  private spinMisses = 0;
  private sleepWoken = 0;
  private sleepTimedOut = 0;
  private sleepUs = 0;
  private spinUs = 0;
  private readonly awayHist = new Uint32Array(8); // <10, <25, <50, <100, <250, <1000, <5000, more µs
  private heapAtStart = heapSize();
  private intervalStart = performance.now();

  constructor(
    private readonly report: (line: string) => void,
    private readonly intervalMs = 1000,
  ) {}

  /** The loop is about to poll (sleeping when `timeoutMs` > 0, spinning when `spin`). */
  pollStart(now: number): void {
    if (this.pollEndAt > 0) {
      const ph = this.phaseUs;
      ph[Phase.Other] += (now - this.mark) * 1000;
      const away = (now - this.pollEndAt) * 1000;
      this.awayTotalUs += away;
      if (away > this.awayMaxUs) this.awayMaxUs = away;
      const h = away < 10 ? 0 : away < 25 ? 1 : away < 50 ? 2 : away < 100 ? 3 : away < 250 ? 4 : away < 1000 ? 5 : away < 5000 ? 6 : 7;
      this.awayHist[h]!++;
      let top = 0;
      for (let i = 0; i < 5; i++) {
        const v = ph[i]!;
        this.totalUs[i] += v;
        if (v > this.maxUs[i]!) this.maxUs[i] = v;
        if (v > ph[top]!) top = i;
      }
      ph.fill(0);
      if (away > SLOW_US) {
        this.slow++;
        this.slowBy[top]!++;
        if (away > 1000) this.slowOver1ms++;
      }
    }
    this.mark = now;
  }

  /** A poll returned `n` events; `spun`: it was the zero-timeout spin; `timeoutMs`: the sleep's bound. */
  pollEnd(now: number, n: number, spun: boolean, timeoutMs: number): void {
    const d = (now - this.mark) * 1000;
    if (spun) {
      this.spinUs += d;
      if (n > 0) this.spinHits++;
      else this.spinMisses++;
    } else {
      this.sleepUs += d;
      if (n > 0) this.sleepWoken++;
      else if (timeoutMs > 0) this.sleepTimedOut++;
    }
    if (n > 0) this.events += n;
    this.turns++;
    this.pollEndAt = this.mark = now;
    if (now - this.intervalStart >= this.intervalMs) this.flushReport(now);
  }

  /** The phase that just ended at `now`. */
  phase(p: Phase, now: number): void {
    this.phaseUs[p] += (now - this.mark) * 1000;
    this.mark = now;
  }

  private flushReport(now: number): void {
    const secs = (now - this.intervalStart) / 1000;
    const heap = heapSize();
    const grown = heap - this.heapAtStart;
    const parts: string[] = [];
    for (let i = 0; i < 5; i++) {
      parts.push(`${PHASES[i]} ${(this.totalUs[i]! / 1000).toFixed(1)} ms (max ${this.maxUs[i]!.toFixed(0)} µs, slow ${this.slowBy[i]})`);
    }
    const hist = Array.from(this.awayHist).join("/");
    this.report(
      `trace ${secs.toFixed(2)} s: ${this.turns} polls, ${this.events} events; ` +
        `away from epoll ${(this.awayTotalUs / 1000).toFixed(1)} ms, max ${this.awayMaxUs.toFixed(0)} µs, ` +
        `>${SLOW_US} µs ${this.slow} (>1 ms ${this.slowOver1ms}); ` +
        `stretches <10/25/50/100/250/1000/5000/more µs: ${hist}; ` +
        `${parts.join(", ")}; ` +
        `spin ${(this.spinUs / 1000).toFixed(1)} ms (hit ${this.spinHits}, missed ${this.spinMisses}), ` +
        `sleep ${(this.sleepUs / 1000).toFixed(1)} ms (woken ${this.sleepWoken}, timed out ${this.sleepTimedOut}); ` +
        `JS heap ${grown >= 0 ? "+" : ""}${(grown / 1024).toFixed(0)} KiB` +
        (this.events > 0 && grown >= 0 ? ` (${(grown / this.events).toFixed(1)} B/event; a drop means a GC ran)` : " (a GC ran)"),
    );
    this.totalUs.fill(0);
    this.maxUs.fill(0);
    this.slowBy.fill(0);
    this.awayHist.fill(0);
    this.turns = this.events = this.awayMaxUs = this.awayTotalUs = this.slow = this.slowOver1ms = 0;
    this.spinHits = this.spinMisses = this.sleepWoken = this.sleepTimedOut = this.sleepUs = this.spinUs = 0;
    this.heapAtStart = heap;
    this.intervalStart = now;
  }
}
