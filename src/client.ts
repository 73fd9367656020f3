#!/usr/bin/env bun
// The bunpoll client CLI, built on bunpoll's own reactor (the library is src/client/).
//   npm run client -- ping --count 3
//   npm run client -- --protocol json interactive
//   npm run client -- --protocol ws --port 8080 listen      (the HTTP listener's /ws/chat)
// Exit status: 0 ok, 1 failure (server absent, request refused, connection lost), 2 usage.

import pkg from "../package.json" with { type: "json" };
import { formatFlags, parseArgs, UsageError, type FlagSpecs } from "./cli/args.ts";
import { invocation } from "./cli/invocation.ts";
import { validateBenchOptions } from "./client/bench.ts";
import {
  benchCommand,
  broadcastCommand,
  defaultWsPath,
  demoCommand,
  echoCommand,
  listenCommand,
  pingCommand,
  sendCommand,
  statsCommand,
  unsupportedMessage,
  type CliIO,
  type CommandContext,
} from "./client/commands.ts";
import { ClientError, ConnectError, ServerError } from "./client/errors.ts";
import { CLIENT_PROTOCOLS, DEFAULT_PORTS, type ClientProtocolName } from "./client/protocol.ts";
import { interactiveCommand } from "./client/repl.ts";
import { checkWsPath } from "./client/ws-wire.ts";
import type { ClientTlsOptions } from "./client/tls.ts";
import { readFileSync } from "node:fs";

/** --tls, --tls-ca FILE, --insecure: undefined without --tls (the others then are usage errors). */
function tlsFlags(flags: Record<string, unknown>): ClientTlsOptions | undefined {
  const caFile = flags["tls-ca"] as string | undefined;
  if (flags.tls !== true) {
    if (caFile !== undefined || flags.insecure === true) usageError(`--${caFile !== undefined ? "tls-ca" : "insecure"} needs --tls`);
    return undefined;
  }
  if (caFile === undefined) return { insecure: flags.insecure === true };
  try {
    return { ca: readFileSync(caFile), insecure: flags.insecure === true };
  } catch (e) {
    usageError(`--tls-ca ${caFile}: ${(e as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (e as Error).message}`);
  }
}

const FLAGS = {
  host: { type: "string", arg: "ADDR", description: "server address: IPv4/IPv6 literal or host name", default: "127.0.0.1" },
  port: { type: "int", arg: "PORT", description: "server port (default: framed 7000, json 9999, line 7070, echo 5050, ws 8080)", min: 1, max: 65535 },
  protocol: { type: "string", arg: "NAME", description: "framed | json | line | echo | ws", default: "framed", choices: CLIENT_PROTOCOLS },
  path: { type: "string", arg: "PATH", description: "ws: the endpoint (default /ws/chat: broadcast, listen, interactive; else /ws/echo)" },
  url: { type: "string", arg: "URL", description: "ws://HOST[:PORT]/PATH: --protocol ws, --host, --port and --path in one" },
  "auth-token": { type: "string", arg: "TOKEN", description: "authenticate with TOKEN (default: $BUNPOLL_AUTH_TOKEN; ws: Authorization: Bearer)" },
  timeout: { type: "number", arg: "SEC", description: "give up on a connect or a reply after this long (0: never)", default: 5, min: 0 },
  json: { type: "bool", description: "machine-readable output on stdout (ping, echo, broadcast, send, stats, listen, bench)" },
  count: { type: "int", arg: "N", description: "ping: how many (default 5; 0: until Ctrl-C)", min: 0 },
  interval: { type: "number", arg: "MS", description: "ping: time between pings (default 500)", min: 0 },
  conns: { type: "int", arg: "C", description: "bench: connections (default 4)", min: 1, max: 10000 },
  depth: { type: "int", arg: "D", description: "bench: requests in flight per connection, closed loop (default 16)", min: 1, max: 100000 },
  size: { type: "int", arg: "BYTES", description: "bench: payload size (default 64; line: >= 48)", min: 0, max: 16 * 1024 * 1024 },
  duration: { type: "number", arg: "SEC", description: "bench: how long to run (default 5)", min: 0.001 },
  rate: { type: "number", arg: "N", description: "bench: open loop at N requests/s over all connections (default 0: closed loop)", min: 0 },
  "backoff-max": { type: "number", arg: "SEC", description: "listen, interactive: longest wait between reconnect attempts (default 5)", min: 0.01 },
  "max-retries": { type: "int", arg: "N", description: "listen, interactive: give up after N failed reconnects in a row (default 0: never)", min: 0 },
  tls: { type: "bool", description: "connect over TLS (verifies the server against the system's CAs, or --tls-ca)" },
  "tls-ca": { type: "string", arg: "FILE", description: "with --tls: trust the CAs in FILE (PEM) instead of the system's" },
  insecure: { type: "bool", description: "with --tls: do not verify the server's certificate (testing only)" },
  help: { type: "bool", description: "show this help" },
  version: { type: "bool", description: "print the version" },
} as const satisfies FlagSpecs;

/** Flags that belong to one command: given with another, they are a usage error. */
const COMMAND_FLAGS: Record<string, readonly string[]> = {
  count: ["ping"],
  interval: ["ping"],
  conns: ["bench"],
  depth: ["bench"],
  size: ["bench"],
  duration: ["bench"],
  rate: ["bench"],
  "backoff-max": ["listen", "interactive"],
  "max-retries": ["listen", "interactive"],
  json: ["ping", "echo", "broadcast", "send", "stats", "listen", "bench"],
};

/** What the user typed to start this program (`bunpoll-client`, `npm run client --`, `bun run src/client.ts`). */
const PROGRAM = invocation();

const USAGE = `bunpoll client ${pkg.version}

usage: ${PROGRAM} [options] COMMAND [ARGS]

commands:
  ping                 round trips (--count, --interval): each RTT, then min/avg/p99/max
  echo TEXT            send TEXT, print what came back and the round-trip time
  broadcast TEXT       send TEXT to every other client
  send ID TEXT         send TEXT to client ID only (json: ID may also be "ip:port")
  stats                the server's statistics, pretty-printed
  listen               print broadcasts and direct messages as they arrive
  interactive          a chat REPL: /ping /echo /broadcast /send /stats /help /exit;
                       plain text is broadcast; works on a terminal or a pipe
  demo                 walk through every operation with two clients, printing each exchange
  bench                load test (--conns --depth --size --duration --rate): msgs/s, MB/s,
                       latency percentiles; closed loop, or open loop with --rate (latency
                       from the intended send time); progress on stderr when it is a terminal

protocols (--protocol):
  framed   the default: every command; HELLO first, the server's WELCOME gives the client id
  json     every command; {"type":"auth"} first, auth_ok gives the client id
  line     broadcast, listen, interactive, demo, bench (the line protocol has no replies,
           so ping, echo, send and stats do not exist in it)
  echo     echo, demo, bench
  ws       WebSocket to the HTTP listener (port 8080): ping (ping/pong frames), echo and
           bench on /ws/echo; broadcast, listen and interactive on /ws/chat, the chat every
           protocol's clients share (--path or --url choose another endpoint)

options:
${formatFlags(FLAGS)}

listen and interactive reconnect by themselves after a lost connection (exponential backoff
with jitter) and say so on stderr; every command fails with status 1 when the server is absent.

exit status: 0 ok; 1 failure (server absent, error reply, connection lost); 2 usage error

examples:
  ${PROGRAM} ping --count 3 --interval 200
  ${PROGRAM} --protocol json send 4 "hello there"
  ${PROGRAM} --port 7070 --protocol line listen
  ${PROGRAM} bench --conns 8 --depth 32 --size 128 --duration 10
  ${PROGRAM} bench --rate 50000 --duration 10 --json
  ${PROGRAM} --protocol ws --port 8080 listen
  ${PROGRAM} --url ws://127.0.0.1:8080/ws/echo echo "hello"`;

function fail(msg: string, code = 1): never {
  process.stderr.write(`bunpoll-client: ${msg}\n`);
  process.exit(code);
}

/** A bad flag, command or argument: one line naming it and where help is, exit 2. */
function usageError(msg: string): never {
  fail(`${msg}; try '${PROGRAM} --help'`, 2);
}

/** Positional arguments of each command: [min, max (-1: the rest is joined as TEXT), what it needs]. */
const ARITY: Record<string, [number, number, string]> = {
  ping: [0, 0, "no arguments"],
  echo: [1, -1, "TEXT"],
  broadcast: [1, -1, "TEXT"],
  send: [2, -1, "ID and TEXT"],
  stats: [0, 0, "no arguments"],
  listen: [0, 0, "no arguments"],
  interactive: [0, 0, "no arguments"],
  demo: [0, 0, "no arguments"],
  bench: [0, 0, "no arguments"],
};

/** Commands that stop by themselves on Ctrl-C (and report); the others exit at once. */
const INTERRUPTIBLE = new Set(["ping", "listen", "interactive", "bench"]);

async function main(argv: string[]): Promise<number> {
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs(argv, FLAGS);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    usageError(e.message);
  }
  const { flags, positionals } = parsed;
  if (flags.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (flags.version) {
    process.stdout.write(`bunpoll client ${pkg.version}\n`);
    return 0;
  }
  const [command, ...args] = positionals;
  if (command === undefined) usageError("no command given");
  const arity = ARITY[command];
  if (arity === undefined) usageError(`unknown command "${command}"`);
  const [min, max, shape] = arity;
  if (args.length < min) usageError(`${command} needs ${shape}`);
  if (max >= 0 && args.length > max) usageError(`${command} takes ${shape}, got "${args.join(" ")}"`);
  for (const [flag, commands] of Object.entries(COMMAND_FLAGS)) {
    if (flags[flag] !== undefined && flags[flag] !== false && !commands.includes(command)) {
      usageError(`--${flag} does not apply to ${command} (only to ${commands.join(", ")})`);
    }
  }
  const target = resolveTarget(argv, flags, command);
  const { protocol, host } = target;
  const unsupported = unsupportedMessage(command, protocol);
  if (unsupported !== null) usageError(unsupported);
  const port = target.port ?? DEFAULT_PORTS[protocol];
  const envToken = process.env.BUNPOLL_AUTH_TOKEN;
  const authToken = (flags["auth-token"] as string | undefined) ?? (envToken !== undefined && envToken !== "" ? envToken : undefined);
  const timeoutMs = (flags.timeout as number) * 1000;
  const tls = tlsFlags(flags);
  const backoffMaxMs = ((flags["backoff-max"] as number | undefined) ?? 5) * 1000;

  const controller = new AbortController();
  let signals = 0;
  const onSignal = (sig: NodeJS.Signals) => {
    if (++signals > 1 || !INTERRUPTIBLE.has(command)) process.exit(sig === "SIGINT" ? 130 : 143);
    controller.abort();
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);

  const io: CliIO = {
    out: (line) => process.stdout.write(`${line}\n`),
    err: (line) => process.stderr.write(`${line}\n`),
    // A progress bar only on a terminal: in a log file it would be noise.
    progress: process.stderr.isTTY ? (line) => process.stderr.write(`\r\x1b[2K${line}`) : undefined,
  };
  const ctx: CommandContext = {
    client: { host, port, protocol, authToken, timeoutMs, path: target.path, tls },
    io,
    json: flags.json === true,
    signal: controller.signal,
    backoff: {
      // The first retry comes after 100 ms, or sooner when the ceiling is lower.
      initialMs: Math.min(100, backoffMaxMs),
      maxMs: backoffMaxMs,
      maxAttempts: (flags["max-retries"] as number | undefined) ?? 0,
    },
  };

  try {
    switch (command) {
      case "ping":
        return await pingCommand(ctx, { count: (flags.count as number | undefined) ?? 5, intervalMs: (flags.interval as number | undefined) ?? 500 });
      case "echo":
        return await echoCommand(ctx, args.join(" "));
      case "broadcast":
        return await broadcastCommand(ctx, args.join(" "));
      case "send":
        if (protocol === "framed" && !/^\d+$/.test(args[0]!)) usageError(`send: ID must be a client id (a number), got "${args[0]}"`);
        return await sendCommand(ctx, args[0]!, args.slice(1).join(" "));
      case "stats":
        return await statsCommand(ctx);
      case "listen":
        return await listenCommand(ctx);
      case "interactive":
        return await interactiveCommand(ctx, {
          input: process.stdin,
          output: process.stdout,
          terminal: process.stdin.isTTY === true && process.stdout.isTTY === true,
        });
      case "demo":
        return await demoCommand(ctx);
      case "bench": {
        const bench = {
          conns: (flags.conns as number | undefined) ?? 4,
          depth: (flags.depth as number | undefined) ?? 16,
          size: (flags.size as number | undefined) ?? 64,
          durationSec: (flags.duration as number | undefined) ?? 5,
          rate: (flags.rate as number | undefined) ?? 0,
        };
        try {
          validateBenchOptions({ ...bench, protocol });
        } catch (e) {
          usageError((e as Error).message);
        }
        return await benchCommand(ctx, bench);
      }
    }
  } catch (e) {
    if (e instanceof ConnectError) fail(e.message);
    if (e instanceof ServerError) fail(`${command} failed: the server answered ${e.message}`);
    if (e instanceof ClientError) fail(`${command} failed: ${e.message}`);
    throw e;
  }
  return 0;
}

/** Whether `--name` itself is on the command line (flags with a default cannot tell). */
function given(argv: string[], name: string): boolean {
  return argv.some((a) => a === `--${name}` || a.startsWith(`--${name}=`));
}

/** Protocol, host, port (undefined: the protocol's default) and ws path, from the flags or --url. */
function resolveTarget(argv: string[], flags: Record<string, unknown>, command: string): { protocol: ClientProtocolName; host: string; port: number | undefined; path: string | undefined } {
  const url = flags.url as string | undefined;
  let path = flags.path as string | undefined;
  if (url === undefined) {
    const protocol = flags.protocol as ClientProtocolName;
    if (protocol !== "ws") {
      if (path !== undefined) usageError("--path applies to --protocol ws only");
      return { protocol, host: flags.host as string, port: flags.port as number | undefined, path: undefined };
    }
    path ??= defaultWsPath(command);
    const bad = checkWsPath(path);
    if (bad !== null) usageError(`--path: ${bad}`);
    return { protocol, host: flags.host as string, port: flags.port as number | undefined, path };
  }
  for (const f of ["host", "port", "path"]) if (given(argv, f)) usageError(`--url gives the ${f} already; drop --${f}`);
  if (given(argv, "protocol") && flags.protocol !== "ws") usageError(`--url speaks ws, not --protocol ${flags.protocol as string}`);
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    usageError(`--url: not a URL: ${JSON.stringify(url)} (e.g. ws://127.0.0.1:8080/ws/echo)`);
  }
  if (u.protocol === "wss:") usageError("--url: wss:// (WebSocket over TLS) is not supported by this client; use ws://");
  if (u.protocol !== "ws:") usageError(`--url takes ws://HOST[:PORT]/PATH, got ${JSON.stringify(url)}`);
  if (u.username !== "" || u.password !== "") usageError("--url: credentials in the URL are not supported (--auth-token is sent as Authorization: Bearer)");
  // A URL without a path names "/": the command's default endpoint is meant then.
  path = u.pathname === "/" && u.search === "" && !/^ws:\/\/[^/]+\/$/.test(url) ? defaultWsPath(command) : `${u.pathname}${u.search}`;
  // A port the URL leaves out is the scheme's, 80 (the URL standard elides it).
  return { protocol: "ws", host: u.hostname.replace(/^\[|\]$/g, ""), port: u.port === "" ? 80 : Number(u.port), path };
}

const code = await main(process.argv.slice(2));
process.exitCode = code;
// Everything this process opened is closed by now, so it exits by itself once stdout is
// flushed; the timer is a backstop against a handle left open by accident.
setTimeout(() => process.exit(code), 1000).unref();
