// The WebSocket protocol, client side (RFC 6455). The connection starts as HTTP: `hello` is
// the Upgrade request (a random Sec-WebSocket-Key), and the 101 answer's Sec-WebSocket-Accept
// must match it. Then frames: ours are masked with a fresh random key each (§5.3, also when
// the bench writes one encoded request many times), the server's must not be masked. Pings
// from the server are answered, a close frame is answered with its code and ends the
// connection, and a close we start waits for the server's answer (the Client bounds the wait).
//
// What a message means depends on the endpoint. On the chat (/ws/chat, a hub client) every
// text message is a chat line, `<id>: <text>` or `<id> (direct): <text>`, and a message we
// send is a broadcast nobody acknowledges. On any other path the server is taken for an echo
// server (/ws/echo): a message answers the oldest echo request in flight, and one that
// arrives with none in flight is shown as a message. A ping is a WebSocket ping frame on both.

import { closePayload, headerLength, Opcode, writeHeader, WsFrameDecoder, type WsFrameSink } from "../protocols/ws/frame.ts";
import { acceptKey, hasToken } from "../protocols/ws/handshake.ts";
import { ClientError, ConnectionClosedError, formatHostPort, NotSupportedError, ProtocolMismatchError } from "./errors.ts";
import { utf8, utf8Lossy, WS_CHAT_PATH, type Encoded, type Op, type TransportSink, type Wire } from "./protocol.ts";

export interface WsWireOptions {
  host: string;
  port: number;
  /** The resource to open (path and query), e.g. "/ws/echo". */
  path: string;
  /** Largest message accepted from the server (all fragments); default 64 MiB. */
  maxPayloadLength?: number;
}

/** Longest answer head to the Upgrade: anything longer is not the WebSocket server we want. */
const MAX_HEAD = 16 * 1024;
const DEFAULT_MAX_MESSAGE = 64 * 1024 * 1024;

// --- masking ----------------------------------------------------------------------------------

// Masking keys come from the system's CSPRNG (RFC 6455 §5.3: unpredictable), drawn 256 at a
// time so a key costs no call of its own on the bench's path.
const keyPool = new Uint32Array(256);
let keyNext = keyPool.length;

/** A fresh 32-bit masking key. */
export function nextMaskKey(): number {
  if (keyNext === keyPool.length) {
    crypto.getRandomValues(keyPool);
    keyNext = 0;
  }
  return keyPool[keyNext++]!;
}

/** XORs buf[from, to) with `key` (big-endian bytes), the key's phase starting at `from`. */
export function applyMask(buf: Uint8Array, from: number, to: number, key: number): void {
  const k0 = key >>> 24, k1 = (key >>> 16) & 0xff, k2 = (key >>> 8) & 0xff, k3 = key & 0xff;
  let i = from;
  for (; i + 4 <= to; i += 4) {
    buf[i] = buf[i]! ^ k0;
    buf[i + 1] = buf[i + 1]! ^ k1;
    buf[i + 2] = buf[i + 2]! ^ k2;
    buf[i + 3] = buf[i + 3]! ^ k3;
  }
  if (i < to) buf[i] = buf[i++]! ^ k0;
  if (i < to) buf[i] = buf[i++]! ^ k1;
  if (i < to) buf[i] = buf[i]! ^ k2;
}

function writeKey(out: Uint8Array, at: number, key: number): void {
  out[at] = key >>> 24;
  out[at + 1] = (key >>> 16) & 0xff;
  out[at + 2] = (key >>> 8) & 0xff;
  out[at + 3] = key & 0xff;
}

/** A client frame: the header with the mask bit, a fresh key, the masked payload. */
export function encodeClientFrame(opcode: number, payload: Uint8Array, fin = true): Uint8Array {
  const n = payload.length;
  const h = headerLength(n);
  const out = new Uint8Array(h + 4 + n);
  writeHeader(out, 0, opcode, n, fin);
  out[1] = out[1]! | 0x80;
  const key = nextMaskKey();
  writeKey(out, h, key);
  out.set(payload, h + 4);
  applyMask(out, h + 4, out.length, key);
  return out;
}

/** Masks an encoded client frame again, in place, with a fresh key. */
export function remask(frame: Uint8Array): void {
  const len7 = frame[1]! & 0x7f;
  const k = len7 === 126 ? 4 : len7 === 127 ? 10 : 2;
  const old = ((frame[k]! << 24) | (frame[k + 1]! << 16) | (frame[k + 2]! << 8) | frame[k + 3]!) >>> 0;
  const key = nextMaskKey();
  // XOR with old ^ new removes the old mask and applies the new one in one pass.
  applyMask(frame, k + 4, frame.length, (old ^ key) >>> 0);
  writeKey(frame, k, key);
}

/** A random Sec-WebSocket-Key: 16 bytes from the CSPRNG, base64. */
export function randomWsKey(): string {
  return Buffer.from(crypto.getRandomValues(new Uint8Array(16))).toString("base64");
}

const CLOSE_NAMES: Record<number, string> = {
  1000: "normal closure",
  1001: "going away",
  1002: "protocol error",
  1003: "unsupported data",
  1005: "no status code",
  1006: "abnormal closure",
  1007: "invalid payload",
  1008: "policy violation",
  1009: "message too big",
  1010: "mandatory extension",
  1011: "internal error",
  1012: "service restart",
  1013: "try again later",
  1014: "bad gateway",
};

/** "1001 (going away): server shutting down". */
export function describeCloseCode(code: number, reason: string): string {
  const name = CLOSE_NAMES[code];
  return `${code}${name ? ` (${name})` : ""}${reason ? `: ${reason}` : ""}`;
}

/** The path of a resource (without its query): what tells the chat from an echo endpoint. */
function pathOf(resource: string): string {
  const q = resource.indexOf("?");
  return q < 0 ? resource : resource.slice(0, q);
}

/** Null when `path` can be sent as an HTTP request target, else why not. */
export function checkWsPath(path: string): string | null {
  if (!path.startsWith("/")) return `a WebSocket path starts with "/", got ${JSON.stringify(path)}`;
  // Visible ASCII only: a space, CR or LF would end the request line or inject a header.
  if (!/^[\x21-\x7e]+$/.test(path)) return `a WebSocket path is visible ASCII (percent-encode the rest), got ${JSON.stringify(path)}`;
  return null;
}

const enum WsState {
  /** The Upgrade request is out (or about to be); reading the answer's head. */
  Handshake,
  Open,
  /** Our close frame is sent: waiting for the server's. */
  Closing,
  /** A close frame came (or the protocol failed): nothing more is read or sent. */
  Done,
}

/** An encoded ping keeps its payload, which the pong must carry back. */
interface PingEncoded extends Encoded {
  payload: Uint8Array;
}

export class WsWire implements Wire, WsFrameSink {
  readonly protocol = "ws";
  readonly names: Record<Op, readonly [string, string]> = {
    hello: ["Upgrade request", "101 Switching Protocols"],
    ping: ["ping frame", "pong frame"],
    echo: ["message", "echoed message"],
    broadcast: ["chat message", "(no reply)"],
    send: ["-", "-"],
    stats: ["-", "-"],
  };
  readonly path: string;
  /** The chat endpoint: messages are chat lines, not echo replies. */
  readonly chat: boolean;
  /** How the server closed the WebSocket, once it did. */
  peerClose: string | null = null;
  private state = WsState.Handshake;
  private key = "";
  private head: Uint8Array | null = null;
  private headLen = 0;
  private readonly decoder: WsFrameDecoder;
  private echoesInFlight = 0;
  /** Payloads of the pings waiting for their pong, oldest first. */
  private readonly pings: Uint8Array[] = [];
  private pingSeq = 0;

  constructor(private readonly sink: TransportSink, private readonly options: WsWireOptions) {
    const bad = checkWsPath(options.path);
    if (bad !== null) throw new ClientError("bad_path", bad);
    this.path = options.path;
    this.chat = pathOf(options.path) === WS_CHAT_PATH;
    this.decoder = new WsFrameDecoder(this, {
      maxPayloadLength: options.maxPayloadLength ?? DEFAULT_MAX_MESSAGE,
      requireMask: false,
      forbidMask: true,
    });
  }

  get inFrame(): boolean {
    return this.state === WsState.Handshake ? this.headLen > 0 : this.decoder.inFrame;
  }

  /** The WebSocket is open: the 101 came and no close frame has gone either way. */
  get isOpen(): boolean {
    return this.state === WsState.Open;
  }

  push(bytes: Uint8Array): void {
    if (this.state === WsState.Handshake) this.handshakeBytes(bytes);
    else if (this.state !== WsState.Done) this.decoder.push(bytes);
  }

  /** The server sent FIN. Without a close frame first, that is an abnormal closure (1006). */
  finish(): void {
    if (this.state === WsState.Open || this.state === WsState.Closing) {
      if (this.state === WsState.Open) this.peerClose = "no close frame (1006, abnormal closure)";
      this.state = WsState.Done;
    }
  }

  // --- the opening handshake ------------------------------------------------------------------

  hello(token: string | undefined): Encoded {
    this.key = randomWsKey();
    let auth = "";
    if (token !== undefined) {
      if (/[\r\n]/.test(token)) throw new ClientError("bad_token", "an auth token cannot contain CR or LF");
      // bunpoll's endpoints check no token; a server behind a proxy that does reads it here.
      auth = `Authorization: Bearer ${token}\r\n`;
    }
    const request =
      `GET ${this.path} HTTP/1.1\r\nHost: ${formatHostPort(this.options.host, this.options.port)}\r\n` +
      `Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${this.key}\r\nSec-WebSocket-Version: 13\r\n${auth}\r\n`;
    return { bytes: utf8.encode(request), expectsReply: true };
  }

  private handshakeBytes(bytes: Uint8Array): void {
    const prev = this.headLen;
    if (this.head === null || this.head.length < prev + bytes.length) {
      const bigger = new Uint8Array(Math.max(1024, (prev + bytes.length) * 2));
      if (this.head !== null) bigger.set(this.head.subarray(0, prev));
      this.head = bigger;
    }
    this.head.set(bytes, prev);
    this.headLen += bytes.length;
    const buf = this.head;
    let end = -1;
    for (let i = Math.max(0, prev - 3); i + 3 < this.headLen; i++) {
      if (buf[i] === 13 && buf[i + 1] === 10 && buf[i + 2] === 13 && buf[i + 3] === 10) {
        end = i;
        break;
      }
    }
    if (end < 0) {
      if (this.headLen > MAX_HEAD) this.failHandshake(`the answer to the WebSocket Upgrade has no end of head within ${MAX_HEAD} bytes`);
      return;
    }
    const headText = new TextDecoder("latin1").decode(buf.subarray(0, end));
    const rest = buf.slice(end + 4, this.headLen);
    this.head = null;
    this.headLen = 0;
    if (!this.checkAnswer(headText, rest)) return;
    this.state = WsState.Open;
    this.sink.reply({ op: "hello", clientId: null, label: null });
    // Frames the server sent right behind its 101.
    if (rest.length > 0 && this.state === WsState.Open) this.decoder.push(rest);
  }

  private failHandshake(detail: string, error: Error = new ProtocolMismatchError(detail)): void {
    this.state = WsState.Done;
    this.head = null;
    this.headLen = 0;
    this.sink.fail(error);
  }

  /** Whether the head answers our Upgrade as RFC 6455 §4.1 requires; fails the connection if not. */
  private checkAnswer(head: string, body: Uint8Array): boolean {
    const lines = head.split("\r\n");
    const status = /^HTTP\/1\.[01] (\d{3})(?: (.*))?$/.exec(lines[0]!);
    if (status === null) {
      this.failHandshake(`the answer to the WebSocket Upgrade is not HTTP (it starts ${JSON.stringify(lines[0]!.slice(0, 40))}); is the server speaking HTTP on this port?`);
      return false;
    }
    const code = Number(status[1]);
    const headers = new Map<string, string>();
    for (let i = 1; i < lines.length; i++) {
      const colon = lines[i]!.indexOf(":");
      if (colon <= 0) continue;
      const name = lines[i]!.slice(0, colon).trim().toLowerCase();
      const value = lines[i]!.slice(colon + 1).trim();
      headers.set(name, headers.has(name) ? `${headers.get(name)}, ${value}` : value);
    }
    if (code !== 101) {
      // The body usually says why (our server writes one line); show its start if it came along.
      const said = utf8Lossy.decode(body.subarray(0, 200)).split("\n")[0]!.trim();
      const reason = status[2] ? ` ${status[2]}` : "";
      const version = code === 426 && headers.has("sec-websocket-version") ? ` (the server speaks version ${headers.get("sec-websocket-version")})` : "";
      this.failHandshake("", new ClientError(`http_${code}`, `the server refused the WebSocket upgrade of ${this.path}: ${code}${reason}${said ? `: ${said}` : ""}${version}`));
      return false;
    }
    const upgrade = headers.get("upgrade");
    if (!hasToken(upgrade, "websocket")) {
      this.failHandshake(`the 101 answer lacks "Upgrade: websocket" (got ${upgrade === undefined ? "none" : JSON.stringify(upgrade)})`);
      return false;
    }
    const connection = headers.get("connection");
    if (!hasToken(connection, "upgrade")) {
      this.failHandshake(`the 101 answer lacks "Connection: Upgrade" (got ${connection === undefined ? "none" : JSON.stringify(connection)})`);
      return false;
    }
    const accept = headers.get("sec-websocket-accept");
    const expected = acceptKey(this.key);
    if (accept !== expected) {
      this.failHandshake(`the server's Sec-WebSocket-Accept is ${accept === undefined ? "missing" : JSON.stringify(accept)}, expected ${JSON.stringify(expected)} for our key`);
      return false;
    }
    // We offer no extension and no subprotocol, so the server may not pick one (§4.1).
    for (const h of ["sec-websocket-extensions", "sec-websocket-protocol"]) {
      if (headers.has(h)) {
        this.failHandshake(`the server answered ${h} ${JSON.stringify(headers.get(h))}, which we did not offer`);
        return false;
      }
    }
    return true;
  }

  // --- frames from the server ---------------------------------------------------------------

  onMessage(opcode: typeof Opcode.Text | typeof Opcode.Binary, data: Uint8Array): void {
    if (this.state !== WsState.Open) return; // after our close frame the peer may still send; it is dropped
    const isText = opcode === Opcode.Text;
    if (!this.chat && this.echoesInFlight > 0) {
      this.echoesInFlight--;
      // The data is a view into the read buffer: decode or copy it before the reply leaves.
      if (isText) this.sink.reply({ op: "echo", bytes: null, text: utf8Lossy.decode(data) });
      else this.sink.reply({ op: "echo", bytes: data.slice(), text: null });
      return;
    }
    const text = utf8Lossy.decode(data);
    const m = this.chat && isText ? CHAT_RE.exec(text) : null;
    if (m !== null) {
      const body = text.slice(m[0].length);
      this.sink.message({ kind: m[2] ? "direct" : "broadcast", fromId: Number(m[1]), from: m[1]!, text: body, payload: utf8.encode(body) });
    } else {
      this.sink.message({ kind: "broadcast", fromId: null, from: "server", text, payload: data.slice() });
    }
  }

  onPing(payload: Uint8Array): void {
    if (this.state === WsState.Open) this.sink.write(encodeClientFrame(Opcode.Pong, payload));
  }

  /**
   * A pong answers the oldest ping with the same payload, and the pings before it (a server
   * may answer only the latest of several, §5.5.3). A pong that matches none is unsolicited
   * (a heartbeat) and ignored.
   */
  onPong(payload: Uint8Array): void {
    if (this.state !== WsState.Open) return;
    const i = this.pings.findIndex((p) => sameBytes(p, payload));
    if (i < 0) return;
    this.pings.splice(0, i + 1);
    for (let k = 0; k <= i; k++) this.sink.reply({ op: "ping" });
  }

  onClose(code: number, reason: string): void {
    const startedByServer = this.state === WsState.Open;
    this.state = WsState.Done;
    if (startedByServer) {
      this.peerClose = describeCloseCode(code, reason);
      // Echo the code (§5.5.1); a close without one is answered without one.
      this.sink.write(encodeClientFrame(Opcode.Close, closePayload(code)));
    }
    this.sink.end();
  }

  onError(code: number, message: string): void {
    this.state = WsState.Done;
    this.sink.fail(
      new ProtocolMismatchError(`the server broke the WebSocket protocol: ${message} (closed with ${code})`),
      encodeClientFrame(Opcode.Close, closePayload(code, message)),
    );
  }

  // --- requests -----------------------------------------------------------------------------

  private checkOpen(): void {
    if (this.state !== WsState.Open) throw new ConnectionClosedError("the WebSocket is closing");
  }

  ping(payload: Uint8Array): PingEncoded {
    this.checkOpen();
    // Each ping carries its own payload so that its pong is told from an unsolicited one.
    const p = payload.length > 0 ? payload : utf8.encode(`bunpoll-client ping ${++this.pingSeq}`);
    if (p.length > 125) throw new ClientError("frame_too_large", `a ping payload is at most 125 bytes (a control frame), got ${p.length}`);
    return { bytes: encodeClientFrame(Opcode.Ping, p), expectsReply: true, payload: p.slice() };
  }

  echo(payload: Uint8Array | string): Encoded {
    if (this.chat) throw new ClientError("not_supported", `echo needs an echo endpoint such as /ws/echo: ${this.path} broadcasts what it gets`);
    this.checkOpen();
    return typeof payload === "string"
      ? { bytes: encodeClientFrame(Opcode.Text, utf8.encode(payload)), expectsReply: true }
      : { bytes: encodeClientFrame(Opcode.Binary, payload), expectsReply: true };
  }

  /** A text message on the chat; nothing acknowledges it. */
  broadcast(payload: Uint8Array | string): Encoded {
    if (!this.chat) throw new ClientError("not_supported", `broadcast needs the chat endpoint ${WS_CHAT_PATH}: ${this.path} is not the chat`);
    this.checkOpen();
    // The chat takes text only (binary closes with 1003).
    const text = typeof payload === "string" ? payload : utf8Lossy.decode(payload);
    return { bytes: encodeClientFrame(Opcode.Text, utf8.encode(text)), expectsReply: false };
  }

  send(): Encoded {
    throw new NotSupportedError("send", "ws");
  }

  stats(): Encoded {
    throw new NotSupportedError("stats", "ws");
  }

  requestWritten(op: Op, encoded: Encoded): void {
    if (op === "echo") this.echoesInFlight++;
    else if (op === "ping") this.pings.push((encoded as PingEncoded).payload);
  }

  /** Every frame leaves with a key of its own, however often one encoded request is written. */
  beforeWrite(op: Op, encoded: Encoded): void {
    if (op !== "hello") remask(encoded.bytes);
  }

  /** Our close frame (1000), once: the server answers it and the Client then ends the stream. */
  farewell(): Uint8Array | null {
    if (this.state !== WsState.Open) return null;
    this.state = WsState.Closing;
    return encodeClientFrame(Opcode.Close, closePayload(1000));
  }
}

const CHAT_RE = /^(\d+)( \(direct\))?: /;

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
