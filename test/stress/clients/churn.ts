// Connection churn: `cycles` connect/close cycles, `concurrency` at a time, in three
// kinds taken in turn:
//   ping  - connect, PING, wait for the PONG, close with FIN
//   quiet - connect, close with FIN at once (nothing sent)
//   reset - connect, send half a frame, close with RST (SO_LINGER 0: resetAndDestroy)
// Source addresses rotate over `sources` (127.0.0.x): the FIN closes leave the client
// side in TIME_WAIT, and spreading them over several addresses keeps each address's
// ephemeral port range far from exhaustion.
//
// The cycles run in `rounds`: after round N the client emits "round-N" and waits for the
// runner's "next", so the runner can read the server's fds and RSS at quiet moments.

import type net from "node:net";
import { command, config, emit, finish, run } from "../lib/child.ts";
import { connectSocket, FramedClient } from "../lib/net.ts";
import { frameHeader, Msg } from "../lib/wire.ts";

export interface ChurnConfig {
  port: number;
  /** Cycles per round. */
  cycles: number;
  rounds: number;
  concurrency: number;
  sources: string[];
  maxMs: number;
}

export interface ChurnResult {
  cycles: number;
  done: { ping: number; quiet: number; reset: number };
  failures: number;
  failuresByKind: Record<string, number>;
  firstFailure: string;
  ms: number;
}

const cfg = config<ChurnConfig>();
const KINDS = ["ping", "quiet", "reset"] as const;

/** Resolves when the socket is fully closed (the server closed its side too). */
function closed(s: net.Socket, ms: number): Promise<boolean> {
  if (s.destroyed) return Promise.resolve(true);
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    s.once("close", () => {
      clearTimeout(t);
      resolve(true);
    });
  });
}

run(async () => {
  const t0 = performance.now();
  const done = { ping: 0, quiet: 0, reset: 0 };
  const failuresByKind: Record<string, number> = {};
  let failures = 0;
  let firstFailure = "";
  const fail = (kind: string, what: string) => {
    failures++;
    failuresByKind[kind] = (failuresByKind[kind] ?? 0) + 1;
    if (!firstFailure) firstFailure = `${kind}: ${what}`;
  };
  const half = Buffer.concat([frameHeader(Msg.ECHO, 100), Buffer.alloc(50, 0x62)]);
  let next = 0;
  const deadline = t0 + cfg.maxMs;

  const cycle = async (i: number) => {
    const kind = KINDS[i % 3]!;
    const localAddress = cfg.sources[Math.floor(i / 3) % cfg.sources.length]!;
    try {
      if (kind === "ping") {
        const c = await FramedClient.connect(cfg.port, { localAddress, timeoutMs: 10_000 });
        const body = Buffer.from([i >>> 24, (i >>> 16) & 0xff, (i >>> 8) & 0xff, i & 0xff]);
        const r = await c.request(Msg.PING, body, 10_000);
        if (r.type !== Msg.PONG || !r.body.equals(body)) throw new Error(`PING answered 0x${r.type.toString(16)}`);
        c.socket.end();
        if (!(await closed(c.socket, 10_000))) throw new Error("server did not close after our FIN");
      } else if (kind === "quiet") {
        const s = await connectSocket(cfg.port, { localAddress, timeoutMs: 10_000 });
        s.on("error", () => {});
        s.end();
        if (!(await closed(s, 10_000))) throw new Error("server did not close after our FIN");
      } else {
        const s = await connectSocket(cfg.port, { localAddress, timeoutMs: 10_000 });
        s.on("error", () => {});
        await new Promise<void>((resolve) => s.write(half, () => resolve()));
        s.resetAndDestroy();
      }
      done[kind]++;
    } catch (e) {
      fail(kind, (e as Error).message);
    }
  };

  for (let round = 1; round <= cfg.rounds; round++) {
    const stop = round * cfg.cycles;
    const worker = async () => {
      while (next < stop && performance.now() < deadline) await cycle(next++);
    };
    await Promise.all(Array.from({ length: cfg.concurrency }, worker));
    if (round < cfg.rounds) {
      emit(`round-${round}`, { round, cycles: next });
      await command("next");
    }
  }
  const result: ChurnResult = { cycles: next, done, failures, failuresByKind, firstFailure, ms: performance.now() - t0 };
  finish(result);
}, cfg.maxMs + 60_000);
