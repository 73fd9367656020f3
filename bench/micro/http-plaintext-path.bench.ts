// The JS cost of answering one HTTP request without syscalls: a GET /plaintext read handed to
// the built-in app's handler table, replies into a real TcpStream's write queue (cleared,
// never sent). One request per read (wrk -c50, not pipelined) and 16 per read (pipelined).
//
//   bun bench/micro/http-plaintext-path.bench.ts

import { bench, run, summary } from "mitata";
import { Reactor } from "../../src/reactor/reactor.ts";
import { TcpStream, DEFAULT_CONNECTION_OPTIONS } from "../../src/stream/tcp-stream.ts";
import { createProtocolContext } from "../../src/protocols/context.ts";
import { builtinApp } from "../../src/protocols/http/app.ts";
import { createHttpProtocol } from "../../src/protocols/http/server.ts";

const reactor = new Reactor({ log: () => {} });
const REQ = "GET /plaintext HTTP/1.1\r\nHost: localhost:8080\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n";
const one = new TextEncoder().encode(REQ);
const sixteen = new TextEncoder().encode(REQ.repeat(16));
const handler = createHttpProtocol(builtinApp(createProtocolContext()));
const conn = new TcpStream<any>(reactor, -1, 1, handler as never, DEFAULT_CONNECTION_OPTIONS);
handler.open!(conn as never);
const clear = () => (conn as unknown as { outq: { clear(): void } | null }).outq?.clear();

summary(() => {
  bench("1 request per read", () => {
    handler.data!(conn as never, one);
    clear();
  });
  bench("16 pipelined requests per read (per read)", () => {
    handler.data!(conn as never, sixteen);
    clear();
  });
});
await run();
