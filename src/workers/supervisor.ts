// The main thread with --workers N: starts N worker threads (worker.ts), each with its own
// reactor and SO_REUSEPORT listeners, and supervises them: one clear line and exit 1 when any
// fails to start, SIGINT/SIGTERM drained in every worker before exit 0, and a worker that
// dies restarted with backoff while the others serve. It never touches the data path.

import { availableParallelism } from "node:os";
import { UsageError, type FlagSpecs } from "../cli/args.ts";
import { plural } from "../cli/plural.ts";
import { processLog as log } from "../log.ts";
import { wakeReactor } from "../reactor/reactor.ts";
import { MAX_REACTORS } from "../reactor/reactor.ts";
import { ListenFailure, maxConnections, type ServingConfig } from "../cli/serving.ts";
import { Acceptor } from "./acceptor.ts";
import { Control, Field, createSharedState, ringBytesFor, type SharedState } from "./shared.ts";
import { allowedCpus } from "./affinity.ts";
import { closeFd, fdLimit } from "../driver/sockets.ts";
import type { FromWorker, StartMessage, ToWorker } from "./worker.ts";

export const WORKERS_FLAGS = {
  workers: { type: "string", arg: "N|auto", description: "reactor threads: N, or auto (the CPUs this process may run on); each has its own loop and SO_REUSEPORT listeners, all share one hub", default: "1" },
  balance: { type: "string", arg: "MODE", description: "how connections spread over workers: reuseport (the kernel hashes them over per-worker sockets) or acceptor (the main thread accepts and hands each to the worker with the fewest)", default: "reuseport", choices: ["reuseport", "acceptor"] },
  pin: { type: "bool", description: "pin each worker thread to one CPU of the allowed set (logged at start)" },
} as const satisfies FlagSpecs;

/** --workers N|auto as a number (a UsageError for anything else). */
export function workerCount(value: string): number {
  if (value === "auto") return Math.max(1, Math.min(MAX_REACTORS, availableParallelism()));
  if (!/^\d+$/.test(value)) throw new UsageError(`--workers: expected a number or "auto", got "${value}"`);
  const n = Number(value);
  if (n < 1 || n > MAX_REACTORS) throw new UsageError(`--workers: must be 1..${MAX_REACTORS}, got ${value}`);
  return n;
}

export interface WorkersOptions {
  config: ServingConfig;
  workers: number;
  balance: "reuseport" | "acceptor";
  pin: boolean;
  version: string;
}

/** Restart backoff: first retry after this, doubling, at most RESTART_MAX_MS. */
const RESTART_FIRST_MS = 50;
const RESTART_MAX_MS = 800;
const BACKOFF_RESET_MS = 10_000;

/** The largest message the hub may carry between workers, for sizing the rings. */
function largestMessage(config: ServingConfig): number {
  let n = 64 * 1024;
  for (const s of config.specs) {
    if (s.protocol === "json" || s.protocol === "http") n = Math.max(n, (config.flags["max-frame"] as number | undefined) ?? 1024 * 1024);
    if (s.protocol === "line") n = Math.max(n, config.flags["max-line"] as number);
  }
  return n;
}

export function runWorkers(o: WorkersOptions): void {
  const n = o.workers;
  const state = createSharedState(n, ringBytesFor(largestMessage(o.config)), Math.min(fdLimit(), 1 << 22));
  const owners = new Uint8Array(state.fdOwners);
  const control = new Control(state);
  const cpus = o.pin ? allowedCpus() : [];
  const threads: (Worker | null)[] = new Array(n).fill(null);
  const restarts = new Array<number>(n).fill(0);
  const lastDeath = new Array<number>(n).fill(-Infinity);
  let specs = o.config.specs;
  let stopping = false;
  let stopAccepting: (() => void) | null = null;
  let started = 0;
  const stoppedStats: Extract<FromWorker, { type: "stopped" }>[] = [];
  const crashWord = process.env.BUNPOLL_TEST_CRASH || undefined;

  const spawn = (index: number, onReady: (m: Extract<FromWorker, { type: "ready" }>) => void) => {
    const w = new Worker(new URL("./worker.ts", import.meta.url).href);
    threads[index] = w;
    w.onmessage = (e: MessageEvent<FromWorker>) => {
      const m = e.data;
      if (m.type === "ready") onReady(m);
      else if (m.type === "failed") {
        if (started < n) {
          // Start-up: the whole start fails with the worker's one line.
          log.error("listen_failed", m.message, { address: m.address, code: m.code, worker: m.index });
          process.exit(1);
        }
        log.error("worker_failed", `worker ${m.index} could not restart: ${m.message}`, { worker: m.index });
      } else if (m.type === "stopped") {
        stoppedStats.push(m);
        threads[m.index]?.terminate();
        threads[m.index] = null;
        if (stoppedStats.length === threads.length) finish();
      }
    };
    w.addEventListener("error", (e: ErrorEvent) => {
      e.preventDefault();
      // The message carries a code frame; the error's own message is the one line to log.
      const err = (e as ErrorEvent & { error?: unknown }).error;
      onDeath(index, err instanceof Error ? err.message : (e.message.split("\n").find((l) => /^\s*error/i.test(l)) ?? e.message).trim());
    });
    const start: StartMessage = {
      type: "start",
      index,
      config: { ...o.config, specs },
      state,
      cpu: o.pin ? cpus[index % cpus.length] : undefined,
      logFormat: log.format,
      crashWord,
      acceptor: o.balance === "acceptor",
    };
    w.postMessage(start satisfies ToWorker);
  };

  const onDeath = (index: number, why: string) => {
    const w = threads[index];
    if (w === null) return;
    threads[index] = null;
    control.store(Field.Alive, index, 0);
    control.store(Field.Connections, index, 0);
    control.store(Field.Joined, index, 0);
    control.store(Field.WakeFd, index, 0);
    w.terminate();
    // A dead Worker's fds stay open (its listeners would keep taking connections nobody
    // accepts): close every one it registered.
    let closed = 0;
    for (let fd = 0; fd < owners.length; fd++) {
      if (owners[fd] !== index + 1) continue;
      Atomics.store(owners, fd, 0);
      closeFd(fd);
      closed++;
    }
    if (started < n) {
      log.error("worker_failed", `worker ${index} failed during start: ${why}`, { worker: index });
      process.exit(1);
    }
    if (stopping) {
      stoppedStats.push({ type: "stopped", index, connections: 0, bytesIn: 0, bytesOut: 0, forced: 0 });
      if (stoppedStats.length === threads.length) finish();
      return;
    }
    // The backoff grows while a worker keeps dying and starts over once it has served a while.
    if (performance.now() - lastDeath[index]! > BACKOFF_RESET_MS) restarts[index] = 0;
    lastDeath[index] = performance.now();
    const delay = Math.min(RESTART_MAX_MS, RESTART_FIRST_MS * 2 ** restarts[index]!);
    restarts[index]!++;
    log.error("worker_died", `worker ${index} died: ${why}; closed its ${plural(closed, "fd")}, restarting in ${delay} ms`, { worker: index, fds: closed });
    const diedAt = performance.now();
    setTimeout(() => {
      if (stopping) return;
      spawn(index, () => {
        const ms = Math.round(performance.now() - diedAt);
        log.info("worker_restarted", `worker ${index} restarted, serving again ${ms} ms after it died`, { worker: index, ms });
      });
    }, delay);
  };

  const announce = (listening: { address: string; protocol: string }[]) => {
    for (const l of listening) {
      log.print("listening", `bunpoll ${o.version} listening on ${l.address} (${l.protocol}), pid ${process.pid}`, { address: l.address, protocol: l.protocol, pid: process.pid, version: o.version });
    }
    const pinned = o.pin ? `, pinned to CPUs ${threads.map((_, i) => cpus[i % cpus.length]).join(",")}` : "";
    log.info("workers", `${plural(n, "worker")} (balance ${o.balance})${pinned}, connection limit ${maxConnections(o.config.flags)} for the process`, { workers: n, balance: o.balance, pin: o.pin });
  };

  const finish = () => {
    let total = 0;
    let bytesIn = 0;
    let bytesOut = 0;
    let forced = 0;
    for (const s of stoppedStats) {
      total += s.connections;
      bytesIn += s.bytesIn;
      bytesOut += s.bytesOut;
      forced += s.forced;
    }
    log.info(
      "stopped",
      `stopped: ${plural(total, "connection")} served, ${plural(bytesIn, "byte")} in, ${plural(bytesOut, "byte")} out` +
        (forced > 0 ? `, ${forced} closed at the drain timeout` : ", all flushed"),
      { connections: total, bytes_in: bytesIn, bytes_out: bytesOut, forced },
    );
    process.exit(0);
  };

  if (o.balance === "acceptor") {
    // The main thread listens (so a port in use fails here, before any worker starts) and
    // hands each accepted fd to the worker with the fewest connections.
    let acceptor: Acceptor;
    try {
      acceptor = new Acceptor(o.config, state, owners, control);
    } catch (e) {
      if (!(e instanceof ListenFailure)) throw e;
      log.error("listen_failed", e.message, { address: e.address, code: e.code });
      process.exit(1);
    }
    stopAccepting = () => acceptor.stop();
    for (let i = 0; i < n; i++) {
      spawn(i, () => {
        if (++started === n) {
          acceptor.start();
          announce(acceptor.listening());
        }
      });
    }
  } else {
  // Worker 0 first: with port 0 its listeners pick the ports, and the others bind the same.
  spawn(0, (first) => {
    specs = specs.map((s, i) => ({ ...s, port: first.listening[i]!.port }));
    started = 1;
    if (n === 1) return announce(first.listening);
    for (let i = 1; i < n; i++) {
      spawn(i, () => {
        if (++started === n) announce(first.listening);
      });
    }
  });
  }

  let signals = 0;
  const onSignal = (sig: NodeJS.Signals) => {
    if (++signals > 1) {
      log.warn("second_signal", `second ${sig}, exiting now`, { signal: sig });
      process.exit(1);
    }
    stopping = true;
    const open = control.sum(Field.Connections);
    const drain = o.config.flags["drain-timeout"] as number;
    log.info("stopping", `${sig}: stopping ${plural(n, "worker")} (${plural(open, "connection")} open), draining for at most ${drain} s`, { signal: sig, connections: open });
    // Acceptor: stop accepting first (the backlog is taken in and handed over), then the workers.
    stopAccepting?.();
    let live = 0;
    threads.forEach((w, i) => {
      if (w === null) {
        stoppedStats.push({ type: "stopped", index: i, connections: 0, bytesIn: 0, bytesOut: 0, forced: 0 });
        return;
      }
      live++;
      w.postMessage({ type: "stop", graceful: true, drainTimeoutMs: drain * 1000 } satisfies ToWorker);
      // The worker reads its messages when its loop yields to Bun: wake it from epoll_wait.
      const fd = control.load(Field.WakeFd, i);
      if (fd > 0) wakeReactor(fd);
    });
    if (live === 0) finish();
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
}

export type { SharedState };
