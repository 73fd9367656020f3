// WebSocket over the HTTP server: the built-in /ws/echo against a client library nobody here
// wrote (Python's websockets, from Debian) and against raw frames on a socket (the protocol
// errors a conformant server answers with a close code), and serve({ websocket }) in process.

import { afterAll, afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type net from "node:net";
import { serve, type HttpServer } from "../../src/serve.ts";
import { killAll, run, startServer, type ServerProcess } from "../util/process.ts";
import { connect, readToEnd, sleep, waitFor } from "../util/tcp.ts";

const dirs: string[] = [];
const servers: HttpServer[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.stop({ graceful: false });
});
afterAll(async () => {
  await killAll();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const enc = new TextEncoder();

/** A masked client frame. */
function frame(opcode: number, payload: Uint8Array | string, fin = true, masked = true): Uint8Array {
  const p = typeof payload === "string" ? enc.encode(payload) : payload;
  const mask = [0x11, 0x22, 0x33, 0x44];
  const ext = p.length < 126 ? 0 : 2;
  const out = new Uint8Array(2 + ext + (masked ? 4 : 0) + p.length);
  out[0] = (fin ? 0x80 : 0) | opcode;
  out[1] = (masked ? 0x80 : 0) | (ext === 0 ? p.length : 126);
  if (ext === 2) new DataView(out.buffer).setUint16(2, p.length);
  let at = 2 + ext;
  if (masked) {
    out.set(mask, at);
    at += 4;
  }
  for (let i = 0; i < p.length; i++) out[at + i] = p[i]! ^ (masked ? mask[i & 3]! : 0);
  return out;
}

const HANDSHAKE = (path: string, port: number) =>
  `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`;

/** Server frames after the 101 head: [opcode, payload] each. */
function serverFrames(all: Buffer): { head: string; frames: [number, Buffer][] } {
  const end = all.indexOf("\r\n\r\n");
  const head = all.subarray(0, end).toString("latin1");
  const frames: [number, Buffer][] = [];
  let p = end + 4;
  while (p + 2 <= all.length) {
    const op = all[p]! & 0x0f;
    let n = all[p + 1]! & 0x7f;
    let h = 2;
    if (n === 126) {
      n = all.readUInt16BE(p + 2);
      h = 4;
    } else if (n === 127) {
      n = Number(all.readBigUInt64BE(p + 2));
      h = 10;
    }
    frames.push([op, all.subarray(p + h, p + h + n)]);
    p += h + n;
  }
  return { head, frames };
}

/** Opens a raw WebSocket: handshake plus `after` in one write; returns everything until the server closes TCP. */
async function rawSession(port: number, after: Uint8Array[], path = "/ws/echo"): Promise<{ head: string; frames: [number, Buffer][]; ended: boolean }> {
  const s: net.Socket = await connect(port, { allowHalfOpen: true });
  s.write(Buffer.concat([Buffer.from(HANDSHAKE(path, port)), ...after.map((a) => Buffer.from(a))]));
  const { data, ended } = await readToEnd(s, 5000);
  s.destroy();
  return { ...serverFrames(data), ended };
}

const closeCode = (p: Buffer) => (p.length >= 2 ? p.readUInt16BE(0) : 1005);

describe("/ws/echo of the CLI's HTTP app", () => {
  let server: ServerProcess;
  test("start", async () => {
    server = await startServer(["--protocol", "http", "--port", "0"]);
  });

  test("Python's websockets client (an implementation nobody here wrote): text, binary, 100 KiB, ping, clean close", async () => {
    const dir = mkdtempSync(join(tmpdir(), "bunpoll-ws-"));
    dirs.push(dir);
    writeFileSync(join(dir, "client.py"), `
import asyncio, sys, websockets
async def main():
    async with websockets.connect(sys.argv[1], compression=None, max_size=None) as ws:
        await ws.send("héllo")
        assert await ws.recv() == "héllo"
        await ws.send(bytes(range(256)))
        assert await ws.recv() == bytes(range(256))
        big = "x" * 100_000
        await ws.send(big)
        assert await ws.recv() == big
        pong = await ws.ping(b"are you there")
        await asyncio.wait_for(pong, 5)
    print("closed", ws.close_code)
asyncio.run(main())
`);
    const r = await run(["/usr/bin/python3", join(dir, "client.py"), `ws://127.0.0.1:${server.port}/ws/echo`], 20_000);
    expect(r.stderr).toBe("");
    expect(r.stdout.trim()).toBe("closed 1000");
    expect(r.code).toBe(0);
  }, 30_000);

  test("permessage-deflate with Python's websockets: negotiated, compressed both ways, 1 MiB of text intact", async () => {
    const dir = mkdtempSync(join(tmpdir(), "bunpoll-ws-"));
    dirs.push(dir);
    writeFileSync(join(dir, "deflate.py"), `
import asyncio, sys, websockets
async def main():
    async with websockets.connect(sys.argv[1], compression="deflate", max_size=None) as ws:
        ext = [type(e).__name__ for e in ws.extensions]
        big = "bunpoll " * 131072
        await ws.send(big)
        assert await ws.recv() == big
        await ws.send(b"\\x00" * 5000)
        assert await ws.recv() == b"\\x00" * 5000
        print("extensions", ext)
asyncio.run(main())
`);
    const r = await run(["/usr/bin/python3", join(dir, "deflate.py"), `ws://127.0.0.1:${server.port}/ws/echo`], 20_000);
    expect(r.stderr).toBe("");
    expect(r.stdout.trim()).toBe("extensions ['PerMessageDeflate']");
  }, 30_000);

  test("a compressed message that inflates past maxPayloadLength (a zip bomb) closes with 1009, memory bounded", async () => {
    const { deflateRawSync } = await import("node:zlib");
    const srv = serve({
      port: 0,
      reactorOptions: { log: () => {} },
      fetch: (req, s) => (s.upgrade(req) ? undefined : new Response("no", { status: 400 })),
      websocket: { perMessageDeflate: true, maxPayloadLength: 64 * 1024, message: (ws, m) => void ws.send(m) },
    });
    servers.push(srv);
    const bomb = deflateRawSync(Buffer.alloc(50 * 1024 * 1024), { finishFlush: 2 }); // 50 MiB of zeros: ~50 KiB deflated
    const payload = bomb.subarray(0, bomb.length - 4);
    const s = await connect(srv.port, { allowHalfOpen: true });
    s.write(HANDSHAKE("/", srv.port).replace("\r\n\r\n", "\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n"));
    const f = frame(2, payload);
    f[0] = 0x80 | 0x40 | 2; // FIN, RSV1 (compressed), binary
    s.write(f);
    const { data } = await readToEnd(s, 10_000);
    const { head, frames } = serverFrames(data);
    expect(head.toLowerCase()).toContain("sec-websocket-extensions: permessage-deflate");
    expect(closeCode(frames[frames.length - 1]![1])).toBe(1009);
  });

  test("the handshake: 101 with RFC 6455's accept value; first frames in the same write as the request are not lost", async () => {
    const { head, frames } = await rawSession(server.port, [frame(1, "same write"), frame(8, new Uint8Array([0x03, 0xe8]))]);
    expect(head).toContain("HTTP/1.1 101 Switching Protocols");
    expect(head.toLowerCase()).toContain("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo=");
    expect(frames.map(([op, p]) => [op, op === 8 ? closeCode(p) : p.toString()])).toEqual([[1, "same write"], [8, 1000]]);
  });

  test("fragments with a ping between them: the ping answered at once, the message echoed whole", async () => {
    const { frames } = await rawSession(server.port, [frame(1, "frag", false), frame(9, "p"), frame(0, "ments"), frame(8, new Uint8Array([0x03, 0xe8]))]);
    expect(frames.map(([op, p]) => [op, op === 8 ? closeCode(p) : p.toString()])).toEqual([[10, "p"], [1, "fragments"], [8, 1000]]);
  });

  test("protocol errors close with the code that names them, then TCP closes", async () => {
    const cases: [Uint8Array, number][] = [
      [frame(1, "no mask", true, false), 1002],
      [frame(1, new Uint8Array([0xff, 0xfe])), 1007],
      [frame(3, ""), 1002],
      [frame(0, "continuation of nothing"), 1002],
      [frame(9, "x".repeat(126)), 1002],
      [frame(8, new Uint8Array([0x03, 0xed])), 1002], // close code 1005 may not be sent
    ];
    for (const [bytes, code] of cases) {
      const { frames, ended } = await rawSession(server.port, [bytes]);
      const last = frames[frames.length - 1]!;
      expect(last[0]).toBe(8);
      expect(closeCode(last[1])).toBe(code);
      expect(ended).toBe(true);
    }
  });

  test("a bad Upgrade gets a status, not a hang: 426 with Sec-WebSocket-Version: 13, 400 without a key", async () => {
    const v8 = await run(["curl", "-s", "-i", "-H", "Upgrade: websocket", "-H", "Connection: Upgrade", "-H", "Sec-WebSocket-Version: 8", "-H", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", `http://127.0.0.1:${server.port}/ws/echo`]);
    expect(v8.stdout).toContain("HTTP/1.1 426");
    expect(v8.stdout.toLowerCase()).toContain("sec-websocket-version: 13");
    const noKey = await run(["curl", "-s", "-i", "-H", "Upgrade: websocket", "-H", "Connection: Upgrade", "-H", "Sec-WebSocket-Version: 13", `http://127.0.0.1:${server.port}/ws/echo`]);
    expect(noKey.stdout).toContain("HTTP/1.1 400");
    expect(noKey.stdout).toContain("Sec-WebSocket-Key");
  });

  test("--ws-origin: a handshake from another Origin gets 403; an allowed one is taken", async () => {
    const srv = await startServer(["--protocol", "http", "--port", "0", "--ws-origin", "https://chat.example"]);
    try {
      const hs = (origin: string) => HANDSHAKE("/ws/chat", srv.port).replace("\r\n\r\n", `\r\nOrigin: ${origin}\r\n\r\n`);
      const bad = await connect(srv.port, { allowHalfOpen: true });
      bad.write(hs("https://evil.example"));
      const first = await new Promise<string>((r) => bad.once("data", (d: Buffer) => r(d.toString("latin1"))));
      expect(first.startsWith("HTTP/1.1 403")).toBe(true);
      bad.destroy();
      const good = await connect(srv.port, { allowHalfOpen: true });
      good.write(hs("https://chat.example"));
      const ok = await new Promise<string>((r) => good.once("data", (d: Buffer) => r(d.toString("latin1"))));
      expect(ok.startsWith("HTTP/1.1 101")).toBe(true);
      good.destroy();
    } finally {
      await srv.stop();
    }
  });

  test("SIGTERM: an open WebSocket is told 1001 (going away), then the server exits 0", async () => {
    const srv = await startServer(["--protocol", "http", "--port", "0"]);
    const ws = new WebSocket(`ws://127.0.0.1:${srv.port}/ws/echo`);
    await new Promise<void>((r) => (ws.onopen = () => r()));
    const closed = new Promise<number>((r) => (ws.onclose = (e) => r(e.code)));
    srv.proc.kill("SIGTERM");
    expect(await closed).toBe(1001);
    expect(await srv.exited).toBe(0);
  });

  test("stop", async () => {
    expect(await server.stop()).toBe(0);
  });
});

describe("serve({ websocket }) in Bun.serve's shape", () => {
  test("upgrade with data; open, message, close; send() returns the bytes sent, SendStatus.Dropped once closed", async () => {
    const log: string[] = [];
    let sentAfterClose = 99;
    const s = serve({
      port: 0,
      reactorOptions: { log: () => {} },
      fetch(req, server) {
        if (server.upgrade(req, { data: { user: new URL(req.url).searchParams.get("u") } })) return undefined;
        return new Response("not a websocket", { status: 400 });
      },
      websocket: {
        open: (ws) => void log.push(`open ${(ws.data as { user: string }).user}`),
        message(ws, m) {
          log.push(`message ${m}`);
          log.push(`sent ${ws.send(`echo ${m}`)}`);
        },
        close(ws, code) {
          log.push(`close ${code}`);
          sentAfterClose = ws.send("late");
        },
      },
    });
    servers.push(s);
    const ws = new WebSocket(`ws://127.0.0.1:${s.port}/?u=ana`);
    ws.onopen = () => ws.send("hi");
    const got: string[] = [];
    ws.onmessage = (e) => {
      got.push(String(e.data));
      ws.close(1000);
    };
    await new Promise<void>((r) => (ws.onclose = () => r()));
    expect(got).toEqual(["echo hi"]);
    expect(log.slice(0, 3)).toEqual(["open ana", "message hi", `sent ${2 + "echo hi".length}`]);
    await waitFor(() => log.some((l) => l.startsWith("close")), 5000, "close");
    expect(log).toContain("close 1000");
    expect(sentAfterClose).toBe(0);
  });

  test("an async message handler pauses reading: messages are handled one at a time, none lost", async () => {
    let inFlight = 0, maxInFlight = 0;
    const seen: string[] = [];
    const s = serve({
      port: 0,
      reactorOptions: { log: () => {} },
      fetch: (req, server) => (server.upgrade(req) ? undefined : new Response("no", { status: 400 })),
      websocket: {
        async message(ws, m) {
          inFlight++;
          maxInFlight = Math.max(maxInFlight, inFlight);
          await sleep(10);
          seen.push(String(m));
          inFlight--;
          if (seen.length === 20) ws.close(1000, "done");
        },
      },
    });
    servers.push(s);
    const ws = new WebSocket(`ws://127.0.0.1:${s.port}/`);
    await new Promise<void>((r) => (ws.onopen = () => r()));
    for (let i = 0; i < 20; i++) ws.send(`m${i}`);
    await new Promise<void>((r) => (ws.onclose = () => r()));
    expect(seen).toEqual(Array.from({ length: 20 }, (_, i) => `m${i}`));
    expect(maxInFlight).toBe(1);
  });

  test("topics: subscribe, server.publish to every subscriber, ws.publish to all but the sender, counts follow closes", async () => {
    const s = serve({
      port: 0,
      reactorOptions: { log: () => {} },
      fetch: (req, server) => (server.upgrade(req) ? undefined : new Response("no", { status: 400 })),
      websocket: {
        open: (ws) => ws.subscribe("room"),
        message(ws, m) {
          const n = ws.publish("room", `relay ${m}`);
          ws.send(`relayed to ${n}`);
        },
      },
    });
    servers.push(s);
    const clients = await Promise.all([0, 1, 2].map(async () => {
      const ws = new WebSocket(`ws://127.0.0.1:${s.port}/`);
      const got: string[] = [];
      ws.onmessage = (e) => void got.push(String(e.data));
      await new Promise<void>((r) => (ws.onopen = () => r()));
      return { ws, got };
    }));
    await waitFor(() => s.subscriberCount("room") === 3, 5000, "three subscribers");
    expect(s.publish("room", "to all")).toBe(3);
    const big = "b".repeat(64 * 1024); // large: one shared copy for every recipient
    expect(s.publish("room", big)).toBe(3);
    clients[0]!.ws.send("hi");
    await waitFor(() => clients[0]!.got.includes("relayed to 2") && clients.slice(1).every((c) => c.got.includes("relay hi")), 5000, "the relay");
    for (const c of clients) expect(c.got.slice(0, 2)).toEqual(["to all", big]);
    expect(clients[0]!.got).not.toContain("relay hi"); // not to the sender
    clients[2]!.ws.close();
    await waitFor(() => s.subscriberCount("room") === 2, 5000, "the closed socket leaves the topic");
    expect(s.publish("room", "after")).toBe(2);
    for (const c of clients.slice(0, 2)) c.ws.close();
  });

  test("idle sockets are pinged; one that answers stays, one that never answers is closed (1001)", async () => {
    const closes: [number, string][] = [];
    const s = serve({
      port: 0,
      reactorOptions: { log: () => {} },
      fetch: (req, server) => (server.upgrade(req) ? undefined : new Response("no", { status: 400 })),
      websocket: { idleTimeout: 0.3, close: (_ws, code, reason) => void closes.push([code, reason]) },
    });
    servers.push(s);
    // A browser-like client answers pings by itself.
    const live = new WebSocket(`ws://127.0.0.1:${s.port}/`);
    let liveClosed = false;
    live.onclose = () => (liveClosed = true);
    await new Promise<void>((r) => (live.onopen = () => r()));
    // A raw client that never reads or answers.
    const mute = await connect(s.port, { allowHalfOpen: true });
    mute.write(HANDSHAKE("/", s.port));
    const { frames } = serverFrames(await readToEnd(mute, 5000).then((x) => x.data));
    expect(frames.map(([op]) => op)).toEqual([9, 8]); // a ping, then a close
    expect(closeCode(frames[1]![1])).toBe(1001);
    expect(closes.some(([code, reason]) => code === 1001 && reason === "no answer to ping")).toBe(true);
    await sleep(400);
    expect(liveClosed).toBe(false); // answered its pings: still open after more than 3 idle periods
    live.close();
  });
});

describe("subprotocols (Sec-WebSocket-Protocol through server.upgrade)", () => {
  test("the handler picks one the client offered: Python's websockets sees it, and so does ws.protocol", async () => {
    const seen: string[] = [];
    const srv = serve({
      port: 0,
      reactorOptions: { log: () => {} },
      fetch(req, s) {
        const offered = (req.headers.get("sec-websocket-protocol") ?? "").split(",").map((p) => p.trim());
        const pick = ["chat.v2", "chat.v1"].find((p) => offered.includes(p));
        return s.upgrade(req, pick === undefined ? {} : { headers: { "Sec-WebSocket-Protocol": pick } }) ? undefined : new Response("no", { status: 400 });
      },
      websocket: { open: (ws) => void seen.push(ws.protocol), message: (ws, m) => void ws.send(m) },
    });
    servers.push(srv);
    const dir = mkdtempSync(join(tmpdir(), "bunpoll-ws-"));
    dirs.push(dir);
    writeFileSync(join(dir, "sub.py"), `
import asyncio, sys, websockets
async def main():
    for offer in (["chat.v1", "x"], ["y"]):
        async with websockets.connect(sys.argv[1], subprotocols=offer) as ws:
            await ws.send("hi")
            assert await ws.recv() == "hi"
            print(ws.subprotocol)
asyncio.run(main())
`);
    const r = await run(["/usr/bin/python3", join(dir, "sub.py"), `ws://127.0.0.1:${srv.port}/`], 20_000);
    expect(r.stderr).toBe("");
    expect(r.stdout.trim().split("\n")).toEqual(["chat.v1", "None"]);
    expect(seen).toEqual(["chat.v1", ""]);
  }, 30_000);

  test("a protocol the client did not offer, a header that would break the 101, or one of the server's own: a TypeError naming it", async () => {
    const errors: string[] = [];
    let headers: Record<string, string> = {};
    const srv = serve({
      port: 0,
      reactorOptions: { log: () => {} },
      fetch: (req, s) => (s.upgrade(req, { headers }) ? undefined : new Response("no", { status: 400 })),
      error(e) {
        errors.push(e.message);
        return new Response("refused", { status: 500 });
      },
      websocket: { message: () => {} },
    });
    servers.push(srv);
    for (const h of [
      { "Sec-WebSocket-Protocol": "admin" },
      { "X-Note": "a\r\nSet-Cookie: x=1" },
      { "Bad Name": "v" },
      { "Sec-WebSocket-Accept": "forged" },
    ] as Record<string, string>[]) {
      headers = h;
      const s = await connect(srv.port);
      // "close" too: the refusal ends the connection, so readToEnd sees EOF.
      s.write(HANDSHAKE("/", srv.port).replace("Connection: Upgrade", "Connection: Upgrade, close").replace("\r\n\r\n", "\r\nSec-WebSocket-Protocol: chat\r\n\r\n"));
      const { data } = await readToEnd(s, 5000);
      expect(data.toString("latin1")).toStartWith("HTTP/1.1 500");
    }
    expect(errors).toEqual([
      'upgrade(): Sec-WebSocket-Protocol "admin" was not offered by the client (it offered "chat")',
      "upgrade(): the value of X-Note holds CR, LF or NUL",
      'upgrade(): the header name "Bad Name" is not a token',
      "upgrade(): Sec-WebSocket-Accept is set by the server",
    ]);
  });
});

describe("backpressureLimit, closeOnBackpressureLimit, publishToSelf", () => {
  const CLOSE = frame(8, new Uint8Array([0x03, 0xe8]));
  function server(websocket: Record<string, unknown>) {
    const srv = serve({
      port: 0,
      reactorOptions: { log: () => {} },
      fetch: (req, s) => (s.upgrade(req) ? undefined : new Response("no", { status: 400 })),
      websocket: websocket as never,
    });
    servers.push(srv);
    return srv;
  }

  test("sends within the limit are queued however large (3 x 1 MiB: each -1, backpressure), none lost, the socket not closed", async () => {
    const results: number[] = [];
    const mib = new Uint8Array(1 << 20).fill(7);
    const srv = server({ open(ws: any) { for (let i = 0; i < 3; i++) results.push(ws.send(mib)); } });
    const { frames } = await rawSession(srv.port, [CLOSE], "/");
    expect(results).toEqual([-1, -1, -1]);
    expect(frames.map(([op, p]) => [op, p.length])).toEqual([[2, 1 << 20], [2, 1 << 20], [2, 1 << 20], [8, 2]]);
  });

  test("past backpressureLimit a send is dropped (0); with closeOnBackpressureLimit the socket closes with 1008", async () => {
    const piece = new Uint8Array(100 * 1024);
    for (const closeOn of [false, true]) {
      const results: number[] = [];
      const srv = server({ backpressureLimit: 64 * 1024, closeOnBackpressureLimit: closeOn, open(ws: any) { results.push(ws.send(piece), ws.send(piece)); } });
      const { frames } = await rawSession(srv.port, [CLOSE], "/");
      expect(results).toEqual([piece.length + 10, 0]); // a 64-bit length: 10 header bytes
      expect(frames.map(([op, p]) => (op === 8 ? closeCode(p) : p.length))).toEqual([piece.length, closeOn ? 1008 : 1000]);
    }
  });

  test("publishToSelf: ws.publish reaches the sender only when it is set", async () => {
    for (const toSelf of [false, true]) {
      const srv = server({ publishToSelf: toSelf, open(ws: any) { ws.subscribe("t"); ws.publish("t", "news"); } });
      const { frames } = await rawSession(srv.port, [CLOSE], "/");
      expect(frames.map(([op, p]) => (op === 8 ? closeCode(p) : p.toString()))).toEqual(toSelf ? ["news", 1000] : [1000]);
    }
  });
});
