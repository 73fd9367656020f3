// Garbage clients: `perProtocol` connections to each of the four listeners, each sending
// random bytes and mutated valid messages (lib/mutate.ts) every 20-200 ms for
// `durationMs`. They read (and drop) whatever comes back, so they never become slow
// consumers; echo clients also check that the echo is byte-exact. A connection the server
// closes (as it may: line too long, json length over the limit, frame timeout) is
// counted and reopened.

import type net from "node:net";
import { config, finish, run, sleep } from "../lib/child.ts";
import { garbageFor, type Protocol } from "../lib/mutate.ts";
import { connectSocket } from "../lib/net.ts";
import { Rng } from "../lib/wire.ts";

export interface GarbageConfig {
  ports: Record<Protocol, number>;
  perProtocol: number;
  durationMs: number;
  seed: number;
  minGapMs: number;
  maxGapMs: number;
}

export interface ProtocolTally {
  clients: number;
  connects: number;
  connectErrors: number;
  /** Writes of garbage (one mutation may be several writes). */
  sends: number;
  bytesSent: number;
  bytesReceived: number;
  /** Connections the server closed (EOF) or reset. */
  closedEof: number;
  closedReset: number;
  /** echo only: echoed bytes that differ from what was sent. */
  echoMismatches: number;
}

export interface GarbageResult {
  byProtocol: Record<Protocol, ProtocolTally>;
  firstEchoMismatch: string;
}

const cfg = config<GarbageConfig>();
const PROTOCOLS: Protocol[] = ["framed", "json", "line", "echo"];

run(async () => {
  const tally = Object.fromEntries(
    PROTOCOLS.map((p) => [p, { clients: cfg.perProtocol, connects: 0, connectErrors: 0, sends: 0, bytesSent: 0, bytesReceived: 0, closedEof: 0, closedReset: 0, echoMismatches: 0 }]),
  ) as Record<Protocol, ProtocolTally>;
  let firstEchoMismatch = "";
  const end = performance.now() + cfg.durationMs;

  const client = async (p: Protocol, index: number) => {
    const r = new Rng(cfg.seed * 7919 + index * 104729 + PROTOCOLS.indexOf(p));
    const t = tally[p];
    // Stagger the start so 200 clients do not connect in one burst.
    await sleep(r.int(500));
    while (performance.now() < end) {
      let s: net.Socket;
      try {
        s = await connectSocket(cfg.ports[p], { timeoutMs: 10_000 });
        t.connects++;
      } catch {
        t.connectErrors++;
        await sleep(100);
        continue;
      }
      let open = true;
      // echo: what we sent and have not had back yet, in order.
      const expected: Buffer[] = [];
      s.on("data", (d: Buffer) => {
        t.bytesReceived += d.length;
        if (p !== "echo") return;
        let off = 0;
        while (off < d.length && expected.length > 0) {
          const head = expected[0]!;
          const n = Math.min(head.length, d.length - off);
          if (d.compare(head, 0, n, off, off + n) !== 0) {
            t.echoMismatches++;
            if (!firstEchoMismatch) firstEchoMismatch = `echo client ${index}: echoed bytes differ from what was sent`;
            expected.length = 0;
            return;
          }
          off += n;
          if (n === head.length) expected.shift();
          else expected[0] = head.subarray(n);
        }
        if (off < d.length) {
          t.echoMismatches++;
          if (!firstEchoMismatch) firstEchoMismatch = `echo client ${index}: ${d.length - off} bytes echoed that were never sent`;
        }
      });
      const closed = new Promise<void>((resolve) => {
        s.on("end", () => {
          if (open) t.closedEof++;
          open = false;
          resolve();
        });
        s.on("error", () => {
          if (open) t.closedReset++;
          open = false;
          resolve();
        });
        s.on("close", () => {
          open = false;
          resolve();
        });
      });
      while (open && performance.now() < end) {
        const writes = garbageFor(p, r);
        for (const w of writes) {
          if (!open) break;
          if (p === "echo") expected.push(Buffer.from(w));
          s.write(w);
          t.sends++;
          t.bytesSent += w.length;
          // Dribbled writes: a pause between bytes so that they arrive as separate reads.
          if (writes.length > 1) await sleep(1);
        }
        await Promise.race([sleep(r.range(cfg.minGapMs, cfg.maxGapMs)), closed]);
      }
      if (open) {
        open = false;
        // echo: let the last echo come back before closing, so mismatches are not missed.
        if (p === "echo") {
          const deadline = performance.now() + 2000;
          while (expected.length > 0 && performance.now() < deadline) await sleep(10);
        }
        s.destroy();
      } else {
        s.destroy();
        await sleep(r.range(20, 200));
      }
    }
  };

  const all: Promise<void>[] = [];
  for (const p of PROTOCOLS) for (let i = 0; i < cfg.perProtocol; i++) all.push(client(p, i));
  await Promise.all(all);
  const result: GarbageResult = { byProtocol: tally, firstEchoMismatch };
  finish(result);
}, cfg.durationMs + 60_000);
