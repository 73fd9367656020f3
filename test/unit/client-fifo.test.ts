// src/client/client.ts: request/reply matching on a fake connection. Replies are matched
// FIFO; messages in between are events; timeouts keep their slot; errors and closes
// settle what is waiting.

import { describe, expect, test } from "bun:test";
import { ErrorCode } from "../../src/protocols/codec/errors.ts";
import {
  decodeFrames,
  encodeBroadcastAck,
  encodeBroadcastMsg,
  encodeError,
  encodeFrame,
  encodeWelcome,
  MsgType,
} from "../../src/protocols/codec/framed.ts";
import { encodeJsonFrame } from "../../src/protocols/codec/json.ts";
import { Client, describeClose, type CloseInfo } from "../../src/client/client.ts";
import {
  ConnectionClosedError,
  NotSupportedError,
  ProtocolMismatchError,
  RequestTimeoutError,
  ServerError,
} from "../../src/client/errors.ts";
import type { ClientProtocolName, IncomingMessage } from "../../src/client/protocol.ts";
import type { Reactor } from "../../src/reactor/reactor.ts";
import { concat } from "../util/chunking.ts";
import { deliver, FakeConnection } from "../util/fake-connection.ts";

// The client only asks its reactor to yield soon after settling a promise.
const reactorStub = { trackAsync() {} } as unknown as Reactor;

function setup(protocol: ClientProtocolName = "framed", timeoutMs = 0) {
  const client = new Client(protocol, "127.0.0.1", 7000, timeoutMs, reactorStub);
  const handler = client.handler();
  const conn = new FakeConnection<unknown>({ handler });
  client.attach(conn);
  const serverSends = (bytes: Uint8Array, chunks?: number[]) => deliver(handler, conn, bytes, chunks);
  return { client, conn, serverSends };
}

const pong = () => encodeFrame(MsgType.PONG);
const echoReply = (s: string) => encodeFrame(MsgType.ECHO_REPLY, new TextEncoder().encode(s));

describe("Client: FIFO matching", () => {
  test("replies settle requests in order; broadcasts in between are events", async () => {
    const { client, conn, serverSends } = setup();
    const got: IncomingMessage[] = [];
    client.on("message", (m) => got.push(m));
    const p1 = client.echo("one");
    const p2 = client.broadcast("all");
    const p3 = client.echo("three");
    expect(client.inFlight).toBe(3);
    expect(decodeFrames(conn.output()).map((f) => f.type)).toEqual([MsgType.ECHO, MsgType.BROADCAST, MsgType.ECHO]);
    serverSends(concat(echoReply("one"), encodeBroadcastMsg(9, "from nine"), encodeBroadcastAck(4), encodeBroadcastMsg(8, "from eight"), echoReply("three")), [3, 5, 1]);
    expect(await p1).toBe("one");
    expect(await p2).toBe(4);
    expect(await p3).toBe("three");
    expect(got.map((m) => `${m.fromId}:${m.text}`)).toEqual(["9:from nine", "8:from eight"]);
    expect(client.inFlight).toBe(0);
  });

  test("an ERROR reply rejects its own request with the code name, the next one still matches", async () => {
    const { client, serverSends } = setup();
    const p1 = client.send(99, "x");
    const p2 = client.ping();
    serverSends(concat(encodeError(ErrorCode.NO_SUCH_CLIENT), pong()));
    const e = await p1.catch((x) => x);
    expect(e).toBeInstanceOf(ServerError);
    expect(e.code).toBe("no_such_client");
    expect(e.errorCode).toBe(ErrorCode.NO_SUCH_CLIENT);
    expect(e.message).toBe("no_such_client (no such client)");
    expect(typeof (await p2)).toBe("number");
  });

  test("an ERROR with nothing waiting is a notice", () => {
    const { client, serverSends } = setup();
    const notices: string[] = [];
    client.on("notice", (n) => notices.push(n.code));
    serverSends(encodeError(ErrorCode.SHUTTING_DOWN));
    expect(notices).toEqual(["shutting_down"]);
  });

  test("a timed-out request keeps its slot: its late reply is not taken for the next request's", async () => {
    const { client, serverSends } = setup("framed", 30);
    const late = client.echo("first");
    const e = await late.catch((x) => x);
    expect(e).toBeInstanceOf(RequestTimeoutError);
    expect(e.code).toBe("timeout");
    const next = client.echo("second");
    expect(client.inFlight).toBe(2);
    serverSends(concat(echoReply("first"), echoReply("second")));
    expect(await next).toBe("second");
    expect(client.inFlight).toBe(0);
  });

  test("handshake: WELCOME sets the client id; json auth_ok sets id and label", async () => {
    const f = setup();
    const h = f.client.handshake("tok");
    f.serverSends(encodeWelcome(42));
    await h;
    expect(f.client.clientId).toBe(42);
    const j = setup("json");
    const hj = j.client.handshake(undefined);
    j.serverSends(encodeJsonFrame({ type: "auth_ok", client_id: "127.0.0.1:5555", id: 8 }));
    await hj;
    expect(j.client.clientId).toBe(8);
    expect(j.client.label).toBe("127.0.0.1:5555");
  });

  test("a reply of the wrong kind is a protocol mismatch: the connection is closed, everything waiting rejects", async () => {
    const { client, conn, serverSends } = setup();
    const p1 = client.echo("x");
    const p2 = client.stats();
    serverSends(pong());
    for (const p of [p1, p2]) {
      const e = await p.catch((x) => x);
      expect(e).toBeInstanceOf(ProtocolMismatchError);
      expect(e.message).toContain("PONG reply arrived where ECHO_REPLY was expected");
    }
    expect(conn.closeReason).toBe("protocol");
    const info = await client.closed;
    expect(info.reason).toBe("protocol");
    expect(client.isOpen).toBe(false);
  });

  test("the server closing rejects what is waiting with ConnectionClosedError; later requests reject at once", async () => {
    const { client, conn } = setup();
    const closes: CloseInfo[] = [];
    client.on("close", (i) => closes.push(i));
    const p = client.ping();
    conn.close("end");
    const e = await p.catch((x) => x);
    expect(e).toBeInstanceOf(ConnectionClosedError);
    expect(e.message).toBe("connection closed: the server closed the connection");
    expect(closes).toEqual([{ reason: "end", byClient: false }]);
    await expect(client.echo("x")).rejects.toBeInstanceOf(ConnectionClosedError);
  });

  test("close() rejects what is waiting at once, ends the connection, resolves when closed", async () => {
    const { client, conn } = setup();
    const p = client.ping();
    const closing = client.close();
    await expect(p).rejects.toThrow("closed by the client");
    expect(conn.endCalls).toBe(1);
    conn.finishEnd();
    await closing;
    expect((await client.closed).byClient).toBe(true);
  });

  test("unsupported operations reject with NotSupportedError and write nothing", async () => {
    const { client, conn } = setup("line");
    await expect(client.ping()).rejects.toBeInstanceOf(NotSupportedError);
    await expect(client.send(1, "x")).rejects.toThrow("send is not supported by the line protocol");
    await expect(client.stats()).rejects.toThrow("stats is not supported by the line protocol");
    expect(conn.writes).toHaveLength(0);
    // Broadcast has no acknowledgement on the line protocol: it resolves null once queued.
    expect(await client.broadcast("hi")).toBeNull();
    expect(conn.text()).toBe("hi\n");
  });

  test("a throwing message listener reaches the reactor (which closes the connection with the error)", () => {
    const { client, serverSends } = setup();
    client.on("message", () => {
      throw new Error("listener bug");
    });
    expect(() => serverSends(encodeBroadcastMsg(1, "x"))).toThrow("listener bug");
  });

  test("describeClose names who closed and why", () => {
    expect(describeClose({ reason: "local", byClient: true })).toBe("closed by the client");
    expect(describeClose({ reason: "end", byClient: false, lastNotice: { code: "unauthorized", message: "unauthorized" } })).toBe('the server said "unauthorized" and closed the connection');
    expect(describeClose({ reason: "reset", byClient: false, error: new Error("recv: ECONNRESET") })).toBe("the connection was reset (recv: ECONNRESET)");
  });
});
