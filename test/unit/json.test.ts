// src/protocols/json.ts: the json protocol's handler table, driven through fake connections.

import { describe, expect, test } from "bun:test";
import { ErrorCode } from "../../src/protocols/codec/errors.ts";
import { decodeJsonFrames, encodeJsonFrame, type JsonMessage } from "../../src/protocols/codec/json.ts";
import { Kind } from "../../src/protocols/codec/kinds.ts";
import { createProtocolContext, type ProtocolContextInit } from "../../src/protocols/context.ts";
import { createJsonProtocol, type JsonSession } from "../../src/protocols/json.ts";
import { ReactorStats } from "../../src/reactor/stats.ts";
import { StreamState } from "../../src/stream/stream.ts";
import { byteByByte, concat, everySplit } from "../util/chunking.ts";
import { deliver, FakeConnection, openConnection } from "../util/fake-connection.ts";
import { ManualClock } from "../util/manual-clock.ts";

const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

function setup(init: ProtocolContextInit = {}) {
  const clock = new ManualClock();
  const ctx = createProtocolContext({ stats: { now: clock.now }, ...init });
  const handler = createJsonProtocol(ctx);
  const open = (port?: number) => openConnection(handler, { remoteAddress: "10.0.0.1", remotePort: port });
  const send = (conn: FakeConnection<JsonSession>, ...msgs: (object | Uint8Array)[]) =>
    deliver(handler, conn, concat(...msgs.map((m) => (m instanceof Uint8Array ? m : encodeJsonFrame(m)))));
  return { ctx, handler, clock, open, send };
}

const replies = (conn: FakeConnection<any>): JsonMessage[] => decodeJsonFrames(conn.take());

/** A length-prefixed frame around arbitrary body bytes. */
function rawFrame(body: Uint8Array): Uint8Array {
  const n = body.length;
  return concat(Uint8Array.of(n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff), body);
}

describe("json: requests and replies", () => {
  test("ping -> pong with the client's timestamp, an ISO pong time and ip:port", () => {
    const { open, send } = setup();
    const c = open(5555);
    send(c, { type: "ping", timestamp: 12345 });
    const [r] = replies(c);
    expect(r).toMatchObject({ type: "pong", ping_timestamp: 12345, client_id: "10.0.0.1:5555" });
    expect(r!.pong_timestamp).toMatch(ISO);
  });

  test("echo -> echo_response with the same content (any JSON value)", () => {
    const { open, send } = setup();
    const c = open();
    const content = { nested: [1, "two", null, { é: true }] };
    send(c, { type: "echo", content, extra: 1 });
    const [r] = replies(c);
    expect(r).toMatchObject({ type: "echo_response", content, echoed_by: "bunpoll" });
    expect(r!.timestamp).toMatch(ISO);
  });

  test("replies come in request order, under every split and byte by byte", () => {
    const stream = concat(
      encodeJsonFrame({ type: "ping", timestamp: 1 }),
      encodeJsonFrame({ type: "echo", content: "€" }),
      encodeJsonFrame({ type: "nope" }),
      encodeJsonFrame({ type: "ping", timestamp: 2 }),
    );
    const want = ["pong", "echo_response", "error", "pong"];
    const { handler } = setup();
    for (const chunks of [...everySplit(stream), byteByByte(stream)]) {
      const c = openConnection(handler);
      deliver(handler, c, stream, chunks.map((x) => x.length).filter((n) => n > 0));
      const rs = replies(c);
      expect(rs.map((r) => r.type)).toEqual(want);
      expect(rs[1]!.content).toBe("€");
      expect(rs[3]!.ping_timestamp).toBe(2);
    }
  });

  test("get_stats -> server_stats with the required fields and the counters", () => {
    const { open, send, ctx } = setup({ options: { serverName: "test-server" } });
    const r = new ReactorStats();
    r.connectionsActive = 3;
    r.bytesIn = 99;
    r.readCalls = 12;
    ctx.addReactor(r);
    const c = open();
    open();
    send(c, { type: "ping" }, { type: "bogus" });
    c.take();
    send(c, { type: "get_stats" });
    const [s] = replies(c);
    expect(s).toMatchObject({
      type: "server_stats",
      connected_clients: 2,
      total_messages: 3,
      server_name: "test-server",
      connections_active: 3,
      bytes_in: 99,
      read_calls: 12,
      messages_in: { ping: 1, unknown: 1, stats: 1 },
      errors: { unknown_type: 1 },
    });
    expect(typeof s!.uptime_seconds).toBe("number");
    expect(s!.server_start_time).toMatch(ISO);
    expect(s!.current_time).toMatch(ISO);
    expect(s!.latency_ns).toMatchObject({ count: 2 });
  });
});

describe("json: errors", () => {
  const cases: [string, Uint8Array, string][] = [
    ["invalid JSON", rawFrame(new TextEncoder().encode("{nope")), "invalid_json"],
    ["invalid UTF-8", rawFrame(Uint8Array.of(0x7b, 0x22, 0xff, 0x22, 0x7d)), "invalid_utf8"],
    ["no type", encodeJsonFrame({ content: 1 }), "missing_type"],
    ["a non-object", encodeJsonFrame([1, 2]), "missing_type"],
    ["unknown type", encodeJsonFrame({ type: "dance" }), "unknown_type"],
    ["broadcast without content", encodeJsonFrame({ type: "broadcast" }), "bad_body"],
    ["send without to", encodeJsonFrame({ type: "send", content: "x" }), "bad_body"],
    ["send to an unknown client", encodeJsonFrame({ type: "send", to: 424242, content: "x" }), "no_such_client"],
    ["send to an unknown ip:port", encodeJsonFrame({ type: "send", to: "1.2.3.4:5", content: "x" }), "no_such_client"],
    ["an empty body", rawFrame(new Uint8Array(0)), "invalid_json"],
  ];
  for (const [name, frame, code] of cases) {
    test(`${name} -> error "${code}", connection stays open and in sync`, () => {
      const { open, send } = setup();
      const c = open();
      send(c, frame, { type: "ping", timestamp: "next" });
      const rs = replies(c);
      expect(rs.length).toBe(2);
      expect(rs[0]).toMatchObject({ type: "error", error: code });
      expect(typeof rs[0]!.message).toBe("string");
      expect(rs[1]).toMatchObject({ type: "pong", ping_timestamp: "next" });
      expect(c.state).toBe(StreamState.Open);
    });
  }

  test("a declared length over max-frame -> frame_too_large, then close", () => {
    const { open, send } = setup({ options: { maxFrame: 64 } });
    const c = open();
    send(c, { type: "echo", content: "x".repeat(100) }, { type: "ping" });
    const rs = replies(c);
    expect(rs).toEqual([expect.objectContaining({ type: "error", error: "frame_too_large" })]);
    expect(c.endCalls).toBe(1);
    expect(c.data.decoder.isStopped).toBe(true);
  });

  test("default max-frame is 1 MiB", () => {
    const { open } = setup();
    expect(open().data.decoder.maxBody).toBe(1024 * 1024);
  });
});

describe("json: broadcast and send", () => {
  test("broadcast: others get content + from + timestamp, the sender gets broadcast_sent", () => {
    const { open, send } = setup();
    const a = open(1001);
    const b = open(1002);
    const c = open(1003);
    send(a, { type: "broadcast", content: { hello: "world" } });
    const [ack] = replies(a);
    expect(ack).toMatchObject({ type: "broadcast_sent", recipients: 2 });
    expect(ack!.timestamp).toMatch(ISO);
    for (const r of [b, c]) {
      const [m] = replies(r);
      expect(m).toMatchObject({ type: "broadcast", content: { hello: "world" }, from: "10.0.0.1:1001", from_id: a.data.member.id });
      expect(m!.timestamp).toMatch(ISO);
    }
  });

  test("send by numeric id, decimal string id, or ip:port", () => {
    const { open, send } = setup();
    const a = open(2001);
    const b = open(2002);
    for (const to of [b.data.member.id, String(b.data.member.id), "10.0.0.1:2002"]) {
      send(a, { type: "send", to, content: "psst" });
      expect(replies(a)).toEqual([{ type: "sent", to }]);
      expect(replies(b)).toEqual([expect.objectContaining({ type: "message", from: "10.0.0.1:2001", content: "psst" })]);
    }
  });

  test("IPv6 peers are named [addr]:port", () => {
    const { handler, send } = setup();
    const a = openConnection(handler, { remoteAddress: "::1", remotePort: 7 });
    send(a, { type: "ping" });
    expect(replies(a)[0]!.client_id).toBe("[::1]:7");
  });
});

describe("json: auth, rate limit, shutdown, hooks", () => {
  test("with a token: the first message must be a matching auth, else unauthorized and close", () => {
    for (const first of [{ type: "ping" }, { type: "auth" }, { type: "auth", token: "bad" }, { type: "auth", token: 5 }]) {
      const { open, send } = setup({ options: { authToken: "tok" } });
      const c = open();
      send(c, first, { type: "ping" });
      const rs = replies(c);
      expect(rs).toEqual([expect.objectContaining({ type: "error", error: "unauthorized" })]);
      expect(c.endCalls).toBe(1);
    }
    const { open, send } = setup({ options: { authToken: "tok" } });
    const c = open();
    send(c, { type: "auth", token: "tok" }, { type: "ping" });
    expect(replies(c).map((r) => r.type)).toEqual(["auth_ok", "pong"]);
  });

  test("invalid JSON before auth is unauthorized (and closes), not a free error", () => {
    const { open, send } = setup({ options: { authToken: "tok" } });
    const c = open();
    send(c, rawFrame(new TextEncoder().encode("{")));
    expect(replies(c)).toEqual([expect.objectContaining({ error: "unauthorized" })]);
    expect(c.endCalls).toBe(1);
  });

  test("rate limited messages get rate_limited; persistent excess closes", () => {
    const { open, send, ctx } = setup({ options: { rateLimit: { messagesPerSecond: 1, burst: 1, maxViolations: 1 } } });
    const c = open();
    send(c, { type: "ping" }, { type: "ping" }, { type: "ping" }, { type: "ping" });
    expect(replies(c).map((r) => (r.type === "error" ? r.error : r.type))).toEqual(["pong", "rate_limited", "rate_limited"]);
    expect(c.endCalls).toBe(1);
    expect(ctx.stats.errors[ErrorCode.RATE_LIMITED]).toBe(2);
  });

  test("shutting down -> shutting_down errors", () => {
    const { open, send, ctx } = setup();
    const c = open();
    ctx.shuttingDown = true;
    send(c, { type: "ping" });
    expect(replies(c)).toEqual([expect.objectContaining({ type: "error", error: "shutting_down" })]);
    expect(c.state).toBe(StreamState.Open);
  });

  test("inFrame and full()", () => {
    const { open, handler } = setup();
    const c = open();
    handler.data(c, encodeJsonFrame({ type: "ping" }).subarray(0, 3));
    expect(handler.inFrame(c)).toBe(true);
    const f = new FakeConnection();
    handler.full(f);
    expect(replies(f)).toEqual([expect.objectContaining({ type: "error", error: "server_full" })]);
  });

  test("counts json types under the shared kinds", () => {
    const { open, send, ctx } = setup();
    const c = open();
    open();
    send(c, { type: "ping" }, { type: "echo", content: 1 }, { type: "broadcast", content: 2 });
    expect(ctx.stats.messagesIn[Kind.PING]).toBe(1);
    expect(ctx.stats.messagesIn[Kind.ECHO]).toBe(1);
    expect(ctx.stats.messagesIn[Kind.BROADCAST]).toBe(1);
    expect(ctx.stats.messagesOut[Kind.BROADCAST_MSG]).toBe(1);
    expect(ctx.stats.messagesOut[Kind.BROADCAST_ACK]).toBe(1);
  });
});
