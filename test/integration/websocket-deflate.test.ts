// permessage-deflate (RFC 7692) against a client library nobody here wrote (Python's websockets),
// arranged like Autobahn|Testsuite's sections 12 (compressed echo of many payloads) and 13
// (each negotiation parameter): every offer below is made to the CLI's /ws/echo (shared
// compression, no context takeover either way) and to serve() with dedicated compressors (each
// side keeps its window). The client checks what was agreed and that every message comes back
// intact; both sides inflate what the other deflated, with and without kept windows.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { serve, type HttpServer } from "../../src/serve.ts";
import { inflateRawSync, constants } from "node:zlib";
import { killAll, run, startServer, type ServerProcess } from "../util/process.ts";
import type net from "node:net";
import { connect, waitFor, withTimeout } from "../util/tcp.ts";

const dir = mkdtempSync(join(tmpdir(), "bunpoll-wsz-"));
let cli: ServerProcess;
let dedicated: HttpServer;
let dedicated3k: HttpServer;

beforeAll(async () => {
  cli = await startServer(["--protocol", "http"]);
  const echo = {
    fetch: (req: any, s: any) => (s.upgrade(req) ? undefined : new Response("upgrade only", { status: 400 })),
    reactorOptions: { log: () => {} },
  };
  dedicated = serve({
    port: 0, ...echo,
    websocket: { perMessageDeflate: { compress: "dedicated", decompress: "dedicated" }, maxPayloadLength: 1 << 20, message: (ws, m) => void ws.send(m) },
  });
  // On the same reactor: two reactors in one thread would each sleep in epoll_wait while the
  // other has work (docs/ARCHITECTURE.md, "One reactor per thread").
  dedicated3k = serve({
    port: 0, ...echo, reactor: dedicated.reactor,
    websocket: { perMessageDeflate: { compress: "3KB", decompress: "shared" }, maxPayloadLength: 1 << 20, message: (ws, m) => void ws.send(m) },
  });
  // Autobahn 12.x's idea: payloads of many sizes, compressible and not, text and binary, each
  // sent several times in a row (a kept window makes the repeats tiny).
  writeFileSync(join(dir, "deflate.py"), `
import asyncio, json, os, random, sys, websockets
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

async def main():
    url, offer = sys.argv[1], json.loads(sys.argv[2])
    factory = ClientPerMessageDeflateFactory(**offer)
    async with websockets.connect(url, extensions=[factory], compression=None, max_size=None) as ws:
        agreed = {}
        for e in ws.extensions:
            agreed = {
                "server_no_context_takeover": e.remote_no_context_takeover,
                "client_no_context_takeover": e.local_no_context_takeover,
                "server_max_window_bits": e.remote_max_window_bits,
            }
        rnd = random.Random(7)
        sent = 0
        for size in [0, 16, 64, 100, 1000, 4096, 16384, 65536, 262144]:
            words = " ".join(rnd.choice(["bunpoll", "epoll", "deflate", "window", "frame"]) for _ in range(size // 6 + 1))[:size]
            for payload in [words, os.urandom(size), ("ab" * size)[:size].encode()]:
                for _ in range(3):
                    await ws.send(payload)
                    back = await ws.recv()
                    assert back == payload, (size, type(payload), len(back))
                    sent += 1
        print(json.dumps({"agreed": agreed, "echoed": sent}))

asyncio.run(main())
`);
});

afterAll(async () => {
  await dedicated3k?.stop({ graceful: false }); // its listener (the reactor is dedicated's)
  await dedicated?.stop({ graceful: false });
  await killAll();
  rmSync(dir, { recursive: true, force: true });
});

async function session(port: number, path: string, offer: Record<string, unknown>) {
  const r = await run(["/usr/bin/python3", join(dir, "deflate.py"), `ws://127.0.0.1:${port}${path}`, JSON.stringify(offer)], 60_000);
  expect(r.stderr).toBe("");
  expect(r.code).toBe(0);
  return JSON.parse(r.stdout.trim()) as { agreed: Record<string, unknown>; echoed: number };
}

const ECHOED = 9 * 3 * 3;

describe("13: each offer against shared compression (the CLI's /ws/echo)", () => {
  // Shared compression answers every offer with no context takeover both ways.
  const cases: [string, Record<string, unknown>, Record<string, unknown>][] = [
    ["13.1 the default offer (client_max_window_bits)", {}, { server_no_context_takeover: true, client_no_context_takeover: true, server_max_window_bits: 15 }],
    ["13.2 client_no_context_takeover offered", { client_no_context_takeover: true }, { server_no_context_takeover: true, client_no_context_takeover: true, server_max_window_bits: 15 }],
    ["13.3 server_no_context_takeover asked", { server_no_context_takeover: true }, { server_no_context_takeover: true, client_no_context_takeover: true, server_max_window_bits: 15 }],
    ["13.4 server_max_window_bits=9", { server_max_window_bits: 9 }, { server_no_context_takeover: true, client_no_context_takeover: true, server_max_window_bits: 9 }],
    ["13.5 server_max_window_bits=12, client_max_window_bits=10", { server_max_window_bits: 12, client_max_window_bits: 10 }, { server_no_context_takeover: true, client_no_context_takeover: true, server_max_window_bits: 12 }],
  ];
  for (const [name, offer, agreed] of cases) {
    test(name, async () => {
      const r = await session(cli.port, "/ws/echo", offer);
      expect(r.agreed).toEqual(agreed);
      expect(r.echoed).toBe(ECHOED);
    }, 60_000);
  }

  test("13.6 server_max_window_bits=8 is declined (zlib cannot keep to 8): no extension, messages still echoed", async () => {
    // Python's client refuses a server that drops an extension it insisted on? No: the server
    // answering without the extension means none is in use.
    const r = await session(cli.port, "/ws/echo", { server_max_window_bits: 8 });
    expect(r.agreed).toEqual({});
    expect(r.echoed).toBe(ECHOED);
  }, 60_000);
});

describe("13: each offer against dedicated compressors (serve() with context takeover)", () => {
  const cases: [string, Record<string, unknown>, Record<string, unknown>][] = [
    ["13.7 the default offer: both sides keep their windows", {}, { server_no_context_takeover: false, client_no_context_takeover: false, server_max_window_bits: 15 }],
    ["13.8 server_no_context_takeover asked: the server resets, the client keeps", { server_no_context_takeover: true }, { server_no_context_takeover: true, client_no_context_takeover: false, server_max_window_bits: 15 }],
    ["13.9 client_no_context_takeover offered: the client resets, the server keeps", { client_no_context_takeover: true }, { server_no_context_takeover: false, client_no_context_takeover: true, server_max_window_bits: 15 }],
    ["13.10 server_max_window_bits=10 with takeover", { server_max_window_bits: 10 }, { server_no_context_takeover: false, client_no_context_takeover: false, server_max_window_bits: 10 }],
  ];
  for (const [name, offer, agreed] of cases) {
    test(name, async () => {
      const r = await session(dedicated.port, "/", offer);
      expect(r.agreed).toEqual(agreed);
      expect(r.echoed).toBe(ECHOED);
    }, 60_000);
  }

  test("13.11 a 3 KB compressor (9-bit window, memLevel 1) says its window; the client is asked not to keep one", async () => {
    const r = await session(dedicated3k.port, "/", {});
    expect(r.agreed).toEqual({ server_no_context_takeover: false, client_no_context_takeover: true, server_max_window_bits: 9 });
    expect(r.echoed).toBe(ECHOED);
  }, 60_000);
});

/** Buffers a socket's bytes; take(n) resolves with exactly the next n. */
function reader(sock: net.Socket) {
  let buf = Buffer.alloc(0);
  let wake: (() => void) | null = null;
  sock.on("data", (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    wake?.();
  });
  return {
    async take(n: number): Promise<Buffer> {
      await withTimeout((async () => {
        while (buf.length < n) await new Promise<void>((r) => (wake = r));
      })(), 5000, `read ${n} bytes`);
      const out = buf.subarray(0, n);
      buf = buf.subarray(n);
      return out;
    },
    async head(): Promise<string> {
      let h = "";
      while (!h.endsWith("\r\n\r\n")) h += (await this.take(1)).toString("latin1");
      return h;
    },
  };
}

describe("12: a publish is compressed once for every subscriber with shared compression", () => {
  test("a subscriber that agreed shared compression gets RSV1 frames that inflate to the message; one without, plain frames", async () => {
    const pub = serve({
      port: 0, reactor: dedicated.reactor,
      fetch: (req: any, s: any) => (s.upgrade(req) ? undefined : new Response("upgrade only", { status: 400 })),
      websocket: { perMessageDeflate: true, open: (ws) => ws.subscribe("news") },
    });
    try {
      const open = async (offer: string) => {
        const sock = await connect(pub.port);
        const r = reader(sock);
        sock.write(`GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n${offer}\r\n`);
        return { sock, r, head: await r.head() };
      };
      const z = await open("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n");
      const plain = await open("");
      expect(z.head.toLowerCase()).toContain("sec-websocket-extensions: permessage-deflate; server_no_context_takeover");
      expect(plain.head.toLowerCase()).not.toContain("sec-websocket-extensions");
      await waitFor(() => pub.subscriberCount("news") === 2, 5000, "both subscribed");
      const text = "headline: ".repeat(1000); // 10,000 bytes, compressible
      for (let k = 0; k < 2; k++) expect(pub.publish("news", text)).toBe(2);
      for (let k = 0; k < 2; k++) {
        const h = await z.r.take(2);
        expect(h[0]).toBe(0x80 | 0x40 | 1); // FIN, RSV1, text
        expect(h[1]).toBeLessThan(126); // 10,000 bytes in under 126: compressed
        const body = await z.r.take(h[1]!);
        expect(inflateRawSync(Buffer.concat([body, Buffer.from([0, 0, 0xff, 0xff])]), { finishFlush: constants.Z_SYNC_FLUSH }).toString()).toBe(text);
        const p = await plain.r.take(4);
        expect(p[0]).toBe(0x80 | 1);
        expect(p[1]).toBe(126);
        expect((await plain.r.take(p.readUInt16BE(2))).toString()).toBe(text);
      }
      z.sock.destroy();
      plain.sock.destroy();
    } finally {
      await pub.stop({ graceful: false });
    }
  });
});
