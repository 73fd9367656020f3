// src/protocols/guards.ts: token comparison and the token-bucket rate limit.

import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { RateVerdict, TokenBucket, tokenMatches } from "../../src/protocols/guards.ts";

const enc = (s: string) => new TextEncoder().encode(s);

describe("tokenMatches", () => {
  test("equal, different, prefix, longer, empty", () => {
    const t = enc("s3cret");
    expect(tokenMatches(enc("s3cret"), 0, 6, t)).toBe(true);
    expect(tokenMatches(enc("s3creT"), 0, 6, t)).toBe(false);
    expect(tokenMatches(enc("s3cre"), 0, 5, t)).toBe(false);
    expect(tokenMatches(enc("s3cret!"), 0, 7, t)).toBe(false);
    expect(tokenMatches(new Uint8Array(0), 0, 0, t)).toBe(false);
  });

  test("compares only the given slice", () => {
    expect(tokenMatches(enc("xxs3cretyy"), 2, 6, enc("s3cret"))).toBe(true);
  });

  test("property: agrees with plain equality", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 8 }), fc.uint8Array({ maxLength: 8 }), (a, b) => {
        const equal = a.length === b.length && a.every((x, i) => x === b[i]);
        expect(tokenMatches(a, 0, a.length, b)).toBe(equal);
      }),
      { numRuns: 500 },
    );
  });
});

describe("TokenBucket", () => {
  const S = 1e9;

  test("a full bucket allows a burst, then limits; tokens come back at the rate", () => {
    const b = new TokenBucket({ messagesPerSecond: 10, burst: 3 }, 0);
    expect([b.take(0), b.take(0), b.take(0)]).toEqual([RateVerdict.Allow, RateVerdict.Allow, RateVerdict.Allow]);
    expect(b.take(0)).toBe(RateVerdict.Limited);
    expect(b.take(0.05 * S)).toBe(RateVerdict.Limited); // half a token
    expect(b.take(0.1 * S)).toBe(RateVerdict.Allow); // one token after 100 ms
    expect(b.take(0.1 * S)).toBe(RateVerdict.Limited);
  });

  test("a client that keeps on past maxViolations gets Close", () => {
    const b = new TokenBucket({ messagesPerSecond: 1, burst: 1, maxViolations: 2 }, 0);
    expect(b.take(0)).toBe(RateVerdict.Allow);
    expect(b.take(1)).toBe(RateVerdict.Limited);
    expect(b.take(2)).toBe(RateVerdict.Limited);
    expect(b.take(3)).toBe(RateVerdict.Close);
  });

  test("violations are forgiven only once the bucket has refilled completely", () => {
    const b = new TokenBucket({ messagesPerSecond: 10, burst: 2, maxViolations: 2 }, 0);
    b.take(0);
    b.take(0);
    expect(b.take(0)).toBe(RateVerdict.Limited);
    expect(b.take(0)).toBe(RateVerdict.Limited);
    // One token back (100 ms): allowed, but the strikes stay.
    expect(b.take(0.1 * S)).toBe(RateVerdict.Allow);
    expect(b.take(0.1 * S)).toBe(RateVerdict.Close);
    // A quiet second refills the bucket: slate wiped.
    const c = new TokenBucket({ messagesPerSecond: 10, burst: 2, maxViolations: 2 }, 0);
    c.take(0);
    c.take(0);
    c.take(0);
    c.take(0);
    expect(c.take(1 * S)).toBe(RateVerdict.Allow);
    c.take(1 * S);
    expect(c.take(1 * S)).toBe(RateVerdict.Limited);
  });

  test("default burst is one second's worth; the rate must be positive", () => {
    expect(new TokenBucket({ messagesPerSecond: 50 }, 0).capacity).toBe(50);
    expect(new TokenBucket({ messagesPerSecond: 0.5 }, 0).capacity).toBe(1);
    expect(() => new TokenBucket({ messagesPerSecond: 0 }, 0)).toThrow(RangeError);
  });

  test("property: over any window, allowed <= burst + rate * window", () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 50_000_000 }), { minLength: 1, maxLength: 300 }), (gaps) => {
        const b = new TokenBucket({ messagesPerSecond: 100, burst: 5, maxViolations: 1e9 }, 0);
        let t = 0;
        let allowed = 0;
        for (const g of gaps) {
          t += g;
          if (b.take(t) === RateVerdict.Allow) allowed++;
        }
        expect(allowed).toBeLessThanOrEqual(5 + (100 * t) / S + 1e-9);
      }),
      { numRuns: 300 },
    );
  });
});
