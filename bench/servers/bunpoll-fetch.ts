// bunpoll's library API as a benchmark server: serve({ fetch }) with default options,
// building a new Response per request. The handler is bench/baselines/bun-serve.ts's
// `--mode fetch` handler, line for line, so the two compare the servers, not the handlers.
//
//   bun bench/servers/bunpoll-fetch.ts --port P [--host 127.0.0.1]

import { serve } from "../../src/index.ts";

const args = process.argv.slice(2);
let host = "127.0.0.1";
let port = 0;
const fail = (msg: string): never => {
  process.stderr.write(`bunpoll-fetch: ${msg}\nusage: bunpoll-fetch --port P [--host H]\n`);
  process.exit(2);
};
for (let i = 0; i < args.length; i += 2) {
  const k = args[i];
  const v = args[i + 1];
  if (v === undefined) fail(`missing value for ${k}`);
  if (k === "--port") port = Number(v);
  else if (k === "--host") host = v!;
  else fail(`unknown argument ${k}`);
}
if (!Number.isInteger(port) || port <= 0 || port > 65535) fail("--port is required");

const json = () => new Response(JSON.stringify({ message: "Hello, World!" }), { headers: { "content-type": "application/json" } });

const server = serve({
  hostname: host,
  port,
  fetch(req) {
    const url = req.url;
    if (url.endsWith("/plaintext")) return new Response("Hello, World!");
    if (url.endsWith("/json")) return json();
    return new Response("not found\n", { status: 404 });
  },
});

process.stderr.write(`bunpoll-fetch on ${server.hostname}:${server.port}\n`);
const shutdown = () => {
  void server.stop().then(() => process.exit(0));
};
process.on("SIGINT", shutdown);
process.on("SIGTERM", shutdown);
