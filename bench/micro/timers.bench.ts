// Micro-benchmark of the reactor's timer heap (src/reactor/timers.ts) at 10,000 nodes: one
// per connection (idle/frame timeouts) on a busy server.
//
//   bun bench/micro/timers.bench.ts
//
// Rows marked "x 10k" do 10,000 operations per iteration: divide by 10,000 for one.

import { bench, do_not_optimize, group, run, summary } from "mitata";
import { TimerHeap, type TimerNode } from "../../src/reactor/timers.ts";

const N = 10_000;

class Node implements TimerNode {
  timerDeadline = 0;
  timerIndex = -1;
  fired = 0;
  /** When set, the node re-arms itself `period` ms later (like a connection's idle timer). */
  constructor(
    private readonly heap: TimerHeap | null = null,
    private readonly period = 0,
  ) {}
  onTimer(_now: number): void {
    this.fired++;
    if (this.heap !== null) this.heap.schedule(this, this.timerDeadline + this.period);
  }
}

/** Deadlines 0..N-1 ms in a shuffled order (a fixed one, so every run is the same). */
const order = new Uint32Array(N).map((_, i) => i);
let seed = 12345;
const rand = (): number => {
  seed ^= seed << 13;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  return (seed >>> 0) / 2 ** 32;
};
for (let i = N - 1; i > 0; i--) {
  const j = Math.floor(rand() * (i + 1));
  [order[i], order[j]] = [order[j]!, order[i]!];
}

function filledHeap(): { heap: TimerHeap; nodes: Node[] } {
  const heap = new TimerHeap();
  const nodes = Array.from({ length: N }, () => new Node());
  for (let i = 0; i < N; i++) heap.schedule(nodes[i]!, order[i]!);
  return { heap, nodes };
}

// A steady 10k heap for single operations.
const steady = filledHeap();
const picks = new Uint32Array(4096).map(() => Math.floor(rand() * N));
let p = 0;
let clock = N;

// A 10k heap of self-re-arming nodes, deadlines 1 ms apart over 10 s: advancing the clock
// by 100 ms expires (and re-arms) 100 nodes, the way idle timers fire on a busy server.
const periodic = new TimerHeap();
for (let i = 0; i < N; i++) periodic.schedule(new Node(periodic, N), i);
let periodicNow = 0;

group("TimerHeap, 10k nodes", () => {
  summary(() => {
    bench("schedule x 10k into an empty heap (shuffled deadlines)", function* () {
      yield {
        [0]() {
          return Array.from({ length: N }, () => new Node());
        },
        bench(nodes: Node[]) {
          const heap = new TimerHeap();
          for (let i = 0; i < N; i++) heap.schedule(nodes[i]!, order[i]!);
          return heap;
        },
      };
    });
    bench("runExpired: all 10k expire (x 10k)", function* () {
      yield {
        [0]() {
          return filledHeap().heap;
        },
        bench(heap: TimerHeap) {
          return heap.runExpired(N);
        },
      };
    });
  });

  summary(() => {
    bench("cancel + schedule one node (later deadline) in a 10k heap", () => {
      const n = steady.nodes[picks[p++ & 4095]!]!;
      steady.heap.cancel(n);
      steady.heap.schedule(n, clock++);
    });
    bench("reschedule a scheduled node (later deadline) in a 10k heap", () => {
      const n = steady.nodes[picks[p++ & 4095]!]!;
      steady.heap.schedule(n, clock++);
    });
    bench("runExpired: 100 of 10k expire and re-arm", () => {
      periodicNow += 100;
      return periodic.runExpired(periodicNow);
    });
    bench("runExpired: nothing expired (the per-turn check)", () => {
      return steady.heap.runExpired(-1);
    });
  });
});

await run();
do_not_optimize(steady.heap.size + periodic.size);
if (steady.heap.size !== N || periodic.size !== N) throw new Error("heap size changed: benchmark is wrong");
