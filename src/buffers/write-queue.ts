// A connection's output queue: a pure data structure, no syscalls. Everything a handler
// writes during one reactor turn is copied into one contiguous tail buffer, so the driver
// sends it with one send(2); large payloads shared by many connections (SharedBytes) are
// queued by reference as segments before the tail and leave with one gather send.
//
// The driver sees the queue through three operations: the contiguous range (the common
// case), exportIov() (segments + tail as iovecs) and consume(n) once the kernel took n
// bytes. A file range (a SharedFile's bytes, never in memory) is a segment too: while one
// is queued (hasFile) the driver exports the memory before it (exportIovBeforeFile), then
// sends the file range at the head (fileHead) with sendfile(2). pin()/unpin() bracket a send that is still in flight (a completion driver such as
// io_uring): while pinned no queued byte moves and no buffer is released, so the addresses
// the kernel holds stay valid; appends then go to a fresh tail.

import { ptr, type Pointer } from "bun:ffi";
import { libc, IOVEC_WORDS } from "../../ffi/index.ts";
import type { BufferPool } from "./pool.ts";
import type { SharedBytes } from "./shared-bytes.ts";
import type { SharedFile } from "./shared-file.ts";

/**
 * The view of the receive buffer that the running `data` handler was given, and its
 * address (set by the driver before each call). Echo and framed replies copy from it, and
 * its address is known: no ptr() per copy. The receive buffer owns its ArrayBuffer, so the
 * address never moves.
 */
let recvView: Uint8Array | null = null;
let recvViewPtr = 0;

export function setReceiveView(view: Uint8Array, address: number): void {
  recvView = view;
  recvViewPtr = address;
}

/** A queued region sent before the queue's own tail buffer. */
interface Segment {
  bytes: Uint8Array;
  ptr: number;
  /** Offsets into bytes, or into the file for a file range. */
  start: number;
  end: number;
  /** Null: a retired tail buffer from the pool, given back once sent. */
  shared: SharedBytes | null;
  /** A file range: [start, end) of this file, sent with sendfile (bytes is empty). */
  file: SharedFile | null;
}

/** The file range at the head of a queue, as the driver sends it. */
export interface FileRange {
  readonly file: SharedFile;
  readonly start: number;
  readonly end: number;
}

const NO_BYTES = new Uint8Array(0);

const encoder = new TextEncoder();

/** UTF-8 length of a string (what TextEncoder writes, lone surrogates as U+FFFD). */
export function utf8Length(s: string): number {
  let n = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) continue;
    if (c < 0x800) n += 1;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      n += 2; // a surrogate pair: two units, four bytes
      i++;
    } else n += 2;
  }
  return n;
}

/** Writes a 64-bit pointer or size as two little-endian words. */
export function setWord64(words: Uint32Array, at: number, value: number): void {
  words[at] = value >>> 0; // ToUint32 is value mod 2^32: the low word
  words[at + 1] = Math.floor(value / 0x1_0000_0000);
}

/** Emptied queues of this thread (takeQueue/recycleQueue): an idle stream holds none. */
const spareQueues: WriteQueue[] = [];
const MAX_SPARE_QUEUES = 1024;

/**
 * A queue for a stream that has nothing queued: a spare one when there is one. A stream
 * gives its queue back each time it empties, so 10,000 idle connections hold no queue, and
 * a busy one moves the same object between its stream and this list (no allocation).
 */
export function takeQueue(pool: BufferPool): WriteQueue {
  const q = spareQueues.pop();
  return q !== undefined && q.pool === pool ? q : new WriteQueue(pool);
}

/** Gives back an empty, unpinned queue (see takeQueue). */
export function recycleQueue(q: WriteQueue): void {
  if (q.length !== 0 || q.isPinned) throw new Error("recycleQueue: the queue is not empty");
  if (spareQueues.length < MAX_SPARE_QUEUES) spareQueues.push(q);
}

export class WriteQueue implements Disposable {
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
  /** Bytes and count of the file-range segments (part of segBytes). */
  private fileBytes = 0;
  private fileSegs = 0;
  /** Bytes described by the last exportIovBeforeFile(). */
  exportedBytes = 0;
  /** A send of queued bytes is in flight (see the top); clear() waits for unpin(). */
  private pinned = false;
  private clearWhenUnpinned = false;

  constructor(readonly pool: BufferPool) {}

  get length(): number {
    return this.segBytes + this.end - this.start;
  }

  /** Capacity currently held (0 when idle); shared bytes and file ranges are not counted. */
  get capacity(): number {
    let n = this.buf ? this.buf.length : 0;
    const segs = this.segs;
    if (segs !== null) for (let i = this.segHead; i < segs.length; i++) if (segs[i]!.shared === null) n += segs[i]!.bytes.length;
    return n;
  }

  /** Queued bytes held in memory: length without the file ranges (what maxBuffered bounds). */
  get memoryLength(): number {
    return this.segBytes - this.fileBytes + this.end - this.start;
  }

  /** A file range is queued: the driver must take the sendfile path. */
  get hasFile(): boolean {
    return this.fileSegs !== 0;
  }

  /** True when everything queued is one range of the tail (no segments): contiguousAddress/Length. */
  get contiguous(): boolean {
    return this.segBytes === 0;
  }

  get contiguousAddress(): number {
    return this.bufPtr + this.start;
  }

  get contiguousLength(): number {
    return this.end - this.start;
  }

  get isPinned(): boolean {
    return this.pinned;
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
    if (this.pinned) {
      // The kernel may be reading the tail: leave it where it is (retired to a segment)
      // and start a new one.
      this.retireTail();
      buf = this.pool.acquire(n);
      this.setBuf(buf);
      return buf;
    }
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

  /** The tail's bytes become a segment (sent before later appends); the tail is empty after. */
  private retireTail(): void {
    if (this.end > this.start) {
      (this.segs ??= []).push({ bytes: this.buf!, ptr: this.bufPtr, start: this.start, end: this.end, shared: null, file: null });
      this.segBytes += this.end - this.start;
    } else if (this.buf !== null) {
      this.pool.release(this.buf);
    }
    this.buf = null;
    this.bufPtr = 0;
    this.start = this.end = 0;
  }

  append(src: Uint8Array, from: number, to: number): void {
    const n = to - from;
    if (n <= 0) return;
    this.reserve(n);
    this.copyIn(src, from, n);
    this.end += n;
  }

  /**
   * src[from, from + n) to `end` (room reserved). A JS byte loop pays per byte and
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

  /** Appends s as UTF-8; returns the bytes appended. */
  appendString(s: string): number {
    if (s.length === 0) return 0;
    const buf = this.reserve(s.length * 3); // UTF-8 worst case per UTF-16 unit
    const { written } = encoder.encodeInto(s, buf.subarray(this.end));
    this.end += written;
    return written;
  }

  /** Queues shared.bytes[from, to) by reference (no copy); the queue holds a reference. */
  appendShared(shared: SharedBytes, from: number, to: number): void {
    if (to <= from) return;
    // Tail bytes go before these: they become a segment, and later appends start a new tail.
    if (this.end > this.start) this.retireTail();
    shared.retain();
    (this.segs ??= []).push({ bytes: shared.bytes, ptr: shared.ptr, start: from, end: to, shared, file: null });
    this.segBytes += to - from;
  }

  /**
   * Queues bytes [from, to) of a file by reference: they go out with sendfile(2), in order
   * with everything before and after them. The queue holds a reference until they are sent.
   */
  appendFile(file: SharedFile, from: number, to: number): void {
    if (to <= from) return;
    if (this.end > this.start) this.retireTail();
    file.retain();
    (this.segs ??= []).push({ bytes: NO_BYTES, ptr: 0, start: from, end: to, shared: null, file });
    this.segBytes += to - from;
    this.fileBytes += to - from;
    this.fileSegs++;
  }

  /**
   * Like exportIov(), but stops at the first file range: the memory regions queued before
   * it. Sets exportedBytes to their total. With no file range queued it is exportIov().
   */
  exportIovBeforeFile(iov: Uint32Array, maxIov: number): number {
    let count = 0;
    let bytes = 0;
    const segs = this.segs;
    let sawFile = false;
    if (segs !== null) {
      for (let i = this.segHead; i < segs.length && count < maxIov; i++, count++) {
        const s = segs[i]!;
        if (s.file !== null) {
          sawFile = true;
          break;
        }
        setWord64(iov, count * IOVEC_WORDS, s.ptr + s.start);
        setWord64(iov, count * IOVEC_WORDS + 2, s.end - s.start);
        bytes += s.end - s.start;
      }
    }
    if (!sawFile && this.fileSegs === 0 && count < maxIov && this.end > this.start) {
      setWord64(iov, count * IOVEC_WORDS, this.bufPtr + this.start);
      setWord64(iov, count * IOVEC_WORDS + 2, this.end - this.start);
      bytes += this.end - this.start;
      count++;
    }
    this.exportedBytes = bytes;
    return count;
  }

  /** The file range that is next to send, or null when memory comes first (or none is queued). */
  fileHead(): FileRange | null {
    const segs = this.segs;
    if (segs === null || this.segHead >= segs.length) return null;
    const s = segs[this.segHead]!;
    return s.file === null ? null : (s as FileRange);
  }

  /**
   * Writes the queued regions, oldest first, as struct iovec entries into `iov` (IOVEC_WORDS
   * words each), at most maxIov of them; returns how many. What does not fit goes in a later
   * send. Not while a file range is queued (hasFile): see exportIovBeforeFile().
   */
  exportIov(iov: Uint32Array, maxIov: number): number {
    let count = 0;
    const segs = this.segs;
    if (segs !== null) {
      for (let i = this.segHead; i < segs.length && count < maxIov; i++, count++) {
        const s = segs[i]!;
        setWord64(iov, count * IOVEC_WORDS, s.ptr + s.start);
        setWord64(iov, count * IOVEC_WORDS + 2, s.end - s.start);
      }
    }
    if (count < maxIov && this.end > this.start) {
      setWord64(iov, count * IOVEC_WORDS, this.bufPtr + this.start);
      setWord64(iov, count * IOVEC_WORDS + 2, this.end - this.start);
      count++;
    }
    return count;
  }

  /** Drops the first n queued bytes: the kernel has taken them. */
  consume(n: number): void {
    const segs = this.segs;
    if (segs !== null && this.segBytes > 0) {
      while (n > 0 && this.segHead < segs.length) {
        const s = segs[this.segHead]!;
        const len = s.end - s.start;
        if (n < len) {
          s.start += n;
          this.segBytes -= n;
          if (s.file !== null) this.fileBytes -= n;
          return;
        }
        n -= len;
        this.segBytes -= len;
        if (s.file !== null) {
          this.fileBytes -= len;
          this.fileSegs--;
        }
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
    }
    if (n > 0) {
      this.start += n;
      if (this.start === this.end && !this.pinned) this.releaseTail();
    }
  }

  /** A send of the exported bytes is in flight: nothing moves or is released until unpin(). */
  pin(): void {
    this.pinned = true;
  }

  unpin(): void {
    this.pinned = false;
    if (this.clearWhenUnpinned) {
      this.clearWhenUnpinned = false;
      this.clear();
    } else if (this.start === this.end) {
      this.releaseTail();
    }
  }

  private dropSegment(s: Segment): void {
    if (s.file !== null) s.file.release();
    else if (s.shared === null) this.pool.release(s.bytes);
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

  /** Drops queued bytes and gives the buffers back (once no send is in flight). */
  clear(): void {
    if (this.pinned) {
      this.clearWhenUnpinned = true;
      return;
    }
    const segs = this.segs;
    if (segs !== null) {
      for (let i = this.segHead; i < segs.length; i++) this.dropSegment(segs[i]!);
      this.segs = null;
      this.segHead = 0;
      this.segBytes = 0;
      this.fileBytes = 0;
      this.fileSegs = 0;
    }
    this.releaseTail();
  }

  [Symbol.dispose](): void {
    this.clear();
  }
}
