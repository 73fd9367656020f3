// Socket setup for the driver (after Redis anet.c): socket, bind, listen, connect, options
// and addresses. Setup paths throw SyscallErrors that name the syscall, the errno and the
// address; every fd is owned (`using`) until it is handed to the caller, so an exception
// half-way through never leaks it. Data-path I/O is in epoll.ts.

import {
  libc, rc, check, SyscallError, Errno,
  AF_INET6, SOCK_STREAM, SOCK_NONBLOCK, SOCK_CLOEXEC, SOL_SOCKET, SO_REUSEADDR, SO_REUSEPORT,
  SO_ERROR, IPPROTO_TCP, TCP_NODELAY, IPPROTO_IPV6, IPV6_V6ONLY, O_RDONLY, O_CLOEXEC,
  RLIMIT_NOFILE, encodeSockaddr, formatHostPort, decodeSockaddr, familyOf, SOCKADDR_STORAGE_SIZE,
  type SocketAddress,
} from "../../ffi/index.ts";

/** An owned file descriptor: closed exactly once, by dispose. */
export class Fd implements Disposable {
  #fd: number;
  constructor(fd: number) {
    this.#fd = fd;
  }
  get value(): number {
    return this.#fd;
  }
  /** Gives up ownership: the caller now closes the fd. */
  release(): number {
    const fd = this.#fd;
    this.#fd = -1;
    return fd;
  }
  [Symbol.dispose](): void {
    if (this.#fd >= 0) {
      libc.close(this.#fd);
      this.#fd = -1;
    }
  }
}

export { formatHostPort };

/** Closes an fd this process owns that no driver entry holds: an accepted socket refused before registration, a file (SharedFile). */
export function closeFd(fd: number): void {
  libc.close(fd);
}

// One 4-byte scratch for integer socket options: setup paths only, never concurrent.
const intOpt = new Int32Array(new ArrayBuffer(4));

export function setIntOption(fd: number, level: number, name: number, value: number, what: string): void {
  intOpt[0] = value;
  check(`setsockopt(${what})`, libc.setsockopt(fd, level, name, intOpt, 4));
}

export function getIntOption(fd: number, level: number, name: number, what: string): number {
  intOpt[0] = 0;
  const len = new Uint32Array(new ArrayBuffer(4));
  len[0] = 4;
  check(`getsockopt(${what})`, libc.getsockopt(fd, level, name, intOpt, len));
  return intOpt[0]!;
}

export function setNoDelay(fd: number): number {
  intOpt[0] = 1;
  return rc(libc.setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, intOpt, 4));
}

// Event paths read SO_ERROR: their own scratch, so a setup call never shares it.
const errOpt = new Int32Array(new ArrayBuffer(4));
const errLen = new Uint32Array(new ArrayBuffer(4));

/**
 * The socket's pending error as -errno (SO_ERROR), 0 when there is none. Called on event
 * paths, so it never throws: when getsockopt itself fails, its own -errno comes back.
 */
export function pendingSocketError(fd: number): number {
  errOpt[0] = 0;
  errLen[0] = 4;
  const r = rc(libc.getsockopt(fd, SOL_SOCKET, SO_ERROR, errOpt, errLen));
  return r < 0 ? r : -errOpt[0]!;
}

export interface ListenOptions {
  hostname: string;
  port: number;
  backlog?: number;
  /** SO_REUSEPORT: several sockets may listen on one port; the kernel spreads connections. */
  reusePort?: boolean;
  /** IPv6 only (no IPv4-mapped addresses) for "::". Default true, so "::" and "0.0.0.0" can coexist. */
  ipv6Only?: boolean;
}

/** socket + setsockopt + bind + listen. Returns the owned, non-blocking listening fd. */
export function createListenSocket(opts: ListenOptions): Fd {
  const where = formatHostPort(opts.hostname, opts.port);
  const addr = encodeSockaddr(opts.hostname, opts.port);
  const family = familyOf(opts.hostname);
  using fd = new Fd(check("socket", libc.socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), where));
  setIntOption(fd.value, SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR");
  if (opts.reusePort) setIntOption(fd.value, SOL_SOCKET, SO_REUSEPORT, 1, "SO_REUSEPORT");
  if (family === AF_INET6) setIntOption(fd.value, IPPROTO_IPV6, IPV6_V6ONLY, opts.ipv6Only === false ? 0 : 1, "IPV6_V6ONLY");
  check("bind", libc.bind(fd.value, addr, addr.length), where);
  check("listen", libc.listen(fd.value, opts.backlog ?? 1024), where);
  return new Fd(fd.release());
}

/** Starts a non-blocking connect. Returns the owned fd; completion is signalled by EPOLLOUT. */
export function startConnect(host: string, port: number): { fd: Fd; inProgress: boolean } {
  const where = formatHostPort(host, port);
  const addr = encodeSockaddr(host, port);
  using fd = new Fd(check("socket", libc.socket(familyOf(host), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), where));
  const r = rc(libc.connect(fd.value, addr, addr.length));
  if (r < 0 && r !== -Errno.EINPROGRESS) throw new SyscallError("connect", -r, where);
  setNoDelay(fd.value);
  return { fd: new Fd(fd.release()), inProgress: r < 0 };
}

function nameOf(syscall: "getsockname" | "getpeername", fd: number): SocketAddress {
  const buf = new Uint8Array(new ArrayBuffer(SOCKADDR_STORAGE_SIZE));
  const len = new Uint32Array(new ArrayBuffer(4));
  len[0] = SOCKADDR_STORAGE_SIZE;
  check(syscall, libc[syscall](fd, buf, len));
  return decodeSockaddr(buf);
}

export function localAddress(fd: number): SocketAddress {
  return nameOf("getsockname", fd);
}

export function peerAddress(fd: number): SocketAddress {
  return nameOf("getpeername", fd);
}

const DEV_NULL = new TextEncoder().encode("/dev/null\0");

/** Opens /dev/null: the reserve fd given back up when accept hits EMFILE (after libuv). */
export function openReserveFd(): number {
  return rc(libc.open(DEV_NULL, O_RDONLY | O_CLOEXEC));
}

/** The soft RLIMIT_NOFILE of this process. */
export function fdLimit(): number {
  const rl = new BigUint64Array(new ArrayBuffer(16));
  check("getrlimit", libc.getrlimit(RLIMIT_NOFILE, rl));
  return Number(rl[0]);
}
