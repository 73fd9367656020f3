// SpinWindow: the adaptive busy-poll window (haltpoll's rule), driven by the gaps the loop
// reports after each sleep.

import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { SpinWindow } from "../../src/reactor/spin.ts";

describe("SpinWindow", () => {
  test("starts at 0: no spinning before traffic shows short gaps", () => {
    expect(new SpinWindow(0.05).ms).toBe(0);
  });

  test("gaps within max grow the window from max/4, doubling, up to max", () => {
    const w = new SpinWindow(0.08);
    w.afterSleep(0.03);
    expect(w.ms).toBe(0.02);
    w.afterSleep(0.03);
    expect(w.ms).toBe(0.04);
    w.afterSleep(0.05);
    expect(w.ms).toBe(0.08);
    w.afterSleep(0.07);
    expect(w.ms).toBe(0.08);
  });

  test("a gap shorter than the window changes nothing (the spin would have caught it)", () => {
    const w = new SpinWindow(0.08);
    w.afterSleep(0.05);
    w.afterSleep(0.05);
    expect(w.ms).toBe(0.04);
    w.afterSleep(0.01);
    expect(w.ms).toBe(0.04);
  });

  test("gaps past max halve the window, and below max/4 it drops to 0", () => {
    const w = new SpinWindow(0.08);
    for (let i = 0; i < 4; i++) w.afterSleep(0.07);
    expect(w.ms).toBe(0.08);
    w.afterSleep(5);
    expect(w.ms).toBe(0.04);
    w.afterSleep(5);
    expect(w.ms).toBe(0.02);
    w.afterSleep(5);
    expect(w.ms).toBe(0);
    w.afterSleep(Infinity);
    expect(w.ms).toBe(0);
  });

  test("traffic paced slower than max never spins", () => {
    const w = new SpinWindow(0.05);
    for (let i = 0; i < 1000; i++) w.afterSleep(0.1);
    expect(w.ms).toBe(0);
  });

  test("any gap sequence keeps the window 0 or within [max/4, max]", () => {
    fc.assert(
      fc.property(fc.double({ min: 0.001, max: 10, noNaN: true }), fc.array(fc.double({ min: 0, max: 20, noNaN: true }), { maxLength: 200 }), (max, gaps) => {
        const w = new SpinWindow(max);
        for (const g of gaps) {
          w.afterSleep(g);
          if (w.ms !== 0 && (w.ms < max / 4 || w.ms > max)) return false;
        }
        return true;
      }),
    );
  });

  test("spins that hit within a sleep/wake cycle keep the window (a ping-pong client)", () => {
    const w = new SpinWindow(0.05, 0.02);
    w.afterSleep(0.03);
    w.afterSleep(0.03);
    expect(w.ms).toBe(0.025);
    for (let i = 0; i < 1000; i++) w.afterSpin(true, 0.015);
    expect(w.ms).toBe(0.025);
    expect(w.hold).toBe(0);
  });

  test("spins that cost more than their hits saved drop the window to 0 and hold it there", () => {
    const w = new SpinWindow(0.05, 0.02);
    for (let i = 0; i < 4; i++) w.afterSleep(0.04);
    expect(w.ms).toBe(0.05);
    // Random arrivals: one spin in three hits, each spin costs ~30 µs (~18 µs more than its
    // share of the savings): the deficit passes 8 wake-ups within a dozen spins.
    let spins = 0;
    while (w.ms > 0 && spins < 64) w.afterSpin(spins++ % 3 === 0, 0.03);
    expect(w.ms).toBe(0);
    expect(spins).toBeLessThan(16);
    const hold = w.hold;
    expect(hold).toBe(64);
    // Short gaps do not grow it back during the hold...
    for (let i = 0; i < hold; i++) w.afterSleep(0.01);
    expect(w.ms).toBe(0);
    // ...and after it they do (a probe).
    w.afterSleep(0.01);
    expect(w.ms).toBe(0.0125);
    // A probe that fails again holds twice as long (misses of 12.5 µs: 13 of them pass the credit).
    while (w.ms > 0) w.afterSpin(false, 0.0125);
    expect(w.hold).toBe(2 * hold);
    for (let i = 0; i <= 2 * hold; i++) w.afterSleep(0.01);
    expect(w.ms).toBe(0.0125);
    // An epoch that pays keeps the window and resets the hold's growth.
    for (let i = 0; i < 64; i++) w.afterSpin(true, 0.005);
    expect(w.ms).toBe(0.0125);
    while (w.ms > 0) w.afterSpin(false, 0.0125);
    expect(w.hold).toBe(hold);
  });

  test("a load whose spins never hit stops within a few spins, however long the window", () => {
    const w = new SpinWindow(5, 0.02);
    for (let i = 0; i < 4; i++) w.afterSleep(4);
    expect(w.ms).toBe(5);
    w.afterSpin(false, 5);
    expect(w.ms).toBe(0);
  });

  test("refuses a max that is not a positive finite number", () => {
    expect(() => new SpinWindow(0)).toThrow(RangeError);
    expect(() => new SpinWindow(NaN)).toThrow(RangeError);
    expect(() => new SpinWindow(Infinity)).toThrow(RangeError);
  });
});
