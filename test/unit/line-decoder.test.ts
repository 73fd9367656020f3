// src/protocols/codec/line-decoder.ts: resumable newline-delimited lines.

import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { LineDecoder, type LineSink } from "../../src/protocols/codec/line-decoder.ts";
import { byteByByte, cutPoints, everySplit, everySplit3, pushThroughSharedBuffer, splitAt } from "../util/chunking.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

class Recorder implements LineSink {
  lines: string[] = [];
  tooLongCalls = 0;
  zeroCopy = 0;
  lastChunk: Uint8Array | null = null;
  line(buf: Uint8Array, offset: number, length: number): void {
    if (buf === this.lastChunk) this.zeroCopy++;
    this.lines.push(dec(buf.subarray(offset, offset + length)));
  }
  tooLong(): void {
    this.tooLongCalls++;
  }
}

function run(chunks: Uint8Array[], maxLine = 1000): { r: Recorder; d: LineDecoder } {
  const r = new Recorder();
  const d = new LineDecoder(r, maxLine);
  pushThroughSharedBuffer(chunks, (c) => {
    r.lastChunk = c;
    d.push(c);
  });
  return { r, d };
}

describe("LineDecoder", () => {
  const input = enc("hello\nwörld\r\n\nlast one\n");
  const want = ["hello", "wörld", "", "last one"];

  test("several lines in one chunk, zero-copy, CRLF and LF both end a line", () => {
    const { r } = run([input]);
    expect(r.lines).toEqual(want);
    expect(r.zeroCopy).toBe(4);
  });

  test("every two- and three-way split gives the same lines", () => {
    for (const chunks of everySplit(input)) expect(run(chunks).r.lines).toEqual(want);
    for (const chunks of everySplit3(input)) expect(run(chunks).r.lines).toEqual(want);
  });

  test("byte by byte gives the same lines (a multi-byte UTF-8 char split too)", () => {
    expect(run(byteByByte(input)).r.lines).toEqual(want);
  });

  test("a CR split from its LF is still stripped", () => {
    expect(run([enc("abc\r"), enc("\n")]).r.lines).toEqual(["abc"]);
  });

  test("a CR not followed by LF is part of the line", () => {
    expect(run([enc("a\rb\n")]).r.lines).toEqual(["a\rb"]);
  });

  test("inFrame while a line is partial", () => {
    const r = new Recorder();
    const d = new LineDecoder(r, 100);
    d.push(enc("par"));
    expect(d.inFrame).toBe(true);
    d.push(enc("tial\n"));
    expect(d.inFrame).toBe(false);
    expect(r.lines).toEqual(["partial"]);
  });

  test("maxLine is inclusive, terminator excluded", () => {
    expect(run([enc("12345\n")], 5).r.lines).toEqual(["12345"]);
    expect(run([enc("12345\r\n")], 5).r.lines).toEqual(["12345"]);
    expect(run(byteByByte(enc("12345\r\n")), 5).r.lines).toEqual(["12345"]);
  });

  test("a line over maxLine: tooLong once, the decoder stops, nothing more is delivered", () => {
    for (const chunks of [[enc("ok\n123456\nnext\n")], byteByByte(enc("ok\n123456\nnext\n")), splitAt(enc("ok\n123456\nnext\n"), [5])]) {
      const { r, d } = run(chunks, 5);
      expect(r.lines).toEqual(["ok"]);
      expect(r.tooLongCalls).toBe(1);
      expect(d.isStopped).toBe(true);
    }
  });

  test("an endless line without newline is cut off at maxLine + 1 bytes buffered", () => {
    const r = new Recorder();
    const d = new LineDecoder(r, 100);
    for (let i = 0; i < 100 && !d.isStopped; i++) d.push(new Uint8Array(7).fill(0x61));
    expect(r.tooLongCalls).toBe(1);
    expect(d.bufferedBytes).toBe(0);
  });

  test("finish() delivers a final unterminated line once", () => {
    const { r, d } = run([enc("a\nb")]);
    expect(d.finish()).toBe(true);
    expect(d.finish()).toBe(false);
    expect(r.lines).toEqual(["a", "b"]);
  });

  test("property: any chunking of any lines decodes to the same lines", () => {
    const lineArb = fc.string({ maxLength: 40 }).map((s) => s.replace(/[\r\n]/g, ""));
    fc.assert(
      fc.property(
        fc.array(fc.tuple(lineArb, fc.boolean()), { maxLength: 15 }).chain((lines) => {
          const bytes = enc(lines.map(([l, crlf]) => l + (crlf ? "\r\n" : "\n")).join(""));
          return fc.tuple(fc.constant(lines.map(([l]) => l)), fc.constant(bytes), cutPoints(bytes.length));
        }),
        ([lines, bytes, cuts]) => {
          expect(run(splitAt(bytes, cuts), 1 << 16).r.lines).toEqual(lines);
        },
      ),
      { numRuns: 300 },
    );
  });
});
