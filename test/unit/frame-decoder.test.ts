// src/protocols/codec/frame-decoder.ts: resumable length-prefixed frame decoding.

import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { FrameDecoder, HeaderLayout, type FrameSink } from "../../src/protocols/codec/frame-decoder.ts";
import { encodeFrame } from "../../src/protocols/codec/framed.ts";
import { threadPool } from "../../src/buffers/pool.ts";
import { byteByByte, concat, cutPoints, everySplit, everySplit3, pushThroughSharedBuffer, splitAt } from "../util/chunking.ts";

type Event = { frame: [number, number[]] } | { oversize: [number, number] };

/** A sink that copies each frame out (during the call, as it must) and notes zero-copy hand-outs. */
class Recorder implements FrameSink {
  events: Event[] = [];
  zeroCopy = 0;
  lastChunk: Uint8Array | null = null;
  onFrame: ((type: number) => void) | null = null;
  frame(type: number, buf: Uint8Array, offset: number, length: number): void {
    if (buf === this.lastChunk) this.zeroCopy++;
    this.events.push({ frame: [type, Array.from(buf.subarray(offset, offset + length))] });
    this.onFrame?.(type);
  }
  oversize(type: number, length: number): void {
    this.events.push({ oversize: [type, length] });
  }
}

function run(chunks: Uint8Array[], maxBody = 0xffff, layout: HeaderLayout = HeaderLayout.TypeLength16): Recorder {
  const r = new Recorder();
  const d = new FrameDecoder(r, maxBody, layout);
  pushThroughSharedBuffer(chunks, (c) => {
    r.lastChunk = c;
    d.push(c);
  });
  return r;
}

function len32(body: number[]): Uint8Array {
  const n = body.length;
  return Uint8Array.from([n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff, ...body]);
}

/** Up to 12 frames (at least minFrames) with bodies up to maxBody, encoded, and cut points into the bytes. */
function chunkedFrames(minFrames: number, maxBody: number) {
  const frameArb = fc.record({ type: fc.integer({ min: 0, max: 0xffff }), body: fc.uint8Array({ maxLength: maxBody }) });
  return fc.array(frameArb, { minLength: minFrames, maxLength: 12 }).chain((frames) => {
    const bytes = concat(...frames.map((f) => encodeFrame(f.type, f.body)));
    return fc.tuple(fc.constant(frames), fc.constant(bytes), cutPoints(bytes.length));
  });
}

const stream = concat(
  encodeFrame(0x0003, Uint8Array.from([1, 2, 3])),
  encodeFrame(0x0001), // empty body
  encodeFrame(0x0005, Uint8Array.from([9, 8, 7, 6, 5, 4, 3])),
  encodeFrame(0xffff, Uint8Array.from([0, 1, 0x41])),
);
const expected: Event[] = [
  { frame: [3, [1, 2, 3]] },
  { frame: [1, []] },
  { frame: [5, [9, 8, 7, 6, 5, 4, 3]] },
  { frame: [0xffff, [0, 1, 0x41]] },
];

describe("FrameDecoder, u16 type + u16 length", () => {
  test("many frames in one chunk are handed out zero-copy, in order", () => {
    const r = run([stream]);
    expect(r.events).toEqual(expected);
    expect(r.zeroCopy).toBe(4);
  });

  test("every two-way split gives the same frames", () => {
    for (const chunks of everySplit(stream)) expect(run(chunks).events).toEqual(expected);
  });

  test("every three-way split gives the same frames", () => {
    for (const chunks of everySplit3(stream)) expect(run(chunks).events).toEqual(expected);
  });

  test("byte by byte gives the same frames", () => {
    const r = run(byteByByte(stream));
    expect(r.events).toEqual(expected);
    // Only the empty-bodied frame can be whole inside a 1-byte chunk (its header's last byte).
    expect(r.zeroCopy).toBe(1);
  });

  test("a frame across chunks is copied: the shared buffer being overwritten does not corrupt it", () => {
    const f = encodeFrame(0x0005, Uint8Array.from({ length: 300 }, (_, i) => i & 0xff));
    const r = run(splitAt(f, [2, 100, 101, 250]));
    expect(r.events).toEqual([{ frame: [5, Array.from({ length: 300 }, (_, i) => i & 0xff)] }]);
  });

  test("inFrame is true exactly while a header or body is partial", () => {
    const r = new Recorder();
    const d = new FrameDecoder(r, 100);
    const f = encodeFrame(3, Uint8Array.from([1, 2]));
    expect(d.inFrame).toBe(false);
    d.push(f.subarray(0, 1));
    expect(d.inFrame).toBe(true);
    d.push(f.subarray(1, 5));
    expect(d.inFrame).toBe(true);
    expect(d.bufferedBytes).toBe(1);
    d.push(f.subarray(5));
    expect(d.inFrame).toBe(false);
    expect(r.events.length).toBe(1);
  });

  test("a declared length over maxBody is reported once, its body skipped, and decoding resumes", () => {
    const big = encodeFrame(0x0005, new Uint8Array(50).fill(7));
    const after = encodeFrame(0x0003, Uint8Array.from([1]));
    const s = concat(big, after);
    const want: Event[] = [{ oversize: [5, 50] }, { frame: [3, [1]] }];
    for (const chunks of everySplit(s)) expect(run(chunks, 10).events).toEqual(want);
    expect(run(byteByByte(s), 10).events).toEqual(want);
  });

  test("skipping an oversized body counts as inFrame (the frame timeout still applies)", () => {
    const d = new FrameDecoder(new Recorder(), 10);
    d.push(encodeFrame(5, new Uint8Array(50)).subarray(0, 20));
    expect(d.inFrame).toBe(true);
  });

  test("maxBody is inclusive", () => {
    expect(run([encodeFrame(1, new Uint8Array(10))], 10).events).toEqual([{ frame: [1, Array(10).fill(0)] }]);
  });

  test("stop() inside a callback drops the rest of the chunk and all later input", () => {
    const r = new Recorder();
    const d = new FrameDecoder(r, 100);
    r.onFrame = (type) => {
      if (type === 1) d.stop();
    };
    d.push(concat(encodeFrame(3), encodeFrame(1), encodeFrame(5)));
    d.push(encodeFrame(5));
    expect(r.events.map((e) => ("frame" in e ? e.frame[0] : -1))).toEqual([3, 1]);
    expect(d.isStopped).toBe(true);
  });

  test("a decoder stopped mid-frame no longer reports inFrame", () => {
    const d = new FrameDecoder(new Recorder(), 100);
    d.push(encodeFrame(3, new Uint8Array(10)).subarray(0, 6));
    expect(d.inFrame).toBe(true);
    d.stop();
    expect(d.inFrame).toBe(false);
    expect(d.bufferedBytes).toBe(0);
  });

  test("a big partial frame's buffer is released after delivery, a small one kept", () => {
    const r = new Recorder();
    const d = new FrameDecoder(r, 0xffff);
    const big = encodeFrame(5, new Uint8Array(40000));
    d.push(big.subarray(0, 10));
    d.push(big.subarray(10));
    expect((d as unknown as { body: Uint8Array | null }).body).toBeNull();
    const small = encodeFrame(5, new Uint8Array(100));
    d.push(small.subarray(0, 10));
    d.push(small.subarray(10));
    expect((d as unknown as { body: Uint8Array | null }).body).not.toBeNull();
    expect(r.events.length).toBe(2);
  });

  test("a big partial frame borrows a pooled buffer: the same one frame after frame, back on stop()", () => {
    const r = new Recorder();
    const d = new FrameDecoder(r, 0xffff);
    const big = encodeFrame(5, Uint8Array.from({ length: 60000 }, (_, i) => i & 0xff));
    let settled = -1;
    for (let i = 0; i < 5; i++) {
      d.push(big.subarray(0, 1000));
      const borrowed = threadPool.pooled;
      d.push(big.subarray(1000));
      expect(threadPool.pooled).toBe(borrowed + 1); // given back after delivery
      if (i === 0) settled = threadPool.pooled;
      else expect(threadPool.pooled).toBe(settled); // the same buffer, frame after frame
    }
    expect(r.events.length).toBe(5);
    for (const e of r.events) expect("frame" in e && e.frame[1].length === 60000 && e.frame[1][59999] === 59999 % 256).toBe(true);
    d.push(big.subarray(0, 1000));
    expect(threadPool.pooled).toBe(settled - 1);
    d.stop();
    expect(threadPool.pooled).toBe(settled);
  });

  test("property: any chunking of any frame sequence decodes to the same frames", () => {
    fc.assert(
      fc.property(
        chunkedFrames(0, 600),
        ([frames, bytes, cuts]) => {
          const r = run(splitAt(bytes, cuts));
          expect(r.events).toEqual(frames.map((f) => ({ frame: [f.type, Array.from(f.body)] })));
        },
      ),
      { numRuns: 300 },
    );
  });

  test("property: offset >= 4 means buf[offset - 4, offset) is the frame's own header (the framed echo run relies on it)", () => {
    fc.assert(
      fc.property(
        chunkedFrames(1, 300),
        ([frames, bytes, cuts]) => {
          const headers: number[][] = [];
          const sink: FrameSink = {
            frame(type, buf, offset, length) {
              // A sink may overwrite the header it was given: do it, to prove nothing re-reads it.
              if (offset >= 4) {
                headers.push(Array.from(buf.subarray(offset - 4, offset)));
                buf.fill(0xee, offset - 4, offset);
              } else headers.push([]);
              expect(length).toBe(frames[headers.length - 1]!.body.length);
              expect(type).toBe(frames[headers.length - 1]!.type);
            },
            oversize() {
              throw new Error("no oversized frames here");
            },
          };
          const d = new FrameDecoder(sink, 0xffff);
          pushThroughSharedBuffer(splitAt(bytes, cuts), (c) => d.push(c));
          expect(headers.length).toBe(frames.length);
          headers.forEach((h, i) => {
            const f = frames[i]!;
            if (h.length > 0) expect(h).toEqual([f.type >>> 8, f.type & 0xff, f.body.length >>> 8, f.body.length & 0xff]);
          });
          // One chunk: every frame has its header in place.
          if (cuts.length === 0) expect(headers.every((h) => h.length === 4)).toBe(true);
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe("FrameDecoder, u32 length", () => {
  test("type is 0 and the length is the full u32", () => {
    const s = concat(len32([0x7b, 0x7d]), len32([]), len32([1, 2, 3]));
    const want: Event[] = [{ frame: [0, [0x7b, 0x7d]] }, { frame: [0, []] }, { frame: [0, [1, 2, 3]] }];
    for (const chunks of everySplit3(s)) expect(run(chunks, 1 << 20, HeaderLayout.Length32).events).toEqual(want);
  });

  test("a length with the high bit set is not negative: it is oversized", () => {
    const r = run([Uint8Array.from([0x80, 0, 0, 1, 9])], 1 << 20, HeaderLayout.Length32);
    expect(r.events).toEqual([{ oversize: [0, 0x80000001] }]);
  });

  test("a 70000-byte body (over any u16) decodes", () => {
    const body = Array.from({ length: 70000 }, (_, i) => i % 251);
    const r = run(splitAt(len32(body), [3, 40000]), 1 << 20, HeaderLayout.Length32);
    expect(r.events).toEqual([{ frame: [0, body] }]);
  });
});
