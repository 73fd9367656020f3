// Reading another process's CPU time, RSS and fd count from /proc (Linux only).
// Used by the load generator (CPU at the edges of its measured window, so the window is
// exactly the loadgen's own) and by the runner (RSS, fd counts for the idle scenario).

import { readFileSync, readdirSync } from "node:fs";

let clkTck = 0;

/** Clock ticks per second for /proc/PID/stat times (getconf CLK_TCK; 100 on Linux x86). */
export function clockTicksPerSecond(): number {
  if (clkTck > 0) return clkTck;
  try {
    const r = Bun.spawnSync(["getconf", "CLK_TCK"]);
    const n = Number.parseInt(r.stdout.toString().trim(), 10);
    clkTck = Number.isFinite(n) && n > 0 ? n : 100;
  } catch {
    clkTck = 100;
  }
  return clkTck;
}

export interface CpuTimes {
  /** utime: user-mode CPU time, µs */
  user: number;
  /** stime: kernel-mode CPU time, µs (on loopback this includes much of the TCP stack) */
  sys: number;
}

/**
 * utime and stime of a whole process (all threads) from /proc/PID/stat fields 14 and 15,
 * converted from clock ticks to µs. The comm field (2) may contain spaces and parentheses,
 * so fields are counted from the last ')'. Returns null if the process is gone.
 */
export function cpuTimes(pid: number): CpuTimes | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, "latin1");
  } catch {
    return null;
  }
  const rest = text.slice(text.lastIndexOf(")") + 2).split(" ");
  // rest[0] is field 3 (state), so field N is rest[N - 3].
  const tick = 1e6 / clockTicksPerSecond();
  return { user: Number(rest[14 - 3]) * tick, sys: Number(rest[15 - 3]) * tick };
}

/**
 * CPU time of a whole process in ns, exact: the scheduler's sum_exec_runtime of each thread
 * (/proc/PID/task/TID/schedstat, first field), summed. utime/stime (cpuTimes) are sampled
 * at the clock tick (100 Hz): over a 5 s window of a server at 80% that is ~400 samples,
 * +-5% of noise on CPU per message from sampling alone. Time of threads that exit inside
 * the window is lost (the servers' threads live as long as they do). Null if unavailable.
 */
export function cpuNs(pid: number): number | null {
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return null;
  }
  let total = 0;
  for (const tid of tids) {
    try {
      const text = readFileSync(`/proc/${pid}/task/${tid}/schedstat`, "latin1");
      const ns = Number(text.slice(0, text.indexOf(" ")));
      if (!Number.isFinite(ns)) return null;
      total += ns;
    } catch {
      // the thread exited between readdir and read: its time is lost either way
    }
  }
  return total;
}

/** A "VmXXX:  1234 kB" field of /proc/PID/status in KiB, or -1. */
export function statusKiB(pid: number, field: "VmRSS" | "VmHWM" | "RssAnon"): number {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/status`, "latin1");
  } catch {
    return -1;
  }
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(text);
  return m ? Number(m[1]) : -1;
}

/** Number of open file descriptors of a process, or -1. */
export function fdCount(pid: number): number {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return -1;
  }
}

export interface MachineCpu {
  /** busy time summed over all CPUs (user+nice+system+irq+softirq), µs */
  busy: number;
  /** time the hypervisor ran something else on our vCPUs, µs */
  steal: number;
}

/**
 * Machine-wide CPU counters from the "cpu" line of /proc/stat. Busy time minus the CPU time
 * of the processes we know (server, loadgen) tells how much else ran during a measurement:
 * a benchmark round that shared the machine with a build shows up here.
 */
export function machineCpu(): MachineCpu | null {
  let text: string;
  try {
    text = readFileSync("/proc/stat", "latin1");
  } catch {
    return null;
  }
  const line = text.slice(0, text.indexOf("\n")).split(/\s+/);
  // cpu user nice system idle iowait irq softirq steal guest guest_nice
  const f = (i: number): number => Number(line[i] ?? 0);
  const tick = 1e6 / clockTicksPerSecond();
  return { busy: (f(1) + f(2) + f(3) + f(6) + f(7)) * tick, steal: f(8) * tick };
}
