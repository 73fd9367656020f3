// The entry of one worker thread: its own reactor (index = worker number, so stream ids are
// unique in the process and name their worker), its own SO_REUSEPORT listeners, its own hub
// joined to the others' through the rings (transport.ts), and its stats published for the
// others (stats-slot.ts). The main thread (supervisor.ts) starts it with a StartMessage and
// stops it with a StopMessage; control messages use postMessage (rare), the data path never.

import { processLog as log } from "../log.ts";
import { openServing, ListenFailure, type ServingConfig, type Serving } from "../cli/serving.ts";
import { RingTransport } from "./transport.ts";
import { StatsSlots } from "./stats-slot.ts";
import { Control, Field, type SharedState } from "./shared.ts";
import { pinThread } from "./affinity.ts";
import { RingConsumer } from "./ring.ts";
import { LatencyHistogram } from "../stats/histogram.ts";
import { StatsIntervalReporter } from "../stats/summary.ts";

export interface StartMessage {
  type: "start";
  index: number;
  config: ServingConfig;
  state: SharedState;
  /** CPU to pin this thread to (--pin); undefined: not pinned. */
  cpu?: number;
  logFormat: "text" | "json";
  /** Test builds only (BUNPOLL_TEST_CRASH): a framed/line message of this text crashes the worker. */
  crashWord?: string;
  /** --balance acceptor: no listeners here; connections come from the main thread's handoff ring. */
  acceptor: boolean;
}

export interface StopMessage {
  type: "stop";
  graceful: boolean;
  drainTimeoutMs: number;
}

export type ToWorker = StartMessage | StopMessage | { type: "crash" };

export type FromWorker =
  | { type: "ready"; index: number; listening: { address: string; port: number; protocol: string }[] }
  | { type: "failed"; index: number; message: string; address?: string; code?: string }
  | { type: "stopped"; index: number; connections: number; bytesIn: number; bytesOut: number; forced: number }
  | { type: "fds"; index: number; fds: number[] };

/** How often a worker publishes its stats for the others' STATS and /metrics. */
const STATS_PUBLISH_MS = 100;

declare const self: Worker;
let serving: Serving | null = null;
let publisher: ReturnType<typeof setInterval> | null = null;
let slots: StatsSlots | null = null;
let handoffDrain: (() => void) | null = null;
let retained = false;

const post = (m: FromWorker) => self.postMessage(m);

self.onmessage = (e: MessageEvent<ToWorker>) => {
  const m = e.data;
  if (m.type === "start") start(m);
  else if (m.type === "stop") stop(m);
  else if (m.type === "crash") throw new Error("crash injected by the supervisor (test builds)");
};

function start(m: StartMessage): void {
  log.format = m.logFormat;
  const state = m.state;
  const index = m.index;
  const control = new Control(state);
  if (m.cpu !== undefined) {
    try {
      pinThread(m.cpu);
    } catch (e) {
      post({ type: "failed", index, message: `cannot pin worker ${index} to CPU ${m.cpu}: ${(e as Error).message}` });
      return;
    }
  }
  const transport = new RingTransport(state, index, (line) => log.warn("hub_ring", line, { worker: index }));
  const handoff = m.acceptor ? new RingConsumer(state.handoff[index]!) : null;
  // What a dead predecessor left unadopted was closed by the main thread.
  handoff?.skipAll();
  let adopt: (offset: number, length: number) => void = () => {};
  slots = new StatsSlots(state, index);
  const counts = new Int32Array(state.control, control.at(Field.Connections, 0) * 4, state.workers);
  counts[index] = 0;
  const owners = new Uint8Array(state.fdOwners);
  try {
    serving = openServing(
      m.config,
      {
        index,
        sharedConnections: { counts, slot: index },
        fdOwners: { table: owners, tag: index + 1 },
        onTurn: handoff === null
          ? () => {
            transport.flush();
            transport.poll();
          }
          : () => {
            transport.flush();
            // poll() clears this worker's WakePending first: a handoff published after the
            // drain below then finds it clear and wakes the worker again.
            transport.poll();
            handoff.drain(adopt);
          },
      },
      true,
      (ctx) => {
        transport.attach(ctx.hub);
        ctx.peers = slots;
      },
      !m.acceptor,
    );
  } catch (e) {
    const f = e instanceof ListenFailure ? e : ListenFailure.of("?", e);
    post({ type: "failed", index, message: f.message, address: f.address, code: f.code });
    return;
  }
  const { ctx, reactor } = serving;
  if (handoff !== null) {
    const words = new Int32Array(handoff.bytes.buffer, handoff.bytes.byteOffset, handoff.bytes.length / 4);
    const handlers = serving.handlers;
    adopt = (off) => {
      const h = handlers[words[(off >> 2) + 1]!]!;
      reactor.adopt(words[off >> 2]!, h.handler, h.connection);
    };
    // No listener holds the loop open: keep it running until stopped.
    reactor.retain();
    retained = true;
    handoffDrain = () => handoff.drain(adopt);
  }
  for (const fd of reactor.driver.ownFds()) if (fd < owners.length) Atomics.store(owners, fd, index + 1);
  control.store(Field.WakeFd, index, reactor.wakeFdNumber);
  control.store(Field.Alive, index, 1);
  if (m.crashWord !== undefined) installCrashHook(m.crashWord);
  publisher = setInterval(() => slots!.publish(ctx.localSnapshot(), ctx.stats.latency), STATS_PUBLISH_MS);
  // --stats-interval: worker 0 prints the process's line (every worker's figures merged).
  const statsEvery = m.config.flags["stats-interval"] as number;
  if (index === 0 && statsEvery > 0) {
    const merged = new LatencyHistogram();
    const reporter = new StatsIntervalReporter(() => {
      const p = ctx.processStats();
      merged.reset();
      merged.counts.set(p.latency.counts);
      merged.count = p.latency.count;
      merged.sum = p.latency.sum;
      merged.min = p.latency.min;
      merged.max = p.latency.max;
      return p.snapshot;
    }, merged);
    setInterval(() => log.print("stats", reporter.line()), statsEvery * 1000);
  }
  post({
    type: "ready",
    index,
    listening: serving.listeners.map(({ listener, spec }) => ({ address: listener.describe(), port: listener.port, protocol: spec.protocol })),
  });
  reactor.start().catch((e) => {
    // An uncaught error of the loop: the supervisor sees the worker's error event.
    setTimeout(() => {
      throw e;
    });
  });
}

function stop(m: StopMessage): void {
  const s = serving;
  if (s === null) return;
  // Connections the main thread handed over before the stop message are adopted first, so
  // they drain like the others.
  if (handoffDrain !== null) handoffDrain();
  const stopped = s.reactor.stop({ graceful: m.graceful, drainTimeoutMs: m.drainTimeoutMs });
  if (retained) s.reactor.release();
  s.ctx.shuttingDown = true;
  stopped.then(() => {
    const st = s.reactor.stats;
    if (publisher !== null) clearInterval(publisher);
    slots?.publish(s.ctx.localSnapshot(), s.ctx.stats.latency);
    s.reactor[Symbol.dispose]();
    post({ type: "stopped", index: s.reactor.index, connections: st.connectionsTotal, bytesIn: st.bytesIn, bytesOut: st.bytesOut, forced: st.closeReasons.shutdown ?? 0 });
  });
}

/** Test builds: a message whose bytes contain the word throws out of the reactor loop. */
function installCrashHook(word: string): void {
  const s = serving!;
  const bytes = new TextEncoder().encode(word);
  const hub = s.ctx.hub;
  const original = hub.broadcastBytes.bind(hub);
  hub.broadcastBytes = (from, buf, offset, length) => {
    if (length === bytes.length && buf.subarray(offset, offset + length).every((b, i) => b === bytes[i])) {
      setTimeout(() => {
        throw new Error(`crash injected (${word})`);
      });
    }
    return original(from, buf, offset, length);
  };
}
