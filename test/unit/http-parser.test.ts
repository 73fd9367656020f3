// src/protocols/http/parser.ts: a corpus organised like llhttp's request tests (method, uri,
// version, content-length, transfer-encoding, chunked, pipelining, invalid, smuggling),
// every case also split at every byte and fed byte by byte, and a property test that any
// valid request, serialized and split anyhow, parses to the same request.

import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { HttpParser, type HttpLimits, type HttpParseError, type RequestHead, DEFAULT_HTTP_LIMITS } from "../../src/protocols/http/parser.ts";

type Event =
  | { head: { method: string; target: string; version: string; fields: [string, string][]; keepAlive: boolean; chunked: boolean; contentLength: number; expectContinue: boolean; upgrade: boolean } }
  | { body: string }
  | { end: [string, string][] }
  | { error: number };

const enc = new TextEncoder();
const latin1 = { decode: (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.length).toString("latin1") };

/** Parses `chunks` in order; adjacent body events are merged (their split depends on the reads). */
function parse(chunks: Uint8Array[], limits?: Partial<HttpLimits>): { events: Event[]; messages: string[] } {
  const events: Event[] = [];
  const messages: string[] = [];
  const p = new HttpParser(
    {
      onHead(h: RequestHead) {
        events.push({
          head: {
            method: h.method, target: h.target, version: `1.${h.versionMinor}`, fields: h.entries(), keepAlive: h.keepAlive,
            chunked: h.chunked, contentLength: h.contentLength, expectContinue: h.expectContinue, upgrade: h.upgrade,
          },
        });
      },
      onBody(buf, off, len) {
        const s = latin1.decode(buf.subarray(off, off + len));
        const last = events[events.length - 1];
        if (last && "body" in last) last.body += s;
        else events.push({ body: s });
      },
      onEnd(trailers) {
        events.push({ end: trailers.map(([n, v]) => [n, v]) });
      },
      onError(e: HttpParseError) {
        events.push({ error: e.status });
        messages.push(e.message);
      },
    },
    { ...DEFAULT_HTTP_LIMITS, ...limits },
  );
  for (const c of chunks) {
    // Each read arrives in a fresh buffer that the next read overwrites.
    const copy = new Uint8Array(c);
    p.push(copy);
    copy.fill(0xee);
  }
  return { events, messages };
}

const bytes = (s: string) => Uint8Array.from(s, (c) => c.charCodeAt(0));

/** The events for `raw`, checked to be the same whatever the split (every 2-split, and byte by byte). */
function parseAllSplits(raw: string, limits?: Partial<HttpLimits>): Event[] {
  const b = bytes(raw);
  const whole = parse([b], limits).events;
  for (let i = 1; i < b.length; i++) {
    expect(parse([b.subarray(0, i), b.subarray(i)], limits).events).toEqual(whole);
  }
  expect(parse(Array.from(b, (_, i) => b.subarray(i, i + 1)), limits).events).toEqual(whole);
  return whole;
}

const head = (method: string, target: string, fields: [string, string][], extra: Partial<{ version: string; keepAlive: boolean; chunked: boolean; contentLength: number; expectContinue: boolean; upgrade: boolean }> = {}): Event => ({
  head: { method, target, version: "1.1", fields, keepAlive: true, chunked: false, contentLength: -1, expectContinue: false, upgrade: false, ...extra },
});

const errorOf = (raw: string, limits?: Partial<HttpLimits>) => {
  const ev = parseAllSplits(raw, limits);
  const last = ev[ev.length - 1]!;
  return "error" in last ? last.error : 0;
};

describe("method", () => {
  test("common and extension methods (tokens)", () => {
    for (const m of ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "PROPFIND", "M-SEARCH"]) {
      expect(parseAllSplits(`${m} / HTTP/1.1\r\nHost: a\r\n\r\n`)).toEqual([head(m, "/", [["host", "a"]]), { end: [] }]);
    }
  });
  test("a method with a non-token byte, or none, is 400", () => {
    expect(errorOf("GE(T / HTTP/1.1\r\nHost: a\r\n\r\n")).toBe(400);
    expect(errorOf(" / HTTP/1.1\r\nHost: a\r\n\r\n")).toBe(400);
  });
});

describe("uri", () => {
  test("origin, absolute, authority and asterisk forms", () => {
    expect(parseAllSplits("GET /a/b?c=d%20e#f HTTP/1.1\r\nHost: a\r\n\r\n")[0]).toEqual(head("GET", "/a/b?c=d%20e#f", [["host", "a"]]));
    expect(parseAllSplits("GET http://x.test/p HTTP/1.1\r\nHost: x.test\r\n\r\n")[0]).toEqual(head("GET", "http://x.test/p", [["host", "x.test"]]));
    expect(parseAllSplits("CONNECT x.test:443 HTTP/1.1\r\nHost: x.test:443\r\n\r\n")[0]).toEqual(head("CONNECT", "x.test:443", [["host", "x.test:443"]]));
    expect(parseAllSplits("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n")[0]).toEqual(head("OPTIONS", "*", [["host", "a"]]));
  });
  test("control bytes, spaces, non-ASCII, an empty target, * outside OPTIONS: 400", () => {
    expect(errorOf("GET /a\x01b HTTP/1.1\r\nHost: a\r\n\r\n")).toBe(400);
    expect(errorOf("GET /a b HTTP/1.1\r\nHost: a\r\n\r\n")).toBe(400);
    expect(errorOf("GET /\xe9 HTTP/1.1\r\nHost: a\r\n\r\n")).toBe(400);
    expect(errorOf("GET  HTTP/1.1\r\nHost: a\r\n\r\n")).toBe(400);
    expect(errorOf("GET * HTTP/1.1\r\nHost: a\r\n\r\n")).toBe(400);
  });
  test("a request line over maxRequestLine is 414, even before the line ends", () => {
    const long = `GET /${"a".repeat(9000)} HTTP/1.1\r\nHost: a\r\n\r\n`;
    expect(parse([bytes(long)]).events).toEqual([{ error: 414 }]);
    expect(parse([bytes(long.slice(0, 8500))]).events).toEqual([{ error: 414 }]); // no CRLF yet
  });
});

describe("version", () => {
  test("HTTP/1.0 closes unless keep-alive is asked; HTTP/1.1 keeps alive unless close", () => {
    expect(parseAllSplits("GET / HTTP/1.0\r\n\r\n")[0]).toEqual(head("GET", "/", [], { version: "1.0", keepAlive: false }));
    expect(parseAllSplits("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")[0]).toEqual(head("GET", "/", [["connection", "keep-alive"]], { version: "1.0", keepAlive: true }));
    expect(parseAllSplits("GET / HTTP/1.1\r\nHost: a\r\nConnection: Close\r\n\r\n")[0]).toEqual(head("GET", "/", [["host", "a"], ["connection", "Close"]], { keepAlive: false }));
  });
  test("HTTP/2.0, HTTP/1.2, HTTP/0.9 are 505; a malformed version is 400", () => {
    expect(errorOf("GET / HTTP/2.0\r\nHost: a\r\n\r\n")).toBe(505);
    expect(errorOf("GET / HTTP/1.2\r\nHost: a\r\n\r\n")).toBe(505);
    expect(errorOf("GET / HTTP/0.9\r\nHost: a\r\n\r\n")).toBe(505);
    expect(errorOf("GET / HTTP/1.1.1\r\nHost: a\r\n\r\n")).toBe(400);
    expect(errorOf("GET / http/1.1\r\nHost: a\r\n\r\n")).toBe(400);
    expect(errorOf("GET / HTTP/1\r\nHost: a\r\n\r\n")).toBe(400);
  });
});

describe("host", () => {
  test("missing on HTTP/1.1, duplicated, or not host[:port]: 400", () => {
    expect(errorOf("GET / HTTP/1.1\r\n\r\n")).toBe(400);
    expect(errorOf("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n")).toBe(400);
    expect(errorOf("GET / HTTP/1.1\r\nHost: a b\r\n\r\n")).toBe(400);
    expect(errorOf("GET / HTTP/1.1\r\nHost: a:99999\r\n\r\n")).toBe(400);
    expect(errorOf("GET / HTTP/1.1\r\nHost: a:8x\r\n\r\n")).toBe(400);
    expect(errorOf("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n")).toBe(400);
    expect(errorOf("GET / HTTP/1.1\r\nHost: [::1\r\n\r\n")).toBe(400);
  });
  test("names, IPv4, [IPv6], with ports", () => {
    for (const h of ["example.test", "127.0.0.1:8080", "[::1]:80", "[fe80::1]", "xn--bcher-kva.test"]) {
      expect(parseAllSplits(`GET / HTTP/1.1\r\nHost: ${h}\r\n\r\n`)).toEqual([head("GET", "/", [["host", h]]), { end: [] }]);
    }
  });
});

describe("header fields", () => {
  test("values are trimmed of OWS; names are case-insensitive; obs-text is kept", () => {
    expect(parseAllSplits("GET / HTTP/1.1\r\nHOST:a\r\nX-A: \t b c \t\r\nX-B: \xe9\r\nX-C:\r\n\r\n")[0]).toEqual(
      head("GET", "/", [["host", "a"], ["x-a", "b c"], ["x-b", "\xe9"], ["x-c", ""]]),
    );
  });
  test("whitespace before the colon, obs-fold, a bad name, NUL or CTL in a value, bare CR or LF: 400", () => {
    expect(errorOf("GET / HTTP/1.1\r\nHost : a\r\n\r\n")).toBe(400);
    expect(errorOf("GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n")).toBe(400);
    expect(errorOf("GET / HTTP/1.1\r\nHost: a\r\nX(A): b\r\n\r\n")).toBe(400);
    expect(errorOf("GET / HTTP/1.1\r\nHost: a\r\n: b\r\n\r\n")).toBe(400);
    expect(errorOf("GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x00c\r\n\r\n")).toBe(400);
    expect(errorOf("GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x7fc\r\n\r\n")).toBe(400);
    expect(errorOf("GET / HTTP/1.1\r\nHost: a\r\nX-A: b\rc\r\n\r\n")).toBe(400);
    expect(errorOf("GET / HTTP/1.1\nHost: a\r\n\r\n")).toBe(400);
    expect(errorOf("GET / HTTP/1.1\r\nHost: a\n\r\n")).toBe(400);
    expect(errorOf("GET / HTTP/1.1\r\nHost: a\r\n\rX\r\n\r\n")).toBe(400); // llhttp's "\r\n\rX" head end
  });
  test("a header section over maxHeaderBytes is 431", () => {
    const big = `GET / HTTP/1.1\r\nHost: a\r\nX-Big: ${"b".repeat(20_000)}\r\n\r\n`;
    expect(parse([bytes(big)]).events).toEqual([{ error: 431 }]);
    expect(parse([bytes(big.slice(0, 17_000))]).events).toEqual([{ error: 431 }]); // before its end
  });
  test("Expect: 100-continue is flagged; another expectation is 417", () => {
    expect(parseAllSplits("POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 0\r\n\r\n")[0]).toEqual(
      head("POST", "/", [["host", "a"], ["expect", "100-Continue"], ["content-length", "0"]], { expectContinue: true, contentLength: 0 }),
    );
    expect(errorOf("POST / HTTP/1.1\r\nHost: a\r\nExpect: magic\r\n\r\n")).toBe(417);
  });
  test("Upgrade with Connection: upgrade is flagged", () => {
    const ev = parseAllSplits("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n");
    expect((ev[0] as { head: { upgrade: boolean } }).head.upgrade).toBe(true);
  });
});

describe("content-length", () => {
  test("a body of exactly Content-Length bytes, then the next request", () => {
    expect(parseAllSplits("POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\nHost: a\r\n\r\n")).toEqual([
      head("POST", "/p", [["host", "a"], ["content-length", "5"]], { contentLength: 5 }),
      { body: "hello" },
      { end: [] },
      head("GET", "/", [["host", "a"]]),
      { end: [] },
    ]);
  });
  test("identical duplicates are one length; leading zeros are digits", () => {
    expect(parseAllSplits("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc").slice(1)).toEqual([{ body: "abc" }, { end: [] }]);
    expect(parseAllSplits("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\nabc").slice(1)).toEqual([{ body: "abc" }, { end: [] }]);
    expect(parseAllSplits("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 003\r\n\r\nabc").slice(1)).toEqual([{ body: "abc" }, { end: [] }]);
  });
  test("negative, signed, hex, spaced, empty, differing or over 2^53: 400", () => {
    for (const v of ["-1", "+5", "0x5", "5 5", "", "5a", "1_0", "3, 4", "99999999999999999"]) {
      expect(errorOf(`POST / HTTP/1.1\r\nHost: a\r\nContent-Length: ${v}\r\n\r\n`)).toBe(400);
    }
    expect(errorOf("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd")).toBe(400);
  });
  test("a body over maxBodySize is 413 before a byte of it is read", () => {
    expect(parse([bytes("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n")], { maxBodySize: 99 }).events).toEqual([{ error: 413 }]);
  });
});

describe("transfer-encoding", () => {
  const req = (te: string, extra = "") => `POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ${te}\r\n${extra}\r\n`;
  test("with Content-Length: 400 (smuggling)", () => {
    expect(errorOf(req("chunked", "Content-Length: 5\r\n"))).toBe(400);
    expect(errorOf(`POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n`)).toBe(400);
  });
  test("a final coding that is not chunked: 400; chunked twice: 400; another coding before chunked: 501", () => {
    expect(errorOf(req("gzip"))).toBe(400);
    expect(errorOf(req("chunked, gzip"))).toBe(400);
    expect(errorOf(req("chunked, chunked"))).toBe(400);
    expect(errorOf(req("gzip, chunked"))).toBe(501);
    expect(errorOf(`POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n`)).toBe(400);
  });
  test("another coding in an earlier Transfer-Encoding field, chunked in a later one: 501, as in one field", () => {
    expect(errorOf(`POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n`)).toBe(501);
  });
  test("in an HTTP/1.0 request: 400", () => {
    expect(errorOf("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")).toBe(400);
  });
  test("chunked (any case) frames the body", () => {
    const ev = parseAllSplits(req("Chunked") + "0\r\n\r\n");
    expect(ev.slice(1)).toEqual([{ end: [] }]);
  });
});

describe("chunked", () => {
  const pre = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
  test("chunks, extensions and trailers", () => {
    expect(parseAllSplits(pre + "5\r\nhello\r\n6;a=b;c=\"d;e\"\r\n world\r\nA \t; x\r\n0123456789\r\n0\r\nX-T: 1\r\nY-T:  two \r\n\r\n").slice(1)).toEqual([
      { body: "hello world0123456789" },
      { end: [["x-t", "1"], ["y-t", "two"]] },
    ]);
  });
  test("pipelined after a chunked body", () => {
    const ev = parseAllSplits(pre + "1\r\nx\r\n0\r\n\r\n" + "GET /2 HTTP/1.1\r\nHost: a\r\n\r\n");
    expect(ev.slice(1)).toEqual([{ body: "x" }, { end: [] }, head("GET", "/2", [["host", "a"]]), { end: [] }]);
  });
  test("sizes with +, -, 0x, _, leading space, none, or over 2^53: 400", () => {
    for (const size of ["+5", "-5", "0x5", "5_0", " 5", "", "g", "10000000000000000", "FFFFFFFFFFFFFF"]) {
      expect(errorOf(pre + `${size}\r\nhello\r\n0\r\n\r\n`)).toBe(400);
    }
  });
  test("a chunk line ended by a bare CR or LF, data not followed by CRLF, a bad extension: 400", () => {
    expect(errorOf(pre + "5\rX\nhello\r\n0\r\n\r\n")).toBe(400); // llhttp's "\rX" chunk line
    expect(errorOf(pre + "5\nhello\r\n0\r\n\r\n")).toBe(400);
    expect(errorOf(pre + "5\r\nhelloXX0\r\n\r\n")).toBe(400);
    expect(errorOf(pre + "5;\r\nhello\r\n0\r\n\r\n")).toBe(400);
    expect(errorOf(pre + "5 x\r\nhello\r\n0\r\n\r\n")).toBe(400);
  });
  test("a chunked body over maxBodySize: 413; trailers over maxTrailerBytes: 431", () => {
    expect(parse([bytes(pre + "10\r\n")], { maxBodySize: 15 }).events.slice(1)).toEqual([{ error: 413 }]);
    expect(parse([bytes(pre + "0\r\nX: " + "y".repeat(200) + "\r\n\r\n")], { maxTrailerBytes: 100 }).events.slice(1)).toEqual([{ error: 431 }]);
  });
});

describe("pipelining and errors", () => {
  test("three requests in one read, answered in order", () => {
    const r = "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nPOST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhiGET /3 HTTP/1.1\r\nHost: a\r\n\r\n";
    const targets = parseAllSplits(r).filter((e) => "head" in e).map((e) => (e as { head: { target: string } }).head.target);
    expect(targets).toEqual(["/1", "/2", "/3"]);
  });
  test("nothing after a bad request is interpreted", () => {
    const ev = parseAllSplits("GET / HTTP/1.1\r\nHost : a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n");
    expect(ev).toEqual([{ error: 400 }]);
  });
  test("error messages name the problem", () => {
    expect(parse([bytes("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n")]).messages[0]).toContain("Content-Length and Transfer-Encoding");
    expect(parse([bytes("GET / HTTP/1.1\r\n\r\n")]).messages[0]).toContain("Host");
  });
});

describe("property: a valid request, serialized and split anyhow, parses to the same request", () => {
  const token = fc.stringMatching(/^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}$/);
  const value = fc.stringMatching(/^[\x21-\x7e]([\x20-\x7e]{0,20}[\x21-\x7e])?$/);
  const reserved = new Set(["host", "content-length", "transfer-encoding", "connection", "expect", "upgrade"]);
  const request = fc.record({
    method: fc.constantFrom("GET", "POST", "PUT", "DELETE", "PATCH"),
    target: fc.stringMatching(/^\/[\x21-\x7e]{0,30}$/),
    fields: fc.array(fc.tuple(token, value), { maxLength: 6 }).map((fs) => fs.filter(([n]) => !reserved.has(n.toLowerCase()))),
    body: fc.uint8Array({ maxLength: 300 }),
    chunked: fc.boolean(),
    chunkSizes: fc.array(fc.integer({ min: 1, max: 64 }), { minLength: 1, maxLength: 5 }),
  });
  test("any split", () => {
    fc.assert(
      fc.property(request, fc.array(fc.integer({ min: 1, max: 50 }), { minLength: 1, maxLength: 10 }), (r, cuts) => {
        const lines = [`${r.method} ${r.target} HTTP/1.1`, "Host: example.test", ...r.fields.map(([n, v]) => `${n}: ${v}`)];
        let bodyPart = "";
        const body = latin1.decode(r.body);
        if (r.chunked) {
          lines.push("Transfer-Encoding: chunked");
          let p = 0, i = 0;
          while (p < body.length) {
            const n = Math.min(r.chunkSizes[i++ % r.chunkSizes.length]!, body.length - p);
            bodyPart += `${n.toString(16)}\r\n${body.slice(p, p + n)}\r\n`;
            p += n;
          }
          bodyPart += "0\r\n\r\n";
        } else {
          lines.push(`Content-Length: ${r.body.length}`);
          bodyPart = body;
        }
        const raw = bytes(lines.join("\r\n") + "\r\n\r\n" + bodyPart + "GET /next HTTP/1.1\r\nHost: n\r\n\r\n");
        const chunks: Uint8Array[] = [];
        let p = 0, i = 0;
        while (p < raw.length) {
          const n = cuts[i++ % cuts.length]!;
          chunks.push(raw.subarray(p, p + n));
          p += n;
        }
        const ev = parse(chunks).events;
        const h = ev[0] as { head: { method: string; target: string; fields: [string, string][] } };
        expect(h.head.method).toBe(r.method);
        expect(h.head.target).toBe(r.target);
        expect(h.head.fields.slice(1, 1 + r.fields.length)).toEqual(r.fields.map(([n, v]) => [n.toLowerCase(), v]));
        const got = ev.filter((e) => "body" in e).map((e) => (e as { body: string }).body).join("");
        expect(got).toBe(body);
        expect(ev.filter((e) => "end" in e).length).toBe(2);
        expect((ev[ev.length - 2] as { head: { target: string } }).head.target).toBe("/next");
      }),
      { numRuns: 300 },
    );
  });
});

void enc;
