// What a scenario is, and the bits they share: figures (measured values, with the target
// they are held to), checks that record a failure instead of throwing (so every figure is
// still measured and printed), and the latency probe.

import { spawnClient, type ClientProcess } from "./clients.ts";
import { startServer, type ServerProcess } from "./server.ts";
import type { ProbeResult } from "../clients/probe.ts";
import { fmtMs, summarize, type Summary } from "./stats.ts";
import type { JsonStats } from "./wire.ts";

export interface Figure {
  label: string;
  value: string;
  /** The acceptance target, when the figure is held to one ("<= 2x", "0"). */
  target?: string;
  /** Whether the target was met (undefined: informational figure). */
  ok?: boolean;
}

export interface RunContext {
  short: boolean;
  /** Progress lines (always printed). */
  log: (line: string) => void;
  /** Diagnostics printed with --verbose only. */
  verbose: (line: string) => void;
}

export interface Scenario {
  name: string;
  /** One line: what it does, for --list and the README. */
  title: string;
  /** The full run's watchdog for a scenario that needs longer than the default (ms). */
  limitMs?: number;
  run(ctx: RunContext, out: Outcome): Promise<void>;
}

/** Collects the figures and failures of one scenario run. */
export class Outcome {
  readonly figures: Figure[] = [];
  /** Every failure, missed figure targets included. */
  readonly failures: string[] = [];
  /** Failures that are not a missed figure target (a broken expectation, an abort). */
  readonly otherFailures: string[] = [];

  /** An informational figure. */
  note(label: string, value: string | number): void {
    this.figures.push({ label, value: String(value) });
  }

  /** A figure held to a target: records a failure when `ok` is false. */
  measure(label: string, value: string | number, target: string, ok: boolean): boolean {
    this.figures.push({ label, value: String(value), target, ok });
    if (!ok) this.failures.push(`${label} = ${value}, target ${target}`);
    return ok;
  }

  /** A condition that must hold; `what` says what was expected and what was seen. */
  expect(ok: boolean, what: string): boolean {
    if (!ok) this.fail(what);
    return ok;
  }

  /** `actual === expected`, with a figure. */
  equal(label: string, actual: number, expected: number): boolean {
    return this.measure(label, actual, `= ${expected}`, actual === expected);
  }

  fail(what: string): void {
    this.failures.push(what);
    this.otherFailures.push(what);
  }

  get passed(): boolean {
    return this.failures.length === 0;
  }
}

/** Runs the latency probe for `ms` against `port` and returns its result. */
export async function probeFor(port: number, ms: number, intervalMs = 1): Promise<ProbeResult> {
  const p = spawnClient<ProbeResult>("probe", { port, durationMs: ms, intervalMs }, { nice: 0 });
  return p.done(ms + 60_000);
}

/** Starts the probe; stop it with `stopProbe`. Resolves once it is warmed up and measuring. */
export async function startProbe(port: number, maxMs: number, intervalMs = 1, protocol: "framed" | "echo" = "framed"): Promise<ClientProcess<ProbeResult>> {
  const p = spawnClient<ProbeResult>("probe", { port, protocol, durationMs: maxMs, intervalMs }, { nice: 0 });
  await p.event("ready", 30_000);
  return p;
}

export async function stopProbe(p: ClientProcess<ProbeResult>): Promise<ProbeResult> {
  p.send("stop");
  return p.done(30_000);
}

/** The probe's per-slice p99/max, for --verbose. */
export function timeline(r: ProbeResult): string {
  return r.timeline.map((x) => `${x.atMs / 1000}s ${fmtMs(x.p99)}/${fmtMs(x.max)}`).join(", ");
}

/** The probe's RTT summary (ms) over pings sent in [fromEpochMs, toEpochMs). */
export function probeWindow(r: ProbeResult, fromEpochMs: number, toEpochMs: number): Summary {
  const xs: number[] = [];
  for (let i = 0; i < r.rttUs.length; i++) {
    const t = r.startEpochMs + r.sentAtMs[i]!;
    if (t >= fromEpochMs && t < toEpochMs) xs.push(r.rttUs[i]! / 1000);
  }
  return summarize(xs);
}

export function describeProbe(r: ProbeResult): string {
  return describeSummary(r.rtt);
}

export function describeSummary(s: Summary): string {
  return `p50 ${fmtMs(s.p50)}, p99 ${fmtMs(s.p99)}, max ${fmtMs(s.max)} (${s.count} pings)`;
}

/**
 * Ping latency while a load runs, against a control. This machine is a shared 2-core VM:
 * an idle server's p99 alone varies 2-3x from one run to the next (scheduler and
 * hypervisor stalls), so a p99 measured before the load is not a stable reference. The
 * control is an identical, idle server started with the same flags, pinged by an
 * identical probe at the same time: whatever the machine does to one probe it does to the
 * other, and the ratio isolates what the load does to the server under test.
 */
export class LatencyWatch {
  private constructor(
    private readonly twin: ServerProcess,
    private readonly loaded: ClientProcess<ProbeResult>,
    private readonly control: ClientProcess<ProbeResult>,
  ) {}

  /** Starts the twin server and both probes; resolves once both probes are measuring. */
  static async start(port: number, serverArgs: string[], maxMs: number): Promise<LatencyWatch> {
    const twin = await startServer({ listen: ["framed"], args: serverArgs });
    try {
      const [loaded, control] = await Promise.all([startProbe(port, maxMs), startProbe(twin.port("framed"), maxMs)]);
      return new LatencyWatch(twin, loaded, control);
    } catch (e) {
      await twin.stop("SIGKILL");
      throw e;
    }
  }

  async stop(): Promise<{ loaded: ProbeResult; control: ProbeResult }> {
    try {
      const [loaded, control] = await Promise.all([stopProbe(this.loaded), stopProbe(this.control)]);
      return { loaded, control };
    } finally {
      await this.twin.stop("SIGKILL");
    }
  }
}

/**
 * The acceptance figure "ping p99 under load <= 2x idle": `loaded` is the probe of the
 * server under load, `control` the simultaneous probe of the idle twin, `before` the
 * probe of the same server before the load (informational). Also fails on probe errors
 * or a probe the server disconnected.
 */
export function compareLatency(
  out: Outcome,
  r: { loaded: ProbeResult; control: ProbeResult },
  before: ProbeResult,
  what: string,
  window?: { fromEpochMs: number; toEpochMs: number },
  maxRatio = 2,
  /**
   * False in --short runs (CI): the ratio is reported, not asserted. A p99 of a few hundred
   * pings on a shared 2-core machine swings by 2x between identical runs (the idle twin's own
   * p99 ranges 0.5-2 ms), and a timing assertion that fails one run in seven is a flaky CI,
   * not a check. The full run (`npm run test:stress`) asserts it.
   */
  enforce = true,
): void {
  const loaded = window ? probeWindow(r.loaded, window.fromEpochMs, window.toEpochMs) : r.loaded.rtt;
  const control = window ? probeWindow(r.control, window.fromEpochMs, window.toEpochMs) : r.control.rtt;
  const ratio = loaded.p99 / control.p99;
  out.note("ping, idle server before the load", describeProbe(before));
  out.note("ping, idle twin server during the load", describeSummary(control));
  out.note(`ping under ${what}`, describeSummary(loaded));
  const figure = `${ratio.toFixed(2)}x (${fmtMs(loaded.p99)} / ${fmtMs(control.p99)})`;
  if (enforce) out.measure(`ping p99 under ${what} / idle`, figure, `<= ${maxRatio}x`, ratio <= maxRatio);
  else out.note(`ping p99 under ${what} / idle`, `${figure} (target <= ${maxRatio}x: asserted by the full run only)`);
  for (const [name, p] of [[`probe under ${what}`, r.loaded], ["control probe", r.control], ["idle probe", before]] as const) {
    out.expect(p.errors === 0 && !p.disconnected, `${name}: ${p.errors} errors${p.disconnected ? ", disconnected" : ""} (${p.firstError})`);
  }
}

/** Counter deltas between two json stats snapshots. */
export function delta(a: JsonStats, b: JsonStats) {
  const reason = (k: string) => (b.close_reasons[k] ?? 0) - (a.close_reasons[k] ?? 0);
  const error = (k: string) => (b.errors[k] ?? 0) - (a.errors[k] ?? 0);
  return {
    reason,
    error,
    connectionsTotal: b.connections_total - a.connections_total,
    slowConsumersDropped: b.backpressure.slow_consumers_dropped - a.backpressure.slow_consumers_dropped,
    pausedReads: b.backpressure.paused_reads - a.backpressure.paused_reads,
    highWaterCrossings: b.backpressure.high_water_crossings - a.backpressure.high_water_crossings,
    messagesIn: b.total_messages - a.total_messages,
    errorsTotal: b.errors_total - a.errors_total,
  };
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls `cond` until true or `ms` passed; returns whether it became true. */
export async function until(cond: () => boolean | Promise<boolean>, ms: number, everyMs = 50): Promise<boolean> {
  const deadline = performance.now() + ms;
  for (;;) {
    if (await cond()) return true;
    if (performance.now() > deadline) return false;
    await sleep(everyMs);
  }
}
