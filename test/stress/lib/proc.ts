// What the suite sees of the server from outside: /proc/PID/status (VmRSS), /proc/PID/fd
// (fd count) and /proc/PID/stat (CPU time). Each returns -1 once the process is gone.

import { readdirSync, readFileSync } from "node:fs";

let ticksPerSecond = 0;

/** Clock ticks per second of /proc/PID/stat times (getconf CLK_TCK). */
export function clockTicks(): number {
  if (ticksPerSecond > 0) return ticksPerSecond;
  const r = Bun.spawnSync(["getconf", "CLK_TCK"]);
  const n = Number.parseInt(r.stdout.toString().trim(), 10);
  ticksPerSecond = Number.isFinite(n) && n > 0 ? n : 100;
  return ticksPerSecond;
}

/** Resident set size in bytes. */
export function rssBytes(pid: number): number {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, "latin1"));
    return m ? Number(m[1]) * 1024 : -1;
  } catch {
    return -1;
  }
}

export function fdCount(pid: number): number {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return -1;
  }
}

/** utime and stime of the whole process, in ms; null once it is gone. */
export function cpuTimes(pid: number): { user: number; sys: number } | null {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, "latin1");
    // Field 2 (comm) may hold spaces: count fields from the last ')'. rest[0] is field 3.
    const rest = text.slice(text.lastIndexOf(")") + 2).split(" ");
    const tick = 1000 / clockTicks();
    return { user: Number(rest[11]) * tick, sys: Number(rest[12]) * tick };
  } catch {
    return null;
  }
}

/** utime + stime of the whole process, in ms. */
export function cpuMs(pid: number): number {
  const t = cpuTimes(pid);
  return t === null ? -1 : t.user + t.sys;
}

export interface CpuUse {
  /** Percent of one core, user + system. */
  total: number;
  user: number;
  sys: number;
  /** CPU ms used in the window. */
  ms: number;
  wallMs: number;
}

/** CPU use of `pid` over `ms` of wall time (percent of one core); null if it exited. */
export async function cpuOver(pid: number, ms: number): Promise<CpuUse | null> {
  const c0 = cpuTimes(pid);
  const t0 = performance.now();
  await Bun.sleep(ms);
  const c1 = cpuTimes(pid);
  const wallMs = performance.now() - t0;
  if (c0 === null || c1 === null) return null;
  const user = c1.user - c0.user;
  const sys = c1.sys - c0.sys;
  return { total: ((user + sys) / wallMs) * 100, user: (user / wallMs) * 100, sys: (sys / wallMs) * 100, ms: user + sys, wallMs };
}

/** Samples RSS (and fd count) every `everyMs` until stopped; keeps the maxima. */
export class ProcSampler {
  maxRss = 0;
  maxFds = 0;
  samples = 0;
  /** (ms since start, RSS bytes) every sample, for --verbose timelines. */
  readonly series: { atMs: number; rss: number }[] = [];
  private readonly t0 = performance.now();
  private timer: ReturnType<typeof setInterval> | null;
  constructor(private readonly pid: number, everyMs = 100) {
    this.sample();
    this.timer = setInterval(() => this.sample(), everyMs);
  }
  sample(): void {
    const r = rssBytes(this.pid);
    const f = fdCount(this.pid);
    if (r > this.maxRss) this.maxRss = r;
    this.series.push({ atMs: performance.now() - this.t0, rss: r });
    if (f > this.maxFds) this.maxFds = f;
    this.samples++;
  }
  /** RSS in MiB at every `everyMs` step: "0.0s 43, 0.5s 120, ...". */
  timeline(everyMs = 500): string {
    const parts: string[] = [];
    let next = 0;
    for (const x of this.series) {
      if (x.atMs < next) continue;
      parts.push(`${(x.atMs / 1000).toFixed(1)}s ${Math.round(x.rss / MiB)}`);
      next = x.atMs + everyMs;
    }
    return parts.join(", ");
  }

  stop(): this {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    this.sample();
    return this;
  }
}

export const MiB = 1024 * 1024;
