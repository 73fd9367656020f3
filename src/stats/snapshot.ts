// One plain-object view of everything the server counts: the reactors' counters (summed
// when there are several) plus the protocol counters. STATS_REPLY, the json
// `server_stats` reply and the `--stats-interval` line are all built from it.

import type { LatencySummary } from "./histogram.ts";
import type { ProtocolStats } from "./protocol-stats.ts";

/**
 * The reactor counters a snapshot reads: ReactorStats has them, and a plain object will
 * do in tests. Close reasons are an open set, counted by name.
 */
export interface ReactorCounters {
  readonly connectionsActive: number;
  readonly connectionsTotal: number;
  readonly bytesIn: number;
  readonly bytesOut: number;
  readonly highWaterCrossings: number;
  readonly pausedReads: number;
  readonly slowConsumersDropped: number;
  readonly closeReasons: Readonly<Record<string, number>>;
  readonly readCalls: number;
  readonly writeCalls: number;
  readonly acceptErrors: number;
  readonly rejectedFull: number;
}

export interface KindCount {
  /** Dense kind index (what ProtocolStats.registerKind returned). */
  kind: number;
  /** The registered name, e.g. "ping". */
  name: string;
  in: number;
  out: number;
}

export interface ErrorCount {
  code: number;
  name: string;
  count: number;
}

export interface StatsSnapshot {
  serverName: string;
  /** Unix epoch milliseconds. */
  startedAtMs: number;
  nowMs: number;
  uptimeSeconds: number;
  /** False when protocol counters are switched off (their fields then read 0). */
  statsEnabled: boolean;
  connections: {
    /** Open connections, all listeners (reactor count). */
    active: number;
    /** Connections accepted since start. */
    total: number;
    /** Clients registered with the hub (reachable by broadcast/send). */
    clients: number;
  };
  bytes: { in: number; out: number };
  messages: {
    in: number;
    out: number;
    /** Kinds with a non-zero count, in kind order. */
    byKind: KindCount[];
  };
  errors: {
    total: number;
    /** Codes with a non-zero count, ascending. */
    byCode: ErrorCount[];
  };
  backpressure: {
    highWaterCrossings: number;
    pausedReads: number;
    slowConsumersDropped: number;
  };
  /**
   * Connections closed per reason, summed over the reactors: every reason a reactor has
   * a key for, in the order the reactors list them, then the reasons registered with the
   * ProtocolStats (0 until one happens), in registration order.
   */
  closeReasons: Record<string, number>;
  /** Syscall and accept counters: readCalls / messages.in is reads per message. */
  io: { readCalls: number; writeCalls: number; acceptErrors: number; rejectedFull: number };
  /** Per-message processing time, nanoseconds. */
  latencyNs: LatencySummary;
  /** With several worker threads: each one's share (absent with one). */
  workers?: WorkerStats[];
  /** Per protocol: its listeners' bytes, and messages where the protocol counts them (http, ws). */
  byProtocol: Record<string, ProtocolTrafficCount>;
  /** HTTP responses by status class, index 1..5 for 1xx..5xx (index 0 unused). */
  httpByClass: number[];
}

export interface ProtocolTrafficCount {
  bytesIn: number;
  bytesOut: number;
  messagesIn: number;
  messagesOut: number;
}

/** One worker thread's share of the process's traffic. */
export interface WorkerStats {
  worker: number;
  connections: number;
  clients: number;
  messagesIn: number;
  messagesOut: number;
}

export interface SnapshotInput {
  reactors: readonly ReactorCounters[];
  protocol: ProtocolStats;
  clients: number;
  serverName: string;
  startedAtMs: number;
  nowMs?: number;
  /** Per-protocol traffic counters (ProtocolContext.traffic); absent: none. */
  traffic?: ReadonlyMap<string, ProtocolTrafficCount>;
  /** HTTP responses by status class (ProtocolContext.httpByClass); absent: none. */
  httpByClass?: ArrayLike<number>;
}

export function buildStatsSnapshot(input: SnapshotInput): StatsSnapshot {
  const nowMs = input.nowMs ?? Date.now();
  const p = input.protocol;
  let active = 0;
  let total = 0;
  let bytesIn = 0;
  let bytesOut = 0;
  let hw = 0;
  let paused = 0;
  let dropped = 0;
  let readCalls = 0;
  let writeCalls = 0;
  let acceptErrors = 0;
  let rejectedFull = 0;
  for (const r of input.reactors) {
    active += r.connectionsActive;
    total += r.connectionsTotal;
    bytesIn += r.bytesIn;
    bytesOut += r.bytesOut;
    hw += r.highWaterCrossings;
    paused += r.pausedReads;
    dropped += r.slowConsumersDropped;
    readCalls += r.readCalls;
    writeCalls += r.writeCalls;
    acceptErrors += r.acceptErrors;
    rejectedFull += r.rejectedFull;
  }
  const closeReasons = mergeCloseReasons(input.reactors, p.registeredCloseReasons);

  const byKind: KindCount[] = [];
  let msgIn = 0;
  let msgOut = 0;
  for (let k = 0; k < p.messagesIn.length; k++) {
    const i = p.messagesIn[k]!;
    const o = p.messagesOut[k]!;
    msgIn += i;
    msgOut += o;
    if (i !== 0 || o !== 0) {
      byKind.push({ kind: k, name: p.kindName(k) ?? `kind_${k}`, in: i, out: o });
    }
  }
  const byCode: ErrorCount[] = [];
  let errTotal = 0;
  for (let c = 0; c < p.errors.length; c++) {
    const n = p.errors[c]!;
    errTotal += n;
    if (n !== 0) byCode.push({ code: c, name: p.errorName(c) ?? `error_${c}`, count: n });
  }

  return {
    serverName: input.serverName,
    startedAtMs: input.startedAtMs,
    nowMs,
    uptimeSeconds: Math.max(0, Math.floor((nowMs - input.startedAtMs) / 1000)),
    statsEnabled: p.enabled,
    connections: { active, total, clients: input.clients },
    bytes: { in: bytesIn, out: bytesOut },
    messages: { in: msgIn, out: msgOut, byKind },
    errors: { total: errTotal, byCode },
    backpressure: { highWaterCrossings: hw, pausedReads: paused, slowConsumersDropped: dropped },
    closeReasons,
    io: { readCalls, writeCalls, acceptErrors, rejectedFull },
    latencyNs: p.latency.summary(),
    byProtocol: Object.fromEntries([...(input.traffic ?? [])].map(([name, t]) => [name, { bytesIn: t.bytesIn, bytesOut: t.bytesOut, messagesIn: t.messagesIn, messagesOut: t.messagesOut }])),
    httpByClass: Array.from({ length: 6 }, (_, k) => input.httpByClass?.[k] ?? 0),
  };
}

/**
 * Sum per reason over the union of the reactors' reasons, plus the registered ones. The
 * reactors' own reasons come first (the transport's, then any they gained), so the
 * order is stable whichever registered reason happened first.
 */
function mergeCloseReasons(reactors: readonly ReactorCounters[], registered: readonly string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of reactors) {
    for (const reason of Object.keys(r.closeReasons)) {
      if (registered.includes(reason)) continue;
      out[reason] = (out[reason] ?? 0) + r.closeReasons[reason]!;
    }
  }
  for (const reason of registered) {
    let n = 0;
    for (const r of reactors) n += r.closeReasons[reason] ?? 0;
    out[reason] = n;
  }
  return out;
}
