// A log-linear (HDR-style) histogram of non-negative integer values, meant for
// nanosecond latencies. Values 0..255 have exact buckets; above that each power of two
// [2^m, 2^(m+1)) is split into 128 equal buckets, so a bucket is at most 1/128 (0.8%) of
// its values wide. Recording is an index computation and one array increment: no
// allocation, no branches on the common (< 4.3 s) path beyond two comparisons.
//
// Index layout: v < 256 -> v. Otherwise with m = floor(log2 v) and shift = m - 7,
// index = 128 * shift + (v >> shift), and v >> shift is in [128, 256). Consecutive
// octaves therefore occupy consecutive runs of 128 indexes with no gaps.

const SUB_BITS = 7;
const SUB_COUNT = 1 << SUB_BITS; // 128
const EXACT_LIMIT = SUB_COUNT * 2; // 256
/** Highest octave tracked: values up to 2^40 - 1 ns (about 18 minutes); larger ones clamp. */
const MAX_MSB = 39;
export const HISTOGRAM_MAX_VALUE = 2 ** (MAX_MSB + 1) - 1;
const BUCKETS = SUB_COUNT * (MAX_MSB - SUB_BITS + 2); // 4352
const TWO_POW_32 = 4294967296;

export interface LatencySummary {
  count: number;
  min: number;
  mean: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
}

/** Bucket index of a value (exported for tests). */
export function bucketIndex(value: number): number {
  let v = value > 0 ? value : 0; // also maps NaN to 0
  if (v < EXACT_LIMIT) return v | 0;
  if (v < TWO_POW_32) {
    const u = v >>> 0;
    const shift = 31 - Math.clz32(u) - SUB_BITS;
    return (shift << SUB_BITS) + (u >>> shift);
  }
  if (v > HISTOGRAM_MAX_VALUE) v = HISTOGRAM_MAX_VALUE;
  let msb = 32;
  while (v >= 2 ** (msb + 1)) msb++;
  const shift = msb - SUB_BITS;
  return shift * SUB_COUNT + Math.floor(v / 2 ** shift);
}

/** Lowest value that maps to bucket `index`. */
export function bucketLow(index: number): number {
  if (index < EXACT_LIMIT) return index;
  const shift = (index >> SUB_BITS) - 1;
  return (index - shift * SUB_COUNT) * 2 ** shift;
}

/** Highest value that maps to bucket `index`. */
export function bucketHigh(index: number): number {
  if (index < EXACT_LIMIT) return index;
  const shift = (index >> SUB_BITS) - 1;
  return bucketLow(index) + 2 ** shift - 1;
}

export class LatencyHistogram {
  readonly counts = new Float64Array(BUCKETS);
  count = 0;
  sum = 0;
  min = Infinity;
  max = 0;

  /** Record `count` occurrences of `value` (ns). */
  record(value: number, count = 1): void {
    this.counts[bucketIndex(value)] += count;
    this.count += count;
    this.sum += value * count;
    if (value > this.max) this.max = value;
    if (value < this.min) this.min = value;
  }

  reset(): void {
    this.counts.fill(0);
    this.count = 0;
    this.sum = 0;
    this.min = Infinity;
    this.max = 0;
  }

  clone(): LatencyHistogram {
    const h = new LatencyHistogram();
    h.counts.set(this.counts);
    h.count = this.count;
    h.sum = this.sum;
    h.min = this.min;
    h.max = this.max;
    return h;
  }

  /**
   * What was recorded since `earlier` (a clone taken from this histogram before): the
   * per-interval view behind `--stats-interval`. min/max are bucket bounds, not exact
   * values, since the exact ones are not recoverable from a difference.
   */
  since(earlier: LatencyHistogram): LatencyHistogram {
    const h = new LatencyHistogram();
    let lowest = -1;
    let highest = -1;
    for (let i = 0; i < BUCKETS; i++) {
      const c = this.counts[i]! - earlier.counts[i]!;
      if (c > 0) {
        h.counts[i] = c;
        if (lowest < 0) lowest = i;
        highest = i;
      }
    }
    h.count = this.count - earlier.count;
    h.sum = this.sum - earlier.sum;
    if (lowest >= 0) {
      h.min = Math.max(bucketLow(lowest), this.min);
      h.max = Math.min(bucketHigh(highest), this.max);
    }
    return h;
  }

  /**
   * The value at percentile `p` (0..100): the highest value of the bucket holding the
   * p-th percentile sample, clamped to the exact [min, max] seen. 0 when empty.
   */
  percentile(p: number): number {
    return this.percentiles([p])[0]!;
  }

  /** Several percentiles in one pass; `ps` must be ascending. */
  percentiles(ps: readonly number[]): number[] {
    const out = new Array<number>(ps.length).fill(0);
    if (this.count <= 0) return out;
    let k = 0;
    let target = targetRank(ps[0]!, this.count);
    let seen = 0;
    for (let i = 0; i < BUCKETS && k < ps.length; i++) {
      const c = this.counts[i]!;
      if (c === 0) continue;
      seen += c;
      while (k < ps.length && seen >= target) {
        out[k] = this.clamp(bucketHigh(i));
        k++;
        if (k < ps.length) target = targetRank(ps[k]!, this.count);
      }
    }
    // Float rounding could leave trailing percentiles unset: they are the maximum.
    for (; k < ps.length; k++) out[k] = this.max;
    return out;
  }

  summary(): LatencySummary {
    if (this.count <= 0) return { count: 0, min: 0, mean: 0, p50: 0, p90: 0, p99: 0, p999: 0, max: 0 };
    const [p50, p90, p99, p999] = this.percentiles([50, 90, 99, 99.9]) as [number, number, number, number];
    return {
      count: this.count,
      min: this.min,
      mean: this.sum / this.count,
      p50,
      p90,
      p99,
      p999,
      max: this.max,
    };
  }

  private clamp(v: number): number {
    if (v > this.max) return this.max;
    if (v < this.min) return this.min;
    return v;
  }
}

/** 1-based rank of the sample at percentile p: ceil(p% of count), at least 1. */
function targetRank(p: number, count: number): number {
  const r = Math.ceil((p / 100) * count);
  return r < 1 ? 1 : r > count ? count : r;
}
