// File ranges on the write path: SharedFile ownership, the WriteQueue's "file range"
// segments, the epoll driver's send of them (send/sendmsg for the memory before a range,
// then sendfile) over a real TCP pair with a tiny send buffer, and TcpStream.writeFile
// through a real reactor: a file range between two in-memory writes arrives in order.

import { afterAll, afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, readlinkSync, rmSync, symlinkSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { libc, rc, Errno, SOL_SOCKET, SO_SNDBUF, SO_RCVBUF } from "../../ffi/index.ts";
import { BufferPool } from "../../src/buffers/pool.ts";
import { SharedBytes } from "../../src/buffers/shared-bytes.ts";
import { SharedFile } from "../../src/buffers/shared-file.ts";
import { WriteQueue } from "../../src/buffers/write-queue.ts";
import { sendQueue } from "../../src/driver/epoll.ts";
import { FileKind, openFile, openNormalizedFile, readFileRange, type OpenedFile } from "../../src/driver/files.ts";
import { setIntOption } from "../../src/driver/sockets.ts";
import { Reactor } from "../../src/reactor/reactor.ts";
import { WrappingStream } from "../../src/stream/wrap.ts";
import type { Handler, Stream } from "../../src/stream/stream.ts";
import { connect, readToEnd } from "../util/tcp.ts";
import { rawTcpPair, type RawPair } from "../util/raw-tcp.ts";

const dir = mkdtempSync(join(tmpdir(), "bunpoll-file-range-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

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

function concat(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((s, c) => s + c.length, 0));
  let off = 0;
  for (const c of chunks) {
    out.set(c, off);
    off += c.length;
  }
  return out;
}

function fileWith(name: string, bytes: Uint8Array): string {
  const p = join(dir, name);
  writeFileSync(p, bytes);
  return p;
}

function opened(path: string): OpenedFile {
  const o = openFile(path);
  if (typeof o === "number") throw new Error(`openFile(${path}): errno ${-o}`);
  return o;
}

/** fd is open on `path` (a closed fd's number may be reused by anything else: compare targets). */
function fdOn(fd: number, path: string): boolean {
  try {
    return readlinkSync(`/proc/self/fd/${fd}`) === path;
  } catch {
    return false;
  }
}
const enc = new TextEncoder();

describe("openFile and SharedFile", () => {
  test("opens a regular file: size, kind, real path; the fd closes with the last reference", () => {
    const p = fileWith("a.bin", pattern(1000));
    const o = opened(p);
    expect(o.kind).toBe(FileKind.Regular);
    expect(o.file.size).toBe(1000);
    expect(o.realPath).toBe(p);
    expect(o.file.mtimeMs).toBeGreaterThan(0);
    const fd = o.file.fd;
    expect(fdOn(fd, p)).toBe(true);
    o.file.retain(); // a queue's reference
    o.file.release(); // the opener's
    expect(fdOn(fd, p)).toBe(true);
    o.file.release(); // the last
    expect(o.file.released).toBe(true);
    expect(fdOn(fd, p)).toBe(false);
    expect(() => o.file.release()).toThrow("release() without a reference");
    expect(() => o.file.retain()).toThrow("retain() after the last release()");
  });

  test("a directory is a directory; missing paths and NUL give -errno, not a throw", () => {
    const o = opened(dir);
    expect(o.kind).toBe(FileKind.Directory);
    o.file.release();
    expect(openFile(join(dir, "missing"))).toBe(-Errno.ENOENT);
    expect(openFile(`${dir}/a\0b`)).toBe(-Errno.ENOENT);
  });

  test("openNormalizedFile: one openat2 for a path without links; through a link, the link's real target", () => {
    const p = fileWith("norm.bin", pattern(10));
    const direct = openNormalizedFile(p) as OpenedFile;
    expect(direct.kind).toBe(FileKind.Regular);
    expect(direct.realPath).toBe(p);
    expect(readlinkSync(`/proc/self/fd/${direct.file.fd}`)).toBe(p);
    direct.file.release();
    const link = join(dir, "norm-link");
    symlinkSync("norm.bin", link);
    const viaLink = openNormalizedFile(link) as OpenedFile;
    expect(viaLink.realPath).toBe(p); // not the link's own path: what the fd really is
    viaLink.file.release();
    expect(openNormalizedFile(join(dir, "nope"))).toBe(-Errno.ENOENT);
  });

  test("readFileRange reads a range with pread; a range past the end of a truncated file throws", () => {
    const bytes = pattern(5000, 3);
    const p = fileWith("r.bin", bytes);
    using f = opened(p).file;
    expect(readFileRange(f, 100, 4100)).toEqual(bytes.slice(100, 4100));
    truncateSync(p, 10);
    expect(() => readFileRange(f, 0, 5000)).toThrow("file shorter than announced");
  });
});

describe("WriteQueue file ranges", () => {
  test("accounting: length counts the range, memoryLength does not; consume and clear release it", () => {
    const released: number[] = [];
    const file = new SharedFile(12345, 1 << 20, 0, 1, (fd) => released.push(fd)); // not a real fd: never sent here
    const q = new WriteQueue(new BufferPool());
    q.appendString("head");
    q.appendFile(file, 10, 1010);
    q.appendString("tail");
    expect(q.length).toBe(1008);
    expect(q.memoryLength).toBe(8);
    expect(q.hasFile).toBe(true);
    expect(q.contiguous).toBe(false);
    expect(q.capacity).toBeGreaterThan(0);
    // Exported: only the memory before the range; the range is not at the head yet.
    const iov = new Uint32Array(64 * 4);
    expect(q.exportIovBeforeFile(iov, 64)).toBe(1);
    expect(q.exportedBytes).toBe(4);
    expect(q.fileHead()).toBeNull();
    q.consume(4);
    expect(q.exportIovBeforeFile(iov, 64)).toBe(0);
    expect(q.fileHead()).toMatchObject({ file, start: 10, end: 1010 });
    q.consume(500); // a partial sendfile
    expect(q.fileHead()).toMatchObject({ start: 510, end: 1010 });
    expect(q.length).toBe(504);
    file.release(); // the opener's reference: the queue still holds one
    expect(released).toEqual([]);
    q.consume(500);
    expect(released).toEqual([12345]);
    expect(q.hasFile).toBe(false);
    expect(q.length).toBe(4);
    expect(q.memoryLength).toBe(4);
    // clear() releases a queued range too.
    const f2 = new SharedFile(777, 100, 0, 2, (fd) => released.push(fd));
    q.appendFile(f2, 0, 100);
    f2.release();
    q.clear();
    expect(released).toEqual([12345, 777]);
    expect(q.length).toBe(0);
    expect(q.hasFile).toBe(false);
  });

  test("an empty range queues nothing and takes no reference", () => {
    const file = new SharedFile(1, 10, 0, 1, () => {});
    const q = new WriteQueue(new BufferPool());
    q.appendFile(file, 5, 5);
    expect(q.length).toBe(0);
    expect(q.hasFile).toBe(false);
    file.release();
    expect(file.released).toBe(true);
  });
});

// --- the driver's send, over a real TCP pair ------------------------------------------------

const pairs: RawPair[] = [];
afterEach(() => {
  for (const p of pairs.splice(0)) p[Symbol.dispose]();
});

async function tcpPair(): Promise<RawPair> {
  const p = await rawTcpPair();
  pairs.push(p);
  return p;
}

const recvBuf = new Uint8Array(new ArrayBuffer(64 * 1024));
function drain(fd: number, sink: Uint8Array[]): number {
  let total = 0;
  for (;;) {
    const n = rc(libc.recv(fd, recvBuf, recvBuf.length, 0));
    if (n > 0) {
      sink.push(recvBuf.slice(0, n));
      total += n;
      continue;
    }
    if (n === -Errno.EAGAIN || n === 0) return total;
    throw new Error(`recv: errno ${-n}`);
  }
}

describe("sendQueue with file ranges over a real TCP pair", () => {
  test("memory, a 1 MiB file range, shared bytes, memory: byte-exact and in order through a tiny send buffer", async () => {
    const { a, b } = await tcpPair();
    setIntOption(a, SOL_SOCKET, SO_SNDBUF, 4096, "SO_SNDBUF");
    setIntOption(b, SOL_SOCKET, SO_RCVBUF, 64 * 1024, "SO_RCVBUF");
    const fileBytes = pattern(1 << 20, 11);
    const bigPath = fileWith("big.bin", fileBytes);
    const o = opened(bigPath);
    const fd = o.file.fd;
    const q = new WriteQueue(new BufferPool());
    const head = enc.encode("HEAD:");
    const shared = SharedBytes.copyOf(pattern(30_000, 5));
    q.append(head, 0, head.length);
    q.appendFile(o.file, 1000, fileBytes.length - 1000); // a range, not the whole file
    q.appendShared(shared, 0, 30_000);
    q.appendString(":TAIL");
    o.file.release(); // the queue's reference keeps the fd open
    shared.release();
    const expected = concat([head, fileBytes.slice(1000, fileBytes.length - 1000), shared.bytes.slice(0, 30_000), enc.encode(":TAIL")]);
    expect(q.length).toBe(expected.length);

    const got: Uint8Array[] = [];
    let received = 0;
    let partials = 0;
    const deadline = performance.now() + 30_000;
    while (received < expected.length) {
      if (performance.now() > deadline) throw new Error(`stalled at ${received}/${expected.length}`);
      if (q.length > 0) {
        const before = q.length;
        const r = sendQueue(a, q);
        if (r < 0 && r !== -Errno.EAGAIN) throw new Error(`send: errno ${-r}`);
        if (r > 0) {
          expect(q.length).toBe(before - r);
          if (r < before) partials++;
        }
      }
      received += drain(b, got);
      if (q.length > 0) await Bun.sleep(0);
    }
    const all = concat(got);
    expect(all.length).toBe(expected.length);
    expect(Buffer.compare(Buffer.from(all), Buffer.from(expected))).toBe(0);
    expect(partials).toBeGreaterThan(0); // the tiny buffer forced partial sends, sendfile's included
    expect(q.hasFile).toBe(false);
    expect(fdOn(fd, bigPath)).toBe(false); // sent: the queue released the last reference
  });

  test("a file truncated under a queued range: -EIO, the send can never complete", async () => {
    const { a } = await tcpPair();
    const p = fileWith("shrinks.bin", pattern(10_000));
    using f = opened(p).file;
    const q = new WriteQueue(new BufferPool());
    q.appendFile(f, 0, 10_000);
    truncateSync(p, 0);
    expect(sendQueue(a, q)).toBe(-Errno.EIO);
    q.clear();
  });
});

describe("TcpStream.writeFile through a real reactor", () => {
  test("a file range between two writes arrives in order, and its fd is closed once sent", async () => {
    const fileBytes = pattern(300_000, 21);
    const path = fileWith("stream.bin", fileBytes);
    const reactor = new Reactor({ log: () => {} });
    let fileFd = -1;
    try {
      const port = reactor.listen({
        port: 0,
        handler: {
          data(s, bytes) {
            if (new TextDecoder().decode(bytes) !== "go") return;
            using f = opened(path).file;
            fileFd = f.fd;
            s.write("before|");
            s.writeFile(f, 7, fileBytes.length); // a range, so the offset is exercised
            s.write("|after");
            s.end();
          },
        },
      }).port;
      const loop = reactor.start();
      const c = await connect(port);
      c.write("go");
      const { data } = await readToEnd(c, 10_000);
      c.destroy();
      const expected = concat([enc.encode("before|"), fileBytes.slice(7), enc.encode("|after")]);
      expect(data.length).toBe(expected.length);
      expect(Buffer.compare(data, Buffer.from(expected))).toBe(0);
      expect(fileFd).toBeGreaterThan(0);
      expect(fdOn(fileFd, path)).toBe(false);
      await reactor.stop();
      await loop;
    } finally {
      reactor[Symbol.dispose]();
    }
  });
});

/** A toy transform (each byte XORed with a key), standing in for TLS: no sendfile possible. */
class XorStream<T> extends WrappingStream<T> {
  constructor(inner: Stream<any>, handler: Handler<T>, private readonly key: number) {
    super(inner, handler);
    this.install();
  }
  protected decode(wire: Uint8Array): void | Promise<void> {
    return this.deliver(Uint8Array.from(wire, (x) => x ^ this.key));
  }
  protected encode(plain: Uint8Array, start: number, end: number): boolean {
    return this.inner.write(Uint8Array.from(plain.subarray(start, end), (x) => x ^ this.key));
  }
}

describe("writeFile over a wrapping stream", () => {
  test("the range is read and encoded like a write, in order with the writes around it", async () => {
    const fileBytes = pattern(200_000, 33); // several 64 KiB pieces
    const path = fileWith("wrapped.bin", fileBytes);
    const reactor = new Reactor({ log: () => {} });
    let fileFd = -1;
    try {
      const port = reactor.listen({
        port: 0,
        handler: {
          open: (s) =>
            void new XorStream(s, {
              data(w, bytes) {
                if (new TextDecoder().decode(bytes) !== "go") return;
                using f = opened(path).file;
                fileFd = f.fd;
                w.write("<");
                w.writeFile(f, 3, 150_003);
                w.write(">");
                w.end();
              },
            }, 0x5a),
        },
      }).port;
      const loop = reactor.start();
      const c = await connect(port);
      c.write(Uint8Array.from(enc.encode("go"), (x) => x ^ 0x5a));
      const { data } = await readToEnd(c, 10_000);
      c.destroy();
      const plain = Uint8Array.from(data, (x) => x ^ 0x5a);
      const expected = concat([enc.encode("<"), fileBytes.slice(3, 150_003), enc.encode(">")]);
      expect(plain.length).toBe(expected.length);
      expect(Buffer.compare(Buffer.from(plain), Buffer.from(expected))).toBe(0);
      expect(fdOn(fileFd, path)).toBe(false); // read at once: only the opener held it
      await reactor.stop();
      await loop;
    } finally {
      reactor[Symbol.dispose]();
    }
  });
});
