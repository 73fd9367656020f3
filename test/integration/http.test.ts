// HTTP/1.1 end to end: the CLI's built-in app with curl (a real client) and raw sockets
// (exact bytes: pipelining, framing errors), and the library's serve() in process with
// real sockets.

import { afterAll, afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { serve, type HttpServer } from "../../src/serve.ts";
import { staticFiles } from "../../src/index.ts";
import { killAll, run, startServer, type ServerProcess } from "../util/process.ts";
import { connect, readToEnd, sleep, waitFor } from "../util/tcp.ts";

const dirs: string[] = [];
const servers: HttpServer[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.stop({ graceful: false });
});
afterAll(async () => {
  await killAll();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** Sends raw bytes, returns everything until the server closes (or timeoutMs). */
async function raw(port: number, bytes: string | Uint8Array, timeoutMs = 5000): Promise<{ text: string; ended: boolean }> {
  const s = await connect(port, { allowHalfOpen: true });
  s.write(bytes);
  const { data, ended } = await readToEnd(s, timeoutMs);
  s.destroy();
  return { text: data.toString("latin1"), ended };
}

/** Splits a stream of responses with Content-Length bodies. */
function responses(text: string): { status: number; headers: Record<string, string>; body: string }[] {
  const out: { status: number; headers: Record<string, string>; body: string }[] = [];
  let p = 0;
  while (p < text.length) {
    const end = text.indexOf("\r\n\r\n", p);
    if (end < 0) throw new Error(`incomplete response at ${p}: ${JSON.stringify(text.slice(p, p + 80))}`);
    const lines = text.slice(p, end).split("\r\n");
    const status = Number(lines[0]!.split(" ")[1]);
    const headers: Record<string, string> = {};
    for (const l of lines.slice(1)) {
      const i = l.indexOf(":");
      headers[l.slice(0, i).toLowerCase()] = l.slice(i + 1).trim();
    }
    const len = Number(headers["content-length"] ?? 0);
    out.push({ status, headers, body: text.slice(end + 4, end + 4 + len) });
    p = end + 4 + len;
  }
  return out;
}

describe("the CLI's HTTP app, with curl", () => {
  let server: ServerProcess;
  const url = (path: string) => `http://127.0.0.1:${server.port}${path}`;

  test("start", async () => {
    server = await startServer(["--protocol", "http", "--port", "0"]);
    expect(server.protocol).toBe("http");
  });

  test("/plaintext and /json are the TechEmpower test types; HEAD has no body", async () => {
    const p = await run(["curl", "-s", "-i", url("/plaintext")]);
    expect(p.code).toBe(0);
    const [r] = responses(p.stdout);
    expect(r!.status).toBe(200);
    expect(r!.body).toBe("Hello, World!");
    expect(r!.headers["content-type"]).toBe("text/plain");
    expect(r!.headers["date"]).toMatch(/GMT$/);
    const j = await run(["curl", "-s", url("/json")]);
    expect(JSON.parse(j.stdout)).toEqual({ message: "Hello, World!" });
    const h = await run(["curl", "-s", "-I", url("/plaintext")]);
    expect(h.stdout).toContain("content-length: 13");
    expect(h.stdout.endsWith("\r\n\r\n")).toBe(true); // no body after the head
  });

  test("/echo returns a 2 MiB body intact, Content-Length and chunked uploads alike", async () => {
    const dir = mkdtempSync(join(tmpdir(), "bunpoll-http-"));
    dirs.push(dir);
    const body = Buffer.alloc(2 * 1024 * 1024);
    for (let i = 0; i < body.length; i++) body[i] = (i * 31 + 7) & 0xff;
    writeFileSync(join(dir, "in.bin"), body);
    for (const extra of [[], ["-H", "Transfer-Encoding: chunked"]]) {
      const r = await run(["curl", "-s", "-o", join(dir, "out.bin"), "-w", "%{http_code}", "--data-binary", `@${join(dir, "in.bin")}`, ...extra, url("/echo")], 20_000);
      expect(r.stdout).toBe("200");
      expect(Buffer.compare(await Bun.file(join(dir, "out.bin")).bytes().then((b) => Buffer.from(b)), body)).toBe(0);
    }
  });

  test("keep-alive: curl reuses one connection for several requests", async () => {
    const r = await run(["curl", "-s", "-v", url("/healthz"), url("/plaintext"), url("/json")]);
    expect(r.stdout).toBe('ok\nHello, World!{"message":"Hello, World!"}');
    expect((r.stderr.match(/Connected to/g) ?? []).length).toBe(1);
    expect(r.stderr).toMatch(/Re-?using (existing )?connection/i);
  });

  test("405 with Allow, 404, and a request curl is made to send with both framings: 400 and close", async () => {
    const m = await run(["curl", "-s", "-i", "-X", "DELETE", url("/stats")]);
    const [r405] = responses(m.stdout);
    expect(r405!.status).toBe(405);
    expect(r405!.headers["allow"]).toBe("GET, HEAD");
    expect(responses((await run(["curl", "-s", "-i", url("/missing")])).stdout)[0]!.status).toBe(404);
    const bad = await run(["curl", "-s", "-i", "-H", "Transfer-Encoding: chunked", "-H", "Content-Length: 3", "--data", "abc", url("/echo")]);
    const [r400] = responses(bad.stdout);
    expect(r400!.status).toBe(400);
    expect(r400!.headers["connection"]).toBe("close");
    expect(r400!.body).toContain("Content-Length and Transfer-Encoding");
  });

  test("pipelined requests in one write are answered in order; Connection: close ends after its response", async () => {
    const req = (path: string, extra = "") => `GET ${path} HTTP/1.1\r\nHost: x\r\n${extra}\r\n`;
    const { text, ended } = await raw(server.port, req("/healthz") + req("/plaintext") + req("/json") + req("/healthz", "Connection: close\r\n") + req("/plaintext"));
    const rs = responses(text);
    expect(rs.map((r) => r.body)).toEqual(["ok\n", "Hello, World!", '{"message":"Hello, World!"}', "ok\n"]);
    expect(rs[3]!.headers["connection"]).toBe("close");
    expect(ended).toBe(true); // closed: the fifth request was never read
  });

  test("OPTIONS * is answered with the methods the server takes", async () => {
    const { text } = await raw(server.port, "OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    const [r] = responses(text);
    expect(r!.status).toBe(204);
    expect(r!.headers["allow"]).toContain("GET");
  });

  test("HTTP/1.0 closes after its response unless keep-alive is asked", async () => {
    const { text, ended } = await raw(server.port, "GET /healthz HTTP/1.0\r\n\r\n");
    expect(responses(text)[0]!.headers["connection"]).toBe("close");
    expect(ended).toBe(true);
  });

  test("refused requests: the status and a message naming the problem, then close; nothing after is read", async () => {
    const cases: [string, number, string][] = [
      ["GET / HTTP/1.1\r\n\r\n", 400, "Host"],
      ["GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400, "whitespace"],
      ["GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505, "HTTP/2.0"],
      ["POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400, "Content-Length"],
      ["POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n", 400, "chunk size"],
      [`GET /${"a".repeat(9000)} HTTP/1.1\r\nHost: a\r\n\r\n`, 414, "request line"],
      [`GET / HTTP/1.1\r\nHost: a\r\nX: ${"b".repeat(17_000)}\r\n\r\n`, 431, "header section"],
    ];
    for (const [bytes, status, says] of cases) {
      const { text, ended } = await raw(server.port, bytes + "GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n");
      const rs = responses(text);
      expect(rs.length).toBe(1);
      expect(rs[0]!.status).toBe(status);
      expect(rs[0]!.body).toContain(says);
      expect(ended).toBe(true);
    }
  });

  test("the client sends FIN after its request: the response still comes, then EOF", async () => {
    const s = await connect(server.port, { allowHalfOpen: true });
    s.end("GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n");
    const { data, ended } = await readToEnd(s, 5000);
    expect(responses(data.toString("latin1"))[0]!.body).toBe("Hello, World!");
    expect(ended).toBe(true);
  });

  test("stop: SIGTERM exits 0", async () => {
    expect(await server.stop()).toBe(0);
  });

  test("--max-body, --max-request-line, --max-header-bytes and --body-timeout set the limits", async () => {
    const srv = await startServer(["--protocol", "http", "--port", "0", "--max-body", "10", "--max-request-line", "100", "--max-header-bytes", "300", "--body-timeout", "0.2"]);
    try {
      const status = async (bytes: string) => responses((await raw(srv.port, bytes)).text)[0]!.status;
      expect(await status("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n")).toBe(413);
      expect(await status(`GET /${"a".repeat(120)} HTTP/1.1\r\nHost: x\r\n\r\n`)).toBe(414);
      expect(await status(`GET / HTTP/1.1\r\nHost: x\r\nX: ${"b".repeat(300)}\r\n\r\n`)).toBe(431);
      expect(await status("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nab")).toBe(408);
      const ok = await raw(srv.port, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nConnection: close\r\n\r\n0123456789");
      expect(responses(ok.text)[0]!.body).toBe("0123456789");
    } finally {
      await srv.stop();
    }
  });

  test("SIGTERM with requests in flight: every request that arrived is answered, then EOF; exit 0", async () => {
    const srv = await startServer(["--protocol", "http", "--port", "0"]);
    const socks = await Promise.all([1, 2, 3].map(() => connect(srv.port, { allowHalfOpen: true })));
    const reads = socks.map((s) => readToEnd(s, 10_000));
    const firstBytes = socks.map((s) => new Promise<void>((r) => s.once("data", () => r())));
    const batch = "GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n".repeat(40);
    for (const s of socks) s.write(batch);
    await Promise.all(firstBytes); // the server is answering: the requests have arrived
    srv.proc.kill("SIGTERM");
    for (const r of await Promise.all(reads)) {
      const rs = responses(r.data.toString("latin1"));
      expect(rs.length).toBe(40); // nothing accepted is dropped
      expect(rs.every((x) => x.status === 200 && x.body === "Hello, World!")).toBe(true);
      expect(r.ended).toBe(true); // a clean EOF, no reset
    }
    for (const s of socks) s.end(); // our FIN: the server stops lingering for it
    expect(await srv.exited).toBe(0);
  });
});

describe("serve() in Bun.serve's shape", () => {
  function start(options: Parameters<typeof serve>[0]): HttpServer {
    const s = serve({ port: 0, reactorOptions: { log: () => {} }, ...options });
    servers.push(s);
    return s;
  }

  test("fetch gets a Request-like request: method, url, headers, text(), json(); async handlers are answered in request order", async () => {
    const seen: string[] = [];
    const s = start({
      async fetch(req) {
        const delay = Number(new URL(req.url).searchParams.get("delay") ?? 0);
        await sleep(delay);
        seen.push(`${req.method} ${new URL(req.url).pathname} ${req.headers.get("x-tag")}`);
        if (req.method === "POST") return Response.json({ got: await req.json() });
        return new Response(`done ${delay}`);
      },
    });
    const req = (path: string, tag: string) => `GET ${path} HTTP/1.1\r\nHost: h\r\nX-Tag: ${tag}\r\n\r\n`;
    const body = JSON.stringify({ a: [1, 2] });
    const post = `POST /p HTTP/1.1\r\nHost: h\r\nX-Tag: p\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`;
    const { text } = await raw(s.port, req("/slow?delay=80", "a") + req("/fast?delay=0", "b") + post);
    const rs = responses(text);
    expect(rs.map((r) => r.body)).toEqual(["done 80", "done 0", '{"got":{"a":[1,2]}}']);
    expect(seen[0]).toBe("GET /fast b"); // the second handler finished first...
    expect(seen).toContain("POST /p p"); // ...and the responses still went out in order
  });

  test("routes: static Responses, :params, per-method tables with 405 + Allow, fetch for the rest", async () => {
    const s = start({
      routes: {
        "/static": new Response("fixed", { headers: { "x-static": "1" } }),
        "/users/:id": (req) => new Response(`user ${req.params.id}`),
        "/files/*": () => new Response("wild"),
        "/items": { GET: () => new Response("list"), POST: async (req) => new Response(`made ${await req.text()}`, { status: 201 }) },
      },
      fetch: () => new Response("fallback", { status: 404 }),
    });
    const get = async (path: string, method = "GET", body?: string) => {
      const r = await fetch(`http://127.0.0.1:${s.port}${path}`, { method, body });
      return [r.status, await r.text(), r.headers.get("allow"), r.headers.get("x-static")] as const;
    };
    expect(await get("/static")).toEqual([200, "fixed", null, "1"]);
    expect(await get("/users/42")).toEqual([200, "user 42", null, null]);
    expect(await get("/users/a%20b")).toEqual([200, "user a b", null, null]);
    expect(await get("/files/a/b/c")).toEqual([200, "wild", null, null]);
    expect(await get("/items")).toEqual([200, "list", null, null]);
    expect(await get("/items", "POST", "x")).toEqual([201, "made x", null, null]);
    expect(await get("/items", "DELETE")).toEqual([405, "Method Not Allowed\n", "GET, POST, HEAD", null]);
    expect(await get("/nothing")).toEqual([404, "fallback", null, null]);
  });

  test("a response without Content-Type gets its body's own type, as Bun.serve writes it", async () => {
    const s = start({ fetch: (req) => (req.url.endsWith("/json") ? Response.json({ a: 1 }) : new Response("hi")) });
    const text = await fetch(`http://127.0.0.1:${s.port}/`);
    expect(text.headers.get("content-type")).toBe("text/plain;charset=utf-8");
    expect(await text.text()).toBe("hi");
    const json = await fetch(`http://127.0.0.1:${s.port}/json`);
    expect(json.headers.get("content-type")).toBe("application/json;charset=utf-8");
    expect(await json.json()).toEqual({ a: 1 });
  });

  test("a handler's Connection: close ends the connection after its response; its own Content-Type is written once; no body, no type", async () => {
    const s = start({
      fetch(req) {
        if (req.url.endsWith("/bye")) return new Response("bye", { headers: { connection: "Close", "content-type": "text/x-bye" } });
        return new Response(null, { status: 204 });
      },
    });
    const { text, ended } = await raw(s.port, "GET /empty HTTP/1.1\r\nHost: h\r\n\r\nGET /bye HTTP/1.1\r\nHost: h\r\n\r\nGET /never HTTP/1.1\r\nHost: h\r\n\r\n");
    const rs = responses(text);
    expect(rs.map((r) => [r.status, r.body])).toEqual([[204, ""], [200, "bye"]]); // nothing after the close
    expect(rs[0]!.headers["content-type"]).toBeUndefined();
    expect(rs[1]!.headers["content-type"]).toBe("text/x-bye");
    expect(text.toLowerCase().match(/content-type/g)).toEqual(["content-type"]); // written once
    expect(rs[1]!.headers["connection"]).toBe("close");
    expect(ended).toBe(true);
  });

  test("a handler that throws gets the error handler's response (else 500); the connection goes on", async () => {
    const s = start({
      fetch(req) {
        if (req.url.endsWith("/boom")) throw new Error("boom");
        return new Response("fine");
      },
      error: (e) => new Response(`caught ${e.message}`, { status: 500 }),
    });
    const { text } = await raw(s.port, "GET /boom HTTP/1.1\r\nHost: h\r\n\r\nGET /ok HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
    expect(responses(text).map((r) => [r.status, r.body])).toEqual([[500, "caught boom"], [200, "fine"]]);
  });

  test("maxRequestBodySize: 413 before the body is read; requestIP names the client", async () => {
    let ip: unknown = null;
    const s = start({
      maxRequestBodySize: 10,
      fetch(req, server) {
        ip = server.requestIP(req);
        return new Response("ok");
      },
    });
    const { text, ended } = await raw(s.port, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n");
    expect(responses(text)[0]!.status).toBe(413);
    expect(ended).toBe(true);
    await fetch(`http://127.0.0.1:${s.port}/`);
    expect(ip).toMatchObject({ address: "127.0.0.1", family: "IPv4" });
  });

  test("req.signal aborts when the client goes away before the response", async () => {
    let aborted = false;
    let started = false;
    const s = start({
      async fetch(req) {
        started = true;
        req.signal.addEventListener("abort", () => (aborted = true));
        await sleep(300);
        return new Response("late");
      },
    });
    const c = await connect(s.port);
    c.write("GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    await waitFor(() => started, 5000, "the handler to start");
    c.resetAndDestroy(); // gone: a FIN alone is a half-close, after which the response is still sent
    await waitFor(() => aborted, 5000, "the abort");
  });

  test("bodyTimeout: a body that stops arriving gets 408 and the connection closes", async () => {
    const s = start({ bodyTimeout: 0.2, async fetch(req) { return new Response(await req.text()); } });
    const t0 = performance.now();
    const { text, ended } = await raw(s.port, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc");
    expect(responses(text).map((r) => r.status)).toEqual([408]);
    expect(ended).toBe(true);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(150);
  });

  test("a 64 MiB response to a paused client, with 30 pipelined async requests settling meanwhile, is delivered whole and in order", async () => {
    const big = new Uint8Array(64 * 1024 * 1024).fill(97);
    const s = start({
      async fetch(req) {
        if (req.url.endsWith("/big")) return new Response(big);
        await sleep(5 + (Number(req.url.split("/s")[1]) % 7) * 7);
        return new Response("ok");
      },
    });
    let reqs = "GET /big HTTP/1.1\r\nHost: a\r\n\r\n";
    for (let i = 0; i < 30; i++) reqs += `GET /s${i} HTTP/1.1\r\nHost: a\r\n\r\n`;
    reqs += "GET /s99 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
    const c = await connect(s.port, { allowHalfOpen: true });
    c.write(reqs);
    c.pause(); // other responses settle while the big body waits for the client: they must not push it past maxBuffered
    await sleep(700);
    c.resume();
    const { data, ended } = await readToEnd(c, 30_000);
    const text = data.toString("latin1");
    expect(data.length).toBeGreaterThan(big.length);
    expect((text.match(/HTTP\/1\.1 200/g) ?? []).length).toBe(32);
    expect(ended).toBe(true);
  }, 60_000);

  test("a client that sends FIN in the middle of a body is closed, not held open", async () => {
    const s = start({ idleTimeout: 0, async fetch(req) { return new Response(await req.text()); } });
    for (const bytes of ["POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabcde", "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab"]) {
      const c = await connect(s.port, { allowHalfOpen: true });
      c.end(bytes);
      const { ended } = await readToEnd(c, 5000);
      expect(ended).toBe(true);
    }
    await waitFor(() => s.connections === 0, 5000, "the server to close both");
  });

  test("a handler's statusText cannot inject a header (CR/LF in it: the standard phrase is written)", async () => {
    const s = start({ fetch: () => new Response("x", { status: 200, statusText: "OK\r\nX-Evil: 1" }) });
    const { text } = await raw(s.port, "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    expect(text.startsWith("HTTP/1.1 200 OK\r\n")).toBe(true);
    expect(text.toLowerCase()).not.toContain("x-evil");
  });

  test("static files: a request whose body is malformed gets 400 and its opened file is closed at once", async () => {
    const dir = mkdtempSync(join(tmpdir(), "bunpoll-http-"));
    dirs.push(dir);
    writeFileSync(join(dir, "f.bin"), "0123456789");
    const s = start({ idleTimeout: 0, fetch: staticFiles(dir) as never });
    const fds = () => readdirSync("/proc/self/fd").length;
    const before = fds();
    for (let i = 0; i < 20; i++) {
      const { text } = await raw(s.port, "GET /f.bin HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n");
      expect(responses(text)[0]!.status).toBe(400);
    }
    await waitFor(() => fds() <= before, 5000, "fds back to baseline (not left to the GC)");
  });

  test("a stray CRLF before a request line is ignored (RFC 9112 §2.2)", async () => {
    const s = start({ fetch: () => new Response("fine") });
    const { text } = await raw(s.port, "\r\nGET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    expect(responses(text).map((r) => [r.status, r.body])).toEqual([[200, "fine"]]);
  });

  test("Expect: 100-continue gets 100 Continue before the body is sent", async () => {
    const s = start({ async fetch(req) { return new Response(await req.text()); } });
    const c = await connect(s.port);
    c.write("POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 5\r\nConnection: close\r\n\r\n");
    const first = await new Promise<string>((resolve) => c.once("data", (d: Buffer) => resolve(d.toString())));
    expect(first).toBe("HTTP/1.1 100 Continue\r\n\r\n");
    c.write("hello");
    const { data } = await readToEnd(c, 5000);
    expect(responses(data.toString("latin1"))[0]!.body).toBe("hello");
  });
});
