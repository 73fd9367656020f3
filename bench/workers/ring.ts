// The hub's cross-thread path in isolation: 64-byte records from the main thread to a Worker
// through the SPSC ring (src/workers/ring.ts), against postMessage per message and postMessage
// of a batch of 64. Messages per second, end to end (until the consumer has seen them all).
//
//   npx bun bench/workers/ring.ts [--count 2000000]   (about 10 s)
// Prints a table and writes bench/results/ring-<time>.json.

import { mkdirSync, writeFileSync } from "node:fs";
import { createRingBuffer, RingProducer } from "../../src/workers/ring.ts";

const count = Number(process.argv[process.argv.indexOf("--count") + 1] || 2_000_000);
const SIZE = 64;
const payload = new Uint8Array(SIZE).fill(7);

function worker(): Worker {
  return new Worker(new URL("./ring-consumer.ts", import.meta.url).href);
}

function once<T>(w: Worker): Promise<T> {
  return new Promise((r) => (w.onmessage = (e) => r(e.data)));
}

async function ring(): Promise<number> {
  const w = worker();
  const buffer = createRingBuffer(256 * 1024);
  const flag = new SharedArrayBuffer(4);
  const p = new RingProducer(buffer);
  const done = once<{ seen: number }>(w);
  w.postMessage({ mode: "ring", buffer, flag, count });
  const t0 = performance.now();
  let sent = 0;
  const bytes = p.bytes;
  while (sent < count) {
    // A turn's worth: up to 64 records, then one publish (the transport's per-turn flush).
    let k = 0;
    for (; k < 64 && sent < count; k++) {
      const at = p.reserve(SIZE);
      if (at < 0) break;
      bytes.set(payload, at);
      p.commit(SIZE);
      sent++;
    }
    p.publish();
    if (k === 0) await new Promise((r) => setImmediate(r));
  }
  await done;
  const s = (performance.now() - t0) / 1000;
  w.terminate();
  return count / s;
}

async function post(batch: number): Promise<number> {
  const w = worker();
  w.postMessage({ mode: "post", count });
  await once(w);
  const done = once<{ seen: number }>(w);
  const t0 = performance.now();
  for (let sent = 0; sent < count; ) {
    if (batch === 1) {
      w.postMessage(payload.slice());
      sent++;
    } else {
      const b: Uint8Array[] = [];
      for (let k = 0; k < batch && sent < count; k++, sent++) b.push(payload.slice());
      w.postMessage(b);
    }
    if (sent % 65536 === 0) await new Promise((r) => setImmediate(r));
  }
  await done;
  const s = (performance.now() - t0) / 1000;
  w.terminate();
  return count / s;
}

const rows: [string, number][] = [];
for (let round = 0; round < 3; round++) {
  rows.push(["ring (SPSC, SharedArrayBuffer)", await ring()]);
  rows.push(["postMessage per message", await post(1)]);
  rows.push(["postMessage per 64 messages", await post(64)]);
}
const best = new Map<string, number[]>();
for (const [k, v] of rows) best.set(k, [...(best.get(k) ?? []), v]);
console.log(`| path (${SIZE} B, ${count} messages, median of 3) | msgs/s |\n|---|---:|`);
const out: Record<string, number> = {};
for (const [k, vs] of best) {
  const med = vs.sort((a, b) => a - b)[1]!;
  out[k] = Math.round(med);
  console.log(`| ${k} | ${Math.round(med).toLocaleString("en")} |`);
}
const dir = new URL("../results/", import.meta.url).pathname;
mkdirSync(dir, { recursive: true });
const file = `${dir}ring-${new Date().toISOString().replace(/[:.]/g, "-")}.json`;
writeFileSync(file, JSON.stringify({ count, size: SIZE, msgsPerSec: out, rounds: rows }, null, 2));
console.log(`wrote ${file}`);
