// Static files, the pure parts and the handler in process: request-path safety, Range
// parsing, ETag comparison, content types, and staticFiles(dir) answering standard
// Requests (the body readable outside bunpoll's server; the fd released by dispose).

import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { serve } from "../../src/serve.ts";
import {
  contentTypeOf, etagMatches, FileResponse, parseRange, resolveRequestPath, staticFiles,
} from "../../src/protocols/http/static.ts";

describe("resolveRequestPath", () => {
  test("plain paths become segments; empty and '.' segments are dropped", () => {
    expect(resolveRequestPath("/")).toEqual({ segments: [], trailingSlash: false });
    expect(resolveRequestPath("/a/b.txt")).toEqual({ segments: ["a", "b.txt"], trailingSlash: false });
    expect(resolveRequestPath("/a//./b/")).toEqual({ segments: ["a", "b"], trailingSlash: true });
    expect(resolveRequestPath("/sp%20ace/%C3%A9")).toEqual({ segments: ["sp ace", "é"], trailingSlash: false });
  });

  test("'..' segments, raw or percent-encoded in any case, are refused", () => {
    for (const p of ["/..", "/../x", "/a/../x", "/%2e%2e/x", "/%2E%2E/x", "/a/%2e%2e/%2e%2e/x", "/.%2e/x", "/%2e./x", "/a/..%2fx", "/a/%2e%2e%2fx"]) {
      expect(resolveRequestPath(p)).toBeNull();
    }
  });

  test("decoded once: a double-encoded dot is a file name, not a traversal", () => {
    expect(resolveRequestPath("/%252e%252e/x")).toEqual({ segments: ["%2e%2e", "x"], trailingSlash: false });
  });

  test("NUL and non-absolute targets are refused; malformed escapes are 'bad' (400)", () => {
    expect(resolveRequestPath("/a%00b")).toBeNull();
    expect(resolveRequestPath("a/b")).toBeNull();
    expect(resolveRequestPath("*")).toBeNull();
    expect(resolveRequestPath("/%")).toBe("bad");
    expect(resolveRequestPath("/%zz")).toBe("bad");
    expect(resolveRequestPath("/%C3")).toBe("bad");
  });

  test("names that only contain dots are files", () => {
    expect(resolveRequestPath("/...")).toEqual({ segments: ["..."], trailingSlash: false });
    expect(resolveRequestPath("/..a")).toEqual({ segments: ["..a"], trailingSlash: false });
  });
});

describe("parseRange", () => {
  test("the three single-range forms", () => {
    expect(parseRange("bytes=0-99", 1000)).toEqual({ start: 0, end: 100 });
    expect(parseRange("bytes=900-", 1000)).toEqual({ start: 900, end: 1000 });
    expect(parseRange("bytes=-100", 1000)).toEqual({ start: 900, end: 1000 });
    expect(parseRange("BYTES=5-5", 1000)).toEqual({ start: 5, end: 6 });
  });

  test("an end past the file is clamped; a suffix longer than the file is the whole file", () => {
    expect(parseRange("bytes=990-5000", 1000)).toEqual({ start: 990, end: 1000 });
    expect(parseRange("bytes=-5000", 1000)).toEqual({ start: 0, end: 1000 });
  });

  test("unsatisfiable: a start at or past the end, a zero suffix, any range of an empty file", () => {
    expect(parseRange("bytes=1000-", 1000)).toBe("unsatisfiable");
    expect(parseRange("bytes=1000-2000", 1000)).toBe("unsatisfiable");
    expect(parseRange("bytes=-0", 1000)).toBe("unsatisfiable");
    expect(parseRange("bytes=0-", 0)).toBe("unsatisfiable");
    expect(parseRange("bytes=-1", 0)).toBe("unsatisfiable");
  });

  test("ignored (the whole file): no header, another unit, malformed, inverted, several ranges", () => {
    for (const h of [null, "items=0-1", "bytes=", "bytes=-", "bytes=a-b", "bytes=5-1", "bytes=0-1,3-4", "bytes=0-1, -2", "bytes=+1-2", "bytes=0x1-2"]) {
      expect(parseRange(h, 1000)).toBeNull();
    }
  });
});

describe("validators and types", () => {
  test("If-None-Match: weak comparison, lists and *", () => {
    const tag = 'W/"10-abc"';
    expect(etagMatches('W/"10-abc"', tag)).toBe(true);
    expect(etagMatches('"10-abc"', tag)).toBe(true);
    expect(etagMatches('"x", W/"10-abc"', tag)).toBe(true);
    expect(etagMatches("*", tag)).toBe(true);
    expect(etagMatches('W/"10-abd"', tag)).toBe(false);
  });

  test("content types by extension, case-insensitive, octet-stream otherwise", () => {
    expect(contentTypeOf("/a/index.html")).toBe("text/html; charset=utf-8");
    expect(contentTypeOf("x.CSS")).toBe("text/css; charset=utf-8");
    expect(contentTypeOf("app.mjs")).toBe("text/javascript; charset=utf-8");
    expect(contentTypeOf("f.woff2")).toBe("font/woff2");
    expect(contentTypeOf("m.wasm")).toBe("application/wasm");
    expect(contentTypeOf("photo.jpeg")).toBe("image/jpeg");
    expect(contentTypeOf("README")).toBe("application/octet-stream");
    expect(contentTypeOf(".bashrc")).toBe("application/octet-stream");
    expect(contentTypeOf("dir.d/file")).toBe("application/octet-stream");
    expect(contentTypeOf("a.unknown")).toBe("application/octet-stream");
  });
});

describe("staticFiles(dir) with standard Requests", () => {
  const base = mkdtempSync(join(tmpdir(), "bunpoll-static-unit-"));
  const root = join(base, "root");
  mkdirSync(join(root, "sub"), { recursive: true });
  writeFileSync(join(root, "hello.txt"), "hello, world\n");
  writeFileSync(join(root, "sub", "index.html"), "<p>sub</p>\n");
  writeFileSync(join(base, "secret.txt"), "secret\n");
  symlinkSync(join(base, "secret.txt"), join(root, "out.txt"));
  symlinkSync("hello.txt", join(root, "in.txt"));
  afterAll(() => rmSync(base, { recursive: true, force: true }));
  const serve = staticFiles(root);
  const get = (path: string, headers: Record<string, string> = {}, method = "GET") =>
    serve(new Request(`http://localhost${path}`, { method, headers }));

  test("a missing or non-directory root throws at once, naming it", () => {
    expect(() => staticFiles(join(base, "nope"))).toThrow(`cannot serve "${join(base, "nope")}": no such directory (ENOENT)`);
    expect(() => staticFiles(join(base, "secret.txt"))).toThrow("not a directory");
  });

  test("a file: 200 with its bytes (read by Bun outside bunpoll's server), validators; dispose closes the fd", async () => {
    const res = get("/hello.txt");
    expect(res).toBeInstanceOf(FileResponse);
    const fr = res as FileResponse;
    const fd = fr.file!.fd;
    expect(readlinkSync(`/proc/self/fd/${fd}`)).toBe(join(root, "hello.txt"));
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/plain; charset=utf-8");
    expect(res.headers.get("etag")).toMatch(/^W\/"d-[0-9a-f]+"$/);
    expect(res.headers.get("accept-ranges")).toBe("bytes");
    expect(await res.text()).toBe("hello, world\n");
    fr[Symbol.dispose]();
    expect(fr.file).toBeNull();
    let stillOurs = false;
    try {
      stillOurs = readlinkSync(`/proc/self/fd/${fd}`) === join(root, "hello.txt");
    } catch {}
    expect(stillOurs).toBe(false);
    fr[Symbol.dispose](); // twice is harmless
  });

  test("ranges, 416, 304, HEAD, 405", async () => {
    using r = get("/hello.txt", { range: "bytes=7-11" }) as FileResponse;
    expect(r.status).toBe(206);
    expect(r.headers.get("content-range")).toBe("bytes 7-11/13");
    expect(await r.text()).toBe("world");
    const bad = get("/hello.txt", { range: "bytes=13-" });
    expect(bad.status).toBe(416);
    expect(bad.headers.get("content-range")).toBe("bytes */13");
    using full = get("/hello.txt") as FileResponse;
    const etag = full.headers.get("etag")!;
    const notModified = get("/hello.txt", { "if-none-match": etag });
    expect(notModified.status).toBe(304);
    expect(notModified.headers.get("etag")).toBe(etag);
    expect(get("/hello.txt", { "if-modified-since": full.headers.get("last-modified")! }).status).toBe(304);
    using old = get("/hello.txt", { "if-modified-since": "Thu, 01 Jan 1970 00:00:00 GMT" }) as FileResponse;
    expect(old.status).toBe(200);
    // If-Range with another validator: the range is ignored.
    using stale = get("/hello.txt", { range: "bytes=0-1", "if-range": 'W/"0-0"' }) as FileResponse;
    expect(stale.status).toBe(200);
    using head = get("/hello.txt", {}, "HEAD") as FileResponse;
    expect(head.status).toBe(200);
    expect(head.length).toBe(13);
    expect(head.body).toBeNull();
    const post = get("/hello.txt", {}, "POST");
    expect(post.status).toBe(405);
    expect(post.headers.get("allow")).toBe("GET, HEAD");
  });

  test("directories: index.html with a slash, a redirect without one; symlinks in yes, out no", async () => {
    using idx = get("/sub/") as FileResponse;
    expect(idx.status).toBe(200);
    expect(idx.headers.get("content-type")).toBe("text/html; charset=utf-8");
    expect(await idx.text()).toBe("<p>sub</p>\n");
    const redirect = get("/sub?x=1");
    expect(redirect.status).toBe(301);
    expect(redirect.headers.get("location")).toBe("/sub/?x=1");
    expect(get("/").status).toBe(404); // no index.html at the root
    using inside = get("/in.txt") as FileResponse;
    expect(inside.status).toBe(200);
    expect(await inside.text()).toBe("hello, world\n");
    expect(get("/out.txt").status).toBe(404);
    expect(get("/missing").status).toBe(404);
    expect(get("/%zz").status).toBe(400);
  });

  test("an empty file is 200 with no bytes (its ranges 416); a FIFO is 404 without blocking on a writer", async () => {
    writeFileSync(join(root, "empty.txt"), "");
    using empty = get("/empty.txt") as FileResponse;
    expect(empty.status).toBe(200);
    expect(empty.length).toBe(0);
    expect(await empty.text()).toBe("");
    const r = get("/empty.txt", { range: "bytes=0-" });
    expect(r.status).toBe(416);
    expect(r.headers.get("content-range")).toBe("bytes */0");
    expect(Bun.spawnSync(["mkfifo", join(root, "pipe")]).exitCode).toBe(0);
    expect(get("/pipe").status).toBe(404); // opened O_NONBLOCK: returns at once
  });
});

describe("serve({ fetch: staticFiles(dir) }): the library's server", () => {
  test("files, ranges and 404s over real sockets with fetch()", async () => {
    const base = mkdtempSync(join(tmpdir(), "bunpoll-static-serve-"));
    const bytes = new Uint8Array(300_000);
    for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7919) & 0xff;
    writeFileSync(join(base, "data.bin"), bytes);
    const server = serve({ port: 0, hostname: "127.0.0.1", fetch: staticFiles(base) });
    try {
      const url = `http://127.0.0.1:${server.port}`;
      const full = await fetch(`${url}/data.bin`);
      expect(full.status).toBe(200);
      expect(Buffer.compare(Buffer.from(await full.arrayBuffer()), Buffer.from(bytes))).toBe(0);
      const part = await fetch(`${url}/data.bin`, { headers: { range: "bytes=-10" } });
      expect(part.status).toBe(206);
      expect(new Uint8Array(await part.arrayBuffer())).toEqual(bytes.subarray(bytes.length - 10));
      expect((await fetch(`${url}/nope`)).status).toBe(404);
    } finally {
      await server.stop();
      rmSync(base, { recursive: true, force: true });
    }
  });
});
