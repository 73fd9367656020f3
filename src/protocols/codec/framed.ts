// The framed protocol's vocabulary: frame types, body layouts, and encoders/decoders for
// both sides. Server hot paths do not use the allocating helpers here (they write a
// preallocated header, then the body slice); the client library and tests do.
//
// Frame: u16 type, u16 length (big-endian), then `length` body bytes.

import { ERROR_MESSAGES } from "./errors.ts";
import { FRAME_HEADER_SIZE, FrameDecoder, HeaderLayout, type FrameSink } from "./frame-decoder.ts";

export const MsgType = {
  HELLO: 0x0001,
  WELCOME: 0x0002,
  PING: 0x0003,
  PONG: 0x0004,
  ECHO: 0x0005,
  ECHO_REPLY: 0x0006,
  BROADCAST: 0x0007,
  BROADCAST_MSG: 0x0008,
  BROADCAST_ACK: 0x0009,
  SEND_TO: 0x000a,
  DIRECT_MSG: 0x000b,
  SEND_ACK: 0x000c,
  STATS: 0x000d,
  STATS_REPLY: 0x000e,
  ERROR: 0xffff,
} as const;
export type MsgType = (typeof MsgType)[keyof typeof MsgType];

export const PROTOCOL_VERSION = 1;
/** A u16 length caps a body at 65535 bytes. */
export const FRAMED_MAX_BODY = 0xffff;
/** BROADCAST_MSG / DIRECT_MSG prefix the payload with a u32 sender id. */
export const ID_PREFIX = 4;
/** Largest BROADCAST body whose BROADCAST_MSG (id + body) still fits one frame. */
export const MAX_RELAYED_PAYLOAD = FRAMED_MAX_BODY - ID_PREFIX;

const utf8 = new TextEncoder();
const utf8Lossy = new TextDecoder("utf-8");

export interface Frame {
  type: number;
  /** A copy of the body (owned by the caller). */
  body: Uint8Array;
}

// ---------------------------------------------------------------------------------------
// Encoding (allocating; for clients, tests and cold server paths)

/** One frame as a new buffer. Throws if the body does not fit a u16 length. */
export function encodeFrame(type: number, body: Uint8Array = EMPTY): Uint8Array {
  if (body.length > FRAMED_MAX_BODY) throw new RangeError(`frame body ${body.length} > ${FRAMED_MAX_BODY}`);
  const out = new Uint8Array(FRAME_HEADER_SIZE + body.length);
  writeFrameHeader(out, 0, type, body.length);
  out.set(body, FRAME_HEADER_SIZE);
  return out;
}

/** Write a 4-byte header at `at`. */
export function writeFrameHeader(out: Uint8Array, at: number, type: number, length: number): void {
  out[at] = type >>> 8;
  out[at + 1] = type & 0xff;
  out[at + 2] = length >>> 8;
  out[at + 3] = length & 0xff;
}

export function writeU32(out: Uint8Array, at: number, v: number): void {
  out[at] = v >>> 24;
  out[at + 1] = (v >>> 16) & 0xff;
  out[at + 2] = (v >>> 8) & 0xff;
  out[at + 3] = v & 0xff;
}

export function readU32(buf: Uint8Array, at: number): number {
  return ((buf[at]! << 24) | (buf[at + 1]! << 16) | (buf[at + 2]! << 8) | buf[at + 3]!) >>> 0;
}

export function readU16(buf: Uint8Array, at: number): number {
  return (buf[at]! << 8) | buf[at + 1]!;
}

const EMPTY = new Uint8Array(0);

function bytesOf(body: Uint8Array | string | undefined): Uint8Array {
  if (body === undefined) return EMPTY;
  return typeof body === "string" ? utf8.encode(body) : body;
}

/**
 * HELLO. With no arguments the body is empty; `version` adds the u16 version; `token`
 * (auth) follows the version as UTF-8 bytes.
 */
export function encodeHello(version?: number, token?: string | Uint8Array): Uint8Array {
  if (version === undefined && token === undefined) return encodeFrame(MsgType.HELLO);
  const t = bytesOf(token);
  const body = new Uint8Array(2 + t.length);
  body[0] = ((version ?? PROTOCOL_VERSION) >>> 8) & 0xff;
  body[1] = (version ?? PROTOCOL_VERSION) & 0xff;
  body.set(t, 2);
  return encodeFrame(MsgType.HELLO, body);
}

export function encodePing(body?: Uint8Array | string): Uint8Array {
  return encodeFrame(MsgType.PING, bytesOf(body));
}

export function encodeEcho(body?: Uint8Array | string): Uint8Array {
  return encodeFrame(MsgType.ECHO, bytesOf(body));
}

export function encodeBroadcast(body?: Uint8Array | string): Uint8Array {
  return encodeFrame(MsgType.BROADCAST, bytesOf(body));
}

export function encodeSendTo(toId: number, payload?: Uint8Array | string): Uint8Array {
  return encodeFrame(MsgType.SEND_TO, withId(toId, bytesOf(payload)));
}

export function encodeStatsRequest(): Uint8Array {
  return encodeFrame(MsgType.STATS);
}

/** An ERROR frame (u16 code, UTF-8 message). Message defaults to the code's standard text. */
export function encodeError(code: number, message?: string): Uint8Array {
  const m = utf8.encode(message ?? ERROR_MESSAGES[code] ?? "error");
  const body = new Uint8Array(2 + m.length);
  body[0] = code >>> 8;
  body[1] = code & 0xff;
  body.set(m, 2);
  return encodeFrame(MsgType.ERROR, body);
}

// Server-side reply encoders, used by tests and by clients that mock a server.
export function encodeWelcome(clientId: number, version = PROTOCOL_VERSION): Uint8Array {
  const body = new Uint8Array(6);
  writeU32(body, 0, clientId);
  body[4] = version >>> 8;
  body[5] = version & 0xff;
  return encodeFrame(MsgType.WELCOME, body);
}

export function encodeBroadcastMsg(fromId: number, body: Uint8Array | string): Uint8Array {
  return encodeFrame(MsgType.BROADCAST_MSG, withId(fromId, bytesOf(body)));
}

export function encodeDirectMsg(fromId: number, payload: Uint8Array | string): Uint8Array {
  return encodeFrame(MsgType.DIRECT_MSG, withId(fromId, bytesOf(payload)));
}

export function encodeBroadcastAck(recipients: number): Uint8Array {
  return encodeFrame(MsgType.BROADCAST_ACK, withId(recipients, EMPTY));
}

export function encodeSendAck(toId: number): Uint8Array {
  return encodeFrame(MsgType.SEND_ACK, withId(toId, EMPTY));
}

function withId(id: number, rest: Uint8Array): Uint8Array {
  const body = new Uint8Array(ID_PREFIX + rest.length);
  writeU32(body, 0, id);
  body.set(rest, ID_PREFIX);
  return body;
}

// ---------------------------------------------------------------------------------------
// Body decoders. Each takes (buf, offset, length) of one frame body, as a FrameSink gets
// it, and returns null when the body has the wrong shape.

export interface Welcome {
  clientId: number;
  protocolVersion: number;
}
export function decodeWelcome(buf: Uint8Array, off = 0, len = buf.length - off): Welcome | null {
  if (len !== 6) return null;
  return { clientId: readU32(buf, off), protocolVersion: readU16(buf, off + 4) };
}

export interface IdAndPayload {
  /** from_id for BROADCAST_MSG / DIRECT_MSG, to_id for SEND_TO. */
  id: number;
  /** A copy of the payload. */
  payload: Uint8Array;
}
/** BROADCAST_MSG, DIRECT_MSG, SEND_TO: u32 id then payload. */
export function decodeIdAndPayload(buf: Uint8Array, off = 0, len = buf.length - off): IdAndPayload | null {
  if (len < ID_PREFIX) return null;
  return { id: readU32(buf, off), payload: buf.slice(off + ID_PREFIX, off + len) };
}

/** BROADCAST_ACK (recipients) and SEND_ACK (to_id): exactly one u32. */
export function decodeU32Body(buf: Uint8Array, off = 0, len = buf.length - off): number | null {
  return len === 4 ? readU32(buf, off) : null;
}

export interface ErrorBody {
  code: number;
  message: string;
}
export function decodeErrorBody(buf: Uint8Array, off = 0, len = buf.length - off): ErrorBody | null {
  if (len < 2) return null;
  return { code: readU16(buf, off), message: utf8Lossy.decode(buf.subarray(off + 2, off + len)) };
}

/** HELLO body: empty, u16 version, or u16 version + auth token. */
export interface Hello {
  version: number | null;
  /** A copy of the token bytes (empty when none). */
  token: Uint8Array;
}
export function decodeHello(buf: Uint8Array, off = 0, len = buf.length - off): Hello | null {
  if (len === 0) return { version: null, token: EMPTY };
  if (len === 1) return null;
  return { version: readU16(buf, off), token: buf.slice(off + 2, off + len) };
}

// ---------------------------------------------------------------------------------------
// Stream decoding for clients: a FrameDecoder whose frames are copied out.

/**
 * Decode a stream of frames; calls `onFrame` with a copy of each body. Resumable across
 * `push` calls like the server's decoder. Oversized frames (over `maxBody`) are reported
 * through `onOversize` and skipped.
 */
export class FramedStreamDecoder {
  readonly decoder: FrameDecoder;
  constructor(
    onFrame: (frame: Frame) => void,
    maxBody = FRAMED_MAX_BODY,
    onOversize: (type: number, length: number) => void = () => {},
  ) {
    const sink: FrameSink = {
      frame: (type, buf, off, len) => onFrame({ type, body: buf.slice(off, off + len) }),
      oversize: onOversize,
    };
    this.decoder = new FrameDecoder(sink, maxBody, HeaderLayout.TypeLength16);
  }
  push(chunk: Uint8Array): void {
    this.decoder.push(chunk);
  }
  get inFrame(): boolean {
    return this.decoder.inFrame;
  }
}

/** All whole frames in `bytes` (a complete capture); throws if a frame is cut off. */
export function decodeFrames(bytes: Uint8Array): Frame[] {
  const frames: Frame[] = [];
  const d = new FramedStreamDecoder((f) => frames.push(f));
  d.push(bytes);
  if (d.inFrame) throw new Error("truncated frame at end of input");
  return frames;
}
