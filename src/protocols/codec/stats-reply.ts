// STATS_REPLY body (framed type 0x000E): a fixed header of scalar counters at fixed
// offsets, then two counted tables. All integers big-endian; u64 values are written as
// (high u32, low u32) and are exact up to 2^53. The header carries its own length so a
// newer server can append header fields without breaking older clients: a decoder reads
// the fields it knows and starts the tables at `header_length`.
//
//   off  size field
//     0    2  layout_version            = 1
//     2    2  header_length             = 160 (offset of the kinds table)
//     4    2  flags                     bit 0: protocol stats enabled
//     6    2  reserved                  = 0
//     8    8  server_start_ms           unix epoch ms
//    16    8  current_ms                unix epoch ms
//    24    4  uptime_seconds
//    28    4  connected_clients         clients registered with the hub
//    32    8  connections_active
//    40    8  connections_total
//    48    8  bytes_in
//    56    8  bytes_out
//    64    8  messages_in
//    72    8  messages_out
//    80    8  errors_total
//    88    8  high_water_crossings
//    96    8  paused_reads
//   104    8  slow_consumers_dropped
//   112    8  latency_count             messages timed
//   120    8  latency_p50_ns
//   128    8  latency_p90_ns
//   136    8  latency_p99_ns
//   144    8  latency_p999_ns
//   152    8  latency_max_ns
//   160    2  kind_count K, then K x { u16 kind_code, u64 in, u64 out }   (18 bytes each)
//          2  error_count E, then E x { u16 error_code, u64 count }       (10 bytes each)
//
// Kind codes are the framed type codes (0x0001 HELLO ... 0x000E STATS_REPLY, 0xFFFF
// ERROR), plus 0x0000 unknown, 0x0100 auth, 0x0101 auth_ok, 0x0102 line (codec/kinds.ts).
// Only non-zero rows are sent. A kind another protocol registered has no code here: it
// counts in messages_in/out but gets no row (give it a code in kinds.ts to list it).

import type { StatsSnapshot } from "../../stats/snapshot.ts";
import { errorName } from "./errors.ts";
import { KIND_NAMES, kindOfWireCode, kindWireCode } from "./kinds.ts";

export const STATS_LAYOUT_VERSION = 1;
export const STATS_HEADER_LENGTH = 160;
const KIND_ROW = 18;
const ERROR_ROW = 10;
const TWO_POW_32 = 4294967296;

/** Bytes the body of `s` needs. */
export function statsReplyLength(s: StatsSnapshot): number {
  return STATS_HEADER_LENGTH + 2 + kindRows(s) * KIND_ROW + 2 + s.errors.byCode.length * ERROR_ROW;
}

/** Rows of the kinds table: the kinds that have a wire code. */
function kindRows(s: StatsSnapshot): number {
  let n = 0;
  for (const k of s.messages.byKind) if (kindWireCode(k.name) >= 0) n++;
  return n;
}

/**
 * Write the body for `s` into `out` at `at`; returns the number of bytes written. `out`
 * must have `statsReplyLength(s)` bytes free.
 */
export function writeStatsReply(s: StatsSnapshot, out: Uint8Array, at = 0): number {
  const v = new DataView(out.buffer, out.byteOffset + at, statsReplyLength(s));
  v.setUint16(0, STATS_LAYOUT_VERSION);
  v.setUint16(2, STATS_HEADER_LENGTH);
  v.setUint16(4, s.statsEnabled ? 1 : 0);
  v.setUint16(6, 0);
  u64(v, 8, s.startedAtMs);
  u64(v, 16, s.nowMs);
  v.setUint32(24, clampU32(s.uptimeSeconds));
  v.setUint32(28, clampU32(s.connections.clients));
  u64(v, 32, s.connections.active);
  u64(v, 40, s.connections.total);
  u64(v, 48, s.bytes.in);
  u64(v, 56, s.bytes.out);
  u64(v, 64, s.messages.in);
  u64(v, 72, s.messages.out);
  u64(v, 80, s.errors.total);
  u64(v, 88, s.backpressure.highWaterCrossings);
  u64(v, 96, s.backpressure.pausedReads);
  u64(v, 104, s.backpressure.slowConsumersDropped);
  const l = s.latencyNs;
  u64(v, 112, l.count);
  u64(v, 120, l.p50);
  u64(v, 128, l.p90);
  u64(v, 136, l.p99);
  u64(v, 144, l.p999);
  u64(v, 152, l.max);
  let p = STATS_HEADER_LENGTH;
  v.setUint16(p, kindRows(s));
  p += 2;
  for (const k of s.messages.byKind) {
    const code = kindWireCode(k.name);
    if (code < 0) continue;
    v.setUint16(p, code);
    u64(v, p + 2, k.in);
    u64(v, p + 10, k.out);
    p += KIND_ROW;
  }
  v.setUint16(p, s.errors.byCode.length);
  p += 2;
  for (const e of s.errors.byCode) {
    v.setUint16(p, e.code);
    u64(v, p + 2, e.count);
    p += ERROR_ROW;
  }
  return p;
}

export function encodeStatsReplyBody(s: StatsSnapshot): Uint8Array {
  const out = new Uint8Array(statsReplyLength(s));
  writeStatsReply(s, out, 0);
  return out;
}

export interface StatsReply {
  layoutVersion: number;
  statsEnabled: boolean;
  startedAtMs: number;
  nowMs: number;
  uptimeSeconds: number;
  clients: number;
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
  latencyNs: { count: number; p50: number; p90: number; p99: number; p999: number; max: number };
  /** `name` is "kind_0x...." for a kind code this client does not know. */
  kinds: { code: number; name: string; in: number; out: number }[];
  errors: { code: number; name: string; count: number }[];
}

/** Decode a STATS_REPLY body; null when it is malformed (too short, bad table counts). */
export function decodeStatsReply(buf: Uint8Array, off = 0, len = buf.length - off): StatsReply | null {
  if (len < STATS_HEADER_LENGTH + 4) return null;
  const v = new DataView(buf.buffer, buf.byteOffset + off, len);
  const headerLength = v.getUint16(2);
  if (headerLength < STATS_HEADER_LENGTH || headerLength + 4 > len) return null;
  let p = headerLength;
  const kindCount = v.getUint16(p);
  p += 2;
  if (p + kindCount * KIND_ROW + 2 > len) return null;
  const kinds: StatsReply["kinds"] = [];
  for (let i = 0; i < kindCount; i++) {
    const code = v.getUint16(p);
    const k = kindOfWireCode(code);
    kinds.push({
      code,
      name: k >= 0 ? KIND_NAMES[k]! : `kind_0x${code.toString(16).padStart(4, "0")}`,
      in: readU64(v, p + 2),
      out: readU64(v, p + 10),
    });
    p += KIND_ROW;
  }
  const errorCount = v.getUint16(p);
  p += 2;
  if (p + errorCount * ERROR_ROW > len) return null;
  const errors: StatsReply["errors"] = [];
  for (let i = 0; i < errorCount; i++) {
    const code = v.getUint16(p);
    errors.push({ code, name: errorName(code), count: readU64(v, p + 2) });
    p += ERROR_ROW;
  }
  return {
    layoutVersion: v.getUint16(0),
    statsEnabled: (v.getUint16(4) & 1) === 1,
    startedAtMs: readU64(v, 8),
    nowMs: readU64(v, 16),
    uptimeSeconds: v.getUint32(24),
    clients: v.getUint32(28),
    connectionsActive: readU64(v, 32),
    connectionsTotal: readU64(v, 40),
    bytesIn: readU64(v, 48),
    bytesOut: readU64(v, 56),
    messagesIn: readU64(v, 64),
    messagesOut: readU64(v, 72),
    errorsTotal: readU64(v, 80),
    highWaterCrossings: readU64(v, 88),
    pausedReads: readU64(v, 96),
    slowConsumersDropped: readU64(v, 104),
    latencyNs: {
      count: readU64(v, 112),
      p50: readU64(v, 120),
      p90: readU64(v, 128),
      p99: readU64(v, 136),
      p999: readU64(v, 144),
      max: readU64(v, 152),
    },
    kinds,
    errors,
  };
}

/** Non-negative integer as (high u32, low u32); rounds fractions, clamps negatives to 0. */
function u64(v: DataView, at: number, x: number): void {
  const n = x > 0 ? Math.round(x) : 0;
  v.setUint32(at, Math.floor(n / TWO_POW_32));
  v.setUint32(at + 4, n % TWO_POW_32);
}

function readU64(v: DataView, at: number): number {
  return v.getUint32(at) * TWO_POW_32 + v.getUint32(at + 4);
}

function clampU32(x: number): number {
  return x <= 0 ? 0 : x >= 0xffffffff ? 0xffffffff : Math.floor(x);
}
