// Public types of bunpoll's library API. Protocols are handler tables written
// against these interfaces; they never see a file descriptor.

import type { SharedBytes } from "./reactor/write-queue.ts";

/** Why a connection closed. Counted per reason in the reactor's stats. */
export type CloseReason =
  | "local" // close() called by the application
  | "end" // orderly close after the peer's FIN and our flush
  | "reset" // ECONNRESET / EPIPE / EPOLLERR / EPOLLHUP
  | "error" // a handler threw, or an unexpected errno
  | "idle-timeout"
  | "frame-timeout"
  | "slow-consumer" // queued output passed maxBuffered
  | "server-full"
  | "shutdown"
  | "protocol" // a protocol could not resynchronise (bad frame, oversize frame or line)
  | "unauthorized" // no valid auth token first
  | "rate-limited"; // kept sending above --rate-limit

/** Connection lifecycle. A 0-byte read moves open -> halfClosed (peer sent FIN). */
export const enum ConnState {
  Open = 0,
  HalfClosed = 1, // peer finished sending; we flush pending replies, then close
  Closing = 2, // end() called: flush pending output, then close
  Closed = 3,
}

export interface Connection<T = unknown> {
  /** Unique for the lifetime of the process (never reused). */
  readonly id: number;
  /** Per-connection user data, owned by the handler. */
  data: T;
  readonly state: ConnState;
  readonly remoteAddress: string;
  readonly remotePort: number;
  /** Bytes queued but not yet accepted by the kernel. */
  readonly bufferedAmount: number;
  /**
   * Queue bytes (or bytes[start, end)) for sending. The bytes are copied (the caller may reuse its buffer).
   * Writes made during one reactor turn are coalesced into one write(2) per connection.
   * Returns false when the queue is at or above the high-water mark: stop producing
   * until `drain` is called.
   */
  write(bytes: Uint8Array | string, start?: number, end?: number): boolean;
  /**
   * write() of a 4-byte big-endian `prefix` (a u32, or e.g. `type << 16 | length`) followed
   * by bytes[start, end): a header and its body in one call, as the framed and json
   * protocols answer.
   */
  writePrefixed(prefix: number, bytes: Uint8Array, start?: number, end?: number): boolean;
  /**
   * Like write(), but queues shared.bytes[start, end) (default: all shared.length bytes) by
   * reference instead of copying it, holding a reference (SharedBytes.retain) until sent:
   * for one large payload sent to many connections (a broadcast). Counts towards
   * bufferedAmount, the high-water mark and maxBuffered like a copy would.
   */
  writeShared(shared: SharedBytes, start?: number, end?: number): boolean;
  /**
   * Flush what is queued, send FIN, then close once the peer's FIN arrives (or after a
   * linger timeout). Until our FIN is sent, arriving data is still delivered and writes are
   * still taken, so a protocol can answer it (e.g. SHUTTING_DOWN during a graceful stop).
   * `reason` is what the close is counted and reported as (default "local").
   */
  end(reason?: CloseReason): void;
  /** Close at once, dropping queued output. */
  close(reason?: CloseReason): void;
  /** Stop / resume reading from this connection (inbound backpressure). */
  pause(): void;
  resume(): void;
}

/**
 * The handler table, in the shape Bun users know from Bun.listen.
 * `data` receives a view into the reactor's shared receive buffer: it is valid only for
 * the duration of the call. Copy (slice) what you keep.
 */
export interface Handler<T = unknown> {
  /** May return a promise: the reactor keeps its polls short while one is pending. */
  open?(conn: Connection<T>): void | Promise<void>;
  /** May return a promise; a rejection closes the connection like a throw. */
  data?(conn: Connection<T>, bytes: Uint8Array): void | Promise<void>;
  /** The output queue drained below the low-water mark after write() returned false. */
  drain?(conn: Connection<T>): void;
  /** The peer half-closed (sent FIN). Pending output is still flushed. */
  end?(conn: Connection<T>): void;
  close?(conn: Connection<T>, reason: CloseReason, error?: Error): void;
  /** A handler threw or a syscall failed; the connection is closed afterwards. */
  error?(conn: Connection<T>, error: Error): void;
  /** The idle timeout expired. If absent the connection is closed with "idle-timeout". */
  timeout?(conn: Connection<T>): void;
  /**
   * The server is at its connection limit: this connection was accepted only to be told so.
   * Write the protocol's "server full" message; the connection is ended right after.
   */
  full?(conn: Connection<T>): void;
  /**
   * True while a frame (or line) has started but not completed. Asked after each read; with
   * a frame timeout set, a frame that stays incomplete that long closes the connection
   * ("frame-timeout": the slowloris defence).
   */
  inFrame?(conn: Connection<T>): boolean;
}
