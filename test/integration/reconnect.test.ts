// Reconnection across a restart of the real server process on the same port: the CLI's
// `listen` and `interactive` (which must say what they do), and the library's
// ReconnectingClient. Bounded: every wait has a deadline, every process is killed.

import { afterAll, describe, expect, test } from "bun:test";
import { connect, connectWithReconnect, type CloseInfo } from "../../src/client/index.ts";
import { ClientProcess, killAll, runClientCli, startServer, type ServerProcess } from "../util/process.ts";
import { waitFor } from "../util/tcp.ts";

afterAll(killAll);

const framedServer = (port: number, extra: string[] = []) => startServer(["--protocol", "framed", "--port", String(port), ...extra]);

describe("listen reconnects across a server restart", () => {
  test("says it lost the connection, retries with growing delays, says it is back, and receives again", async () => {
    let srv: ServerProcess = await framedServer(0);
    const port = srv.port;
    try {
      const l = new ClientProcess(["--port", String(port), "listen", "--backoff-max", "1"]);
      await l.waitErr(/listening on 127\.0\.0\.1:\d+ \(framed\) as client \d+/);
      const before = await runClientCli(["--port", String(port), "broadcast", "before"]);
      expect(before.code).toBe(0);
      await l.waitOut(/^broadcast from \d+: before$/m);

      expect(await srv.stop("SIGTERM")).toBe(0);
      await l.waitErr(/connection lost: the server closed the connection; reconnecting/);
      // Down for a while: several refused attempts, each announced with its delay.
      await l.waitErr(/reconnecting in [\d.]+ s \(attempt 3; last: cannot connect to 127\.0\.0\.1:\d+: connection refused/, 15_000);
      const delays = [...l.stderr.matchAll(/reconnecting in ([\d.]+) s \(attempt (\d+)/g)].map((m) => Number(m[1]));
      // Exponential (100, 200, 400 ms...) with up to 50% jitter taken off, capped at 1 s.
      delays.forEach((d, i) => {
        const ceiling = Math.min(1, 0.1 * 2 ** i);
        expect(d).toBeGreaterThanOrEqual(ceiling / 2 - 0.01);
        expect(d).toBeLessThanOrEqual(ceiling + 0.01);
      });

      srv = await framedServer(port);
      await l.waitErr(/reconnected to 127\.0\.0\.1:\d+ \(framed\) as client \d+/, 15_000);
      const after = await runClientCli(["--port", String(port), "broadcast", "after"]);
      expect(after.code).toBe(0);
      expect(after.stdout).toContain("broadcast delivered to 1 client");
      await l.waitOut(/^broadcast from \d+: after$/m);

      l.proc.kill("SIGINT");
      expect(await l.exitCode()).toBe(0);
      expect(l.stdout.trimEnd().split("\n")).toEqual([expect.stringMatching(/: before$/), expect.stringMatching(/: after$/)]);
    } finally {
      await srv.stop();
    }
  }, 60_000);

  test("--max-retries: gives up after N failed attempts in a row and exits 1", async () => {
    const srv = await framedServer(0);
    const l = new ClientProcess(["--port", String(srv.port), "listen", "--max-retries", "2", "--backoff-max", "0.05"]);
    await l.waitErr(/listening on/);
    await srv.stop();
    expect(await l.exitCode()).toBe(1);
    expect(l.stderr).toMatch(/reconnecting in [\d.]+ s \(attempt 2; /);
    expect(l.stderr).toMatch(/bunpoll-client: gave up after 2 attempts: cannot connect to 127\.0\.0\.1:\d+: connection refused/);
  }, 30_000);

  test("a server that comes back with a different token: the listener stops instead of retrying forever", async () => {
    let srv = await framedServer(0, ["--auth-token", "one"]);
    const port = srv.port;
    try {
      const l = new ClientProcess(["--port", String(port), "--auth-token", "one", "listen", "--backoff-max", "0.1"]);
      await l.waitErr(/listening on/);
      await srv.stop();
      srv = await framedServer(port, ["--auth-token", "two"]);
      expect(await l.exitCode(15_000)).toBe(1);
      expect(l.stderr).toContain("the server refused the handshake: unauthorized");
    } finally {
      await srv.stop();
    }
  }, 30_000);
});

describe("interactive reconnects across a server restart", () => {
  test("commands while disconnected say so; after the restart they work again", async () => {
    let srv = await startServer(["--protocol", "json", "--port", "0"]);
    const port = srv.port;
    try {
      const p = new ClientProcess(["--port", String(port), "--protocol", "json", "interactive", "--backoff-max", "0.2"]);
      await p.waitOut(/^connected to 127\.0\.0\.1:\d+ \(json\) as client \d+\./m);
      p.write("/ping\n");
      await p.waitOut(/^pong in /m);
      await srv.stop();
      await p.waitOut(/^\*\*\* connection lost: the server closed the connection; reconnecting$/m);
      p.write("/ping\n");
      await p.waitOut(/^error: connection closed: not connected \(reconnecting\)$/m);
      srv = await startServer(["--protocol", "json", "--port", String(port)]);
      await p.waitOut(/^\*\*\* reconnected to 127\.0\.0\.1:\d+ \(json\) as client \d+$/m, 15_000);
      p.write("/echo back again\n");
      await p.waitOut(/^echo: back again \(/m);
      p.write("/exit\n");
      expect(await p.exitCode()).toBe(0);
    } finally {
      await srv.stop();
    }
  }, 60_000);
});

describe("library: ReconnectingClient", () => {
  test("events in order, a new client id after the restart, messages flow again", async () => {
    let srv = await framedServer(0);
    const port = srv.port;
    const rc = await connectWithReconnect({ port, backoff: { initialMs: 20, maxMs: 100 } });
    try {
      const events: string[] = [];
      const firstId = rc.client!.clientId;
      rc.on("disconnect", (info: CloseInfo, willRetry) => events.push(`disconnect:${info.reason}:${willRetry}`));
      rc.on("reconnecting", (attempt) => events.push(`reconnecting:${attempt}`));
      rc.on("reconnect", () => events.push("reconnect"));
      const texts: string[] = [];
      rc.on("message", (m) => texts.push(m.text));

      await srv.stop();
      await waitFor(() => events.includes("reconnecting:2"), 10_000, "two reconnect attempts");
      await expect(rc.ping()).rejects.toThrow("not connected (reconnecting)");
      srv = await framedServer(port);
      await waitFor(() => rc.isConnected, 10_000, "reconnected");
      expect(events[0]).toBe("disconnect:end:true");
      expect(events.at(-1)).toBe("reconnect");
      expect(events.filter((e) => e.startsWith("reconnecting:")).map((e) => Number(e.split(":")[1]))).toEqual(
        Array.from({ length: events.length - 2 }, (_, i) => i + 1),
      );
      // A new process numbers its clients from 1 again.
      expect(rc.client!.clientId).toBe(1);
      expect(firstId).toBe(1);

      const other = await connect({ port });
      await other.broadcast("welcome back");
      await waitFor(() => texts.includes("welcome back"), 5_000, "the broadcast after reconnecting");
      expect(typeof (await rc.ping())).toBe("number");
      await other.close();
    } finally {
      await rc.close();
      await srv.stop();
    }
    expect(await rc.done).toBeNull();
  }, 30_000);
});
