// GET /metrics end to end: the real server with an HTTP and a framed listener, known traffic
// (framed PINGs over a raw socket, HTTP requests with curl), then the exposition parsed by
// the reference Prometheus client's parser (Debian's python3-prometheus-client) and its
// values checked against that traffic, bytes included.

import { afterAll, describe, expect, test } from "bun:test";
import { killAll, run, startServer, type ServerProcess } from "../util/process.ts";
import { connect, readExactly, readToEnd, waitFor } from "../util/tcp.ts";

afterAll(killAll);

/** Debian's interpreter, the one its python3-prometheus-client is installed for (a pyenv shim may come first on PATH). */
const DEBIAN_PYTHON = "/usr/bin/python3";

/** Prints the parsed families as JSON: the reference parser, not ours. */
const PARSE = `
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for f in text_string_to_metric_families(sys.stdin.read()):
    out.append({"name": f.name, "type": f.type, "help": f.documentation,
                "samples": [{"name": s.name, "labels": s.labels, "value": s.value} for s in f.samples]})
print(json.dumps(out))
`;

interface Family {
  name: string;
  type: string;
  help: string;
  samples: { name: string; labels: Record<string, string>; value: number }[];
}

async function parseExposition(text: string): Promise<Family[]> {
  const proc = Bun.spawn([DEBIAN_PYTHON, "-c", PARSE], { stdin: new TextEncoder().encode(text), stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  if (code !== 0) {
    const hint = /No module named .?prometheus_client/.test(err) ? " (apt-get install -y python3-prometheus-client)" : "";
    throw new Error(`the Prometheus parser refused the exposition${hint}: ${err}\n${text}`);
  }
  return JSON.parse(out) as Family[];
}

/** One sample's value; throws when the family or the sample is missing. */
function value(families: Family[], sample: string, labels: Record<string, string> = {}): number {
  for (const f of families) {
    for (const s of f.samples) {
      if (s.name !== sample) continue;
      if (Object.entries(labels).every(([k, v]) => s.labels[k] === v) && Object.keys(s.labels).length === Object.keys(labels).length) return s.value;
    }
  }
  throw new Error(`no sample ${sample}${JSON.stringify(labels)}`);
}

const CURL_W = "%{http_code} %{size_request} %{size_header} %{size_download}\\n";

interface CurlResult {
  status: number;
  sent: number;
  received: number;
}

/** curl with one line per transfer (give each URL its `-o`): status, bytes sent, bytes received (head + body). */
async function curl(args: string[]): Promise<CurlResult[]> {
  const r = await run(["curl", "-sS", "-w", CURL_W, ...args]);
  if (r.code !== 0) throw new Error(`curl ${args.join(" ")}: exit ${r.code}: ${r.stderr}`);
  return r.stdout.trim().split("\n").map((l) => {
    const [status, sent, head, body] = l.split(" ").map(Number) as [number, number, number, number];
    return { status, sent, received: head + body };
  });
}

describe("GET /metrics", () => {
  let server: ServerProcess;
  let httpPort = 0;
  let framedPort = 0;

  test("start with an HTTP and a framed listener", async () => {
    server = await startServer(["--listen", "http:0", "--listen", "framed:0"]);
    await waitFor(() => server.stdout().split("\n").filter((l) => l.includes(" listening on ")).length === 2, 5000, "two listening lines");
    for (const m of server.stdout().matchAll(/listening on [0-9.]+:(\d+) \((\w+)\)/g)) {
      if (m[2] === "http") httpPort = Number(m[1]);
      if (m[2] === "framed") framedPort = Number(m[1]);
    }
    expect(httpPort).toBeGreaterThan(0);
    expect(framedPort).toBeGreaterThan(0);
  });

  test("its values match the traffic sent, parsed by the reference parser", async () => {
    let bytesIn = 0;
    let bytesOut = 0;

    // N framed PINGs with an 8-byte body in one write; N PONGs with the same body come back.
    const N = 37;
    const ping = Buffer.from([0x00, 0x03, 0x00, 0x08, 1, 2, 3, 4, 5, 6, 7, 8]);
    const s = await connect(framedPort);
    s.write(Buffer.concat(Array.from({ length: N }, () => ping)));
    const pongs = await readExactly(s, N * ping.length, 5000, "PONGs");
    expect(pongs.subarray(0, 4)).toEqual(Buffer.from([0x00, 0x04, 0x00, 0x08]));
    bytesIn += N * ping.length;
    bytesOut += pongs.length;
    s.end();

    const framedIn = bytesIn, framedOut = bytesOut;

    // A WebSocket on /ws/echo: the handshake is HTTP; one masked text frame and a close after it are ws.
    const mask = [1, 2, 3, 4];
    const masked = (op: number, payload: number[]) => Buffer.from([0x80 | op, 0x80 | payload.length, ...mask, ...payload.map((b, i) => b ^ mask[i & 3]!)]);
    const upgrade = `GET /ws/echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`;
    const wsFrames = Buffer.concat([masked(1, [0x68, 0x69]), masked(8, [0x03, 0xe8])]);
    const w = await connect(httpPort, { allowHalfOpen: true });
    w.write(Buffer.concat([Buffer.from(upgrade), wsFrames]));
    const { data: wsReply } = await readToEnd(w, 5000);
    const headEnd = wsReply.indexOf("\r\n\r\n") + 4;
    expect(wsReply.subarray(headEnd)).toEqual(Buffer.from([0x81, 2, 0x68, 0x69, 0x88, 2, 0x03, 0xe8])); // the echo, then the close answered
    w.destroy();
    bytesIn += upgrade.length + wsFrames.length;
    bytesOut += wsReply.length;

    // HTTP requests with known statuses on one keep-alive connection.
    const base = `http://127.0.0.1:${httpPort}`;
    const gets = ["/plaintext", "/plaintext", "/plaintext", "/json", "/nope", "/also-missing"].flatMap((p) => ["-o", "/dev/null", base + p]);
    const traffic = await curl([...gets, "--next", "-sS", "-o", "/dev/null", "-w", CURL_W, "-X", "POST", "--data", "x", `${base}/stats`]);
    expect(traffic.map((r) => r.status)).toEqual([200, 200, 200, 200, 404, 404, 405]);
    for (const r of traffic) {
      bytesIn += r.sent;
      bytesOut += r.received;
    }

    // Fetch until both clients' connections are seen closed (the server learns of it
    // asynchronously); each earlier /metrics answer counts as a 2xx response and as bytes.
    let fetches = 0;
    let text = "";
    let families: Family[] = [];
    await waitFor(async () => {
      const r = await run(["curl", "-sS", "-D", "-", "-w", `\\n#curl ${CURL_W}`, `${base}/metrics`]);
      if (r.code !== 0) throw new Error(`curl /metrics: ${r.stderr}`);
      fetches++;
      const m = /\n#curl (\d+) (\d+) (\d+) (\d+)\n$/.exec(r.stdout)!;
      bytesIn += Number(m[2]);
      const head = r.stdout.slice(0, r.stdout.indexOf("\r\n\r\n"));
      expect(head).toMatch(/^content-type: text\/plain; version=0\.0\.4; charset=utf-8\r?$/im);
      text = r.stdout.slice(head.length + 4, m.index);
      families = await parseExposition(text);
      const done = value(families, "bunpoll_connections_open") === 1;
      if (!done) bytesOut += Number(m[3]) + Number(m[4]);
      return done;
    }, 10_000, "the clients' connections closed", 50);

    // Connections: the framed client, the WebSocket, curl's keep-alive connection, one per /metrics fetch.
    const accepted = 3 + fetches;
    expect(value(families, "bunpoll_connections_accepted_total")).toBe(accepted);
    expect(value(families, "bunpoll_connections_open")).toBe(1);
    const closed = families.find((f) => f.name === "bunpoll_connections_closed")!;
    expect(closed.type).toBe("counter");
    const byReason = Object.fromEntries(closed.samples.map((x) => [x.labels.reason, x.value]));
    // Every client closed first: the server saw FIN ("end"), or answered it and closed ("local").
    expect(byReason.end! + byReason.local!).toBe(accepted - 1);
    expect(Object.values(byReason).reduce((a, b) => a + b, 0)).toBe(accepted - 1);
    expect(Object.keys(byReason)).toContain("slow-consumer"); // listed at 0 before any happens

    // Bytes: everything the clients sent; everything they received but this last answer.
    expect(value(families, "bunpoll_received_bytes_total")).toBe(bytesIn);
    expect(value(families, "bunpoll_sent_bytes_total")).toBe(bytesOut);

    // By protocol: each listener's bytes, ws after the Upgrade; http requests and ws messages.
    const httpIn = bytesIn - framedIn - wsFrames.length, httpOut = bytesOut - framedOut - 8;
    expect(value(families, "bunpoll_protocol_received_bytes_total", { protocol: "framed" })).toBe(framedIn);
    expect(value(families, "bunpoll_protocol_sent_bytes_total", { protocol: "framed" })).toBe(framedOut);
    expect(value(families, "bunpoll_protocol_received_bytes_total", { protocol: "ws" })).toBe(wsFrames.length);
    expect(value(families, "bunpoll_protocol_sent_bytes_total", { protocol: "ws" })).toBe(8);
    expect(value(families, "bunpoll_protocol_received_bytes_total", { protocol: "http" })).toBe(httpIn);
    expect(value(families, "bunpoll_protocol_sent_bytes_total", { protocol: "http" })).toBe(httpOut);
    expect(value(families, "bunpoll_protocol_messages_received_total", { protocol: "http" })).toBe(1 + 7 + fetches);
    expect(value(families, "bunpoll_protocol_messages_sent_total", { protocol: "http" })).toBe(1 + 7 + fetches - 1);
    expect(value(families, "bunpoll_protocol_messages_received_total", { protocol: "ws" })).toBe(1);
    expect(value(families, "bunpoll_protocol_messages_sent_total", { protocol: "ws" })).toBe(1);

    // Messages by kind: only the framed traffic counts messages.
    expect(value(families, "bunpoll_messages_received_total", { kind: "ping" })).toBe(N);
    expect(value(families, "bunpoll_messages_sent_total", { kind: "pong" })).toBe(N);
    expect(families.find((f) => f.name === "bunpoll_messages_received")!.samples).toHaveLength(1);

    // HTTP responses by status class.
    expect(value(families, "bunpoll_http_responses_total", { class: "2xx" })).toBe(4 + fetches - 1);
    expect(value(families, "bunpoll_http_responses_total", { class: "4xx" })).toBe(3);
    expect(value(families, "bunpoll_http_responses_total", { class: "1xx" })).toBe(1); // the 101
    for (const c of ["3xx", "5xx"]) expect(value(families, "bunpoll_http_responses_total", { class: c })).toBe(0);

    // The latency histogram: cumulative buckets in seconds up to +Inf, one count per PING.
    const h = families.find((f) => f.name === "bunpoll_message_processing_seconds")!;
    expect(h.type).toBe("histogram");
    const buckets = h.samples.filter((x) => x.name.endsWith("_bucket"));
    const les = buckets.map((b) => (b.labels.le === "+Inf" ? Infinity : Number(b.labels.le)));
    expect(les.at(-1)).toBe(Infinity);
    expect(les).toEqual([...les].sort((a, b) => a - b));
    const counts = buckets.map((b) => b.value);
    expect(counts).toEqual([...counts].sort((a, b) => a - b));
    expect(counts.at(-1)).toBe(N);
    expect(value(families, "bunpoll_message_processing_seconds_count")).toBe(N);
    const sum = value(families, "bunpoll_message_processing_seconds_sum");
    expect(sum).toBeGreaterThan(0);
    expect(sum).toBeLessThan(N * 5); // seconds, not nanoseconds

    // Every family has HELP and TYPE; counters end in _total.
    for (const line of text.split("\n").filter((l) => l.startsWith("# TYPE "))) {
      const [, , name, type] = line.split(" ");
      expect(text).toContain(`# HELP ${name} `);
      expect(name).toStartWith("bunpoll_");
      if (type === "counter") expect(name).toEndWith("_total");
    }
  });

  test("stops on SIGTERM", async () => {
    expect(await server.stop("SIGTERM")).toBe(0);
  });
});
