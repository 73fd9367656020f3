// Slow readers: `conns` framed connections that never read (paused right after connect,
// so the kernel's receive buffer fills and the server's output queue grows). With
// `onCommand`, it emits "ready" and connects on the command "connect" (so that a load can
// be measured before and after they attach); otherwise at once. Emits "connected"; on the
// command "check" it resumes reading on each connection and waits for the server's close
// (EOF or reset) after the buffered bytes, which tells whether the server dropped it.

import type net from "node:net";
import { command, config, emit, finish, run } from "../lib/child.ts";
import { connectSocket } from "../lib/net.ts";
import { summarize, type Summary } from "../lib/stats.ts";

export interface SlowReadersConfig {
  port: number;
  conns: number;
  /** Connect on the command "connect" instead of at once. */
  onCommand?: boolean;
  /** After "check": how long to wait for each connection's close. */
  checkMs: number;
  maxMs: number;
}

export interface SlowReadersResult {
  connected: number;
  connectErrors: number;
  /** Connections the server had closed (EOF or reset after the buffered bytes). */
  closedByServer: number;
  closedEof: number;
  closedReset: number;
  /** Connections still open after checkMs of reading: not dropped. */
  stillOpen: number;
  /** Bytes each connection had waiting for it (kernel buffers) when it resumed reading. */
  drainedBytes: Summary;
}

const cfg = config<SlowReadersConfig>();

run(async () => {
  if (cfg.onCommand) {
    const go = command("connect");
    emit("ready");
    await go;
  }
  const startEpochMs = Date.now();
  const sockets: net.Socket[] = [];
  let connectErrors = 0;
  await Promise.all(
    Array.from({ length: cfg.conns }, async () => {
      try {
        const s = await connectSocket(cfg.port, { timeoutMs: 15_000 });
        s.pause(); // never read: the kernel receive buffer fills, then the server's queue
        s.on("error", () => {}); // a reset before "check" is seen when reading resumes
        sockets.push(s);
      } catch {
        connectErrors++;
      }
    }),
  );
  emit("connected", { connected: sockets.length, startEpochMs, doneEpochMs: Date.now() });
  await command("check");
  const outcomes = await Promise.all(
    sockets.map(
      (s) =>
        new Promise<{ how: "eof" | "reset" | "open"; bytes: number }>((resolve) => {
          let bytes = 0;
          let settled = false;
          const settle = (how: "eof" | "reset" | "open") => {
            if (settled) return;
            settled = true;
            clearTimeout(timer);
            s.destroy();
            resolve({ how, bytes });
          };
          const timer = setTimeout(() => settle("open"), cfg.checkMs);
          if (s.destroyed) return settle("reset");
          s.on("data", (d: Buffer) => (bytes += d.length));
          s.on("end", () => settle("eof"));
          s.on("error", () => settle("reset"));
          s.on("close", () => settle("eof"));
          s.resume();
        }),
    ),
  );
  const closed = outcomes.filter((o) => o.how !== "open");
  const result: SlowReadersResult = {
    connected: sockets.length,
    connectErrors,
    closedByServer: closed.length,
    closedEof: outcomes.filter((o) => o.how === "eof").length,
    closedReset: outcomes.filter((o) => o.how === "reset").length,
    stillOpen: outcomes.length - closed.length,
    drainedBytes: summarize(outcomes.map((o) => o.bytes)),
  };
  finish(result);
}, cfg.maxMs);
