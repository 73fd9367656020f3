// src/protocols/codec/stats-reply.ts: the STATS_REPLY binary layout.

import { describe, expect, test } from "bun:test";
import { ErrorCode, registerErrors } from "../../src/protocols/codec/errors.ts";
import { Kind, registerKinds } from "../../src/protocols/codec/kinds.ts";
import { decodeStatsReply, encodeStatsReplyBody, STATS_HEADER_LENGTH, statsReplyLength } from "../../src/protocols/codec/stats-reply.ts";
import { ReactorStats } from "../../src/reactor/stats.ts";
import { ProtocolStats } from "../../src/stats/protocol-stats.ts";
import { buildStatsSnapshot, type StatsSnapshot } from "../../src/stats/snapshot.ts";

function sample(more: (p: ProtocolStats) => void = () => {}): StatsSnapshot {
  const r = new ReactorStats();
  Object.assign(r, { connectionsActive: 7, connectionsTotal: 2 ** 40 + 3, bytesIn: 123456789012, bytesOut: 5, highWaterCrossings: 1, pausedReads: 2, slowConsumersDropped: 3 });
  const p = new ProtocolStats();
  registerKinds(p);
  registerErrors(p);
  p.countIn(Kind.PING);
  p.countOut(Kind.PONG);
  p.countIn(Kind.LINE);
  p.countError(ErrorCode.NO_SUCH_CLIENT);
  for (let v = 1; v <= 1000; v++) p.latency.record(v * 10);
  more(p);
  return buildStatsSnapshot({ reactors: [r], protocol: p, clients: 6, serverName: "t", startedAtMs: 1_700_000_000_000, nowMs: 1_700_000_090_500 });
}

describe("STATS_REPLY", () => {
  test("fixed header fields sit at their documented offsets", () => {
    const s = sample();
    const b = encodeStatsReplyBody(s);
    const v = new DataView(b.buffer);
    const u64 = (at: number) => v.getUint32(at) * 2 ** 32 + v.getUint32(at + 4);
    expect(v.getUint16(0)).toBe(1); // layout version
    expect(v.getUint16(2)).toBe(160); // header length
    expect(v.getUint16(4)).toBe(1); // flags: stats enabled
    expect(u64(8)).toBe(1_700_000_000_000);
    expect(u64(16)).toBe(1_700_000_090_500);
    expect(v.getUint32(24)).toBe(90);
    expect(v.getUint32(28)).toBe(6);
    expect(u64(32)).toBe(7);
    expect(u64(40)).toBe(2 ** 40 + 3);
    expect(u64(48)).toBe(123456789012);
    expect(u64(64)).toBe(2); // messages in
    expect(u64(80)).toBe(1); // errors total
    expect(u64(104)).toBe(3); // slow consumers dropped
    expect(u64(112)).toBe(1000); // latency count
    expect(u64(152)).toBe(10000); // max
    // Tables: 3 kinds (ping, pong, line) then 1 error code.
    expect(v.getUint16(160)).toBe(3);
    expect(v.getUint16(162)).toBe(0x0003);
    expect(v.getUint16(162 + 18 * 2)).toBe(0x0102);
    const errAt = 162 + 18 * 3;
    expect(v.getUint16(errAt)).toBe(1);
    expect(v.getUint16(errAt + 2)).toBe(ErrorCode.NO_SUCH_CLIENT);
    expect(u64(errAt + 4)).toBe(1);
    expect(b.length).toBe(errAt + 2 + 10);
    expect(b.length).toBe(statsReplyLength(s));
  });

  test("decode(encode(s)) gives back every field", () => {
    const s = sample();
    const d = decodeStatsReply(encodeStatsReplyBody(s))!;
    expect(d).not.toBeNull();
    expect(d.uptimeSeconds).toBe(90);
    expect(d.connectionsTotal).toBe(s.connections.total);
    expect(d.bytesIn).toBe(s.bytes.in);
    expect(d.statsEnabled).toBe(true);
    expect(d.latencyNs).toEqual({ count: 1000, p50: Math.round(s.latencyNs.p50), p90: Math.round(s.latencyNs.p90), p99: Math.round(s.latencyNs.p99), p999: Math.round(s.latencyNs.p999), max: 10000 });
    expect(d.kinds).toEqual([
      { code: 3, name: "ping", in: 1, out: 0 },
      { code: 4, name: "pong", in: 0, out: 1 },
      { code: 0x0102, name: "line", in: 1, out: 0 },
    ]);
    expect(d.errors).toEqual([{ code: 3, name: "no_such_client", count: 1 }]);
  });

  test("a longer header from a newer server is skipped via header_length", () => {
    const b = encodeStatsReplyBody(sample());
    const longer = new Uint8Array(b.length + 8);
    longer.set(b.subarray(0, STATS_HEADER_LENGTH), 0);
    longer.set(b.subarray(STATS_HEADER_LENGTH), STATS_HEADER_LENGTH + 8);
    new DataView(longer.buffer).setUint16(2, STATS_HEADER_LENGTH + 8);
    expect(decodeStatsReply(longer)!.kinds.length).toBe(3);
  });

  test("malformed bodies decode to null", () => {
    const b = encodeStatsReplyBody(sample());
    expect(decodeStatsReply(b.subarray(0, 100))).toBeNull();
    expect(decodeStatsReply(b.subarray(0, b.length - 1))).toBeNull();
    const badCount = b.slice();
    new DataView(badCount.buffer).setUint16(160, 500);
    expect(decodeStatsReply(badCount)).toBeNull();
  });

  test("a kind outside the shared vocabulary counts in the totals but gets no row", () => {
    const s = sample((p) => {
      const req = p.registerKind("http_request");
      p.countIn(req);
      p.countIn(req);
    });
    expect(s.messages.byKind.map((k) => k.name)).toEqual(["ping", "pong", "line", "http_request"]);
    const b = encodeStatsReplyBody(s);
    expect(b.length).toBe(statsReplyLength(s));
    expect(b.length).toBe(encodeStatsReplyBody(sample()).length);
    const d = decodeStatsReply(b)!;
    expect(d.messagesIn).toBe(4);
    expect(d.kinds.map((k) => k.name)).toEqual(["ping", "pong", "line"]);
    expect(d.errors).toEqual([{ code: 3, name: "no_such_client", count: 1 }]);
  });

  test("unknown kind codes keep their number", () => {
    const b = encodeStatsReplyBody(sample());
    new DataView(b.buffer).setUint16(162, 0x0777);
    expect(decodeStatsReply(b)!.kinds[0]!.name).toBe("kind_0x0777");
  });
});
