// Benchmark runner: starts each server pinned to core 0, drives it with bench/loadgen.ts
// pinned to core 1, and reports throughput, RTT percentiles, server CPU per message and RSS.
//
//   bun run bench/run.ts [--quick] [--scenarios pingpong,pipelined,many,idle,fanout]
//       [--servers bunpoll,bunpoll-nostats,bun-listen,node-net,c-epoll] [--protocol echo|framed]
//       [--rounds N] [--duration SEC] [--warmup SEC] [--idle-conns N] [--fanout-window N] [--syscalls]
//       [--before REF]
//   bun run bench/run.ts --protocol http [--scenarios plaintext,plaintext-p16,json,static-4k,static-1m,idle]
//       [--servers bunpoll,bunpoll-fetch,bunpoll-static,bun-serve,bun-serve-fetch,node-http,c-http,nginx] ...
//
// Servers run interleaved over rounds, the order rotating (A B C, B C A, C A B, ...) so
// that the machine's slow drifts and the first slot hit every server alike; medians across
// rounds are reported. A server that is missing or fails to start is reported and skipped; every server and load generator is
// killed in `finally` and on SIGINT/SIGTERM, and every wait has a deadline. At the end, the
// issue's targets (TARGETS) are checked on per-round ratios of the servers involved.
// --before REF adds bunpoll as of commit REF (a git worktree, bench/lib/before.ts) as
// bunpoll-before*, and compares each bunpoll variant with its twin (BEFORE_CHECKS).
// --protocol http runs the HTTP scenarios with wrk (bench/wrk.lua) as the load generator,
// against HTTP servers only; server CPU is read by the runner around wrk's run.

import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import type { Subprocess } from "bun";
import { clockTicksPerSecond, cpuNs, cpuTimes, fdCount, machineCpu, statusKiB } from "./lib/proc.ts";
import { ensureCServer, portInUse, waitForPort } from "./lib/servers.ts";
import { type BeforeTree, describeCheckout, ensureBeforeTree } from "./lib/before.ts";
import { runOpenLoop } from "./lib/openloop.ts";
import { type WsLoad, WS_SCENARIOS, WS_TARGETS, wsLoadArgv, wsServers } from "./lib/ws.ts";

const root = new URL("..", import.meta.url).pathname; // repo root, with a trailing slash
const bun = process.execPath;
const resultsDir = `${root}bench/results`;

// ---------------------------------------------------------------------------------------
// Configuration

type Protocol = "echo" | "framed" | "http" | "ws";

interface LoadScenario {
  kind: "load";
  conns: number;
  depth: number;
  size: number;
  what: string;
  /** --protocol ws: driven by bench/loadgen/ws-load.c (bench/lib/ws.ts). */
  ws?: WsLoad;
}
interface IdleScenario {
  kind: "idle";
  conns: number;
  what: string;
  ws?: WsLoad;
}
/** One sender broadcasting to `receivers` clients; always the framed protocol. */
interface FanoutScenario {
  kind: "fanout";
  receivers: number;
  window: number;
  size: number;
  what: string;
  /** WebSocket publish to a topic instead of framed BROADCAST. */
  ws?: WsLoad;
}
/** HTTP: wrk -t1 -c`conns`, `depth` requests pipelined per connection (bench/wrk.lua). */
interface HttpScenario {
  kind: "http";
  path: string;
  conns: number;
  depth: number;
  /** The body every response must have (checked once before the load), or a static file's size. */
  expect: { body: string } | { staticFile: string; bytes: number };
  what: string;
}
type Scenario = LoadScenario | IdleScenario | FanoutScenario | HttpScenario;

/** The protocols a scenario runs with: idle with any, HTTP ones with http only, WebSocket ones with ws only. */
function scenarioProtocols(sc: Scenario): Protocol[] {
  if (sc.kind !== "http" && sc.ws !== undefined) return ["ws"];
  return sc.kind === "idle" ? ["echo", "framed", "http"] : sc.kind === "http" ? ["http"] : ["echo", "framed"];
}

/** The protocol a scenario runs with under --protocol p: framed fanout is always framed. */
function scenarioProtocol(sc: Scenario, p: Protocol): Protocol {
  return sc.kind === "fanout" && sc.ws === undefined ? "framed" : p;
}

const SCENARIOS: Record<string, Scenario> = {
  pingpong: { kind: "load", conns: 1, depth: 1, size: 64, what: "1 connection, 1 message in flight, 64 B: latency floor" },
  pipelined: { kind: "load", conns: 50, depth: 16, size: 64, what: "50 connections x 16 in flight x 64 B: throughput, batching" },
  many: { kind: "load", conns: 1000, depth: 1, size: 64, what: "1000 connections x 1 in flight x 64 B: per-connection overhead" },
  idle: { kind: "idle", conns: 10_000, what: "10,000 idle connections: memory per connection" },
  fanout: {
    kind: "fanout",
    receivers: 100,
    window: 16,
    size: 64,
    what:
      "framed BROADCAST of 64 B from 1 sender to 100 receivers (all HELLO'd, one loadgen process), " +
      "16 broadcasts awaiting their BROADCAST_ACK: fan-out throughput and cost per delivery",
  },
  // --protocol http
  plaintext: {
    kind: "http", path: "/plaintext", conns: 50, depth: 1, expect: { body: "Hello, World!" },
    what: "wrk -t1 -c50 GET /plaintext, one request in flight per connection: cost per request",
  },
  "plaintext-p16": {
    kind: "http", path: "/plaintext", conns: 50, depth: 16, expect: { body: "Hello, World!" },
    what: "wrk -t1 -c50 GET /plaintext pipelined 16 deep (bench/wrk.lua): throughput when reads carry many requests",
  },
  json: {
    kind: "http", path: "/json", conns: 50, depth: 1, expect: { body: '{"message":"Hello, World!"}' },
    what: "wrk -t1 -c50 GET /json (the body serialized per request), one in flight per connection",
  },
  "static-4k": {
    kind: "http", path: "/4k.bin", conns: 50, depth: 1, expect: { staticFile: "4k.bin", bytes: 4096 },
    what: "wrk -t1 -c50 GET of a 4 KiB static file (sendfile), one in flight per connection",
  },
  "static-1m": {
    kind: "http", path: "/1m.bin", conns: 50, depth: 1, expect: { staticFile: "1m.bin", bytes: 1 << 20 },
    what: "wrk -t1 -c50 GET of a 1 MiB static file (sendfile): wrk saturates first, compare CPU/request",
  },
  // --protocol ws
  ...WS_SCENARIOS,
};
const STATIC_SCENARIOS = Object.keys(SCENARIOS).filter((n) => {
  const sc = SCENARIOS[n]!;
  return sc.kind === "http" && "staticFile" in sc.expect;
});

interface ServerDef {
  /** The argv to run, or a string saying why this server cannot run here. */
  command(port: number, protocol: Protocol): string[] | string;
  /** The directory to start it in; default: this checkout's root. */
  cwd?: () => string;
  /** Implements framed BROADCAST (HELLO, BROADCAST_MSG to every other client, BROADCAST_ACK). */
  broadcast: boolean;
  /** Run only in these scenarios (elsewhere it would duplicate another server). */
  only?: string[];
  /** A bunpoll variant: its extra server flags, which its --before twin gets too. */
  bunpollFlags?: string[];
  /** A --before server: the name of the current server it is the "before" of. */
  beforeOf?: string;
  /** The --protocol values it speaks (default echo and framed). */
  protocols?: Protocol[];
  /** Serves the static files of the static-* scenarios (they run only such servers). */
  httpStatic?: boolean;
}

const speaks = (def: ServerDef, p: Protocol): boolean => (def.protocols ?? ["echo", "framed"]).includes(p);

/** In a bunpoll variant's flags: the static-* scenarios' directory (made on first use). */
const STATIC_DIR = "<static-dir>";

/** bunpoll's src/server.ts in the checkout `dir()` (with a trailing slash), with `extra` flags. */
function bunpollServer(extra: string[], dir: () => string | null = () => root, only?: string[]): ServerDef {
  return {
    command: (port, protocol) => {
      const d = dir();
      if (d === null) return "the --before worktree is not set up";
      return existsSync(`${d}src/server.ts`)
        ? [bun, `${d}src/server.ts`, "--protocol", protocol, "--host", "127.0.0.1", "--port", `${port}`, ...extra.map((a) => (a === STATIC_DIR ? staticDir() : a))]
        : `${d}src/server.ts does not exist`;
    },
    cwd: () => dir() ?? root,
    broadcast: true,
    only,
    bunpollFlags: extra,
    protocols: ["echo", "framed", "http"],
  };
}

// --protocol http: the files of the static-* scenarios, written once per run into a temp
// directory (removed at exit) that bunpoll --static and nginx both serve.
let staticDirPath: string | null = null;
const tempDirs: string[] = [];
function staticDir(): string {
  if (staticDirPath !== null) return staticDirPath;
  const d = mkdtempSync(`${os.tmpdir()}/bunpoll-bench-static-`);
  tempDirs.push(d);
  for (const n of STATIC_SCENARIOS) {
    const sc = SCENARIOS[n] as HttpScenario;
    if ("staticFile" in sc.expect) writeFileSync(`${d}/${sc.expect.staticFile}`, randomBytes(sc.expect.bytes));
  }
  staticDirPath = d;
  return d;
}
function removeTempDirs(): void {
  for (const d of tempDirs.splice(0)) rmSync(d, { recursive: true, force: true });
}

/**
 * nginx as the static-file baseline: a config generated per start (its port) in a temp
 * directory, one process (master_process off: the PID we hold is the one that serves, as
 * for every other server), one worker's worth of connections, sendfile and tcp_nopush on,
 * no access log, keep-alive for 1,000,000 requests (in effect unlimited) and 300 s.
 */
function nginxCommand(port: number): string[] | string {
  const exe = Bun.which("nginx") ?? (existsSync("/usr/sbin/nginx") ? "/usr/sbin/nginx" : null);
  if (exe === null) return "nginx is not installed (apt-get install -y nginx)";
  const prefix = mkdtempSync(`${os.tmpdir()}/bunpoll-bench-nginx-`);
  tempDirs.push(prefix);
  const conf = `${prefix}/nginx.conf`;
  writeFileSync(
    conf,
    `worker_processes 1;
master_process off;
daemon off;
pid ${prefix}/nginx.pid;
error_log stderr warn;
events {
  worker_connections 20000;
  use epoll;
}
http {
  types {
    application/octet-stream bin;
    text/html html;
    text/plain txt;
  }
  default_type application/octet-stream;
  access_log off;
  sendfile on;
  tcp_nopush on;
  tcp_nodelay on;
  keepalive_requests 1000000;
  keepalive_timeout 300s;
  client_body_temp_path ${prefix}/client_body;
  proxy_temp_path ${prefix}/proxy;
  fastcgi_temp_path ${prefix}/fastcgi;
  uwsgi_temp_path ${prefix}/uwsgi;
  scgi_temp_path ${prefix}/scgi;
  server {
    listen 127.0.0.1:${port};
    root ${staticDir()};
  }
}
`,
  );
  return [exe, "-p", `${prefix}/`, "-c", conf, "-e", "stderr"];
}

// To add a server: one entry here. Its program must take the flags shown and listen on
// 127.0.0.1:port; it is started with `exec`, so the PID we hold is the server's own.
const SERVERS: Record<string, ServerDef> = {
  bunpoll: bunpollServer([]),
  // Same server with protocol counters and the latency histogram off: the cost of stats.
  "bunpoll-nostats": bunpollServer(["--no-stats"]),
  // Same server that always sleeps in epoll_wait (no adaptive busy polling): what the
  // default --busy-poll 50 buys and costs.
  "bunpoll-nospin": bunpollServer(["--busy-poll", "0"], () => root, ["pingpong", "pipelined", "idle", "fanout", "many"]),
  // --workers 2 (issue 13), pinned to core 0 like every server: what being multi-threaded
  // costs per message when the threads share one core. The -unpinned twins run on any core
  // (taskset -c 0,1 re-widens the runner's pinning; the load generator still has core 1).
  "bunpoll-w2": bunpollServer(["--workers", "2"]),
  "bunpoll-w2-nospin": bunpollServer(["--workers", "2", "--busy-poll", "0"]),
  "bunpoll-unpinned": { ...bunpollServer([]), command: (port, protocol) => ["taskset", "-c", "0,1", bun, `${root}src/server.ts`, "--protocol", protocol, "--host", "127.0.0.1", "--port", `${port}`] },
  "bunpoll-w2-unpinned": { ...bunpollServer(["--workers", "2"]), command: (port, protocol) => ["taskset", "-c", "0,1", bun, `${root}src/server.ts`, "--protocol", protocol, "--host", "127.0.0.1", "--port", `${port}`, "--workers", "2"] },
  // Open loop only: the defaults with Bun's GC timer off (an eden GC every second while the
  // heap changes, bench/README.md "Open loop"), to show what that timer costs at the tail.
  "bunpoll-nogctimer": ((d: ServerDef): ServerDef => ({
    ...d,
    command: (port, protocol) => {
      const c = d.command(port, protocol);
      return typeof c === "string" ? c : ["env", "BUN_GC_TIMER_DISABLE=1", ...c];
    },
    bunpollFlags: undefined,
  }))(bunpollServer([], () => root, ["openloop"])),
  "bun-listen": {
    command: (port, protocol) => [bun, "bench/baselines/bun-listen.ts", "--protocol", protocol, "--port", `${port}`],
    broadcast: true,
  },
  // Bun.listen writing each BROADCAST_MSG to each recipient as parsed (one send per
  // delivery) instead of batching per read: fan-out only, elsewhere it is bun-listen.
  "bun-listen-naive": {
    command: (port, protocol) => [
      bun, "bench/baselines/bun-listen.ts", "--protocol", protocol, "--port", `${port}`, "--naive-broadcast",
    ],
    broadcast: true,
    only: ["fanout"],
  },
  "node-net": {
    command: (port, protocol) => [bun, "bench/baselines/node-net.ts", "--protocol", protocol, "--port", `${port}`],
    broadcast: true,
  },
  "c-epoll": {
    command: (port, protocol) => {
      const exe = ensureCServer(root);
      return exe ? [exe, "--protocol", protocol, "--port", `${port}`] : "no C compiler (cc) or the build failed";
    },
    broadcast: true,
  },
  // --protocol http. bunpoll (above) is the CLI's built-in app, default flags.
  // The library: serve({ fetch }) with default options, a new Response per request.
  "bunpoll-fetch": {
    command: (port) => [bun, "bench/servers/bunpoll-fetch.ts", "--port", `${port}`],
    broadcast: false,
    protocols: ["http"],
    only: ["plaintext", "plaintext-p16", "json"],
  },
  // The CLI with --static DIR: the static-* scenarios.
  "bunpoll-static": { ...bunpollServer(["--static", STATIC_DIR], () => root, STATIC_SCENARIOS), protocols: ["http"], httpStatic: true },
  // Bun.serve with /plaintext as a static route (its fastest path).
  "bun-serve": {
    command: (port) => [bun, "bench/baselines/bun-serve.ts", "--mode", "routes", "--port", `${port}`],
    broadcast: false,
    protocols: ["http"],
  },
  // Bun.serve with everything in fetch(req), a new Response per request.
  "bun-serve-fetch": {
    command: (port) => [bun, "bench/baselines/bun-serve.ts", "--mode", "fetch", "--port", `${port}`],
    broadcast: false,
    protocols: ["http"],
    only: ["plaintext", "plaintext-p16", "json"],
  },
  // node:http, run by Node.
  "node-http": {
    command: (port) => {
      const node = Bun.which("node");
      return node ? [node, "bench/baselines/node-http.js", "--port", `${port}`] : "node is not on PATH";
    },
    broadcast: false,
    protocols: ["http"],
  },
  "c-http": {
    command: (port) => {
      const exe = ensureCServer(root, "c-http");
      return exe ? [exe, "--port", `${port}`] : "no C compiler (cc) or the build failed";
    },
    broadcast: false,
    protocols: ["http"],
  },
  nginx: {
    command: (port) => nginxCommand(port),
    broadcast: false,
    protocols: ["http"],
    httpStatic: true,
    only: STATIC_SCENARIOS,
  },
  // --protocol ws: bunpoll-ws (serve()), bunpoll-cli (/ws/echo), bun-serve-ws, node-ws.
  ...wsServers(root, bun),
};

// --before REF: the checkout of REF (bench/lib/before.ts), set up before the first round.
let beforeTree: BeforeTree | null = null;

/**
 * --before: add a twin of every bunpoll variant, named bunpoll-before[-variant], that runs
 * src/server.ts of the REF checkout with the same flags, from that checkout.
 */
function addBeforeServers(): void {
  for (const [name, def] of Object.entries(SERVERS)) {
    if (def.bunpollFlags === undefined || def.beforeOf !== undefined) continue;
    const twin = "bunpoll-before" + name.slice("bunpoll".length);
    SERVERS[twin] = {
      ...bunpollServer(def.bunpollFlags, () => beforeTree?.dir ?? null, def.only),
      protocols: def.protocols,
      httpStatic: def.httpStatic,
      beforeOf: name,
    };
  }
}

type Metric = "cpuUsPerMsg" | "msgsPerSec" | "p50" | "kibPerConn";

// --before: what each scenario compares between a server and its twin from REF, as
// per-round ratios current/before, median over rounds. "within 5%" means at most 5%
// worse: ratio <= 1.05 where lower is better, >= 0.95 where higher is better.
interface BeforeCheck {
  scenario: string;
  metric: Metric;
  higherIsBetter: boolean;
  label: string;
}
const BEFORE_TOLERANCE = 0.05;
const BEFORE_CHECKS: BeforeCheck[] = [
  { scenario: "pingpong", metric: "p50", higherIsBetter: false, label: "RTT p50" },
  { scenario: "pingpong", metric: "cpuUsPerMsg", higherIsBetter: false, label: "CPU µs/msg (info)" },
  { scenario: "pipelined", metric: "cpuUsPerMsg", higherIsBetter: false, label: "CPU µs/msg" },
  { scenario: "pipelined", metric: "msgsPerSec", higherIsBetter: true, label: "msgs/s (info)" },
  { scenario: "many", metric: "cpuUsPerMsg", higherIsBetter: false, label: "CPU µs/msg (info)" },
  { scenario: "idle", metric: "kibPerConn", higherIsBetter: false, label: "RSS KiB/conn" },
  { scenario: "fanout", metric: "msgsPerSec", higherIsBetter: true, label: "deliveries/s" },
  { scenario: "fanout", metric: "cpuUsPerMsg", higherIsBetter: false, label: "CPU µs/delivery (info)" },
  { scenario: "plaintext", metric: "cpuUsPerMsg", higherIsBetter: false, label: "CPU µs/req" },
  { scenario: "plaintext-p16", metric: "cpuUsPerMsg", higherIsBetter: false, label: "CPU µs/req" },
  { scenario: "static-4k", metric: "cpuUsPerMsg", higherIsBetter: false, label: "CPU µs/req" },
  { scenario: "static-1m", metric: "cpuUsPerMsg", higherIsBetter: false, label: "CPU µs/req" },
];

// The issue's targets, checked at the end of a run on per-round ratios a/b of `metric`
// (servers of one round run back to back, so a ratio within a round is the least noisy
// comparison), median over rounds.
interface Target {
  scenario: string;
  /** Only with this --protocol (fanout is always framed). */
  protocol: Protocol;
  a: string;
  /** Absent: the limit applies to `a`'s own per-round values, not to a ratio. */
  b?: string;
  metric: Metric;
  op: "<=" | ">=";
  limit: number;
  what: string;
}
const TARGETS: Target[] = [
  // Issue 2 (echo)
  { scenario: "pipelined", protocol: "echo", a: "bunpoll", b: "bun-listen", metric: "cpuUsPerMsg", op: "<=", limit: 0.9,
    what: "echo pipelined: bunpoll CPU/msg <= 0.9 x Bun.listen" },
  { scenario: "pipelined", protocol: "echo", a: "bunpoll", b: "c-epoll", metric: "cpuUsPerMsg", op: "<=", limit: 1.15,
    what: "echo pipelined: bunpoll CPU/msg <= 1.15 x C epoll" },
  { scenario: "pipelined", protocol: "echo", a: "c-epoll", b: "bun-listen", metric: "cpuUsPerMsg", op: "<=", limit: 0.9,
    what: "echo pipelined (reference, not a target): C epoll CPU/msg <= 0.9 x Bun.listen" },
  { scenario: "pingpong", protocol: "echo", a: "bunpoll", b: "bun-listen", metric: "p50", op: "<=", limit: 1,
    what: "echo ping-pong: bunpoll RTT p50 <= Bun.listen" },
  { scenario: "pingpong", protocol: "echo", a: "bunpoll-nospin", b: "bun-listen", metric: "p50", op: "<=", limit: 1,
    what: "echo ping-pong (reference, not a target): bunpoll --busy-poll 0 RTT p50 <= Bun.listen" },
  { scenario: "pingpong", protocol: "echo", a: "c-epoll", b: "bun-listen", metric: "p50", op: "<=", limit: 1,
    what: "echo ping-pong (reference, not a target): C epoll RTT p50 <= Bun.listen" },
  // Issue 3 (framed)
  { scenario: "pipelined", protocol: "framed", a: "bunpoll", b: "bun-listen", metric: "cpuUsPerMsg", op: "<=", limit: 0.7,
    what: "framed pipelined: bunpoll CPU/msg <= 0.7 x Bun.listen" },
  { scenario: "pipelined", protocol: "framed", a: "bunpoll", b: "c-epoll", metric: "cpuUsPerMsg", op: "<=", limit: 1.2,
    what: "framed pipelined: bunpoll CPU/msg <= 1.2 x C epoll" },
  { scenario: "pipelined", protocol: "framed", a: "c-epoll", b: "bun-listen", metric: "cpuUsPerMsg", op: "<=", limit: 0.7,
    what: "framed pipelined (reference, not a target): C epoll CPU/msg <= 0.7 x Bun.listen" },
  { scenario: "pipelined", protocol: "framed", a: "bunpoll", b: "bunpoll-nostats", metric: "cpuUsPerMsg", op: "<=", limit: 1.03,
    what: "framed pipelined: stats on vs off <= +3% CPU/msg" },
  { scenario: "fanout", protocol: "framed", a: "bunpoll", b: "bun-listen", metric: "msgsPerSec", op: ">=", limit: 1.2,
    what: "fanout: bunpoll deliveries/s >= 1.2 x Bun.listen" },
  { scenario: "fanout", protocol: "framed", a: "c-epoll", b: "bun-listen", metric: "msgsPerSec", op: ">=", limit: 1.2,
    what: "fanout (reference, not a target): C epoll deliveries/s >= 1.2 x Bun.listen" },
  { scenario: "fanout", protocol: "framed", a: "bunpoll", b: "bun-listen", metric: "cpuUsPerMsg", op: "<=", limit: 1 / 1.2,
    what: "fanout (CPU view, not an issue target): bunpoll CPU/delivery <= 0.83 x Bun.listen" },
  { scenario: "fanout", protocol: "framed", a: "bunpoll", b: "bun-listen-naive", metric: "msgsPerSec", op: ">=", limit: 1.2,
    what: "fanout (info): bunpoll deliveries/s >= 1.2 x Bun.listen writing per delivery" },
  // Issue 11 (http)
  { scenario: "plaintext", protocol: "http", a: "bunpoll", b: "bun-serve", metric: "cpuUsPerMsg", op: "<=", limit: 0.9,
    what: "http plaintext: bunpoll CLI CPU/req <= 0.9 x Bun.serve static route" },
  { scenario: "plaintext", protocol: "http", a: "c-http", b: "bun-serve", metric: "cpuUsPerMsg", op: "<=", limit: 0.9,
    what: "http plaintext (reference, not a target): C epoll CPU/req <= 0.9 x Bun.serve static route" },
  { scenario: "plaintext", protocol: "http", a: "bunpoll-fetch", b: "bun-serve-fetch", metric: "cpuUsPerMsg", op: "<=", limit: 1,
    what: "http plaintext: bunpoll serve({fetch}) CPU/req <= 1.0 x Bun.serve fetch" },
  { scenario: "plaintext-p16", protocol: "http", a: "bunpoll", b: "bun-serve", metric: "msgsPerSec", op: ">=", limit: 5,
    what: "http plaintext pipelined 16: bunpoll CLI req/s >= 5 x Bun.serve static route" },
  { scenario: "plaintext-p16", protocol: "http", a: "bunpoll", b: "bun-serve-fetch", metric: "msgsPerSec", op: ">=", limit: 5,
    what: "http plaintext pipelined 16 (the same bar against Bun.serve fetch): bunpoll CLI req/s >= 5 x Bun.serve fetch" },
  { scenario: "plaintext-p16", protocol: "http", a: "c-http", b: "bun-serve", metric: "msgsPerSec", op: ">=", limit: 5,
    what: "http plaintext pipelined 16 (reference, not a target): C epoll req/s >= 5 x Bun.serve static route" },
  { scenario: "plaintext-p16", protocol: "http", a: "bunpoll", b: "c-http", metric: "cpuUsPerMsg", op: "<=", limit: 1.5,
    what: "http plaintext pipelined 16: bunpoll CLI CPU/req <= 1.5 x C epoll" },
  { scenario: "plaintext-p16", protocol: "http", a: "bunpoll", b: "bun-serve", metric: "cpuUsPerMsg", op: "<=", limit: 0.2,
    what: "http plaintext pipelined 16 (CPU view, not an issue target): bunpoll CLI CPU/req <= 0.2 x Bun.serve" },
  { scenario: "static-4k", protocol: "http", a: "bunpoll-static", b: "nginx", metric: "msgsPerSec", op: ">=", limit: 0.8,
    what: "http static 4 KiB: bunpoll --static req/s >= 0.8 x nginx (1 worker)" },
  { scenario: "static-4k", protocol: "http", a: "bunpoll-static", b: "nginx", metric: "cpuUsPerMsg", op: "<=", limit: 1.25,
    what: "http static 4 KiB: bunpoll --static CPU/req <= 1.25 x nginx" },
  { scenario: "static-1m", protocol: "http", a: "bunpoll-static", b: "nginx", metric: "msgsPerSec", op: ">=", limit: 0.8,
    what: "http static 1 MiB: bunpoll --static req/s >= 0.8 x nginx (1 worker; wrk-bound)" },
  { scenario: "static-1m", protocol: "http", a: "bunpoll-static", b: "nginx", metric: "cpuUsPerMsg", op: "<=", limit: 1.25,
    what: "http static 1 MiB: bunpoll --static CPU/req <= 1.25 x nginx" },
  { scenario: "idle", protocol: "http", a: "bunpoll", metric: "kibPerConn", op: "<=", limit: 1,
    what: "http idle keep-alive (one GET each): bunpoll CLI RSS <= 1 KiB per connection" },
  // Issue 12 (ws)
  ...WS_TARGETS,
];

interface Options {
  scenarios: string[];
  servers: string[];
  protocol: Protocol;
  rounds: number;
  duration: number;
  warmup: number;
  idleConns: number;
  quick: boolean;
  syscalls: boolean;
  /** --before REF: also run bunpoll as of REF (the bunpoll-before* servers). */
  before: string | null;
}

function usage(msg: string): never {
  const variants = Object.keys(SERVERS).filter((n) => n !== "bunpoll" && SERVERS[n]!.bunpollFlags !== undefined && SERVERS[n]!.beforeOf === undefined);
  process.stderr.write(
    `run: ${msg}\nusage: bun run bench/run.ts [--quick] [--scenarios ${Object.keys(SCENARIOS).join(",")}] ` +
      `[--servers ${Object.keys(SERVERS).join(",")}] [--protocol echo|framed|http|ws (fanout: always framed)] [--rounds N] ` +
      `[--duration SEC] [--warmup SEC] [--idle-conns N] [--fanout-window N] [--syscalls] [--before REF]\n` +
      `  --before REF adds bunpoll-before${variants.map((n) => `[${n.slice("bunpoll".length)}]`).join("")}: ` +
      `src/server.ts of commit REF (a git worktree in ${os.tmpdir()}/bunpoll-before/), with the same flags\n`,
  );
  process.exit(2);
}

function parseArgs(argv: string[]): Options {
  const o: Options = {
    scenarios: [],
    servers: [],
    protocol: "echo",
    rounds: 2,
    duration: 5,
    warmup: 1,
    idleConns: 10_000,
    quick: false,
    syscalls: false,
    before: null,
  };
  let servers: string[] | null = null;
  let scenarios: string[] | null = null;
  let rounds: number | null = null;
  let duration: number | null = null;
  let warmup: number | null = null;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const next = (): string => {
      const v = argv[++i];
      if (v === undefined) usage(`missing value for ${a}`);
      return v;
    };
    const num = (): number => {
      const v = Number(next());
      if (!Number.isFinite(v) || v <= 0) usage(`bad number for ${a}`);
      return v;
    };
    const list = (known: Record<string, unknown>): string[] => {
      const v = next().split(",").filter((s) => s !== "");
      for (const s of v) if (!(s in known)) usage(`unknown name ${s} for ${a}`);
      return v;
    };
    const names = (): string[] => next().split(",").filter((s) => s !== "");
    switch (a) {
      case "--quick": o.quick = true; break;
      case "--syscalls": o.syscalls = true; break;
      case "--scenarios": scenarios = list(SCENARIOS); break;
      case "--servers": servers = names(); break; // checked below, once --before has added its servers
      case "--before": o.before = next(); break;
      case "--protocol": {
        const p = next();
        if (p !== "echo" && p !== "framed" && p !== "http" && p !== "ws") usage(`unknown protocol ${p}`);
        o.protocol = p;
        break;
      }
      case "--rounds": rounds = Math.floor(num()); break;
      case "--duration": duration = num(); break;
      case "--warmup": warmup = num(); break;
      case "--idle-conns": o.idleConns = Math.floor(num()); break;
      case "--fanout-window": (SCENARIOS.fanout as FanoutScenario).window = Math.floor(num()); break;
      default: usage(`unknown argument ${a}`);
    }
  }
  if (o.before !== null) addBeforeServers();
  // Default: every scenario and every server for the protocol.
  const forProtocol = Object.keys(SCENARIOS).filter((n) => scenarioProtocols(SCENARIOS[n]!).includes(o.protocol));
  for (const n of scenarios ?? []) {
    if (!forProtocol.includes(n)) usage(`scenario ${n} does not run with --protocol ${o.protocol} (those that do: ${forProtocol.join(",")})`);
  }
  o.scenarios = scenarios ?? forProtocol;
  for (const n of servers ?? []) {
    if (!(n in SERVERS)) usage(`unknown name ${n} for --servers${n.startsWith("bunpoll-before") ? " (needs --before REF)" : ""}`);
    if (!speaks(SERVERS[n]!, o.protocol)) usage(`server ${n} does not speak --protocol ${o.protocol}`);
  }
  // Default: every server, each --before twin right after its current server.
  o.servers = servers ?? Object.keys(SERVERS).filter((n) => SERVERS[n]!.beforeOf === undefined && speaks(SERVERS[n]!, o.protocol)).flatMap((n) => [
    n, ...Object.keys(SERVERS).filter((t) => SERVERS[t]!.beforeOf === n),
  ]);
  if (o.before !== null && !o.servers.some((n) => SERVERS[n]!.beforeOf !== undefined)) {
    usage("--before REF runs the bunpoll-before* servers: leave out --servers or name some of them");
  }
  // --quick: a smoke run. Explicit flags still win.
  o.rounds = rounds ?? (o.quick ? 1 : 2);
  o.duration = duration ?? (o.quick ? 2 : 5);
  o.warmup = warmup ?? (o.quick ? 0.5 : 1);
  return o;
}

// ---------------------------------------------------------------------------------------
// Processes

const live = new Set<Subprocess>();

// Servers and load generators must not outlive us, whatever happens.
const onSignal = (sig: string): void => {
  process.stderr.write(`\nrun: ${sig}, killing ${live.size} child process(es)\n`);
  for (const p of live) p.kill("SIGKILL");
  removeTempDirs();
  process.exit(130);
};
process.on("SIGINT", () => onSignal("SIGINT"));
process.on("SIGTERM", () => onSignal("SIGTERM"));

// Raise the fd limit to 65536 if allowed, else to the hard limit (this sandbox has a hard
// limit of 20000 and no CAP_SYS_RESOURCE: enough for 10,000 connections per process).
const RAISE_NOFILE = 'ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec "$@"';

function spawnPinned(cpu: number, argv: string[], stdin: "pipe" | "ignore", cwd = root): Subprocess<typeof stdin, "pipe", "pipe"> {
  const p = Bun.spawn(["taskset", "-c", `${cpu}`, "sh", "-c", RAISE_NOFILE, "sh", ...argv], {
    cwd,
    stdin,
    stdout: "pipe",
    stderr: "pipe",
  });
  live.add(p);
  void p.exited.then(() => live.delete(p));
  return p;
}

/** Keeps the last `max` characters of a stream, draining it so the child never blocks on a full pipe. */
class Tail {
  text = "";
  readonly done: Promise<void>;
  constructor(stream: ReadableStream<Uint8Array>, max = 4000) {
    this.done = (async () => {
      const dec = new TextDecoder();
      for await (const chunk of stream) {
        this.text = (this.text + dec.decode(chunk, { stream: true })).slice(-max);
      }
    })().catch(() => {});
  }
}

/** Reads a child's stdout line by line, keeping every line (the loadgen prints little). */
class Lines {
  readonly lines: string[] = [];
  private partial = "";
  private waiters: Array<() => void> = [];
  readonly done: Promise<void>;
  constructor(stream: ReadableStream<Uint8Array>) {
    this.done = (async () => {
      const dec = new TextDecoder();
      for await (const chunk of stream) {
        const parts = (this.partial + dec.decode(chunk, { stream: true })).split("\n");
        this.partial = parts.pop()!;
        this.lines.push(...parts.filter((l) => l !== ""));
        for (const w of this.waiters.splice(0)) w();
      }
      if (this.partial) this.lines.push(this.partial);
    })()
      .catch(() => {})
      .finally(() => {
        for (const w of this.waiters.splice(0)) w();
      });
  }
  /** Wait for a line matching `pred`, the end of the stream, or the deadline. */
  async waitFor(pred: (l: string) => boolean, timeoutMs: number): Promise<string | null> {
    const deadline = performance.now() + timeoutMs;
    let ended = false;
    void this.done.then(() => (ended = true));
    for (;;) {
      const hit = this.lines.find(pred);
      if (hit !== undefined) return hit;
      if (ended || performance.now() > deadline) return null;
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 100);
      });
    }
  }
}

async function stop(p: Subprocess, graceMs = 3000): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  p.kill("SIGTERM");
  const exited = await Promise.race([p.exited.then(() => true), Bun.sleep(graceMs).then(() => false)]);
  if (!exited) {
    p.kill("SIGKILL");
    await p.exited;
  }
}

async function waitExit(p: Subprocess, timeoutMs: number): Promise<boolean> {
  const ok = await Promise.race([p.exited.then(() => true), Bun.sleep(timeoutMs).then(() => false)]);
  if (!ok) await stop(p, 1000);
  return ok;
}

// --syscalls: the loadgen counts the server's syscalls with perf's tracepoint counters
// over its measured window (in-kernel counting, far less perturbing than strace, but not
// free: opt-in).
const SYSCALL_EVENTS = [
  "sendto", "recvfrom", "write", "read", "writev", "sendmsg", "recvmsg", "epoll_wait", "epoll_pwait",
  "epoll_pwait2", "epoll_ctl", "accept4", "close", "futex", "madvise", "mmap", "munmap",
];
let perfEvents: string[] | null | undefined;

/** The tracepoints perf can count here (null: no perf, or no permission). Probed once. */
function availablePerfEvents(): string[] | null {
  if (perfEvents !== undefined) return perfEvents;
  perfEvents = null;
  if (Bun.which("perf") === null) return null;
  const ok = (ev: string): boolean =>
    Bun.spawnSync(["perf", "stat", "-x,", "-e", ev, "--", "true"], { stdout: "ignore", stderr: "pipe" }).exitCode === 0;
  if (!ok("raw_syscalls:sys_enter")) return null;
  perfEvents = ["raw_syscalls:sys_enter", ...SYSCALL_EVENTS.map((e) => `syscalls:sys_enter_${e}`).filter(ok)];
  return perfEvents;
}

// Listen ports below the ephemeral range (32768-60999 here), so that 10,000 client
// sockets cannot collide with them; a random start avoids TIME_WAIT leftovers of a
// previous run.
let nextPort = 21000 + Math.floor(Math.random() * 8000);
async function freePort(): Promise<number> {
  for (;;) {
    const p = nextPort++;
    if (nextPort > 30000) nextPort = 21000;
    if (!(await portInUse(p))) return p;
  }
}

interface Started {
  proc: Subprocess<"ignore", "pipe", "pipe">;
  pid: number;
  port: number;
  exe: string;
  out: Tail;
  err: Tail;
}

/** Start a server on core 0 and wait until its port accepts. Returns an error string on failure. */
async function startServer(name: string, protocol: Protocol): Promise<Started | string> {
  const port = await freePort();
  const def = SERVERS[name]!;
  const cmd = def.command(port, protocol);
  if (typeof cmd === "string") return `skipped: ${cmd}`;
  const proc = spawnPinned(0, cmd, "ignore", def.cwd?.() ?? root);
  const out = new Tail(proc.stdout);
  const err = new Tail(proc.stderr);
  const ready = await waitForPort(port, 15_000, proc);
  if (!ready) {
    await stop(proc, 1000);
    await Promise.race([Promise.all([out.done, err.done]), Bun.sleep(500)]);
    const why = proc.exitCode !== null ? `exited with code ${proc.exitCode}` : "did not accept on its port within 15 s";
    return `failed to start: ${why}${brief(err.text + out.text)}`;
  }
  let exe = "";
  try {
    exe = readlinkSync(`/proc/${proc.pid}/exe`);
  } catch {
    // gone already: reported by the caller's measurements
  }
  return { proc, pid: proc.pid, port, exe, out, err };
}

/** A one-line digest of a process's output for the table: its first and last lines. */
function brief(text: string): string {
  const lines = text.split("\n").map((l) => l.trim()).filter((l) => l !== "");
  if (lines.length === 0) return "";
  const s = lines.length <= 2 ? lines.join(" / ") : `${lines[0]} / ... / ${lines[lines.length - 1]}`;
  return `: ${s.length > 240 ? s.slice(0, 240) + "..." : s}`;
}

function serverGone(s: Started): string | null {
  return s.proc.exitCode !== null || s.proc.signalCode !== null
    ? `server died (exit ${s.proc.exitCode ?? s.proc.signalCode})${brief(s.err.text)}`
    : null;
}

// ---------------------------------------------------------------------------------------
// Measurements

interface LoadRound {
  ok: true;
  /** load: replies/s; fanout: deliveries/s (BROADCAST_MSG frames summed over receivers). */
  msgsPerSec: number;
  p50: number;
  p99: number;
  p999: number;
  max: number;
  cpuUsPerMsg: number | null;
  userUsPerMsg: number | null;
  sysUsPerMsg: number | null;
  rssKiB: number;
  hwmKiB: number;
  loadgenCpuPct: number;
  loadgenSaturated: boolean;
  otherCpuPct: number | null;
  stealPct: number | null;
  messages: number;
  windowS: number;
  protocolErrors: number;
  unexpectedCloses: number;
  exe: string;
  /** --syscalls: server syscalls per message (fanout: per delivery), total and by name. */
  syscallsPerMsg?: number | null;
  syscallBreakdown?: Record<string, number>;
  syscallNote?: string;
  // fanout only
  broadcastsPerSec?: number;
  recipientsMin?: number | null;
  recipientsMax?: number | null;
  lagLimitedPct?: number;
  // http only
  /** Response bytes (heads and bodies) per second, as wrk counts them. */
  bytesPerSec?: number;
  /** wrk's socket errors and timeouts, when there were any. */
  wrkErrors?: string;
  // ws with permessage-deflate offered: connections that negotiated it, replies that came compressed
  deflateAccepted?: number;
  compressedPct?: number;
}
interface IdleRound {
  ok: true;
  conns: number;
  accepted: number;
  rssBeforeKiB: number;
  rssAfterKiB: number;
  kibPerConn: number;
  /** RssAnon: the process's own memory, without mapped files such as the executable. */
  anonKibPerConn: number;
  connectMs: number;
  exe: string;
  /** ws idle with permessage-deflate offered: connections that negotiated it. */
  deflateAccepted?: number;
}
interface FailedRound {
  ok: false;
  error: string;
}
type Round = LoadRound | IdleRound | FailedRound;

async function runLoadRound(name: string, sc: LoadScenario | FanoutScenario, o: Options): Promise<Round> {
  if (sc.kind === "fanout" && !SERVERS[name]!.broadcast) {
    return { ok: false, error: `skipped: this server does not implement ${sc.ws ? "/ws/pub" : "BROADCAST"}` };
  }
  const protocol = scenarioProtocol(sc, o.protocol);
  const s = await startServer(name, protocol);
  if (typeof s === "string") return { ok: false, error: s };
  try {
    await Bun.sleep(200); // let the probe connection's close settle
    const events = o.syscalls ? availablePerfEvents() : null;
    const perf = events !== null ? ["--perf-events", events.join(",")] : [];
    const mode =
      sc.kind === "fanout"
        ? ["--fanout", "--receivers", `${sc.receivers}`, "--window", `${sc.window}`, "--size", `${sc.size}`]
        : ["--protocol", protocol, "--conns", `${sc.conns}`, "--depth", `${sc.depth}`, "--size", `${sc.size}`];
    const argv = sc.ws
      ? wsLoadArgv(root, {
          ws: sc.ws, port: s.port, serverPid: s.pid, duration: o.duration, warmup: o.warmup, size: sc.size,
          ...(sc.kind === "fanout" ? { mode: "publish", conns: sc.receivers, window: sc.window } : { mode: "echo", conns: sc.conns, depth: sc.depth }),
        })
      : [
          bun, "bench/loadgen.ts", "--json", "--host", "127.0.0.1", "--port", `${s.port}`, ...mode,
          "--duration", `${o.duration}`, "--warmup", `${o.warmup}`, "--server-pid", `${s.pid}`, ...perf,
        ];
    if (typeof argv === "string") return { ok: false, error: argv };
    const lg = spawnPinned(1, argv, "ignore");
    const lines = new Lines(lg.stdout);
    const lgErr = new Tail(lg.stderr);
    // Connect phase (<= 60 s in the loadgen) + warm-up + window + slack.
    const finished = await waitExit(lg, (o.warmup + o.duration + 75) * 1000);
    await Promise.race([lines.done, Bun.sleep(1000)]);
    const gone = serverGone(s);
    if (gone) return { ok: false, error: gone };
    if (!finished) return { ok: false, error: "load generator timed out" };
    const json = lines.lines.find((l) => l.startsWith("{") && !l.includes('"event"'));
    if (lg.exitCode !== 0 || json === undefined) {
      return { ok: false, error: `load generator failed (exit ${lg.exitCode})${brief(lgErr.text)}` };
    }
    const r = JSON.parse(json) as {
      msgsPerSec: number;
      messages: number;
      windowS: number;
      rttUs: { p50: number; p99: number; p999: number; max: number };
      serverCpuUsPerMsg: number | null;
      serverUserUsPerMsg: number | null;
      serverSysUsPerMsg: number | null;
      loadgenCpuPct: number;
      loadgenSaturated: boolean;
      otherCpuPct: number | null;
      stealPct: number | null;
      protocolErrors: number;
      unexpectedCloses: number;
      broadcastsPerSec?: number;
      recipientsMin?: number | null;
      recipientsMax?: number | null;
      lagLimitedPct?: number;
      serverSyscallsPerMsg?: Record<string, number>;
      serverSyscallsNote?: string;
      compressedReplies?: number;
      deflateAccepted?: number;
    };
    const fan =
      sc.kind === "fanout"
        ? {
            broadcastsPerSec: r.broadcastsPerSec ?? 0,
            recipientsMin: r.recipientsMin ?? null,
            recipientsMax: r.recipientsMax ?? null,
            lagLimitedPct: r.lagLimitedPct ?? 0,
          }
        : {};
    let sys: Pick<LoadRound, "syscallsPerMsg" | "syscallBreakdown" | "syscallNote"> = {};
    if (o.syscalls) {
      const per = r.serverSyscallsPerMsg;
      sys =
        per !== undefined
          ? { syscallsPerMsg: per.total ?? null, syscallBreakdown: per }
          : { syscallsPerMsg: null, syscallNote: r.serverSyscallsNote ?? "perf or its syscall tracepoints are not available" };
    }
    return {
      ok: true,
      msgsPerSec: r.msgsPerSec,
      p50: r.rttUs.p50,
      p99: r.rttUs.p99,
      p999: r.rttUs.p999,
      max: r.rttUs.max,
      cpuUsPerMsg: r.serverCpuUsPerMsg,
      userUsPerMsg: r.serverUserUsPerMsg,
      sysUsPerMsg: r.serverSysUsPerMsg,
      rssKiB: statusKiB(s.pid, "VmRSS"),
      hwmKiB: statusKiB(s.pid, "VmHWM"),
      loadgenCpuPct: r.loadgenCpuPct,
      loadgenSaturated: r.loadgenSaturated,
      otherCpuPct: r.otherCpuPct,
      stealPct: r.stealPct,
      messages: r.messages,
      windowS: r.windowS,
      protocolErrors: r.protocolErrors,
      unexpectedCloses: r.unexpectedCloses,
      exe: s.exe,
      ...fan,
      ...sys,
      ...(sc.ws?.deflate
        ? { deflateAccepted: r.deflateAccepted ?? 0, compressedPct: r.messages > 0 ? ((r.compressedReplies ?? 0) / r.messages) * 100 : 0 }
        : {}),
    };
  } finally {
    await stop(s.proc);
  }
}

async function runIdleRound(name: string, o: Options, sc: IdleScenario): Promise<Round> {
  const s = await startServer(name, o.protocol);
  if (typeof s === "string") return { ok: false, error: s };
  let lg: Subprocess<"pipe", "pipe", "pipe"> | null = null;
  try {
    await Bun.sleep(300);
    // Warm-up, the same for every server: a tenth of the connections (one GET each for HTTP)
    // opened and closed first, so that the executable's pages and the JIT code these paths
    // touch (a one-time cost, not a per-connection one) are in the baseline.
    // The idle client: loadgen.ts, or ws-load for WebSocket scenarios (each connection's handshake done).
    const idleArgv = (conns: number, hold: number): string[] | string =>
      sc.ws
        ? wsLoadArgv(root, { ws: sc.ws, port: s.port, serverPid: s.pid, mode: "idle", conns, hold })
        : [
            bun, "bench/loadgen.ts", "--idle", "--json", "--host", "127.0.0.1", "--port", `${s.port}`,
            "--conns", `${conns}`, "--hold", `${hold}`,
            // HTTP: each connection sends one GET and reads the response, then stays open (keep-alive).
            ...(o.protocol === "http" ? ["--http-get", "/plaintext"] : []),
          ];
    const fds0 = fdCount(s.pid);
    const warmArgv = idleArgv(Math.ceil(o.idleConns / 10), 0);
    if (typeof warmArgv === "string") return { ok: false, error: warmArgv };
    const warm = spawnPinned(1, warmArgv, "pipe");
    await waitExit(warm, 60_000);
    const settle = performance.now() + 10_000;
    while (fdCount(s.pid) > fds0 && performance.now() < settle) await Bun.sleep(50);
    await Bun.sleep(500);
    const rssBefore = statusKiB(s.pid, "VmRSS");
    const anonBefore = statusKiB(s.pid, "RssAnon");
    const fdsBefore = fdCount(s.pid);
    const argv = idleArgv(o.idleConns, 300);
    if (typeof argv === "string") return { ok: false, error: argv };
    lg = spawnPinned(1, argv, "pipe");
    const lines = new Lines(lg.stdout);
    const lgErr = new Tail(lg.stderr);
    const line = await lines.waitFor((l) => l.includes('"connected"'), 130_000);
    if (line === null) {
      return { ok: false, error: `idle loadgen did not connect${brief(lgErr.text)}` };
    }
    const info = JSON.parse(line) as { conns: number; failed: number; firstError: string; connectMs: number; deflateAccepted?: number };
    // The client sees a connection as open once the handshake is done, before the server
    // has accept()ed it: wait until the server holds the fds, then let allocations settle.
    const deadline = performance.now() + 20_000;
    while (fdCount(s.pid) - fdsBefore < info.conns && performance.now() < deadline) await Bun.sleep(100);
    await Bun.sleep(500);
    const gone = serverGone(s);
    if (gone) return { ok: false, error: gone };
    const rssAfter = statusKiB(s.pid, "VmRSS");
    const anonAfter = statusKiB(s.pid, "RssAnon");
    const accepted = fdCount(s.pid) - fdsBefore;
    if (info.failed > 0) {
      process.stderr.write(`  note: ${info.failed} idle connections failed (${info.firstError})\n`);
    }
    return {
      ok: true,
      conns: info.conns,
      accepted,
      rssBeforeKiB: rssBefore,
      rssAfterKiB: rssAfter,
      kibPerConn: info.conns > 0 ? (rssAfter - rssBefore) / info.conns : 0,
      anonKibPerConn: info.conns > 0 ? (anonAfter - anonBefore) / info.conns : 0,
      connectMs: info.connectMs,
      exe: s.exe,
      ...(sc.ws?.deflate ? { deflateAccepted: info.deflateAccepted ?? 0 } : {}),
    };
  } finally {
    if (lg !== null) {
      lg.stdin.end(); // the loadgen's signal to close its connections and exit
      await waitExit(lg, 10_000);
    }
    await stop(s.proc);
  }
}

/** The summary line bench/wrk.lua's done() prints. Latencies in µs. */
interface WrkSummary {
  requests: number;
  durationUs: number;
  bytes: number;
  connectErrors: number;
  readErrors: number;
  writeErrors: number;
  statusErrors: number;
  timeouts: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
  mean: number;
}

function parseWrk(stdout: string): WrkSummary | null {
  const line = stdout.split("\n").find((l) => l.startsWith("WRK_JSON "));
  if (line === undefined) return null;
  try {
    return JSON.parse(line.slice("WRK_JSON ".length)) as WrkSummary;
  } catch {
    return null;
  }
}

/** wrk's -d and --latency want whole seconds. */
const wholeSeconds = (s: number): number => Math.max(1, Math.round(s));

/** wrk pinned to core 1 against `url`; resolves with its output and CPU time (µs), or an error. */
async function runWrk(url: string, sc: HttpScenario, seconds: number): Promise<{ out: string; cpuUs: number } | string> {
  const wrk = Bun.which("wrk");
  if (wrk === null) return "wrk is not installed (apt-get install -y wrk)";
  const p = spawnPinned(1, [
    wrk, "-t1", `-c${sc.conns}`, `-d${seconds}s`, "--timeout", "5s", "--latency", "-s", `${root}bench/wrk.lua`, url, "--", `${sc.depth}`,
  ], "ignore");
  const out = new Tail(p.stdout, 20_000);
  const err = new Tail(p.stderr);
  const finished = await waitExit(p, (seconds + 30) * 1000);
  await Promise.race([Promise.all([out.done, err.done]), Bun.sleep(1000)]);
  if (!finished) return "wrk timed out";
  if (p.exitCode !== 0) return `wrk failed (exit ${p.exitCode})${brief(err.text + out.text)}`;
  // taskset and sh exec into wrk: the child's rusage is wrk's own.
  const ru = p.resourceUsage();
  return { out: out.text, cpuUs: ru ? Number(ru.cpuTime.user + ru.cpuTime.system) : NaN };
}

/** One GET before the load: the server answers 200 with the scenario's body (or file), so a wrong server fails loudly. */
async function checkHttpResponse(port: number, sc: HttpScenario): Promise<string | null> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}${sc.path}`, {
      headers: { connection: "close" },
      signal: AbortSignal.timeout(5000),
    });
    const body = new Uint8Array(await res.arrayBuffer());
    if (res.status !== 200) return `GET ${sc.path} answered ${res.status}`;
    if ("body" in sc.expect) {
      const text = new TextDecoder().decode(body);
      if (text !== sc.expect.body) return `GET ${sc.path} answered ${JSON.stringify(text.slice(0, 60))}, expected ${JSON.stringify(sc.expect.body)}`;
    } else {
      const want = readFileSync(`${staticDir()}/${sc.expect.staticFile}`);
      if (body.length !== want.length || !Buffer.from(body).equals(want)) {
        return `GET ${sc.path} answered ${body.length} bytes that differ from the ${want.length}-byte file`;
      }
    }
    return null;
  } catch (e) {
    return `GET ${sc.path} failed: ${(e as Error).message}`;
  }
}

/**
 * One HTTP round: start the server, check one response, warm up with wrk, then a measured
 * wrk run with the server's CPU (schedstat, exact), the machine's and wrk's read around it.
 * The CPU window is the wrk process's life (its connects and exit add a few ms in which
 * the server is idle); requests are wrk's count over its -d window.
 */
async function runHttpRound(name: string, sc: HttpScenario, o: Options): Promise<Round> {
  if ("staticFile" in sc.expect && !SERVERS[name]!.httpStatic) {
    return { ok: false, error: "skipped: this server does not serve the static directory" };
  }
  const s = await startServer(name, "http");
  if (typeof s === "string") return { ok: false, error: s };
  try {
    await Bun.sleep(200); // let the probe connection's close settle
    const bad = await checkHttpResponse(s.port, sc);
    if (bad !== null) return { ok: false, error: `wrong response: ${bad}` };
    const url = `http://127.0.0.1:${s.port}${sc.path}`;
    const warm = await runWrk(url, sc, wholeSeconds(o.warmup));
    if (typeof warm === "string") return { ok: false, error: `warm-up: ${warm}` };
    const gone0 = serverGone(s);
    if (gone0) return { ok: false, error: gone0 };

    const seconds = wholeSeconds(o.duration);
    const ns0 = cpuNs(s.pid);
    const ticks0 = cpuTimes(s.pid);
    const m0 = machineCpu();
    const t0 = performance.now();
    const run = await runWrk(url, sc, seconds);
    const t1 = performance.now();
    const ns1 = cpuNs(s.pid);
    const ticks1 = cpuTimes(s.pid);
    const m1 = machineCpu();
    const gone = serverGone(s);
    if (gone) return { ok: false, error: gone };
    if (typeof run === "string") return { ok: false, error: run };
    const w = parseWrk(run.out);
    if (w === null) return { ok: false, error: `no WRK_JSON line in wrk's output${brief(run.out)}` };
    if (w.requests === 0) return { ok: false, error: `wrk completed no request${brief(run.out)}` };

    const windowUs = (t1 - t0) * 1000;
    const pctOfCore = (us: number): number => (us / windowUs) * 100;
    const serverUs = ns0 !== null && ns1 !== null ? (ns1 - ns0) / 1000 : null;
    const tickUser = ticks0 && ticks1 ? ticks1.user - ticks0.user : null;
    const tickAll = ticks0 && ticks1 ? tickUser! + (ticks1.sys - ticks0.sys) : null;
    const userShare = tickAll !== null && tickAll > 0 ? tickUser! / tickAll : null;
    const per = (us: number | null): number | null => (us === null ? null : us / w.requests);
    const loadgenCpuPct = pctOfCore(run.cpuUs);
    const errs = [
      w.connectErrors && `${w.connectErrors} connect`, w.readErrors && `${w.readErrors} read`,
      w.writeErrors && `${w.writeErrors} write`, w.timeouts && `${w.timeouts} timeouts`,
    ].filter(Boolean);
    const r: LoadRound = {
      ok: true,
      msgsPerSec: w.requests / (w.durationUs / 1e6),
      // wrk times a pipelined batch from its write to its last response, and its
      // percentiles above ~p90 come out 0 then: 0 is "not measured".
      p50: w.p50 || NaN,
      p99: w.p99 || NaN,
      p999: w.p999 || NaN,
      max: w.max,
      cpuUsPerMsg: per(serverUs),
      userUsPerMsg: per(serverUs !== null && userShare !== null ? serverUs * userShare : null),
      sysUsPerMsg: per(serverUs !== null && userShare !== null ? serverUs * (1 - userShare) : null),
      rssKiB: statusKiB(s.pid, "VmRSS"),
      hwmKiB: statusKiB(s.pid, "VmHWM"),
      loadgenCpuPct,
      loadgenSaturated: loadgenCpuPct > 90,
      otherCpuPct: m0 && m1 && serverUs !== null ? pctOfCore(m1.busy - m0.busy - serverUs - run.cpuUs) : null,
      stealPct: m0 && m1 ? pctOfCore(m1.steal - m0.steal) : null,
      messages: w.requests,
      windowS: w.durationUs / 1e6,
      protocolErrors: w.statusErrors,
      unexpectedCloses: w.readErrors + w.writeErrors + w.connectErrors + w.timeouts,
      exe: s.exe,
      bytesPerSec: w.bytes / (w.durationUs / 1e6),
      ...(errs.length > 0 ? { wrkErrors: `wrk errors: ${errs.join(", ")}` } : {}),
    };
    return r;
  } finally {
    await stop(s.proc);
  }
}

// ---------------------------------------------------------------------------------------
// Reporting

function median(xs: number[]): number {
  const a = [...xs].sort((x, y) => x - y);
  const m = a.length >> 1;
  return a.length % 2 ? a[m]! : (a[m - 1]! + a[m]!) / 2;
}

/** Median of every numeric field over the successful rounds (booleans: true if any round). */
function medianOf<T extends object>(rounds: T[]): Record<string, number | boolean | null> {
  const out: Record<string, number | boolean | null> = {};
  const first = rounds[0] as Record<string, unknown>;
  for (const k of Object.keys(first)) {
    if (k === "ok") continue;
    const vals = rounds.map((r) => (r as Record<string, unknown>)[k]);
    if (typeof first[k] === "boolean") out[k] = vals.some((v) => v === true);
    else if (vals.every((v) => typeof v === "number")) out[k] = median(vals as number[]);
    else if (vals.some((v) => typeof v === "number")) out[k] = median(vals.filter((v) => typeof v === "number") as number[]);
    else if (vals.every((v) => v === null)) out[k] = null;
  }
  return out;
}

const fmt = (v: unknown, digits = 1): string =>
  typeof v === "number" && Number.isFinite(v) ? v.toFixed(digits) : "-";
const fmtInt = (v: unknown): string =>
  typeof v === "number" && Number.isFinite(v) ? Math.round(v).toLocaleString("en-US") : "-";

interface ServerResult {
  median: Record<string, number | boolean | null> | null;
  rounds: Round[];
}

function loadTable(results: Record<string, ServerResult>): string {
  const rows = [
    "| server | msgs/s | p50 µs | p99 µs | p999 µs | CPU µs/msg | user µs/msg | RSS MiB | loadgen CPU | notes |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
  ];
  for (const [name, r] of Object.entries(results)) {
    const notes = notesFor(r);
    const m = r.median;
    if (m === null) {
      rows.push(`| ${name} | - | - | - | - | - | - | - | - | ${notes} |`);
      continue;
    }
    rows.push(
      `| ${name} | ${fmtInt(m.msgsPerSec)} | ${fmt(m.p50)} | ${fmt(m.p99)} | ${fmt(m.p999)} | ` +
        `${fmt(m.cpuUsPerMsg, 3)} | ${fmt(m.userUsPerMsg, 3)} | ${fmt((m.rssKiB as number) / 1024)} | ` +
        `${fmt(m.loadgenCpuPct, 0)}% | ${notes} |`,
    );
  }
  return rows.join("\n");
}

function httpTable(results: Record<string, ServerResult>): string {
  const rows = [
    "| server | req/s | MiB/s | p50 µs | p99 µs | p999 µs | CPU µs/req | user µs/req | RSS MiB | wrk CPU | notes |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
  ];
  for (const [name, r] of Object.entries(results)) {
    const notes = notesFor(r);
    const m = r.median;
    if (m === null) {
      rows.push(`| ${name} | - | - | - | - | - | - | - | - | - | ${notes} |`);
      continue;
    }
    rows.push(
      `| ${name} | ${fmtInt(m.msgsPerSec)} | ${fmt((m.bytesPerSec as number) / 1048576)} | ${fmt(m.p50, 0)} | ${fmt(m.p99, 0)} | ${fmt(m.p999, 0)} | ` +
        `${fmt(m.cpuUsPerMsg, 3)} | ${fmt(m.userUsPerMsg, 3)} | ${fmt((m.rssKiB as number) / 1024)} | ` +
        `${fmt(m.loadgenCpuPct, 0)}% | ${notes} |`,
    );
  }
  return rows.join("\n");
}

function fanoutTable(results: Record<string, ServerResult>, sc: FanoutScenario): string {
  const rows = [
    "| server | deliveries/s | broadcasts/s | p50 µs | p99 µs | CPU µs/delivery | user µs/delivery | RSS MiB | loadgen CPU | notes |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
  ];
  for (const [name, r] of Object.entries(results)) {
    const notes = notesFor(r, sc);
    const m = r.median;
    if (m === null) {
      rows.push(`| ${name} | - | - | - | - | - | - | - | - | ${notes} |`);
      continue;
    }
    rows.push(
      `| ${name} | ${fmtInt(m.msgsPerSec)} | ${fmtInt(m.broadcastsPerSec)} | ${fmt(m.p50)} | ${fmt(m.p99)} | ` +
        `${fmt(m.cpuUsPerMsg, 3)} | ${fmt(m.userUsPerMsg, 3)} | ${fmt((m.rssKiB as number) / 1024)} | ` +
        `${fmt(m.loadgenCpuPct, 0)}% | ${notes} |`,
    );
  }
  return rows.join("\n");
}

function idleTable(results: Record<string, ServerResult>): string {
  const rows = [
    "| server | conns | accepted | RSS before MiB | RSS after MiB | KiB/conn | anon KiB/conn | connect s | notes |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---|",
  ];
  for (const [name, r] of Object.entries(results)) {
    const notes = notesFor(r);
    const m = r.median;
    if (m === null) {
      rows.push(`| ${name} | - | - | - | - | - | - | - | ${notes} |`);
      continue;
    }
    rows.push(
      `| ${name} | ${fmtInt(m.conns)} | ${fmtInt(m.accepted)} | ${fmt((m.rssBeforeKiB as number) / 1024)} | ` +
        `${fmt((m.rssAfterKiB as number) / 1024)} | ${fmt(m.kibPerConn, 2)} | ${fmt(m.anonKibPerConn as number, 2)} | ${fmt((m.connectMs as number) / 1000, 2)} | ${notes} |`,
    );
  }
  return rows.join("\n");
}

// Anything else that ran during the window (thresholds well above the ~±8% seen on an
// otherwise idle machine, which is accounting noise).
const disturbed = (x: LoadRound): boolean => (x.otherCpuPct ?? 0) > 25 || (x.stealPct ?? 0) > 5;

function notesFor(r: ServerResult, fan?: FanoutScenario): string {
  const notes: string[] = [];
  const failed = r.rounds.filter((x): x is FailedRound => !x.ok);
  if (failed.length > 0) {
    const errs = [...new Set(failed.map((f) => f.error))].join("; ");
    notes.push(failed.length === r.rounds.length ? errs : `${failed.length}/${r.rounds.length} rounds failed: ${errs}`);
  }
  const ok = r.rounds.filter((x): x is LoadRound => x.ok && "msgsPerSec" in x);
  const count = (pred: (x: LoadRound) => boolean): string => `${ok.filter(pred).length}/${ok.length} rounds`;
  if (ok.some((x) => x.loadgenSaturated)) {
    notes.push(`loadgen >90% of core 1 in ${count((x) => x.loadgenSaturated)} (msgs/s may be the loadgen's limit)`);
  }
  if (ok.some(disturbed)) {
    const worst = Math.max(...ok.map((x) => x.otherCpuPct ?? 0));
    const steal = Math.max(...ok.map((x) => x.stealPct ?? 0));
    notes.push(
      `DISTURBED in ${count(disturbed)}: ` +
        `up to ${worst.toFixed(0)}% of a core used by other processes, ${steal.toFixed(0)}% steal`,
    );
  }
  if (fan !== undefined) {
    if (ok.some((x) => x.recipientsMin !== fan.receivers || x.recipientsMax !== fan.receivers)) {
      const lo = Math.min(...ok.map((x) => x.recipientsMin ?? 0));
      const hi = Math.max(...ok.map((x) => x.recipientsMax ?? 0));
      notes.push(`BROADCAST_ACK said ${lo}-${hi} recipients, expected ${fan.receivers}`);
    }
    const lag = Math.max(...ok.map((x) => x.lagLimitedPct ?? 0));
    if (lag > 5) notes.push(`receivers fell behind: ${lag.toFixed(0)}% of sends held by the lag bound (loadgen-bound)`);
  }
  const m0 = r.median;
  if (typeof m0?.deflateAccepted === "number") {
    notes.push(`permessage-deflate accepted on ${m0.deflateAccepted} connections` +
      (typeof m0.compressedPct === "number" ? `, ${m0.compressedPct.toFixed(0)}% of replies compressed` : ""));
  }
  const wrkErrors = [...new Set(ok.map((x) => x.wrkErrors).filter((e) => e !== undefined))];
  if (wrkErrors.length > 0) notes.push(wrkErrors.join("; "));
  const m = r.median;
  if (typeof m?.protocolErrors === "number" && m.protocolErrors > 0) {
    notes.push(`${m.protocolErrors} ${m.bytesPerSec !== undefined ? "non-2xx/3xx responses" : "protocol errors"}`);
  }
  if (typeof m?.unexpectedCloses === "number" && m.unexpectedCloses > 0) notes.push(`${m.unexpectedCloses} unexpected closes`);
  if (typeof m?.accepted === "number" && typeof m.conns === "number" && m.accepted < m.conns) {
    notes.push("server did not accept every connection in time");
  }
  return notes.join("; ").replaceAll("|", "/");
}

/** --syscalls: the server's syscalls per message, median over rounds, biggest first. */
function syscallLines(results: Record<string, ServerResult>, unit: string): string {
  const out = [`\nServer syscalls per ${unit} (perf stat tracepoints over the measured window, median over rounds):\n`];
  for (const [name, r] of Object.entries(results)) {
    const ok = r.rounds.filter((x): x is LoadRound => x.ok && "msgsPerSec" in x);
    const notes = [...new Set(ok.map((x) => x.syscallNote).filter((n) => n !== undefined))];
    const withCounts = ok.filter((x) => x.syscallBreakdown !== undefined);
    if (withCounts.length === 0) {
      out.push(`- ${name}: -${notes.length ? ` (${notes.join("; ")})` : ""}`);
      continue;
    }
    const keys = [...new Set(withCounts.flatMap((x) => Object.keys(x.syscallBreakdown!)))];
    const med = keys
      .map((k) => [k, median(withCounts.map((x) => x.syscallBreakdown![k] ?? 0))] as const)
      .filter(([k, v]) => k !== "total" && v > 0)
      .sort((a, b) => b[1] - a[1]);
    const total = median(withCounts.map((x) => x.syscallBreakdown!.total ?? 0));
    const per = (v: number): string => (v >= 0.1 ? v.toFixed(2) : v >= 0.001 ? v.toFixed(4) : v.toExponential(1));
    out.push(`- ${name}: ${per(total)} total; ${med.map(([k, v]) => `${k} ${per(v)}`).join(", ")}`);
  }
  return out.join("\n") + "\n";
}

interface Ratios {
  /** a/b of each round where both servers succeeded and b's value is not 0. */
  values: number[];
  /** The ratios of the rounds where neither server was DISTURBED. */
  undisturbed: number[];
  disturbed: number;
  saturated: number;
  lagBound: number;
}

/**
 * Per-round ratios a/b of `metric` (rounds i of both ran back to back in one round);
 * without rb, a's own per-round values (an absolute target).
 */
function perRoundRatios(ra: Round[], rb: Round[] | undefined, metric: Metric): Ratios {
  const r: Ratios = { values: [], undisturbed: [], disturbed: 0, saturated: 0, lagBound: 0 };
  for (let i = 0; i < Math.min(ra.length, rb?.length ?? ra.length); i++) {
    const x = ra[i]!;
    const y: Round = rb === undefined ? ({ ...x, [metric]: 1 } as Round) : rb[i]!;
    if (!x.ok || !y.ok) continue;
    const va = (x as unknown as Record<string, unknown>)[metric];
    const vb = (y as unknown as Record<string, unknown>)[metric];
    if (typeof va !== "number" || typeof vb !== "number" || vb === 0) continue;
    r.values.push(va / vb);
    const dist = "msgsPerSec" in x && "msgsPerSec" in y && (disturbed(x) || disturbed(y));
    if (dist) r.disturbed++;
    else r.undisturbed.push(va / vb);
    if ("msgsPerSec" in x && "msgsPerSec" in y) {
      if (x.loadgenSaturated || y.loadgenSaturated) r.saturated++;
      if ((x.lagLimitedPct ?? 0) > 5 || (y.lagLimitedPct ?? 0) > 5) r.lagBound++;
    }
  }
  return r;
}

function ratioCaveats(r: Ratios, metric: Metric): string {
  const n = r.values.length;
  const caveats: string[] = [];
  if (r.disturbed > 0) {
    const k = r.undisturbed.length;
    caveats.push(`DISTURBED in ${r.disturbed}/${n} rounds` + (k > 0 ? ` (median of the other ${k}: ${median(r.undisturbed).toFixed(3)})` : ""));
  }
  if (metric === "msgsPerSec" && r.saturated > 0) caveats.push(`loadgen >90% of its core in ${r.saturated}/${n} rounds`);
  if (r.lagBound > 0) caveats.push(`receivers behind (lag bound) in ${r.lagBound}/${n} rounds`);
  if (n < 3) caveats.push(`only ${n} round(s)`);
  return caveats.join("; ");
}

/** The TARGETS that this run measured: per-round ratios, median, verdict. */
function targetsSection(all: Record<string, Record<string, ServerResult>>, protocol: Protocol): string {
  const rows = [
    "| target | ratio (median) | per round | verdict | caveats |",
    "|---|---:|---|---|---|",
  ];
  for (const t of TARGETS) {
    const res = all[t.scenario];
    const sc = SCENARIOS[t.scenario]!;
    if (res === undefined || scenarioProtocol(sc, protocol) !== t.protocol) continue;
    const ra = res[t.a]?.rounds;
    const rb = t.b === undefined ? undefined : res[t.b]?.rounds;
    if (ra === undefined || (t.b !== undefined && rb === undefined)) continue;
    const r = perRoundRatios(ra, rb, t.metric);
    if (r.values.length === 0) {
      const why = [ra, rb].flatMap((rs) => rs?.filter((x): x is FailedRound => !x.ok).map((x) => x.error) ?? []);
      rows.push(`| ${t.what} | - | - | not measured | ${[...new Set(why)].join("; ").replaceAll("|", "/") || `${t.a} or ${t.b} failed`} |`);
      continue;
    }
    const med = median(r.values);
    const met = t.op === "<=" ? med <= t.limit : med >= t.limit;
    rows.push(
      `| ${t.what} | ${med.toFixed(3)} (${t.op} ${t.limit.toFixed(2)}) | ${r.values.map((v) => v.toFixed(3)).join(", ")} | ` +
        `${met ? "met" : "NOT met"} | ${ratioCaveats(r, t.metric)} |`,
    );
  }
  if (rows.length === 2) return "";
  return (
    "## Targets\n\n" +
    "Ratio = first server / second server, computed within each round (servers of a round run back to back), " +
    "median over rounds (a target with one server: its own value, median over rounds). " +
    "CPU = server CPU time per message (fanout: per delivery; http: per request).\n\n" +
    rows.join("\n") +
    "\n"
  );
}

/**
 * --before: the table rows of one scenario's BEFORE_CHECKS, for every server of the run
 * whose --before twin ran too: per-round ratios current/before, their median, verdict.
 */
function beforeRows(scName: string, results: Record<string, ServerResult>, protocol: Protocol): string[] {
  const rows: string[] = [];
  for (const [twin, rb] of Object.entries(results)) {
    const current = SERVERS[twin]!.beforeOf;
    const ra = current === undefined ? undefined : results[current];
    if (ra === undefined) continue;
    for (const c of BEFORE_CHECKS.filter((x) => x.scenario === scName)) {
      const what = `${scName} (${protocol}) ${c.label}: ${current} / ${twin}`;
      const r = perRoundRatios(ra.rounds, rb.rounds, c.metric);
      if (r.values.length === 0) {
        rows.push(`| ${what} | - | - | not measured | ${current} or ${twin} failed |`);
        continue;
      }
      const med = median(r.values);
      const limit = c.higherIsBetter ? 1 - BEFORE_TOLERANCE : 1 + BEFORE_TOLERANCE;
      const met = c.higherIsBetter ? med >= limit : med <= limit;
      rows.push(
        `| ${what} | ${med.toFixed(3)} (${c.higherIsBetter ? ">=" : "<="} ${limit.toFixed(2)}) | ` +
          `${r.values.map((v) => v.toFixed(3)).join(", ")} | ${met ? "" : "NOT "}within ${BEFORE_TOLERANCE * 100}% | ${ratioCaveats(r, c.metric)} |`,
      );
    }
  }
  return rows;
}

function beforeTable(title: string, rows: string[]): string {
  const t = beforeTree!;
  return (
    `${title}\n\n` +
    `Ratio = current / before (${t.ref} = ${t.sha.slice(0, 12)}, worktree ${t.dir}), computed within each round ` +
    `(the two ran back to back), median over rounds; "within ${BEFORE_TOLERANCE * 100}%" = at most that much worse than before. ` +
    `(info) rows are not part of the check.\n\n` +
    "| metric | ratio (median) | per round | verdict | caveats |\n" +
    "|---|---:|---|---|---|\n" +
    rows.join("\n") +
    "\n"
  );
}

// ---------------------------------------------------------------------------------------
// Main

// `--scenarios openloop` (fixed-rate framed ECHO from the C generator, latency from the
// scheduled send time) has flags and tables of its own: bench/lib/openloop.ts.
if (/(^| )--scenarios openloop( |$)/.test(process.argv.slice(2).join(" "))) {
  const code = await runOpenLoop(process.argv.slice(2), {
    root,
    async start(name) {
      if (SERVERS[name] === undefined) return `unknown server ${name}`;
      const s = await startServer(name, "framed");
      if (typeof s === "string") return s;
      return { pid: s.pid, port: s.port, stop: () => stop(s.proc), gone: () => serverGone(s), stderr: () => s.err.text };
    },
  });
  process.exit(code);
}

const opts = parseArgs(process.argv.slice(2));
const command = `bun run bench/run.ts${process.argv.length > 2 ? " " + process.argv.slice(2).join(" ") : ""}`;
const started = new Date();
const stamp = started.toISOString().replace(/\.\d+Z$/, "Z").replaceAll(":", "-");
const machine = {
  kernel: os.release(),
  cpus: os.cpus().length,
  cpuModel: os.cpus()[0]?.model ?? "",
  bun: Bun.version,
  clockTicksPerSec: clockTicksPerSecond(),
  nofileSoftLimitHere: (() => {
    try {
      return /Max open files\s+(\d+)/.exec(readFileSync("/proc/self/limits", "latin1"))?.[1] ?? "";
    } catch {
      return "";
    }
  })(),
};

// fanout always speaks framed, whatever --protocol says.
const protocolLabel = opts.scenarios.every((n) => scenarioProtocol(SCENARIOS[n]!, opts.protocol) === "framed")
  ? "framed"
  : opts.scenarios.includes("fanout") && opts.protocol !== "framed"
    ? `${opts.protocol} (fanout: framed)`
    : opts.protocol;
if (!Bun.which("taskset")) usage("taskset (util-linux) is required to pin server and loadgen to separate cores");
if (opts.syscalls && availablePerfEvents() === null) {
  process.stderr.write("note: --syscalls needs perf with syscall tracepoints; counts will be missing\n");
}

if (opts.before !== null) {
  try {
    beforeTree = ensureBeforeTree(root, opts.before);
  } catch (e) {
    process.stderr.write(`run: ${(e as Error).message}\n`);
    process.exit(1);
  }
  process.stderr.write(
    `before: ${beforeTree.ref} = ${beforeTree.sha} in ${beforeTree.dir} (${beforeTree.created ? "created" : "reused"}); ` +
      `current: ${describeCheckout(root)}\n`,
  );
}
const commits = {
  current: describeCheckout(root),
  before: beforeTree === null ? null : { ref: beforeTree.ref, sha: beforeTree.sha, dir: beforeTree.dir },
};

process.stderr.write(
  `run: ${opts.scenarios.join(",")} x ${opts.servers.join(",")}, ${protocolLabel}, ${opts.rounds} round(s), ` +
    `${opts.warmup} s warm-up + ${opts.duration} s measured\n`,
);

mkdirSync(resultsDir, { recursive: true });
const md: string[] = [
  "# bunpoll benchmark results",
  "",
  `Command: \`${command}\``,
  "",
  `Date: ${started.toISOString()}; Bun ${machine.bun}; Linux ${machine.kernel}; ${machine.cpus} CPUs (${machine.cpuModel}).`,
  `Server pinned to core 0, load generator to core 1; ${opts.rounds} round(s) interleaved, medians shown; ` +
    `${opts.warmup} s warm-up, ${opts.duration} s measured. Protocol: ${protocolLabel}.`,
  `Checkout: ${commits.current}` +
    (beforeTree === null ? "." : `; bunpoll-before*: ${beforeTree.ref} = ${beforeTree.sha} (worktree ${beforeTree.dir}).`),
  "",
];
const allBeforeRows: string[] = [];

const allResults: Record<string, Record<string, ServerResult>> = {};

for (const scName of opts.scenarios) {
  const sc = SCENARIOS[scName]!;
  const results: Record<string, ServerResult> = {};
  // The static-* scenarios run only the servers that serve the static directory.
  const servers = opts.servers.filter(
    (n) => (SERVERS[n]!.only?.includes(scName) ?? true) && (!STATIC_SCENARIOS.includes(scName) || SERVERS[n]!.httpStatic === true),
  );
  for (const name of servers) results[name] = { median: null, rounds: [] };

  for (let round = 1; round <= opts.rounds; round++) {
    // The order rotates every round (A B C, B C A, C A B, ...): no server always runs
    // first (after the harness's own start-up) or always right after the same neighbour.
    const k = (round - 1) % servers.length;
    for (const name of [...servers.slice(k), ...servers.slice(0, k)]) {
      process.stderr.write(`[${scName} ${round}/${opts.rounds}] ${name} ... `);
      let r: Round;
      let roundSeconds = 0;
      try {
        const t0 = performance.now();
        r =
          sc.kind === "idle"
            ? await runIdleRound(name, opts, sc)
            : sc.kind === "http"
              ? await runHttpRound(name, sc, opts)
              : await runLoadRound(name, sc, opts);
        roundSeconds = (performance.now() - t0) / 1000;
      } catch (e) {
        r = { ok: false, error: `harness error: ${(e as Error).message}` };
      }
      results[name]!.rounds.push(r);
      const took = ` [${roundSeconds.toFixed(1)} s]`;
      if (!r.ok) process.stderr.write(`${r.error}${took}\n`);
      else if ("msgsPerSec" in r) {
        const unit = sc.kind === "fanout" ? "delivery" : sc.kind === "http" ? "req" : "msg";
        const units = { delivery: "deliveries", req: "req", msg: "msgs" }[unit];
        process.stderr.write(
          `${fmtInt(r.msgsPerSec)} ${units}/s, p50 ${fmt(r.p50)} p99 ${fmt(r.p99)} µs, ` +
            `${fmt(r.cpuUsPerMsg, 3)} CPU µs/${unit}, ${sc.kind === "http" ? "wrk" : "loadgen"} ${fmt(r.loadgenCpuPct, 0)}%` +
            `${disturbed(r) ? `, DISTURBED (other ${fmt(r.otherCpuPct, 0)}%)` : ""}${took}\n`,
        );
      } else {
        process.stderr.write(`${fmtInt(r.conns)} conns, ${fmt(r.kibPerConn, 2)} KiB/conn${took}\n`);
      }
    }
  }

  for (const r of Object.values(results)) {
    const ok = r.rounds.filter((x) => x.ok);
    r.median = ok.length > 0 ? medianOf(ok) : null;
  }

  const protocol = scenarioProtocol(sc, opts.protocol);
  const title =
    sc.kind === "load"
      ? `## ${scName} (${protocol}): ${sc.conns} conn x ${sc.depth} in flight x ${sc.size} B`
      : sc.kind === "http"
        ? `## ${scName} (http): wrk -t1 -c${sc.conns}, GET ${sc.path}${sc.depth > 1 ? `, pipelined ${sc.depth} deep` : ""}`
      : sc.kind === "fanout"
        ? sc.ws
          ? `## ${scName} (ws): publish of ${sc.size} B to ${sc.receivers} subscribers (one of them publishing), ${sc.window} in flight`
          : `## ${scName} (framed): 1 sender -> ${sc.receivers} receivers x ${sc.size} B, ${sc.window} broadcasts awaiting ACK`
        : `## ${scName}${protocol === "http" ? " (http)" : ""}: ${opts.idleConns.toLocaleString("en-US")} idle connections` +
          (protocol === "http" ? ", each after one GET /plaintext (keep-alive)" : "");
  const table =
    sc.kind === "load" ? loadTable(results) : sc.kind === "http" ? httpTable(results) : sc.kind === "fanout" ? fanoutTable(results, sc) : idleTable(results);
  const section = `${title}\n\n${sc.what}.\n\n${table}\n${opts.syscalls && sc.kind !== "idle" && sc.kind !== "http" ? syscallLines(results, sc.kind === "fanout" ? "delivery" : "message") : ""}`;
  allResults[scName] = results;
  process.stdout.write(`\n${section}\n`);
  md.push(section);
  if (beforeTree !== null) {
    const rows = beforeRows(scName, results, protocol);
    allBeforeRows.push(...rows);
    if (rows.length > 0) {
      const table = beforeTable(`### ${scName} (${protocol}) against before`, rows);
      process.stdout.write(`\n${table}\n`);
      md.push(table);
    }
  }

  const file = `${resultsDir}/${scName}-${protocol}-${stamp}.json`;
  writeFileSync(
    file,
    JSON.stringify(
      {
        scenario: scName,
        protocol,
        params: sc.kind === "idle" ? { ...sc, conns: opts.idleConns } : { ...sc },
        warmupS: opts.warmup,
        durationS: opts.duration,
        rounds: opts.rounds,
        command,
        date: started.toISOString(),
        machine,
        commits,
        servers: results,
      },
      null,
      2,
    ) + "\n",
  );
  process.stderr.write(`wrote ${file}\n`);
}

// All scenarios' rows together, when there were several (the last table is then the summary).
if (beforeTree !== null && opts.scenarios.length > 1 && allBeforeRows.length > 0) {
  const table = beforeTable("## Against before", allBeforeRows);
  process.stdout.write(`\n${table}\n`);
  md.push(table);
}

const targets = targetsSection(allResults, opts.protocol);
if (targets !== "") {
  process.stdout.write(`\n${targets}\n`);
  md.push(targets);
}

md.push(
  "CPU µs/msg = server CPU time over the measured window (the scheduler's exact runtime, summed over " +
    "/proc/PID/task/*/schedstat) / replies in the window; \"user\" is its utime share (utime/stime are " +
    "only tick-sampled). RSS is VmRSS after the run. See bench/README.md for caveats.",
  "",
);
writeFileSync(`${resultsDir}/latest.md`, md.join("\n"));
removeTempDirs();
process.stderr.write(`wrote ${resultsDir}/latest.md (${((Date.now() - started.getTime()) / 1000).toFixed(0)} s)\n`);
process.exit(0);
