// What every protocol handler shares within one process: the hub (so a broadcast reaches
// clients of every protocol), the stats, the options, and the lifecycle flags. Create one
// per process and pass it to each protocol factory; several listeners share it.

import { Hub } from "../hub.ts";
import type { ReactorStats } from "../reactor/stats.ts";
import type { LatencyHistogram } from "../stats/histogram.ts";
import { buildStatsSnapshot, type ProtocolTrafficCount, type ReactorCounters, type StatsSnapshot } from "../stats/snapshot.ts";
import { ProtocolStats, type ProtocolStatsOptions } from "../stats/protocol-stats.ts";
import type { CloseReason, Connection, Handler } from "../stream/stream.ts";

/** One protocol's traffic: its listeners' bytes, and messages where the protocol counts them (http, ws). */
export type ProtocolTraffic = ProtocolTrafficCount;
import { registerErrors } from "./codec/errors.ts";
import { registerKinds } from "./codec/kinds.ts";
import type { RateLimitOptions } from "./guards.ts";
import type { ProtocolName } from "./registry.ts";


export interface ProtocolOptions {
  /**
   * Largest frame body (`--max-frame`). Unset: the protocol's default, framed 65535 (a
   * u16 length cannot say more, so larger values are capped there), json 1 MiB.
   */
  maxFrame?: number;
  /** Largest line for the line protocol (`--max-line`), default 64 KiB. */
  maxLine: number;
  /** When set, clients must authenticate first (framed HELLO, json auth, line first line). */
  authToken?: string;
  /** Per-connection token bucket; unset = unlimited. */
  rateLimit?: RateLimitOptions;
  /** Shown as json `echoed_by` and in the stats line. */
  serverName: string;
}

export const DEFAULT_MAX_LINE = 64 * 1024;

/** Stats of the other threads of this process (src/workers/stats-slot.ts): merged into this one's. */
export interface StatsPeers {
  merge(local: StatsSnapshot, latency: LatencyHistogram): { snapshot: StatsSnapshot; latency: LatencyHistogram };
}

export interface ProtocolContextInit {
  options?: Partial<ProtocolOptions>;
  hub?: Hub;
  stats?: ProtocolStats | ProtocolStatsOptions;
  /** Wall clock in ms (default Date.now); injectable for tests. */
  wallClock?: () => number;
}

const utf8 = new TextEncoder();

export class ProtocolContext {
  readonly hub: Hub;
  readonly stats: ProtocolStats;
  readonly options: Readonly<ProtocolOptions>;
  /** The auth token as bytes (compared against presented bytes), or null when auth is off. */
  readonly authToken: Uint8Array | null;
  /**
   * Reactor counters included in STATS replies. The server pushes each reactor's
   * ReactorStats here when it starts one.
   */
  readonly reactors: ReactorCounters[] = [];
  /**
   * Set by the server when graceful shutdown begins: every new request is answered with
   * SHUTTING_DOWN (connections stay open until the server closes them).
   */
  shuttingDown = false;
  readonly startedAtMs: number;
  readonly wallClock: () => number;
  private isoMs = -1;
  private iso = "";

  constructor(init: ProtocolContextInit = {}) {
    this.hub = init.hub ?? new Hub();
    this.stats = init.stats instanceof ProtocolStats ? init.stats : new ProtocolStats(init.stats);
    // The protocols count with Kind and ErrorCode values as indexes: register them first.
    registerKinds(this.stats);
    registerErrors(this.stats);
    const o = init.options ?? {};
    this.options = {
      maxFrame: o.maxFrame,
      maxLine: o.maxLine ?? DEFAULT_MAX_LINE,
      authToken: o.authToken,
      rateLimit: o.rateLimit,
      serverName: o.serverName ?? "bunpoll",
    };
    this.authToken = o.authToken !== undefined && o.authToken !== "" ? utf8.encode(o.authToken) : null;
    this.wallClock = init.wallClock ?? Date.now;
    this.startedAtMs = this.wallClock();
  }

  /** HTTP responses by status class of this context's HTTP apps (they count into it). */
  readonly httpByClass = new Float64Array(6);
  /** Per protocol name, in the order first asked for (/metrics shows them by protocol). */
  readonly traffic = new Map<string, ProtocolTraffic>();

  /** The counters of `protocol`'s listeners (created on first use). */
  trafficOf(protocol: string): ProtocolTraffic {
    let t = this.traffic.get(protocol);
    if (t === undefined) this.traffic.set(protocol, (t = { bytesIn: 0, bytesOut: 0, messagesIn: 0, messagesOut: 0 }));
    return t;
  }

  addReactor(stats: ReactorStats | ReactorCounters): void {
    this.reactors.push(stats);
  }

  /** Monotonic clock, ns (the stats clock). */
  now(): number {
    return this.stats.now();
  }

  /** ISO-8601 wall-clock time, formatted at most once per millisecond. */
  isoNow(): string {
    const ms = this.wallClock();
    if (ms !== this.isoMs) {
      this.isoMs = ms;
      this.iso = new Date(ms).toISOString();
    }
    return this.iso;
  }

  /** Set in each worker thread: STATS and /metrics then cover the whole process. */
  peers: StatsPeers | null = null;

  /** The process's stats (every worker's when there are several). */
  snapshot(): StatsSnapshot {
    return this.peers === null ? this.localSnapshot() : this.peers.merge(this.localSnapshot(), this.stats.latency).snapshot;
  }

  /** The process's snapshot and the latency histogram it summarizes (for /metrics). */
  processStats(): { snapshot: StatsSnapshot; latency: LatencyHistogram } {
    const local = this.localSnapshot();
    return this.peers === null ? { snapshot: local, latency: this.stats.latency } : this.peers.merge(local, this.stats.latency);
  }

  /** This thread's stats only. */
  localSnapshot(): StatsSnapshot {
    return buildStatsSnapshot({
      reactors: this.reactors,
      protocol: this.stats,
      clients: this.hub.size,
      serverName: this.options.serverName,
      startedAtMs: this.startedAtMs,
      nowMs: this.wallClock(),
      traffic: this.traffic,
      httpByClass: this.httpByClass,
    });
  }
}

export function createProtocolContext(init: ProtocolContextInit = {}): ProtocolContext {
  return new ProtocolContext(init);
}

/**
 * A protocol's handler table, with the optional hooks it always implements made required.
 * The methods are plain closures (no `this`), so they work however the reactor calls them.
 */
export interface ProtocolHandler<S> extends Handler<S> {
  readonly protocol: ProtocolName;
  open(conn: Connection<S>): void;
  data(conn: Connection<S>, bytes: Uint8Array): void;
  close(conn: Connection<S>, reason: CloseReason, error?: Error): void;
  /** At the connection limit: write SERVER_FULL in this protocol's format (open has not run). */
  full(conn: Connection<S>): void;
  /** True while a frame or line is partially received: the frame-timeout hook. */
  inFrame(conn: Connection<S>): boolean;
}
