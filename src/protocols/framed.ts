// The framed protocol (the default): `u16 type, u16 length` big-endian, then the body.
// See docs/PROTOCOL.md for the byte-level spec.
//
// Hot path (PING/ECHO): the decoder hands each frame out as (buf, offset, length) into
// the reactor's receive buffer when the frame is whole in the chunk. A PONG or ECHO_REPLY
// is its request with the type bumped by one (same length, same body), so the session
// retypes the request's header in place (buf[offset - 4], which the decoder has already
// parsed) and extends an "echo run": consecutive such frames of one read are queued with
// ONE copy (conn.write of the whole run) instead of one header write and one body copy
// per frame. The run is written before anything else is (any other frame, an error, the
// end of the read), so replies to one connection still come in request order. No
// allocation per message.

import { SendResult, type HubEncoder, type HubMember, type HubMessage } from "../hub.ts";
import type { Connection } from "../stream/stream.ts";
import { ErrorCode } from "./codec/errors.ts";
import {
  encodeError,
  FRAMED_MAX_BODY,
  MAX_RELAYED_PAYLOAD,
  MsgType,
  PROTOCOL_VERSION,
  readU32,
  writeFrameHeader,
  writeU32,
} from "./codec/framed.ts";
import { FRAME_HEADER_SIZE, FrameDecoder, HeaderLayout, type FrameSink } from "./codec/frame-decoder.ts";
import { inboundFramedKind, Kind } from "./codec/kinds.ts";
import { statsReplyLength, writeStatsReply } from "./codec/stats-reply.ts";
import type { ProtocolContext, ProtocolHandler } from "./context.ts";
import { type TokenBucket, tokenMatches } from "./guards.ts";
import { SessionProtocol, sessionHandler } from "./session.ts";

/** ERROR frames are constant per code: encode them once. */
const ERROR_FRAMES: Uint8Array[] = [];
for (const code of Object.values(ErrorCode)) ERROR_FRAMES[code] = encodeError(code);

/** Per-connection state (conn.data). */
export class FramedSession implements FrameSink {
  readonly decoder: FrameDecoder;
  authed: boolean;
  /** The pending echo run: runBuf[runStart, runEnd) are retyped requests (null: none). */
  runBuf: Uint8Array | null = null;
  runStart = 0;
  runEnd = 0;
  runPongs = 0;
  runEchoes = 0;
  constructor(
    private readonly proto: FramedProtocol,
    readonly conn: Connection<FramedSession>,
    readonly member: HubMember,
    maxFrame: number,
    authed: boolean,
    readonly bucket: TokenBucket | null,
  ) {
    this.decoder = new FrameDecoder(this, maxFrame, HeaderLayout.TypeLength16);
    this.authed = authed;
  }
  frame(type: number, buf: Uint8Array, offset: number, length: number): void {
    this.proto.onFrame(this, type, buf, offset, length);
  }
  oversize(type: number, length: number): void {
    this.proto.onOversize(this, type, length);
  }
}

/** Renders other clients' broadcasts/direct messages as BROADCAST_MSG / DIRECT_MSG frames. */
export class FramedHubEncoder implements HubEncoder {
  out = new Uint8Array(1024);
  encodeBroadcast(msg: HubMessage): number {
    return this.encode(MsgType.BROADCAST_MSG, msg);
  }
  encodeDirect(msg: HubMessage): number {
    return this.encode(MsgType.DIRECT_MSG, msg);
  }
  private encode(type: number, msg: HubMessage): number {
    msg.ensureBytes();
    const len = msg.length;
    // A u16 length must cover the u32 sender id plus the payload.
    if (len > MAX_RELAYED_PAYLOAD) return -1;
    const total = 8 + len;
    if (this.out.length < total) {
      let size = this.out.length;
      while (size < total) size *= 2;
      this.out = new Uint8Array(size);
    }
    const out = this.out;
    writeFrameHeader(out, 0, type, 4 + len);
    writeU32(out, 4, msg.from!.id);
    out.set(msg.bytes!.subarray(msg.offset, msg.offset + len), 8);
    return total;
  }
}

class FramedProtocol extends SessionProtocol<FramedSession> {
  readonly maxFrame: number;
  /** Reply headers and small fixed replies are built here; write() copies it at once. */
  private readonly scratch = new Uint8Array(16);
  private statsBuf = new Uint8Array(1024);

  constructor(ctx: ProtocolContext) {
    super(ctx, "framed", new FramedHubEncoder());
    this.maxFrame = Math.min(ctx.options.maxFrame ?? FRAMED_MAX_BODY, FRAMED_MAX_BODY);
  }

  protected newSession(conn: Connection<FramedSession>, member: HubMember, authed: boolean, bucket: TokenBucket | null): FramedSession {
    return new FramedSession(this, conn, member, this.maxFrame, authed, bucket);
  }

  onFrame(s: FramedSession, type: number, buf: Uint8Array, off: number, len: number): void {
    const stats = this.ctx.stats;
    // PING/ECHO whose header sits in buf right before the body (off >= 4: the decoder's
    // contract), from a session that passes every gate without side effects (authed, not
    // rate limited, not shutting down): join the echo run. Everything else ends it first.
    // Per-message timing needs each reply written when its message is handled: no runs.
    const joins =
      (type === MsgType.PING || type === MsgType.ECHO) && off >= FRAME_HEADER_SIZE && s.authed &&
      s.bucket === null && !this.ctx.shuttingDown && !stats.perMessageTiming;
    if (!joins || s.runBuf !== buf || s.runEnd !== off - FRAME_HEADER_SIZE) {
      // Writing the run may close the connection (a slow consumer past --max-buffered):
      // then the decoder is stopped and this frame is not handled, as if it never came.
      if (!this.flushRun(s)) return;
    }
    if (stats.enabled) stats.messagesIn[inboundFramedKind(type)]++;
    if (joins) {
      const h = off - FRAME_HEADER_SIZE;
      if (s.runBuf === null) {
        s.runBuf = buf;
        s.runStart = h;
      }
      // PONG = PING + 1 and ECHO_REPLY = ECHO + 1; both fit the low byte (the high one is 0).
      buf[h + 1] = type + 1;
      s.runEnd = off + len;
      if (type === MsgType.PING) s.runPongs++;
      else s.runEchoes++;
    } else if (this.admit(s, type)) {
      this.dispatch(s, type, buf, off, len);
    }
    stats.tick();
  }

  /**
   * Queues the pending echo run with one write (see the top of this file). False when the
   * session is over (decoder stopped), e.g. that write closed the connection.
   */
  private flushRun(s: FramedSession): boolean {
    const buf = s.runBuf;
    if (buf === null) return !s.decoder.isStopped;
    s.runBuf = null;
    s.conn.write(buf, s.runStart, s.runEnd);
    const stats = this.ctx.stats;
    if (stats.enabled) {
      stats.messagesOut[Kind.PONG] += s.runPongs;
      stats.messagesOut[Kind.ECHO_REPLY] += s.runEchoes;
    }
    s.runPongs = 0;
    s.runEchoes = 0;
    return !s.decoder.isStopped;
  }

  protected override endData(s: FramedSession): void {
    this.flushRun(s);
  }

  onOversize(s: FramedSession, type: number, _len: number): void {
    // The header was read, so the stream is in sync: the decoder skips the body and
    // decoding continues; answer and stay open.
    if (!this.flushRun(s)) return;
    const stats = this.ctx.stats;
    if (stats.enabled) stats.messagesIn[inboundFramedKind(type)]++;
    if (this.admit(s, type)) this.sendError(s.conn, ErrorCode.FRAME_TOO_LARGE);
    stats.tick();
  }

  /** Shutdown, rate limit and auth gates, in that order. False: already answered. */
  private admit(s: FramedSession, type: number): boolean {
    if (!this.admitCommon(s)) return false;
    if (!s.authed && type !== MsgType.HELLO) {
      this.fail(s, ErrorCode.UNAUTHORIZED);
      return false;
    }
    return true;
  }

  private dispatch(s: FramedSession, type: number, buf: Uint8Array, off: number, len: number): void {
    switch (type) {
      case MsgType.PING:
        this.reply(s.conn, MsgType.PONG, Kind.PONG, buf, off, len);
        return;
      case MsgType.ECHO:
        this.reply(s.conn, MsgType.ECHO_REPLY, Kind.ECHO_REPLY, buf, off, len);
        return;
      case MsgType.HELLO:
        this.hello(s, buf, off, len);
        return;
      case MsgType.BROADCAST:
        this.broadcast(s, buf, off, len);
        return;
      case MsgType.SEND_TO:
        this.sendTo(s, buf, off, len);
        return;
      case MsgType.STATS:
        if (len !== 0) this.sendError(s.conn, ErrorCode.BAD_BODY);
        else this.statsReply(s.conn);
        return;
      case MsgType.ERROR:
        // A client reporting an error to us: counted, never answered (no error loops).
        return;
      default:
        this.sendError(s.conn, ErrorCode.UNKNOWN_TYPE);
    }
  }

  private hello(s: FramedSession, buf: Uint8Array, off: number, len: number): void {
    if (len === 1) {
      this.sendError(s.conn, ErrorCode.BAD_BODY);
      return;
    }
    const expected = this.ctx.authToken;
    if (!s.authed && expected !== null) {
      // Token = the body after the u16 version; a HELLO without one fails.
      const ok = len >= 2 && tokenMatches(buf, off + 2, len - 2, expected);
      if (!ok) {
        this.fail(s, ErrorCode.UNAUTHORIZED);
        return;
      }
      s.authed = true;
      this.ctx.hub.join(s.member);
    }
    // The client's u16 version (when len >= 2) is informational: there is only version
    // 1, and WELCOME tells the client which version the server speaks.
    const b = this.scratch;
    writeFrameHeader(b, 0, MsgType.WELCOME, 6);
    writeU32(b, 4, s.member.id);
    b[8] = PROTOCOL_VERSION >>> 8;
    b[9] = PROTOCOL_VERSION & 0xff;
    s.conn.write(b, 0, 10);
    this.countOut(Kind.WELCOME);
  }

  private broadcast(s: FramedSession, buf: Uint8Array, off: number, len: number): void {
    if (len > MAX_RELAYED_PAYLOAD) {
      // BROADCAST_MSG adds a u32 sender id: this body cannot be relayed in one frame.
      this.sendError(s.conn, ErrorCode.FRAME_TOO_LARGE);
      return;
    }
    const n = this.ctx.hub.broadcastBytes(s.member, buf, off, len);
    if (this.ctx.stats.enabled) this.ctx.stats.messagesOut[Kind.BROADCAST_MSG] += n;
    this.u32Reply(s.conn, MsgType.BROADCAST_ACK, Kind.BROADCAST_ACK, n);
  }

  private sendTo(s: FramedSession, buf: Uint8Array, off: number, len: number): void {
    if (len < 4) {
      this.sendError(s.conn, ErrorCode.BAD_BODY);
      return;
    }
    const toId = readU32(buf, off);
    const hub = this.ctx.hub;
    const target = hub.get(toId);
    // Not here: perhaps a client of another worker (the hub's transport knows).
    const r = target !== undefined ? hub.sendBytes(s.member, target, buf, off + 4, len - 4) : hub.sendRemoteBytes(s.member, toId, buf, off + 4, len - 4);
    if (r !== SendResult.Ok) {
      this.sendError(s.conn, r === SendResult.TooLarge ? ErrorCode.FRAME_TOO_LARGE : ErrorCode.NO_SUCH_CLIENT);
      return;
    }
    this.countOut(Kind.DIRECT_MSG);
    this.u32Reply(s.conn, MsgType.SEND_ACK, Kind.SEND_ACK, toId);
  }

  private statsReply(conn: Connection<any>): void {
    const snap = this.ctx.snapshot();
    const bodyLen = statsReplyLength(snap);
    if (this.statsBuf.length < 4 + bodyLen) this.statsBuf = new Uint8Array(4 + bodyLen);
    const b = this.statsBuf;
    writeFrameHeader(b, 0, MsgType.STATS_REPLY, bodyLen);
    writeStatsReply(snap, b, 4);
    conn.write(b, 0, 4 + bodyLen);
    this.countOut(Kind.STATS_REPLY);
  }

  private reply(conn: Connection<any>, type: number, kind: number, buf: Uint8Array, off: number, len: number): void {
    conn.writePrefixed(((type << 16) | len) >>> 0, buf, off, off + len);
    this.countOut(kind);
  }

  private u32Reply(conn: Connection<any>, type: number, kind: number, value: number): void {
    const b = this.scratch;
    writeFrameHeader(b, 0, type, 4);
    writeU32(b, 4, value);
    conn.write(b, 0, 8);
    this.countOut(kind);
  }

  private countOut(kind: number): void {
    const stats = this.ctx.stats;
    if (stats.enabled) stats.messagesOut[kind]++;
  }

  override sendError(conn: Connection<any>, code: number): void {
    conn.write(ERROR_FRAMES[code]!);
    const stats = this.ctx.stats;
    if (stats.enabled) {
      stats.errors[code]++;
      stats.messagesOut[Kind.ERROR]++;
    }
  }
}

/** Build the framed protocol's handler table. */
export function createFramedProtocol(ctx: ProtocolContext): ProtocolHandler<FramedSession> {
  return sessionHandler("framed", new FramedProtocol(ctx));
}
