// The thread's buffer pool: output buffers, decoder bodies and shared payloads by size class.
// Pooling keeps a busy connection from allocating per message and returns memory at once
// when a queue empties, instead of whenever the GC gets to it.

/** Smallest pooled buffer; buffers are powers of two from here, so they pool by size class. */
export const CHUNK_SIZE = 16 * 1024;
/** Larger buffers are not pooled. */
const MAX_POOLED_SIZE = 1024 * 1024;

/**
 * Output buffers by size class (16 KiB, 32 KiB, ... 1 MiB). Without it every large write
 * (a broadcast to many recipients) allocates a fresh ArrayBuffer that the GC reclaims late,
 * and RSS grows under fan-out. Pooled memory is capped (maxPooledBytes).
 */
export class BufferPool {
  private readonly free: Uint8Array[][] = [];
  /**
   * Per size class, the fewest free buffers seen since the last trim(): that many sat unused
   * for a whole interval, so trim() gives them back. A burst (one poll's worth of streams
   * each filling a queue at once) leaves up to one buffer per stream in the pool; without
   * decay an idle server would keep them for good.
   */
  private readonly lowWater: number[] = [];
  private pooledBytes = 0;
  constructor(readonly maxPooledBytes = 16 * 1024 * 1024) {}

  /** A buffer of at least minSize bytes: the next power of two from CHUNK_SIZE up. */
  acquire(minSize: number): Uint8Array {
    let size = CHUNK_SIZE;
    while (size < minSize) size *= 2;
    const c = classOf(size);
    const list = this.free[c];
    const b = list?.pop();
    if (b) {
      this.pooledBytes -= b.length;
      if (list!.length < this.lowWater[c]!) this.lowWater[c] = list!.length;
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
    const c = classOf(size);
    (this.free[c] ??= []).push(buf);
    this.lowWater[c] ??= 0; // a new class: its buffers are not idle until a trim has seen them
    this.pooledBytes += size;
  }

  /**
   * Frees the buffers that stayed unused since the last call (the reactor calls it every
   * TRIM_EVERY_MS): a steady load keeps its working set, an idle server returns its burst.
   */
  trim(): void {
    for (let c = 0; c < this.free.length; c++) {
      const list = this.free[c];
      if (list === undefined) continue;
      const idle = Math.min(this.lowWater[c] ?? 0, list.length);
      // The bottom of the stack: the buffers released longest ago.
      if (idle > 0) for (const b of list.splice(0, idle)) {
        this.pooledBytes -= b.length;
        freeNow(b);
      }
      this.lowWater[c] = list.length;
    }
  }

  /** A buffer owned by a scope: `using b = pool.lease(n)` gives it back on every path. */
  lease(minSize: number): PooledBuffer {
    return new PooledBuffer(this, this.acquire(minSize));
  }

  /** Buffers held in the pool. */
  get pooled(): number {
    let n = 0;
    for (const l of this.free) n += l?.length ?? 0;
    return n;
  }
}

/** One pooled buffer with one owner; disposing it gives the buffer back to its pool. */
export class PooledBuffer implements Disposable {
  #bytes: Uint8Array | null;
  constructor(private readonly pool: BufferPool, bytes: Uint8Array) {
    this.#bytes = bytes;
  }
  get bytes(): Uint8Array {
    if (this.#bytes === null) throw new Error("PooledBuffer: used after release");
    return this.#bytes;
  }
  /** Gives up ownership: the caller now releases the buffer to the pool. */
  take(): Uint8Array {
    const b = this.bytes;
    this.#bytes = null;
    return b;
  }
  [Symbol.dispose](): void {
    if (this.#bytes === null) return;
    this.pool.release(this.#bytes);
    this.#bytes = null;
  }
}

/**
 * Gives a dropped buffer's memory back now: transfer(0) detaches the ArrayBuffer and frees
 * its contents. Without it a slow consumer's outgrown buffers (1 -> 2 -> 4 MiB) stay
 * allocated until a late GC. Only for buffers nobody uses any more: views of them and
 * cached ptr()s are invalid after.
 */
export function freeNow(buf: Uint8Array): void {
  const ab = buf.buffer as ArrayBuffer & { transfer?(newLength: number): ArrayBuffer };
  if (ab.byteLength === buf.length && typeof ab.transfer === "function") ab.transfer(0);
}

function classOf(size: number): number {
  return Math.log2(size / CHUNK_SIZE) | 0;
}

/**
 * Buffers of this thread's reactors, write queues, decoders and shared payloads. One per
 * thread (module state is per Worker): every user of it runs on the thread's one loop.
 */
export const threadPool = new BufferPool();
