// src/protocols/context.ts: shared protocol context.

import { describe, expect, test } from "bun:test";
import { Hub } from "../../src/hub.ts";
import { createProtocolContext } from "../../src/protocols/context.ts";
import { ReactorStats } from "../../src/reactor/stats.ts";
import { ProtocolStats } from "../../src/stats/protocol-stats.ts";

describe("ProtocolContext", () => {
  test("defaults", () => {
    const ctx = createProtocolContext();
    expect(ctx.options).toEqual({ maxFrame: undefined, maxLine: 65536, authToken: undefined, rateLimit: undefined, serverName: "bunpoll" });
    expect(ctx.authToken).toBeNull();
    expect(ctx.shuttingDown).toBe(false);
    expect(ctx.stats.enabled).toBe(true);
  });

  test("shares a given hub and stats; an empty token means no auth", () => {
    const hub = new Hub();
    const stats = new ProtocolStats({ enabled: false });
    const ctx = createProtocolContext({ hub, stats, options: { authToken: "" } });
    expect(ctx.hub).toBe(hub);
    expect(ctx.stats).toBe(stats);
    expect(ctx.authToken).toBeNull();
    expect(Array.from(createProtocolContext({ options: { authToken: "é" } }).authToken!)).toEqual([0xc3, 0xa9]);
  });

  test("isoNow formats once per millisecond", () => {
    let ms = Date.UTC(2026, 0, 2, 3, 4, 5, 6);
    const ctx = createProtocolContext({ wallClock: () => ms });
    const a = ctx.isoNow();
    expect(a).toBe("2026-01-02T03:04:05.006Z");
    expect(ctx.isoNow()).toBe(a); // same string object reused
    ms += 1;
    expect(ctx.isoNow()).toBe("2026-01-02T03:04:05.007Z");
  });

  test("snapshot() combines registered reactors, hub clients and uptime from the wall clock", () => {
    let ms = 1_000_000;
    const ctx = createProtocolContext({ wallClock: () => ms, options: { serverName: "s" } });
    const r1 = new ReactorStats();
    const r2 = new ReactorStats();
    r1.connectionsActive = 1;
    r2.connectionsActive = 2;
    ctx.addReactor(r1);
    ctx.addReactor(r2);
    ms += 5_500;
    const s = ctx.snapshot();
    expect(s.connections.active).toBe(3);
    expect(s.uptimeSeconds).toBe(5);
    expect(s.serverName).toBe("s");
    expect(s.connections.clients).toBe(0);
  });
});
