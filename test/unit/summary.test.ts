// src/stats/summary.ts: the --stats-interval line.

import { describe, expect, test } from "bun:test";
import { Kind, registerKinds } from "../../src/protocols/codec/kinds.ts";
import { ReactorStats } from "../../src/reactor/stats.ts";
import { ProtocolStats } from "../../src/stats/protocol-stats.ts";
import { buildStatsSnapshot } from "../../src/stats/snapshot.ts";
import { formatBytes, formatCount, formatNs, formatSummaryLine, StatsIntervalReporter } from "../../src/stats/summary.ts";

describe("formatters", () => {
  test("units and significant digits", () => {
    expect(formatNs(850)).toBe("850ns");
    expect(formatNs(12_345)).toBe("12.3us");
    expect(formatNs(4_560_000)).toBe("4.56ms");
    expect(formatNs(1.2e9)).toBe("1.20s");
    expect(formatBytes(512)).toBe("512B");
    expect(formatBytes(1500)).toBe("1.50KB");
    expect(formatBytes(12_300_000)).toBe("12.3MB");
    expect(formatCount(950)).toBe("950");
    expect(formatCount(12_345)).toBe("12.3k");
    expect(formatCount(1_200_000)).toBe("1.20M");
  });
});

describe("formatSummaryLine", () => {
  test("rates over the interval since the previous snapshot", () => {
    const r = new ReactorStats();
    const p = new ProtocolStats();
    registerKinds(p);
    const snap = (nowMs: number) => buildStatsSnapshot({ reactors: [r], protocol: p, clients: 1, serverName: "bunpoll", startedAtMs: 0, nowMs });
    r.bytesIn = 1000;
    p.countIn(Kind.PING);
    const prev = snap(1000);
    r.bytesIn = 3000;
    r.connectionsActive = 2;
    for (let i = 0; i < 4000; i++) p.countIn(Kind.PING);
    p.latency.record(1500);
    const line = formatSummaryLine(snap(3000), prev);
    expect(line).toContain("[bunpoll] up=3s conns=2");
    expect(line).toContain("msg_in=2.00k/s"); // 4000 over 2 s
    expect(line).toContain("rx=1.00KB/s"); // 2000 B over 2 s
    expect(line).toContain("p50=1.50us");
    expect(line).not.toContain("\n");
  });

  test("disabled stats say so instead of printing zero latencies", () => {
    const s = buildStatsSnapshot({ reactors: [], protocol: new ProtocolStats({ enabled: false }), clients: 0, serverName: "b", startedAtMs: 0, nowMs: 1000 });
    expect(formatSummaryLine(s)).toContain("latency=off");
  });
});

describe("StatsIntervalReporter", () => {
  test("each line's percentiles cover only its own interval", () => {
    const p = new ProtocolStats();
    let now = 0;
    const rep = new StatsIntervalReporter(
      () => buildStatsSnapshot({ reactors: [], protocol: p, clients: 0, serverName: "b", startedAtMs: 0, nowMs: now }),
      p.latency,
    );
    for (let i = 0; i < 100; i++) p.latency.record(200);
    now = 1000;
    expect(rep.line()).toContain("p99=200ns");
    for (let i = 0; i < 5; i++) p.latency.record(90_000);
    now = 2000;
    const second = rep.line();
    expect(second).toContain("p50=90.0us");
    now = 3000;
    expect(rep.line()).toContain("latency=none");
  });
});
