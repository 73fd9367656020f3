// The framed protocol, client side: `u16 type, u16 length` frames (codec/framed.ts).

import { plural } from "../cli/plural.ts";
import { errorName } from "../protocols/codec/errors.ts";
import {
  decodeErrorBody,
  decodeIdAndPayload,
  decodeU32Body,
  decodeWelcome,
  encodeBroadcast,
  encodeEcho,
  encodeHello,
  encodePing,
  encodeSendTo,
  encodeStatsRequest,
  FRAMED_MAX_BODY,
  FramedStreamDecoder,
  MAX_RELAYED_PAYLOAD,
  MsgType,
  PROTOCOL_VERSION,
  type Frame,
} from "../protocols/codec/framed.ts";
import { decodeStatsReply, type StatsReply } from "../protocols/codec/stats-reply.ts";
import { ClientError } from "./errors.ts";
import { utf8, utf8Lossy, type Encoded, type Op, type ServerStats, type Wire, type WireSink } from "./protocol.ts";

const TYPE_NAMES: Record<number, string> = {};
for (const [name, code] of Object.entries(MsgType)) TYPE_NAMES[code] = name;

function typeName(type: number): string {
  return `${TYPE_NAMES[type] ?? "unknown type"} (0x${type.toString(16).padStart(4, "0")})`;
}

function req(bytes: Uint8Array): Encoded {
  return { bytes, expectsReply: true };
}

function bytesOf(payload: Uint8Array | string): Uint8Array {
  return typeof payload === "string" ? utf8.encode(payload) : payload;
}

function checkBody(what: string, n: number, max: number): void {
  if (n > max) throw new ClientError("frame_too_large", `${what} of ${n} bytes does not fit a framed frame (max ${max})`);
}

export class FramedWire implements Wire {
  readonly protocol = "framed";
  readonly names: Record<Op, readonly [string, string]> = {
    hello: ["HELLO", "WELCOME"],
    ping: ["PING", "PONG"],
    echo: ["ECHO", "ECHO_REPLY"],
    broadcast: ["BROADCAST", "BROADCAST_ACK"],
    send: ["SEND_TO", "SEND_ACK"],
    stats: ["STATS", "STATS_REPLY"],
  };
  private readonly decoder: FramedStreamDecoder;

  constructor(private readonly sink: WireSink) {
    this.decoder = new FramedStreamDecoder(
      (f) => this.onFrame(f),
      FRAMED_MAX_BODY,
      // Unreachable with a u16 length, kept so a lower limit would be reported, not hidden.
      (type, length) => sink.mismatch(`${typeName(type)} frame of ${length} bytes is over the limit`),
    );
  }

  get inFrame(): boolean {
    return this.decoder.inFrame;
  }

  push(bytes: Uint8Array): void {
    this.decoder.push(bytes);
  }

  finish(): void {}

  hello(token: string | undefined): Encoded {
    // The version is informational (there is only 1); the token follows it when auth is on.
    return req(encodeHello(PROTOCOL_VERSION, token));
  }

  ping(payload: Uint8Array): Encoded {
    checkBody("ping payload", payload.length, FRAMED_MAX_BODY);
    return req(encodePing(payload));
  }

  echo(payload: Uint8Array | string): Encoded {
    const b = bytesOf(payload);
    checkBody("echo payload", b.length, FRAMED_MAX_BODY);
    return req(encodeEcho(b));
  }

  broadcast(payload: Uint8Array | string): Encoded {
    const b = bytesOf(payload);
    // The relayed BROADCAST_MSG adds a u32 sender id to the body.
    checkBody("broadcast payload", b.length, MAX_RELAYED_PAYLOAD);
    return req(encodeBroadcast(b));
  }

  send(to: number | string, payload: Uint8Array | string): Encoded {
    const id = typeof to === "number" ? to : /^\d+$/.test(to) ? Number(to) : NaN;
    if (!Number.isInteger(id) || id < 0 || id > 0xffffffff) {
      throw new ClientError("bad_target", `the framed protocol addresses clients by numeric id, got ${JSON.stringify(to)}`);
    }
    const b = bytesOf(payload);
    checkBody("send payload", b.length, MAX_RELAYED_PAYLOAD);
    return req(encodeSendTo(id, b));
  }

  stats(): Encoded {
    return req(encodeStatsRequest());
  }

  private onFrame(f: Frame): void {
    const body = f.body;
    const sink = this.sink;
    switch (f.type) {
      case MsgType.PONG:
        sink.reply({ op: "ping" });
        return;
      case MsgType.ECHO_REPLY:
        sink.reply({ op: "echo", bytes: body, text: null });
        return;
      case MsgType.WELCOME: {
        const w = decodeWelcome(body);
        if (w === null) return sink.mismatch(`WELCOME body of ${plural(body.length, "byte")} (expected 6)`);
        sink.reply({ op: "hello", clientId: w.clientId, label: null });
        return;
      }
      case MsgType.BROADCAST_ACK: {
        const n = decodeU32Body(body);
        if (n === null) return sink.mismatch(`BROADCAST_ACK body of ${plural(body.length, "byte")} (expected 4)`);
        sink.reply({ op: "broadcast", recipients: n });
        return;
      }
      case MsgType.SEND_ACK:
        if (decodeU32Body(body) === null) return sink.mismatch(`SEND_ACK body of ${plural(body.length, "byte")} (expected 4)`);
        sink.reply({ op: "send" });
        return;
      case MsgType.STATS_REPLY: {
        const s = decodeStatsReply(body);
        if (s === null) return sink.mismatch(`malformed STATS_REPLY (${plural(body.length, "byte")})`);
        sink.reply({ op: "stats", stats: statsFromFramed(s) });
        return;
      }
      case MsgType.ERROR: {
        const e = decodeErrorBody(body);
        if (e === null) return sink.mismatch(`ERROR body of ${plural(body.length, "byte")} (expected >= 2)`);
        sink.error(errorName(e.code), e.message);
        return;
      }
      case MsgType.BROADCAST_MSG:
      case MsgType.DIRECT_MSG: {
        const m = decodeIdAndPayload(body);
        if (m === null) return sink.mismatch(`${typeName(f.type)} body of ${plural(body.length, "byte")} (expected >= 4)`);
        sink.message({
          kind: f.type === MsgType.BROADCAST_MSG ? "broadcast" : "direct",
          fromId: m.id,
          from: String(m.id),
          text: utf8Lossy.decode(m.payload),
          payload: m.payload,
        });
        return;
      }
      default:
        // A request type coming back (an echo server) or garbage: nothing after it can be trusted.
        sink.mismatch(`unexpected ${typeName(f.type)} frame from the server; is it speaking the framed protocol?`);
    }
  }
}

export function statsFromFramed(s: StatsReply): ServerStats {
  const { layoutVersion: _layout, kinds, errors, latencyNs, ...counters } = s;
  return {
    protocol: "framed",
    serverName: null,
    ...counters,
    latencyNs: { ...latencyNs },
    kinds: kinds.map((k) => ({ name: k.name, in: k.in, out: k.out })),
    errors: errors.map((e) => ({ name: e.name, count: e.count })),
    closeReasons: null,
  };
}
