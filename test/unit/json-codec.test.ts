// src/protocols/codec/json.ts: length-prefixed JSON encode/decode.

import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { ErrorCode } from "../../src/protocols/codec/errors.ts";
import { decodeJsonFrames, encodeJsonFrame, JsonFrameWriter, JsonStreamDecoder, parseJsonBody, type JsonMessage } from "../../src/protocols/codec/json.ts";
import { byteByByte, concat, cutPoints, everySplit, splitAt } from "../util/chunking.ts";

const enc = (s: string) => new TextEncoder().encode(s);

describe("parseJsonBody", () => {
  test("an object with a string type parses", () => {
    expect(parseJsonBody(enc('{"type":"ping","timestamp":5}'))).toEqual({ ok: true, message: { type: "ping", timestamp: 5 } });
  });

  const bad: [string, Uint8Array, number][] = [
    ["invalid UTF-8", Uint8Array.of(0x7b, 0xff, 0x7d), ErrorCode.INVALID_UTF8],
    ["truncated UTF-8 sequence", concat(enc('{"type":"'), Uint8Array.of(0xc3), enc('"}')), ErrorCode.INVALID_UTF8],
    ["invalid JSON", enc('{"type":'), ErrorCode.INVALID_JSON],
    ["empty body", new Uint8Array(0), ErrorCode.INVALID_JSON],
    ["not an object", enc("42"), ErrorCode.MISSING_TYPE],
    ["null", enc("null"), ErrorCode.MISSING_TYPE],
    ["an array", enc('[{"type":"ping"}]'), ErrorCode.MISSING_TYPE],
    ["no type", enc('{"content":1}'), ErrorCode.MISSING_TYPE],
    ["type not a string", enc('{"type":7}'), ErrorCode.MISSING_TYPE],
  ];
  for (const [name, body, code] of bad) {
    test(`${name} -> error code ${code}`, () => {
      const r = parseJsonBody(body);
      expect(r.ok).toBe(false);
      if (!r.ok) expect(r.code).toBe(code as ErrorCode);
    });
  }

  test("reads only [offset, offset + length)", () => {
    const buf = concat(enc("xx"), enc('{"type":"a"}'), enc("garbage"));
    expect(parseJsonBody(buf, 2, 12)).toEqual({ ok: true, message: { type: "a" } });
  });
});

describe("encodeJsonFrame / JsonStreamDecoder", () => {
  test("u32 big-endian byte length prefix (bytes, not UTF-16 units)", () => {
    const f = encodeJsonFrame({ type: "é" });
    const body = enc('{"type":"é"}');
    expect(Array.from(f.subarray(0, 4))).toEqual([0, 0, 0, body.length]);
    expect(f.subarray(4)).toEqual(body);
  });

  test("every split and byte by byte give the same messages", () => {
    const msgs: JsonMessage[] = [{ type: "ping", timestamp: 1 }, { type: "echo", content: "ü€𝄞" }, { type: "x" }];
    const bytes = concat(...msgs.map(encodeJsonFrame));
    for (const chunks of [...everySplit(bytes), byteByByte(bytes)]) {
      const got: JsonMessage[] = [];
      const d = new JsonStreamDecoder((m) => got.push(m));
      for (const c of chunks) d.push(c);
      expect(got).toEqual(msgs);
    }
  });

  test("a bad body reports an error and the stream stays in sync", () => {
    const bad = Uint8Array.of(0, 0, 0, 2, 0x7b, 0x7b);
    const got: unknown[] = [];
    const d = new JsonStreamDecoder((m) => got.push(m), (code) => got.push(code));
    d.push(concat(bad, encodeJsonFrame({ type: "ok" })));
    expect(got).toEqual([ErrorCode.INVALID_JSON, { type: "ok" }]);
  });

  test("an oversized length is reported and skipped", () => {
    const got: unknown[] = [];
    const d = new JsonStreamDecoder((m) => got.push(m), undefined, 15, (n) => got.push(`oversize ${n}`));
    d.push(concat(encodeJsonFrame({ type: "a-long-type-name" }), encodeJsonFrame({ type: "b" })));
    expect(got).toEqual(["oversize 27", { type: "b" }]);
  });

  test("property: any JSON object with a type round-trips under any chunking", () => {
    const msgArb = fc.record({ type: fc.string({ maxLength: 10 }), content: fc.jsonValue({ maxDepth: 3 }) });
    fc.assert(
      fc.property(
        fc.array(msgArb, { maxLength: 8 }).chain((msgs) => {
          const bytes = concat(...msgs.map(encodeJsonFrame));
          return fc.tuple(fc.constant(msgs), fc.constant(bytes), cutPoints(bytes.length));
        }),
        ([msgs, bytes, cuts]) => {
          const got: JsonMessage[] = [];
          const d = new JsonStreamDecoder((m) => got.push(m), (code, detail) => {
            throw new Error(`${code} ${detail}`);
          });
          for (const c of splitAt(bytes, cuts)) d.push(c);
          // JSON has no -0: compare through JSON text, as the wire does.
          expect(JSON.stringify(got)).toBe(JSON.stringify(msgs));
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe("JsonFrameWriter", () => {
  test("writes the same bytes as encodeJsonFrame, reusing and growing its buffer", () => {
    const w = new JsonFrameWriter();
    const small = { type: "a", content: "x" };
    let n = w.encode(small);
    expect(Array.from(w.out.subarray(0, n))).toEqual(Array.from(encodeJsonFrame(small)));
    const big = { type: "big", content: "€".repeat(5000) }; // 3 bytes each in UTF-8
    n = w.encode(big);
    expect(n).toBe(encodeJsonFrame(big).length);
    expect(Array.from(w.out.subarray(0, n))).toEqual(Array.from(encodeJsonFrame(big)));
    expect(decodeJsonFrames(w.out.slice(0, n))).toEqual([big]);
  });
});
