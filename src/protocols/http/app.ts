// The server CLI's built-in HTTP app (`--protocol http`): the TechEmpower Framework
// Benchmarks' plaintext and json test types, an echo of the request body, a health check,
// the stats as JSON, and an index page; with `--static DIR`, the files under DIR for every
// other path (the routes win over a file of the same path).

import type { ProtocolContext } from "../context.ts";
import { serverStatsMessage } from "../json.ts";
import { formatPrometheus, PROMETHEUS_CONTENT_TYPE } from "../../stats/prometheus.ts";
import { processLog } from "../../log.ts";
import type { HttpRequest } from "./request.ts";
import { HttpApp } from "./server.ts";
import { checkUpgrade } from "../ws/handshake.ts";
import type { HttpLimits } from "./parser.ts";
import type { StaticRequest } from "./static.ts";

const INDEX = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>bunpoll</title></head>
<body><h1>bunpoll</h1>
<ul>
<li><a href="/plaintext">/plaintext</a>: Hello, World!</li>
<li><a href="/json">/json</a>: {"message":"Hello, World!"}</li>
<li>/echo: the request body back, any method</li>
<li><a href="/healthz">/healthz</a>: ok</li>
<li><a href="/stats">/stats</a>: the server's counters as JSON</li>
<li>/ws/echo: a WebSocket that echoes every message</li>
<li><a href="/metrics">/metrics</a>: the same in the Prometheus text format</li>
</ul></body></html>
`;

export interface BuiltinAppOptions {
  /** Answers the paths the routes do not have: staticFiles(DIR) for `--static DIR`. */
  files?: (req: StaticRequest) => Response;
  /** Request limits (`--max-body`, `--max-request-line`, `--max-header-bytes`). */
  limits?: Partial<HttpLimits>;
  /** `--body-timeout` in ms (0: none). */
  bodyTimeoutMs?: number;
}

export function builtinApp(ctx: ProtocolContext, log?: (line: string) => void, options: BuiltinAppOptions = {}): HttpApp {
  const app = new HttpApp({
    fetch: options.files,
    routes: {
      "/plaintext": new Response("Hello, World!", { headers: { "content-type": "text/plain", server: "bunpoll" } }),
      // The json test type serializes per request.
      "/json": () => new Response(JSON.stringify({ message: "Hello, World!" }), { headers: { "content-type": "application/json", server: "bunpoll" } }),
      "/echo": async (req: HttpRequest) =>
        new Response(await req.bytes(), { headers: { "content-type": req.header("content-type") ?? "application/octet-stream" } }),
      "/healthz": new Response("ok\n", { headers: { "content-type": "text/plain; charset=utf-8" } }),
      "/stats": { GET: () => Response.json(serverStatsMessage(ctx.snapshot())) },
      "/metrics": { GET: () => metricsResponse(ctx) },
      "/": { GET: new Response(INDEX, { headers: { "content-type": "text/html; charset=utf-8" } }) },
      // Every WebSocket message echoed as it came: the conformance target.
      "/ws/echo": {
        GET: (req, server) => {
          const check = checkUpgrade(req);
          if (!check.ok) return new Response(`${check.message}\n`, { status: check.status, headers: check.headers });
          server.upgrade(req);
          return undefined;
        },
      },
    },
    shuttingDown: () => ctx.shuttingDown,
    log: log ?? ((line) => processLog.component(line, { event: "http_error", level: "error" })),
    limits: options.limits,
    websocket: { message: (ws, message) => void ws.send(message) },
    hub: ctx.hub,
    bodyTimeoutMs: options.bodyTimeoutMs,
  });
  const apps = appsOf.get(ctx);
  if (apps === undefined) appsOf.set(ctx, [app]);
  else apps.push(app);
  return app;
}

/** The built-in apps of each context: /metrics sums the HTTP counters of every listener. */
const appsOf = new WeakMap<ProtocolContext, HttpApp[]>();

function metricsResponse(ctx: ProtocolContext): Response {
  const byClass = new Float64Array(6);
  for (const app of appsOf.get(ctx) ?? []) for (let k = 0; k < 6; k++) byClass[k]! += app.byClass[k]!;
  const text = formatPrometheus({ snapshot: ctx.snapshot(), latency: ctx.stats.latency, httpByClass: byClass });
  return new Response(text, { headers: { "content-type": PROMETHEUS_CONTENT_TYPE } });
}
