// src/protocols/codec/kinds.ts and errors.ts: the shared vocabularies.

import { describe, expect, test } from "bun:test";
import { ERROR_CODE_SLOTS, ERROR_MESSAGES, ERROR_NAMES, ErrorCode, errorCodeOf, errorName } from "../../src/protocols/codec/errors.ts";
import { MsgType } from "../../src/protocols/codec/framed.ts";
import { inboundFramedKind, Kind, KIND_COUNT, KIND_NAMES, KIND_WIRE_CODES, kindOfWireCode } from "../../src/protocols/codec/kinds.ts";

describe("kinds", () => {
  test("tables cover every kind; framed kinds' index equals their type code", () => {
    expect(KIND_NAMES.length).toBe(KIND_COUNT);
    expect(KIND_WIRE_CODES.length).toBe(KIND_COUNT);
    for (const [name, code] of Object.entries(MsgType)) {
      const k = Kind[name as keyof typeof Kind];
      expect(KIND_WIRE_CODES[k]).toBe(code);
      expect(kindOfWireCode(code)).toBe(k);
    }
    expect(new Set(KIND_WIRE_CODES).size).toBe(KIND_COUNT);
  });

  test("inbound framed types: requests map to their kind, replies and strangers to UNKNOWN", () => {
    expect(inboundFramedKind(MsgType.PING)).toBe(Kind.PING);
    expect(inboundFramedKind(MsgType.SEND_TO)).toBe(Kind.SEND_TO);
    expect(inboundFramedKind(MsgType.ERROR)).toBe(Kind.ERROR);
    expect(inboundFramedKind(MsgType.PONG)).toBe(Kind.UNKNOWN);
    expect(inboundFramedKind(MsgType.STATS_REPLY)).toBe(Kind.UNKNOWN);
    expect(inboundFramedKind(0x0f)).toBe(Kind.UNKNOWN);
    expect(inboundFramedKind(0x1234)).toBe(Kind.UNKNOWN);
  });
});

describe("error codes", () => {
  test("framed wire codes 1-8 are fixed by the spec", () => {
    expect([ErrorCode.UNKNOWN_TYPE, ErrorCode.BAD_BODY, ErrorCode.NO_SUCH_CLIENT, ErrorCode.FRAME_TOO_LARGE, ErrorCode.RATE_LIMITED, ErrorCode.UNAUTHORIZED, ErrorCode.SERVER_FULL, ErrorCode.SHUTTING_DOWN]).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
  });

  test("every code has a name and a message; names round-trip", () => {
    for (const code of Object.values(ErrorCode)) {
      expect(code).toBeLessThan(ERROR_CODE_SLOTS);
      expect(ERROR_MESSAGES[code]!.length).toBeGreaterThan(0);
      expect(errorCodeOf(errorName(code))).toBe(code);
    }
    expect(ERROR_NAMES.length).toBe(ERROR_CODE_SLOTS);
    expect(errorName(99)).toBe("error_99");
    expect(errorCodeOf("nope")).toBe(0);
  });
});
