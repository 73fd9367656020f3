// src/protocols/codec/kinds.ts and errors.ts: the shared vocabularies.

import { describe, expect, test } from "bun:test";
import { APPLICATION_CLOSE_REASONS, closeReasonFor, ERROR_MESSAGES, ERROR_NAMES, ErrorCode, errorCodeOf, errorName, registerErrors } from "../../src/protocols/codec/errors.ts";
import { MsgType } from "../../src/protocols/codec/framed.ts";
import { inboundFramedKind, Kind, KIND_COUNT, KIND_NAMES, KIND_WIRE_CODES, kindOfWireCode, kindWireCode, registerKinds } from "../../src/protocols/codec/kinds.ts";
import { ProtocolStats } from "../../src/stats/protocol-stats.ts";

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
    expect(new Set(KIND_NAMES).size).toBe(KIND_COUNT);
    for (let k = 0; k < KIND_COUNT; k++) expect(kindWireCode(KIND_NAMES[k]!)).toBe(KIND_WIRE_CODES[k]!);
    expect(kindWireCode("http_request")).toBe(-1);
  });

  test("registerKinds: every Kind value is the counter index it gets; again is a no-op", () => {
    const s = new ProtocolStats();
    registerKinds(s);
    for (const [name, k] of Object.entries(Kind)) {
      expect(s.kindIndex(name.toLowerCase())).toBe(k);
      expect(s.kindName(k)).toBe(KIND_NAMES[k]!);
    }
    expect(s.messagesIn.length).toBe(KIND_COUNT);
    registerKinds(s); // a second context sharing these stats
    expect(s.kinds.length).toBe(KIND_COUNT);
    // Another protocol's kinds come after.
    expect(s.registerKind("http_request")).toBe(KIND_COUNT);
  });

  test("registerKinds refuses stats whose first kinds are someone else's", () => {
    const s = new ProtocolStats();
    s.registerKind("http_request");
    expect(() => registerKinds(s)).toThrow(/"unknown" got counter index 1, not 0/);
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
      expect(ERROR_MESSAGES[code]!.length).toBeGreaterThan(0);
      expect(errorCodeOf(errorName(code))).toBe(code);
    }
    expect(ERROR_NAMES.length).toBe(Math.max(...Object.values(ErrorCode)) + 1);
    expect(ERROR_MESSAGES.length).toBe(ERROR_NAMES.length);
    expect(errorName(99)).toBe("error_99");
    expect(errorCodeOf("nope")).toBe(0);
  });
});

describe("registerErrors", () => {
  test("registers every code under its name, and the application close reasons", () => {
    const s = new ProtocolStats();
    registerErrors(s);
    registerErrors(s); // again: a no-op, not a conflict
    for (const code of Object.values(ErrorCode)) expect(s.errorName(code)).toBe(ERROR_NAMES[code]!);
    expect(s.errors.length).toBe(ERROR_NAMES.length);
    expect(s.registeredCloseReasons).toEqual(["protocol", "unauthorized", "rate-limited"]);
  });

  test("every close reason closeReasonFor gives is registered or a transport reason", () => {
    const transport = new Set(["server-full", "shutdown"]);
    for (const code of Object.values(ErrorCode)) {
      const reason = closeReasonFor(code);
      expect(transport.has(reason) || (APPLICATION_CLOSE_REASONS as readonly string[]).includes(reason)).toBe(true);
    }
  });
});
