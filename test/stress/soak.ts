// soak (full run only): 10 minutes of a fixed 40,000 ECHO frames/s (64 B) over 50
// connections from the C open-loop generator (bench/baselines/c-openloop.c, built with cc),
// against the server with its default flags. The server's RSS must stay flat (each later
// minute's median within 10% of the median of the warm-up minute's second half), no
// connection may drop and every request must be answered. The p99 of each minute (latency
// from each request's scheduled send time) is reported, not asserted: speed lives in bench/.

import { ensureCServer } from "../../bench/lib/servers.ts";
import { MiB } from "./lib/proc.ts";
import { sleep, type Outcome, type RunContext, type Scenario } from "./lib/scenario.ts";
import { ROOT, startServer } from "./lib/server.ts";
import { fmtMiB } from "./lib/stats.ts";

const RATE = 40_000;
const CONNS = 50;
const MINUTES = 10;
const RSS_EVERY_MS = 5000;

interface Minute {
  interval: number;
  count: number;
  p50: number;
  p99: number;
  p999: number;
  max: number;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 === 1 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

export const soak: Scenario = {
  name: "soak",
  title: `${MINUTES} min at ${RATE / 1000}k framed ECHO/s over ${CONNS} connections (full run only): RSS within 10% after a warm-up minute, no connection dropped; p99 per minute reported`,
  limitMs: (MINUTES + 3) * 60_000,
  async run(ctx: RunContext, out: Outcome) {
    if (ctx.short) {
      out.note("skipped", "full run only (10 minutes)");
      return;
    }
    const gen = ensureCServer(`${ROOT}/`, "c-openloop");
    if (!out.expect(gen !== null, "the C load generator bench/baselines/c-openloop.c could not be built (is cc installed?)")) return;
    const server = await startServer({ listen: ["framed"] });
    try {
      const port = server.port("framed");
      const p = Bun.spawn(
        [gen!, "--port", `${port}`, "--rate", `${RATE}`, "--conns", `${CONNS}`, "--size", "64", "--warmup", "0",
          "--duration", `${MINUTES * 60}`, "--interval", "60", "--server-pid", `${server.pid}`, "--cpu", "-1", "--sleep", "--drain", "5"],
        { stdout: "pipe", stderr: "pipe" },
      );
      const rss: { t: number; bytes: number }[] = [];
      const t0 = performance.now();
      let running = true;
      const exited = p.exited.then((c) => {
        running = false;
        return c;
      });
      const sampling = (async () => {
        while (running && server.alive()) {
          rss.push({ t: performance.now() - t0, bytes: server.rss() });
          await Promise.race([sleep(RSS_EVERY_MS), exited]);
        }
      })();
      const text = await new Response(p.stdout).text();
      const code = await exited;
      await sampling;
      const lines = text.trim().split("\n").filter((l) => l.startsWith("{"));
      const minutes: Minute[] = [];
      let summary: Record<string, unknown> | null = null;
      for (const l of lines) {
        const j = JSON.parse(l) as Record<string, unknown>;
        if (typeof j.interval === "number") {
          minutes.push(j as unknown as Minute);
          ctx.log(`minute ${j.interval}: ${j.count} replies, p50 ${j.p50} µs, p99 ${j.p99} µs, max ${j.max} µs`);
        } else summary = j;
      }
      if (!out.expect(summary !== null, `load generator printed no summary (exit ${code}): ${(await new Response(p.stderr).text()).slice(0, 300)}`)) return;
      const s = summary!;
      out.equal("connections closed by the server", s.closedConns as number, 0);
      out.equal("requests without a reply", s.lost as number, 0);
      out.equal("protocol errors", s.protocolErrors as number, 0);
      // notSent: requests due while the server was more than 8192 replies behind on a connection.
      out.measure("requests sent", `${s.sent} of ${RATE * MINUTES * 60} scheduled (${s.notSent} not sent: server too far behind)`, `= ${RATE * MINUTES * 60}`, s.sent === RATE * MINUTES * 60);
      out.note("p99 per minute (µs)", minutes.map((m) => m.p99).join(" "));
      out.note("p50 per minute (µs)", minutes.map((m) => m.p50).join(" "));
      out.note("whole run", `p50 ${s.p50} µs, p99 ${s.p99} µs, p99.9 ${s.p999} µs, max ${s.max} µs, server CPU ${s.cpuUsPerMsg} µs/msg, load ${s.loadavgBefore} -> ${s.loadavgAfter}`);
      // RSS: the warm-up minute's second half is the baseline (its first half still climbs as
      // the JIT compiles and the heap sizes itself); each later minute's median within 10%.
      const inMinute = (k: number) => rss.filter((r) => r.t >= k * 60_000 && r.t < (k + 1) * 60_000).map((r) => r.bytes);
      const base = median(rss.filter((r) => r.t >= 30_000 && r.t < 60_000).map((r) => r.bytes));
      const perMinute = Array.from({ length: MINUTES - 1 }, (_, i) => median(inMinute(i + 1))).filter(Number.isFinite);
      const worst = perMinute.reduce((w, x) => (Math.abs(x / base - 1) > Math.abs(w / base - 1) ? x : w), base);
      out.measure(
        "server RSS per minute / warm-up",
        `worst ${fmtMiB(worst)} / ${fmtMiB(base)} = ${worst >= base ? "+" : ""}${((worst / base - 1) * 100).toFixed(1)}% (minutes 2-${MINUTES}: ${perMinute.map((x) => (x / MiB).toFixed(1)).join(" ")} MiB)`,
        "within 10%",
        perMinute.length >= MINUTES - 2 && Math.abs(worst / base - 1) <= 0.1,
      );
      out.expect(server.alive(), `server died: exit ${server.exitCode}`);
    } finally {
      const code = await server.stop("SIGTERM");
      out.expect(code === 0, `server exit code on SIGTERM: ${code}`);
    }
  },
};
