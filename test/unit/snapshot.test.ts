// src/stats/snapshot.ts: combining reactor and protocol counters.

import { describe, expect, test } from "bun:test";
import { ErrorCode } from "../../src/protocols/codec/errors.ts";
import { Kind } from "../../src/protocols/codec/kinds.ts";
import { ReactorStats } from "../../src/reactor/stats.ts";
import { ProtocolStats } from "../../src/stats/protocol-stats.ts";
import { buildStatsSnapshot } from "../../src/stats/snapshot.ts";

function reactor(fill: Partial<Record<"connectionsActive" | "connectionsTotal" | "bytesIn" | "bytesOut" | "highWaterCrossings" | "pausedReads" | "slowConsumersDropped", number>>): ReactorStats {
  const r = new ReactorStats();
  Object.assign(r, fill);
  return r;
}

describe("buildStatsSnapshot", () => {
  test("sums several reactors and lists only non-zero kinds and codes", () => {
    const a = reactor({ connectionsActive: 2, connectionsTotal: 10, bytesIn: 100, bytesOut: 200, highWaterCrossings: 1, pausedReads: 1, slowConsumersDropped: 0 });
    const b = reactor({ connectionsActive: 3, connectionsTotal: 5, bytesIn: 1, bytesOut: 2, highWaterCrossings: 0, pausedReads: 4, slowConsumersDropped: 2 });
    a.readCalls = 7;
    b.writeCalls = 4;
    b.rejectedFull = 1;
    a.closeReasons.reset = 2;
    b.closeReasons.reset = 1;
    b.closeReasons["slow-consumer"] = 2;
    const p = new ProtocolStats();
    p.countIn(Kind.PING);
    p.countOut(Kind.PONG);
    p.countIn(Kind.ECHO);
    p.countError(ErrorCode.BAD_BODY);
    p.countError(ErrorCode.BAD_BODY);
    p.latency.record(500);
    const s = buildStatsSnapshot({ reactors: [a, b], protocol: p, clients: 4, serverName: "t", startedAtMs: 1_000, nowMs: 62_500 });
    expect(s.connections).toEqual({ active: 5, total: 15, clients: 4 });
    expect(s.bytes).toEqual({ in: 101, out: 202 });
    expect(s.backpressure).toEqual({ highWaterCrossings: 1, pausedReads: 5, slowConsumersDropped: 2 });
    expect(s.closeReasons.reset).toBe(3);
    expect(s.io).toEqual({ readCalls: 7, writeCalls: 4, acceptErrors: 0, rejectedFull: 1 });
    expect(s.closeReasons["slow-consumer"]).toBe(2);
    expect(s.uptimeSeconds).toBe(61);
    expect(s.messages.in).toBe(2);
    expect(s.messages.out).toBe(1);
    expect(s.messages.byKind).toEqual([
      { kind: Kind.PING, code: 0x0003, name: "ping", in: 1, out: 0 },
      { kind: Kind.PONG, code: 0x0004, name: "pong", in: 0, out: 1 },
      { kind: Kind.ECHO, code: 0x0005, name: "echo", in: 1, out: 0 },
    ]);
    expect(s.errors).toEqual({ total: 2, byCode: [{ code: 2, name: "bad_body", count: 2 }] });
    expect(s.latencyNs.count).toBe(1);
    expect(s.latencyNs.p99).toBe(500);
    expect(s.statsEnabled).toBe(true);
  });

  test("no reactors: zero connection counters, still a valid snapshot", () => {
    const s = buildStatsSnapshot({ reactors: [], protocol: new ProtocolStats({ enabled: false }), clients: 0, serverName: "t", startedAtMs: 5, nowMs: 5 });
    expect(s.connections).toEqual({ active: 0, total: 0, clients: 0 });
    expect(s.messages.byKind).toEqual([]);
    expect(s.statsEnabled).toBe(false);
  });
});
