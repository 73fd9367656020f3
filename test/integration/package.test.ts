// The package as a consumer gets it: `import ... from "bunpoll"` through package.json
// "exports", inside this repository (self-reference) and in a new project that installed the
// `npm pack` tarball (what "files" lets through); and the README's commands and client
// example as a new user would run them. Real processes, real sockets.

import { describe, test, expect, afterAll } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { listen, serve, Reactor } from "bunpoll";
import { connect as connectClient } from "bunpoll/client";
import * as fromSources from "../../src/index.ts";
import { ROOT, bunPath, run, killAll, startServer } from "../util/process.ts";
import { expectEcho } from "../util/tcp.ts";

const PKG = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { name: string; version: string; scripts: Record<string, string> };
const README = readFileSync(join(ROOT, "README.md"), "utf8");
const dirs: string[] = [];

afterAll(async () => {
  await killAll();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe("package exports", () => {
  test('"bunpoll" inside the repository is src/index.ts, and serves', async () => {
    expect(serve).toBe(fromSources.serve);
    expect(listen).toBe(fromSources.listen);
    expect(Reactor).toBe(fromSources.Reactor);
    expect(connectClient).toBe(fromSources.connect);
    const server = listen({ port: 0, socket: { data(socket, bytes) { socket.write(bytes); } } });
    try {
      await expectEcho(server.port, Buffer.from("self-reference"));
    } finally {
      await server.stop();
    }
  });

  test("a new project installs the packed tarball and serves echo with it", async () => {
    const dir = mkdtempSync(join(tmpdir(), "bunpoll-consumer-"));
    dirs.push(dir);
    const pack = await run(["npm", "pack", "--silent", "--pack-destination", dir], 30_000);
    expect(pack.code).toBe(0);
    const tarball = join(dir, `${PKG.name}-${PKG.version}.tgz`);
    writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "consumer", private: true, type: "module" }));
    // bunpoll has no runtime dependencies, so this needs no network.
    const install = await run(["npm", "install", "--offline", "--no-audit", "--no-fund", "--prefix", dir, tarball], 30_000);
    expect(install.stderr).not.toContain("ERR");
    expect(install.code).toBe(0);
    const installed = JSON.parse(readFileSync(join(dir, "node_modules/bunpoll/package.json"), "utf8"));
    expect(installed.version).toBe(PKG.version);
    for (const f of ["LICENSE", "README.md", "CHANGELOG.md", "src/index.ts", "src/client/index.ts", "ffi/libc.ts", "docs/PROTOCOL.md", "examples/client.ts"]) {
      expect(Bun.file(join(dir, "node_modules/bunpoll", f)).size).toBeGreaterThan(0);
    }
    // Tests and benchmarks stay out of the package.
    expect(await Bun.file(join(dir, "node_modules/bunpoll/test/util/process.ts")).exists()).toBe(false);
    expect(await Bun.file(join(dir, "node_modules/bunpoll/bench/run.ts")).exists()).toBe(false);

    writeFileSync(join(dir, "app.ts"), `
import { listen } from "bunpoll";
const server = listen({ port: 0, socket: { data(socket, bytes) { socket.write(bytes); } } });
console.log("port " + server.port);
process.on("SIGTERM", async () => { await server.stop(); process.exit(0); });
`);
    const app = Bun.spawn([bunPath, "app.ts"], { cwd: dir, stdout: "pipe", stderr: "pipe" });
    try {
      const reader = app.stdout.getReader();
      let out = "";
      while (!/port \d+\n/.test(out)) {
        const { value, done } = await reader.read();
        if (done) throw new Error(`app exited before serving: ${out} ${await new Response(app.stderr).text()}`);
        out += new TextDecoder().decode(value);
      }
      const port = Number(/port (\d+)/.exec(out)![1]);
      await expectEcho(port, Buffer.from("hello from a consumer project"));
      app.kill("SIGTERM");
      expect(await app.exited).toBe(0);
    } finally {
      app.kill("SIGKILL");
    }
  }, 60_000);
});

/** The bodies of the README's fenced blocks in `lang`. */
function fencedBlocks(lang: string): string[] {
  return [...README.matchAll(new RegExp("^```" + lang + "\\n([\\s\\S]*?)^```$", "gm"))].map((m) => m[1]!);
}

describe("README", () => {
  test("every shell command runs after npm install: npm scripts that exist, no bare bun", () => {
    const commands = fencedBlocks("sh").flatMap((b) => b.split("\n")).map((l) => l.replace(/#.*$/, "").trim()).filter((l) => l !== "");
    // Inline commands a reader would copy: `npm ...`, `npx ...`, `bun run ...`.
    const inline = [...README.matchAll(/`((?:npm|npx|bun run) [^`]+)`/g)].map((m) => m[1]!.replace(/\s+/g, " "));
    const all = [...commands, ...inline];
    expect(commands.length).toBeGreaterThan(10);
    for (const cmd of all) {
      for (const part of cmd.split("&&").map((p) => p.trim())) {
        expect(part).not.toMatch(/^bun /); // not on PATH after the quick start
        const script = /^npm run(?: -s)? ([\w:]+)/.exec(part)?.[1] ?? (/^npm (start|test)\b/.exec(part)?.[1]);
        if (script !== undefined) expect(Object.keys(PKG.scripts)).toContain(script);
        const file = /^npx bun (?:run )?(\S+\.ts)\b/.exec(part)?.[1];
        if (file !== undefined) expect(existsSync(join(ROOT, file))).toBe(true);
      }
    }
  });

  test("the client example is examples/client.ts and runs to completion against a server", async () => {
    const blocks = fencedBlocks("ts").filter((b) => b.includes('from "bunpoll/client"'));
    expect(blocks).toHaveLength(1);
    const example = blocks[0]!;
    expect(readFileSync(join(ROOT, "examples/client.ts"), "utf8")).toBe(example);

    const srv = await startServer(["--protocol", "framed", "--port", "0"]);
    const dir = mkdtempSync(join(tmpdir(), "bunpoll-readme-"));
    dirs.push(dir);
    try {
      // The example names port 7000; this server has whatever port was free.
      expect(example.match(/port: 7000\b/g)).toHaveLength(1);
      writeFileSync(join(dir, "client.ts"), example.replace(/port: 7000\b/, `port: ${srv.port}`));
      // "bunpoll/client" resolves as in a project that depends on this repository.
      mkdirSync(join(dir, "node_modules"));
      symlinkSync(ROOT, join(dir, "node_modules/bunpoll"));
      const r = await run([bunPath, join(dir, "client.ts")], 15_000);
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0); // exits by itself: not killed at the timeout
      expect(r.stdout).toMatch(/^\d+(\.\d+)?(e-\d+)? \d+\n$/); // the round-trip ms and our client id
    } finally {
      expect(await srv.stop()).toBe(0);
    }
  }, 30_000);

  /** The README's one ts block containing `marker`: equal to examples/FILE, and run with port 0. */
  async function runExample(marker: string, file: string, port: number): Promise<string> {
    const blocks = fencedBlocks("ts").filter((b) => b.includes(marker));
    expect(blocks).toHaveLength(1);
    const example = blocks[0]!;
    expect(readFileSync(join(ROOT, "examples", file), "utf8")).toBe(example);
    const dir = mkdtempSync(join(tmpdir(), "bunpoll-readme-"));
    dirs.push(dir);
    const portRe = new RegExp(`port: ${port}\\b`, "g");
    expect(example.match(portRe)).toHaveLength(1);
    writeFileSync(join(dir, file), example.replace(portRe, "port: 0"));
    mkdirSync(join(dir, "node_modules"));
    symlinkSync(ROOT, join(dir, "node_modules/bunpoll"));
    const r = await run([bunPath, join(dir, file)], 15_000);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0); // stops by itself
    return r.stdout;
  }

  test("the library example is examples/listen.ts (type-checked by npm test) and serves, then stops by itself", async () => {
    expect(await runExample('import { listen } from "bunpoll";', "listen.ts", 5050)).toMatch(/^[1-9]\d* 0\n$/); // its port, no connections yet
  }, 30_000);

  test("the HTTP example is examples/http.ts (type-checked by npm test) and serves, then stops by itself", async () => {
    expect(await runExample('import { serve } from "bunpoll";', "http.ts", 3000)).toMatch(/^http:\/\/127\.0\.0\.1:[1-9]\d*\/\n$/);
  }, 30_000);
});
