// Measures what the reactor's event-loop integration costs and how it behaves for a user's
// handler that uses Bun's own timers, promises and I/O (docs/ARCHITECTURE.md quotes it).
//   bun bench/eventloop.ts
import { Reactor } from "../src/reactor/reactor.ts";

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

// 1. The cost of one yield to Bun's loop (setImmediate round trip).
{
  const N = 200_000;
  const t0 = performance.now();
  for (let i = 0; i < N; i++) await new Promise<void>((r) => setImmediate(r));
  console.log(`setImmediate yield: ${(((performance.now() - t0) * 1000) / N).toFixed(2)} us per yield`);
}

// A reactor with one echo-like server whose handler uses Bun's timers / I/O.
const reactor = new Reactor();
const lateness: number[] = [];
const ioLatency: number[] = [];
const bunServer = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data(s, d) { s.write(d); } } });
const l = reactor.listen({
  port: 0,
  handler: {
    async data(conn, bytes) {
      const cmd = bytes[0];
      if (cmd === 0x74) {
        // 't': setTimeout(5 ms) inside a handler, how late does it fire?
        const t0 = performance.now();
        await new Promise((r) => setTimeout(r, 5));
        lateness.push(performance.now() - t0 - 5);
      } else {
        // 'i': a round trip over Bun's own I/O (a Bun.connect socket) inside a handler.
        const t0 = performance.now();
        await new Promise<void>((resolve) => {
          void Bun.connect({ hostname: "127.0.0.1", port: bunServer.port, socket: {
            open(s) { s.write("x"); },
            data(s) { s.end(); resolve(); },
          } });
        });
        ioLatency.push(performance.now() - t0);
      }
      conn.write("k");
    },
  },
});
// Client: Bun's own socket driving the reactor's server, one request at a time.
await new Promise<void>((done) => {
  let sent = 0;
  const TOTAL = 400;
  void Bun.connect({ hostname: "127.0.0.1", port: l.port, socket: {
    open(s) { s.write("t"); sent++; },
    data(s) {
      if (sent >= TOTAL) { s.end(); done(); return; }
      s.write(sent % 2 ? "i" : "t");
      sent++;
    },
  } });
});
console.log(`setTimeout(5ms) in a handler fired late by: p50 ${pct(lateness, 50).toFixed(2)} ms, p99 ${pct(lateness, 99).toFixed(2)} ms, max ${Math.max(...lateness).toFixed(2)} ms`);
console.log(`Bun.connect round trip in a handler: p50 ${(pct(ioLatency, 50) * 1000).toFixed(0)} us, p99 ${(pct(ioLatency, 99) * 1000).toFixed(0)} us`);
bunServer.stop(true);
await reactor.stop({ graceful: false });
reactor[Symbol.dispose]();

// 4. An awaited request/reply through the client library: the reply resolves a promise in a
// handler, and the caller's continuation must run before the reactor sleeps again.
{
  const { serveHandler } = await import("../src/listen.ts");
  const { createFramedProtocol } = await import("../src/protocols/framed.ts");
  const { createProtocolContext } = await import("../src/protocols/context.ts");
  const { connect } = await import("../src/client/index.ts");
  const server = serveHandler({ port: 0 }, createFramedProtocol(createProtocolContext()));
  const c = await connect({ host: "127.0.0.1", port: server.port, protocol: "framed", reactor: server.reactor });
  const rtts: number[] = [];
  for (let i = 0; i < 3000; i++) {
    const t0 = performance.now();
    await c.ping();
    rtts.push(performance.now() - t0);
  }
  console.log(`awaited client ping (one reactor, one process): p50 ${(pct(rtts, 50) * 1000).toFixed(0)} us, p99 ${(pct(rtts, 99) * 1000).toFixed(0)} us`);
  await c.close();
  await server.stop({ graceful: false });
}
