// Correctness smoke check of the baseline servers (not a benchmark): a benchmark of a
// server that answers wrongly is worthless, so run this after changing a baseline.
//
//   bun bench/baselines/check.ts [--servers bunpoll,bun-listen,bun-listen-naive,node-net,c-epoll]
//
// Checks, per server and protocol: echo returns the same bytes (large and many small
// writes); framed answers ECHO/PING/unknown types, with frames split one byte per write
// and many frames per write, HELLO with WELCOME, and BROADCAST (one and several per
// write) to every other connection, HELLO'd or not (HELLO is optional, docs/PROTOCOL.md).
// bunpoll itself is checked too: the baselines must answer what the benchmarks send the
// way bunpoll does.

import type { Socket } from "bun";
import {
  HEADER,
  T_BROADCAST,
  T_BROADCAST_ACK,
  T_BROADCAST_MSG,
  T_ECHO,
  T_ECHO_REPLY,
  T_ERROR,
  T_HELLO,
  T_PING,
  T_WELCOME,
  T_PONG,
  frame,
} from "../lib/framed.ts";
import { ensureCServer, waitForPort } from "../lib/servers.ts";

const root = new URL("../..", import.meta.url).pathname;
const bun = process.execPath;

/** A test client that collects everything it receives. */
class Client {
  private got: number[] = [];
  private waiters: Array<() => void> = [];
  sock!: Socket<undefined>;

  static async connect(port: number): Promise<Client> {
    const c = new Client();
    c.sock = await Bun.connect({
      hostname: "127.0.0.1",
      port,
      socket: {
        data: (_s, buf) => {
          for (const b of buf) c.got.push(b);
          for (const w of c.waiters.splice(0)) w();
        },
      },
    });
    c.sock.setNoDelay(true);
    return c;
  }

  /** Write everything, retrying on backpressure. */
  async write(b: Uint8Array): Promise<void> {
    let off = 0;
    while (off < b.length) {
      const n = this.sock.write(b, off, b.length - off);
      if (n > 0) off += n;
      else await Bun.sleep(1);
    }
  }

  /** Wait until n bytes are buffered, then take them. */
  async read(n: number, timeoutMs = 5000): Promise<Uint8Array> {
    const deadline = Date.now() + timeoutMs;
    while (this.got.length < n) {
      if (Date.now() > deadline) throw new Error(`timeout: wanted ${n} bytes, have ${this.got.length}`);
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 50);
      });
    }
    return Uint8Array.from(this.got.splice(0, n));
  }

  async readFrame(): Promise<{ type: number; body: Uint8Array }> {
    const h = await this.read(HEADER);
    const len = (h[2]! << 8) | h[3]!;
    return { type: (h[0]! << 8) | h[1]!, body: await this.read(len) };
  }

  close(): void {
    this.sock.end();
  }
}

function eq(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

function assert(cond: boolean, msg: string): void {
  if (!cond) throw new Error(msg);
}

function randomBytes(n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (Math.random() * 256) | 0;
  return b;
}

async function checkEcho(port: number): Promise<void> {
  const c = await Client.connect(port);
  const big = randomBytes(1 << 20); // larger than socket buffers: exercises partial writes
  const reading = c.read(big.length, 15000);
  await c.write(big);
  assert(eq(await reading, big), "echo: 1 MiB came back different");
  for (let i = 0; i < 200; i++) {
    const b = randomBytes(1 + (i % 97));
    await c.write(b);
    assert(eq(await c.read(b.length), b), "echo: small write came back different");
  }
  c.close();
}

const u32 = (b: Uint8Array, off = 0): number => new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(off);

async function hello(c: Client): Promise<number> {
  await c.write(frame(T_HELLO));
  const f = await c.readFrame();
  assert(f.type === T_WELCOME && f.body.length === 6, `HELLO: bad WELCOME (${f.type}, ${f.body.length} B)`);
  assert(f.body[4] === 0 && f.body[5] === 1, "HELLO: WELCOME version must be 1");
  const id = u32(f.body);
  assert(id >= 1, "HELLO: client id must be >= 1");
  return id;
}

async function checkFramed(port: number): Promise<void> {
  const c = await Client.connect(port);
  // ECHO and PING.
  const body = randomBytes(100);
  await c.write(frame(T_ECHO, body));
  let f = await c.readFrame();
  assert(f.type === T_ECHO_REPLY && eq(f.body, body), "framed: bad ECHO_REPLY");
  await c.write(frame(T_PING, body.subarray(0, 8)));
  f = await c.readFrame();
  assert(f.type === T_PONG && eq(f.body, body.subarray(0, 8)), "framed: bad PONG");
  // Empty body.
  await c.write(frame(T_ECHO));
  f = await c.readFrame();
  assert(f.type === T_ECHO_REPLY && f.body.length === 0, "framed: bad empty ECHO_REPLY");
  // Unknown type.
  await c.write(frame(0x1234, body.subarray(0, 3)));
  f = await c.readFrame();
  const msg = new TextDecoder().decode(f.body.subarray(2));
  assert(
    f.type === T_ERROR && f.body[0] === 0 && f.body[1] === 1 && msg === "unknown message type",
    `framed: bad error reply (${f.type}, "${msg}")`,
  );
  // One byte per write: every possible split point of header and body.
  const split = frame(T_ECHO, randomBytes(10));
  for (let i = 0; i < split.length; i++) {
    await c.write(split.subarray(i, i + 1));
    await Bun.sleep(2); // let each byte arrive as its own read
  }
  f = await c.readFrame();
  assert(f.type === T_ECHO_REPLY && eq(f.body, split.subarray(HEADER)), "framed: split frame answered wrong");
  // Many frames in one write, including a maximal one.
  const bodies = [randomBytes(65535), ...Array.from({ length: 500 }, (_, i) => randomBytes(i % 70))];
  const all = bodies.map((b) => frame(T_ECHO, b));
  const joined = new Uint8Array(all.reduce((n, a) => n + a.length, 0));
  let off = 0;
  for (const a of all) {
    joined.set(a, off);
    off += a.length;
  }
  await c.write(joined);
  for (const b of bodies) {
    f = await c.readFrame();
    assert(f.type === T_ECHO_REPLY && eq(f.body, b), "framed: batched frames answered wrong");
  }
  // HELLO, then broadcasts to one HELLO'd and one silent client.
  const id = await hello(c);
  const others = [await Client.connect(port), await Client.connect(port)];
  const otherId = await hello(others[0]!);
  assert(otherId !== id, "HELLO: two clients got the same id");
  await Bun.sleep(50); // let the server register the silent one
  const payloads = [randomBytes(20), randomBytes(0), randomBytes(64), randomBytes(300)];
  await c.write(frame(T_BROADCAST, payloads[0]));
  // Several in one write: the baselines batch them per read.
  await c.write(Uint8Array.from(payloads.slice(1).flatMap((p) => [...frame(T_BROADCAST, p)])));
  for (let k = 0; k < payloads.length; k++) {
    f = await c.readFrame();
    assert(f.type === T_BROADCAST_ACK && f.body.length === 4 && u32(f.body) === 2, `broadcast: bad ACK (${f.type}, ${u32(f.body)})`);
  }
  for (const o of others) {
    for (const p of payloads) {
      const m = await o.readFrame();
      assert(m.type === T_BROADCAST_MSG && eq(m.body.subarray(4), p), "broadcast: bad BROADCAST_MSG");
      assert(u32(m.body) === id, `broadcast: from_id ${u32(m.body)}, sender is ${id}`);
    }
    o.close();
  }
  c.close();
}

const table: Record<string, (port: number, protocol: string) => string[] | null> = {
  bunpoll: (port, p) => [bun, `${root}src/server.ts`, "--protocol", p, "--host", "127.0.0.1", "--port", `${port}`],
  "bun-listen": (port, p) => [bun, `${root}bench/baselines/bun-listen.ts`, "--port", `${port}`, "--protocol", p],
  "bun-listen-naive": (port, p) => [
    bun, `${root}bench/baselines/bun-listen.ts`, "--port", `${port}`, "--protocol", p, "--naive-broadcast",
  ],
  "node-net": (port, p) => [bun, `${root}bench/baselines/node-net.ts`, "--port", `${port}`, "--protocol", p],
  "c-epoll": (port, p) => {
    const exe = ensureCServer(root);
    return exe ? [exe, "--port", `${port}`, "--protocol", p] : null;
  },
};

let names = Object.keys(table);
const i = process.argv.indexOf("--servers");
if (i > 0 && process.argv[i + 1]) names = process.argv[i + 1]!.split(",");

let port = 23000 + (process.pid % 1000);
let failures = 0;
let passes = 0;
for (const name of names) {
  for (const protocol of ["echo", "framed"]) {
    const cmd = table[name]?.(++port, protocol);
    if (!cmd) {
      console.log(`skip ${name} ${protocol}`);
      continue;
    }
    const proc = Bun.spawn(cmd, { stdout: "ignore", stderr: "ignore" });
    try {
      if (!(await waitForPort(port, 10000, proc))) throw new Error("server did not start");
      if (protocol === "echo") await checkEcho(port);
      else await checkFramed(port);
      console.log(`ok   ${name} ${protocol}`);
      passes++;
    } catch (e) {
      console.log(`FAIL ${name} ${protocol}: ${(e as Error).message}`);
      failures++;
    } finally {
      proc.kill("SIGKILL");
      await proc.exited;
    }
  }
}
console.log(`${passes} passed, ${failures} failed`);
process.exit(failures ? 1 : 0);
