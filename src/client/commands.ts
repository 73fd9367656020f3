// The CLI's commands, as functions of (context, arguments) -> exit code. Output goes
// through CliIO so that tests can capture it; status lines go to `err` so that stdout
// stays what the command produces (messages for `listen`, JSON with --json).

import { plural } from "../cli/plural.ts";
import { LatencyHistogram } from "../stats/histogram.ts";
import { formatBytes } from "../stats/summary.ts";
import { benchResultJson, runBench, type BenchOptions } from "./bench.ts";
import { connect, describeClose, type Client, type ClientOptions } from "./client.ts";
import { formatHostPort, RequestTimeoutError } from "./errors.ts";
import { formatBenchResult, formatMessage, formatMs, formatNotice, formatNs, formatProgress, formatStats } from "./format.ts";
import { DEFAULT_WS_PATH, WS_CHAT_PATH, type ClientProtocolName, type IncomingMessage } from "./protocol.ts";
import { ReconnectingClient, type BackoffOptions } from "./reconnect.ts";

export interface CliIO {
  /** A line on stdout. */
  out(line: string): void;
  /** A line on stderr. */
  err(line: string): void;
  /** Rewrites the current stderr line (progress bar); absent when stderr is not a TTY. */
  progress?(line: string): void;
}

export interface CommandContext {
  client: ClientOptions & { protocol: ClientProtocolName; host: string; port: number };
  io: CliIO;
  /** --json: machine-readable output on stdout. */
  json: boolean;
  /** Aborted on SIGINT/SIGTERM: long-running commands stop and report. */
  signal: AbortSignal;
  backoff?: BackoffOptions;
}

/** Which protocols each command works with. */
export const COMMAND_PROTOCOLS: Readonly<Record<string, readonly ClientProtocolName[]>> = {
  ping: ["framed", "json", "ws"],
  echo: ["framed", "json", "echo", "ws"],
  broadcast: ["framed", "json", "line", "ws"],
  send: ["framed", "json"],
  stats: ["framed", "json"],
  listen: ["framed", "json", "line", "ws"],
  interactive: ["framed", "json", "line", "ws"],
  demo: ["framed", "json", "line", "echo"],
  bench: ["framed", "json", "line", "echo", "ws"],
};

/** ws: the endpoint a command opens when no --path is given (the chat for chat commands). */
export function defaultWsPath(command: string): string {
  return command === "broadcast" || command === "listen" || command === "interactive" ? WS_CHAT_PATH : DEFAULT_WS_PATH;
}

/** Null when `command` works with `protocol`, else the message to show. */
export function unsupportedMessage(command: string, protocol: ClientProtocolName): string | null {
  const ok = COMMAND_PROTOCOLS[command];
  if (ok === undefined || ok.includes(protocol)) return null;
  return `${command} is not supported by the ${protocol} protocol (it works with ${ok.join(", ")})`;
}

export function where(ctx: CommandContext): string {
  // ws names the endpoint too: /ws/echo and /ws/chat behave differently.
  const path = ctx.client.protocol === "ws" ? (ctx.client.path ?? DEFAULT_WS_PATH) : "";
  return `${formatHostPort(ctx.client.host, ctx.client.port)}${path} (${ctx.client.protocol})`;
}

function connectedLine(ctx: CommandContext, c: Client): string {
  const id = c.clientId !== null ? ` as client ${c.clientId}${c.label ? ` (${c.label})` : ""}` : "";
  return `connected to ${where(ctx)}${id}`;
}

/**
 * Connects, and says which client id the server gave us (stdout, or stderr when stdout
 * carries JSON). The line and echo protocols have no greeting and no id: nothing to say.
 */
async function open(ctx: CommandContext): Promise<Client> {
  const c = await connect(ctx.client);
  if (c.clientId === null) return c;
  const line = connectedLine(ctx, c);
  if (ctx.json) ctx.io.err(line);
  else ctx.io.out(line);
  return c;
}

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done);
  });

// --- ping ---------------------------------------------------------------------------------

export interface PingArgs {
  /** 0: until interrupted. */
  count: number;
  intervalMs: number;
}

export async function pingCommand(ctx: CommandContext, a: PingArgs): Promise<number> {
  const c = await open(ctx);
  const h = new LatencyHistogram();
  let sent = 0;
  let lost = 0;
  let failure: Error | null = null;
  try {
    for (let seq = 1; a.count === 0 || seq <= a.count; seq++) {
      if (ctx.signal.aborted) break;
      const t0 = performance.now();
      sent++;
      try {
        const ms = await c.ping();
        h.record(ms * 1e6);
        if (!ctx.json) ctx.io.out(`seq=${seq} time=${formatMs(ms)}`);
      } catch (e) {
        if (!(e instanceof RequestTimeoutError)) {
          failure = e as Error;
          break;
        }
        lost++;
        if (!ctx.json) ctx.io.out(`seq=${seq} timeout (no reply within ${c.timeoutMs} ms)`);
      }
      if (a.count === 0 || seq < a.count) await sleep(Math.max(0, a.intervalMs - (performance.now() - t0)), ctx.signal);
    }
  } finally {
    await c.close();
  }
  const received = h.count;
  const s = h.summary();
  const avg = received > 0 ? h.sum / received : 0;
  if (ctx.json) {
    ctx.io.out(JSON.stringify({
      host: ctx.client.host, port: ctx.client.port, protocol: ctx.client.protocol, clientId: c.clientId,
      sent, received, lost, rttNs: { min: Math.round(s.min), avg: Math.round(avg), p99: Math.round(s.p99), max: Math.round(s.max) },
    }));
  } else {
    const lossSent = sent - (failure ? 1 : 0);
    ctx.io.out(`--- ${where(ctx)} ping statistics ---`);
    ctx.io.out(`${sent} sent, ${received} received, ${lossSent > 0 ? Math.round((100 * (lossSent - received)) / lossSent) : 0}% loss`);
    if (received > 0) ctx.io.out(`rtt min/avg/p99/max = ${formatNs(s.min)}/${formatNs(avg)}/${formatNs(s.p99)}/${formatNs(s.max)}`);
  }
  if (failure) throw failure;
  return received > 0 ? 0 : 1;
}

// --- echo, broadcast, send, stats ---------------------------------------------------------

export async function echoCommand(ctx: CommandContext, text: string): Promise<number> {
  const c = await open(ctx);
  try {
    const t0 = performance.now();
    const reply = await c.echo(text);
    const rtt = performance.now() - t0;
    const bytes = new TextEncoder().encode(text).length;
    const back = new TextEncoder().encode(reply).length;
    if (ctx.json) {
      ctx.io.out(JSON.stringify({ sent: text, received: reply, rttNs: Math.round(rtt * 1e6) }));
    } else {
      ctx.io.out(`sent     ${JSON.stringify(text)} (${plural(bytes, "byte")})`);
      ctx.io.out(`received ${JSON.stringify(reply)} (${plural(back, "byte")})`);
      ctx.io.out(`rtt      ${Math.round(rtt * 1000)} us`);
    }
    if (reply !== text) {
      ctx.io.err(`bunpoll-client: the echo differs from what was sent`);
      return 1;
    }
    return 0;
  } finally {
    await c.close();
  }
}

export async function broadcastCommand(ctx: CommandContext, text: string): Promise<number> {
  const c = await open(ctx);
  try {
    const n = await c.broadcast(text);
    if (ctx.json) ctx.io.out(JSON.stringify({ broadcast: text, recipients: n }));
    else if (n === null) ctx.io.out(`broadcast sent (the ${ctx.client.protocol} protocol does not acknowledge, so the recipients are unknown)`);
    else ctx.io.out(`broadcast delivered to ${plural(n, "client")}`);
    return 0;
  } finally {
    await c.close();
  }
}

export async function sendCommand(ctx: CommandContext, to: string, text: string): Promise<number> {
  const c = await open(ctx);
  try {
    await c.send(to, text);
    if (ctx.json) ctx.io.out(JSON.stringify({ sent: text, to }));
    else ctx.io.out(`sent to client ${to}`);
    return 0;
  } finally {
    await c.close();
  }
}

export async function statsCommand(ctx: CommandContext): Promise<number> {
  const c = await open(ctx);
  try {
    const s = await c.stats();
    ctx.io.out(ctx.json ? JSON.stringify(s, null, 2) : formatStats(s, where(ctx)));
    return 0;
  } finally {
    await c.close();
  }
}

// --- listen -------------------------------------------------------------------------------

/** Prints what arrives until interrupted; reconnects when the connection is lost. */
export async function listenCommand(ctx: CommandContext): Promise<number> {
  const rc = new ReconnectingClient({ ...ctx.client, backoff: ctx.backoff });
  wireStatus(rc, ctx, (m) => ctx.io.out(ctx.json ? JSON.stringify(messageJson(m)) : formatMessage(m)));
  const c = await rc.start();
  ctx.io.err(`listening on ${where(ctx)}${c.clientId !== null ? ` as client ${c.clientId}` : ""}; Ctrl-C to stop`);
  const stopped = new Promise<null>((resolve) => {
    if (ctx.signal.aborted) resolve(null);
    ctx.signal.addEventListener("abort", () => resolve(null));
  });
  const reason = await Promise.race([rc.done, stopped]);
  await rc.close();
  if (reason !== null) {
    ctx.io.err(`bunpoll-client: ${reason.message}`);
    return 1;
  }
  return 0;
}

export function messageJson(m: IncomingMessage): object {
  return { kind: m.kind, fromId: m.fromId, from: m.from, text: m.text };
}

/**
 * Says on stderr (via `status`) what the reconnecting client does: lost, retrying in, back.
 * Messages go to `onMessage`.
 */
export function wireStatus(
  rc: ReconnectingClient,
  ctx: CommandContext,
  onMessage: (m: IncomingMessage) => void,
  status: (line: string) => void = (l) => ctx.io.err(l),
): void {
  rc.on("message", onMessage);
  rc.on("notice", (n) => status(formatNotice(n)));
  rc.on("disconnect", (info, willRetry) => status(`connection lost: ${describeClose(info)}${willRetry ? "; reconnecting" : ""}`));
  rc.on("reconnecting", (attempt, delay, lastError) =>
    status(`reconnecting in ${(delay / 1000).toFixed(2)} s (attempt ${attempt}${lastError ? `; last: ${lastError.message}` : ""})`));
  rc.on("reconnect", (c) => status(`reconnected to ${where(ctx)}${c.clientId !== null ? ` as client ${c.clientId}` : ""}`));
}

// --- demo ---------------------------------------------------------------------------------

/** Resolves with the first message on `c` that satisfies `match`, or null after ms. */
function nextMessage(c: Client, match: (m: IncomingMessage) => boolean, ms: number): Promise<IncomingMessage | null> {
  return new Promise((resolve) => {
    const t = setTimeout(() => {
      off();
      resolve(null);
    }, ms);
    const off = c.on("message", (m) => {
      if (!match(m)) return;
      clearTimeout(t);
      off();
      resolve(m);
    });
  });
}

/** Walks through every operation with two clients, A and B, printing each exchange. */
export async function demoCommand(ctx: CommandContext): Promise<number> {
  const io = ctx.io;
  const p = ctx.client.protocol;
  io.out(`demo: ${where(ctx)}, two clients A and B`);
  const a = await connect(ctx.client);
  const b = await connect(ctx.client).catch(async (e) => {
    await a.close();
    throw e;
  });
  const n = a.wire.names;
  const show = (who: string, what: string, result: string) => io.out(`${who}  ${what.padEnd(34)} ${result}`);
  const idOf = (c: Client) => (c.clientId !== null ? `client id ${c.clientId}` : "no id in this protocol");
  const unsupported = (who: string, op: string) => show(who, op, `not supported by the ${p} protocol`);
  let exchanges = 0;
  try {
    for (const [who, c] of [["A", a], ["B", b]] as const) {
      if (c.supports("hello")) show(who, `${n.hello[0]} -> ${n.hello[1]}`, idOf(c));
      else show(who, "connect", `connected (${idOf(c)})`);
      exchanges++;
    }
    if (a.supports("ping")) {
      const ms = await a.ping();
      show("A", `${n.ping[0]} -> ${n.ping[1]}`, `rtt ${formatMs(ms)}`);
      exchanges++;
    } else unsupported("A", "ping");

    const text = "hello, bunpoll";
    if (a.supports("echo")) {
      const t0 = performance.now();
      const back = await a.echo(text);
      show("A", `${n.echo[0]} ${JSON.stringify(text)}`, `-> ${n.echo[1]} ${JSON.stringify(back)} in ${formatMs(performance.now() - t0)}`);
      exchanges++;
    } else unsupported("A", "echo");

    const hi = `hi from A (${Date.now() % 100000})`;
    if (a.supports("broadcast")) {
      const arrival = nextMessage(b, (m) => m.kind === "broadcast" && m.text === hi, ctx.client.timeoutMs ?? 5000);
      const recipients = await a.broadcast(hi);
      show("A", `${n.broadcast[0]} ${JSON.stringify(hi)}`, recipients === null ? "-> sent (no acknowledgement)" : `-> ${n.broadcast[1]}: ${plural(recipients, "recipient")}`);
      const m = await arrival;
      show("B", `<- broadcast from ${m ? m.from : "?"}`, m ? JSON.stringify(m.text) : "nothing arrived (timeout)");
      exchanges += 2;
      if (m === null) return 1;
    } else unsupported("A", "broadcast");

    if (b.supports("send") && a.clientId !== null) {
      const psst = "psst, A";
      const arrival = nextMessage(a, (m) => m.kind === "direct" && m.text === psst, ctx.client.timeoutMs ?? 5000);
      await b.send(a.clientId, psst);
      show("B", `${n.send[0]} ${a.clientId} ${JSON.stringify(psst)}`, `-> ${n.send[1]}`);
      const m = await arrival;
      show("A", `<- direct message from ${m ? m.from : "?"}`, m ? JSON.stringify(m.text) : "nothing arrived (timeout)");
      exchanges += 2;
      if (m === null) return 1;
      // Ids start at 1: 0 is never a client, so this shows an error reply.
      try {
        await a.send(0, "anyone?");
        show("A", `${n.send[0]} 0 "anyone?"`, "-> unexpectedly acknowledged");
      } catch (e) {
        show("A", `${n.send[0]} 0 "anyone?"`, `-> error ${(e as Error).message}`);
      }
      exchanges++;
    } else unsupported("B", "send");

    if (a.supports("stats")) {
      const s = await a.stats();
      show("A", `${n.stats[0]} -> ${n.stats[1]}`, `${plural(s.clients, "client")}, ${plural(s.connectionsTotal, "connection")} so far, ${plural(s.messagesIn, "message")} in, ${formatBytes(s.bytesIn)} in`);
      exchanges++;
    } else unsupported("A", "stats");
    io.out(`demo done: ${plural(exchanges, "exchange")}`);
    return 0;
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
}

// --- bench --------------------------------------------------------------------------------

export type BenchArgs = Pick<BenchOptions, "conns" | "depth" | "size" | "durationSec" | "rate">;

export async function benchCommand(ctx: CommandContext, a: BenchArgs): Promise<number> {
  const io = ctx.io;
  const show = io.progress;
  const bench = runBench({
    ...a,
    host: ctx.client.host,
    port: ctx.client.port,
    protocol: ctx.client.protocol,
    path: ctx.client.path,
    authToken: ctx.client.authToken,
    timeoutMs: ctx.client.timeoutMs,
    tls: ctx.client.tls,
    onProgress: show ? (p) => show(formatProgress(p)) : undefined,
    abortSignal: ctx.signal,
  });
  const r = await bench;
  if (show) show("");
  io.out(ctx.json ? JSON.stringify(roundForJson(benchResultJson(r))) : formatBenchResult(r));
  return r.completed > 0 && r.stoppedEarly === null ? 0 : 1;
}

/** Integers for ns and counts, 3 decimals for rates and seconds: readable JSON. */
function roundForJson<T>(v: T): T {
  return JSON.parse(JSON.stringify(v, (_k, x) => (typeof x === "number" && !Number.isInteger(x) ? Math.round(x * 1000) / 1000 : x)));
}
