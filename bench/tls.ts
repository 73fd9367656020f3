// TLS bench: full handshakes (two `openssl s_time -new` at once: server CPU per handshake
// beside handshakes/s) and framed echo over TLS, 50 connections x 16 in flight x 64 B, bunpoll
// (framed+tls) against Bun.listen({ tls }) running the same framed protocol in JS
// (bench/baselines/bun-listen.ts), interleaved rounds, server pinned to core 0 and the load
// generator (bunpoll's client bench with --tls) on core 1. Reports server CPU µs per message
// (/proc/PID/stat utime+stime) beside msgs/s; results as JSON in bench/results/.
//
//   flock /tmp/bunpoll-bench.lock npx bun bench/tls.ts [--rounds 3] [--duration 5]
//
// Certificates (P-256) are made with the openssl CLI in a temporary directory.

import { mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { makeCerts } from "../test/util/certs.ts";

const ROOT = resolve(import.meta.dir, "..");
const BUN = process.execPath;
const argv = process.argv.slice(2);
const opt = (name: string, d: number) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? Number(argv[i + 1]) : d;
};
const rounds = opt("rounds", 3);
const duration = opt("duration", 5);
const certs = makeCerts();

function cpuMs(pid: number): number {
  const f = require("node:fs").readFileSync(`/proc/${pid}/stat`, "utf8") as string;
  const fields = f.slice(f.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

async function waitPort(port: number): Promise<void> {
  for (let i = 0; i < 200; i++) {
    try {
      const s = await Bun.connect({ hostname: "127.0.0.1", port, socket: { data() {} } });
      s.end();
      return;
    } catch {
      await Bun.sleep(50);
    }
  }
  throw new Error(`port ${port} never opened`);
}

const servers: Record<string, (port: number) => string[]> = {
  "bunpoll framed+tls": (port) => ["taskset", "-c", "0", BUN, "src/server.ts", "--listen", `framed+tls:${port}`, "--tls-cert", certs.cert, "--tls-key", certs.key, "--busy-poll", "0", "--no-stats"],
  "Bun.listen tls (framed in JS)": (port) => ["taskset", "-c", "0", BUN, "bench/baselines/bun-listen.ts", "--port", String(port), "--protocol", "framed"],
};

type Row = { server: string; round: number; msgsPerSec: number; cpuUsPerMsg: number; messages: number };
const rows: Row[] = [];
const hsRows: { server: string; round: number; handshakes: number; handshakesPerSec: number; cpuUsPerHandshake: number }[] = [];
let port = 27443;
for (let round = 1; round <= rounds; round++) {
  for (const [name, cmd] of Object.entries(servers)) {
    port++;
    const proc = Bun.spawn(cmd(port), { cwd: ROOT, stdout: "ignore", stderr: "inherit", env: { ...process.env, TLS_CERT: certs.cert, TLS_KEY: certs.key } });
    try {
      await waitPort(port);
      await Bun.sleep(300);
      // Full handshakes: openssl s_time -new (sequential, a new session each time), two at once.
      const h0 = cpuMs(proc.pid);
      const st = await Promise.all([0, 1].map(async () => {
        const p = Bun.spawn(["taskset", "-c", "1", "openssl", "s_time", "-new", "-connect", `127.0.0.1:${port}`, "-time", String(Math.max(2, Math.round(duration / 2)))], { stdout: "pipe", stderr: "ignore" });
        const text = await new Response(p.stdout).text();
        const m = /(\d+) connections in (\d+) real seconds/.exec(text);
        return m ? [Number(m[1]), Number(m[2])] : [0, 1];
      }));
      const h1 = cpuMs(proc.pid);
      const handshakes = st[0]![0]! + st[1]![0]!;
      const hsPerSec = handshakes / st[0]![1]!;
      hsRows.push({ server: name, round, handshakes, handshakesPerSec: hsPerSec, cpuUsPerHandshake: ((h1 - h0) * 1000) / handshakes });
      console.log(`round ${round} ${name}: ${hsPerSec.toFixed(0)} handshakes/s, ${(((h1 - h0) * 1000) / handshakes).toFixed(0)} us CPU/handshake`);
      const c0 = cpuMs(proc.pid);
      const load = Bun.spawnSync(["taskset", "-c", "1", BUN, "src/client.ts", "--port", String(port), "--tls", "--tls-ca", certs.ca, "--json", "bench", "--conns", "50", "--depth", "16", "--size", "64", "--duration", String(duration)], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
      const c1 = cpuMs(proc.pid);
      const out = JSON.parse(load.stdout.toString());
      // CPU covers the whole run (connects, the tail after the window): count every reply.
      const messages = out.completed as number;
      const seconds = out.elapsedSec as number;
      rows.push({ server: name, round, messages, msgsPerSec: messages / seconds, cpuUsPerMsg: ((c1 - c0) * 1000) / messages });
      console.log(`round ${round} ${name}: ${(messages / seconds / 1000).toFixed(0)}k msgs/s, ${(((c1 - c0) * 1000) / messages).toFixed(3)} us CPU/msg`);
    } finally {
      proc.kill();
      await proc.exited;
    }
  }
}
const med = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
console.log("\n| server | msgs/s (median) | server CPU us/msg (median) |\n|---|---:|---:|");
for (const name of Object.keys(servers)) {
  const r = rows.filter((x) => x.server === name);
  console.log(`| ${name} | ${(med(r.map((x) => x.msgsPerSec)) / 1000).toFixed(0)}k | ${med(r.map((x) => x.cpuUsPerMsg)).toFixed(3)} |`);
}
console.log("\n| server | handshakes/s (median, 2 x s_time -new) | server CPU us/handshake (median) |\n|---|---:|---:|");
for (const name of Object.keys(servers)) {
  const r = hsRows.filter((x) => x.server === name);
  console.log(`| ${name} | ${med(r.map((x) => x.handshakesPerSec)).toFixed(0)} | ${med(r.map((x) => x.cpuUsPerHandshake)).toFixed(0)} |`);
}
mkdirSync(join(ROOT, "bench/results"), { recursive: true });
const file = join(ROOT, "bench/results", `tls-${new Date().toISOString().replace(/[:.]/g, "-")}.json`);
writeFileSync(file, JSON.stringify({ scenarios: ["framed echo over TLS, 50x16x64 B", "full handshakes, 2 x openssl s_time -new"], rounds, duration, rows, handshakes: hsRows }, null, 2));
console.log(`\nresults: ${file}`);
certs.cleanup();
