// The memory every worker thread of one server shares (SharedArrayBuffers, handed to each
// Worker once at start): per-worker counters in one Int32 control block, the hub's rings
// (one per ordered pair of workers), a membership bitmap per worker and a stats slot per
// worker. Each word has one writer, named below, so no word needs a lock.

import { ID_LANE } from "../reactor/reactor.ts";
import { createRingBuffer } from "./ring.ts";

/** Control block fields, each an array of `workers` Int32s. */
export const Field = {
  /** Open connections (writer: the worker's reactor; the main thread zeroes a dead worker's). */
  Connections: 0,
  /** Joined hub members (writer: the worker's hub transport). */
  Joined: 1,
  /** 1 while the worker serves (writer: the main thread). Rings to a dead worker are skipped. */
  Alive: 2,
  /** The worker's wake eventfd (writer: the worker, at start). 0: not known yet. */
  WakeFd: 3,
  /** 1 once a producer has woken the worker since it last looked (any producer; consumer clears). */
  WakePending: 4,
  /** Messages in and out (writer: the worker, when it publishes its stats). */
  MessagesIn: 5,
  MessagesOut: 6,
} as const;
const FIELDS = 7;

/** Smallest ring per ordered pair of workers; larger when messages can be larger (ringBytesFor). */
export const RING_BYTES = 256 * 1024;

/** A ring that holds at least two of the largest message (a record must fit in half a ring). */
export function ringBytesFor(largestMessage: number): number {
  let n = RING_BYTES;
  while (n / 2 < largestMessage + 1024) n *= 2;
  return n;
}
/** A worker's stats slot (its snapshot as JSON, see stats-slot.ts). */
export const STATS_SLOT_BYTES = 256 * 1024;

export interface SharedState {
  readonly workers: number;
  readonly control: SharedArrayBuffer;
  /** rings[from * workers + to]; null on the diagonal. */
  readonly rings: (SharedArrayBuffer | null)[];
  /**
   * Per worker, one bit per id of its lane (2^26 bits, 8 MiB of address space): set while
   * that id is a joined member. Pages are committed only where ids have been used.
   */
  readonly members: SharedArrayBuffer[];
  readonly stats: SharedArrayBuffer[];
  /** Byte per fd number: 1 + the worker that owns it, 0 for none (a dead worker's are closed for it). */
  readonly fdOwners: SharedArrayBuffer;
  /** --balance acceptor: per worker, a ring of accepted fds from the main thread (HANDOFF_BYTES records). */
  readonly handoff: SharedArrayBuffer[];
}

/** A handed-off connection: fd, then the index of its listener's spec (two i32s). */
export const HANDOFF_BYTES = 8;

export function createSharedState(workers: number, ringBytes = RING_BYTES, fdLimit = 65536): SharedState {
  const rings: (SharedArrayBuffer | null)[] = [];
  for (let from = 0; from < workers; from++) {
    for (let to = 0; to < workers; to++) rings.push(from === to ? null : createRingBuffer(ringBytes));
  }
  const members: SharedArrayBuffer[] = [];
  const stats: SharedArrayBuffer[] = [];
  for (let w = 0; w < workers; w++) {
    members.push(new SharedArrayBuffer(ID_LANE / 8));
    stats.push(new SharedArrayBuffer(STATS_SLOT_BYTES));
  }
  const handoff: SharedArrayBuffer[] = [];
  for (let w = 0; w < workers; w++) handoff.push(createRingBuffer(64 * 1024));
  return { workers, control: new SharedArrayBuffer(FIELDS * workers * 4), rings, members, stats, fdOwners: new SharedArrayBuffer(fdLimit), handoff };
}

/** Typed access to the control block. */
export class Control {
  readonly words: Int32Array;
  constructor(readonly state: SharedState) {
    this.words = new Int32Array(state.control);
  }
  get workers(): number {
    return this.state.workers;
  }
  at(field: number, worker: number): number {
    return field * this.state.workers + worker;
  }
  load(field: number, worker: number): number {
    return Atomics.load(this.words, field * this.state.workers + worker);
  }
  store(field: number, worker: number, value: number): void {
    Atomics.store(this.words, field * this.state.workers + worker, value);
  }
  /** The field summed over every worker. */
  sum(field: number): number {
    const base = field * this.state.workers;
    let n = 0;
    for (let w = 0; w < this.state.workers; w++) n += Atomics.load(this.words, base + w);
    return n;
  }
}
