// Garbage generators, one per protocol: random bytes, valid messages with hostile
// contents, and valid messages mutated (bit flips, truncation, wrong lengths, splices).
// Deterministic for a given Rng seed. Each call returns the writes to make, in order: a
// list so that some garbage goes out one byte at a time.

import { frame, frameHeader, jsonFrame, jsonFrameOfText, lengthPrefixed, Msg, type Rng } from "./wire.ts";

export type Protocol = "framed" | "json" | "line" | "echo";

/** Flip 1-4 random bits, or truncate, or splice random bytes in, or duplicate a slice. */
export function mutateBytes(r: Rng, b: Buffer): Buffer {
  if (b.length === 0) return r.bytes(r.range(1, 16));
  const out = Buffer.from(b);
  switch (r.int(4)) {
    case 0: {
      const flips = r.range(1, 4);
      for (let i = 0; i < flips; i++) out[r.int(out.length)]! ^= 1 << r.int(8);
      return out;
    }
    case 1:
      return out.subarray(0, r.int(out.length));
    case 2: {
      const at = r.int(out.length + 1);
      return Buffer.concat([out.subarray(0, at), r.bytes(r.range(1, 32)), out.subarray(at)]);
    }
    default: {
      const a = r.int(out.length);
      const e = Math.min(out.length, a + r.range(1, 64));
      return Buffer.concat([out.subarray(0, e), out.subarray(a, e), out.subarray(e)]);
    }
  }
}

/**
 * Split the start of `b` into 1-byte writes (the parser must survive any split of the
 * stream); past 256 bytes the rest goes in one write.
 */
function dribble(b: Buffer): Buffer[] {
  const out: Buffer[] = [];
  const n = Math.min(b.length, 256);
  for (let i = 0; i < n; i++) out.push(b.subarray(i, i + 1));
  if (b.length > n) out.push(b.subarray(n));
  return out;
}

const FRAMED_TYPES = [
  Msg.HELLO, Msg.WELCOME, Msg.PING, Msg.PONG, Msg.ECHO, Msg.ECHO_REPLY, Msg.BROADCAST, Msg.BROADCAST_MSG,
  Msg.BROADCAST_ACK, Msg.SEND_TO, Msg.DIRECT_MSG, Msg.SEND_ACK, Msg.STATS, Msg.STATS_REPLY, Msg.ERROR, 0x0000, 0x000f, 0x0100, 0x7fff, 0xfffe,
];

function framedMessage(r: Rng): Buffer {
  const type = r.chance(0.15) ? r.int(0x10000) : r.pick(FRAMED_TYPES);
  let body: Buffer;
  switch (type) {
    case Msg.HELLO:
      body = r.pick([Buffer.alloc(0), Buffer.from([0]), Buffer.from([0, 1]), Buffer.from([0xff, 0xff, ...r.bytes(r.int(64))])]);
      break;
    case Msg.SEND_TO: {
      // Small ids hit real clients (the suite's own), others do not exist.
      body = Buffer.concat([Buffer.from([0, 0, 0, r.int(256)]), r.bytes(r.int(64))]);
      if (r.chance(0.3)) body = body.subarray(0, r.int(4));
      break;
    }
    case Msg.BROADCAST:
      // Fan-out to every client: keep them rare and small.
      body = r.chance(0.1) ? r.bytes(r.int(128)) : Buffer.alloc(0);
      if (body.length === 0) return frame(Msg.PING, r.bytes(r.int(16)));
      break;
    case Msg.STATS:
      body = r.chance(0.8) ? Buffer.alloc(0) : r.bytes(r.range(1, 8));
      break;
    default:
      body = r.bytes(r.chance(0.05) ? r.int(0x10000) : r.int(256));
  }
  return frame(type, body);
}

function framedGarbage(r: Rng): Buffer[] {
  switch (r.int(8)) {
    case 0:
      return [r.bytes(r.range(1, 2048))];
    case 1:
    case 2:
      return [framedMessage(r)];
    case 3:
      return [mutateBytes(r, framedMessage(r))];
    case 4:
      // A header promising more than follows (the rest of the stream becomes its body).
      return [Buffer.concat([frameHeader(r.pick(FRAMED_TYPES), r.range(1, 0xffff)), r.bytes(r.int(512))])];
    case 5:
      return dribble(Buffer.concat([framedMessage(r), framedMessage(r)]));
    case 6: {
      // A pipelined burst of valid and broken frames in one write.
      const parts: Buffer[] = [];
      for (let i = r.range(2, 40); i > 0; i--) parts.push(r.chance(0.8) ? framedMessage(r) : mutateBytes(r, framedMessage(r)));
      return [Buffer.concat(parts)];
    }
    default:
      return [Buffer.concat([framedMessage(r), r.bytes(r.range(1, 8))])];
  }
}

const JSON_TYPES = ["ping", "echo", "broadcast", "send", "get_stats", "auth", "pong", "error", "", "PING", "echo\u0000", "__proto__", "constructor", "x".repeat(300)];

function randomValue(r: Rng, depth = 0): unknown {
  switch (r.int(depth > 3 ? 5 : 8)) {
    case 0:
      return null;
    case 1:
      return r.chance(0.5);
    case 2:
      return r.pick([0, -1, 1e308, -1e-308, 2 ** 53 + 1, 0.1, 4294967296, -0]);
    case 3:
      return r.bytes(r.int(32)).toString("latin1");
    case 4:
      return "\u{1F600}\uFFFD\u0000\n\r\t\"\\/" + "é".repeat(r.int(8));
    case 5:
      return Array.from({ length: r.int(5) }, () => randomValue(r, depth + 1));
    default: {
      const o: Record<string, unknown> = {};
      for (let i = r.int(5); i > 0; i--) o[r.pick(["type", "content", "to", "token", "__proto__", "constructor", "timestamp", "a"])] = randomValue(r, depth + 1);
      return o;
    }
  }
}

function jsonMessage(r: Rng): Buffer {
  const o: Record<string, unknown> = {};
  const type = r.chance(0.9) ? r.pick(JSON_TYPES) : randomValue(r);
  if (type === "broadcast" && !r.chance(0.1)) o.type = "echo";
  else o.type = type;
  if (r.chance(0.7)) o.content = randomValue(r);
  if (r.chance(0.3)) o.to = r.pick<unknown>([1, 2, 3, "1", "127.0.0.1:1", -1, 1.5, null, {}, "x"]);
  if (r.chance(0.1)) o.token = randomValue(r);
  if (r.chance(0.1)) o.timestamp = randomValue(r);
  return jsonFrame(o);
}

function jsonGarbage(r: Rng): Buffer[] {
  switch (r.int(10)) {
    case 0:
      return [r.bytes(r.range(1, 1024))];
    case 1:
      return [lengthPrefixed(r.bytes(r.int(512)))];
    case 2:
      // Not an object / no type / wrong JSON.
      return [jsonFrameOfText(r.pick(["[]", "1", "\"ping\"", "null", "{", "{\"type\":1}", "{\"type\":null}", "{}", "{\"type\":\"ping\",}", "[".repeat(5000) + "]".repeat(5000), "{\"a\":".repeat(3000) + "1" + "}".repeat(3000)]))];
    case 3:
      // Invalid UTF-8 inside an otherwise valid-looking message.
      return [lengthPrefixed(Buffer.concat([Buffer.from("{\"type\":\"echo\",\"content\":\""), Buffer.from([0xc3, 0x28, 0xff, 0xfe, 0xed, 0xa0, 0x80]), Buffer.from("\"}")]))];
    case 4:
      // A declared length over the 1 MiB limit: answered FRAME_TOO_LARGE, then closed.
      return [lengthPrefixed(r.bytes(r.int(64)), r.range(1024 * 1024 + 1, 0xffffffff))];
    case 5:
      return [mutateBytes(r, jsonMessage(r))];
    case 6:
      return dribble(jsonMessage(r));
    case 7: {
      const parts: Buffer[] = [];
      for (let i = r.range(2, 20); i > 0; i--) parts.push(r.chance(0.8) ? jsonMessage(r) : mutateBytes(r, jsonMessage(r)));
      return [Buffer.concat(parts)];
    }
    default:
      return [jsonMessage(r)];
  }
}

function lineGarbage(r: Rng): Buffer[] {
  // Every complete line is broadcast to every client: keep about one line per write.
  switch (r.int(8)) {
    case 0: {
      const b = r.bytes(r.range(1, 200));
      for (let i = 0; i < b.length; i++) if (b[i] === 10) b[i] = 0x20;
      if (r.chance(0.5)) b[b.length - 1] = 10;
      return [b];
    }
    case 1:
      return [Buffer.from(`${r.bytes(r.int(40)).toString("base64")}\r\n`)];
    case 2:
      return [Buffer.from(r.pick(["\n", "\r\n", "\r", "\r\r\n", "\u0000\n", "ERR fake\n", "1: spoofed\n", "é\u{1F600}\n"]))];
    case 3:
      return [Buffer.concat([Buffer.from([0xff, 0xfe, 0xc3, 0x28]), r.bytes(r.int(20)).map((x) => (x === 10 ? 32 : x)), Buffer.from("\n")])];
    case 4:
      // Longer than --max-line (64 KiB): the server answers and closes.
      return [Buffer.alloc(r.range(64 * 1024 + 1, 80 * 1024), 0x61)];
    case 5:
      return dribble(Buffer.from(`dribbled ${r.u32()}\n`));
    case 6:
      // A partial line, finished (or not) by the next write.
      return [Buffer.from(r.bytes(r.range(1, 64)).toString("base64"))];
    default:
      return [mutateBytes(r, Buffer.from(`hello ${r.u32()}\n`))];
  }
}

function echoGarbage(r: Rng): Buffer[] {
  switch (r.int(3)) {
    case 0:
      return [r.bytes(r.range(1, 4096))];
    case 1:
      return dribble(r.bytes(r.range(1, 32)));
    default:
      return [mutateBytes(r, framedMessage(r))];
  }
}

export function garbageFor(p: Protocol, r: Rng): Buffer[] {
  switch (p) {
    case "framed":
      return framedGarbage(r);
    case "json":
      return jsonGarbage(r);
    case "line":
      return lineGarbage(r);
    case "echo":
      return echoGarbage(r);
  }
}
