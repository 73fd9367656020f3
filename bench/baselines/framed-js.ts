// The framed protocol for the JS baselines (Bun.listen and node:net): a resumable
// parser and the ECHO / PING / unknown-type replies, written the way a careful user of
// those APIs would. Replies for one read are gathered in a shared scratch buffer so that a
// read that carried many frames costs one write; callers must copy or write the scratch
// bytes before the next call.

import {
  ERR_UNKNOWN_TYPE,
  HEADER,
  T_ECHO,
  T_ECHO_REPLY,
  T_PING,
  T_PONG,
  errorFrame,
  putHeader,
} from "../lib/framed.ts";

const UNKNOWN_TYPE_REPLY = errorFrame(ERR_UNKNOWN_TYPE, "unknown type");

/** Output gathered while handling one read. */
export class Out {
  buf = new Uint8Array(new ArrayBuffer(64 * 1024));
  len = 0;

  reserve(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.len + n) cap *= 2;
    const next = new Uint8Array(new ArrayBuffer(cap));
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
  }

  /** Append a frame of `type` whose body is src[off, off+len). */
  frame(type: number, src: Uint8Array, off: number, len: number): void {
    this.reserve(HEADER + len);
    putHeader(this.buf, this.len, type, len);
    this.buf.set(src.subarray(off, off + len), this.len + HEADER);
    this.len += HEADER + len;
  }

  bytes(b: Uint8Array): void {
    this.reserve(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
  }
}

/** Called for frame types the default table does not answer; return false for "unknown". */
export type ExtraHandler = (type: number, src: Uint8Array, bodyOff: number, bodyLen: number, out: Out) => boolean;

/** Per-connection parser state: only the bytes of an incomplete frame are kept. */
export class FrameParser {
  private rest: Uint8Array | null = null;

  /**
   * Parse every complete frame in `rest + chunk`, appending replies to `out`. A partial
   * frame at the end is copied and kept for the next chunk (header or body may be split
   * anywhere, down to one byte per read).
   */
  feed(chunk: Uint8Array, out: Out, extra?: ExtraHandler): void {
    let data = chunk;
    if (this.rest !== null) {
      data = new Uint8Array(this.rest.length + chunk.length);
      data.set(this.rest, 0);
      data.set(chunk, this.rest.length);
      this.rest = null;
    }
    const n = data.length;
    let off = 0;
    while (n - off >= HEADER) {
      const type = (data[off]! << 8) | data[off + 1]!;
      const len = (data[off + 2]! << 8) | data[off + 3]!;
      if (n - off - HEADER < len) break;
      const body = off + HEADER;
      switch (type) {
        case T_ECHO:
          out.frame(T_ECHO_REPLY, data, body, len);
          break;
        case T_PING:
          out.frame(T_PONG, data, body, len);
          break;
        default:
          if (extra === undefined || !extra(type, data, body, len, out)) out.bytes(UNKNOWN_TYPE_REPLY);
      }
      off = body + len;
    }
    // slice() copies: the runtime may reuse the chunk's memory after the callback.
    if (off < n) this.rest = data.slice(off);
  }
}
