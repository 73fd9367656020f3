// A binary min-heap of timer nodes. The node stores its own heap index, so cancel and
// reschedule are O(log n) with no lookup and no allocation. Connections are nodes
// themselves: idle timeouts are refreshed lazily (the connection records its last activity;
// when its timer fires it reschedules itself if it was active since), so a busy connection
// touches the heap once per timeout period, not once per message.

export interface TimerNode {
  /** Absolute deadline in ms (performance.now() clock). */
  timerDeadline: number;
  /** Position in the heap, -1 when not scheduled. Owned by TimerHeap. */
  timerIndex: number;
  onTimer(now: number): void;
}

export class TimerHeap {
  private readonly heap: TimerNode[] = [];
  /** The `now` of the runExpired() in progress (-Infinity outside it). */
  private runningNow = -Infinity;

  get size(): number {
    return this.heap.length;
  }

  /** Deadline of the earliest timer, or Infinity. */
  nextDeadline(): number {
    return this.heap.length > 0 ? this.heap[0]!.timerDeadline : Infinity;
  }

  schedule(node: TimerNode, deadline: number): void {
    // A timer (re)scheduled at or before the `now` of a runExpired() in progress would be
    // run again by that same pass, forever: it waits for the next pass instead.
    if (deadline <= this.runningNow) deadline = this.runningNow + 0.001;
    if (node.timerIndex >= 0) {
      const earlier = deadline < node.timerDeadline;
      node.timerDeadline = deadline;
      if (earlier) this.up(node.timerIndex);
      else this.down(node.timerIndex);
      return;
    }
    node.timerDeadline = deadline;
    node.timerIndex = this.heap.length;
    this.heap.push(node);
    this.up(node.timerIndex);
  }

  cancel(node: TimerNode): void {
    const i = node.timerIndex;
    if (i < 0) return;
    const last = this.heap.pop()!;
    node.timerIndex = -1;
    if (i < this.heap.length) {
      this.heap[i] = last;
      last.timerIndex = i;
      this.down(i);
      this.up(last.timerIndex);
    }
  }

  /** Runs every timer whose deadline is <= now. Returns how many ran. */
  runExpired(now: number): number {
    let ran = 0;
    this.runningNow = now;
    try {
      while (this.heap.length > 0 && this.heap[0]!.timerDeadline <= now) {
        const node = this.heap[0]!;
        this.cancel(node);
        ran++;
        node.onTimer(now); // may reschedule itself (for a later pass, see schedule)
      }
    } finally {
      this.runningNow = -Infinity;
    }
    return ran;
  }

  private up(i: number): void {
    const h = this.heap;
    const node = h[i]!;
    while (i > 0) {
      const p = (i - 1) >> 1;
      const parent = h[p]!;
      if (parent.timerDeadline <= node.timerDeadline) break;
      h[i] = parent;
      parent.timerIndex = i;
      i = p;
    }
    h[i] = node;
    node.timerIndex = i;
  }

  private down(i: number): void {
    const h = this.heap;
    const n = h.length;
    const node = h[i]!;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const c = r < n && h[r]!.timerDeadline < h[l]!.timerDeadline ? r : l;
      if (h[c]!.timerDeadline >= node.timerDeadline) break;
      h[i] = h[c]!;
      h[i]!.timerIndex = i;
      i = c;
    }
    h[i] = node;
    node.timerIndex = i;
  }
}

/** A one-shot or repeating callback timer on a reactor's heap. */
export class Timer implements TimerNode {
  timerDeadline = 0;
  timerIndex = -1;
  constructor(private readonly callback: (now: number) => void) {}
  onTimer(now: number): void {
    this.callback(now);
  }
}
