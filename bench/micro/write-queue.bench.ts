// Micro-benchmark of the write path's buffers (src/buffers/write-queue.ts): every reply is
// appended to its connection's WriteQueue and leaves in one send(2) per reactor turn.
//
//   bun bench/micro/write-queue.bench.ts
//
// append/clear are pure; sendQueue is measured over a real loopback TCP pair (built with
// bunpoll's own socket helpers), draining the peer with recv(2) in the same iteration,
// next to the same send + recv done with bare libc calls, so the difference is the
// queue's own overhead.

import { bench, do_not_optimize, group, run, summary } from "mitata";
import { libc, rc, Errno, SOCK_NONBLOCK, SOCK_CLOEXEC, MSG_NOSIGNAL } from "../../ffi/index.ts";
import { BufferPool, CHUNK_SIZE } from "../../src/buffers/pool.ts";
import { WriteQueue } from "../../src/buffers/write-queue.ts";
import { sendQueue } from "../../src/driver/epoll.ts";
import { createListenSocket, localAddress, startConnect } from "../../src/driver/sockets.ts";

const pool = new BufferPool();
const q = new WriteQueue(pool);

const header = new Uint8Array([0x00, 0x06, 0x00, 0x40]); // ECHO_REPLY, 64 B
const body = new Uint8Array(64).map((_, i) => i);
// A "receive buffer" holding 16 request bodies: replies copy slices of it, like framed.ts.
const rx = new Uint8Array(16 * 68).map((_, i) => i & 0xff);
const large = new Uint8Array(CHUNK_SIZE * 4).map((_, i) => i & 0xff); // 64 KiB: beyond one pooled chunk
const medium = new Uint8Array(4096).fill(7);
const plain = new Uint8Array(new ArrayBuffer(CHUNK_SIZE));

/** The framed ECHO reply path: a 4-byte header, then the body slice (two appends). */
function appendReplies(n: number): void {
  for (let f = 0; f < n; f++) {
    const off = f * 68 + 4;
    q.append(header, 0, 4);
    q.append(rx, off, off + 64);
  }
}

group("WriteQueue append + clear (pooled 16 KiB chunk)", () => {
  summary(() => {
    bench("1 ECHO reply (4 B header + 64 B body) + clear", () => {
      appendReplies(1);
      q.clear();
    });
    bench("16 ECHO replies (1088 B) + clear", () => {
      appendReplies(16);
      q.clear();
    });
    // Reference, not bunpoll code: the same 1088 bytes copied with plain loops into a
    // preallocated buffer, i.e. roughly the floor for building these replies in JS.
    bench("reference: 16 ECHO replies by a plain byte loop (no WriteQueue)", () => {
      let e = 0;
      for (let f = 0; f < 16; f++) {
        const off = f * 68 + 4;
        plain[e] = 0x00;
        plain[e + 1] = 0x06;
        plain[e + 2] = 0x00;
        plain[e + 3] = 0x40;
        e += 4;
        for (let i = off; i < off + 64; i++) plain[e++] = rx[i]!;
      }
      return e;
    });
    bench("append 64 B whole array + clear", () => {
      q.append(body, 0, 64);
      q.clear();
    });
    bench("append 4 KiB + clear", () => {
      q.append(medium, 0, medium.length);
      q.clear();
    });
    bench('appendString("hello world\\n") + clear', () => {
      q.appendString("hello world\n");
      q.clear();
    });
  });
});

// Fan-out: the hub writes one encoded BROADCAST_MSG (8 + 64 B) to every recipient from the
// framed encoder's 1 KiB output buffer (src/hub.ts, FramedHubEncoder.out). 16 deliveries =
// one recipient's share of a read that carried 16 BROADCASTs.
const encoderOut = new Uint8Array(1024).fill(9);
const exact72 = encoderOut.subarray(0, 72);
group("WriteQueue append, one broadcast delivery (72 B)", () => {
  summary(() => {
    bench("16 x append(encoder.out 1 KiB, 0, 72) + clear (what the hub does)", () => {
      for (let i = 0; i < 16; i++) q.append(encoderOut, 0, 72);
      q.clear();
    });
    bench("16 x append(exact 72 B view, 0, 72) + clear", () => {
      for (let i = 0; i < 16; i++) q.append(exact72, 0, 72);
      q.clear();
    });
  });
});

group("WriteQueue append large (grows past the pooled chunk)", () => {
  bench("append 64 KiB + clear (unpooled buffer)", () => {
    q.append(large, 0, large.length);
    q.clear();
  });
  bench("append 64 x 1 KiB + clear (grows 16 -> 32 -> 64 KiB)", () => {
    for (let i = 0; i < 64; i++) q.append(large, i * 1024, i * 1024 + 1024);
    q.clear();
  });
});

// --- sendQueue over loopback TCP --------------------------------------------------------

async function tcpPair(): Promise<{ a: number; b: number }> {
  using listener = createListenSocket({ hostname: "127.0.0.1", port: 0 });
  const { fd } = startConnect("127.0.0.1", localAddress(listener.value).port);
  using client = fd;
  const deadline = performance.now() + 5000;
  let a = -1;
  while (a < 0) {
    a = rc(libc.accept4(listener.value, null, null, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (a === -Errno.EAGAIN) {
      if (performance.now() > deadline) throw new Error("accept timed out");
      await Bun.sleep(1);
    } else if (a < 0) throw new Error(`accept4: errno ${-a}`);
  }
  return { a, b: client.release() };
}

const pair = await tcpPair();
const sink = new Uint8Array(new ArrayBuffer(64 * 1024));
const replies = new Uint8Array(new ArrayBuffer(1088)).fill(3);

/** Read everything the peer has (non-blocking). */
function drainPeer(want: number): void {
  let got = 0;
  while (got < want) {
    const n = rc(libc.recv(pair.b, sink, sink.length, 0));
    if (n > 0) got += n;
    else if (n !== -Errno.EAGAIN) throw new Error(`recv: ${n}`);
  }
}

/**
 * A fresh (or idle) TCP pair is ~50% slower for its first thousands of round trips, which
 * made whichever row ran first look slow: warm it right before each row is measured.
 */
function warmPair(): void {
  for (let i = 0; i < 20_000; i++) {
    if (rc(libc.send(pair.a, replies, 1088, MSG_NOSIGNAL)) !== 1088) throw new Error("warm-up send");
    drainPeer(1088);
  }
}

group("sendQueue over a loopback TCP pair (send + the peer's recv)", () => {
  summary(() => {
    bench("WriteQueue: 16 ECHO replies, sendQueue, peer recv", function* () {
      warmPair();
      yield () => {
        appendReplies(16);
        const n = sendQueue(pair.a, q);
        if (n !== 1088) throw new Error(`sendQueue: ${n}`);
        drainPeer(1088);
      };
    });
    bench("bare libc.send 1088 B, peer recv", function* () {
      warmPair();
      yield () => {
        const n = rc(libc.send(pair.a, replies, 1088, MSG_NOSIGNAL));
        if (n !== 1088) throw new Error(`send: ${n}`);
        drainPeer(1088);
      };
    });
  });
});

await run();
do_not_optimize(pool.pooled);
libc.close(pair.a);
libc.close(pair.b);
