// src/stats/prometheus.ts: the exposition text built from a snapshot (the end-to-end test
// with a real parser is test/integration/metrics.test.ts).

import { describe, expect, test } from "bun:test";
import { Kind, registerKinds } from "../../src/protocols/codec/kinds.ts";
import { LatencyHistogram } from "../../src/stats/histogram.ts";
import { cumulativeBuckets, escapeLabelValue, formatPrometheus, LATENCY_BOUNDS_SECONDS } from "../../src/stats/prometheus.ts";
import { ProtocolStats } from "../../src/stats/protocol-stats.ts";
import { buildStatsSnapshot, type ReactorCounters } from "../../src/stats/snapshot.ts";

function reactor(closeReasons: Record<string, number>): ReactorCounters {
  return {
    connectionsActive: 2, connectionsTotal: 9, bytesIn: 1234, bytesOut: 5678, highWaterCrossings: 0, pausedReads: 0,
    slowConsumersDropped: 1, readCalls: 3, writeCalls: 4, acceptErrors: 0, rejectedFull: 0, closeReasons,
  };
}

describe("formatPrometheus", () => {
  test("counters, gauges, labels and the histogram from a snapshot", () => {
    const p = new ProtocolStats();
    registerKinds(p);
    p.countIn(Kind.PING);
    p.countIn(Kind.PING);
    p.countOut(Kind.PONG, 2);
    p.latency.record(800); // 0.8 µs
    p.latency.record(30_000); // 30 µs
    p.latency.record(20e9); // 20 s: only +Inf
    const snapshot = buildStatsSnapshot({ reactors: [reactor({ end: 5, 'odd"reason\\x\n': 1 })], protocol: p, clients: 1, serverName: "t", startedAtMs: 1_000, nowMs: 11_000 });
    const text = formatPrometheus({ snapshot, latency: p.latency, httpByClass: [0, 0, 7, 0, 2, 1] });
    const lines = text.split("\n");
    expect(text.endsWith("\n")).toBe(true);
    expect(lines).toContain("# TYPE bunpoll_connections_accepted_total counter");
    expect(lines).toContain("bunpoll_connections_accepted_total 9");
    expect(lines).toContain("bunpoll_connections_open 2");
    expect(lines).toContain("bunpoll_uptime_seconds 10");
    expect(lines).toContain('bunpoll_connections_closed_total{reason="end"} 5');
    expect(lines).toContain('bunpoll_connections_closed_total{reason="odd\\"reason\\\\x\\n"} 1');
    expect(lines).toContain("bunpoll_received_bytes_total 1234");
    expect(lines).toContain("bunpoll_sent_bytes_total 5678");
    expect(lines).toContain('bunpoll_messages_received_total{kind="ping"} 2');
    expect(lines).toContain('bunpoll_messages_sent_total{kind="pong"} 2');
    expect(lines).toContain('bunpoll_http_responses_total{class="2xx"} 7');
    expect(lines).toContain('bunpoll_http_responses_total{class="4xx"} 2');
    expect(lines).toContain('bunpoll_http_responses_total{class="5xx"} 1');
    expect(lines).toContain('bunpoll_message_processing_seconds_bucket{le="0.000001"} 1');
    expect(lines).toContain('bunpoll_message_processing_seconds_bucket{le="0.000025"} 1');
    expect(lines).toContain('bunpoll_message_processing_seconds_bucket{le="0.00005"} 2');
    expect(lines).toContain('bunpoll_message_processing_seconds_bucket{le="10"} 2');
    expect(lines).toContain('bunpoll_message_processing_seconds_bucket{le="+Inf"} 3');
    expect(lines).toContain("bunpoll_message_processing_seconds_count 3");
    expect(lines).toContain(`bunpoll_message_processing_seconds_sum ${(800 + 30_000 + 20e9) / 1e9}`);
    // Every sample's family has HELP and TYPE before it.
    const declared = new Set(lines.filter((l) => l.startsWith("# TYPE ")).map((l) => l.split(" ")[2]));
    for (const l of lines.filter((l) => l !== "" && !l.startsWith("#"))) {
      const name = /^[a-z_]+/.exec(l)![0].replace(/_(bucket|sum|count)$/, "");
      expect(declared.has(name)).toBe(true);
    }
  });

  test("no HTTP family without HTTP counters", () => {
    const p = new ProtocolStats();
    const snapshot = buildStatsSnapshot({ reactors: [], protocol: p, clients: 0, serverName: "t", startedAtMs: 0, nowMs: 0 });
    expect(formatPrometheus({ snapshot, latency: p.latency })).not.toContain("http");
  });
});

describe("cumulativeBuckets", () => {
  test("counts each value under every bound at or above it, within the histogram's resolution", () => {
    const h = new LatencyHistogram();
    const values = [0, 999, 1000, 2400, 2600, 9_000_000, 9_999_999, 11_000_000];
    for (const v of values) h.record(v);
    for (const [le, n] of cumulativeBuckets(h, LATENCY_BOUNDS_SECONDS)) {
      const exact = values.filter((v) => v <= le * 1e9).length;
      const loose = values.filter((v) => v <= le * 1e9 * 1.008).length;
      expect(n).toBeGreaterThanOrEqual(exact);
      expect(n).toBeLessThanOrEqual(loose);
    }
  });
});

describe("escapeLabelValue", () => {
  test("escapes backslash, double quote and newline", () => {
    expect(escapeLabelValue('a\\b"c\nd')).toBe('a\\\\b\\"c\\nd');
  });
});
