// permessage-deflate's compressors (RFC 7692 §7) over the system's zlib (ffi/libz.ts).
//
// One message is deflated with a sync flush and sent without the flush's 00 00 ff ff tail
// (§7.2.1); the receiver appends the tail before inflating (§7.2.2). Without context takeover
// a side starts every message with an empty window: one zlib stream per thread serves every
// such socket, reset after each message (deflateReset keeps zlib's allocations, so a message
// costs no init). With context takeover the window carries over between a socket's messages,
// so that socket owns a stream of its own (native memory until it closes: see `memoryOf`).
//
// zlib holds a pointer to its z_stream between calls, so each z_stream lives in an ArrayBuffer
// of its own (never moved) held by its owner; next_in/next_out are set before every call.

import { ptr } from "bun:ffi";
import {
  Z_BUF_ERROR, Z_DEFAULT_STRATEGY, Z_DEFLATED, Z_OK, Z_STREAM_END, Z_SYNC_FLUSH, zlibBindings, zStream, type ZlibSymbols,
} from "../../../ffi/libz.ts";

const TAIL = new Uint8Array([0x00, 0x00, 0xff, 0xff]);
const ZLIB_VERSION = new TextEncoder().encode("1.2.0\0"); // zlib checks the major version only ("1")

/** What a deflating side's compressor costs zlib (zconf.h): 2^(w+2) + 2^(m+9) bytes, plus ~6 KiB. */
export function deflateMemory(windowBits: number, memLevel: number): number {
  return (1 << (windowBits + 2)) + (1 << (memLevel + 9)) + 6 * 1024;
}

/** What an inflating side keeps: its window, 2^w bytes, plus ~7 KiB of state. */
export function inflateMemory(windowBits: number): number {
  return (1 << windowBits) + 7 * 1024;
}

/** An error zlib reported, with the call and its message. */
export class ZlibError extends Error {}

abstract class ZStreamBase implements Disposable {
  protected readonly z: ZlibSymbols;
  protected readonly strm = new Uint8Array(new ArrayBuffer(zStream.size));
  protected readonly words = new Uint32Array(this.strm.buffer);
  protected ended = false;

  constructor() {
    this.z = zlibBindings();
  }

  protected setIn(p: number, n: number): void {
    const w = this.words;
    w[zStream.nextIn >> 2] = p >>> 0;
    w[(zStream.nextIn >> 2) + 1] = Math.floor(p / 0x1_0000_0000);
    w[zStream.availIn >> 2] = n;
  }

  protected setOut(p: number, n: number): void {
    const w = this.words;
    w[zStream.nextOut >> 2] = p >>> 0;
    w[(zStream.nextOut >> 2) + 1] = Math.floor(p / 0x1_0000_0000);
    w[zStream.availOut >> 2] = n;
  }

  protected get availIn(): number {
    return this.words[zStream.availIn >> 2]!;
  }

  protected get availOut(): number {
    return this.words[zStream.availOut >> 2]!;
  }

  protected check(call: string, rc: number): void {
    if (rc === Z_OK || rc === Z_STREAM_END) return;
    throw new ZlibError(`${call}: zlib error ${rc}`);
  }

  abstract [Symbol.dispose](): void;
}

/** Output of the thread's compressors and decompressors: a view valid until the next call. */
let scratch = new Uint8Array(new ArrayBuffer(64 * 1024));

function grow(min: number): void {
  let size = scratch.length * 2;
  while (size < min) size *= 2;
  const bigger = new Uint8Array(new ArrayBuffer(size));
  bigger.set(scratch);
  scratch = bigger;
}

/** A raw deflate stream (no zlib header), one message at a time. */
export class Deflater extends ZStreamBase {
  /**
   * @param windowBits 9..15 (8 is not offered: zlib's raw deflate turns it into 9, which a peer
   *   that asked for 8 could not inflate)
   * @param takeover keep the window between messages (context takeover); else reset after each
   */
  constructor(readonly windowBits: number, readonly memLevel: number, readonly takeover: boolean, level = 6) {
    super();
    if (!(windowBits >= 9 && windowBits <= 15)) throw new RangeError(`deflate window bits must be 9..15, got ${windowBits}`);
    this.check("deflateInit2_", this.z.deflateInit2_(this.strm, level, Z_DEFLATED, -windowBits, memLevel, Z_DEFAULT_STRATEGY, ZLIB_VERSION, zStream.size));
  }

  /** The message deflated, without the sync flush's tail: a view valid until the next call. */
  compress(input: Uint8Array): Uint8Array {
    if (this.ended) throw new ZlibError("deflate: the stream was released");
    this.setIn(input.length === 0 ? 0 : (ptr(input) as number), input.length);
    let produced = 0;
    for (;;) {
      // Room for the message plus deflate's worst-case growth, then more if it asks.
      if (scratch.length - produced < input.length + 64) grow(produced + input.length + 64);
      this.setOut((ptr(scratch) as number) + produced, scratch.length - produced);
      const before = this.availOut;
      const rc = this.z.deflate(this.strm, Z_SYNC_FLUSH);
      if (rc !== Z_OK && rc !== Z_BUF_ERROR) this.check("deflate", rc);
      produced += before - this.availOut;
      if (this.availOut !== 0 && this.availIn === 0) break; // flushed: all input taken, room left
    }
    if (!this.takeover) this.check("deflateReset", this.z.deflateReset(this.strm));
    // A sync flush ends with an empty stored block, 00 00 ff ff: not sent (RFC 7692 §7.2.1).
    return scratch.subarray(0, produced - 4);
  }

  [Symbol.dispose](): void {
    if (this.ended) return;
    this.ended = true;
    this.z.deflateEnd(this.strm);
  }
}

/** A raw inflate stream, one message at a time, bounded by a largest message size. */
export class Inflater extends ZStreamBase {
  constructor(readonly takeover: boolean) {
    super();
    // A 15-bit window inflates whatever window the peer deflated with.
    this.check("inflateInit2_", this.z.inflateInit2_(this.strm, -15, ZLIB_VERSION, zStream.size));
  }

  /**
   * The message inflated (the tail appended, §7.2.2): a view valid until the next call; null
   * when it would pass `max` bytes (the caller closes with 1009: memory stays bounded).
   */
  decompress(input: Uint8Array, max: number): Uint8Array | null {
    if (this.ended) throw new ZlibError("inflate: the stream was released");
    let produced = 0;
    parts: for (let part = 0; part < 2; part++) {
      const src = part === 0 ? input : TAIL;
      this.setIn(src.length === 0 ? 0 : (ptr(src) as number), src.length);
      for (;;) {
        if (scratch.length - produced < 4096) grow(produced + 4096);
        const room = Math.min(scratch.length - produced, max + 1 - produced);
        this.setOut((ptr(scratch) as number) + produced, room);
        const rc = this.z.inflate(this.strm, Z_SYNC_FLUSH);
        produced += room - this.availOut;
        if (produced > max) {
          this.reset(true);
          return null;
        }
        if (rc === Z_BUF_ERROR) break; // no progress possible: input used up
        if (rc === Z_STREAM_END) {
          // The peer ended its deflate stream (a final block): the next message starts afresh.
          this.reset(true);
          return scratch.subarray(0, produced);
        }
        if (rc !== Z_OK) {
          this.reset(true);
          throw new ZlibError(`inflate: zlib error ${rc} (not a valid deflate stream)`);
        }
        if (this.availIn === 0 && this.availOut !== 0) continue parts;
      }
    }
    this.reset(false);
    return scratch.subarray(0, produced);
  }

  /** After a message: without takeover the window starts empty again; after an error, always. */
  private reset(failed: boolean): void {
    if (failed || !this.takeover) this.check("inflateReset", this.z.inflateReset(this.strm));
  }

  [Symbol.dispose](): void {
    if (this.ended) return;
    this.ended = true;
    this.z.inflateEnd(this.strm);
  }
}

/** The thread's no-context-takeover deflaters, one per window size asked for. */
const sharedDeflaters = new Map<number, Deflater>();
let threadInflater: Inflater | null = null;

/** A deflater shared by every socket without server context takeover (reset after each message). */
export function sharedDeflater(windowBits: number): Deflater {
  let d = sharedDeflaters.get(windowBits);
  if (d === undefined) sharedDeflaters.set(windowBits, (d = new Deflater(windowBits, 8, false)));
  return d;
}

/** The inflater shared by every socket without client context takeover. */
export function sharedInflater(): Inflater {
  return (threadInflater ??= new Inflater(false));
}

