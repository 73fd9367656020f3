// The single-file executables: `bun build --compile` of src/server.ts and src/client.ts (what
// the package.json `build` script does, here into a temporary directory), then the binaries on
// their own.

import { describe, test, expect, beforeAll, afterAll } from "bun:test";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { bunPath, run, startServer, killAll } from "../util/process.ts";
import { expectEcho, patternBytes, connect, readToEnd, waitFor, withTimeout } from "../util/tcp.ts";

let dir = "";
let binary = "";
let clientBinary = "";

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "bunpoll-compiled-"));
  binary = join(dir, "bunpoll");
  const r = await run([bunPath, "build", "--compile", "src/server.ts", "--outfile", binary], 120_000);
  if (r.code !== 0) throw new Error(`bun build --compile failed (${r.code}): ${r.stderr}${r.stdout}`);
  clientBinary = join(dir, "bunpoll-client");
  const c = await run([bunPath, "build", "--compile", "src/client.ts", "--outfile", clientBinary], 120_000);
  if (c.code !== 0) throw new Error(`bun build --compile (client) failed (${c.code}): ${c.stderr}${c.stdout}`);
}, 150_000);

afterAll(async () => {
  await killAll();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("compiled binary", () => {
  test("is an executable file", () => {
    const st = statSync(binary);
    expect(st.isFile()).toBe(true);
    expect(st.mode & 0o111).not.toBe(0);
  });

  test("--version and --help work without bun or the sources", async () => {
    const v = await run([binary, "--version"]);
    expect(v.code).toBe(0);
    expect(v.stdout).toMatch(/^bunpoll \d+\.\d+\.\d+\n$/);
    const h = await run([binary, "--help"]);
    expect(h.code).toBe(0);
    expect(h.stdout).toContain("--protocol");
    // The usage names the binary, not the sources it was built from.
    expect(h.stdout).toContain("usage: bunpoll [options]\n");
    expect(h.stdout).not.toContain("src/server.ts");
    const bad = await run([binary, "--nope"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toBe("bunpoll: unknown option --nope; try 'bunpoll --help'\n");
  });

  test("the client binary: --help and usage errors name it", async () => {
    const h = await run([clientBinary, "--help"]);
    expect(h.code).toBe(0);
    expect(h.stdout).toContain("usage: bunpoll-client [options] COMMAND [ARGS]\n");
    expect(h.stdout).toContain("  bunpoll-client ping --count 3 --interval 200\n");
    expect(h.stdout).not.toContain("src/client.ts");
    const bad = await run([clientBinary, "frobnicate"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toBe(`bunpoll-client: unknown command "frobnicate"; try 'bunpoll-client --help'\n`);
  });

  test("the client binary talks to the server binary", async () => {
    const srv = await startServer(["--protocol", "echo", "--port", "0"], { command: [binary] });
    try {
      const r = await run([clientBinary, "--protocol", "echo", "--port", String(srv.port), "echo", "compiled"]);
      expect(r.code).toBe(0);
      expect(r.stdout).toContain(`received "compiled" (8 bytes)`);
    } finally {
      expect(await srv.stop()).toBe(0);
    }
  }, 30_000);

  test("serves echo: round trips, then SIGTERM exits 0", async () => {
    const srv = await startServer(["--protocol", "echo", "--port", "0"], { command: [binary] });
    try {
      expect(srv.line).toMatch(/^bunpoll \S+ listening on 127\.0\.0\.1:\d+ \(echo\), pid \d+$/);
      await expectEcho(srv.port, Buffer.from("hello from the compiled binary"));
      await expectEcho(srv.port, patternBytes(2 * 1024 * 1024, 3), { timeoutMs: 30_000 });
      // An open connection is closed cleanly on SIGTERM. It must be served first: one still
      // in the listen backlog when the listener closes is reset by the kernel, not FIN'd.
      const s = await connect(srv.port);
      const ended = readToEnd(s, 15_000);
      s.write("x");
      await waitFor(() => s.bytesRead === 1, 10_000, "the byte echoed");
      const code = await srv.stop("SIGTERM");
      expect(code).toBe(0);
      const r = await withTimeout(ended, 15_000, "FIN");
      expect(r.ended).toBe(true);
      expect(r.data.toString()).toBe("x");
      expect(srv.stderr()).toContain("SIGTERM: stopping");
    } finally {
      await srv.stop("SIGKILL");
    }
  }, 60_000);

  test("IPv6 on ::1", async () => {
    const srv = await startServer(["--protocol", "echo", "--host", "::1", "--port", "0"], { command: [binary] });
    try {
      expect(srv.line).toContain("listening on [::1]:");
      await expectEcho(srv.port, Buffer.from("v6"), { host: "::1" });
    } finally {
      expect(await srv.stop()).toBe(0);
    }
  }, 30_000);
});
