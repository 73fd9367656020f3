// The WebSocket part of the benchmark runner (`bun run bench/run.ts --protocol ws`): its
// scenarios, servers and targets, and the command line of the C load generator
// (bench/loadgen/ws-load.c), kept here so that run.ts only adds them to its tables.

import { ensureWsLoad } from "./servers.ts";

/** How a scenario speaks WebSocket: the endpoint, and whether the client offers permessage-deflate. */
export interface WsLoad {
  path: string;
  deflate: boolean;
}

export const WS_SCENARIOS = {
  "ws-echo": {
    kind: "load", conns: 50, depth: 16, size: 64, ws: { path: "/ws/echo", deflate: false },
    what: "WebSocket echo, 50 connections x 16 in flight x 64 B binary messages (C generator, masked frames): throughput, CPU per message",
  },
  "ws-pingpong": {
    kind: "load", conns: 1, depth: 1, size: 64, ws: { path: "/ws/echo", deflate: false },
    what: "WebSocket echo, 1 connection, 1 message of 64 B in flight: the latency floor",
  },
  "ws-publish": {
    kind: "fanout", receivers: 100, window: 16, size: 64, ws: { path: "/ws/pub", deflate: false },
    what:
      "WebSocket publish of 64 B to a topic with 100 subscribers: connection 0 of the 100 also publishes " +
      "(server.publish, or a loop over clients for ws), 16 publishes in flight, each complete when the publisher's own copy " +
      "returns (its RTT), never more than 64 ahead of the slowest subscriber; deliveries = messages received by all 100",
  },
  "ws-deflate": {
    kind: "load", conns: 50, depth: 16, size: 1024, ws: { path: "/ws/echo", deflate: true },
    what:
      "WebSocket echo with permessage-deflate negotiated, 50 connections x 16 in flight x 1 KiB of JSON-like text, " +
      "each message compressed by the client (zlib, once: the same frame is resent), so the server inflates every message " +
      "and compresses every reply it chooses to (see compressedReplies in the JSON)",
  },
  "ws-idle": {
    kind: "idle", conns: 10_000, ws: { path: "/ws/echo", deflate: false },
    what: "idle WebSocket connections (handshake done, then silent), no compression offered: memory per connection",
  },
  "ws-idle-deflate": {
    kind: "idle", conns: 10_000, ws: { path: "/ws/echo", deflate: true },
    what: "idle WebSocket connections with permessage-deflate offered (as browsers always do): memory per connection",
  },
} as const;

const ECHO_SCENARIOS = ["ws-echo", "ws-pingpong", "ws-deflate", "ws-idle", "ws-idle-deflate"];

/** The runner's servers for --protocol ws: argv builders, as run.ts's SERVERS entries. */
export function wsServers(root: string, bun: string) {
  return {
    // The library: serve({ fetch, websocket }) with /ws/echo and /ws/pub (bench/servers/bunpoll-ws.ts).
    "bunpoll-ws": {
      command: (port: number) => [bun, `${root}bench/servers/bunpoll-ws.ts`, "--port", `${port}`],
      broadcast: true,
      protocols: ["ws" as const],
    },
    // The CLI's built-in app (/ws/echo, permessage-deflate on, busy polling as by default): no /ws/pub.
    "bunpoll-cli": {
      command: (port: number) => [bun, `${root}src/server.ts`, "--protocol", "http", "--host", "127.0.0.1", "--port", `${port}`],
      broadcast: false,
      protocols: ["ws" as const],
      only: ECHO_SCENARIOS,
    },
    "bun-serve-ws": {
      command: (port: number) => [bun, `${root}bench/baselines/bun-serve-ws.ts`, "--port", `${port}`],
      broadcast: true,
      protocols: ["ws" as const],
    },
    // The ws npm package, run by Node (under Bun, require("ws") would be Bun's own replacement).
    "node-ws": {
      command: (port: number): string[] | string => {
        const node = Bun.which("node");
        return node ? [node, `${root}bench/baselines/node-ws.js`, "--port", `${port}`] : "node is not on PATH";
      },
      broadcast: true,
      protocols: ["ws" as const],
    },
  };
}

/** The WebSocket targets (issue 12), as run.ts's TARGETS entries. */
export const WS_TARGETS = [
  { scenario: "ws-echo", protocol: "ws", a: "bunpoll-ws", b: "bun-serve-ws", metric: "cpuUsPerMsg", op: "<=", limit: 0.9,
    what: "ws echo 50x16x64 B: bunpoll serve() CPU/msg <= 0.9 x Bun.serve" },
  { scenario: "ws-echo", protocol: "ws", a: "bunpoll-ws", b: "bun-serve-ws", metric: "msgsPerSec", op: ">=", limit: 1,
    what: "ws echo 50x16x64 B: bunpoll serve() msgs/s >= 1.0 x Bun.serve" },
  { scenario: "ws-echo", protocol: "ws", a: "bunpoll-cli", b: "bun-serve-ws", metric: "cpuUsPerMsg", op: "<=", limit: 0.9,
    what: "ws echo 50x16x64 B (the CLI's /ws/echo): bunpoll CLI CPU/msg <= 0.9 x Bun.serve" },
  { scenario: "ws-echo", protocol: "ws", a: "bunpoll-cli", b: "bun-serve-ws", metric: "msgsPerSec", op: ">=", limit: 1,
    what: "ws echo 50x16x64 B (the CLI's /ws/echo): bunpoll CLI msgs/s >= 1.0 x Bun.serve" },
  { scenario: "ws-pingpong", protocol: "ws", a: "bunpoll-ws", b: "bun-serve-ws", metric: "p50", op: "<=", limit: 1,
    what: "ws ping-pong: bunpoll serve() RTT p50 <= Bun.serve" },
  { scenario: "ws-pingpong", protocol: "ws", a: "bunpoll-cli", b: "bun-serve-ws", metric: "p50", op: "<=", limit: 1,
    what: "ws ping-pong (the CLI, busy polling): bunpoll CLI RTT p50 <= Bun.serve" },
  { scenario: "ws-publish", protocol: "ws", a: "bunpoll-ws", b: "bun-serve-ws", metric: "msgsPerSec", op: ">=", limit: 1,
    what: "ws publish 64 B to 100 subscribers: bunpoll deliveries/s >= 1.0 x Bun.serve" },
  { scenario: "ws-idle", protocol: "ws", a: "bunpoll-ws", metric: "kibPerConn", op: "<=", limit: 1,
    what: "ws idle, no compression: bunpoll serve() RSS <= 1 KiB per connection" },
  { scenario: "ws-idle", protocol: "ws", a: "bunpoll-cli", metric: "kibPerConn", op: "<=", limit: 1,
    what: "ws idle, no compression: bunpoll CLI RSS <= 1 KiB per connection" },
] as const;

/** Parameters of one ws-load run (bench/loadgen/ws-load.c). */
export interface WsLoadRun {
  ws: WsLoad;
  port: number;
  serverPid: number;
  mode: "echo" | "publish" | "idle";
  conns: number;
  depth?: number;
  size?: number;
  window?: number;
  duration?: number;
  warmup?: number;
  hold?: number;
}

/** The ws-load argv for a run, or a string saying why it cannot run (no cc). */
export function wsLoadArgv(root: string, r: WsLoadRun): string[] | string {
  const exe = ensureWsLoad(root);
  if (exe === null) return "the C WebSocket load generator did not build (no cc?)";
  const a = [exe, "--host", "127.0.0.1", "--port", `${r.port}`, "--path", r.ws.path, "--mode", r.mode, "--conns", `${r.conns}`];
  if (r.ws.deflate) a.push("--deflate");
  if (r.mode === "idle") {
    // Several source addresses: 10,000s of connections per round, with earlier rounds' ports in TIME_WAIT.
    return [...a, "--hold", `${r.hold ?? 300}`, "--sources", "8", "--server-pid", `${r.serverPid}`];
  }
  a.push("--size", `${r.size ?? 64}`, "--duration", `${r.duration ?? 5}`, "--warmup", `${r.warmup ?? 1}`, "--server-pid", `${r.serverPid}`);
  if (r.mode === "echo") a.push("--depth", `${r.depth ?? 1}`);
  else a.push("--window", `${r.window ?? 16}`, "--lag", `${4 * (r.window ?? 16)}`);
  return a;
}
