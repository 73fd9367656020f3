// src/reactor/: the loop, dispatch and the connection state machine, in-process.
// Peers are node:net sockets (served by Bun's loop, which the reactor yields to) or raw
// sockets from ffi when a test must control exactly when bytes arrive.

import { describe, test, expect, afterEach } from "bun:test";
import { readdirSync } from "node:fs";
import type net from "node:net";
import {
  libc, rc, Errno, MSG_NOSIGNAL, SOCK_NONBLOCK, SOCK_CLOEXEC, SOL_SOCKET, SO_SNDBUF, SO_RCVBUF,
} from "../../ffi/index.ts";
import { Reactor } from "../../src/reactor/reactor.ts";
import { SharedBytes } from "../../src/buffers/shared-bytes.ts";
import { TcpStream, DEFAULT_CONNECTION_OPTIONS, type ConnectionOptions } from "../../src/stream/tcp-stream.ts";
import { READABLE, WRITABLE } from "../../src/driver/driver.ts";
import type { Poller } from "../../src/driver/epoll.ts";
import { ScriptedBackend } from "../util/scripted-poller.ts";
import { createListenSocket, localAddress, startConnect, setIntOption } from "../../src/driver/sockets.ts";
import { StreamState, type CloseReason, type Connection, type Handler } from "../../src/stream/stream.ts";
import { serveHandler } from "../../src/listen.ts";
import { createEchoProtocol } from "../../src/protocols/echo.ts";
import {
  connect, echoRoundTrip, firstMismatch, patternBytes, readExactly, readToEnd, sleep, waitFor, withTimeout, writeAll,
} from "../util/tcp.ts";
import { acceptRaw, rawTcpPair } from "../util/raw-tcp.ts";

// --- fixtures -----------------------------------------------------------------------------

const enc = new TextEncoder();
const dec = new TextDecoder();
const text = (b: Uint8Array) => dec.decode(b);

/** Everything a test opens, closed after it even when it fails. */
const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0).reverse()) {
    try {
      c();
    } catch {}
  }
});

interface Harness {
  reactor: Reactor;
  logs: string[];
  /** Settles when the loop ends. */
  loop: Promise<void>;
}

function newReactor(poller?: Poller): Harness {
  const logs: string[] = [];
  const reactor = new Reactor({ log: (l) => logs.push(l), poller });
  cleanups.push(() => reactor[Symbol.dispose]());
  return { reactor, logs, loop: Promise.resolve() };
}

/** A reactor with one listener on 127.0.0.1:0. */
function listen<T>(handler: Handler<T>, connection: Partial<ConnectionOptions> = {}) {
  const h = newReactor();
  const listener = h.reactor.listen<T>({ port: 0, handler, connection });
  h.loop = h.reactor.start();
  return { ...h, port: listener.port, listener };
}

/** node:net client, destroyed after the test. */
async function client(port: number, opts: { allowHalfOpen?: boolean } = {}): Promise<net.Socket> {
  const s = await connect(port, opts);
  cleanups.push(() => s.destroy());
  return s;
}

/** Records close reasons and errors per connection. */
function recorder() {
  const closes: { id: number; reason: CloseReason; error?: Error }[] = [];
  const errors: { id: number; error: Error }[] = [];
  return {
    closes,
    errors,
    close(c: Connection<any>, reason: CloseReason, error?: Error) {
      closes.push({ id: c.id, reason, error });
    },
    error(c: Connection<any>, error: Error) {
      errors.push({ id: c.id, error });
    },
  };
}

/** A connected, non-blocking loopback TCP pair of raw fds: [server side, client side]. */
async function rawPair(): Promise<{ a: number; b: number }> {
  const { a, b } = await rawTcpPair(); // the test closes each side itself
  return { a, b };
}

function sendRaw(fd: number, s: string): void {
  const b = enc.encode(s);
  const n = rc(libc.send(fd, b, b.length, MSG_NOSIGNAL));
  if (n !== b.length) throw new Error(`send: ${n}`);
}

/** A raw, non-blocking client socket: the test decides exactly when it reads. */
function rawClient(port: number, opts: { rcvbuf?: number; sndbuf?: number } = {}) {
  const { fd: owned } = startConnect("127.0.0.1", port);
  const fd = owned.release();
  closeLater(fd);
  if (opts.rcvbuf) setIntOption(fd, SOL_SOCKET, SO_RCVBUF, opts.rcvbuf, "SO_RCVBUF");
  if (opts.sndbuf) setIntOption(fd, SOL_SOCKET, SO_SNDBUF, opts.sndbuf, "SO_SNDBUF");
  const buf = new Uint8Array(new ArrayBuffer(256 * 1024));
  return {
    fd,
    /** One non-blocking send of payload[from..]; bytes sent, 0 on EAGAIN/ENOTCONN. */
    sendSome(payload: Uint8Array, from: number): number {
      if (from >= payload.length) return 0;
      const n = rc(libc.send(fd, payload.subarray(from), payload.length - from, MSG_NOSIGNAL));
      if (n >= 0) return n;
      if (n === -Errno.EAGAIN || n === -Errno.ENOTCONN) return 0;
      throw new Error(`send: errno ${-n}`);
    },
    /** Reads what is there now; returns bytes read (0: nothing; throws on EOF). */
    recvAvailable(sink: Uint8Array[]): number {
      let total = 0;
      for (;;) {
        const n = rc(libc.recv(fd, buf, buf.length, 0));
        if (n > 0) {
          sink.push(buf.slice(0, n));
          total += n;
          continue;
        }
        if (n === -Errno.EAGAIN || n === -Errno.ENOTCONN) return total;
        if (n === 0) throw new Error("unexpected EOF");
        throw new Error(`recv: errno ${-n}`);
      }
    },
    async readExactly(n: number, ms: number): Promise<Buffer> {
      const sink: Uint8Array[] = [];
      let got = 0;
      const deadline = performance.now() + ms;
      while (got < n) {
        if (performance.now() > deadline) throw new Error(`read ${got}/${n} bytes in ${ms} ms`);
        const r = this.recvAvailable(sink);
        got += r;
        if (r === 0) await sleep(1); // let the reactor (same thread) run
      }
      return Buffer.concat(sink);
    },
  };
}

function closeLater(fd: number): void {
  cleanups.push(() => libc.close(fd));
}

function fdCount(): number {
  return readdirSync("/proc/self/fd").length;
}

// --- basics -------------------------------------------------------------------------------

describe("reactor basics", () => {
  test("echo over a listener, then dispose closes every fd it opened", async () => {
    const before = fdCount();
    {
      const { port, reactor } = listen(createEchoProtocol());
      const payload = patternBytes(300_000, 5);
      const back = await echoRoundTrip(port, payload, { timeoutMs: 15_000 });
      expect(firstMismatch(back, payload)).toBe(-1);
      reactor[Symbol.dispose]();
      reactor[Symbol.dispose](); // twice is fine
    }
    await waitFor(() => fdCount() <= before, 5000, "fds back to baseline");
  });

  test("the loop ends by itself when the last listener and connection are gone", async () => {
    const { reactor, listener, loop, port } = listen(createEchoProtocol());
    const s = await client(port);
    await waitFor(() => reactor.connectionCount === 1, 5000, "accept");
    listener.close();
    expect(reactor.isRunning).toBe(true); // one connection left
    s.end();
    await withTimeout(loop, 5000, "loop end");
    expect(reactor.isRunning).toBe(false);
    expect(reactor.stats.closeReasons.end).toBe(1);
  });

  test("reactor.connect: a client connection on the reactor itself", async () => {
    const { reactor, port } = listen(createEchoProtocol());
    const got: string[] = [];
    const conn = await withTimeout(
      reactor.connect("127.0.0.1", port, { data: (_c, b) => void got.push(text(b)) }),
      5000,
      "connect",
    );
    conn.write("ping via the reactor");
    await waitFor(() => got.join("") === "ping via the reactor", 5000, "echo");
    conn.close();
  });

  test("reactor.connect to a port nobody listens on rejects with ECONNREFUSED", async () => {
    const { reactor } = listen(createEchoProtocol());
    using probe = createListenSocket({ hostname: "127.0.0.1", port: 0 });
    const port = localAddress(probe.value).port;
    probe[Symbol.dispose](); // now nothing listens there
    const err = await reactor.connect("127.0.0.1", port, {}).then(
      () => null,
      (e: Error) => e,
    );
    expect(err).not.toBeNull();
    expect(err!.message).toContain("ECONNREFUSED");
  });
});

// --- stale events -------------------------------------------------------------------------

describe("stale-event guard", () => {
  test("scripted backend: an event for an fd closed and reused in the same batch is not delivered to the new owner", async () => {
    const backend = new ScriptedBackend();
    const { reactor } = newReactor(backend);
    const opts = { ...DEFAULT_CONNECTION_OPTIONS };

    // Two real connections A and B, each with bytes waiting.
    const pa = await rawPair();
    const pb = await rawPair();
    closeLater(pa.b);
    closeLater(pb.b);
    // A pending connection (with bytes) that will be accepted inside B's handler.
    using spare = createListenSocket({ hostname: "127.0.0.1", port: 0 });
    const { fd: cfd } = startConnect("127.0.0.1", localAddress(spare.value).port);
    const cClient = cfd.release();
    closeLater(cClient);
    await sleep(20);
    sendRaw(pa.b, "for A");
    sendRaw(pb.b, "for B");
    sendRaw(cClient, "for C");
    await sleep(20);

    const aData: string[] = [];
    const cData: { text: string; poll: number }[] = [];
    let c: TcpStream<unknown> | null = null;
    let bHandledAt = -1;
    const connA = reactor.adopt(pa.a, { data: (_x, b) => void aData.push(text(b)) }, opts)!;
    const fdA = connA.fd;
    const genA = reactor.driver.generationOf(connA.fd);
    const connB = reactor.adopt(pb.a, {
      data() {
        bHandledAt = backend.polls;
        connA.close(); // fd A is free again...
        backend.forgetClosed(fdA);
        const fd = rc(libc.accept4(spare.value, null, null, SOCK_NONBLOCK | SOCK_CLOEXEC));
        // ...and the next fd the process gets reuses its number.
        c = reactor.adopt(fd, { data: (_x, b) => void cData.push({ text: text(b), poll: backend.polls }) }, opts);
      },
    }, opts)!;
    expect(connA).toBeInstanceOf(TcpStream);
    expect(connB).toBeInstanceOf(TcpStream);

    // One batch: B is ready first, A second. B's handler closes A and accepts C on A's fd.
    backend.script(() => [[connB.fd, reactor.driver.generationOf(connB.fd), READABLE], [fdA, genA, READABLE]]);
    const loop = reactor.start();
    await waitFor(() => bHandledAt > 0, 5000, "B's handler");
    await sleep(30); // several more (empty) polls

    // Preconditions: the situation really was built.
    expect(c).not.toBeNull();
    const cc = c! as TcpStream<unknown>;
    expect(cc.fd).toBe(fdA);
    expect(reactor.driver.generationOf(cc.fd)).not.toBe(genA);
    expect(backend.interest.get(fdA)?.gen).toBe(reactor.driver.generationOf(cc.fd));
    // The guard: the stale (fdA, genA) event reached neither A (closed) nor C (new owner).
    expect(aData).toEqual([]);
    expect(cData).toEqual([]);

    // Positive control: an event with C's own generation is delivered to C.
    backend.script(() => [[fdA, reactor.driver.generationOf(cc.fd), READABLE]]);
    await waitFor(() => cData.length > 0, 5000, "C's data");
    expect(cData[0]!.text).toBe("for C");
    expect(cData[0]!.poll).toBeGreaterThan(bHandledAt);

    // And an event for a closed fd that nobody reused is dropped without a crash.
    cc.close();
    backend.script(() => [[fdA, reactor.driver.generationOf(cc.fd), READABLE | WRITABLE]]);
    const polls = backend.polls;
    await waitFor(() => backend.polls > polls + 2, 5000, "more polls");
    expect(cData.length).toBe(1);
    connB.close();
    await withTimeout(loop, 5000, "loop end");
  });

  test("real epoll: connection A closed inside B's handler and its fd reused by an accept in the same batch", async () => {
    let constructed = 0;
    for (let attempt = 0; attempt < 8 && constructed === 0; attempt++) {
      const r = await staleScenario();
      if (!r.constructed) continue;
      constructed++;
      expect(r.newFd).toBe(r.fdA);
      expect(r.newGen).not.toBe(r.genA);
      // C got its bytes, but only in a later poll: the stale event of that batch was dropped.
      expect(r.cData.map((d) => d.text).join("")).toBe("for C");
      expect(r.cData[0]!.poll).toBeGreaterThan(r.bHandledAt);
      // A's bytes were never delivered (A closed before its event was dispatched).
      expect(r.aData).toEqual([]);
    }
    expect(constructed).toBe(1);
  }, 60_000);
});

interface StaleResult {
  constructed: boolean;
  fdA: number;
  genA: number;
  newFd: number;
  newGen: number;
  bHandledAt: number;
  aData: string[];
  cData: { text: string; poll: number }[];
}

async function staleScenario(): Promise<StaleResult> {
  const logs: string[] = [];
  const reactor = new Reactor({ log: (l) => logs.push(l) });
  const disposers: (() => void)[] = [() => reactor[Symbol.dispose]()];
  try {
    // Record every batch epoll returns: (fd, generation) in order.
    const backend = reactor.driver.poller;
    const realPoll = backend.poll.bind(backend);
    let polls = 0;
    const batches = new Map<number, [number, number][]>();
    (backend as { poll: (t: number) => number }).poll = (t: number) => {
      const n = realPoll(t);
      polls++;
      if (n > 0) {
        const evs: [number, number][] = [];
        for (let i = 0; i < n; i++) evs.push([backend.eventFd(i), backend.eventGeneration(i)]);
        batches.set(polls, evs);
      }
      return n;
    };

    const conns: TcpStream<unknown>[] = [];
    const aData: string[] = [];
    const cData: { text: string; poll: number }[] = [];
    let armed = false;
    let bHandledAt = -1, fdA = -1, genA = -1, newFd = -1, newGen = -1;
    const spare = createListenSocket({ hostname: "127.0.0.1", port: 0 });
    disposers.push(() => spare[Symbol.dispose]());
    const cHandler: Handler = { data: (_c, b) => void cData.push({ text: text(b), poll: polls }) };
    const handler: Handler = {
      open: (c) => void conns.push(c as TcpStream<unknown>),
      data(c, b) {
        if (c === conns[0]) {
          aData.push(text(b));
          return;
        }
        if (c !== conns[1] || !armed) return;
        armed = false;
        bHandledAt = polls;
        fdA = conns[0]!.fd;
        genA = reactor.driver.generationOf(conns[0]!.fd);
        conns[0]!.close();
        newFd = rc(libc.accept4(spare.value, null, null, SOCK_NONBLOCK | SOCK_CLOEXEC));
        const cc = reactor.adopt(newFd, cHandler, DEFAULT_CONNECTION_OPTIONS);
        newGen = cc ? reactor.driver.generationOf(cc.fd) : -1;
      },
    };
    const port = reactor.listen({ port: 0, handler }).port;

    const open = (p: number) => {
      const { fd } = startConnect("127.0.0.1", p);
      const n = fd.release();
      disposers.push(() => libc.close(n));
      return n;
    };
    const cliA = open(port);
    await waitFor(() => conns.length === 1, 5000, "A accepted");
    const cliB = open(port);
    await waitFor(() => conns.length === 2, 5000, "B accepted");
    const cliC = open(localAddress(spare.value).port);
    await sleep(20);
    sendRaw(cliC, "for C"); // waits in the spare listener's accept queue

    // No await between these two: the loop cannot poll in between, so both sockets are
    // ready in the next epoll_wait, B (readied first) ahead of A.
    armed = true;
    sendRaw(cliB, "for B");
    sendRaw(cliA, "for A");
    await waitFor(() => cData.length > 0 || (!armed && newFd < 0), 5000, "C's data");
    await sleep(20);

    const batch = batches.get(bHandledAt) ?? [];
    const bIndex = batch.findIndex(([fd]) => fd === conns[1]!.fd);
    const aIndex = batch.findIndex(([fd, gen]) => fd === fdA && gen === genA);
    // Constructed when A's event sits after B's in the batch that closed A, and C got A's fd.
    const constructed = bHandledAt > 0 && bIndex >= 0 && aIndex > bIndex && newFd === fdA;
    return { constructed, fdA, genA, newFd, newGen, bHandledAt, aData, cData };
  } finally {
    for (const d of disposers.reverse()) d();
  }
}

// --- idle timeout -------------------------------------------------------------------------

describe("idle timeout", () => {
  test("a silent connection is closed after idleTimeoutMs with reason idle-timeout", async () => {
    const rec = recorder();
    const { port, reactor } = listen({ ...createEchoProtocol(), close: rec.close }, { idleTimeoutMs: 300 });
    const s = await client(port);
    const t0 = performance.now();
    const ended = readToEnd(s, 10_000, "idle close");
    await ended;
    const elapsed = performance.now() - t0;
    expect(elapsed).toBeGreaterThanOrEqual(250);
    expect(elapsed).toBeLessThan(3000);
    await waitFor(() => rec.closes.length === 1, 2000, "close handler");
    expect(rec.closes[0]!.reason).toBe("idle-timeout");
    expect(reactor.stats.closeReasons["idle-timeout"]).toBe(1);
  });

  test("activity keeps a connection open past the timeout (lazy refresh)", async () => {
    const rec = recorder();
    const { port } = listen({ ...createEchoProtocol(), close: rec.close }, { idleTimeoutMs: 400 });
    const s = await client(port);
    const ended = readToEnd(s, 20_000, "eventual idle close");
    const t0 = performance.now();
    let acks = 0;
    s.on("data", () => acks++);
    let lastWrite = 0;
    for (let i = 0; i < 12; i++) {
      s.write("x");
      lastWrite = performance.now();
      await sleep(100);
    }
    // 1.2 s of traffic with a 400 ms timeout: still open.
    expect(rec.closes).toEqual([]);
    expect(acks).toBeGreaterThan(0);
    await ended;
    // Closed about 400 ms after the last activity, not counted from the first.
    expect(performance.now() - lastWrite).toBeGreaterThanOrEqual(350);
    expect(performance.now() - t0).toBeGreaterThan(1200);
    await waitFor(() => rec.closes.length === 1, 2000, "close");
    expect(rec.closes[0]!.reason).toBe("idle-timeout");
  });

  // REGRESSION (bug found by this test, commit 9d84042): after a timeout handler that keeps
  // the connection, onTimer reschedules at min(now + idle, nextDeadline()), and
  // nextDeadline() is lastActive + idle <= now, so TimerHeap.runExpired calls the handler
  // again and again synchronously: the reactor hangs at 100% CPU. The guard below closes
  // the connection after 10 calls so that this test fails instead of hanging the run.
  test("a timeout handler is called instead, and again each period while the connection stays", async () => {
    const calls: number[] = [];
    const { port } = listen<undefined>({
      timeout(c) {
        calls.push(performance.now());
        if (calls.length > 10) return c.close(); // runaway guard (see above)
        c.write(`tick ${calls.length}\n`);
        if (calls.length === 3) c.end();
      },
    }, { idleTimeoutMs: 200 });
    const s = await client(port);
    const { data, ended } = await readToEnd(s, 10_000, "three ticks then end");
    expect(ended).toBe(true);
    expect(text(data)).toBe("tick 1\ntick 2\ntick 3\n");
    expect(calls.length).toBe(3);
    for (let i = 1; i < calls.length; i++) expect(calls[i]! - calls[i - 1]!).toBeGreaterThanOrEqual(150);
  });
});

// --- half-close ---------------------------------------------------------------------------

describe("half-close", () => {
  test("peer FIN: end handler runs, replies written after it are delivered, then EOF", async () => {
    const rec = recorder();
    const states: StreamState[] = [];
    // Buffers everything and answers only once the peer has finished sending.
    const { port } = listen<Uint8Array[]>({
      open: (c) => void (c.data = []),
      data: (c, b) => void c.data.push(b.slice()),
      end(c) {
        states.push(c.state);
        const all = Buffer.concat(c.data);
        c.write(all);
        c.write(`\n${all.length} bytes`);
      },
      close: rec.close,
    });
    const s = await client(port, { allowHalfOpen: true });
    const payload = patternBytes(1_000_000, 11);
    const reading = readToEnd(s, 20_000, "reply then EOF");
    await writeAll(s, payload);
    s.end(); // shutdown(SHUT_WR)
    const { data, ended, error } = await reading;
    expect(error).toBeUndefined();
    expect(ended).toBe(true);
    expect(data.length).toBe(payload.length + `\n${payload.length} bytes`.length);
    expect(firstMismatch(data.subarray(0, payload.length), payload)).toBe(-1);
    expect(text(data.subarray(payload.length))).toBe(`\n${payload.length} bytes`);
    expect(states).toEqual([StreamState.HalfClosed]);
    await waitFor(() => rec.closes.length === 1, 2000, "close");
    expect(rec.closes[0]!.reason).toBe("end");
  });

  test("echo: write then shutdown(WR) gets the whole echo back, then EOF", async () => {
    const { port, reactor } = listen(createEchoProtocol(), { highWaterMark: 64 * 1024 });
    const s = await client(port, { allowHalfOpen: true });
    const payload = patternBytes(3_000_000, 12);
    const reading = readToEnd(s, 30_000, "echo then EOF");
    await writeAll(s, payload);
    s.end();
    const { data, ended } = await reading;
    expect(ended).toBe(true);
    expect(data.length).toBe(payload.length);
    expect(firstMismatch(data, payload)).toBe(-1);
    await waitFor(() => reactor.connectionCount === 0, 2000, "server side closed");
  });

  test("our end(): output flushed, FIN sent, the peer's late bytes are discarded, closed on the peer's FIN", async () => {
    const rec = recorder();
    const seen: string[] = [];
    const { port, reactor } = listen<undefined>({
      data(c, b) {
        seen.push(text(b));
        if (text(b).includes("bye")) {
          c.write("goodbye");
          c.end();
        }
      },
      close: rec.close,
    });
    const s = await client(port, { allowHalfOpen: true });
    const got = readToEnd(s, 10_000);
    s.write("bye");
    const { data, ended } = await got; // the server's FIN
    expect(ended).toBe(true);
    expect(text(data)).toBe("goodbye");
    const inBefore = reactor.stats.bytesIn;
    s.write("late bytes the server discards");
    await waitFor(() => reactor.stats.bytesIn > inBefore, 5000, "late bytes read");
    await sleep(20);
    expect(seen).toEqual(["bye"]); // read off the socket (no RST), never handed to the handler
    expect(rec.closes).toEqual([]); // lingering: waits for our FIN
    s.end();
    await waitFor(() => rec.closes.length === 1, 3000, "close");
    expect(rec.closes[0]!.reason).toBe("end");
  });
});

describe("peer reset", () => {
  test("an RST while we write a big echo closes that connection with reason reset; the loop goes on", async () => {
    const rec = recorder();
    const { port, reactor } = listen<undefined>({ ...createEchoProtocol(), close: rec.close });
    const s = await client(port);
    let got = 0;
    s.on("data", (d: Buffer) => (got += d.length));
    s.on("error", () => {});
    s.write(patternBytes(4 * 1024 * 1024, 1));
    await waitFor(() => got > 64 * 1024, 10_000, "echo flowing");
    s.resetAndDestroy(); // SO_LINGER 0 + close: RST
    await waitFor(() => rec.closes.length === 1, 5000, "close");
    expect(rec.closes[0]!.reason).toBe("reset");
    expect(rec.closes[0]!.error?.message).toMatch(/ECONNRESET|EPIPE/);
    expect(reactor.connectionCount).toBe(0);
    const back = await echoRoundTrip(port, enc.encode("next"));
    expect(text(back)).toBe("next");
  });
});

// --- backpressure -------------------------------------------------------------------------

describe("backpressure and drain", () => {
  // The peer is a raw socket: node:net's pause() keeps reading into user space, so only a
  // raw fd gives a reader that really stops taking bytes off the wire.
  test("a producer writing into a paused reader: write() false at high water, EPOLLOUT armed, drain, all bytes in order", async () => {
    const total = 8 * 1024 * 1024;
    const payload = patternBytes(total, 21);
    const highWaterMark = 256 * 1024;
    let server: TcpStream<undefined> | null = null;
    let falseReturns = 0, drains = 0, maxQueued = 0;
    let sent = 0;
    const pump = (c: Connection<undefined>) => {
      while (sent < total) {
        const n = Math.min(64 * 1024, total - sent);
        const ok = c.write(payload, sent, sent + n);
        sent += n;
        maxQueued = Math.max(maxQueued, c.bufferedAmount);
        if (!ok) {
          falseReturns++;
          return;
        }
      }
    };
    const { port, reactor } = listen<undefined>({
      open(c) {
        server = c as TcpStream<undefined>;
        setIntOption(server.fd, SOL_SOCKET, SO_SNDBUF, 16 * 1024, "SO_SNDBUF"); // force partial sends
        pump(c);
      },
      drain(c) {
        drains++;
        if (c.bufferedAmount > highWaterMark / 2) throw new Error(`drain above low water: ${c.bufferedAmount}`);
        pump(c);
      },
    }, { highWaterMark, maxBuffered: 64 * 1024 * 1024 });
    const cli = rawClient(port, { rcvbuf: 64 * 1024 });
    await waitFor(() => server !== null && falseReturns > 0, 5000, "high water");
    await sleep(300);
    // Paused reader: the producer is parked above the low-water mark (no drain yet) with
    // EPOLLOUT armed. (Large writes into an empty queue go straight to send(2), so how far
    // above depends on how much the kernel took; what matters is that drain has not fired.)
    const srv = server!;
    expect(srv.bufferedAmount).toBeGreaterThan(highWaterMark / 2);
    expect(srv.interest & WRITABLE).toBe(WRITABLE);
    expect(sent).toBeLessThan(total);
    const parkedAt = sent;
    const writesParked = reactor.stats.writeCalls;
    await sleep(200);
    expect(sent).toBe(parkedAt); // nothing more produced while nobody reads
    expect(reactor.stats.writeCalls).toBe(writesParked); // and no send(2) spinning on EAGAIN
    // Resume reading.
    const data = await cli.readExactly(total, 60_000);
    expect(firstMismatch(data, payload)).toBe(-1);
    expect(drains).toBeGreaterThan(0);
    expect(falseReturns).toBe(drains); // every false is answered by exactly one drain
    expect(maxQueued).toBeLessThan(highWaterMark + 64 * 1024 + 1);
    await waitFor(() => srv.bufferedAmount === 0, 5000, "queue empty");
    expect(srv.interest & WRITABLE).toBe(0); // disarmed once the queue is empty
    expect(reactor.stats.highWaterCrossings).toBe(falseReturns);
  }, 90_000);

  test("echo with a client that does not read: reading pauses (inbound backpressure), no data lost", async () => {
    const highWaterMark = 128 * 1024;
    let server: TcpStream<undefined> | null = null;
    const echo = createEchoProtocol();
    const { port, reactor } = listen<undefined>({
      ...echo,
      open: (c) => void (server = c as TcpStream<undefined>),
    }, { highWaterMark, maxBuffered: 16 * 1024 * 1024 });
    const cli = rawClient(port, { rcvbuf: 64 * 1024, sndbuf: 64 * 1024 });
    const payload = patternBytes(16 * 1024 * 1024, 22);
    // Push without reading until the kernel refuses more for a while.
    let pushed = 0;
    let stuckSince = performance.now();
    while (performance.now() - stuckSince < 300) {
      const n = cli.sendSome(payload, pushed);
      if (n > 0) {
        pushed += n;
        stuckSince = performance.now();
      }
      await sleep(n > 0 ? 0 : 10);
      if (pushed === payload.length) break;
    }
    expect(pushed).toBeLessThan(payload.length); // the flow stopped: nobody reads echoes
    expect(reactor.stats.pausedReads).toBeGreaterThan(0);
    const srv = server!;
    expect(srv.interest & READABLE).toBe(0);
    expect(srv.state).toBe(StreamState.Open);
    expect(srv.bufferedAmount).toBeLessThanOrEqual(highWaterMark + reactor.driver.readBudget);
    // Now read and write together until everything came back.
    const received: Uint8Array[] = [];
    let got = 0;
    const deadline = performance.now() + 60_000;
    while (got < payload.length) {
      if (performance.now() > deadline) throw new Error(`stalled: ${got}/${payload.length}`);
      if (pushed < payload.length) pushed += Math.max(0, cli.sendSome(payload, pushed));
      got += cli.recvAvailable(received);
      await sleep(0);
    }
    const data = Buffer.concat(received);
    expect(data.length).toBe(payload.length);
    expect(firstMismatch(data, payload)).toBe(-1);
    expect(reactor.stats.slowConsumersDropped).toBe(0);
  }, 90_000);

  test("a producer ignoring write() === false is closed as a slow consumer past maxBuffered", async () => {
    const rec = recorder();
    let results: boolean[] = [];
    const { port, reactor, logs } = listen<undefined>({
      open(c) {
        // A small send buffer, so the kernel cannot absorb the 4 MiB the way a default
        // autotuned one can (large writes into an empty queue go straight to send(2)).
        setIntOption((c as TcpStream<undefined>).fd, SOL_SOCKET, SO_SNDBUF, 16 * 1024, "SO_SNDBUF");
        const chunk = new Uint8Array(256 * 1024);
        for (let i = 0; i < 16; i++) results.push(c.write(chunk)); // 4 MiB, ignoring false
      },
      close: rec.close,
    }, { highWaterMark: 256 * 1024, maxBuffered: 1024 * 1024 });
    rawClient(port, { rcvbuf: 64 * 1024 }); // connects and never reads
    await waitFor(() => rec.closes.length === 1, 5000, "slow-consumer close");
    expect(rec.closes[0]!.reason).toBe("slow-consumer");
    expect(reactor.stats.slowConsumersDropped).toBe(1);
    // The first write goes mostly to the kernel; the queue reaches high water within two.
    expect(results.slice(0, 2)).toContain(false);
    expect(results.at(-1)).toBe(false); // closed: writes are refused
    expect(logs.some((l) => l.includes("slow consumer"))).toBe(true);
  });
});

// --- handler failures ---------------------------------------------------------------------

describe("a throwing handler closes only its own connection", () => {
  test("data handler throws: error handler called, that connection closed (error), others keep working", async () => {
    const rec = recorder();
    const { port, reactor } = listen<undefined>({
      data(c, b) {
        if (text(b).includes("boom")) throw new Error("handler exploded");
        c.write(b);
      },
      error: rec.error,
      close: rec.close,
    });
    const [s1, s2, s3] = await Promise.all([client(port), client(port), client(port)]);
    await waitFor(() => reactor.connectionCount === 3, 5000, "3 accepted");
    const echoOn = async (s: net.Socket, msg: string) => {
      const r = readExactly(s, msg.length, 5000, msg);
      s.write(msg);
      expect(text(await r)).toBe(msg);
    };
    await echoOn(s1, "one");
    const s2closed = readToEnd(s2, 5000, "s2 closed");
    s2.write("boom");
    await s2closed;
    await waitFor(() => rec.closes.length === 1, 2000, "close");
    expect(rec.errors.length).toBe(1);
    expect(rec.errors[0]!.error.message).toBe("handler exploded");
    expect(rec.closes[0]).toMatchObject({ reason: "error" });
    expect(rec.closes[0]!.error?.message).toBe("handler exploded");
    expect(rec.errors[0]!.id).toBe(rec.closes[0]!.id);
    // The others are untouched.
    await echoOn(s1, "still here");
    await echoOn(s3, "me too");
    expect(reactor.connectionCount).toBe(2);
    expect(reactor.stats.closeReasons.error).toBe(1);
  });

  test("without an error handler the throw is logged; an open handler that throws closes only that connection", async () => {
    let opens = 0;
    const { port, reactor, logs } = listen<undefined>({
      open() {
        if (++opens === 2) throw new Error("open failed");
      },
      data: (c, b) => void c.write(b),
    });
    const s1 = await client(port);
    await waitFor(() => opens === 1, 5000, "first open");
    const s2 = await client(port);
    const closed = readToEnd(s2, 5000, "second closed");
    await closed;
    expect(logs.some((l) => l.includes("handler threw") && l.includes("open failed"))).toBe(true);
    const r = readExactly(s1, 2, 5000);
    s1.write("ok");
    expect(text(await r)).toBe("ok");
    expect(reactor.connectionCount).toBe(1);
  });

  test("a close handler that throws is logged and does not break the loop", async () => {
    const { port, reactor, logs } = listen<undefined>({
      data: (c, b) => void c.write(b),
      close() {
        throw new Error("close handler bug");
      },
    });
    const s1 = await client(port);
    s1.destroy();
    await waitFor(() => logs.some((l) => l.includes("close handler threw")), 5000, "log");
    const back = await echoRoundTrip(port, enc.encode("after"));
    expect(text(back)).toBe("after");
    expect(reactor.isRunning).toBe(true);
  });
});

// --- async handlers -----------------------------------------------------------------------

describe("async handlers", () => {
  test("a data handler returning a promise: its later write is delivered", async () => {
    const { port } = listen<undefined>({
      async data(c, b) {
        const copy = b.slice(); // b is only valid during the call
        await sleep(30);
        c.write(text(copy).toUpperCase());
      },
    });
    const s = await client(port);
    const r = readExactly(s, 5, 5000);
    s.write("hello");
    expect(text(await r)).toBe("HELLO");
  });

  test("a rejected promise closes that connection with reason error; others are fine", async () => {
    const rec = recorder();
    const { port, reactor } = listen<undefined>({
      async data(c, b) {
        const msg = text(b);
        await sleep(10);
        if (msg === "reject") throw new Error("async failure");
        c.write(msg);
      },
      error: rec.error,
      close: rec.close,
    });
    const good = await client(port);
    const bad = await client(port);
    const badClosed = readToEnd(bad, 5000);
    bad.write("reject");
    await badClosed;
    await waitFor(() => rec.closes.length === 1, 2000, "close");
    expect(rec.closes[0]!.reason).toBe("error");
    expect(rec.errors[0]!.error.message).toBe("async failure");
    const r = readExactly(good, 4, 5000);
    good.write("fine");
    expect(text(await r)).toBe("fine");
    expect(reactor.connectionCount).toBe(1);
  });

  test("an async open handler can write after awaiting", async () => {
    const { port } = listen<undefined>({
      async open(c) {
        await sleep(20);
        c.write("welcome\n");
      },
    });
    const s = await client(port);
    expect(text(await readExactly(s, 8, 5000))).toBe("welcome\n");
  });
});

// --- shutdown -----------------------------------------------------------------------------

describe("stop", () => {
  test("graceful stop flushes queued output, sends FIN, and the loop ends", async () => {
    const big = patternBytes(2 * 1024 * 1024, 31);
    let server: Connection<undefined> | null = null;
    const { port, reactor, loop } = listen<undefined>({
      open(c) {
        server = c;
        c.write(big);
      },
    }, { highWaterMark: 64 * 1024 * 1024, maxBuffered: 64 * 1024 * 1024 });
    const s = await client(port);
    s.pause();
    await waitFor(() => server !== null, 5000, "open");
    const stopped = reactor.stop({ graceful: true, drainTimeoutMs: 10_000 });
    const reading = readToEnd(s, 20_000);
    s.resume();
    const { data, ended } = await reading;
    expect(ended).toBe(true);
    expect(firstMismatch(data, big)).toBe(-1);
    expect(data.length).toBe(big.length);
    await withTimeout(stopped, 10_000, "stop");
    await withTimeout(loop, 10_000, "loop");
  }, 30_000);

  test("a drain timeout force-closes a consumer that never reads", async () => {
    const { port, reactor, loop } = listen<undefined>({
      open: (c) => void c.write(new Uint8Array(8 * 1024 * 1024)),
    }, { highWaterMark: 64 * 1024 * 1024, maxBuffered: 64 * 1024 * 1024 });
    rawClient(port, { rcvbuf: 64 * 1024 }); // never reads
    await waitFor(() => reactor.connectionCount === 1, 5000, "open");
    const t0 = performance.now();
    await withTimeout(reactor.stop({ drainTimeoutMs: 300 }), 5000, "stop");
    expect(performance.now() - t0).toBeLessThan(3000);
    await withTimeout(loop, 5000, "loop");
    expect(reactor.stats.closeReasons.shutdown).toBe(1);
  });

  test("serveHandler() with port 0 reports the port and stops cleanly", async () => {
    const before = fdCount();
    const server = serveHandler({ port: 0, reactorOptions: { log: () => {} } }, createEchoProtocol());
    expect(server.port).toBeGreaterThan(0);
    expect(server.hostname).toBe("127.0.0.1");
    const back = await echoRoundTrip(server.port, enc.encode("served"));
    expect(text(back)).toBe("served");
    await withTimeout(server.stop(), 5000, "stop");
    await waitFor(() => fdCount() <= before, 5000, "fds released");
  });
});

describe("connection options are checked where they enter", () => {
  test("maxBuffered below highWaterMark: serveHandler() and connect() throw a RangeError naming both, and open no fd", async () => {
    const before = fdCount();
    expect(() => serveHandler({ port: 0, highWaterMark: 2048, maxBuffered: 1024, reactorOptions: { log: () => {} } }, createEchoProtocol()))
      .toThrow("maxBuffered (1024) must be at least highWaterMark (2048)");
    const { reactor } = newReactor();
    const fds = fdCount();
    expect(() => reactor.connect("127.0.0.1", 9, {}, { maxBuffered: 10 })).toThrow(RangeError);
    expect(fdCount()).toBe(fds);
    reactor[Symbol.dispose]();
    await waitFor(() => fdCount() <= before, 5000, "fds released");
  });

  test("negative, NaN or non-number values are refused with the field's name; undefined keeps the default", () => {
    const { reactor } = newReactor();
    expect(() => reactor.listen({ port: 0, handler: {}, connection: { idleTimeoutMs: -1 } })).toThrow("idleTimeoutMs must be a finite number >= 0, got -1");
    expect(() => reactor.listen({ port: 0, handler: {}, connection: { lingerMs: NaN } })).toThrow("lingerMs");
    expect(() => reactor.listen({ port: 0, handler: {}, connection: { highWaterMark: "1" as any } })).toThrow("highWaterMark");
    expect(() => reactor.listen({ port: 0, handler: {}, connection: { highWaterMark: 0 } })).toThrow("highWaterMark must be at least 1");
    const l = reactor.listen({ port: 0, handler: {}, connection: { highWaterMark: undefined, maxBuffered: 4 * 1024 * 1024 } });
    expect(l.config.connection.highWaterMark).toBe(256 * 1024);
    expect(l.config.connection.maxBuffered).toBe(4 * 1024 * 1024);
  });

  test("busyPollUs: a negative or non-finite value throws before any fd is opened", () => {
    const fds = fdCount();
    expect(() => new Reactor({ busyPollUs: -1 })).toThrow("busyPollUs must be a finite number >= 0, got -1");
    expect(() => new Reactor({ busyPollUs: Infinity })).toThrow(RangeError);
    expect(fdCount()).toBe(fds);
  });

  test("serveHandler() passes frameTimeoutMs on: a frame left incomplete closes the connection", async () => {
    let inFrame = false;
    const closed: CloseReason[] = [];
    const server = serveHandler({ port: 0, frameTimeoutMs: 100, reactorOptions: { log: () => {} } }, {
      data() { inFrame = true; },
      inFrame: () => inFrame,
      close(_c, reason) { closed.push(reason); },
    });
    cleanups.push(() => void server.stop({ graceful: false }));
    const sock = await connect(server.port);
    sock.write("half a frame");
    await waitFor(() => closed.length > 0, 5000, "closed by the frame timeout");
    expect(closed[0]).toBe("frame-timeout");
    sock.destroy();
    await withTimeout(server.stop(), 5000, "stop");
  });
});

describe("flush budget", () => {
  /** What flushDirty() reads of a connection, and a record of its flushes. */
  function fakeQueue(name: string, queued: number, readPass = -1) {
    return {
      name, dirty: true, readPass, flushed: 0, interestSyncs: 0,
      get bufferedAmount() { return this.flushed > 0 ? 0 : queued; },
      flush() { this.flushed++; },
      updateInterest() { this.interestSyncs++; },
    };
  }
  const flushPass = (r: Reactor) => (r as unknown as { flushDirty(): void }).flushDirty();

  test("small queues and connections just read from go at once; large ones share a budget per pass", () => {
    const { reactor } = newReactor();
    const big = Array.from({ length: 10 }, (_, i) => fakeQueue(`big${i}`, 64 * 1024 + 8));
    const small = fakeQueue("small", 100);
    const pinger = fakeQueue("pinger", 64 * 1024 + 8 + 12, reactor.flushPass); // read this pass: a broadcast, then its PONG
    const reader = fakeQueue("reader", 64 * 1024 + 8, reactor.flushPass - 1); // read in an earlier pass: no exemption
    for (const q of [...big, small, pinger, reader]) reactor.markDirty(q as unknown as TcpStream<any>);
    const pass = reactor.flushPass;
    flushPass(reactor);
    expect(reactor.flushPass).toBe(pass + 1); // a read from this pass does not count in the next
    const firstPass = big.filter((q) => q.flushed === 1).length;
    expect(firstPass).toBeGreaterThan(0);
    expect(firstPass).toBeLessThan(big.length); // the budget deferred the rest...
    // ...and a deferred one syncs its interest (a backpressured stream stops reading before the poll)
    for (const q of big) expect(q.interestSyncs).toBe(q.flushed === 0 ? 1 : 0);
    expect(small.flushed).toBe(1);
    expect(pinger.flushed).toBe(1); // ...but not the small one nor the one read from
    expect(reader.flushed).toBe(0); // behind the budget like the others
    for (const q of big) expect(q.dirty).toBe(q.flushed === 0); // deferred ones stay dirty
    let passes = 1;
    while ([...big, reader].some((q) => q.flushed === 0)) {
      flushPass(reactor);
      passes++;
      expect(passes).toBeLessThan(20);
    }
    expect(passes).toBeGreaterThan(1);
    for (const q of [...big, small, pinger, reader]) expect(q.flushed).toBe(1); // each exactly once, none lost
  });
});

describe("write ranges", () => {
  test("write, writePrefixed and writeShared refuse a range outside the buffer (RangeError), queue nothing", () => {
    const { reactor } = newReactor();
    const conn = new TcpStream<undefined>(reactor, -1, 1, {}, DEFAULT_CONNECTION_OPTIONS);
    const buf = new Uint8Array(32);
    for (const [s, e] of [[0, 200], [-1, 4], [8, 4], [1.5, 4], [0, 33]] as const) {
      expect(() => conn.write(buf, s, e)).toThrow(RangeError);
      expect(() => conn.writePrefixed(1, buf, s, e)).toThrow(RangeError);
      expect(() => conn.writeShared(new SharedBytes(buf), s, e)).toThrow(RangeError);
    }
    expect(conn.bufferedAmount).toBe(0);
    expect(conn.write(buf, 4, 8)).toBe(true);
    expect(conn.writePrefixed(0x01020304, buf, 0, 32)).toBe(true);
    expect(conn.bufferedAmount).toBe(4 + 4 + 32);
    conn.close("local");
  });
});
