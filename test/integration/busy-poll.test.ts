// --busy-poll: the server spins (polls without sleeping) only for the given time after
// traffic, serves correctly meanwhile, still answers signals, and goes back to sleeping when
// traffic stops. Black-box: a real server process over real TCP.

import { afterAll, expect, test } from "bun:test";
import { killAll, startEchoServer } from "../util/process.ts";
import { connect, readExactly, sleep, writeAll } from "../util/tcp.ts";

afterAll(async () => {
  await killAll();
});

test("--busy-poll 2000: echoes while spinning, sleeps again once traffic stops, stops on SIGTERM", async () => {
  const server = await startEchoServer(["--busy-poll", "2000"]);
  const sock = await connect(server.port);
  // Traffic: 200 round trips, each starting a 2 ms spin window.
  for (let i = 0; i < 200; i++) {
    const msg = Buffer.from(`ping ${i}`);
    await writeAll(sock, msg);
    expect((await readExactly(sock, msg.length, 5000)).toString()).toBe(`ping ${i}`);
  }
  // Spinning while a client is active costs a core; once it stops the server must sleep.
  // A server that never stopped spinning would use ~100% of a core over this second.
  await sleep(200);
  const cpu0 = server.cpuMs();
  await sleep(1000);
  const idleCpuMs = server.cpuMs() - cpu0;
  expect(idleCpuMs).toBeLessThan(200);
  sock.destroy();
  expect(await server.stop("SIGTERM")).toBe(0);
}, 30_000);
