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
//
// Spin only when it pays. Haltpoll's rule grows the window whenever gaps fall within max,
// which random arrivals (many clients at a steady rate) do often enough to keep a full window
// spinning through most gaps, most of them in vain: at 20k messages/s over 50 connections the
// loop spun ~30 µs per message to save a sleep/wake cycle on a minority of them. So the
// window also keeps a ledger (the ski-rental rule): over each epoch of EPOCH spins, spinning
// pays when the time it spun is at most what its hits saved, hits x WAKE_COST_MS (a sleep and
// a wake-up, which a hit avoids); a deficit past CREDIT wake-ups ends the epoch early. When
// it does not pay, the window drops to 0 and stays there
// (gaps do not grow it) for a hold of sleeps that doubles each time this happens again
// (HOLD_MIN..HOLD_MAX), so a load that keeps failing the test spins in ever rarer probes.
// An epoch that pays resets the hold. A ping-pong client, whose next request arrives within a
// round trip, hits nearly every spin after ~15 µs of it: it pays, and keeps its window.
export const WAKE_COST_MS = 0.02;
const EPOCH = 64;
const CREDIT = 8;
const HOLD_MIN = 64;
const HOLD_MAX = 8192;

export class SpinWindow {
  /** Current window, ms (0: sleep at once). */
  ms = 0;
  /** Where growth starts and below which a shrinking window becomes 0 (max / 4, as haltpoll). */
  readonly startMs: number;

  /** Sleeps left during which the window stays 0 after a spin that did not pay. */
  hold = 0;
  private nextHold = HOLD_MIN;
  private spins = 0;
  private hits = 0;
  private spunMs = 0;

  constructor(readonly maxMs: number, private readonly wakeCostMs = WAKE_COST_MS) {
    if (!(maxMs > 0) || !Number.isFinite(maxMs)) throw new RangeError(`SpinWindow: max must be a finite number > 0, got ${maxMs}`);
    this.startMs = maxMs / 4;
  }

  /** A spin of `spunMs` ended, with events (`hit`) or at the window's end. */
  afterSpin(hit: boolean, spunMs: number): void {
    this.spins++;
    if (hit) this.hits++;
    this.spunMs += spunMs;
    // The verdict comes at the epoch's end, or as soon as the deficit passes what CREDIT
    // more hits could repay: a load whose spins cannot pay stops spinning within a few.
    const owed = this.spunMs - this.hits * this.wakeCostMs;
    if (this.spins < EPOCH && owed <= CREDIT * this.wakeCostMs) return;
    if (owed > 0) {
      this.ms = 0;
      this.hold = this.nextHold;
      this.nextHold = Math.min(this.nextHold * 2, HOLD_MAX);
    } else {
      this.nextHold = HOLD_MIN;
    }
    this.spins = this.hits = this.spunMs = 0;
  }

  /** A poll that was not spinning returned events gapMs after the previous events. */
  afterSleep(gapMs: number): void {
    if (this.hold > 0) {
      this.hold--;
      return;
    }
    if (gapMs > this.maxMs) {
      const v = this.ms / 2;
      this.ms = v < this.startMs ? 0 : v;
    } else if (gapMs > this.ms) {
      const v = this.ms * 2;
      this.ms = v < this.startMs ? this.startMs : v > this.maxMs ? this.maxMs : v;
    }
  }
}
