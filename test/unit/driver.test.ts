// src/driver/: the epoll driver's dispatch table, wake eventfd and event paths, including
// the review findings it fixes (each test failed before its fix).

import { describe, test, expect, afterEach } from "bun:test";
import { readdirSync } from "node:fs";
import { libc, Errno, EFD_NONBLOCK, EFD_CLOEXEC } from "../../ffi/index.ts";
import { EpollDriver } from "../../src/driver/epoll.ts";
import { KIND_STREAM, READABLE, ReadNext, WRITABLE, ERROR, type IoCounters, type IoStream } from "../../src/driver/driver.ts";
import { openReserveFd } from "../../src/driver/sockets.ts";
import { Reactor } from "../../src/reactor/reactor.ts";
import { StreamState, type CloseReason } from "../../src/stream/stream.ts";
import { ScriptedBackend } from "../util/scripted-poller.ts";
import { withTimeout, waitFor } from "../util/tcp.ts";

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0).reverse()) {
    try {
      c();
    } catch {}
  }
});

const counters = (): IoCounters => ({ bytesIn: 0, bytesOut: 0, readCalls: 0, writeCalls: 0, acceptErrors: 0 });
const fdCount = () => readdirSync("/proc/self/fd").length;

/** An IoStream that records what the driver calls on it. */
class RecordingStream implements IoStream {
  declare readonly kind: typeof KIND_STREAM;
  interest = 0;
  writable = 0;
  hangups: number[] = [];
  onWritableHook: (() => void) | null = null;
  constructor(readonly fd: number) {}
  onData(): number {
    return ReadNext.Stop;
  }
  onEnd(): void {}
  onEmpty(): void {}
  onWritable(): void {
    this.writable++;
    this.onWritableHook?.();
  }
  onSendComplete(): void {}
  onReadError(): void {}
  onHangup(err: number): void {
    this.hangups.push(err);
  }
}
Object.defineProperty(RecordingStream.prototype, "kind", { value: KIND_STREAM });

describe("wake eventfd", () => {
  test("a driver created while 1024+ fds are open drains its eventfd after a wake (it used to spin)", () => {
    const held: number[] = [];
    cleanups.push(() => held.forEach((fd) => libc.close(fd)));
    while (held.length === 0 || held[held.length - 1]! < 1100) {
      const fd = openReserveFd();
      expect(fd).toBeGreaterThanOrEqual(0);
      held.push(fd);
    }
    using d = new EpollDriver(counters());
    expect(d.wakeFd).toBeGreaterThan(1024); // the situation: past the first 1024-slot table
    d.wake();
    expect(d.poll(0)).toBe(1);
    d.dispatch(1);
    // Drained: level-triggered epoll reports nothing more. Before the fix the generation
    // store fell outside the table, dispatch dropped the event as stale, and every poll
    // returned the wake fd again: a loop spinning after the first wake.
    expect(d.poll(0)).toBe(0);
    d.wake();
    d.wake();
    expect(d.poll(0)).toBe(1);
    d.dispatch(1);
    expect(d.poll(0)).toBe(0);
  });

  test("a reactor wakes from another context without spinning afterwards", async () => {
    const r = new Reactor();
    cleanups.push(() => r[Symbol.dispose]());
    r.wake();
    expect(r.driver.poll(0)).toBe(1);
    r.driver.dispatch(1);
    expect(r.driver.poll(0)).toBe(0);
  });
});

describe("stale-event guard", () => {
  test("an attach that grows the table mid-batch does not let a stale event through to an fd's new owner", () => {
    const poller = new ScriptedBackend();
    using d = new EpollDriver(counters(), { poller, fdCapacity: 8 });
    const fA = openReserveFd();
    const fB = openReserveFd();
    cleanups.push(() => libc.close(fA));
    const a = new RecordingStream(fA);
    const b = new RecordingStream(fB);
    d.attach(a, WRITABLE);
    d.attach(b, WRITABLE);
    const genB = d.generationOf(fB);
    let c: RecordingStream | null = null;
    const tableBefore = (d as unknown as { generations: Uint32Array }).generations;
    a.onWritableHook = () => {
      // A registration far past the table: the table is replaced by a larger one...
      d.attach(new RecordingStream(tableBefore.length * 4), READABLE);
      d.close(b); // ...then B's fd number is freed...
      poller.forgetClosed(fB);
      c = new RecordingStream(fB); // ...and its next owner takes the number (a new generation, in the new table)
      d.attach(c, WRITABLE);
    };
    poller.script(() => [[fA, d.generationOf(fA), WRITABLE], [fB, genB, WRITABLE]]);
    const n = d.poll(0);
    expect(n).toBe(2);
    d.dispatch(n);
    expect((d as unknown as { generations: Uint32Array }).generations).not.toBe(tableBefore); // the situation
    expect(a.writable).toBe(1);
    expect(b.writable).toBe(0);
    expect(c).not.toBeNull();
    // Before the fix dispatch read the cached (old) table, where fB still had B's generation.
    expect(c!.writable).toBe(0);
    // Positive control: an event with C's generation reaches C.
    poller.script(() => [[fB, d.generationOf(fB), WRITABLE]]);
    d.dispatch(d.poll(0));
    expect(c!.writable).toBe(1);
  });
});

describe("event paths never throw", () => {
  test("EPOLLERR where reading SO_ERROR itself fails closes that stream (reset) and the loop goes on", async () => {
    const poller = new ScriptedBackend();
    const logs: string[] = [];
    const r = new Reactor({ poller, log: (l) => logs.push(l) });
    cleanups.push(() => r[Symbol.dispose]());
    // An eventfd is no socket: getsockopt(SO_ERROR) on it fails with ENOTSOCK.
    const efd = libc.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    expect(efd).toBeGreaterThanOrEqual(0);
    const closes: { reason: CloseReason; error?: Error }[] = [];
    const s = r.adopt(efd, { close: (_s, reason, error) => void closes.push({ reason, error }) }, {
      idleTimeoutMs: 0, highWaterMark: 1024, maxBuffered: 4096, lingerMs: 100, frameTimeoutMs: 0, traffic: null,
    })!;
    // A second stream keeps the loop alive after the first closes.
    const keep = r.adopt(openReserveFd(), {}, { idleTimeoutMs: 0, highWaterMark: 1024, maxBuffered: 4096, lingerMs: 100, frameTimeoutMs: 0, traffic: null });
    s.pause(); // not reading: the error reaches the hang-up path, which reads SO_ERROR
    expect(s.interest & READABLE).toBe(0);
    poller.script(() => [[efd, r.driver.generationOf(efd), ERROR]]);
    const loop = r.start();
    let failed: unknown = null;
    loop.catch((e) => (failed = e));
    await waitFor(() => closes.length === 1 || failed !== null, 5000, "the stream to close");
    expect(failed).toBeNull(); // before the fix, check() threw from the event path and the loop rejected
    expect(closes[0]!.reason).toBe("reset");
    expect(closes[0]!.error?.message).toContain("ENOTSOCK");
    expect(s.state).toBe(StreamState.Closed);
    expect(r.isRunning).toBe(true);
    keep?.close();
    await withTimeout(loop, 5000, "loop end");
  });

  test("a failed recv closes only that stream with reason reset", () => {
    const poller = new ScriptedBackend();
    const r = new Reactor({ poller, log: () => {} });
    cleanups.push(() => r[Symbol.dispose]());
    const efd = libc.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    const closes: CloseReason[] = [];
    r.adopt(efd, { close: (_s, reason) => void closes.push(reason) }, {
      idleTimeoutMs: 0, highWaterMark: 1024, maxBuffered: 4096, lingerMs: 100, frameTimeoutMs: 0, traffic: null,
    });
    poller.script(() => [[efd, r.driver.generationOf(efd), READABLE]]);
    r.driver.dispatch(r.driver.poll(0));
    expect(closes).toEqual(["reset"]); // recv on an eventfd: ENOTSOCK
    expect(Errno.ENOTSOCK).toBe(88);
  });
});

describe("ownership", () => {
  test("a driver's fds (epoll, eventfd, reserve) are released by dispose, and twice is fine", () => {
    const before = fdCount();
    const d = new EpollDriver(counters());
    expect(fdCount()).toBe(before + 3);
    d[Symbol.dispose]();
    d[Symbol.dispose]();
    expect(fdCount()).toBe(before);
  });
});
