// The framed protocol for the JS baselines (Bun.listen and node:net): a resumable
// parser and the HELLO / ECHO / PING / BROADCAST / unknown-type replies, written the way
// a careful user of those APIs would. Replies for one read are gathered in a shared
// scratch buffer so that a read that carried many frames costs one write; callers must
// copy or write the scratch bytes before the next call.
//
// Broadcasts are batched the same way: the BROADCAST_MSG frames of every BROADCAST in one
// read go into one shared buffer (`Out`), which the server then writes once to each
// recipient. bunpoll gets the same effect from its write queue (everything written to a
// connection during one reactor turn leaves in one send), so both do one send per
// recipient per read of the sender, not one per broadcast.

import {
  ERR_FRAME_TOO_LARGE,
  ERR_TEXT_FRAME_TOO_LARGE,
  ERR_TEXT_UNKNOWN_TYPE,
  ERR_UNKNOWN_TYPE,
  HEADER,
  MAX_BROADCAST_BODY,
  T_BROADCAST,
  T_BROADCAST_ACK,
  T_BROADCAST_MSG,
  T_ECHO,
  T_ECHO_REPLY,
  T_HELLO,
  T_PING,
  T_PONG,
  T_WELCOME,
  errorFrame,
  putHeader,
} from "../lib/framed.ts";

const UNKNOWN_TYPE_REPLY = errorFrame(ERR_UNKNOWN_TYPE, ERR_TEXT_UNKNOWN_TYPE);
const TOO_LARGE_REPLY = errorFrame(ERR_FRAME_TOO_LARGE, ERR_TEXT_FRAME_TOO_LARGE);

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

  /** Append a frame of `type` whose body is `u32 value` followed by src[off, off+len). */
  u32Frame(type: number, value: number, src?: Uint8Array, off = 0, len = 0): void {
    this.reserve(HEADER + 4 + len);
    const b = this.buf;
    let p = this.len;
    putHeader(b, p, type, 4 + len);
    b[p + 4] = value >>> 24;
    b[p + 5] = (value >>> 16) & 0xff;
    b[p + 6] = (value >>> 8) & 0xff;
    b[p + 7] = value & 0xff;
    p += HEADER + 4;
    if (src !== undefined && len > 0) b.set(src.subarray(off, off + len), p);
    this.len = p + len;
  }

  bytes(b: Uint8Array): void {
    this.reserve(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
  }
}

/** What the parser needs to know about the connection whose bytes it parses. */
export interface FramedPeer {
  /** Client id (from 1): WELCOME and BROADCAST_MSG carry it. */
  id: number;
}

/**
 * Per-connection parser state: only the bytes of an incomplete frame are kept.
 * `bcast` collects BROADCAST_MSG frames (null: this server does not broadcast, BROADCAST is
 * an unknown type); `recipients` is the number of other clients, for BROADCAST_ACK
 * (membership cannot change while one read is handled).
 */
export class FrameParser {
  private rest: Uint8Array | null = null;

  /**
   * Parse every complete frame in `rest + chunk`, appending replies to `out`. A partial
   * frame at the end is copied and kept for the next chunk (header or body may be split
   * anywhere, down to one byte per read).
   */
  feed(
    chunk: Uint8Array,
    out: Out,
    peer: FramedPeer,
    bcast: Out | null,
    recipients: number,
    /** Called after each BROADCAST_MSG is appended to `bcast` (the unbatched servers send it there). */
    eachBroadcast?: () => void,
  ): void {
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
        case T_HELLO:
          // WELCOME: u32 client_id, u16 protocol_version = 1 (no auth in the baselines).
          out.u32Frame(T_WELCOME, peer.id, WELCOME_TAIL, 0, 2);
          break;
        case T_BROADCAST:
          if (bcast === null) out.bytes(UNKNOWN_TYPE_REPLY);
          else if (len > MAX_BROADCAST_BODY) out.bytes(TOO_LARGE_REPLY);
          else {
            bcast.u32Frame(T_BROADCAST_MSG, peer.id, data, body, len);
            out.u32Frame(T_BROADCAST_ACK, recipients);
            eachBroadcast?.();
          }
          break;
        default:
          out.bytes(UNKNOWN_TYPE_REPLY);
      }
      off = body + len;
    }
    // slice() copies: the runtime may reuse the chunk's memory after the callback.
    if (off < n) this.rest = data.slice(off);
  }
}

const WELCOME_TAIL = new Uint8Array([0, 1]);
