// The JS cost of bunpoll's WebSocket echo path, without syscalls: one read of 16 masked
// client frames (64 B, binary and text) through the real stream handler
// (upgradeStream: decoder, unmasking, UTF-8 check, the message handler, ws.send)
// into a real TcpStream's write queue (its fd is never used: the queue is cleared instead
// of flushed). ns per read / 16 = JS cost per message, to set against the server CPU per
// message of `bench/run.ts --protocol ws --scenarios ws-echo`.
//
//   bun bench/micro/ws-echo-path.bench.ts

import { bench, run } from "mitata";
import { Reactor } from "../../src/reactor/reactor.ts";
import { TcpStream, DEFAULT_CONNECTION_OPTIONS } from "../../src/stream/tcp-stream.ts";
import { upgradeStream, type ServerWebSocket } from "../../src/protocols/ws/socket.ts";

const FRAMES = 16;
const SIZE = 64;
const reactor = new Reactor({ log: () => {} });

/** 16 masked client frames of one opcode, as one read. */
function chunkOf(opcode: number): Uint8Array {
  const frame = new Uint8Array(2 + 4 + SIZE);
  frame[0] = 0x80 | opcode;
  frame[1] = 0x80 | SIZE;
  const key = [0x12, 0x34, 0x56, 0x78];
  frame.set(key, 2);
  for (let i = 0; i < SIZE; i++) frame[6 + i] = (0x61 + (i % 26)) ^ key[i & 3]!;
  const b = new Uint8Array(new ArrayBuffer(frame.length * FRAMES));
  for (let i = 0; i < FRAMES; i++) b.set(frame, i * frame.length);
  return b;
}

// The reactor's receive buffer holds the read, as in the server, refilled every time as a
// recv(2) would (frames are unmasked in place).
const input = (chunk: Uint8Array) => {
  reactor.driver.recvBuffer.set(chunk);
  return reactor.driver.received(chunk.length);
};

const conn = new TcpStream<any>(reactor, -1, 1, {}, DEFAULT_CONNECTION_OPTIONS);
upgradeStream<undefined>(
  conn,
  {
    message(ws: ServerWebSocket<undefined>, m: string | Uint8Array) {
      ws.send(m);
    },
    idleTimeout: 0,
  },
  undefined,
  null,
  null,
  "",
);
// What the stream hands the socket on every read (its handler's data()).
const ws = conn.data as ServerWebSocket<undefined>;
const reset = () => {
  (conn as unknown as { outq: { clear(): void } | null }).outq?.clear();
  (reactor as unknown as { dirty: unknown[] }).dirty.length = 0;
  conn.dirty = false;
};

const variants = [
  [`binary: one read of ${FRAMES} frames x ${SIZE} B`, chunkOf(2)],
  [`text: one read of ${FRAMES} frames x ${SIZE} B`, chunkOf(1)],
] as const;
const warm: (() => void)[] = [];
for (const [name, chunk] of variants) {
  const once = () => {
    void ws.received(input(chunk));
    reset();
  };
  warm.push(once);
  bench(name, once);
}
// Warm every variant before measuring any (the first one measured would catch the JIT settling).
for (const f of warm) for (let i = 0; i < 100_000; i++) f();
// The handler really echoed: 16 frames of 66 bytes were queued.
void ws.received(input(variants[0][1]));
const queued = conn.bufferedAmount;
if (queued !== FRAMES * (2 + SIZE)) throw new Error(`expected ${FRAMES * (2 + SIZE)} bytes queued, got ${queued}`);
reset();
await run();
reactor[Symbol.dispose]();
