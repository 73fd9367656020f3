// src/client/reconnect.ts: the backoff schedule (exponential, capped, jittered, bounded).

import { describe, expect, test } from "bun:test";
import { Backoff } from "../../src/client/reconnect.ts";

describe("Backoff", () => {
  test("without jitter: initial, then x factor per attempt, capped at maxMs", () => {
    const b = new Backoff({ initialMs: 100, maxMs: 1000, factor: 2, jitter: 0 });
    expect(Array.from({ length: 7 }, () => b.next())).toEqual([100, 200, 400, 800, 1000, 1000, 1000]);
    expect(b.attempt).toBe(7);
  });

  test("reset() starts over after a success", () => {
    const b = new Backoff({ initialMs: 50, jitter: 0 });
    b.next();
    b.next();
    b.reset();
    expect(b.attempt).toBe(0);
    expect(b.next()).toBe(50);
  });

  test("jitter takes up to that fraction off the delay, never adds", () => {
    const lo = new Backoff({ initialMs: 100, maxMs: 10_000, jitter: 0.5, random: () => 0.999999 });
    const hi = new Backoff({ initialMs: 100, maxMs: 10_000, jitter: 0.5, random: () => 0 });
    for (let i = 0; i < 5; i++) {
      const ceiling = 100 * 2 ** i;
      expect(lo.next()).toBeCloseTo(ceiling * 0.5, 2);
      expect(hi.next()).toBe(ceiling);
    }
  });

  test("with Math.random: every delay within [d/2, d], and they differ (clients do not come back in lockstep)", () => {
    const delays = new Set<number>();
    for (let k = 0; k < 50; k++) {
      const b = new Backoff({ initialMs: 100, maxMs: 5000 });
      for (let i = 0; i < 8; i++) {
        const d = b.next();
        const ceiling = Math.min(5000, 100 * 2 ** i);
        expect(d).toBeGreaterThanOrEqual(ceiling / 2);
        expect(d).toBeLessThanOrEqual(ceiling);
        if (i === 3) delays.add(d);
      }
    }
    expect(delays.size).toBeGreaterThan(40);
  });

  test("maxAttempts: exhausted after that many; 0 means never", () => {
    const b = new Backoff({ maxAttempts: 2 });
    expect(b.exhausted).toBe(false);
    b.next();
    b.next();
    expect(b.exhausted).toBe(true);
    const forever = new Backoff();
    for (let i = 0; i < 100; i++) forever.next();
    expect(forever.exhausted).toBe(false);
  });

  test("nonsense settings are refused", () => {
    expect(() => new Backoff({ initialMs: 0 })).toThrow(RangeError);
    expect(() => new Backoff({ initialMs: 100, maxMs: 50 })).toThrow(RangeError);
    expect(() => new Backoff({ factor: 0.5 })).toThrow(RangeError);
  });
});
