// The json protocol, client side: u32 length, then a JSON object with a `type` (codec/json.ts).

import { encodeJsonFrame, JSON_DEFAULT_MAX_FRAME, JsonStreamDecoder, type JsonMessage } from "../protocols/codec/json.ts";
import { utf8, utf8Lossy, type Encoded, type Op, type ServerStats, type Wire, type WireSink } from "./protocol.ts";

/** Types only a client sends: seeing one come back means the peer is not a json server. */
const REQUEST_TYPES = new Set(["auth", "ping", "echo", "send", "get_stats"]);

function req(value: object): Encoded {
  return { bytes: encodeJsonFrame(value), expectsReply: true };
}

function textOf(payload: Uint8Array | string): string {
  return typeof payload === "string" ? payload : utf8Lossy.decode(payload);
}

/** A json `content` as text: strings as they are, anything else as its JSON. */
function contentText(v: unknown): string {
  return typeof v === "string" ? v : v === undefined ? "" : JSON.stringify(v);
}

const num = (v: unknown): number => (typeof v === "number" && Number.isFinite(v) ? v : 0);

export class JsonWire implements Wire {
  readonly protocol = "json";
  readonly names: Record<Op, readonly [string, string]> = {
    hello: ["auth", "auth_ok"],
    ping: ["ping", "pong"],
    echo: ["echo", "echo_response"],
    broadcast: ["broadcast", "broadcast_sent"],
    send: ["send", "sent"],
    stats: ["get_stats", "server_stats"],
  };
  private readonly decoder: JsonStreamDecoder;

  constructor(private readonly sink: WireSink) {
    this.decoder = new JsonStreamDecoder(
      (m) => this.onMessage(m),
      (_code, detail) => sink.mismatch(`unreadable json message from the server: ${detail}`),
      JSON_DEFAULT_MAX_FRAME,
      (length) => sink.mismatch(`json frame of ${length} bytes from the server is over the ${JSON_DEFAULT_MAX_FRAME}-byte limit; is it speaking the json protocol?`),
    );
  }

  get inFrame(): boolean {
    return this.decoder.inFrame;
  }

  push(bytes: Uint8Array): void {
    this.decoder.push(bytes);
  }

  finish(): void {}

  /**
   * `auth` is sent even without a token: a server without auth answers auth_ok too, and
   * that reply is the only way a json client learns its id.
   */
  hello(token: string | undefined): Encoded {
    return req(token === undefined ? { type: "auth" } : { type: "auth", token });
  }

  ping(_payload: Uint8Array): Encoded {
    return req({ type: "ping", timestamp: new Date().toISOString() });
  }

  echo(payload: Uint8Array | string): Encoded {
    return req({ type: "echo", content: textOf(payload) });
  }

  broadcast(payload: Uint8Array | string): Encoded {
    return req({ type: "broadcast", content: textOf(payload) });
  }

  send(to: number | string, payload: Uint8Array | string): Encoded {
    // A decimal string is sent as a number: both name the same client, and a number is
    // what a framed-minded caller means.
    const target = typeof to === "string" && /^\d+$/.test(to) ? Number(to) : to;
    return req({ type: "send", to: target, content: textOf(payload) });
  }

  stats(): Encoded {
    return req({ type: "get_stats" });
  }

  private onMessage(m: JsonMessage): void {
    const sink = this.sink;
    switch (m.type) {
      case "pong":
        sink.reply({ op: "ping" });
        return;
      case "echo_response":
        sink.reply({ op: "echo", bytes: null, text: contentText(m.content) });
        return;
      case "auth_ok":
        sink.reply({ op: "hello", clientId: num(m.id), label: typeof m.client_id === "string" ? m.client_id : null });
        return;
      case "broadcast_sent":
        sink.reply({ op: "broadcast", recipients: num(m.recipients) });
        return;
      case "sent":
        sink.reply({ op: "send" });
        return;
      case "server_stats":
        sink.reply({ op: "stats", stats: statsFromJson(m) });
        return;
      case "error":
        sink.error(typeof m.error === "string" ? m.error : "error", typeof m.message === "string" ? m.message : "");
        return;
      case "message":
      case "broadcast": {
        if (m.type === "broadcast" && m.from_id === undefined) {
          // Our own request shape coming back: an echo server, not a json server.
          sink.mismatch("the server sent our broadcast request back; is it speaking the json protocol?");
          return;
        }
        const text = contentText(m.content);
        const fromId = typeof m.from_id === "number" ? m.from_id : null;
        sink.message({
          kind: m.type === "broadcast" ? "broadcast" : "direct",
          fromId,
          from: fromId !== null ? String(fromId) : typeof m.from === "string" ? m.from : "?",
          text,
          payload: utf8.encode(text),
          content: m.content,
        });
        return;
      }
      default:
        if (REQUEST_TYPES.has(m.type)) {
          sink.mismatch(`the server sent a "${m.type}" request back; is it speaking the json protocol?`);
          return;
        }
        // A type from a newer server: tell the user, do not break the stream.
        sink.notice({ code: "unknown_message", message: JSON.stringify(m) });
    }
  }
}

export function statsFromJson(m: JsonMessage): ServerStats {
  const obj = (v: unknown): Record<string, unknown> => (typeof v === "object" && v !== null ? (v as Record<string, unknown>) : {});
  const msgIn = obj(m.messages_in);
  const msgOut = obj(m.messages_out);
  const names = [...new Set([...Object.keys(msgIn), ...Object.keys(msgOut)])];
  const lat = obj(m.latency_ns);
  const bp = obj(m.backpressure);
  const closeReasons: Record<string, number> = {};
  for (const [k, v] of Object.entries(obj(m.close_reasons))) closeReasons[k] = num(v);
  const startedAtMs = typeof m.server_start_time === "string" ? Date.parse(m.server_start_time) : 0;
  const nowMs = typeof m.current_time === "string" ? Date.parse(m.current_time) : 0;
  return {
    protocol: "json",
    serverName: typeof m.server_name === "string" ? m.server_name : null,
    statsEnabled: m.stats_enabled !== false,
    startedAtMs: Number.isFinite(startedAtMs) ? startedAtMs : 0,
    nowMs: Number.isFinite(nowMs) ? nowMs : 0,
    uptimeSeconds: num(m.uptime_seconds),
    clients: num(m.connected_clients),
    connectionsActive: num(m.connections_active),
    connectionsTotal: num(m.connections_total),
    bytesIn: num(m.bytes_in),
    bytesOut: num(m.bytes_out),
    messagesIn: num(m.total_messages),
    messagesOut: num(m.total_messages_out),
    errorsTotal: num(m.errors_total),
    highWaterCrossings: num(bp.high_water_crossings),
    pausedReads: num(bp.paused_reads),
    slowConsumersDropped: num(bp.slow_consumers_dropped),
    latencyNs: { count: num(lat.count), p50: num(lat.p50), p90: num(lat.p90), p99: num(lat.p99), p999: num(lat.p999), max: num(lat.max) },
    kinds: names.map((name) => ({ name, in: num(msgIn[name]), out: num(msgOut[name]) })),
    errors: Object.entries(obj(m.errors)).map(([name, count]) => ({ name, count: num(count) })),
    closeReasons,
  };
}
