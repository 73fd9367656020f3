// What the client library sees of a protocol: a Wire turns requests into bytes and the
// byte stream from the server into replies (matched FIFO by the Client), incoming
// messages and notices. One Wire per connection; it holds the stream decoder's state.

import type { StatsReply } from "../protocols/codec/stats-reply.ts";

export type ClientProtocolName = "framed" | "json" | "line" | "echo" | "ws";
export const CLIENT_PROTOCOLS: readonly ClientProtocolName[] = ["framed", "json", "line", "echo", "ws"];

/** The server's default port per protocol (the same as src/server.ts uses). */
export const DEFAULT_PORTS: Readonly<Record<ClientProtocolName, number>> = {
  framed: 7000,
  json: 9999,
  line: 7070,
  echo: 5050,
  // The HTTP listener, which serves the WebSocket endpoints /ws/echo and /ws/chat.
  ws: 8080,
};

/** The WebSocket resource a ws client opens when none is given: the echo endpoint. */
export const DEFAULT_WS_PATH = "/ws/echo";
/** The WebSocket endpoint that joins the hub: text messages are chat, as line clients see it. */
export const WS_CHAT_PATH = "/ws/chat";

/** Operations a client can ask for. */
export type Op = "hello" | "ping" | "echo" | "broadcast" | "send" | "stats";

/** What each protocol can do; the rest are NotSupportedError. */
export const SUPPORTED_OPS: Readonly<Record<ClientProtocolName, readonly Op[]>> = {
  framed: ["hello", "ping", "echo", "broadcast", "send", "stats"],
  json: ["hello", "ping", "echo", "broadcast", "send", "stats"],
  // The line protocol has no replies at all: a line is a broadcast, and that is it.
  line: ["broadcast"],
  echo: ["echo"],
  // ping is a WebSocket ping frame; echo needs an echo endpoint (/ws/echo), broadcast the
  // chat (/ws/chat): the wire refuses the one its endpoint cannot do.
  ws: ["hello", "ping", "echo", "broadcast"],
};

/** A reply, tagged with the op it answers so that the Client can check the FIFO match. */
export type Reply =
  | { op: "hello"; clientId: number | null; label: string | null }
  | { op: "ping" }
  | { op: "echo"; bytes: Uint8Array | null; text: string | null }
  | { op: "broadcast"; recipients: number }
  | { op: "send" }
  | { op: "stats"; stats: ServerStats };

/** A broadcast or direct message from another client. */
export interface IncomingMessage {
  kind: "broadcast" | "direct";
  /** The sender's client id; null when the protocol did not say. */
  fromId: number | null;
  /** How to name the sender: json's "ip:port" label, otherwise the id as text. */
  from: string;
  /** The content as text (UTF-8; invalid bytes become U+FFFD). */
  text: string;
  /** The content as bytes (json: the UTF-8 of `text`). */
  payload: Uint8Array;
  /** json only: the `content` value as sent (may be any JSON value). */
  content?: unknown;
}

/** Something the server said that answers no request (line `ERR`, an unsolicited error). */
export interface ServerNotice {
  code: string;
  message: string;
}

/**
 * Server statistics, one shape whichever protocol fetched them: the framed STATS_REPLY's
 * counters (json `server_stats` is mapped onto them), tables by name, and what only one
 * protocol carries.
 */
export interface ServerStats extends Omit<StatsReply, "layoutVersion" | "kinds" | "errors"> {
  protocol: "framed" | "json";
  serverName: string | null;
  kinds: { name: string; in: number; out: number }[];
  errors: { name: string; count: number }[];
  /** json only. */
  closeReasons: Record<string, number> | null;
}

/** Where a Wire delivers what it decodes. */
export interface WireSink {
  reply(reply: Reply): void;
  /** An error reply: answers the oldest pending request, or is a notice if none. */
  error(code: string, message: string): void;
  message(m: IncomingMessage): void;
  notice(n: ServerNotice): void;
  /** The stream cannot be understood: the Client closes the connection. */
  mismatch(detail: string): void;
}

/**
 * What a wire that speaks for itself on the connection also needs (WebSocket: it answers
 * pings and close frames, and fails with its own errors). The Client gives every wire this.
 */
export interface TransportSink extends WireSink {
  /** Writes protocol bytes that answer no request (a pong, a close frame). */
  write(bytes: Uint8Array): void;
  /** The protocol's own close is complete (a close handshake): end the connection. */
  end(): void;
  /**
   * The connection cannot go on: fail what waits with `error` and close, after sending
   * `farewell` (a close frame naming the problem) when given.
   */
  fail(error: Error, farewell?: Uint8Array): void;
}

export interface Wire {
  readonly protocol: ClientProtocolName;
  /** Names for the demo's transcript: [request, reply] per op. */
  readonly names: Readonly<Record<Op, readonly [string, string]>>;
  push(bytes: Uint8Array): void;
  /** The server half-closed: a last unterminated line is still a line (line protocol). */
  finish(): void;
  /** True while part of a frame or line is buffered. */
  readonly inFrame: boolean;
  // Request encoders. Each returns the bytes to write, and `expectsReply` says whether the
  // Client must wait for a reply (the line protocol acknowledges nothing).
  hello(token: string | undefined): Encoded | null;
  ping(payload: Uint8Array): Encoded;
  echo(payload: Uint8Array | string): Encoded;
  broadcast(payload: Uint8Array | string): Encoded;
  send(to: number | string, payload: Uint8Array | string): Encoded;
  stats(): Encoded;
  /**
   * Called by the Client each time a request is written. Encoding is separate from sending
   * so that an encoded request can be written many times (the bench does).
   */
  requestWritten?(op: Op, encoded: Encoded): void;
  /**
   * Called by the Client just before each write of an encoded request, which it may rewrite
   * in place: a WebSocket wire draws a fresh masking key for every frame, even when the bench
   * writes one encoded request many times.
   */
  beforeWrite?(op: Op, encoded: Encoded): void;
  /**
   * Bytes that start an orderly close (a WebSocket close frame), or null. The Client writes
   * them, then waits for the wire's `end()` (the peer's answer), up to a bound, before ending
   * the connection.
   */
  farewell?(): Uint8Array | null;
  /** How the peer itself closed, when the protocol says (a WebSocket close frame's code and reason). */
  readonly peerClose?: string | null;
}

export interface Encoded {
  bytes: Uint8Array;
  expectsReply: boolean;
}

export const utf8 = new TextEncoder();
/** Lossy: content from other clients is shown, never rejected. */
export const utf8Lossy = new TextDecoder("utf-8");
