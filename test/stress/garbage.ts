// garbage: 200 clients send random bytes and mutated valid messages to all four
// protocols at once while well-behaved sessions run on each protocol. Zero crashes (the
// process lives, no handler throws, exit 0 on SIGTERM) and every well-behaved session
// unaffected (every round trip answered correctly).

import { spawnClient } from "./lib/clients.ts";
import { jsonStats } from "./lib/net.ts";
import { MiB, ProcSampler } from "./lib/proc.ts";
import { delta, type Outcome, type RunContext, type Scenario } from "./lib/scenario.ts";
import { startServer } from "./lib/server.ts";
import { fmtInt, fmtMiB, fmtMs } from "./lib/stats.ts";
import type { GarbageConfig, GarbageResult } from "./clients/garbage.ts";
import type { WellBehavedConfig, WellBehavedResult } from "./clients/well-behaved.ts";

const PROTOCOLS = ["framed", "json", "line", "echo"] as const;

/** Server stderr lines that mean a bug, not a diagnostic. */
const CRASH_RE = /threw|uncaught|unhandled|TypeError|RangeError|ReferenceError|SyntaxError|panic|segmentation|assert/i;

export const garbage: Scenario = {
  name: "garbage",
  title: "200 clients (60 short) send random bytes and mutated valid frames to framed, json, line, echo; zero crashes, sessions unaffected",
  async run(ctx: RunContext, out: Outcome) {
    const perProtocol = ctx.short ? 15 : 50;
    const durationMs = ctx.short ? 8000 : 30_000;
    const seed = Number(process.env.STRESS_SEED ?? 0) || Math.floor(Math.random() * 1e9);
    const server = await startServer({ listen: [...PROTOCOLS] });
    try {
      const ports = { framed: server.port("framed"), json: server.port("json"), line: server.port("line"), echo: server.port("echo") };
      const before = await jsonStats(ports.json);
      const sampler = new ProcSampler(server.pid, 200);
      const good = spawnClient<WellBehavedResult>("well-behaved", {
        ports,
        perProtocol: 2,
        durationMs: durationMs + 1000,
        replyTimeoutMs: 5000,
        gapMs: 5,
        seed,
      } satisfies WellBehavedConfig, { nice: 0 });
      const bad = spawnClient<GarbageResult>("garbage", { ports, perProtocol, durationMs, seed, minGapMs: 20, maxGapMs: 200 } satisfies GarbageConfig);
      const [g, w] = await Promise.all([bad.done(durationMs + 90_000), good.done(durationMs + 90_000)]);
      sampler.stop();
      const alive = server.alive();
      const after = alive ? await jsonStats(ports.json) : before;
      const d = delta(before, after);

      out.note("seed", `${seed} (STRESS_SEED=${seed} repeats the garbage)`);
      const sent = PROTOCOLS.map((p) => `${p} ${fmtInt(g.byProtocol[p].sends)} writes/${fmtMiB(g.byProtocol[p].bytesSent)}`).join(", ");
      out.note("garbage sent", `${perProtocol * 4} clients: ${sent}`);
      const closes = PROTOCOLS.map((p) => `${p} ${g.byProtocol[p].closedEof + g.byProtocol[p].closedReset}/${g.byProtocol[p].connects}`).join(", ");
      out.note("garbage connections the server closed", closes);
      const errs = Object.entries(after.errors).map(([k, v]) => `${k} ${v - (before.errors[k] ?? 0)}`).join(", ");
      out.note("STATS errors", errs || "none");
      const reasons = Object.entries(after.close_reasons)
        .map(([k, v]) => [k, v - (before.close_reasons[k] ?? 0)] as const)
        .filter(([, v]) => v > 0)
        .map(([k, v]) => `${k} ${v}`)
        .join(", ");
      out.note("STATS close reasons", reasons || "none");

      const crashLines = server.stderrLines(CRASH_RE);
      out.measure("crashes", alive ? `0 (server alive, ${crashLines.length} handler errors logged)` : `server died: exit ${server.exitCode} ${server.signal ?? ""}`, "0", alive && crashLines.length === 0);
      if (crashLines.length > 0) out.note("first handler error on server stderr", crashLines[0]!.slice(0, 300));
      out.equal("STATS close_reasons.error (a handler threw)", d.reason("error"), 0);
      const connectErrors = PROTOCOLS.reduce((a, p) => a + g.byProtocol[p].connectErrors, 0);
      out.equal("garbage clients' connect errors", connectErrors, 0);
      out.equal("echo mismatches seen by garbage clients", g.byProtocol.echo.echoMismatches, 0);
      for (const p of PROTOCOLS) {
        const s = w.byProtocol[p];
        out.measure(
          `well-behaved ${p} sessions`,
          `${s.sessions} sessions, ${fmtInt(s.roundTrips)} round trips, ${s.failures} failures, p99 ${fmtMs(s.rtt.p99)}`,
          "0 failures",
          s.failures === 0 && s.roundTrips > 0,
        );
        if (s.firstFailure) out.note(`first ${p} failure`, s.firstFailure);
      }
      out.measure("server RSS max", fmtMiB(sampler.maxRss), "< 256 MiB", sampler.maxRss > 0 && sampler.maxRss < 256 * MiB);
    } finally {
      const code = await server.stop("SIGTERM");
      out.expect(code === 0, `server exit code on SIGTERM: ${code}`);
      out.note("server exit code on SIGTERM", String(code));
    }
  },
};
