// src/client/format.ts: the CLI's text rendering (stats, messages, bench report, progress).

import { describe, expect, test } from "bun:test";
import { summarize, type BenchResult } from "../../src/client/bench.ts";
import {
  formatBenchResult,
  formatMessage,
  formatNotice,
  formatProgress,
  formatStats,
  formatUptime,
  groupDigits,
} from "../../src/client/format.ts";
import type { ServerStats } from "../../src/client/protocol.ts";
import { LatencyHistogram } from "../../src/stats/histogram.ts";

const stats: ServerStats = {
  protocol: "framed",
  serverName: null,
  statsEnabled: true,
  startedAtMs: Date.UTC(2026, 0, 2, 3, 4, 5),
  nowMs: Date.UTC(2026, 0, 2, 4, 6, 8),
  uptimeSeconds: 3723,
  clients: 3,
  connectionsActive: 4,
  connectionsTotal: 1234,
  bytesIn: 2500,
  bytesOut: 12_300_000,
  messagesIn: 1_000_001,
  messagesOut: 999,
  errorsTotal: 2,
  highWaterCrossings: 1,
  pausedReads: 1,
  slowConsumersDropped: 1,
  latencyNs: { count: 10, p50: 250, p90: 1500, p99: 25_000, p999: 25_000, max: 3_000_000 },
  kinds: [{ name: "ping", in: 1_000_001, out: 0 }, { name: "pong", in: 0, out: 999 }, { name: "echo", in: 0, out: 0 }],
  errors: [{ name: "no_such_client", count: 2 }],
  closeReasons: null,
};

describe("format", () => {
  test("small helpers", () => {
    expect(formatUptime(5)).toBe("5s");
    expect(formatUptime(65)).toBe("1m 05s");
    expect(formatUptime(3723)).toBe("1h 02m 03s");
    expect(groupDigits(1234567)).toBe("1,234,567");
    expect(groupDigits(12)).toBe("12");
    expect(formatMessage({ kind: "direct", fromId: 4, from: "4", text: "hi", payload: new Uint8Array() })).toBe("direct from 4: hi");
    expect(formatNotice({ code: "rate_limited", message: "rate limited" })).toBe("server error: rate_limited (rate limited)");
    expect(formatNotice({ code: "unauthorized", message: "unauthorized" })).toBe("server error: unauthorized"); // said once
    expect(formatNotice({ code: "unrecognized_line", message: "hello" })).toBe("server: hello");
  });

  test("stats: one row per field, the kinds table without all-zero rows", () => {
    const out = formatStats(stats, "127.0.0.1:7000 (framed)");
    expect(out.split("\n")).toEqual([
      "server stats: 127.0.0.1:7000 (framed)",
      "  uptime        1h 02m 03s (since 2026-01-02T03:04:05.000Z)",
      "  clients       3 connected",
      "  connections   4 active, 1,234 total",
      "  traffic       2.50KB in, 12.3MB out",
      "  messages      1,000,001 in, 999 out",
      "  errors        2 (no_such_client 2)",
      "  backpressure  1 high-water crossing, 1 paused read, 1 slow consumer dropped",
      "  latency       10 timed: p50 250ns, p90 1.50us, p99 25.0us, p99.9 25.0us, max 3.00ms",
      "  by kind          in        out",
      "    ping    1,000,001          0",
      "    pong            0        999",
    ]);
    expect(formatStats({ ...stats, statsEnabled: false }, "x")).toContain("latency       not measured (stats off)");
    expect(formatStats({ ...stats, closeReasons: { end: 3, reset: 0 } }, "x")).toContain("  closed        end 3");
  });

  test("progress bar", () => {
    expect(formatProgress({ elapsedSec: 2.5, durationSec: 10, completed: 1, msgsPerSec: 152_000, p99Ns: 45_200, inFlight: 64 }, 8)).toBe(
      "[##......]   2.5/10.0 s    152k msg/s  p99  45.2us  in flight 64",
    );
  });

  test("bench report: counts, throughput, percentiles from the histogram", () => {
    const h = new LatencyHistogram();
    for (let i = 1; i <= 1000; i++) h.record(i * 1000);
    const r: BenchResult = {
      protocol: "framed", host: "127.0.0.1", port: 7000, mode: "open", conns: 2, depth: 1, size: 64, durationSec: 1, rate: 1000,
      elapsedSec: 1, sent: 1000, completed: 1000, msgsPerSec: 1000, bytesPerSec: 64_000, deliveries: null, deliveriesPerSec: null,
      errors: 0, unanswered: 0, latencyNs: summarize(h), histogram: h, stoppedEarly: null, interrupted: false,
    };
    const out = formatBenchResult(r);
    expect(out).toContain("bench: framed 127.0.0.1:7000, open loop at 1,000/s over 2 conns, 64-byte payloads, 1 s");
    expect(out).toContain("1,000 sent, 1,000 completed in 1.00 s, 0 errors, 0 unanswered");
    expect(out).toContain("1.00k msgs/s, 0.06 MB/s of payload each way");
    expect(out).toContain("from the intended send time: min 1.00us");
    expect(out).toMatch(/p50 +50\d(\.\d)?us/);
    expect(out).toMatch(/p99 +99\dus/);
    expect(out).toMatch(/max +1\.00ms/);
    expect(summarize(h).p75).toBeGreaterThanOrEqual(750_000);
    expect(formatBenchResult({ ...r, stoppedEarly: "every connection was lost" })).toContain("STOPPED EARLY: every connection was lost");
    // Replies after the window: answered (not unanswered), not completed, and said so.
    expect(formatBenchResult({ ...r, completed: 960, errors: 10, unanswered: 5 }))
      .toContain("1,000 sent, 960 completed in 1.00 s (25 more after it), 10 errors, 5 unanswered");
  });
});
