// What protocols see: a Stream and the Handler table it calls. Protocols are written
// against these interfaces and never see a file descriptor. A TCP stream (tcp-stream.ts)
// implements Stream over a driver; a wrapping stream (wrap.ts: TLS, a WebSocket message
// stream) implements it over another stream, so a protocol runs over either unchanged.

import type { SharedBytes } from "../buffers/shared-bytes.ts";
import type { SharedFile } from "../buffers/shared-file.ts";

/** Bytes on the wire, counted by the streams that share this object (per protocol, say). */
export interface TrafficCounters {
  bytesIn: number;
  bytesOut: number;
}

/**
 * Why a stream closed, counted per reason in the reactor's stats. The transport's own
 * reasons are listed; a protocol passes its own (e.g. "protocol", "unauthorized") to
 * end() or close(), and the stats count any string.
 */
export type TransportCloseReason =
  | "local" // close() called by the application
  | "end" // orderly close after the peer's FIN and our flush
  | "reset" // ECONNRESET / EPIPE / EPOLLERR / EPOLLHUP
  | "error" // a handler threw, or an unexpected errno
  | "idle-timeout"
  | "frame-timeout" // a started frame stayed incomplete (Handler.inFrame)
  | "slow-consumer" // queued output passed maxBuffered
  | "server-full"
  | "shutdown";
export type CloseReason = TransportCloseReason | (string & {});

export const TRANSPORT_CLOSE_REASONS: readonly TransportCloseReason[] = [
  "local", "end", "reset", "error", "idle-timeout", "frame-timeout", "slow-consumer", "server-full", "shutdown",
];

/**
 * A stream's lifecycle: one explicit state, changed by driver events and by the stream's
 * own end() and close() only. docs/ARCHITECTURE.md draws it.
 *
 *   Connecting --connected--> Open
 *   Open --peer FIN--> HalfClosed --flushed (or end())--> Closing --flushed--> Closed
 *   Open --end()--> Flushing --flushed: shutdown(WR)--> Lingering --peer FIN / linger--> Closed
 *   Open --end(), nothing queued--> Lingering
 *   Flushing --peer FIN--> Closing
 *   any --close() / reset / error / timeout / slow consumer--> Closed
 */
export const enum StreamState {
  /** A non-blocking connect is in flight; writes are queued. */
  Connecting = 0,
  /** Both directions open. */
  Open = 1,
  /** The peer sent FIN; we may still write. Closes once output is flushed (or, with allowHalfOpen, at end()). */
  HalfClosed = 2,
  /** end() called: queued output is being sent; data still arrives and writes are taken. */
  Flushing = 3,
  /** Both sides are done: flush what is queued, then close (no FIN wait: the peer already sent its). */
  Closing = 4,
  /** Our FIN is sent: reading and discarding until the peer's FIN or the linger timeout. */
  Lingering = 5,
  Closed = 6,
}

/** Open or HalfClosed: the stream takes writes and is not ending (a hub recipient). */
export function isActive(state: StreamState): boolean {
  return state === StreamState.Open || state === StreamState.HalfClosed;
}

export interface Stream<T = unknown> {
  /**
   * Unique in the process for as long as the stream is open, and the same id in logs,
   * STATS and the hub. Its high bits are the index of the reactor that owns it (see
   * Reactor, "ids").
   */
  readonly id: number;
  /** Per-stream user data, owned by the handler. */
  data: T;
  readonly state: StreamState;
  readonly remoteAddress: string;
  readonly remotePort: number;
  /** Bytes queued but not yet accepted by the kernel. */
  readonly bufferedAmount: number;
  /** The handler the stream calls; setHandler() replaces it. */
  readonly handler: Handler<T>;
  /**
   * Queue bytes (or bytes[start, end)) for sending. The bytes are copied (the caller may
   * reuse its buffer). Writes made during one reactor turn leave in one send(2). Returns
   * false when the queue is at or above the high-water mark: stop producing until `drain`.
   */
  write(bytes: Uint8Array | string, start?: number, end?: number): boolean;
  /** write() of a 4-byte big-endian `prefix` (a u32) followed by bytes[start, end), in one call. */
  writePrefixed(prefix: number, bytes: Uint8Array, start?: number, end?: number): boolean;
  /**
   * Like write(), but queues shared.bytes[start, end) by reference instead of copying it,
   * holding a reference until sent: one large payload for many streams (a broadcast).
   * Counts towards bufferedAmount, the high-water mark and maxBuffered like a copy.
   */
  writeShared(shared: SharedBytes, start?: number, end?: number): boolean;
  /**
   * Queues file[start, end) (default: the whole file, as fstat sized it at open), in order
   * with every other write, holding a reference to the file until sent. A TCP stream sends
   * it with sendfile(2), never through memory; a wrapping stream (TLS) reads it and
   * encodes it like a write. Counts towards bufferedAmount and the high-water mark.
   */
  writeFile(file: SharedFile, start?: number, end?: number): boolean;
  /**
   * Flush what is queued, send FIN, then close once the peer's FIN arrives (or after a
   * linger timeout). Until our FIN is sent, arriving data is still delivered and writes are
   * still taken. `reason` is what the close is counted and reported as (default "local").
   */
  end(reason?: CloseReason): void;
  /** Close at once, dropping queued output. */
  close(reason?: CloseReason, error?: Error): void;
  /** Stop / resume reading (inbound backpressure). */
  pause(): void;
  resume(): void;
  /**
   * Replaces the handler in place, e.g. HTTP handing a connection to WebSocket after an
   * Upgrade. The new handler's `open` runs, then `pending` (bytes already read that belong
   * to it, valid during this call only) goes to its `data`. The old handler gets no close.
   */
  setHandler<U>(handler: Handler<U>, pending?: Uint8Array): Stream<U>;
  /** Changes this stream's idle timeout (ms, 0: none), e.g. when HTTP hands it to WebSocket. */
  setIdleTimeout(ms: number): void;
  /**
   * Raises (or lowers) the queued bytes past which this stream is closed as a slow consumer,
   * e.g. for a WebSocket whose backpressureLimit is larger than the listener's maxBuffered.
   * Never below the high-water mark (taken as that).
   */
  setMaxBuffered(bytes: number): void;
  /**
   * Counts this stream's bytes from now on into `traffic` (e.g. as WebSocket after an Upgrade).
   * `carried`: bytes already received and counted where they were read that belong to the new
   * counters (the frames read behind the Upgrade request): moved over. Bytes queued and not yet
   * sent stay with the old counters.
   */
  setTraffic(traffic: TrafficCounters | null, carried?: number): void;
}

/** @deprecated The name before streams: a Connection is a Stream. */
export type Connection<T = unknown> = Stream<T>;

/**
 * The handler table, in the shape Bun users know from Bun.listen's `socket`. `data`
 * receives a view valid only for the duration of the call: copy (slice) what you keep.
 */
export interface Handler<T = unknown> {
  /** May return a promise: the reactor keeps its polls short while one is pending. */
  open?(stream: Stream<T>): void | Promise<void>;
  /** May return a promise; a rejection closes the stream like a throw. */
  data?(stream: Stream<T>, bytes: Uint8Array): void | Promise<void>;
  /** The output queue drained below the low-water mark after write() returned false. */
  drain?(stream: Stream<T>): void;
  /** The peer half-closed (sent FIN). Pending output is still flushed. */
  end?(stream: Stream<T>): void;
  close?(stream: Stream<T>, reason: CloseReason, error?: Error): void;
  /** A handler threw or a syscall failed; the stream is closed afterwards. */
  error?(stream: Stream<T>, error: Error): void;
  /** The idle timeout expired. If absent the stream is closed with "idle-timeout". */
  timeout?(stream: Stream<T>): void;
  /**
   * The server is at its connection limit: this stream was accepted only to be told so.
   * Write the protocol's "server full" message; the stream is ended right after.
   */
  full?(stream: Stream<T>): void;
  /**
   * True while a frame (or line) has started but not completed. Asked after each read; with
   * a frame timeout set, a frame that stays incomplete that long closes the stream.
   */
  inFrame?(stream: Stream<T>): boolean;
  /**
   * Stop reading while a promise returned by `data` is pending (default false: reading goes
   * on, e.g. an HTTP handler awaiting the body it is reading). For inbound backpressure: a
   * WebSocket server whose async message handler must not be flooded.
   */
  readonly pauseWhileAsync?: boolean;
  /**
   * Keep a stream open after the peer's FIN until the handler calls end() (default false:
   * close once the replies are flushed). For a protocol whose replies are still being
   * produced when the peer half-closes (async handlers).
   */
  readonly allowHalfOpen?: boolean;
  /**
   * A graceful stop begins (reactor.stop): say goodbye in the protocol's terms (a WebSocket's
   * close 1001) before the stream drains and ends. Requests already read are still answered.
   */
  shutdown?(stream: Stream<T>): void;
  /**
   * Called right before the stream sends its coalesced output (TcpStream.requestFlush): a
   * wrapping stream (TLS) encodes what it held back this turn, so it leaves in one send.
   */
  flush?(stream: Stream<T>): void;
}
