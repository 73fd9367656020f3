// The framed protocol as the bench harness sees it (the bunpoll default):
// header u16 type, u16 length (big-endian), then `length` body bytes.
// Kept here, independent of src/, so the baselines and the load generator never depend
// on bunpoll code: a bug in bunpoll's codec must not be able to hide in the harness.

export const HEADER = 4;
export const MAX_BODY = 0xffff;

export const T_HELLO = 0x0001;
export const T_WELCOME = 0x0002;
export const T_PING = 0x0003;
export const T_PONG = 0x0004;
export const T_ECHO = 0x0005;
export const T_ECHO_REPLY = 0x0006;
export const T_BROADCAST = 0x0007;
export const T_BROADCAST_MSG = 0x0008;
export const T_BROADCAST_ACK = 0x0009;
export const T_ERROR = 0xffff;

// Error codes and texts as in docs/PROTOCOL.md.
export const ERR_UNKNOWN_TYPE = 1;
export const ERR_FRAME_TOO_LARGE = 4;
export const ERR_TEXT_UNKNOWN_TYPE = "unknown message type";
export const ERR_TEXT_FRAME_TOO_LARGE = "frame too large";

/** Largest BROADCAST body: BROADCAST_MSG prepends a u32 sender id and must fit a u16 length. */
export const MAX_BROADCAST_BODY = MAX_BODY - 4;

/** Write a frame header at `off` in `buf`. */
export function putHeader(buf: Uint8Array, off: number, type: number, length: number): void {
  buf[off] = type >>> 8;
  buf[off + 1] = type & 0xff;
  buf[off + 2] = length >>> 8;
  buf[off + 3] = length & 0xff;
}

/** A whole frame (header + body) as a fresh array. Not for hot paths. */
export function frame(type: number, body: Uint8Array = new Uint8Array(0)): Uint8Array {
  const out = new Uint8Array(HEADER + body.length);
  putHeader(out, 0, type, body.length);
  out.set(body, HEADER);
  return out;
}

/** Error frame body: u16 code, then an ASCII message. */
export function errorFrame(code: number, message: string): Uint8Array {
  const msg = new TextEncoder().encode(message);
  const body = new Uint8Array(2 + msg.length);
  body[0] = code >>> 8;
  body[1] = code & 0xff;
  body.set(msg, 2);
  return frame(T_ERROR, body);
}
