// What a request costs in JS before any syscall: parsing a typical head, and what a fetch
// handler pays for what it reads (bunpoll's lazy HttpRequest against a standard Request).
//
//   bun bench/micro/http-request.bench.ts

import { bench, do_not_optimize, run, summary } from "mitata";
import { HttpParser, type RequestHead } from "../../src/protocols/http/parser.ts";
import { HttpRequest } from "../../src/protocols/http/request.ts";

const HEAD = new TextEncoder().encode(
  "GET /plaintext?x=1 HTTP/1.1\r\nHost: localhost:8080\r\nUser-Agent: wrk\r\nAccept: */*\r\n" +
    "Accept-Encoding: gzip\r\nConnection: keep-alive\r\n\r\n",
);
const buf = new Uint8Array(new ArrayBuffer(HEAD.length));
buf.set(HEAD);

let last: RequestHead | null = null;
let make: ((h: RequestHead) => void) | null = null;
const parser = new HttpParser({
  onHead(h) {
    last = h;
    make?.(h);
  },
  onBody() {},
  onEnd() {},
  onError(e) {
    throw e;
  },
});

summary(() => {
  bench("parse a 6-field head", () => {
    make = null;
    parser.push(buf);
    do_not_optimize(last);
  });
  bench("parse + HttpRequest (method only)", () => {
    make = (h) => do_not_optimize(new HttpRequest(h, h.headStart, h.headEnd, false).method);
    parser.push(buf);
  });
  bench("parse + HttpRequest + url + one header", () => {
    make = (h) => {
      const r = new HttpRequest(h, h.headStart, h.headEnd, false);
      do_not_optimize(r.url);
      do_not_optimize(r.header("user-agent"));
    };
    parser.push(buf);
  });
  bench("parse + HttpRequest + headers (a Headers object)", () => {
    make = (h) => do_not_optimize(new HttpRequest(h, h.headStart, h.headEnd, false).headers);
    parser.push(buf);
  });
  bench("parse + a standard Request with the same url and headers", () => {
    make = (h) => do_not_optimize(new Request(`http://${h.get("host")}${h.target}`, { method: h.method, headers: h.entries() }));
    parser.push(buf);
  });
  bench("new Response(\"Hello, World!\") + its bytes (Bun.peek)", () => {
    do_not_optimize(Bun.peek(new Response("Hello, World!").bytes()));
  });
});

await run();
