// The json protocol: u32 big-endian length, then a UTF-8 JSON object with a `type` field.
// See docs/PROTOCOL.md. Errors answer the offending message and keep the connection
// open (the length prefix keeps the stream in sync), except a length over max-frame,
// which is answered and then closed, as the spec asks.

import { SendResult, type HubEncoder, type HubMember, type HubMessage } from "../hub.ts";
import type { StatsSnapshot } from "../stats/snapshot.ts";
import type { Connection } from "../stream/stream.ts";
import { ERROR_MESSAGES, ErrorCode, errorName } from "./codec/errors.ts";
import { FrameDecoder, HeaderLayout, type FrameSink } from "./codec/frame-decoder.ts";
import { JSON_DEFAULT_MAX_FRAME, JsonFrameWriter, parseJsonBody, type JsonMessage } from "./codec/json.ts";
import { Kind } from "./codec/kinds.ts";
import type { ProtocolContext, ProtocolHandler } from "./context.ts";
import { type TokenBucket, tokenMatches } from "./guards.ts";
import { SessionProtocol, sessionHandler } from "./session.ts";

const utf8 = new TextEncoder();

/** Counter kind of an inbound json `type`. */
export function jsonKind(type: string): number {
  switch (type) {
    case "ping":
      return Kind.PING;
    case "echo":
      return Kind.ECHO;
    case "broadcast":
      return Kind.BROADCAST;
    case "send":
      return Kind.SEND_TO;
    case "get_stats":
      return Kind.STATS;
    case "auth":
      return Kind.AUTH;
    default:
      return Kind.UNKNOWN;
  }
}

export class JsonSession implements FrameSink {
  readonly decoder: FrameDecoder;
  authed: boolean;
  constructor(
    private readonly proto: JsonProtocol,
    readonly conn: Connection<JsonSession>,
    readonly member: HubMember,
    maxFrame: number,
    authed: boolean,
    readonly bucket: TokenBucket | null,
  ) {
    this.decoder = new FrameDecoder(this, maxFrame, HeaderLayout.Length32);
    this.authed = authed;
  }
  frame(_type: number, buf: Uint8Array, offset: number, length: number): void {
    this.proto.onMessage(this, buf, offset, length);
  }
  oversize(_type: number, length: number): void {
    this.proto.onOversize(this, length);
  }
}

/** Renders other clients' messages as json `broadcast` / `message` objects. */
export class JsonHubEncoder implements HubEncoder {
  private readonly writer = new JsonFrameWriter();
  constructor(private readonly ctx: ProtocolContext) {}
  get out(): Uint8Array {
    return this.writer.out;
  }
  encodeBroadcast(msg: HubMessage): number {
    const from = msg.from!;
    return this.writer.encode({
      type: "broadcast",
      content: msg.jsonContent(),
      from: from.label,
      from_id: from.id,
      timestamp: this.ctx.isoNow(),
    });
  }
  encodeDirect(msg: HubMessage): number {
    const from = msg.from!;
    return this.writer.encode({
      type: "message",
      from: from.label,
      from_id: from.id,
      content: msg.jsonContent(),
      timestamp: this.ctx.isoNow(),
    });
  }
}

/** The json `server_stats` reply for a snapshot. */
export function serverStatsMessage(s: StatsSnapshot): Record<string, unknown> {
  const messagesIn: Record<string, number> = {};
  const messagesOut: Record<string, number> = {};
  for (const k of s.messages.byKind) {
    if (k.in !== 0) messagesIn[k.name] = k.in;
    if (k.out !== 0) messagesOut[k.name] = k.out;
  }
  const errors: Record<string, number> = {};
  for (const e of s.errors.byCode) errors[e.name] = e.count;
  const l = s.latencyNs;
  return {
    type: "server_stats",
    connected_clients: s.connections.clients,
    uptime_seconds: s.uptimeSeconds,
    total_messages: s.messages.in,
    server_start_time: new Date(s.startedAtMs).toISOString(),
    current_time: new Date(s.nowMs).toISOString(),
    server_name: s.serverName,
    stats_enabled: s.statsEnabled,
    connections_active: s.connections.active,
    connections_total: s.connections.total,
    bytes_in: s.bytes.in,
    bytes_out: s.bytes.out,
    total_messages_out: s.messages.out,
    messages_in: messagesIn,
    messages_out: messagesOut,
    errors_total: s.errors.total,
    errors,
    backpressure: {
      high_water_crossings: s.backpressure.highWaterCrossings,
      paused_reads: s.backpressure.pausedReads,
      slow_consumers_dropped: s.backpressure.slowConsumersDropped,
    },
    close_reasons: s.closeReasons,
    read_calls: s.io.readCalls,
    write_calls: s.io.writeCalls,
    accept_errors: s.io.acceptErrors,
    rejected_full: s.io.rejectedFull,
    latency_ns: {
      count: l.count,
      min: Math.round(l.min),
      mean: Math.round(l.mean),
      p50: Math.round(l.p50),
      p90: Math.round(l.p90),
      p99: Math.round(l.p99),
      p999: Math.round(l.p999),
      max: Math.round(l.max),
    },
    ...(s.workers === undefined ? {} : {
      workers: s.workers.map((w) => ({ worker: w.worker, connections: w.connections, clients: w.clients, messages_in: w.messagesIn, messages_out: w.messagesOut })),
    }),
  };
}

class JsonProtocol extends SessionProtocol<JsonSession> {
  readonly maxFrame: number;
  private readonly writer = new JsonFrameWriter();

  constructor(ctx: ProtocolContext) {
    super(ctx, "json", new JsonHubEncoder(ctx));
    this.maxFrame = ctx.options.maxFrame ?? JSON_DEFAULT_MAX_FRAME;
  }

  protected newSession(conn: Connection<JsonSession>, member: HubMember, authed: boolean, bucket: TokenBucket | null): JsonSession {
    return new JsonSession(this, conn, member, this.maxFrame, authed, bucket);
  }

  onOversize(s: JsonSession, length: number): void {
    this.ctx.stats.countIn(Kind.UNKNOWN);
    this.fail(s, ErrorCode.FRAME_TOO_LARGE, `declared length ${length} is over the limit of ${this.maxFrame} bytes`);
    this.ctx.stats.tick();
  }

  onMessage(s: JsonSession, buf: Uint8Array, off: number, len: number): void {
    const ctx = this.ctx;
    const r = parseJsonBody(buf, off, len);
    const type = r.ok ? r.message.type : "";
    ctx.stats.countIn(r.ok ? jsonKind(type) : Kind.UNKNOWN);
    if (this.admit(s, type)) {
      if (r.ok) this.dispatch(s, r.message);
      else this.sendError(s.conn, r.code, r.detail);
    }
    ctx.stats.tick();
  }

  /** Shutdown, rate limit and auth gates. False: already answered. */
  private admit(s: JsonSession, type: string): boolean {
    if (!this.admitCommon(s)) return false;
    if (!s.authed && type !== "auth") {
      this.fail(s, ErrorCode.UNAUTHORIZED, "authenticate first: {\"type\":\"auth\",\"token\":...}");
      return false;
    }
    return true;
  }

  private dispatch(s: JsonSession, m: JsonMessage): void {
    const ctx = this.ctx;
    switch (m.type) {
      case "ping":
        this.send(s.conn, Kind.PONG, {
          type: "pong",
          ping_timestamp: m.timestamp ?? null,
          pong_timestamp: ctx.isoNow(),
          client_id: s.member.label,
        });
        return;
      case "echo":
        this.send(s.conn, Kind.ECHO_REPLY, {
          type: "echo_response",
          content: m.content ?? null,
          timestamp: ctx.isoNow(),
          echoed_by: ctx.options.serverName,
        });
        return;
      case "broadcast": {
        if (m.content === undefined) {
          this.sendError(s.conn, ErrorCode.BAD_BODY, "broadcast needs a \"content\" field");
          return;
        }
        const n = ctx.hub.broadcastValue(s.member, m.content);
        ctx.stats.countOut(Kind.BROADCAST_MSG, n);
        this.send(s.conn, Kind.BROADCAST_ACK, { type: "broadcast_sent", recipients: n, timestamp: ctx.isoNow() });
        return;
      }
      case "send": {
        if (m.content === undefined || (typeof m.to !== "number" && typeof m.to !== "string")) {
          this.sendError(s.conn, ErrorCode.BAD_BODY, "send needs \"to\" (id or \"ip:port\") and \"content\"");
          return;
        }
        const target = ctx.hub.resolve(m.to);
        // Not here: perhaps a client of another worker, by id (labels resolve locally).
        const r = target !== undefined ? ctx.hub.sendValue(s.member, target, m.content) : ctx.hub.sendRemoteValue(s.member, ctx.hub.remoteTarget(m.to), m.content);
        if (r !== SendResult.Ok) {
          if (r === SendResult.TooLarge) this.sendError(s.conn, ErrorCode.FRAME_TOO_LARGE, "the recipient's protocol cannot carry a message this large");
          else this.sendError(s.conn, ErrorCode.NO_SUCH_CLIENT, `no client ${JSON.stringify(m.to)}`);
          return;
        }
        ctx.stats.countOut(Kind.DIRECT_MSG);
        this.send(s.conn, Kind.SEND_ACK, { type: "sent", to: m.to });
        return;
      }
      case "get_stats":
        this.send(s.conn, Kind.STATS_REPLY, serverStatsMessage(ctx.snapshot()));
        return;
      case "auth":
        this.auth(s, m);
        return;
      default:
        this.sendError(s.conn, ErrorCode.UNKNOWN_TYPE, `unknown type ${JSON.stringify(m.type)}`);
    }
  }

  private auth(s: JsonSession, m: JsonMessage): void {
    const expected = this.ctx.authToken;
    if (!s.authed && expected !== null) {
      const presented = typeof m.token === "string" ? utf8.encode(m.token) : null;
      if (presented === null || !tokenMatches(presented, 0, presented.length, expected)) {
        this.fail(s, ErrorCode.UNAUTHORIZED);
        return;
      }
      s.authed = true;
      this.ctx.hub.join(s.member);
    }
    this.send(s.conn, Kind.AUTH_OK, { type: "auth_ok", client_id: s.member.label, id: s.member.id });
  }

  private send(conn: Connection<any>, kind: number, value: object): void {
    const n = this.writer.encode(value);
    conn.write(this.writer.out, 0, n);
    this.ctx.stats.countOut(kind);
  }

  override sendError(conn: Connection<any>, code: number, message?: string): void {
    this.send(conn, Kind.ERROR, { type: "error", error: errorName(code), message: message ?? ERROR_MESSAGES[code] });
    this.ctx.stats.countError(code);
  }
}

/** Build the json protocol's handler table. */
export function createJsonProtocol(ctx: ProtocolContext): ProtocolHandler<JsonSession> {
  return sessionHandler("json", new JsonProtocol(ctx));
}
