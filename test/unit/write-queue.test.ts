// src/reactor/write-queue.ts: BufferPool and WriteQueue, pure and over a real loopback TCP
// pair whose send buffer is made tiny, so that the kernel takes partial writes.

import { describe, test, expect, afterEach } from "bun:test";
import fc from "fast-check";
import {
  libc, rc, Errno, SOL_SOCKET, SO_SNDBUF, SO_RCVBUF,
} from "../../ffi/index.ts";
import { BufferPool, CHUNK_SIZE } from "../../src/buffers/pool.ts";
import { SharedBytes } from "../../src/buffers/shared-bytes.ts";
import { WriteQueue } from "../../src/buffers/write-queue.ts";
import { sendQueue } from "../../src/driver/epoll.ts";
import { rawTcpPair, type RawPair } from "../util/raw-tcp.ts";
import { setIntOption, getIntOption } from "../../src/driver/sockets.ts";
import { EpollPoller } from "../../src/driver/epoll.ts";
import { WRITABLE } from "../../src/driver/driver.ts";

// --- helpers ------------------------------------------------------------------------------

/** Bytes queued, read through the private fields (pure tests only). */
function queued(q: WriteQueue): Uint8Array {
  const p = q as unknown as { buf: Uint8Array | null; start: number; end: number };
  return p.buf ? p.buf.slice(p.start, p.end) : new Uint8Array(0);
}

function pattern(n: number, seed = 7): Uint8Array {
  const b = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}

function firstDiff(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : n;
}

const open: RawPair[] = [];
afterEach(() => {
  for (const p of open.splice(0)) p[Symbol.dispose]();
});

async function tcpPair(): Promise<RawPair> {
  const p = await rawTcpPair();
  open.push(p);
  return p;
}

/** recv everything available (non-blocking) into `sink`; returns bytes read or -errno. */
const recvBuf = new Uint8Array(new ArrayBuffer(64 * 1024));
function drain(fd: number, sink: Uint8Array[], max = Infinity): number {
  let total = 0;
  while (total < max) {
    const want = Math.min(recvBuf.length, max - total);
    const n = rc(libc.recv(fd, recvBuf, want, 0));
    if (n > 0) {
      sink.push(recvBuf.slice(0, n));
      total += n;
      continue;
    }
    if (n === -Errno.EAGAIN) return total;
    if (n === 0) return total;
    throw new Error(`recv: errno ${-n}`);
  }
  return total;
}

function concat(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((s, c) => s + c.length, 0));
  let off = 0;
  for (const c of chunks) {
    out.set(c, off);
    off += c.length;
  }
  return out;
}

// --- BufferPool ---------------------------------------------------------------------------

describe("BufferPool", () => {
  test("small requests get a CHUNK_SIZE buffer, reused after release", () => {
    const pool = new BufferPool();
    const a = pool.acquire(10);
    expect(a.length).toBe(CHUNK_SIZE);
    expect(a.byteOffset).toBe(0);
    expect(a.buffer.byteLength).toBe(CHUNK_SIZE); // its own ArrayBuffer: a stable address
    pool.release(a);
    expect(pool.pooled).toBe(1);
    expect(pool.acquire(CHUNK_SIZE)).toBe(a);
    expect(pool.pooled).toBe(0);
  });

  test("buffers come in power-of-two size classes and are pooled per class", () => {
    const pool = new BufferPool();
    const big = pool.acquire(CHUNK_SIZE + 1);
    expect(big.length).toBe(2 * CHUNK_SIZE);
    pool.release(big);
    expect(pool.pooled).toBe(1);
    expect(pool.acquire(CHUNK_SIZE)).not.toBe(big); // another class
    expect(pool.acquire(2 * CHUNK_SIZE)).toBe(big); // same class: reused
    expect(pool.pooled).toBe(0);
    const huge = pool.acquire(4 * 1024 * 1024); // past the largest pooled class
    pool.release(huge);
    expect(pool.pooled).toBe(0);
    pool.release(new Uint8Array(CHUNK_SIZE + 1)); // not a size-class buffer: dropped
    expect(pool.pooled).toBe(0);
  });

  test("the pool is bounded by maxPooledBytes", () => {
    const pool = new BufferPool(3 * CHUNK_SIZE);
    const bufs = Array.from({ length: 5 }, () => pool.acquire(1));
    for (const b of bufs) pool.release(b);
    expect(pool.pooled).toBe(3);
  });
});

// --- WriteQueue, no socket ----------------------------------------------------------------

describe("WriteQueue accounting", () => {
  test("an idle queue holds no buffer", () => {
    const q = new WriteQueue(new BufferPool());
    expect(q.length).toBe(0);
    expect(q.capacity).toBe(0);
    q.append(new Uint8Array(0), 0, 0);
    q.appendString("");
    expect(q.capacity).toBe(0);
  });

  test("append copies [from, to) for small (byte loop) and large (set) slices", () => {
    const q = new WriteQueue(new BufferPool());
    const src = pattern(1000);
    q.append(src, 5, 10); // <= 32 bytes: byte loop
    q.append(src, 100, 600); // > 32: subarray + set
    q.append(src, 0, src.length); // whole array
    const expected = concat([src.subarray(5, 10), src.subarray(100, 600), src]);
    expect(q.length).toBe(expected.length);
    expect(queued(q)).toEqual(expected);
    src.fill(0); // the queue owns copies: the caller may reuse its buffer
    expect(queued(q)).toEqual(expected);
  });

  test("appendString encodes UTF-8, including multi-byte and astral characters", () => {
    const q = new WriteQueue(new BufferPool());
    const s = "héllo wörld — ✓ 𝄞 €";
    q.appendString(s);
    q.appendString("!");
    expect(new TextDecoder().decode(queued(q))).toBe(s + "!");
    expect(q.length).toBe(new TextEncoder().encode(s + "!").length);
  });

  test("appendString near the end of the buffer grows it (worst-case reservation)", () => {
    const q = new WriteQueue(new BufferPool());
    q.append(pattern(CHUNK_SIZE - 3), 0, CHUNK_SIZE - 3);
    q.appendString("€€€€"); // 12 bytes UTF-8, does not fit in 3
    expect(q.length).toBe(CHUNK_SIZE - 3 + 12);
    expect(new TextDecoder().decode(queued(q).subarray(CHUNK_SIZE - 3))).toBe("€€€€");
  });

  test("growth keeps order; clear gives the chunk back to the pool", () => {
    const pool = new BufferPool();
    const q = new WriteQueue(pool);
    const parts = [pattern(100, 1), pattern(CHUNK_SIZE, 2), pattern(3 * CHUNK_SIZE + 17, 3)];
    for (const p of parts) q.append(p, 0, p.length);
    expect(queued(q)).toEqual(concat(parts));
    expect(q.capacity).toBeGreaterThanOrEqual(q.length);
    q.clear();
    expect(q.length).toBe(0);
    expect(q.capacity).toBe(0);
    // 16 KiB, then 32 KiB went back to the pool as the queue grew; clear() returned the last.
    expect(pool.pooled).toBe(3);
  });
});

// --- WriteQueue over a real socket --------------------------------------------------------

describe("sendQueue (the epoll driver's send of a WriteQueue) over a real TCP pair", () => {
  test("a small write leaves in one send and releases the buffer", async () => {
    const pool = new BufferPool();
    const { a, b } = await tcpPair();
    const q = new WriteQueue(pool);
    q.appendString("hello ");
    q.append(new TextEncoder().encode("world"), 0, 5);
    expect(sendQueue(a, q)).toBe(11);
    expect(q.length).toBe(0);
    expect(q.capacity).toBe(0);
    expect(pool.pooled).toBe(1);
    expect(sendQueue(a, q)).toBe(0); // nothing queued: no syscall, 0
    const got: Uint8Array[] = [];
    await waitUntil(() => (drain(b, got), concat(got).length >= 11));
    expect(new TextDecoder().decode(concat(got))).toBe("hello world");
  });

  test("sendQueue to a closed fd returns -EBADF and keeps the bytes", () => {
    const q = new WriteQueue(new BufferPool());
    q.appendString("x");
    expect(sendQueue(987_654, q)).toBe(-Errno.EBADF);
    expect(q.length).toBe(1);
  });

  test("EPIPE (not SIGPIPE) once the peer is gone", async () => {
    const { a, b } = await tcpPair();
    libc.close(b);
    open.at(-1)!.b = -1;
    const q = new WriteQueue(new BufferPool());
    const payload = pattern(64 * 1024);
    let r = 0;
    // First send may succeed (data queued) and draw an RST; a later one fails.
    for (let i = 0; i < 50 && r >= 0; i++) {
      q.append(payload, 0, payload.length);
      r = sendQueue(a, q);
      if (r >= 0) await Bun.sleep(5);
    }
    expect([-Errno.EPIPE, -Errno.ECONNRESET]).toContain(r);
  });

  test("EPIPE (not SIGPIPE) from the sendmsg path too (shared segments)", async () => {
    const { a, b } = await tcpPair();
    libc.close(b);
    open.at(-1)!.b = -1;
    const q = new WriteQueue(new BufferPool());
    const shared = SharedBytes.copyOf(pattern(64 * 1024));
    let r = 0;
    for (let i = 0; i < 50 && r >= 0; i++) {
      q.append(shared.bytes, 0, 10);
      q.appendShared(shared, 0, shared.bytes.length);
      r = sendQueue(a, q);
      if (r >= 0) await Bun.sleep(5);
    }
    expect([-Errno.EPIPE, -Errno.ECONNRESET]).toContain(r);
  });

  test("4 MiB through a tiny SO_SNDBUF: partial writes, EAGAIN, EPOLLOUT, all bytes in order", async () => {
    const { a, b } = await tcpPair();
    setIntOption(a, SOL_SOCKET, SO_SNDBUF, 4096, "SO_SNDBUF");
    // A fixed, modest receive window (no autotuning), so that a paused reader stops the
    // flow long before 4 MiB; not tiny, or delayed ACKs would slow the test to a crawl.
    setIntOption(b, SOL_SOCKET, SO_RCVBUF, 64 * 1024, "SO_RCVBUF");
    const sndbuf = getIntOption(a, SOL_SOCKET, SO_SNDBUF, "SO_SNDBUF");
    expect(sndbuf).toBeLessThan(64 * 1024); // the kernel doubles the value; still tiny

    using ep = new EpollPoller(8);
    expect(ep.add(a, 7, 0)).toBe(0); // interest armed only while output is pending

    const total = 4 * 1024 * 1024;
    const payload = pattern(total, 99);
    const q = new WriteQueue(new BufferPool());
    // Enqueue in irregular pieces, mixing the byte-loop and set() paths.
    for (let off = 0, i = 0; off < total; i++) {
      const n = Math.min(total - off, [1, 31, 32, 33, 1000, 65536, 7][i % 7]!);
      q.append(payload, off, off + n);
      off += n;
    }
    expect(q.length).toBe(total);

    const received: Uint8Array[] = [];
    let got = 0;
    let partials = 0, eagains = 0, writableEvents = 0, sends = 0;
    let pausedPhaseChecked = false;
    const deadline = performance.now() + 30_000;
    while (got < total) {
      if (performance.now() > deadline) throw new Error(`stalled: ${got}/${total} received, ${q.length} queued`);
      if (q.length > 0) {
        const before = q.length;
        const r = sendQueue(a, q);
        sends++;
        if (r === -Errno.EAGAIN) eagains++;
        else if (r < 0) throw new Error(`send: errno ${-r}`);
        else {
          expect(q.length).toBe(before - r);
          if (r < before) partials++;
        }
        if (q.length > 0) {
          // The kernel refused part of it: arm EPOLLOUT, as the connection does.
          expect(ep.modify(a, 7, WRITABLE)).toBe(0);
        }
      }
      if (!pausedPhaseChecked && got > total / 4 && q.length > 0) {
        // Pause the reader: keep sending until both the receive window and our send
        // buffer are full, i.e. the kernel refuses everything and EPOLLOUT stays quiet.
        // ACKs of bytes in flight can still free room for a while (the receive window
        // autotunes), so "full" is a state reached, not a moment: no EPOLLOUT for 100 ms
        // and then a send refused outright.
        let quiet = false;
        for (let round = 0; round < 200 && !quiet; round++) {
          for (let i = 0; i < 100 && sendQueue(a, q) !== -Errno.EAGAIN; i++);
          const stuck = q.length;
          quiet = ep.poll(100) === 0 && sendQueue(a, q) === -Errno.EAGAIN && q.length === stuck;
        }
        expect(quiet).toBe(true);
        eagains++;
        // ...then resume the reader: EPOLLOUT fires and sending continues.
        got += drain(b, received);
        const n = ep.poll(1000);
        expect(n).toBe(1);
        expect(ep.eventFd(0)).toBe(a);
        expect(ep.eventGeneration(0)).toBe(7);
        expect(ep.eventMask(0) & WRITABLE).toBe(WRITABLE);
        writableEvents++;
        pausedPhaseChecked = true;
        continue;
      }
      got += drain(b, received);
      if (q.length > 0) {
        const n = ep.poll(got < total ? 200 : 0);
        if (n > 0 && ep.eventMask(0) & WRITABLE) writableEvents++;
      } else {
        // Everything handed to the kernel: disarm EPOLLOUT, wait for the rest to arrive.
        ep.modify(a, 7, 0);
        await Bun.sleep(0);
      }
    }
    const data = concat(received);
    expect(data.length).toBe(total);
    expect(firstDiff(data, payload)).toBe(-1);
    expect(q.length).toBe(0);
    expect(q.capacity).toBe(0);
    expect(partials).toBeGreaterThan(10); // a 4 MiB queue cannot leave in one send here
    expect(eagains).toBeGreaterThan(0);
    expect(writableEvents).toBeGreaterThan(0);
    expect(pausedPhaseChecked).toBe(true);
    expect(sends).toBeGreaterThan(partials);
  }, 60_000);

  test("property: random appends and partial flushes deliver exactly the appended stream", async () => {
    const enc = new TextEncoder();
    type Op =
      | { k: "bytes"; n: number; from: number }
      | { k: "shared"; n: number; from: number; cut: number }
      | { k: "str"; s: string }
      | { k: "flush" }
      | { k: "read"; max: number };
    const opArb: fc.Arbitrary<Op> = fc.oneof(
      // By reference, as a broadcast does: a SharedBytes of source[from, from + n), queued
      // from `cut` bytes in, and interleaved with copied bytes (sendmsg with several iovecs).
      { weight: 3, arbitrary: fc.record({ k: fc.constant("shared" as const), n: fc.integer({ min: 1, max: 70_000 }), from: fc.integer({ min: 0, max: 100 }), cut: fc.integer({ min: 0, max: 50 }) }) },
      { weight: 4, arbitrary: fc.record({ k: fc.constant("bytes" as const), n: fc.integer({ min: 0, max: 40_000 }), from: fc.integer({ min: 0, max: 100 }) }) },
      { weight: 2, arbitrary: fc.record({ k: fc.constant("str" as const), s: fc.string({ unit: "binary", maxLength: 200 }) }) },
      { weight: 3, arbitrary: fc.record({ k: fc.constant("flush" as const) }) },
      { weight: 2, arbitrary: fc.record({ k: fc.constant("read" as const), max: fc.integer({ min: 1, max: 100_000 }) }) },
    );
    const source = pattern(50_000, 3);
    await fc.assert(
      fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 60, size: "max" }), async (ops) => {
        const { a, b } = await tcpPair();
        setIntOption(a, SOL_SOCKET, SO_SNDBUF, 4096, "SO_SNDBUF");
        const q = new WriteQueue(new BufferPool());
        const expected: Uint8Array[] = [];
        const received: Uint8Array[] = [];
        for (const o of ops) {
          if (o.k === "bytes") {
            const from = Math.min(o.from, source.length);
            const to = Math.min(source.length, from + o.n);
            q.append(source, from, to);
            expected.push(source.slice(from, to));
          } else if (o.k === "shared") {
            const from = Math.min(o.from, source.length);
            const to = Math.min(source.length, from + o.n);
            const shared = SharedBytes.copyOf(source, from, to);
            const cut = Math.min(o.cut, to - from);
            q.appendShared(shared, cut, to - from);
            shared.release(); // the queue's reference keeps it; the pool reuses it after the send
            expected.push(source.slice(from + cut, to));
          } else if (o.k === "str") {
            q.appendString(o.s);
            expected.push(enc.encode(o.s)); // lone surrogates become U+FFFD in both
          } else if (o.k === "flush") {
            const r = sendQueue(a, q);
            if (r < 0 && r !== -Errno.EAGAIN) throw new Error(`send errno ${-r}`);
          } else {
            drain(b, received, o.max);
          }
        }
        const want = concat(expected);
        const deadline = performance.now() + 10_000;
        let got = concat(received).length;
        while (got < want.length) {
          if (performance.now() > deadline) throw new Error(`stalled at ${got}/${want.length}`);
          const r = sendQueue(a, q);
          if (r < 0 && r !== -Errno.EAGAIN) throw new Error(`send errno ${-r}`);
          got += drain(b, received);
          if (r === -Errno.EAGAIN) await Bun.sleep(0);
        }
        const data = concat(received);
        expect(data.length).toBe(want.length);
        expect(firstDiff(data, want)).toBe(-1);
        expect(q.length).toBe(0);
        expect(q.capacity).toBe(0); // every pooled buffer went back
        for (const p of open.splice(0)) p[Symbol.dispose]();
      }),
      { numRuns: 60 },
    );
  }, 60_000);
});

describe("WriteQueue copies", () => {
  test("appends from views at any byteOffset, small heap arrays and big ones copy the right bytes", () => {
    const q = new WriteQueue(new BufferPool());
    const base = pattern(4096, 5);
    const expected: number[] = [];
    const sources: Uint8Array[] = [
      base.subarray(1000, 1100), // a view with a byteOffset
      base.subarray(3, 3000).subarray(7, 90), // a view of a view
      Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20]), // small, no own buffer
      new Uint8Array(new ArrayBuffer(70_000)).fill(9),
    ];
    for (let round = 0; round < 200; round++) {
      for (const src of sources) {
        for (const [from, to] of [[0, src.length], [1, src.length - 1], [5, 22], [2, 3]] as const) {
          q.append(src, from, Math.min(to, src.length));
          q.appendPrefixed(0x01020304, src, from, Math.min(to, src.length));
          const part = Array.from(src.subarray(from, Math.min(to, src.length)));
          expected.push(...part, 1, 2, 3, 4, ...part);
        }
      }
      expect(firstDiff(queued(q), Uint8Array.from(expected))).toBe(-1); // every round: also once the JIT is hot
      q.clear();
      expected.length = 0;
    }
  }, 30_000); // 200 rounds of byte-by-byte comparison: seconds on a loaded 2-core machine
});

describe("SharedBytes", () => {
  test("without a pool it copies: the caller may reuse its array, and the copy owns its buffer", () => {
    const src = Uint8Array.from([1, 2, 3, 4, 5]);
    const sb = new SharedBytes(src, 3);
    src.fill(9);
    expect(Array.from(sb.bytes.subarray(0, sb.length))).toEqual([1, 2, 3]);
    expect(sb.bytes.buffer.byteLength).toBe(3);
    expect(() => new SharedBytes(src, 6)).toThrow(RangeError);
  });

  test("copyOf: below CHUNK_SIZE an exact-size buffer (memory = what maxBuffered counts), from it a pooled one", () => {
    const pool = new BufferPool();
    const small = SharedBytes.copyOf(pattern(1152), 0, 1152, pool);
    expect(small.bytes.length).toBe(1152);
    small.release();
    expect(pool.pooled).toBe(0); // not a pool buffer
    const big = SharedBytes.copyOf(pattern(CHUNK_SIZE + 8), 0, CHUNK_SIZE + 8, pool);
    expect(big.bytes.length).toBe(2 * CHUNK_SIZE);
    big.release();
    expect(pool.pooled).toBe(1);
  });
});

describe("WriteQueue shared segments", () => {
  test("shared bytes are referenced, not copied, and go out in append order with copied bytes", async () => {
    const { a, b } = await tcpPair();
    const pool = new BufferPool();
    const q = new WriteQueue(pool);
    const payload = SharedBytes.copyOf(pattern(100_000, 11), 0, 100_000, pool);
    q.append(new Uint8Array([1, 2, 3]), 0, 3);
    q.appendShared(payload, 0, payload.length);
    payload.release(); // the queue holds the only reference now
    q.append(new Uint8Array([4, 5]), 0, 2);
    expect(q.length).toBe(3 + 100_000 + 2);
    // Only the two small tails hold pooled memory; the 100 KB is the SharedBytes'.
    expect(q.capacity).toBe(2 * CHUNK_SIZE);
    const received: Uint8Array[] = [];
    const deadline = performance.now() + 5000;
    while (q.length > 0) {
      if (performance.now() > deadline) throw new Error("stalled");
      const r = sendQueue(a, q);
      if (r < 0 && r !== -Errno.EAGAIN) throw new Error(`send errno ${-r}`);
      drain(b, received);
      if (r === -Errno.EAGAIN) await Bun.sleep(1);
    }
    drain(b, received);
    const want = concat([new Uint8Array([1, 2, 3]), pattern(100_000, 11), new Uint8Array([4, 5])]);
    expect(firstDiff(concat(received), want)).toBe(-1);
    expect(q.capacity).toBe(0);
    // Both tails, and the payload's pooled buffer once its last reference (the queue's) went.
    expect(payload.released).toBe(true);
    expect(pool.pooled).toBe(3);
  });

  test("more segments than one sendmsg takes (64 iovecs) leave over several flushes, in order", async () => {
    const { a, b } = await tcpPair();
    const q = new WriteQueue(new BufferPool());
    const parts: Uint8Array[] = [];
    for (let i = 0; i < 150; i++) {
      const bytes = pattern(100 + i, i + 1);
      q.appendShared(new SharedBytes(bytes.slice()), 0, bytes.length);
      parts.push(bytes);
      if (i % 10 === 0) {
        const tag = new Uint8Array([i & 0xff]);
        q.append(tag, 0, 1);
        parts.push(tag);
      }
    }
    const want = concat(parts);
    expect(q.length).toBe(want.length);
    let flushes = 0;
    const received: Uint8Array[] = [];
    while (q.length > 0) {
      const r = sendQueue(a, q);
      expect(r).toBeGreaterThan(0); // a 64 KiB+ socket buffer takes each batch whole
      flushes++;
      drain(b, received);
    }
    drain(b, received);
    expect(flushes).toBeGreaterThanOrEqual(3);
    expect(firstDiff(concat(received), want)).toBe(-1);
  });

  test("clear() drops shared references and returns retired tails to the pool", () => {
    const pool = new BufferPool();
    const q = new WriteQueue(pool);
    const shared = SharedBytes.copyOf(pattern(20_000), 0, 20_000, pool); // pooled (>= CHUNK_SIZE)
    for (let i = 0; i < 3; i++) {
      q.append(new Uint8Array(10), 0, 10);
      q.appendShared(shared, 0, 1000);
    }
    expect(q.length).toBe(3 * 1010);
    expect(q.capacity).toBe(3 * CHUNK_SIZE);
    q.clear();
    expect(q.length).toBe(0);
    expect(q.capacity).toBe(0);
    expect(pool.pooled).toBe(3);
    // The creator's reference keeps the payload alive; releasing it returns the buffer.
    expect(shared.released).toBe(false);
    shared.release();
    expect(shared.released).toBe(true);
    expect(pool.pooled).toBe(4);
    expect(() => shared.release()).toThrow();
    expect(() => shared.retain()).toThrow();
  });
});

async function waitUntil(cond: () => boolean, ms = 5000): Promise<void> {
  const deadline = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > deadline) throw new Error("condition not met in time");
    await Bun.sleep(1);
  }
}
