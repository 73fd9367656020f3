// src/log.ts: the same calls print the historical text lines or one JSON object per line.

import { describe, expect, test } from "bun:test";
import { Logger, type LogFormat } from "../../src/log.ts";

function capture(format: LogFormat) {
  const out: string[] = [];
  const err: string[] = [];
  const log = new Logger({ format, stdout: (l) => out.push(l), stderr: (l) => err.push(l), now: () => Date.UTC(2026, 0, 2, 3, 4, 5, 678) });
  return { log, out, err };
}

describe("Logger", () => {
  test("text: stdout lines as given, stderr lines prefixed as the server always printed them", () => {
    const { log, out, err } = capture("text");
    log.print("listening", "bunpoll 1.0.0 listening on 127.0.0.1:7000 (framed), pid 1", { pid: 1 });
    log.info("stopping", "SIGTERM: stopping");
    log.warn("unauthenticated", "warning: no token");
    log.component("connection 3: closed", { event: "frame_timeout", level: "warn", connection: 3 });
    log.component("accept4 failed");
    expect(out).toEqual(["bunpoll 1.0.0 listening on 127.0.0.1:7000 (framed), pid 1"]);
    expect(err).toEqual(["bunpoll: SIGTERM: stopping", "bunpoll: warning: no token", "[bunpoll] connection 3: closed", "[bunpoll] accept4 failed"]);
  });

  test("json: time, level, event, the known fields, then the message; undefined fields left out", () => {
    const { log, out, err } = capture("json");
    log.print("listening", "listening on x", { address: "127.0.0.1:7000", pid: 1, missing: undefined });
    log.error("listen_failed", "cannot listen");
    expect(out.map((l) => JSON.parse(l))).toEqual([
      { time: "2026-01-02T03:04:05.678Z", level: "info", event: "listening", address: "127.0.0.1:7000", pid: 1, message: "listening on x" },
    ]);
    expect(Object.keys(JSON.parse(out[0]!))).toEqual(["time", "level", "event", "address", "pid", "message"]);
    expect(JSON.parse(err[0]!)).toEqual({ time: "2026-01-02T03:04:05.678Z", level: "error", event: "listen_failed", message: "cannot listen" });
  });

  test("json: a component line's context becomes fields; the peer is read only when printed", () => {
    const { log, err } = capture("json");
    let reads = 0;
    const peer = {
      get remoteAddress() {
        reads++;
        return "::1";
      },
      remotePort: 4242,
    };
    log.component('connection 7: closed as "slow"', { event: "slow_consumer", level: "warn", connection: 7, reason: "slow-consumer", peer, suppressed: 2 });
    log.component("something odd");
    expect(reads).toBe(1);
    expect(JSON.parse(err[0]!)).toEqual({
      time: "2026-01-02T03:04:05.678Z", level: "warn", event: "slow_consumer", connection: 7, remote: "[::1]:4242",
      reason: "slow-consumer", suppressed: 2, message: 'connection 7: closed as "slow"',
    });
    expect(JSON.parse(err[1]!)).toEqual({ time: "2026-01-02T03:04:05.678Z", level: "warn", event: "diagnostic", message: "something odd" });
  });
});
