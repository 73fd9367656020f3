// Baseline: a Bun.listen server. echo = write every byte back; framed = the bunpoll
// framed protocol parsed in JS (HELLO, ECHO, PING, BROADCAST; see framed-js.ts).
//
//   bun bench/baselines/bun-listen.ts --port P [--host 127.0.0.1] [--protocol echo|framed]
//       [--naive-broadcast]
//
// Bun's socket.write() is unbuffered: it returns how many bytes the kernel took. The rest
// is queued here and written from the drain callback, in order, like any correct user of
// the API has to.
//
// Broadcast: like bunpoll (docs/PROTOCOL.md), every connection is a client from accept on
// (HELLO is optional and only answered with WELCOME), and a BROADCAST reaches every other
// connection. The BROADCAST_MSG frames of one read are written to each recipient in one
// write (see framed-js.ts), then the sender gets its replies. With --naive-broadcast each
// BROADCAST_MSG is written to every recipient as soon as it is parsed (one write per
// delivery): what a straightforward port of a chat server does.

import type { Socket } from "bun";
import { parseServerArgs } from "./args.ts";
import { FrameParser, Out, type FramedPeer } from "./framed-js.ts";

const naive = process.argv.includes("--naive-broadcast");
const args = parseServerArgs(process.argv.slice(2).filter((a) => a !== "--naive-broadcast"), "bun-listen");

interface Client extends FramedPeer {
  parser: FrameParser;
  /** Output the kernel has not taken yet, oldest first. */
  pending: Uint8Array[];
}

let nextId = 1;
const clients = new Set<Socket<Client>>();
const out = new Out();
const bcast = new Out();

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

const framed = args.protocol === "framed";

/** --naive-broadcast: the sender whose read is being parsed, and the per-message send. */
let current: Socket<Client> | null = null;
function sendNow(): void {
  for (const r of clients) if (r !== current) send(r, bcast.buf, 0, bcast.len);
  bcast.len = 0;
}

// TLS_CERT / TLS_KEY (PEM files): the same server over Bun's TLS (bench/tls.ts).
const tls = process.env.TLS_CERT && process.env.TLS_KEY ? { cert: Bun.file(process.env.TLS_CERT), key: Bun.file(process.env.TLS_KEY) } : undefined;
const server = Bun.listen<Client>({
  hostname: args.host,
  port: args.port,
  tls,
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
      bcast.len = 0;
      current = s;
      s.data.parser.feed(buf, out, s.data, bcast, clients.size - 1, naive ? sendNow : undefined);
      current = null;
      if (bcast.len > 0) {
        for (const r of clients) if (r !== s) send(r, bcast.buf, 0, bcast.len);
      }
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

process.stderr.write(`bun-listen: ${args.protocol}${naive ? " (naive broadcast)" : ""} on ${server.hostname}:${server.port} pid ${process.pid}\n`);

const shutdown = (): void => {
  server.stop(true);
  process.exit(0);
};
process.on("SIGINT", shutdown);
process.on("SIGTERM", shutdown);
