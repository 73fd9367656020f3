// The write path's buffers. A connection's output is copied into one contiguous byte
// buffer, so everything a handler writes during one reactor turn leaves in a single
// send(2). Buffers come from a per-reactor pool and go back to it as soon as the queue is
// empty: an idle connection holds no output memory, and a busy one allocates nothing per
// message.

import { ptr, type Pointer } from "bun:ffi";
import { libc, rc, MSG_NOSIGNAL } from "../../ffi/index.ts";

/** Smallest output buffer; buffers are powers of two from here, so they pool by size class. */
export const CHUNK_SIZE = 16 * 1024;
/** Larger buffers are not pooled. */
const MAX_POOLED_SIZE = 1024 * 1024;

/**
 * Output buffers by size class (16 KiB, 32 KiB, ... 1 MiB). Without it every large write
 * (a 64 KiB broadcast to 50 recipients) allocated fresh ArrayBuffers that the GC reclaims
 * late: RSS grew by hundreds of MiB under fan-out. Pooled memory is capped (maxPooledBytes).
 */
export class BufferPool {
  private readonly free: Uint8Array[][] = [];
  private pooledBytes = 0;
  constructor(readonly maxPooledBytes = 16 * 1024 * 1024) {}

  /** A buffer of at least minSize bytes: the next power of two from CHUNK_SIZE up. */
  acquire(minSize: number): Uint8Array {
    let size = CHUNK_SIZE;
    while (size < minSize) size *= 2;
    const list = this.free[classOf(size)];
    const b = list?.pop();
    if (b) {
      this.pooledBytes -= b.length;
      return b;
    }
    // Own ArrayBuffer: never moved by the JIT, so ptr() stays valid while referenced.
    return new Uint8Array(new ArrayBuffer(size));
  }

  /** Takes back a buffer from acquire(); one not pooled is freed at once (detached). */
  release(buf: Uint8Array): void {
    const size = buf.length;
    if (size > MAX_POOLED_SIZE || size < CHUNK_SIZE || (size & (size - 1)) !== 0 || this.pooledBytes + size > this.maxPooledBytes) {
      freeNow(buf);
      return;
    }
    (this.free[classOf(size)] ??= []).push(buf);
    this.pooledBytes += size;
  }

  /** Buffers held in the pool. */
  get pooled(): number {
    let n = 0;
    for (const l of this.free) n += l?.length ?? 0;
    return n;
  }
}

/**
 * Gives a dropped buffer's memory back now instead of whenever the GC gets to it:
 * transfer(0) detaches the ArrayBuffer and frees its contents. Without it every buffer a
 * slow consumer's queue outgrew (1 -> 2 -> 4 MiB) and the one it held when closed stayed
 * allocated until a GC that, with pooled buffers allocating nothing, came late or not at
 * all: RSS held about twice the queued bytes and stayed there after the drop. Only for
 * buffers the caller no longer uses: any view of them, and a cached ptr(), is invalid after.
 */
function freeNow(buf: Uint8Array): void {
  const ab = buf.buffer as ArrayBuffer & { transfer?(newLength: number): ArrayBuffer };
  if (ab.byteLength === buf.length && typeof ab.transfer === "function") ab.transfer(0);
}

function classOf(size: number): number {
  return Math.log2(size / CHUNK_SIZE) | 0;
}

const encoder = new TextEncoder();

export class WriteQueue {
  private buf: Uint8Array | null = null;
  /** Address of buf's memory. Valid while `buf` is referenced from here. */
  private bufPtr = 0;
  private start = 0;
  private end = 0;

  constructor(private readonly pool: BufferPool) {}

  get length(): number {
    return this.end - this.start;
  }

  /** Capacity currently held (0 when idle). */
  get capacity(): number {
    return this.buf ? this.buf.length : 0;
  }

  /** Makes room for n more bytes at `end`, compacting or growing as needed. */
  private reserve(n: number): Uint8Array {
    let buf = this.buf;
    if (buf === null) {
      buf = this.pool.acquire(n);
      this.setBuf(buf);
      return buf;
    }
    if (this.end + n <= buf.length) return buf;
    const len = this.end - this.start;
    if (len + n <= buf.length) {
      buf.copyWithin(0, this.start, this.end);
    } else {
      const bigger = this.pool.acquire(len + n);
      bigger.set(buf.subarray(this.start, this.end));
      this.pool.release(buf);
      this.setBuf(bigger);
      buf = bigger;
    }
    this.start = 0;
    this.end = len;
    return buf;
  }

  private setBuf(buf: Uint8Array): void {
    this.buf = buf;
    this.bufPtr = ptr(buf);
  }

  append(src: Uint8Array, from: number, to: number): void {
    const n = to - from;
    if (n <= 0) return;
    const buf = this.reserve(n);
    // subarray() allocates a view (~60 ns in Bun 1.4.5); a byte loop is cheaper up to ~128 B,
    // which covers replies, headers and small fan-out deliveries.
    if (n <= 128) {
      let e = this.end;
      for (let i = from; i < to; i++) buf[e++] = src[i]!;
    } else {
      buf.set(from === 0 && to === src.length ? src : src.subarray(from, to), this.end);
    }
    this.end += n;
  }

  appendString(s: string): void {
    if (s.length === 0) return;
    const buf = this.reserve(s.length * 3); // UTF-8 worst case per UTF-16 unit
    const { written } = encoder.encodeInto(s, buf.subarray(this.end));
    this.end += written;
  }

  /**
   * One send(2) of everything queued. Returns bytes accepted by the kernel (>= 0) or -errno.
   * MSG_NOSIGNAL: a peer that went away gives EPIPE instead of killing the process.
   */
  flushTo(fd: number): number {
    const n = this.end - this.start;
    if (n === 0) return 0;
    const r = rc(libc.send(fd, (this.bufPtr + this.start) as Pointer, n, MSG_NOSIGNAL));
    if (r > 0) {
      this.start += r;
      if (this.start === this.end) this.clear();
    }
    return r;
  }

  /** Drops queued bytes and gives the buffer back to the pool. */
  clear(): void {
    if (this.buf !== null) {
      this.pool.release(this.buf);
      this.buf = null;
      this.bufPtr = 0;
    }
    this.start = this.end = 0;
  }
}
