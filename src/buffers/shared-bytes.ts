// Immutable bytes that several write queues reference instead of copying: one large payload
// for many connections (a broadcast). Copied, a 64 KiB broadcast to 50 connections is 3 MiB
// of memcpy, and the queues of stalled readers all grow at once.

import { ptr } from "bun:ffi";
import { BufferPool, CHUNK_SIZE, threadPool } from "./pool.ts";

/**
 * Reference-counted: the creator holds one reference and each queue that holds the bytes
 * another. When the last is released a pooled buffer goes back to the pool, so a stream of
 * large broadcasts allocates nothing. Nobody may modify `bytes` once it is shared.
 */
export class SharedBytes implements Disposable {
  private refs = 1;
  /** The bytes; shared ranges are taken from [0, length). Never modified once shared. */
  readonly bytes: Uint8Array;
  /** Address of the bytes; valid while a reference is held. */
  readonly ptr: number;
  /**
   * Shares `bytes[0, length)`. Without a pool the bytes are copied into a buffer that owns
   * its ArrayBuffer (a stable address: a cached ptr() of a small array can go stale), and
   * the caller may reuse its array. With a pool, `bytes` came from pool.acquire(), is taken
   * over as is, and goes back to the pool when the last reference is released.
   */
  constructor(
    bytes: Uint8Array,
    readonly length = bytes.length,
    private readonly pool: BufferPool | null = null,
  ) {
    if (length < 0 || length > bytes.length) throw new RangeError(`SharedBytes: length ${length} outside 0..${bytes.length}`);
    if (pool === null) bytes = ownedCopy(bytes, length);
    this.bytes = bytes;
    this.ptr = bytes.length > 0 ? ptr(bytes) : 0;
  }

  /**
   * A shared copy of src[from, to); the caller holds the one reference. From CHUNK_SIZE up
   * the copy is a pooled buffer. Smaller ones get a buffer of exactly their size: a 1 KiB
   * batch in a 16 KiB pool buffer would let a stalled reader, limited to maxBuffered bytes,
   * hold 16x that in memory.
   */
  static copyOf(src: Uint8Array, from = 0, to = src.length, pool: BufferPool = threadPool): SharedBytes {
    const n = to - from;
    const part = from === 0 && to === src.length ? src : src.subarray(from, to);
    if (n < CHUNK_SIZE) return new SharedBytes(part); // the constructor copies it, exact size
    const b = pool.acquire(n);
    b.set(part);
    return new SharedBytes(b, n, pool);
  }

  get released(): boolean {
    return this.refs === 0;
  }

  retain(): void {
    if (this.refs === 0) throw new Error("SharedBytes: retain() after the last release()");
    this.refs++;
  }

  release(): void {
    if (this.refs === 0) throw new Error("SharedBytes: release() without a reference");
    if (--this.refs === 0 && this.pool !== null) this.pool.release(this.bytes);
  }

  /** Releases the creator's reference: `using shared = SharedBytes.copyOf(...)`. */
  [Symbol.dispose](): void {
    this.release();
  }
}

/** src[0, length) in a buffer that owns its ArrayBuffer (a stable address for ptr()). */
function ownedCopy(src: Uint8Array, length: number): Uint8Array {
  const b = new Uint8Array(new ArrayBuffer(length));
  b.set(length === src.length ? src : src.subarray(0, length));
  return b;
}
