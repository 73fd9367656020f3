#!/usr/bin/env bun
// The bunpoll server CLI: `npm start -- --protocol echo --port 5050`.
// Parses flags, opens one reactor with one listener per --listen, and turns SIGINT/SIGTERM
// into a graceful stop (a second signal exits at once with status 1).

import pkg from "../package.json" with { type: "json" };
import { parseArgs, formatFlags, UsageError, type FlagSpecs } from "./cli/args.ts";
import { invocation } from "./cli/invocation.ts";
import { LOG_FORMATS, processLog as log, type LogFormat } from "./log.ts";
import { plural } from "./cli/plural.ts";
import { PROTOCOLS, PROTOCOL_NAMES, type ProtocolName } from "./protocols/registry.ts";
import { StatsIntervalReporter } from "./stats/summary.ts";
import { staticFiles } from "./protocols/http/static.ts";
import { ListenFailure, openServing, type ListenSpec, type Serving, type ServingConfig } from "./cli/serving.ts";
import { runWorkers, workerCount, WORKERS_FLAGS } from "./workers/supervisor.ts";
import { TLS_FLAGS, tlsFromFlags } from "./cli/tls.ts";

const FLAGS = {
  protocol: { type: "string", arg: "NAME", description: `protocol: ${PROTOCOL_NAMES.join("|")}`, default: "framed", choices: PROTOCOL_NAMES },
  host: { type: "string", arg: "ADDR", description: "listen address: IPv4/IPv6 literal or localhost", default: "127.0.0.1" },
  port: { type: "int", arg: "PORT", description: "listen port (0: any free port); default framed 7000, json 9999, line 7070, echo 5050", min: 0, max: 65535 },
  listen: { type: "string", arg: "PROTO:PORT", description: "listen for PROTO on PORT (PROTO+tls:PORT: over TLS, e.g. http+tls:8443); repeatable, all share one hub (replaces --protocol/--port)", repeatable: true },
  "max-conns": { type: "int", arg: "N", description: "connections past N are told SERVER_FULL and closed (default: RLIMIT_NOFILE - 64)", min: 1 },
  "busy-poll": { type: "number", arg: "US", description: "after traffic, poll without sleeping for up to US microseconds before blocking, while requests keep coming within US of each other (lower latency, a core that spins through the gaps); the window adapts and drops to 0 for sparser traffic; 0: always sleep", default: 50, min: 0 },
  "trace-latency": { type: "bool", description: "log once a second where the loop's time went between polls (dispatch, flush, microtasks, yield to Bun), spin/sleep outcomes and JS heap growth: finding tail latency (a few clock reads per turn)", default: false },
  "idle-timeout": { type: "number", arg: "SEC", description: "close connections with no bytes either way for SEC (0: never)", default: 0, min: 0 },
  "frame-timeout": { type: "number", arg: "SEC", description: "close a connection whose started frame/line is incomplete after SEC (0: never)", default: 10, min: 0 },
  "high-water": { type: "int", arg: "BYTES", description: "queued output at which reading from a connection pauses", default: 256 * 1024, min: 1 },
  "max-buffered": { type: "int", arg: "BYTES", description: "queued output past which a connection is closed as a slow consumer", default: 1024 * 1024, min: 1 },
  "max-frame": { type: "int", arg: "BYTES", description: "largest frame body: framed (<= 65535, default 65535), json (default 1048576)", min: 1 },
  "max-line": { type: "int", arg: "BYTES", description: "largest line for the line protocol", default: 64 * 1024, min: 1 },
  "rate-limit": { type: "number", arg: "MSGS_PER_SEC", description: "per-connection token bucket (burst: one second's worth; 0: off)", default: 0, min: 0 },
  "auth-token": { type: "string", arg: "TOKEN", description: "clients must present TOKEN first (or set BUNPOLL_AUTH_TOKEN)" },
  "stats-interval": { type: "number", arg: "SEC", description: "print a one-line stats summary every SEC (0: never)", default: 0, min: 0 },
  stats: { type: "bool", description: "count messages and time them (--no-stats turns it off)", default: true },
  "max-body": { type: "int", arg: "BYTES", description: "http: largest request body (413 past it)", default: 128 * 1024 * 1024, min: 0 },
  "body-timeout": { type: "number", arg: "SEC", description: "http: a request body must arrive within SEC of its head (408 past it; 0: no limit)", default: 0, min: 0 },
  "max-request-line": { type: "int", arg: "BYTES", description: "http: longest request line (414 past it)", default: 8 * 1024, min: 64 },
  "max-header-bytes": { type: "int", arg: "BYTES", description: "http: largest header section (431 past it)", default: 16 * 1024, min: 256 },
  "ws-origin": { type: "string", arg: "ORIGIN", description: "http: a WebSocket handshake must come from this Origin (repeatable; default: any)", repeatable: true },
  static: { type: "string", arg: "DIR", description: "http: serve the files under DIR (sendfile, ranges, 304) for paths the built-in routes do not have" },
  "drain-timeout": { type: "number", arg: "SEC", description: "on SIGINT/SIGTERM, flush queued output for at most SEC", default: 5, min: 0 },
  ...TLS_FLAGS,
  "log-format": { type: "string", arg: "FORMAT", description: "text, or json: one JSON object per line (time, level, event, connection, remote, reason, message)", default: "text", choices: LOG_FORMATS },
  ...WORKERS_FLAGS,
  help: { type: "bool", description: "show this help" },
  version: { type: "bool", description: "print the version" },
} as const satisfies FlagSpecs;

/** What the user typed to start this program (`bunpoll`, `npm start --`, `bun run src/server.ts`). */
const PROGRAM = invocation();

const USAGE = `bunpoll ${pkg.version}: a low-latency TCP server on an epoll reactor

usage: ${PROGRAM} [options]

options:
${formatFlags(FLAGS)}

examples:
  ${PROGRAM}                                  # framed on 127.0.0.1:7000
  ${PROGRAM} --protocol echo --port 5050
  ${PROGRAM} --listen framed:7000 --listen json:9999 --listen line:7070
  ${PROGRAM} --listen http+tls:8443 --tls-cert cert.pem --tls-key key.pem

signals: SIGINT/SIGTERM stop accepting, answer what already arrived, flush for at most
--drain-timeout, then exit 0; a second signal exits at once with status 1. SIGHUP re-reads
the TLS certificate files: new handshakes use them (a bad file keeps the old ones).`;

function parseListen(spec: string, host: string): ListenSpec {
  const m = /^([a-z]+)(\+tls)?:(\d{1,5})$/.exec(spec);
  if (!m) throw new UsageError(`--listen: expected PROTO:PORT or PROTO+tls:PORT, got "${spec}"`);
  const protocol = m[1] as ProtocolName;
  if (!PROTOCOL_NAMES.includes(protocol)) throw new UsageError(`--listen: unknown protocol "${m[1]}" (${PROTOCOL_NAMES.join(", ")})`);
  const port = Number(m[3]);
  if (port > 65535) throw new UsageError(`--listen: port ${port} out of range`);
  return { protocol, host, port, tls: m[2] !== undefined };
}

/** A bad flag or value: one line naming it and where help is, exit 2. */
function usageError(e: UsageError): never {
  log.error("usage_error", `${e.message}; try '${PROGRAM} --help'`);
  process.exit(2);
}

/** --log-format as given, read before the other flags so that their errors use it too. */
function earlyLogFormat(argv: string[]): LogFormat {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--") break;
    const v = a === "--log-format" ? argv[i + 1] : a.startsWith("--log-format=") ? a.slice(13) : undefined;
    if (v === "json") return "json";
  }
  return "text";
}

function main(argv: string[]): void {
  log.format = earlyLogFormat(argv);
  let flags: ReturnType<typeof parseArgs>["flags"];
  try {
    const parsed = parseArgs(argv, FLAGS);
    if (parsed.positionals.length > 0) throw new UsageError(`unexpected argument "${parsed.positionals[0]}"`);
    flags = parsed.flags;
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    usageError(e);
  }
  if (flags.help) {
    console.log(USAGE);
    process.exit(0);
  }
  if (flags.version) {
    console.log(`bunpoll ${pkg.version}`);
    process.exit(0);
  }
  log.format = flags["log-format"] as LogFormat;
  const host = flags.host as string;
  let specs: ListenSpec[];
  try {
    // Below the high-water mark a connection would be dropped as a slow consumer before
    // its reads ever paused: backpressure could never act.
    if ((flags["max-buffered"] as number) < (flags["high-water"] as number)) {
      throw new UsageError(`--max-buffered (${flags["max-buffered"]}) must be at least --high-water (${flags["high-water"]})`);
    }
    const listens = flags.listen as string[];
    specs = listens.length > 0
      ? listens.map((l) => parseListen(l, host))
      : [{ protocol: flags.protocol as ProtocolName, host, port: (flags.port as number | undefined) ?? PROTOCOLS[flags.protocol as ProtocolName].defaultPort, tls: false }];
    // Two listeners on one port could never both bind (port 0 picks a free port each time).
    const seen = new Map<number, string>();
    listens.forEach((l, i) => {
      const { port } = specs[i]!;
      const first = seen.get(port);
      if (port !== 0 && first !== undefined) throw new UsageError(`--listen: port ${port} given twice (${first} and ${l})`);
      seen.set(port, l);
    });
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    usageError(e);
  }

  // --static: checked before anything listens (a missing directory is a usage error).
  const staticDir = flags.static as string | undefined;
  if (staticDir !== undefined) {
    if (!specs.some((s) => s.protocol === "http")) usageError(new UsageError("--static needs an http listener (--protocol http or --listen http:PORT)"));
    try {
      staticFiles(staticDir);
    } catch (e) {
      usageError(new UsageError(`--static: ${(e as Error).message}`));
    }
  }

  const authToken = (flags["auth-token"] as string | undefined) ?? process.env.BUNPOLL_AUTH_TOKEN ?? undefined;
  // TLS files are read and checked before anything listens (workers read them again).
  try {
    tlsFromFlags(flags, specs.some((s) => s.tls))?.context([])[Symbol.dispose]();
  } catch (e) {
    if (e instanceof UsageError) usageError(e);
    log.error("tls_failed", `cannot start TLS: ${(e as Error).message}`);
    process.exit(1);
  }
  const config: ServingConfig = { specs, flags, authToken: authToken || undefined };
  let workers = 1;
  try {
    workers = workerCount(flags.workers as string);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    usageError(e);
  }
  if (workers > 1 || flags.pin) {
    // N reactors in Worker threads (src/workers/): the main thread only supervises.
    runWorkers({ config, workers, balance: flags.balance as "reuseport", pin: flags.pin as boolean, version: pkg.version });
    return;
  }
  let serving: Serving;
  try {
    serving = openServing(config);
  } catch (e) {
    if (!(e instanceof ListenFailure)) throw e;
    log.error("listen_failed", e.message, { address: e.address, code: e.code });
    process.exit(1);
  }
  const { ctx, reactor } = serving;
  // Every listener is open before any is announced: a failure on the last one leaves
  // nothing on stdout claiming to listen.
  const opened = serving.listeners.map(({ listener: l, spec }) => () => {
    const name = spec.tls ? `${spec.protocol}+tls` : spec.protocol;
    const fields = { address: l.describe(), protocol: name, pid: process.pid, version: pkg.version };
    log.print("listening", `bunpoll ${pkg.version} listening on ${l.describe()} (${name}), pid ${process.pid}`, fields);
  });
  for (const announce of opened) announce();
  if (!authToken && !specs.every((s) => isLoopback(s.host))) {
    log.warn("unauthenticated", `warning: listening on non-loopback address ${host} without --auth-token: anyone who can reach it can connect`, { host });
  }
  const statsEvery = flags["stats-interval"] as number;
  if (statsEvery > 0) {
    const reporter = new StatsIntervalReporter(() => ctx.snapshot(), ctx.stats.latency);
    setInterval(() => log.print("stats", reporter.line()), statsEvery * 1000);
  }

  let signals = 0;
  const onSignal = (sig: NodeJS.Signals) => {
    if (++signals > 1) {
      log.warn("second_signal", `second ${sig}, exiting now`, { signal: sig });
      process.exit(1);
    }
    const open = reactor.connectionCount;
    // Requests that already arrived are answered normally during reactor.stop()'s final read
    // pass; anything that arrives after it is answered SHUTTING_DOWN until our FIN goes out.
    log.info("stopping", `${sig}: stopping (${plural(open, "connection")} open), draining for at most ${flags["drain-timeout"]} s`, { signal: sig, connections: open });
    const stopped = reactor.stop({ graceful: true, drainTimeoutMs: (flags["drain-timeout"] as number) * 1000 });
    ctx.shuttingDown = true;
    stopped
      .then(() => {
        const s = reactor.stats;
        const forced = s.closeReasons.shutdown;
        log.info(
          "stopped",
          `stopped: ${plural(s.connectionsTotal, "connection")} served, ${plural(s.bytesIn, "byte")} in, ${plural(s.bytesOut, "byte")} out` +
            (forced > 0 ? `, ${forced} closed at the drain timeout` : ", all flushed"),
          { connections: s.connectionsTotal, bytes_in: s.bytesIn, bytes_out: s.bytesOut, forced },
        );
        reactor[Symbol.dispose]();
        process.exit(0);
      }, (e) => {
        log.error("stop_failed", `error while stopping: ${(e as Error).stack ?? e}`);
        process.exit(1);
      });
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  const tls = serving.tls;
  if (tls !== null) {
    process.on("SIGHUP", () => {
      const r = tls.reload();
      if (r.ok) log.info("tls_reloaded", r.message);
      else log.error("tls_reload_failed", r.message);
    });
  }
  reactor.start().catch((e) => {
    log.error("reactor_failed", `reactor failed: ${(e as Error).stack ?? e}`);
    process.exit(1);
  });
}

function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\./.test(host);
}

main(process.argv.slice(2));
