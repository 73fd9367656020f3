// The JS cost of the framed protocol's hot path, without syscalls: one read of 16 ECHO
// frames (64 B bodies) through the real handler table, into a real TcpStream's write
// queue (its fd is never used: the queue is cleared instead of flushed). ns per read / 16
// = JS cost per message, to set against the server CPU per message in bench/run.ts.
//
//   bun bench/micro/framed-echo-path.bench.ts

import { bench, run, summary } from "mitata";
import { Reactor } from "../../src/reactor/reactor.ts";
import { TcpStream, DEFAULT_CONNECTION_OPTIONS } from "../../src/stream/tcp-stream.ts";
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
// The reactor's receive buffer holds the read, as in the server; received() is the view a
// data handler gets (and tells the write queue its address). It is refilled every time, as
// a recv(2) would: the framed protocol retypes PING/ECHO headers in place.
const input = () => {
  reactor.driver.recvBuffer.set(chunk);
  return reactor.driver.received(chunk.length);
};

function setup(handler: ReturnType<typeof createFramedProtocol> | ReturnType<typeof createEchoProtocol>) {
  const conn = new TcpStream<any>(reactor, -1, 1, handler as any, DEFAULT_CONNECTION_OPTIONS);
  (handler as { open?(c: unknown): void }).open?.(conn);
  const reset = () => {
    (conn as unknown as { outq: { clear(): void } | null }).outq?.clear();
    (reactor as unknown as { dirty: unknown[] }).dirty.length = 0;
    conn.dirty = false;
  };
  return { conn, reset };
}

// Every variant is warmed up before any is measured: otherwise whichever runs first is
// measured while the JIT is still settling (2x slower here).
const warm: (() => void)[] = [];
for (const stats of [false, true]) {
  const ctx = createProtocolContext({ stats: { enabled: stats } });
  const framed = createFramedProtocol(ctx);
  const f = setup(framed);
  const once = () => {
    framed.data!(f.conn as any, input());
    f.reset();
  };
  warm.push(once);
  summary(() => {
    bench(`framed: one read of ${FRAMES} ECHO x 64 B (stats ${stats ? "on" : "off"})`, once);
  });
}
const echo = createEchoProtocol();
const e = setup(echo);
bench(`echo: one read of ${chunk.length} B`, () => {
  echo.data!(e.conn as any, input());
  e.reset();
});

for (const f of warm) for (let i = 0; i < 200_000; i++) f();
await run();
reactor[Symbol.dispose]();
