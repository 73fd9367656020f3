// What a bystander sees of the server's loop: the round trips of a probe that is no
// broadcast recipient (an echo connection), sliced by time and lined up with the moments
// other clients broadcast. Times are epoch ms with sub-ms resolution
// (performance.timeOrigin + performance.now() in every client process).

import type { ProbeResult } from "../clients/probe.ts";

/** The probe's pings as parallel arrays, in send order. */
export class PingTrace {
  /** Epoch ms each ping was sent. */
  readonly sentAt: Float64Array;
  /** Round trip of each ping, µs. */
  readonly rttUs: Float64Array;
  private readonly maxRttMs: number;

  constructor(r: ProbeResult) {
    const n = r.rttUs.length;
    this.sentAt = new Float64Array(n);
    this.rttUs = new Float64Array(n);
    let max = 0;
    for (let i = 0; i < n; i++) {
      this.sentAt[i] = r.startEpochMs + r.sentAtMs[i]!;
      this.rttUs[i] = r.rttUs[i]!;
      if (r.rttUs[i]! > max) max = r.rttUs[i]!;
    }
    this.maxRttMs = max / 1000;
  }

  /** Round trips (µs) of the pings sent in [from, to). */
  between(from: number, to: number): number[] {
    const out: number[] = [];
    for (let i = this.firstAtOrAfter(from); i < this.sentAt.length && this.sentAt[i]! < to; i++) out.push(this.rttUs[i]!);
    return out;
  }

  /**
   * The worst round trip (µs) among the pings in flight at some moment of [at, at + spanMs]
   * (sent before its end, answered after its start); 0 if none was.
   */
  worstAround(at: number, spanMs: number): number {
    let worst = 0;
    for (let i = this.firstAtOrAfter(at - this.maxRttMs); i < this.sentAt.length && this.sentAt[i]! <= at + spanMs; i++) {
      if (this.sentAt[i]! + this.rttUs[i]! / 1000 >= at && this.rttUs[i]! > worst) worst = this.rttUs[i]!;
    }
    return worst;
  }

  private firstAtOrAfter(t: number): number {
    let lo = 0;
    let hi = this.sentAt.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.sentAt[mid]! < t) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}

/** The median of `xs` (NaN when empty). */
export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}
