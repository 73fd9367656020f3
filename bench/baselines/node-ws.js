// Baseline: the `ws` npm package (its JS code paths: no bufferutil / utf-8-validate) on
// node:http, run by Node (under Bun, require("ws") resolves to Bun's own replacement):
//   /ws/echo  every message sent back as it came (text as text, binary as binary);
//   /ws/pub   every socket joins one set; each message is sent to every socket of the set
//             (the sender too), a loop over clients, since ws has no topics.
// perMessageDeflate is on (used when the client offers it; ws's default threshold: only
// messages of 1 KiB or more are compressed).
//
//   node bench/baselines/node-ws.js --port P [--host 127.0.0.1]

import http from "node:http";
import { WebSocketServer } from "ws";

const args = process.argv.slice(2);
let host = "127.0.0.1";
let port = 0;
for (let i = 0; i < args.length; i += 2) {
  if (args[i] === "--port") port = Number(args[i + 1]);
  else if (args[i] === "--host") host = args[i + 1];
  else {
    process.stderr.write(`node-ws: unknown argument ${args[i]}\nusage: node-ws --port P [--host H]\n`);
    process.exit(2);
  }
}
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  process.stderr.write("node-ws: --port is required\n");
  process.exit(2);
}

const wss = new WebSocketServer({ noServer: true, perMessageDeflate: true, maxPayload: 16 * 1024 * 1024 });
const subscribers = new Set();

const server = http.createServer((_req, res) => {
  res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
});
server.on("upgrade", (req, socket, head) => {
  const path = (req.url ?? "").split("?")[0];
  if (path !== "/ws/echo" && path !== "/ws/pub") {
    socket.end("HTTP/1.1 404 Not Found\r\nconnection: close\r\ncontent-length: 0\r\n\r\n");
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => {
    if (path === "/ws/pub") {
      subscribers.add(ws);
      ws.on("close", () => subscribers.delete(ws));
      ws.on("message", (data, isBinary) => {
        for (const s of subscribers) s.send(data, { binary: isBinary });
      });
    } else {
      ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary }));
    }
  });
});
server.listen(port, host, () => process.stderr.write(`node-ws on ${host}:${port}\n`));

const shutdown = () => {
  for (const ws of wss.clients) ws.terminate();
  server.close();
  process.exit(0);
};
process.on("SIGINT", shutdown);
process.on("SIGTERM", shutdown);
