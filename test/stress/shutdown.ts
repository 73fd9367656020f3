// shutdown: SIGTERM while 50 connections x 16 pipelined framed ECHOs run. Every request
// is answered (ECHO_REPLY or SHUTTING_DOWN), or its connection saw a clean EOF after
// every reply the server sent; zero lost replies; exit code 0. As a byte-level cross
// check, the server's final "bytes out" must equal what the clients received.

import { spawnClient } from "./lib/clients.ts";
import { sleep, type Outcome, type RunContext, type Scenario } from "./lib/scenario.ts";
import { startServer } from "./lib/server.ts";
import { fmtInt } from "./lib/stats.ts";
import type { PipelineConfig, PipelineResult } from "./clients/pipeline.ts";

const STOPPED_RE = /stopped: (\d+) connections served, (\d+) bytes in, (\d+) bytes out(.*)$/m;

export const shutdown: Scenario = {
  name: "shutdown",
  title: "SIGTERM under 50 x 16 pipelined framed ECHO: every request answered or cleanly EOF'd, zero lost, exit 0",
  async run(ctx: RunContext, out: Outcome) {
    const drainS = 5;
    const loadMs = ctx.short ? 1500 : 4000;
    // Only the framed listener and only the pipeline's connections: the server's byte
    // counters then describe exactly the clients' traffic.
    const server = await startServer({ listen: ["framed"], args: ["--drain-timeout", String(drainS)] });
    let exitCode: number | null = null;
    try {
      const cfg: PipelineConfig = { port: server.port("framed"), conns: 50, depth: 16, bodySize: 64, maxMs: loadMs + (drainS + 30) * 1000 };
      const load = spawnClient<PipelineResult>("pipeline", cfg);
      await load.event("running", 30_000);
      await sleep(loadMs);
      const t0 = performance.now();
      server.proc.kill("SIGTERM");
      const exited = await Promise.race([server.exited.then(() => true), sleep((drainS + 10) * 1000).then(() => false)]);
      const exitMs = performance.now() - t0;
      exitCode = exited ? server.exitCode : null;
      const r = await load.done(cfg.maxMs + 30_000);

      out.note("load", `${cfg.conns} connections x ${cfg.depth} pipelined ECHO (${cfg.bodySize} B), SIGTERM after ${loadMs / 1000} s`);
      out.note(
        "requests",
        `${fmtInt(r.sent)} sent, ${fmtInt(r.replies)} ECHO_REPLY, ${fmtInt(r.shuttingDown)} SHUTTING_DOWN, ${fmtInt(r.unansweredAfterEof)} unanswered at a clean EOF`,
      );
      out.equal("lost replies", r.lost + r.mismatches, 0);
      if (r.firstMismatch) out.note("first wrong reply", r.firstMismatch);
      out.measure("connections ending in a clean EOF", `${r.conns - r.resets - r.stillOpen - r.truncated}/${r.conns} (${r.resets} reset, ${r.truncated} truncated, ${r.stillOpen} still open)`, `= ${r.conns}`, r.resets === 0 && r.truncated === 0 && r.stillOpen === 0);
      if (r.firstReset) out.note("first reset", r.firstReset);
      out.equal("replies + SHUTTING_DOWN + unanswered - sent", r.replies + r.shuttingDown + r.unansweredAfterEof + r.lost - r.sent, 0);
      out.measure("exit code", `${exitCode === null ? "none (killed)" : exitCode} after ${(exitMs / 1000).toFixed(2)} s`, `0 within ${drainS} s drain`, exitCode === 0 && exitMs <= (drainS + 2) * 1000);
      const m = STOPPED_RE.exec(server.stderr());
      if (m) {
        const bytesOut = Number(m[3]);
        out.measure("server bytes out = bytes the clients received", `${fmtInt(bytesOut)} / ${fmtInt(r.bytesReceived)}`, "equal", bytesOut === r.bytesReceived);
        const bytesIn = Number(m[2]);
        out.note("server bytes in / bytes the clients sent", `${fmtInt(bytesIn)} / ${fmtInt(r.bytesSent)}`);
        if (bytesIn === r.bytesSent && r.unansweredAfterEof > 0) {
          // The requests that crossed the server's FIN reached it: after its FIN it reads and
          // discards until the client's FIN (closing with unread input would send RST).
          out.note("unanswered requests", `${r.unansweredAfterEof} crossed the server's FIN: received (bytes in = bytes sent) and discarded unanswered after it`);
        }
        out.note("server's last word", m[0].trim());
      } else {
        out.fail(`no "stopped: ..." line on the server's stderr: ${server.stderr().slice(-400)}`);
      }
    } finally {
      if (server.alive()) await server.stop("SIGKILL");
    }
  },
};
