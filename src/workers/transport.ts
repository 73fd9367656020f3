// The hub's transport between worker threads of one process (HubTransport, hub.ts): lock-free
// SPSC rings in shared memory plus one eventfd wake per worker, batched per turn.
//
// Outbound: a broadcast, direct message or publish is encoded once and copied into the ring
// to each destination (every other live worker for a broadcast or publish, the owner of the
// target id for a direct message) during the handler's call, so its order among a sender's
// messages is the order of the calls. flush(), once per reactor turn, publishes the rings'
// tails and writes a destination's eventfd only if nobody has since it last looked (the
// WakePending word): under load a worker is woken about once per turn, not per message.
//
// Inbound: poll(), once per turn, drains every ring to this worker inside one hub batch
// scope, so a turn's broadcasts from other workers reach each local recipient in one write.
//
// Membership for BROADCAST_ACK counts and SEND_TO: each worker publishes its joined count
// and a bit per joined id; both are read without waiting for the other worker.
//
// A full ring does not block the sender and loses nothing: records wait in a per-destination
// overflow list (in order, ahead of new ones) until the consumer makes room. A destination
// that stays full past OVERFLOW_LIMIT bytes is not consuming (stuck or dead): its backlog is
// dropped and counted, and the drop is logged.

import type { HubMessage, HubTransport, Hub } from "../hub.ts";
import { reactorIndexOf, ID_LANE, wakeReactor } from "../reactor/reactor.ts";
import { RingConsumer, RingProducer } from "./ring.ts";
import { Control, Field, type SharedState } from "./shared.ts";

const OP_BROADCAST = 1;
const OP_DIRECT = 2;
const OP_PUBLISH = 3;
/** Record flags: the payload is JSON text of a value (json `content`); the publish is text. */
const F_VALUE = 1;
const F_TEXT = 2;
/** op u8, flags u8, name length u16, from u32, to i32. */
const BODY_HEADER = 12;
/** Records drained from one ring per poll: a flooding worker cannot starve this loop. */
const DRAIN_MAX = 4096;
/** Bytes waiting for one destination past which it is taken for stuck and its backlog dropped. */
const OVERFLOW_LIMIT = 64 * 1024 * 1024;

const utf8 = new TextEncoder();
const utf8Decoder = new TextDecoder();

export interface RingTransportCounters {
  /** Records sent to and received from other workers. */
  sent: number;
  received: number;
  /** Records that waited in an overflow list because a ring was full. */
  overflowed: number;
  /** Records dropped for a destination that stopped consuming. */
  dropped: number;
}

export class RingTransport implements HubTransport {
  readonly counters: RingTransportCounters = { sent: 0, received: 0, overflowed: 0, dropped: 0 };
  private readonly control: Control;
  private readonly words: Int32Array;
  private readonly n: number;
  /** producers[to], consumers[from]; null for this worker. */
  private readonly producers: (RingProducer | null)[] = [];
  private readonly consumers: (RingConsumer | null)[] = [];
  private readonly overflow: Uint8Array[][] = [];
  private readonly overflowBytes: number[] = [];
  /** Destinations with records committed since the last flush. */
  private readonly dirty: boolean[] = [];
  private readonly bits: Int32Array;
  private readonly memberBits: Int32Array[];
  private scratch = new Uint8Array(4096);
  private hub: Hub | null = null;
  /** One-entry caches: labels repeat (one sender's messages come in runs). */
  private lastLabel = "";
  private lastLabelLen = 0;
  private readonly labelBytes = new Uint8Array(256);
  private lastFromId = -1;
  private lastFromLabel = "";
  private readonly handleRecord: (offset: number, length: number) => void;
  private draining: RingConsumer | null = null;

  constructor(
    state: SharedState,
    readonly self: number,
    /** Where problems go (a destination that stopped consuming). */
    private readonly log: (line: string) => void = () => {},
  ) {
    this.control = new Control(state);
    this.words = this.control.words;
    this.n = state.workers;
    for (let w = 0; w < this.n; w++) {
      const out = state.rings[self * this.n + w];
      const inn = state.rings[w * this.n + self];
      this.producers.push(out ? new RingProducer(out) : null);
      this.consumers.push(inn ? new RingConsumer(inn) : null);
      this.overflow.push([]);
      this.overflowBytes.push(0);
      this.dirty.push(false);
    }
    this.memberBits = state.members.map((b) => new Int32Array(b));
    this.bits = this.memberBits[self]!;
    // A restarted worker starts with no members: the bits of the one before are stale.
    this.bits.fill(0);
    this.control.store(Field.Joined, self, 0);
    // What the previous holder of this index left unread was for its members, now gone.
    for (const c of this.consumers) c?.skipAll();
    this.handleRecord = (off, len) => this.onRecord(off, len);
  }

  /** Connects the hub: it hands messages out through this transport and gets others' from poll(). */
  attach(hub: Hub): void {
    this.hub = hub;
    hub.setTransport(this);
  }

  // --- HubTransport ---------------------------------------------------------------------

  remoteMembers(): number {
    const words = this.words;
    const n = this.n;
    let total = 0;
    for (let w = 0; w < n; w++) {
      if (w === this.self || Atomics.load(words, Field.Alive * n + w) === 0) continue;
      total += Atomics.load(words, Field.Joined * n + w);
    }
    return total;
  }

  hasRemote(id: number): boolean {
    const w = reactorIndexOf(id);
    if (w === this.self || w >= this.n || Atomics.load(this.words, Field.Alive * this.n + w) === 0) return false;
    const seq = id - w * ID_LANE;
    return (Atomics.load(this.memberBits[w]!, seq >>> 5) & (1 << (seq & 31))) !== 0;
  }

  broadcast(msg: HubMessage): void {
    const from = msg.from!;
    const len = this.encode(OP_BROADCAST, from.id, -1, msg, this.labelOf(from.label));
    const words = this.words;
    const n = this.n;
    // Only to workers with joined members: a broadcast is for them alone.
    for (let w = 0; w < n; w++) {
      if (w !== this.self && Atomics.load(words, Field.Alive * n + w) !== 0 && Atomics.load(words, Field.Joined * n + w) !== 0) this.put(w, len);
    }
  }

  direct(to: number, msg: HubMessage): void {
    const from = msg.from!;
    const len = this.encode(OP_DIRECT, from.id, to, msg, this.labelOf(from.label));
    this.put(reactorIndexOf(to), len);
  }

  publish(topic: string, bytes: Uint8Array, isText: boolean): void {
    const name = utf8.encode(topic);
    const len = BODY_HEADER + name.length + bytes.length;
    const b = this.room(len);
    b[0] = OP_PUBLISH;
    b[1] = isText ? F_TEXT : 0;
    b[2] = name.length & 0xff;
    b[3] = name.length >>> 8;
    writeI32(b, 4, 0);
    writeI32(b, 8, -1);
    b.set(name, BODY_HEADER);
    b.set(bytes, BODY_HEADER + name.length);
    const words = this.words;
    const n = this.n;
    for (let w = 0; w < n; w++) {
      if (w !== this.self && Atomics.load(words, Field.Alive * n + w) !== 0) this.put(w, len);
    }
  }

  membership(id: number, isJoined: boolean, joined: number): void {
    const seq = id - this.self * ID_LANE;
    if (seq >= 0 && seq < ID_LANE) {
      if (isJoined) Atomics.or(this.bits, seq >>> 5, 1 << (seq & 31));
      else Atomics.and(this.bits, seq >>> 5, ~(1 << (seq & 31)));
    }
    this.control.store(Field.Joined, this.self, joined);
  }

  // --- once per turn ----------------------------------------------------------------------

  /** Publishes what this turn queued and wakes each destination that is not already awake. */
  flush(): void {
    const n = this.n;
    const words = this.words;
    for (let w = 0; w < n; w++) {
      if (!this.dirty[w]) continue;
      this.dirty[w] = false;
      if (this.overflow[w]!.length > 0) this.moveOverflow(w);
      if (!this.producers[w]!.publish()) continue;
      const fd = Atomics.load(words, Field.WakeFd * n + w);
      if (fd > 0 && Atomics.exchange(words, Field.WakePending * n + w, 1) === 0) wakeReactor(fd);
    }
  }

  /** Delivers what other workers sent to this one. Returns the records handled. */
  poll(): number {
    const n = this.n;
    // Cleared before reading the tails: a record published after this is either seen below
    // or comes with a new wake (its producer finds 0 here).
    Atomics.store(this.words, Field.WakePending * n + this.self, 0);
    const hub = this.hub;
    if (hub === null) return 0;
    let total = 0;
    hub.beginBatch();
    try {
      for (let w = 0; w < n; w++) {
        const c = this.consumers[w];
        if (c === null || c === undefined) continue;
        this.draining = c;
        total += c.drain(this.handleRecord, DRAIN_MAX);
      }
    } finally {
      this.draining = null;
      hub.endBatch();
    }
    this.counters.received += total;
    return total;
  }

  /** Records still waiting in this worker's overflow lists. */
  get backlog(): number {
    let n = 0;
    for (const o of this.overflow) n += o.length;
    return n;
  }

  // --- records ------------------------------------------------------------------------------

  private onRecord(off: number, len: number): void {
    const b = this.draining!.bytes;
    const op = b[off]!;
    const flags = b[off + 1]!;
    const nameLen = b[off + 2]! | (b[off + 3]! << 8);
    const from = readI32(b, off + 4) >>> 0;
    const to = readI32(b, off + 8);
    const payload = off + BODY_HEADER + nameLen;
    const payloadLen = len - BODY_HEADER - nameLen;
    const hub = this.hub!;
    if (op === OP_PUBLISH) {
      const topic = utf8Decoder.decode(b.subarray(off + BODY_HEADER, payload));
      hub.receivePublish(topic, b.subarray(payload, payload + payloadLen), (flags & F_TEXT) !== 0);
      return;
    }
    let label = this.lastFromLabel;
    if (from !== this.lastFromId) {
      label = this.lastFromLabel = latin1(b, off + BODY_HEADER, nameLen);
      this.lastFromId = from;
    }
    const target = op === OP_DIRECT ? to : -1;
    if ((flags & F_VALUE) !== 0) {
      hub.receiveValue(from, label, target, JSON.parse(utf8Decoder.decode(b.subarray(payload, payload + payloadLen))));
    } else {
      hub.receiveBytes(from, label, target, b, payload, payloadLen);
    }
  }

  /** Encodes one broadcast/direct record into scratch; returns its body length. */
  private encode(op: number, from: number, to: number, msg: HubMessage, labelLen: number): number {
    let payload: Uint8Array;
    let pOff: number;
    let pLen: number;
    let flags = 0;
    if (msg.isValue) {
      flags = F_VALUE;
      payload = utf8.encode(JSON.stringify(msg.jsonContent() ?? null));
      pOff = 0;
      pLen = payload.length;
    } else {
      msg.ensureBytes();
      payload = msg.bytes!;
      pOff = msg.offset;
      pLen = msg.length;
    }
    const len = BODY_HEADER + labelLen + pLen;
    const b = this.room(len);
    b[0] = op;
    b[1] = flags;
    b[2] = labelLen;
    b[3] = 0;
    writeI32(b, 4, from);
    writeI32(b, 8, to);
    const lb = this.labelBytes;
    for (let i = 0; i < labelLen; i++) b[BODY_HEADER + i] = lb[i]!;
    const at = BODY_HEADER + labelLen;
    if (pLen <= 64) for (let i = 0; i < pLen; i++) b[at + i] = payload[pOff + i]!;
    else b.set(payload.subarray(pOff, pOff + pLen), at);
    return len;
  }

  /** The label's bytes in labelBytes (ASCII "ip:port"); returns their length. */
  private labelOf(label: string): number {
    if (label === this.lastLabel) return this.lastLabelLen;
    const n = Math.min(label.length, this.labelBytes.length);
    for (let i = 0; i < n; i++) this.labelBytes[i] = label.charCodeAt(i) & 0xff;
    this.lastLabel = label;
    this.lastLabelLen = n;
    return n;
  }

  private room(len: number): Uint8Array {
    if (this.scratch.length < len) {
      let size = this.scratch.length;
      while (size < len) size *= 2;
      this.scratch = new Uint8Array(size);
    }
    return this.scratch;
  }

  /** Copies scratch[0, len) into the ring to worker w (or its overflow list). */
  private put(w: number, len: number): void {
    const p = this.producers[w];
    if (p === null || p === undefined) return;
    if (len > p.capacity / 2 - 8) {
      // Larger than the rings were sized for (SharedState): refused, never stuck in overflow.
      this.counters.dropped++;
      this.log(`a hub message of ${len} bytes is larger than the ring between workers allows (${p.capacity / 2 - 8}): not delivered to worker ${w}'s clients`);
      return;
    }
    this.counters.sent++;
    this.dirty[w] = true;
    if (this.overflow[w]!.length === 0) {
      const at = p.reserve(len);
      if (at >= 0) {
        const dst = p.bytes;
        const src = this.scratch;
        if (len <= 64) for (let i = 0; i < len; i++) dst[at + i] = src[i]!;
        else dst.set(src.subarray(0, len), at);
        p.commit(len);
        return;
      }
    }
    this.counters.overflowed++;
    if (this.overflowBytes[w]! + len > OVERFLOW_LIMIT) {
      this.counters.dropped += this.overflow[w]!.length + 1;
      this.log(`worker ${w} is not reading its hub ring: dropped ${this.overflow[w]!.length + 1} messages for its clients`);
      this.overflow[w] = [];
      this.overflowBytes[w] = 0;
      return;
    }
    this.overflow[w]!.push(this.scratch.slice(0, len));
    this.overflowBytes[w]! += len;
  }

  /** Moves waiting records into the ring while they fit, in order. */
  private moveOverflow(w: number): void {
    const p = this.producers[w]!;
    const list = this.overflow[w]!;
    let i = 0;
    for (; i < list.length; i++) {
      const rec = list[i]!;
      const at = p.reserve(rec.length);
      if (at < 0) break;
      p.bytes.set(rec, at);
      p.commit(rec.length);
      this.overflowBytes[w]! -= rec.length;
    }
    list.splice(0, i);
    // Still waiting: try again next turn.
    if (list.length > 0) this.dirty[w] = true;
  }
}

function writeI32(b: Uint8Array, at: number, v: number): void {
  b[at] = v & 0xff;
  b[at + 1] = (v >>> 8) & 0xff;
  b[at + 2] = (v >>> 16) & 0xff;
  b[at + 3] = (v >>> 24) & 0xff;
}

function readI32(b: Uint8Array, at: number): number {
  return b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24);
}

function latin1(b: Uint8Array, at: number, len: number): string {
  let s = "";
  for (let i = 0; i < len; i++) s += String.fromCharCode(b[at + i]!);
  return s;
}
