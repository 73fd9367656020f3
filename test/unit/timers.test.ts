// src/reactor/timers.ts: the binary min-heap of timer nodes.

import { describe, test, expect } from "bun:test";
import fc from "fast-check";
import { TimerHeap, Timer, type TimerNode } from "../../src/reactor/timers.ts";

class Node implements TimerNode {
  timerDeadline = 0;
  timerIndex = -1;
  constructor(readonly id: number, readonly fired: number[] = [], readonly onFire?: (now: number, self: Node) => void) {}
  onTimer(now: number): void {
    this.fired.push(this.id);
    this.onFire?.(now, this);
  }
}

/** Heap invariant + index bookkeeping, read through the private array. */
function checkHeap(h: TimerHeap): void {
  const arr = (h as unknown as { heap: TimerNode[] }).heap;
  expect(arr.length).toBe(h.size);
  for (let i = 0; i < arr.length; i++) {
    expect(arr[i]!.timerIndex).toBe(i);
    if (i > 0) expect(arr[(i - 1) >> 1]!.timerDeadline).toBeLessThanOrEqual(arr[i]!.timerDeadline);
  }
  expect(h.nextDeadline()).toBe(arr.length ? Math.min(...arr.map((n) => n.timerDeadline)) : Infinity);
}

/** Fast invariant check for hot loops: null when valid, else what is wrong. */
function heapViolation(h: TimerHeap): string | null {
  const arr = (h as unknown as { heap: TimerNode[] }).heap;
  for (let i = 0; i < arr.length; i++) {
    if (arr[i]!.timerIndex !== i) return `node at ${i} says it is at ${arr[i]!.timerIndex}`;
    if (i > 0 && arr[(i - 1) >> 1]!.timerDeadline > arr[i]!.timerDeadline) return `heap order broken at ${i}`;
  }
  return null;
}

describe("TimerHeap", () => {
  test("empty heap", () => {
    const h = new TimerHeap();
    expect(h.size).toBe(0);
    expect(h.nextDeadline()).toBe(Infinity);
    expect(h.runExpired(1e12)).toBe(0);
  });

  test("runs timers in deadline order, only those due", () => {
    const fired: number[] = [];
    const h = new TimerHeap();
    const deadlines = [50, 10, 40, 30, 20, 60, 5, 45];
    deadlines.forEach((d) => h.schedule(new Node(d, fired), d));
    checkHeap(h);
    expect(h.nextDeadline()).toBe(5);
    // Deadlines are inclusive: 30 runs at now = 30, 40 does not.
    expect(h.runExpired(30)).toBe(4);
    expect(fired).toEqual([5, 10, 20, 30]);
    expect(h.size).toBe(4);
    expect(h.nextDeadline()).toBe(40);
    checkHeap(h);
    expect(h.runExpired(1000)).toBe(4);
    expect(fired).toEqual([5, 10, 20, 30, 40, 45, 50, 60]);
  });

  test("deadline == now fires; deadline just above does not", () => {
    const fired: number[] = [];
    const h = new TimerHeap();
    h.schedule(new Node(1, fired), 100);
    h.schedule(new Node(2, fired), 100.0001);
    expect(h.runExpired(100)).toBe(1);
    expect(fired).toEqual([1]);
    expect(h.nextDeadline()).toBe(100.0001);
  });

  test("cancel removes a node from any position and resets its index", () => {
    const fired: number[] = [];
    const h = new TimerHeap();
    const nodes = Array.from({ length: 20 }, (_, i) => new Node(i, fired));
    nodes.forEach((n, i) => h.schedule(n, (i * 7919) % 101));
    for (const i of [0, 19, 7, 3, 11]) {
      h.cancel(nodes[i]!);
      expect(nodes[i]!.timerIndex).toBe(-1);
      checkHeap(h);
    }
    expect(h.size).toBe(15);
    h.cancel(nodes[0]!); // cancelling twice is a no-op
    h.cancel(new Node(99)); // never scheduled: no-op
    expect(h.size).toBe(15);
    h.runExpired(Infinity);
    expect(fired.sort((a, b) => a - b)).toEqual(nodes.map((n) => n.id).filter((i) => ![0, 19, 7, 3, 11].includes(i)));
  });

  test("cancel of the last element and of the root", () => {
    const h = new TimerHeap();
    const a = new Node(1), b = new Node(2), c = new Node(3);
    h.schedule(a, 1);
    h.schedule(b, 2);
    h.schedule(c, 3);
    h.cancel(c);
    checkHeap(h);
    h.cancel(a);
    checkHeap(h);
    expect(h.nextDeadline()).toBe(2);
    h.cancel(b);
    expect(h.size).toBe(0);
    expect(h.nextDeadline()).toBe(Infinity);
  });

  test("reschedule moves a node earlier or later without duplicating it", () => {
    const fired: number[] = [];
    const h = new TimerHeap();
    const nodes = [10, 20, 30, 40, 50].map((d) => new Node(d, fired));
    nodes.forEach((n) => h.schedule(n, n.id));
    h.schedule(nodes[4]!, 1); // 50 -> 1: becomes the root
    checkHeap(h);
    expect(h.nextDeadline()).toBe(1);
    h.schedule(nodes[4]!, 100); // and back down to the bottom
    checkHeap(h);
    expect(h.nextDeadline()).toBe(10);
    h.schedule(nodes[0]!, 35); // root moved past two others
    checkHeap(h);
    expect(h.size).toBe(5);
    h.runExpired(1000);
    expect(fired).toEqual([20, 30, 10, 40, 50]);
  });

  test("a node may reschedule itself from onTimer (idle-timeout refresh)", () => {
    const fired: number[] = [];
    const h = new TimerHeap();
    let refreshes = 0;
    const n = new Node(1, fired, (now, self) => {
      if (++refreshes < 3) h.schedule(self, now + 10);
    });
    h.schedule(n, 10);
    expect(h.runExpired(10)).toBe(1);
    expect(n.timerIndex).toBe(0);
    expect(h.nextDeadline()).toBe(20);
    // Moved earlier while scheduled, then it refreshes itself to now + 10 = 110.
    h.schedule(n, 5);
    expect(h.runExpired(100)).toBe(1);
    expect(refreshes).toBe(2);
    expect(h.nextDeadline()).toBe(110);
    expect(h.runExpired(109)).toBe(0);
    expect(h.runExpired(110)).toBe(1);
    expect(refreshes).toBe(3);
    expect(h.size).toBe(0);
  });

  test("onTimer may cancel or schedule other nodes", () => {
    const fired: number[] = [];
    const h = new TimerHeap();
    const victim = new Node(2, fired);
    const late = new Node(3, fired);
    const killer = new Node(1, fired, (now) => {
      h.cancel(victim);
      h.schedule(late, now); // due now: waits for the next runExpired, never this one
    });
    h.schedule(killer, 1);
    h.schedule(victim, 2);
    expect(h.runExpired(10)).toBe(1);
    expect(fired).toEqual([1]);
    expect(h.runExpired(10.01)).toBe(1);
    expect(fired).toEqual([1, 3]);
  });

  test("a node that reschedules itself at or before now runs once per pass, not forever", () => {
    const h = new TimerHeap();
    let runs = 0;
    const t = new Timer((now) => {
      runs++;
      h.schedule(t, now - 5); // a deadline already in the past
    });
    h.schedule(t, 1);
    expect(h.runExpired(10)).toBe(1);
    expect(runs).toBe(1);
    expect(t.timerIndex).toBe(0); // still scheduled, for the next pass
    expect(h.runExpired(11)).toBe(1);
    expect(runs).toBe(2);
  });

  test("Timer wraps a callback", () => {
    const h = new TimerHeap();
    const seen: number[] = [];
    const t = new Timer((now) => seen.push(now));
    h.schedule(t, 5);
    expect(t.timerIndex).toBe(0);
    h.runExpired(7);
    expect(seen).toEqual([7]);
    expect(t.timerIndex).toBe(-1);
  });

  test("equal deadlines all fire", () => {
    const fired: number[] = [];
    const h = new TimerHeap();
    for (let i = 0; i < 100; i++) h.schedule(new Node(i, fired), 42);
    checkHeap(h);
    expect(h.runExpired(42)).toBe(100);
    expect(fired.sort((a, b) => a - b)).toEqual(Array.from({ length: 100 }, (_, i) => i));
  });

  test("property: random schedule/reschedule/cancel/run matches a sorted model", () => {
    type Op =
      | { op: "schedule"; id: number; deadline: number }
      | { op: "cancel"; id: number }
      | { op: "run"; advance: number };
    const opArb: fc.Arbitrary<Op> = fc.oneof(
      { weight: 5, arbitrary: fc.record({ op: fc.constant("schedule" as const), id: fc.integer({ min: 0, max: 30 }), deadline: fc.integer({ min: 0, max: 200 }) }) },
      { weight: 2, arbitrary: fc.record({ op: fc.constant("cancel" as const), id: fc.integer({ min: 0, max: 30 }) }) },
      { weight: 2, arbitrary: fc.record({ op: fc.constant("run" as const), advance: fc.integer({ min: 0, max: 40 }) }) },
    );
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 1, maxLength: 300, size: "max" }), (ops) => {
        const h = new TimerHeap();
        const fired: number[] = [];
        const nodes = Array.from({ length: 31 }, (_, i) => new Node(i, fired));
        const model = new Map<number, number>(); // id -> deadline
        let now = 0;
        for (const o of ops) {
          if (o.op === "schedule") {
            // Deadlines relative to now, like the reactor; may be in the past.
            const d = now + o.deadline - 20;
            h.schedule(nodes[o.id]!, d);
            model.set(o.id, d);
          } else if (o.op === "cancel") {
            h.cancel(nodes[o.id]!);
            model.delete(o.id);
          } else {
            now += o.advance;
            fired.length = 0;
            const due = [...model].filter(([, d]) => d <= now).sort((a, b) => a[1] - b[1]);
            const ran = h.runExpired(now);
            expect(ran).toBe(due.length);
            // Same set, and deadlines non-decreasing in firing order (ties in any order).
            expect([...fired].sort((a, b) => a - b)).toEqual(due.map(([id]) => id).sort((a, b) => a - b));
            const firedDeadlines = fired.map((id) => model.get(id)!);
            expect(firedDeadlines).toEqual(due.map(([, d]) => d));
            for (const [id] of due) model.delete(id);
          }
          expect(h.size).toBe(model.size);
          for (let i = 0; i < nodes.length; i++) {
            expect(nodes[i]!.timerIndex >= 0).toBe(model.has(i));
            if (model.has(i)) expect(nodes[i]!.timerDeadline).toBe(model.get(i)!);
          }
          checkHeap(h);
        }
      }),
      { numRuns: 300 },
    );
  });

  test("stress: 100,000 random operations keep the heap valid", () => {
    const h = new TimerHeap();
    const nodes = Array.from({ length: 1000 }, (_, i) => new Node(i));
    let seed = 12345;
    const rnd = () => {
      seed ^= seed << 13;
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      return (seed >>> 0) / 0x1_0000_0000;
    };
    let now = 0;
    let lastFired = -Infinity;
    for (let i = 0; i < 100_000; i++) {
      const n = nodes[Math.floor(rnd() * nodes.length)]!;
      const r = rnd();
      if (r < 0.6) h.schedule(n, now + rnd() * 1000);
      else if (r < 0.8) h.cancel(n);
      else {
        now += rnd() * 50;
        lastFired = -Infinity;
        const arr = (h as unknown as { heap: TimerNode[] }).heap;
        while (arr.length && arr[0]!.timerDeadline <= now) {
          const d = arr[0]!.timerDeadline;
          if (d < lastFired) throw new Error(`op ${i}: fired ${d} after ${lastFired}`);
          lastFired = d;
          h.runExpired(d);
        }
      }
      const bad = heapViolation(h);
      if (bad !== null) throw new Error(`op ${i}: ${bad}`);
    }
    checkHeap(h);
  });
});
