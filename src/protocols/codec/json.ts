// The json protocol's framing: u32 big-endian length, then a UTF-8 JSON object with a
// string `type` field. Encoders/decoders for both sides.

import { ErrorCode } from "./errors.ts";
import { FRAME_HEADER_SIZE, FrameDecoder, HeaderLayout, type FrameSink } from "./frame-decoder.ts";

/** Default largest body (`--max-frame` for json): 1 MiB. */
export const JSON_DEFAULT_MAX_FRAME = 1024 * 1024;

export interface JsonMessage {
  type: string;
  [field: string]: unknown;
}

export type JsonParseResult =
  | { ok: true; message: JsonMessage }
  | { ok: false; code: ErrorCode; detail: string };

const utf8 = new TextEncoder();
// fatal: invalid UTF-8 is an error the client must hear about, not silently replaced.
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * Parse one body. Distinguishes invalid UTF-8, invalid JSON, and a value that is not an
 * object with a string `type`, because each gets its own error code.
 */
export function parseJsonBody(buf: Uint8Array, off = 0, len = buf.length - off): JsonParseResult {
  let text: string;
  try {
    text = strictUtf8.decode(buf.subarray(off, off + len));
  } catch {
    return { ok: false, code: ErrorCode.INVALID_UTF8, detail: "body is not valid UTF-8" };
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    return { ok: false, code: ErrorCode.INVALID_JSON, detail: (e as Error).message };
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return { ok: false, code: ErrorCode.MISSING_TYPE, detail: "message must be a JSON object" };
  }
  if (typeof (value as { type?: unknown }).type !== "string") {
    return { ok: false, code: ErrorCode.MISSING_TYPE, detail: "message has no string \"type\" field" };
  }
  return { ok: true, message: value as JsonMessage };
}

/** One message as a new length-prefixed buffer (client side, tests). */
export function encodeJsonFrame(value: object): Uint8Array {
  const body = utf8.encode(JSON.stringify(value));
  const out = new Uint8Array(FRAME_HEADER_SIZE + body.length);
  writeLength(out, body.length);
  out.set(body, FRAME_HEADER_SIZE);
  return out;
}

function writeLength(out: Uint8Array, n: number): void {
  out[0] = n >>> 24;
  out[1] = (n >>> 16) & 0xff;
  out[2] = (n >>> 8) & 0xff;
  out[3] = n & 0xff;
}

/**
 * Server-side encoder into a reused buffer: `encode` returns the frame length; the bytes
 * are `out[0, length)` until the next call. Saves an allocation per reply (conn.write
 * copies, so the buffer can be reused at once).
 */
export class JsonFrameWriter {
  out = new Uint8Array(1024);

  encode(value: object): number {
    return this.encodeText(JSON.stringify(value));
  }

  encodeText(json: string): number {
    // UTF-8 needs at most 3 bytes per UTF-16 code unit.
    const worst = FRAME_HEADER_SIZE + json.length * 3;
    if (this.out.length < worst) {
      let size = this.out.length;
      while (size < worst) size *= 2;
      this.out = new Uint8Array(size);
    }
    const { written } = utf8.encodeInto(json, this.out.subarray(FRAME_HEADER_SIZE));
    writeLength(this.out, written);
    return FRAME_HEADER_SIZE + written;
  }
}

/**
 * Client-side stream decoder: length-prefixed bodies in, parsed messages out. Resumable
 * across `push` calls. A body that does not parse goes to `onError` (the stream stays in
 * sync). A length over `maxBody` goes to `onOversize` and its body is skipped.
 */
export class JsonStreamDecoder {
  readonly decoder: FrameDecoder;
  constructor(
    onMessage: (message: JsonMessage) => void,
    onError: (code: ErrorCode, detail: string) => void = () => {},
    maxBody = JSON_DEFAULT_MAX_FRAME,
    onOversize: (length: number) => void = () => {},
  ) {
    const sink: FrameSink = {
      frame: (_type, buf, off, len) => {
        const r = parseJsonBody(buf, off, len);
        if (r.ok) onMessage(r.message);
        else onError(r.code, r.detail);
      },
      oversize: (_type, length) => onOversize(length),
    };
    this.decoder = new FrameDecoder(sink, maxBody, HeaderLayout.Length32);
  }
  push(chunk: Uint8Array): void {
    this.decoder.push(chunk);
  }
  get inFrame(): boolean {
    return this.decoder.inFrame;
  }
}

/** All messages in a complete capture; throws on a truncated frame or a bad body. */
export function decodeJsonFrames(bytes: Uint8Array): JsonMessage[] {
  const out: JsonMessage[] = [];
  const d = new JsonStreamDecoder(
    (m) => out.push(m),
    (code, detail) => {
      throw new Error(`bad json frame (code ${code}): ${detail}`);
    },
    0xffffffff,
  );
  d.push(bytes);
  if (d.inFrame) throw new Error("truncated json frame at end of input");
  return out;
}
