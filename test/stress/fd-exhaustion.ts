// fd exhaustion: the server runs under `ulimit -n 256` and 1,000 clients try to get in.
// The served ones keep working, the rest get SERVER_FULL (error 7) or a close and retry;
// the server's CPU stays under 10% while saturated (no accept spin), and once some
// clients leave, waiting ones are served again.
//
// Two variants:
//   fd-exhaustion         default --max-conns (RLIMIT_NOFILE - 64): refused with SERVER_FULL
//   fd-exhaustion-emfile  --max-conns far above the fd limit: accept4 hits EMFILE, and the
//                         server must refuse by accepting and closing on its reserve fd

import { spawnClient } from "./lib/clients.ts";
import { FramedClient, jsonStats } from "./lib/net.ts";
import { cpuOver } from "./lib/proc.ts";
import { sleep, until, type Outcome, type RunContext, type Scenario } from "./lib/scenario.ts";
import { startServer } from "./lib/server.ts";
import { fmtInt } from "./lib/stats.ts";
import { Msg } from "./lib/wire.ts";
import type { FdHogConfig, FdHogResult } from "./clients/fd-hog.ts";

const FD_LIMIT = 256;

interface Saturated {
  served: number;
  attempts: number;
  refusedFull: number;
  refusedClosed: number;
  connectErrors: number;
}

interface Mark {
  at: number;
  attempts: number;
  refused: number;
}

interface Recovered {
  servedBefore: number;
  left: number;
  leftClosed: number;
  servedAfter: number;
  newlyServed: number;
  ms: number;
}

async function exhaust(ctx: RunContext, out: Outcome, emfile: boolean): Promise<void> {
  const clients = 1000;
  const cpuWindowMs = ctx.short ? 3000 : 5000;
  const args = emfile ? ["--max-conns", "100000"] : [];
  const server = await startServer({ listen: ["framed", "json"], args, fdLimit: FD_LIMIT });
  try {
    const framed = server.port("framed");
    const json = server.port("json");
    const before = await jsonStats(json);
    await sleep(200);
    const fdBase = server.fds();
    const cfg: FdHogConfig = { port: framed, clients, retryMinMs: 2000, retryMaxMs: 4000, pingEveryMs: 1000, answerMs: 3000, maxMs: 60_000 };
    const hog = spawnClient<FdHogResult>("fd-hog", cfg);
    const sat = await hog.event<Saturated>("saturated", 90_000);
    const fdsSaturated = server.fds();
    hog.send("mark start");
    const cpu = await cpuOver(server.pid, cpuWindowMs);
    hog.send("mark end");
    const m0 = await hog.event<Mark>("mark-start", 10_000);
    const m1 = await hog.event<Mark>("mark-end", 10_000);
    const refusedInWindow = m1.refused - m0.refused;
    const windowS = (m1.at - m0.at) / 1000;
    hog.send(`release 50`);
    const rec = await hog.event<Recovered>("recovered", 30_000);
    hog.send("stop");
    const r = await hog.done(30_000);
    const retryRate = refusedInWindow / Math.max(windowS, 0.001);

    // Everyone has left: the fds come back and a new client is served at once.
    const fdsBack = await until(() => server.fds() === fdBase, 10_000, 100);
    const fdAfter = server.fds();
    let fresh = "not served";
    try {
      const c = await FramedClient.connect(framed, { timeoutMs: 5000 });
      const p = await c.request(Msg.PING, Buffer.from("fresh"), 5000);
      fresh = p.type === Msg.PONG ? "served" : `answered 0x${p.type.toString(16)}`;
      c.close();
    } catch (e) {
      fresh = `failed: ${(e as Error).message}`;
    }
    const after = server.alive() ? await jsonStats(json) : before;

    out.note("server", `ulimit -n ${FD_LIMIT}${emfile ? ", --max-conns 100000" : ", default --max-conns"}; ${clients} clients retrying every ${cfg.retryMinMs / 1000}-${cfg.retryMaxMs / 1000} s`);
    out.note("saturated", `${sat.served} served, server fds ${fdsSaturated}/${FD_LIMIT}`);
    out.measure(
      "refused attempts",
      `${fmtInt(r.refusedFull)} SERVER_FULL, ${fmtInt(r.refusedClosed)} closed, ${fmtInt(r.connectErrors)} connect errors, ${r.unanswered} unanswered (of ${fmtInt(r.attempts)})`,
      emfile ? "closed or SERVER_FULL" : "SERVER_FULL or closed",
      r.unanswered === 0 && r.refusedFull + r.refusedClosed > 0,
    );
    out.measure(
      "served clients keep working",
      `${r.servedFailures} failures, ${fmtInt(r.servedPings)} PINGs answered (peak ${r.servedPeak} served)`,
      "0 failures",
      r.servedFailures === 0 && r.servedPings > 0,
    );
    if (r.firstServedFailure) out.note("first served-client failure", r.firstServedFailure);
    out.equal("odd replies", r.oddReplies, 0);
    if (cpu === null) out.fail("server exited while saturated");
    else {
      out.measure(
        "server CPU while saturated",
        `${cpu.total.toFixed(1)}% (user ${cpu.user.toFixed(1)}%, sys ${cpu.sys.toFixed(1)}%) over ${(cpu.wallMs / 1000).toFixed(1)} s`,
        "< 10%",
        cpu.total < 10,
      );
      const perRefusal = refusedInWindow > 0 ? (cpu.ms * 1000) / refusedInWindow : NaN;
      out.note("refused attempts while measuring", `${fmtInt(retryRate)}/s, ${Number.isFinite(perRefusal) ? `${Math.round(perRefusal)} µs` : "n/a"} server CPU each`);
    }
    out.measure(
      "recovery after 50 clients left",
      `${rec.newlyServed} waiting clients served in ${(rec.ms / 1000).toFixed(1)} s (${rec.servedBefore} -> ${rec.servedAfter} served)`,
      `>= ${rec.left} within 15 s`,
      rec.newlyServed >= rec.left && rec.leftClosed === rec.left,
    );
    out.measure("a new client after everyone left", fresh, "served", fresh === "served");
    out.measure("server fds after everyone left", `${fdAfter} (baseline ${fdBase})`, `= ${fdBase}`, fdsBack);
    if (emfile) {
      const exhaustionLogs = server.stderrLines(/out of file descriptors/).length;
      out.note("EMFILE log lines (at most one a second)", exhaustionLogs);
      out.note("STATS close_reasons.server-full", after.close_reasons["server-full"]! - (before.close_reasons["server-full"] ?? 0));
    } else {
      out.note("STATS errors.server_full", (after.errors.server_full ?? 0) - (before.errors.server_full ?? 0));
    }
    out.expect(server.alive(), `server died: exit ${server.exitCode}, stderr: ${server.stderr().slice(-500)}`);
  } finally {
    const code = await server.stop("SIGTERM");
    out.expect(code === 0, `server exit code on SIGTERM: ${code}`);
  }
}

export const fdExhaustion: Scenario = {
  name: "fd-exhaustion",
  title: "server under ulimit -n 256, 1000 clients: served ones work, others get SERVER_FULL, CPU < 10%, recovery",
  run: (ctx, out) => exhaust(ctx, out, false),
};

export const fdExhaustionEmfile: Scenario = {
  name: "fd-exhaustion-emfile",
  title: "the same with --max-conns above the fd limit: accept4 hits EMFILE; refused by accept+close, CPU < 10%, recovery",
  run: (ctx, out) => exhaust(ctx, out, true),
};
