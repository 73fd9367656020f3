// The JS cost of answering one request through a fetch handler (what `serve({ fetch })` runs):
// a GET read handed to the HTTP session, the handler builds `new Response("Hello, World!")`,
// the reply goes into a real TcpStream's write queue (cleared, never sent). No syscalls: this
// is the part of the per-request cost that is ours, next to http-plaintext-path's static route.
//
//   bun bench/micro/http-fetch-path.bench.ts

import { bench, run, summary } from "mitata";
import { Reactor } from "../../src/reactor/reactor.ts";
import { TcpStream, DEFAULT_CONNECTION_OPTIONS } from "../../src/stream/tcp-stream.ts";
import { HttpApp, createHttpProtocol } from "../../src/protocols/http/server.ts";

const reactor = new Reactor({ log: () => {} });
const REQ = "GET /hello HTTP/1.1\r\nHost: localhost:8080\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n";
const one = new TextEncoder().encode(REQ);
const sixteen = new TextEncoder().encode(REQ.repeat(16));

function session(fetch: ConstructorParameters<typeof HttpApp>[0]["fetch"]) {
  const handler = createHttpProtocol(new HttpApp({ fetch }));
  const conn = new TcpStream<any>(reactor, -1, 1, handler as never, DEFAULT_CONNECTION_OPTIONS);
  handler.open!(conn as never);
  const clear = () => (conn as unknown as { outq: { clear(): void } | null }).outq?.clear();
  return (bytes: Uint8Array) => {
    handler.data!(conn as never, bytes);
    clear();
  };
}

const hello = session(() => new Response("Hello, World!"));
const url = session((req) => new Response(new URL(req.url).pathname));

summary(() => {
  bench("fetch: new Response(text), 1 request per read", () => hello(one));
  bench("fetch: new Response(text), 16 pipelined per read (per read)", () => hello(sixteen));
  bench("fetch reading req.url, 1 request per read", () => url(one));
});

await run();
