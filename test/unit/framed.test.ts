// src/protocols/framed.ts: the framed protocol's handler table, driven through fake connections.

import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { ErrorCode } from "../../src/protocols/codec/errors.ts";
import {
  decodeErrorBody,
  decodeFrames,
  decodeIdAndPayload,
  decodeU32Body,
  decodeWelcome,
  encodeBroadcast,
  encodeEcho,
  encodeError,
  encodeFrame,
  encodeHello,
  encodePing,
  encodeSendTo,
  encodeStatsRequest,
  MsgType,
  type Frame,
} from "../../src/protocols/codec/framed.ts";
import { Kind } from "../../src/protocols/codec/kinds.ts";
import { decodeStatsReply } from "../../src/protocols/codec/stats-reply.ts";
import { createProtocolContext, type ProtocolContextInit } from "../../src/protocols/context.ts";
import { createFramedProtocol, type FramedSession } from "../../src/protocols/framed.ts";
import { StreamState } from "../../src/stream/stream.ts";
import { byteByByte, concat, cutPoints, everySplit } from "../util/chunking.ts";
import { deliver, FakeConnection, openConnection } from "../util/fake-connection.ts";
import { ManualClock } from "../util/manual-clock.ts";

function setup(init: ProtocolContextInit = {}) {
  const clock = new ManualClock();
  const ctx = createProtocolContext({ stats: { now: clock.now }, ...init });
  const handler = createFramedProtocol(ctx);
  const open = () => openConnection(handler);
  const send = (conn: FakeConnection<FramedSession>, bytes: Uint8Array, chunks?: number[]) => deliver(handler, conn, bytes, chunks);
  return { ctx, handler, clock, open, send };
}

const frames = (conn: FakeConnection<any>): Frame[] => decodeFrames(conn.take());
const errorCodes = (fs: Frame[]) => fs.filter((f) => f.type === MsgType.ERROR).map((f) => decodeErrorBody(f.body)!.code);

describe("framed: requests and replies", () => {
  test("PING -> PONG and ECHO -> ECHO_REPLY with the same body, in request order", () => {
    const { open, send } = setup();
    const c = open();
    send(c, concat(encodePing("a"), encodeEcho("bc"), encodePing(""), encodeEcho(new Uint8Array(1000).fill(7))));
    const fs = frames(c);
    expect(fs.map((f) => f.type)).toEqual([MsgType.PONG, MsgType.ECHO_REPLY, MsgType.PONG, MsgType.ECHO_REPLY]);
    expect(fs.map((f) => f.body.length)).toEqual([1, 2, 0, 1000]);
    expect(new TextDecoder().decode(fs[1]!.body)).toBe("bc");
    expect(fs[3]!.body.every((b) => b === 7)).toBe(true);
  });

  test("a read of PING/ECHO frames is answered with one write straight from the receive buffer", () => {
    const { open, handler, ctx } = setup();
    const c = open();
    const chunk = concat(encodePing("zero-copy"), encodeEcho("e"), encodePing(""), encodeEcho(new Uint8Array(300).fill(9)));
    handler.data(c, chunk);
    expect(c.writeCalls).toBe(1); // one run, one write...
    expect(c.prefixedWrites).toBe(0);
    expect(c.sources[0]).toBe(chunk); // ...taken from the receive buffer itself
    const fs = frames(c);
    expect(fs.map((f) => f.type)).toEqual([MsgType.PONG, MsgType.ECHO_REPLY, MsgType.PONG, MsgType.ECHO_REPLY]);
    expect(new TextDecoder().decode(fs[0]!.body)).toBe("zero-copy");
    expect(fs[3]!.body.length).toBe(300);
    expect(ctx.stats.messagesOut[Kind.PONG]).toBe(2);
    expect(ctx.stats.messagesOut[Kind.ECHO_REPLY]).toBe(2);
  });

  test("the echo run is written before any other reply, so replies stay in request order", () => {
    const { open, handler } = setup();
    const c = open();
    const chunk = concat(encodePing("1"), encodeEcho("2"), encodeFrame(0x4242, Uint8Array.of(1)), encodePing("3"), encodeStatsRequest(), encodeEcho("4"));
    handler.data(c, chunk);
    const fs = frames(c);
    expect(fs.map((f) => f.type)).toEqual([MsgType.PONG, MsgType.ECHO_REPLY, MsgType.ERROR, MsgType.PONG, MsgType.STATS_REPLY, MsgType.ECHO_REPLY]);
    expect(fs.filter((f) => f.type !== MsgType.ERROR && f.type !== MsgType.STATS_REPLY).map((f) => new TextDecoder().decode(f.body))).toEqual(["1", "2", "3", "4"]);
    expect(c.writeCalls).toBe(5); // run, error, run, stats, run
  });

  test("the echo run's write closing the connection (slow consumer) ends the read: the next frame is not handled", () => {
    const { open, handler, ctx } = setup();
    const [a, b] = [open(), open()];
    a.afterWrite = (conn) => conn.close("slow-consumer"); // as write() past maxBuffered does
    handler.data(a, concat(encodePing("x"), encodeBroadcast("after-close"), encodeEcho("y")));
    expect(a.state).toBe(StreamState.Closed);
    expect(b.take().length).toBe(0); // the dropped client's BROADCAST never went out
    expect(ctx.stats.messagesOut[Kind.BROADCAST_MSG]).toBe(0);
    expect(ctx.stats.messagesOut[Kind.BROADCAST_ACK]).toBe(0);
    expect(ctx.stats.messagesIn[Kind.BROADCAST]).toBe(0);
  });

  test("per-message latency mode writes each reply as its message is handled (no runs)", () => {
    const { open, handler, ctx } = setup({ stats: { latencyMode: "message" } });
    const c = open();
    handler.data(c, concat(encodePing("1"), encodeEcho("2"), encodePing("3")));
    expect(c.prefixedWrites).toBe(3);
    expect(frames(c).map((f) => f.type)).toEqual([MsgType.PONG, MsgType.ECHO_REPLY, MsgType.PONG]);
    expect(ctx.stats.latency.count).toBe(3);
  });

  test("every split and byte by byte give the same replies as one chunk", () => {
    const stream = concat(encodeHello(1), encodePing("p1"), encodeEcho("e1"), encodeFrame(0x4242, Uint8Array.of(1)), encodeStatsRequest(), encodePing("p2"));
    const { open, send } = setup();
    const reference = open();
    send(reference, stream);
    const want = frames(reference).map((f) => f.type);
    expect(want).toEqual([MsgType.WELCOME, MsgType.PONG, MsgType.ECHO_REPLY, MsgType.ERROR, MsgType.STATS_REPLY, MsgType.PONG]);
    const splits = [...everySplit(stream), byteByByte(stream)];
    for (const chunks of splits) {
      const c = open();
      send(c, concat(...chunks), chunks.map((x) => x.length).filter((n) => n > 0));
      const got = frames(c);
      expect(got.map((f) => f.type)).toEqual(want);
      expect(got[1]!.body).toEqual(new TextEncoder().encode("p1"));
      expect(got[5]!.body).toEqual(new TextEncoder().encode("p2"));
    }
  });

  test("property: pipelined PING/ECHO under any chunking: replies in order with the same bodies", () => {
    const { open, send } = setup();
    const reqArb = fc.record({ echo: fc.boolean(), body: fc.uint8Array({ maxLength: 200 }) });
    fc.assert(
      fc.property(
        fc.array(reqArb, { minLength: 1, maxLength: 20 }).chain((reqs) => {
          const bytes = concat(...reqs.map((r) => (r.echo ? encodeEcho(r.body) : encodePing(r.body))));
          return fc.tuple(fc.constant(reqs), fc.constant(bytes), cutPoints(bytes.length));
        }),
        ([reqs, bytes, cuts]) => {
          const c = open();
          const sizes = [...cuts, bytes.length].map((p, i, a) => p - (i === 0 ? 0 : a[i - 1]!)).filter((n) => n > 0);
          send(c, bytes, sizes.length > 0 ? sizes : undefined);
          const got = frames(c);
          expect(got.map((f) => f.type)).toEqual(reqs.map((r) => (r.echo ? MsgType.ECHO_REPLY : MsgType.PONG)));
          expect(got.map((f) => f.body)).toEqual(reqs.map((r) => r.body));
        },
      ),
      { numRuns: 200 },
    );
  });

  test("HELLO -> WELCOME with a process-unique id and protocol version 1", () => {
    const { open, send } = setup();
    const a = open();
    const b = open();
    send(a, encodeHello());
    send(b, encodeHello(1));
    const wa = decodeWelcome(frames(a)[0]!.body)!;
    const wb = decodeWelcome(frames(b)[0]!.body)!;
    expect(wa.protocolVersion).toBe(1);
    expect(wa.clientId).toBeGreaterThan(0);
    expect(wb.clientId).not.toBe(wa.clientId);
    expect(a.data.member.id).toBe(wa.clientId);
  });

  test("STATS -> STATS_REPLY that decodes and counts what happened", () => {
    const { open, send } = setup();
    const c = open();
    send(c, concat(encodePing("x"), encodePing("y"), encodeFrame(0x0999)));
    c.take();
    send(c, encodeStatsRequest());
    const fs = frames(c);
    expect(fs[0]!.type).toBe(MsgType.STATS_REPLY);
    const r = decodeStatsReply(fs[0]!.body)!;
    expect(r.clients).toBe(1);
    expect(r.kinds.find((k) => k.name === "ping")).toEqual({ code: 3, name: "ping", in: 2, out: 0 });
    expect(r.kinds.find((k) => k.name === "pong")!.out).toBe(2);
    expect(r.errors).toEqual([{ code: ErrorCode.UNKNOWN_TYPE, name: "unknown_type", count: 1 }]);
    expect(r.messagesIn).toBe(4); // the STATS request itself is counted before the reply
  });

  test("a client-sent ERROR frame is counted, never answered", () => {
    const { open, send, ctx } = setup();
    const c = open();
    send(c, concat(encodeError(1, "oops"), encodePing("after")));
    expect(frames(c).map((f) => f.type)).toEqual([MsgType.PONG]);
    expect(ctx.stats.messagesIn[Kind.ERROR]).toBe(1);
  });
});

describe("framed: errors keep the stream in sync", () => {
  const cases: [string, Uint8Array, number][] = [
    ["unknown type", encodeFrame(0x1234, Uint8Array.of(1, 2)), ErrorCode.UNKNOWN_TYPE],
    ["a server-to-client type", encodeFrame(MsgType.WELCOME, new Uint8Array(6)), ErrorCode.UNKNOWN_TYPE],
    ["HELLO with a 1-byte body", encodeFrame(MsgType.HELLO, Uint8Array.of(1)), ErrorCode.BAD_BODY],
    ["SEND_TO shorter than a u32", encodeFrame(MsgType.SEND_TO, Uint8Array.of(0, 0, 1)), ErrorCode.BAD_BODY],
    ["STATS with a body", encodeFrame(MsgType.STATS, Uint8Array.of(0)), ErrorCode.BAD_BODY],
    ["SEND_TO an unknown id", encodeSendTo(987654, "x"), ErrorCode.NO_SUCH_CLIENT],
    ["BROADCAST too big to relay with a sender id", encodeBroadcast(new Uint8Array(65532)), ErrorCode.FRAME_TOO_LARGE],
  ];
  for (const [name, frame, code] of cases) {
    test(`${name} -> ERROR ${code}, then the next frame is answered`, () => {
      const { open, send, ctx } = setup();
      const c = open();
      send(c, concat(frame, encodePing("next")));
      const fs = frames(c);
      expect(fs.map((f) => f.type)).toEqual([MsgType.ERROR, MsgType.PONG]);
      expect(decodeErrorBody(fs[0]!.body)!.code).toBe(code);
      expect(c.state).toBe(StreamState.Open);
      expect(ctx.stats.errors[code]).toBe(1);
    });
  }

  test("a declared length over max-frame: FRAME_TOO_LARGE, body skipped, still open, under any split", () => {
    const stream = concat(encodePing(new Uint8Array(150).fill(9)), encodePing("ok"));
    for (const chunks of [...everySplit(stream), byteByByte(stream)]) {
      const { open, send } = setup({ options: { maxFrame: 100 } });
      const c = open();
      send(c, stream, chunks.map((x) => x.length).filter((n) => n > 0));
      const fs = frames(c);
      expect(fs.map((f) => f.type)).toEqual([MsgType.ERROR, MsgType.PONG]);
      expect(decodeErrorBody(fs[0]!.body)!.code).toBe(ErrorCode.FRAME_TOO_LARGE);
      expect(new TextDecoder().decode(fs[1]!.body)).toBe("ok");
      expect(c.state).toBe(StreamState.Open);
    }
  });

  test("--max-frame above 65535 is capped at what a u16 length can say", () => {
    const { handler } = setup({ options: { maxFrame: 1 << 20 } });
    const c = openConnection(handler);
    expect(c.data.decoder.maxBody).toBe(0xffff);
  });
});

describe("framed: broadcast and direct messages", () => {
  test("BROADCAST reaches every other client; the sender gets BROADCAST_ACK with the count", () => {
    const { open, send } = setup();
    const [a, b, c] = [open(), open(), open()];
    send(a, encodeBroadcast("hi all"));
    const fa = frames(a);
    expect(fa.length).toBe(1);
    expect(fa[0]!.type).toBe(MsgType.BROADCAST_ACK);
    expect(decodeU32Body(fa[0]!.body)).toBe(2);
    for (const r of [b, c]) {
      const f = frames(r);
      expect(f.map((x) => x.type)).toEqual([MsgType.BROADCAST_MSG]);
      expect(decodeIdAndPayload(f[0]!.body)).toEqual({ id: a.data.member.id, payload: new TextEncoder().encode("hi all") });
    }
  });

  test("all recipients get identical bytes (encoded once)", () => {
    const { open, send } = setup();
    const a = open();
    const rs = [open(), open(), open()];
    send(a, encodeBroadcast("same"));
    const sources = rs.map((r) => r.sources[0]);
    expect(sources[0]).toBeInstanceOf(Uint8Array);
    expect(sources[1]).toBe(sources[0]!);
    expect(sources[2]).toBe(sources[0]!);
  });

  test("a slow consumer closed during the broadcast does not stop the others", () => {
    const { open, send, ctx } = setup();
    const [a, slow, b, c] = [open(), open(), open(), open()];
    // The reactor closes a connection inside write() once it passes maxBuffered.
    slow.afterWrite = (conn) => conn.close("slow-consumer");
    send(a, encodeBroadcast("x"));
    expect(decodeU32Body(frames(a)[0]!.body)).toBe(3);
    expect(frames(b).length).toBe(1);
    expect(frames(c).length).toBe(1);
    expect(slow.state).toBe(StreamState.Closed);
    expect(ctx.hub.size).toBe(3);
    // The hub is consistent afterwards.
    send(b, encodeBroadcast("y"));
    expect(decodeU32Body(frames(b)[0]!.body)).toBe(2);
  });

  test("a recipient whose write() reports backpressure is not waited on", () => {
    const { handler, open, send } = setup();
    const a = open();
    const full = openConnection(handler, { highWaterMark: 1 });
    const b = open();
    send(a, encodeBroadcast("1"));
    send(a, encodeBroadcast("2"));
    expect(frames(full).length).toBe(2);
    expect(frames(b).length).toBe(2);
  });

  test("SEND_TO: DIRECT_MSG to the target, SEND_ACK to the sender; gone target -> NO_SUCH_CLIENT", () => {
    const { open, send } = setup();
    const [a, b, c] = [open(), open(), open()];
    const bid = b.data.member.id;
    send(a, encodeSendTo(bid, "psst"));
    const fa = frames(a);
    expect(fa.map((f) => f.type)).toEqual([MsgType.SEND_ACK]);
    expect(decodeU32Body(fa[0]!.body)).toBe(bid);
    const fb = frames(b);
    expect(fb.map((f) => f.type)).toEqual([MsgType.DIRECT_MSG]);
    expect(decodeIdAndPayload(fb[0]!.body)).toEqual({ id: a.data.member.id, payload: new TextEncoder().encode("psst") });
    expect(frames(c)).toEqual([]);
    b.close("reset");
    send(a, encodeSendTo(bid, "again"));
    expect(errorCodes(frames(a))).toEqual([ErrorCode.NO_SUCH_CLIENT]);
  });

  test("SEND_TO oneself works", () => {
    const { open, send } = setup();
    const a = open();
    send(a, encodeSendTo(a.data.member.id, "me"));
    expect(frames(a).map((f) => f.type)).toEqual([MsgType.DIRECT_MSG, MsgType.SEND_ACK]);
  });

  test("close unregisters from the hub", () => {
    const { open, ctx } = setup();
    const a = open();
    open();
    expect(ctx.hub.size).toBe(2);
    a.close("end");
    expect(ctx.hub.size).toBe(1);
  });
});

describe("framed: auth, rate limit, shutdown, hooks", () => {
  test("with a token: only a HELLO carrying it gets in; anything else -> UNAUTHORIZED and end", () => {
    const attempts: [string, Uint8Array][] = [
      ["PING first", encodePing("x")],
      ["HELLO without token", encodeHello()],
      ["HELLO with version only", encodeHello(1)],
      ["HELLO with a wrong token", encodeHello(1, "nope")],
      ["HELLO with a prefix of the token", encodeHello(1, "s3cre")],
    ];
    for (const [, bytes] of attempts) {
      const { open, send } = setup({ options: { authToken: "s3cret" } });
      const c = open();
      send(c, concat(bytes, encodePing("after")));
      expect(errorCodes(frames(c))).toEqual([ErrorCode.UNAUTHORIZED]);
      expect(c.endCalls).toBe(1);
      expect(c.endReason).toBe("unauthorized");
      expect(c.data.decoder.isStopped).toBe(true);
    }
    const { open, send } = setup({ options: { authToken: "s3cret" } });
    const c = open();
    send(c, concat(encodeHello(1, "s3cret"), encodePing("after")));
    expect(frames(c).map((f) => f.type)).toEqual([MsgType.WELCOME, MsgType.PONG]);
  });

  test("unauthenticated clients are invisible: no broadcasts, not counted, not addressable", () => {
    const { open, send } = setup({ options: { authToken: "t" } });
    const a = open();
    const waiting = open();
    const b = open();
    send(a, encodeHello(1, "t"));
    send(b, encodeHello(1, "t"));
    a.take();
    b.take();
    send(a, encodeBroadcast("x"));
    expect(decodeU32Body(frames(a)[0]!.body)).toBe(1);
    expect(waiting.writes.length).toBe(0);
    send(a, encodeSendTo(waiting.data.member.id, "x"));
    expect(errorCodes(frames(a))).toEqual([ErrorCode.NO_SUCH_CLIENT]);
  });

  test("rate limit: RATE_LIMITED per excess frame, then close when the client keeps on", () => {
    const { open, send, clock } = setup({ options: { rateLimit: { messagesPerSecond: 10, burst: 2, maxViolations: 2 } } });
    const c = open();
    send(c, concat(...Array.from({ length: 8 }, () => encodePing("x"))));
    const fs = frames(c);
    expect(fs.map((f) => f.type)).toEqual([MsgType.PONG, MsgType.PONG, MsgType.ERROR, MsgType.ERROR, MsgType.ERROR]);
    expect(errorCodes(fs)).toEqual([ErrorCode.RATE_LIMITED, ErrorCode.RATE_LIMITED, ErrorCode.RATE_LIMITED]);
    expect(c.endCalls).toBe(1);
    // A polite client recovers as tokens come back.
    const d = open();
    send(d, concat(encodePing("1"), encodePing("2"), encodePing("3")));
    expect(errorCodes(frames(d))).toEqual([ErrorCode.RATE_LIMITED]);
    clock.advance(100e6); // one token
    send(d, encodePing("4"));
    expect(frames(d).map((f) => f.type)).toEqual([MsgType.PONG]);
    expect(d.state).toBe(StreamState.Open);
  });

  test("rate limiting still works with stats disabled (it reads its own clock)", () => {
    const { open, send } = setup({ stats: { enabled: false }, options: { rateLimit: { messagesPerSecond: 10, burst: 1 } } });
    const c = open();
    send(c, concat(encodePing("1"), encodePing("2")));
    expect(errorCodes(frames(c))).toEqual([ErrorCode.RATE_LIMITED]);
  });

  test("shutting down: every new frame gets SHUTTING_DOWN, the connection stays open", () => {
    const { open, send, ctx } = setup();
    const c = open();
    ctx.shuttingDown = true;
    send(c, concat(encodePing("x"), encodeHello()));
    expect(errorCodes(frames(c))).toEqual([ErrorCode.SHUTTING_DOWN, ErrorCode.SHUTTING_DOWN]);
    expect(c.state).toBe(StreamState.Open);
  });

  test("inFrame: true while a frame is partial", () => {
    const { open, handler } = setup();
    const c = open();
    expect(handler.inFrame(c)).toBe(false);
    handler.data(c, encodePing("abc").subarray(0, 5));
    expect(handler.inFrame(c)).toBe(true);
    handler.data(c, encodePing("abc").subarray(5));
    expect(handler.inFrame(c)).toBe(false);
  });

  test("full() writes SERVER_FULL on a connection that was never opened", () => {
    const { handler } = setup();
    const c = new FakeConnection();
    handler.full(c);
    expect(errorCodes(frames(c))).toEqual([ErrorCode.SERVER_FULL]);
  });
});

describe("framed: instrumentation", () => {
  test("counts per kind, errors per code, one latency sample per message", () => {
    const { open, send, ctx } = setup();
    const c = open();
    send(c, concat(encodePing("a"), encodeEcho("b"), encodeFrame(0x7777)));
    const s = ctx.stats;
    expect(s.messagesIn[Kind.PING]).toBe(1);
    expect(s.messagesIn[Kind.ECHO]).toBe(1);
    expect(s.messagesIn[Kind.UNKNOWN]).toBe(1);
    expect(s.messagesOut[Kind.PONG]).toBe(1);
    expect(s.messagesOut[Kind.ECHO_REPLY]).toBe(1);
    expect(s.messagesOut[Kind.ERROR]).toBe(1);
    expect(s.errors[ErrorCode.UNKNOWN_TYPE]).toBe(1);
    expect(s.latency.count).toBe(3);
  });

  test("stats disabled: nothing counted, no clock reads", () => {
    const { open, send, ctx, clock } = setup({ stats: { enabled: false } });
    const c = open();
    const before = clock.reads;
    send(c, concat(encodePing("a"), encodeFrame(0x7777)));
    expect(frames(c).length).toBe(2);
    expect(ctx.stats.messagesInTotal + ctx.stats.errorsTotal + ctx.stats.latency.count).toBe(0);
    expect(clock.reads).toBe(before);
  });
});
