// listenWorkers() and serveWorkers(): the library on several cores, a handler module per
// worker (examples/worker-handler.ts, examples/http-worker-handler.ts), real sockets and curl.

import { describe, expect, test } from "bun:test";
import { listenWorkers, serveWorkers } from "../../src/index.ts";
import { connect, readExactly } from "../util/tcp.ts";

const example = (name: string) => new URL(`../../examples/${name}`, import.meta.url).href;

describe("listenWorkers", () => {
  test("2 workers serve one port: connections land on both, each echoes, stop() drains them", async () => {
    const server = await listenWorkers({ module: example("worker-handler.ts"), workers: 2, port: 0 });
    const seen = new Set<string>();
    for (let i = 0; i < 60 && seen.size < 2; i++) {
      const s = await connect(server.port);
      const hello = (await readExactly(s, 9, 5_000, "the worker line")).toString();
      seen.add(hello);
      const reply = readExactly(s, 4, 5_000, "the echo");
      s.write("ping");
      expect((await reply).toString()).toBe("ping");
      s.destroy();
    }
    expect([...seen].sort()).toEqual(["worker 0\n", "worker 1\n"]);
    await server.stop();
  }, 20_000);

  test("a module that does not exist: the start rejects naming the worker", async () => {
    await expect(listenWorkers({ module: example("no-such-handler.ts"), workers: 2, port: 0 })).rejects.toThrow(/worker 0/);
  });
});

describe("serveWorkers", () => {
  test("2 workers answer HTTP on one port (curl)", async () => {
    const server = await serveWorkers({ module: example("http-worker-handler.ts"), workers: 2, port: 0 });
    const p = Bun.spawn(["curl", "-s", `http://127.0.0.1:${server.port}/x`]);
    expect(await new Response(p.stdout).text()).toBe("hello from /x\n");
    await server.stop();
  }, 20_000);
});
