// The client CLI and library against the real server process (src/server.ts), over loopback.
// Several client processes at once: broadcast, send and stats between them, across
// protocols (one server, one hub), a client that never reads, and every command with the
// server absent. Every wait has a deadline and every process is killed in afterAll.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { connect } from "../../src/client/index.ts";
import { ClientProcess, killAll, runClientCli, startServer, type ServerProcess } from "../util/process.ts";
import { unusedPort, waitFor } from "../util/tcp.ts";

afterAll(killAll);

/** All listening lines of a multi-listener server: protocol -> port. */
async function listenerPorts(srv: ServerProcess, n: number): Promise<Record<string, number>> {
  const re = /listening on 127\.0\.0\.1:(\d+) \((\w+)\)/g;
  await waitFor(() => [...srv.stdout().matchAll(re)].length >= n, 10_000, `${n} listening lines`);
  const ports: Record<string, number> = {};
  for (const m of srv.stdout().matchAll(re)) ports[m[2]!] = Number(m[1]);
  return ports;
}

/** Runs the CLI against `port` (and protocol) to completion. */
function cli(port: number, protocol: string, args: string[], timeoutMs = 20_000) {
  return runClientCli(["--port", String(port), "--protocol", protocol, ...args], timeoutMs);
}

const CONNECTED_RE = /^connected to 127\.0\.0\.1:(\d+) \((\w+)\)(?: as client (\d+))?/m;

// --- one server, four listeners, one hub ---------------------------------------------------

describe("client CLI against the real server", () => {
  let srv: ServerProcess;
  let ports: Record<string, number>;

  beforeAll(async () => {
    srv = await startServer(["--listen", "framed:0", "--listen", "json:0", "--listen", "line:0", "--listen", "echo:0"]);
    ports = await listenerPorts(srv, 4);
  });

  afterAll(async () => {
    if (srv) expect(await srv.stop()).toBe(0);
  });

  test.each(["framed", "json"])("%s: ping prints each RTT and a min/avg/p99 summary", async (protocol) => {
    const r = await cli(ports[protocol]!, protocol, ["ping", "--count", "3", "--interval", "20"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const lines = r.stdout.trimEnd().split("\n");
    expect(lines[0]).toMatch(new RegExp(`^connected to 127\\.0\\.0\\.1:${ports[protocol]} \\(${protocol}\\) as client \\d+`));
    for (let i = 1; i <= 3; i++) expect(lines[i]).toMatch(new RegExp(`^seq=${i} time=[\\d.]+(ns|us|ms)$`));
    expect(lines[4]).toBe(`--- 127.0.0.1:${ports[protocol]} (${protocol}) ping statistics ---`);
    expect(lines[5]).toBe("3 sent, 3 received, 0% loss");
    expect(lines[6]).toMatch(/^rtt min\/avg\/p99\/max = ([\d.]+(ns|us|ms)\/){3}[\d.]+(ns|us|ms)$/);
  });

  test.each(["framed", "json", "echo"])("%s: echo prints sent, received and rtt", async (protocol) => {
    const r = await cli(ports[protocol]!, protocol, ["echo", "héllo", "wörld"]);
    expect(r.code).toBe(0);
    const bytes = Buffer.byteLength("héllo wörld");
    expect(r.stdout).toContain(`sent     "héllo wörld" (${bytes} bytes)\nreceived "héllo wörld" (${bytes} bytes)\nrtt      `);
    expect(r.stdout).toMatch(/^rtt +\d+ us$/m);
  });

  test("stats: pretty-printed (framed) and --json (json) describe the same server", async () => {
    const pretty = await cli(ports.framed!, "framed", ["stats"]);
    expect(pretty.code).toBe(0);
    expect(pretty.stdout).toContain(`server stats: 127.0.0.1:${ports.framed} (framed)`);
    for (const row of ["uptime", "clients", "connections", "traffic", "messages", "errors", "backpressure", "latency", "by kind"]) {
      expect(pretty.stdout).toMatch(new RegExp(`^  ${row} `, "m"));
    }
    expect(pretty.stdout).toMatch(/^ {4}hello +\d+ +0$/m);
    const json = await cli(ports.json!, "json", ["stats", "--json"]);
    expect(json.code).toBe(0);
    expect(json.stderr).toMatch(CONNECTED_RE); // stdout is pure JSON
    const s = JSON.parse(json.stdout);
    expect(s.protocol).toBe("json");
    expect(s.connectionsTotal).toBeGreaterThan(1);
    expect(s.kinds.find((k: { name: string }) => k.name === "auth").in).toBeGreaterThan(0);
    expect(s.closeReasons).toBeObject();
  });

  test("listen (framed, json, line) + broadcast + send between separate client processes", async () => {
    const lf = new ClientProcess(["--port", String(ports.framed), "listen"]);
    const lj = new ClientProcess(["--port", String(ports.json), "--protocol", "json", "listen"]);
    const ll = new ClientProcess(["--port", String(ports.line), "--protocol", "line", "listen"]);
    const fId = (await lf.waitErr(/listening on 127\.0\.0\.1:\d+ \(framed\) as client (\d+); Ctrl-C to stop/))[1]!;
    const jId = (await lj.waitErr(/listening on 127\.0\.0\.1:\d+ \(json\) as client (\d+)/))[1]!;
    await ll.waitErr(/listening on 127\.0\.0\.1:\d+ \(line\); Ctrl-C to stop/);

    const b = await cli(ports.framed!, "framed", ["broadcast", "hello everyone"]);
    expect(b.code).toBe(0);
    const senderId = b.stdout.match(CONNECTED_RE)![3]!;
    const recipients = Number(b.stdout.match(/broadcast delivered to (\d+) clients?/)![1]);
    expect(recipients).toBeGreaterThanOrEqual(3);
    for (const l of [lf, lj, ll]) await l.waitOut(new RegExp(`^broadcast from ${senderId}: hello everyone$`, "m"));

    // json -> framed and framed -> json direct messages; the line listener sees neither.
    const s1 = await cli(ports.json!, "json", ["send", fId, "psst, framed"]);
    expect(s1.code).toBe(0);
    expect(s1.stdout).toContain(`sent to client ${fId}`);
    const s2 = await cli(ports.framed!, "framed", ["send", jId, "psst, json"]);
    expect(s2.code).toBe(0);
    await lf.waitOut(/^direct from \d+: psst, framed$/m);
    await lj.waitOut(/^direct from \d+: psst, json$/m);

    // A line client's broadcast reaches the framed and json listeners.
    const lb = await cli(ports.line!, "line", ["broadcast", "from a line client"]);
    expect(lb.code).toBe(0);
    expect(lb.stdout).toContain("broadcast sent (the line protocol does not acknowledge");
    await lf.waitOut(/^broadcast from \d+: from a line client$/m);
    await lj.waitOut(/^broadcast from \d+: from a line client$/m);

    const st = await cli(ports.framed!, "framed", ["stats", "--json"]);
    expect(JSON.parse(st.stdout).clients).toBeGreaterThanOrEqual(3);

    for (const l of [lf, lj, ll]) l.proc.kill("SIGINT");
    for (const l of [lf, lj, ll]) expect(await l.exitCode()).toBe(0);
    expect(ll.stdout).not.toContain("psst");
  }, 60_000);

  test("listen --json prints one JSON object per message", async () => {
    const l = new ClientProcess(["--port", String(ports.framed), "listen", "--json"]);
    await l.waitErr(/listening on/);
    await cli(ports.json!, "json", ["broadcast", "as json"]);
    const line = (await l.waitOut(/^\{.*"as json".*\}$/m))[0];
    expect(JSON.parse(line)).toMatchObject({ kind: "broadcast", text: "as json" });
    l.proc.kill("SIGINT");
    expect(await l.exitCode()).toBe(0);
  }, 30_000);

  test("an error reply is a clear message and exit 1", async () => {
    const r = await cli(ports.framed!, "framed", ["send", "4000000000", "anyone?"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe("bunpoll-client: send failed: the server answered no_such_client (no such client)\n");
    const j = await cli(ports.json!, "json", ["send", "127.0.0.1:1", "anyone?"]);
    expect(j.code).toBe(1);
    expect(j.stderr).toContain("no_such_client");
  });

  test("operations a protocol does not have: exit 2, naming the protocol", async () => {
    for (const [protocol, args] of [["line", ["ping"]], ["line", ["send", "1", "x"]], ["line", ["stats"]], ["echo", ["broadcast", "x"]], ["echo", ["listen"]], ["echo", ["ping"]]] as const) {
      const r = await cli(ports[protocol]!, protocol, [...args]);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(`${args[0]} is not supported by the ${protocol} protocol`);
    }
  });

  test("interactive on a pipe: /ping, /echo, /exit", async () => {
    const p = new ClientProcess(["--port", String(ports.framed), "interactive"]);
    p.write("/ping\n/echo hi\n/exit\n");
    expect(await p.exitCode()).toBe(0);
    const lines = p.stdout.trimEnd().split("\n");
    expect(lines[0]).toMatch(/^connected to 127\.0\.0\.1:\d+ \(framed\) as client \d+\. \/help lists the commands; plain text is broadcast\.$/);
    expect(lines[1]).toMatch(/^pong in [\d.]+(ns|us|ms)$/);
    expect(lines[2]).toMatch(/^echo: hi \([\d.]+(ns|us|ms)\)$/);
    expect(lines).toHaveLength(3);
    expect(p.stderr).toBe("");
  }, 30_000);

  test("interactive: messages from others appear while it waits for input; plain text is broadcast", async () => {
    const watcher = new ClientProcess(["--port", String(ports.json), "--protocol", "json", "listen"]);
    await watcher.waitErr(/listening on/);
    const p = new ClientProcess(["--port", String(ports.framed), "interactive"]);
    const myId = (await p.waitOut(/as client (\d+)\./))[1]!;
    const b = await cli(ports.line!, "line", ["broadcast", "hi repl"]);
    expect(b.code).toBe(0);
    await p.waitOut(/^broadcast from \d+: hi repl$/m);
    p.write("good morning\n");
    await p.waitOut(/^\(delivered to \d+\)$/m);
    await watcher.waitOut(new RegExp(`^broadcast from ${myId}: good morning$`, "m"));
    p.write(`/send ${myId} note to self\n/stats\n/help\n/bogus\n/send 4000000000 x\n`);
    await p.waitOut(new RegExp(`^direct from ${myId}: note to self$`, "m"));
    await p.waitOut(/^sent to client \d+$/m);
    await p.waitOut(/^server stats: /m);
    await p.waitOut(/^ {2}\/broadcast TEXT/m);
    await p.waitOut(/^unknown command \/bogus; \/help lists the commands$/m);
    await p.waitOut(/^error: no_such_client \(no such client\)$/m);
    p.endInput(); // end of input is /exit
    expect(await p.exitCode()).toBe(0);
    watcher.proc.kill("SIGINT");
    expect(await watcher.exitCode()).toBe(0);
  }, 30_000);

  test("interactive on the line protocol: chat works, the rest says it is not supported", async () => {
    const watcher = new ClientProcess(["--port", String(ports.framed), "listen"]);
    await watcher.waitErr(/listening on/);
    const p = new ClientProcess(["--port", String(ports.line), "--protocol", "line", "interactive"]);
    await p.waitOut(/^connected to 127\.0\.0\.1:\d+ \(line\)\./m);
    p.write("chat over lines\n/ping\n/exit\n");
    expect(await p.exitCode()).toBe(0);
    expect(p.stdout).toContain("error: ping is not supported by the line protocol");
    await watcher.waitOut(/^broadcast from \d+: chat over lines$/m);
    watcher.proc.kill("SIGINT");
    expect(await watcher.exitCode()).toBe(0);
  }, 30_000);

  test("demo walks through every operation (framed, json)", async () => {
    for (const protocol of ["framed", "json"]) {
      const r = await cli(ports[protocol]!, protocol, ["demo"]);
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      const hello = protocol === "framed" ? "HELLO -> WELCOME" : "auth -> auth_ok";
      expect(r.stdout).toMatch(new RegExp(`^A  ${hello} +client id \\d+$`, "m"));
      expect(r.stdout).toMatch(/^A {2}\S+ -> \S+ +rtt [\d.]+(ns|us|ms)$/m);
      expect(r.stdout).toMatch(/^B {2}<- broadcast from \d+ +"hi from A/m);
      expect(r.stdout).toMatch(/^A {2}<- direct message from \d+ +"psst, A"$/m);
      expect(r.stdout).toMatch(/-> error no_such_client/);
      expect(r.stdout).toMatch(/^demo done: 10 exchanges$/m);
    }
  }, 30_000);

  test("demo on line and echo: what exists, and what is not supported by the protocol", async () => {
    const line = await cli(ports.line!, "line", ["demo"]);
    expect(line.code).toBe(0);
    expect(line.stdout).toMatch(/^A {2}ping +not supported by the line protocol$/m);
    expect(line.stdout).toMatch(/^B {2}<- broadcast from \d+ +"hi from A/m);
    const echo = await cli(ports.echo!, "echo", ["demo"]);
    expect(echo.code).toBe(0);
    expect(echo.stdout).toMatch(/^A {2}bytes "hello, bunpoll" +-> same bytes "hello, bunpoll" in /m);
    expect(echo.stdout).toMatch(/^A {2}broadcast +not supported by the echo protocol$/m);
  }, 30_000);

  test("bench, closed loop, --json: every request answered, percentiles ordered", async () => {
    const r = await cli(ports.framed!, "framed", ["bench", "--conns", "2", "--depth", "8", "--size", "32", "--duration", "0.5", "--json"]);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j).toMatchObject({ protocol: "framed", mode: "closed", conns: 2, depth: 8, size: 32, errors: 0, unanswered: 0, stoppedEarly: null });
    expect(j.completed).toBeGreaterThan(100);
    expect(j.msgsPerSec).toBeGreaterThan(0);
    expect(j.bytesPerSec).toBeCloseTo(j.msgsPerSec * 32, -1);
    const l = j.latencyNs;
    expect(l.count).toBe(j.sent);
    expect(0 < l.min && l.min <= l.p50 && l.p50 <= l.p90 && l.p90 <= l.p99 && l.p99 <= l.p999 && l.p999 <= l.max).toBe(true);
    expect(r.stderr).not.toContain("\r"); // no progress bar when stderr is not a terminal
  }, 30_000);

  test("bench, open loop: sends on schedule, exactly rate x duration requests", async () => {
    // 3333/s: an interval that is no exact binary fraction of a millisecond.
    const r = await cli(ports.json!, "json", ["bench", "--conns", "2", "--rate", "3333", "--duration", "0.3", "--json"]);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j).toMatchObject({ mode: "open", rate: 3333, sent: 1000, unanswered: 0, errors: 0 });
    // Every request has a latency sample, including replies that came after the window.
    expect(j.latencyNs.count).toBe(1000);
    expect(j.completed).toBeGreaterThan(0);
  }, 30_000);

  test("bench on echo and line, human-readable report", async () => {
    const e = await cli(ports.echo!, "echo", ["bench", "--conns", "1", "--depth", "4", "--size", "100", "--duration", "0.3"]);
    expect(e.code).toBe(0);
    expect(e.stdout).toContain("bench: echo 127.0.0.1:");
    expect(e.stdout).toMatch(/^ {2}throughput +\S+ msgs\/s, [\d.]+ MB\/s of payload each way$/m);
    for (const p of ["p50", "p90", "p99", "p99.9", "max"]) expect(e.stdout).toMatch(new RegExp(`^ {4}${p.replace(".", "\\.")} +[\\d.]+(ns|us|ms|s)  =+$`, "m"));
    const l = await cli(ports.line!, "line", ["bench", "--conns", "3", "--depth", "2", "--size", "64", "--duration", "0.3", "--json"]);
    expect(l.code).toBe(0);
    const j = JSON.parse(l.stdout);
    expect(j.completed).toBeGreaterThan(0);
    // Every line reaches the other two bench connections (plus nobody else on this hub).
    expect(j.deliveries).toBeGreaterThanOrEqual(2 * j.completed);
  }, 30_000);

  test("the library: typed methods and a message event", async () => {
    const a = await connect({ port: ports.framed! });
    const b = await connect({ port: ports.json!, protocol: "json" });
    try {
      expect(a.clientId).toBeGreaterThan(0);
      expect(b.label).toMatch(/^127\.0\.0\.1:\d+$/);
      const got = new Promise<string>((resolve) => b.on("message", (m) => m.kind === "direct" && resolve(`${m.fromId}:${m.text}`)));
      await a.send(b.clientId!, "typed");
      expect(await got).toBe(`${a.clientId}:typed`);
      expect(await a.echo(Uint8Array.of(0, 255, 1))).toEqual(Uint8Array.of(0, 255, 1));
      expect(await b.ping()).toBeGreaterThan(0);
      expect((await a.stats()).connectionsActive).toBeGreaterThanOrEqual(2);
      await expect(a.send(4_000_000_000, "x")).rejects.toMatchObject({ code: "no_such_client" });
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });
});

// --- a client that never reads ---------------------------------------------------------------

describe("a client that never reads", () => {
  test("is dropped as a slow consumer; the others get every message; it reconnects when it wakes", async () => {
    const srv = await startServer(["--protocol", "framed", "--port", "0", "--high-water", "16384", "--max-buffered", "65536"]);
    try {
      const stalled = new ClientProcess(["--port", String(srv.port), "listen", "--backoff-max", "0.2"]);
      const healthy = new ClientProcess(["--port", String(srv.port), "listen"]);
      await stalled.waitErr(/listening on/);
      await healthy.waitErr(/listening on/);
      stalled.proc.kill("SIGSTOP"); // a real process that stops reading

      // 8 MiB of broadcasts: more than the kernel's socket buffers (a 4 MiB send buffer at
      // most here) plus --max-buffered. Paced by what the healthy listener has printed, so
      // that only the stalled one can fall behind by more than --max-buffered.
      const sender = await connect({ port: srv.port });
      const payload = "x".repeat(8192);
      const n = 1024;
      const window = 4;
      for (let i = 0; i < n; i += window) {
        await Promise.all(Array.from({ length: window }, (_, k) => sender.broadcast(`${i + k} ${payload}`)));
        await waitFor(() => healthy.stdoutLines >= i + window, 10_000, `the healthy listener to print broadcast ${i + window}`, 1);
      }
      expect(healthy.stdoutLines).toBe(n);
      expect(healthy.stdout.split("\n").slice(0, n).every((l, i) => l.startsWith("broadcast from ") && l.includes(`: ${i} x`))).toBe(true);
      const s = await sender.stats();
      expect(s.slowConsumersDropped).toBe(1);
      expect(s.clients).toBe(2); // sender and healthy
      await sender.close();

      stalled.proc.kill("SIGCONT");
      await stalled.waitErr(/connection lost: .*; reconnecting/);
      await stalled.waitErr(/reconnected to 127\.0\.0\.1:\d+ \(framed\) as client \d+/);
      for (const l of [stalled, healthy]) l.proc.kill("SIGINT");
      expect(await stalled.exitCode()).toBe(0);
      expect(await healthy.exitCode()).toBe(0);
      expect(srv.stderr()).toContain("slow consumer");
    } finally {
      await srv.stop();
    }
  }, 90_000);
});

// --- authentication --------------------------------------------------------------------------

describe("auth token", () => {
  test("--auth-token and BUNPOLL_AUTH_TOKEN authenticate; a wrong token is a clear failure", async () => {
    const srv = await startServer(["--listen", "framed:0", "--listen", "json:0", "--listen", "line:0", "--auth-token", "s3cret"]);
    try {
      const ports = await listenerPorts(srv, 3);
      for (const protocol of ["framed", "json"]) {
        const ok = await cli(ports[protocol]!, protocol, ["ping", "--count", "1", "--auth-token", "s3cret"]);
        expect(ok.code).toBe(0);
        const bad = await cli(ports[protocol]!, protocol, ["ping", "--count", "1", "--auth-token", "wrong"]);
        expect(bad.code).toBe(1);
        expect(bad.stderr).toContain(`cannot connect to 127.0.0.1:${ports[protocol]}: the server refused the handshake: unauthorized`);
        const none = await cli(ports[protocol]!, protocol, ["stats"]);
        expect(none.code).toBe(1);
        expect(none.stderr).toContain("unauthorized");
      }
      const viaEnv = new ClientProcess(["--port", String(ports.framed), "listen"], { BUNPOLL_AUTH_TOKEN: "s3cret" });
      await viaEnv.waitErr(/listening on .* as client \d+/);
      // The line protocol's token is its first line: the line client's broadcast arrives.
      const line = await cli(ports.line!, "line", ["broadcast", "authed line", "--auth-token", "s3cret"]);
      expect(line.code).toBe(0);
      await viaEnv.waitOut(/^broadcast from \d+: authed line$/m);
      // A listener refused by the server does not retry forever: it says why and exits 1.
      const refused = new ClientProcess(["--port", String(ports.line), "--protocol", "line", "listen", "--auth-token", "nope"]);
      expect(await refused.exitCode()).toBe(1);
      expect(refused.stderr).toContain("unauthorized");
      viaEnv.proc.kill("SIGINT");
      expect(await viaEnv.exitCode()).toBe(0);
    } finally {
      await srv.stop();
    }
  }, 60_000);
});

// --- no server ---------------------------------------------------------------------------------

describe("server absent", () => {
  test("every command exits 1 with one clear line", async () => {
    const port = await unusedPort();
    const commands: [string, string[]][] = [
      ["framed", ["ping"]], ["framed", ["echo", "x"]], ["framed", ["broadcast", "x"]], ["framed", ["send", "1", "x"]],
      ["framed", ["stats"]], ["framed", ["listen"]], ["framed", ["interactive"]], ["framed", ["demo"]],
      ["framed", ["bench", "--duration", "0.2"]], ["json", ["ping"]], ["line", ["listen"]], ["echo", ["echo", "x"]],
    ];
    await Promise.all(commands.map(async ([protocol, args]) => {
      const r = await cli(port, protocol, args, 15_000);
      expect(r.code).toBe(1);
      expect(r.stderr).toBe(`bunpoll-client: cannot connect to 127.0.0.1:${port}: connection refused (ECONNREFUSED; is the server running?)\n`);
    }));
  }, 60_000);
});

// --- usage -------------------------------------------------------------------------------------

describe("usage", () => {
  test("--help lists every command and flag", async () => {
    const r = await runClientCli(["--help"]);
    expect(r.code).toBe(0);
    for (const word of ["ping", "echo TEXT", "broadcast TEXT", "send ID TEXT", "stats", "listen", "interactive", "demo", "bench",
      "--host", "--port", "--protocol", "--auth-token", "--timeout", "--json", "--count", "--interval", "--conns", "--depth",
      "--size", "--duration", "--rate", "--backoff-max", "--max-retries", "--help", "--version", "BUNPOLL_AUTH_TOKEN"]) {
      expect(r.stdout).toContain(word);
    }
  });

  test("bad flags and arguments: the reason and where help is on stderr, exit 2", async () => {
    const cases: [string[], string][] = [
      [["--bogus", "ping"], "unknown option --bogus"],
      [["--protocol", "udp", "ping"], '--protocol: "udp" is not one of framed, json, line, echo'],
      [["echo", "x", "--count", "3"], "--count does not apply to echo (only to ping)"],
      [["ping", "extra"], 'ping takes no arguments, got "extra"'],
      [["send", "7"], "send needs ID and TEXT"],
      [["send", "abc", "x"], 'send: ID must be a client id (a number), got "abc"'],
      [["bench", "--conns", "0"], "--conns: must be >= 1"],
      [["--protocol", "line", "bench", "--conns", "1"], "the line protocol bench needs --conns >= 2"],
      [["--protocol", "framed", "bench", "--size", "70000"], "--size must be <= 65535 for the framed protocol"],
      [[], "no command given"],
    ];
    for (const [args, message] of cases) {
      const r = await runClientCli(args);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(message);
      expect(r.stderr).toEndWith("; try 'bun run src/client.ts --help'\n");
      expect(r.stdout).toBe("");
    }
  }, 60_000);
});
