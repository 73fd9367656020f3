// Well-behaved broadcast load: `broadcasters` framed clients each send a BROADCAST of
// `bodySize` bytes `rate` times a second for `durationMs`; `readers` framed clients only
// read. Every one of them reads everything and checks every BROADCAST_MSG it gets: the
// body must be intact and each sender's sequence numbers must arrive in order, none
// missing. At the end each client must have received exactly what the others sent (the
// server may drop slow consumers, never a client that reads).
//
// Body: u32 broadcaster index, u32 sequence number, then pattern bytes.

import { config, emit, finish, run, sleep } from "../lib/child.ts";
import { FramedClient, type FramedReply } from "../lib/net.ts";
import { summarize, type Summary } from "../lib/stats.ts";
import { Msg, patternBytes } from "../lib/wire.ts";

export interface BroadcastConfig {
  port: number;
  broadcasters: number;
  readers: number;
  /** Broadcasts per second per broadcaster. */
  rate: number;
  bodySize: number;
  durationMs: number;
  /** After the last broadcast: how long the receivers may take to get everything. */
  graceMs: number;
}

export interface BroadcastResult {
  sent: number;
  acked: number;
  /** Receivers (broadcasters + readers) that got exactly what was sent to them. */
  complete: number;
  receivers: number;
  missing: number;
  corrupt: number;
  outOfOrder: number;
  /** Well-behaved clients the server disconnected, or whose request failed. */
  disconnected: number;
  firstProblem: string;
  /** BROADCAST_ACK recipient counts over the run: they rise as clients join, fall as slow consumers are dropped. */
  recipients: Summary;
  /** ms from the first broadcast to the first ACK below the peak count, after the peak (-1: none). */
  firstDropAtMs: number;
  /** ms from the first broadcast to the first ACK, after the peak, whose recipient count is the final one. */
  settledAtMs: number;
  ackRtt: Summary;
  /** ACK round trips at the peak recipient count (slow readers attached) and after they were all dropped. */
  ackRttBeforeDrop: Summary;
  ackRttAfterDrop: Summary;
  bytesReceived: number;
  /** Wall-clock times (Date.now()) of the first broadcast, the first drop and the settling (-1: none), the last ACK. */
  firstBroadcastEpochMs: number;
  firstDropEpochMs: number;
  settledEpochMs: number;
  lastAckEpochMs: number;
  /** Just before each BROADCAST was written: epoch ms (performance.timeOrigin + now), 10 µs resolution, in order. */
  sentEpochMs: number[];
}

const cfg = config<BroadcastConfig>();
const PATTERN = patternBytes(cfg.bodySize, 7);

interface Receiver {
  client: FramedClient;
  index: number; // broadcaster index, -1 for readers
  lastSeq: number[]; // per broadcaster
  got: number;
  bytes: number;
}

run(async () => {
  let problems = 0;
  let firstProblem = "";
  const problem = (what: string) => {
    problems++;
    if (!firstProblem) firstProblem = what;
  };
  let corrupt = 0;
  let outOfOrder = 0;
  let disconnected = 0;

  const receivers: Receiver[] = [];
  const connectOne = async (index: number): Promise<Receiver> => {
    const client = await FramedClient.connect(cfg.port, { timeoutMs: 15_000 });
    const r: Receiver = { client, index, lastSeq: new Array<number>(cfg.broadcasters).fill(-1), got: 0, bytes: 0 };
    client.onPush = (m: FramedReply) => {
      if (m.type !== Msg.BROADCAST_MSG) return problem(`unexpected pushed frame 0x${m.type.toString(16)}`);
      r.bytes += m.body.length + 4;
      // BROADCAST_MSG body: u32 sender id, then our broadcast body.
      const b = m.body.subarray(4);
      if (b.length !== cfg.bodySize) {
        corrupt++;
        return problem(`broadcast of ${b.length} bytes, expected ${cfg.bodySize}`);
      }
      const from = b.readUInt32BE(0);
      const seq = b.readUInt32BE(4);
      if (from >= cfg.broadcasters || b.compare(PATTERN, 8, cfg.bodySize, 8, cfg.bodySize) !== 0) {
        corrupt++;
        return problem(`corrupt broadcast body (from ${from}, seq ${seq})`);
      }
      if (seq !== r.lastSeq[from]! + 1) {
        outOfOrder++;
        problem(`receiver got seq ${seq} from broadcaster ${from} after ${r.lastSeq[from]}`);
      }
      r.lastSeq[from] = seq;
      r.got++;
    };
    client.onEnd = (kind) => {
      if (!finished) {
        disconnected++;
        problem(`a well-behaved client's connection ended (${kind}: ${client.endError})`);
      }
    };
    return r;
  };
  let finished = false;
  for (let i = 0; i < cfg.broadcasters; i++) receivers.push(await connectOne(i));
  for (let i = 0; i < cfg.readers; i++) receivers.push(await connectOne(-1));

  const sent = new Array<number>(cfg.broadcasters).fill(0);
  let acked = 0;
  const recipients: number[] = [];
  const ackRtts: number[] = [];
  const t0 = performance.now();
  const epoch0 = Date.now();
  const ackAt: { at: number; n: number; rtt: number }[] = [];
  const sentAt: number[] = [];
  const body = Buffer.from(PATTERN);
  const broadcaster = async (i: number) => {
    const c = receivers[i]!.client;
    const inflight: Promise<void>[] = [];
    const period = 1000 / cfg.rate;
    let next = t0 + (i * period) / cfg.broadcasters;
    while (next < t0 + cfg.durationMs && c.ended === "open") {
      const wait = next - performance.now();
      if (wait > 0) await sleep(wait);
      next += period;
      const b = Buffer.from(body);
      b.writeUInt32BE(i, 0);
      b.writeUInt32BE(sent[i]!, 4);
      sent[i]!++;
      const start = performance.now();
      sentAt.push(performance.timeOrigin + start);
      const p = c.request(Msg.BROADCAST, b, 30_000).then(
        (r) => {
          if (r.type !== Msg.BROADCAST_ACK || r.body.length !== 4) return problem(`BROADCAST answered 0x${r.type.toString(16)}`);
          const n = r.body.readUInt32BE(0);
          const now = performance.now();
          recipients.push(n);
          ackAt.push({ at: now - t0, n, rtt: now - start });
          ackRtts.push(now - start);
          acked++;
        },
        (e: Error) => problem(`BROADCAST failed: ${e.message}`),
      );
      inflight.push(p);
      // At most 8 unanswered broadcasts per client: a well-behaved sender.
      if (inflight.length >= 8) await inflight.shift();
    }
    await Promise.all(inflight);
  };
  emit("started", { epochMs: epoch0 });
  await Promise.all(Array.from({ length: cfg.broadcasters }, (_, i) => broadcaster(i)));
  const total = sent.reduce((a, b) => a + b, 0);
  const expected = (r: Receiver) => (r.index < 0 ? total : total - sent[r.index]!);
  // Everything was acknowledged; now let the receivers catch up on what is in flight.
  const deadline = performance.now() + cfg.graceMs;
  while (performance.now() < deadline && receivers.some((r) => r.got < expected(r) && r.client.ended === "open")) await sleep(20);
  finished = true;
  let missing = 0;
  let complete = 0;
  for (const r of receivers) {
    const miss = expected(r) - r.got;
    if (miss === 0) complete++;
    else {
      missing += Math.max(0, miss);
      problem(`receiver ${r.index < 0 ? "reader" : `broadcaster ${r.index}`} got ${r.got} of ${expected(r)} broadcasts`);
    }
    r.client.close();
  }
  // ACKs come back in order per broadcaster, not across them: sort by arrival.
  ackAt.sort((a, b) => a.at - b.at);
  const finalN = ackAt.length > 0 ? ackAt[ackAt.length - 1]!.n : 0;
  const peakN = ackAt.reduce((m, a) => Math.max(m, a.n), 0);
  const peakIdx = ackAt.findIndex((a) => a.n === peakN);
  const dropIdx = peakIdx < 0 ? -1 : ackAt.findIndex((a, i) => i > peakIdx && a.n < peakN);
  const settledIdx = dropIdx < 0 ? -1 : ackAt.findIndex((a, i) => i >= dropIdx && a.n === finalN);
  const at = (i: number) => (i < 0 ? -1 : ackAt[i]!.at);
  const epochAt = (i: number) => (i < 0 ? -1 : epoch0 + ackAt[i]!.at);
  const result: BroadcastResult = {
    sent: total,
    acked,
    complete,
    receivers: receivers.length,
    missing,
    corrupt,
    outOfOrder,
    disconnected,
    firstProblem: problems > 0 ? `${firstProblem} (${problems} problems)` : "",
    recipients: summarize(recipients),
    firstDropAtMs: at(dropIdx),
    settledAtMs: at(settledIdx),
    ackRtt: summarize(ackRtts),
    ackRttBeforeDrop: summarize(ackAt.filter((a, i) => a.n === peakN && (dropIdx < 0 || i < dropIdx)).map((a) => a.rtt)),
    ackRttAfterDrop: summarize(ackAt.filter((a, i) => settledIdx >= 0 && i >= settledIdx).map((a) => a.rtt)),
    bytesReceived: receivers.reduce((a, r) => a + r.bytes, 0),
    firstBroadcastEpochMs: epoch0,
    firstDropEpochMs: epochAt(dropIdx),
    settledEpochMs: epochAt(settledIdx),
    lastAckEpochMs: epochAt(ackAt.length - 1),
    sentEpochMs: sentAt.sort((a, b) => a - b).map((x) => Math.round(x * 100) / 100),
  };
  finish(result);
}, cfg.durationMs + cfg.graceMs + 90_000);
