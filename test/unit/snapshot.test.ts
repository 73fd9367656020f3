// src/stats/snapshot.ts: combining reactor and protocol counters.

import { describe, expect, test } from "bun:test";
import { ErrorCode, registerErrors } from "../../src/protocols/codec/errors.ts";
import { Kind, registerKinds } from "../../src/protocols/codec/kinds.ts";
import { ProtocolStats } from "../../src/stats/protocol-stats.ts";
import { buildStatsSnapshot, type ReactorCounters } from "../../src/stats/snapshot.ts";

/** The transport reasons a reactor starts with, all 0. */
const TRANSPORT_REASONS = ["local", "end", "reset", "error", "idle-timeout", "frame-timeout", "slow-consumer", "server-full", "shutdown"];

/** Reactor counters as a plain object: zeros, the transport close reasons, then `fill`. */
function reactor(fill: Partial<Omit<ReactorCounters, "closeReasons">> = {}, reasons: Record<string, number> = {}): ReactorCounters {
  const closeReasons: Record<string, number> = {};
  for (const r of TRANSPORT_REASONS) closeReasons[r] = 0;
  Object.assign(closeReasons, reasons);
  return {
    connectionsActive: 0, connectionsTotal: 0, bytesIn: 0, bytesOut: 0, highWaterCrossings: 0, pausedReads: 0,
    slowConsumersDropped: 0, readCalls: 0, writeCalls: 0, acceptErrors: 0, rejectedFull: 0,
    ...fill,
    closeReasons,
  };
}

/** ProtocolStats with the framed/json/line vocabulary, as a ProtocolContext sets it up. */
function sharedVocabulary(opts: { enabled?: boolean } = {}): ProtocolStats {
  const p = new ProtocolStats(opts);
  registerKinds(p);
  registerErrors(p);
  return p;
}

describe("buildStatsSnapshot", () => {
  test("sums several reactors and lists only non-zero kinds and codes", () => {
    const a = reactor({ connectionsActive: 2, connectionsTotal: 10, bytesIn: 100, bytesOut: 200, highWaterCrossings: 1, pausedReads: 1, readCalls: 7 }, { reset: 2 });
    const b = reactor({ connectionsActive: 3, connectionsTotal: 5, bytesIn: 1, bytesOut: 2, pausedReads: 4, slowConsumersDropped: 2, writeCalls: 4, rejectedFull: 1 }, { reset: 1, "slow-consumer": 2 });
    const p = sharedVocabulary();
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
      { kind: Kind.PING, name: "ping", in: 1, out: 0 },
      { kind: Kind.PONG, name: "pong", in: 0, out: 1 },
      { kind: Kind.ECHO, name: "echo", in: 1, out: 0 },
    ]);
    expect(s.errors).toEqual({ total: 2, byCode: [{ code: 2, name: "bad_body", count: 2 }] });
    expect(s.latencyNs.count).toBe(1);
    expect(s.latencyNs.p99).toBe(500);
    expect(s.statsEnabled).toBe(true);
  });

  test("close reasons: summed over the union of the reactors' keys, registered reasons listed at 0", () => {
    // a gained "rate-limited" and an unregistered "kicked"; b gained "protocol".
    const a = reactor({}, { end: 4, "rate-limited": 1, kicked: 2 });
    const b = reactor({}, { end: 1, protocol: 3 });
    const s = buildStatsSnapshot({ reactors: [a, b], protocol: sharedVocabulary(), clients: 0, serverName: "t", startedAtMs: 0, nowMs: 0 });
    // The reactors' reasons first, then the registered ones in registration order, whichever came first.
    expect(Object.entries(s.closeReasons)).toEqual([
      ["local", 0], ["end", 5], ["reset", 0], ["error", 0], ["idle-timeout", 0], ["frame-timeout", 0],
      ["slow-consumer", 0], ["server-full", 0], ["shutdown", 0], ["kicked", 2],
      ["protocol", 3], ["unauthorized", 0], ["rate-limited", 1],
    ]);
  });

  test("a reason only a later reactor has is still summed", () => {
    const s = buildStatsSnapshot({
      reactors: [reactor({}, { end: 1 }), reactor({}, { "tls-handshake": 2 }), reactor({}, { "tls-handshake": 1 })],
      protocol: new ProtocolStats(),
      clients: 0, serverName: "t", startedAtMs: 0, nowMs: 0,
    });
    expect(s.closeReasons.end).toBe(1);
    expect(s.closeReasons["tls-handshake"]).toBe(3);
  });

  test("another protocol's vocabulary: its kind and error names, nothing framed", () => {
    const p = new ProtocolStats();
    const req = p.registerKind("http_request");
    const res = p.registerKind("http_response");
    p.registerError(400, "bad_request");
    p.registerCloseReason("http-parse-error");
    p.messagesIn[req]++;
    p.countOut(res, 2);
    p.countError(400);
    const s = buildStatsSnapshot({ reactors: [reactor()], protocol: p, clients: 0, serverName: "h", startedAtMs: 0, nowMs: 0 });
    expect(s.messages).toEqual({
      in: 1,
      out: 2,
      byKind: [
        { kind: 0, name: "http_request", in: 1, out: 0 },
        { kind: 1, name: "http_response", in: 0, out: 2 },
      ],
    });
    expect(s.errors).toEqual({ total: 1, byCode: [{ code: 400, name: "bad_request", count: 1 }] });
    expect(s.closeReasons["http-parse-error"]).toBe(0);
    expect(s.closeReasons.protocol).toBeUndefined();
  });

  test("no reactors: zero connection counters, registered close reasons at 0, still a valid snapshot", () => {
    const s = buildStatsSnapshot({ reactors: [], protocol: sharedVocabulary({ enabled: false }), clients: 0, serverName: "t", startedAtMs: 5, nowMs: 5 });
    expect(s.connections).toEqual({ active: 0, total: 0, clients: 0 });
    expect(s.messages.byKind).toEqual([]);
    expect(s.closeReasons).toEqual({ protocol: 0, unauthorized: 0, "rate-limited": 0 });
    expect(s.statsEnabled).toBe(false);
  });
});
