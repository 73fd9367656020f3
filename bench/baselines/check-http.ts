// Correctness smoke check of the HTTP benchmark servers (not a benchmark): run it after
// changing one. `bench/run.ts --protocol http` checks one GET per round; this checks what
// the scenarios rely on, over a raw socket:
//
//   bun bench/baselines/check-http.ts [--servers bunpoll,bunpoll-fetch,bun-serve,bun-serve-fetch,node-http,c-http]
//
// Per server: GET /plaintext and GET /json answer 200 with TechEmpower's bodies and a
// Content-Length; three pipelined requests, split mid-request across two writes, are
// answered in order on one connection (what wrk.lua's 16-deep batches need); the last one
// says "Connection: close" and the server closes after answering it.

import { ensureCServer, waitForPort } from "../lib/servers.ts";

const root = new URL("../..", import.meta.url).pathname;
const bun = process.execPath;

const PLAIN = "Hello, World!";
const JSON_BODY = '{"message":"Hello, World!"}';

interface Response {
  status: number;
  headers: Map<string, string>;
  body: string;
}

/** Split `text` into complete HTTP/1.1 responses (Content-Length bodies only). */
function parseResponses(text: string): Response[] {
  const out: Response[] = [];
  let off = 0;
  while (off < text.length) {
    const end = text.indexOf("\r\n\r\n", off);
    if (end < 0) throw new Error(`incomplete response head: ${JSON.stringify(text.slice(off, off + 80))}`);
    const lines = text.slice(off, end).split("\r\n");
    const m = /^HTTP\/1\.1 (\d{3}) /.exec(lines[0]!);
    if (m === null) throw new Error(`bad status line: ${JSON.stringify(lines[0])}`);
    const headers = new Map<string, string>();
    for (const l of lines.slice(1)) {
      const c = l.indexOf(":");
      headers.set(l.slice(0, c).trim().toLowerCase(), l.slice(c + 1).trim());
    }
    const len = Number(headers.get("content-length"));
    if (!Number.isInteger(len)) throw new Error(`no Content-Length in ${JSON.stringify(lines[0])}`);
    out.push({ status: Number(m[1]), headers, body: text.slice(end + 4, end + 4 + len) });
    off = end + 4 + len;
  }
  return out;
}

/** Write `parts` (a short pause between them), read until the server closes or the deadline. */
async function exchange(port: number, parts: string[], timeoutMs = 5000): Promise<{ text: string; closed: boolean }> {
  let text = "";
  let closed = false;
  let onClose = (): void => {};
  const done = new Promise<void>((r) => (onClose = r));
  const sock = await Bun.connect({
    hostname: "127.0.0.1",
    port,
    socket: {
      data: (_s, d) => void (text += d.toString("latin1")),
      close: () => {
        closed = true;
        onClose();
      },
    },
  });
  for (const p of parts) {
    sock.write(p);
    await Bun.sleep(30);
  }
  await Promise.race([done, Bun.sleep(timeoutMs)]);
  if (!closed) sock.terminate();
  return { text, closed };
}

function assert(ok: boolean, msg: string): asserts ok {
  if (!ok) throw new Error(msg);
}

const get = (path: string, close = false): string =>
  `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n${close ? "Connection: close\r\n" : ""}\r\n`;

async function checkHttp(port: number): Promise<void> {
  for (const [path, body, type] of [["/plaintext", PLAIN, "text/plain"], ["/json", JSON_BODY, "application/json"]] as const) {
    const { text, closed } = await exchange(port, [get(path, true)]);
    assert(closed, `GET ${path} with Connection: close: the server did not close`);
    const [r, ...rest] = parseResponses(text);
    assert(r !== undefined && rest.length === 0, `GET ${path}: expected one response, got ${rest.length + (r ? 1 : 0)}`);
    assert(r.status === 200, `GET ${path}: status ${r.status}`);
    assert(r.body === body, `GET ${path}: body ${JSON.stringify(r.body)}`);
    // A string body's type is text/plain;charset=utf-8 even when the Response's headers
    // are empty: Bun.serve sends it, so a server in Bun.serve's shape must too.
    assert((r.headers.get("content-type") ?? "").startsWith(type), `GET ${path}: content-type ${r.headers.get("content-type") ?? "missing"}, expected ${type}`);
  }
  const all = get("/plaintext") + get("/json") + get("/plaintext", true);
  const { text, closed } = await exchange(port, [all.slice(0, 20), all.slice(20)]);
  const rs = parseResponses(text);
  assert(rs.length === 3, `pipelined: ${rs.length} responses to 3 requests`);
  assert(rs[0]!.body === PLAIN && rs[1]!.body === JSON_BODY && rs[2]!.body === PLAIN, "pipelined: responses out of order or wrong");
  assert(closed, "pipelined: no close after the request that said Connection: close");
}

const table: Record<string, (port: number) => string[] | null> = {
  bunpoll: (port) => [bun, `${root}src/server.ts`, "--protocol", "http", "--host", "127.0.0.1", "--port", `${port}`],
  "bunpoll-fetch": (port) => [bun, `${root}bench/servers/bunpoll-fetch.ts`, "--port", `${port}`],
  "bun-serve": (port) => [bun, `${root}bench/baselines/bun-serve.ts`, "--mode", "routes", "--port", `${port}`],
  "bun-serve-fetch": (port) => [bun, `${root}bench/baselines/bun-serve.ts`, "--mode", "fetch", "--port", `${port}`],
  "node-http": (port) => {
    const node = Bun.which("node");
    return node ? [node, `${root}bench/baselines/node-http.js`, "--port", `${port}`] : null;
  },
  "c-http": (port) => {
    const exe = ensureCServer(root, "c-http");
    return exe ? [exe, "--port", `${port}`] : null;
  },
};

let names = Object.keys(table);
const i = process.argv.indexOf("--servers");
if (i > 0 && process.argv[i + 1]) names = process.argv[i + 1]!.split(",");
for (const n of names) {
  if (!(n in table)) {
    console.error(`check-http: unknown server ${n} (known: ${Object.keys(table).join(",")})`);
    process.exit(2);
  }
}

let port = 24000 + (process.pid % 1000);
let failures = 0;
let passes = 0;
for (const name of names) {
  const cmd = table[name]!(++port);
  if (!cmd) {
    console.log(`skip ${name} (not available here)`);
    continue;
  }
  const proc = Bun.spawn(cmd, { stdout: "ignore", stderr: "ignore" });
  try {
    if (!(await waitForPort(port, 10000, proc))) throw new Error("server did not start");
    await checkHttp(port);
    console.log(`ok   ${name}`);
    passes++;
  } catch (e) {
    console.log(`FAIL ${name}: ${(e as Error).message}`);
    failures++;
  } finally {
    proc.kill("SIGKILL");
    await proc.exited;
  }
}
console.log(`${passes} passed, ${failures} failed`);
process.exit(failures ? 1 : 0);
