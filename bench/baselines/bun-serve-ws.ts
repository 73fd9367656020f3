// Baseline: Bun.serve's WebSocket (uWebSockets inside), the handler of
// bench/servers/bunpoll-ws.ts line for line:
//   /ws/echo  every message sent back as it came;
//   /ws/pub   every socket subscribes to one topic; each message is published to it with
//             server.publish (the sender hears it too).
// perMessageDeflate is on (used when the client offers it), and echoes are sent with
// send(message, true): Bun compresses a message only when send() asks, while bunpoll and ws
// compress by default, so the compressed echo compares inflate + deflate on all three (the
// flag does nothing where permessage-deflate was not negotiated). idleTimeout is Bun's
// maximum for WebSockets (960 s), so idle connections stay open.
//
//   bun bench/baselines/bun-serve-ws.ts --port P [--host 127.0.0.1]

import { benchServerArgs } from "./ws-args.ts";

const { host, port } = benchServerArgs("bun-serve-ws");
const TOPIC = "bench";

const server = Bun.serve<{ pub: boolean }>({
  hostname: host,
  port,
  fetch(req, server) {
    const path = new URL(req.url).pathname;
    if (path === "/ws/echo" || path === "/ws/pub") {
      if (server.upgrade(req, { data: { pub: path === "/ws/pub" } })) return undefined;
      return new Response("upgrade failed\n", { status: 400 });
    }
    return new Response("not found\n", { status: 404 });
  },
  websocket: {
    perMessageDeflate: true,
    idleTimeout: 960,
    open(ws) {
      if (ws.data.pub) ws.subscribe(TOPIC);
    },
    message(ws, message) {
      if (ws.data.pub) server.publish(TOPIC, message);
      else ws.send(message, true); // compress: Bun's send() compresses only when asked; bunpoll's and ws's do by default
    },
  },
});

process.stderr.write(`bun-serve-ws on ${server.hostname}:${server.port}\n`);
const shutdown = () => {
  void server.stop(true);
  process.exit(0);
};
process.on("SIGINT", shutdown);
process.on("SIGTERM", shutdown);
