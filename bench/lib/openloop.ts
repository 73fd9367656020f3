// The open-loop scenario of bench/run.ts (`--scenarios openloop`): a fixed rate of framed
// 64 B ECHOs over 50 connections from the C load generator (baselines/c-openloop.c, pinned to
// core 1), latency from each request's scheduled send time, at several rates, against each
// server (pinned to core 0 by the runner), in interleaved rounds. The runner hands in its
// own server table (start/stop), so servers are started exactly as in the other scenarios.
//
//   bun run bench/run.ts --scenarios openloop [--servers c-epoll,bunpoll,...] [--rates 10000,20000,40000]
//       [--rounds 5] [--duration 5] [--warmup 2] [--conns 50] [--loadgen-sleep] [--rt] [--quick]

import { readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { ensureCServer } from "./servers.ts";

export interface OpenLoopHost {
  root: string;
  /** Starts a server of the runner's table on core 0 (framed protocol); an error string on failure. */
  start(name: string): Promise<{ pid: number; port: number; stop(): Promise<void>; gone(): string | null; stderr(): string } | string>;
}

export const OPENLOOP_SERVERS = ["c-epoll", "bunpoll", "bunpoll-nogctimer", "bunpoll-nospin", "bun-listen", "node-net"];

interface Run {
  server: string;
  rate: number;
  round: number;
  ok: boolean;
  error?: string;
  p50?: number;
  p90?: number;
  p99?: number;
  p999?: number;
  max?: number;
  cpuUsPerMsg?: number;
  lost?: number;
  closedConns?: number;
  maxSendLagUs?: number;
  loadavgBefore?: string;
  loadavgAfter?: string;
  serverStderr?: string;
}

function median(xs: number[]): number {
  const a = [...xs].sort((x, y) => x - y);
  const m = a.length >> 1;
  return a.length === 0 ? NaN : a.length % 2 ? a[m]! : (a[m - 1]! + a[m]!) / 2;
}

const f1 = (v: number | undefined): string => (v === undefined || !Number.isFinite(v) ? "-" : v >= 100 ? v.toFixed(0) : v.toFixed(1));
const f2 = (v: number | undefined): string => (v === undefined || !Number.isFinite(v) ? "-" : v.toFixed(2));

function parse(argv: string[]) {
  const o = {
    servers: OPENLOOP_SERVERS,
    rates: [10000, 20000, 40000],
    rounds: 5,
    duration: 5,
    warmup: 2,
    conns: 50,
    size: 64,
    sleep: false,
    rt: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const v = (): string => {
      const x = argv[++i];
      if (x === undefined) throw new Error(`${a} needs a value`);
      return x;
    };
    switch (a) {
      case "--scenarios": v(); break;
      case "--servers": o.servers = v().split(","); break;
      case "--rates": o.rates = v().split(",").map(Number); break;
      case "--rounds": o.rounds = Number(v()); break;
      case "--duration": o.duration = Number(v()); break;
      case "--warmup": o.warmup = Number(v()); break;
      case "--conns": o.conns = Number(v()); break;
      case "--size": o.size = Number(v()); break;
      case "--quick": o.rounds = 1; o.duration = 2; o.warmup = 1; break;
      case "--loadgen-sleep": o.sleep = true; break;
      // Shared machines: server and generator at SCHED_FIFO priority 10 (the generator then
      // sleeps between sends instead of spinning, so that it leaves its core to others).
      case "--rt": o.rt = true; o.sleep = true; break;
      default: throw new Error(`openloop: unknown flag ${a}`);
    }
  }
  if (o.rates.some((r) => !(r > 0))) throw new Error("openloop: --rates takes positive numbers");
  return o;
}

/** Runs the scenario; returns the exit status. */
export async function runOpenLoop(argv: string[], host: OpenLoopHost): Promise<number> {
  const o = parse(argv);
  const gen = ensureCServer(host.root, "c-openloop");
  if (gen === null) {
    process.stderr.write("openloop: the C load generator could not be built (cc missing?)\n");
    return 1;
  }
  const started = new Date();
  const stamp = started.toISOString().replace(/\.\d+Z$/, "Z").replaceAll(":", "-");
  const perRun = o.warmup + o.duration + 1.5;
  process.stderr.write(
    `openloop: ${o.servers.join(",")} x ${o.rates.join(",")} msgs/s x ${o.rounds} round(s), ${o.conns} conns, ` +
      `${o.warmup} s + ${o.duration} s each: ~${Math.ceil((perRun * o.servers.length * o.rates.length * o.rounds) / 60)} min\n`,
  );
  const runs: Run[] = [];
  for (let round = 0; round < o.rounds; round++) {
    for (const rate of o.rates) {
      // Rotate the order each round so that no server always runs first (or after the same one).
      const order = o.servers.map((_, i) => o.servers[(i + round) % o.servers.length]!);
      for (const server of order) {
        const r = await runOne(gen, host, server, rate, round, o);
        runs.push(r);
        process.stderr.write(
          `  round ${round + 1} ${rate}/s ${server}: ` +
            (r.ok ? `p50 ${f1(r.p50)} p99 ${f1(r.p99)} µs, CPU ${f2(r.cpuUsPerMsg)} µs/msg, load ${r.loadavgBefore?.split(" ")[0]}` : `FAILED ${r.error}`) +
            "\n",
        );
      }
    }
  }

  const lines: string[] = [];
  const targets: string[] = [];
  for (const rate of o.rates) {
    lines.push(`\n### open loop ${rate.toLocaleString("en-US")} msgs/s, ${o.conns} conns, ${o.size} B framed ECHO (medians of ${o.rounds} rounds)\n`);
    lines.push("| server | p50 µs | p90 µs | p99 µs | p99.9 µs | max µs | CPU µs/msg | p50 / C | p99 / C | CPU / C | failed |");
    lines.push("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for (const server of o.servers) {
      const ok = runs.filter((r) => r.server === server && r.rate === rate && r.ok);
      const failed = runs.filter((r) => r.server === server && r.rate === rate && !r.ok);
      const med = (k: keyof Run) => median(ok.map((r) => r[k] as number));
      const ratio = (k: keyof Run) => {
        const xs: number[] = [];
        for (const r of ok) {
          const c = runs.find((x) => x.server === "c-epoll" && x.rate === rate && x.round === r.round && x.ok);
          if (c) xs.push((r[k] as number) / (c[k] as number));
        }
        return median(xs);
      };
      lines.push(
        `| ${server} | ${f1(med("p50"))} | ${f1(med("p90"))} | ${f1(med("p99"))} | ${f1(med("p999"))} | ${f1(med("max"))} | ` +
          `${f2(med("cpuUsPerMsg"))} | ${f2(ratio("p50"))} | ${f2(ratio("p99"))} | ${f2(ratio("cpuUsPerMsg"))} | ` +
          `${failed.length ? `${failed.length}: ${failed[0]!.error}` : ""} |`,
      );
      if (server === "bunpoll" && (rate === 20000 || rate === 40000) && o.servers.includes("c-epoll")) {
        const p99 = ratio("p99"), p50 = ratio("p50"), cpu = ratio("cpuUsPerMsg");
        const v = (x: number, lim: number) => `${f2(x)} (<= ${lim}: ${x <= lim ? "met" : "missed"})`;
        targets.push(`| ${rate.toLocaleString("en-US")}/s | ${v(p99, 1.2)} | ${v(p50, 1.0)} | ${v(cpu, 1.5)} | ${ok.length} |`);
      }
    }
  }
  if (targets.length > 0) {
    lines.push("\n### Targets (issue 15): bunpoll (default flags) / c-epoll, median of per-round ratios\n");
    lines.push("| rate | p99 | p50 | CPU/msg | rounds |", "|---|---|---|---|---:|", ...targets);
    if (o.rounds < 5) lines.push("\n(fewer than 5 rounds: a first look, not a verdict)");
  }
  const loads = runs.map((r) => Number(r.loadavgBefore?.split(" ")[0])).filter(Number.isFinite);
  lines.push(`\nload average (1 min) at the start of each run: min ${Math.min(...loads)}, median ${median(loads)}, max ${Math.max(...loads)}`);
  const text = lines.join("\n");
  process.stdout.write(text + "\n");
  const dir = `${host.root}bench/results`;
  mkdirSync(dir, { recursive: true });
  const file = `${dir}/openloop-framed-${stamp}.json`;
  const command = `bun run bench/run.ts ${argv.join(" ")}`;
  writeFileSync(file, JSON.stringify({ scenario: "openloop", protocol: "framed", params: o, command, date: started.toISOString(), bun: Bun.version, runs }, null, 2) + "\n");
  writeFileSync(`${dir}/latest.md`, `# bunpoll open-loop results\n\nCommand: \`${command}\`\n\nDate: ${started.toISOString()}\n${text}\n`);
  process.stderr.write(`wrote ${file} (${((Date.now() - started.getTime()) / 1000).toFixed(0)} s)\n`);
  return 0;
}

async function runOne(gen: string, host: OpenLoopHost, server: string, rate: number, round: number, o: ReturnType<typeof parse>): Promise<Run> {
  const base: Run = { server, rate, round, ok: false };
  const s = await host.start(server);
  if (typeof s === "string") return { ...base, error: s };
  try {
    if (o.rt) Bun.spawnSync(["chrt", "-a", "-f", "-p", "10", `${s.pid}`]);
    const argv = [gen, "--port", `${s.port}`, "--rate", `${rate}`, "--conns", `${o.conns}`, "--size", `${o.size}`,
      "--duration", `${o.duration}`, "--warmup", `${o.warmup}`, "--server-pid", `${s.pid}`, "--cpu", "1"];
    if (o.sleep) argv.push("--sleep");
    if (o.rt) argv.push("--rt");
    const p = Bun.spawn(argv, { stdout: "pipe", stderr: "pipe" });
    const timeout = setTimeout(() => p.kill("SIGTERM"), (o.warmup + o.duration + 15) * 1000);
    const [out, err] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
    clearTimeout(timeout);
    const last = out.trim().split("\n").pop() ?? "";
    let j: Record<string, unknown>;
    try {
      j = JSON.parse(last);
    } catch {
      return { ...base, error: `loadgen: ${(err || out).trim().slice(0, 200)}` };
    }
    const gone = s.gone();
    const r: Run = {
      ...base,
      ok: gone === null && j.lost === 0 && j.closedConns === 0 && j.protocolErrors === 0,
      p50: j.p50 as number, p90: j.p90 as number, p99: j.p99 as number, p999: j.p999 as number, max: j.max as number,
      cpuUsPerMsg: j.cpuUsPerMsg as number, lost: j.lost as number, closedConns: j.closedConns as number,
      maxSendLagUs: j.maxSendLagUs as number, loadavgBefore: j.loadavgBefore as string, loadavgAfter: j.loadavgAfter as string,
    };
    if (!r.ok) r.error = gone ?? `lost ${j.lost}, closed ${j.closedConns}, protocol errors ${j.protocolErrors}`;
    const se = s.stderr().trim();
    if (se) r.serverStderr = se.slice(-2000);
    return r;
  } finally {
    await s.stop();
  }
}

/** The machine's load average now (for the record). */
export function loadAverage(): string {
  try {
    return readFileSync("/proc/loadavg", "latin1").trim();
  } catch {
    return "";
  }
}
