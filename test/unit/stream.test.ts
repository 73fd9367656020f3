// src/stream/: the TCP stream's states, handler replacement, wrapping streams, inbound
// pausing for async handlers, half-open streams, ids, and fd ownership on every path.
// Peers are node:net sockets or raw fds.

import { describe, test, expect, afterEach } from "bun:test";
import { readdirSync } from "node:fs";
import type net from "node:net";
import { libc, MSG_NOSIGNAL } from "../../ffi/index.ts";
import { createListenSocket, localAddress, openReserveFd } from "../../src/driver/sockets.ts";
import { listen } from "../../src/listen.ts";
import { Reactor, ID_LANE, reactorIndexOf } from "../../src/reactor/reactor.ts";
import { createEchoProtocol } from "../../src/protocols/echo.ts";
import { createFramedProtocol } from "../../src/protocols/framed.ts";
import { createProtocolContext } from "../../src/protocols/context.ts";
import { StreamState, type CloseReason, type Handler, type Stream } from "../../src/stream/stream.ts";
import { WRITABLE } from "../../src/driver/driver.ts";
import { DEFAULT_CONNECTION_OPTIONS } from "../../src/stream/tcp-stream.ts";
import { WrappingStream } from "../../src/stream/wrap.ts";
import { connect, readExactly, readToEnd, sleep, waitFor, withTimeout } from "../util/tcp.ts";
import { ScriptedBackend } from "../util/scripted-poller.ts";
import { rawTcpPair } from "../util/raw-tcp.ts";

const cleanups: (() => void | Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) {
    try {
      await c();
    } catch {}
  }
});

const enc = new TextEncoder();
const dec = new TextDecoder();
const fdCount = () => readdirSync("/proc/self/fd").length;

const reactorLogs: string[] = [];
function reactor(): Reactor {
  const r = new Reactor({ log: (l) => reactorLogs.push(l) });
  cleanups.push(() => r[Symbol.dispose]());
  return r;
}

function serveOn<T>(handler: Handler<T>, connection = {}) {
  const r = reactor();
  const l = r.listen<T>({ port: 0, handler, connection });
  return { r, port: l.port, loop: r.start() };
}

async function client(port: number, opts: { allowHalfOpen?: boolean } = {}): Promise<net.Socket> {
  const s = await connect(port, opts);
  cleanups.push(() => void s.destroy());
  return s;
}

/** A connected loopback pair of raw fds: [server side, client side]; the client side is closed after the test. */
async function rawPair(): Promise<{ a: number; b: number }> {
  const { a, b } = await rawTcpPair();
  cleanups.push(() => void libc.close(b));
  return { a, b };
}

describe("stream states", () => {
  test("Open -> HalfClosed on the peer's FIN; a reply written from `end` is delivered, then Closed (end)", async () => {
    const seen: StreamState[] = [];
    let reason: CloseReason | null = null;
    const { port } = serveOn({
      open: (s) => void seen.push(s.state),
      end(s) {
        seen.push(s.state);
        s.write("bye");
      },
      close: (s, r) => {
        seen.push(s.state);
        reason = r;
      },
    });
    const c = await client(port, { allowHalfOpen: true });
    c.end();
    const { data, ended } = await readToEnd(c, 5000);
    expect(dec.decode(data)).toBe("bye");
    expect(ended).toBe(true);
    await waitFor(() => reason !== null, 5000, "close");
    expect(seen).toEqual([StreamState.Open, StreamState.HalfClosed, StreamState.Closed]);
    expect(reason!).toBe("end");
  });

  test("end() with output queued: Flushing, then Lingering once our FIN is out, Closed on the peer's FIN", async () => {
    const states: StreamState[] = [];
    let stream: Stream | null = null;
    const big = new Uint8Array(4 * 1024 * 1024).fill(7);
    const { port } = serveOn({
      open(s) {
        stream = s;
        s.write(big); // more than the socket buffers take at once
        s.end();
        states.push(s.state);
      },
      close: (s) => void states.push(s.state),
    }, { highWaterMark: 8 * 1024 * 1024, maxBuffered: 8 * 1024 * 1024 });
    const c = await client(port, { allowHalfOpen: true });
    c.pause(); // let the queue stay
    await waitFor(() => stream !== null, 5000, "open");
    await sleep(50);
    expect(stream!.state).toBe(StreamState.Flushing);
    c.resume();
    let got = 0;
    let lingering = false;
    await new Promise<void>((resolve, reject) => {
      c.on("data", (d: Buffer) => {
        got += d.length;
        if (stream!.state === StreamState.Lingering) lingering = true;
      });
      c.on("end", () => resolve());
      c.on("error", reject);
    });
    expect(got).toBe(big.length);
    await waitFor(() => stream!.state === StreamState.Lingering || stream!.state === StreamState.Closed, 5000, "FIN sent");
    lingering ||= stream!.state === StreamState.Lingering;
    expect(lingering).toBe(true);
    c.end(); // our FIN: the lingering stream closes
    await waitFor(() => states.length === 2, 5000, "close");
    expect(states).toEqual([StreamState.Flushing, StreamState.Closed]);
  });

  test("allowHalfOpen: after the peer's FIN the stream stays HalfClosed until the handler ends it", async () => {
    let stream: Stream | null = null;
    const { port } = serveOn({
      allowHalfOpen: true,
      open: (s) => void (stream = s),
      end(s) {
        // The reply is produced later (an async handler): the stream must wait for it.
        setTimeout(() => {
          s.write("late reply");
          s.end();
        }, 100);
      },
    });
    const c = await client(port, { allowHalfOpen: true });
    c.end();
    await waitFor(() => stream?.state === StreamState.HalfClosed, 5000, "half-closed");
    await sleep(30);
    expect(stream!.state).toBe(StreamState.HalfClosed); // not closed while nothing is queued
    const { data, ended } = await readToEnd(c, 5000);
    expect(dec.decode(data)).toBe("late reply");
    expect(ended).toBe(true);
    await waitFor(() => stream!.state === StreamState.Closed, 5000, "closed");
  });
});

describe("setHandler", () => {
  test("a handler hands the stream over in place, with the bytes it already read but does not own", async () => {
    const log: string[] = [];
    const echo = createEchoProtocol();
    const upgrader: Handler<undefined> = {
      data(s, bytes) {
        const nl = bytes.indexOf(10);
        log.push(`upgrader: ${dec.decode(bytes.subarray(0, nl + 1)).trim()}`);
        // Everything after the first line belongs to the next protocol.
        s.setHandler({ ...echo, open: () => void log.push("echo open") }, bytes.subarray(nl + 1));
      },
      close: () => void log.push("upgrader close (must not run)"),
    };
    const { port } = serveOn(upgrader);
    const c = await client(port);
    c.write("UPGRADE\nabc"); // one segment: the handover happens inside one data call
    expect(dec.decode(await readExactly(c, 3, 5000))).toBe("abc");
    c.write("more");
    expect(dec.decode(await readExactly(c, 4, 5000))).toBe("more");
    c.end();
    await readToEnd(c, 5000);
    expect(log).toEqual(["upgrader: UPGRADE", "echo open"]);
  });
});

/** A toy transform: every byte XORed with a key, both ways. */
class XorStream<T> extends WrappingStream<T> {
  constructor(inner: Stream<any>, handler: Handler<T>, private readonly key: number) {
    super(inner, handler);
    this.install();
  }
  protected decode(wire: Uint8Array): void | Promise<void> {
    const plain = new Uint8Array(wire.length);
    for (let i = 0; i < wire.length; i++) plain[i] = wire[i]! ^ this.key;
    return this.deliver(plain);
  }
  protected encode(plain: Uint8Array, start: number, end: number): boolean {
    const wire = new Uint8Array(end - start);
    for (let i = start; i < end; i++) wire[i - start] = plain[i]! ^ this.key;
    return this.inner.write(wire);
  }
}

const xor = (b: Uint8Array, key: number) => Uint8Array.from(b, (x) => x ^ key);

describe("wrapping streams", () => {
  test("the framed protocol runs unchanged over a wrapping stream (a XOR transform standing in for TLS)", async () => {
    const ctx = createProtocolContext();
    const framed = createFramedProtocol(ctx);
    const closes: CloseReason[] = [];
    const { port } = serveOn<any>({
      open: (s) => void new XorStream(s, { ...framed, close: (w, r) => { closes.push(r); framed.close(w, r); } }, 0x5a),
    });
    const c = await client(port);
    // HELLO (type 1, body: u16 version 1), then ECHO "hi" (type 5): on the wire, XORed.
    const hello = Uint8Array.from([0, 1, 0, 2, 0, 1]);
    const echo = Uint8Array.from([0, 5, 0, 2, 104, 105]);
    c.write(xor(new Uint8Array([...hello, ...echo]), 0x5a));
    const back = xor(await readExactly(c, 16, 5000), 0x5a);
    expect(back.length).toBe(16);
    expect(Array.from(back.subarray(0, 4))).toEqual([0, 2, 0, 6]); // WELCOME, 6 bytes
    expect(Array.from(back.subarray(10))).toEqual([0, 6, 0, 2, 104, 105]); // ECHO_REPLY "hi"
    expect(ctx.hub.size).toBe(1); // registered through the wrapper
    expect(reactorLogs).toEqual([]);
    c.end();
    await readToEnd(c, 5000);
    await waitFor(() => closes.length === 1, 5000, "close through the wrapper");
    expect(closes).toEqual(["end"]);
    expect(ctx.hub.size).toBe(0);
  });
});

describe("pauseWhileAsync", () => {
  async function concurrency(pause: boolean): Promise<{ maxInFlight: number; chunks: number }> {
    let inFlight = 0, maxInFlight = 0, chunks = 0;
    const { port } = serveOn({
      pauseWhileAsync: pause,
      async data(s, bytes) {
        const n = bytes.length;
        chunks++;
        inFlight++;
        maxInFlight = Math.max(maxInFlight, inFlight);
        await sleep(30);
        inFlight--;
        s.write(`${n};`);
      },
    });
    const c = await client(port);
    let got = "";
    c.on("data", (d: Buffer) => (got += d.toString()));
    for (let i = 0; i < 5; i++) {
      c.write("x".repeat(10));
      await sleep(5); // separate segments: separate reads while a handler waits
    }
    await waitFor(() => got.split(";").slice(0, -1).reduce((a, x) => a + Number(x), 0) === 50, 5000, "all bytes answered");
    return { maxInFlight, chunks };
  }

  test("on: no data call while the previous one's promise is pending, and no byte lost", async () => {
    const r = await concurrency(true);
    expect(r.maxInFlight).toBe(1);
  });

  test("off (the default): reading goes on while a handler waits", async () => {
    const r = await concurrency(false);
    expect(r.maxInFlight).toBeGreaterThan(1);
  });
});

describe("ids", () => {
  test("two reactors in one thread give their streams distinct ids that name the reactor", async () => {
    const r1 = reactor();
    const r2 = reactor();
    expect(r1.index).not.toBe(r2.index);
    const p1 = await rawPair();
    const p2 = await rawPair();
    const s1 = r1.adopt(p1.a, {}, DEFAULT_CONNECTION_OPTIONS)!;
    const s2 = r2.adopt(p2.a, {}, DEFAULT_CONNECTION_OPTIONS)!;
    expect(s1.id).not.toBe(s2.id); // before: both reactors numbered 1, 2, ... from 0
    expect(reactorIndexOf(s1.id)).toBe(r1.index);
    expect(reactorIndexOf(s2.id)).toBe(r2.index);
    expect(s1.id).toBeLessThan(2 ** 32); // fits the framed protocol's u32
  });

  test("an index in use is refused before any fd is opened; an explicit free one is taken", () => {
    const r1 = reactor();
    const before = fdCount();
    expect(() => new Reactor({ index: r1.index })).toThrow(RangeError);
    expect(() => new Reactor({ index: 64 })).toThrow(RangeError);
    expect(fdCount()).toBe(before);
    const r2 = new Reactor({ index: 63 });
    cleanups.push(() => r2[Symbol.dispose]());
    expect(r2.index).toBe(63);
  });

  test("a lane that wraps skips ids still open", async () => {
    const r = reactor();
    const first = r.adopt((await rawPair()).a, {}, DEFAULT_CONNECTION_OPTIONS)!;
    expect(first.id).toBe(r.index * ID_LANE + 1);
    (r as unknown as { seq: number }).seq = ID_LANE - 1;
    const last = r.adopt((await rawPair()).a, {}, DEFAULT_CONNECTION_OPTIONS)!;
    expect(last.id).toBe(r.index * ID_LANE + ID_LANE - 1);
    const wrapped = r.adopt((await rawPair()).a, {}, DEFAULT_CONNECTION_OPTIONS)!;
    expect(wrapped.id).toBe(r.index * ID_LANE + 2); // 1 is still open
  });
});

describe("write(string) counts UTF-8 bytes against maxBuffered", () => {
  test("a string whose UTF-8 length passes maxBuffered closes the slow consumer; one that fits is queued", async () => {
    const r = reactor();
    const opts = { ...DEFAULT_CONNECTION_OPTIONS, highWaterMark: 10, maxBuffered: 10 };
    const closes: CloseReason[] = [];
    const s = r.adopt((await rawPair()).a, { close: (_s, reason) => void closes.push(reason) }, opts)!;
    s.write("x"); // queued; no loop runs, so nothing is flushed
    expect(s.write("éééé")).toBe(true); // 8 bytes: 9 queued, below the high-water mark
    expect(s.bufferedAmount).toBe(9);
    s.write("é"); // 2 more bytes (1 UTF-16 unit): 11 > maxBuffered
    expect(closes).toEqual(["slow-consumer"]);
    expect(s.state).toBe(StreamState.Closed);

    const t = r.adopt((await rawPair()).a, {}, opts)!;
    t.write("x");
    t.write("ééééé"); // 10 bytes, 5 units: before the fix 1 + 5 <= 10 let it through (11 queued)
    expect(t.state).toBe(StreamState.Closed);
    expect(t.bufferedAmount).toBe(0);
  });
});

describe("backpressure costs no epoll_ctl when the flush empties the queue", () => {
  test("a write past the high-water mark that the kernel takes in one send changes no interest; one it cannot take does", async () => {
    const r = reactor();
    const changes: number[] = [];
    const setInterest = r.driver.setInterest.bind(r.driver);
    r.driver.setInterest = (s, mask) => {
      changes.push(mask);
      return setInterest(s, mask);
    };
    const opts = { ...DEFAULT_CONNECTION_OPTIONS, highWaterMark: 1024 };
    const { a, b } = await rawPair();
    const s = r.adopt(a, {}, opts)!;
    expect(s.write(new Uint8Array(4096))).toBe(false); // past the mark: backpressured, reading paused
    (r as unknown as { flushDirty(): void }).flushDirty(); // the end of the turn: one send takes it all
    expect(s.bufferedAmount).toBe(0);
    expect(changes).toEqual([]); // paused and resumed without telling the kernel
    const got = new Uint8Array(8192);
    expect(Number(libc.recv(b, got, got.length, 0))).toBe(4096);

    // A peer that does not read: the queue stays past the mark, so the flush stops reading
    // and asks for WRITABLE, in one change.
    const big = new Uint8Array(16 * 1024 * 1024); // more than a loopback socket buffer takes
    s.write(big);
    (r as unknown as { flushDirty(): void }).flushDirty();
    expect(s.bufferedAmount).toBeGreaterThan(0);
    expect(changes).toEqual([WRITABLE]); // and no READABLE
  });
});

describe("fds return to baseline on every path", () => {
  test("listen on a port in use, on a bad address, with a bad option: the error names the problem, no fd leaks", async () => {
    await sleep(0);
    const before = fdCount();
    const a = listen({ port: 0, socket: { data: (s, b) => void s.write(b) } });
    cleanups.push(() => a.stop());
    const mid = fdCount();
    expect(() => listen({ port: a.port, socket: {} })).toThrow(/EADDRINUSE/);
    expect(() => listen({ hostname: "not-an-ip", port: 0, socket: {} })).toThrow(/invalid address/);
    expect(() => listen({ port: 0, socket: {}, maxBuffered: 1, highWaterMark: 2 })).toThrow(RangeError);
    expect(fdCount()).toBe(mid);
    await a.stop();
    await waitFor(() => fdCount() <= before, 5000, "fds back to baseline");
  });

  test("connect refused, and connect to a bad address: no fd leaks", async () => {
    const r = reactor();
    using probe = createListenSocket({ hostname: "127.0.0.1", port: 0 });
    const port = localAddress(probe.value).port;
    probe[Symbol.dispose]();
    const before = fdCount();
    const err = await r.connect("127.0.0.1", port, {}).then(() => null, (e: Error) => e);
    expect(err?.message).toContain("ECONNREFUSED");
    expect(() => r.connect("nope", port, {})).toThrow(/invalid address/);
    await waitFor(() => fdCount() <= before, 5000, "fds back to baseline");
  });

  test("adopting an fd epoll refuses closes it (and logs why); the reactor goes on", () => {
    const logs: string[] = [];
    const r = new Reactor({ log: (l) => logs.push(l) });
    cleanups.push(() => r[Symbol.dispose]());
    const before = fdCount();
    const devnull = openReserveFd(); // a regular file: epoll_ctl says EPERM
    expect(r.adopt(devnull, {}, DEFAULT_CONNECTION_OPTIONS)).toBeNull();
    expect(fdCount()).toBe(before);
    expect(logs.join("\n")).toContain("EPERM");
    expect(r.connectionCount).toBe(0);
  });

  test("graceful and forced stops with open streams release every fd", async () => {
    const before = fdCount();
    for (const graceful of [true, false]) {
      const server = listen({ port: 0, socket: { data: (s, b) => void s.write(b) } });
      const clients = await Promise.all([1, 2, 3].map(() => connect(server.port)));
      await waitFor(() => server.connections === 3, 5000, "accepts");
      await withTimeout(server.stop({ graceful, drainTimeoutMs: 1000 }), 5000, "stop");
      for (const c of clients) c.destroy();
    }
    await waitFor(() => fdCount() <= before, 5000, "fds back to baseline");
  });
});

describe("graceful stop", () => {
  test("connections still in the listen backlog are taken in and answered, not reset", async () => {
    // A poller that reports nothing: the listener never hears of the connection, which stays
    // in the kernel's backlog, completed, with its request sent, until stop().
    const r = new Reactor({ poller: new ScriptedBackend(), log: () => {} });
    cleanups.push(() => r[Symbol.dispose]());
    const l = r.listen({ port: 0, handler: { data: (st, b) => void st.write(b) }, connection: { lingerMs: 100 } });
    const c = await connect(l.port, { allowHalfOpen: true });
    c.write("still answered");
    await sleep(20);
    const stopped = r.stop({ graceful: true, drainTimeoutMs: 2000 });
    const { data, ended, error } = await readToEnd(c, 5000);
    expect(error).toBeUndefined(); // before: ECONNRESET
    expect(dec.decode(data)).toBe("still answered");
    expect(ended).toBe(true);
    c.end();
    await withTimeout(stopped, 5000, "stop");
  });
});

describe("listen() in Bun.listen's shape", () => {
  test("socket handlers, initial data, close(socket, error, reason)", async () => {
    const closes: { error: Error | undefined; reason: CloseReason; data: unknown }[] = [];
    const server = listen<{ greeting: string }>({
      port: 0,
      data: { greeting: "hello " },
      socket: {
        data(s, bytes) {
          s.write(s.data.greeting + dec.decode(bytes));
        },
        close(s, error, reason) {
          closes.push({ error, reason, data: s.data });
        },
      },
    });
    cleanups.push(() => server.stop());
    const c = await client(server.port);
    c.write("world");
    expect(dec.decode(await readExactly(c, 11, 5000))).toBe("hello world");
    c.end();
    await readToEnd(c, 5000);
    await waitFor(() => closes.length === 1, 5000, "close");
    expect(closes[0]).toEqual({ error: undefined, reason: "end", data: { greeting: "hello " } });
  });
});

// Keep `enc` and MSG_NOSIGNAL referenced for raw-socket helpers added later.
void enc;
void MSG_NOSIGNAL;
