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
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>bunpoll chat</title>
<style>
  body { font: 15px/1.4 system-ui, sans-serif; margin: 0; display: flex; flex-direction: column; height: 100vh; }
  header { display: flex; justify-content: space-between; align-items: baseline; padding: .5em 1em; background: #223; color: #eee; }
  header h1 { font-size: 1.1em; margin: 0; }
  #status.connected { color: #8e8; }
  #log { flex: 1; overflow-y: auto; list-style: none; margin: 0; padding: .5em 1em; }
  #log li { padding: .15em 0; white-space: pre-wrap; word-break: break-word; }
  #log li.mine { color: #246; }
  #log li.notice { color: #888; font-style: italic; }
  form { display: flex; gap: .5em; padding: .5em 1em; border-top: 1px solid #ccc; }
  #nick { width: 8em; }
  #text { flex: 1; }
  footer { font-size: .8em; color: #666; padding: 0 1em .5em; }
</style>
</head>
<body>
<header><h1>bunpoll chat</h1><span id="status">connecting</span></header>
<ul id="log"></ul>
<form id="form">
  <input id="nick" placeholder="nickname" maxlength="32" autocomplete="nickname">
  <input id="text" placeholder="message" autocomplete="off" maxlength="4000">
  <button>Send</button>
</form>
<footer>Every client of the server hears this chat: framed, json and line clients too.
Other endpoints: /plaintext /json /echo /healthz /stats /metrics /ws/echo</footer>
<script>
const log = document.getElementById("log");
const statusEl = document.getElementById("status");
const form = document.getElementById("form");
const nick = document.getElementById("nick");
const text = document.getElementById("text");
nick.value = localStorage.getItem("bunpoll-nick") || "";
let ws = null;
let backoff = 250;
function add(line, cls) {
  const li = document.createElement("li");
  li.textContent = line;
  if (cls) li.className = cls;
  log.append(li);
  log.scrollTop = log.scrollHeight;
}
function setStatus(s, ok) {
  statusEl.textContent = s;
  statusEl.className = ok ? "connected" : "";
}
function connect() {
  setStatus("connecting", false);
  ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws/chat");
  ws.onopen = () => { setStatus("connected", true); backoff = 250; };
  ws.onmessage = (e) => add(String(e.data));
  ws.onclose = () => {
    const wait = Math.round(backoff * (0.8 + Math.random() * 0.4));
    setStatus("disconnected: retrying in " + wait + " ms", false);
    add("disconnected; reconnecting", "notice");
    setTimeout(connect, wait);
    backoff = Math.min(backoff * 2, 8000);
  };
}
form.addEventListener("submit", (e) => {
  e.preventDefault();
  const t = text.value.trim();
  if (t === "" || !ws || ws.readyState !== WebSocket.OPEN) return;
  const who = nick.value.trim() || "anon";
  localStorage.setItem("bunpoll-nick", who);
  const line = who + ": " + t;
  ws.send(line);
  add(line, "mine");
  text.value = "";
});
connect();
</script>
</body>
</html>
`;

export interface BuiltinAppOptions {
  /** Answers the paths the routes do not have: staticFiles(DIR) for `--static DIR`. */
  files?: (req: StaticRequest) => Response;
  /** Request limits (`--max-body`, `--max-request-line`, `--max-header-bytes`). */
  limits?: Partial<HttpLimits>;
  /** `--body-timeout` in ms (0: none). */
  bodyTimeoutMs?: number;
  /** `--ws-origin`: the Origins a WebSocket handshake may come from (empty: any). */
  wsOrigins?: readonly string[];
  /** The listener is https (request URLs say so). */
  tls?: boolean;
}

/** The answer to a WebSocket handshake this server will not take (a bad Upgrade, a foreign Origin), or null. */
function refuseUpgrade(req: HttpRequest, origins: readonly string[] | undefined): Response | null {
  const check = checkUpgrade(req);
  if (!check.ok) return new Response(`${check.message}\n`, { status: check.status, headers: check.headers });
  if (origins !== undefined && origins.length > 0) {
    const origin = req.header("origin");
    if (origin === null || !origins.includes(origin)) {
      return new Response(`Origin ${origin === null ? "missing" : JSON.stringify(origin)} is not allowed (--ws-origin)\n`, { status: 403 });
    }
  }
  return null;
}

export function builtinApp(ctx: ProtocolContext, log?: (line: string) => void, options: BuiltinAppOptions = {}): HttpApp {
  const app = new HttpApp({
    tls: options.tls,
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
      // A chat client: its text reaches every client of every protocol, and it hears theirs.
      "/ws/chat": {
        GET: (req, server) => {
          const refused = refuseUpgrade(req, options.wsOrigins);
          if (refused !== null) return refused;
          server.upgrade(req, { data: { chat: true } });
          return undefined;
        },
      },
      // Every WebSocket message echoed as it came: the conformance target.
      "/ws/echo": {
        GET: (req, server) => {
          const refused = refuseUpgrade(req, options.wsOrigins);
          if (refused !== null) return refused;
          server.upgrade(req);
          return undefined;
        },
      },
    },
    shuttingDown: () => ctx.shuttingDown,
    log: log ?? ((line) => processLog.component(line, { event: "http_error", level: "error" })),
    limits: options.limits,
    websocket: {
      perMessageDeflate: true, // browsers always offer it
      // /ws/chat sockets join the hub: they hear every protocol's broadcasts and broadcast their text.
      open(ws) {
        if ((ws.data as { chat?: boolean } | undefined)?.chat) ws.joinHub();
      },
      message(ws, message) {
        if ((ws.data as { chat?: boolean } | undefined)?.chat) {
          if (typeof message === "string") ws.broadcast(message);
          else ws.close(1003, "the chat takes text");
        } else ws.send(message); // /ws/echo
      },
    },
    hub: ctx.hub,
    bodyTimeoutMs: options.bodyTimeoutMs,
    traffic: ctx.trafficOf("http"),
    wsTraffic: ctx.trafficOf("ws"),
    byClass: ctx.httpByClass, // every HTTP listener of the context counts into one
  });
  return app;
}

function metricsResponse(ctx: ProtocolContext): Response {
  // The whole process: with --workers, every worker's counters merged (stats-slot.ts).
  const { snapshot, latency } = ctx.processStats();
  const text = formatPrometheus({ snapshot, latency, httpByClass: snapshot.httpByClass, byProtocol: new Map(Object.entries(snapshot.byProtocol)) });
  return new Response(text, { headers: { "content-type": PROMETHEUS_CONTENT_TYPE } });
}
