// Text rendering for the client CLI: server stats, incoming messages, the bench report and
// its progress bar. Pure functions of their inputs, so they are unit-tested directly.

import { plural } from "../cli/plural.ts";
import { formatBytes, formatCount, formatNs } from "../stats/summary.ts";
import type { BenchProgress, BenchResult } from "./bench.ts";
import type { IncomingMessage, ServerNotice, ServerStats } from "./protocol.ts";

export { formatNs };

/** "1h 02m 03s", "4m 05s", "12s". */
export function formatUptime(seconds: number): string {
  const s = Math.floor(seconds % 60);
  const m = Math.floor(seconds / 60) % 60;
  const h = Math.floor(seconds / 3600);
  const pad = (n: number) => String(n).padStart(2, "0");
  if (h > 0) return `${h}h ${pad(m)}m ${pad(s)}s`;
  if (m > 0) return `${m}m ${pad(s)}s`;
  return `${s}s`;
}

/** 1234567 -> "1,234,567". */
export function groupDigits(n: number): string {
  return Math.round(n).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

/** `1 sample`, `1,024 samples`. */
function count(n: number, word: string): string {
  return plural(n, word, groupDigits(n));
}

/** Round-trip time given in ms, shown in the unit that suits it. */
export function formatMs(ms: number): string {
  return formatNs(ms * 1e6);
}

/** One line per incoming message: `broadcast from 3: text` / `direct from 3: text`. */
export function formatMessage(m: IncomingMessage): string {
  return `${m.kind} from ${m.from}: ${m.text}`;
}

export function formatNotice(n: ServerNotice): string {
  return n.code === "unrecognized_line" ? `server: ${n.message}` : `server error: ${n.code}${n.message && n.message !== n.code ? ` (${n.message})` : ""}`;
}

/** The `stats` command's report. */
export function formatStats(s: ServerStats, where: string): string {
  const rows: [string, string][] = [
    ["uptime", `${formatUptime(s.uptimeSeconds)}${s.startedAtMs > 0 ? ` (since ${new Date(s.startedAtMs).toISOString()})` : ""}`],
    ["clients", `${groupDigits(s.clients)} connected`],
    ["connections", `${groupDigits(s.connectionsActive)} active, ${groupDigits(s.connectionsTotal)} total`],
    ["traffic", `${formatBytes(s.bytesIn)} in, ${formatBytes(s.bytesOut)} out`],
    ["messages", `${groupDigits(s.messagesIn)} in, ${groupDigits(s.messagesOut)} out`],
    ["errors", `${groupDigits(s.errorsTotal)}${s.errors.length > 0 ? ` (${s.errors.map((e) => `${e.name} ${groupDigits(e.count)}`).join(", ")})` : ""}`],
    [
      "backpressure",
      `${count(s.highWaterCrossings, "high-water crossing")}, ${count(s.pausedReads, "paused read")}, ${count(s.slowConsumersDropped, "slow consumer")} dropped`,
    ],
    ["latency", formatServerLatency(s)],
  ];
  if (s.closeReasons !== null) {
    const reasons = Object.entries(s.closeReasons).filter(([, n]) => n > 0);
    if (reasons.length > 0) rows.push(["closed", reasons.map(([r, n]) => `${r} ${groupDigits(n)}`).join(", ")]);
  }
  const lines = [`server stats: ${where}${s.serverName ? ` (${s.serverName})` : ""}`];
  for (const [k, v] of rows) lines.push(`  ${k.padEnd(14)}${v}`);
  const kinds = s.kinds.filter((k) => k.in > 0 || k.out > 0);
  if (kinds.length > 0) {
    const w = Math.max(...kinds.map((k) => k.name.length), 4) + 4;
    const cw = Math.max(...kinds.map((k) => Math.max(groupDigits(k.in).length, groupDigits(k.out).length)), 3) + 2;
    lines.push(`  ${"by kind".padEnd(w)}${"in".padStart(cw)}${"out".padStart(cw)}`);
    for (const k of kinds) lines.push(`    ${k.name.padEnd(w - 2)}${groupDigits(k.in).padStart(cw)}${groupDigits(k.out).padStart(cw)}`);
  }
  return lines.join("\n");
}

function formatServerLatency(s: ServerStats): string {
  if (!s.statsEnabled) return "not measured (stats off)";
  const l = s.latencyNs;
  if (l.count === 0) return "nothing timed yet";
  return `${groupDigits(l.count)} timed: p50 ${formatNs(l.p50)}, p90 ${formatNs(l.p90)}, p99 ${formatNs(l.p99)}, p99.9 ${formatNs(l.p999)}, max ${formatNs(l.max)}`;
}

/** `[#######.............]  3.2/10.0 s  152k msg/s  p99 45.2us  in flight 64` */
export function formatProgress(p: BenchProgress, width = 24): string {
  const frac = Math.min(1, p.elapsedSec / p.durationSec);
  const filled = Math.round(frac * width);
  const bar = "#".repeat(filled) + ".".repeat(width - filled);
  return `[${bar}] ${p.elapsedSec.toFixed(1).padStart(5)}/${p.durationSec.toFixed(1)} s  ${formatCount(p.msgsPerSec).padStart(6)} msg/s  p99 ${formatNs(p.p99Ns).padStart(7)}  in flight ${p.inFlight}`;
}

/** The human-readable end-of-bench report. */
export function formatBenchResult(r: BenchResult): string {
  const where = `${r.protocol} ${r.host.includes(":") ? `[${r.host}]` : r.host}:${r.port}`;
  const mode = r.mode === "closed" ? `closed loop, ${count(r.conns, "conn")} x depth ${r.depth}` : `open loop at ${groupDigits(r.rate!)}/s over ${count(r.conns, "conn")}`;
  const lines = [`bench: ${where}, ${mode}, ${r.size}-byte payloads, ${r.durationSec} s`];
  if (r.stoppedEarly) lines.push(`  STOPPED EARLY: ${r.stoppedEarly}`);
  if (r.interrupted) lines.push(`  interrupted after ${r.elapsedSec.toFixed(2)} s: the figures cover that time`);
  const unit = r.protocol === "line" ? "lines" : "requests";
  // Replies that arrive during the drain after the window are answered but not "completed"
  // (they are in the latency histogram): say so, or the counts look like they do not add up.
  const late = r.sent - r.completed - r.errors - r.unanswered;
  lines.push(
    `  ${unit.padEnd(12)}${groupDigits(r.sent)} sent, ${groupDigits(r.completed)} completed in ${r.elapsedSec.toFixed(2)} s` +
      `${late > 0 ? ` (${groupDigits(late)} more after it)` : ""}, ${count(r.errors, "error")}, ${groupDigits(r.unanswered)} unanswered`,
  );
  if (r.deliveries !== null) {
    lines.push(`  ${"deliveries".padEnd(12)}${groupDigits(r.deliveries)} (${formatCount(r.deliveriesPerSec!)}/s: each line reaches the ${count(r.conns - 1, "other connection")})`);
  }
  lines.push(`  ${"throughput".padEnd(12)}${formatCount(r.msgsPerSec)} msgs/s, ${(r.bytesPerSec / 1e6).toFixed(2)} MB/s of payload${r.protocol === "line" ? " delivered" : " each way"}`);
  const l = r.latencyNs;
  if (l.count === 0) {
    lines.push(`  ${"latency".padEnd(12)}no replies`);
  } else {
    const basis = r.mode === "open" ? "from the intended send time" : "round trip";
    lines.push(`  ${"latency".padEnd(12)}${count(l.count, "sample")}, ${basis}: min ${formatNs(l.min)}, mean ${formatNs(l.mean)}`);
    const rows: [string, number][] = [
      ["p50", l.p50], ["p75", l.p75], ["p90", l.p90], ["p99", l.p99], ["p99.9", l.p999], ["p99.99", l.p9999], ["max", l.max],
    ];
    const max = l.max > 0 ? l.max : 1;
    for (const [name, v] of rows) {
      // A bar per percentile on a log scale from min to max: the shape of the tail at a glance.
      const lo = Math.log(Math.max(1, l.min));
      const span = Math.log(max) - lo;
      const len = span > 0 ? Math.max(1, Math.round(((Math.log(Math.max(1, v)) - lo) / span) * 30)) : 1;
      lines.push(`    ${name.padEnd(8)}${formatNs(v).padStart(8)}  ${"=".repeat(len)}`);
    }
  }
  return lines.join("\n");
}
