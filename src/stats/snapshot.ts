// One plain-object view of everything the server counts: the reactors' counters (summed
// when there are several) plus the protocol counters. STATS_REPLY, the json
// `server_stats` reply and the `--stats-interval` line are all built from it.

import type { ReactorStats } from "../reactor/stats.ts";
import type { CloseReason } from "../stream/stream.ts";
import { ERROR_NAMES } from "../protocols/codec/errors.ts";
import { KIND_NAMES, KIND_WIRE_CODES } from "../protocols/codec/kinds.ts";
import type { LatencySummary } from "./histogram.ts";
import type { ProtocolStats } from "./protocol-stats.ts";

/** The ReactorStats fields a snapshot reads (a plain object will do in tests). */
export type ReactorCounters = Pick<
  ReactorStats,
  | "connectionsActive"
  | "connectionsTotal"
  | "bytesIn"
  | "bytesOut"
  | "highWaterCrossings"
  | "pausedReads"
  | "slowConsumersDropped"
  | "closeReasons"
  | "readCalls"
  | "writeCalls"
  | "acceptErrors"
  | "rejectedFull"
>;

export interface KindCount {
  /** Dense kind index (see codec/kinds.ts). */
  kind: number;
  /** Wire code in STATS_REPLY (the framed type code where one exists). */
  code: number;
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
  closeReasons: Record<string, number>;
  /** Syscall and accept counters: readCalls / messages.in is reads per message. */
  io: { readCalls: number; writeCalls: number; acceptErrors: number; rejectedFull: number };
  /** Per-message processing time, nanoseconds. */
  latencyNs: LatencySummary;
}

export interface SnapshotInput {
  reactors: readonly ReactorCounters[];
  protocol: ProtocolStats;
  clients: number;
  serverName: string;
  startedAtMs: number;
  nowMs?: number;
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
  const closeReasons: Record<string, number> = {};
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
    for (const k in r.closeReasons) {
      const reason = k as CloseReason;
      closeReasons[reason] = (closeReasons[reason] ?? 0) + r.closeReasons[reason];
    }
  }

  const byKind: KindCount[] = [];
  let msgIn = 0;
  let msgOut = 0;
  for (let k = 0; k < p.messagesIn.length; k++) {
    const i = p.messagesIn[k]!;
    const o = p.messagesOut[k]!;
    msgIn += i;
    msgOut += o;
    if (i !== 0 || o !== 0) {
      byKind.push({ kind: k, code: KIND_WIRE_CODES[k]!, name: KIND_NAMES[k]!, in: i, out: o });
    }
  }
  const byCode: ErrorCount[] = [];
  let errTotal = 0;
  for (let c = 1; c < p.errors.length; c++) {
    const n = p.errors[c]!;
    errTotal += n;
    if (n !== 0) byCode.push({ code: c, name: ERROR_NAMES[c]!, count: n });
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
  };
}
