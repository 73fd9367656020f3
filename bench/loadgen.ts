// Closed-loop TCP load generator for the bunpoll benchmarks. Runs under Bun and uses
// Bun.connect only: it must not share code with bunpoll, or a bug there could hide here.
//
//   bun bench/loadgen.ts --port P [--host 127.0.0.1] [--protocol echo|framed]
//       [--conns C] [--depth D] [--size S] [--duration SEC] [--warmup SEC]
//       [--server-pid PID] [--json]
//   bun bench/loadgen.ts --fanout --port P [--receivers R] [--window W] [--lag L] [--size S]
//       [--duration SEC] [--warmup SEC] [--server-pid PID] [--json]
//   bun bench/loadgen.ts --idle --port P --conns N [--hold SEC] [--http-get PATH] [--json]
//
// Load mode: every connection keeps D messages in flight. Replies are matched FIFO to
// their send times (TCP keeps order, and both protocols answer in order), so each reply
// gives one RTT. echo: a message is S raw bytes and a reply is counted each time S more
// bytes have come back. framed: a message is an ECHO frame (type 5) with an S-byte body;
// a reply is one ECHO_REPLY frame (type 6) with an S-byte body.
//
// Only replies that arrive inside the measured window (after the warm-up) count. With
// --server-pid the server's CPU time (/proc/PID/stat) is read at the window's edges, so
// "server CPU per message" uses exactly the same window as the message count. With
// --perf-events E1,E2 as well, `perf stat -p PID` counts those events (syscall
// tracepoints) from the window's start to its end (SIGINT); perf needs some tens of ms to
// attach, so counts per message read a little low.
//
// Fan-out mode (framed): R receivers and 1 sender connect and each sends HELLO; once all
// have their WELCOME, the sender keeps W BROADCAST frames (S-byte body, starting with the
// send time as a little-endian f64 of Bun.nanoseconds()) waiting for their BROADCAST_ACK.
// Receivers count BROADCAST_MSG frames (deliveries) and record send-to-receipt latency.
// Because an ACK only says the server queued the message, the sender also never runs
// more than L broadcasts ahead of the slowest receiver, so server queues stay bounded
// whoever is slower; `lagWaits` says how often that bound, not the ACK window, held it.
//
// Idle mode: open N connections that send nothing, print one JSON line
// {"event":"connected",...} when all are up, then hold them until stdin closes, SIGINT or
// SIGTERM arrives, or --hold seconds pass (so it always stops by itself).

import type { Socket } from "bun";
import { Histogram } from "./lib/histogram.ts";
import {
  HEADER,
  MAX_BODY,
  MAX_BROADCAST_BODY,
  T_BROADCAST,
  T_BROADCAST_ACK,
  T_BROADCAST_MSG,
  T_ECHO,
  T_ECHO_REPLY,
  T_HELLO,
  T_WELCOME,
  putHeader,
} from "./lib/framed.ts";
import { type CpuTimes, type MachineCpu, clockTicksPerSecond, cpuNs, cpuTimes, machineCpu } from "./lib/proc.ts";

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
  /** --idle: send `GET PATH` on each connection and read its response before holding it. */
  httpGet: string;
  hold: number;
  serverPid: number;
  connectConcurrency: number;
  fanout: boolean;
  receivers: number;
  window: number;
  lag: number;
  perfEvents: string;
}

function usage(msg: string): never {
  process.stderr.write(
    `loadgen: ${msg}\nusage: bun bench/loadgen.ts --port P [--host 127.0.0.1] [--protocol echo|framed] ` +
      `[--conns C] [--depth D] [--size S] [--duration SEC] [--warmup SEC] [--server-pid PID] [--json]\n` +
      `       bun bench/loadgen.ts --fanout --port P [--receivers R] [--window W] [--lag L] [--size S] ` +
      `[--duration SEC] [--warmup SEC] [--server-pid PID] [--json]\n` +
      `       bun bench/loadgen.ts --idle --port P --conns N [--hold SEC] [--http-get PATH] [--json]\n`,
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
    httpGet: "",
    hold: 600,
    serverPid: 0,
    connectConcurrency: 256,
    fanout: false,
    receivers: 100,
    window: 16,
    lag: 0,
    perfEvents: "",
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
      case "--http-get": {
        o.httpGet = next();
        if (!/^\/[\x21-\x7e]*$/.test(o.httpGet)) usage(`--http-get needs a path such as /plaintext, got ${o.httpGet}`);
        break;
      }
      case "--server-pid": o.serverPid = num(); break;
      case "--connect-concurrency": o.connectConcurrency = num(); break;
      case "--fanout": o.fanout = true; break;
      case "--receivers": o.receivers = num(); break;
      case "--window": o.window = num(); break;
      case "--lag": o.lag = num(); break;
      case "--perf-events": o.perfEvents = next(); break;
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
  if (o.fanout) {
    o.protocol = "framed";
    if (o.receivers < 1 || o.window < 1) usage("--receivers and --window must be >= 1");
    if (o.size < STAMP_BYTES || o.size > MAX_BROADCAST_BODY) {
      usage(`fan-out bodies are ${STAMP_BYTES} to ${MAX_BROADCAST_BODY} bytes (they carry an 8-byte send time)`);
    }
    if (o.lag === 0) o.lag = 4 * o.window;
    if (o.lag < o.window) usage("--lag must be >= --window");
  }
  if (o.perfEvents !== "" && !o.serverPid) usage("--perf-events needs --server-pid");
  return o;
}

const log = (s: string): void => {
  process.stderr.write(`loadgen: ${s}\n`);
};

// ---------------------------------------------------------------------------------------
// The measured window: server CPU (/proc/PID/stat), our own CPU and the machine's, read at
// both edges, so per-message figures and "something else ran" use exactly one interval.

interface WindowStart {
  ns: number;
  server: CpuTimes | null;
  /** Exact CPU time of the server (cpuNs), or null. */
  serverNs: number | null;
  machine: MachineCpu | null;
  self: NodeJS.CpuUsage;
  perf: { proc: ReturnType<typeof Bun.spawn>; err: Promise<string> } | null;
}

function windowStart(serverPid: number, perfEvents = ""): WindowStart {
  let perf: WindowStart["perf"] = null;
  if (perfEvents !== "" && serverPid) {
    // Counting runs in the kernel; perf itself only sleeps until SIGINT (on our core).
    const proc = Bun.spawn(["perf", "stat", "-x,", "-e", perfEvents, "-p", `${serverPid}`], {
      stdin: "ignore",
      stdout: "ignore",
      stderr: "pipe",
    });
    perf = { proc, err: new Response(proc.stderr as ReadableStream<Uint8Array>).text() };
  }
  const server = serverPid ? cpuTimes(serverPid) : null;
  const serverNs = serverPid ? cpuNs(serverPid) : null;
  const machine = machineCpu();
  const self = process.cpuUsage();
  return { ns: Bun.nanoseconds(), server, serverNs, machine, self, perf };
}

/** Stop perf (SIGINT makes it print its counts) and parse them: {"total": n, "sendto": n, ...}. */
async function perfCounts(w: WindowStart): Promise<Record<string, number> | string | null> {
  if (w.perf === null) return null;
  const { proc, err } = w.perf;
  proc.kill("SIGINT");
  const done = await Promise.race([proc.exited.then(() => true), Bun.sleep(5000).then(() => false)]);
  if (!done) {
    proc.kill("SIGKILL");
    return "perf stat did not stop";
  }
  const text = await err;
  const counts: Record<string, number> = {};
  for (const line of text.split("\n")) {
    const f = line.split(",");
    const n = Number(f[0]);
    const ev = f[2] ?? "";
    if (f[0] === "" || !Number.isFinite(n) || ev === "") continue;
    counts[ev === "raw_syscalls:sys_enter" ? "total" : ev.replace(/^syscalls:sys_enter_/, "")] = n;
  }
  return Object.keys(counts).length > 0 ? counts : `perf stat printed no counts: ${text.trim().slice(0, 200)}`;
}

/** Counts per message, or the reason there are none. */
function perMessage(c: Record<string, number> | string | null, messages: number) {
  if (c === null) return {};
  if (typeof c === "string") return { serverSyscallsNote: c };
  const per: Record<string, number> = {};
  for (const [k, v] of Object.entries(c)) per[k] = messages > 0 ? v / messages : 0;
  return { serverSyscalls: c, serverSyscallsPerMsg: per };
}

function windowEnd(w: WindowStart, serverPid: number, messages: number) {
  const endNs = Bun.nanoseconds();
  const server1 = serverPid ? cpuTimes(serverPid) : null;
  const serverNs1 = serverPid ? cpuNs(serverPid) : null;
  const selfCpu = process.cpuUsage(w.self);
  const machine1 = machineCpu();
  const windowS = (endNs - w.ns) / 1e9;
  const tickUserUs = w.server && server1 ? server1.user - w.server.user : null;
  const tickSysUs = w.server && server1 ? server1.sys - w.server.sys : null;
  const tickCpuUs = tickUserUs !== null && tickSysUs !== null ? tickUserUs + tickSysUs : null;
  // Total CPU from the scheduler's exact runtime when /proc has it; the user/sys split is
  // only known from the tick-sampled utime/stime, so it is applied as a proportion.
  const exactUs = w.serverNs !== null && serverNs1 !== null ? (serverNs1 - w.serverNs) / 1000 : null;
  const serverCpuUs = exactUs ?? tickCpuUs;
  const userShare = tickCpuUs !== null && tickCpuUs > 0 && tickUserUs !== null ? tickUserUs / tickCpuUs : null;
  const serverUserUs = serverCpuUs !== null && userShare !== null ? serverCpuUs * userShare : tickUserUs;
  const serverSysUs = serverCpuUs !== null && userShare !== null ? serverCpuUs * (1 - userShare) : tickSysUs;
  const perMsg = (us: number | null): number | null => (us !== null && messages > 0 ? us / messages : null);
  const pctOfCore = (us: number): number => (us / 1e6 / windowS) * 100;
  const loadgenCpuPct = pctOfCore(selfCpu.user + selfCpu.system);
  return {
    windowS,
    serverCpuUs,
    serverCpuUsPerMsg: perMsg(serverCpuUs),
    /** "schedstat": exact scheduler runtime; "ticks": utime+stime at clock-tick resolution. */
    serverCpuSource: exactUs !== null ? "schedstat" : "ticks",
    serverCpuTicksUsPerMsg: perMsg(tickCpuUs),
    // The split matters on loopback: sys includes the TCP stack work of the peer's receive
    // path, user is what the server's own code (e.g. a JS reactor) costs.
    serverUserUsPerMsg: perMsg(serverUserUs),
    serverSysUsPerMsg: perMsg(serverSysUs),
    clockTicksPerSec: clockTicksPerSecond(),
    loadgenCpuPct,
    loadgenUserPct: pctOfCore(selfCpu.user),
    loadgenSysPct: pctOfCore(selfCpu.system),
    // One Bun thread does all the loadgen's work; near 100% of a core it is likely the
    // bottleneck and msgs/s measures the loadgen, not the server.
    loadgenSaturated: loadgenCpuPct > 90,
    // CPU used during the window by anything but the server and this loadgen (other
    // processes, kernel threads), in % of one core: a sign the round was disturbed.
    otherCpuPct:
      w.machine && machine1 && serverCpuUs !== null
        ? pctOfCore(machine1.busy - w.machine.busy - serverCpuUs) - loadgenCpuPct
        : null,
    stealPct: w.machine && machine1 ? pctOfCore(machine1.steal - w.machine.steal) : null,
  };
}

/** With --json, say that the measured window started (the runner aligns syscall counting to it). */
function announceWindow(o: Options): void {
  if (o.json) process.stdout.write(`{"event":"window","durationS":${o.duration}}\n`);
}

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

  await Bun.sleep(o.warmup * 1000);
  // Window start: reset what the warm-up recorded.
  hist.reset();
  winReplies = 0;
  protocolErrors = 0;
  const bytesSent0 = bytesSent;
  const win = windowStart(o.serverPid, o.perfEvents);
  measuring = true;
  announceWindow(o);

  await Bun.sleep(o.duration * 1000);

  measuring = false;
  const replies = winReplies;
  const w = windowEnd(win, o.serverPid, replies);
  running = false;
  const sys = perMessage(await perfCounts(win), replies);
  const windowS = w.windowS;

  for (const c of conns) {
    c.closed = true;
    c.sock?.end();
  }

  const s = hist.summary(1000); // ns -> µs
  const result = {
    mode: "load",
    host: o.host,
    port: o.port,
    protocol: o.protocol,
    conns: o.conns,
    depth: o.depth,
    size: o.size,
    warmupS: o.warmup,
    connectMs,
    messages: replies,
    msgsPerSec: replies / windowS,
    bytesSentPerSec: (bytesSent - bytesSent0) / windowS,
    rttUs: s,
    serverPid: o.serverPid || null,
    ...w,
    ...sys,
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
        `, loadgen CPU ${w.loadgenCpuPct.toFixed(0)}% (user ${w.loadgenUserPct.toFixed(0)}%)` +
        (protocolErrors || unexpectedCloses ? `, ${protocolErrors} protocol errors, ${unexpectedCloses} closes` : "") +
        "\n",
    );
  }
  // Sockets are ended; do not wait for the peers' FINs.
  process.exit(0);
}

// ---------------------------------------------------------------------------------------
// Fan-out mode

/** A BROADCAST body starts with the send time: f64 little-endian, Bun.nanoseconds(). */
const STAMP_BYTES = 8;
/** Body bytes a receiver keeps when a frame straddles reads: u32 from_id + the stamp. */
const CAPTURE = 4 + STAMP_BYTES;

class FanConn {
  sock: Socket<FanConn> | null = null;
  id = 0; // from WELCOME
  welcomed = false;
  /** BROADCAST_MSG frames received over the whole run (receivers only). */
  got = 0;
  // Resumable parser: header bytes, then the body, whose first CAPTURE bytes are kept.
  hdr = 0;
  hdrFill = 0;
  inBody = false;
  type = 0;
  len = 0;
  bodyPos = 0;
  readonly cap = new Uint8Array(CAPTURE);
  readonly capView = new DataView(this.cap.buffer);
  /** Sender only: bytes the kernel has not taken yet, oldest first. */
  pending: Uint8Array[] = [];
  closed = false;
  constructor(readonly sender: boolean) {}
}

async function runFanout(o: Options): Promise<void> {
  const R = o.receivers;
  const frameLen = HEADER + o.size;
  // Up to `window` BROADCAST frames, written in one go; only the stamps change per send.
  const out = new Uint8Array(new ArrayBuffer(frameLen * o.window));
  const outView = new DataView(out.buffer);
  for (let m = 0; m < o.window; m++) {
    const base = m * frameLen;
    putHeader(out, base, T_BROADCAST, o.size);
    for (let i = STAMP_BYTES; i < o.size; i++) out[base + HEADER + i] = (i * 31 + 7) & 0xff;
  }

  const hist = new Histogram();
  let measuring = false;
  let running = false;
  let deliveries = 0; // in the window
  let winAcks = 0;
  let protocolErrors = 0;
  let unexpectedCloses = 0;
  let welcomed = 0;
  let recipientsMin = Infinity;
  let recipientsMax = -Infinity;
  // Flow control: `sent - acked` <= window, and `sent - slowest receiver's got` <= lag.
  let sent = 0;
  let acked = 0;
  let minGot = 0; // a lower bound of min(got) over receivers, refreshed when it binds
  let lagWaiting = false;
  let pumps = 0; // pump() calls that wanted to send, in the window
  let lagLimited = 0; // ... of which the lag bound cut down
  const receivers: FanConn[] = [];
  let sender: FanConn | null = null;

  const senderWrite = (c: FanConn, len: number): void => {
    const sock = c.sock;
    if (sock === null) return;
    if (c.pending.length === 0) {
      const n = sock.write(out, 0, len);
      if (n === len || n < 0) return;
      c.pending.push(out.slice(n, len)); // copy: `out` is rewritten by the next send
      return;
    }
    c.pending.push(out.slice(0, len));
  };

  const drainSender = (c: FanConn): void => {
    const q = c.pending;
    while (q.length > 0 && c.sock !== null) {
      const head = q[0]!;
      const n = c.sock.write(head);
      if (n < 0) {
        q.length = 0;
        return;
      }
      if (n < head.length) {
        q[0] = head.subarray(n);
        return;
      }
      q.shift();
    }
  };

  const slowest = (): number => {
    let m = Infinity;
    for (let i = 0; i < R; i++) if (receivers[i]!.got < m) m = receivers[i]!.got;
    return m;
  };

  /** Send as many broadcasts as both bounds allow. */
  const pump = (): void => {
    if (!running || sender === null) return;
    let k = o.window - (sent - acked);
    if (k <= 0) return;
    if (measuring) pumps++;
    let room = o.lag - (sent - minGot);
    if (room < k) {
      minGot = slowest();
      room = o.lag - (sent - minGot);
    }
    if (room < k) {
      lagWaiting = true;
      if (measuring) lagLimited++;
      if (room <= 0) return;
      k = room;
    } else {
      lagWaiting = false;
    }
    const now = Bun.nanoseconds();
    for (let m = 0; m < k; m++) outView.setFloat64(m * frameLen + HEADER, now, true);
    sent += k;
    senderWrite(sender, k * frameLen);
  };

  /** One whole frame; its body starts at `off` in `dv` (the chunk, or the connection's capture). */
  const onFrame = (c: FanConn, type: number, len: number, dv: DataView, off: number, now: number): void => {
    switch (type) {
      case T_BROADCAST_MSG:
        if (c.sender || len !== 4 + o.size) {
          protocolErrors++;
          return;
        }
        c.got++;
        if (measuring) {
          deliveries++;
          hist.record(now - dv.getFloat64(off + 4, true));
        }
        return;
      case T_BROADCAST_ACK: {
        if (!c.sender || len !== 4) {
          protocolErrors++;
          return;
        }
        const r = dv.getUint32(off);
        if (r < recipientsMin) recipientsMin = r;
        if (r > recipientsMax) recipientsMax = r;
        acked++;
        if (measuring) winAcks++;
        return;
      }
      case T_WELCOME:
        if (len !== 6 || c.welcomed) protocolErrors++;
        c.id = dv.getUint32(off);
        if (!c.welcomed) welcomed++;
        c.welcomed = true;
        return;
      default:
        protocolErrors++;
    }
  };

  const onData = (c: FanConn, buf: Uint8Array, now: number): void => {
    const n = buf.length;
    let dv: DataView | null = null;
    let i = 0;
    while (i < n) {
      if (c.inBody) {
        // The rest (or more) of a body that began in an earlier read.
        const take = Math.min(c.len - c.bodyPos, n - i);
        for (let j = c.bodyPos; j < CAPTURE && j < c.bodyPos + take; j++) c.cap[j] = buf[i + j - c.bodyPos]!;
        c.bodyPos += take;
        i += take;
        if (c.bodyPos === c.len) {
          c.inBody = false;
          onFrame(c, c.type, c.len, c.capView, 0, now);
        }
        continue;
      }
      let type: number;
      let len: number;
      if (c.hdrFill === 0 && n - i >= HEADER) {
        type = (buf[i]! << 8) | buf[i + 1]!;
        len = (buf[i + 2]! << 8) | buf[i + 3]!;
        i += HEADER;
      } else {
        c.hdr = ((c.hdr << 8) | buf[i++]!) >>> 0;
        if (++c.hdrFill < HEADER) continue;
        type = c.hdr >>> 16;
        len = c.hdr & 0xffff;
        c.hdr = 0;
        c.hdrFill = 0;
      }
      if (n - i >= len) {
        // Whole body in this read (the common case): read it in place.
        dv ??= new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
        onFrame(c, type, len, dv, i, now);
        i += len;
      } else {
        c.type = type;
        c.len = len;
        c.bodyPos = 0;
        c.inBody = true;
      }
    }
    if (c.sender || lagWaiting) pump();
  };

  // Connect (untimed): receivers first, then the sender; everyone says HELLO.
  const connectStart = performance.now();
  const all: FanConn[] = [];
  let nextIdx = 0;
  const connectOne = async (): Promise<void> => {
    while (nextIdx < R) {
      nextIdx++;
      all.push(await connectFan(new FanConn(false)));
    }
  };
  const connectFan = async (c: FanConn): Promise<FanConn> => {
    const sock = await Bun.connect<FanConn>({
      hostname: o.host,
      port: o.port,
      data: c,
      socket: {
        data(s, buf) {
          onData(s.data, buf, Bun.nanoseconds());
        },
        drain(s) {
          drainSender(s.data);
        },
        close(s) {
          const cc = s.data;
          if (!cc.closed) {
            cc.closed = true;
            if (running) unexpectedCloses++;
          }
          cc.sock = null;
        },
        error(_s, err) {
          if (running) log(`socket error: ${err.message}`);
        },
      },
    });
    sock.setNoDelay(true);
    c.sock = sock;
    return c;
  };
  const connectTimeout = setTimeout(() => {
    log(`fan-out connect/HELLO phase timed out (${all.length}/${R + 1} connected, ${welcomed} welcomed)`);
    process.exit(1);
  }, 60_000);
  try {
    const workers: Promise<void>[] = [];
    for (let w = 0; w < Math.min(o.connectConcurrency, R); w++) workers.push(connectOne());
    await Promise.all(workers);
    receivers.push(...all);
    sender = await connectFan(new FanConn(true));
    all.push(sender);
  } catch (e) {
    log(`connect failed: ${(e as Error).message}`);
    process.exit(1);
  }
  const hello = new Uint8Array(HEADER);
  putHeader(hello, 0, T_HELLO, 0);
  for (const c of all) c.sock!.write(hello);
  while (welcomed < all.length) await Bun.sleep(5);
  clearTimeout(connectTimeout);
  const connectMs = performance.now() - connectStart;
  if (protocolErrors > 0) {
    log(`${protocolErrors} protocol errors during HELLO (expected one WELCOME per connection)`);
  }

  running = true;
  pump();
  await Bun.sleep(o.warmup * 1000);
  hist.reset();
  deliveries = 0;
  winAcks = 0;
  pumps = 0;
  lagLimited = 0;
  protocolErrors = 0;
  const win = windowStart(o.serverPid, o.perfEvents);
  measuring = true;
  announceWindow(o);

  await Bun.sleep(o.duration * 1000);

  measuring = false;
  const msgs = deliveries;
  const w = windowEnd(win, o.serverPid, msgs);
  running = false;
  const sys = perMessage(await perfCounts(win), msgs);
  for (const c of all) {
    c.closed = true;
    c.sock?.end();
  }

  const s = hist.summary(1000); // ns -> µs
  const result = {
    mode: "fanout",
    host: o.host,
    port: o.port,
    protocol: "framed",
    receivers: R,
    window: o.window,
    lag: o.lag,
    size: o.size,
    warmupS: o.warmup,
    connectMs,
    // "messages" = deliveries: BROADCAST_MSG frames received, summed over receivers.
    messages: msgs,
    msgsPerSec: msgs / w.windowS,
    broadcastsPerSec: winAcks / w.windowS,
    /** Send-to-receipt latency of each delivery. */
    rttUs: s,
    recipientsMin: Number.isFinite(recipientsMin) ? recipientsMin : null,
    recipientsMax: Number.isFinite(recipientsMax) ? recipientsMax : null,
    /** % of the sender's send opportunities cut down by the lag bound (receivers behind). */
    lagLimitedPct: pumps > 0 ? (lagLimited / pumps) * 100 : 0,
    serverPid: o.serverPid || null,
    ...w,
    ...sys,
    protocolErrors,
    unexpectedCloses,
  };
  if (o.json) {
    process.stdout.write(JSON.stringify(result) + "\n");
  } else {
    const f = (v: number): string => v.toFixed(1);
    process.stdout.write(
      `fan-out 1 -> ${R} x ${o.size} B, window ${o.window}: ${Math.round(result.msgsPerSec)} deliveries/s ` +
        `(${Math.round(result.broadcastsPerSec)} broadcasts/s, ${result.recipientsMin}-${result.recipientsMax} recipients), ` +
        `latency p50 ${f(s.p50)} p99 ${f(s.p99)} max ${f(s.max)} µs` +
        (w.serverCpuUsPerMsg !== null ? `, server CPU ${w.serverCpuUsPerMsg.toFixed(3)} µs/delivery` : "") +
        (w.serverUserUsPerMsg !== null ? ` (user ${w.serverUserUsPerMsg.toFixed(3)})` : "") +
        `, loadgen CPU ${w.loadgenCpuPct.toFixed(0)}%, lag-limited ${result.lagLimitedPct.toFixed(0)}%` +
        (protocolErrors || unexpectedCloses ? `, ${protocolErrors} protocol errors, ${unexpectedCloses} closes` : "") +
        "\n",
    );
  }
  process.exit(0);
}

// ---------------------------------------------------------------------------------------
// Idle mode

/**
 * --http-get: per connection, the bytes of its one response read so far, and the promise
 * of its completion (a head, then Content-Length bytes of body).
 */
interface IdleHttp {
  got: string;
  done: () => void;
  fail: (e: Error) => void;
}

/** A complete HTTP/1.1 response in `got`? Throws on a status other than 200 or no Content-Length. */
function httpResponseComplete(got: string): boolean {
  const end = got.indexOf("\r\n\r\n");
  if (end < 0) return false;
  const head = got.slice(0, end);
  if (!/^HTTP\/1\.1 200 /.test(head)) throw new Error(`response was not 200: ${head.slice(0, head.indexOf("\r\n"))}`);
  const m = /\r\ncontent-length:\s*(\d+)/i.exec(head);
  if (m === null) throw new Error("response has no Content-Length");
  return got.length - (end + 4) >= Number(m[1]);
}

async function runIdle(o: Options): Promise<void> {
  const socks: Socket<IdleHttp | undefined>[] = [];
  const request = o.httpGet ? `GET ${o.httpGet} HTTP/1.1\r\nHost: ${o.host}\r\n\r\n` : "";
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
        const s = await Bun.connect<IdleHttp | undefined>({
          hostname: o.host,
          port: o.port,
          socket: {
            data(sock, chunk) {
              const h = sock.data;
              if (h === undefined) return;
              // latin1: one char per byte, so lengths are byte counts
              h.got += chunk.toString("latin1");
              try {
                if (httpResponseComplete(h.got)) h.done();
              } catch (e) {
                h.fail(e as Error);
              }
            },
            close(sock) {
              if (!stopping) closedEarly++;
              sock.data?.fail(new Error("closed before its response was complete"));
            },
          },
        });
        if (request !== "") {
          // One request, its whole response read, then the connection is held idle.
          try {
            await new Promise<void>((resolve, reject) => {
              s.data = { got: "", done: resolve, fail: reject };
              s.write(request);
            });
          } catch (e) {
            s.terminate();
            throw e;
          }
          s.data = undefined;
        }
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
else if (opts.fanout) await runFanout(opts);
else await runLoad(opts);
