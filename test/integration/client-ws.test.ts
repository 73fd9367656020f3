// The client CLI's `--protocol ws` as a process, against the real server's HTTP listener
// (/ws/echo, /ws/chat) sharing one hub with framed and line listeners, and against a
// WebSocket server nobody here wrote (Python's websockets, from Debian), which checks our
// handshake and masking itself. Every process is killed in afterAll.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ClientProcess, killAll, runClientCli, startServer, type ServerProcess } from "../util/process.ts";
import { waitFor } from "../util/tcp.ts";

afterAll(killAll);

async function listenerPorts(srv: ServerProcess, n: number): Promise<Record<string, number>> {
  const re = /listening on 127\.0\.0\.1:(\d+) \((\w+)\)/g;
  await waitFor(() => [...srv.stdout().matchAll(re)].length >= n, 10_000, `${n} listening lines`);
  const ports: Record<string, number> = {};
  for (const m of srv.stdout().matchAll(re)) ports[m[2]!] = Number(m[1]);
  return ports;
}

describe("client --protocol ws against the real server", () => {
  let srv: ServerProcess;
  let ports: Record<string, number>;
  const ws = (args: string[]) => runClientCli(["--protocol", "ws", "--port", String(ports.http), ...args]);

  beforeAll(async () => {
    srv = await startServer(["--listen", "http:0", "--listen", "framed:0", "--listen", "line:0"]);
    ports = await listenerPorts(srv, 3);
  }, 30_000);

  afterAll(async () => {
    if (srv) expect(await srv.stop()).toBe(0);
  }, 30_000);

  test("ping: WebSocket ping/pong round trips on /ws/echo, each RTT and a summary", async () => {
    const r = await ws(["ping", "--count", "3", "--interval", "20"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const lines = r.stdout.trimEnd().split("\n");
    for (let i = 0; i < 3; i++) expect(lines[i]).toMatch(new RegExp(`^seq=${i + 1} time=[\\d.]+(ns|us|ms)$`));
    expect(lines[3]).toBe(`--- 127.0.0.1:${ports.http}/ws/echo (ws) ping statistics ---`);
    expect(lines[4]).toBe("3 sent, 3 received, 0% loss");
  }, 30_000);

  test("echo: with --url and with --json; a path the server does not serve fails naming the status", async () => {
    const r = await runClientCli(["--url", `ws://127.0.0.1:${ports.http}/ws/echo`, "echo", "héllo", "wörld"]);
    expect(r.code).toBe(0);
    const bytes = Buffer.byteLength("héllo wörld");
    expect(r.stdout).toContain(`sent     "héllo wörld" (${bytes} bytes)\nreceived "héllo wörld" (${bytes} bytes)\nrtt      `);
    const j = await ws(["echo", "--json", "x".repeat(70_000)]);
    expect(j.code).toBe(0);
    expect(JSON.parse(j.stdout).received).toBe("x".repeat(70_000));
    const bad = await ws(["--path", "/ws/nope", "echo", "hi"]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toBe(`bunpoll-client: cannot connect to 127.0.0.1:${ports.http}: the server refused the WebSocket upgrade of /ws/nope: 404 Not Found: Not Found\n`);
  }, 30_000);

  test("a ws listener hears a framed client's BROADCAST; a ws broadcast reaches a line client and the ws listener", async () => {
    const wsListen = new ClientProcess(["--protocol", "ws", "--port", String(ports.http), "listen"]);
    const lineListen = new ClientProcess(["--protocol", "line", "--port", String(ports.line), "listen"]);
    await wsListen.waitErr(new RegExp(`^listening on 127\\.0\\.0\\.1:${ports.http}/ws/chat \\(ws\\); Ctrl-C to stop$`, "m"));
    await lineListen.waitErr(/^listening on /m);
    const framed = await runClientCli(["--port", String(ports.framed), "broadcast", "from framed"]);
    expect(framed.code).toBe(0);
    const framedId = /as client (\d+)/.exec(framed.stdout)![1];
    await wsListen.waitOut(new RegExp(`^broadcast from ${framedId}: from framed$`, "m"));
    const b = await ws(["broadcast", "from ws ✓"]);
    expect(b.code).toBe(0);
    expect(b.stdout).toBe("broadcast sent (the ws protocol does not acknowledge, so the recipients are unknown)\n");
    await lineListen.waitOut(/^broadcast from \d+: from ws ✓$/m);
    // The listener is another hub client: it hears the ws broadcast too, once.
    await wsListen.waitOut(/^broadcast from \d+: from ws ✓$/m);
    expect(wsListen.stdout.split("from ws ✓").length).toBe(2);
    wsListen.proc.kill("SIGINT");
    lineListen.proc.kill("SIGINT");
    expect(await wsListen.exitCode()).toBe(0);
    expect(await lineListen.exitCode()).toBe(0);
  }, 30_000);

  test("interactive on /ws/chat: plain text is broadcast, /ping answers, /echo says why not, /exit leaves", async () => {
    const lineListen = new ClientProcess(["--protocol", "line", "--port", String(ports.line), "listen"]);
    await lineListen.waitErr(/^listening on /m);
    const repl = new ClientProcess(["--protocol", "ws", "--port", String(ports.http), "interactive"]);
    await repl.waitOut(/^connected to 127\.0\.0\.1:\d+\/ws\/chat \(ws\)\. \/help/m);
    repl.write("hello from the repl\n/ping\n/echo x\n");
    await lineListen.waitOut(/^broadcast from \d+: hello from the repl$/m);
    await repl.waitOut(/^pong in [\d.]+(ns|us|ms)$/m);
    await repl.waitOut(/^error: echo needs an echo endpoint such as \/ws\/echo: \/ws\/chat broadcasts what it gets$/m);
    const framed = await runClientCli(["--port", String(ports.framed), "broadcast", "to the repl"]);
    expect(framed.code).toBe(0);
    await repl.waitOut(/^broadcast from \d+: to the repl$/m);
    repl.write("/exit\n");
    expect(await repl.exitCode()).toBe(0);
    lineListen.proc.kill("SIGINT");
    expect(await lineListen.exitCode()).toBe(0);
  }, 30_000);

  test("bench: C connections x D in flight on /ws/echo, messages/s and latency percentiles", async () => {
    const r = await ws(["bench", "--conns", "3", "--depth", "8", "--size", "200", "--duration", "1", "--json"]);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j).toMatchObject({ protocol: "ws", conns: 3, depth: 8, size: 200, errors: 0, unanswered: 0, stoppedEarly: null });
    expect(j.completed).toBeGreaterThan(100);
    expect(j.msgsPerSec).toBeGreaterThan(0);
    for (const p of ["p50", "p90", "p99", "p999"]) expect(j.latencyNs[p]).toBeGreaterThan(0);
    const text = await ws(["bench", "--conns", "2", "--depth", "4", "--duration", "0.3"]);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/^bench: ws 127\.0\.0\.1:\d+, closed loop, 2 conns x depth 4, 64-byte payloads/m);
    expect(text.stdout).toMatch(/^ {4}p99 /m);
  }, 30_000);

  test("usage: --path needs ws, wss:// is refused, send and stats do not exist in ws", async () => {
    const cases: [string[], RegExp][] = [
      [["--port", "1", "--path", "/x", "ping"], /--path applies to --protocol ws only/],
      [["--url", "wss://127.0.0.1/ws/echo", "ping"], /wss:\/\/ \(WebSocket over TLS\) is not supported/],
      [["--url", "ws://127.0.0.1:1/", "--port", "2", "ping"], /--url gives the port already/],
      [["--protocol", "ws", "send", "1", "hi"], /send is not supported by the ws protocol/],
      [["--protocol", "ws", "--path", "no-slash", "ping"], /--path: a WebSocket path starts with "\/"/],
    ];
    const results = await Promise.all(cases.map(([args]) => runClientCli(args)));
    results.forEach((r, i) => {
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(cases[i]![1]);
    });
  }, 30_000);
});

test("ws listen reconnects after the server restarts, saying it closed with 1001", async () => {
  const first = await startServer(["--listen", "http:0"]);
  const port = first.port;
  const listen = new ClientProcess(["--protocol", "ws", "--port", String(port), "listen", "--backoff-max", "0.2"]);
  await listen.waitErr(/^listening on /m);
  expect(await first.stop()).toBe(0);
  await listen.waitErr(/^connection lost: the server closed the WebSocket with 1001 \(going away\)(: [^\n]*)?; reconnecting$/m);
  const second = await startServer(["--listen", `http:${port}`]);
  await listen.waitErr(new RegExp(`^reconnected to 127\\.0\\.0\\.1:${port}/ws/chat \\(ws\\)$`, "m"));
  const framedLess = await runClientCli(["--protocol", "ws", "--port", String(port), "broadcast", "after the restart"]);
  expect(framedLess.code).toBe(0);
  await listen.waitOut(/^broadcast from \d+: after the restart$/m);
  listen.proc.kill("SIGINT");
  expect(await listen.exitCode()).toBe(0);
  expect(await second.stop()).toBe(0);
}, 30_000);

test("against Python's websockets server (not ours): echo, ping, bench and a clean close", async () => {
  const dir = mkdtempSync(join(tmpdir(), "bunpoll-wsc-"));
  writeFileSync(
    join(dir, "server.py"),
    `import asyncio, websockets
async def echo(ws, path=None):
    async for m in ws:
        await ws.send(m)
    print("closed", ws.close_code, flush=True)
async def main():
    async with websockets.serve(echo, "127.0.0.1", 0, compression=None, max_size=None) as s:
        print("port", s.sockets[0].getsockname()[1], flush=True)
        await asyncio.Future()
asyncio.run(main())
`,
  );
  const py = Bun.spawn(["/usr/bin/python3", join(dir, "server.py")], { stdout: "pipe", stderr: "pipe" });
  try {
    let out = "";
    void (async () => {
      for await (const c of py.stdout) out += new TextDecoder().decode(c);
    })();
    await waitFor(() => /port (\d+)/.test(out), 10_000, `python's websockets server to listen; stdout ${JSON.stringify(out)}`);
    const url = `ws://127.0.0.1:${/port (\d+)/.exec(out)![1]}/anything`;
    const echo = await runClientCli(["--url", url, "echo", "through python"]);
    expect(echo.stderr).toBe("");
    expect(echo.code).toBe(0);
    expect(echo.stdout).toContain('received "through python"');
    // Python's server saw our close frame (1000), not a dropped connection (1006).
    await waitFor(() => /closed 1000/.test(out), 5_000, `python to see close 1000; stdout ${JSON.stringify(out)}`);
    const ping = await runClientCli(["--url", url, "ping", "--count", "2", "--interval", "10"]);
    expect(ping.code).toBe(0);
    expect(ping.stdout).toContain("2 sent, 2 received, 0% loss");
    const bench = await runClientCli(["--url", url, "bench", "--conns", "2", "--depth", "4", "--duration", "0.5", "--json"]);
    expect(bench.code).toBe(0);
    expect(JSON.parse(bench.stdout)).toMatchObject({ errors: 0, unanswered: 0 });
  } finally {
    py.kill("SIGKILL");
    await py.exited;
    rmSync(dir, { recursive: true, force: true });
  }
}, 30_000);
