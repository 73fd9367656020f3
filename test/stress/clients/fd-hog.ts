// fd exhaustion load: `clients` framed clients try to get served by a server whose fd
// limit is far below that. Each connects and PINGs: a PONG means served (it then keeps
// PINGing every `pingEveryMs` and must always get its PONG); ERROR SERVER_FULL or a close
// means refused, and the client retries after a random `retryMinMs..retryMaxMs`.
//
// Emits "saturated" once every client has tried at least once and the served count has
// been stable for a second. Commands: "release K" closes K served clients for good (they
// leave) and emits "recovered" once the retrying clients have taken the free places;
// "stop" closes everything and reports.

import type net from "node:net";
import { command, config, emit, finish, onCommand, run, sleep } from "../lib/child.ts";
import { connectSocket } from "../lib/net.ts";
import { errorCodeOf, ErrCode, FrameReader, frame, Msg, Rng } from "../lib/wire.ts";

export interface FdHogConfig {
  port: number;
  clients: number;
  retryMinMs: number;
  retryMaxMs: number;
  pingEveryMs: number;
  /** How long a first PING may wait for its answer before the attempt counts as refused. */
  answerMs: number;
  maxMs: number;
}

export interface FdHogResult {
  attempts: number;
  /** Attempts answered SERVER_FULL (error 7). */
  refusedFull: number;
  /** Attempts closed (EOF or reset) without any answer. */
  refusedClosed: number;
  /** Attempts whose connect() failed (refused, timed out). */
  connectErrors: number;
  firstConnectError: string;
  /** Attempts that got no answer at all within answerMs (neither PONG, error nor close). */
  unanswered: number;
  servedPeak: number;
  servedAtStop: number;
  /** PINGs answered on served connections after the first. */
  servedPings: number;
  /** Served clients that lost their connection or a PONG. */
  servedFailures: number;
  firstServedFailure: string;
  /** Other replies than PONG or SERVER_FULL. */
  oddReplies: number;
}

interface Slot {
  index: number;
  state: "idle" | "trying" | "served" | "left";
  socket: net.Socket | null;
}

const cfg = config<FdHogConfig>();

run(async () => {
  const rng = new Rng(12345);
  const res: FdHogResult = {
    attempts: 0, refusedFull: 0, refusedClosed: 0, connectErrors: 0, firstConnectError: "", unanswered: 0,
    servedPeak: 0, servedAtStop: 0, servedPings: 0, servedFailures: 0, firstServedFailure: "", oddReplies: 0,
  };
  let served = 0;
  let stopping = false;
  /** Released clients whose connection is closed. */
  let leftClosed = 0;
  const slots: Slot[] = Array.from({ length: cfg.clients }, (_, index) => ({ index, state: "idle", socket: null }));
  const tried = new Set<number>();
  const ping = frame(Msg.PING, Buffer.from("fd-hog"));

  const retryLater = (slot: Slot) => {
    slot.state = "idle";
    slot.socket = null;
    if (stopping) return;
    setTimeout(() => void attempt(slot), rng.range(cfg.retryMinMs, cfg.retryMaxMs));
  };

  const servedFailure = (slot: Slot, what: string) => {
    res.servedFailures++;
    if (!res.firstServedFailure) res.firstServedFailure = `client ${slot.index}: ${what}`;
  };

  const attempt = async (slot: Slot): Promise<void> => {
    if (stopping || slot.state !== "idle") return;
    slot.state = "trying";
    res.attempts++;
    tried.add(slot.index);
    let s: net.Socket;
    try {
      s = await connectSocket(cfg.port, { timeoutMs: 5000 });
    } catch (e) {
      res.connectErrors++;
      if (!res.firstConnectError) res.firstConnectError = (e as Error).message;
      return retryLater(slot);
    }
    slot.socket = s;
    let phase: "first" | "served" | "done" = "first";
    let pongWait: ReturnType<typeof setTimeout> | null = null;
    let pingTimer: ReturnType<typeof setInterval> | null = null;
    let outstanding = 0;
    const endAttempt = (refused: "full" | "closed" | "unanswered" | null) => {
      if (phase === "done") return;
      const wasServed = phase === "served";
      phase = "done";
      if (pongWait) clearTimeout(pongWait);
      if (pingTimer) clearInterval(pingTimer);
      s.destroy();
      if (refused === "full") res.refusedFull++;
      else if (refused === "closed") res.refusedClosed++;
      else if (refused === "unanswered") res.unanswered++;
      if (wasServed) served--;
      if (slot.state === "left") leftClosed++;
      if (slot.state === "left" || stopping) return;
      retryLater(slot);
    };
    const reader = new FrameReader((type, body) => {
      if (type === Msg.PONG) {
        outstanding--;
        if (phase === "first") {
          phase = "served";
          slot.state = "served";
          served++;
          if (served > res.servedPeak) res.servedPeak = served;
          if (pongWait) clearTimeout(pongWait);
          pingTimer = setInterval(() => {
            if (outstanding > 0) {
              servedFailure(slot, `no PONG within ${cfg.pingEveryMs} ms`);
              return endAttempt(null);
            }
            outstanding++;
            s.write(ping);
          }, cfg.pingEveryMs);
        } else res.servedPings++;
      } else if (type === Msg.ERROR && errorCodeOf(body) === ErrCode.SERVER_FULL && phase === "first") {
        endAttempt("full");
      } else {
        res.oddReplies++;
      }
    });
    s.on("data", (d: Buffer) => reader.push(d));
    const closed = (how: string) => {
      if (phase === "served" && slot.state !== "left" && !stopping) servedFailure(slot, `connection ended (${how})`);
      endAttempt(phase === "first" ? "closed" : null);
    };
    s.on("end", () => closed("EOF"));
    s.on("error", (e) => closed(e.message));
    s.on("close", () => closed("close"));
    pongWait = setTimeout(() => endAttempt("unanswered"), cfg.answerMs);
    outstanding++;
    s.write(ping);
  };

  onCommand((line) => {
    // "mark NAME": the runner brackets its CPU measurement with these.
    if (line.startsWith("mark ")) {
      emit(`mark-${line.slice(5)}`, { at: performance.now(), attempts: res.attempts, refused: res.refusedFull + res.refusedClosed + res.connectErrors });
    }
  });
  const t0 = performance.now();
  // Ramp: 1000 clients over ~1 s.
  for (const slot of slots) {
    void attempt(slot);
    if (slot.index % 50 === 49) await sleep(50);
  }
  // Saturated: everyone tried, the served count stable for a second.
  let last = -1;
  let stableSince = performance.now();
  while (performance.now() - t0 < cfg.maxMs) {
    await sleep(100);
    if (served !== last) {
      last = served;
      stableSince = performance.now();
    }
    if (tried.size === cfg.clients && performance.now() - stableSince >= 1000) break;
  }
  emit("saturated", { served, attempts: res.attempts, refusedFull: res.refusedFull, refusedClosed: res.refusedClosed, connectErrors: res.connectErrors });

  const release = await command("release");
  const k = Number(release);
  const before = served;
  const leaving = slots.filter((s) => s.state === "served").slice(0, k);
  for (const slot of leaving) {
    slot.state = "left";
    slot.socket?.end();
  }
  const tRelease = performance.now();
  // The leavers' places are taken by retrying clients.
  while (performance.now() - tRelease < 15_000 && (leftClosed < leaving.length || served < before)) await sleep(50);
  emit("recovered", {
    servedBefore: before,
    left: leaving.length,
    leftClosed,
    servedAfter: served,
    newlyServed: served - (before - leftClosed),
    ms: performance.now() - tRelease,
  });

  await command("stop");
  stopping = true;
  res.servedAtStop = served;
  for (const slot of slots) slot.socket?.destroy();
  finish(res);
}, cfg.maxMs + 120_000);
