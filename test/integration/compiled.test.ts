// The single-file executable: `bun build --compile src/server.ts` (what the package.json
// `build` script does, here into a temporary directory), then the binary on its own.

import { describe, test, expect, beforeAll, afterAll } from "bun:test";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { bunPath, run, startServer, killAll } from "../util/process.ts";
import { expectEcho, patternBytes, connect, readToEnd, withTimeout } from "../util/tcp.ts";

let dir = "";
let binary = "";

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "bunpoll-compiled-"));
  binary = join(dir, "bunpoll");
  const r = await run([bunPath, "build", "--compile", "src/server.ts", "--outfile", binary], 120_000);
  if (r.code !== 0) throw new Error(`bun build --compile failed (${r.code}): ${r.stderr}${r.stdout}`);
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
    const bad = await run([binary, "--nope"]);
    expect(bad.code).toBe(2);
  });

  test("serves echo: round trips, then SIGTERM exits 0", async () => {
    const srv = await startServer(["--protocol", "echo", "--port", "0"], { command: [binary] });
    try {
      expect(srv.line).toMatch(/^bunpoll \S+ listening on 127\.0\.0\.1:\d+ \(echo\), pid \d+$/);
      await expectEcho(srv.port, Buffer.from("hello from the compiled binary"));
      await expectEcho(srv.port, patternBytes(2 * 1024 * 1024, 3), { timeoutMs: 30_000 });
      // An open connection is closed cleanly on SIGTERM.
      const s = await connect(srv.port);
      const ended = readToEnd(s, 15_000);
      const code = await srv.stop("SIGTERM");
      expect(code).toBe(0);
      expect((await withTimeout(ended, 15_000, "FIN")).ended).toBe(true);
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
