// What the framed, json and line protocols share: a per-connection session registered in
// the hub, a decoder fed once per read (timed as one stats batch, whose clock reading also
// serves the rate limiter, and run as one hub batch, so the read's broadcasts are
// delivered with one write per recipient), the shutdown and rate-limit gates, and
// "answer, then close". Each protocol adds its decoder, its message handling and its error
// encoding.

import { formatHostPort } from "../../ffi/index.ts";
import type { HubEncoder, HubMember } from "../hub.ts";
import type { CloseReason, Connection } from "../stream/stream.ts";
import { ErrorCode, closeReasonFor } from "./codec/errors.ts";
import type { ProtocolContext, ProtocolHandler } from "./context.ts";
import type { ProtocolName } from "./registry.ts";
import { RateVerdict, TokenBucket } from "./guards.ts";

/** The decoder interface the shared code needs (FrameDecoder, LineDecoder). */
export interface SessionDecoder {
  push(chunk: Uint8Array): void;
  stop(): void;
  readonly inFrame: boolean;
}

/** Per-connection state (conn.data) of a hub protocol. */
export interface Session {
  readonly conn: Connection<any>;
  readonly member: HubMember;
  readonly decoder: SessionDecoder;
  readonly bucket: TokenBucket | null;
  authed: boolean;
}

export abstract class SessionProtocol<S extends Session> {
  protected readonly channel: number;
  /** Monotonic time of the current `data` batch, for the rate limiter. */
  batchNow = 0;

  constructor(readonly ctx: ProtocolContext, name: ProtocolName, encoder: HubEncoder) {
    this.channel = ctx.hub.channel(name, encoder);
  }

  protected abstract newSession(conn: Connection<S>, member: HubMember, authed: boolean, bucket: TokenBucket | null): S;

  /** Writes the protocol's error message for `code` (and counts it). */
  abstract sendError(conn: Connection<any>, code: number, message?: string): void;

  open(conn: Connection<S>): void {
    const ctx = this.ctx;
    const authed = ctx.authToken === null;
    const member = ctx.hub.add(conn, this.channel, formatHostPort(conn.remoteAddress, conn.remotePort), authed);
    const rl = ctx.options.rateLimit;
    conn.data = this.newSession(conn, member, authed, rl ? new TokenBucket(rl, ctx.now()) : null);
  }

  data(conn: Connection<S>, bytes: Uint8Array): void {
    const s = conn.data;
    const hub = this.ctx.hub;
    this.beginBatch(s);
    // One hub batch per read: the broadcasts this read carries reach each recipient in one
    // write (see hub.ts). Flushed even if decoding throws, and inside the stats batch,
    // whose latency includes the deliveries.
    hub.beginBatch();
    try {
      try {
        s.decoder.push(bytes);
      } finally {
        this.endData(s);
      }
    } finally {
      try {
        hub.endBatch();
      } finally {
        this.ctx.stats.endBatch();
      }
    }
  }

  /** The read is decoded (or decoding threw): write what the protocol held back. */
  protected endData(_s: S): void {}

  close(conn: Connection<S>, _reason: CloseReason): void {
    const s = conn.data;
    // A connection refused with full() never ran open(): it has no session.
    if (s === undefined) return;
    s.decoder.stop();
    this.ctx.hub.remove(s.member);
  }

  /** Starts a stats batch; one clock read serves the histogram and the rate limiter. */
  protected beginBatch(s: S): void {
    const t = this.ctx.stats.beginBatch();
    if (s.bucket !== null) this.batchNow = t !== 0 ? t : this.ctx.now();
  }

  /** The shutdown and rate-limit gates, in that order. False: already answered. */
  protected admitCommon(s: S): boolean {
    if (this.ctx.shuttingDown) {
      this.sendError(s.conn, ErrorCode.SHUTTING_DOWN);
      return false;
    }
    if (s.bucket !== null) {
      const v = s.bucket.take(this.batchNow);
      if (v !== RateVerdict.Allow) {
        if (v === RateVerdict.Close) this.fail(s, ErrorCode.RATE_LIMITED);
        else this.sendError(s.conn, ErrorCode.RATE_LIMITED);
        return false;
      }
    }
    return true;
  }

  /** Answer with an error, then flush and close: the client may not go on. */
  protected fail(s: S, code: number, message?: string): void {
    this.sendError(s.conn, code, message);
    s.decoder.stop();
    s.conn.end(closeReasonFor(code));
  }
}

/** The handler table of a session protocol. */
export function sessionHandler<S extends Session>(name: ProtocolName, p: SessionProtocol<S>): ProtocolHandler<S> {
  return {
    protocol: name,
    open: (conn) => p.open(conn),
    data: (conn, bytes) => p.data(conn, bytes),
    close: (conn, reason) => p.close(conn, reason),
    // At the connection limit: say so; the reactor ends the connection right after.
    full: (conn) => p.sendError(conn, ErrorCode.SERVER_FULL),
    inFrame: (conn) => conn.data !== undefined && conn.data.decoder.inFrame,
  };
}
