// The HTTP server under real load generators, as users point them at it: wrk (keep-alive,
// 10 connections) and h2load --h1 (HTTP/1.1 with 4 requests pipelined per connection). Short,
// bounded runs on loopback; what is asserted is correctness (every request answered 2xx, no
// socket error), never speed.

import { afterAll, describe, expect, test } from "bun:test";
import { killAll, run, startServer } from "../util/process.ts";

afterAll(killAll);

describe("real HTTP load generators", () => {
  test("wrk: 1 s of keep-alive requests to /plaintext and /json, every one 2xx, no socket error", async () => {
    const srv = await startServer(["--protocol", "http", "--port", "0"]);
    try {
      for (const path of ["/plaintext", "/json"]) {
        const r = await run(["wrk", "-t1", "-c10", "-d1s", `http://127.0.0.1:${srv.port}${path}`], 20_000);
        expect(r.code).toBe(0);
        const requests = Number(/(\d+) requests in/.exec(r.stdout)?.[1] ?? 0);
        expect(requests).toBeGreaterThan(100);
        expect(r.stdout).not.toContain("Non-2xx");
        expect(r.stdout).not.toContain("Socket errors");
      }
    } finally {
      expect(await srv.stop()).toBe(0);
    }
  }, 30_000);

  test("h2load --h1: 2,000 requests, 10 connections, 4 pipelined each: all succeeded, all 2xx", async () => {
    const srv = await startServer(["--protocol", "http", "--port", "0"]);
    try {
      const r = await run(["h2load", "--h1", "-n", "2000", "-c", "10", "-m", "4", `http://127.0.0.1:${srv.port}/plaintext`], 20_000);
      expect(r.code).toBe(0);
      expect(r.stdout).toContain("2000 succeeded, 0 failed, 0 errored, 0 timeout");
      expect(r.stdout).toContain("status codes: 2000 2xx, 0 3xx, 0 4xx, 0 5xx");
    } finally {
      expect(await srv.stop()).toBe(0);
    }
  }, 30_000);
});
