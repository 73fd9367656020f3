// The client registry shared by every listener of a process: ids, broadcast and direct
// routing across protocols.
//
// Each protocol registers one HubEncoder (a "channel"). A broadcast is encoded at most
// once per channel, lazily, when the first recipient of that channel is reached; every
// recipient of the channel then gets the same bytes. Connection.write copies, so the
// encoder can keep reusing one buffer and a broadcast allocates nothing for framed
// recipients.
//
// The hub never waits on a recipient: it writes and moves on, ignoring write()'s
// backpressure signal. A recipient that does not read is the reactor's business (it
// pauses reading at the high-water mark and closes past maxBuffered), so one slow
// consumer never stalls the others and its memory stays bounded.
//
// Client ids come from the hub's own counter, starting at 1, assigned when a connection
// registers (at accept, in the protocol's `open`). They are unique for the lifetime of
// the hub (one per process) across all listeners, independent of how the reactor numbers
// connections, and fit the framed protocol's u32 for the first 2^32 - 1 clients.

import { ConnState, type Connection } from "./types.ts";
import { ErrorCode } from "./protocols/codec/errors.ts";
import { SharedBytes } from "./reactor/write-queue.ts";

/**
 * Broadcasts encoded at least this large are queued by reference (Connection.writeShared):
 * one copy per channel instead of one per recipient. Below it, copying into each queue is
 * cheaper than a shared segment (and keeps each recipient's output in one buffer).
 */
const SHARE_MIN_BYTES = 4096;

/** "1.2.3.4:5678", or "[::1]:5678" for IPv6. */
export function formatAddress(address: string, port: number): string {
  return address.includes(":") ? `[${address}]:${port}` : `${address}:${port}`;
}

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
  /** The buffer the last encode wrote, bytes [0, length). Read right after encoding. */
  readonly out: Uint8Array;
}

export class HubMember {
  /** Receives broadcasts and direct messages. False until authenticated when auth is on. */
  joined = false;
  /** Index in the hub's member list; -1 once removed. */
  slot = -1;
  removed = false;
  constructor(
    readonly id: number,
    readonly conn: Connection<any>,
    /** Channel (protocol) index from Hub.channel. */
    readonly channel: number,
    /** "ip:port" of the peer: the json protocol's client id. */
    readonly label: string,
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

/** A direct message went through (else an ErrorCode). */
export const SEND_OK = 0;

export class Hub {
  private nextId = 1;
  private readonly channels: Channel[] = [];
  private readonly members: HubMember[] = [];
  private readonly byId = new Map<number, HubMember>();
  private readonly byLabel = new Map<string, HubMember>();
  private joinedCount = 0;
  /** Per-channel encoded length of the broadcast in progress: -2 = not encoded yet. */
  private encodedLength = new Int32Array(4);
  private broadcasting = false;
  private readonly pendingRemovals: HubMember[] = [];
  private readonly scratch = new HubMessage();

  /**
   * Register a protocol's encoder and get its channel index. Idempotent per name: the
   * first encoder registered under a name serves every listener of that protocol, so two
   * framed listeners share one encoding per broadcast.
   */
  channel(name: string, encoder: HubEncoder): number {
    const existing = this.channels.findIndex((c) => c.name === name);
    if (existing >= 0) return existing;
    this.channels.push({ name, encoder });
    if (this.encodedLength.length < this.channels.length) {
      this.encodedLength = new Int32Array(this.channels.length * 2);
    }
    return this.channels.length - 1;
  }

  /** Register a connection and assign its client id. */
  add(conn: Connection<any>, channel: number, label: string, joined = true): HubMember {
    if (channel < 0 || channel >= this.channels.length) throw new RangeError(`no hub channel ${channel}`);
    const m = new HubMember(this.nextId++, conn, channel, label);
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
    m.joined = true;
    this.joinedCount++;
  }

  /** Unregister (the protocol's `close`). Safe during a broadcast. */
  remove(m: HubMember): void {
    if (m.removed) return;
    m.removed = true;
    if (m.joined) {
      m.joined = false;
      this.joinedCount--;
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

  /** Direct message; returns SEND_OK, NO_SUCH_CLIENT or FRAME_TOO_LARGE. */
  sendBytes(from: HubMember, to: HubMember, buf: Uint8Array, offset: number, length: number): number {
    this.refuseNesting();
    const msg = this.scratch.setBytes(from, buf, offset, length);
    try {
      return this.send(to, msg);
    } finally {
      msg.clear();
    }
  }

  sendValue(from: HubMember, to: HubMember, value: unknown): number {
    this.refuseNesting();
    const msg = this.scratch.setValue(from, value);
    try {
      return this.send(to, msg);
    } finally {
      msg.clear();
    }
  }

  private send(to: HubMember, msg: HubMessage): number {
    if (!to.joined || to.conn.state >= ConnState.Closing) return ErrorCode.NO_SUCH_CLIENT;
    const enc = this.channels[to.channel]!.encoder;
    const len = enc.encodeDirect(msg);
    if (len < 0) return ErrorCode.FRAME_TOO_LARGE;
    to.conn.write(enc.out, 0, len);
    return SEND_OK;
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
    this.broadcasting = true;
    const encoded = this.encodedLength;
    encoded.fill(-2);
    const channels = this.channels;
    const members = this.members;
    // Members added during the loop (none expected) are not visited: fix the bound first.
    const count = members.length;
    const from = msg.from;
    let shared: (SharedBytes | undefined)[] | null = null; // large broadcasts only
    let recipients = 0;
    try {
      for (let i = 0; i < count; i++) {
        const m = members[i]!;
        if (m === from || !m.joined || m.conn.state >= ConnState.Closing) continue;
        const ch = m.channel;
        let len = encoded[ch]!;
        if (len === -2) {
          len = channels[ch]!.encoder.encodeBroadcast(msg);
          encoded[ch] = len;
        }
        if (len < 0) continue;
        // Ignore the backpressure signal: never wait on one recipient (see top).
        if (len >= SHARE_MIN_BYTES) {
          // Large: one immutable copy, referenced by every recipient's queue.
          shared ??= [];
          let sb = shared[ch];
          if (sb === undefined) shared[ch] = sb = SharedBytes.copyOf(channels[ch]!.encoder.out, 0, len);
          m.conn.writeShared(sb, 0, len);
        } else {
          m.conn.write(channels[ch]!.encoder.out, 0, len);
        }
        recipients++;
      }
    } finally {
      // The recipients' queues hold their own references now.
      if (shared !== null) for (const sb of shared) sb?.release();
      this.broadcasting = false;
      if (this.pendingRemovals.length > 0) {
        for (const m of this.pendingRemovals) this.unlist(m);
        this.pendingRemovals.length = 0;
      }
    }
    return recipients;
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
