// Baseline: node:http answering the TechEmpower plaintext and json test types. Run by
// Node, not Bun (Bun's node:http is a different server):
//
//   node bench/baselines/node-http.js --port P [--host 127.0.0.1]
//
// Keep-alive connections stay open for 300 s (Node's default closes them after 5 s), so
// the idle scenario measures open connections.
import http from "node:http";

const args = process.argv.slice(2);
let host = "127.0.0.1";
let port = 0;
const fail = (msg) => {
  process.stderr.write(`node-http: ${msg}\nusage: node node-http.js --port P [--host H]\n`);
  process.exit(2);
};
for (let i = 0; i < args.length; i += 2) {
  const k = args[i];
  const v = args[i + 1];
  if (v === undefined) fail(`missing value for ${k}`);
  if (k === "--port") port = Number(v);
  else if (k === "--host") host = v;
  else fail(`unknown argument ${k}`);
}
if (!Number.isInteger(port) || port <= 0 || port > 65535) fail("--port is required");

const server = http.createServer((req, res) => {
  if (req.url === "/plaintext") {
    res.writeHead(200, { "content-type": "text/plain", "content-length": 13 });
    res.end("Hello, World!");
  } else if (req.url === "/json") {
    const body = JSON.stringify({ message: "Hello, World!" });
    res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
    res.end(body);
  } else {
    res.writeHead(404, { "content-type": "text/plain", "content-length": 10 });
    res.end("not found\n");
  }
});
server.keepAliveTimeout = 300_000;
server.headersTimeout = 310_000;
server.requestTimeout = 0;
server.listen(port, host, () => process.stderr.write(`node-http on ${host}:${port}\n`));
const shutdown = () => {
  server.close();
  server.closeAllConnections();
  process.exit(0);
};
process.on("SIGINT", shutdown);
process.on("SIGTERM", shutdown);
