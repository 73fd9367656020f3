// Micro-benchmark of permessage-deflate's zlib bindings, to choose one by measurement
// (src/protocols/ws/deflate.ts): the system's libz over bun:ffi, one stream per thread reset
// after each message (no context takeover) or one per socket that keeps its window, against
// node:zlib's synchronous one-shot calls, which build and free a zlib stream per message.
// Bun.deflateSync is listed for the record: it ends each message with a final block and
// cannot keep a window, so it fits neither mode as RFC 7692 clients are tested with.
//
//   bun bench/micro/ws-deflate.bench.ts

import { bench, do_not_optimize, group, run, summary } from "mitata";
import { constants, deflateRawSync, inflateRawSync } from "node:zlib";
import { Deflater, sharedDeflater, sharedInflater } from "../../src/protocols/ws/deflate.ts";

const enc = new TextEncoder();
const chat = enc.encode(JSON.stringify({ type: "chat", user: "alice", text: "hello world, how is the weather ".repeat(8), ts: 1733300000000 }));
const doc = enc.encode(JSON.stringify(Array.from({ length: 120 }, (_, i) => ({ id: i, name: `item ${i}`, price: i * 1.25, tags: ["a", "b"] }))));
const TAIL = Buffer.from([0, 0, 0xff, 0xff]);
const SYNC = { finishFlush: constants.Z_SYNC_FLUSH };

for (const [name, msg] of [[`chat message, ${chat.length} B`, chat], [`JSON document, ${doc.length} B`, doc]] as const) {
  const takeover = new Deflater(15, 8, true);
  group(`deflate: ${name}`, () => {
    summary(() => {
      bench("libz via bun:ffi, shared (reset per message)", () => do_not_optimize(sharedDeflater(15).compress(msg)));
      bench("libz via bun:ffi, dedicated (window kept)", () => do_not_optimize(takeover.compress(msg)));
      bench("node:zlib deflateRawSync (one-shot)", () => do_not_optimize(deflateRawSync(msg, SYNC)));
      bench("Bun.deflateSync (final block; record only)", () => do_not_optimize(Bun.deflateSync(msg)));
    });
  });
  const z = sharedDeflater(15).compress(msg).slice();
  const withTail = Buffer.concat([z, TAIL]);
  group(`inflate: ${name}`, () => {
    summary(() => {
      bench("libz via bun:ffi, shared (reset per message)", () => do_not_optimize(sharedInflater().decompress(z, 1 << 20)));
      bench("node:zlib inflateRawSync (one-shot)", () => do_not_optimize(inflateRawSync(withTail, SYNC)));
    });
  });
}

await run();
