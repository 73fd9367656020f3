// src/hub.ts: client registry, broadcast and routing, alone and across the three protocols.

import { describe, expect, test } from "bun:test";
import { formatHostPort as formatAddress } from "../../ffi/index.ts";
import { Hub, HubMessage, SendResult, type HubEncoder } from "../../src/hub.ts";
import { decodeFrames, decodeIdAndPayload, decodeU32Body, encodeBroadcast, encodeSendTo, MsgType } from "../../src/protocols/codec/framed.ts";
import { decodeJsonFrames, encodeJsonFrame } from "../../src/protocols/codec/json.ts";
import { createProtocolContext } from "../../src/protocols/context.ts";
import { createFramedProtocol } from "../../src/protocols/framed.ts";
import { createJsonProtocol } from "../../src/protocols/json.ts";
import { createLineProtocol } from "../../src/protocols/line.ts";
import { StreamState } from "../../src/stream/stream.ts";
import { deliver, FakeConnection, openConnection } from "../util/fake-connection.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

/** Writes "<tag>:<from>:<text>" and counts its calls; can refuse (-1). */
class TagEncoder implements HubEncoder {
  out = new Uint8Array(0);
  calls = 0;
  refuse = false;
  constructor(readonly tag: string) {}
  encodeBroadcast(msg: HubMessage): number {
    return this.encode("b", msg);
  }
  encodeDirect(msg: HubMessage): number {
    return this.encode("d", msg);
  }
  private encode(kind: string, msg: HubMessage): number {
    this.calls++;
    if (this.refuse) return -1;
    this.out = enc(`${this.tag}${kind}:${msg.from!.id}:${msg.contentText()}`);
    return this.out.length;
  }
}

function hubWith(...tags: string[]) {
  const hub = new Hub();
  const encoders = tags.map((t) => new TagEncoder(t));
  const channels = encoders.map((e, i) => hub.channel(tags[i]!, e));
  const add = (channel = 0, joined = true) => {
    const conn = new FakeConnection();
    return { conn, m: hub.add(conn, channels[channel]!, formatAddress(conn.remoteAddress, conn.remotePort), joined) };
  };
  return { hub, encoders, channels, add };
}

describe("Hub: registry", () => {
  test("a member's id is its stream's id: one id per client in logs and on the wire", () => {
    const { hub, add } = hubWith("x");
    const a = add();
    const b = add();
    expect(a.m.id).toBe(a.conn.id);
    expect(b.m.id).toBe(b.conn.id);
    expect(hub.get(b.conn.id)).toBe(b.m);
  });

  test("channel() is idempotent per protocol name", () => {
    const hub = new Hub();
    const first = new TagEncoder("1");
    expect(hub.channel("framed", first)).toBe(0);
    expect(hub.channel("json", new TagEncoder("j"))).toBe(1);
    expect(hub.channel("framed", new TagEncoder("2"))).toBe(0);
  });

  test("size counts joined members; get/resolve only find joined ones", () => {
    const { hub, add } = hubWith("x");
    const a = add();
    const pending = add(0, false);
    expect(hub.size).toBe(1);
    expect(hub.registered).toBe(2);
    expect(hub.get(pending.m.id)).toBeUndefined();
    expect(hub.resolve(pending.m.label)).toBeUndefined();
    hub.join(pending.m);
    expect(hub.get(pending.m.id)).toBe(pending.m);
    expect(hub.resolve(a.m.id)).toBe(a.m);
    expect(hub.resolve(String(a.m.id))).toBe(a.m);
    expect(hub.resolve(a.m.label)).toBe(a.m);
    for (const bad of [1.5, null, {}, "nobody:1", "", -1]) expect(hub.resolve(bad)).toBeUndefined();
    hub.remove(a.m);
    hub.remove(a.m); // idempotent
    expect(hub.size).toBe(1);
    expect(hub.resolve(a.m.label)).toBeUndefined();
  });

  test("formatAddress brackets IPv6", () => {
    expect(formatAddress("1.2.3.4", 80)).toBe("1.2.3.4:80");
    expect(formatAddress("::1", 80)).toBe("[::1]:80");
  });
});

describe("Hub: broadcast", () => {
  test("encodes once per channel, lazily, and skips sender, unjoined and closing members", () => {
    const { hub, encoders, add } = hubWith("a", "b", "c");
    const from = add(0);
    const a2 = add(0);
    const a3 = add(0);
    const b1 = add(1);
    const unjoined = add(1, false);
    const closing = add(1);
    closing.conn.end();
    const n = hub.broadcastBytes(from.m, enc("hi"), 0, 2);
    expect(n).toBe(3);
    expect(encoders.map((e) => e.calls)).toEqual([1, 1, 0]); // no "c" members: never encoded
    expect(dec(a2.conn.output())).toBe(`ab:${from.m.id}:hi`);
    expect(a3.conn.sources[0]).toBe(a2.conn.sources[0]!);
    expect(dec(b1.conn.output())).toBe(`bb:${from.m.id}:hi`);
    expect(from.conn.writes.length + unjoined.conn.writes.length + closing.conn.writes.length).toBe(0);
  });

  test("a channel whose encoder refuses is skipped and not counted", () => {
    const { hub, encoders, add } = hubWith("a", "b");
    const from = add(0);
    add(0);
    const b = add(1);
    encoders[1]!.refuse = true;
    expect(hub.broadcastBytes(from.m, enc("x"), 0, 1)).toBe(1);
    expect(b.conn.writes.length).toBe(0);
  });

  test("members removed during the loop (slow consumers) are skipped and compacted after", () => {
    const { hub, add } = hubWith("a");
    const from = add();
    const victims = [add(), add(), add()];
    const last = add();
    // The first recipient's write closes a later, not yet visited member, and itself.
    victims[0]!.conn.afterWrite = () => {
      hub.remove(victims[2]!.m);
      hub.remove(victims[0]!.m);
    };
    expect(hub.broadcastBytes(from.m, enc("x"), 0, 1)).toBe(3);
    expect(victims[2]!.conn.writes.length).toBe(0);
    expect(last.conn.writes.length).toBe(1);
    expect(hub.registered).toBe(3);
    // Exactly one delivery each next time, nobody twice.
    victims[0]!.conn.afterWrite = null;
    for (const x of [victims[1]!, last]) x.conn.take();
    expect(hub.broadcastBytes(from.m, enc("y"), 0, 1)).toBe(2);
    expect(victims[1]!.conn.writes.length).toBe(1);
    expect(last.conn.writes.length).toBe(1);
  });

  test("a nested broadcast fails loudly instead of corrupting shared buffers", () => {
    const { hub, add } = hubWith("a");
    const from = add();
    const r = add();
    r.conn.afterWrite = () => hub.broadcastBytes(from.m, enc("inner"), 0, 5);
    expect(() => hub.broadcastBytes(from.m, enc("outer"), 0, 5)).toThrow(/nested/);
    // r got the outer message before its write handler tried to nest.
    expect(dec(r.conn.take())).toBe(`ab:${from.m.id}:outer`);
    r.conn.afterWrite = () => hub.sendValue(from.m, r.m, "inner");
    expect(() => hub.broadcastBytes(from.m, enc("outer"), 0, 5)).toThrow(/nested/);
    // The hub is usable afterwards.
    r.conn.afterWrite = null;
    expect(hub.broadcastBytes(from.m, enc("again"), 0, 5)).toBe(1);
  });

  test("the message is cleared afterwards: no reference to the receive buffer survives", () => {
    const { hub, add } = hubWith("a");
    const from = add();
    add();
    hub.broadcastBytes(from.m, enc("x"), 0, 1);
    const scratch = (hub as unknown as { scratch: HubMessage }).scratch;
    expect(scratch.bytes).toBeNull();
    expect(scratch.from).toBeNull();
  });

  test("direct: Ok, NoSuchClient for a closing target, TooLarge when the encoder refuses (hub results, not protocol error codes)", () => {
    const { hub, encoders, add } = hubWith("a");
    const from = add();
    const to = add();
    expect(hub.sendValue(from.m, to.m, "hey")).toBe(SendResult.Ok);
    expect(dec(to.conn.take())).toBe(`ad:${from.m.id}:hey`);
    encoders[0]!.refuse = true;
    expect(hub.sendValue(from.m, to.m, "hey")).toBe(SendResult.TooLarge);
    encoders[0]!.refuse = false;
    to.conn.state = StreamState.Flushing;
    expect(hub.sendValue(from.m, to.m, "hey")).toBe(SendResult.NoSuchClient);
  });
});

describe("HubMessage conversions", () => {
  const from = new Hub();
  from.channel("x", new TagEncoder("x"));
  const m = from.add(new FakeConnection(), 0, "l");

  test("bytes -> JSON content is the UTF-8 text (invalid bytes become U+FFFD)", () => {
    const msg = new HubMessage().setBytes(m, Uint8Array.of(0x68, 0xff, 0x69), 0, 3);
    expect(msg.jsonContent()).toBe("h\uFFFDi");
  });

  test("JSON value -> bytes: a string's UTF-8, anything else its JSON text", () => {
    const s = new HubMessage().setValue(m, "é");
    s.ensureBytes();
    expect(Array.from(s.bytes!.subarray(s.offset, s.offset + s.length))).toEqual([0xc3, 0xa9]);
    const o = new HubMessage().setValue(m, { a: [1] });
    o.ensureBytes();
    expect(dec(o.bytes!.subarray(o.offset, o.offset + o.length))).toBe('{"a":[1]}');
    expect(o.jsonContent()).toEqual({ a: [1] });
  });
});

describe("Hub across protocols (one context, three listeners)", () => {
  function world() {
    const ctx = createProtocolContext();
    const framed = createFramedProtocol(ctx);
    const json = createJsonProtocol(ctx);
    const line = createLineProtocol(ctx);
    const F = openConnection(framed);
    const J = openConnection(json, { remoteAddress: "10.1.1.1", remotePort: 9000 });
    const L = openConnection(line);
    return { ctx, framed, json, line, F, J, L };
  }

  test("framed BROADCAST reaches json and line clients, each in its own format", () => {
    const { framed, F, J, L } = world();
    deliver(framed, F, encodeBroadcast("hi there"));
    expect(decodeU32Body(decodeFrames(F.take())[0]!.body)).toBe(2);
    expect(decodeJsonFrames(J.take())).toEqual([
      expect.objectContaining({ type: "broadcast", content: "hi there", from: F.data.member.label, from_id: F.data.member.id }),
    ]);
    expect(dec(L.take())).toBe(`${F.data.member.id}: hi there\n`);
  });

  test("json broadcast of an object reaches framed clients as its JSON text", () => {
    const { json, F, J, L } = world();
    deliver(json, J, encodeJsonFrame({ type: "broadcast", content: { x: 1 } }));
    expect(decodeJsonFrames(J.take())[0]).toMatchObject({ type: "broadcast_sent", recipients: 2 });
    const f = decodeFrames(F.take());
    expect(f[0]!.type).toBe(MsgType.BROADCAST_MSG);
    expect(decodeIdAndPayload(f[0]!.body)).toEqual({ id: J.data.member.id, payload: enc('{"x":1}') });
    expect(dec(L.take())).toBe(`${J.data.member.id}: {"x":1}\n`);
  });

  test("a chat line reaches framed and json clients", () => {
    const { line, F, J, L } = world();
    deliver(line, L, enc("yo\n"));
    expect(decodeIdAndPayload(decodeFrames(F.take())[0]!.body)).toEqual({ id: L.data.member.id, payload: enc("yo") });
    expect(decodeJsonFrames(J.take())[0]).toMatchObject({ type: "broadcast", content: "yo", from_id: L.data.member.id });
  });

  test("newlines in a framed body cannot break line framing; invalid UTF-8 reaches json as U+FFFD", () => {
    const { framed, F, J, L } = world();
    deliver(framed, F, encodeBroadcast(Uint8Array.of(0x61, 0x0a, 0x62, 0x0d, 0xff)));
    expect(Array.from(L.take())).toEqual([...enc(`${F.data.member.id}: `), 0x61, 0x20, 0x62, 0x20, 0xff, 0x0a]);
    expect(decodeJsonFrames(J.take())[0]!.content).toBe("a\nb\r\uFFFD");
  });

  test("direct messages across protocols", () => {
    const { framed, json, F, J, L } = world();
    deliver(json, J, encodeJsonFrame({ type: "send", to: F.data.member.id, content: "to framed" }));
    expect(decodeIdAndPayload(decodeFrames(F.take())[0]!.body)).toEqual({ id: J.data.member.id, payload: enc("to framed") });
    deliver(framed, F, encodeSendTo(J.data.member.id, "to json"));
    expect(decodeJsonFrames(J.take())).toEqual([
      { type: "sent", to: F.data.member.id },
      expect.objectContaining({ type: "message", content: "to json", from: F.data.member.label }),
    ]);
    deliver(framed, F, encodeSendTo(L.data.member.id, "to line"));
    expect(dec(L.take())).toBe(`${F.data.member.id} (direct): to line\n`);
  });

  test("a json broadcast too big for a framed frame skips framed clients and says so in the count", () => {
    const { json, F, J, L } = world();
    deliver(json, J, encodeJsonFrame({ type: "broadcast", content: "x".repeat(70000) }));
    expect(decodeJsonFrames(J.take())[0]).toMatchObject({ recipients: 1 });
    expect(F.writes.length).toBe(0);
    expect(L.take().length).toBe(String(J.data.member.id).length + 2 + 70000 + 1);
  });

  test("two framed listeners share one channel: one encoding for both", () => {
    const { ctx, json, J } = world();
    const framed2 = createFramedProtocol(ctx);
    const framed3 = createFramedProtocol(ctx);
    const a = openConnection(framed2);
    const b = openConnection(framed3);
    deliver(json, J, encodeJsonFrame({ type: "broadcast", content: "s" }));
    expect(a.sources[0]).toBe(b.sources[0]!);
  });
});
