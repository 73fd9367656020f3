// Slowloris: `conns` connections, each sending one byte per `byteIntervalMs` of a framed
// frame that declares a body it will never finish in time. The server's --frame-timeout
// must close each of them; we record when (after the connection's first byte) and how.
// Connections arrive at a steady rate over `rampMs`. Emits "connected" once every
// connection is up; finishes when all are closed, or at `maxMs` (the ones still open are
// then counted as not closed by the server).

import type net from "node:net";
import { config, emit, finish, run } from "../lib/child.ts";
import { connectSocket } from "../lib/net.ts";
import { summarize, type Summary } from "../lib/stats.ts";
import { frameHeader, Msg } from "../lib/wire.ts";

export interface SlowlorisConfig {
  port: number;
  conns: number;
  byteIntervalMs: number;
  /** Declared body length of the never-finished frame. */
  declaredBody: number;
  /** Connections open at a steady rate over this long (an attack trickles in too). */
  rampMs: number;
  maxMs: number;
}

export interface SlowlorisResult {
  conns: number;
  connected: number;
  connectErrors: number;
  firstConnectError: string;
  /** Closed by the server (EOF or reset), not by us. */
  closedByServer: number;
  closedEof: number;
  closedReset: number;
  /** Still open at maxMs. */
  stillOpen: number;
  /** Time from a connection's first byte to the server closing it. */
  closeAfterMs: Summary;
  bytesPerConn: Summary;
  /** Bytes the server sent (it has nothing to answer: expected 0). */
  bytesReceived: number;
  rampMs: number;
}

interface Slow {
  socket: net.Socket;
  firstByteAt: number;
  /** When the next byte is due. */
  nextAt: number;
  sent: number;
  closedAt: number;
  how: "" | "eof" | "reset";
}

const cfg = config<SlowlorisConfig>();

run(async () => {
  const t0 = performance.now();
  // The frame: a PING header declaring `declaredBody` bytes, then that body. Only a few
  // bytes of it are ever sent.
  const bytes = Buffer.concat([frameHeader(Msg.PING, cfg.declaredBody), Buffer.alloc(cfg.declaredBody, 0x61)]);
  const all: Slow[] = [];
  let connectErrors = 0;
  let firstConnectError = "";
  let bytesReceived = 0;
  let open = 0;
  let allClosed: () => void = () => {};
  const closedAll = new Promise<void>((r) => (allClosed = r));

  const track = (s: Slow) => {
    const done = (how: "eof" | "reset") => {
      if (s.closedAt !== 0) return;
      s.closedAt = performance.now();
      s.how = how;
      s.socket.destroy();
      if (--open === 0 && all.length + connectErrors === cfg.conns) allClosed();
    };
    s.socket.on("data", (d: Buffer) => (bytesReceived += d.length));
    s.socket.on("end", () => done("eof"));
    s.socket.on("error", () => done("reset"));
    s.socket.on("close", () => done("eof"));
  };

  const sendNext = (s: Slow) => {
    if (s.closedAt !== 0 || s.sent >= bytes.length) return;
    s.socket.write(bytes.subarray(s.sent, s.sent + 1));
    s.sent++;
  };

  // Connection i is opened at t0 + i * rampMs / conns and sends its first byte at once,
  // then one byte per interval: independent attackers arriving at a steady rate, not a
  // synchronised burst.
  const connectOne = async (i: number) => {
    const wait = t0 + (i * cfg.rampMs) / cfg.conns - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    try {
      const socket = await connectSocket(cfg.port, { timeoutMs: 15_000 });
      const now = performance.now();
      const s: Slow = { socket, firstByteAt: now, nextAt: now + cfg.byteIntervalMs, sent: 0, closedAt: 0, how: "" };
      all.push(s);
      open++;
      track(s);
      sendNext(s);
    } catch (e) {
      connectErrors++;
      if (!firstConnectError) firstConnectError = (e as Error).message;
    }
  };
  let ticking = true;
  const tick = () => {
    if (!ticking) return;
    const now = performance.now();
    let soonest = Infinity;
    for (const s of all) {
      if (s.closedAt !== 0) continue;
      if (s.nextAt <= now) {
        sendNext(s);
        s.nextAt += cfg.byteIntervalMs;
      }
      if (s.nextAt < soonest) soonest = s.nextAt;
    }
    setTimeout(tick, Math.max(1, Math.min(50, soonest - performance.now())));
  };
  tick();
  await Promise.all(Array.from({ length: cfg.conns }, (_, i) => connectOne(i)));
  const rampMs = performance.now() - t0;
  emit("connected", { connected: all.length, connectErrors, rampMs });
  if (open === 0) allClosed();
  const left = cfg.maxMs - (performance.now() - t0);
  await Promise.race([closedAll, new Promise((r) => setTimeout(r, Math.max(0, left)))]);
  ticking = false;
  const closed = all.filter((s) => s.closedAt !== 0);
  for (const s of all) if (s.closedAt === 0) s.socket.destroy();
  const result: SlowlorisResult = {
    conns: cfg.conns,
    connected: all.length,
    connectErrors,
    firstConnectError,
    closedByServer: closed.length,
    closedEof: closed.filter((s) => s.how === "eof").length,
    closedReset: closed.filter((s) => s.how === "reset").length,
    stillOpen: all.length - closed.length,
    closeAfterMs: summarize(closed.map((s) => s.closedAt - s.firstByteAt)),
    bytesPerConn: summarize(all.map((s) => s.sent)),
    bytesReceived,
    rampMs,
  };
  finish(result);
}, cfg.maxMs + 30_000);
