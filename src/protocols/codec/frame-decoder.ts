// A resumable decoder for length-prefixed frames with a 4-byte big-endian header. Two
// header layouts share it: the framed protocol's `u16 type, u16 length` and the json
// protocol's `u32 length`. Any split of the byte stream yields the same frames.
//
// Zero-copy when it can be: a frame wholly inside the pushed chunk is handed to the sink
// as (chunk, offset, length). Only a frame that straddles chunks is copied, into the
// decoder's own buffer, because the chunk is a view into the reactor's shared receive
// buffer and is overwritten after the `data` call returns.

export const HeaderLayout = {
  /** `u16 type, u16 length` (framed protocol). */
  TypeLength16: 0,
  /** `u32 length`, type always 0 (json protocol). */
  Length32: 1,
} as const;
export type HeaderLayout = (typeof HeaderLayout)[keyof typeof HeaderLayout];

import { threadPool } from "../../buffers/pool.ts";

export const FRAME_HEADER_SIZE = 4;

export interface FrameSink {
  /**
   * One whole frame. `buf` is either the pushed chunk or the decoder's own buffer: it is
   * valid only during this call (copy what you keep). May call `decoder.stop()`.
   * When `offset >= 4`, buf[offset - 4, offset) is this frame's header (the whole frame
   * was in the chunk), which the decoder never reads again: the sink may overwrite it.
   * A header that arrived split across chunks always gives `offset < 4`.
   */
  frame(type: number, buf: Uint8Array, offset: number, length: number): void;
  /**
   * A header declared a body over `maxBody`. The stream is still in sync: unless the sink
   * calls `decoder.stop()`, the body bytes are skipped (never buffered) and decoding
   * continues with the next header.
   */
  oversize(type: number, length: number): void;
}

const enum State {
  Header = 0,
  Body = 1,
  Skip = 2,
}

/**
 * A partial-frame buffer up to this size is kept per connection; larger ones are borrowed
 * from the thread's buffer pool for one frame.
 */
const RETAIN_BYTES = 16 * 1024;
const MIN_BUFFER = 256;

export class FrameDecoder {
  private state = State.Header;
  /** Header bytes gathered so far when a header straddles chunks. */
  private headerValue = 0;
  private headerHave = 0;
  private type = 0;
  private need = 0;
  private have = 0;
  private skipLeft = 0;
  private body: Uint8Array | null = null;
  private stopped = false;

  constructor(
    private readonly sink: FrameSink,
    /** Largest body accepted; larger declared lengths go to `sink.oversize`. */
    readonly maxBody: number,
    readonly layout: HeaderLayout = HeaderLayout.TypeLength16,
  ) {}

  /**
   * True while a frame is partially received (header, body, or an oversized body being
   * skipped). The hook for a frame timeout: a connection that stays `inFrame` too long is
   * stalling the parser.
   */
  get inFrame(): boolean {
    return this.state !== State.Header || this.headerHave !== 0;
  }

  /** Bytes currently held for a partial frame (the memory the decoder pins). */
  get bufferedBytes(): number {
    return this.state === State.Body ? this.have : this.headerHave;
  }

  get isStopped(): boolean {
    return this.stopped;
  }

  /** Ignore all further input, including the rest of the chunk being pushed. */
  stop(): void {
    this.stopped = true;
    if (this.body !== null && this.body.length > RETAIN_BYTES) threadPool.release(this.body);
    this.body = null;
    // Nothing is pending any more: a stopped decoder must not keep a frame timeout armed.
    this.state = State.Header;
    this.headerHave = 0;
    this.have = 0;
  }

  push(chunk: Uint8Array): void {
    const n = chunk.length;
    let pos = 0;
    while (pos < n && !this.stopped) {
      if (this.state === State.Header) {
        let h: number;
        if (this.headerHave === 0 && n - pos >= FRAME_HEADER_SIZE) {
          h = ((chunk[pos]! << 24) | (chunk[pos + 1]! << 16) | (chunk[pos + 2]! << 8) | chunk[pos + 3]!) >>> 0;
          pos += FRAME_HEADER_SIZE;
        } else {
          while (this.headerHave < FRAME_HEADER_SIZE && pos < n) {
            this.headerValue = ((this.headerValue << 8) | chunk[pos++]!) >>> 0;
            this.headerHave++;
          }
          if (this.headerHave < FRAME_HEADER_SIZE) return;
          h = this.headerValue;
          this.headerValue = 0;
          this.headerHave = 0;
        }
        let type: number;
        let len: number;
        if (this.layout === HeaderLayout.TypeLength16) {
          type = h >>> 16;
          len = h & 0xffff;
        } else {
          type = 0;
          len = h;
        }
        if (len > this.maxBody) {
          // len > maxBody >= 0, so there is always something to skip.
          this.skipLeft = len;
          this.state = State.Skip;
          this.sink.oversize(type, len);
          continue;
        }
        if (n - pos >= len) {
          // Whole body inside this chunk: hand it out without copying.
          const at = pos;
          pos += len;
          this.sink.frame(type, chunk, at, len);
          continue;
        }
        // The body continues in a later chunk: keep what we have.
        const body = this.bodyBuffer(len);
        const avail = n - pos;
        body.set(chunk.subarray(pos, n), 0);
        pos = n;
        this.type = type;
        this.need = len;
        this.have = avail;
        this.state = State.Body;
      } else if (this.state === State.Body) {
        const body = this.body!;
        const take = Math.min(this.need - this.have, n - pos);
        body.set(chunk.subarray(pos, pos + take), this.have);
        this.have += take;
        pos += take;
        if (this.have === this.need) {
          const len = this.need;
          this.state = State.Header;
          this.have = 0;
          this.need = 0;
          if (body.length > RETAIN_BYTES) {
            // A big buffer is the pool's, not this connection's: back once the sink is done.
            this.body = null;
            try {
              this.sink.frame(this.type, body, 0, len);
            } finally {
              threadPool.release(body);
            }
          } else {
            this.sink.frame(this.type, body, 0, len);
          }
        }
      } else {
        const take = Math.min(this.skipLeft, n - pos);
        this.skipLeft -= take;
        pos += take;
        if (this.skipLeft === 0) this.state = State.Header;
      }
    }
  }

  private bodyBuffer(len: number): Uint8Array {
    const cur = this.body;
    if (cur !== null && cur.length >= len) return cur;
    if (len > RETAIN_BYTES) {
      // Large frames borrow a pooled buffer for their duration (given back when delivered
      // or on stop()): a stream of 64 KiB frames allocates nothing, so no GC pauses.
      if (cur !== null && cur.length > RETAIN_BYTES) threadPool.release(cur);
      const b = threadPool.acquire(len);
      this.body = b;
      return b;
    }
    let size = cur === null ? MIN_BUFFER : cur.length;
    while (size < len) size *= 2;
    // Never allocate past what maxBody allows (a power of two may overshoot it).
    if (size > this.maxBody) size = Math.max(len, this.maxBody);
    const b = new Uint8Array(size);
    this.body = b;
    return b;
  }
}
