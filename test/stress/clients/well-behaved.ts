// Well-behaved sessions, one or more per protocol, run while garbage flies: each does
// request/response round trips for `durationMs` and checks every answer. Anything other
// than the right answer within `replyTimeoutMs` (a wrong reply, a disconnect, a timeout)
// is a failure of the server's isolation between clients.
//
//   framed: ECHO with a random body (exact echo), PING, and a STATS now and then
//   json:   echo with a random content (deep-equal), ping, get_stats now and then
//   line:   a pair of clients; each line one sends must reach the other as "<id>: <line>"
//   echo:   random bytes, echoed exactly
// Broadcasts and direct messages that garbage clients cause are read and ignored.

import { config, finish, run, sleep } from "../lib/child.ts";
import { connectSocket, FramedClient, JsonClient } from "../lib/net.ts";
import { summarize, type Summary } from "../lib/stats.ts";
import { decodeFramedStats, LineReader, Msg, Rng } from "../lib/wire.ts";

type Protocol = "framed" | "json" | "line" | "echo";

export interface WellBehavedConfig {
  ports: Record<Protocol, number>;
  perProtocol: number;
  durationMs: number;
  replyTimeoutMs: number;
  /** Pause between round trips. */
  gapMs: number;
  seed: number;
}

export interface SessionTally {
  sessions: number;
  roundTrips: number;
  failures: number;
  firstFailure: string;
  rtt: Summary;
}

export interface WellBehavedResult {
  byProtocol: Record<Protocol, SessionTally>;
}

const cfg = config<WellBehavedConfig>();

class Tally {
  roundTrips = 0;
  failures = 0;
  firstFailure = "";
  readonly rtts: number[] = [];
  constructor(readonly sessions: number) {}
  ok(rtt: number): void {
    this.roundTrips++;
    this.rtts.push(rtt);
  }
  fail(what: string): void {
    this.failures++;
    if (!this.firstFailure) this.firstFailure = what;
  }
  done(): SessionTally {
    return { sessions: this.sessions, roundTrips: this.roundTrips, failures: this.failures, firstFailure: this.firstFailure, rtt: summarize(this.rtts) };
  }
}

function randomText(r: Rng, n: number): string {
  const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789 -_é\u{1F600}";
  const chars = [...alphabet];
  let s = "";
  for (let i = 0; i < n; i++) s += chars[r.int(chars.length)];
  return s;
}

async function framedSession(t: Tally, r: Rng, end: number): Promise<void> {
  const c = await FramedClient.connect(cfg.ports.framed);
  try {
    for (let i = 0; performance.now() < end; i++) {
      const t0 = performance.now();
      try {
        if (i % 50 === 49) {
          const rep = await c.request(Msg.STATS, undefined, cfg.replyTimeoutMs);
          if (rep.type !== Msg.STATS_REPLY || decodeFramedStats(rep.body) === null) throw new Error(`STATS answered 0x${rep.type.toString(16)}`);
        } else if (i % 5 === 4) {
          const body = r.bytes(r.int(32));
          const rep = await c.request(Msg.PING, body, cfg.replyTimeoutMs);
          if (rep.type !== Msg.PONG || !rep.body.equals(body)) throw new Error(`PING answered 0x${rep.type.toString(16)} (${rep.body.length} B)`);
        } else {
          const body = r.bytes(r.int(r.chance(0.1) ? 60_000 : 1024));
          const rep = await c.request(Msg.ECHO, body, cfg.replyTimeoutMs);
          if (rep.type !== Msg.ECHO_REPLY || !rep.body.equals(body)) throw new Error(`ECHO of ${body.length} B answered 0x${rep.type.toString(16)} (${rep.body.length} B)`);
        }
        t.ok(performance.now() - t0);
      } catch (e) {
        t.fail(`framed: ${(e as Error).message}`);
        if (c.ended !== "open") return;
      }
      await sleep(cfg.gapMs);
    }
  } finally {
    c.close();
  }
}

async function jsonSession(t: Tally, r: Rng, end: number): Promise<void> {
  const c = await JsonClient.connect(cfg.ports.json);
  try {
    for (let i = 0; performance.now() < end; i++) {
      const t0 = performance.now();
      try {
        if (i % 50 === 49) {
          const rep = await c.request({ type: "get_stats" }, cfg.replyTimeoutMs);
          if (rep.type !== "server_stats") throw new Error(`get_stats answered ${JSON.stringify(rep).slice(0, 120)}`);
        } else if (i % 5 === 4) {
          const rep = await c.request({ type: "ping", timestamp: i }, cfg.replyTimeoutMs);
          if (rep.type !== "pong" || rep.ping_timestamp !== i) throw new Error(`ping answered ${JSON.stringify(rep).slice(0, 120)}`);
        } else {
          const content = { n: i, s: randomText(r, r.int(200)), a: [r.u32(), null, true, { x: randomText(r, 5) }] };
          const rep = await c.request({ type: "echo", content }, cfg.replyTimeoutMs);
          if (rep.type !== "echo_response" || JSON.stringify(rep.content) !== JSON.stringify(content)) {
            throw new Error(`echo answered ${JSON.stringify(rep).slice(0, 120)}`);
          }
        }
        t.ok(performance.now() - t0);
      } catch (e) {
        t.fail(`json: ${(e as Error).message}`);
        if (c.ended !== "open") return;
      }
      await sleep(cfg.gapMs);
    }
  } finally {
    c.close();
  }
}

/** Two line clients: each line one sends must reach the other one. */
async function linePair(t: Tally, r: Rng, end: number, pairIndex: number): Promise<void> {
  const a = await connectSocket(cfg.ports.line);
  const b = await connectSocket(cfg.ports.line);
  const nonce = `wb${pairIndex}x${r.u32().toString(36)}`;
  const waiting = new Map<string, (ok: boolean) => void>();
  let ended = "";
  const listen = (s: typeof a, name: string) => {
    const reader = new LineReader((line) => {
      // Chat lines are "<id>: <text>" (or "<id> (direct): <text>"); ours carry the nonce.
      const m = /^\d+: (.*)$/.exec(line);
      if (m && waiting.has(`${name}:${m[1]}`)) {
        const w = waiting.get(`${name}:${m[1]}`)!;
        waiting.delete(`${name}:${m[1]}`);
        w(true);
      } else if (line.startsWith("ERR ")) {
        t.fail(`line: the server sent a well-behaved client "${line}"`);
      }
    });
    s.on("data", (d: Buffer) => reader.push(d));
    const gone = (why: string) => {
      if (!ended) ended = `${name} ${why}`;
      for (const w of waiting.values()) w(false);
      waiting.clear();
    };
    s.on("end", () => gone("got EOF"));
    s.on("error", (e) => gone(`error ${e.message}`));
  };
  listen(a, "a");
  listen(b, "b");
  try {
    for (let i = 0; performance.now() < end && !ended; i++) {
      const [from, toName] = i % 2 === 0 ? [a, "b"] : [b, "a"];
      const text = `${nonce} ${i} ${randomText(r, r.int(100))}`;
      const t0 = performance.now();
      const got = new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => {
          waiting.delete(`${toName}:${text}`);
          resolve(false);
        }, cfg.replyTimeoutMs);
        waiting.set(`${toName}:${text}`, (ok) => {
          clearTimeout(timer);
          resolve(ok);
        });
      });
      from.write(`${text}\n`);
      if (await got) t.ok(performance.now() - t0);
      else t.fail(`line: "${text.slice(0, 40)}..." did not reach the other client within ${cfg.replyTimeoutMs} ms${ended ? ` (${ended})` : ""}`);
      await sleep(cfg.gapMs);
    }
  } finally {
    a.destroy();
    b.destroy();
  }
}

async function echoSession(t: Tally, r: Rng, end: number): Promise<void> {
  const s = await connectSocket(cfg.ports.echo);
  let buf = Buffer.alloc(0);
  let want = 0;
  let wake: (() => void) | null = null;
  let ended = "";
  s.on("data", (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    if (buf.length >= want && wake) wake();
  });
  s.on("end", () => {
    ended = "EOF";
    wake?.();
  });
  s.on("error", (e) => {
    ended = e.message;
    wake?.();
  });
  try {
    while (performance.now() < end && !ended) {
      const payload = r.bytes(r.range(1, r.chance(0.1) ? 200_000 : 4096));
      const t0 = performance.now();
      want = payload.length;
      const arrived = new Promise<void>((resolve) => {
        const timer = setTimeout(done, cfg.replyTimeoutMs);
        function done() {
          clearTimeout(timer);
          wake = null;
          resolve();
        }
        wake = done;
      });
      s.write(payload);
      await arrived;
      if (buf.length >= payload.length && buf.subarray(0, payload.length).equals(payload)) {
        t.ok(performance.now() - t0);
        buf = buf.subarray(payload.length);
      } else {
        t.fail(`echo: ${payload.length} B sent, ${buf.length} B back${ended ? ` (${ended})` : ""}${buf.length >= payload.length ? ", content differs" : ""}`);
        return;
      }
      await sleep(cfg.gapMs);
    }
  } finally {
    s.destroy();
  }
}

run(async () => {
  const end = performance.now() + cfg.durationMs;
  const n = cfg.perProtocol;
  const tallies = { framed: new Tally(n), json: new Tally(n), line: new Tally(n * 2), echo: new Tally(n) };
  const guard = (p: Protocol, f: () => Promise<void>) =>
    f().catch((e: Error) => tallies[p].fail(`${p}: session failed: ${e.message}`));
  const sessions: Promise<void>[] = [];
  for (let i = 0; i < n; i++) {
    const r = (k: number) => new Rng(cfg.seed * 31 + i * 1009 + k);
    sessions.push(guard("framed", () => framedSession(tallies.framed, r(1), end)));
    sessions.push(guard("json", () => jsonSession(tallies.json, r(2), end)));
    sessions.push(guard("line", () => linePair(tallies.line, r(3), end, i)));
    sessions.push(guard("echo", () => echoSession(tallies.echo, r(4), end)));
  }
  await Promise.all(sessions);
  const result: WellBehavedResult = {
    byProtocol: { framed: tallies.framed.done(), json: tallies.json.done(), line: tallies.line.done(), echo: tallies.echo.done() },
  };
  finish(result);
}, cfg.durationMs + 60_000);
