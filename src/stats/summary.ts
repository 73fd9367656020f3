// The one-line summary printed every `--stats-interval` seconds. key=value pairs so it
// greps and awks well; rates are per second over the interval since the previous line,
// latency percentiles are for that interval too (falling back to cumulative).

import type { LatencyHistogram, LatencySummary } from "./histogram.ts";
import type { StatsSnapshot } from "./snapshot.ts";

/** "850ns", "12.3us", "4.56ms", "1.20s": three significant digits at most. */
export function formatNs(ns: number): string {
  if (ns < 1000) return `${Math.round(ns)}ns`;
  if (ns < 1e6) return `${trim(ns / 1e3)}us`;
  if (ns < 1e9) return `${trim(ns / 1e6)}ms`;
  return `${trim(ns / 1e9)}s`;
}

/** "512B", "1.50KB", "12.3MB" (powers of 1000, as rates usually are). */
export function formatBytes(n: number): string {
  if (n < 1000) return `${Math.round(n)}B`;
  if (n < 1e6) return `${trim(n / 1e3)}KB`;
  if (n < 1e9) return `${trim(n / 1e6)}MB`;
  return `${trim(n / 1e9)}GB`;
}

/** "950", "12.3k", "1.20M". */
export function formatCount(n: number): string {
  if (n < 1000) return `${Math.round(n)}`;
  if (n < 1e6) return `${trim(n / 1e3)}k`;
  return `${trim(n / 1e6)}M`;
}

function trim(x: number): string {
  return x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2);
}

/**
 * One summary line. With `prev`, rates are computed over [prev.nowMs, cur.nowMs];
 * without it, over the whole uptime. `latency` overrides the cumulative latency (pass an
 * interval summary).
 */
export function formatSummaryLine(cur: StatsSnapshot, prev?: StatsSnapshot | null, latency?: LatencySummary): string {
  const base = prev ?? null;
  const seconds = Math.max(0.001, (cur.nowMs - (base ? base.nowMs : cur.startedAtMs)) / 1000);
  const rate = (now: number, before: number) => (now - before) / seconds;
  const lat = latency ?? cur.latencyNs;
  const parts = [
    `[${cur.serverName}]`,
    `up=${cur.uptimeSeconds}s`,
    `conns=${cur.connections.active}`,
    `total=${cur.connections.total}`,
    `clients=${cur.connections.clients}`,
    `msg_in=${formatCount(rate(cur.messages.in, base ? base.messages.in : 0))}/s`,
    `msg_out=${formatCount(rate(cur.messages.out, base ? base.messages.out : 0))}/s`,
    `rx=${formatBytes(rate(cur.bytes.in, base ? base.bytes.in : 0))}/s`,
    `tx=${formatBytes(rate(cur.bytes.out, base ? base.bytes.out : 0))}/s`,
    `errors=${cur.errors.total}`,
    `hwm=${cur.backpressure.highWaterCrossings}`,
    `paused=${cur.backpressure.pausedReads}`,
    `dropped=${cur.backpressure.slowConsumersDropped}`,
  ];
  if (!cur.statsEnabled) {
    parts.push("latency=off");
  } else if (lat.count === 0) {
    parts.push("latency=none");
  } else {
    parts.push(
      `p50=${formatNs(lat.p50)}`,
      `p90=${formatNs(lat.p90)}`,
      `p99=${formatNs(lat.p99)}`,
      `p99.9=${formatNs(lat.p999)}`,
      `max=${formatNs(lat.max)}`,
    );
  }
  return parts.join(" ");
}

/**
 * Keeps what the previous line saw, so each call reports the interval since then. The
 * server calls `line()` from its timer and prints the result.
 */
export class StatsIntervalReporter {
  private prev: StatsSnapshot | null = null;
  private prevHistogram: LatencyHistogram | null = null;

  constructor(
    private readonly snapshot: () => StatsSnapshot,
    private readonly histogram: LatencyHistogram,
  ) {}

  line(): string {
    const cur = this.snapshot();
    const interval = this.prevHistogram ? this.histogram.since(this.prevHistogram).summary() : undefined;
    const text = formatSummaryLine(cur, this.prev, interval);
    this.prev = cur;
    this.prevHistogram = this.histogram.clone();
    return text;
  }
}
