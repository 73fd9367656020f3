// The line protocol: newline-delimited UTF-8 chat. Each line a client sends reaches every
// other client (of every protocol) as a broadcast; line clients see it as `<id>: <line>`.
// Server notices are `ERR <text>` lines (never confused with chat: chat lines start with
// a decimal id). Bytes are relayed as received; UTF-8 is not validated here.

import type { HubEncoder, HubMember, HubMessage } from "../hub.ts";
import type { Connection } from "../stream/stream.ts";
import { ERROR_MESSAGES, ErrorCode } from "./codec/errors.ts";
import { Kind } from "./codec/kinds.ts";
import { LineDecoder, type LineSink } from "./codec/line-decoder.ts";
import type { ProtocolContext, ProtocolHandler } from "./context.ts";
import { type TokenBucket, tokenMatches } from "./guards.ts";
import { SessionProtocol, sessionHandler } from "./session.ts";

const utf8 = new TextEncoder();
const LF = 10;
const CR = 13;
const SPACE = 32;

/** `ERR <text>\n` lines are constant per code: encode them once. */
const ERROR_LINES: Uint8Array[] = [];
for (const code of Object.values(ErrorCode)) {
  const text = code === ErrorCode.FRAME_TOO_LARGE ? "line too long" : ERROR_MESSAGES[code];
  ERROR_LINES[code] = utf8.encode(`ERR ${text}\n`);
}

export class LineSession implements LineSink {
  readonly decoder: LineDecoder;
  authed: boolean;
  constructor(
    private readonly proto: LineProtocol,
    readonly conn: Connection<LineSession>,
    readonly member: HubMember,
    maxLine: number,
    authed: boolean,
    readonly bucket: TokenBucket | null,
  ) {
    this.decoder = new LineDecoder(this, maxLine);
    this.authed = authed;
  }
  line(buf: Uint8Array, offset: number, length: number): void {
    this.proto.onLine(this, buf, offset, length);
  }
  tooLong(): void {
    this.proto.onTooLong(this);
  }
}

/**
 * Renders messages for line clients: `<from_id>: <text>\n` for a broadcast,
 * `<from_id> (direct): <text>\n` for a direct message. CR and LF inside the content
 * (possible in framed or json messages) become spaces, so one message stays one line.
 */
export class LineHubEncoder implements HubEncoder {
  out = new Uint8Array(1024);
  encodeBroadcast(msg: HubMessage): number {
    return this.encode(msg, ": ");
  }
  encodeDirect(msg: HubMessage): number {
    return this.encode(msg, " (direct): ");
  }
  private encode(msg: HubMessage, sep: string): number {
    msg.ensureBytes();
    const prefix = `${msg.from!.id}${sep}`; // ASCII: one byte per char
    const len = msg.length;
    const total = prefix.length + len + 1;
    if (this.out.length < total) {
      let size = this.out.length;
      while (size < total) size *= 2;
      this.out = new Uint8Array(size);
    }
    const out = this.out;
    for (let i = 0; i < prefix.length; i++) out[i] = prefix.charCodeAt(i);
    const src = msg.bytes!;
    const base = msg.offset;
    let p = prefix.length;
    for (let i = 0; i < len; i++) {
      const b = src[base + i]!;
      out[p++] = b === LF || b === CR ? SPACE : b;
    }
    out[p++] = LF;
    return p;
  }
}

class LineProtocol extends SessionProtocol<LineSession> {
  constructor(ctx: ProtocolContext) {
    super(ctx, "line", new LineHubEncoder());
  }

  protected newSession(conn: Connection<LineSession>, member: HubMember, authed: boolean, bucket: TokenBucket | null): LineSession {
    return new LineSession(this, conn, member, this.ctx.options.maxLine, authed, bucket);
  }

  /** Peer half-closed: a last line without "\n" is still a line. */
  end(conn: Connection<LineSession>): void {
    const s = conn.data;
    // A connection refused with full() never ran open(): nothing to finish.
    if (s === undefined) return;
    this.beginBatch(s);
    try {
      s.decoder.finish();
    } finally {
      this.ctx.stats.endBatch();
    }
  }

  onTooLong(s: LineSession): void {
    // The decoder has already stopped: the rest of an over-long line is not read.
    this.ctx.stats.countIn(Kind.LINE);
    this.fail(s, ErrorCode.FRAME_TOO_LARGE);
    this.ctx.stats.tick();
  }

  onLine(s: LineSession, buf: Uint8Array, off: number, len: number): void {
    const ctx = this.ctx;
    ctx.stats.countIn(Kind.LINE);
    if (this.admitCommon(s)) {
      if (!s.authed) this.auth(s, buf, off, len);
      else {
        const n = ctx.hub.broadcastBytes(s.member, buf, off, len);
        ctx.stats.countOut(Kind.BROADCAST_MSG, n);
      }
    }
    ctx.stats.tick();
  }

  /** With auth on, the first line is the token. Success is silent; failure closes. */
  private auth(s: LineSession, buf: Uint8Array, off: number, len: number): void {
    const expected = this.ctx.authToken;
    if (expected !== null && !tokenMatches(buf, off, len, expected)) {
      this.fail(s, ErrorCode.UNAUTHORIZED);
      return;
    }
    s.authed = true;
    this.ctx.hub.join(s.member);
  }

  override sendError(conn: Connection<any>, code: number): void {
    const line = ERROR_LINES[code]!;
    conn.write(line, 0, line.length);
    const stats = this.ctx.stats;
    stats.countError(code);
    stats.countOut(Kind.ERROR);
  }
}

/** Build the line protocol's handler table. */
export function createLineProtocol(ctx: ProtocolContext): ProtocolHandler<LineSession> {
  const p = new LineProtocol(ctx);
  return { ...sessionHandler("line", p), end: (conn) => p.end(conn) };
}
