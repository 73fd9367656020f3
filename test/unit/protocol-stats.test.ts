// src/stats/protocol-stats.ts: the open registries, counters and batch / per-message
// latency timing; and the layering rule that src/stats knows no protocol.

import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { MAX_ERROR_CODE, ProtocolStats, type ProtocolStatsOptions } from "../../src/stats/protocol-stats.ts";
import { ManualClock } from "../util/manual-clock.ts";

/** A vocabulary that is not the framed one: what an HTTP protocol would register. */
function httpStats(opts: ProtocolStatsOptions = {}) {
  const s = new ProtocolStats(opts);
  const kinds = {
    request: s.registerKind("http_request"),
    response: s.registerKind("http_response"),
    upgrade: s.registerKind("websocket_upgrade"),
  };
  s.registerError(400, "bad_request");
  s.registerError(431, "header_fields_too_large");
  s.registerCloseReason("http-parse-error");
  return { s, kinds };
}

describe("ProtocolStats registries", () => {
  test("kinds get dense indexes in registration order; names resolve both ways", () => {
    const { s, kinds } = httpStats();
    expect(kinds).toEqual({ request: 0, response: 1, upgrade: 2 });
    expect(s.messagesIn.length).toBe(3);
    expect(s.messagesOut.length).toBe(3);
    expect(s.kinds).toEqual(["http_request", "http_response", "websocket_upgrade"]);
    expect(s.kindIndex("http_response")).toBe(1);
    expect(s.kindIndex("ping")).toBe(-1);
    expect(s.kindName(2)).toBe("websocket_upgrade");
    expect(s.kindName(3)).toBeUndefined();
  });

  test("an HTTP-like vocabulary counts with plain array increments", () => {
    const { s, kinds } = httpStats();
    for (let i = 0; i < 3; i++) s.messagesIn[kinds.request]++;
    s.countOut(kinds.response, 3);
    s.countIn(kinds.upgrade);
    s.errors[431]++;
    s.countError(400);
    expect(Array.from(s.messagesIn)).toEqual([3, 0, 1]);
    expect(Array.from(s.messagesOut)).toEqual([0, 3, 0]);
    expect([s.messagesInTotal, s.messagesOutTotal, s.errorsTotal]).toEqual([4, 3, 2]);
    expect(s.errors[400]).toBe(1);
    expect(s.errorName(431)).toBe("header_fields_too_large");
    expect(s.errorName(401)).toBeUndefined();
    expect(s.registeredCloseReasons).toEqual(["http-parse-error"]);
  });

  test("registering a known kind again returns its index; counts survive later registrations", () => {
    const s = new ProtocolStats();
    const ping = s.registerKind("ping");
    s.countIn(ping);
    s.countError(0); // no error registered yet: nothing to count in
    s.registerError(2, "bad_body");
    s.countError(2);
    expect(s.registerKind("ping")).toBe(ping);
    const line = s.registerKind("line");
    s.registerError(9, "invalid_json");
    expect(line).toBe(1);
    expect(s.messagesIn[ping]).toBe(1);
    expect(s.errors[2]).toBe(1);
    expect(s.errors.length).toBe(10);
    expect(s.errorsTotal).toBe(1);
  });

  test("error registration: same pair is a no-op, conflicts and bad codes throw", () => {
    const s = new ProtocolStats();
    s.registerError(5, "rate_limited");
    s.registerError(5, "rate_limited");
    expect(s.errors.length).toBe(6);
    expect(() => s.registerError(5, "too_many_requests")).toThrow(/already registered as "rate_limited"/);
    expect(() => s.registerError(6, "rate_limited")).toThrow(/already registered with code 5/);
    expect(() => s.registerError(-1, "x")).toThrow(RangeError);
    expect(() => s.registerError(1.5, "x")).toThrow(RangeError);
    expect(() => s.registerError(MAX_ERROR_CODE + 1, "x")).toThrow(RangeError);
    expect(s.errorName(6)).toBeUndefined();
  });

  test("close reasons are registered once each, in order", () => {
    const s = new ProtocolStats();
    s.registerCloseReason("protocol");
    s.registerCloseReason("unauthorized");
    s.registerCloseReason("protocol");
    expect(s.registeredCloseReasons).toEqual(["protocol", "unauthorized"]);
  });
});

describe("layering", () => {
  test("src/stats imports only from src/stats (it knows no protocol and no reactor)", () => {
    const dir = join(import.meta.dir, "../../src/stats");
    const files = readdirSync(dir).filter((f) => f.endsWith(".ts"));
    expect(files).toContain("snapshot.ts");
    expect(files).toContain("protocol-stats.ts");
    const specifiers: string[] = [];
    for (const f of files) {
      const text = readFileSync(join(dir, f), "utf8");
      // Static imports and re-exports (`... from "x"`, also multi-line), bare imports and dynamic imports.
      for (const m of text.matchAll(/\bfrom\s*["']([^"']+)["']|\bimport\s*\(?\s*["']([^"']+)["']/g)) {
        specifiers.push(`${f}: ${m[1] ?? m[2]}`);
      }
    }
    expect(specifiers.length).toBeGreaterThan(0);
    const outside = specifiers.filter((s) => !/: \.\/[^/]+$/.test(s));
    expect(outside).toEqual([]);
  });
});

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
    const { s, kinds } = httpStats({ now: clock.now, enabled: false });
    expect(s.beginBatch()).toBe(0);
    s.tick();
    s.endBatch();
    s.countIn(kinds.request);
    s.countOut(kinds.response, 3);
    s.countError(400);
    expect(clock.reads).toBe(0);
    expect(s.messagesInTotal + s.messagesOutTotal + s.errorsTotal + s.latency.count).toBe(0);
  });

  test("counters and totals; reset keeps the registrations", () => {
    const { s, kinds } = httpStats();
    s.countIn(kinds.request);
    s.countIn(kinds.request);
    s.countOut(kinds.response, 5);
    s.countError(431);
    expect(s.messagesIn[kinds.request]).toBe(2);
    expect([s.messagesInTotal, s.messagesOutTotal, s.errorsTotal]).toEqual([2, 5, 1]);
    s.reset();
    expect([s.messagesInTotal, s.messagesOutTotal, s.errorsTotal]).toEqual([0, 0, 0]);
    expect(s.kindIndex("http_response")).toBe(kinds.response);
    expect(s.errorName(431)).toBe("header_fields_too_large");
  });

  test("the default clock is a real monotonic ns clock", () => {
    const s = new ProtocolStats();
    const a = s.now();
    const b = s.now();
    expect(b).toBeGreaterThanOrEqual(a);
    expect(a).toBeGreaterThan(0);
  });
});
