// `--static DIR` end to end: the real server process serving a temp directory, talked to
// with curl (byte-exact files, content types, 304, ranges, index.html, traversal attempts,
// HEAD) and a raw socket (pipelined files and routes in order), and its fd count back to
// the baseline after many files, including transfers the client abandoned.

import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { killAll, run, runServerCli, startServer, type ServerProcess } from "../util/process.ts";
import { connect, readExactly, readToEnd, waitFor } from "../util/tcp.ts";

const base = mkdtempSync(join(tmpdir(), "bunpoll-static-"));
const root = join(base, "www");
afterAll(async () => {
  await killAll();
  rmSync(base, { recursive: true, force: true });
});

const big = new Uint8Array(1024 * 1024);
crypto.getRandomValues(big.subarray(0, 65536));
for (let i = 65536; i < big.length; i += 65536) crypto.getRandomValues(big.subarray(i, i + 65536));
const huge = new Uint8Array(16 * 1024 * 1024); // larger than any socket buffer: abandoned mid-transfer

mkdirSync(join(root, "sub", "deeper"), { recursive: true });
mkdirSync(join(root, "a"), { recursive: true });
mkdirSync(join(root, "empty-dir"), { recursive: true });
writeFileSync(join(root, "random.bin"), big);
writeFileSync(join(root, "huge.bin"), huge);
writeFileSync(join(root, "digits.txt"), "0123456789");
writeFileSync(join(root, "sub", "index.html"), "<!doctype html><p>sub index</p>\n");
writeFileSync(join(root, "plaintext"), "a file shadowed by the built-in route\n");
const TYPES: Record<string, string> = {
  "page.html": "text/html; charset=utf-8",
  "style.css": "text/css; charset=utf-8",
  "app.js": "text/javascript; charset=utf-8",
  "mod.mjs": "text/javascript; charset=utf-8",
  "data.json": "application/json",
  "icon.svg": "image/svg+xml",
  "img.png": "image/png",
  "photo.jpg": "image/jpeg",
  "anim.gif": "image/gif",
  "pic.webp": "image/webp",
  "favicon.ico": "image/x-icon",
  "code.wasm": "application/wasm",
  "doc.pdf": "application/pdf",
  "font.woff2": "font/woff2",
  "clip.mp4": "video/mp4",
  "noext": "application/octet-stream",
  "thing.xyz": "application/octet-stream",
};
for (const name of Object.keys(TYPES)) writeFileSync(join(root, name), `content of ${name}\n`);
writeFileSync(join(base, "x"), "OUTSIDE THE ROOT\n");
writeFileSync(join(base, "secret.txt"), "OUTSIDE THE ROOT\n");
symlinkSync(join(base, "secret.txt"), join(root, "link-out.txt"));
symlinkSync(base, join(root, "dir-link-out"));
symlinkSync("digits.txt", join(root, "link-in.txt"));

let server: ServerProcess;
let baseline = -1;
let lastCount = -1;
/** The fd count, and whether it stayed the same since the last call (settled). */
function fdsAtRest(): number {
  const n = server.fdCount();
  const prev = lastCount;
  lastCount = n;
  return n === prev ? n : -1;
}
const url = (path: string) => `http://127.0.0.1:${server.port}${path}`;

interface CurlResult {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

/** curl -i (the path as is: no client-side dot-segment removal), split into status, fields, body. */
async function curl(path: string, ...args: string[]): Promise<CurlResult> {
  const out = join(base, `curl-${Math.random().toString(36).slice(2)}`);
  const p = await run(["curl", "-s", "--path-as-is", "-D", `${out}.h`, "-o", `${out}.b`, ...args, url(path)]);
  expect(p.code).toBe(0);
  const head = readFileSync(`${out}.h`, "latin1").split("\r\n");
  const headers: Record<string, string> = {};
  for (const l of head.slice(1)) {
    const i = l.indexOf(":");
    if (i > 0) headers[l.slice(0, i).toLowerCase()] = l.slice(i + 1).trim();
  }
  let body = Buffer.alloc(0);
  try {
    body = readFileSync(`${out}.b`);
  } catch {} // HEAD and bodiless answers write no file
  rmSync(`${out}.h`, { force: true });
  rmSync(`${out}.b`, { force: true });
  return { status: Number(head[0]!.split(" ")[1]), headers, body };
}

describe("--static DIR", () => {
  test("start", async () => {
    server = await startServer(["--protocol", "http", "--port", "0", "--static", root]);
    expect(server.protocol).toBe("http");
    // The fds of a server that has served a file and has no connection: what the last test compares with.
    expect((await curl("/digits.txt")).status).toBe(200);
    await waitFor(() => server.fdCount() === fdsAtRest(), 5000, "fd count settled");
    baseline = server.fdCount();
  });

  test("a 1 MiB random file arrives byte-exact with its length and validators", async () => {
    const r = await curl("/random.bin");
    expect(r.status).toBe(200);
    expect(r.headers["content-length"]).toBe(String(big.length));
    expect(r.headers["content-type"]).toBe("application/octet-stream");
    expect(r.headers["accept-ranges"]).toBe("bytes");
    expect(r.headers["etag"]).toMatch(/^W\/"100000-[0-9a-f]+"$/);
    expect(Date.parse(r.headers["last-modified"]!)).toBeGreaterThan(0);
    expect(r.body.length).toBe(big.length);
    expect(Buffer.compare(r.body, Buffer.from(big))).toBe(0);
  });

  test("content types by extension", async () => {
    for (const [name, type] of Object.entries(TYPES)) {
      const r = await curl(`/${name}`);
      expect(r.status).toBe(200);
      expect(r.headers["content-type"]).toBe(type);
      expect(r.body.toString()).toBe(`content of ${name}\n`);
    }
  });

  test("304 for a matching If-None-Match or an If-Modified-Since not older than the file", async () => {
    const first = await curl("/digits.txt");
    const etag = first.headers["etag"]!;
    const lastModified = first.headers["last-modified"]!;
    const inm = await curl("/digits.txt", "-H", `If-None-Match: ${etag}`);
    expect(inm.status).toBe(304);
    expect(inm.body.length).toBe(0);
    expect(inm.headers["etag"]).toBe(etag);
    const ims = await curl("/digits.txt", "-H", `If-Modified-Since: ${lastModified}`);
    expect(ims.status).toBe(304);
    const older = await curl("/digits.txt", "-H", "If-Modified-Since: Mon, 01 Jan 2001 00:00:00 GMT");
    expect(older.status).toBe(200);
    expect(older.body.toString()).toBe("0123456789");
    const otherTag = await curl("/digits.txt", "-H", 'If-None-Match: W/"1-1"');
    expect(otherTag.status).toBe(200);
  });

  test("Range: a-b, a- and -n give 206 with Content-Range; past the end gives 416", async () => {
    const ab = await curl("/digits.txt", "-H", "Range: bytes=2-5");
    expect(ab.status).toBe(206);
    expect(ab.headers["content-range"]).toBe("bytes 2-5/10");
    expect(ab.headers["content-length"]).toBe("4");
    expect(ab.body.toString()).toBe("2345");
    const from = await curl("/digits.txt", "-H", "Range: bytes=7-");
    expect(from.status).toBe(206);
    expect(from.headers["content-range"]).toBe("bytes 7-9/10");
    expect(from.body.toString()).toBe("789");
    const suffix = await curl("/digits.txt", "-H", "Range: bytes=-3");
    expect(suffix.status).toBe(206);
    expect(suffix.headers["content-range"]).toBe("bytes 7-9/10");
    expect(suffix.body.toString()).toBe("789");
    // A range in the middle of the 1 MiB file: the right bytes from the right offset.
    const mid = await curl("/random.bin", "-H", "Range: bytes=100000-299999");
    expect(mid.status).toBe(206);
    expect(Buffer.compare(mid.body, Buffer.from(big.subarray(100000, 300000)))).toBe(0);
    const bad = await curl("/digits.txt", "-H", "Range: bytes=10-");
    expect(bad.status).toBe(416);
    expect(bad.headers["content-range"]).toBe("bytes */10");
    const several = await curl("/digits.txt", "-H", "Range: bytes=0-1,4-5");
    expect(several.status).toBe(200); // several ranges: the whole file (documented)
    expect(several.body.toString()).toBe("0123456789");
  });

  test("index.html for a directory; a redirect to the slash; 404 for a directory without one", async () => {
    const idx = await curl("/sub/");
    expect(idx.status).toBe(200);
    expect(idx.headers["content-type"]).toBe("text/html; charset=utf-8");
    expect(idx.body.toString()).toBe("<!doctype html><p>sub index</p>\n");
    const redirect = await curl("/sub");
    expect(redirect.status).toBe(301);
    expect(redirect.headers["location"]).toBe("/sub/");
    expect((await curl("/empty-dir/")).status).toBe(404);
  });

  test("no path outside DIR: .., encoded %2e%2e, symlinks out all give 404", async () => {
    for (const p of ["/../x", "/%2e%2e/x", "/%2E%2E/x", "/a/%2e%2e/%2e%2e/x", "/a/../../secret.txt", "/sub/..%2f..%2fx", "/link-out.txt", "/dir-link-out/x", "/dir-link-out/secret.txt"]) {
      const r = await curl(p);
      expect({ path: p, status: r.status }).toEqual({ path: p, status: 404 });
      expect(r.body.toString()).not.toContain("OUTSIDE");
    }
    // A symlink that stays inside is served.
    const inside = await curl("/link-in.txt");
    expect(inside.status).toBe(200);
    expect(inside.body.toString()).toBe("0123456789");
  });

  test("HEAD: the GET's fields and length, no body; other methods 405", async () => {
    const head = await curl("/random.bin", "-I");
    expect(head.status).toBe(200);
    expect(head.headers["content-length"]).toBe(String(big.length));
    expect(head.headers["etag"]).toMatch(/^W\//);
    // No body: on one connection the next response starts right after HEAD's blank line.
    const s = await connect(server.port);
    s.write("HEAD /random.bin HTTP/1.1\r\nHost: x\r\n\r\nGET /digits.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    const { data } = await readToEnd(s, 10_000);
    s.destroy();
    const text = data.toString("latin1");
    const parts = text.split("\r\n\r\n");
    expect(parts.length).toBe(3);
    expect(parts[0]).toStartWith("HTTP/1.1 200 OK");
    expect(parts[0]).toContain(`content-length: ${big.length}`);
    expect(parts[1]).toStartWith("HTTP/1.1 200 OK");
    expect(parts[2]).toBe("0123456789");
    const post = await curl("/digits.txt", "-X", "POST", "-d", "x");
    expect(post.status).toBe(405);
    expect(post.headers["allow"]).toBe("GET, HEAD");
  });

  test("the built-in routes win over a file of the same path", async () => {
    const r = await curl("/plaintext");
    expect(r.body.toString()).toBe("Hello, World!");
  });

  test("pipelined on one connection: files, a range and a route come back in order", async () => {
    const s = await connect(server.port);
    const req = (path: string, extra = "") => `GET ${path} HTTP/1.1\r\nHost: x\r\n${extra}\r\n`;
    s.write(req("/digits.txt") + req("/random.bin") + req("/plaintext") + req("/digits.txt", "Range: bytes=-4\r\n") + req("/sub/", "Connection: close\r\n"));
    const { data } = await readToEnd(s, 10_000);
    s.destroy();
    const bodies: Buffer[] = [];
    let p = 0;
    while (p < data.length) {
      const end = data.indexOf("\r\n\r\n", p);
      expect(end).toBeGreaterThan(0);
      const head = data.subarray(p, end).toString("latin1");
      const len = Number(/content-length: (\d+)/i.exec(head)![1]);
      bodies.push(data.subarray(end + 4, end + 4 + len));
      p = end + 4 + len;
    }
    expect(bodies.length).toBe(5);
    expect(bodies[0]!.toString()).toBe("0123456789");
    expect(Buffer.compare(bodies[1]!, Buffer.from(big))).toBe(0);
    expect(bodies[2]!.toString()).toBe("Hello, World!");
    expect(bodies[3]!.toString()).toBe("6789");
    expect(bodies[4]!.toString()).toBe("<!doctype html><p>sub index</p>\n");
  });

  test("no fd leak: after many files, 304s, 404s and abandoned transfers the fd count is back to its baseline", async () => {
    // Many files over keep-alive connections (curl reuses one connection for its URLs).
    const urls: string[] = [];
    for (let i = 0; i < 60; i++) urls.push(url(["/digits.txt", "/random.bin", "/sub/", "/missing", "/link-out.txt", "/page.html"][i % 6]!));
    const p = await run(["curl", "-s", "-o", "/dev/null", ...urls.flatMap((u) => [u, "-o", "/dev/null"])]);
    expect(p.code).toBe(0);
    // Transfers the client abandons halfway: the queued file ranges must release their fds.
    for (let i = 0; i < 10; i++) {
      const s = await connect(server.port);
      s.write("GET /huge.bin HTTP/1.1\r\nHost: x\r\n\r\n");
      await readExactly(s, 1024, 5000);
      s.destroy();
    }
    // Pipelined requests cut off before they are all answered.
    for (let i = 0; i < 5; i++) {
      const s = await connect(server.port);
      s.write("GET /huge.bin HTTP/1.1\r\nHost: x\r\n\r\n".repeat(8));
      await readExactly(s, 1024, 5000);
      s.destroy();
    }
    await waitFor(() => server.fdCount() <= baseline, 10_000, `fd count back to ${baseline} (now ${server.fdCount()})`);
    expect(server.fdCount()).toBe(baseline);
    // Closed by their owners, not by the garbage collector's backstop.
    expect(server.stderr()).not.toContain("garbage-collected without release()");
  });

  test("the server is still healthy and stops cleanly", async () => {
    expect((await curl("/healthz")).body.toString()).toBe("ok\n");
    expect(await server.stop("SIGTERM")).toBe(0);
  });
});

describe("--static checked at startup", () => {
  test("a missing directory exits 2 naming it", async () => {
    const r = await runServerCli(["--protocol", "http", "--port", "0", "--static", join(base, "no-such-dir")]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`--static: cannot serve "${join(base, "no-such-dir")}": no such directory (ENOENT)`);
  });

  test("a file is not a directory: exit 2", async () => {
    const r = await runServerCli(["--protocol", "http", "--port", "0", "--static", join(base, "x")]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("not a directory");
  });

  test("without an http listener it is a usage error", async () => {
    const r = await runServerCli(["--protocol", "echo", "--port", "0", "--static", root]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("--static needs an http listener");
  });
});
