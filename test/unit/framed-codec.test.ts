// src/protocols/codec/framed.ts: framed encoders/decoders for both sides.

import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import {
  decodeErrorBody,
  decodeFrames,
  decodeHello,
  decodeIdAndPayload,
  decodeU32Body,
  decodeWelcome,
  encodeBroadcast,
  encodeBroadcastAck,
  encodeBroadcastMsg,
  encodeDirectMsg,
  encodeEcho,
  encodeError,
  encodeFrame,
  encodeHello,
  encodePing,
  encodeSendAck,
  encodeSendTo,
  encodeStatsRequest,
  encodeWelcome,
  FramedStreamDecoder,
  MsgType,
} from "../../src/protocols/codec/framed.ts";
import { concat, cutPoints, splitAt } from "../util/chunking.ts";

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

describe("framed encoders: exact bytes", () => {
  test("header is u16 type, u16 length, big-endian", () => {
    expect(hex(encodePing("hi"))).toBe("000300026869");
    expect(hex(encodeEcho(Uint8Array.of(1)))).toBe("0005000101");
    expect(hex(encodeBroadcast(""))).toBe("00070000");
    expect(hex(encodeStatsRequest())).toBe("000d0000");
  });

  test("HELLO: empty, version, version + token", () => {
    expect(hex(encodeHello())).toBe("00010000");
    expect(hex(encodeHello(1))).toBe("000100020001");
    expect(hex(encodeHello(1, "ab"))).toBe("0001000400016162");
  });

  test("SEND_TO: u32 to_id then payload", () => {
    expect(hex(encodeSendTo(0x01020304, "x"))).toBe("000a00050102030478");
  });

  test("server replies", () => {
    expect(hex(encodeWelcome(7))).toBe("0002000600000007" + "0001");
    expect(hex(encodeBroadcastMsg(2, "hi"))).toBe("00080006000000026869");
    expect(hex(encodeDirectMsg(3, ""))).toBe("000b000400000003");
    expect(hex(encodeBroadcastAck(5))).toBe("0009000400000005");
    expect(hex(encodeSendAck(9))).toBe("000c000400000009");
    expect(hex(encodeError(4))).toBe("ffff" + "0011" + "0004" + Buffer.from("frame too large").toString("hex"));
  });

  test("a body over 65535 bytes is refused", () => {
    expect(() => encodeFrame(1, new Uint8Array(65536))).toThrow(RangeError);
    expect(encodeFrame(1, new Uint8Array(65535)).length).toBe(65539);
  });
});

describe("framed body decoders", () => {
  test("decodeHello accepts 0, 2 or more bytes, rejects 1", () => {
    expect(decodeHello(new Uint8Array(0))).toEqual({ version: null, token: new Uint8Array(0) });
    expect(decodeHello(Uint8Array.of(0, 1))).toEqual({ version: 1, token: new Uint8Array(0) });
    expect(decodeHello(Uint8Array.of(0, 2, 0x61))).toEqual({ version: 2, token: Uint8Array.of(0x61) });
    expect(decodeHello(Uint8Array.of(0))).toBeNull();
  });

  test("wrong-size bodies give null", () => {
    expect(decodeWelcome(new Uint8Array(5))).toBeNull();
    expect(decodeU32Body(new Uint8Array(3))).toBeNull();
    expect(decodeU32Body(new Uint8Array(5))).toBeNull();
    expect(decodeIdAndPayload(new Uint8Array(3))).toBeNull();
    expect(decodeErrorBody(new Uint8Array(1))).toBeNull();
  });

  test("decoders read at an offset inside a larger buffer", () => {
    const buf = concat(Uint8Array.of(0xaa, 0xbb), encodeWelcome(0xdeadbeef).subarray(4), Uint8Array.of(0xcc));
    expect(decodeWelcome(buf, 2, 6)).toEqual({ clientId: 0xdeadbeef, protocolVersion: 1 });
  });

  test("property: encode then decode round-trips every request and reply", () => {
    const u32 = fc.integer({ min: 0, max: 0xffffffff });
    const body = fc.uint8Array({ maxLength: 300 });
    fc.assert(
      fc.property(u32, body, fc.integer({ min: 0, max: 0xffff }), fc.string({ maxLength: 50 }), (id, b, code, msg) => {
        const frames = decodeFrames(
          concat(encodeSendTo(id, b), encodeBroadcastMsg(id, b), encodeDirectMsg(id, b), encodeWelcome(id), encodeBroadcastAck(id), encodeError(code, msg), encodeHello(code, b)),
        );
        expect(frames.map((f) => f.type)).toEqual([MsgType.SEND_TO, MsgType.BROADCAST_MSG, MsgType.DIRECT_MSG, MsgType.WELCOME, MsgType.BROADCAST_ACK, MsgType.ERROR, MsgType.HELLO]);
        for (const f of frames.slice(0, 3)) expect(decodeIdAndPayload(f.body)).toEqual({ id, payload: b });
        expect(decodeWelcome(frames[3]!.body)).toEqual({ clientId: id, protocolVersion: 1 });
        expect(decodeU32Body(frames[4]!.body)).toBe(id);
        expect(decodeErrorBody(frames[5]!.body)).toEqual({ code, message: msg.toWellFormed() });
        expect(decodeHello(frames[6]!.body)).toEqual({ version: code, token: b });
      }),
      { numRuns: 200 },
    );
  });
});

describe("FramedStreamDecoder (client side)", () => {
  test("property: frames survive arbitrary chunking and are copies (safe to keep)", () => {
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ maxLength: 100 }), { maxLength: 10 }).chain((bodies) => {
          const bytes = concat(...bodies.map((b) => encodePing(b)));
          return fc.tuple(fc.constant(bodies), fc.constant(bytes), cutPoints(bytes.length));
        }),
        ([bodies, bytes, cuts]) => {
          const got: Uint8Array[] = [];
          const d = new FramedStreamDecoder((f) => got.push(f.body));
          const shared = new Uint8Array(bytes.length + 1);
          for (const c of splitAt(bytes, cuts)) {
            shared.set(c);
            d.push(shared.subarray(0, c.length));
            shared.fill(0);
          }
          expect(got).toEqual(bodies);
        },
      ),
      { numRuns: 200 },
    );
  });

  test("decodeFrames throws on a truncated capture", () => {
    expect(() => decodeFrames(encodePing("abc").subarray(0, 5))).toThrow(/truncated/);
  });
});
