// Stats of several reactors in other threads, combined: counters summed, latency histograms
// merged bucket by bucket (so percentiles are those of all messages, not an average of
// percentiles), plus a per-worker breakdown. The data crosses threads as plain JSON
// (SharedStats below), so this module knows nothing of how.

import { LatencyHistogram } from "./histogram.ts";
import type { ErrorCount, KindCount, StatsSnapshot, WorkerStats } from "./snapshot.ts";

/** A worker's stats as it publishes them: its snapshot and its histogram, sparse. */
export interface SharedStats {
  worker: number;
  snapshot: StatsSnapshot;
  /** Non-zero histogram buckets as [index, count, index, count, ...]. */
  buckets: number[];
  count: number;
  sum: number;
  min: number;
  max: number;
}

export function exportStats(worker: number, snapshot: StatsSnapshot, h: LatencyHistogram): SharedStats {
  const buckets: number[] = [];
  const c = h.counts;
  for (let i = 0; i < c.length; i++) if (c[i] !== 0) buckets.push(i, c[i]!);
  return { worker, snapshot, buckets, count: h.count, sum: h.sum, min: Number.isFinite(h.min) ? h.min : -1, max: h.max };
}

/** Adds a published histogram into `into`. */
export function addHistogram(into: LatencyHistogram, s: SharedStats): void {
  const b = s.buckets;
  for (let i = 0; i < b.length; i += 2) into.counts[b[i]!] += b[i + 1]!;
  into.count += s.count;
  into.sum += s.sum;
  if (s.min >= 0 && s.min < into.min) into.min = s.min;
  if (s.max > into.max) into.max = s.max;
}

/**
 * One snapshot for the whole process from each worker's (the caller's own first, live; the
 * others as last published), with `workers` listing each one. `latency` is the merged
 * histogram the summary is taken from.
 */
export function mergeSnapshots(parts: readonly StatsSnapshot[], latency: LatencyHistogram, workers: WorkerStats[]): StatsSnapshot {
  const first = parts[0]!;
  const out: StatsSnapshot = structuredClone(first);
  const kinds = new Map<string, KindCount>();
  for (const k of out.messages.byKind) kinds.set(k.name, k);
  const codes = new Map<number, ErrorCount>();
  for (const e of out.errors.byCode) codes.set(e.code, e);
  for (let p = 1; p < parts.length; p++) {
    const s = parts[p]!;
    out.startedAtMs = Math.min(out.startedAtMs, s.startedAtMs);
    out.connections.active += s.connections.active;
    out.connections.total += s.connections.total;
    out.connections.clients += s.connections.clients;
    out.bytes.in += s.bytes.in;
    out.bytes.out += s.bytes.out;
    out.messages.in += s.messages.in;
    out.messages.out += s.messages.out;
    for (const k of s.messages.byKind) {
      const have = kinds.get(k.name);
      if (have) {
        have.in += k.in;
        have.out += k.out;
      } else {
        const c = { ...k };
        kinds.set(k.name, c);
        out.messages.byKind.push(c);
      }
    }
    out.errors.total += s.errors.total;
    for (const e of s.errors.byCode) {
      const have = codes.get(e.code);
      if (have) have.count += e.count;
      else {
        const c = { ...e };
        codes.set(e.code, c);
        out.errors.byCode.push(c);
      }
    }
    out.backpressure.highWaterCrossings += s.backpressure.highWaterCrossings;
    out.backpressure.pausedReads += s.backpressure.pausedReads;
    out.backpressure.slowConsumersDropped += s.backpressure.slowConsumersDropped;
    for (const [reason, n] of Object.entries(s.closeReasons)) out.closeReasons[reason] = (out.closeReasons[reason] ?? 0) + n;
    out.io.readCalls += s.io.readCalls;
    out.io.writeCalls += s.io.writeCalls;
    out.io.acceptErrors += s.io.acceptErrors;
    out.io.rejectedFull += s.io.rejectedFull;
    for (const [name, t] of Object.entries(s.byProtocol ?? {})) {
      const have = (out.byProtocol ??= {})[name] ??= { bytesIn: 0, bytesOut: 0, messagesIn: 0, messagesOut: 0 };
      have.bytesIn += t.bytesIn;
      have.bytesOut += t.bytesOut;
      have.messagesIn += t.messagesIn;
      have.messagesOut += t.messagesOut;
    }
    for (let k = 0; k < 6; k++) (out.httpByClass ??= [0, 0, 0, 0, 0, 0])[k]! += s.httpByClass?.[k] ?? 0;
  }
  out.messages.byKind.sort((a, b) => a.kind - b.kind);
  out.errors.byCode.sort((a, b) => a.code - b.code);
  out.uptimeSeconds = Math.max(0, Math.floor((out.nowMs - out.startedAtMs) / 1000));
  out.latencyNs = latency.summary();
  out.workers = workers;
  return out;
}
