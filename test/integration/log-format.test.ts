// --log-format json end to end: the real server prints every line (listening, a connection
// closed by the frame timeout, the signal and the stop) as one JSON object with time, level,
// event and the fields known for it; text stays the default.

import { afterAll, describe, expect, test } from "bun:test";
import type { Subprocess } from "bun";
import { bunPath, ROOT, runServerCli } from "../util/process.ts";
import { connect, readExactly, readToEnd, waitFor } from "../util/tcp.ts";

const children: Subprocess[] = [];
afterAll(async () => {
  for (const c of children) {
    if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
    await c.exited;
  }
});

/** Collects a stream's text as it arrives. */
function collect(stream: ReadableStream<Uint8Array>): { text: string; done: Promise<void> } {
  const out = { text: "", done: Promise.resolve() };
  out.done = (async () => {
    const dec = new TextDecoder();
    for await (const chunk of stream) out.text += dec.decode(chunk, { stream: true });
    out.text += dec.decode();
  })();
  return out;
}

interface Entry {
  time: string;
  level: string;
  event: string;
  message: string;
  [field: string]: unknown;
}

/** Every line parsed as JSON with the fields each must have; throws naming the first bad line. */
function entries(text: string, stream: string): Entry[] {
  const lines = text.split("\n");
  expect(lines.pop()).toBe(""); // ends with a newline
  return lines.map((line) => {
    let e: Entry;
    try {
      e = JSON.parse(line) as Entry;
    } catch {
      throw new Error(`${stream} line is not JSON: ${JSON.stringify(line)}`);
    }
    expect(new Date(e.time).toISOString()).toBe(e.time);
    expect(["info", "warn", "error"]).toContain(e.level);
    expect(e.event).toMatch(/^[a-z_]+$/);
    expect(typeof e.message).toBe("string");
    return e;
  });
}

describe("--log-format json", () => {
  test("listening, a frame-timeout close, SIGTERM and the stop: one JSON object per line", async () => {
    const proc = Bun.spawn([bunPath, "src/server.ts", "--log-format", "json", "--listen", "framed:0", "--listen", "http:0", "--frame-timeout", "0.2"], {
      cwd: ROOT, stdin: "ignore", stdout: "pipe", stderr: "pipe",
    });
    children.push(proc);
    const out = collect(proc.stdout);
    const err = collect(proc.stderr);
    await waitFor(() => out.text.split("\n").length > 2, 20_000, "two listening lines");
    const listening = entries(out.text, "stdout");
    expect(listening.map((e) => [e.event, e.level, e.protocol])).toEqual([["listening", "info", "framed"], ["listening", "info", "http"]]);
    const framed = listening[0]!;
    expect(framed.pid).toBe(proc.pid);
    expect(framed.message).toBe(`bunpoll ${framed.version} listening on ${framed.address} (framed), pid ${proc.pid}`);
    const port = Number(/:(\d+)$/.exec(framed.address as string)![1]);

    // HELLO tells us our connection id; then half a frame, which the frame timeout closes.
    const s = await connect(port);
    const localPort = s.localPort;
    s.write(Buffer.from([0x00, 0x01, 0x00, 0x00]));
    const welcome = await readExactly(s, 10, 5000, "WELCOME");
    const id = welcome.readUInt32BE(4);
    s.write(Buffer.from([0x00, 0x03, 0x00, 0x10, 0x61, 0x62]));
    const { ended } = await readToEnd(s, 5000, "the frame-timeout close");
    expect(ended).toBe(true);
    await waitFor(() => err.text.includes("frame_timeout"), 5000, "the frame_timeout line");

    proc.kill("SIGTERM");
    expect(await proc.exited).toBe(0);
    await Promise.all([out.done, err.done]);

    const logged = entries(err.text, "stderr");
    const timeout = logged.find((e) => e.event === "frame_timeout")!;
    expect(timeout).toMatchObject({ level: "warn", connection: id, reason: "frame-timeout", remote: `127.0.0.1:${localPort}` });
    expect(timeout.message).toBe(`connection ${id}: closed: a frame stayed incomplete for 200 ms`);
    expect(logged.find((e) => e.event === "stopping")).toMatchObject({ level: "info", signal: "SIGTERM", connections: 0 });
    expect(logged.find((e) => e.event === "stopped")).toMatchObject({ level: "info", connections: 1, forced: 0 });
    expect(logged.map((e) => e.event)).toEqual(["frame_timeout", "stopping", "stopped"]);
    expect(entries(out.text, "stdout")).toHaveLength(2);
  });

  test("a bad flag is a JSON line too, exit 2", async () => {
    const r = await runServerCli(["--log-format", "json", "--port", "abc"]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe("");
    const [e, ...rest] = entries(r.stderr, "stderr");
    expect(rest).toEqual([]);
    expect(e).toMatchObject({ level: "error", event: "usage_error" });
    expect(e!.message).toStartWith('--port: expected an integer, got "abc"');
  });

  test("text stays the default: the same lines as before, no JSON", async () => {
    const r = await runServerCli(["--log-format", "text", "--port", "abc"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toStartWith('bunpoll: --port: expected an integer, got "abc"; try ');
    const bad = await runServerCli(["--log-format", "xml"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--log-format: "xml" is not one of text, json');
  });
});
