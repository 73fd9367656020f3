// src/protocols/ws/frame.ts and handshake.ts: the RFC 6455 framing rules a server enforces,
// grouped like the Autobahn|Testsuite sections (1 framing, 2 ping/pong, 3 reserved bits,
// 4 opcodes, 5 fragmentation, 6 UTF-8, 7 close, 9 limits), every case also fed split at
// every byte and byte by byte, and the handshake.

import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { acceptKey, checkUpgrade } from "../../src/protocols/ws/handshake.ts";
import { CloseCode, encodeClose, encodeFrame, Opcode, validCloseCode, validUtf8, WsFrameDecoder, type WsDecoderOptions } from "../../src/protocols/ws/frame.ts";

type Event = { msg: [number, string, boolean] } | { ping: string } | { pong: string } | { close: [number, string] } | { error: number };

const enc = new TextEncoder();
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

/** A client frame: masked with `mask`, payload as given. */
function clientFrame(opcode: number, payload: Uint8Array | string, opts: { fin?: boolean; rsv?: number; mask?: number[] | null; len?: number } = {}): Uint8Array {
  const p = typeof payload === "string" ? enc.encode(payload) : payload;
  const mask = opts.mask === undefined ? [0x37, 0xfa, 0x21, 0x3d] : opts.mask;
  const n = opts.len ?? p.length;
  const ext = n < 126 ? 0 : n < 65536 ? 2 : 8;
  const out = new Uint8Array(2 + ext + (mask ? 4 : 0) + p.length);
  out[0] = (opts.fin === false ? 0 : 0x80) | ((opts.rsv ?? 0) << 4) | opcode;
  out[1] = (mask ? 0x80 : 0) | (n < 126 ? n : n < 65536 ? 126 : 127);
  const dv = new DataView(out.buffer);
  if (ext === 2) dv.setUint16(2, n);
  if (ext === 8) dv.setBigUint64(2, BigInt(n));
  let at = 2 + ext;
  if (mask) {
    out.set(mask, at);
    at += 4;
  }
  for (let i = 0; i < p.length; i++) out[at + i] = p[i]! ^ (mask ? mask[i & 3]! : 0);
  return out;
}

function decode(chunks: Uint8Array[], options: Partial<WsDecoderOptions> = {}): Event[] {
  const events: Event[] = [];
  const d = new WsFrameDecoder(
    {
      onMessage: (op, data, compressed) => void events.push({ msg: [op, Buffer.from(data).toString("latin1"), compressed] }),
      onPing: (p) => void events.push({ ping: Buffer.from(p).toString("latin1") }),
      onPong: (p) => void events.push({ pong: Buffer.from(p).toString("latin1") }),
      onClose: (code, reason) => void events.push({ close: [code, reason] }),
      onError: (code) => void events.push({ error: code }),
    },
    { maxPayloadLength: 1 << 20, ...options },
  );
  for (const c of chunks) {
    const copy = new Uint8Array(c); // each read in its own buffer, overwritten after
    d.push(copy);
    copy.fill(0xee);
  }
  return events;
}

const cat = (...parts: Uint8Array[]) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
};

/** The events for `bytes`, the same at every 2-split and byte by byte. */
function decodeAllSplits(bytes: Uint8Array, options?: Partial<WsDecoderOptions>): Event[] {
  const whole = decode([bytes], options);
  for (let i = 1; i < bytes.length; i++) expect(decode([bytes.subarray(0, i), bytes.subarray(i)], options)).toEqual(whole);
  expect(decode(Array.from(bytes, (_, i) => bytes.subarray(i, i + 1)), options)).toEqual(whole);
  return whole;
}

const T = Opcode.Text, B = Opcode.Binary, C = Opcode.Continuation;

describe("1 framing", () => {
  test("text and binary at every length class (0, 125, 126, 65535, 65536), masked", () => {
    for (const n of [0, 1, 125, 126, 127, 1000]) {
      const s = "x".repeat(n);
      expect(decodeAllSplits(clientFrame(T, s))).toEqual([{ msg: [T, s, false] }]);
    }
    for (const n of [65535, 65536, 70000]) {
      const p = new Uint8Array(n).map((_, i) => i & 0xff);
      const ev = decode([clientFrame(B, p)]);
      expect(ev.length).toBe(1);
      expect((ev[0] as { msg: [number, string, boolean] }).msg[1]).toBe(Buffer.from(p).toString("latin1"));
    }
  });
  test("an unmasked client frame: 1002", () => {
    expect(decodeAllSplits(clientFrame(T, "hi", { mask: null }))).toEqual([{ error: CloseCode.ProtocolError }]);
  });
  test("a 64-bit length with the top bit set: 1002", () => {
    const f = clientFrame(B, "", { len: 70000 });
    f[2] = 0x80;
    expect(decode([f])).toEqual([{ error: CloseCode.ProtocolError }]);
  });
  test("several frames in one read, in order", () => {
    expect(decodeAllSplits(cat(clientFrame(T, "a"), clientFrame(B, "b"), clientFrame(Opcode.Ping, "p"), clientFrame(T, "c")))).toEqual([
      { msg: [T, "a", false] }, { msg: [B, "b", false] }, { ping: "p" }, { msg: [T, "c", false] },
    ]);
  });
});

describe("2 ping/pong", () => {
  test("ping and pong payloads up to 125 bytes; a longer control frame: 1002", () => {
    expect(decodeAllSplits(clientFrame(Opcode.Ping, "x".repeat(125)))).toEqual([{ ping: "x".repeat(125) }]);
    expect(decodeAllSplits(clientFrame(Opcode.Pong, "unsolicited"))).toEqual([{ pong: "unsolicited" }]);
    expect(decode([clientFrame(Opcode.Ping, "x".repeat(126))])).toEqual([{ error: CloseCode.ProtocolError }]);
  });
  test("a fragmented ping: 1002", () => {
    expect(decode([clientFrame(Opcode.Ping, "p", { fin: false })])).toEqual([{ error: CloseCode.ProtocolError }]);
  });
});

describe("3 reserved bits", () => {
  test("RSV1, RSV2 or RSV3 without an extension: 1002", () => {
    for (const rsv of [1, 2, 3, 4, 5, 6, 7]) expect(decode([clientFrame(T, "x", { rsv })])).toEqual([{ error: CloseCode.ProtocolError }]);
  });
  test("with permessage-deflate: RSV1 marks a compressed message (its first frame only)", () => {
    expect(decodeAllSplits(clientFrame(B, "zz", { rsv: 4 }), { allowRsv1: true })).toEqual([{ msg: [B, "zz", true] }]);
    expect(decode([clientFrame(T, "a", { fin: false, rsv: 4 }), clientFrame(C, "b", { rsv: 4 })], { allowRsv1: true })).toEqual([{ error: CloseCode.ProtocolError }]);
    expect(decode([clientFrame(Opcode.Ping, "p", { rsv: 4 })], { allowRsv1: true })).toEqual([{ error: CloseCode.ProtocolError }]);
  });
});

describe("4 opcodes", () => {
  test("reserved data (3-7) and control (11-15) opcodes: 1002", () => {
    for (const op of [3, 4, 5, 6, 7, 11, 12, 13, 14, 15]) expect(decode([clientFrame(op, "")])).toEqual([{ error: CloseCode.ProtocolError }]);
  });
});

describe("5 fragmentation", () => {
  test("fragments join into one message; control frames between them are handled at once", () => {
    expect(decodeAllSplits(cat(clientFrame(T, "fra", { fin: false }), clientFrame(Opcode.Ping, "!"), clientFrame(C, "gme", { fin: false }), clientFrame(C, "nts")))).toEqual([
      { ping: "!" }, { msg: [T, "fragments", false] },
    ]);
  });
  test("a continuation with nothing to continue, or a new data frame inside a message: 1002", () => {
    expect(decode([clientFrame(C, "x")])).toEqual([{ error: CloseCode.ProtocolError }]);
    expect(decode([clientFrame(T, "a", { fin: false }), clientFrame(T, "b")])).toEqual([{ error: CloseCode.ProtocolError }]);
  });
});

describe("6 UTF-8", () => {
  test("valid text, including 4-byte sequences split across fragments", () => {
    const s = "κόσμε 😀";
    const b = enc.encode(s);
    expect(decodeAllSplits(cat(clientFrame(T, b.subarray(0, 9), { fin: false }), clientFrame(C, b.subarray(9))))).toEqual([{ msg: [T, Buffer.from(b).toString("latin1"), false] }]);
  });
  test("invalid UTF-8 fails fast: at the first invalid byte, before the frame or message ends (1007)", () => {
    const bad = new Uint8Array([0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5, 0xed, 0xa0, 0x80, 0x65, 0x64]);
    const frame = clientFrame(T, bad, { fin: false });
    const cut = frame.length - 3; // the invalid sequence (a surrogate) has arrived, the rest has not
    expect(decode([frame.subarray(0, cut)])).toEqual([{ error: CloseCode.InvalidPayload }]);
    expect(decode([clientFrame(T, new Uint8Array([0xff]))])).toEqual([{ error: CloseCode.InvalidPayload }]);
    expect(decode([clientFrame(T, new Uint8Array([0xc3]))])).toEqual([{ error: CloseCode.InvalidPayload }]); // ends mid-sequence
  });
  test("binary messages are not checked", () => {
    expect(decode([clientFrame(B, new Uint8Array([0xff, 0xfe]))])).toEqual([{ msg: [B, "\xff\xfe", false] }]);
  });
  test("validUtf8 agrees with the decoder of the platform on random bytes", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 40 }), (b) => {
        let strict = true;
        try {
          new TextDecoder("utf-8", { fatal: true }).decode(b);
        } catch {
          strict = false;
        }
        expect(validUtf8(b)).toBe(strict);
      }),
      { numRuns: 2000 },
    );
  });
});

describe("7 close", () => {
  test("a close frame's code and reason; an empty one is 1005", () => {
    expect(decodeAllSplits(clientFrame(Opcode.Close, cat(new Uint8Array([0x03, 0xe8]), enc.encode("bye"))))).toEqual([{ close: [1000, "bye"] }]);
    expect(decodeAllSplits(clientFrame(Opcode.Close, ""))).toEqual([{ close: [1005, ""] }]);
  });
  test("a 1-byte payload, an invalid code, a reason that is not UTF-8: 1002, 1002, 1007", () => {
    expect(decode([clientFrame(Opcode.Close, new Uint8Array([0x03]))])).toEqual([{ error: 1002 }]);
    for (const code of [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535]) {
      expect(decode([clientFrame(Opcode.Close, new Uint8Array([code >> 8, code & 0xff]))])).toEqual([{ error: 1002 }]);
    }
    expect(decode([clientFrame(Opcode.Close, new Uint8Array([0x03, 0xe8, 0xff]))])).toEqual([{ error: 1007 }]);
  });
  test("valid close codes: 1000-1003, 1007-1014, 3000-4999", () => {
    const valid = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999];
    for (const c of valid) expect(validCloseCode(c)).toBe(true);
  });
});

describe("9 limits", () => {
  test("a message over maxPayloadLength: 1009, from the header of the frame that passes it", () => {
    expect(decode([clientFrame(B, "x".repeat(101))], { maxPayloadLength: 100 })).toEqual([{ error: CloseCode.MessageTooBig }]);
    expect(decode([clientFrame(B, "x".repeat(60), { fin: false }), clientFrame(C, "x".repeat(60))], { maxPayloadLength: 100 })).toEqual([{ error: CloseCode.MessageTooBig }]);
  });
});

describe("property: any sequence of valid frames, split anyhow, gives its messages", () => {
  test("random messages fragmented randomly, with pings between fragments", () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.boolean(), fc.uint8Array({ maxLength: 300 }), fc.integer({ min: 1, max: 4 })), { maxLength: 6 }),
        fc.array(fc.integer({ min: 1, max: 40 }), { minLength: 1, maxLength: 8 }),
        (msgs, cuts) => {
          const frames: Uint8Array[] = [];
          const expected: Event[] = [];
          for (const [isText, body, parts] of msgs) {
            const payload = isText ? enc.encode(Buffer.from(body).toString("hex")) : body;
            const op = isText ? T : B;
            const size = Math.ceil(payload.length / parts) || 1;
            for (let i = 0, k = 0; i < Math.max(1, payload.length); i += size, k++) {
              const last = i + size >= payload.length;
              frames.push(clientFrame(k === 0 ? op : C, payload.subarray(i, i + size), { fin: last }));
              if (!last) frames.push(clientFrame(Opcode.Ping, "p"));
              if (!last) expected.push({ ping: "p" });
            }
            expected.push({ msg: [op, Buffer.from(payload).toString("latin1"), false] });
          }
          const all = cat(...frames);
          const chunks: Uint8Array[] = [];
          for (let p = 0, i = 0; p < all.length; i++) {
            const n = cuts[i % cuts.length]!;
            chunks.push(all.subarray(p, p + n));
            p += n;
          }
          expect(decode(chunks)).toEqual(expected);
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe("encoding server frames", () => {
  test("unmasked headers at every length class, and close frames", () => {
    expect(hex(encodeFrame(T, enc.encode("Hi")))).toBe("81024869");
    expect(hex(encodeFrame(B, new Uint8Array(126)).subarray(0, 4))).toBe("827e007e");
    expect(hex(encodeFrame(B, new Uint8Array(65536)).subarray(0, 10))).toBe("827f0000000000010000");
    expect(hex(encodeClose(1000, "ok"))).toBe("880403e86f6b");
  });
});

describe("handshake", () => {
  const req = (headers: Record<string, string>, method = "GET") => ({ method, header: (n: string) => headers[n] ?? null });
  const good = { upgrade: "websocket", connection: "keep-alive, Upgrade", "sec-websocket-version": "13", "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==" };
  test("RFC 6455's example key gives its accept value", () => {
    expect(acceptKey("dGhlIHNhbXBsZSBub25jZQ==")).toBe("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    expect(checkUpgrade(req(good))).toEqual({ ok: true, key: "dGhlIHNhbXBsZSBub25jZQ==" });
  });
  test("a bad Upgrade is refused with a status that says why", () => {
    expect(checkUpgrade(req({ ...good, "sec-websocket-version": "8" }))).toMatchObject({ ok: false, status: 426, headers: { "sec-websocket-version": "13" } });
    expect(checkUpgrade(req({ ...good, "sec-websocket-key": "short" }))).toMatchObject({ ok: false, status: 400 });
    const { "sec-websocket-key": _k, ...noKey } = good;
    expect(checkUpgrade(req(noKey))).toMatchObject({ ok: false, status: 400 });
    expect(checkUpgrade(req({ ...good, upgrade: "h2c" }))).toMatchObject({ ok: false, status: 400 });
    expect(checkUpgrade(req(good, "POST"))).toMatchObject({ ok: false, status: 405 });
  });
});
