// The stats in the Prometheus text exposition format, version 0.0.4: what `GET /metrics`
// answers. Built from a StatsSnapshot plus the latency histogram itself (the snapshot keeps
// only its percentiles) and, from the HTTP listeners, requests per status class as plain
// numbers: this module knows no protocol.
//
// Messages are labelled by kind, not by protocol: the protocols share one vocabulary and one
// set of counters (a json "ping" and a framed PING are the same kind). Bytes are the
// reactors' totals over all listeners.

import { bucketIndex, type LatencyHistogram } from "./histogram.ts";
import type { StatsSnapshot } from "./snapshot.ts";

export const PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/**
 * Upper bounds (seconds) of the latency histogram's `le` buckets: 1-2.5-5 steps from 1 µs
 * to 10 s. The recording histogram is finer (at most 0.8% wide per bucket); a bound's count
 * holds every recorded bucket that starts at or below it, so values up to 0.8% above a bound
 * may count under it.
 */
export const LATENCY_BOUNDS_SECONDS: readonly number[] = [
  1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];

export interface PrometheusInput {
  snapshot: StatsSnapshot;
  /** The per-message processing-time histogram (ns) the snapshot summarizes. */
  latency: LatencyHistogram;
  /**
   * HTTP responses per status class, index 1..5 for 1xx..5xx (HttpApp.byClass), summed over
   * the HTTP listeners. Omitted: no HTTP metrics.
   */
  httpByClass?: ArrayLike<number>;
  /**
   * Per protocol: its listeners' bytes, and its messages where the protocol counts them (http:
   * requests in, responses out; ws: messages in and sent). Omitted: no per-protocol metrics.
   */
  byProtocol?: ReadonlyMap<string, { bytesIn: number; bytesOut: number; messagesIn: number; messagesOut: number }>;
}

/** The whole exposition: HELP and TYPE lines, then the samples, per metric family. */
export function formatPrometheus(input: PrometheusInput): string {
  const s = input.snapshot;
  const out: string[] = [];
  const family = (name: string, type: "counter" | "gauge" | "histogram", help: string) => {
    out.push(`# HELP ${name} ${escapeHelp(help)}`, `# TYPE ${name} ${type}`);
  };
  const sample = (name: string, value: number, labels?: Record<string, string>) => {
    out.push(`${name}${formatLabels(labels)} ${formatValue(value)}`);
  };
  const single = (name: string, type: "counter" | "gauge", help: string, value: number) => {
    family(name, type, help);
    sample(name, value);
  };

  single("bunpoll_start_time_seconds", "gauge", "Start time of the server, seconds since the Unix epoch.", s.startedAtMs / 1000);
  single("bunpoll_uptime_seconds", "gauge", "Seconds since the server started.", s.uptimeSeconds);

  single("bunpoll_connections_open", "gauge", "Connections open now, all listeners.", s.connections.active);
  single("bunpoll_connections_accepted_total", "counter", "Connections accepted since start, all listeners.", s.connections.total);
  family("bunpoll_connections_closed_total", "counter", "Connections closed since start, by reason.");
  for (const [reason, n] of Object.entries(s.closeReasons)) sample("bunpoll_connections_closed_total", n, { reason });
  single("bunpoll_connections_rejected_full_total", "counter", "Connections accepted past the connection limit, told so and closed.", s.io.rejectedFull);
  single("bunpoll_accept_errors_total", "counter", "Failed accepts.", s.io.acceptErrors);
  single("bunpoll_hub_clients", "gauge", "Clients registered with the hub (reachable by broadcast and send).", s.connections.clients);

  single("bunpoll_received_bytes_total", "counter", "Bytes received, all listeners.", s.bytes.in);
  single("bunpoll_sent_bytes_total", "counter", "Bytes sent, all listeners.", s.bytes.out);
  single("bunpoll_read_calls_total", "counter", "recv calls that returned data.", s.io.readCalls);
  single("bunpoll_write_calls_total", "counter", "send and sendmsg calls.", s.io.writeCalls);

  const byProtocol = input.byProtocol;
  if (byProtocol !== undefined) {
    family("bunpoll_protocol_received_bytes_total", "counter", "Bytes received, by protocol (ws: after the Upgrade; the handshake counts as http).");
    for (const [protocol, t] of byProtocol) sample("bunpoll_protocol_received_bytes_total", t.bytesIn, { protocol });
    family("bunpoll_protocol_sent_bytes_total", "counter", "Bytes sent, by protocol (ws: after the Upgrade).");
    for (const [protocol, t] of byProtocol) sample("bunpoll_protocol_sent_bytes_total", t.bytesOut, { protocol });
    family("bunpoll_protocol_messages_received_total", "counter", "Messages received, by protocol: http requests, ws messages (framed, json and line count theirs by kind, below).");
    for (const [protocol, t] of byProtocol) if (protocol === "http" || protocol === "ws") sample("bunpoll_protocol_messages_received_total", t.messagesIn, { protocol });
    family("bunpoll_protocol_messages_sent_total", "counter", "Messages sent, by protocol: http responses, ws messages sent with send() (publishes are in the bytes).");
    for (const [protocol, t] of byProtocol) if (protocol === "http" || protocol === "ws") sample("bunpoll_protocol_messages_sent_total", t.messagesOut, { protocol });
  }

  family("bunpoll_messages_received_total", "counter", "Messages received by kind (framed, json and line protocols share the kinds); kinds not seen yet are absent.");
  for (const k of s.messages.byKind) if (k.in !== 0) sample("bunpoll_messages_received_total", k.in, { kind: k.name });
  family("bunpoll_messages_sent_total", "counter", "Messages sent by kind (framed, json and line protocols share the kinds); kinds not sent yet are absent.");
  for (const k of s.messages.byKind) if (k.out !== 0) sample("bunpoll_messages_sent_total", k.out, { kind: k.name });
  family("bunpoll_protocol_errors_total", "counter", "Protocol errors answered, by error name; errors not seen yet are absent.");
  for (const e of s.errors.byCode) sample("bunpoll_protocol_errors_total", e.count, { error: e.name });

  single("bunpoll_high_water_crossings_total", "counter", "Writes that took a connection's queued output to its high-water mark.", s.backpressure.highWaterCrossings);
  single("bunpoll_paused_reads_total", "counter", "Times reading from a connection paused because of its queued output.", s.backpressure.pausedReads);
  single("bunpoll_slow_consumers_dropped_total", "counter", "Connections closed because their queued output passed the limit.", s.backpressure.slowConsumersDropped);

  if (input.httpByClass !== undefined) {
    const c = input.httpByClass;
    family("bunpoll_http_responses_total", "counter", "HTTP responses written, by status class.");
    for (let k = 1; k <= 5; k++) sample("bunpoll_http_responses_total", c[k] ?? 0, { class: `${k}xx` });
  }

  if (s.workers !== undefined) {
    family("bunpoll_worker_connections_open", "gauge", "Connections open now, per worker thread.");
    for (const w of s.workers) sample("bunpoll_worker_connections_open", w.connections, { worker: String(w.worker) });
    family("bunpoll_worker_hub_clients", "gauge", "Hub clients per worker thread.");
    for (const w of s.workers) sample("bunpoll_worker_hub_clients", w.clients, { worker: String(w.worker) });
    family("bunpoll_worker_messages_received_total", "counter", "Messages received per worker thread (as last published, a few times a second).");
    for (const w of s.workers) sample("bunpoll_worker_messages_received_total", w.messagesIn, { worker: String(w.worker) });
    family("bunpoll_worker_messages_sent_total", "counter", "Messages sent per worker thread (as last published, a few times a second).");
    for (const w of s.workers) sample("bunpoll_worker_messages_sent_total", w.messagesOut, { worker: String(w.worker) });
  }

  family("bunpoll_message_processing_seconds", "histogram", "Time to handle one message, its replies queued (framed, json and line protocols).");
  const h = input.latency;
  for (const [le, n] of cumulativeBuckets(h, LATENCY_BOUNDS_SECONDS)) {
    sample("bunpoll_message_processing_seconds_bucket", n, { le: formatValue(le) });
  }
  sample("bunpoll_message_processing_seconds_bucket", h.count, { le: "+Inf" });
  sample("bunpoll_message_processing_seconds_sum", h.sum / 1e9);
  sample("bunpoll_message_processing_seconds_count", h.count);
  return out.join("\n") + "\n";
}

/**
 * [bound, count of values at or below it] for each bound (seconds, ascending), in one pass
 * over the histogram's buckets (a bucket counts under the first bound at or above its
 * lowest value, see LATENCY_BOUNDS_SECONDS).
 */
export function cumulativeBuckets(h: LatencyHistogram, boundsSeconds: readonly number[]): [number, number][] {
  const out: [number, number][] = [];
  const counts = h.counts;
  let i = 0;
  let seen = 0;
  for (const le of boundsSeconds) {
    const last = bucketIndex(Math.floor(le * 1e9));
    for (; i <= last && i < counts.length; i++) seen += counts[i]!;
    out.push([le, seen]);
  }
  return out;
}

/** `{a="x",b="y"}`, or "" without labels. */
function formatLabels(labels?: Record<string, string>): string {
  if (labels === undefined) return "";
  const parts: string[] = [];
  for (const [k, v] of Object.entries(labels)) parts.push(`${k}="${escapeLabelValue(v)}"`);
  return `{${parts.join(",")}}`;
}

/** Label values escape backslash, double quote and newline (the format's three escapes). */
export function escapeLabelValue(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

/** HELP text escapes backslash and newline. */
function escapeHelp(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
}

/** Go's ParseFloat reads JavaScript's number text, except the infinities and NaN. */
function formatValue(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return String(v);
}
