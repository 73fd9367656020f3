#!/usr/bin/env bun
// The bunpoll client CLI, built on bunpoll's own reactor.
//   bun run src/client.ts --protocol echo --port 5050 echo "hello"

import pkg from "../package.json" with { type: "json" };
import { parseArgs, formatFlags, UsageError, type FlagSpecs } from "./cli/args.ts";
import { Reactor } from "./reactor/reactor.ts";
import type { Connection } from "./types.ts";

const FLAGS = {
  host: { type: "string", arg: "ADDR", description: "server address", default: "127.0.0.1" },
  port: { type: "int", arg: "PORT", description: "server port (default depends on --protocol)", min: 1, max: 65535 },
  protocol: { type: "string", arg: "NAME", description: "echo", default: "echo", choices: ["echo"] },
  timeout: { type: "number", arg: "SEC", description: "give up waiting for a reply after this long", default: 5, min: 0 },
  help: { type: "bool", description: "show this help" },
  version: { type: "bool", description: "print the version" },
} as const satisfies FlagSpecs;

const USAGE = `bunpoll client ${pkg.version}

usage: bun run src/client.ts [options] COMMAND

commands:
  echo TEXT      send TEXT, print what came back and the round-trip time

options:
${formatFlags(FLAGS)}`;

const DEFAULT_PORTS: Record<string, number> = { echo: 5050 };

function fail(msg: string, code = 1): never {
  console.error(`bunpoll-client: ${msg}`);
  process.exit(code);
}

async function echoCommand(reactor: Reactor, host: string, port: number, text: string, timeoutMs: number): Promise<void> {
  const payload = new TextEncoder().encode(text);
  const received: Uint8Array[] = [];
  let got = 0;
  let done!: () => void;
  const finished = new Promise<void>((r) => (done = r));
  let conn: Connection;
  try {
    conn = await reactor.connect(host, port, {
      data(_c, bytes) {
        received.push(bytes.slice());
        got += bytes.length;
        if (got >= payload.length) done();
      },
      close() {
        done();
      },
    });
  } catch (e) {
    fail(`cannot connect to ${host}:${port}: ${(e as Error).message}`);
  }
  const t0 = performance.now();
  conn.write(payload);
  const timer = setTimeout(() => done(), timeoutMs);
  await finished;
  clearTimeout(timer);
  const rtt = performance.now() - t0;
  conn.close();
  const reply = new TextDecoder().decode(Buffer.concat(received));
  console.log(`sent     ${JSON.stringify(text)} (${payload.length} bytes)`);
  if (got < payload.length) fail(`received ${got} of ${payload.length} bytes before ${got === 0 ? "timeout or close" : "the connection ended"}`);
  console.log(`received ${JSON.stringify(reply)} (${got} bytes)`);
  console.log(`rtt      ${(rtt * 1000).toFixed(0)} us`);
}

async function main(argv: string[]): Promise<void> {
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs(argv, FLAGS);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    fail(`${e.message}\n\n${USAGE}`, 2);
  }
  const { flags, positionals } = parsed;
  if (flags.help) return console.log(USAGE);
  if (flags.version) return console.log(`bunpoll client ${pkg.version}`);
  const protocol = flags.protocol as string;
  const host = flags.host as string;
  const port = (flags.port as number | undefined) ?? DEFAULT_PORTS[protocol]!;
  const [command, ...rest] = positionals;
  const reactor = new Reactor();
  try {
    switch (command) {
      case "echo":
        if (rest.length === 0) fail(`echo needs TEXT\n\n${USAGE}`, 2);
        await echoCommand(reactor, host, port, rest.join(" "), (flags.timeout as number) * 1000);
        break;
      case undefined:
        fail(`no command given\n\n${USAGE}`, 2);
      default:
        fail(`unknown command "${command}"\n\n${USAGE}`, 2);
    }
  } finally {
    reactor[Symbol.dispose]();
  }
}

await main(process.argv.slice(2));
