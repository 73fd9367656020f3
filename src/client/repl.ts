// `interactive`: a small chat REPL. Lines are read with node:readline, so it works on a
// terminal and on a pipe alike (the tests pipe commands in and read stdout). Commands run
// one at a time, in input order; messages from other clients are printed as they arrive,
// and on a terminal the prompt and the half-typed line are redrawn below them.

import { createInterface, type Interface } from "node:readline";
import type { Readable, Writable } from "node:stream";
import { noun } from "../cli/plural.ts";
import { formatMs, formatStats, formatMessage } from "./format.ts";
import { type CommandContext, where, wireStatus } from "./commands.ts";
import { ClientError } from "./errors.ts";
import { ReconnectingClient } from "./reconnect.ts";

export const REPL_HELP = `commands:
  /ping                 round trip to the server
  /echo TEXT            the server sends TEXT back
  /broadcast TEXT       send TEXT to every other client (plain text does the same)
  /send ID TEXT         send TEXT to client ID only
  /stats                server statistics
  /help                 this list
  /exit                 leave (so does end of input, Ctrl-D)`;

export interface ReplStreams {
  input: Readable;
  output: Writable & { isTTY?: boolean };
  /** Redraw a prompt: only when both ends are a terminal. */
  terminal: boolean;
}

export async function interactiveCommand(ctx: CommandContext, streams: ReplStreams): Promise<number> {
  const rc = new ReconnectingClient({ ...ctx.client, backoff: ctx.backoff });
  let rl: Interface | null = null;

  // Print above the prompt without mangling what the user is typing.
  const print = (line: string) => {
    if (rl !== null && streams.terminal) {
      streams.output.write(`\r\x1b[2K${line}\n`);
      rl.prompt(true);
    } else {
      ctx.io.out(line);
    }
  };
  wireStatus(rc, ctx, (m) => print(formatMessage(m)), (l) => print(`*** ${l}`));

  const c = await rc.start();
  print(`connected to ${where(ctx)}${c.clientId !== null ? ` as client ${c.clientId}` : ""}. /help lists the commands; plain text is broadcast.`);

  rl = createInterface({ input: streams.input, output: streams.terminal ? streams.output : undefined, terminal: streams.terminal, prompt: "> " });
  if (streams.terminal) rl.prompt();
  // On a terminal readline takes Ctrl-C itself; turn it back into the signal the CLI handles.
  rl.on("SIGINT", () => process.kill(process.pid, "SIGINT"));

  const lines = (async () => {
    for await (const raw of rl) {
      const line = raw.trim();
      if (line !== "") {
        const verdict = await runLine(line, rc, ctx, print);
        if (verdict === "exit") return;
      }
      if (streams.terminal) rl.prompt();
    }
  })();
  const interrupted = new Promise<void>((resolve) => {
    if (ctx.signal.aborted) resolve();
    ctx.signal.addEventListener("abort", () => resolve());
  });
  // Ends at /exit or end of input, on Ctrl-C, or when the client gives up reconnecting.
  const outcome = await Promise.race([lines.then(() => null), interrupted.then(() => null), rc.done]);
  rl.close();
  await rc.close();
  if (outcome !== null) {
    ctx.io.err(`bunpoll-client: ${outcome.message}`);
    return 1;
  }
  return 0;
}

/** Runs one input line; "exit" ends the session. */
async function runLine(line: string, rc: ReconnectingClient, ctx: CommandContext, print: (l: string) => void): Promise<"exit" | void> {
  if (!line.startsWith("/")) {
    await attempt(print, async () => {
      const n = await rc.broadcast(line);
      // Chat stays quiet on the line and ws protocols, which cannot say who got it.
      if (n !== null) print(`(delivered to ${n})`);
    });
    return;
  }
  const space = line.indexOf(" ");
  const cmd = space < 0 ? line : line.slice(0, space);
  const rest = space < 0 ? "" : line.slice(space + 1).trim();
  switch (cmd) {
    case "/exit":
    case "/quit":
      return "exit";
    case "/help":
      print(REPL_HELP);
      return;
    case "/ping":
      await attempt(print, async () => print(`pong in ${formatMs(await rc.ping())}`));
      return;
    case "/echo":
      await attempt(print, async () => {
        const t0 = performance.now();
        const back = await rc.echo(rest);
        print(`echo: ${back} (${formatMs(performance.now() - t0)})`);
      });
      return;
    case "/broadcast":
      if (rest === "") return print("usage: /broadcast TEXT");
      await attempt(print, async () => {
        const n = await rc.broadcast(rest);
        print(n === null ? `broadcast sent (the ${ctx.client.protocol} protocol does not acknowledge)` : `broadcast delivered to ${n} ${noun(n, "client")}`);
      });
      return;
    case "/send": {
      const m = /^(\S+)\s+(.+)$/.exec(rest);
      if (!m) return print("usage: /send ID TEXT");
      await attempt(print, async () => {
        await rc.send(m[1]!, m[2]!);
        print(`sent to client ${m[1]}`);
      });
      return;
    }
    case "/stats":
      await attempt(print, async () => print(formatStats(await rc.stats(), where(ctx))));
      return;
    default:
      print(`unknown command ${cmd}; /help lists the commands`);
  }
}

/** Runs a request; prints its failure instead of ending the session. */
async function attempt(print: (l: string) => void, fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (e) {
    if (!(e instanceof ClientError)) throw e;
    print(`error: ${e.message}`);
  }
}
