// ffi/errno.ts: the one errno translation point, exercised with real failing syscalls.

import { describe, test, expect } from "bun:test";
import { readdirSync } from "node:fs";
import {
  libc, rc, check, errno, errnoName, errorFromRc, SyscallError, Errno,
  EFD_NONBLOCK, EFD_CLOEXEC, MSG_NOSIGNAL, SOL_SOCKET, SO_ERROR,
} from "../../ffi/index.ts";
import { createListenSocket, localAddress, Fd } from "../../src/driver/sockets.ts";

const scratch = new Uint8Array(new ArrayBuffer(64));

describe("errno names", () => {
  test("every Errno constant maps back to its own name", () => {
    for (const [name, num] of Object.entries(Errno)) expect(errnoName(num)).toBe(name);
  });

  test("numbers are the Linux ABI values", () => {
    expect(Errno.EBADF).toBe(9);
    expect(Errno.EAGAIN).toBe(11);
    expect(Errno.EINVAL).toBe(22);
    expect(Errno.EPIPE).toBe(32);
    expect(Errno.ENOTSOCK).toBe(88);
    expect(Errno.EADDRINUSE).toBe(98);
    expect(Errno.ECONNRESET).toBe(104);
    expect(Errno.ECONNREFUSED).toBe(111);
    expect(Errno.EINPROGRESS).toBe(115);
  });

  test("unknown numbers get a readable fallback", () => {
    expect(errnoName(1234)).toBe("errno 1234");
    expect(errnoName(0)).toBe("errno 0");
  });
});

describe("rc: hot-path translation to -errno", () => {
  test("close(-1) is -EBADF and errno() reads EBADF", () => {
    expect(rc(libc.close(-1))).toBe(-Errno.EBADF);
    expect(errno()).toBe(Errno.EBADF);
  });

  test("read/write/send on a closed or never-opened fd are -EBADF", () => {
    expect(rc(libc.read(987_654, scratch, scratch.length))).toBe(-Errno.EBADF);
    expect(rc(libc.write(987_654, scratch, 1))).toBe(-Errno.EBADF);
    expect(rc(libc.send(987_654, scratch, 1, MSG_NOSIGNAL))).toBe(-Errno.EBADF);
  });

  test("an fd that is closed is EBADF afterwards (not silently reused by us)", () => {
    const fd = check("eventfd", libc.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    expect(fd).toBeGreaterThanOrEqual(0);
    expect(rc(libc.close(fd))).toBe(0);
    // A second close of the same number fails (unless another thread grabbed it meanwhile:
    // Bun's threads rarely open fds, and the assertion would then see 0, not a wrong errno).
    const r = rc(libc.close(fd));
    expect([0, -Errno.EBADF]).toContain(r);
  });

  test("EAGAIN from a non-blocking read of an empty eventfd", () => {
    const fd = check("eventfd", libc.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    try {
      const buf = new BigUint64Array(new ArrayBuffer(8));
      expect(rc(libc.read(fd, buf, 8))).toBe(-Errno.EAGAIN);
      expect(errnoName(-rc(libc.read(fd, buf, 8)))).toBe("EAGAIN");
      // And success passes the return value through unchanged.
      buf[0] = 5n;
      expect(rc(libc.write(fd, buf, 8))).toBe(8);
      expect(rc(libc.read(fd, buf, 8))).toBe(8);
      expect(buf[0]).toBe(5n);
    } finally {
      libc.close(fd);
    }
  });

  test("ENOTSOCK from a socket call on a non-socket", () => {
    const fd = check("eventfd", libc.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    try {
      expect(rc(libc.recv(fd, scratch, 8, 0))).toBe(-Errno.ENOTSOCK);
      expect(rc(libc.shutdown(fd, 1))).toBe(-Errno.ENOTSOCK);
    } finally {
      libc.close(fd);
    }
  });

  test("alternating errors are never confused (errno read right after each call)", () => {
    const efd = check("eventfd", libc.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    try {
      const buf = new BigUint64Array(new ArrayBuffer(8));
      let wrong = 0;
      for (let i = 0; i < 20_000; i++) {
        if (rc(libc.close(-1)) !== -Errno.EBADF) wrong++;
        if (rc(libc.read(efd, buf, 8)) !== -Errno.EAGAIN) wrong++;
        if (rc(libc.recv(efd, scratch, 8, 0)) !== -Errno.ENOTSOCK) wrong++;
        if (i % 5000 === 0) Bun.gc(false);
      }
      expect(wrong).toBe(0);
    } finally {
      libc.close(efd);
    }
  });
});

describe("check / SyscallError: setup-path translation", () => {
  test("check passes successful return values through", () => {
    expect(check("x", 0)).toBe(0);
    expect(check("x", 42)).toBe(42);
  });

  test("check(close(-1)) throws a SyscallError naming the call and the errno", () => {
    let caught: unknown;
    try {
      check("close", libc.close(-1));
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(SyscallError);
    expect(caught).toBeInstanceOf(Error);
    const e = caught as SyscallError;
    expect(e.message).toBe("close: EBADF");
    expect(e.syscall).toBe("close");
    expect(e.errno).toBe(Errno.EBADF);
    expect(e.code).toBe("EBADF");
    expect(e.name).toBe("SyscallError");
  });

  test("detail is appended in parentheses", () => {
    expect(() => check("read", libc.read(-1, scratch, 1), "fd -1")).toThrow("read: EBADF (fd -1)");
  });

  test("errorFromRc builds the same error from a hot-path -errno", () => {
    const r = rc(libc.close(-1));
    const e = errorFromRc("close", r, "fd -1");
    expect(e).toBeInstanceOf(SyscallError);
    expect(e.message).toBe("close: EBADF (fd -1)");
    expect(e.errno).toBe(Errno.EBADF);
    expect(new SyscallError("frob", 1234).message).toBe("frob: errno 1234");
  });

  test('binding a port in use: "bind: EADDRINUSE (127.0.0.1:PORT)"', () => {
    using first = createListenSocket({ hostname: "127.0.0.1", port: 0 });
    const port = localAddress(first.value).port;
    expect(port).toBeGreaterThan(0);
    let caught: unknown;
    try {
      using second = createListenSocket({ hostname: "127.0.0.1", port });
      void second;
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(SyscallError);
    const e = caught as SyscallError;
    expect(e.message).toBe(`bind: EADDRINUSE (127.0.0.1:${port})`);
    expect(e.code).toBe("EADDRINUSE");
    expect(e.syscall).toBe("bind");
  });

  test('IPv6 addresses are bracketed in the detail: "bind: EADDRINUSE ([::1]:PORT)"', () => {
    using first = createListenSocket({ hostname: "::1", port: 0 });
    const port = localAddress(first.value).port;
    expect(() => createListenSocket({ hostname: "::1", port })).toThrow(`bind: EADDRINUSE ([::1]:${port})`);
  });

  test("a failed createListenSocket does not leak its socket fd", () => {
    using first = createListenSocket({ hostname: "127.0.0.1", port: 0 });
    const port = localAddress(first.value).port;
    const before = fdCount();
    for (let i = 0; i < 50; i++) {
      expect(() => createListenSocket({ hostname: "127.0.0.1", port })).toThrow(SyscallError);
    }
    expect(fdCount()).toBeLessThanOrEqual(before);
  });

  test("SO_ERROR of a fresh socket is 0 (getsockopt through check)", () => {
    using s = createListenSocket({ hostname: "127.0.0.1", port: 0 });
    const v = new Int32Array(new ArrayBuffer(4));
    const len = new Uint32Array(new ArrayBuffer(4));
    len[0] = 4;
    expect(check("getsockopt", libc.getsockopt(s.value, SOL_SOCKET, SO_ERROR, v, len))).toBe(0);
    expect(v[0]).toBe(0);
  });

  test("Fd closes exactly once", () => {
    const raw = check("eventfd", libc.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    const fd = new Fd(raw);
    fd[Symbol.dispose]();
    expect(fd.value).toBe(-1);
    fd[Symbol.dispose](); // no second close(2) of a number someone else may own now
    const kept = new Fd(check("eventfd", libc.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)));
    const n = kept.release();
    kept[Symbol.dispose]();
    expect(rc(libc.close(n))).toBe(0); // release() handed ownership over: still open
  });
});

function fdCount(): number {
  return readdirSync("/proc/self/fd").length;
}
