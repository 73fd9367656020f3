// How soon a crashed worker serves again: starts `--workers 2` with the test-only crash hook
// (BUNPOLL_TEST_CRASH), crashes a worker 5 times through a framed BROADCAST of the crash word,
// and reads each "restarted, serving again N ms after it died" line.
//
//   npx bun bench/workers/restart.ts   (about 10 s)

import net from "node:net";
import { encodeBroadcast, encodeHello } from "../../src/protocols/codec/framed.ts";

const root = new URL("../..", import.meta.url).pathname;
const proc = Bun.spawn([process.execPath, "src/server.ts", "--workers", "2", "--port", "0"], {
  cwd: root, stdout: "pipe", stderr: "pipe", env: { ...process.env, BUNPOLL_TEST_CRASH: "crash-now" },
});
let out = "";
let err = "";
(async () => { for await (const c of proc.stdout) out += new TextDecoder().decode(c); })();
(async () => { for await (const c of proc.stderr) err += new TextDecoder().decode(c); })();
const until = async (cond: () => boolean) => { for (let i = 0; i < 500 && !cond(); i++) await Bun.sleep(20); if (!cond()) throw new Error(`timed out; stderr: ${err}`); };
await until(() => /listening on [0-9.]+:(\d+)/.test(out));
const port = Number(out.match(/listening on [0-9.]+:(\d+)/)![1]);
const times: number[] = [];
for (let i = 0; i < 5; i++) {
  const s = net.connect(port, "127.0.0.1");
  await new Promise((r) => s.once("connect", r));
  s.on("error", () => {});
  s.write(encodeHello());
  await Bun.sleep(50);
  s.write(encodeBroadcast("crash-now"));
  const seen = times.length;
  await until(() => (err.match(/serving again (\d+) ms/g)?.length ?? 0) > seen);
  times.push(Number([...err.matchAll(/serving again (\d+) ms/g)].at(-1)![1]));
  s.destroy();
  await Bun.sleep(300);
}
proc.kill("SIGTERM");
await proc.exited;
times.sort((a, b) => a - b);
console.log(`restart (died -> serving again), 5 crashes: ${times.join(", ")} ms; median ${times[2]} ms`);
