// A lock-free single-producer single-consumer ring of variable-length records in a
// SharedArrayBuffer: the cross-thread path of the hub (one ring per ordered pair of
// workers). No locks, no postMessage: the producer writes records and publishes its tail
// with one Atomics.store per turn; the consumer reads up to the tail it loads and publishes
// its head the same way. Atomics.store/load are sequentially consistent, so the plain
// writes of a record happen-before the consumer's reads of it.
//
// Layout: an Int32 header of HEADER_BYTES (head and tail on separate cache lines, so the
// two threads do not bounce one line per update), then `capacity` bytes of data (a power of
// two). Positions are u32 counters that wrap; a position's offset is `pos & mask`. A record
// is 4-byte aligned and never wraps: when it does not fit before the end, the producer
// writes a WRAP word and starts again at offset 0.
//
// Record: [u32 bodyLength][body...] padded to 4 bytes. The body's meaning is the caller's.

const HEADER_BYTES = 128;
/** Int32 index of the consumer's head (offset 0) and of the producer's tail (offset 64). */
const HEAD = 0;
const TAIL = 16;
/** A length word that means "skip to offset 0". */
const WRAP = -1;

export const RING_MIN_CAPACITY = 4096;

/** A new ring's shared memory: capacity bytes of data (rounded up to a power of two). */
export function createRingBuffer(capacity: number): SharedArrayBuffer {
  let cap = RING_MIN_CAPACITY;
  while (cap < capacity) cap *= 2;
  if (cap > 1 << 30) throw new RangeError(`ring capacity too large: ${capacity}`);
  return new SharedArrayBuffer(HEADER_BYTES + cap);
}

class RingView {
  protected readonly header: Int32Array;
  /** The data area as bytes and as u32 words (records are 4-aligned). */
  readonly bytes: Uint8Array;
  protected readonly words: Int32Array;
  readonly capacity: number;
  protected readonly mask: number;
  constructor(readonly buffer: SharedArrayBuffer) {
    this.header = new Int32Array(buffer, 0, HEADER_BYTES / 4);
    this.capacity = buffer.byteLength - HEADER_BYTES;
    if (this.capacity < RING_MIN_CAPACITY || (this.capacity & (this.capacity - 1)) !== 0) throw new RangeError("not a ring buffer");
    this.bytes = new Uint8Array(buffer, HEADER_BYTES, this.capacity);
    this.words = new Int32Array(buffer, HEADER_BYTES, this.capacity / 4);
    this.mask = this.capacity - 1;
  }
  /** Bytes published and not yet consumed (either side may ask). */
  get used(): number {
    return (Atomics.load(this.header, TAIL) - Atomics.load(this.header, HEAD)) >>> 0;
  }
}

/** The writing end. One thread only. */
export class RingProducer extends RingView {
  /** Local tail: records written but not yet published until publish(). */
  private tail: number;
  /** Last head seen (refreshed only when the ring looks full). */
  private head: number;
  private published: number;
  constructor(buffer: SharedArrayBuffer) {
    super(buffer);
    // A restarted producer continues where the last one stopped: positions live in the buffer.
    this.tail = this.published = Atomics.load(this.header, TAIL) >>> 0;
    this.head = Atomics.load(this.header, HEAD) >>> 0;
  }

  /**
   * Room for a record whose body is `bodyLength` bytes: returns the byte offset in `bytes`
   * where the body goes, or -1 when the ring is full (nothing changed). Follow with
   * commit(bodyLength) after writing the body.
   */
  reserve(bodyLength: number): number {
    const need = 4 + ((bodyLength + 3) & ~3);
    const cap = this.capacity;
    if (need > cap / 2) return -1; // never fits reliably: the caller must split or refuse
    let off = this.tail & this.mask;
    const toEnd = cap - off;
    const total = need > toEnd ? toEnd + need : need;
    if (((this.tail - this.head) >>> 0) + total > cap) {
      this.head = Atomics.load(this.header, HEAD) >>> 0;
      if (((this.tail - this.head) >>> 0) + total > cap) return -1;
    }
    if (need > toEnd) {
      this.words[off >> 2] = WRAP;
      this.tail = (this.tail + toEnd) >>> 0;
      off = 0;
    }
    this.words[off >> 2] = bodyLength;
    return off + 4;
  }

  /** The record reserved last is complete (not yet visible: publish()). */
  commit(bodyLength: number): void {
    this.tail = (this.tail + 4 + ((bodyLength + 3) & ~3)) >>> 0;
  }

  /** Makes committed records visible to the consumer; true when there were new ones. */
  publish(): boolean {
    if (this.tail === this.published) return false;
    Atomics.store(this.header, TAIL, this.tail | 0);
    this.published = this.tail;
    return true;
  }
}

/** The reading end. One thread only. */
export class RingConsumer extends RingView {
  private head: number;
  constructor(buffer: SharedArrayBuffer) {
    super(buffer);
    this.head = Atomics.load(this.header, HEAD) >>> 0;
  }

  /**
   * Calls `record(offset, length)` for each published record (the body is
   * bytes[offset, offset + length), valid during the call), then frees them. Returns the
   * records read. `max` bounds one drain so a flooding producer cannot starve the loop.
   */
  drain(record: (offset: number, length: number) => void, max = Infinity): number {
    const tail = Atomics.load(this.header, TAIL) >>> 0;
    let head = this.head;
    let n = 0;
    try {
      while (head !== tail && n < max) {
        const off = head & this.mask;
        const len = this.words[off >> 2]!;
        if (len === WRAP) {
          head = (head + (this.capacity - off)) >>> 0;
          continue;
        }
        // Freed before the call: a record that throws is not replayed.
        head = (head + 4 + ((len + 3) & ~3)) >>> 0;
        n++;
        record(off + 4, len);
      }
    } finally {
      this.head = head;
      Atomics.store(this.header, HEAD, head | 0);
    }
    return n;
  }

  /** Drops everything published so far (a restarted consumer discards a dead one's backlog). */
  skipAll(): void {
    this.head = Atomics.load(this.header, TAIL) >>> 0;
    Atomics.store(this.header, HEAD, this.head | 0);
  }
}
