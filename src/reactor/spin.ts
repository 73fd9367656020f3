// Adaptive busy polling: how long the loop keeps polling with a zero timeout after events
// before it sleeps in epoll_wait.
//
// Why spin at all: on a VM an idle vCPU halts, and waking it when the next request arrives
// (an IPI, a VM entry, the scheduler) adds latency and CPU to every message; polling
// through a short gap avoids both. Why adapt: a fixed window is wasted in full whenever the
// next event comes later than the window (a client pacing its requests 100 µs apart would
// keep a 50 µs window spinning for nothing, half a core).
//
// The rule is the one of Linux's cpuidle haltpoll governor (drivers/cpuidle/governors/
// haltpoll.c, adjust_poll_limit), which does the same thing inside KVM guests: after a sleep
// that ended `gap` after the last events,
// - gap within the current window: the spin did its job (not reached here: no sleep);
// - window < gap <= max: a longer window would have caught it: grow (x2, at least start);
// - gap > max: spinning could not have helped: shrink (/2, and to 0 below start).
// So a steady request/response client grows the window to what it needs, and sparse traffic
// shrinks it to 0 after a few sleeps: then the loop sleeps at once, as without busy polling.
export class SpinWindow {
  /** Current window, ms (0: sleep at once). */
  ms = 0;
  /** Where growth starts and below which a shrinking window becomes 0 (max / 4, as haltpoll). */
  readonly startMs: number;

  constructor(readonly maxMs: number) {
    if (!(maxMs > 0) || !Number.isFinite(maxMs)) throw new RangeError(`SpinWindow: max must be a finite number > 0, got ${maxMs}`);
    this.startMs = maxMs / 4;
  }

  /** A poll that was not spinning returned events gapMs after the previous events. */
  afterSleep(gapMs: number): void {
    if (gapMs > this.maxMs) {
      const v = this.ms / 2;
      this.ms = v < this.startMs ? 0 : v;
    } else if (gapMs > this.ms) {
      const v = this.ms * 2;
      this.ms = v < this.startMs ? this.startMs : v > this.maxMs ? this.maxMs : v;
    }
  }
}
