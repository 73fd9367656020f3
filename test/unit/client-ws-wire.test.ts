// src/client/ws-wire.ts: the client's WebSocket wire against scripted server bytes. The
// Accept is computed here with node:crypto from RFC 6455's GUID (not with the server's
// helper), and what the wire writes is read back with the server's own frame decoder, which
// requires masking: every frame the client sends must pass it.

import { describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { Client } from "../../src/client/client.ts";
import { ClientError, ConnectionClosedError, ProtocolMismatchError } from "../../src/client/errors.ts";
import type { IncomingMessage, Reply, TransportSink } from "../../src/client/protocol.ts";
import { applyMask, encodeClientFrame, remask, WsWire } from "../../src/client/ws-wire.ts";
import { encodeFrame, Opcode, WsFrameDecoder } from "../../src/protocols/ws/frame.ts";
import type { Reactor } from "../../src/reactor/reactor.ts";
import { byteByByte, concat, pushThroughSharedBuffer, splitAt } from "../util/chunking.ts";
import { deliver, FakeConnection } from "../util/fake-connection.ts";

type Event =
  | { t: "reply"; r: Reply }
  | { t: "message"; m: IncomingMessage }
  | { t: "write"; bytes: Uint8Array }
  | { t: "end" }
  | { t: "fail"; error: Error; farewell?: Uint8Array }
  | { t: "other"; what: string };

function recorder(): { sink: TransportSink; events: Event[] } {
  const events: Event[] = [];
  return {
    events,
    sink: {
      reply: (r) => events.push({ t: "reply", r }),
      error: (code, message) => events.push({ t: "other", what: `error ${code} ${message}` }),
      message: (m) => events.push({ t: "message", m }),
      notice: (n) => events.push({ t: "other", what: `notice ${n.code}` }),
      mismatch: (detail) => events.push({ t: "other", what: `mismatch ${detail}` }),
      write: (bytes) => events.push({ t: "write", bytes: bytes.slice() }),
      end: () => events.push({ t: "end" }),
      fail: (error, farewell) => events.push(farewell ? { t: "fail", error, farewell } : { t: "fail", error }),
    },
  };
}

const enc = new TextEncoder();
const dec = new TextDecoder();
const te = (s: string) => enc.encode(s);

function acceptOf(key: string): string {
  return createHash("sha1").update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest("base64");
}

/** The key of an Upgrade request the wire wrote. */
function keyOf(request: Uint8Array): string {
  const m = /\r\nSec-WebSocket-Key: (\S+)\r\n/.exec(dec.decode(request));
  if (!m) throw new Error(`no key in ${dec.decode(request)}`);
  return m[1]!;
}

function switching(key: string, extra = ""): Uint8Array {
  return te(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptOf(key)}\r\n${extra}\r\n`);
}

/** A wire whose Upgrade request has gone out (hello) and whose key is known. */
function opened(path = "/ws/echo") {
  const { sink, events } = recorder();
  const w = new WsWire(sink, { host: "127.0.0.1", port: 8080, path });
  const request = w.hello(undefined).bytes;
  return { w, events, request, key: keyOf(request) };
}

/** Client frames decoded by the server's decoder (masking required): [opcode, payload]. */
function serverReads(bytes: Uint8Array): [number, string][] {
  const got: [number, string][] = [];
  const d = new WsFrameDecoder(
    {
      onMessage: (op, data) => got.push([op, dec.decode(data)]),
      onPing: (p) => got.push([Opcode.Ping, dec.decode(p)]),
      onPong: (p) => got.push([Opcode.Pong, dec.decode(p)]),
      onClose: (code, reason) => got.push([Opcode.Close, `${code} ${reason}`]),
      onError: (code, message) => got.push([-1, `${code} ${message}`]),
    },
    { maxPayloadLength: 1 << 26 },
  );
  d.push(bytes.slice());
  return got;
}

/** The 4-byte masking key of a client frame. */
function keyOfFrame(frame: Uint8Array): number {
  const len7 = frame[1]! & 0x7f;
  const k = len7 === 126 ? 4 : len7 === 127 ? 10 : 2;
  return ((frame[k]! << 24) | (frame[k + 1]! << 16) | (frame[k + 2]! << 8) | frame[k + 3]!) >>> 0;
}

const writes = (events: Event[]) => events.filter((e): e is Extract<Event, { t: "write" }> => e.t === "write").map((e) => e.bytes);
const kinds = (events: Event[]) => events.map((e) => e.t);

describe("WsWire: the opening handshake", () => {
  test("the Upgrade request is RFC 6455's, with a fresh random 16-byte key per connection", () => {
    const a = opened("/ws/echo?room=1");
    const text = dec.decode(a.request);
    expect(text.startsWith("GET /ws/echo?room=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n")).toBe(true);
    for (const h of ["Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Version: 13"]) expect(text).toContain(`\r\n${h}\r\n`);
    expect(text.endsWith("\r\n\r\n")).toBe(true);
    expect(Buffer.from(a.key, "base64").length).toBe(16);
    const keys = new Set([a.key, ...Array.from({ length: 20 }, () => opened().key)]);
    expect(keys.size).toBe(21);
  });

  test("101 with the right Accept opens it, under every split; frames right behind the head are read", () => {
    const once = (chunks: (key: string) => Uint8Array[]) => {
      const o = opened();
      pushThroughSharedBuffer(chunks(o.key), (c) => o.w.push(c));
      return { events: o.events, open: o.w.isOpen };
    };
    const bytes = (key: string) => concat(switching(key), encodeFrame(Opcode.Text, te("hello from the server")));
    const whole = once((k) => [bytes(k)]);
    expect(whole.open).toBe(true);
    expect(whole.events.map((e) => (e.t === "reply" ? e.r.op : e.t === "message" ? e.m.text : e.t))).toEqual(["hello", "hello from the server"]);
    expect(once((k) => byteByByte(bytes(k))).events).toEqual(whole.events);
    // Every cut point, with a second cut further on (a fresh key each run, same lengths).
    const n = bytes(opened().key).length;
    for (let cut = 1; cut < n; cut++) {
      expect(once((k) => splitAt(bytes(k), [cut, cut + ((cut * 7) % (n - cut))])).events).toEqual(whole.events);
    }
  });

  test("a wrong or missing Sec-WebSocket-Accept fails the connection, naming both values", () => {
    for (const accept of ["Sec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n", ""]) {
      const o = opened();
      o.w.push(te(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n${accept}\r\n`));
      expect(kinds(o.events)).toEqual(["fail"]);
      const e = (o.events[0] as Extract<Event, { t: "fail" }>).error;
      expect(e).toBeInstanceOf(ProtocolMismatchError);
      expect(e.message).toContain("Sec-WebSocket-Accept");
      expect(e.message).toContain(acceptOf(o.key));
      expect(o.w.isOpen).toBe(false);
      // Nothing after a failed handshake is read.
      o.w.push(encodeFrame(Opcode.Text, te("late")));
      expect(o.events.length).toBe(1);
    }
  });

  test("a refusal names its status, the path and what the body said", () => {
    const o = opened("/ws/nope");
    o.w.push(te("HTTP/1.1 404 Not Found\r\ncontent-type: text/plain\r\ncontent-length: 10\r\n\r\nNot Found\n"));
    const e = (o.events[0] as Extract<Event, { t: "fail" }>).error as ClientError;
    expect(e).toBeInstanceOf(ClientError);
    expect(e.code).toBe("http_404");
    expect(e.message).toBe("the server refused the WebSocket upgrade of /ws/nope: 404 Not Found: Not Found");
    const v = opened();
    v.w.push(te("HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\ncontent-length: 0\r\n\r\n"));
    expect((v.events[0] as Extract<Event, { t: "fail" }>).error.message).toContain("426 Upgrade Required");
  });

  test("an answer that is not HTTP, lacks Upgrade, or picks an extension we did not offer is refused", () => {
    const cases: [(key: string) => Uint8Array, RegExp][] = [
      (() => [() => encodeFrame(Opcode.Text, te("x\r\n\r\n")), /not HTTP/] as [(key: string) => Uint8Array, RegExp])(),
      [(k) => te(`HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptOf(k)}\r\n\r\n`), /Upgrade: websocket/],
      [(k) => switching(k, "Sec-WebSocket-Extensions: permessage-deflate\r\n"), /sec-websocket-extensions "permessage-deflate", which we did not offer/],
      [(k) => switching(k, "Sec-WebSocket-Protocol: chat\r\n"), /sec-websocket-protocol/],
    ];
    for (const [answer, re] of cases) {
      const o = opened();
      o.w.push(answer(o.key));
      expect(kinds(o.events)).toEqual(["fail"]);
      expect((o.events[0] as Extract<Event, { t: "fail" }>).error.message).toMatch(re);
    }
    const big = opened();
    big.w.push(te(`HTTP/1.1 101 Switching Protocols\r\nX: ${"y".repeat(17000)}`));
    expect((big.events[0] as Extract<Event, { t: "fail" }>).error.message).toContain("no end of head");
  });
});

describe("WsWire: frames", () => {
  function open(path = "/ws/echo") {
    const o = opened(path);
    o.w.push(switching(o.key));
    o.events.length = 0;
    return o;
  }

  test("every frame is masked with its own key, in all three length forms; remask draws a new one", () => {
    const { w } = open();
    const sizes = [0, 5, 125, 126, 65535, 65536, 70000];
    const frames = sizes.map((n) => w.echo("é".repeat(n >> 1) + "x".repeat(n & 1)).bytes);
    for (const f of frames) expect(f[1]! & 0x80).toBe(0x80);
    const got = serverReads(concat(...frames));
    expect(got.map(([op, s]) => [op, enc.encode(s).length])).toEqual(sizes.map((n) => [Opcode.Text, n]));
    // Masked bytes differ from the payload (the key is not zero except by a 2^-32 chance).
    const hi = w.echo("hello hello hello").bytes;
    expect(dec.decode(hi.subarray(6))).not.toBe("hello hello hello");
    const keys = new Set(frames.map(keyOfFrame));
    expect(keys.size).toBe(frames.length);
    const again = hi.slice();
    const before = keyOfFrame(again);
    remask(again);
    expect(keyOfFrame(again)).not.toBe(before);
    expect(serverReads(again)).toEqual([[Opcode.Text, "hello hello hello"]]);
    // beforeWrite (what the Client calls before every write) remasks too.
    const k2 = keyOfFrame(again);
    w.beforeWrite("echo", { bytes: again, expectsReply: true });
    expect(keyOfFrame(again)).not.toBe(k2);
    expect(serverReads(again)).toEqual([[Opcode.Text, "hello hello hello"]]);
  });

  test("applyMask is its own inverse at any length and offset", () => {
    for (let n = 0; n < 11; n++) {
      const b = Uint8Array.from({ length: n + 3 }, (_, i) => i * 7);
      const orig = b.slice();
      applyMask(b, 3, b.length, 0xdeadbeef);
      if (n > 0) expect(b.subarray(3)).not.toEqual(orig.subarray(3));
      expect(b.subarray(0, 3)).toEqual(orig.subarray(0, 3));
      applyMask(b, 3, b.length, 0xdeadbeef);
      expect(b).toEqual(orig);
    }
  });

  test("a fragmented message with a ping between its fragments: the ping is answered at once, the message delivered whole", () => {
    const run = (chunks: Uint8Array[]) => {
      const o = open();
      const e = o.w.echo("abcdefghij");
      o.w.requestWritten("echo", e);
      pushThroughSharedBuffer(chunks, (c) => o.w.push(c));
      return o.events;
    };
    const bytes = concat(
      encodeFrame(Opcode.Text, te("abc"), false),
      encodeFrame(Opcode.Ping, te("are you there")),
      encodeFrame(Opcode.Continuation, te("defg"), false),
      encodeFrame(Opcode.Continuation, te("hij"), true),
    );
    const events = run([bytes]);
    expect(kinds(events)).toEqual(["write", "reply"]);
    expect(serverReads(writes(events)[0]!)).toEqual([[Opcode.Pong, "are you there"]]);
    expect((events[1] as Extract<Event, { t: "reply" }>).r).toEqual({ op: "echo", bytes: null, text: "abcdefghij" });
    const strip = (ev: Event[]) => ev.map((e) => (e.t === "write" ? serverReads(e.bytes) : e));
    expect(strip(run(byteByByte(bytes)))).toEqual(strip(events));
  });

  test("a 3 MiB binary message in 64 KiB fragments arrives intact, as a copy", () => {
    const o = open();
    const big = Uint8Array.from({ length: 3 * 1024 * 1024 }, (_, i) => (i * 31 + (i >> 9)) & 0xff);
    const e = o.w.echo(big);
    o.w.requestWritten("echo", e);
    const parts: Uint8Array[] = [];
    for (let at = 0; at < big.length; at += 65536) {
      parts.push(encodeFrame(at === 0 ? Opcode.Binary : Opcode.Continuation, big.subarray(at, at + 65536), at + 65536 >= big.length));
    }
    pushThroughSharedBuffer(splitEvery(concat(...parts), 100_000), (c) => o.w.push(c));
    expect(kinds(o.events)).toEqual(["reply"]);
    const r = (o.events[0] as Extract<Event, { t: "reply" }>).r as Extract<Reply, { op: "echo" }>;
    expect(r.bytes!.length).toBe(big.length);
    expect(Buffer.compare(r.bytes!, big)).toBe(0);
  });

  test("a pong answers the ping with its payload (and those before it); an unsolicited pong is ignored", () => {
    const o = open("/ws/chat");
    const p1 = o.w.ping(new Uint8Array(0));
    const p2 = o.w.ping(te("mine"));
    expect(serverReads(concat(p1.bytes, p2.bytes))).toEqual([[Opcode.Ping, "bunpoll-client ping 1"], [Opcode.Ping, "mine"]]);
    o.w.requestWritten("ping", p1);
    o.w.requestWritten("ping", p2);
    o.w.push(encodeFrame(Opcode.Pong, te("heartbeat")));
    expect(o.events).toEqual([]);
    o.w.push(encodeFrame(Opcode.Pong, te("mine"))); // the server answered only the latest
    expect(o.events.map((e) => e.t === "reply" && e.r.op)).toEqual(["ping", "ping"]);
    expect(() => o.w.ping(new Uint8Array(126))).toThrow(/at most 125 bytes/);
  });

  test("the server's close: answered with its code, the stream ended, how it closed remembered; nothing is read after", () => {
    const o = open();
    o.w.push(concat(encodeFrame(Opcode.Close, Uint8Array.of(0x03, 0xe9, ...te("server shutting down"))), encodeFrame(Opcode.Text, te("after"))));
    expect(kinds(o.events)).toEqual(["write", "end"]);
    expect(serverReads(writes(o.events)[0]!)).toEqual([[Opcode.Close, "1001 "]]);
    expect(o.w.peerClose).toBe("1001 (going away): server shutting down");
    expect(() => o.w.echo("x")).toThrow(ConnectionClosedError);
    // A close without a code is answered without one.
    const bare = open();
    bare.w.push(encodeFrame(Opcode.Close));
    expect(serverReads(writes(bare.events)[0]!)).toEqual([[Opcode.Close, "1005 "]]);
    expect(writes(bare.events)[0]!.length).toBe(6); // header + key, no payload
  });

  test("our close: a 1000 close frame once; what arrives before the answer is dropped; the answer ends the stream", () => {
    const o = open();
    const e = o.w.echo("pending");
    o.w.requestWritten("echo", e);
    const bye = o.w.farewell()!;
    expect(serverReads(bye)).toEqual([[Opcode.Close, "1000 "]]);
    expect(o.w.farewell()).toBeNull();
    o.w.push(concat(encodeFrame(Opcode.Text, te("pending")), encodeFrame(Opcode.Ping, te("p")), encodeFrame(Opcode.Close, Uint8Array.of(0x03, 0xe8))));
    expect(kinds(o.events)).toEqual(["end"]);
    expect(o.w.peerClose).toBeNull();
  });

  test("a server that breaks the protocol (a masked frame, a reserved opcode) gets a close frame with the code, then the connection fails", () => {
    const masked = open();
    const f = encodeClientFrame(Opcode.Text, te("masked by a server"));
    masked.w.push(f);
    expect(kinds(masked.events)).toEqual(["fail"]);
    const ev = masked.events[0] as Extract<Event, { t: "fail" }>;
    expect(ev.error).toBeInstanceOf(ProtocolMismatchError);
    expect(ev.error.message).toContain("a masked frame from a server");
    expect(serverReads(ev.farewell!)).toEqual([[Opcode.Close, "1002 a masked frame from a server"]]);
    const reserved = open();
    reserved.w.push(Uint8Array.of(0x83, 0x00));
    expect(serverReads((reserved.events[0] as Extract<Event, { t: "fail" }>).farewell!)[0]![1]).toMatch(/^1002 reserved opcode 3/);
  });

  test("server FIN without a close frame is an abnormal closure (1006)", () => {
    const o = open();
    o.w.finish();
    expect(o.w.peerClose).toBe("no close frame (1006, abnormal closure)");
  });

  test("the chat: text is `<id>: text` or `<id> (direct): text`; broadcast is unacknowledged text; echo is refused", () => {
    const o = open("/ws/chat?nick=a");
    o.w.push(concat(encodeFrame(Opcode.Text, te("12: hi all")), encodeFrame(Opcode.Text, te("7 (direct): psst")), encodeFrame(Opcode.Text, te("no id here"))));
    expect(o.events.map((e) => e.t === "message" && [e.m.kind, e.m.fromId, e.m.text])).toEqual([
      ["broadcast", 12, "hi all"],
      ["direct", 7, "psst"],
      ["broadcast", null, "no id here"],
    ]);
    const b = o.w.broadcast(te("from bytes"));
    expect(b.expectsReply).toBe(false);
    expect(serverReads(b.bytes)).toEqual([[Opcode.Text, "from bytes"]]);
    expect(() => o.w.echo("x")).toThrow(/echo needs an echo endpoint/);
    expect(() => open("/ws/echo").w.broadcast("x")).toThrow(/broadcast needs the chat endpoint \/ws\/chat/);
    expect(() => new WsWire(recorder().sink, { host: "h", port: 1, path: "/a b" })).toThrow(/visible ASCII/);
  });
});

describe("Client over WsWire", () => {
  const reactorStub = { trackAsync() {} } as unknown as Reactor;

  test("handshake, echo (masked on the wire), then close(): a close frame, and the stream ends when the server answers", async () => {
    const client = new Client("ws", "127.0.0.1", 8080, 0, reactorStub, "/ws/echo");
    const handler = client.handler();
    const conn = new FakeConnection<unknown>({ handler });
    client.attach(conn);
    const shaking = client.handshake(undefined);
    const key = keyOf(conn.take());
    deliver(handler, conn, switching(key), [7]);
    await shaking;
    const p = client.echo("héllo");
    const sent = conn.take();
    expect(serverReads(sent)).toEqual([[Opcode.Text, "héllo"]]);
    deliver(handler, conn, encodeFrame(Opcode.Text, te("héllo")), [3]);
    expect(await p).toBe("héllo");
    const closing = client.close();
    expect(serverReads(conn.take())).toEqual([[Opcode.Close, "1000 "]]);
    expect(conn.endCalls).toBe(0); // waiting for the server's answer
    deliver(handler, conn, encodeFrame(Opcode.Close, Uint8Array.of(0x03, 0xe8)));
    expect(conn.endCalls).toBe(1);
    conn.finishEnd();
    await closing;
    expect((await client.closed).byClient).toBe(true);
  });
});

function splitEvery(bytes: Uint8Array, n: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let at = 0; at < bytes.length; at += n) out.push(bytes.subarray(at, at + n));
  return out;
}
