// Struct layouts, keyed by architecture, and sockaddr encode/decode. The only place that
// knows byte offsets of kernel structures.

import { AF_INET, AF_INET6 } from "./constants.ts";

/**
 * struct epoll_event { u32 events; u64 data; }: packed (12 bytes) on x86-64, naturally
 * aligned (16 bytes) on aarch64. Offsets are in 32-bit words so that one Uint32Array view
 * reads both layouts: every field starts on a 4-byte boundary in both.
 */
export interface EpollEventLayout {
  readonly size: number;
  readonly words: number; // size / 4
  readonly eventsWord: number;
  readonly dataLoWord: number; // low 32 bits of data (little-endian)
  readonly dataHiWord: number;
}

const EPOLL_EVENT_LAYOUTS: Record<string, EpollEventLayout> = {
  x64: { size: 12, words: 3, eventsWord: 0, dataLoWord: 1, dataHiWord: 2 },
  arm64: { size: 16, words: 4, eventsWord: 0, dataLoWord: 2, dataHiWord: 3 },
};

export const epollEvent: EpollEventLayout = (() => {
  const layout = EPOLL_EVENT_LAYOUTS[process.arch];
  if (!layout) throw new Error(`bunpoll: unsupported architecture ${process.arch} (x64 and arm64 only)`);
  return layout;
})();

/**
 * struct iovec { void *base; size_t len; } and struct msghdr (for sendmsg), in 32-bit
 * words: the same on x86-64 and aarch64 (LP64, little-endian). A pointer or size goes in
 * as two words, low first.
 */
export const IOVEC_WORDS = 4;
export const MSGHDR_SIZE = 56;
export const msghdr = {
  /** void *msg_iov (msg_name/msg_namelen before it stay 0: connected socket). */
  iovWord: 4,
  /** size_t msg_iovlen. msg_control, msg_controllen and msg_flags after it stay 0. */
  iovLenWord: 6,
} as const;

/**
 * struct stat (fstat), in bytes: dev, ino, size and the mtime timespec sit at the same
 * offsets on x86-64 and aarch64; st_mode does not (x86-64 puts a 64-bit st_nlink first).
 */
export interface StatLayout {
  readonly size: number;
  readonly ino: number;
  readonly mode: number;
  readonly fileSize: number;
  readonly mtimeSec: number;
  readonly mtimeNsec: number;
}

const STAT_LAYOUTS: Record<string, StatLayout> = {
  x64: { size: 144, ino: 8, mode: 24, fileSize: 48, mtimeSec: 88, mtimeNsec: 96 },
  arm64: { size: 128, ino: 8, mode: 16, fileSize: 48, mtimeSec: 88, mtimeNsec: 96 },
};

export const statLayout: StatLayout = STAT_LAYOUTS[process.arch] ?? STAT_LAYOUTS.x64!;

/** struct open_how (openat2): u64 flags, u64 mode, u64 resolve; in 32-bit words, low first. */
export const OPEN_HOW_SIZE = 24;
export const openHow = { flagsWord: 0, modeWord: 2, resolveWord: 4 } as const;

export const SOCKADDR_IN_SIZE = 16;
export const SOCKADDR_IN6_SIZE = 28;
/** Big enough for any address family we accept. */
export const SOCKADDR_STORAGE_SIZE = 128;

export interface SocketAddress {
  family: 4 | 6;
  address: string;
  port: number;
}

/** Parses a dotted-quad IPv4 address; returns null when it is not one. */
export function parseIPv4(s: string): Uint8Array | null {
  const parts = s.split(".");
  if (parts.length !== 4) return null;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const p = parts[i]!;
    if (!/^(0|[1-9]\d{0,2})$/.test(p)) return null; // no leading zeros (inet_pton rejects them)
    const v = Number(p);
    if (v > 255) return null;
    out[i] = v;
  }
  return out;
}

/** Parses an IPv6 address (RFC 4291 text forms, including an embedded IPv4 tail). */
export function parseIPv6(s: string): Uint8Array | null {
  if (s.startsWith("[") && s.endsWith("]")) s = s.slice(1, -1);
  if (s.includes("%")) s = s.slice(0, s.indexOf("%")); // zone ids are not supported; ignore
  if (!/^[0-9a-fA-F:.]+$/.test(s)) return null;
  const halves = s.split("::");
  if (halves.length > 2) return null;
  // An embedded IPv4 part may only end the address: allowed in the tail half alone.
  const groups = (part: string, v4Allowed: boolean): number[] | null => {
    if (part === "") return [];
    const out: number[] = [];
    const items = part.split(":");
    for (let i = 0; i < items.length; i++) {
      const it = items[i]!;
      if (it.includes(".")) {
        if (!v4Allowed || i !== items.length - 1) return null;
        const v4 = parseIPv4(it);
        if (!v4) return null;
        out.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!);
      } else {
        if (!/^[0-9a-fA-F]{1,4}$/.test(it)) return null;
        out.push(parseInt(it, 16));
      }
    }
    return out;
  };
  const head = groups(halves[0]!, halves.length === 1);
  const tail = halves.length === 2 ? groups(halves[1]!, true) : [];
  if (!head || !tail) return null;
  const missing = 8 - head.length - tail.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) return null;
  const all = [...head, ...new Array<number>(halves.length === 2 ? missing : 0).fill(0), ...tail];
  const out = new Uint8Array(16);
  for (let i = 0; i < 8; i++) {
    out[2 * i] = all[i]! >> 8;
    out[2 * i + 1] = all[i]! & 0xff;
  }
  return out;
}

/** RFC 5952 canonical text form: lower case, longest run of zero groups compressed. */
export function formatIPv6(b: Uint8Array): string {
  const g: number[] = [];
  for (let i = 0; i < 8; i++) g.push((b[2 * i]! << 8) | b[2 * i + 1]!);
  // IPv4-mapped addresses are shown the way everyone expects: ::ffff:1.2.3.4
  if (g[0] === 0 && g[1] === 0 && g[2] === 0 && g[3] === 0 && g[4] === 0 && g[5] === 0xffff) {
    return `::ffff:${b[12]}.${b[13]}.${b[14]}.${b[15]}`;
  }
  let bestStart = -1, bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) { bestStart = i; bestLen = j - i; }
    i = j;
  }
  const hex = (xs: number[]) => xs.map((x) => x.toString(16)).join(":");
  if (bestStart < 0) return hex(g);
  return `${hex(g.slice(0, bestStart))}::${hex(g.slice(bestStart + bestLen))}`;
}

/**
 * Encodes host:port into a sockaddr_in or sockaddr_in6. `host` must be an IP literal or
 * "localhost" (bunpoll does no DNS on the server side: a listen address is explicit).
 */
export function encodeSockaddr(host: string, port: number): Uint8Array {
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new RangeError(`invalid port ${port}`);
  const h = host === "localhost" ? "127.0.0.1" : host;
  const v4 = parseIPv4(h);
  // Allocated over its own ArrayBuffer: the kernel reads it through a raw pointer.
  if (v4) {
    const buf = new Uint8Array(new ArrayBuffer(SOCKADDR_IN_SIZE));
    const dv = new DataView(buf.buffer);
    dv.setUint16(0, AF_INET, true); // sa_family is host byte order
    dv.setUint16(2, port, false); // sin_port is network byte order
    buf.set(v4, 4);
    return buf;
  }
  const v6 = parseIPv6(h);
  if (v6) {
    const buf = new Uint8Array(new ArrayBuffer(SOCKADDR_IN6_SIZE));
    const dv = new DataView(buf.buffer);
    dv.setUint16(0, AF_INET6, true);
    dv.setUint16(2, port, false);
    buf.set(v6, 8); // after family, port, flowinfo
    return buf;
  }
  throw new TypeError(`invalid address "${host}": expected an IPv4 or IPv6 literal or "localhost"`);
}

/** Decodes a sockaddr_in / sockaddr_in6 written by the kernel. */
export function decodeSockaddr(buf: Uint8Array): SocketAddress {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const family = dv.getUint16(0, true);
  const port = dv.getUint16(2, false);
  if (family === AF_INET) {
    return { family: 4, address: `${buf[4]}.${buf[5]}.${buf[6]}.${buf[7]}`, port };
  }
  if (family === AF_INET6) {
    return { family: 6, address: formatIPv6(buf.subarray(8, 24)), port };
  }
  throw new Error(`unsupported address family ${family}`);
}

/** "1.2.3.4:5678", or "[::1]:5678" for IPv6: the one host:port text form of logs and labels. */
export function formatHostPort(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

/** Address family of a host literal, for socket(2). */
export function familyOf(host: string): number {
  return encodeSockaddr(host, 0).length === SOCKADDR_IN_SIZE ? AF_INET : AF_INET6;
}
