// The server and client CLIs as processes: flags, exit codes, messages, and the flags that
// change behaviour (idle timeout, buffer limits, several listeners). Black-box.

import { describe, test, expect, afterAll } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import {
  ROOT, bunPath, run, startEchoServer, startServer, runServerCli, runClientCli, killAll, ClientProcess, LISTENING_RE,
} from "../util/process.ts";
import { connect, expectEcho, patternBytes, readToEnd, sleep, unusedPort, waitFor } from "../util/tcp.ts";

const VERSION: string = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).version;

afterAll(async () => {
  await killAll();
});

describe("server CLI: --help, --version, usage errors", () => {
  test("--help prints usage listing every flag and exits 0", async () => {
    const r = await runServerCli(["--help"]);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe("");
    expect(r.stdout).toContain(`bunpoll ${VERSION}`);
    expect(r.stdout).toContain("usage: bun run src/server.ts [options]\n");
    for (const flag of ["--protocol", "--host", "--port", "--listen", "--idle-timeout", "--high-water", "--max-buffered", "--drain-timeout", "--help", "--version"]) {
      expect(r.stdout).toContain(flag);
    }
  });

  test("-h is --help", async () => {
    const r = await runServerCli(["-h"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("usage:");
  });

  test("--version prints the package version and exits 0", async () => {
    const r = await runServerCli(["--version"]);
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe(`bunpoll ${VERSION}`);
  });

  test.each([
    [["--bogus"], "unknown option --bogus"],
    [["--port", "abc"], '--port: expected an integer, got "abc"'],
    [["--port", "70000"], "--port: must be <= 65535"],
    [["--port"], "--port needs a value"],
    [["--protocol", "nope"], '--protocol: "nope" is not one of'],
    [["--idle-timeout", "-1"], "--idle-timeout: must be >= 0"],
    [["--high-water", "0"], "--high-water: must be >= 1"],
    [["--high-water", "2000", "--max-buffered", "1000"], "--max-buffered (1000) must be at least --high-water (2000)"],
    [["--listen", "echo"], '--listen: expected PROTO:PORT or PROTO+tls:PORT, got "echo"'],
    [["--listen", "nope:5050"], '--listen: unknown protocol "nope"'],
    [["--listen", "echo:99999"], "--listen: port 99999 out of range"],
    [["stray"], 'unexpected argument "stray"'],
    [["--listen", "echo:7400", "--listen", "echo:7400"], "--listen: port 7400 given twice (echo:7400 and echo:7400)"],
    [["--listen", "echo:7400", "--listen", "framed:7400"], "--listen: port 7400 given twice (echo:7400 and framed:7400)"],
  ])("%p exits 2 with one line: the reason and where help is", async (args, reason) => {
    const r = await runServerCli([...args]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr).toStartWith(`bunpoll: ${reason}`);
    expect(r.stderr).toEndWith("; try 'bun run src/server.ts --help'\n");
    expect(r.stderr.split("\n")).toHaveLength(2); // one line and its newline
  });

  test("through npm the usage line and the hint name npm start", async () => {
    const env = { ...process.env, npm_lifecycle_event: "start", npm_lifecycle_script: "bun run src/server.ts" };
    const help = Bun.spawnSync([bunPath, "src/server.ts", "--help"], { cwd: ROOT, env });
    expect(help.exitCode).toBe(0);
    expect(help.stdout.toString()).toContain("usage: npm start -- [options]\n");
    const bad = Bun.spawnSync([bunPath, "src/server.ts", "--nope"], { cwd: ROOT, env });
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr.toString()).toBe("bunpoll: unknown option --nope; try 'npm start -- --help'\n");
    // Inherited from some other script (npm test starting a server): not ours, not trusted.
    const other = Bun.spawnSync([bunPath, "src/server.ts", "--help"], {
      cwd: ROOT, env: { ...process.env, npm_lifecycle_event: "test", npm_lifecycle_script: "tsc --noEmit -p . && bun test" },
    });
    expect(other.stdout.toString()).toContain("usage: bun run src/server.ts [options]\n");
  });

  test("through npx the hint names npx bun", async () => {
    const r = await run(["npx", "bun", "src/server.ts", "--nope"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe("bunpoll: unknown option --nope; try 'npx bun src/server.ts --help'\n");
  });

  test("an invalid --host is reported and exits 1, nothing listens", async () => {
    const r = await runServerCli(["--host", "not-an-ip", "--port", "0"]);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe("");
    expect(r.stderr).toContain("not-an-ip");
  });
});

describe("server CLI: listening", () => {
  test("port in use: a second server prints one line naming host and port and exits 1", async () => {
    const first = await startEchoServer();
    try {
      const r = await runServerCli(["--protocol", "echo", "--port", String(first.port)]);
      expect(r.code).toBe(1);
      expect(r.stdout).toBe("");
      const lines = r.stderr.trimEnd().split("\n");
      expect(lines.length).toBe(1);
      expect(lines[0]).toContain(`127.0.0.1:${first.port}`);
      expect(lines[0]).toMatch(/in use|EADDRINUSE/);
      await expectEcho(first.port, Buffer.from("first one unharmed"));
    } finally {
      expect(await first.stop()).toBe(0);
    }
  }, 30_000);

  test("port in use on ::1 names [::1]:PORT", async () => {
    const first = await startEchoServer([], "::1");
    try {
      const r = await runServerCli(["--host", "::1", "--port", String(first.port)]);
      expect(r.code).toBe(1);
      const lines = r.stderr.trimEnd().split("\n");
      expect(lines.length).toBe(1);
      expect(lines[0]).toContain(`[::1]:${first.port}`);
    } finally {
      await first.stop();
    }
  }, 30_000);

  test("--listen twice opens two listeners, one line each", async () => {
    const a = await unusedPort();
    let b = await unusedPort();
    while (b === a) b = await unusedPort();
    const srv = await startServer(["--listen", `echo:${a}`, "--listen", `echo:${b}`]);
    try {
      await waitFor(() => srv.stdout().split("\n").filter((l) => LISTENING_RE.test(l)).length === 2, 10_000, "two lines");
      expect(srv.stdout()).toContain(`listening on 127.0.0.1:${a} (echo)`);
      expect(srv.stdout()).toContain(`listening on 127.0.0.1:${b} (echo)`);
      await expectEcho(a, Buffer.from("on a"));
      await expectEcho(b, Buffer.from("on b"));
    } finally {
      expect(await srv.stop()).toBe(0);
    }
  }, 30_000);

  test("a listener that cannot bind: exit 1, one line naming it, nothing claims to listen", async () => {
    const taken = await startEchoServer();
    try {
      const free = await unusedPort();
      // The failing listener comes last, after one that opens fine.
      const r = await runServerCli(["--listen", `echo:${free}`, "--listen", `framed:${taken.port}`]);
      expect(r.code).toBe(1);
      expect(r.stdout).toBe("");
      expect(r.stderr).toBe(`bunpoll: cannot listen on 127.0.0.1:${taken.port}: address already in use (EADDRINUSE)\n`);
      await expectEcho(taken.port, Buffer.from("first one unharmed"));
    } finally {
      expect(await taken.stop()).toBe(0);
    }
  }, 30_000);

  test("stopping with one connection open says 1 connection, not 1 connections", async () => {
    const srv = await startEchoServer();
    const s = await connect(srv.port);
    try {
      const ended = readToEnd(s, 15_000, "FIN at shutdown");
      s.write("x");
      await waitFor(() => s.bytesRead === 1, 10_000, "the byte echoed"); // served before the stop
      expect(await srv.stop("SIGTERM")).toBe(0);
      expect((await ended).data.toString()).toBe("x");
      expect(srv.stderr()).toContain("SIGTERM: stopping (1 connection open)");
      expect(srv.stderr()).toContain("stopped: 1 connection served, 1 byte in, 1 byte out, all flushed");
    } finally {
      s.destroy();
      await srv.stop("SIGKILL");
    }
  }, 30_000);

  test("--idle-timeout closes a silent connection after about that long", async () => {
    const srv = await startEchoServer(["--idle-timeout", "0.4"]);
    try {
      const s = await connect(srv.port);
      const t0 = performance.now();
      const r = await readToEnd(s, 10_000, "idle close");
      const elapsed = performance.now() - t0;
      expect(r.data.length).toBe(0);
      expect(elapsed).toBeGreaterThanOrEqual(300);
      expect(elapsed).toBeLessThan(5000);
      // A chatty connection is not closed.
      const busy = await connect(srv.port);
      let closed = false;
      busy.on("close", () => (closed = true));
      busy.on("data", () => {});
      for (let i = 0; i < 10; i++) {
        busy.write("x");
        await sleep(100);
      }
      expect(closed).toBe(false);
      busy.destroy();
    } finally {
      await srv.stop();
    }
  }, 30_000);

  test("--max-buffered: a reader that stops while others broadcast is dropped (slow consumer)", async () => {
    // Echo never needs the limit (a peer that stops reading stops being read: backpressure),
    // so the output must come from others: line-protocol broadcasts to a frozen reader. The
    // reader is a child process stopped with SIGSTOP, so it really reads nothing.
    const srv = await startServer(["--protocol", "line", "--port", "0", "--high-water", "1024", "--max-buffered", "65536"]);
    const reader = Bun.spawn([bunPath, "-e", `
      const net = require("node:net");
      const s = net.connect(${srv.port}, "127.0.0.1", () => { console.log("ready"); });
      s.on("data", () => {});
    `], { stdout: "pipe", stderr: "inherit" });
    try {
      const out = reader.stdout.getReader();
      const { value } = await out.read();
      expect(new TextDecoder().decode(value)).toContain("ready");
      reader.kill("SIGSTOP");
      const talker = await connect(srv.port);
      talker.on("error", () => {});
      const line = "x".repeat(8000) + "\n";
      // Several MiB in total: more than the frozen reader's socket buffers plus 64 KiB.
      for (let i = 0; i < 2000 && !srv.stderr().includes("slow consumer"); i++) {
        talker.write(line);
        if (i % 50 === 49) await sleep(5);
      }
      await waitFor(() => srv.stderr().includes("slow consumer"), 15_000, "slow-consumer log line");
      expect(srv.stderr()).toMatch(/closed as slow consumer \(\d+ bytes queued, the next write would pass maxBuffered 65536\)/);
      talker.destroy();
      // The server keeps serving others.
      const other = await connect(srv.port);
      other.destroy();
      expect(srv.isAlive()).toBe(true);
    } finally {
      reader.kill("SIGKILL");
      await srv.stop();
    }
  }, 60_000);
});

describe("client CLI", () => {
  test("echo TEXT prints sent, received and rtt", async () => {
    const srv = await startEchoServer();
    try {
      const r = await runClientCli(["--protocol", "echo", "--port", String(srv.port), "echo", "hello"]);
      expect(r.code).toBe(0);
      const lines = r.stdout.trimEnd().split("\n");
      expect(lines[0]).toBe(`sent     "hello" (5 bytes)`);
      expect(lines[1]).toBe(`received "hello" (5 bytes)`);
      expect(lines[2]).toMatch(/^rtt +\d+ us$/);
    } finally {
      await srv.stop();
    }
  }, 30_000);

  test("several words and non-ASCII text round-trip", async () => {
    const srv = await startEchoServer();
    try {
      const r = await runClientCli(["--protocol", "echo", "--port", String(srv.port), "echo", "héllo", "wörld ✓"]);
      expect(r.code).toBe(0);
      const bytes = Buffer.byteLength("héllo wörld ✓");
      expect(r.stdout).toContain(`received "héllo wörld ✓" (${bytes} bytes)`);
    } finally {
      await srv.stop();
    }
  }, 30_000);

  test("echo over IPv6 with --host ::1", async () => {
    const srv = await startEchoServer([], "::1");
    try {
      const r = await runClientCli(["--protocol", "echo", "--host", "::1", "--port", String(srv.port), "echo", "v6"]);
      expect(r.code).toBe(0);
      expect(r.stdout).toContain(`received "v6" (2 bytes)`);
    } finally {
      await srv.stop();
    }
  }, 30_000);

  test("no server: exits non-zero with a clear message", async () => {
    const port = await unusedPort();
    const r = await runClientCli(["--port", String(port), "echo", "hello"], 15_000);
    expect(r.code).not.toBe(0);
    expect(r.code).not.toBeNull(); // it exited by itself, not by our timeout
    expect(r.stderr).toContain(`cannot connect to 127.0.0.1:${port}`);
    expect(r.stderr).toContain("ECONNREFUSED");
    expect(r.stdout).not.toContain("received");
  }, 30_000);

  test("usage errors exit 2 with one line and where help is; --help and --version exit 0", async () => {
    const cases: [string[], string][] = [
      [[], "no command given"],
      [["frobnicate"], 'unknown command "frobnicate"'],
      [["echo"], "echo needs TEXT"],
      [["--port", "x", "echo", "a"], '--port: expected an integer, got "x"'],
      [["--protocol", "line", "ping"], "ping is not supported by the line protocol"],
    ];
    for (const [args, reason] of cases) {
      const r = await runClientCli(args);
      expect(r.code).toBe(2);
      expect(r.stdout).toBe("");
      expect(r.stderr).toStartWith(`bunpoll-client: ${reason}`);
      expect(r.stderr).toEndWith("; try 'bun run src/client.ts --help'\n");
      expect(r.stderr.split("\n")).toHaveLength(2);
    }
    const help = await runClientCli(["--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain("usage: bun run src/client.ts [options] COMMAND [ARGS]\n");
    expect(help.stdout).toContain("echo TEXT");
    const version = await runClientCli(["--version"]);
    expect(version.code).toBe(0);
    expect(version.stdout.trim()).toBe(`bunpoll client ${VERSION}`);
  }, 30_000);

  test("through `npm run client` the usage line and the hint name it", async () => {
    const env = { ...process.env, npm_lifecycle_event: "client", npm_lifecycle_script: "bun run src/client.ts" };
    const help = Bun.spawnSync([bunPath, "src/client.ts", "--help"], { cwd: ROOT, env });
    expect(help.stdout.toString()).toContain("usage: npm run client -- [options] COMMAND [ARGS]\n");
    const bad = Bun.spawnSync([bunPath, "src/client.ts", "nope"], { cwd: ROOT, env });
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr.toString()).toBe(`bunpoll-client: unknown command "nope"; try 'npm run client -- --help'\n`);
  });

  test("a 1-byte echo says 1 byte", async () => {
    const srv = await startEchoServer();
    try {
      const r = await runClientCli(["--protocol", "echo", "--port", String(srv.port), "echo", "x"]);
      expect(r.code).toBe(0);
      expect(r.stdout).toContain(`sent     "x" (1 byte)\n`);
      expect(r.stdout).toContain(`received "x" (1 byte)\n`);
    } finally {
      await srv.stop();
    }
  }, 30_000);

  test("refused for want of a token: the error name is said once", async () => {
    const srv = await startServer(["--protocol", "framed", "--port", "0", "--auth-token", "sekret"]);
    try {
      const r = await runClientCli(["--port", String(srv.port), "ping", "--count", "1"]);
      expect(r.code).toBe(1);
      expect(r.stderr).toBe(`bunpoll-client: cannot connect to 127.0.0.1:${srv.port}: the server refused the handshake: unauthorized\n`);
    } finally {
      await srv.stop();
    }
  }, 30_000);

  test("interactive: 30 input lines and no listener leak warning", async () => {
    const srv = await startServer(["--protocol", "framed", "--port", "0"]);
    try {
      const p = new ClientProcess(["--port", String(srv.port), "interactive"]);
      await p.waitOut(/^connected to /m);
      // Node warns (MaxListenersExceededWarning) once an emitter has 11 listeners for one event.
      p.write("/ping\n".repeat(30) + "/exit\n");
      expect(await p.exitCode(20_000)).toBe(0);
      expect(p.stdout.match(/^pong in /gm)).toHaveLength(30);
      expect(p.stderr).toBe("");
    } finally {
      await srv.stop();
    }
  }, 30_000);
});
