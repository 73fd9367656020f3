// The well-behaved client whose latency the acceptance figures quote: one connection, one
// request at a time (paced: the next one leaves `intervalMs` after the last one left, or at
// once if the reply took longer), RTT measured from write to reply. framed: PING/PONG, and
// broadcasts that other clients cause are read and ignored, as any client would. echo: 16
// bytes echoed back; an echo connection receives no broadcasts.
// Runs for `durationMs` or until the runner sends "stop".

import { config, finish, onCommand, run, sleep, emit } from "../lib/child.ts";
import { EchoClient, FramedClient } from "../lib/net.ts";
import { summarize, type Summary } from "../lib/stats.ts";
import { Msg } from "../lib/wire.ts";

export interface ProbeConfig {
  port: number;
  /** Default framed. */
  protocol?: "framed" | "echo";
  durationMs: number;
  intervalMs: number;
  /** Pings before measuring (JIT, connection warm-up). */
  warmup?: number;
  /** Width of a timeline slice (default 1000 ms). */
  bucketMs?: number;
}

export interface ProbeResult {
  rtt: Summary;
  /** Wrong reply type or body, or a reply that did not come within 5 s. */
  errors: number;
  firstError: string;
  /** The server closed the probe's connection. */
  disconnected: boolean;
  pushed: number;
  /** Per-`bucketMs` slices of the run: when the slow pings happened. */
  timeline: { atMs: number; count: number; p99: number; max: number }[];
  /** Raw samples, for slicing by time: ping i left at startEpochMs + sentAtMs[i], took rttUs[i]. */
  startEpochMs: number;
  sentAtMs: number[];
  rttUs: number[];
}

const cfg = config<ProbeConfig>();

run(async () => {
  let stop = false;
  onCommand((line) => {
    if (line === "stop") stop = true;
  });
  const c = cfg.protocol === "echo" ? await EchoClient.connect(cfg.port) : await FramedClient.connect(cfg.port);
  let pushed = 0;
  if (c instanceof FramedClient) c.onPush = () => pushed++;
  const body = Buffer.alloc(16);
  let errors = 0;
  let firstError = "";
  const rtts: number[] = [];
  const at: number[] = [];
  const ping = async (seq: number): Promise<number> => {
    body.writeUInt32BE(seq, 0);
    if (c instanceof EchoClient) {
      const t0 = performance.now();
      const r = await c.request(body, 5000);
      const dt = performance.now() - t0;
      if (!r.equals(body)) throw new Error(`echo ${seq} came back different`);
      return dt;
    }
    const t0 = performance.now();
    const r = await c.request(Msg.PING, body, 5000);
    const dt = performance.now() - t0;
    if (r.type !== Msg.PONG || !r.body.equals(body)) throw new Error(`PING ${seq} answered type 0x${r.type.toString(16)} (${r.body.length} bytes)`);
    return dt;
  };
  let seq = 0;
  for (let i = 0; i < (cfg.warmup ?? 200); i++) await ping(seq++);
  emit("ready");
  const start = performance.now();
  const startEpochMs = performance.timeOrigin + start;
  const end = start + cfg.durationMs;
  while (!stop && performance.now() < end && c.ended === "open") {
    const t0 = performance.now();
    try {
      rtts.push(await ping(seq++));
      at.push(t0 - start);
    } catch (e) {
      errors++;
      if (!firstError) firstError = (e as Error).message;
      if (c.ended !== "open") break;
    }
    const wait = t0 + cfg.intervalMs - performance.now();
    if (wait > 0) await sleep(wait);
  }
  const disconnected = c.ended !== "open";
  c.close();
  const bucket = cfg.bucketMs ?? 1000;
  const slices = new Map<number, number[]>();
  rtts.forEach((r, i) => {
    const k = Math.floor(at[i]! / bucket);
    let xs = slices.get(k);
    if (!xs) slices.set(k, (xs = []));
    xs.push(r);
  });
  const timeline = [...slices].sort((a, b) => a[0] - b[0]).map(([k, xs]) => {
    const s = summarize(xs);
    return { atMs: k * bucket, count: s.count, p99: s.p99, max: s.max };
  });
  const result: ProbeResult = {
    rtt: summarize(rtts),
    errors,
    firstError,
    disconnected,
    pushed,
    timeline,
    startEpochMs,
    sentAtMs: at.map((x) => Math.round(x * 100) / 100),
    rttUs: rtts.map((x) => Math.round(x * 1000)),
  };
  finish(result);
}, cfg.durationMs + 60_000);
