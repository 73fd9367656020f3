#!/usr/bin/env bun
// The external stress suite: the real server as a child process, load generators as
// separate client processes, observation through /proc and the server's STATS.
//
//   bun run test/stress/run.ts              # full suite (npm run test:stress)
//   bun run test/stress/run.ts --short      # the CI version, well under 3 minutes
//   bun run test/stress/run.ts --only churn,shutdown
//   bun run test/stress/run.ts --list
//
// Prints one PASS/FAIL line per scenario with its figures, then "N passed, M failed";
// exits 1 on any failure. Writes the figures to test/stress/results.md.

import { cpus, loadavg } from "node:os";
import { resolve } from "node:path";
import { killAllClients } from "./lib/clients.ts";
import { writeResults, type ScenarioRecord } from "./lib/report.ts";
import { Outcome, type Scenario } from "./lib/scenario.ts";
import { killAllServers } from "./lib/server.ts";
import { churn } from "./churn.ts";
import { fdExhaustion, fdExhaustionEmfile } from "./fd-exhaustion.ts";
import { garbage } from "./garbage.ts";
import { shutdown } from "./shutdown.ts";
import { slowReaders } from "./slow-readers.ts";
import { slowloris } from "./slowloris.ts";
import { soak } from "./soak.ts";

const SCENARIOS: Scenario[] = [slowloris, slowReaders, garbage, churn, shutdown, fdExhaustion, fdExhaustionEmfile, soak];

/** Per-scenario watchdogs (each scenario's own waits are bounded well below these). */
const SHORT_LIMIT_MS = 120_000;
const FULL_LIMIT_MS = 600_000;

const USAGE = `usage: bun run test/stress/run.ts [--short] [--only NAME[,NAME...]] [--list] [--verbose] [--no-write]

  --short      the CI version: fewer connections, shorter runs (well under 3 minutes)
  --only NAME  run only these scenarios (repeatable or comma-separated)
  --list       list the scenarios and exit
  --verbose    print diagnostics (latency timelines, client details)
  --no-write   do not update test/stress/results.md

scenarios: ${SCENARIOS.map((s) => s.name).join(", ")}`;

function parse(argv: string[]): { short: boolean; only: string[]; list: boolean; write: boolean; verbose: boolean } {
  const o = { short: false, only: [] as string[], list: false, write: true, verbose: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--short") o.short = true;
    else if (a === "--list") o.list = true;
    else if (a === "--no-write") o.write = false;
    else if (a === "--verbose") o.verbose = true;
    else if (a === "--only" || a.startsWith("--only=")) {
      const v = a === "--only" ? argv[++i] : a.slice(7);
      if (!v) usage("--only needs a scenario name");
      o.only.push(...v.split(",").filter(Boolean));
    } else if (a === "--help" || a === "-h") {
      console.log(USAGE);
      process.exit(0);
    } else usage(`unknown argument ${a}`);
  }
  for (const n of o.only) if (!SCENARIOS.some((s) => s.name === n)) usage(`unknown scenario "${n}"`);
  return o;
}

function usage(msg: string): never {
  console.error(`stress: ${msg}\n\n${USAGE}`);
  process.exit(2);
}

function cleanup(): void {
  killAllClients();
  killAllServers();
}

async function main(): Promise<number> {
  const opts = parse(process.argv.slice(2));
  if (opts.list) {
    for (const s of SCENARIOS) console.log(`${s.name.padEnd(22)}${s.title}`);
    return 0;
  }
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    process.on(sig, () => {
      cleanup();
      process.exit(130);
    });
  }
  const selected = opts.only.length > 0 ? SCENARIOS.filter((s) => opts.only.includes(s.name)) : SCENARIOS;
  const mode = opts.short ? "short" : "full";
  const machine = `${cpus().length} cores, load ${loadavg().map((x) => x.toFixed(2)).join(" ")}, bun ${Bun.version}`;
  console.log(`bunpoll stress suite (${mode}): ${selected.map((s) => s.name).join(", ")} [${machine}]`);
  const records: ScenarioRecord[] = [];
  for (const s of selected) {
    const out = new Outcome();
    const t0 = performance.now();
    const log = (line: string) => console.log(`  .. ${line}`);
    try {
      const verbose = opts.verbose ? log : () => {};
      // A watchdog on top of the scenario's own deadlines: the suite always stops by itself.
      const limitMs = opts.short ? SHORT_LIMIT_MS : (s.limitMs ?? FULL_LIMIT_MS);
      let timer: ReturnType<typeof setTimeout> | undefined;
      const watchdog = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`scenario did not finish within ${limitMs / 1000} s`)), limitMs);
      });
      try {
        await Promise.race([s.run({ short: opts.short, log, verbose }, out), watchdog]);
      } finally {
        clearTimeout(timer);
      }
    } catch (e) {
      out.fail(`aborted: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    } finally {
      cleanup();
    }
    const seconds = (performance.now() - t0) / 1000;
    records.push({ name: s.name, passed: out.passed, seconds, figures: out.figures, failures: out.otherFailures });
    const figs = out.figures.map((f) => `${f.label}: ${f.value}${f.ok === false ? " [MISSED " + f.target + "]" : ""}`).join("; ");
    console.log(`${out.passed ? "PASS" : "FAIL"} ${s.name} (${seconds.toFixed(1)} s): ${figs}`);
    for (const f of out.failures) console.log(`    failure: ${f}`);
  }
  if (opts.write) {
    const path = resolve(import.meta.dir, "results.md");
    const at = new Date().toISOString().replace(/\.\d+Z$/, "Z");
    writeResults(path, mode, { at, machine, scenarios: records }, SCENARIOS.map((s) => s.name));
  }
  const passed = records.filter((r) => r.passed).length;
  const failed = records.length - passed;
  console.log(`${passed} passed, ${failed} failed`);
  return failed === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.error(e);
    cleanup();
    process.exit(1);
  },
);
