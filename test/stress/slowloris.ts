// slowloris: thousands of connections each dribbling one byte per second of a frame. The
// server's --frame-timeout must close every one of them, about frame-timeout seconds
// after its first byte, while a well-behaved client's pings stay fast and RSS bounded.

import { spawnClient } from "./lib/clients.ts";
import { jsonStats } from "./lib/net.ts";
import { MiB, ProcSampler } from "./lib/proc.ts";
import { compareLatency, delta, LatencyWatch, probeFor, timeline, type Outcome, type RunContext, type Scenario } from "./lib/scenario.ts";
import { startServer } from "./lib/server.ts";
import { fmtMiB } from "./lib/stats.ts";
import type { SlowlorisConfig, SlowlorisResult } from "./clients/slowloris.ts";

export const slowloris: Scenario = {
  name: "slowloris",
  title: "2,000 connections (200 short) send one byte of a frame per second; --frame-timeout must close them",
  async run(ctx: RunContext, out: Outcome) {
    const conns = ctx.short ? 200 : 2000;
    const timeoutS = ctx.short ? 4 : 10;
    const serverArgs = ["--frame-timeout", String(timeoutS)];
    const server = await startServer({ listen: ["framed", "json"], args: serverArgs });
    try {
      const framed = server.port("framed");
      const json = server.port("json");
      const idle = await probeFor(framed, ctx.short ? 3000 : 5000);
      const before = await jsonStats(json);
      const sampler = new ProcSampler(server.pid, 100);
      const cfg: SlowlorisConfig = {
        port: framed,
        conns,
        byteIntervalMs: 1000,
        declaredBody: 1000,
        rampMs: ctx.short ? 1000 : 2000,
        maxMs: (timeoutS + 20) * 1000,
      };
      // The probe runs from before the first slow connection until the last one is closed:
      // arrivals, the trickle and the frame-timeout closes.
      const watch = await LatencyWatch.start(framed, serverArgs, (timeoutS + 60) * 1000);
      const load = spawnClient<SlowlorisResult>("slowloris", cfg);
      const connected = await load.event<{ connected: number; rampMs: number }>("connected", 60_000);
      ctx.log(`slowloris: ${connected.connected} connected in ${Math.round(connected.rampMs)} ms`);
      const r = await load.done(cfg.maxMs + 30_000);
      const latency = await watch.stop();
      ctx.verbose(`probe p99 per second: ${timeline(latency.loaded)}`);
      ctx.verbose(`control p99 per second: ${timeline(latency.control)}`);
      sampler.stop();
      const after = await jsonStats(json);
      const d = delta(before, after);

      out.note("connections", `${r.connected}/${conns} (ramp ${Math.round(r.rampMs)} ms)`);
      out.equal("connect errors", r.connectErrors, 0);
      out.measure("closed by the server", `${r.closedByServer}/${r.connected} (${r.closedEof} EOF, ${r.closedReset} reset)`, `= ${conns}`, r.closedByServer === conns);
      out.measure(
        "closed after (from first byte)",
        `${(r.closeAfterMs.p50 / 1000).toFixed(2)} s p50, ${(r.closeAfterMs.max / 1000).toFixed(2)} s max (min ${(r.closeAfterMs.min / 1000).toFixed(2)} s)`,
        `${timeoutS} s..${timeoutS + 2} s`,
        r.closedByServer > 0 && r.closeAfterMs.min >= timeoutS * 1000 - 100 && r.closeAfterMs.max <= (timeoutS + 2) * 1000,
      );
      out.equal("STATS close_reasons.frame-timeout", d.reason("frame-timeout"), conns);
      out.equal("bytes the server sent to slow clients", r.bytesReceived, 0);
      out.measure("server RSS max", fmtMiB(sampler.maxRss), "< 256 MiB", sampler.maxRss > 0 && sampler.maxRss < 256 * MiB);
      out.note("server fds max", sampler.maxFds);
      compareLatency(out, latency, idle, "slowloris", undefined, 2, !ctx.short);
      out.expect(server.alive(), `server died: exit ${server.exitCode}, stderr: ${server.stderr().slice(-500)}`);
      const logged = server.stderrLines(/frame stayed incomplete/).length;
      out.note("frame-timeout lines on server stderr", logged);
    } finally {
      const code = await server.stop("SIGTERM");
      out.expect(code === 0, `server exit code on SIGTERM: ${code}`);
    }
  },
};
