// Micro-benchmark of the framed protocol's decoder (src/protocols/codec/frame-decoder.ts):
// FrameDecoder.push runs once per read on the server's only thread, and hands out every
// frame, so its cost per frame bounds framed throughput.
//
//   bun bench/micro/frame-decoder.bench.ts
//
// The sink only counts (a real server dispatches on the type and writes a reply: that is
// not measured here). The "whole" cases hit the zero-copy path, the "split" ones the copy
// into the decoder's own buffer.

import { bench, do_not_optimize, group, run, summary } from "mitata";
import { FrameDecoder, HeaderLayout, type FrameSink } from "../../src/protocols/codec/frame-decoder.ts";

const ECHO = 0x0005;

class CountingSink implements FrameSink {
  frames = 0;
  bytes = 0;
  frame(type: number, _buf: Uint8Array, _offset: number, length: number): void {
    this.frames += type;
    this.bytes += length;
  }
  oversize(): void {
    throw new Error("no oversize frames in this benchmark");
  }
}

/** `count` ECHO frames of `size`-byte bodies, back to back. */
function frames(count: number, size: number): Uint8Array {
  const b = new Uint8Array(count * (4 + size));
  for (let f = 0; f < count; f++) {
    const o = f * (4 + size);
    b[o] = ECHO >> 8;
    b[o + 1] = ECHO & 0xff;
    b[o + 2] = size >> 8;
    b[o + 3] = size & 0xff;
    for (let i = 0; i < size; i++) b[o + 4 + i] = (i * 31 + f) & 0xff;
  }
  return b;
}

/** `data` cut into consecutive chunks of the given sizes (the last one takes the rest). */
function cut(data: Uint8Array, sizes: number[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  let off = 0;
  for (const s of sizes) {
    out.push(data.subarray(off, off + s));
    off += s;
  }
  if (off < data.length) out.push(data.subarray(off));
  return out;
}

const sink = new CountingSink();
const decoder = new FrameDecoder(sink, 65535, HeaderLayout.TypeLength16);

const batch16 = frames(16, 64); // 1088 B: what one read carries in the pipelined scenario
const one64 = frames(1, 64);
const chunks100 = cut(batch16, Array(11).fill(100)); // 16 frames over 11 reads: most straddle
const headerSplit = cut(one64, [2]); // 2 + 66: the header straddles
const bodySplit = cut(one64, [36]); // 36 + 32: the body straddles
const big = frames(1, 4096);
const big4 = cut(big, [1025, 1024, 1024]); // a 4 KiB body over 4 reads
const bytewise = cut(one64, Array(68).fill(1)); // one byte per read (slowloris-like)

function pushAll(chunks: Uint8Array[]): void {
  for (let i = 0; i < chunks.length; i++) decoder.push(chunks[i]!);
}

group("FrameDecoder.push, whole frames (zero-copy)", () => {
  summary(() => {
    bench("16 x 64 B frames in one 1088 B chunk", () => {
      decoder.push(batch16);
    });
    bench("1 x 64 B frame in one chunk", () => {
      decoder.push(one64);
    });
  });
});

group("FrameDecoder.push, split frames (copied)", () => {
  summary(() => {
    bench("16 x 64 B frames in 11 chunks of <= 100 B", () => pushAll(chunks100));
    bench("1 x 64 B frame, header split 2 + 66", () => pushAll(headerSplit));
    bench("1 x 64 B frame, body split 36 + 32", () => pushAll(bodySplit));
    bench("1 x 4 KiB frame in 4 chunks", () => pushAll(big4));
    bench("1 x 64 B frame, 1 byte per chunk (68 pushes)", () => pushAll(bytewise));
  });
});

await run();
do_not_optimize(sink.frames + sink.bytes);
// Per frame: divide the 16-frame rows by 16.
if (decoder.inFrame) throw new Error("decoder ended inside a frame: benchmark inputs are wrong");
