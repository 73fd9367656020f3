// Baseline: a node:net server (run under Bun, like everything in this repo).
// echo = write every byte back; framed = the bunpoll framed protocol parsed in JS
// (HELLO, ECHO, PING, BROADCAST; see framed-js.ts).
//
//   bun bench/baselines/node-net.ts --port P [--host 127.0.0.1] [--protocol echo|framed]
//
// node:net sockets buffer writes themselves, so there is no queue here; but the buffer
// passed to write() is kept until sent, so replies built in the shared scratch are copied
// (once per read; the copy of a broadcast batch is shared by all its recipients, which
// never modify it).

import net from "node:net";
import { parseServerArgs } from "./args.ts";
import { FrameParser, Out, type FramedPeer } from "./framed-js.ts";

const args = parseServerArgs(process.argv.slice(2), "node-net");
const framed = args.protocol === "framed";
const out = new Out();
const bcast = new Out();
const clients = new Set<net.Socket>();
let nextId = 1;

const server = net.createServer({ noDelay: true }, (sock) => {
  sock.setNoDelay(true);
  const parser = new FrameParser();
  const peer: FramedPeer = { id: nextId++ };
  clients.add(sock);
  sock.on("close", () => clients.delete(sock));
  sock.on("data", (buf: Buffer) => {
    if (!framed) {
      // The chunk is ours (a fresh Buffer per 'data' event), so it can be written as is.
      sock.write(buf);
      return;
    }
    out.len = 0;
    bcast.len = 0;
    parser.feed(buf, out, peer, bcast, clients.size - 1);
    if (bcast.len > 0) {
      const msg = Buffer.from(bcast.buf.subarray(0, bcast.len));
      for (const r of clients) if (r !== sock) r.write(msg);
    }
    if (out.len > 0) sock.write(Buffer.from(out.buf.subarray(0, out.len)));
  });
  // A reset peer is normal under load tests; do not crash the server on it.
  sock.on("error", () => sock.destroy());
});

server.listen(args.port, args.host, () => {
  process.stderr.write(`node-net: ${args.protocol} on ${args.host}:${args.port} pid ${process.pid}\n`);
});

const shutdown = (): void => {
  server.close();
  process.exit(0);
};
process.on("SIGINT", shutdown);
process.on("SIGTERM", shutdown);
