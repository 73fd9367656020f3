// Message kinds: the vocabulary the framed, json and line protocols share for their
// per-type counters. A json "ping" and a framed PING are the same kind, so the stats read
// the same whichever protocol a client speaks.
//
// The stats know no protocol: `registerKinds` registers these names with a ProtocolStats,
// and the Kind values are the counter indexes that registration hands out (it checks so),
// which lets the hot paths increment `stats.messagesIn[Kind.PING]`. The order puts the
// framed requests and replies at their type code, 0x0001..0x000E. The wire code (used in
// STATS_REPLY) is the framed type code where one exists, otherwise 0x01xx.

import type { ProtocolStats } from "../../stats/protocol-stats.ts";

export const Kind = {
  UNKNOWN: 0,
  HELLO: 1,
  WELCOME: 2,
  PING: 3,
  PONG: 4,
  ECHO: 5,
  ECHO_REPLY: 6,
  BROADCAST: 7,
  BROADCAST_MSG: 8,
  BROADCAST_ACK: 9,
  SEND_TO: 10,
  DIRECT_MSG: 11,
  SEND_ACK: 12,
  STATS: 13,
  STATS_REPLY: 14,
  ERROR: 15,
  AUTH: 16,
  AUTH_OK: 17,
  LINE: 18,
} as const;
export type Kind = (typeof Kind)[keyof typeof Kind];

export const KIND_COUNT = 19;

export const KIND_NAMES: readonly string[] = [
  "unknown", "hello", "welcome", "ping", "pong", "echo", "echo_reply", "broadcast",
  "broadcast_msg", "broadcast_ack", "send_to", "direct_msg", "send_ack", "stats",
  "stats_reply", "error", "auth", "auth_ok", "line",
];

/** Wire code of each kind in STATS_REPLY tables. */
export const KIND_WIRE_CODES: readonly number[] = [
  0x0000, 0x0001, 0x0002, 0x0003, 0x0004, 0x0005, 0x0006, 0x0007, 0x0008, 0x0009, 0x000a,
  0x000b, 0x000c, 0x000d, 0x000e, 0xffff, 0x0100, 0x0101, 0x0102,
];

/**
 * Register the shared kinds with `stats`. They must be its first kinds, so that each gets
 * its Kind value as index: throws otherwise (register other protocols' kinds after).
 * Registering again (a second context sharing the stats) is a no-op.
 */
export function registerKinds(stats: Pick<ProtocolStats, "registerKind">): void {
  for (let k = 0; k < KIND_COUNT; k++) {
    const idx = stats.registerKind(KIND_NAMES[k]!);
    if (idx !== k) {
      throw new Error(`message kind "${KIND_NAMES[k]}" got counter index ${idx}, not ${k}: register the shared kinds before any other`);
    }
  }
}

const WIRE_CODE_OF_NAME = new Map(KIND_NAMES.map((name, k) => [name, KIND_WIRE_CODES[k]!]));

/** STATS_REPLY wire code of a kind name; -1 for a kind outside this vocabulary. */
export function kindWireCode(name: string): number {
  return WIRE_CODE_OF_NAME.get(name) ?? -1;
}

/** Dense kind index for a wire code; -1 when unknown (a newer server's kind). */
export function kindOfWireCode(code: number): number {
  return KIND_WIRE_CODES.indexOf(code);
}

/**
 * Kind of a frame type received from a client. Server-to-client types sent by a client
 * (WELCOME, PONG...) are UNKNOWN: they are answered with UNKNOWN_TYPE, so counting them
 * as "welcome in" would mislead.
 */
const INBOUND_FRAMED_KIND = new Uint8Array([
  Kind.UNKNOWN, Kind.HELLO, Kind.UNKNOWN, Kind.PING, Kind.UNKNOWN, Kind.ECHO, Kind.UNKNOWN,
  Kind.BROADCAST, Kind.UNKNOWN, Kind.UNKNOWN, Kind.SEND_TO, Kind.UNKNOWN, Kind.UNKNOWN,
  Kind.STATS, Kind.UNKNOWN, Kind.UNKNOWN,
]);

export function inboundFramedKind(type: number): number {
  if (type < 16) return INBOUND_FRAMED_KIND[type]!;
  return type === 0xffff ? Kind.ERROR : Kind.UNKNOWN;
}
