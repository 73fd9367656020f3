// Each worker publishes its stats (src/stats/merge.ts SharedStats, as JSON) into its own slot
// of shared memory a few times a second; any worker answering STATS or /metrics reads the
// others' slots and merges them with its own live figures. A seqlock guards each slot: the
// writer makes the sequence odd, writes, makes it even; a reader retries while the sequence is
// odd or changed under it. One writer per slot, no waiting on either side.

import { LatencyHistogram } from "../stats/histogram.ts";
import { addHistogram, exportStats, mergeSnapshots, type SharedStats } from "../stats/merge.ts";
import type { StatsSnapshot, WorkerStats } from "../stats/snapshot.ts";
import { Control, Field, type SharedState } from "./shared.ts";

const SEQ = 0;
const LEN = 1;
const DATA = 8;

const utf8 = new TextEncoder();
const utf8Decoder = new TextDecoder();

export class StatsSlots {
  private readonly control: Control;
  private readonly heads: Int32Array[];
  private readonly bodies: Uint8Array[];
  constructor(readonly state: SharedState, readonly self: number) {
    this.control = new Control(state);
    this.heads = state.stats.map((b) => new Int32Array(b, 0, 2));
    this.bodies = state.stats.map((b) => new Uint8Array(b, DATA));
  }

  /** Writes this worker's stats into its slot. */
  publish(snapshot: StatsSnapshot, latency: LatencyHistogram): void {
    const text = utf8.encode(JSON.stringify(exportStats(this.self, snapshot, latency)));
    const body = this.bodies[this.self]!;
    if (text.length > body.length) return; // cannot happen with the kinds and codes there are
    const head = this.heads[this.self]!;
    const seq = Atomics.load(head, SEQ);
    Atomics.store(head, SEQ, seq + 1);
    body.set(text);
    Atomics.store(head, LEN, text.length);
    Atomics.store(head, SEQ, seq + 2);
    this.control.store(Field.MessagesIn, this.self, snapshot.messages.in);
    this.control.store(Field.MessagesOut, this.self, snapshot.messages.out);
  }

  /** Another worker's last published stats; null before its first publish. */
  read(worker: number): SharedStats | null {
    const head = this.heads[worker]!;
    const body = this.bodies[worker]!;
    for (let attempt = 0; attempt < 100; attempt++) {
      const seq = Atomics.load(head, SEQ);
      if (seq === 0) return null;
      if (seq & 1) continue;
      const len = Atomics.load(head, LEN);
      const copy = body.slice(0, len);
      if (Atomics.load(head, SEQ) !== seq) continue;
      return JSON.parse(utf8Decoder.decode(copy)) as SharedStats;
    }
    return null;
  }

  /** The process's stats: this worker's live ones merged with the others' last published. */
  merge(local: StatsSnapshot, latency: LatencyHistogram): { snapshot: StatsSnapshot; latency: LatencyHistogram } {
    const parts: StatsSnapshot[] = [local];
    const merged = latency.clone();
    const workers: WorkerStats[] = [];
    for (let w = 0; w < this.state.workers; w++) {
      const connections = this.control.load(Field.Connections, w);
      const clients = this.control.load(Field.Joined, w);
      if (w === this.self) {
        workers.push({ worker: w, connections, clients, messagesIn: local.messages.in, messagesOut: local.messages.out });
        continue;
      }
      const s = this.read(w);
      if (s !== null) {
        parts.push(s.snapshot);
        addHistogram(merged, s);
      }
      workers.push({ worker: w, connections, clients, messagesIn: s?.snapshot.messages.in ?? 0, messagesOut: s?.snapshot.messages.out ?? 0 });
    }
    const snapshot = mergeSnapshots(parts, merged, workers);
    // Live counts from the control block (exact, where the published snapshots may lag), the
    // totals from the same reads as the breakdown so that they always add up.
    snapshot.connections.active = workers.reduce((n, w) => n + w.connections, 0);
    snapshot.connections.clients = workers.reduce((n, w) => n + w.clients, 0);
    return { snapshot, latency: merged };
  }
}
