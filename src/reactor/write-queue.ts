// The write path's buffers. A connection's output is copied into one contiguous byte
// buffer, so everything a handler writes during one reactor turn leaves in a single
// send(2). Buffers come from a per-reactor pool and go back to it as soon as the queue is
// empty: an idle connection holds no output memory, and a busy one allocates nothing per
// message.
//
// Large payloads that several connections send (a 64 KiB broadcast to 50 clients) are not
// copied into each queue: the queue holds a reference to one immutable SharedBytes, and
// the flush sends it from there with sendmsg(2) (one gather send, still one syscall per
// connection per turn). Copying it 50 times cost 3 MiB of memcpy per broadcast, and the
// queues of consumers that stopped reading grew (and re-allocated) their buffers towards
// maxBuffered all at once; both stalled the loop for milliseconds.

import { ptr, type Pointer } from "bun:ffi";
import { libc, rc, MSG_NOSIGNAL, IOVEC_WORDS, MSGHDR_SIZE, msghdr } from "../../ffi/index.ts";

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

/**
 * Buffers of this thread's reactors, write queues, decoders and shared payloads. One per
 * thread (module state is per Worker): every user of it runs on the thread's one loop.
 */
export const threadPool = new BufferPool();

/**
 * Immutable bytes that several write queues reference instead of copying (see the top),
 * counted: the creator holds one reference and each queue that holds the bytes another.
 * When the last is released a pooled buffer goes back to the pool, so a stream of 64 KiB
 * broadcasts allocates nothing (allocating each made the GC run every second, for 1-2 ms
 * pauses). Nobody may modify `bytes` once it is shared.
 */
export class SharedBytes {
  private refs = 1;
  /** The bytes; shared ranges are taken from [0, length). Never modified once shared. */
  readonly bytes: Uint8Array;
  /** Address of the bytes; valid while a reference is held. */
  readonly ptr: number;
  /**
   * Shares `bytes[0, length)`. Without a pool the bytes are copied into a buffer that owns
   * its ArrayBuffer (so the address taken here stays valid: a cached ptr() of a small array
   * can go stale, shared/BUN-FFI-NOTES.md), and the caller may reuse its array. With a
   * pool, `bytes` came from pool.acquire(), is taken over as is, and goes back to the pool
   * when the last reference is released.
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
   * the copy is a pooled buffer (a stream of 64 KiB broadcasts allocates nothing). Smaller
   * ones get a buffer of exactly their size: a 1 KiB batch in a 16 KiB pool buffer would
   * make a stalled reader's queue, limited to maxBuffered bytes, hold 16x that in memory.
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
}

/**
 * The view of a reactor's receive buffer that the running `data` handler was given, and its
 * address (set by the reactor before each call). Echo and framed replies copy from it, and
 * its address is known: no ptr() per copy (~11 ns). The receive buffer owns its ArrayBuffer,
 * so the address never moves.
 */
let recvView: Uint8Array | null = null;
let recvViewPtr = 0;

export function setReceiveView(view: Uint8Array, address: number): void {
  recvView = view;
  recvViewPtr = address;
}

/** src[0, length) in a buffer that owns its ArrayBuffer (a stable address for ptr()). */
function ownedCopy(src: Uint8Array, length: number): Uint8Array {
  const b = new Uint8Array(new ArrayBuffer(length));
  b.set(length === src.length ? src : src.subarray(0, length));
  return b;
}

/** A queued region sent before the queue's own tail buffer. */
interface Segment {
  bytes: Uint8Array;
  ptr: number;
  start: number;
  end: number;
  /** Null: a retired tail buffer from the pool, given back once sent. */
  shared: SharedBytes | null;
}

/** iovecs per sendmsg. Far below IOV_MAX (1024); what is left goes in the next flush. */
const MAX_IOV = 64;
// Scratch for sendmsg, shared by every queue of the thread (a flush never nests).
const iov = new Uint32Array(new ArrayBuffer(MAX_IOV * IOVEC_WORDS * 4));
const msg = new Uint32Array(new ArrayBuffer(MSGHDR_SIZE));
setPointer(msg, msghdr.iovWord, ptr(iov));
const msgPtr = ptr(msg);

function setPointer(words: Uint32Array, at: number, value: number): void {
  words[at] = value >>> 0; // ToUint32 is value mod 2^32: the low word
  words[at + 1] = Math.floor(value / 0x1_0000_0000);
}

export class WriteQueue {
  /** The tail: owned bytes, always the last in send order. */
  private buf: Uint8Array | null = null;
  /** Address of buf's memory. Valid while `buf` is referenced from here. */
  private bufPtr = 0;
  private start = 0;
  private end = 0;
  /** Regions before the tail, oldest first; null (the common case) when there are none. */
  private segs: Segment[] | null = null;
  private segHead = 0;
  private segBytes = 0;

  constructor(private readonly pool: BufferPool) {}

  get length(): number {
    return this.segBytes + this.end - this.start;
  }

  /** Capacity currently held (0 when idle); shared bytes are not counted. */
  get capacity(): number {
    let n = this.buf ? this.buf.length : 0;
    const segs = this.segs;
    if (segs !== null) for (let i = this.segHead; i < segs.length; i++) if (segs[i]!.shared === null) n += segs[i]!.bytes.length;
    return n;
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
    this.reserve(n);
    this.copyIn(src, from, n);
    this.end += n;
  }

  /**
   * src[from, from + n) to `end` (room reserved). A JS byte loop costs ~1.5 ns per byte and
   * set(subarray()) allocates a view, so all but the smallest copies go through libc's
   * memcpy. ptr(src) is taken fresh on every call: a cached pointer to a small array can go
   * stale (shared/BUN-FFI-NOTES.md); our own buffer's address (bufPtr) cannot.
   */
  private copyIn(src: Uint8Array, from: number, n: number): void {
    if (n <= 16) {
      const buf = this.buf!;
      let e = this.end;
      const to = from + n;
      for (let i = from; i < to; i++) buf[e++] = src[i]!;
    } else {
      const sp = src === recvView ? recvViewPtr : ptr(src);
      libc.memcpy((this.bufPtr + this.end) as Pointer, (sp + from) as Pointer, n);
    }
  }

  /** A big-endian u32 `prefix`, then src[from, to): a length- or type-prefixed frame. */
  appendPrefixed(prefix: number, src: Uint8Array, from: number, to: number): void {
    const n = to - from;
    const buf = this.reserve(n + 4);
    const e = this.end;
    buf[e] = prefix >>> 24;
    buf[e + 1] = prefix >>> 16;
    buf[e + 2] = prefix >>> 8;
    buf[e + 3] = prefix;
    this.end = e + 4;
    if (n > 0) this.copyIn(src, from, n);
    this.end += n;
  }

  appendString(s: string): void {
    if (s.length === 0) return;
    const buf = this.reserve(s.length * 3); // UTF-8 worst case per UTF-16 unit
    const { written } = encoder.encodeInto(s, buf.subarray(this.end));
    this.end += written;
  }

  /** Queues shared.bytes[from, to) by reference (no copy). */
  appendShared(shared: SharedBytes, from: number, to: number): void {
    if (to <= from) return;
    const segs = (this.segs ??= []);
    if (this.end > this.start) {
      // The tail holds bytes that go before these: it becomes a segment, and later
      // appends start a new tail.
      segs.push({ bytes: this.buf!, ptr: this.bufPtr, start: this.start, end: this.end, shared: null });
      this.segBytes += this.end - this.start;
      this.buf = null;
      this.bufPtr = 0;
      this.start = this.end = 0;
    }
    shared.retain();
    segs.push({ bytes: shared.bytes, ptr: shared.ptr, start: from, end: to, shared });
    this.segBytes += to - from;
  }

  /**
   * One send(2) of everything queued (sendmsg when shared segments are queued). Returns
   * bytes accepted by the kernel (>= 0) or -errno. MSG_NOSIGNAL: a peer that went away
   * gives EPIPE instead of killing the process.
   */
  flushTo(fd: number): number {
    if (this.segBytes > 0) return this.flushSegments(fd);
    const n = this.end - this.start;
    if (n === 0) return 0;
    const r = rc(libc.send(fd, (this.bufPtr + this.start) as Pointer, n, MSG_NOSIGNAL));
    if (r > 0) {
      this.start += r;
      if (this.start === this.end) this.releaseTail(); // (the segment array, if any, stays)
    }
    return r;
  }

  private flushSegments(fd: number): number {
    const segs = this.segs!;
    if (this.end === this.start && this.segHead === segs.length - 1) {
      // One shared range and nothing else (a fan-out recipient's usual turn): plain send.
      const only = segs[this.segHead]!;
      const r = rc(libc.send(fd, (only.ptr + only.start) as Pointer, only.end - only.start, MSG_NOSIGNAL));
      if (r > 0) this.consume(r);
      return r;
    }
    let count = 0;
    for (let i = this.segHead; i < segs.length && count < MAX_IOV; i++, count++) {
      const s = segs[i]!;
      setPointer(iov, count * IOVEC_WORDS, s.ptr + s.start);
      setPointer(iov, count * IOVEC_WORDS + 2, s.end - s.start);
    }
    if (count < MAX_IOV && this.end > this.start) {
      setPointer(iov, count * IOVEC_WORDS, this.bufPtr + this.start);
      setPointer(iov, count * IOVEC_WORDS + 2, this.end - this.start);
      count++;
    }
    setPointer(msg, msghdr.iovLenWord, count);
    const r = rc(libc.sendmsg(fd, msgPtr as Pointer, MSG_NOSIGNAL));
    if (r > 0) this.consume(r);
    return r;
  }

  /** Drops the first n queued bytes (sent). */
  private consume(n: number): void {
    const segs = this.segs!;
    while (n > 0 && this.segHead < segs.length) {
      const s = segs[this.segHead]!;
      const len = s.end - s.start;
      if (n < len) {
        s.start += n;
        this.segBytes -= n;
        return;
      }
      n -= len;
      this.segBytes -= len;
      this.dropSegment(s);
      segs[this.segHead++] = undefined!;
    }
    if (this.segHead === segs.length) {
      // Kept (empty) for the next batch: a fan-out recipient gets a segment per turn.
      segs.length = 0;
      this.segHead = 0;
    } else if (this.segHead >= 64 && this.segHead * 2 >= segs.length) {
      // A consumer that never quite catches up: keep the array from growing a hole at its head.
      segs.splice(0, this.segHead);
      this.segHead = 0;
    }
    if (n > 0) {
      this.start += n;
      if (this.start === this.end) this.releaseTail();
    }
  }

  private dropSegment(s: Segment): void {
    if (s.shared === null) this.pool.release(s.bytes);
    else s.shared.release();
  }

  private releaseTail(): void {
    if (this.buf !== null) {
      this.pool.release(this.buf);
      this.buf = null;
      this.bufPtr = 0;
    }
    this.start = this.end = 0;
  }

  /** Drops queued bytes and gives the buffers back to the pool. */
  clear(): void {
    const segs = this.segs;
    if (segs !== null) {
      for (let i = this.segHead; i < segs.length; i++) this.dropSegment(segs[i]!);
      this.segs = null;
      this.segHead = 0;
      this.segBytes = 0;
    }
    this.releaseTail();
  }
}
