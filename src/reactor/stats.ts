import type { CloseReason } from "../types.ts";

/**
 * Counters kept by one reactor. Plain number fields: incrementing them costs a store,
 * so they stay on in production. Protocol-level counters (messages per type, errors per
 * code, latency histogram) live in src/stats/.
 */
export class ReactorStats {
  connectionsActive = 0;
  connectionsTotal = 0;
  bytesIn = 0;
  bytesOut = 0;
  readCalls = 0;
  writeCalls = 0;
  /** write() pushed a connection's queue to or past its high-water mark. */
  highWaterCrossings = 0;
  /** Reading from a connection was paused because of its output queue. */
  pausedReads = 0;
  /** Connections closed because queued output passed maxBuffered. */
  slowConsumersDropped = 0;
  acceptErrors = 0;
  /** Connections accepted past maxConnections, told "server full" and closed. */
  rejectedFull = 0;
  readonly closeReasons: Record<CloseReason, number> = emptyCloseReasons();
  readonly startedAt = Date.now();
}

/** A zeroed counter per close reason. */
export function emptyCloseReasons(): Record<CloseReason, number> {
  return {
    local: 0, end: 0, reset: 0, error: 0, "idle-timeout": 0, "frame-timeout": 0,
    "slow-consumer": 0, "server-full": 0, shutdown: 0, protocol: 0, unauthorized: 0, "rate-limited": 0,
  };
}
