// src/stats/histogram.ts: log-linear latency histogram.

import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { bucketHigh, bucketIndex, bucketLow, HISTOGRAM_MAX_VALUE, LatencyHistogram } from "../../src/stats/histogram.ts";

/** Exact percentile by sorting: rank ceil(p% * n), 1-based. */
function exactPercentile(sorted: number[], p: number): number {
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length)));
  return sorted[rank - 1]!;
}

describe("bucket layout", () => {
  test("values below 256 have exact buckets", () => {
    for (let v = 0; v < 256; v++) {
      expect(bucketIndex(v)).toBe(v);
      expect(bucketLow(v)).toBe(v);
      expect(bucketHigh(v)).toBe(v);
    }
  });

  test("buckets are contiguous: each bucket starts one past the previous bucket's end", () => {
    const last = bucketIndex(HISTOGRAM_MAX_VALUE);
    for (let i = 1; i <= last; i++) expect(bucketLow(i)).toBe(bucketHigh(i - 1) + 1);
  });

  test("property: every value lands in a bucket that contains it, at most 1/128 wide", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: HISTOGRAM_MAX_VALUE }), (v) => {
        const i = bucketIndex(v);
        expect(bucketLow(i)).toBeLessThanOrEqual(v);
        expect(bucketHigh(i)).toBeGreaterThanOrEqual(v);
        expect(bucketHigh(i) - bucketLow(i) + 1).toBeLessThanOrEqual(Math.max(1, bucketLow(i) / 128));
      }),
      { numRuns: 2000 },
    );
  });

  test("edges: 255/256, 2^32 - 1 / 2^32, clamping above the maximum, negatives and NaN", () => {
    expect(bucketIndex(256)).toBe(256);
    expect(bucketIndex(2 ** 32 - 1)).toBe(bucketIndex(2 ** 32) - 1);
    expect(bucketIndex(1e18)).toBe(bucketIndex(HISTOGRAM_MAX_VALUE));
    expect(bucketIndex(-5)).toBe(0);
    expect(bucketIndex(Number.NaN)).toBe(0);
    expect(bucketIndex(300.9)).toBe(bucketIndex(300));
  });
});

describe("LatencyHistogram", () => {
  test("empty histogram summarises to zeros", () => {
    expect(new LatencyHistogram().summary()).toEqual({ count: 0, min: 0, mean: 0, p50: 0, p90: 0, p99: 0, p999: 0, max: 0 });
  });

  test("small exact values: percentiles are exact", () => {
    const h = new LatencyHistogram();
    for (let v = 1; v <= 100; v++) h.record(v);
    const s = h.summary();
    expect(s).toEqual({ count: 100, min: 1, mean: 50.5, p50: 50, p90: 90, p99: 99, p999: 100, max: 100 });
  });

  test("record(value, count) equals count single records", () => {
    const a = new LatencyHistogram();
    const b = new LatencyHistogram();
    a.record(1234, 5);
    for (let i = 0; i < 5; i++) b.record(1234);
    expect(a.summary()).toEqual(b.summary());
    expect(Array.from(a.counts)).toEqual(Array.from(b.counts));
  });

  test("p100 and max are the exact maximum; min is exact", () => {
    const h = new LatencyHistogram();
    h.record(1_000_003);
    h.record(999);
    expect(h.percentile(100)).toBe(1_000_003);
    expect(h.summary().max).toBe(1_000_003);
    expect(h.summary().min).toBe(999);
  });

  test("property: percentiles are within one bucket (<= 1/128) above the exact value", () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 5e9 }), { minLength: 1, maxLength: 400 }), (values) => {
        const h = new LatencyHistogram();
        for (const v of values) h.record(v);
        const sorted = [...values].sort((x, y) => x - y);
        const ps = [50, 90, 99, 99.9, 100];
        const got = h.percentiles(ps);
        ps.forEach((p, k) => {
          const exact = exactPercentile(sorted, p);
          expect(got[k]!).toBeGreaterThanOrEqual(exact);
          expect(got[k]!).toBeLessThanOrEqual(Math.max(exact, bucketHigh(bucketIndex(exact))));
        });
      }),
      { numRuns: 300 },
    );
  });

  test("since(): the interval view counts only what was recorded after the clone", () => {
    const h = new LatencyHistogram();
    for (let i = 0; i < 1000; i++) h.record(100);
    const before = h.clone();
    for (let i = 0; i < 10; i++) h.record(50_000);
    const d = h.since(before).summary();
    expect(d.count).toBe(10);
    expect(d.p50).toBe(50_000);
    expect(d.min).toBeGreaterThanOrEqual(bucketLow(bucketIndex(50_000)));
    expect(d.max).toBe(50_000);
    // The cumulative view is dominated by the old samples.
    expect(h.summary().p50).toBe(100);
  });

  test("reset() empties it", () => {
    const h = new LatencyHistogram();
    h.record(5);
    h.reset();
    expect(h.summary().count).toBe(0);
    expect(h.counts.every((c) => c === 0)).toBe(true);
  });
});
