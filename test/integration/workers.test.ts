// --workers N against the real server process over loopback: connections spread over the
// workers' SO_REUSEPORT sockets, one hub across threads (SEND_TO between workers, broadcasts
// reaching every client with the right BROADCAST_ACK count, per-sender order under load, the
// line and json protocols too), STATS aggregated with a per-worker breakdown, one connection
// limit for the process, SIGTERM drained in every worker, start-up failure, a crashed worker
// restarted, and fd counts back to baseline.

import { afterAll, describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import net from "node:net";
import { availableParallelism } from "node:os";
import {
  encodeBroadcast,
  encodeEcho,
  encodeHello,
  encodeSendTo,
  FramedStreamDecoder,
  MsgType,
  type Frame,
} from "../../src/protocols/codec/framed.ts";
import { decodeJsonFrames, encodeJsonFrame } from "../../src/protocols/codec/json.ts";
import { killAll, startServer, type ServerProcess } from "../util/process.ts";
import { connect, mapLimit, sleep, unusedPort, waitFor } from "../util/tcp.ts";

afterAll(killAll);

const LANE = 2 ** 26;
const workerOf = (id: number) => Math.floor(id / LANE);

/** A framed client that collects every frame it receives. */
class FramedClient {
  readonly frames: Frame[] = [];
  id = -1;
  private readonly decoder = new FramedStreamDecoder((f) => this.frames.push(f));
  constructor(readonly sock: net.Socket) {
    sock.on("data", (d: Buffer) => this.decoder.push(d));
  }
  static async open(port: number): Promise<FramedClient> {
    const c = new FramedClient(await connect(port));
    c.sock.write(encodeHello());
    await waitFor(() => c.frames.length > 0, 10_000, "WELCOME");
    const w = c.frames.shift()!;
    expect(w.type).toBe(MsgType.WELCOME);
    c.id = new DataView(w.body.buffer, w.body.byteOffset).getUint32(0);
    return c;
  }
  of(type: number): Frame[] {
    return this.frames.filter((f) => f.type === type);
  }
  close(): void {
    this.sock.destroy();
  }
}

const u32 = (b: Uint8Array, at = 0) => new DataView(b.buffer, b.byteOffset).getUint32(at);

/** Opens clients until both workers hold at least `each`. */
async function clientsOnBothWorkers(port: number, each: number): Promise<FramedClient[][]> {
  const by: FramedClient[][] = [[], []];
  for (let i = 0; i < 200 && (by[0]!.length < each || by[1]!.length < each); i++) {
    const c = await FramedClient.open(port);
    by[workerOf(c.id)]!.push(c);
  }
  expect(by[0]!.length).toBeGreaterThanOrEqual(each);
  expect(by[1]!.length).toBeGreaterThanOrEqual(each);
  return by;
}

describe("--workers 2: one hub across threads", () => {
  let server: ServerProcess;
  test("start: one listening line per listener, a worker line", async () => {
    server = await startServer(["--workers", "2", "--listen", "framed:0", "--listen", "line:0"]);
    await waitFor(() => /2 workers \(balance reuseport\)/.test(server.stderr()), 10_000, "the workers line");
    expect(server.stdout().match(/listening on/g)?.length).toBe(2);
  });

  test("SEND_TO between clients on different workers: SEND_ACK, then the DIRECT_MSG", async () => {
    const [w0, w1] = await clientsOnBothWorkers(server.port, 1);
    const a = w0![0]!;
    const b = w1![0]!;
    a.sock.write(encodeSendTo(b.id, "across"));
    b.sock.write(encodeSendTo(a.id, "back"));
    await waitFor(() => a.of(MsgType.SEND_ACK).length === 1 && b.of(MsgType.DIRECT_MSG).length === 1, 5_000, "SEND_ACK and DIRECT_MSG");
    await waitFor(() => a.of(MsgType.DIRECT_MSG).length === 1, 5_000, "the reply");
    const d = b.of(MsgType.DIRECT_MSG)[0]!;
    expect(u32(d.body)).toBe(a.id);
    expect(new TextDecoder().decode(d.body.subarray(4))).toBe("across");
    expect(new TextDecoder().decode(a.of(MsgType.DIRECT_MSG)[0]!.body.subarray(4))).toBe("back");
    // An id on the other worker that is not a client: NO_SUCH_CLIENT, as on one worker.
    a.sock.write(encodeSendTo(b.id + 100_000, "nobody"));
    await waitFor(() => a.of(MsgType.ERROR).length === 1, 5_000, "ERROR");
    for (const c of [...w0!, ...w1!]) c.close();
  });

  test("a broadcast reaches every client on both workers and line clients; BROADCAST_ACK counts them", async () => {
    const [w0, w1] = await clientsOnBothWorkers(server.port, 3);
    const all = [...w0!, ...w1!];
    const lineSock = await connect(Number(server.stdout().match(/listening on [0-9.]+:(\d+) \(line\)/)![1]));
    let lineText = "";
    lineSock.on("data", (d) => (lineText += d.toString()));
    await sleep(200); // the line client joins its worker's hub
    const sender = w0![0]!;
    sender.sock.write(encodeBroadcast("to everyone"));
    await waitFor(() => sender.of(MsgType.BROADCAST_ACK).length === 1, 5_000, "BROADCAST_ACK");
    expect(u32(sender.of(MsgType.BROADCAST_ACK)[0]!.body)).toBe(all.length - 1 + 1);
    for (const c of all) {
      if (c === sender) continue;
      await waitFor(() => c.of(MsgType.BROADCAST_MSG).length === 1, 5_000, `BROADCAST_MSG at ${c.id}`);
      expect(u32(c.of(MsgType.BROADCAST_MSG)[0]!.body)).toBe(sender.id);
    }
    await waitFor(() => lineText.includes(`${sender.id}: to everyone\n`), 5_000, "the line client's copy");
    // A line from the line client reaches framed clients on both workers.
    lineSock.write("hello from line\n");
    for (const c of all) await waitFor(() => c.of(MsgType.BROADCAST_MSG).length === 2 || c === sender && c.of(MsgType.BROADCAST_MSG).length === 1, 5_000, "line broadcast");
    lineSock.destroy();
    for (const c of all) c.close();
  });

  test("per-sender order under load: 3 senders x 2,000 broadcasts, every receiver sees each sender's in order", async () => {
    const [w0, w1] = await clientsOnBothWorkers(server.port, 2);
    const senders = [w0![0]!, w1![0]!, w0![1]!];
    const receivers = [w1![1]!, ...w0!.slice(2), ...w1!.slice(2)];
    const N = 2000;
    for (const s of senders) {
      // Several writes of many frames each: batches per read on the sender's worker.
      for (let part = 0; part < 10; part++) {
        const frames: Uint8Array[] = [];
        for (let i = part * (N / 10); i < (part + 1) * (N / 10); i++) frames.push(encodeBroadcast(`${i}`));
        s.sock.write(Buffer.concat(frames));
      }
    }
    for (const r of receivers) {
      await waitFor(() => r.of(MsgType.BROADCAST_MSG).length >= N * senders.length, 20_000, `${N * senders.length} broadcasts at ${r.id}`);
      const next = new Map<number, number>();
      for (const f of r.of(MsgType.BROADCAST_MSG)) {
        const from = u32(f.body);
        const n = Number(new TextDecoder().decode(f.body.subarray(4)));
        expect(n).toBe(next.get(from) ?? 0);
        next.set(from, n + 1);
      }
      expect([...next.values()]).toEqual(senders.map(() => N));
    }
    for (const c of [...w0!, ...w1!]) c.close();
  }, 30_000);

  test("STATS (json) covers both workers, with a per-worker breakdown", async () => {
    const statsServer = await startServer(["--workers", "2", "--protocol", "json", "--port", "0"]);
    const socks = await Promise.all(Array.from({ length: 12 }, () => connect(statsServer.port)));
    for (const s of socks) s.write(encodeJsonFrame({ type: "echo", content: "x" }));
    await sleep(400); // past a stats publish period
    const chunks: Buffer[] = [];
    socks[0]!.on("data", (d: Buffer) => chunks.push(d));
    socks[0]!.write(encodeJsonFrame({ type: "get_stats" }));
    const reply = () => decodeJsonFrames(Buffer.concat(chunks)).find((m) => (m as { type?: string }).type === "server_stats");
    await waitFor(() => { try { return reply() !== undefined; } catch { return false; } }, 4_000, "server_stats");
    const stats = reply() as Record<string, any>;
    expect(stats.connections_active).toBe(12);
    expect(stats.workers).toHaveLength(2);
    expect(stats.workers[0].connections + stats.workers[1].connections).toBe(12);
    expect(stats.workers[0].connections).toBeGreaterThan(0);
    expect(stats.workers[1].connections).toBeGreaterThan(0);
    expect(stats.messages_in.echo).toBe(12);
    for (const s of socks) s.destroy();
    expect(await statsServer.stop("SIGTERM")).toBe(0);
  }, 15_000);

  test("SIGTERM with N=2 under load: every echo that was sent is answered, exit 0", async () => {
    const clients: FramedClient[] = [];
    for (let i = 0; i < 8; i++) clients.push(await FramedClient.open(server.port));
    expect(new Set(clients.map((c) => workerOf(c.id))).size).toBe(2);
    const PER = 500;
    const batch = Buffer.concat(Array.from({ length: PER }, (_, i) => encodeEcho(`m${i}`)));
    for (const c of clients) c.sock.write(batch);
    const code = server.stop("SIGTERM", 15_000);
    for (const c of clients) await waitFor(() => c.of(MsgType.ECHO_REPLY).length === PER || c.sock.destroyed, 10_000, "replies");
    for (const c of clients) expect(c.of(MsgType.ECHO_REPLY).length).toBe(PER);
    expect(await code).toBe(0);
    expect(server.stderr()).toMatch(/stopping 2 workers/);
    expect(server.stderr()).toMatch(/stopped: .* all flushed/);
  }, 30_000);
});

describe("--workers 2 with HTTP and WebSocket listeners", () => {
  test("/metrics (Prometheus) adds up both workers and lists each; a WebSocket chat message reaches framed clients on both workers", async () => {
    const server = await startServer(["--workers", "2", "--listen", "http:0", "--listen", "framed:0"]);
    const httpPort = server.port;
    // The listening lines come together, but the pipe may hand them over one at a time.
    await waitFor(() => /\(framed\)/.test(server.stdout()), 5_000, "the framed listening line");
    const framedPort = Number(server.stdout().match(/listening on [0-9.]+:(\d+) \(framed\)/)![1]);
    const [w0, w1] = await clientsOnBothWorkers(framedPort, 1);
    const ws = new WebSocket(`ws://127.0.0.1:${httpPort}/ws/chat`);
    await new Promise((r, j) => { ws.onopen = r; ws.onerror = j; });
    ws.send("hello from the page");
    for (const c of [w0![0]!, w1![0]!]) {
      await waitFor(() => c.frames.some((f) => f.type === MsgType.BROADCAST_MSG && new TextDecoder().decode(f.body.subarray(4)).includes("hello from the page")), 5_000, `the chat line at ${c.id}`);
    }
    ws.close();
    await sleep(300); // a stats publish period
    const text = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
    const open = Number(text.match(/^bunpoll_connections_open (\d+)$/m)![1]);
    const perWorker = [...text.matchAll(/^bunpoll_worker_connections_open\{worker="(\d)"\} (\d+)$/gm)].map((m) => Number(m[2]));
    expect(perWorker).toHaveLength(2);
    expect(perWorker[0]! + perWorker[1]!).toBe(open);
    expect(perWorker[0]!).toBeGreaterThan(0);
    expect(perWorker[1]!).toBeGreaterThan(0);
    // By protocol, merged over the workers too: the protocols' bytes add up to the process's.
    for (const dir of ["received", "sent"]) {
      const total = Number(text.match(new RegExp(`^bunpoll_${dir}_bytes_total (\\d+)$`, "m"))![1]);
      const byProtocol = [...text.matchAll(new RegExp(`^bunpoll_protocol_${dir}_bytes_total\\{protocol="(\\w+)"\\} (\\d+)$`, "gm"))];
      expect(byProtocol.map((m) => m[1]).sort()).toEqual(["framed", "http", "ws"]);
      expect(byProtocol.reduce((a, m) => a + Number(m[2]), 0)).toBe(total);
      expect(Number(byProtocol.find((m) => m[1] === "framed")![2])).toBeGreaterThan(0);
    }
    for (const c of [...w0!, ...w1!]) c.close();
    expect(await server.stop("SIGTERM")).toBe(0);
  }, 30_000);
});

describe("--workers 2 --balance acceptor", () => {
  test("connections alternate over the workers; the hub spans them; SIGTERM answers every echo sent", async () => {
    const server = await startServer(["--workers", "2", "--balance", "acceptor", "--port", "0"]);
    const clients: FramedClient[] = [];
    for (let i = 0; i < 8; i++) clients.push(await FramedClient.open(server.port));
    const per = [0, 0];
    for (const c of clients) per[workerOf(c.id)]!++;
    expect(per).toEqual([4, 4]);
    const sender = clients.find((c) => workerOf(c.id) === 0)!;
    const target = clients.find((c) => workerOf(c.id) === 1)!;
    sender.sock.write(encodeBroadcast("all"));
    sender.sock.write(encodeSendTo(target.id, "one"));
    await waitFor(() => sender.of(MsgType.BROADCAST_ACK).length === 1 && sender.of(MsgType.SEND_ACK).length === 1, 5_000, "ACKs");
    expect(u32(sender.of(MsgType.BROADCAST_ACK)[0]!.body)).toBe(7);
    await waitFor(() => target.of(MsgType.DIRECT_MSG).length === 1 && target.of(MsgType.BROADCAST_MSG).length === 1, 5_000, "target's copies");
    const PER = 300;
    const batch = Buffer.concat(Array.from({ length: PER }, (_, i) => encodeEcho(`m${i}`)));
    for (const c of clients) c.sock.write(batch);
    const code = server.stop("SIGTERM", 15_000);
    for (const c of clients) await waitFor(() => c.of(MsgType.ECHO_REPLY).length === PER || c.sock.destroyed, 10_000, "replies");
    for (const c of clients) expect(c.of(MsgType.ECHO_REPLY).length).toBe(PER);
    expect(await code).toBe(0);
  }, 30_000);
});

describe("--workers 2: balance, limits, lifecycle", () => {
  test.each(["reuseport", "acceptor"])("--balance %s: 1,000 connections, each worker gets 40-60%; fds back to baseline after they close", async (mode) => {
    const server = await startServer(["--workers", "2", "--balance", mode, "--port", "0"]);
    await sleep(200);
    const baseline = server.fdCount();
    const perWorker = [0, 0];
    const clients: FramedClient[] = [];
    await mapLimit(1000, 50, async () => {
      const c = await FramedClient.open(server.port);
      perWorker[workerOf(c.id)]!++;
      clients.push(c);
    });
    expect(perWorker[0]! + perWorker[1]!).toBe(1000);
    expect(perWorker[0]!).toBeGreaterThanOrEqual(400);
    expect(perWorker[0]!).toBeLessThanOrEqual(600);
    for (const c of clients) c.close();
    await waitFor(() => server.fdCount() <= baseline, 10_000, `fds back to ${baseline} (now ${server.fdCount()})`);
    expect(await server.stop("SIGTERM")).toBe(0);
  }, 60_000);

  test("--max-conns counts the whole process: the 11th connection of 14 is told SERVER_FULL", async () => {
    const server = await startServer(["--workers", "2", "--port", "0", "--max-conns", "10"]);
    const open: FramedClient[] = [];
    for (let i = 0; i < 10; i++) open.push(await FramedClient.open(server.port));
    let full = 0;
    for (let i = 0; i < 4; i++) {
      const s = await connect(server.port);
      const frames: Frame[] = [];
      const d = new FramedStreamDecoder((f) => frames.push(f));
      s.on("data", (b: Buffer) => d.push(b));
      await waitFor(() => frames.length > 0 || s.destroyed, 5_000, "SERVER_FULL");
      if (frames[0]?.type === MsgType.ERROR) full++;
      s.destroy();
    }
    expect(full).toBe(4);
    for (const c of open) c.close();
    expect(await server.stop("SIGTERM")).toBe(0);
  });

  test("--pin: each worker thread is pinned to one CPU of the allowed set, logged at start", async () => {
    const server = await startServer(["--workers", "2", "--pin", "--port", "0"]);
    await waitFor(() => /pinned to CPUs/.test(server.stderr()), 10_000, "the pinning line");
    const logged = server.stderr().match(/pinned to CPUs (\d+(?:,\d+)*)/)![1]!.split(",").map(Number);
    const allowed = availableParallelism();
    const masks = () =>
      readdirSync(`/proc/${server.pid}/task`)
        .map((t) => readFileSync(`/proc/${server.pid}/task/${t}/status`, "utf8"))
        .filter((st) => /^Name:\s+Worker$/m.test(st))
        .map((st) => st.match(/^Cpus_allowed_list:\s+(\S+)$/m)![1]!)
        .sort();
    const want = logged.map(String).sort();
    // Threads are named by Bun as they start: give the names a moment to appear.
    await waitFor(() => JSON.stringify(masks()) === JSON.stringify(want), 3_000, `worker masks ${want} (now ${masks()})`);
    const workers = masks();
    if (allowed >= 2) expect(new Set(workers).size).toBe(2);
    expect(await server.stop("SIGTERM")).toBe(0);
  });

  test.each(["reuseport", "acceptor"])("--balance %s: a port in use: one clear line, exit 1", async (mode) => {
    const port = await unusedPort();
    const blocker = net.createServer().listen(port, "127.0.0.1");
    await new Promise((r) => blocker.once("listening", r));
    const proc = Bun.spawn([process.execPath, "src/server.ts", "--workers", "2", "--balance", mode, "--port", String(port)], { cwd: `${import.meta.dir}/../..`, stderr: "pipe", stdout: "pipe" });
    const code = await proc.exited;
    const err = await new Response(proc.stderr).text();
    blocker.close();
    expect(code).toBe(1);
    expect(err.trim().split("\n")).toHaveLength(1);
    expect(err).toContain(`cannot listen on 127.0.0.1:${port}: address already in use (EADDRINUSE)`);
  });

  test("a worker that crashes is logged, its connections closed, restarted (within 1 s on a quiet machine); the other serves on", async () => {
    const server = await startServer(["--workers", "2", "--port", "0"], { env: { BUNPOLL_TEST_CRASH: "crash-now" } });
    const [w0, w1] = await clientsOnBothWorkers(server.port, 3);
    const closed = new Set<FramedClient>();
    for (const c of [...w0!, ...w1!]) {
      c.sock.on("close", () => closed.add(c));
      c.sock.on("error", () => {});
    }
    const before = server.fdCount();
    // A BROADCAST whose body is the crash word makes worker 0 throw out of its loop.
    w0![0]!.sock.write(encodeBroadcast("crash-now"));
    await waitFor(() => /worker 0 died: .*crash injected/.test(server.stderr()), 5_000, "the crash line");
    // Its clients are closed by the main thread (a dead Worker closes nothing itself).
    await waitFor(() => w0!.every((c) => closed.has(c)), 5_000, "worker 0's clients closed");
    // How soon it is back is a figure (the line says it; bench/README.md), not asserted here:
    // a Worker's start-up is module loading, which a loaded machine slows down.
    await waitFor(() => /worker 0 restarted, serving again \d+ ms after it died/.test(server.stderr()), 10_000, "the restart line");
    expect(w1!.some((c) => closed.has(c))).toBe(false);
    // Worker 1's clients still talk to each other.
    const [a, b] = [w1![0]!, w1![1]!];
    a.sock.write(encodeSendTo(b.id, "still here"));
    await waitFor(() => b.of(MsgType.DIRECT_MSG).length === 1, 5_000, "a message between survivors");
    // Both workers take new connections again, and they reach the survivors.
    const fresh = await clientsOnBothWorkers(server.port, 1);
    fresh[0]![0]!.sock.write(encodeSendTo(a.id, "from the new worker 0"));
    await waitFor(() => a.of(MsgType.DIRECT_MSG).length === 1, 5_000, "a message from the restarted worker");
    for (const c of [...w1!, ...fresh[0]!, ...fresh[1]!]) c.close();
    await waitFor(() => server.fdCount() <= before, 5_000, `fds back to ${before} (now ${server.fdCount()})`);
    expect(await server.stop("SIGTERM")).toBe(0);
  }, 30_000);
});
