// listenWorkers() and serveWorkers(): the library's way to several cores. Functions cannot
// cross threads, so the application names a module (its default export is what listen() takes
// as `socket`, or what serve() takes: fetch, routes, websocket...) and each of N Worker threads
// imports it and serves it on its own reactor with SO_REUSEPORT. stop() drains every worker.
// The worker-0-first start makes `port: 0` one port for all.
//
// What the CLI adds on top (one hub across workers, shared stats, restarts) is not here yet:
// library handlers have no hub, and a worker that dies is reported by `died`, not restarted.

import { MAX_REACTORS } from "../reactor/reactor.ts";
import type { LibraryStart } from "./library-worker.ts";

export interface WorkersOptions {
  /** The handler module: an absolute path or file: URL (e.g. new URL("./h.ts", import.meta.url).href). */
  module: string;
  /** Worker threads (1..64). */
  workers: number;
  hostname?: string;
  port: number;
  /** More plain (structured-clonable) options for each worker's listen()/serve(). */
  options?: Record<string, unknown>;
}

export interface WorkersServer {
  readonly hostname: string;
  readonly port: number;
  readonly workers: number;
  /** Resolves with the worker index and its error if a worker dies. */
  readonly died: Promise<{ worker: number; error: string }>;
  /** Stops accepting and drains every worker. */
  stop(): Promise<void>;
}

export function listenWorkers(o: WorkersOptions): Promise<WorkersServer> {
  return start("listen", o);
}

export function serveWorkers(o: WorkersOptions): Promise<WorkersServer> {
  return start("serve", o);
}

async function start(kind: "listen" | "serve", o: WorkersOptions): Promise<WorkersServer> {
  if (!Number.isInteger(o.workers) || o.workers < 1 || o.workers > MAX_REACTORS) throw new RangeError(`workers must be 1..${MAX_REACTORS}, got ${o.workers}`);
  const threads: Worker[] = [];
  let onDeath: (d: { worker: number; error: string }) => void = () => {};
  const died = new Promise<{ worker: number; error: string }>((r) => (onDeath = r));
  const spawn = (index: number, port: number) =>
    new Promise<{ port: number; hostname: string }>((resolve, reject) => {
      const w = new Worker(new URL("./library-worker.ts", import.meta.url).href);
      threads.push(w);
      w.onmessage = (e) => {
        if (e.data.type === "ready") resolve(e.data);
        else if (e.data.type === "failed") reject(new Error(`worker ${index}: ${e.data.message}`));
      };
      w.addEventListener("error", (e: ErrorEvent) => {
        e.preventDefault();
        threads.splice(threads.indexOf(w), 1); // stop() waits for the living only
        onDeath({ worker: index, error: e.message });
        reject(new Error(`worker ${index}: ${e.message}`));
      });
      const msg: LibraryStart = { type: "start", kind, module: o.module, index, options: { ...o.options, hostname: o.hostname ?? "127.0.0.1", port } };
      w.postMessage(msg);
    });
  const stopAll = () =>
    Promise.all(threads.map((w) => new Promise<void>((resolve) => {
      w.onmessage = (e) => {
        if (e.data.type === "stopped") {
          w.terminate();
          resolve();
        }
      };
      w.postMessage({ type: "stop" });
    }))).then(() => {});
  try {
    const first = await spawn(0, o.port);
    const rest = [];
    for (let i = 1; i < o.workers; i++) rest.push(spawn(i, first.port));
    await Promise.all(rest);
    return { hostname: first.hostname, port: first.port, workers: o.workers, died, stop: stopAll };
  } catch (e) {
    for (const w of threads) w.terminate();
    throw e;
  }
}
