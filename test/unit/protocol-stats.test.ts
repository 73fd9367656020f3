// src/stats/protocol-stats.ts: counters and batch / per-message latency timing.

import { describe, expect, test } from "bun:test";
import { Kind } from "../../src/protocols/codec/kinds.ts";
import { ProtocolStats } from "../../src/stats/protocol-stats.ts";
import { ManualClock } from "../util/manual-clock.ts";

describe("ProtocolStats", () => {
  test("batch mode: two clock reads per batch, each message gets the batch mean", () => {
    const clock = new ManualClock();
    const s = new ProtocolStats({ now: clock.now });
    s.beginBatch();
    for (let i = 0; i < 4; i++) {
      clock.advance(250 * (i + 1)); // 250, 500, 750, 1000: 2500 in all
      s.tick();
    }
    s.endBatch();
    expect(clock.reads).toBe(2);
    const l = s.latency.summary();
    expect(l.count).toBe(4);
    expect(l.min).toBe(625);
    expect(l.max).toBe(625);
  });

  test("message mode: one clock read per message, exact per-message times", () => {
    const clock = new ManualClock();
    const s = new ProtocolStats({ now: clock.now, latencyMode: "message" });
    s.beginBatch();
    for (const d of [100, 200, 5000]) {
      clock.advance(d);
      s.tick();
    }
    s.endBatch();
    expect(clock.reads).toBe(4);
    const l = s.latency.summary();
    expect([l.count, l.min, l.p50, l.max]).toEqual([3, 100, 200, 5000]);
  });

  test("a batch with no whole message records nothing", () => {
    const clock = new ManualClock();
    const s = new ProtocolStats({ now: clock.now });
    s.beginBatch();
    clock.advance(1000);
    s.endBatch();
    expect(s.latency.count).toBe(0);
  });

  test("disabled: no clock reads, nothing counted, beginBatch returns 0", () => {
    const clock = new ManualClock();
    const s = new ProtocolStats({ now: clock.now, enabled: false });
    expect(s.beginBatch()).toBe(0);
    s.tick();
    s.endBatch();
    s.countIn(Kind.PING);
    s.countOut(Kind.PONG, 3);
    s.countError(2);
    expect(clock.reads).toBe(0);
    expect(s.messagesInTotal + s.messagesOutTotal + s.errorsTotal + s.latency.count).toBe(0);
  });

  test("counters and totals; reset", () => {
    const s = new ProtocolStats();
    s.countIn(Kind.PING);
    s.countIn(Kind.PING);
    s.countOut(Kind.BROADCAST_MSG, 5);
    s.countError(4);
    expect(s.messagesIn[Kind.PING]).toBe(2);
    expect([s.messagesInTotal, s.messagesOutTotal, s.errorsTotal]).toEqual([2, 5, 1]);
    s.reset();
    expect([s.messagesInTotal, s.messagesOutTotal, s.errorsTotal]).toEqual([0, 0, 0]);
  });

  test("the default clock is a real monotonic ns clock", () => {
    const s = new ProtocolStats();
    const a = s.now();
    const b = s.now();
    expect(b).toBeGreaterThanOrEqual(a);
    expect(a).toBeGreaterThan(0);
  });
});
