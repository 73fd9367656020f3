// The load generator behind `client bench`: C connections on one reactor of our own.
//
// Closed loop (rate 0): each connection keeps `depth` requests in flight and sends the next
// one as each reply arrives; latency is reply time - send time.
// Open loop (rate N): requests go out on a fixed schedule, N per second over all
// connections, whatever is still in flight; latency is measured from the *intended* send
// time (request k is due at start + k/N), so when the server (or this process) falls
// behind, the queueing shows up in the latency instead of silently lowering the load
// (coordinated omission).
//
// framed, json, echo and ws send echo requests of `size` bytes (ws: binary messages to an
// echo endpoint, each frame masked with its own key). The line protocol has no
// replies: a line goes to every other connection, so latency is send -> delivery at each
// receiver (one process, one clock), and a line counts as completed when the next
// connection (i + 1 mod C) receives it.
//
// Every request sent during the run is waited for (up to `drainMs`) so that slow replies are
// in the histogram; throughput counts the replies that arrived inside the window.

import { LatencyHistogram, type LatencySummary } from "../stats/histogram.ts";
import { Reactor } from "../reactor/reactor.ts";
import type { TimerNode } from "../reactor/timers.ts";
import { connect, type Client, type ReplyCallback, type ClientOptions } from "./client.ts";
import { DEFAULT_PORTS, type ClientProtocolName, type Encoded, type IncomingMessage } from "./protocol.ts";

export interface BenchOptions {
  host?: string;
  port?: number;
  protocol?: ClientProtocolName;
  /** ws: the echo endpoint to load (default /ws/echo). */
  path?: string;
  authToken?: string;
  /** Connections. */
  conns: number;
  /** Requests in flight per connection (closed loop). */
  depth: number;
  /** Payload bytes per request. */
  size: number;
  durationSec: number;
  /** Requests per second over all connections; 0 = closed loop. */
  rate: number;
  /** Connect/handshake timeout, and how long to wait for the last replies (ms). Default 5000. */
  timeoutMs?: number;
  /** Connect over TLS (ClientOptions.tls). */
  tls?: ClientOptions["tls"];
  /** Called about every `progressIntervalMs` while running. */
  onProgress?: (p: BenchProgress) => void;
  progressIntervalMs?: number;
  /** Open loop: stop early when more than this many requests are unanswered. Default 1,000,000. */
  maxOutstanding?: number;
  /** Ends the run early (Ctrl-C); the result covers the time until then. */
  abortSignal?: AbortSignal;
}

export interface BenchProgress {
  elapsedSec: number;
  durationSec: number;
  completed: number;
  /** Over the last progress interval. */
  msgsPerSec: number;
  /** Cumulative so far, ns. */
  p99Ns: number;
  inFlight: number;
}

export interface BenchLatency extends LatencySummary {
  p75: number;
  p9999: number;
}

export interface BenchResult {
  protocol: ClientProtocolName;
  host: string;
  port: number;
  mode: "closed" | "open";
  conns: number;
  depth: number;
  size: number;
  durationSec: number;
  /** Target rate (open loop), else null. */
  rate: number | null;
  /** The measured window, s. */
  elapsedSec: number;
  sent: number;
  /** Replies (line: lines received by their designated receiver) inside the window. */
  completed: number;
  msgsPerSec: number;
  /** Payload bytes per second, each direction (line: delivered bytes). */
  bytesPerSec: number;
  /** Line protocol: every delivery to every receiver. */
  deliveries: number | null;
  deliveriesPerSec: number | null;
  /** Error replies (rate_limited...) and failed requests. */
  errors: number;
  /** Requests that had no reply when the drain ended. */
  unanswered: number;
  latencyNs: BenchLatency;
  /** The histogram behind latencyNs (not in the JSON output). */
  histogram: LatencyHistogram;
  /** Why the run ended before its duration (other than an interruption), or null. */
  stoppedEarly: string | null;
  /** The abort signal ended the run before its duration. */
  interrupted: boolean;
}

/** Growable FIFO of send times (ms). */
class TimeQueue {
  private buf = new Float64Array(64);
  private head = 0;
  private tail = 0;
  get length(): number {
    return this.tail - this.head;
  }
  push(t: number): void {
    if (this.tail === this.buf.length) {
      const live = this.length;
      // Compact in place when at most half is live, else grow.
      const next = live * 2 <= this.buf.length ? this.buf : new Float64Array(this.buf.length * 2);
      if (next === this.buf) next.copyWithin(0, this.head, this.tail);
      else next.set(this.buf.subarray(this.head, this.tail));
      this.buf = next;
      this.head = 0;
      this.tail = live;
    }
    this.buf[this.tail++] = t;
  }
  shift(): number {
    const t = this.buf[this.head++]!;
    if (this.head === this.tail) this.head = this.tail = 0;
    return t;
  }
}

interface Conn {
  index: number;
  client: Client;
  sendTimes: TimeQueue;
  /** Line: sequence number of the next line. */
  seq: number;
  alive: boolean;
  encoded: Encoded | null;
  onReply: ReplyCallback;
}

const PERCENTILES = [50, 75, 90, 99, 99.9, 99.99] as const;

export function summarize(h: LatencyHistogram): BenchLatency {
  const s = h.summary();
  const [p50, p75, p90, p99, p999, p9999] = h.percentiles(PERCENTILES) as [number, number, number, number, number, number];
  return { ...s, p50, p75, p90, p99, p999, p9999 };
}

export function validateBenchOptions(o: BenchOptions): void {
  const protocol = o.protocol ?? "framed";
  if (!(o.conns >= 1)) throw new RangeError("--conns must be >= 1");
  if (!(o.depth >= 1)) throw new RangeError("--depth must be >= 1");
  if (!(o.durationSec > 0)) throw new RangeError("--duration must be > 0");
  if (!(o.rate >= 0)) throw new RangeError("--rate must be >= 0");
  if (protocol === "line") {
    if (o.conns < 2) throw new RangeError("the line protocol bench needs --conns >= 2: a line goes to the other connections");
    if (o.size < 48) throw new RangeError("the line protocol bench needs --size >= 48 (each line carries its run, sequence and send time)");
  } else if (protocol === "echo" && o.size < 1) {
    throw new RangeError("--size must be >= 1 for the echo protocol");
  } else if (protocol === "framed" && o.size > 0xffff) {
    throw new RangeError("--size must be <= 65535 for the framed protocol (u16 length)");
  }
}

export async function runBench(o: BenchOptions): Promise<BenchResult> {
  validateBenchOptions(o);
  const protocol = o.protocol ?? "framed";
  const host = o.host ?? "127.0.0.1";
  const port = o.port ?? DEFAULT_PORTS[protocol];
  const timeoutMs = o.timeoutMs ?? 5000;
  const isLine = protocol === "line";
  const open = o.rate > 0;
  const maxOutstanding = o.maxOutstanding ?? 1_000_000;
  // Our own reactor. Closed loop: 1 ms polls keep Bun's timers (end, progress) on time.
  // Open loop: polls never sleep (epoll_wait(0), one busy core), because a sleep of even
  // 1 ms would delay sends due meanwhile and that delay would count as server latency.
  const reactor = new Reactor({ maxPollMs: open ? 0 : 1 });

  const histogram = new LatencyHistogram();
  let sent = 0;
  let completed = 0;
  let answered = 0; // replies/designated deliveries, in the window or after it
  let deliveries = 0;
  let errors = 0;
  let running = false;
  let stoppedEarly: string | null = null;
  let interrupted = false;
  let windowEnd = Infinity;
  let conns: Conn[] = [];
  let wakeDrain: (() => void) | null = null;
  let stopRun: (() => void) | null = null;
  const payloadText = "x".repeat(o.size);
  // Line bench: lines carry this run's tag, so that another run (or a chat line) on the same
  // server is never taken for one of ours.
  const tag = `b${Math.floor(Math.random() * 0xffffff).toString(16)}`;

  const finishOne = () => {
    answered++;
    if (answered === sent && !running) wakeDrain?.();
  };

  const issue = (c: Conn, intendedMs: number) => {
    sent++;
    if (isLine) {
      // "<tag> <sender> <seq> <intended send time, ms> " padded to `size` bytes.
      const head = `${tag} ${c.index} ${c.seq++} ${intendedMs.toFixed(6)} `;
      c.client.request("broadcast", c.client.wire.broadcast(head + payloadText.slice(head.length)), noop);
    } else {
      c.sendTimes.push(intendedMs);
      c.client.request("echo", c.encoded!, c.onReply);
    }
  };

  const onConnLost = (c: Conn) => {
    if (!c.alive) return;
    c.alive = false;
    if (running && conns.every((x) => !x.alive)) stop("every connection was lost");
  };

  const makeConn = (index: number, client: Client): Conn => {
    const c: Conn = {
      index,
      client,
      sendTimes: new TimeQueue(),
      seq: 0,
      alive: true,
      encoded: isLine ? null : client.wire.echo(protocol === "json" ? payloadText : new Uint8Array(o.size).fill(120)),
      onReply: (err) => {
        const now = performance.now();
        const t0 = c.sendTimes.shift();
        if (err) {
          errors++;
          if (!client.isOpen) onConnLost(c);
        } else {
          histogram.record((now - t0) * 1e6);
          if (now <= windowEnd) completed++;
        }
        finishOne();
        if (running && !open && c.alive) issue(c, performance.now());
      },
    };
    client.on("close", () => onConnLost(c));
    if (isLine) {
      client.on("message", (m) => onLine(c, m));
    }
    return c;
  };

  const onLine = (receiver: Conn, m: IncomingMessage) => {
    const now = performance.now();
    const t = m.text;
    if (!t.startsWith(tag) || t.charCodeAt(tag.length) !== 32) return; // not from this run
    const sp1 = tag.length;
    const sp2 = t.indexOf(" ", sp1 + 1);
    const sp3 = t.indexOf(" ", sp2 + 1);
    const sp4 = t.indexOf(" ", sp3 + 1);
    if (sp2 < 0 || sp3 < 0 || sp4 < 0) return;
    const from = Number(t.slice(sp1 + 1, sp2));
    const t0 = Number(t.slice(sp3 + 1, sp4));
    const sender = conns[from];
    if (sender === undefined || !Number.isFinite(t0)) return;
    deliveries++;
    histogram.record((now - t0) * 1e6);
    if ((from + 1) % conns.length === receiver.index) {
      if (now <= windowEnd) completed++;
      finishOne();
      if (running && !open && sender.alive) issue(sender, performance.now());
    }
  };

  const stop = (why: string | null) => {
    if (!running) return;
    running = false;
    if (why !== null && stoppedEarly === null) stoppedEarly = why;
    windowEnd = Math.min(windowEnd, performance.now());
    stopRun?.();
  };

  try {
    // If one fails, `finally` disposes the reactor, which closes the others.
    const clients = await Promise.all(
      Array.from({ length: o.conns }, () => connect({ host, port, protocol, path: o.path, authToken: o.authToken, timeoutMs, reactor, tls: o.tls })),
    );
    conns = clients.map((c, i) => makeConn(i, c));

    const start = performance.now();
    windowEnd = start + o.durationSec * 1000;
    running = true;
    const ended = new Promise<void>((r) => (stopRun = r));

    // Open loop: a reactor timer sends everything that is due, then sleeps until the next.
    let k = 0;
    const intervalMs = open ? 1000 / o.rate : 0;
    const total = Math.ceil(o.durationSec * o.rate);
    const ticker: TimerNode = {
      timerDeadline: 0,
      timerIndex: -1,
      onTimer(now: number) {
        if (!running) return;
        // Compare each request's own due time with `now`, so that the deadline scheduled below
        // is exactly the first one still in the future (division and floor could round it
        // onto `now`, and runExpired would then call us again, for ever, at the same `now`).
        while (k < total && start + k * intervalMs <= now) {
          const c = conns[k % conns.length]!;
          if (c.alive) issue(c, start + k * intervalMs);
          k++;
        }
        if (sent - answered > maxOutstanding) {
          stop(`more than ${maxOutstanding} requests unanswered: the server does not sustain ${o.rate}/s`);
          return;
        }
        if (k < total) reactor.timers.schedule(ticker, start + k * intervalMs);
      },
    };
    // The end is a reactor timer too: it runs after every send due before it (the heap runs
    // expired timers in deadline order), so an open-loop run sends exactly rate x duration.
    const ender: TimerNode = { timerDeadline: 0, timerIndex: -1, onTimer: () => stop(null) };
    reactor.timers.schedule(ender, start + o.durationSec * 1000);
    if (open) {
      reactor.timers.schedule(ticker, start);
    } else {
      for (const c of conns) for (let d = 0; d < o.depth; d++) issue(c, performance.now());
    }

    const onAbort = () => {
      interrupted = running;
      stop(null);
    };
    if (o.abortSignal?.aborted) onAbort();
    o.abortSignal?.addEventListener("abort", onAbort);
    let lastCompleted = 0;
    let lastAt = start;
    const progress = o.onProgress
      ? setInterval(() => {
          const now = performance.now();
          const rate = ((completed - lastCompleted) * 1000) / Math.max(1, now - lastAt);
          lastCompleted = completed;
          lastAt = now;
          o.onProgress!({
            elapsedSec: Math.min(o.durationSec, (now - start) / 1000),
            durationSec: o.durationSec,
            completed,
            msgsPerSec: rate,
            p99Ns: histogram.count > 0 ? histogram.percentile(99) : 0,
            inFlight: sent - answered,
          });
        }, o.progressIntervalMs ?? 250)
      : null;

    await ended;
    o.abortSignal?.removeEventListener("abort", onAbort);
    if (progress !== null) clearInterval(progress);
    reactor.timers.cancel(ticker);
    reactor.timers.cancel(ender);

    // Drain: wait for the replies to what was sent.
    if (answered < sent && conns.some((c) => c.alive)) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, timeoutMs);
        wakeDrain = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
    const elapsedSec = (windowEnd - start) / 1000;
    const bytes = isLine ? deliveries * o.size : completed * o.size;
    return {
      protocol,
      host,
      port,
      mode: open ? "open" : "closed",
      conns: o.conns,
      depth: o.depth,
      size: o.size,
      durationSec: o.durationSec,
      rate: open ? o.rate : null,
      elapsedSec,
      sent,
      completed,
      msgsPerSec: completed / elapsedSec,
      bytesPerSec: bytes / elapsedSec,
      deliveries: isLine ? deliveries : null,
      deliveriesPerSec: isLine ? deliveries / elapsedSec : null,
      errors,
      unanswered: sent - answered,
      latencyNs: summarize(histogram),
      histogram,
      stoppedEarly,
      interrupted,
    };
  } finally {
    running = false;
    // Abortive close: unanswered requests are counted already, lingering helps nobody.
    for (const c of conns) c.client.destroy();
    reactor[Symbol.dispose]();
  }
}

function noop(): void {}

/** The result without the histogram object, for --json. */
export function benchResultJson(r: BenchResult): Omit<BenchResult, "histogram"> {
  const { histogram: _h, ...rest } = r;
  return rest;
}
