// ffi/structs.ts: IPv4/IPv6 text parsing and formatting, sockaddr encode/decode, and a
// round trip of both through the kernel (bind + getsockname, connect + getpeername).

import { describe, test, expect } from "bun:test";
import fc from "fast-check";
import {
  libc, rc, check, Errno,
  parseIPv4, parseIPv6, formatIPv6, encodeSockaddr, decodeSockaddr, familyOf,
  AF_INET, AF_INET6, SOCK_STREAM, SOCK_CLOEXEC, SOCK_NONBLOCK,
  SOCKADDR_IN_SIZE, SOCKADDR_IN6_SIZE, SOCKADDR_STORAGE_SIZE,
} from "../../ffi/index.ts";
import { createListenSocket, localAddress, peerAddress, startConnect, Fd } from "../../src/driver/sockets.ts";

const bytes = (...xs: number[]) => Uint8Array.from(xs);
const v6 = (...groups: number[]) => {
  const out = new Uint8Array(16);
  groups.forEach((g, i) => {
    out[2 * i] = g >> 8;
    out[2 * i + 1] = g & 0xff;
  });
  return out;
};

describe("parseIPv4", () => {
  test("valid dotted quads", () => {
    expect(parseIPv4("0.0.0.0")).toEqual(bytes(0, 0, 0, 0));
    expect(parseIPv4("127.0.0.1")).toEqual(bytes(127, 0, 0, 1));
    expect(parseIPv4("255.255.255.255")).toEqual(bytes(255, 255, 255, 255));
    expect(parseIPv4("10.20.30.40")).toEqual(bytes(10, 20, 30, 40));
  });

  test.each([
    "", "1", "1.2.3", "1.2.3.4.5", "256.0.0.1", "1.2.3.256", "1.2.3.-1", "1..2.3", "1.2.3.",
    ".1.2.3", "a.b.c.d", "1.2.3.4 ", " 1.2.3.4", "1.2.3.0x1", "1234.1.1.1", "1.2.3.4/24", "::1",
    "localhost",
  ])("rejects %p", (s) => {
    expect(parseIPv4(s)).toBeNull();
  });
});

describe("parseIPv6", () => {
  test("unspecified, loopback, full and compressed forms", () => {
    expect(parseIPv6("::")).toEqual(new Uint8Array(16));
    expect(parseIPv6("::1")).toEqual(v6(0, 0, 0, 0, 0, 0, 0, 1));
    expect(parseIPv6("1::")).toEqual(v6(1, 0, 0, 0, 0, 0, 0, 0));
    expect(parseIPv6("1:2:3:4:5:6:7:8")).toEqual(v6(1, 2, 3, 4, 5, 6, 7, 8));
    expect(parseIPv6("2001:db8::1")).toEqual(v6(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
    expect(parseIPv6("2001:DB8:0:0:8:800:200C:417A")).toEqual(v6(0x2001, 0xdb8, 0, 0, 8, 0x800, 0x200c, 0x417a));
    expect(parseIPv6("fe80::1:2")).toEqual(v6(0xfe80, 0, 0, 0, 0, 0, 1, 2));
    expect(parseIPv6("1::8")).toEqual(v6(1, 0, 0, 0, 0, 0, 0, 8));
    expect(parseIPv6("1:2:3:4:5:6:7::")).toEqual(v6(1, 2, 3, 4, 5, 6, 7, 0));
    expect(parseIPv6("::2:3:4:5:6:7:8")).toEqual(v6(0, 2, 3, 4, 5, 6, 7, 8));
    expect(parseIPv6("0000:0000:0000:0000:0000:0000:0000:0001")).toEqual(v6(0, 0, 0, 0, 0, 0, 0, 1));
    expect(parseIPv6("[::1]")).toEqual(v6(0, 0, 0, 0, 0, 0, 0, 1));
  });

  test("embedded IPv4 tail", () => {
    expect(parseIPv6("::ffff:1.2.3.4")).toEqual(v6(0, 0, 0, 0, 0, 0xffff, 0x0102, 0x0304));
    expect(parseIPv6("::FFFF:127.0.0.1")).toEqual(v6(0, 0, 0, 0, 0, 0xffff, 0x7f00, 0x0001));
    expect(parseIPv6("64:ff9b::192.0.2.33")).toEqual(v6(0x64, 0xff9b, 0, 0, 0, 0, 0xc000, 0x0221));
    expect(parseIPv6("1:2:3:4:5:6:1.2.3.4")).toEqual(v6(1, 2, 3, 4, 5, 6, 0x0102, 0x0304));
  });

  test.each([
    "", ":", ":::", "1:::2", "1::2::3", "::1::", "1:2:3:4:5:6:7", "1:2:3:4:5:6:7:8:9",
    "1:2:3:4:5:6:7:8::", "::1:2:3:4:5:6:7:8", "1:2:3:4::5:6:7:8", "12345::", "g::1", ":1::", "1:",
    ":1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8:", "::ffff:256.1.1.1", "::ffff:1.2.3", "::1.2.3.4.5",
    "::1.2.3.4:1", "1:2:3:4:5:6:7:1.2.3.4", "1.2.3.4", "::ffff:1.2.3.4 ", " ::1", "::1/128",
    "localhost", "[::1", "::-1",
  ])("rejects %p", (s) => {
    expect(parseIPv6(s)).toBeNull();
  });

  // BUG (ffi/structs.ts parseIPv6, the `groups` helper): an embedded IPv4 part is checked to
  // be the last item of its *half*, not of the whole address, so an IPv4 part before "::"
  // is accepted: parseIPv6("1.2.3.4::1") returns 102:304::1. RFC 4291 allows dotted quads
  // only as the last 32 bits (inet_pton and Python's ipaddress reject these).
  test.each(["1.2.3.4::", "1.2.3.4::1", "1:1.2.3.4::"])("rejects an IPv4 part before '::': %p", (s) => {
    expect(parseIPv6(s)).toBeNull();
  });
});

describe("formatIPv6 (RFC 5952)", () => {
  const fmt = (s: string) => formatIPv6(parseIPv6(s)!);

  test("canonical text of well-known addresses", () => {
    expect(fmt("::")).toBe("::");
    expect(fmt("::1")).toBe("::1");
    expect(fmt("1::")).toBe("1::");
    expect(fmt("0:0:0:0:0:0:0:1")).toBe("::1");
    expect(fmt("2001:0DB8:0000:0000:0000:0000:0000:0001")).toBe("2001:db8::1");
    expect(fmt("fe80:0:0:0:0:0:0:1")).toBe("fe80::1");
    expect(fmt("1:2:3:4:5:6:7:8")).toBe("1:2:3:4:5:6:7:8");
  });

  test("IPv4-mapped addresses keep the dotted tail", () => {
    expect(fmt("::ffff:1.2.3.4")).toBe("::ffff:1.2.3.4");
    expect(fmt("0:0:0:0:0:ffff:7f00:1")).toBe("::ffff:127.0.0.1");
  });

  test("a single zero group is not compressed; the longest (then first) run is", () => {
    expect(fmt("2001:db8:0:1:1:1:1:1")).toBe("2001:db8:0:1:1:1:1:1");
    expect(fmt("2001:db8:0:0:1:0:0:1")).toBe("2001:db8::1:0:0:1");
    expect(fmt("2001:0:0:1:0:0:0:1")).toBe("2001:0:0:1::1");
    expect(fmt("1:0:0:0:1:0:0:0")).toBe("1::1:0:0:0");
  });

  test("property: format then parse gives back the same 16 bytes", () => {
    // Bias towards zero groups so that compression paths are exercised.
    const group = fc.oneof(fc.constant(0), fc.constant(0), fc.integer({ min: 0, max: 0xffff }));
    fc.assert(
      fc.property(fc.array(group, { minLength: 8, maxLength: 8 }), (groups) => {
        const b = v6(...groups);
        const text = formatIPv6(b);
        expect(parseIPv6(text)).toEqual(b);
        expect(text).toBe(text.toLowerCase());
        expect(text.split("::").length).toBeLessThanOrEqual(2);
      }),
      { numRuns: 2000 },
    );
  });

  test("property: formatting is idempotent", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), (b) => {
        const once = formatIPv6(b);
        expect(formatIPv6(parseIPv6(once)!)).toBe(once);
      }),
      { numRuns: 1000 },
    );
  });
});

describe("encodeSockaddr / decodeSockaddr", () => {
  test("sockaddr_in layout: family (host order), port (network order), address", () => {
    const b = encodeSockaddr("10.1.2.3", 0x1234);
    expect(b.length).toBe(SOCKADDR_IN_SIZE);
    const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
    expect(dv.getUint16(0, true)).toBe(AF_INET);
    expect(b[2]).toBe(0x12);
    expect(b[3]).toBe(0x34);
    expect([...b.subarray(4, 8)]).toEqual([10, 1, 2, 3]);
    expect([...b.subarray(8)]).toEqual(new Array(8).fill(0)); // sin_zero
  });

  test("sockaddr_in6 layout: family, port, flowinfo 0, address, scope id 0", () => {
    const b = encodeSockaddr("2001:db8::7", 443);
    expect(b.length).toBe(SOCKADDR_IN6_SIZE);
    const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
    expect(dv.getUint16(0, true)).toBe(AF_INET6);
    expect(dv.getUint16(2, false)).toBe(443);
    expect(dv.getUint32(4, false)).toBe(0);
    expect(b.subarray(8, 24)).toEqual(v6(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7));
    expect(dv.getUint32(24, true)).toBe(0);
  });

  test("localhost is 127.0.0.1; brackets are accepted for IPv6", () => {
    expect(encodeSockaddr("localhost", 80)).toEqual(encodeSockaddr("127.0.0.1", 80));
    expect(encodeSockaddr("[::1]", 80)).toEqual(encodeSockaddr("::1", 80));
  });

  test.each([
    ["127.0.0.1", 4], ["0.0.0.0", 4], ["::", 6], ["::1", 6], ["::ffff:1.2.3.4", 6], ["fe80::abcd", 6],
  ] as const)("round trip %p", (host, family) => {
    for (const port of [0, 1, 80, 5050, 65535]) {
      const d = decodeSockaddr(encodeSockaddr(host, port));
      expect(d).toEqual({ family, address: host, port });
    }
  });

  test("familyOf", () => {
    expect(familyOf("127.0.0.1")).toBe(AF_INET);
    expect(familyOf("localhost")).toBe(AF_INET);
    expect(familyOf("::")).toBe(AF_INET6);
    expect(familyOf("::ffff:1.2.3.4")).toBe(AF_INET6);
  });

  test.each(["example.com", "", "1.2.3", "256.1.1.1", ":::", "1::2::3", "127.0.0.1:80", "LOCALHOST "])(
    "invalid host %p is a TypeError naming it",
    (host) => {
      expect(() => encodeSockaddr(host, 80)).toThrow(TypeError);
      expect(() => encodeSockaddr(host, 80)).toThrow(`invalid address "${host}"`);
    },
  );

  test.each([-1, 65536, 1.5, NaN, Infinity])("invalid port %p is a RangeError", (port) => {
    expect(() => encodeSockaddr("127.0.0.1", port)).toThrow(RangeError);
  });

  test("decoding an unknown family throws", () => {
    const b = new Uint8Array(16);
    b[0] = 1; // AF_UNIX
    expect(() => decodeSockaddr(b)).toThrow("unsupported address family 1");
  });

  test("decode reads from a view at an offset (byteOffset honoured)", () => {
    const big = new Uint8Array(64);
    big.set(encodeSockaddr("192.168.1.9", 8080), 32);
    expect(decodeSockaddr(big.subarray(32))).toEqual({ family: 4, address: "192.168.1.9", port: 8080 });
  });
});

describe("round trip through the kernel", () => {
  /** Raw socket + bind(encodeSockaddr) + getsockname -> decodeSockaddr. */
  function bindAndName(host: string): { family: number; address: string; port: number } {
    const addr = encodeSockaddr(host, 0);
    using fd = new Fd(check("socket", libc.socket(familyOf(host), SOCK_STREAM | SOCK_CLOEXEC, 0)));
    check("bind", libc.bind(fd.value, addr, addr.length), host);
    const out = new Uint8Array(new ArrayBuffer(SOCKADDR_STORAGE_SIZE));
    const len = new Uint32Array(new ArrayBuffer(4));
    len[0] = SOCKADDR_STORAGE_SIZE;
    check("getsockname", libc.getsockname(fd.value, out, len));
    expect(len[0]).toBe(addr.length); // the kernel agrees on the struct size
    return decodeSockaddr(out);
  }

  test.each([["127.0.0.1", 4], ["0.0.0.0", 4], ["::1", 6], ["::", 6]] as const)("bind %p, getsockname", (host, family) => {
    const a = bindAndName(host);
    expect(a.family).toBe(family);
    expect(a.address).toBe(host);
    expect(a.port).toBeGreaterThan(0); // port 0 became an ephemeral port, in network order
    expect(a.port).toBeLessThanOrEqual(65535);
  });

  test("a bound port reads back identically (byte order) and connect/getpeername agree", async () => {
    using listener = createListenSocket({ hostname: "127.0.0.1", port: 0 });
    const la = localAddress(listener.value);
    expect(la.address).toBe("127.0.0.1");
    const { fd } = startConnect("127.0.0.1", la.port);
    using client = fd;
    const accepted = await acceptOne(listener.value);
    using server = new Fd(accepted);
    expect(peerAddress(client.value)).toEqual(la);
    const ca = localAddress(client.value);
    expect(peerAddress(server.value)).toEqual(ca);
    expect(localAddress(server.value)).toEqual(la);
  });

  test("IPv6 loopback: listener, client and accepted socket agree on ::1", async () => {
    using listener = createListenSocket({ hostname: "::1", port: 0 });
    const la = localAddress(listener.value);
    expect(la).toMatchObject({ family: 6, address: "::1" });
    const { fd } = startConnect("::1", la.port);
    using client = fd;
    using server = new Fd(await acceptOne(listener.value));
    expect(peerAddress(client.value)).toEqual(la);
    expect(peerAddress(server.value)).toEqual(localAddress(client.value));
    expect(peerAddress(server.value).address).toBe("::1");
  });

  test("an IPv4 client of a dual-stack :: listener shows up as ::ffff:127.0.0.1", async () => {
    using listener = createListenSocket({ hostname: "::", port: 0, ipv6Only: false });
    const port = localAddress(listener.value).port;
    const { fd } = startConnect("127.0.0.1", port);
    using client = fd;
    using server = new Fd(await acceptOne(listener.value));
    const peer = peerAddress(server.value);
    expect(peer.family).toBe(6);
    expect(peer.address).toBe("::ffff:127.0.0.1");
    expect(peer.port).toBe(localAddress(client.value).port);
    expect(localAddress(server.value).address).toBe("::ffff:127.0.0.1");
  });

  test("binding a v4-mapped address on a dual-stack socket reads back as ::ffff:127.0.0.1", () => {
    using s = createListenSocket({ hostname: "::ffff:127.0.0.1", port: 0, ipv6Only: false });
    expect(localAddress(s.value)).toMatchObject({ family: 6, address: "::ffff:127.0.0.1" });
  });
});

/** accept4 on a non-blocking listener, retrying EAGAIN for up to 5 s. */
async function acceptOne(listenFd: number): Promise<number> {
  const deadline = performance.now() + 5000;
  for (;;) {
    const fd = rc(libc.accept4(listenFd, null, null, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (fd >= 0) return fd;
    if (fd !== -Errno.EAGAIN) throw new Error(`accept4: errno ${-fd}`);
    if (performance.now() > deadline) throw new Error("accept4: nothing to accept within 5 s");
    await Bun.sleep(2);
  }
}
