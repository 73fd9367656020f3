// Baseline: Bun.serve answering the TechEmpower plaintext and json test types.
//
//   bun bench/baselines/bun-serve.ts --port P [--host 127.0.0.1] [--mode routes|fetch]
//
// --mode routes (default): /plaintext is a static route (a Response Bun serializes once and
// writes as bytes, its fastest path); /json builds its body per request, as the test type
// requires. --mode fetch: everything goes through `fetch(req)`, which builds a new Response
// per request: the same handler as bench/servers/bunpoll-fetch.ts, line for line.
// idleTimeout is Bun's maximum (255 s), so the idle scenario's connections stay open.

const args = process.argv.slice(2);
let host = "127.0.0.1";
let port = 0;
let mode: "routes" | "fetch" = "routes";
const fail = (msg: string): never => {
  process.stderr.write(`bun-serve: ${msg}\nusage: bun-serve --port P [--host H] [--mode routes|fetch]\n`);
  process.exit(2);
};
for (let i = 0; i < args.length; i += 2) {
  const k = args[i];
  const v = args[i + 1];
  if (v === undefined) fail(`missing value for ${k}`);
  if (k === "--port") port = Number(v);
  else if (k === "--host") host = v!;
  else if (k === "--mode") {
    if (v !== "routes" && v !== "fetch") fail(`unknown mode ${v}`);
    mode = v as "routes" | "fetch";
  } else fail(`unknown argument ${k}`);
}
if (!Number.isInteger(port) || port <= 0 || port > 65535) fail("--port is required");

const json = () => new Response(JSON.stringify({ message: "Hello, World!" }), { headers: { "content-type": "application/json" } });

const server =
  mode === "routes"
    ? Bun.serve({
        hostname: host,
        port,
        idleTimeout: 255,
        routes: {
          "/plaintext": new Response("Hello, World!", { headers: { "content-type": "text/plain" } }),
          "/json": json,
        },
        fetch: () => new Response("not found\n", { status: 404 }),
      })
    : Bun.serve({
        hostname: host,
        port,
        idleTimeout: 255,
        fetch(req) {
          const url = req.url;
          if (url.endsWith("/plaintext")) return new Response("Hello, World!");
          if (url.endsWith("/json")) return json();
          return new Response("not found\n", { status: 404 });
        },
      });

process.stderr.write(`bun-serve (${mode}) on ${server.hostname}:${server.port}\n`);
const shutdown = () => {
  void server.stop(true);
  process.exit(0);
};
process.on("SIGINT", shutdown);
process.on("SIGTERM", shutdown);
