// Pipelined framed ECHO load for the shutdown scenario: `conns` connections, each keeping
// `depth` requests in flight (a reply lets the next request go). Every request carries
// (connection, sequence number); replies must come back in order, each either the exact
// ECHO_REPLY or ERROR code 8 SHUTTING_DOWN. After the first SHUTTING_DOWN a connection
// sends nothing new, as a client should. When the server sends EOF the connection closes
// its side; a request with no answer before a clean EOF was never processed. A reset,
// a truncated reply or a wrong reply is a lost reply.
//
// Emits "running" once every connection has had replies; finishes when every connection
// has ended (or at maxMs).

import { config, emit, finish, run } from "../lib/child.ts";
import { connectSocket } from "../lib/net.ts";
import { errorCodeOf, ErrCode, FrameReader, frame, Msg } from "../lib/wire.ts";

export interface PipelineConfig {
  port: number;
  conns: number;
  depth: number;
  bodySize: number;
  maxMs: number;
}

export interface PipelineResult {
  conns: number;
  sent: number;
  replies: number;
  shuttingDown: number;
  /** Requests without an answer on connections that ended with a clean EOF. */
  unansweredAfterEof: number;
  /** Wrong, out-of-order or other unexpected replies. */
  mismatches: number;
  firstMismatch: string;
  /** Connections that ended with a reset or error (their unanswered requests may be lost). */
  resets: number;
  firstReset: string;
  /** Connections that ended with part of a frame received. */
  truncated: number;
  /** Connections still open at maxMs. */
  stillOpen: number;
  /** Requests possibly lost: unanswered ones on connections that did not end cleanly. */
  lost: number;
  /** Bytes received on all connections (to compare with the server's bytes out). */
  bytesReceived: number;
  bytesSent: number;
}

const cfg = config<PipelineConfig>();

interface Conn {
  index: number;
  sent: number;
  answered: number;
  replies: number;
  shuttingDown: number;
  stopSending: boolean;
  end: "open" | "eof" | "reset";
  truncated: boolean;
}

run(async () => {
  let mismatches = 0;
  let firstMismatch = "";
  let firstReset = "";
  let bytesReceived = 0;
  let bytesSent = 0;
  let ended = 0;
  let running = 0;
  let allEnded: () => void = () => {};
  const everyoneEnded = new Promise<void>((r) => (allEnded = r));
  const conns: Conn[] = [];

  const body = (c: Conn, seq: number): Buffer => {
    const b = Buffer.alloc(cfg.bodySize, 0x5a);
    b.writeUInt32BE(c.index, 0);
    b.writeUInt32BE(seq, 4);
    return b;
  };

  const sockets = await Promise.all(Array.from({ length: cfg.conns }, () => connectSocket(cfg.port, { timeoutMs: 15_000 })));
  sockets.forEach((s, index) => {
    const c: Conn = { index, sent: 0, answered: 0, replies: 0, shuttingDown: 0, stopSending: false, end: "open", truncated: false };
    conns.push(c);
    const send = () => {
      if (c.stopSending || c.end !== "open") return;
      const f = frame(Msg.ECHO, body(c, c.sent));
      c.sent++;
      bytesSent += f.length;
      s.write(f);
    };
    const reader = new FrameReader((type, b) => {
      const seq = c.answered;
      c.answered++;
      if (type === Msg.ECHO_REPLY && b.equals(body(c, seq))) {
        c.replies++;
        if (c.replies === 1 && ++running === cfg.conns) emit("running");
      } else if (type === Msg.ERROR && errorCodeOf(b) === ErrCode.SHUTTING_DOWN) {
        c.shuttingDown++;
        c.stopSending = true;
      } else {
        mismatches++;
        if (!firstMismatch) firstMismatch = `connection ${index}, request ${seq}: got type 0x${type.toString(16)} (${b.length} B, code ${errorCodeOf(b)})`;
      }
      send();
    });
    const finishConn = (how: "eof" | "reset", why: string) => {
      if (c.end !== "open") return;
      c.end = how;
      c.truncated = reader.buffered > 0;
      if (how === "reset" && !firstReset) firstReset = `connection ${index}: ${why}`;
      s.destroy();
      if (++ended === cfg.conns) allEnded();
    };
    s.on("data", (d: Buffer) => {
      bytesReceived += d.length;
      reader.push(d);
    });
    s.on("end", () => finishConn("eof", ""));
    s.on("error", (e: NodeJS.ErrnoException) => finishConn("reset", `${e.code ?? ""} ${e.message}`));
    s.on("close", () => finishConn("reset", "closed without EOF"));
    for (let i = 0; i < cfg.depth; i++) send();
  });

  await Promise.race([everyoneEnded, new Promise((r) => setTimeout(r, cfg.maxMs))]);
  let lost = 0;
  let unansweredAfterEof = 0;
  for (const c of conns) {
    const unanswered = c.sent - c.answered;
    if (c.end === "eof" && !c.truncated) unansweredAfterEof += unanswered;
    else lost += unanswered;
  }
  for (const s of sockets) s.destroy();
  const sum = (f: (c: Conn) => number) => conns.reduce((a, c) => a + f(c), 0);
  const result: PipelineResult = {
    conns: cfg.conns,
    sent: sum((c) => c.sent),
    replies: sum((c) => c.replies),
    shuttingDown: sum((c) => c.shuttingDown),
    unansweredAfterEof,
    mismatches,
    firstMismatch,
    resets: conns.filter((c) => c.end === "reset").length,
    firstReset,
    truncated: conns.filter((c) => c.truncated).length,
    stillOpen: conns.filter((c) => c.end === "open").length,
    lost,
    bytesReceived,
    bytesSent,
  };
  finish(result);
}, cfg.maxMs + 30_000);
