#!/usr/bin/env bun
// The bunpoll server CLI: `bun run src/server.ts --protocol echo --port 5050`.
// Parses flags, opens one reactor with one listener per --listen, and turns SIGINT/SIGTERM
// into a graceful stop (a second signal exits at once with status 1).

import pkg from "../package.json" with { type: "json" };
import { parseArgs, formatFlags, UsageError, type FlagSpecs } from "./cli/args.ts";
import { Reactor } from "./reactor/reactor.ts";
import { SyscallError } from "../ffi/errno.ts";
import { PROTOCOLS, PROTOCOL_NAMES, type ProtocolName } from "./protocols/registry.ts";

const FLAGS = {
  protocol: { type: "string", arg: "NAME", description: `protocol: ${PROTOCOL_NAMES.join("|")}`, default: "echo", choices: PROTOCOL_NAMES },
  host: { type: "string", arg: "ADDR", description: "listen address: IPv4/IPv6 literal or localhost", default: "127.0.0.1" },
  port: { type: "int", arg: "PORT", description: "listen port (0: any free port); default depends on --protocol", min: 0, max: 65535 },
  listen: { type: "string", arg: "PROTO:PORT", description: "listen for PROTO on PORT (repeatable; replaces --protocol/--port)", repeatable: true },
  "idle-timeout": { type: "number", arg: "SEC", description: "close connections idle this long (0: never)", default: 0, min: 0 },
  "high-water": { type: "int", arg: "BYTES", description: "queued output at which reading from a connection pauses", default: 1024 * 1024, min: 1 },
  "max-buffered": { type: "int", arg: "BYTES", description: "queued output past which a connection is closed", default: 64 * 1024 * 1024, min: 1 },
  "drain-timeout": { type: "number", arg: "SEC", description: "on SIGINT/SIGTERM, flush queued output for at most this long", default: 5, min: 0 },
  help: { type: "bool", description: "show this help" },
  version: { type: "bool", description: "print the version" },
} as const satisfies FlagSpecs;

const USAGE = `bunpoll ${pkg.version}: a low-latency TCP server on an epoll reactor

usage: bun run src/server.ts [options]

options:
${formatFlags(FLAGS)}

examples:
  bun run src/server.ts --protocol echo --port 5050
  bun run src/server.ts --listen echo:5050 --listen echo:5051`;

interface ListenSpec {
  protocol: ProtocolName;
  host: string;
  port: number;
}

function parseListen(spec: string, host: string): ListenSpec {
  const m = /^([a-z]+):(\d{1,5})$/.exec(spec);
  if (!m) throw new UsageError(`--listen: expected PROTO:PORT, got "${spec}"`);
  const protocol = m[1] as ProtocolName;
  if (!PROTOCOL_NAMES.includes(protocol)) throw new UsageError(`--listen: unknown protocol "${m[1]}" (${PROTOCOL_NAMES.join(", ")})`);
  const port = Number(m[2]);
  if (port > 65535) throw new UsageError(`--listen: port ${port} out of range`);
  return { protocol, host, port };
}

function main(argv: string[]): void {
  let flags: ReturnType<typeof parseArgs>["flags"];
  try {
    const parsed = parseArgs(argv, FLAGS);
    if (parsed.positionals.length > 0) throw new UsageError(`unexpected argument "${parsed.positionals[0]}"`);
    flags = parsed.flags;
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    console.error(`bunpoll: ${e.message}\n\n${USAGE}`);
    process.exit(2);
  }
  if (flags.help) {
    console.log(USAGE);
    process.exit(0);
  }
  if (flags.version) {
    console.log(`bunpoll ${pkg.version}`);
    process.exit(0);
  }
  const host = flags.host as string;
  let specs: ListenSpec[];
  try {
    const listens = flags.listen as string[];
    specs = listens.length > 0
      ? listens.map((l) => parseListen(l, host))
      : [{ protocol: flags.protocol as ProtocolName, host, port: (flags.port as number | undefined) ?? PROTOCOLS[flags.protocol as ProtocolName].defaultPort }];
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    console.error(`bunpoll: ${e.message}\n\n${USAGE}`);
    process.exit(2);
  }

  const reactor = new Reactor();
  const connection = {
    idleTimeoutMs: (flags["idle-timeout"] as number) * 1000,
    highWaterMark: flags["high-water"] as number,
    maxBuffered: flags["max-buffered"] as number,
  };
  for (const spec of specs) {
    const where = spec.host.includes(":") ? `[${spec.host}]:${spec.port}` : `${spec.host}:${spec.port}`;
    try {
      const handler = PROTOCOLS[spec.protocol].create();
      const l = reactor.listen({ hostname: spec.host, port: spec.port, handler, connection });
      console.log(`bunpoll ${pkg.version} listening on ${l.describe()} (${spec.protocol}), pid ${process.pid}`);
    } catch (e) {
      reactor[Symbol.dispose]();
      if (e instanceof SyscallError && e.code === "EADDRINUSE") {
        console.error(`bunpoll: cannot listen on ${where}: address already in use (EADDRINUSE)`);
      } else {
        console.error(`bunpoll: cannot listen on ${where}: ${(e as Error).message}`);
      }
      process.exit(1);
    }
  }

  let signals = 0;
  const onSignal = (sig: NodeJS.Signals) => {
    if (++signals > 1) {
      console.error(`bunpoll: second ${sig}, exiting now`);
      process.exit(1);
    }
    const open = reactor.connectionCount;
    console.error(`bunpoll: ${sig}: stopping (${open} connection${open === 1 ? "" : "s"} open), draining for at most ${flags["drain-timeout"]} s`);
    reactor
      .stop({ graceful: true, drainTimeoutMs: (flags["drain-timeout"] as number) * 1000 })
      .then(() => {
        const s = reactor.stats;
        console.error(`bunpoll: stopped: ${s.connectionsTotal} connections served, ${s.bytesIn} bytes in, ${s.bytesOut} bytes out`);
        reactor[Symbol.dispose]();
        process.exit(0);
      }, (e) => {
        console.error(`bunpoll: error while stopping: ${(e as Error).stack ?? e}`);
        process.exit(1);
      });
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  reactor.start().catch((e) => {
    console.error(`bunpoll: reactor failed: ${(e as Error).stack ?? e}`);
    process.exit(1);
  });
}

main(process.argv.slice(2));
