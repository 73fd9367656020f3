// The client registry shared by every listener of a process: ids, broadcast and direct
// routing across protocols. Each protocol registers one HubEncoder (a "channel"); a
// broadcast is encoded at most once per channel, lazily, for its first recipient there.
//
// Fan-out batching (docs/ARCHITECTURE.md): one write per message per recipient is the JS
// cost of fan-out, so inside a batch scope (beginBatch/endBatch, one per `data` call) a
// sender's consecutive broadcasts are appended to a per-channel arena, and each recipient
// gets ONE write of its channel's arena when the batch is flushed. Rules:
// - The recipient count is exact and returned at once: every member is checked per
//   message, since a connection's state changes without the hub hearing of it.
// - A pending batch's recipient set is fixed: it is flushed before anything that could
//   change it or reorder a recipient's stream (another sender's broadcast, any direct
//   message, a join or remove, the end of the scope). Nothing else writes to other
//   connections during a `data` call, so delaying the writes to its end reorders nothing.
//   A recipient closed by flush time is skipped (counted, like a write that drops it).
// - Arenas are bounded (batchLimit, batchDirectMax, ARENA_KEEP).
// Outside a scope a broadcast writes at once. Bytes for several recipients of
// SHARE_MIN_BYTES or more are queued by reference (one SharedBytes), not copied per queue.
//
// The hub never waits on a recipient: a slow one is the reactor's business (reads paused at
// the high-water mark, closed past maxBuffered), so it never stalls the others.
//
// A member's id is its stream's id (Reactor, "ids"). The hub knows no wire format: encoders
// are the protocols', and a direct message's outcome is a SendResult.
//
// Other nodes (the hubs of other Worker threads; later, other server instances) are reached
// through an optional HubTransport (the seam below). Without one, nothing here changes: a
// broadcast tests one null field. With one, every broadcast, direct message to an id the
// transport knows and topic publish is also handed to it, and what arrives from other nodes
// comes in through receiveBytes/receiveValue/receivePublish and is delivered to the local
// members like a local message (batched the same way when a batch scope is open).

import { isActive, type Stream as Connection } from "./stream/stream.ts";
import { SharedBytes } from "./buffers/shared-bytes.ts";

/**
 * Bytes for many recipients (a large broadcast, or a flushed batch) at least this long
 * are queued by reference (Connection.writeShared): one pooled copy per channel instead of
 * one per recipient, and the kernel copies every recipient's bytes from the same cache-hot
 * buffer. Below it, or for a single recipient, copying into the queue is cheaper.
 */
export const SHARE_MIN_BYTES = 1024;

/** How one protocol renders messages that other clients (of any protocol) send. */
export interface HubEncoder {
  /**
   * Encode `msg` as a broadcast into `out`; return the byte length, or -1 when this
   * protocol cannot carry it (too large for its frame), in which case its members are
   * skipped.
   */
  encodeBroadcast(msg: HubMessage): number;
  /** Same for a direct message. */
  encodeDirect(msg: HubMessage): number;
  /**
   * A message published to a topic (its bytes as given, text or binary) in this protocol's
   * form; -1 when it cannot carry it. Protocols without topics leave it out.
   */
  encodePublish?(topic: string, bytes: Uint8Array, isText: boolean): number;
  /** The buffer the last encode wrote, bytes [0, length). Read right after encoding. */
  readonly out: Uint8Array;
}

/**
 * The hub's seam to other nodes. Designed for transports that are asynchronous and can fail
 * (a Redis pub/sub link), not only for the in-process rings of src/workers/: every call
 * returns at once and never throws for a delivery problem. A transport copies what it needs
 * during the call (the message's bytes are valid only then), queues it, and sends when its
 * owner flushes it; errors are the transport's to report (log, count), and what it could not
 * deliver is lost to the remote recipients only, never to local ones. Counts are "as last
 * known": exact while membership is stable.
 */
export interface HubTransport {
  /** Joined members on the other nodes, as last known: the remote part of a BROADCAST_ACK. */
  remoteMembers(): number;
  /** Whether `id` is a joined member of another node, as last known. */
  hasRemote(id: number): boolean;
  /** A local member's broadcast, for every other node. */
  broadcast(msg: HubMessage): void;
  /** A direct message to `to`, a member of another node (hasRemote was true). */
  direct(to: number, msg: HubMessage): void;
  /** A topic publish, for the other nodes' subscribers. */
  publish(topic: string, bytes: Uint8Array, isText: boolean): void;
  /** A local member joined (or left): `joined` is the local joined count after the change. */
  membership(id: number, isJoined: boolean, joined: number): void;
}

export class HubMember {
  /** Receives broadcasts and direct messages. False until authenticated when auth is on. */
  joined = false;
  /** Index in the hub's member list; -1 once removed. */
  slot = -1;
  removed = false;
  /** The topics this member is subscribed to (null: none). */
  topics: Set<string> | null = null;
  constructor(
    /** Fixed for a real member; the hub's stand-in for remote senders takes each one's id. */
    public id: number,
    readonly conn: Connection<any>,
    /** Channel (protocol) index from Hub.channel. */
    readonly channel: number,
    /** "ip:port" of the peer: the json protocol's client id (the stand-in's changes too). */
    public label: string,
  ) {}
}

const utf8 = new TextEncoder();
const utf8Lossy = new TextDecoder("utf-8");

/**
 * What a client sent, in the sender protocol's form: raw bytes (framed body, line text)
 * or a JSON value (json `content`). Each encoder asks for the form it needs; conversions
 * are done once per message and cached:
 * - bytes -> JSON content: the bytes decoded as UTF-8 (invalid sequences become U+FFFD).
 * - JSON content -> bytes: a string's UTF-8; any other value's JSON text in UTF-8.
 */
export class HubMessage {
  from: HubMember | null = null;
  /** Bytes form, valid only during the broadcast/send call. Call ensureBytes() first. */
  bytes: Uint8Array | null = null;
  offset = 0;
  length = 0;
  private value: unknown = undefined;
  private hasValue = false;
  private text: string | null = null;

  setBytes(from: HubMember, buf: Uint8Array, offset: number, length: number): this {
    this.clear();
    this.from = from;
    this.bytes = buf;
    this.offset = offset;
    this.length = length;
    return this;
  }

  setValue(from: HubMember, value: unknown): this {
    this.clear();
    this.from = from;
    this.value = value;
    this.hasValue = true;
    return this;
  }

  /** Make `bytes/offset/length` valid (converting from the JSON value if needed). */
  ensureBytes(): void {
    if (this.bytes !== null) return;
    const b = utf8.encode(this.contentText());
    this.bytes = b;
    this.offset = 0;
    this.length = b.length;
  }

  /** True when the content was given as a JSON value (json `content`), not as bytes. */
  get isValue(): boolean {
    return this.hasValue;
  }

  /** The content as a JSON value (for json recipients). */
  jsonContent(): unknown {
    return this.hasValue ? this.value : this.contentText();
  }

  /** The content as text. */
  contentText(): string {
    if (this.text !== null) return this.text;
    let t: string;
    if (this.hasValue) {
      const v = this.value;
      t = typeof v === "string" ? v : v === undefined ? "" : JSON.stringify(v);
    } else {
      t = utf8Lossy.decode(this.bytes!.subarray(this.offset, this.offset + this.length));
    }
    this.text = t;
    return t;
  }

  /** Drop references so a chunk view or a large value is not retained. */
  clear(): void {
    this.from = null;
    this.bytes = null;
    this.offset = 0;
    this.length = 0;
    this.value = undefined;
    this.hasValue = false;
    this.text = null;
  }
}

interface Channel {
  name: string;
  encoder: HubEncoder;
}

/**
 * Whether member m gets a message from `from`: joined, not the sender (null for a direct
 * message, which may go to oneself), and not closing. The one definition behind counting
 * broadcast recipients (the ACK's number), writing to them, and direct messages.
 */
function receives(m: HubMember, from: HubMember | null): boolean {
  return m !== from && m.joined && isActive(m.conn.state);
}

/** The outcome of a direct message. */
export const SendResult = {
  Ok: 0,
  /** The target is not a joined, active member. */
  NoSuchClient: 1,
  /** The target's protocol cannot carry a message this large. */
  TooLarge: 2,
} as const;
export type SendResult = (typeof SendResult)[keyof typeof SendResult];

export interface HubOptions {
  /** Largest batch per channel, bytes: an append that would pass it flushes first. */
  batchLimit?: number;
  /** Larger encoded broadcasts are not batched: flush, then write directly. */
  batchDirectMax?: number;
}

export const DEFAULT_BATCH_LIMIT = 64 * 1024;
export const DEFAULT_BATCH_DIRECT_MAX = 16 * 1024;
/** First arena size; arenas grow by doubling. */
const ARENA_INITIAL = 4096;
/** An arena larger than this is dropped after its flush: a burst pins no memory. */
const ARENA_KEEP = 16 * 1024;
/** Below this, a byte loop copies faster than subarray()+set() (which allocates a view). */
const SMALL_COPY = 128;
const EMPTY = new Uint8Array(0);

export class Hub {
  private readonly channels: Channel[] = [];
  private readonly members: HubMember[] = [];
  private readonly byId = new Map<number, HubMember>();
  private readonly byLabel = new Map<string, HubMember>();
  private joinedCount = 0;
  /** Per-channel encoded length of the broadcast in progress: -2 = not encoded yet. */
  private encodedLength = new Int32Array(4);
  /** True while the hub iterates members and writes (a broadcast or a batch flush). */
  private broadcasting = false;
  private readonly pendingRemovals: HubMember[] = [];
  private readonly scratch = new HubMessage();
  /** Per channel, the SharedBytes of the loop of writes in progress (see deliver). */
  private readonly shared: (SharedBytes | undefined)[] = [];

  /** Topic -> its subscribers (the hub's pub/sub: WebSocket topics today). */
  private readonly topics = new Map<string, Set<HubMember>>();

  /** Open beginBatch() scopes; broadcasts batch while > 0. */
  private batchDepth = 0;
  /** Sender of the pending batch; null when nothing is pending. */
  private batchFrom: HubMember | null = null;
  /** Per channel: the pending batch's encoded messages, bytes [0, arenaLen[ch]). */
  private readonly arenas: Uint8Array[] = [];
  private arenaLen = new Int32Array(4);
  /** Per channel: recipients of the broadcast being appended. */
  private channelRecipients = new Int32Array(4);
  private readonly batchLimit: number;
  private readonly batchDirectMax: number;
  /** Other nodes (see HubTransport); null: this hub is the only one. */
  private transport: HubTransport | null = null;
  /** The sender of messages from other nodes: not a member, so every local member receives. */
  private readonly remoteFrom = new HubMember(0, null as unknown as Connection<any>, -1, "");

  constructor(options: HubOptions = {}) {
    this.batchLimit = options.batchLimit ?? DEFAULT_BATCH_LIMIT;
    this.batchDirectMax = Math.min(options.batchDirectMax ?? DEFAULT_BATCH_DIRECT_MAX, this.batchLimit);
  }

  /** Connects this hub to other nodes. Set before members join (their ids are announced). */
  setTransport(t: HubTransport): void {
    if (this.joinedCount > 0) throw new Error("Hub: set the transport before members join");
    this.transport = t;
  }

  /**
   * Register a protocol's encoder and get its channel index. Idempotent per name: the
   * first encoder registered under a name serves every listener of that protocol, so two
   * framed listeners share one encoding per broadcast.
   */
  channel(name: string, encoder: HubEncoder): number {
    const existing = this.channels.findIndex((c) => c.name === name);
    if (existing >= 0) return existing;
    this.channels.push({ name, encoder });
    this.arenas.push(EMPTY);
    const n = this.channels.length;
    if (this.encodedLength.length < n) {
      this.encodedLength = new Int32Array(n * 2);
      this.channelRecipients = new Int32Array(n * 2);
      const lens = new Int32Array(n * 2);
      lens.set(this.arenaLen); // a batch may be pending
      this.arenaLen = lens;
    }
    return n - 1;
  }

  /** Register a connection; its member id is the stream's id. */
  add(conn: Connection<any>, channel: number, label: string, joined = true): HubMember {
    if (channel < 0 || channel >= this.channels.length) throw new RangeError(`no hub channel ${channel}`);
    const m = new HubMember(conn.id, conn, channel, label);
    m.slot = this.members.length;
    this.members.push(m);
    this.byId.set(m.id, m);
    this.byLabel.set(label, m);
    if (joined) this.join(m);
    return m;
  }

  /** Let a registered member receive messages (after authentication). */
  join(m: HubMember): void {
    if (m.joined || m.removed) return;
    // The pending batch's recipient set is fixed (see top): deliver it first. (add() joins
    // through here; an unjoined member changes no recipient set.) During a flush, the
    // flush's own loop is bounded instead.
    if (!this.broadcasting) this.flushBatch();
    m.joined = true;
    this.joinedCount++;
    if (this.transport !== null) this.transport.membership(m.id, true, this.joinedCount);
  }

  /** Unregister (the protocol's `close`). Safe during a broadcast. */
  remove(m: HubMember): void {
    if (m.removed) return;
    // During a flush (a recipient closed as a slow consumer by write()) the flush itself
    // skips it from here on; otherwise deliver the pending batch to the set it was
    // counted for first.
    if (!this.broadcasting) this.flushBatch();
    m.removed = true;
    if (m.topics !== null) {
      for (const t of m.topics) this.unsubscribe(m, t);
      m.topics = null;
    }
    if (m.joined) {
      m.joined = false;
      this.joinedCount--;
      if (this.transport !== null) this.transport.membership(m.id, false, this.joinedCount);
    }
    this.byId.delete(m.id);
    if (this.byLabel.get(m.label) === m) this.byLabel.delete(m.label);
    if (this.broadcasting) {
      // Do not reshuffle the list under the loop; compact when it ends.
      this.pendingRemovals.push(m);
      return;
    }
    this.unlist(m);
  }

  /** Joined members: clients that can receive messages. */
  get size(): number {
    return this.joinedCount;
  }

  /** All registered members, joined or not. */
  get registered(): number {
    return this.members.length - this.pendingRemovals.length;
  }

  /** A joined member by id. */
  get(id: number): HubMember | undefined {
    const m = this.byId.get(id);
    return m !== undefined && m.joined ? m : undefined;
  }

  /**
   * A joined member named by a json `to` field: a numeric id, a decimal string, or an
   * "ip:port" label.
   */
  resolve(target: unknown): HubMember | undefined {
    if (typeof target === "number") return Number.isInteger(target) ? this.get(target) : undefined;
    if (typeof target !== "string") return undefined;
    if (/^[0-9]+$/.test(target)) return this.get(Number(target));
    const m = this.byLabel.get(target);
    return m !== undefined && m.joined ? m : undefined;
  }

  /** Broadcast raw bytes to every joined member except the sender; returns recipients. */
  broadcastBytes(from: HubMember, buf: Uint8Array, offset: number, length: number): number {
    this.refuseNesting();
    const msg = this.scratch.setBytes(from, buf, offset, length);
    try {
      return this.broadcast(msg);
    } finally {
      msg.clear();
    }
  }

  /** Broadcast a JSON value (json `content`); returns recipients. */
  broadcastValue(from: HubMember, value: unknown): number {
    this.refuseNesting();
    const msg = this.scratch.setValue(from, value);
    try {
      return this.broadcast(msg);
    } finally {
      msg.clear();
    }
  }

  /**
   * Opens a batch scope: until the matching endBatch(), broadcasts are batched (see top).
   * Scopes nest; the outermost endBatch() flushes.
   */
  beginBatch(): void {
    this.batchDepth++;
  }

  /** Closes a batch scope and, for the outermost one, flushes. Call it in a `finally`. */
  endBatch(): void {
    if (this.batchDepth === 0) throw new Error("Hub: endBatch() without beginBatch()");
    if (--this.batchDepth === 0) this.flushBatch();
  }

  /** Direct message. */
  sendBytes(from: HubMember, to: HubMember, buf: Uint8Array, offset: number, length: number): SendResult {
    this.refuseNesting();
    // The target may be a recipient of the pending batch: it must see those first.
    this.flushBatch();
    const msg = this.scratch.setBytes(from, buf, offset, length);
    try {
      return this.send(to, msg);
    } finally {
      msg.clear();
    }
  }

  sendValue(from: HubMember, to: HubMember, value: unknown): SendResult {
    this.refuseNesting();
    this.flushBatch();
    const msg = this.scratch.setValue(from, value);
    try {
      return this.send(to, msg);
    } finally {
      msg.clear();
    }
  }

  private send(to: HubMember, msg: HubMessage): SendResult {
    if (!receives(to, null)) return SendResult.NoSuchClient; // direct: oneself included
    const enc = this.channels[to.channel]!.encoder;
    const len = enc.encodeDirect(msg);
    if (len < 0) return SendResult.TooLarge;
    to.conn.write(enc.out, 0, len);
    return SendResult.Ok;
  }

  // --- topics ---------------------------------------------------------------------------

  /** Subscribes m to topic; false when it already was. */
  subscribe(m: HubMember, topic: string): boolean {
    if (m.removed) return false;
    const set = m.topics ??= new Set();
    if (set.has(topic)) return false;
    set.add(topic);
    let subs = this.topics.get(topic);
    if (subs === undefined) this.topics.set(topic, (subs = new Set()));
    subs.add(m);
    return true;
  }

  unsubscribe(m: HubMember, topic: string): boolean {
    if (m.topics === null || !m.topics.delete(topic)) return false;
    const subs = this.topics.get(topic);
    if (subs !== undefined) {
      subs.delete(m);
      if (subs.size === 0) this.topics.delete(topic);
    }
    return true;
  }

  isSubscribed(m: HubMember, topic: string): boolean {
    return m.topics !== null && m.topics.has(topic);
  }

  subscriberCount(topic: string): number {
    return this.topics.get(topic)?.size ?? 0;
  }

  /**
   * bytes[0, length) to every subscriber of topic (but `exclude`), encoded once per channel;
   * large payloads are shared, not copied. Returns the recipients. A pending broadcast batch
   * is written first, so each recipient sees messages in the order they were sent.
   */
  publish(topic: string, bytes: Uint8Array, isText: boolean, exclude: HubMember | null = null): number {
    const n = this.publishLocal(topic, bytes, isText, exclude);
    // Other nodes count their own subscribers: the return value is this node's.
    if (this.transport !== null) this.transport.publish(topic, bytes, isText);
    return n;
  }

  private publishLocal(topic: string, bytes: Uint8Array, isText: boolean, exclude: HubMember | null): number {
    this.refuseNesting();
    const subs = this.topics.get(topic);
    if (subs === undefined) return 0;
    this.flushBatch();
    this.broadcasting = true;
    const encoded = this.encodedLength;
    encoded.fill(-2);
    const channels = this.channels;
    let recipients = 0;
    try {
      for (const m of subs) {
        if (m === exclude || m.removed || !isActive(m.conn.state)) continue;
        const ch = m.channel;
        const enc = channels[ch]!.encoder;
        let len = encoded[ch]!;
        if (len === -2) encoded[ch] = len = enc.encodePublish ? enc.encodePublish(topic, bytes, isText) : -1;
        if (len < 0) continue;
        this.deliver(m.conn, ch, enc.out, len);
        recipients++;
      }
    } finally {
      this.endWriting();
    }
    return recipients;
  }

  /**
   * write() can call back into a handler: past maxBuffered it closes the recipient as a
   * slow consumer at once, and its `close` handler calls remove() (deferred, see there).
   * A handler that broadcast or sent from there would overwrite the shared message and
   * the encoders' output buffers mid-loop; none does, so fail loudly if one ever does.
   * Checked before anything is touched.
   */
  private refuseNesting(): void {
    if (this.broadcasting) throw new Error("Hub: nested broadcast/send during a broadcast");
  }

  private broadcast(msg: HubMessage): number {
    const local = this.batchDepth > 0 ? this.appendToBatch(msg) : this.writeNow(msg);
    const t = this.transport;
    if (t === null) return local;
    t.broadcast(msg);
    return local + t.remoteMembers();
  }

  // --- from and to other nodes (HubTransport) ---------------------------------------------

  /**
   * A direct message to `toId` when get(toId) found no local member: handed to the transport
   * when it knows the id as a joined member elsewhere. Ok means queued for that node; a
   * target that leaves before it arrives misses it, as a local one that closes would.
   */
  sendRemoteBytes(from: HubMember, toId: number, buf: Uint8Array, offset: number, length: number): SendResult {
    const t = this.transport;
    if (t === null || !t.hasRemote(toId)) return SendResult.NoSuchClient;
    this.refuseNesting();
    const msg = this.scratch.setBytes(from, buf, offset, length);
    try {
      t.direct(toId, msg);
    } finally {
      msg.clear();
    }
    return SendResult.Ok;
  }

  sendRemoteValue(from: HubMember, toId: number, value: unknown): SendResult {
    const t = this.transport;
    if (t === null || !t.hasRemote(toId)) return SendResult.NoSuchClient;
    this.refuseNesting();
    const msg = this.scratch.setValue(from, value);
    try {
      t.direct(toId, msg);
    } finally {
      msg.clear();
    }
    return SendResult.Ok;
  }

  /** The id a json `to` names when it is a member of another node (numeric ids only); else -1. */
  remoteTarget(target: unknown): number {
    const t = this.transport;
    if (t === null) return -1;
    const id = typeof target === "number" ? target : typeof target === "string" && /^[0-9]+$/.test(target) ? Number(target) : -1;
    return Number.isInteger(id) && id >= 0 && t.hasRemote(id) ? id : -1;
  }

  /**
   * A message from another node: a broadcast (toId < 0) to every local joined member, or a
   * direct message to local member toId (dropped if it has left). Batched like a local
   * broadcast while a batch scope is open.
   */
  receiveBytes(fromId: number, fromLabel: string, toId: number, buf: Uint8Array, offset: number, length: number): void {
    this.refuseNesting();
    const from = this.remoteFrom;
    // The stand-in's id is read by the encoders as they encode (append time): safe to reuse.
    from.id = fromId;
    from.label = fromLabel;
    const msg = this.scratch.setBytes(from, buf, offset, length);
    try {
      this.receive(toId, msg);
    } finally {
      msg.clear();
    }
  }

  receiveValue(fromId: number, fromLabel: string, toId: number, value: unknown): void {
    this.refuseNesting();
    const from = this.remoteFrom;
    from.id = fromId;
    from.label = fromLabel;
    const msg = this.scratch.setValue(from, value);
    try {
      this.receive(toId, msg);
    } finally {
      msg.clear();
    }
  }

  private receive(toId: number, msg: HubMessage): void {
    if (toId < 0) {
      // Every remote sender shares the stand-in, so consecutive remote broadcasts share a
      // batch: their recipient set (every local joined member) is the same.
      if (this.batchDepth > 0) this.appendToBatch(msg);
      else this.writeNow(msg);
      return;
    }
    const to = this.get(toId);
    if (to === undefined) return;
    this.flushBatch();
    this.send(to, msg);
  }

  /** A topic publish from another node, to the local subscribers. */
  receivePublish(topic: string, bytes: Uint8Array, isText: boolean): void {
    this.publishLocal(topic, bytes, isText, null);
  }

  /** Outside a batch scope: encode and write to every recipient at once. */
  private writeNow(msg: HubMessage): number {
    this.broadcasting = true;
    const encoded = this.encodedLength;
    encoded.fill(-2);
    const channels = this.channels;
    const members = this.members;
    // Members added during the loop (none expected) are not visited: fix the bound first.
    const count = members.length;
    const from = msg.from;
    let recipients = 0;
    try {
      for (let i = 0; i < count; i++) {
        const m = members[i]!;
        if (!receives(m, from)) continue;
        const ch = m.channel;
        let len = encoded[ch]!;
        if (len === -2) {
          len = channels[ch]!.encoder.encodeBroadcast(msg);
          encoded[ch] = len;
        }
        if (len < 0) continue;
        this.deliver(m.conn, ch, channels[ch]!.encoder.out, len);
        recipients++;
      }
    } finally {
      this.endWriting();
    }
    return recipients;
  }

  /**
   * Inside a batch scope: count the recipients as writeNow would, encode once per channel
   * that has any, and append to that channel's arena. Nothing is written here unless a
   * bound forces a flush (see top).
   */
  private appendToBatch(msg: HubMessage): number {
    const from = msg.from!;
    if (this.batchFrom !== null && this.batchFrom !== from) this.flushBatch();
    const counts = this.channelRecipients;
    counts.fill(0);
    const members = this.members;
    for (let i = 0; i < members.length; i++) {
      const m = members[i]!;
      if (!receives(m, from)) continue;
      counts[m.channel]++;
    }
    const channels = this.channels;
    let recipients = 0;
    for (let ch = 0; ch < channels.length; ch++) {
      const n = counts[ch]!;
      if (n === 0) continue; // lazily: a channel without recipients is never encoded
      const enc = channels[ch]!.encoder;
      const len = enc.encodeBroadcast(msg);
      if (len < 0) continue;
      recipients += n;
      // A flush below writes arenas only: enc.out stays valid across it.
      if (len > this.batchDirectMax) {
        this.flushBatch();
        this.writeChannel(ch, from, enc.out, len);
        continue;
      }
      if (this.arenaLen[ch]! + len > this.batchLimit) this.flushBatch();
      this.append(ch, enc.out, len);
      this.batchFrom = from;
    }
    return recipients;
  }

  /** Copies out[0, len) to the end of channel ch's arena, growing it by doubling. */
  private append(ch: number, out: Uint8Array, len: number): void {
    let a = this.arenas[ch]!;
    const at = this.arenaLen[ch]!;
    if (at + len > a.length) {
      let size = Math.max(a.length, ARENA_INITIAL);
      while (size < at + len) size *= 2;
      const bigger = new Uint8Array(size);
      if (at > 0) bigger.set(a.subarray(0, at));
      this.arenas[ch] = a = bigger;
    }
    if (len <= SMALL_COPY) {
      let p = at;
      for (let i = 0; i < len; i++) a[p++] = out[i]!;
    } else {
      a.set(len === out.length ? out : out.subarray(0, len), at);
    }
    this.arenaLen[ch] = at + len;
  }

  /** One message, bytes[0, len), to every current recipient of channel ch. */
  private writeChannel(ch: number, from: HubMember, bytes: Uint8Array, len: number): void {
    this.broadcasting = true;
    const members = this.members;
    const count = members.length;
    try {
      for (let i = 0; i < count; i++) {
        const m = members[i]!;
        if (m.channel !== ch || !receives(m, from)) continue;
        this.deliver(m.conn, ch, bytes, len);
      }
    } finally {
      this.endWriting();
    }
  }

  /**
   * Writes the pending batch: each recipient gets its channel's arena in one write. The
   * batch state is reset even if a write throws, so the hub never replays a batch.
   */
  private flushBatch(): void {
    const from = this.batchFrom;
    if (from === null) return;
    this.refuseNesting();
    this.broadcasting = true;
    const arenas = this.arenas;
    const lens = this.arenaLen;
    const members = this.members;
    // Members added during the loop (none expected) are not visited: fix the bound first.
    const count = members.length;
    try {
      for (let i = 0; i < count; i++) {
        const m = members[i]!;
        if (!receives(m, from)) continue;
        const ch = m.channel;
        const len = lens[ch]!;
        if (len > 0) this.deliver(m.conn, ch, arenas[ch]!, len);
      }
    } finally {
      this.batchFrom = null;
      lens.fill(0);
      for (let ch = 0; ch < arenas.length; ch++) {
        if (arenas[ch]!.length > ARENA_KEEP) arenas[ch] = EMPTY;
      }
      this.endWriting();
    }
  }

  /**
   * Queues channel ch's bytes[0, len) on one recipient, ignoring the backpressure signal
   * (never wait on one recipient, see top). From SHARE_MIN_BYTES by reference: one
   * SharedBytes per channel per loop of writes, created for the first recipient.
   */
  private deliver(conn: Connection<any>, ch: number, bytes: Uint8Array, len: number): void {
    if (len < SHARE_MIN_BYTES) {
      conn.write(bytes, 0, len);
      return;
    }
    const shared = this.shared;
    let sb = shared[ch];
    if (sb === undefined) shared[ch] = sb = SharedBytes.copyOf(bytes, 0, len);
    conn.writeShared(sb, 0, len);
  }

  /**
   * After a loop of writes: drop the hub's references to the shared payloads (the queues
   * hold their own), and compact the members removed meanwhile.
   */
  private endWriting(): void {
    const shared = this.shared;
    for (let ch = 0; ch < shared.length; ch++) {
      const sb = shared[ch];
      if (sb !== undefined) {
        sb.release();
        shared[ch] = undefined;
      }
    }
    this.broadcasting = false;
    if (this.pendingRemovals.length > 0) {
      for (const m of this.pendingRemovals) this.unlist(m);
      this.pendingRemovals.length = 0;
    }
  }

  /** Swap-remove from the dense member list. */
  private unlist(m: HubMember): void {
    const i = m.slot;
    if (i < 0) return;
    const last = this.members.pop()!;
    if (last !== m) {
      this.members[i] = last;
      last.slot = i;
    }
    m.slot = -1;
  }
}
