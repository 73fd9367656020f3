// The JS cost of the framed protocol's hot path, without syscalls: one read of 16 ECHO
// frames (64 B bodies) through the real handler table, into a real TcpConnection's write
// queue (its fd is never used: the queue is cleared instead of flushed). ns per read / 16
// = JS cost per message, to set against the server CPU per message in bench/run.ts.
//
//   bun bench/micro/framed-echo-path.bench.ts

import { bench, run, summary } from "mitata";
import { Reactor } from "../../src/reactor/reactor.ts";
import { TcpConnection, DEFAULT_CONNECTION_OPTIONS } from "../../src/reactor/connection.ts";
import { createProtocolContext } from "../../src/protocols/context.ts";
import { createFramedProtocol } from "../../src/protocols/framed.ts";
import { createEchoProtocol } from "../../src/protocols/echo.ts";
import { encodeFrame } from "../../src/protocols/codec/framed.ts";

const FRAMES = 16;
const reactor = new Reactor({ log: () => {} });
const chunk = (() => {
  const one = encodeFrame(5, new Uint8Array(64).fill(7));
  const b = new Uint8Array(new ArrayBuffer(one.length * FRAMES));
  for (let i = 0; i < FRAMES; i++) b.set(one, i * one.length);
  return b;
})();

function setup(handler: ReturnType<typeof createFramedProtocol> | ReturnType<typeof createEchoProtocol>) {
  const conn = new TcpConnection<any>(reactor, -1, 1, handler as any, DEFAULT_CONNECTION_OPTIONS);
  handler.open?.(conn as any);
  const reset = () => {
    (conn as unknown as { outq: { clear(): void } | null }).outq?.clear();
    (reactor as unknown as { dirty: unknown[] }).dirty.length = 0;
    conn.dirty = false;
  };
  return { conn, reset };
}

for (const stats of [true, false]) {
  const ctx = createProtocolContext({ stats: { enabled: stats } });
  const framed = createFramedProtocol(ctx);
  const f = setup(framed);
  summary(() => {
    bench(`framed: one read of ${FRAMES} ECHO x 64 B (stats ${stats ? "on" : "off"})`, () => {
      framed.data!(f.conn as any, chunk);
      f.reset();
    });
  });
}
const echo = createEchoProtocol();
const e = setup(echo);
bench(`echo: one read of ${chunk.length} B`, () => {
  echo.data!(e.conn as any, chunk);
  e.reset();
});

await run();
reactor[Symbol.dispose]();
