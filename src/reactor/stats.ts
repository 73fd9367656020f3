import { TRANSPORT_CLOSE_REASONS } from "../stream/stream.ts";

/**
 * Counters kept by one reactor (its driver counts the I/O fields). Plain number fields:
 * incrementing them costs a store, so they stay on in production. Protocol-level counters
 * (messages per kind, errors, latency) live in src/stats/.
 */
export class ReactorStats {
  connectionsActive = 0;
  connectionsTotal = 0;
  bytesIn = 0;
  bytesOut = 0;
  readCalls = 0;
  writeCalls = 0;
  /** write() pushed a stream's queue to or past its high-water mark. */
  highWaterCrossings = 0;
  /** Reading from a stream was paused because of its output queue. */
  pausedReads = 0;
  /** Streams closed because queued output passed maxBuffered. */
  slowConsumersDropped = 0;
  acceptErrors = 0;
  /** Connections accepted past maxConnections, told "server full" and closed. */
  rejectedFull = 0;
  /**
   * Closes per reason: the transport's reasons from the start (at 0), and any reason a
   * protocol passes (an open set: this layer knows no protocol) from its first use.
   */
  readonly closeReasons: Record<string, number> = Object.fromEntries(TRANSPORT_CLOSE_REASONS.map((r) => [r, 0]));
  readonly startedAt = Date.now();

  countClose(reason: string, n = 1): void {
    this.closeReasons[reason] = (this.closeReasons[reason] ?? 0) + n;
  }
}
