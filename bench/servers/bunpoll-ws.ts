// bunpoll's library serve() as the WebSocket benchmark server. The handler is
// bench/baselines/bun-serve-ws.ts's, line for line, so the two compare the servers:
//   /ws/echo  every message sent back as it came (text as text, binary as binary);
//   /ws/pub   every socket subscribes to one topic; each message it sends is published to
//             that topic with server.publish (the sender hears it too: its acknowledgement).
// permessage-deflate is enabled: it is used when the client offers it (the runner's
// compressed scenarios do; the others do not).
//
//   bun bench/servers/bunpoll-ws.ts --port P [--host 127.0.0.1]

import { serve } from "../../src/index.ts";
import { benchServerArgs } from "../baselines/ws-args.ts";

const { host, port } = benchServerArgs("bunpoll-ws");
const TOPIC = "bench";

const server = serve({
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
      if ((ws.data as { pub: boolean }).pub) ws.subscribe(TOPIC);
    },
    message(ws, message) {
      if ((ws.data as { pub: boolean }).pub) server.publish(TOPIC, message);
      else ws.send(message);
    },
  },
});

process.stderr.write(`bunpoll-ws on ${server.hostname}:${server.port}\n`);
const shutdown = () => {
  void server.stop().then(() => process.exit(0));
};
process.on("SIGINT", shutdown);
process.on("SIGTERM", shutdown);
