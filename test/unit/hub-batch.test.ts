// src/hub.ts fan-out batching: inside a beginBatch()/endBatch() scope, consecutive
// broadcasts from one sender reach each recipient in one write, flushed before anything
// that could change the recipient set or reorder a recipient's stream.

import { describe, expect, test } from "bun:test";
import { formatHostPort as formatAddress } from "../../ffi/index.ts";
import { Hub, HubMessage, SendResult, SHARE_MIN_BYTES, type HubEncoder, type HubOptions } from "../../src/hub.ts";
import { decodeFrames, decodeIdAndPayload, decodeU32Body, encodeBroadcast, encodeSendTo, MsgType } from "../../src/protocols/codec/framed.ts";
import { decodeJsonFrames, encodeJsonFrame } from "../../src/protocols/codec/json.ts";
import { createProtocolContext } from "../../src/protocols/context.ts";
import { createFramedProtocol } from "../../src/protocols/framed.ts";
import { createJsonProtocol } from "../../src/protocols/json.ts";
import { createLineProtocol } from "../../src/protocols/line.ts";
import { StreamState } from "../../src/stream/stream.ts";
import { concat } from "../util/chunking.ts";
import { deliver, FakeConnection, openConnection } from "../util/fake-connection.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

/**
 * Writes "<tag><b|d>:<from>:<text>;" into one reused buffer (like the real encoders);
 * refuses (-1) texts listed in `refuse`; can throw on a text.
 */
class TagEncoder implements HubEncoder {
  out = new Uint8Array(4096);
  calls = 0;
  readonly refuse = new Set<string>();
  throwOn: string | null = null;
  constructor(readonly tag: string) {}
  encodeBroadcast(msg: HubMessage): number {
    return this.encode("b", msg);
  }
  encodeDirect(msg: HubMessage): number {
    return this.encode("d", msg);
  }
  private encode(kind: string, msg: HubMessage): number {
    this.calls++;
    const text = msg.contentText();
    if (text === this.throwOn) throw new Error(`encoder ${this.tag} failed`);
    if (this.refuse.has(text)) return -1;
    const b = enc(`${this.tag}${kind}:${msg.from!.id}:${text};`);
    if (b.length > this.out.length) this.out = new Uint8Array(b.length * 2);
    this.out.fill(0xee); // stale bytes past the length must never be sent
    this.out.set(b);
    return b.length;
  }
}

function hubWith(tags: string[], options?: HubOptions) {
  const hub = new Hub(options);
  const encoders = tags.map((t) => new TagEncoder(t));
  const channels = encoders.map((e, i) => hub.channel(tags[i]!, e));
  let ids = 0; // ids 1, 2, ...: the bounds tests count encoded bytes, which include the sender's id
  const add = (channel = 0, joined = true) => {
    const conn = new FakeConnection({ id: ++ids });
    return { conn, m: hub.add(conn, channels[channel]!, formatAddress(conn.remoteAddress, conn.remotePort), joined) };
  };
  const say = (from: { m: import("../../src/hub.ts").HubMember }, text: string) => hub.broadcastBytes(from.m, enc(text), 0, enc(text).length);
  return { hub, encoders, channels, add, say };
}

/** Each recorded write as text. */
const writes = (c: FakeConnection) => c.writes.map(dec);

describe("Hub batching: scope", () => {
  test("outside a scope a broadcast is written at once, one write per message", () => {
    const { add, say } = hubWith(["a"]);
    const from = add();
    const r = add();
    expect(say(from, "1")).toBe(1);
    expect(writes(r.conn)).toEqual([`ab:${from.m.id}:1;`]);
    say(from, "2");
    expect(writes(r.conn)).toEqual([`ab:${from.m.id}:1;`, `ab:${from.m.id}:2;`]);
  });

  test("inside a scope: nothing is written until endBatch, then one write per recipient, in order", () => {
    const { hub, add, say } = hubWith(["a"]);
    const from = add();
    const r1 = add();
    const r2 = add();
    hub.beginBatch();
    for (const t of ["1", "2", "3"]) expect(say(from, t)).toBe(2);
    expect(r1.conn.writeCalls + r2.conn.writeCalls + from.conn.writeCalls).toBe(0);
    hub.endBatch();
    const id = from.m.id;
    expect(writes(r1.conn)).toEqual([`ab:${id}:1;ab:${id}:2;ab:${id}:3;`]);
    expect(writes(r2.conn)).toEqual(writes(r1.conn));
    // Every recipient of a channel is written from the same arena.
    expect(r1.conn.sources[0]).toBe(r2.conn.sources[0]!);
    expect(from.conn.writeCalls).toBe(0);
    // The arena is reused: the next batch starts empty.
    hub.beginBatch();
    say(from, "4");
    hub.endBatch();
    expect(writes(r1.conn)[1]).toBe(`ab:${id}:4;`);
  });

  test("nested scopes flush at the outermost endBatch; an unmatched endBatch throws", () => {
    const { hub, add, say } = hubWith(["a"]);
    const from = add();
    const r = add();
    hub.beginBatch();
    say(from, "1");
    hub.beginBatch();
    say(from, "2");
    hub.endBatch();
    expect(r.conn.writeCalls).toBe(0);
    hub.endBatch();
    expect(writes(r.conn)).toEqual([`ab:${from.m.id}:1;ab:${from.m.id}:2;`]);
    expect(() => hub.endBatch()).toThrow(/without beginBatch/);
    // Still outside a scope: immediate.
    say(from, "3");
    expect(r.conn.writes.length).toBe(2);
  });
});

describe("Hub batching: recipient counts", () => {
  test("the same counts as without batching: sender, unjoined, closing and refusing channels excluded", () => {
    const scenario = (batched: boolean) => {
      const { hub, encoders, add, say } = hubWith(["a", "b", "c"]);
      const from = add(0);
      add(0);
      add(0);
      add(1);
      add(1, false);
      add(1).conn.end();
      add(2);
      add(2);
      encoders[2]!.refuse.add("2");
      if (batched) hub.beginBatch();
      const counts = ["1", "2", "3"].map((t) => say(from, t));
      if (batched) hub.endBatch();
      return { counts, calls: encoders.map((e) => e.calls) };
    };
    const plain = scenario(false);
    expect(plain.counts).toEqual([5, 3, 5]);
    expect(scenario(true)).toEqual(plain);
  });

  test("channels without recipients are never encoded", () => {
    const { hub, encoders, add, say } = hubWith(["a", "b"]);
    const from = add(0);
    add(0);
    hub.beginBatch();
    say(from, "x");
    hub.endBatch();
    expect(encoders.map((e) => e.calls)).toEqual([1, 0]);
  });

  test("a recipient Closing at flush time was counted but is skipped", () => {
    const { hub, add, say } = hubWith(["a"]);
    const from = add();
    const r1 = add();
    const r2 = add();
    hub.beginBatch();
    expect(say(from, "1")).toBe(2);
    r1.conn.state = StreamState.Flushing;
    hub.endBatch();
    expect(r1.conn.writeCalls).toBe(0);
    expect(writes(r2.conn)).toEqual([`ab:${from.m.id}:1;`]);
  });
});

describe("Hub batching: ordering", () => {
  test("broadcasts then a direct message: the target sees them in that order", () => {
    const { hub, add, say } = hubWith(["a"]);
    const from = add();
    const to = add();
    const other = add();
    const id = from.m.id;
    hub.beginBatch();
    say(from, "1");
    say(from, "2");
    expect(hub.sendValue(from.m, to.m, "dm")).toBe(SendResult.Ok);
    say(from, "3");
    hub.endBatch();
    expect(writes(to.conn)).toEqual([`ab:${id}:1;ab:${id}:2;`, `ad:${id}:dm;`, `ab:${id}:3;`]);
    // The flush before a direct message reaches every recipient, not only the target.
    expect(writes(other.conn)).toEqual([`ab:${id}:1;ab:${id}:2;`, `ab:${id}:3;`]);
  });

  test("sendBytes flushes too, even when the target is not in the batch's channel", () => {
    const { hub, add, say } = hubWith(["a", "b"]);
    const from = add(0);
    const r = add(0);
    const to = add(1);
    hub.beginBatch();
    say(from, "1");
    expect(hub.sendBytes(from.m, to.m, enc("dm"), 0, 2)).toBe(SendResult.Ok);
    expect(writes(r.conn)).toEqual([`ab:${from.m.id}:1;`]);
    hub.endBatch();
    expect(writes(to.conn)).toEqual([`bb:${from.m.id}:1;`, `bd:${from.m.id}:dm;`]);
  });

  test("two senders interleaved: a different sender flushes the pending batch first", () => {
    const { hub, add, say } = hubWith(["a"]);
    const A = add();
    const B = add();
    const C = add();
    const a = A.m.id;
    const b = B.m.id;
    hub.beginBatch();
    say(A, "1");
    say(A, "2");
    say(B, "3");
    say(A, "4");
    hub.endBatch();
    expect(writes(C.conn)).toEqual([`ab:${a}:1;ab:${a}:2;`, `ab:${b}:3;`, `ab:${a}:4;`]);
    expect(writes(B.conn)).toEqual([`ab:${a}:1;ab:${a}:2;`, `ab:${a}:4;`]);
    expect(writes(A.conn)).toEqual([`ab:${b}:3;`]);
  });
});

describe("Hub batching: membership changes flush first", () => {
  test("add: existing recipients get the pending batch first, the newcomer only what follows", () => {
    const { hub, add, say } = hubWith(["a"]);
    const from = add();
    const r = add();
    hub.beginBatch();
    expect(say(from, "1")).toBe(1);
    expect(r.conn.writeCalls).toBe(0);
    const late = add();
    expect(writes(r.conn)).toEqual([`ab:${from.m.id}:1;`]);
    expect(say(from, "2")).toBe(2);
    hub.endBatch();
    expect(writes(late.conn)).toEqual([`ab:${from.m.id}:2;`]);
    expect(writes(r.conn)).toEqual([`ab:${from.m.id}:1;`, `ab:${from.m.id}:2;`]);
  });

  test("join: a member authenticated mid-batch gets nothing it was not counted for", () => {
    const { hub, add, say } = hubWith(["a"]);
    const from = add();
    const r = add();
    const pending = add(0, false);
    hub.beginBatch();
    expect(say(from, "1")).toBe(1);
    hub.join(pending.m);
    expect(r.conn.writes.length).toBe(1);
    expect(say(from, "2")).toBe(2);
    hub.endBatch();
    expect(writes(pending.conn)).toEqual([`ab:${from.m.id}:2;`]);
  });

  test("remove: the removed member gets what it was counted for, nothing after", () => {
    const { hub, add, say } = hubWith(["a"]);
    const from = add();
    const r = add();
    const gone = add();
    hub.beginBatch();
    expect(say(from, "1")).toBe(2);
    hub.remove(gone.m);
    expect(writes(gone.conn)).toEqual([`ab:${from.m.id}:1;`]);
    expect(say(from, "2")).toBe(1);
    hub.endBatch();
    expect(writes(gone.conn).length).toBe(1);
    expect(writes(r.conn)).toEqual([`ab:${from.m.id}:1;`, `ab:${from.m.id}:2;`]);
    expect(hub.registered).toBe(2);
  });

  test("the sender's own removal flushes its batch", () => {
    const { hub, add, say } = hubWith(["a"]);
    const from = add();
    const r = add();
    hub.beginBatch();
    say(from, "1");
    hub.remove(from.m);
    expect(writes(r.conn)).toEqual([`ab:${from.m.id}:1;`]);
    hub.endBatch();
    expect(r.conn.writes.length).toBe(1);
  });
});

describe("Hub batching: per channel", () => {
  test("a message one channel cannot encode is left out of that channel's arena only", () => {
    const { hub, encoders, add, say } = hubWith(["a", "b"]);
    const from = add(0);
    const ra = add(0);
    const rb = add(1);
    encoders[1]!.refuse.add("2");
    hub.beginBatch();
    expect(["1", "2", "3"].map((t) => say(from, t))).toEqual([2, 1, 2]);
    hub.endBatch();
    const id = from.m.id;
    expect(writes(ra.conn)).toEqual([`ab:${id}:1;ab:${id}:2;ab:${id}:3;`]);
    expect(writes(rb.conn)).toEqual([`bb:${id}:1;bb:${id}:3;`]);
  });

  test("a channel that refuses everything gets no write at all", () => {
    const { hub, encoders, add, say } = hubWith(["a", "b"]);
    const from = add(0);
    add(0);
    const rb = add(1);
    encoders[1]!.refuse.add("1");
    hub.beginBatch();
    expect(say(from, "1")).toBe(1);
    hub.endBatch();
    expect(rb.conn.writeCalls).toBe(0);
  });
});

describe("Hub batching: bounds", () => {
  test("an append that would pass batchLimit flushes first: writes stay within the limit, bytes in order", () => {
    // "ab:1:NNNNNNNNNN;" is 16 bytes: 4 per 64-byte batch.
    const { hub, add, say } = hubWith(["a"], { batchLimit: 64, batchDirectMax: 32 });
    const from = add();
    const r = add();
    const texts = Array.from({ length: 10 }, (_, i) => String(i).padStart(10, "0"));
    hub.beginBatch();
    for (const t of texts) say(from, t);
    expect(r.conn.writes.length).toBe(2); // two full batches flushed on the way
    hub.endBatch();
    expect(r.conn.writes.map((w) => w.length)).toEqual([64, 64, 32]);
    expect(dec(r.conn.output())).toBe(texts.map((t) => `ab:${from.m.id}:${t};`).join(""));
  });

  test("a message over batchDirectMax is written directly, after the pending batch", () => {
    const { hub, encoders, add, say } = hubWith(["a"], { batchLimit: 256, batchDirectMax: 32 });
    const from = add();
    const r = add();
    const big = "x".repeat(100);
    const id = from.m.id;
    hub.beginBatch();
    say(from, "1");
    say(from, "2");
    expect(say(from, big)).toBe(1);
    expect(writes(r.conn)).toEqual([`ab:${id}:1;ab:${id}:2;`, `ab:${id}:${big};`]);
    // Written from the encoder's buffer, not copied into the arena.
    expect(r.conn.sources[1]).toBe(encoders[0]!.out);
    say(from, "3");
    hub.endBatch();
    expect(writes(r.conn)[2]).toBe(`ab:${id}:3;`);
  });

  test("an arena that grew past its keep size is dropped after the flush, and works after", () => {
    const { hub, add, say } = hubWith(["a"]);
    const from = add();
    const r = add();
    const arenas = (hub as unknown as { arenas: Uint8Array[] }).arenas;
    const text = "y".repeat(1000);
    hub.beginBatch();
    for (let i = 0; i < 40; i++) say(from, text); // ~40 KiB: below the 64 KiB limit
    expect(arenas[0]!.length).toBeGreaterThan(16 * 1024);
    hub.endBatch();
    expect(arenas[0]!.length).toBeLessThanOrEqual(16 * 1024);
    expect(r.conn.writes.length).toBe(1);
    expect(r.conn.writes[0]!.length).toBe(40 * `ab:${from.m.id}:${text};`.length);
    hub.beginBatch();
    say(from, "z");
    hub.endBatch();
    expect(writes(r.conn)[1]).toBe(`ab:${from.m.id}:z;`);
  });
});

describe("Hub batching: callbacks during a flush", () => {
  test("remove() during a flush (slow consumers closed by write) is deferred: skipped, compacted after", () => {
    const { hub, add, say } = hubWith(["a"]);
    const from = add();
    const victims = [add(), add(), add()];
    const last = add();
    victims[0]!.conn.afterWrite = () => {
      hub.remove(victims[2]!.m);
      hub.remove(victims[0]!.m);
    };
    hub.beginBatch();
    expect(say(from, "1")).toBe(4);
    expect(say(from, "2")).toBe(4);
    hub.endBatch();
    expect(victims[2]!.conn.writes.length).toBe(0);
    expect(writes(last.conn)).toEqual([`ab:${from.m.id}:1;ab:${from.m.id}:2;`]);
    expect(hub.registered).toBe(3);
    victims[0]!.conn.afterWrite = null;
    hub.beginBatch();
    expect(say(from, "3")).toBe(2);
    hub.endBatch();
    expect(victims[1]!.conn.writes.length).toBe(2);
    expect(last.conn.writes.length).toBe(2);
  });

  test("a recipient closed by a mid-batch flush (arena limit) is counted no more", () => {
    const { hub, add, say } = hubWith(["a"], { batchLimit: 32, batchDirectMax: 32 });
    const from = add();
    const slow = add();
    const r = add();
    slow.conn.afterWrite = () => hub.remove(slow.m);
    hub.beginBatch();
    expect(say(from, "0123456789")).toBe(2); // 16 bytes
    expect(say(from, "0123456789")).toBe(2); // 32: at the limit
    expect(say(from, "0123456789")).toBe(2); // flushes first; slow is removed during it
    expect(say(from, "0123456789")).toBe(1);
    hub.endBatch();
    expect(slow.conn.writes.length).toBe(1);
    expect(r.conn.writes.map((w) => w.length)).toEqual([32, 32]);
    expect(hub.registered).toBe(2);
  });

  test("a broadcast or send nested in a flush fails loudly; the hub is usable afterwards", () => {
    const { hub, add, say } = hubWith(["a"]);
    const from = add();
    const r = add();
    r.conn.afterWrite = () => say(from, "inner");
    hub.beginBatch();
    say(from, "outer");
    expect(() => hub.endBatch()).toThrow(/nested/);
    expect(writes(r.conn)).toEqual([`ab:${from.m.id}:outer;`]);
    r.conn.afterWrite = () => hub.sendValue(from.m, r.m, "inner");
    hub.beginBatch();
    say(from, "outer");
    expect(() => hub.endBatch()).toThrow(/nested/);
    // The failed batch is not replayed; a fresh one works.
    r.conn.afterWrite = null;
    r.conn.take();
    hub.beginBatch();
    say(from, "again");
    hub.endBatch();
    expect(writes(r.conn)).toEqual([`ab:${from.m.id}:again;`]);
  });
});

describe("Hub batching through the protocols", () => {
  function world() {
    const ctx = createProtocolContext();
    const framed = createFramedProtocol(ctx);
    const json = createJsonProtocol(ctx);
    const line = createLineProtocol(ctx);
    const S = openConnection(framed);
    const F = openConnection(framed);
    const J = openConnection(json);
    const L = openConnection(line);
    return { ctx, framed, json, line, S, F, J, L };
  }

  test("framed: one read of BROADCASTs then a SEND_TO: one write of the broadcasts, then the DIRECT_MSG", () => {
    const { framed, S, F, J, L } = world();
    const sid = S.data.member.id;
    deliver(framed, S, concat(encodeBroadcast("b1"), encodeBroadcast("b2"), encodeBroadcast("b3"), encodeSendTo(F.data.member.id, "dm"), encodeBroadcast("b4")));
    const acks = decodeFrames(S.take());
    expect(acks.map((f) => f.type)).toEqual([MsgType.BROADCAST_ACK, MsgType.BROADCAST_ACK, MsgType.BROADCAST_ACK, MsgType.SEND_ACK, MsgType.BROADCAST_ACK]);
    expect(acks.filter((f) => f.type === MsgType.BROADCAST_ACK).map((f) => decodeU32Body(f.body))).toEqual([3, 3, 3, 3]);
    // Flushed before the direct message, then b4 at the end of the read.
    expect(F.writes.length).toBe(3);
    const fs = decodeFrames(F.take());
    expect(fs.map((f) => f.type)).toEqual([MsgType.BROADCAST_MSG, MsgType.BROADCAST_MSG, MsgType.BROADCAST_MSG, MsgType.DIRECT_MSG, MsgType.BROADCAST_MSG]);
    expect(fs.map((f) => dec(decodeIdAndPayload(f.body)!.payload))).toEqual(["b1", "b2", "b3", "dm", "b4"]);
    expect(fs.every((f) => decodeIdAndPayload(f.body)!.id === sid)).toBe(true);
    expect(J.writes.length).toBe(2);
    expect(decodeJsonFrames(J.take()).map((m) => m.content)).toEqual(["b1", "b2", "b3", "b4"]);
    expect(L.writes.length).toBe(2);
    expect(dec(L.take())).toBe(`${sid}: b1\n${sid}: b2\n${sid}: b3\n${sid}: b4\n`);
  });

  test("json and line: a read's broadcasts reach each recipient in one write", () => {
    const { json, line, S, F, J, L } = world();
    deliver(json, J, concat(...["x", "y"].map((c) => encodeJsonFrame({ type: "broadcast", content: c }))));
    expect(decodeJsonFrames(J.take()).map((m) => m.recipients)).toEqual([3, 3]);
    expect(F.writes.length).toBe(1);
    expect(decodeFrames(F.take()).map((f) => dec(decodeIdAndPayload(f.body)!.payload))).toEqual(["x", "y"]);
    expect(S.writes.length).toBe(1);
    S.take();
    deliver(line, L, enc("p\nq\nr\n"));
    expect(F.writes.length).toBe(1);
    expect(decodeFrames(F.take()).map((f) => dec(decodeIdAndPayload(f.body)!.payload))).toEqual(["p", "q", "r"]);
    expect(J.writes.length).toBe(1);
  });

  test("a read split over several data calls: one batch per call, the stream unchanged", () => {
    const { framed, S, F } = world();
    const bytes = concat(...Array.from({ length: 8 }, (_, i) => encodeBroadcast(`m${i}`)));
    deliver(framed, S, bytes, [bytes.length >> 1]);
    expect(F.writes.length).toBe(2);
    expect(decodeFrames(F.take()).map((f) => dec(decodeIdAndPayload(f.body)!.payload))).toEqual(Array.from({ length: 8 }, (_, i) => `m${i}`));
  });

  test("a handler that throws mid-read still flushes what was batched, and closes the scope", () => {
    const { ctx, framed, S, F } = world();
    const thrower = new TagEncoder("t");
    thrower.throwOn = "boom";
    const tc = new FakeConnection();
    ctx.hub.add(tc, ctx.hub.channel("test", thrower), "t");
    expect(() => deliver(framed, S, concat(encodeBroadcast("ok"), encodeBroadcast("boom")))).toThrow(/encoder t failed/);
    // "boom" was appended for the channels encoded before the throwing one (as without
    // batching, recipients reached before a throw have the message).
    expect(decodeFrames(F.take()).map((f) => dec(decodeIdAndPayload(f.body)!.payload))).toEqual(["ok", "boom"]);
    expect(writes(tc)).toEqual([`tb:${S.data.member.id}:ok;`]);
    // The scope is closed: a broadcast outside data() is written at once.
    thrower.throwOn = null;
    ctx.hub.broadcastBytes(S.data.member, enc("after"), 0, 5);
    expect(F.writes.length).toBe(1);
  });
});

describe("Hub: bytes for many recipients go by reference", () => {
  test("a flushed batch of SHARE_MIN_BYTES or more: every recipient references one SharedBytes, released after", () => {
    const { hub, add, say } = hubWith(["a"]);
    const from = add();
    const rs = [add(), add(), add()];
    const text = "x".repeat(200);
    hub.beginBatch();
    let expected = "";
    for (let i = 0; expected.length < SHARE_MIN_BYTES; i++) {
      say(from, `${i}${text}`);
      expected += `ab:${from.m.id}:${i}${text};`;
    }
    hub.endBatch();
    const sources = rs.map((r) => r.conn.sources[0]);
    for (const r of rs) {
      expect(r.conn.sharedWrites).toBe(1);
      expect(writes(r.conn)).toEqual([expected]);
    }
    // One buffer for all (the fake's write copies, so the hub's release returns it to the pool).
    expect(sources[1]).toBe(sources[0]!);
    expect(sources[2]).toBe(sources[0]!);
  });

  test("a batch below SHARE_MIN_BYTES is copied into each queue", () => {
    const { hub, add, say } = hubWith(["a"]);
    const from = add();
    const r = add();
    hub.beginBatch();
    say(from, "small");
    hub.endBatch();
    expect(r.conn.sharedWrites).toBe(0);
    expect(writes(r.conn)).toEqual([`ab:${from.m.id}:small;`]);
  });

  test("outside a scope, a large message is shared too; a small one is copied", () => {
    const { add, say } = hubWith(["a"]);
    const from = add();
    const r1 = add();
    const r2 = add();
    const big = "y".repeat(SHARE_MIN_BYTES);
    say(from, big);
    say(from, "s");
    expect(r1.conn.sharedWrites).toBe(1);
    expect(r2.conn.sharedWrites).toBe(1);
    expect(r1.conn.sources[0]).toBe(r2.conn.sources[0]!);
    expect(writes(r1.conn)).toEqual([`ab:${from.m.id}:${big};`, `ab:${from.m.id}:s;`]);
  });
});
