// A small log-linear histogram (the HdrHistogram layout, simplified) for RTTs.
//
// Values are non-negative integers in any unit; the load generator records nanoseconds
// (Bun.nanoseconds() differences) and reports microseconds. Values below 2*SUB are
// stored exactly; above that each power of two is split into SUB linear buckets, so the
// relative error of a reported value is at most 1/(2*SUB) = 0.4% (bucket midpoint), well
// inside the ~1% the harness needs. Recording is a few integer ops and one array store:
// cheap enough to call for every reply in the load generator's hot path.

/** Linear sub-buckets per power of two. 128 -> bucket width <= 1/128 of the value. */
const SUB_BITS = 7;
const SUB = 1 << SUB_BITS;
/** Largest exponent shift supported: values up to ~2^(MAX_SHIFT+8), i.e. ~1.1e12 (18 min in ns). */
const MAX_SHIFT = 32;
const BUCKETS = SUB * (MAX_SHIFT + 1) + SUB;
const MAX_VALUE = 2 ** (MAX_SHIFT + SUB_BITS + 1) - 1;

export interface HistogramSummary {
  count: number;
  min: number;
  max: number;
  mean: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
}

export class Histogram {
  // Float64 counts: never overflow in any run we will do, and merging is plain addition.
  readonly counts = new Float64Array(BUCKETS);
  count = 0;
  min = Infinity;
  max = 0;
  sum = 0;

  /** Record one value (clamped to [0, MAX_VALUE], rounded down to an integer). */
  record(value: number): void {
    let v = value > 0 ? Math.floor(value) : 0;
    if (v > MAX_VALUE) v = MAX_VALUE;
    this.counts[bucketIndex(v)]!++;
    this.count++;
    this.sum += v;
    if (v < this.min) this.min = v;
    if (v > this.max) this.max = v;
  }

  /** Record `n` occurrences of the same value (one reply batch shares a timestamp). */
  recordN(value: number, n: number): void {
    let v = value > 0 ? Math.floor(value) : 0;
    if (v > MAX_VALUE) v = MAX_VALUE;
    this.counts[bucketIndex(v)]! += n;
    this.count += n;
    this.sum += v * n;
    if (v < this.min) this.min = v;
    if (v > this.max) this.max = v;
  }

  reset(): void {
    this.counts.fill(0);
    this.count = 0;
    this.min = Infinity;
    this.max = 0;
    this.sum = 0;
  }

  merge(other: Histogram): void {
    const c = this.counts;
    const o = other.counts;
    for (let i = 0; i < BUCKETS; i++) c[i]! += o[i]!;
    this.count += other.count;
    this.sum += other.sum;
    if (other.min < this.min) this.min = other.min;
    if (other.max > this.max) this.max = other.max;
  }

  /**
   * Value at quantile q in [0, 1]: the midpoint of the bucket holding the ceil(q*count)-th
   * smallest value, clamped to the observed [min, max] so p0/p100 are exact.
   */
  percentile(q: number): number {
    if (this.count === 0) return 0;
    const rank = Math.max(1, Math.ceil(q * this.count));
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.counts[i]!;
      if (seen >= rank) {
        const mid = bucketMid(i);
        return Math.min(this.max, Math.max(this.min, mid));
      }
    }
    return this.max;
  }

  /** Summary with every value divided by `scale` (e.g. 1000 for ns -> µs). */
  summary(scale = 1): HistogramSummary {
    const s = (v: number): number => v / scale;
    return {
      count: this.count,
      min: this.count === 0 ? 0 : s(this.min),
      max: s(this.max),
      mean: this.count === 0 ? 0 : s(this.sum / this.count),
      p50: s(this.percentile(0.5)),
      p90: s(this.percentile(0.9)),
      p99: s(this.percentile(0.99)),
      p999: s(this.percentile(0.999)),
    };
  }
}

/** Bucket index of a non-negative integer v <= MAX_VALUE. Exported for tests/micro benches. */
export function bucketIndex(v: number): number {
  if (v < 2 * SUB) return v;
  // msb: position of the highest set bit. clz32 only works below 2^32; RTTs that long
  // (> 4.3 s in ns) are rare, so the slower log2 path is fine for them.
  const msb = v < 0x1_0000_0000 ? 31 - Math.clz32(v) : Math.floor(Math.log2(v));
  const shift = msb - SUB_BITS; // >= 1 here
  // v / 2^shift lies in [SUB, 2*SUB). The shift operator only works on 32-bit values.
  const sub = v < 0x1_0000_0000 ? v >>> shift : Math.floor(v / 2 ** shift);
  return SUB * shift + sub;
}

/** Midpoint of bucket i (exact value for the linear range). */
export function bucketMid(i: number): number {
  if (i < 2 * SUB) return i;
  const shift = Math.floor(i / SUB) - 1;
  const sub = i - SUB * shift; // in [SUB, 2*SUB)
  const width = 2 ** shift;
  return sub * width + (width - 1) / 2;
}
