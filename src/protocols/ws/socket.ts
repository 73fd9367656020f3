// A WebSocket on a stream, after HTTP handed the connection over (server.upgrade): Bun.serve's
// ServerWebSocket API over the frame codec (frame.ts). Replies to pings, answers a close with
// the peer's code and then closes TCP, closes with 1002/1007/1009 when the peer breaks the
// protocol, and pauses reading while a `message` handler's promise is pending (inbound
// backpressure: no unbounded queue of inbound messages).

import type { Hub, HubEncoder, HubMember, HubMessage } from "../../hub.ts";
import type { Handler, Stream } from "../../stream/stream.ts";
import type { ProtocolTrafficCount } from "../../stats/snapshot.ts";
import { StreamState } from "../../stream/stream.ts";
import { Deflater, Inflater, sharedDeflater, sharedInflater, ZlibError } from "./deflate.ts";
import type { DeflateParams, PerMessageDeflateOptions } from "./handshake.ts";
import { CloseCode, closePayload, headerLength, Opcode, validCloseCode, validUtf8, WsFrameDecoder, writeHeader, type WsDecoderOptions, type WsFrameSink } from "./frame.ts";

/** What send() returns besides the bytes sent: named, so the three cannot be confused. */
export const SendStatus = {
  /** The socket is closing or closed: nothing was sent. */
  Dropped: 0,
  /** Queued, but the socket's output is over its limit: wait for `drain` before sending more. */
  Backpressure: -1,
} as const;

export interface WebSocketHandler<T = undefined> {
  open?(ws: ServerWebSocket<T>): void | Promise<void>;
  /** A text message as a string, a binary one as bytes (a copy: keep it if you like). */
  message?(ws: ServerWebSocket<T>, message: string | Uint8Array): void | Promise<void>;
  close?(ws: ServerWebSocket<T>, code: number, reason: string): void;
  /** Output fell below the limit after send() returned SendStatus.Backpressure. */
  drain?(ws: ServerWebSocket<T>): void;
  ping?(ws: ServerWebSocket<T>, data: Uint8Array): void;
  pong?(ws: ServerWebSocket<T>, data: Uint8Array): void;
  /** Largest message, bytes (1009 past it). Default 16 MiB, as Bun. */
  maxPayloadLength?: number;
  /** Seconds without traffic before the socket is closed (1001). Default 120, as Bun; 0: never. */
  idleTimeout?: number;
  /**
   * Negotiate permessage-deflate when the client offers it (default false; browsers always
   * offer it). `true` is { compress: "shared", decompress: "shared" }: no context takeover
   * either way, so no compressor per socket, and a message published to a topic is compressed
   * once for every subscriber that negotiated the same. "dedicated" (or a uWebSockets size,
   * "3KB".."256KB") keeps a zlib stream per socket that carries its window between messages:
   * smaller messages on the wire for its memory (docs/WEBSOCKET.md has the figures). Messages
   * under 64 bytes are sent as they are. Inflating is bounded by maxPayloadLength (1009 past it).
   */
  perMessageDeflate?: boolean | PerMessageDeflateOptions;
  /**
   * At the idle timeout, ping first (default true, as Bun): a live peer's pong (any traffic)
   * keeps the socket; one silent for another period is dead and closed (1001).
   */
  sendPings?: boolean;
  /**
   * Bytes queued for a socket past which send() drops the message (SendStatus.Dropped) instead
   * of queueing it (default 16 MiB, as Bun). Reading from the socket already pauses at the
   * stream's high-water mark, well below it. Topic publishes past it (plus one largest
   * message) close the socket as a slow consumer: a publish never waits for one recipient.
   */
  backpressureLimit?: number;
  /** Close the socket (1008, after what is queued) instead of dropping a send past backpressureLimit. */
  closeOnBackpressureLimit?: boolean;
  /** ws.publish() reaches the sender too when it is subscribed (default false, as Bun). */
  publishToSelf?: boolean;
}

/** Bun's default backpressureLimit. */
const BACKPRESSURE_LIMIT = 16 * 1024 * 1024;

const READY = { CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3 } as const;

/** Idle frame decoders of this thread (ServerWebSocket.received). */
const spareDecoders: WsFrameDecoder[] = [];
const MAX_SPARE_DECODERS = 1024;

function takeDecoder(sink: WsFrameSink, options: WsDecoderOptions): WsFrameDecoder {
  const d = spareDecoders.pop();
  if (d === undefined) return new WsFrameDecoder(sink, options);
  d.rebind(sink, options);
  return d;
}

/** One options object per (limit, deflate) pair, shared by every socket that has it. */
const optionsCache = new Map<number, WsDecoderOptions>();
function decoderOptions(maxPayloadLength: number, deflate: boolean): WsDecoderOptions {
  const key = deflate ? -1 - maxPayloadLength : maxPayloadLength;
  let o = optionsCache.get(key);
  if (o === undefined) optionsCache.set(key, (o = Object.freeze({ maxPayloadLength, allowRsv1: deflate })));
  return o;
}
const EMPTY_PAYLOAD = new Uint8Array(0);
/** Largest payload gathered with its header into frameScratch (larger ones are queued as they are). */
const SMALL_FRAME = 1024;
const frameScratch = new Uint8Array(new ArrayBuffer(10 + SMALL_FRAME));
/** How long to wait for the peer's close frame after ours before dropping the connection. */
const CLOSE_WAIT_MS = 2000;
const utf8 = new TextEncoder();
const utf8Decoder = new TextDecoder();

/**
 * Renders topic publishes as WebSocket frames: the hub's "ws" channel, and "ws-deflate" for
 * sockets that agreed shared compression (no server context takeover, a 15-bit window), whose
 * frames are compressed once per publish and the same bytes go to every such subscriber.
 */
export class WsHubEncoder implements HubEncoder {
  out = new Uint8Array(1024);
  constructor(private readonly compress = false) {}
  /** For sockets that joined the hub (the chat): `<id>: <text>`, as line clients see it. */
  encodeBroadcast(msg: HubMessage): number {
    return this.text(`${msg.from!.id}: ${msg.contentText()}`);
  }
  encodeDirect(msg: HubMessage): number {
    return this.text(`${msg.from!.id} (direct): ${msg.contentText()}`);
  }
  private text(s: string): number {
    return this.encodePublish("", utf8.encode(s), true);
  }
  encodePublish(_topic: string, bytes: Uint8Array, isText: boolean): number {
    const rsv1 = this.compress && bytes.length >= 64;
    if (rsv1) bytes = sharedDeflater(15).compress(bytes);
    const total = headerLength(bytes.length) + bytes.length;
    if (this.out.length < total) {
      let size = this.out.length;
      while (size < total) size *= 2;
      this.out = new Uint8Array(size);
    }
    const h = writeHeader(this.out, 0, isText ? Opcode.Text : Opcode.Binary, bytes.length, true, rsv1);
    this.out.set(bytes, h);
    return total;
  }
}

/** Where a WebSocket's topics live: the process's hub and its "ws" channel. */
export interface WsTopics {
  hub: Hub;
  channel: number;
  /** The channel of sockets with shared compression (WsHubEncoder with compress). */
  deflateChannel: number;
  /** WebSocket traffic, counted apart from the HTTP that carried the Upgrade (the CLI's /metrics); null: not counted. */
  traffic: ProtocolTrafficCount | null;
}

export class ServerWebSocket<T = undefined> implements WsFrameSink {
  data: T;
  /** The subprotocol agreed in the handshake (server.upgrade's Sec-WebSocket-Protocol), or "". */
  declare protocol: string;
  /** 1 open, 2 closing (a close frame sent or received), 3 closed. */
  readyState: number = READY.OPEN;
  private closeTimer: ReturnType<typeof setTimeout> | null = null;
  private closeReported = false;

  /** A `message` handler's promise is pending: frames wait (the decoder holds them). */
  private blocked = false;
  /** Resolved once no handler is pending and nothing is held: the stream reads again then. */
  private idleWaiters: (() => void)[] | null = null;

  /** This socket in the hub (topics); null without one. */
  private member: HubMember | null = null;

  constructor(
    readonly stream: Stream<any>,
    private readonly handler: WebSocketHandler<T>,
    data: T,
    private readonly topics: WsTopics | null = null,
    /** What permessage-deflate agreed, or null when it was not negotiated. */
    private readonly deflate: DeflateParams | null = null,
  ) {
    this.data = data;

    this.decoderOptions = decoderOptions(handler.maxPayloadLength ?? 16 * 1024 * 1024, deflate !== null);
  }

  /**
   * The frame decoder, held only while a message is arriving (or held back for an async
   * handler); between messages it goes back to the thread's spares. The socket is its sink
   * (methods, not closures): an idle socket is its stream and this object.
   */
  private decoder: WsFrameDecoder | null = null;
  /** This socket's own zlib streams (context takeover), released when it closes. */
  private deflater: Deflater | null = null;
  private inflater: Inflater | null = null;
  private readonly decoderOptions: WsDecoderOptions;

  // --- WsFrameSink: the decoder's calls (internal) -------------------------------------------

  /** @internal A whole message from the decoder. */
  onMessage(opcode: typeof Opcode.Text | typeof Opcode.Binary, raw: Uint8Array, compressed: boolean): void {
    const handler = this.handler;
    const m = handler.message;
    if (this.readyState !== READY.OPEN) return;
    const t = this.topics?.traffic;
    if (t) t.messagesIn++;
    let bytes = raw;
    if (compressed) {
      const max = handler.maxPayloadLength ?? 16 * 1024 * 1024;
      try {
        const inflater = this.deflate!.clientTakeover ? (this.inflater ??= new Inflater(true)) : sharedInflater();
        const out = inflater.decompress(raw, max);
        if (out === null) return this.fail(CloseCode.MessageTooBig, "a message that inflates past maxPayloadLength");
        bytes = out; // the inflater's scratch: decoded or copied below, before anything else inflates
      } catch (e) {
        if (!(e instanceof ZlibError)) throw e;
        this.fail(CloseCode.InvalidPayload, "a message that does not inflate");
        return;
      }
      if (opcode === Opcode.Text && !validUtf8(bytes)) {
        this.fail(CloseCode.InvalidPayload, "a text message that is not valid UTF-8");
        return;
      }
    }
    if (!m) return;
    const r = m(this, opcode === Opcode.Text ? utf8Decoder.decode(bytes) : bytes.slice());
    if (r === undefined) return;
    // One message at a time: the next frames wait for this handler.
    this.blocked = true;
    this.decoder!.pause(); // called from the decoder's push: it is held
    r.then(
      () => this.unblock(),
      (e) => {
        console.error(`[bunpoll] websocket message handler failed: ${(e as Error)?.stack ?? e}`);
        this.unblock();
        if (this.readyState === READY.OPEN) this.close(CloseCode.InternalError, "message handler failed");
      },
    );
  }

  /** @internal */
  onPing(payload: Uint8Array): void {
    if (this.readyState === READY.OPEN) this.frame(Opcode.Pong, payload);
    this.handler.ping?.(this, payload.slice());
  }

  /** @internal */
  onPong(payload: Uint8Array): void {
    this.handler.pong?.(this, payload.slice());
  }

  /** @internal */
  onClose(code: number, reason: string): void {
    this.peerClosed(code, reason);
  }

  /** @internal */
  onError(code: number, message: string): void {
    this.fail(code, message);
  }

  get remoteAddress(): string {
    return this.stream.remoteAddress;
  }

  /** Bytes queued for this socket and not yet taken by the kernel. */
  get bufferedAmount(): number {
    return this.stream.bufferedAmount;
  }

  /** Bytes from the stream (frames). */
  received(bytes: Uint8Array): void | Promise<void> {
    this.pingPending = false; // the peer is alive
    const d = this.decoder ?? (this.decoder = takeDecoder(this, this.decoderOptions));
    d.push(bytes);
    if (!this.blocked) return this.releaseDecoder();
    // The stream stops reading (pauseWhileAsync) until every held frame has been handled.
    return new Promise<void>((resolve) => (this.idleWaiters ??= []).push(resolve));
  }

  /** Gives the decoder back between messages (see `decoder`). */
  private releaseDecoder(): void {
    const d = this.decoder;
    if (d !== null && d.idle) {
      this.decoder = null;
      if (spareDecoders.length < MAX_SPARE_DECODERS) spareDecoders.push(d);
    }
  }

  private unblock(): void {
    this.blocked = false;
    this.decoder!.resume(); // may start another async handler and block again
    if (this.blocked) return;
    const w = this.idleWaiters;
    this.idleWaiters = null;
    if (w !== null) for (const f of w) f();
    this.releaseDecoder();
  }

  /** A text frame for a string, a binary one for bytes. Returns bytes sent, or a SendStatus. */
  send(data: string | ArrayBufferView | ArrayBuffer): number {
    if (typeof data === "string") return this.sendText(data);
    return this.sendBinary(data);
  }

  sendText(text: string): number {
    return this.frame(Opcode.Text, utf8.encode(text));
  }

  sendBinary(data: ArrayBufferView | ArrayBuffer): number {
    const bytes = data instanceof Uint8Array ? data : ArrayBuffer.isView(data) ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength) : new Uint8Array(data);
    return this.frame(Opcode.Binary, bytes);
  }

  ping(data: string | Uint8Array = ""): number {
    return this.frame(Opcode.Ping, typeof data === "string" ? utf8.encode(data) : data);
  }

  pong(data: string | Uint8Array = ""): number {
    return this.frame(Opcode.Pong, typeof data === "string" ? utf8.encode(data) : data);
  }

  /**
   * This socket's hub member, registered on first use (a topic, the chat): a socket that never
   * uses the hub costs it nothing. Not joined: it hears its topics, not every broadcast.
   */
  private hubMember(): HubMember | null {
    if (this.member === null && this.topics !== null && this.readyState === READY.OPEN) {
      const s = this.stream;
      const z = this.deflate;
      const shared = z !== null && z.compress && !z.serverTakeover && z.serverWindowBits === 15;
      this.member = this.topics.hub.add(s, shared ? this.topics.deflateChannel : this.topics.channel, `${s.remoteAddress}:${s.remotePort}`, false);
    }
    return this.member;
  }

  /** Subscribes to a topic: server.publish / ws.publish reach this socket. */
  subscribe(topic: string): void {
    const m = this.hubMember();
    if (m !== null && this.readyState === READY.OPEN) this.topics!.hub.subscribe(m, topic);
  }

  unsubscribe(topic: string): void {
    if (this.member !== null) this.topics!.hub.unsubscribe(this.member, topic);
  }

  isSubscribed(topic: string): boolean {
    return this.member !== null && this.topics!.hub.isSubscribed(this.member, topic);
  }

  /**
   * Makes this socket a hub client: it hears every broadcast of every protocol (framed, json,
   * line, other chat sockets) as text, `<id>: <text>`. The chat does this.
   */
  joinHub(): void {
    const m = this.hubMember();
    if (m !== null && this.readyState === READY.OPEN) this.topics!.hub.join(m);
  }

  /** Sends text to every hub client but this one (what a line client's line does); returns the recipients. */
  broadcast(text: string): number {
    if (this.member === null || !this.member.joined) return 0;
    const b = utf8.encode(text);
    return this.topics!.hub.broadcastBytes(this.member, b, 0, b.length);
  }

  /** Sends to every subscriber of topic but this socket (Bun's default); returns the recipients. */
  publish(topic: string, data: string | Uint8Array): number {
    if (this.topics === null) return 0;
    const isText = typeof data === "string";
    const bytes = isText ? utf8.encode(data) : data;
    return this.topics.hub.publish(topic, bytes, isText, this.handler.publishToSelf ? null : this.member);
  }

  /** Runs fn; what it sends leaves together (every write of a turn does already: one send). */
  cork<R>(fn: (ws: ServerWebSocket<T>) => R): R {
    return fn(this);
  }

  /** Starts the close handshake: our close frame, then TCP closes once the peer answers (or after a wait). */
  close(code: number = CloseCode.Normal, reason = ""): void {
    if (this.readyState !== READY.OPEN) return;
    if (!validCloseCode(code) || code >= 1004 && code <= 1006) throw new RangeError(`invalid close code ${code}`);
    this.sendClose(code, reason);
    this.readyState = READY.CLOSING;
    this.closeTimer = setTimeout(() => this.terminate(), CLOSE_WAIT_MS);
    this.report(code, reason);
  }

  /** Closes the connection at once, without a close handshake. */
  terminate(): void {
    if (this.closeTimer !== null) clearTimeout(this.closeTimer);
    this.closeTimer = null;
    this.readyState = READY.CLOSED;
    this.stream.close("local");
  }

  /** Writes one frame: header and payload, in one turn's send. */
  private frame(opcode: number, payload: Uint8Array): number {
    const s = this.stream;
    if (this.readyState !== READY.OPEN && opcode !== Opcode.Close || s.state >= StreamState.Lingering) return SendStatus.Dropped;
    if (opcode < 8 && s.bufferedAmount > (this.handler.backpressureLimit ?? BACKPRESSURE_LIMIT)) {
      if (this.handler.closeOnBackpressureLimit) this.close(CloseCode.PolicyViolation, "backpressure limit");
      return SendStatus.Dropped;
    }
    let rsv1 = false;
    const z = this.deflate;
    if (z !== null && z.compress && opcode < 8 && payload.length >= 64) {
      // The deflater's scratch, copied into the stream's queue below before it is reused.
      const d = z.serverTakeover ? (this.deflater ??= new Deflater(z.serverWindowBits, z.memLevel, true)) : sharedDeflater(z.serverWindowBits);
      payload = d.compress(payload);
      rsv1 = true;
    }
    if (opcode < 8) {
      const t = this.topics?.traffic;
      if (t) t.messagesOut++;
    }
    const n = payload.length;
    let ok: boolean;
    if (n <= SMALL_FRAME) {
      // Header and payload gathered in the scratch and queued by one write: a small message's
      // copy is one native set(), not an FFI pointer to a fresh array and a second append.
      const h = writeHeader(frameScratch, 0, opcode, n, true, rsv1);
      frameScratch.set(payload, h);
      ok = s.write(frameScratch, 0, h + n); // copied into the queue at once: one scratch serves every socket
    } else {
      const h = writeHeader(frameScratch, 0, opcode, n, true, rsv1);
      s.write(frameScratch, 0, h);
      ok = s.write(payload);
    }
    if (s.state === StreamState.Closed) return SendStatus.Dropped; // closed as a slow consumer
    return ok ? headerLength(payload.length) + payload.length : SendStatus.Backpressure;
  }

  private sendClose(code: number, reason: string): void {
    this.frame(Opcode.Close, closePayload(code, reason));
  }

  /** The peer's close frame: answer with its code (unless we started), then close TCP. */
  private peerClosed(code: number, reason: string): void {
    if (this.readyState === READY.OPEN) this.sendClose(code, "");
    this.readyState = READY.CLOSED;
    if (this.closeTimer !== null) clearTimeout(this.closeTimer);
    this.closeTimer = null;
    this.report(code, reason);
    this.stream.end(); // the server closes TCP first (RFC 6455 §7.1.1)
  }

  /** The peer broke the protocol: close with the code that says how, then TCP. */
  private fail(code: number, message: string): void {
    if (this.readyState === READY.OPEN) this.sendClose(code, message);
    this.readyState = READY.CLOSED;
    this.report(code, message);
    this.stream.end("protocol");
  }

  /** The TCP connection went away. */
  gone(): void {
    if (this.closeTimer !== null) clearTimeout(this.closeTimer);
    this.closeTimer = null;
    this.readyState = READY.CLOSED;
    this.report(1006, "");
  }

  /** The ping sent at the last idle timeout (sendPings) is still unanswered. */
  private pingPending = false;

  idle(): void {
    if (this.readyState !== READY.OPEN) return this.terminate();
    if ((this.handler.sendPings ?? true) && !this.pingPending) {
      this.pingPending = true;
      this.frame(Opcode.Ping, EMPTY_PAYLOAD);
      return; // the stream re-arms its timer: a period for the pong
    }
    this.close(CloseCode.GoingAway, this.pingPending ? "no answer to ping" : "idle");
  }



  /** The stream is a WebSocket now: its idle timeout and queue bound, then the `open` handler. */
  opened(): void | Promise<void> {
    const h = this.handler;
    this.stream.setIdleTimeout((h.idleTimeout ?? 120) * 1000);
    // The stream closes a slow consumer past maxBuffered: above what send() lets through.
    const limit = h.backpressureLimit ?? BACKPRESSURE_LIMIT;
    this.stream.setMaxBuffered(Math.max(limit + (h.maxPayloadLength ?? 16 * 1024 * 1024) + 14, this.stream.bufferedAmount));
    return this.handler.open?.(this);
  }

  drained(): void {
    this.handler.drain?.(this);
  }

  private report(code: number, reason: string): void {
    if (this.closeReported) return;
    this.closeReported = true;
    // Nothing is compressed or inflated after this (frame() and onMessage() need OPEN).
    this.deflater?.[Symbol.dispose]();
    this.inflater?.[Symbol.dispose]();
    this.deflater = this.inflater = null;
    if (this.member !== null) this.topics!.hub.remove(this.member); // no publish reaches a closing socket
    try {
      this.handler.close?.(this, code, reason);
    } catch (e) {
      console.error(`[bunpoll] websocket close handler threw: ${(e as Error)?.stack ?? e}`);
    }
  }
}

/**
 * Makes `stream` a WebSocket (after the 101): a ServerWebSocket as its data, and the one
 * stream handler every WebSocket shares (no handler object or closures per socket). `pending`
 * holds the bytes read behind the Upgrade request (the first frames).
 */
export function upgradeStream<T>(stream: Stream<any>, handler: WebSocketHandler<T>, data: T, topics: WsTopics | null, deflate: DeflateParams | null, protocol: string, pending?: Uint8Array): void {
  const ws = new ServerWebSocket<T>(stream, handler, data, topics, deflate);
  if (protocol !== "") ws.protocol = protocol;
  stream.data = ws;
  if (topics?.traffic) stream.setTraffic(topics.traffic, pending?.length ?? 0);
  stream.setHandler(WS_STREAM, pending);
}

const WS_STREAM: Handler<ServerWebSocket<any>> = {
  open: (stream) => stream.data.opened(),
  data: (stream, bytes) => stream.data.received(bytes),
  drain: (stream) => stream.data.drained(),
  end(stream) {
    stream.data.gone(); // FIN without a close frame: 1006
    stream.end();
  },
  close: (stream) => stream.data?.gone(),
  timeout: (stream) => stream.data.idle(),
  // A graceful stop: every socket is told 1001 (going away) before the connection drains.
  shutdown: (stream) => stream.data.close(CloseCode.GoingAway, "server shutting down"),
  // A message handler's promise pauses reading until it settles.
  pauseWhileAsync: true,
};

// Most sockets agree no subprotocol: "" lives on the prototype, not in each socket.
ServerWebSocket.prototype.protocol = "";
