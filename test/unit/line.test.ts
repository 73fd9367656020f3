// src/protocols/line.ts: the line chat protocol's handler table, driven through fake connections.

import { describe, expect, test } from "bun:test";
import { ErrorCode } from "../../src/protocols/codec/errors.ts";
import { Kind } from "../../src/protocols/codec/kinds.ts";
import { createProtocolContext, type ProtocolContextInit } from "../../src/protocols/context.ts";
import { createLineProtocol, type LineSession } from "../../src/protocols/line.ts";
import { StreamState } from "../../src/stream/stream.ts";
import { byteByByte, everySplit } from "../util/chunking.ts";
import { deliver, FakeConnection, openConnection } from "../util/fake-connection.ts";
import { ManualClock } from "../util/manual-clock.ts";

const enc = (s: string) => new TextEncoder().encode(s);

function setup(init: ProtocolContextInit = {}) {
  const clock = new ManualClock();
  const ctx = createProtocolContext({ stats: { now: clock.now }, ...init });
  const handler = createLineProtocol(ctx);
  const open = () => openConnection(handler);
  const send = (conn: FakeConnection<LineSession>, text: string | Uint8Array, chunks?: number[]) =>
    deliver(handler, conn, typeof text === "string" ? enc(text) : text, chunks);
  const read = (conn: FakeConnection<any>) => new TextDecoder().decode(conn.take());
  return { ctx, handler, clock, open, send, read };
}

describe("line: chat", () => {
  test("each line reaches every other client as `<id>: <line>`, not the sender", () => {
    const { open, send, read } = setup();
    const [a, b, c] = [open(), open(), open()];
    const id = a.data.member.id;
    send(a, "hello\r\nsecond line\n");
    expect(read(a)).toBe("");
    for (const r of [b, c]) expect(read(r)).toBe(`${id}: hello\n${id}: second line\n`);
  });

  test("every split and byte by byte give the same chat", () => {
    const input = enc("one\ntwo wörds\r\n\nfour\n");
    const { open, send, read } = setup();
    const a = open();
    const b = open();
    const id = a.data.member.id;
    const want = `${id}: one\n${id}: two wörds\n${id}: \n${id}: four\n`;
    for (const chunks of [...everySplit(input), byteByByte(input)]) {
      send(a, input, chunks.map((x) => x.length).filter((n) => n > 0));
      expect(read(b)).toBe(want);
    }
  });

  test("a last line without newline is delivered when the peer half-closes", () => {
    const { open, send, read, handler } = setup();
    const a = open();
    const b = open();
    send(a, "no newline");
    expect(read(b)).toBe("");
    handler.end!(a);
    expect(read(b)).toBe(`${a.data.member.id}: no newline\n`);
  });

  test("a line over max-line: one `ERR line too long` line, then close", () => {
    const { open, send, read, ctx } = setup({ options: { maxLine: 10 } });
    const a = open();
    const b = open();
    send(a, "short\n0123456789X\nafter\n");
    expect(read(a)).toBe("ERR line too long\n");
    expect(a.endCalls).toBe(1);
    expect(read(b)).toBe(`${a.data.member.id}: short\n`);
    expect(ctx.stats.errors[ErrorCode.FRAME_TOO_LARGE]).toBe(1);
  });

  test("an unterminated flood is cut off without buffering past max-line", () => {
    const { open, send, read } = setup({ options: { maxLine: 100 } });
    const a = open();
    for (let i = 0; i < 50 && a.endCalls === 0; i++) send(a, "x".repeat(30));
    expect(read(a)).toBe("ERR line too long\n");
    expect(a.data.decoder.bufferedBytes).toBe(0);
  });

  test("max-line defaults to 64 KiB", () => {
    const { open } = setup();
    expect(open().data.decoder.maxLine).toBe(65536);
  });
});

describe("line: auth, rate limit, shutdown, hooks", () => {
  test("with a token, the first line must be it: silent success, else ERR unauthorized and close", () => {
    const { open, send, read } = setup({ options: { authToken: "pw" } });
    const bad = open();
    send(bad, "hello\n");
    expect(read(bad)).toBe("ERR unauthorized\n");
    expect(bad.endCalls).toBe(1);
    const a = open();
    const b = open();
    send(b, "pw\n");
    send(a, "pw\r\nhi\n");
    expect(read(a)).toBe("");
    expect(read(b)).toBe(`${a.data.member.id}: hi\n`);
  });

  test("rate limit: ERR rate limited, then close", () => {
    const { open, send, read } = setup({ options: { rateLimit: { messagesPerSecond: 1, burst: 1, maxViolations: 1 } } });
    const a = open();
    send(a, "1\n2\n3\n4\n");
    expect(read(a)).toBe("ERR rate limited\nERR rate limited\n");
    expect(a.endCalls).toBe(1);
  });

  test("shutting down: ERR shutting down, line not relayed", () => {
    const { open, send, read, ctx } = setup();
    const a = open();
    const b = open();
    ctx.shuttingDown = true;
    send(a, "x\n");
    expect(read(a)).toBe("ERR shutting down\n");
    expect(read(b)).toBe("");
    expect(a.state).toBe(StreamState.Open);
  });

  test("inFrame while a line is partial; full() writes ERR server full", () => {
    const { open, send, handler, read } = setup();
    const a = open();
    send(a, "part");
    expect(handler.inFrame(a)).toBe(true);
    send(a, "ial\n");
    expect(handler.inFrame(a)).toBe(false);
    const f = new FakeConnection();
    handler.full(f);
    expect(read(f)).toBe("ERR server full\n");
    // The refused connection's FIN and close reach handlers that never ran open().
    handler.end!(f);
    handler.close(f, "end");
    expect(f.writes.length).toBe(0);
  });

  test("counts lines in and relayed messages out", () => {
    const { open, send, ctx } = setup();
    const a = open();
    open();
    open();
    send(a, "x\ny\n");
    expect(ctx.stats.messagesIn[Kind.LINE]).toBe(2);
    expect(ctx.stats.messagesOut[Kind.BROADCAST_MSG]).toBe(4);
    expect(ctx.stats.latency.count).toBe(2);
  });
});
