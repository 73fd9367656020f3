// WebSocket framing (RFC 6455 §5), server side: an incremental decoder that enforces every
// MUST a server has about client frames, and the encoder of server frames. Resumable at any
// byte split; a frame whole in one read is unmasked in place and handed out as a view (valid
// during the call, like any data); fragments are gathered into one message, bounded by
// maxPayloadLength. Text is checked as UTF-8 as its bytes arrive, so an invalid byte fails
// at once, not when the message ends (Autobahn 6.4).

export const Opcode = {
  Continuation: 0x0,
  Text: 0x1,
  Binary: 0x2,
  Close: 0x8,
  Ping: 0x9,
  Pong: 0xa,
} as const;

/** Close codes this server sends (RFC 6455 §7.4.1). */
export const CloseCode = {
  Normal: 1000,
  GoingAway: 1001,
  ProtocolError: 1002,
  UnsupportedData: 1003,
  NoStatus: 1005,
  InvalidPayload: 1007,
  PolicyViolation: 1008,
  MessageTooBig: 1009,
  InternalError: 1011,
} as const;

/**
 * A close code a peer may send (RFC 6455 §7.4, and the IANA registry): 1000-1003 and 1007-1014
 * are defined; 3000-4999 are for libraries and applications. 0-999, 1004-1006 (reserved or
 * never sent), 1015, 1016-2999 and 5000 up are invalid.
 */
export function validCloseCode(code: number): boolean {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
}

// --- word-wise access ----------------------------------------------------------------------

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
/** A 32-bit view of the last memory worked on word-wise (the reactor's receive buffer, as a rule). */
let words: Uint32Array<ArrayBufferLike> = new Uint32Array(0);
/** The view `words` was last looked up for: `.buffer` is a native call, so once per view (read), not per message. */
let wordsFor: Uint8Array | null = null;

/** A Uint32Array over all of buf's memory (cached: the same memory comes back read after read). */
function wordsOf(buf: Uint8Array): Uint32Array {
  if (buf === wordsFor) return words;
  const ab = buf.buffer;
  if (words.buffer !== ab) words = new Uint32Array(ab, 0, ab.byteLength >>> 2);
  wordsFor = buf;
  return words;
}

// --- UTF-8, incrementally (Bjoern Hoehrmann's DFA: states 0 accept, 12 reject) ------------

const UTF8_CLASS = new Uint8Array(256);
const UTF8_STATE = new Uint8Array(108);
(() => {
  const classes = [
    [0x00, 0x7f, 0], [0x80, 0x8f, 1], [0x90, 0x9f, 9], [0xa0, 0xbf, 7], [0xc0, 0xc1, 8], [0xc2, 0xdf, 2],
    [0xe0, 0xe0, 10], [0xe1, 0xec, 3], [0xed, 0xed, 4], [0xee, 0xef, 3], [0xf0, 0xf0, 11], [0xf1, 0xf3, 6],
    [0xf4, 0xf4, 5], [0xf5, 0xff, 8],
  ] as const;
  for (const [a, b, c] of classes) for (let i = a; i <= b; i++) UTF8_CLASS[i] = c;
  const t = [
    0, 12, 24, 36, 60, 96, 84, 12, 12, 12, 48, 72, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12,
    12, 0, 12, 12, 12, 12, 12, 0, 12, 0, 12, 12, 12, 24, 12, 12, 12, 12, 12, 24, 12, 24, 12, 12,
    12, 12, 12, 12, 12, 12, 12, 24, 12, 12, 12, 12, 12, 24, 12, 12, 12, 12, 12, 12, 12, 24, 12, 12,
    12, 12, 12, 12, 12, 12, 12, 36, 12, 36, 12, 12, 12, 36, 12, 12, 12, 12, 12, 36, 12, 36, 12, 12,
    12, 36, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12,
  ];
  UTF8_STATE.set(t);
})();

const UTF8_ACCEPT = 0;
const UTF8_REJECT = 12;

/**
 * Runs the UTF-8 DFA over buf[from, to) from `state`; returns the new state (12: invalid).
 * Between characters, ASCII is skipped 4 bytes at a time through a 32-bit view of the same
 * memory (text is mostly ASCII, and a byte-wise loop was most of a 64-byte message's cost);
 * the DFA still sees every other byte in order, so it fails at the first invalid one.
 */
export function utf8Step(state: number, buf: Uint8Array, from: number, to: number): number {
  let i = from;
  const base = buf.byteOffset;
  let w: Uint32Array | null = null;
  while (i < to) {
    if (state === UTF8_ACCEPT && ((base + i) & 3) === 0 && to - i >= 8) {
      if (w === null) w = wordsOf(buf);
      let wi = (base + i) >>> 2;
      const wend = (base + to) >>> 2;
      while (wi < wend && (w[wi]! & 0x80808080) === 0) wi++;
      const j = (wi << 2) - base;
      if (j > i) {
        i = j;
        continue;
      }
    }
    const b = buf[i++]!;
    if (state === UTF8_ACCEPT && b < 0x80) continue;
    state = UTF8_STATE[state + UTF8_CLASS[b]!]!;
    if (state === UTF8_REJECT) return state;
  }
  return state;
}

/** Whether buf[from, to) is complete, valid UTF-8. */
export function validUtf8(buf: Uint8Array, from = 0, to = buf.length): boolean {
  return utf8Step(UTF8_ACCEPT, buf, from, to) === UTF8_ACCEPT;
}

// --- unmasking ------------------------------------------------------------------------------


/**
 * XORs buf[from, to) with the masking key (its 4 bytes big-endian in `key`), the key's byte
 * `phase & 3` applying at `from`. Masked payloads are the bulk of a server's per-byte work, and
 * a loop that shifts the key per byte cost ~7 ns a byte here: the aligned middle goes 4 bytes
 * at a time through a Uint32Array over the same memory (little-endian hosts), the edges byte by
 * byte with the key bytes rotated in locals.
 */
export function unmask(buf: Uint8Array, from: number, to: number, key: number, phase: number): void {
  const s = (phase & 3) << 3;
  const k = s === 0 ? key : (key << s) | (key >>> (32 - s));
  let m0 = (k >>> 24) & 0xff, m1 = (k >>> 16) & 0xff, m2 = (k >>> 8) & 0xff, m3 = k & 0xff;
  let i = from;
  if (to - from >= 16 && LITTLE_ENDIAN) {
    const base = buf.byteOffset;
    while (((base + i) & 3) !== 0) {
      buf[i++] ^= m0;
      const t = m0;
      m0 = m1, m1 = m2, m2 = m3, m3 = t;
    }
    const words = wordsOf(buf);
    const w = m0 | (m1 << 8) | (m2 << 16) | (m3 << 24);
    const wend = (base + to) >>> 2;
    let wi = (base + i) >>> 2;
    for (; wi < wend; wi++) words[wi] ^= w;
    i = (wi << 2) - base;
  }
  for (const end4 = to - 3; i < end4; i += 4) {
    buf[i] ^= m0;
    buf[i + 1] ^= m1;
    buf[i + 2] ^= m2;
    buf[i + 3] ^= m3;
  }
  if (i < to) buf[i++] ^= m0;
  if (i < to) buf[i++] ^= m1;
  if (i < to) buf[i] ^= m2;
}

// --- decoding -------------------------------------------------------------------------------

export interface WsFrameSink {
  /**
   * A whole message (fragments joined), unmasked; valid during the call. `compressed`: its first
   * frame had RSV1 (permessage-deflate): the bytes are deflated, and a text message's UTF-8 is
   * for the inflating layer to check.
   */
  onMessage(opcode: typeof Opcode.Text | typeof Opcode.Binary, data: Uint8Array, compressed: boolean): void;
  onPing(payload: Uint8Array): void;
  onPong(payload: Uint8Array): void;
  /** The peer's close frame: its code (1005 when it had none) and reason (valid UTF-8). */
  onClose(code: number, reason: string): void;
  /** The peer broke the protocol: close with `code` (1002, 1007, 1009) after this; no call follows. */
  onError(code: number, message: string): void;
}

export interface WsDecoderOptions {
  /** Largest message (payload bytes, all fragments): 1009 past it. */
  maxPayloadLength: number;
  /** Client-to-server frames must be masked (RFC 6455 §5.1): true for a server. */
  requireMask?: boolean;
  /** Server-to-client frames must not be masked (RFC 6455 §5.1): true for a client. */
  forbidMask?: boolean;
  /** RSV1 is allowed (permessage-deflate negotiated): the sink gets compressed messages then. */
  allowRsv1?: boolean;
}

const enum DState {
  Header,
  Payload,
  Failed,
}

const HEADER_MAX = 14;
const EMPTY = new Uint8Array(0);
const utf8 = new TextDecoder("utf-8", { fatal: false });

export class WsFrameDecoder {
  private state = DState.Header;
  /** Header bytes gathered across reads (created the first time a header is split: idle sockets hold none). */
  private hdr: Uint8Array = EMPTY;
  private hdrLen = 0;
  // The frame in progress.
  private fin = false;
  private opcode = 0;
  private masked = false;
  /** The frame's masking key, big-endian in one int32 (no array per socket). */
  private maskKey = 0;
  private remaining = 0;
  /** Position in the frame's payload (the mask's phase). */
  private offset = 0;
  /** A control frame's payload, gathered (at most 125 bytes). */
  private control: Uint8Array | null = null;
  private controlLen = 0;
  // The fragmented message in progress.
  private msgOpcode = 0;
  private msg: Uint8Array = EMPTY;
  private msgLen = 0;
  private utf8State = UTF8_ACCEPT;
  private msgCompressed = false;
  private paused = false;
  private held: Uint8Array | null = null;
  private requireMask: boolean;

  constructor(private sink: WsFrameSink, private options: WsDecoderOptions) {
    this.requireMask = options.requireMask ?? true;
  }

  /** Between messages: nothing partial or held, so the decoder may serve another socket. */
  get idle(): boolean {
    return this.state === DState.Header && this.hdrLen === 0 && this.msgOpcode === 0 && !this.paused && this.held === null;
  }

  /**
   * Gives an idle decoder to another socket: sockets share a few decoders instead of holding
   * one each between messages (ServerWebSocket). Its scratch buffers go along, large ones not.
   */
  rebind(sink: WsFrameSink, options: WsDecoderOptions): void {
    if (!this.idle) throw new Error("WsFrameDecoder.rebind: a message is in progress");
    this.sink = sink;
    this.options = options;
    this.requireMask = options.requireMask ?? true;
    if (this.msg.length > 4096) this.msg = EMPTY;
  }

  get failed(): boolean {
    return this.state === DState.Failed;
  }

  /** True while a frame or a fragmented message is incomplete. */
  get inFrame(): boolean {
    return this.hdrLen > 0 || this.state === DState.Payload || this.msgOpcode !== 0;
  }

  /**
   * Stops handing out frames: what arrives meanwhile (or is left of the current read) is held,
   * copied, until resume(). Inbound backpressure for an async message handler.
   */
  pause(): void {
    this.paused = true;
  }

  /** Hands out what was held back (and may pause again). */
  resume(): void {
    this.paused = false;
    const h = this.held;
    this.held = null;
    if (h !== null) this.push(h);
  }

  get isPaused(): boolean {
    return this.paused;
  }

  push(buf: Uint8Array): void {
    let pos = 0;
    const end = buf.length;
    while (pos < end && this.state !== DState.Failed) {
      if (this.paused) {
        const rest = buf.subarray(pos, end);
        if (this.held === null) this.held = rest.slice();
        else {
          const both = new Uint8Array(this.held.length + rest.length);
          both.set(this.held);
          both.set(rest, this.held.length);
          this.held = both;
        }
        return;
      }
      if (this.state === DState.Header) pos = this.header(buf, pos, end);
      else pos = this.payload(buf, pos, end);
    }
  }

  private fail(code: number, message: string): number {
    this.state = DState.Failed;
    this.msg = EMPTY;
    this.sink.onError(code, message);
    return Number.MAX_SAFE_INTEGER;
  }

  /** Reads (or gathers) a frame header; returns the new position. */
  private header(buf: Uint8Array, pos: number, end: number): number {
    let h: Uint8Array, hs: number, avail: number;
    if (this.hdrLen === 0 && end - pos >= HEADER_MAX) {
      h = buf;
      hs = pos;
      avail = end - pos;
    } else {
      const take = Math.min(HEADER_MAX - this.hdrLen, end - pos);
      if (this.hdr.length === 0) this.hdr = new Uint8Array(HEADER_MAX);
      this.hdr.set(buf.subarray(pos, pos + take), this.hdrLen);
      this.hdrLen += take;
      h = this.hdr;
      hs = 0;
      avail = this.hdrLen;
      pos += take; // given back below for what the header did not use
    }
    if (avail < 2) return end;
    const b0 = h[hs]!, b1 = h[hs + 1]!;
    const len7 = b1 & 0x7f;
    const masked = (b1 & 0x80) !== 0;
    const need = 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + (masked ? 4 : 0);
    if (avail < need) return end; // gathered: more header bytes to come
    const fin = (b0 & 0x80) !== 0;
    const rsv = b0 & 0x70;
    const opcode = b0 & 0x0f;
    if (rsv !== 0 && !(rsv === 0x40 && this.options.allowRsv1)) return this.fail(CloseCode.ProtocolError, "RSV bits set without a negotiated extension");
    if ((opcode > 2 && opcode < 8) || opcode > 10) return this.fail(CloseCode.ProtocolError, `reserved opcode ${opcode}`);
    if (this.requireMask && !masked) return this.fail(CloseCode.ProtocolError, "an unmasked frame from a client");
    if (masked && this.options.forbidMask) return this.fail(CloseCode.ProtocolError, "a masked frame from a server");
    let len: number;
    if (len7 === 126) len = (h[hs + 2]! << 8) | h[hs + 3]!;
    else if (len7 === 127) {
      const hi = ((h[hs + 2]! << 24) >>> 0) + (h[hs + 3]! << 16) + (h[hs + 4]! << 8) + h[hs + 5]!;
      if (hi >= 0x8000_0000) return this.fail(CloseCode.ProtocolError, "a 64-bit length with the most significant bit set");
      const lo = ((h[hs + 6]! << 24) >>> 0) + (h[hs + 7]! << 16) + (h[hs + 8]! << 8) + h[hs + 9]!;
      len = hi * 0x1_0000_0000 + lo;
    } else len = len7;
    const control = opcode >= 8;
    if (control) {
      if (!fin) return this.fail(CloseCode.ProtocolError, "a fragmented control frame");
      if (len > 125) return this.fail(CloseCode.ProtocolError, "a control frame longer than 125 bytes");
      if (rsv !== 0) return this.fail(CloseCode.ProtocolError, "RSV bits on a control frame");
    } else if (opcode === Opcode.Continuation) {
      if (this.msgOpcode === 0) return this.fail(CloseCode.ProtocolError, "a continuation frame without a message to continue");
      if (rsv !== 0) return this.fail(CloseCode.ProtocolError, "RSV1 on a continuation frame");
    } else if (this.msgOpcode !== 0) {
      return this.fail(CloseCode.ProtocolError, "a new data frame inside a fragmented message");
    }
    if (!control && this.msgLen + len > this.options.maxPayloadLength) {
      return this.fail(CloseCode.MessageTooBig, `a message over the limit of ${this.options.maxPayloadLength} bytes`);
    }
    this.fin = fin;
    this.opcode = opcode;
    this.masked = masked;
    const m = hs + need - 4;
    if (masked) this.maskKey = (h[m]! << 24) | (h[m + 1]! << 16) | (h[m + 2]! << 8) | h[m + 3]!;
    this.remaining = len;
    this.offset = 0;
    if (!control && opcode !== Opcode.Continuation) {
      this.msgOpcode = opcode;
      this.msgLen = 0;
      this.utf8State = UTF8_ACCEPT;
      this.msgCompressed = rsv === 0x40;
    }
    if (control) {
      this.control ??= new Uint8Array(125);
      this.controlLen = 0;
    }
    // Where this frame's payload starts in buf.
    let next: number;
    if (h === buf) next = hs + need;
    else {
      next = pos - (this.hdrLen - need); // header bytes past `need` belong to the payload
      this.hdrLen = 0;
    }
    this.state = DState.Payload;
    if (len === 0) this.frameDone(buf, next, next);
    return next;
  }

  /** Payload bytes buf[pos, ...): unmask in place, check, gather or hand out. */
  private payload(buf: Uint8Array, pos: number, end: number): number {
    const n = Math.min(this.remaining, end - pos);
    if (this.masked) unmask(buf, pos, pos + n, this.maskKey, this.offset);
    this.remaining -= n;
    this.offset += n;
    const opcode = this.opcode;
    if (opcode >= 8) {
      this.control!.set(buf.subarray(pos, pos + n), this.controlLen);
      this.controlLen += n;
      if (this.remaining === 0) this.frameDone(this.control!, 0, this.controlLen);
      return pos + n;
    }
    if (this.msgOpcode === Opcode.Text && !this.msgCompressed) {
      this.utf8State = utf8Step(this.utf8State, buf, pos, pos + n);
      if (this.utf8State === UTF8_REJECT) return this.fail(CloseCode.InvalidPayload, "a text message that is not valid UTF-8");
    }
    if (this.remaining === 0 && this.fin && this.msgLen === 0 && this.offset === n) {
      // The whole message is this frame, whole in this read: hand out the view.
      this.frameDone(buf, pos, pos + n);
      return pos + n;
    }
    this.gather(buf, pos, n);
    if (this.remaining === 0) this.frameDone(this.msg, 0, this.msgLen);
    return pos + n;
  }

  private gather(buf: Uint8Array, pos: number, n: number): void {
    if (n === 0) return;
    if (this.msgLen + n > this.msg.length) {
      let size = Math.max(this.msg.length * 2, 1024);
      while (size < this.msgLen + n) size *= 2;
      const bigger = new Uint8Array(size);
      bigger.set(this.msg.subarray(0, this.msgLen));
      this.msg = bigger;
    }
    this.msg.set(buf.subarray(pos, pos + n), this.msgLen);
    this.msgLen += n;
  }

  /** A frame is complete; data[from, to) is its payload (or the gathered message's). */
  private frameDone(data: Uint8Array, from: number, to: number): void {
    this.state = DState.Header;
    const opcode = this.opcode;
    if (opcode === Opcode.Ping) return this.sink.onPing(data.subarray(from, to));
    if (opcode === Opcode.Pong) return this.sink.onPong(data.subarray(from, to));
    if (opcode === Opcode.Close) return this.closeFrame(data, from, to);
    if (!this.fin) return; // more fragments to come
    const msgOpcode = this.msgOpcode as typeof Opcode.Text | typeof Opcode.Binary;
    if (msgOpcode === Opcode.Text && !this.msgCompressed && this.utf8State !== UTF8_ACCEPT) {
      this.fail(CloseCode.InvalidPayload, "a text message that ends inside a UTF-8 sequence");
      return;
    }
    this.msgOpcode = 0;
    const view = data === this.msg ? this.msg.subarray(0, this.msgLen) : data.subarray(from, to);
    this.msgLen = 0;
    if (this.msg.length > 64 * 1024) this.msg = EMPTY; // a burst of large messages pins no memory
    this.sink.onMessage(msgOpcode, view, this.msgCompressed);
  }

  private closeFrame(data: Uint8Array, from: number, to: number): void {
    const n = to - from;
    if (n === 0) return this.sink.onClose(CloseCode.NoStatus, "");
    if (n === 1) {
      this.fail(CloseCode.ProtocolError, "a close frame with a 1-byte payload");
      return;
    }
    const code = (data[from]! << 8) | data[from + 1]!;
    if (!validCloseCode(code)) {
      this.fail(CloseCode.ProtocolError, `invalid close code ${code}`);
      return;
    }
    if (!validUtf8(data, from + 2, to)) {
      this.fail(CloseCode.InvalidPayload, "a close reason that is not valid UTF-8");
      return;
    }
    this.sink.onClose(code, utf8.decode(data.subarray(from + 2, to)));
  }
}

// --- encoding (server frames: never masked) --------------------------------------------------

/** Header length of a server frame with an n-byte payload. */
export function headerLength(n: number): number {
  return n < 126 ? 2 : n < 0x1_0000 ? 4 : 10;
}

/** Writes a server frame header into out[at, ...); returns its length. */
export function writeHeader(out: Uint8Array, at: number, opcode: number, n: number, fin = true, rsv1 = false): number {
  out[at] = (fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | opcode;
  if (n < 126) {
    out[at + 1] = n;
    return 2;
  }
  if (n < 0x1_0000) {
    out[at + 1] = 126;
    out[at + 2] = n >>> 8;
    out[at + 3] = n & 0xff;
    return 4;
  }
  out[at + 1] = 127;
  const hi = Math.floor(n / 0x1_0000_0000);
  out[at + 2] = hi >>> 24;
  out[at + 3] = (hi >>> 16) & 0xff;
  out[at + 4] = (hi >>> 8) & 0xff;
  out[at + 5] = hi & 0xff;
  out[at + 6] = n >>> 24;
  out[at + 7] = (n >>> 16) & 0xff;
  out[at + 8] = (n >>> 8) & 0xff;
  out[at + 9] = n & 0xff;
  return 10;
}

/** A whole server frame (header and payload) as new bytes. */
export function encodeFrame(opcode: number, payload: Uint8Array = EMPTY, fin = true): Uint8Array {
  const out = new Uint8Array(headerLength(payload.length) + payload.length);
  const h = writeHeader(out, 0, opcode, payload.length, fin);
  out.set(payload, h);
  return out;
}

/** A close frame: the code, then the reason (UTF-8, at most 123 bytes: the control limit). */
export function encodeClose(code: number, reason = ""): Uint8Array {
  return encodeFrame(Opcode.Close, closePayload(code, reason));
}

/** A close frame's payload: the code, then the reason cut to the control limit; 1005 (no status) is empty. */
export function closePayload(code: number, reason = ""): Uint8Array {
  if (code === CloseCode.NoStatus) return EMPTY;
  const r = closeEncoder.encode(reason).subarray(0, 123);
  const p = new Uint8Array(2 + r.length);
  p[0] = code >>> 8;
  p[1] = code & 0xff;
  p.set(r, 2);
  return p;
}

const closeEncoder = new TextEncoder();
