// Closed-loop TCP load generator for the bunpoll benchmarks. Runs under Bun and uses
// Bun.connect only: it must not share code with bunpoll, or a bug there could hide here.
//
//   bun bench/loadgen.ts --port P [--host 127.0.0.1] [--protocol echo|framed]
//       [--conns C] [--depth D] [--size S] [--duration SEC] [--warmup SEC]
//       [--server-pid PID] [--json]
//   bun bench/loadgen.ts --idle --port P --conns N [--hold SEC] [--json]
//
// Load mode: every connection keeps D messages in flight. Replies are matched FIFO to
// their send times (TCP keeps order, and both protocols answer in order), so each reply
// gives one RTT. echo: a message is S raw bytes and a reply is counted each time S more
// bytes have come back. framed: a message is an ECHO frame (type 5) with an S-byte body;
// a reply is one ECHO_REPLY frame (type 6) with an S-byte body.
//
// Only replies that arrive inside the measured window (after the warm-up) count. With
// --server-pid the server's CPU time (/proc/PID/stat) is read at the window's edges, so
// "server CPU per message" uses exactly the same window as the message count.
//
// Idle mode: open N connections that send nothing, print one JSON line
// {"event":"connected",...} when all are up, then hold them until stdin closes, SIGINT or
// SIGTERM arrives, or --hold seconds pass (so it always stops by itself).

import type { Socket } from "bun";
import { Histogram } from "./lib/histogram.ts";
import { HEADER, MAX_BODY, T_ECHO, T_ECHO_REPLY, putHeader } from "./lib/framed.ts";
import { type CpuTimes, clockTicksPerSecond, cpuTimes, machineCpu } from "./lib/proc.ts";

interface Options {
  host: string;
  port: number;
  protocol: "echo" | "framed";
  conns: number;
  depth: number;
  size: number;
  duration: number;
  warmup: number;
  json: boolean;
  idle: boolean;
  hold: number;
  serverPid: number;
  connectConcurrency: number;
}

function usage(msg: string): never {
  process.stderr.write(
    `loadgen: ${msg}\nusage: bun bench/loadgen.ts --port P [--host 127.0.0.1] [--protocol echo|framed] ` +
      `[--conns C] [--depth D] [--size S] [--duration SEC] [--warmup SEC] [--server-pid PID] [--json]\n` +
      `       bun bench/loadgen.ts --idle --port P --conns N [--hold SEC] [--json]\n`,
  );
  process.exit(2);
}

function parseArgs(argv: string[]): Options {
  const o: Options = {
    host: "127.0.0.1",
    port: 0,
    protocol: "echo",
    conns: 1,
    depth: 1,
    size: 64,
    duration: 5,
    warmup: 1,
    json: false,
    idle: false,
    hold: 600,
    serverPid: 0,
    connectConcurrency: 256,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const next = (): string => {
      const v = argv[++i];
      if (v === undefined) usage(`missing value for ${a}`);
      return v;
    };
    const num = (): number => {
      const v = Number(next());
      if (!Number.isFinite(v) || v < 0) usage(`bad number for ${a}`);
      return v;
    };
    switch (a) {
      case "--host": o.host = next(); break;
      case "--port": o.port = num(); break;
      case "--protocol": {
        const p = next();
        if (p !== "echo" && p !== "framed") usage(`unknown protocol ${p}`);
        o.protocol = p;
        break;
      }
      case "--conns": o.conns = num(); break;
      case "--depth": o.depth = num(); break;
      case "--size": o.size = num(); break;
      case "--duration": o.duration = num(); break;
      case "--warmup": o.warmup = num(); break;
      case "--json": o.json = true; break;
      case "--idle": o.idle = true; break;
      case "--hold": o.hold = num(); break;
      case "--server-pid": o.serverPid = num(); break;
      case "--connect-concurrency": o.connectConcurrency = num(); break;
      default: usage(`unknown argument ${a}`);
    }
  }
  if (!o.port) usage("--port is required");
  // Loads target loopback only: this harness must never be pointed at another machine.
  if (!/^127\.\d+\.\d+\.\d+$/.test(o.host) && o.host !== "localhost" && o.host !== "::1") {
    usage(`host ${o.host} is not a loopback address`);
  }
  if (o.conns < 1 || o.depth < 1 || o.size < 1) usage("--conns, --depth and --size must be >= 1");
  if (o.protocol === "framed" && o.size > MAX_BODY) usage(`framed bodies are at most ${MAX_BODY} bytes`);
  return o;
}

const log = (s: string): void => {
  process.stderr.write(`loadgen: ${s}\n`);
};

// ---------------------------------------------------------------------------------------
// Load mode

/** Per-connection state, attached to the Bun socket as its `data`. */
class Conn {
  sock: Socket<Conn> | null = null;
  /** Send times (ns) of in-flight messages, a ring of `depth` slots: FIFO match of replies. */
  readonly sendTimes: Float64Array;
  head = 0; // next reply's send time
  inFlight = 0;
  /** Bytes of queued messages the kernel has not taken yet (backpressure). */
  unsent = 0;
  // echo: bytes of the current partial reply
  rx = 0;
  // framed: resumable parser state
  hdr0 = 0; // bytes of the header seen so far packed big-endian
  hdrFill = 0;
  bodyLeft = 0;
  curType = 0;
  curLen = 0;
  closed = false;

  constructor(depth: number) {
    this.sendTimes = new Float64Array(depth);
  }
}

async function runLoad(o: Options): Promise<void> {
  const framed = o.protocol === "framed";
  const msgLen = framed ? HEADER + o.size : o.size;
  // All messages are identical, so the bytes to send are always a prefix-aligned run of
  // one pre-built buffer holding `depth` messages: a send of k messages is one write.
  const msgs = new Uint8Array(new ArrayBuffer(msgLen * o.depth));
  for (let m = 0; m < o.depth; m++) {
    const base = m * msgLen;
    let body = base;
    if (framed) {
      putHeader(msgs, base, T_ECHO, o.size);
      body += HEADER;
    }
    for (let i = 0; i < o.size; i++) msgs[body + i] = (i * 31 + 7) & 0xff;
  }

  const hist = new Histogram();
  let measuring = false;
  let running = false;
  let winReplies = 0;
  let protocolErrors = 0;
  let unexpectedCloses = 0;
  let bytesSent = 0;
  const conns: Conn[] = [];

  /** Write as much of c.unsent as the kernel takes. The unsent bytes always end on a message boundary. */
  const flush = (c: Conn): void => {
    const sock = c.sock;
    if (sock === null || c.unsent === 0) return;
    const off = (msgLen - (c.unsent % msgLen)) % msgLen;
    const n = sock.write(msgs, off, c.unsent);
    if (n > 0) {
      c.unsent -= n;
      bytesSent += n;
    }
  };

  const send = (c: Conn, k: number, now: number): void => {
    const d = o.depth;
    for (let i = 0; i < k; i++) {
      c.sendTimes[(c.head + c.inFlight) % d] = now;
      c.inFlight++;
    }
    const hadBacklog = c.unsent > 0;
    c.unsent += k * msgLen;
    // With a backlog the drain handler will continue; writing now would be refused anyway.
    if (!hadBacklog) flush(c);
  };

  /** Count k replies received at `now`, then refill the pipeline with k new messages. */
  const onReplies = (c: Conn, k: number, now: number): void => {
    const d = o.depth;
    if (k > c.inFlight) {
      // More replies than requests: the server sent something we did not ask for.
      protocolErrors++;
      k = c.inFlight;
    }
    for (let i = 0; i < k; i++) {
      const sent = c.sendTimes[c.head]!;
      c.head = c.head + 1 === d ? 0 : c.head + 1;
      if (measuring) hist.record(now - sent);
    }
    c.inFlight -= k;
    if (measuring) winReplies += k;
    if (running && k > 0) send(c, k, now);
  };

  const onDataEcho = (c: Conn, len: number, now: number): void => {
    const total = c.rx + len;
    const k = Math.floor(total / o.size);
    c.rx = total - k * o.size;
    onReplies(c, k, now);
  };

  const onDataFramed = (c: Conn, buf: Uint8Array, now: number): void => {
    let k = 0;
    let i = 0;
    const n = buf.length;
    while (i < n) {
      if (c.bodyLeft > 0) {
        const take = Math.min(c.bodyLeft, n - i);
        c.bodyLeft -= take;
        i += take;
        if (c.bodyLeft === 0) k++;
        continue;
      }
      // Header, possibly split across reads.
      c.hdr0 = (c.hdr0 << 8) | buf[i++]!;
      if (++c.hdrFill < HEADER) continue;
      c.curType = c.hdr0 >>> 16;
      c.curLen = c.hdr0 & 0xffff;
      c.hdr0 = 0;
      c.hdrFill = 0;
      if (c.curType !== T_ECHO_REPLY || c.curLen !== o.size) protocolErrors++;
      if (c.curLen === 0) k++;
      else c.bodyLeft = c.curLen;
    }
    onReplies(c, k, now);
  };

  // Connect everything first (untimed), with bounded concurrency so the server's accept
  // queue does not overflow (dropped SYNs are retried after a 1 s timeout and would
  // make the connect phase look slow rather than fail).
  const connectStart = performance.now();
  let nextIdx = 0;
  const connectOne = async (): Promise<void> => {
    while (nextIdx < o.conns) {
      nextIdx++;
      const c = new Conn(o.depth);
      const sock = await Bun.connect<Conn>({
        hostname: o.host,
        port: o.port,
        data: c,
        socket: {
          data(s, buf) {
            const now = Bun.nanoseconds();
            if (framed) onDataFramed(s.data, buf, now);
            else onDataEcho(s.data, buf.length, now);
          },
          drain(s) {
            flush(s.data);
          },
          close(s) {
            const cc = s.data;
            if (!cc.closed) {
              cc.closed = true;
              if (running) unexpectedCloses++;
            }
            cc.sock = null;
          },
          error(s, err) {
            if (running) log(`socket error: ${err.message}`);
          },
        },
      });
      sock.setNoDelay(true);
      c.sock = sock;
      conns.push(c);
    }
  };
  const workers: Promise<void>[] = [];
  for (let w = 0; w < Math.min(o.connectConcurrency, o.conns); w++) workers.push(connectOne());
  const connectTimeout = setTimeout(() => {
    log(`connect phase timed out (${conns.length}/${o.conns} connected)`);
    process.exit(1);
  }, 60_000);
  try {
    await Promise.all(workers);
  } catch (e) {
    log(`connect failed: ${(e as Error).message}`);
    process.exit(1);
  }
  clearTimeout(connectTimeout);
  const connectMs = performance.now() - connectStart;

  // Start the load.
  running = true;
  const t0 = Bun.nanoseconds();
  for (const c of conns) send(c, o.depth, t0);

  let winStartNs = 0;
  let serverCpu0: CpuTimes | null = null;
  let selfCpu0 = process.cpuUsage();
  await Bun.sleep(o.warmup * 1000);
  // Window start: reset what the warm-up recorded.
  hist.reset();
  winReplies = 0;
  protocolErrors = 0;
  const bytesSent0 = bytesSent;
  if (o.serverPid) serverCpu0 = cpuTimes(o.serverPid);
  const machine0 = machineCpu();
  selfCpu0 = process.cpuUsage();
  winStartNs = Bun.nanoseconds();
  measuring = true;

  await Bun.sleep(o.duration * 1000);

  measuring = false;
  const winEndNs = Bun.nanoseconds();
  const serverCpu1 = o.serverPid ? cpuTimes(o.serverPid) : null;
  const selfCpu = process.cpuUsage(selfCpu0);
  const machine1 = machineCpu();
  running = false;
  const replies = winReplies;
  const windowS = (winEndNs - winStartNs) / 1e9;

  for (const c of conns) {
    c.closed = true;
    c.sock?.end();
  }

  const s = hist.summary(1000); // ns -> µs
  const serverUserUs = serverCpu0 && serverCpu1 ? serverCpu1.user - serverCpu0.user : null;
  const serverSysUs = serverCpu0 && serverCpu1 ? serverCpu1.sys - serverCpu0.sys : null;
  const serverCpuUs = serverUserUs !== null && serverSysUs !== null ? serverUserUs + serverSysUs : null;
  const perMsg = (us: number | null): number | null => (us !== null && replies > 0 ? us / replies : null);
  const loadgenCpuPct = ((selfCpu.user + selfCpu.system) / 1e6 / windowS) * 100;
  const pctOfCore = (us: number): number => (us / 1e6 / windowS) * 100;
  // CPU used during the window by anything but the server and this loadgen (other
  // processes, kernel threads), in % of one core: a sign the round was disturbed.
  const otherCpuPct =
    machine0 && machine1 && serverCpuUs !== null
      ? pctOfCore(machine1.busy - machine0.busy - serverCpuUs) - loadgenCpuPct
      : null;
  const stealPct = machine0 && machine1 ? pctOfCore(machine1.steal - machine0.steal) : null;
  const result = {
    mode: "load",
    host: o.host,
    port: o.port,
    protocol: o.protocol,
    conns: o.conns,
    depth: o.depth,
    size: o.size,
    warmupS: o.warmup,
    windowS,
    connectMs,
    messages: replies,
    msgsPerSec: replies / windowS,
    bytesSentPerSec: (bytesSent - bytesSent0) / windowS,
    rttUs: s,
    serverPid: o.serverPid || null,
    serverCpuUs,
    serverCpuUsPerMsg: perMsg(serverCpuUs),
    // The split matters on loopback: sys includes the TCP stack work of the peer's receive
    // path, user is what the server's own code (e.g. a JS reactor) costs.
    serverUserUsPerMsg: perMsg(serverUserUs),
    serverSysUsPerMsg: perMsg(serverSysUs),
    clockTicksPerSec: clockTicksPerSecond(),
    loadgenCpuPct,
    loadgenUserPct: (selfCpu.user / 1e6 / windowS) * 100,
    loadgenSysPct: (selfCpu.system / 1e6 / windowS) * 100,
    // One Bun thread does all the loadgen's work; near 100% of a core it is likely the
    // bottleneck and msgs/s measures the loadgen, not the server.
    loadgenSaturated: loadgenCpuPct > 90,
    otherCpuPct,
    stealPct,
    protocolErrors,
    unexpectedCloses,
  };
  if (o.json) {
    process.stdout.write(JSON.stringify(result) + "\n");
  } else {
    const f = (v: number): string => v.toFixed(1);
    process.stdout.write(
      `${o.protocol} ${o.conns} conns x ${o.depth} x ${o.size} B: ${Math.round(result.msgsPerSec)} msgs/s, ` +
        `RTT p50 ${f(s.p50)} p99 ${f(s.p99)} p999 ${f(s.p999)} max ${f(s.max)} µs` +
        (result.serverCpuUsPerMsg !== null ? `, server CPU ${result.serverCpuUsPerMsg.toFixed(3)} µs/msg` : "") +
        (result.serverUserUsPerMsg !== null ? ` (user ${result.serverUserUsPerMsg.toFixed(3)})` : "") +
        `, loadgen CPU ${loadgenCpuPct.toFixed(0)}% (user ${result.loadgenUserPct.toFixed(0)}%)` +
        (protocolErrors || unexpectedCloses ? `, ${protocolErrors} protocol errors, ${unexpectedCloses} closes` : "") +
        "\n",
    );
  }
  // Sockets are ended; do not wait for the peers' FINs.
  process.exit(0);
}

// ---------------------------------------------------------------------------------------
// Idle mode

async function runIdle(o: Options): Promise<void> {
  const socks: Socket<undefined>[] = [];
  let closedEarly = 0;
  let stopping = false;
  const t0 = performance.now();
  let nextIdx = 0;
  let failed = 0;
  let firstError = "";
  const connectOne = async (): Promise<void> => {
    while (nextIdx < o.conns) {
      nextIdx++;
      try {
        const s = await Bun.connect({
          hostname: o.host,
          port: o.port,
          socket: {
            data() {},
            close() {
              if (!stopping) closedEarly++;
            },
          },
        });
        socks.push(s);
      } catch (e) {
        failed++;
        if (!firstError) firstError = (e as Error).message;
      }
    }
  };
  const workers: Promise<void>[] = [];
  for (let w = 0; w < Math.min(o.connectConcurrency, o.conns); w++) workers.push(connectOne());
  const connectTimeout = setTimeout(() => {
    log(`idle connect phase timed out (${socks.length}/${o.conns} connected)`);
    process.exit(1);
  }, 120_000);
  await Promise.all(workers);
  clearTimeout(connectTimeout);
  const connectMs = performance.now() - t0;
  const info = { event: "connected", conns: socks.length, failed, firstError, connectMs };
  process.stdout.write((o.json ? JSON.stringify(info) : `connected ${socks.length} (${failed} failed) in ${connectMs.toFixed(0)} ms`) + "\n");

  // Hold until told to stop. Every path ends in stop(), and --hold bounds the wait.
  const stop = (why: string): void => {
    if (stopping) return;
    stopping = true;
    for (const s of socks) s.terminate();
    const done = { event: "done", why, closedEarly };
    process.stdout.write((o.json ? JSON.stringify(done) : `done (${why}), ${closedEarly} closed early`) + "\n");
    process.exit(0);
  };
  process.on("SIGINT", () => stop("SIGINT"));
  process.on("SIGTERM", () => stop("SIGTERM"));
  setTimeout(() => stop("hold expired"), o.hold * 1000);
  void (async () => {
    const reader = Bun.stdin.stream().getReader();
    try {
      while (!(await reader.read()).done) {
        // Input is ignored; only its end matters.
      }
    } catch {
      // A broken stdin counts as closed.
    }
    stop("stdin closed");
  })();
}

const opts = parseArgs(process.argv.slice(2));
if (opts.idle) await runIdle(opts);
else await runLoad(opts);
