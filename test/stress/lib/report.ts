// results.md: one markdown table per mode (full, short), regenerated after every run. The
// figures of each mode are also kept as JSON in an HTML comment at the end of the file, so
// that a `--only` run updates its own rows and keeps the rest.

import { existsSync, readFileSync, writeFileSync } from "node:fs";
import type { Figure } from "./scenario.ts";

export interface ScenarioRecord {
  name: string;
  passed: boolean;
  seconds: number;
  figures: Figure[];
  /** Failures other than missed figure targets (those are marked on the figure). */
  failures: string[];
}

export interface ModeRecord {
  /** ISO time of the run that last updated this mode. */
  at: string;
  machine: string;
  scenarios: ScenarioRecord[];
}

type Data = Partial<Record<"full" | "short", ModeRecord>>;

const DATA_RE = /<!-- stress-data (.*) -->/;

function load(path: string): Data {
  if (!existsSync(path)) return {};
  const m = DATA_RE.exec(readFileSync(path, "utf8"));
  if (!m) return {};
  try {
    return JSON.parse(m[1]!) as Data;
  } catch {
    return {};
  }
}

function cell(s: string): string {
  return s.replace(/\|/g, "\\|").replace(/\n/g, " ");
}

/** One row per scenario: the figures held to a target. */
function summary(mode: ModeRecord): string {
  const rows = ["| scenario | result | acceptance figures (target) |", "|---|---|---|"];
  for (const s of mode.scenarios) {
    const figs = s.figures
      .filter((f) => f.target !== undefined)
      .map((f) => `${f.ok === false ? "**" : ""}${cell(f.label)}: ${cell(f.value)} (${cell(f.target!)})${f.ok === false ? "**" : ""}`);
    for (const f of s.failures) figs.push(`**${cell(f)}**`);
    rows.push(`| ${s.name} | ${s.passed ? "PASS" : "**FAIL**"} | ${figs.join("<br>")} |`);
  }
  return rows.join("\n");
}

function table(mode: ModeRecord): string {
  const rows = ["| scenario | result | figure | measured | target |", "|---|---|---|---|---|"];
  for (const s of mode.scenarios) {
    const result = s.passed ? "PASS" : "**FAIL**";
    s.figures.forEach((f, i) => {
      const target = f.target === undefined ? "" : `${f.target}${f.ok === false ? " **missed**" : ""}`;
      rows.push(`| ${i === 0 ? `${s.name} (${s.seconds.toFixed(0)} s)` : ""} | ${i === 0 ? result : ""} | ${cell(f.label)} | ${cell(f.value)} | ${cell(target)} |`);
    });
    if (s.figures.length === 0) rows.push(`| ${s.name} (${s.seconds.toFixed(0)} s) | ${result} | | | |`);
    for (const f of s.failures) rows.push(`| | | failure | ${cell(f)} | |`);
  }
  return rows.join("\n");
}

/** Merges this run's scenarios into `path` and rewrites it. */
export function writeResults(path: string, modeName: "full" | "short", run: ModeRecord, order: readonly string[]): void {
  const data = load(path);
  const prev = data[modeName];
  if (prev) {
    // Keep scenarios this run did not touch (a --only run), in their old order.
    const names = new Set(run.scenarios.map((s) => s.name));
    const kept = prev.scenarios.filter((s) => !names.has(s.name));
    run = { ...run, scenarios: [...run.scenarios, ...kept] };
  }
  data[modeName] = run;
  const rank = (n: string) => (order.indexOf(n) < 0 ? 99 : order.indexOf(n));
  for (const m of Object.values(data)) m.scenarios.sort((a, b) => rank(a.name) - rank(b.name));
  const parts = [
    "# Stress suite results",
    "",
    "Written by `bun run test/stress/run.ts` (see README.md in this folder). Each run rewrites",
    "the table of its mode; `--only` runs update their own rows.",
  ];
  for (const m of ["full", "short"] as const) {
    const rec = data[m];
    if (!rec) continue;
    const passed = rec.scenarios.filter((s) => s.passed).length;
    parts.push(
      "",
      `## ${m === "full" ? "Full run (`npm run test:stress`)" : "Short run (`npm run test:stress -- --short`, CI)"}`,
      "",
      `${rec.at}, ${rec.machine}: ${passed} passed, ${rec.scenarios.length - passed} failed.`,
      "",
      summary(rec),
      "",
      "<details><summary>All figures</summary>",
      "",
      table(rec),
      "",
      "</details>",
    );
  }
  parts.push("", `<!-- stress-data ${JSON.stringify(data)} -->`, "");
  writeFileSync(path, parts.join("\n"));
}
