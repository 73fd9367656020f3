// The word-wise paths of src/protocols/ws/frame.ts against their byte-wise definitions:
// unmask() against RFC 6455 §5.3, and the UTF-8 check's ASCII skipping against the
// platform's strict decoder, at every length around the fast paths, every key phase,
// every alignment of the memory, and views at an offset into a larger ArrayBuffer.

import { describe, expect, test } from "bun:test";
import { unmask, utf8Step, validUtf8 } from "../../src/protocols/ws/frame.ts";

/** The definition: octet i of the payload XOR octet (phase + i) mod 4 of the key. */
function reference(data: Uint8Array, key: number, phase: number): Uint8Array<ArrayBuffer> {
  const out = data.slice();
  for (let i = 0; i < out.length; i++) out[i] ^= (key >>> (24 - (((phase + i) & 3) << 3))) & 0xff;
  return out;
}

describe("unmask", () => {
  test("matches the definition at every length 0-80, key phase and memory alignment", () => {
    const key = 0x9e3779b9 | 0;
    for (let len = 0; len <= 80; len++) {
      for (let phase = 0; phase < 4; phase++) {
        for (let align = 0; align < 4; align++) {
          const backing = new Uint8Array(new ArrayBuffer(len + 16));
          for (let i = 0; i < backing.length; i++) backing[i] = (i * 131 + len) & 0xff;
          const view = backing.subarray(align + 3);
          const from = 1;
          const before = backing.slice();
          const want = reference(view.subarray(from, from + len), key, phase);
          unmask(view, from, from + len, key, phase);
          expect(view.subarray(from, from + len)).toEqual(want);
          // Nothing outside [from, from + len) changed.
          const start = align + 3 + from;
          expect(backing.subarray(0, start)).toEqual(before.subarray(0, start));
          expect(backing.subarray(start + len)).toEqual(before.subarray(start + len));
        }
      }
    }
  });

  test("alternating buffers (the receive buffer and a held copy) each unmask correctly", () => {
    const key = 0x01020304;
    const a = new Uint8Array(64).fill(0xaa);
    const b = new Uint8Array(100).fill(0x55);
    for (let round = 0; round < 3; round++) {
      const wa = reference(a, key, round);
      unmask(a, 0, a.length, key, round);
      expect(a).toEqual(wa);
      const wb = reference(b.subarray(5, 95), key, round + 1);
      unmask(b, 5, 95, key, round + 1);
      expect(b.subarray(5, 95)).toEqual(wb);
    }
  });

  test("a key with the top bit set (negative as an int32) unmasks like any other", () => {
    const key = 0xff00ff80 | 0;
    const data = new Uint8Array(40).map((_, i) => i);
    const want = reference(data, key, 2);
    unmask(data, 0, data.length, key, 2);
    expect(data).toEqual(want);
  });
});

const strict = new TextDecoder("utf-8", { fatal: true });
const isStrictUtf8 = (b: Uint8Array): boolean => {
  try {
    strict.decode(b);
    return true;
  } catch {
    return false;
  }
};

describe("UTF-8 check with ASCII skipped 4 bytes at a time", () => {
  test("agrees with the strict decoder for one bad or multi-byte sequence at every position and alignment", () => {
    const inserts = [[0xc3, 0xa9], [0xe2, 0x82, 0xac], [0xf0, 0x9f, 0x98, 0x80], [0x80], [0xc3], [0xed, 0xa0, 0x80], [0xff], [0xf4, 0x90, 0x80, 0x80]];
    for (const ins of inserts) {
      for (let len = 8; len <= 40; len++) {
        for (let at = 0; at <= len; at++) {
          for (let align = 0; align < 4; align++) {
            const backing = new Uint8Array(new ArrayBuffer(len + ins.length + 8)).fill(0x61);
            const view = backing.subarray(align, align + len + ins.length);
            view.set(ins, at);
            expect(validUtf8(view)).toBe(isStrictUtf8(view));
          }
        }
      }
    }
  });

  test("fails at the first invalid byte: an invalid byte after 30 ASCII bytes rejects in a chunk ending there", () => {
    const b = new Uint8Array(new ArrayBuffer(64)).fill(0x41);
    b[30] = 0xff;
    expect(utf8Step(0, b, 0, 31)).toBe(12);
    expect(utf8Step(0, b, 0, 30)).toBe(0);
  });

  test("a sequence split across chunks carries its state into the word-wise skip", () => {
    const b = new Uint8Array(new ArrayBuffer(64)).fill(0x41);
    b.set([0xe2, 0x82, 0xac], 7); // split after 0xe2, then 0x82 0xac and ASCII
    const mid = utf8Step(0, b, 0, 8);
    expect(mid).not.toBe(0);
    expect(mid).not.toBe(12);
    expect(utf8Step(mid, b, 8, 64)).toBe(0);
  });
});
