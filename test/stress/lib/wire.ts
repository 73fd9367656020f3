// The wire formats as a black-box client sees them, written from the spec, not imported
// from src/ (duplication is intended: a stress client must not share the server's bugs).
//
//   framed: u16 type, u16 length (big-endian), then `length` body bytes
//   json:   u32 length (big-endian), then a UTF-8 JSON object with a string "type"
//   line:   UTF-8 text ending in "\n"; server notices are "ERR <text>\n"
//   echo:   raw bytes, echoed back

export const Msg = {
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

/** Error codes in framed ERROR bodies (u16); json names them with the strings below. */
export const ErrCode = {
  UNKNOWN_TYPE: 1,
  BAD_BODY: 2,
  NO_SUCH_CLIENT: 3,
  FRAME_TOO_LARGE: 4,
  RATE_LIMITED: 5,
  UNAUTHORIZED: 6,
  SERVER_FULL: 7,
  SHUTTING_DOWN: 8,
} as const;

export const HEADER = 4;
export const FRAMED_MAX_BODY = 0xffff;
/** Largest BROADCAST body whose BROADCAST_MSG (u32 sender id + body) still fits a frame. */
export const MAX_BROADCAST_BODY = FRAMED_MAX_BODY - 4;

/** One framed frame. */
export function frame(type: number, body: Uint8Array = new Uint8Array(0)): Buffer {
  if (body.length > FRAMED_MAX_BODY) throw new RangeError(`frame body ${body.length} > ${FRAMED_MAX_BODY}`);
  const out = Buffer.allocUnsafe(HEADER + body.length);
  out.writeUInt16BE(type & 0xffff, 0);
  out.writeUInt16BE(body.length, 2);
  out.set(body, HEADER);
  return out;
}

/** A frame header alone (for frames whose body is sent later, or never). */
export function frameHeader(type: number, length: number): Buffer {
  const out = Buffer.allocUnsafe(HEADER);
  out.writeUInt16BE(type & 0xffff, 0);
  out.writeUInt16BE(length & 0xffff, 2);
  return out;
}

/** One json message: u32 length + UTF-8 JSON. */
export function jsonFrame(value: unknown): Buffer {
  return jsonFrameOfText(JSON.stringify(value));
}

export function jsonFrameOfText(text: string): Buffer {
  const body = Buffer.from(text, "utf8");
  return lengthPrefixed(body);
}

export function lengthPrefixed(body: Uint8Array, declared = body.length): Buffer {
  const out = Buffer.allocUnsafe(HEADER + body.length);
  out.writeUInt32BE(declared >>> 0, 0);
  out.set(body, HEADER);
  return out;
}

/** Error body of a framed ERROR frame. */
export function errorCodeOf(body: Uint8Array): number {
  return body.length >= 2 ? (body[0]! << 8) | body[1]! : -1;
}

/**
 * Resumable stream decoder for 4-byte-header frames (framed: type + length; json: u32
 * length). Hands out each body as a Buffer view valid only during the callback unless it
 * had to be assembled from several chunks. Survives any split of the stream.
 */
export class FrameReader {
  private pending: Buffer | null = null;
  constructor(
    private readonly onFrame: (type: number, body: Buffer) => void,
    private readonly layout: "framed" | "json" = "framed",
    /** json only: a declared length past this is a protocol violation by the server. */
    private readonly maxJsonBody = 64 * 1024 * 1024,
  ) {}

  /** Bytes held for an incomplete frame. */
  get buffered(): number {
    return this.pending === null ? 0 : this.pending.length;
  }

  push(chunk: Buffer): void {
    const buf = this.pending === null ? chunk : Buffer.concat([this.pending, chunk]);
    this.pending = null;
    let pos = 0;
    while (buf.length - pos >= HEADER) {
      let type: number;
      let len: number;
      if (this.layout === "framed") {
        type = buf.readUInt16BE(pos);
        len = buf.readUInt16BE(pos + 2);
      } else {
        type = 0;
        len = buf.readUInt32BE(pos);
        if (len > this.maxJsonBody) throw new Error(`json frame declares ${len} bytes`);
      }
      if (buf.length - pos - HEADER < len) break;
      const body = buf.subarray(pos + HEADER, pos + HEADER + len);
      pos += HEADER + len;
      this.onFrame(type, body);
    }
    // Copy the tail: node:net may reuse the chunk's memory after this call.
    if (pos < buf.length) this.pending = Buffer.from(buf.subarray(pos));
  }
}

/** Resumable newline splitter; each line is decoded as UTF-8 once it is complete. */
export class LineReader {
  private pending: Buffer | null = null;
  constructor(private readonly onLine: (line: string) => void) {}
  push(chunk: Buffer): void {
    const buf = this.pending === null ? chunk : Buffer.concat([this.pending, chunk]);
    this.pending = null;
    let start = 0;
    for (;;) {
      const nl = buf.indexOf(10, start);
      if (nl < 0) break;
      this.onLine(buf.toString("utf8", start, nl));
      start = nl + 1;
    }
    if (start < buf.length) this.pending = Buffer.from(buf.subarray(start));
  }
  get buffered(): number {
    return this.pending === null ? 0 : this.pending.length;
  }
}

// ---------------------------------------------------------------------------------------
// STATS_REPLY (framed 0x000E). Fixed header of big-endian scalars; u64 = (hi u32, lo u32).
// Offsets from the spec; tables start at header_length (u16 at offset 2).

export interface FramedStats {
  connectionsActive: number;
  connectionsTotal: number;
  bytesIn: number;
  bytesOut: number;
  messagesIn: number;
  messagesOut: number;
  errorsTotal: number;
  highWaterCrossings: number;
  pausedReads: number;
  slowConsumersDropped: number;
  latencyP99Ns: number;
  /** error code -> count */
  errors: Map<number, number>;
}

function u64(b: Buffer, at: number): number {
  return b.readUInt32BE(at) * 4294967296 + b.readUInt32BE(at + 4);
}

export function decodeFramedStats(b: Buffer): FramedStats | null {
  if (b.length < 164) return null;
  const headerLength = b.readUInt16BE(2);
  if (headerLength < 160 || headerLength + 4 > b.length) return null;
  let p = headerLength;
  const kinds = b.readUInt16BE(p);
  p += 2 + kinds * 18;
  if (p + 2 > b.length) return null;
  const nErr = b.readUInt16BE(p);
  p += 2;
  if (p + nErr * 10 > b.length) return null;
  const errors = new Map<number, number>();
  for (let i = 0; i < nErr; i++, p += 10) errors.set(b.readUInt16BE(p), u64(b, p + 2));
  return {
    connectionsActive: u64(b, 32),
    connectionsTotal: u64(b, 40),
    bytesIn: u64(b, 48),
    bytesOut: u64(b, 56),
    messagesIn: u64(b, 64),
    messagesOut: u64(b, 72),
    errorsTotal: u64(b, 80),
    highWaterCrossings: u64(b, 88),
    pausedReads: u64(b, 96),
    slowConsumersDropped: u64(b, 104),
    latencyP99Ns: u64(b, 136),
    errors,
  };
}

/** The json `server_stats` reply, the fields the suite reads. */
export interface JsonStats {
  type: "server_stats";
  connected_clients: number;
  connections_active: number;
  connections_total: number;
  bytes_in: number;
  bytes_out: number;
  total_messages: number;
  total_messages_out: number;
  errors_total: number;
  errors: Record<string, number>;
  backpressure: { high_water_crossings: number; paused_reads: number; slow_consumers_dropped: number };
  close_reasons: Record<string, number>;
  latency_ns: { count: number; p50: number; p99: number; max: number };
}

/** Deterministic xorshift32 PRNG: reproducible garbage from a seed. */
export class Rng {
  private x: number;
  constructor(seed: number) {
    this.x = (seed >>> 0) || 0x9e3779b9;
  }
  u32(): number {
    let x = this.x;
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    this.x = x;
    return x;
  }
  /** 0 <= n < max */
  int(max: number): number {
    return Math.floor((this.u32() / 4294967296) * max);
  }
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }
  chance(p: number): boolean {
    return this.u32() / 4294967296 < p;
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }
  bytes(n: number): Buffer {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) b[i] = this.u32() & 0xff;
    return b;
  }
}

/** Position-dependent bytes: a dropped or reordered chunk shows up as a mismatch. */
export function patternBytes(n: number, seed: number): Buffer {
  const r = new Rng(seed * 2654435761);
  return r.bytes(n);
}
