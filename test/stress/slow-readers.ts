// slow-readers: clients that never read while others broadcast 64 KiB messages. The
// server must stop reading from them at the high-water mark and close them as slow
// consumers past --max-buffered, keep its memory bounded, and deliver every broadcast to
// the clients that do read.

import { spawnClient } from "./lib/clients.ts";
import { jsonStats } from "./lib/net.ts";
import { MiB, ProcSampler } from "./lib/proc.ts";
import { compareLatency, delta, LatencyWatch, probeFor, probeWindow, timeline, type Outcome, type RunContext, type Scenario } from "./lib/scenario.ts";
import { startServer } from "./lib/server.ts";
import { fmtMiB, fmtMs } from "./lib/stats.ts";
import { MAX_BROADCAST_BODY } from "./lib/wire.ts";
import type { BroadcastConfig, BroadcastResult } from "./clients/broadcast.ts";
import type { SlowReadersConfig, SlowReadersResult } from "./clients/slow-readers.ts";

export const slowReaders: Scenario = {
  name: "slow-readers",
  title: "50 clients never read while others broadcast 64 KiB messages; they must be paused/dropped, memory bounded",
  async run(ctx: RunContext, out: Outcome) {
    const slow = 50;
    const durationMs = ctx.short ? 10_000 : 20_000;
    // Defaults spelled out: the limits this scenario is about.
    const highWater = 256 * 1024;
    const maxBuffered = 1 * MiB;
    const serverArgs = ["--high-water", String(highWater), "--max-buffered", String(maxBuffered)];
    const server = await startServer({ listen: ["framed", "json"], args: serverArgs });
    try {
      const framed = server.port("framed");
      const json = server.port("json");
      const idle = await probeFor(framed, ctx.short ? 3000 : 5000);
      const before = await jsonStats(json);
      const rssBefore = server.rss();

      const readers = spawnClient<SlowReadersResult>("slow-readers", {
        port: framed,
        conns: slow,
        checkMs: 15_000,
        maxMs: durationMs + 120_000,
      } satisfies SlowReadersConfig);
      await readers.event("connected", 30_000);
      const sampler = new ProcSampler(server.pid, 50);
      const watch = await LatencyWatch.start(framed, serverArgs, durationMs + 60_000);
      const cfg: BroadcastConfig = {
        port: framed,
        broadcasters: 4,
        readers: 4,
        rate: 5,
        bodySize: MAX_BROADCAST_BODY,
        durationMs,
        graceMs: 10_000,
      };
      const load = spawnClient<BroadcastResult>("broadcast", cfg);
      const b = await load.done(durationMs + 120_000);
      const latency = await watch.stop();
      sampler.stop();
      ctx.verbose(`server RSS MiB: ${sampler.timeline(250)}`);
      ctx.verbose(`probe p99 per second: ${timeline(latency.loaded)}`);
      ctx.verbose(`control p99 per second: ${timeline(latency.control)}`);
      readers.send("check");
      const sr = await readers.done(60_000);
      const after = await jsonStats(json);
      const d = delta(before, after);
      const rssAfter = server.rss();

      out.note("load", `${cfg.broadcasters} x ${cfg.rate}/s broadcasts of ${cfg.bodySize} B for ${durationMs / 1000} s, ${cfg.broadcasters + cfg.readers} readers + probe`);
      out.equal("slow readers connected", sr.connected, slow);
      out.measure("slow readers closed by the server", `${sr.closedByServer}/${slow} (${sr.closedEof} EOF, ${sr.closedReset} reset)`, `= ${slow}`, sr.closedByServer === slow);
      out.note("bytes buffered in the kernel per slow reader", `${fmtMiB(sr.drainedBytes.p50)} p50, ${fmtMiB(sr.drainedBytes.max)} max`);
      out.equal("STATS slow_consumers_dropped", d.slowConsumersDropped, slow);
      out.equal("STATS close_reasons.slow-consumer", d.reason("slow-consumer"), slow);
      out.measure("STATS paused_reads", d.pausedReads, `>= ${slow}`, d.pausedReads >= slow);
      out.note(
        "broadcast recipients",
        `${b.recipients.max} -> ${b.recipients.min}; first drop ${(b.firstDropAtMs / 1000).toFixed(1)} s, all dropped ${(b.settledAtMs / 1000).toFixed(1)} s into the load`,
      );
      out.measure(
        "well-behaved clients: broadcasts received",
        `${b.complete}/${b.receivers} complete; ${b.missing} missing, ${b.corrupt} corrupt, ${b.outOfOrder} out of order, ${b.disconnected} disconnected`,
        "all complete",
        b.complete === b.receivers && b.missing === 0 && b.corrupt === 0 && b.outOfOrder === 0 && b.disconnected === 0,
      );
      if (b.firstProblem) out.note("first problem seen by a well-behaved client", b.firstProblem);
      out.equal("broadcasts acknowledged", b.acked, b.sent);
      out.note(
        "BROADCAST_ACK round trip",
        `p50 ${fmtMs(b.ackRttBeforeDrop.p50)} / max ${fmtMs(b.ackRttBeforeDrop.max)} while the slow readers were attached, ` +
          `p50 ${fmtMs(b.ackRttAfterDrop.p50)} / max ${fmtMs(b.ackRttAfterDrop.max)} after they were dropped`,
      );
      out.measure("server RSS max", `${fmtMiB(sampler.maxRss)} (before ${fmtMiB(rssBefore)}, after ${fmtMiB(rssAfter)})`, "< 256 MiB", sampler.maxRss > 0 && sampler.maxRss < 256 * MiB);
      // The acceptance window: while the slow readers are attached (first broadcast to the
      // first drop). After the drop the load is plain broadcasting, reported apart.
      const dropAt = b.firstDropEpochMs > 0 ? b.firstDropEpochMs : b.lastAckEpochMs;
      compareLatency(out, latency, idle, "slow readers", { fromEpochMs: b.firstBroadcastEpochMs, toEpochMs: dropAt }, 2, !ctx.short);
      if (b.firstDropEpochMs > 0) {
        const l = probeWindow(latency.loaded, b.firstDropEpochMs + 500, b.lastAckEpochMs);
        const c = probeWindow(latency.control, b.firstDropEpochMs + 500, b.lastAckEpochMs);
        out.note("ping p99 after the drop (broadcasts only) / idle", `${(l.p99 / c.p99).toFixed(2)}x (${fmtMs(l.p99)} / ${fmtMs(c.p99)}, max ${fmtMs(l.max)})`);
      }
      out.expect(server.alive(), `server died: exit ${server.exitCode}, stderr: ${server.stderr().slice(-500)}`);
    } finally {
      const code = await server.stop("SIGTERM");
      out.expect(code === 0, `server exit code on SIGTERM: ${code}`);
    }
  },
};
