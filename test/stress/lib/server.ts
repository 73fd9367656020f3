// The real server as a child process: `bun src/server.ts --listen PROTO:0 ...`, started
// through `sh -c 'ulimit -n N; exec ...'` so that the PID we hold is the server's own and
// its fd limit is what the scenario asks for. Every server started here is remembered and
// killed by killAllServers() (the runner calls it in `finally` and on SIGINT).

import { resolve } from "node:path";
import type { Subprocess } from "bun";
import { cpuMs, fdCount, rssBytes } from "./proc.ts";

/** The repository root (this file is test/stress/lib/server.ts). */
export const ROOT = resolve(import.meta.dir, "../../..");
export const BUN = process.versions.bun ? process.execPath : resolve(ROOT, "node_modules/.bin/bun");

export type Protocol = "framed" | "json" | "line" | "echo";

const LISTENING = /^bunpoll \S+ listening on (?:\[[0-9a-fA-F:.]+\]|[0-9.]+):(\d+) \((\w+)\), pid (\d+)$/gm;

const live = new Set<Subprocess>();

/** Collects a child's output as text, with a line counter for patterns of interest. */
class TextSink {
  text = "";
  readonly done: Promise<void>;
  private readonly waiters = new Set<() => void>();
  /** Keep at most this many characters (the server may log thousands of lines). */
  constructor(stream: ReadableStream<Uint8Array>, private readonly keep = 4 * 1024 * 1024) {
    this.done = (async () => {
      const dec = new TextDecoder();
      for await (const chunk of stream) {
        this.text += dec.decode(chunk, { stream: true });
        if (this.text.length > this.keep) this.text = this.text.slice(this.text.length - this.keep / 2);
        for (const w of this.waiters) w();
      }
      this.text += dec.decode();
      for (const w of this.waiters) w();
    })().catch(() => {});
  }
  onChange(w: () => void): () => void {
    this.waiters.add(w);
    return () => this.waiters.delete(w);
  }
}

export interface ServerOptions {
  /** One entry per listener, e.g. ["framed", "json"]; each gets a free port. */
  listen: Protocol[];
  /** More server flags, e.g. ["--frame-timeout", "3"]. */
  args?: string[];
  /** `ulimit -n` for the server (default: inherit). */
  fdLimit?: number;
  startTimeoutMs?: number;
}

export class ServerProcess {
  readonly ports: Partial<Record<Protocol, number>> = {};
  exitCode: number | null = null;
  signal: string | null = null;
  readonly exited: Promise<number>;
  private readonly out: TextSink;
  private readonly err: TextSink;

  constructor(readonly proc: Subprocess<"ignore", "pipe", "pipe">, readonly argv: string[]) {
    this.out = new TextSink(proc.stdout);
    this.err = new TextSink(proc.stderr, 16 * 1024 * 1024);
    this.exited = proc.exited.then((code) => {
      this.exitCode = code;
      this.signal = proc.signalCode === null ? null : String(proc.signalCode);
      return code;
    });
  }

  get pid(): number {
    return this.proc.pid;
  }

  port(p: Protocol): number {
    const n = this.ports[p];
    if (n === undefined) throw new Error(`server has no ${p} listener`);
    return n;
  }

  stdout(): string {
    return this.out.text;
  }

  stderr(): string {
    return this.err.text;
  }

  /** Lines of stderr matching `re`. */
  stderrLines(re: RegExp): string[] {
    return this.err.text.split("\n").filter((l) => re.test(l));
  }

  alive(): boolean {
    return this.exitCode === null && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  rss(): number {
    return rssBytes(this.pid);
  }

  fds(): number {
    return fdCount(this.pid);
  }

  cpuMs(): number {
    return cpuMs(this.pid);
  }

  /** Sends `signal`; waits for the exit (SIGKILL after timeoutMs). Returns the exit code, null if killed. */
  async stop(signal: NodeJS.Signals = "SIGTERM", timeoutMs = 15_000): Promise<number | null> {
    if (this.alive()) this.proc.kill(signal);
    const timer = setTimeout(() => this.proc.kill("SIGKILL"), timeoutMs);
    try {
      const code = await this.exited;
      await Promise.race([Promise.all([this.out.done, this.err.done]), Bun.sleep(1000)]);
      return this.proc.signalCode === null ? code : null;
    } finally {
      clearTimeout(timer);
    }
  }

  async waitListening(count: number, ms: number): Promise<void> {
    const deadline = performance.now() + ms;
    for (;;) {
      const found = [...this.out.text.matchAll(LISTENING)];
      if (found.length >= count) {
        for (const m of found) {
          if (Number(m[3]) !== this.pid) throw new Error(`listening line names pid ${m[3]}, child is ${this.pid}`);
          this.ports[m[2] as Protocol] = Number(m[1]);
        }
        return;
      }
      if (!this.alive()) throw new Error(`server exited (${this.proc.exitCode}) before listening; stderr: ${this.err.text.slice(-2000)}`);
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`server did not print ${count} listening line(s) within ${ms} ms; stdout: ${this.out.text}`);
      await new Promise<void>((r) => {
        const t = setTimeout(done, Math.min(left, 100));
        const off = this.out.onChange(done);
        function done() {
          clearTimeout(t);
          off();
          r();
        }
      });
    }
  }
}

export async function startServer(opts: ServerOptions): Promise<ServerProcess> {
  const argv = ["src/server.ts", ...opts.listen.flatMap((p) => ["--listen", `${p}:0`]), ...(opts.args ?? [])];
  const limit = opts.fdLimit !== undefined ? `ulimit -n ${opts.fdLimit}; ` : "";
  // exec: the shell becomes the server, so proc.pid is the server's PID.
  const proc = Bun.spawn(["sh", "-c", `${limit}exec "$0" "$@"`, BUN, ...argv], {
    cwd: ROOT,
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  live.add(proc);
  proc.exited.finally(() => live.delete(proc));
  const s = new ServerProcess(proc, argv);
  try {
    await s.waitListening(opts.listen.length, opts.startTimeoutMs ?? 20_000);
  } catch (e) {
    proc.kill("SIGKILL");
    await proc.exited;
    throw e;
  }
  return s;
}

export function killAllServers(): void {
  for (const p of live) p.kill("SIGKILL");
}
