// churn: 100,000 connect/close cycles (a third reset mid-frame with RST). Afterwards the
// server's fd count must be back at its baseline and its RSS within 10% of what it was
// after a warm-up round of the same churn.
//
// RSS of a garbage-collected server is noisy: across repeated rounds of identical churn
// it wanders by +-8% with no trend (it depends on where the GC happened to be when the
// load stopped). So both sides are medians: the warm-up and the churn run in rounds of
// 2,000 cycles, RSS is read after each round once the server's fds are back at baseline,
// and the figure compares the median of the last ten churn readings (all of them in the
// short run) with the median of the second half of the warm-up readings (the first rounds
// still climb as the JIT compiles and the heap sizes itself). A leak shows up as a trend across
// rounds, which the medians keep.

import { spawnClient, type ClientProcess } from "./lib/clients.ts";
import { jsonStats } from "./lib/net.ts";
import { MiB, ProcSampler } from "./lib/proc.ts";
import { delta, sleep, until, type Outcome, type RunContext, type Scenario } from "./lib/scenario.ts";
import { startServer, type ServerProcess } from "./lib/server.ts";
import { fmtInt, fmtMiB } from "./lib/stats.ts";
import type { ChurnConfig, ChurnResult } from "./clients/churn.ts";

/** 127.0.0.2 .. 127.0.0.17: sixteen source addresses for the client side of the churn. */
const SOURCES = Array.from({ length: 16 }, (_, i) => `127.0.0.${i + 2}`);

/** Client processes share the cycles: one Bun process tops out at ~3k cycles/s. */
const PROCESSES = 2;

/** Idle time after the fds settle, before RSS is read. */
const SETTLE_MS = 200;

/** Cycles per round: one fd and RSS reading per round. */
const ROUND = 2_000;

/** How many of the last churn readings make the "after" median. */
const LAST_READINGS = 10;

interface Readings {
  rss: number[];
  /** Rounds after which the fd count did not come back to the baseline within 10 s. */
  fdMisses: number;
  lastFds: number;
  results: ChurnResult[];
  seconds: number;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 === 1 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

/** Runs `rounds` x `perRound` cycles over PROCESSES clients, reading fds and RSS after each round. */
async function churnRounds(server: ServerProcess, port: number, rounds: number, perRound: number, fdBase: number, sourceOffset: number): Promise<Readings> {
  const t0 = performance.now();
  const per = Math.ceil(perRound / PROCESSES);
  const clients: ClientProcess<ChurnResult>[] = Array.from({ length: PROCESSES }, (_, k) =>
    spawnClient<ChurnResult>("churn", {
      port,
      cycles: Math.min(per, perRound - k * per),
      rounds,
      concurrency: 32,
      sources: SOURCES.filter((_, i) => (i + sourceOffset) % PROCESSES === k),
      maxMs: 300_000,
    } satisfies ChurnConfig),
  );
  const readings: Readings = { rss: [], fdMisses: 0, lastFds: -1, results: [], seconds: 0 };
  const read = async () => {
    if (!(await until(() => server.fds() === fdBase, 10_000, 50))) readings.fdMisses++;
    readings.lastFds = server.fds();
    await sleep(SETTLE_MS);
    readings.rss.push(server.rss());
  };
  for (let round = 1; round < rounds; round++) {
    await Promise.all(clients.map((c) => c.event(`round-${round}`, 300_000)));
    await read();
    for (const c of clients) c.send("next");
  }
  readings.results = await Promise.all(clients.map((c) => c.done(300_000)));
  readings.seconds = (performance.now() - t0) / 1000;
  await read();
  return readings;
}

export const churn: Scenario = {
  name: "churn",
  title: "100k connect/close cycles (10k short), a third reset mid-frame; fd count back at baseline, RSS within 10%",
  async run(ctx: RunContext, out: Outcome) {
    const cycles = ctx.short ? 10_000 : 100_000;
    const warmCycles = ctx.short ? 16_000 : 20_000;
    const rounds = cycles / ROUND;
    const server = await startServer({ listen: ["framed", "json"] });
    try {
      const framed = server.port("framed");
      const json = server.port("json");
      const fdBase = server.fds();
      const warm = await churnRounds(server, framed, warmCycles / ROUND, ROUND, fdBase, 0);
      out.expect(warm.fdMisses === 0, `after ${warm.fdMisses} warm-up rounds the server's fds did not come back to ${fdBase}`);
      const before = await jsonStats(json);
      await until(() => server.fds() === fdBase, 5000, 50); // our stats connection is closed again

      const sampler = new ProcSampler(server.pid, 250);
      const main = await churnRounds(server, framed, rounds, ROUND, fdBase, 1);
      sampler.stop();
      const after = await jsonStats(json);
      const d = delta(before, after);

      const done = { ping: 0, quiet: 0, reset: 0 };
      let failures = 0;
      let firstFailure = "";
      let ran = 0;
      for (const r of main.results) {
        ran += r.cycles;
        done.ping += r.done.ping;
        done.quiet += r.done.quiet;
        done.reset += r.done.reset;
        failures += r.failures;
        if (!firstFailure && r.firstFailure) firstFailure = r.firstFailure;
      }
      const total = done.ping + done.quiet + done.reset;
      out.measure(
        "cycles",
        `${fmtInt(total)}/${fmtInt(cycles)} in ${main.seconds.toFixed(1)} s (${fmtInt(total / main.seconds)}/s): ${fmtInt(done.ping)} ping, ${fmtInt(done.quiet)} quiet, ${fmtInt(done.reset)} RST mid-frame`,
        `= ${fmtInt(cycles)}`,
        total === cycles && ran === cycles,
      );
      out.equal("client-side failures", failures, 0);
      if (firstFailure) out.note("first failure", firstFailure);
      // +1: the get_stats connection that took the `before` snapshot.
      out.equal("STATS connections_total delta", d.connectionsTotal, cycles + 1);
      out.note("STATS close reasons", `end ${d.reason("end")}, reset ${d.reason("reset")}, local ${d.reason("local")}, error ${d.reason("error")}, frame-timeout ${d.reason("frame-timeout")}`);
      out.equal("STATS close_reasons.error", d.reason("error"), 0);
      out.measure(
        "server fds after",
        `${main.lastFds} (baseline ${fdBase}; max ${sampler.maxFds} during; ${main.fdMisses} of ${rounds} rounds did not return to baseline)`,
        `= ${fdBase}`,
        main.fdMisses === 0 && main.lastFds === fdBase,
      );
      // What the warm-up reached: its second half. Its first rounds are still climbing (the JIT
      // compiling, the heap growing to size), and a baseline that includes them reads as growth.
      const warmSettled = warm.rss.slice(Math.floor(warm.rss.length / 2));
      const rssWarm = median(warmSettled);
      const rssAfter = median(main.rss.slice(-LAST_READINGS));
      const ratio = rssAfter / rssWarm;
      out.measure(
        "server RSS after / after warm-up",
        `${fmtMiB(rssAfter)} / ${fmtMiB(rssWarm)} = ${ratio >= 1 ? "+" : ""}${((ratio - 1) * 100).toFixed(1)}% (medians of ${Math.min(LAST_READINGS, main.rss.length)} and the last ${warmSettled.length} warm-up readings; max ${fmtMiB(sampler.maxRss)} during)`,
        "within 10%",
        Math.abs(ratio - 1) <= 0.1,
      );
      const series = (xs: number[]) => xs.map((x) => (x / MiB).toFixed(1)).join(" ");
      out.note("RSS MiB after each round", `warm-up ${series(warm.rss)}; churn ${series(main.rss)}`);
      out.measure("server RSS max", fmtMiB(sampler.maxRss), "< 256 MiB", sampler.maxRss < 256 * MiB);
      out.expect(server.alive(), `server died: exit ${server.exitCode}`);
    } finally {
      const code = await server.stop("SIGTERM");
      out.expect(code === 0, `server exit code on SIGTERM: ${code}`);
    }
  },
};
