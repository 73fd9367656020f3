// permessage-deflate: the negotiation rules of RFC 7692 §7.1 (which offers are declined, what
// the answer says), and the zlib streams (ffi/libz.ts) checked against node:zlib, an
// independent implementation: kept windows, resets, the empty message, a final block, a zip
// bomb bounded, garbage refused, and native state released.

import { describe, expect, test } from "bun:test";
import { deflateRawSync, inflateRawSync, constants } from "node:zlib";
import { deflateConfig, negotiateDeflate } from "../../src/protocols/ws/handshake.ts";
import { Deflater, Inflater, ZlibError, sharedDeflater, sharedInflater } from "../../src/protocols/ws/deflate.ts";

const shared = deflateConfig(true);
const dedicated = deflateConfig({ compress: "dedicated", decompress: "dedicated" });
const TAIL = Buffer.from([0, 0, 0xff, 0xff]);
const enc = new TextEncoder();

describe("negotiation (RFC 7692 §7.1)", () => {
  test("no offer, no config, another extension: nothing agreed", () => {
    expect(negotiateDeflate(null, shared)).toBeNull();
    expect(negotiateDeflate("permessage-deflate", null)).toBeNull();
    expect(negotiateDeflate("x-webkit-deflate-frame", shared)).toBeNull();
    expect(deflateConfig(false)).toBeNull();
    expect(deflateConfig(undefined)).toBeNull();
  });

  test("shared: every offer is answered with no context takeover both ways", () => {
    const r = negotiateDeflate("permessage-deflate; client_max_window_bits", shared)!;
    expect(r.header).toBe("permessage-deflate; server_no_context_takeover; client_no_context_takeover");
    expect(r.params).toEqual({ serverTakeover: false, clientTakeover: false, serverWindowBits: 15, memLevel: 8, compress: true });
  });

  test("dedicated: both sides keep their windows unless the client asks otherwise", () => {
    expect(negotiateDeflate("permessage-deflate", dedicated)!.header).toBe("permessage-deflate");
    const a = negotiateDeflate("permessage-deflate; server_no_context_takeover", dedicated)!;
    expect(a.header).toBe("permessage-deflate; server_no_context_takeover");
    expect(a.params.serverTakeover).toBe(false);
    const b = negotiateDeflate("permessage-deflate; client_no_context_takeover", dedicated)!;
    expect(b.header).toBe("permessage-deflate; client_no_context_takeover");
    expect(b.params.clientTakeover).toBe(false);
  });

  test("server_max_window_bits: the answer keeps to it; 8 is declined, and the next offer taken", () => {
    const r = negotiateDeflate('permessage-deflate; server_max_window_bits="10"', dedicated)!;
    expect(r.header).toBe("permessage-deflate; server_max_window_bits=10");
    expect(r.params.serverWindowBits).toBe(10);
    expect(negotiateDeflate("permessage-deflate; server_max_window_bits=8", shared)).toBeNull();
    const next = negotiateDeflate("permessage-deflate; server_max_window_bits=8, permessage-deflate", shared)!;
    expect(next.params.serverWindowBits).toBe(15);
    // A smaller compressor of ours says its window unasked.
    expect(negotiateDeflate("permessage-deflate", deflateConfig({ compress: "3KB" }))!.header)
      .toBe("permessage-deflate; client_no_context_takeover; server_max_window_bits=9");
  });

  test("offers with a bad value, a repeated or unknown parameter are declined", () => {
    for (const bad of [
      "permessage-deflate; server_max_window_bits", // needs a value
      "permessage-deflate; server_max_window_bits=16",
      "permessage-deflate; server_max_window_bits=09",
      "permessage-deflate; client_max_window_bits=7",
      "permessage-deflate; client_max_window_bits=abc",
      "permessage-deflate; server_no_context_takeover=1",
      "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
      "permessage-deflate; x_unknown",
      "permessage-deflate; ; server_no_context_takeover",
    ]) expect(negotiateDeflate(bad, shared)).toBeNull();
  });

  test("several offers: the first acceptable one wins; commas inside quotes do not split", () => {
    const r = negotiateDeflate('permessage-deflate; x="a,b", permessage-deflate; server_max_window_bits=12', dedicated)!;
    expect(r.params.serverWindowBits).toBe(12);
  });

  test("a misspelled compressor is an error at configuration, not a silent default", () => {
    expect(() => deflateConfig({ compress: "5KB" as never })).toThrow(/unknown compressor "5KB"/);
    expect(() => deflateConfig({ decompress: "huge" as never })).toThrow(/unknown compressor/);
  });
});

describe("zlib streams against node:zlib", () => {
  const msg = enc.encode(JSON.stringify({ user: "alice", text: "hello world ".repeat(40) }));

  test("without takeover every message inflates on its own, and node's one-shot messages inflate here", () => {
    const d = sharedDeflater(15), i = sharedInflater();
    for (let k = 0; k < 3; k++) {
      const z = Buffer.from(d.compress(msg));
      expect(Buffer.compare(inflateRawSync(Buffer.concat([z, TAIL]), { finishFlush: constants.Z_SYNC_FLUSH }), Buffer.from(msg))).toBe(0);
    }
    const fromNode = deflateRawSync(msg, { finishFlush: constants.Z_SYNC_FLUSH });
    expect(Buffer.from(i.decompress(fromNode.subarray(0, fromNode.length - 4), 1 << 20)!)).toEqual(Buffer.from(msg));
  });

  test("with takeover the window carries over: repeats shrink, and the concatenated stream is the messages in order", () => {
    using d = new Deflater(15, 8, true);
    using i = new Inflater(true);
    const parts: Buffer[] = [];
    for (let k = 0; k < 3; k++) {
      const z = Buffer.from(d.compress(msg));
      parts.push(z, TAIL);
      expect(Buffer.from(i.decompress(z, 1 << 20)!)).toEqual(Buffer.from(msg));
    }
    expect(parts[2]!.length).toBeLessThan(parts[0]!.length / 4); // the second refers back to the first
    expect(Buffer.compare(inflateRawSync(Buffer.concat(parts), { finishFlush: constants.Z_SYNC_FLUSH }), Buffer.concat([msg, msg, msg]))).toBe(0);
  });

  test("the empty message is one byte, 0x00 (RFC 7692 §7.2.3.6)", () => {
    expect([...sharedDeflater(15).compress(new Uint8Array(0))]).toEqual([0]);
    expect(sharedInflater().decompress(new Uint8Array([0]), 10)!.length).toBe(0);
  });

  test("a message sent as a final block (BFINAL, §7.2.3.4) inflates, and the next one too", () => {
    const i = sharedInflater();
    const final = deflateRawSync(msg); // Z_FINISH: ends with BFINAL
    expect(Buffer.from(i.decompress(final, 1 << 20)!)).toEqual(Buffer.from(msg));
    const z = sharedDeflater(15).compress(msg).slice();
    expect(Buffer.from(i.decompress(z, 1 << 20)!)).toEqual(Buffer.from(msg));
  });

  test("a zip bomb stops at the limit (null), garbage throws ZlibError, and the inflater works after both", () => {
    const i = sharedInflater();
    const bomb = deflateRawSync(Buffer.alloc(20 << 20), { finishFlush: constants.Z_SYNC_FLUSH });
    expect(i.decompress(bomb.subarray(0, bomb.length - 4), 1 << 20)).toBeNull();
    expect(() => i.decompress(new Uint8Array([0xff, 0xff, 0xff, 0xff]), 100)).toThrow(ZlibError);
    const z = sharedDeflater(15).compress(msg).slice();
    expect(Buffer.from(i.decompress(z, 1 << 20)!)).toEqual(Buffer.from(msg));
  });

  test("a window bits value zlib cannot keep to is refused; a released stream refuses work", () => {
    expect(() => new Deflater(8, 8, true)).toThrow(RangeError);
    const d = new Deflater(12, 4, true);
    d[Symbol.dispose]();
    d[Symbol.dispose](); // twice is fine
    expect(() => d.compress(msg)).toThrow(/released/);
  });
});
