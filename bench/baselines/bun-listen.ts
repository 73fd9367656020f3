// Baseline: a Bun.listen server. echo = write every byte back; framed = the bunpoll
// framed protocol parsed in JS, plus BROADCAST (type 7) for the fan-out benchmark.
//
//   bun bench/baselines/bun-listen.ts --port P [--host 127.0.0.1] [--protocol echo|framed]
//
// Bun's socket.write() is unbuffered: it returns how many bytes the kernel took. The rest
// is queued here and written from the drain callback, in order, like any correct user of
// the API has to.

import type { Socket } from "bun";
import { parseServerArgs } from "./args.ts";
import { FrameParser, Out } from "./framed-js.ts";
import {
  ERR_TOO_LONG,
  HEADER,
  MAX_BODY,
  T_BROADCAST,
  T_BROADCAST_ACK,
  T_BROADCAST_MSG,
  errorFrame,
  putHeader,
} from "../lib/framed.ts";

const args = parseServerArgs(process.argv.slice(2), "bun-listen");

interface Client {
  id: number;
  parser: FrameParser;
  /** Output the kernel has not taken yet, oldest first. */
  pending: Uint8Array[];
}

let nextId = 1;
const clients = new Set<Socket<Client>>();
const out = new Out();
const TOO_LONG_REPLY = errorFrame(ERR_TOO_LONG, "broadcast body too long");

/** Write bytes[off, off+len) after anything already queued; queue what the kernel refuses. */
function send(s: Socket<Client>, bytes: Uint8Array, off: number, len: number): void {
  const c = s.data;
  if (c.pending.length === 0) {
    const n = s.write(bytes, off, len);
    if (n < 0 || n === len) return; // closed, or all written
    off += n;
    len -= n;
  }
  // Copy: `bytes` may be a buffer the runtime or our scratch reuses.
  c.pending.push(bytes.slice(off, off + len));
}

function drain(s: Socket<Client>): void {
  const q = s.data.pending;
  while (q.length > 0) {
    const head = q[0]!;
    const n = s.write(head);
    if (n < 0) {
      q.length = 0;
      return;
    }
    if (n < head.length) {
      q[0] = head.subarray(n);
      return;
    }
    q.shift();
  }
}

/** Current sender, for the broadcast handler (single-threaded: set around each feed()). */
let current: Socket<Client> | null = null;

function onBroadcast(type: number, src: Uint8Array, bodyOff: number, bodyLen: number, o: Out): boolean {
  if (type !== T_BROADCAST) return false;
  const sender = current!;
  if (bodyLen + 4 > MAX_BODY) {
    o.bytes(TOO_LONG_REPLY);
    return true;
  }
  // One BROADCAST_MSG frame shared by every recipient: u32 from_id, then the body.
  const msg = new Uint8Array(HEADER + 4 + bodyLen);
  putHeader(msg, 0, T_BROADCAST_MSG, 4 + bodyLen);
  new DataView(msg.buffer).setUint32(HEADER, sender.data.id);
  msg.set(src.subarray(bodyOff, bodyOff + bodyLen), HEADER + 4);
  let recipients = 0;
  for (const s of clients) {
    if (s === sender) continue;
    send(s, msg, 0, msg.length);
    recipients++;
  }
  const ack = new Uint8Array(4);
  new DataView(ack.buffer).setUint32(0, recipients);
  o.frame(T_BROADCAST_ACK, ack, 0, 4);
  return true;
}

const framed = args.protocol === "framed";

const server = Bun.listen<Client>({
  hostname: args.host,
  port: args.port,
  socket: {
    open(s) {
      s.data = { id: nextId++, parser: new FrameParser(), pending: [] };
      s.setNoDelay(true);
      clients.add(s);
    },
    data(s, buf) {
      if (!framed) {
        send(s, buf, 0, buf.length);
        return;
      }
      out.len = 0;
      current = s;
      s.data.parser.feed(buf, out, onBroadcast);
      current = null;
      if (out.len > 0) send(s, out.buf, 0, out.len);
    },
    drain,
    close(s) {
      clients.delete(s);
    },
    error(s, err) {
      process.stderr.write(`bun-listen: socket ${s.data?.id}: ${err.message}\n`);
    },
  },
});

process.stderr.write(`bun-listen: ${args.protocol} on ${server.hostname}:${server.port} pid ${process.pid}\n`);

const shutdown = (): void => {
  server.stop(true);
  process.exit(0);
};
process.on("SIGINT", shutdown);
process.on("SIGTERM", shutdown);
