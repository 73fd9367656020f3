// Baseline: a node:net server (run under Bun, like everything in this repo).
// echo = write every byte back; framed = the bunpoll framed protocol parsed in JS.
//
//   bun bench/baselines/node-net.ts --port P [--host 127.0.0.1] [--protocol echo|framed]
//
// node:net sockets buffer writes themselves, so there is no queue here; but the buffer
// passed to write() is kept until sent, so replies built in the shared scratch are copied.

import net from "node:net";
import { parseServerArgs } from "./args.ts";
import { FrameParser, Out } from "./framed-js.ts";

const args = parseServerArgs(process.argv.slice(2), "node-net");
const framed = args.protocol === "framed";
const out = new Out();

const server = net.createServer({ noDelay: true }, (sock) => {
  sock.setNoDelay(true);
  const parser = new FrameParser();
  sock.on("data", (buf: Buffer) => {
    if (!framed) {
      // The chunk is ours (a fresh Buffer per 'data' event), so it can be written as is.
      sock.write(buf);
      return;
    }
    out.len = 0;
    parser.feed(buf, out);
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
