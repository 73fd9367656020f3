// src/client/*-wire.ts: each protocol's client-side encoder/decoder, fed server bytes under
// every split, through a shared buffer that is poisoned after each push (as the reactor's).

import { describe, expect, test } from "bun:test";
import { ErrorCode } from "../../src/protocols/codec/errors.ts";
import {
  decodeFrames,
  encodeBroadcastAck,
  encodeBroadcastMsg,
  encodeDirectMsg,
  encodeError,
  encodeFrame,
  encodeHello,
  encodeSendAck,
  encodeWelcome,
  MsgType,
} from "../../src/protocols/codec/framed.ts";
import { decodeJsonFrames, encodeJsonFrame } from "../../src/protocols/codec/json.ts";
import { encodeStatsReplyBody } from "../../src/protocols/codec/stats-reply.ts";
import { createProtocolContext } from "../../src/protocols/context.ts";
import { EchoWire } from "../../src/client/echo-wire.ts";
import { NotSupportedError } from "../../src/client/errors.ts";
import { FramedWire } from "../../src/client/framed-wire.ts";
import { JsonWire } from "../../src/client/json-wire.ts";
import { LineWire } from "../../src/client/line-wire.ts";
import type { IncomingMessage, Reply, ServerNotice, Wire, WireSink } from "../../src/client/protocol.ts";
import { byteByByte, concat, everySplit3, pushThroughSharedBuffer } from "../util/chunking.ts";

type Event =
  | { t: "reply"; r: Reply }
  | { t: "error"; code: string; message: string }
  | { t: "message"; m: IncomingMessage }
  | { t: "notice"; n: ServerNotice }
  | { t: "mismatch"; detail: string };

function recorder(): { sink: WireSink; events: Event[] } {
  const events: Event[] = [];
  return {
    events,
    sink: {
      reply: (r) => events.push({ t: "reply", r }),
      error: (code, message) => events.push({ t: "error", code, message }),
      message: (m) => events.push({ t: "message", m }),
      notice: (n) => events.push({ t: "notice", n }),
      mismatch: (detail) => events.push({ t: "mismatch", detail }),
    },
  };
}

/** Decode `bytes` under many splits; every split must give the same events. */
function decodeAllWays(make: (sink: WireSink) => Wire, bytes: Uint8Array, prepare?: (w: Wire) => void): Event[] {
  const once = (chunks: Uint8Array[]) => {
    const { sink, events } = recorder();
    const w = make(sink);
    prepare?.(w);
    pushThroughSharedBuffer(chunks, (c) => w.push(c));
    w.finish();
    return events;
  };
  const expected = once([bytes]);
  expect(once(byteByByte(bytes))).toEqual(expected);
  // Three-way splits are O(n^2): a sample keeps it fast for long inputs.
  let i = 0;
  for (const chunks of everySplit3(bytes)) if (i++ % 7 === 0) expect(once(chunks)).toEqual(expected);
  return expected;
}

const text = (b: Uint8Array) => new TextDecoder().decode(b);

describe("FramedWire", () => {
  test("encodes every request as the codec does", () => {
    const w = new FramedWire(recorder().sink);
    expect(w.hello(undefined).bytes).toEqual(encodeHello(1));
    expect(w.hello("s3cret").bytes).toEqual(encodeHello(1, "s3cret"));
    const frames = decodeFrames(concat(w.ping(Uint8Array.of(1, 2)).bytes, w.echo("hi").bytes, w.broadcast("yo").bytes, w.send(9, "psst").bytes, w.send("10", "x").bytes, w.stats().bytes));
    expect(frames.map((f) => f.type)).toEqual([MsgType.PING, MsgType.ECHO, MsgType.BROADCAST, MsgType.SEND_TO, MsgType.SEND_TO, MsgType.STATS]);
    expect(text(frames[1]!.body)).toBe("hi");
    expect(Array.from(frames[3]!.body)).toEqual([0, 0, 0, 9, 0x70, 0x73, 0x73, 0x74]);
    expect(Array.from(frames[4]!.body.subarray(0, 4))).toEqual([0, 0, 0, 10]);
  });

  test("refuses what cannot be a framed request", () => {
    const w = new FramedWire(recorder().sink);
    expect(() => w.send("127.0.0.1:5000", "x")).toThrow(/numeric id/);
    expect(() => w.send(-1, "x")).toThrow(/numeric id/);
    expect(() => w.broadcast(new Uint8Array(65532))).toThrow(/does not fit/);
    expect(() => w.echo(new Uint8Array(65536))).toThrow(/does not fit/);
    expect(w.broadcast(new Uint8Array(65531)).bytes.length).toBe(4 + 65531);
  });

  test("replies, errors and messages, in order, under every split", () => {
    const ctx = createProtocolContext();
    const stats = encodeFrame(MsgType.STATS_REPLY, encodeStatsReplyBody(ctx.snapshot()));
    const bytes = concat(
      encodeWelcome(7),
      encodeBroadcastMsg(3, "before the pong"),
      encodeFrame(MsgType.PONG, Uint8Array.of(1)),
      encodeFrame(MsgType.ECHO_REPLY, new TextEncoder().encode("héllo")),
      encodeBroadcastAck(2),
      encodeDirectMsg(4, "psst"),
      encodeSendAck(4),
      encodeError(ErrorCode.NO_SUCH_CLIENT),
      stats,
    );
    const ev = decodeAllWays((s) => new FramedWire(s), bytes);
    expect(ev.map((e) => (e.t === "reply" ? e.r.op : e.t))).toEqual(["hello", "message", "ping", "echo", "broadcast", "message", "send", "error", "stats"]);
    expect(ev[0]).toEqual({ t: "reply", r: { op: "hello", clientId: 7, label: null } });
    expect(ev[1]).toMatchObject({ t: "message", m: { kind: "broadcast", fromId: 3, from: "3", text: "before the pong" } });
    expect(text((ev[3] as { r: { bytes: Uint8Array } }).r.bytes)).toBe("héllo");
    expect(ev[4]).toEqual({ t: "reply", r: { op: "broadcast", recipients: 2 } });
    expect(ev[5]).toMatchObject({ t: "message", m: { kind: "direct", fromId: 4, text: "psst" } });
    expect(ev[7]).toEqual({ t: "error", code: "no_such_client", message: "no such client" });
    const s = (ev[8] as { r: { op: "stats"; stats: { protocol: string; statsEnabled: boolean } } }).r.stats;
    expect(s.protocol).toBe("framed");
    expect(s.statsEnabled).toBe(true);
  });

  test("a request type coming back (an echo server) is a protocol mismatch", () => {
    const ev = decodeAllWays((s) => new FramedWire(s), encodeHello(1));
    expect(ev).toHaveLength(1);
    expect(ev[0]).toMatchObject({ t: "mismatch" });
    expect((ev[0] as { detail: string }).detail).toContain("HELLO (0x0001)");
  });

  test("malformed reply bodies are mismatches, not crashes", () => {
    for (const f of [encodeFrame(MsgType.WELCOME, new Uint8Array(5)), encodeFrame(MsgType.BROADCAST_ACK, new Uint8Array(3)), encodeFrame(MsgType.STATS_REPLY, new Uint8Array(10)), encodeFrame(MsgType.ERROR, new Uint8Array(1)), encodeFrame(MsgType.DIRECT_MSG, new Uint8Array(2))]) {
      const { sink, events } = recorder();
      new FramedWire(sink).push(f);
      expect(events.map((e) => e.t)).toEqual(["mismatch"]);
    }
  });
});

describe("JsonWire", () => {
  test("requests: auth first (with or without token), then the json shapes", () => {
    const w = new JsonWire(recorder().sink);
    const msgs = decodeJsonFrames(concat(w.hello(undefined).bytes, w.hello("t0k").bytes, w.ping(new Uint8Array(0)).bytes, w.echo("hi").bytes, w.broadcast(new TextEncoder().encode("yo")).bytes, w.send("12", "x").bytes, w.send("127.0.0.1:5000", "y").bytes, w.stats().bytes));
    expect(msgs[0]).toEqual({ type: "auth" });
    expect(msgs[1]).toEqual({ type: "auth", token: "t0k" });
    expect(msgs[2]!.type).toBe("ping");
    expect(typeof msgs[2]!.timestamp).toBe("string");
    expect(msgs.slice(3)).toEqual([
      { type: "echo", content: "hi" },
      { type: "broadcast", content: "yo" },
      { type: "send", to: 12, content: "x" },
      { type: "send", to: "127.0.0.1:5000", content: "y" },
      { type: "get_stats" },
    ]);
  });

  test("replies and messages under every split", () => {
    const bytes = concat(
      encodeJsonFrame({ type: "auth_ok", client_id: "127.0.0.1:40000", id: 5 }),
      encodeJsonFrame({ type: "pong", ping_timestamp: null, pong_timestamp: "x", client_id: "a" }),
      encodeJsonFrame({ type: "broadcast", content: { x: 1 }, from: "127.0.0.1:1", from_id: 2, timestamp: "t" }),
      encodeJsonFrame({ type: "echo_response", content: "é", timestamp: "t", echoed_by: "bunpoll" }),
      encodeJsonFrame({ type: "broadcast_sent", recipients: 3, timestamp: "t" }),
      encodeJsonFrame({ type: "message", from: "127.0.0.1:9", from_id: 9, content: "psst", timestamp: "t" }),
      encodeJsonFrame({ type: "sent", to: 9 }),
      encodeJsonFrame({ type: "error", error: "no_such_client", message: "no client 99" }),
      encodeJsonFrame({ type: "server_stats", connected_clients: 2, uptime_seconds: 3, total_messages: 10, messages_in: { ping: 4 }, messages_out: { pong: 4 }, errors: { bad_body: 1 }, latency_ns: { count: 4, p50: 100 }, close_reasons: { end: 1 }, stats_enabled: true }),
      encodeJsonFrame({ type: "something_new", x: 1 }),
    );
    const ev = decodeAllWays((s) => new JsonWire(s), bytes);
    expect(ev.map((e) => (e.t === "reply" ? e.r.op : e.t))).toEqual(["hello", "ping", "message", "echo", "broadcast", "message", "send", "error", "stats", "notice"]);
    expect(ev[0]).toEqual({ t: "reply", r: { op: "hello", clientId: 5, label: "127.0.0.1:40000" } });
    expect(ev[2]).toMatchObject({ m: { kind: "broadcast", fromId: 2, text: '{"x":1}', content: { x: 1 } } });
    expect(ev[3]).toEqual({ t: "reply", r: { op: "echo", bytes: null, text: "é" } });
    expect(ev[5]).toMatchObject({ m: { kind: "direct", fromId: 9, text: "psst" } });
    expect(ev[7]).toEqual({ t: "error", code: "no_such_client", message: "no client 99" });
    const s = (ev[8] as unknown as { r: { stats: Record<string, unknown> } }).r.stats;
    expect(s).toMatchObject({ protocol: "json", clients: 2, uptimeSeconds: 3, messagesIn: 10, closeReasons: { end: 1 } });
    expect(s.kinds).toEqual([{ name: "ping", in: 4, out: 0 }, { name: "pong", in: 0, out: 4 }]);
    expect(ev[9]).toMatchObject({ t: "notice", n: { code: "unknown_message" } });
  });

  test("our own requests echoed back are a mismatch; so is a body that is not JSON", () => {
    for (const f of [encodeJsonFrame({ type: "auth" }), encodeJsonFrame({ type: "broadcast", content: "x" }), concat(Uint8Array.of(0, 0, 0, 2), new TextEncoder().encode("{x"))]) {
      const { sink, events } = recorder();
      new JsonWire(sink).push(f);
      expect(events.map((e) => e.t)).toEqual(["mismatch"]);
    }
  });
});

describe("LineWire", () => {
  test("only broadcast (and the token line) exist; CR/LF inside a message become spaces", () => {
    const w = new LineWire(recorder().sink);
    expect(w.hello(undefined)).toBeNull();
    expect(text(w.hello("tok")!.bytes)).toBe("tok\n");
    const b = w.broadcast("two\nlines\r");
    expect(text(b.bytes)).toBe("two lines \n");
    expect(b.expectsReply).toBe(false);
    expect(() => w.ping()).toThrow(NotSupportedError);
    expect(() => w.send()).toThrow("send is not supported by the line protocol");
    expect(() => w.stats()).toThrow(NotSupportedError);
    expect(() => w.echo()).toThrow(NotSupportedError);
  });

  test("broadcasts, direct messages, ERR notices and stray lines under every split", () => {
    const bytes = new TextEncoder().encode("3: hello there\r\n12 (direct): psst\nERR rate limited\nERR line too long\nwhat is this\n7: last line without newline");
    const ev = decodeAllWays((s) => new LineWire(s), bytes);
    expect(ev).toEqual([
      { t: "message", m: { kind: "broadcast", fromId: 3, from: "3", text: "hello there", payload: new TextEncoder().encode("hello there") } },
      { t: "message", m: { kind: "direct", fromId: 12, from: "12", text: "psst", payload: new TextEncoder().encode("psst") } },
      { t: "error", code: "rate_limited", message: "rate limited" },
      { t: "error", code: "frame_too_large", message: "line too long" },
      { t: "notice", n: { code: "unrecognized_line", message: "what is this" } },
      { t: "message", m: { kind: "broadcast", fromId: 7, from: "7", text: "last line without newline", payload: new TextEncoder().encode("last line without newline") } },
    ]);
  });
});

describe("EchoWire", () => {
  test("a reply is the next N bytes, N the length of its request, whatever the chunking", () => {
    const sizes = [1, 5, 3, 200];
    const requests = sizes.map((n, i) => new Uint8Array(n).fill(i + 1));
    const ev = decodeAllWays(
      (s) => new EchoWire(s),
      concat(...requests),
      (w) => {
        for (const r of requests) w.requestWritten!("echo", w.echo(r));
      },
    );
    expect(ev.map((e) => (e as { r: { bytes: Uint8Array } }).r.bytes)).toEqual(requests);
  });

  test("bytes nobody asked for are a mismatch; empty requests are refused", () => {
    const { sink, events } = recorder();
    const w = new EchoWire(sink);
    w.push(Uint8Array.of(1));
    expect(events.map((e) => e.t)).toEqual(["mismatch"]);
    expect(() => w.echo("")).toThrow(/empty/);
    expect(() => w.broadcast()).toThrow("broadcast is not supported by the echo protocol");
  });
});
