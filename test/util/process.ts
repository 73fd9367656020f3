// Starts the real bunpoll server (or any bunpoll CLI) as a child process, for black-box
// tests. Every process started here is remembered; call killAll() in afterAll so that a
// failing test never leaves a server running.

import { readdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import type { Subprocess } from "bun";
import { waitFor } from "./tcp.ts";

/** The repository root (this file is test/util/process.ts). */
export const ROOT = resolve(import.meta.dir, "../..");

/** The bun binary running the tests; the pinned one in node_modules if that is not bun. */
export const bunPath: string = process.versions.bun ? process.execPath : join(ROOT, "node_modules/.bin/bun");

const live = new Set<Subprocess>();

/** Collects a child's output stream into a string as it arrives. */
class StreamText {
  text = "";
  private waiters: (() => void)[] = [];
  readonly done: Promise<void>;
  constructor(stream: ReadableStream<Uint8Array>) {
    this.done = (async () => {
      const dec = new TextDecoder();
      for await (const chunk of stream) {
        this.text += dec.decode(chunk, { stream: true });
        for (const w of this.waiters.splice(0)) w();
      }
      this.text += dec.decode();
      for (const w of this.waiters.splice(0)) w();
    })().catch(() => {});
  }
  /** Resolves once `re` matches the text so far; rejects at EOF or after ms. */
  async waitFor(re: RegExp, ms: number, what: string): Promise<RegExpMatchArray> {
    const deadline = performance.now() + ms;
    let eof = false;
    this.done.then(() => (eof = true));
    for (;;) {
      const m = this.text.match(re);
      if (m) return m;
      if (eof) throw new Error(`${what}: stream ended without a match for ${re}; output: ${JSON.stringify(this.text)}`);
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`${what}: no match for ${re} within ${ms} ms; output: ${JSON.stringify(this.text)}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, Math.min(left, 200));
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }
}

export const LISTENING_RE = /^bunpoll (\S+) listening on (\[[0-9a-fA-F:.]+\]|[0-9.]+):(\d+) \(([\w+]+)\), pid (\d+)$/m;

export interface ServerProcess {
  readonly proc: Subprocess<"ignore", "pipe", "pipe">;
  readonly pid: number;
  /** Host as printed, brackets removed for IPv6. */
  readonly host: string;
  readonly port: number;
  readonly protocol: string;
  readonly version: string;
  /** The full listening line. */
  readonly line: string;
  stdout(): string;
  stderr(): string;
  /** Number of open fds of the server (/proc/PID/fd). */
  fdCount(): number;
  /** Resident set size in bytes (/proc/PID/status VmRSS). */
  rss(): number;
  /** User + system CPU time used so far, in ms (/proc/PID/stat, 100 Hz ticks). */
  cpuMs(): number;
  /** Sends `signal` and waits for the exit; returns the exit code (SIGKILL after timeoutMs). */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<number | null>;
  /** Exit code once exited. */
  readonly exited: Promise<number>;
  isAlive(): boolean;
}

export interface StartOptions {
  /** Executable and leading args; default [bunPath, "src/server.ts"]. */
  command?: string[];
  timeoutMs?: number;
  /** Extra environment variables for the child. */
  env?: Record<string, string>;
}

/**
 * Starts the server with `args` (add "--port", "0" yourself or use startEchoServer) and
 * waits for its listening line.
 */
export async function startServer(args: string[], opts: StartOptions = {}): Promise<ServerProcess> {
  const command = opts.command ?? [bunPath, "src/server.ts"];
  const proc = Bun.spawn([...command, ...args], {
    cwd: ROOT,
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
    env: opts.env ? { ...process.env, ...opts.env } : undefined,
  });
  live.add(proc);
  proc.exited.finally(() => live.delete(proc));
  const out = new StreamText(proc.stdout);
  const err = new StreamText(proc.stderr);
  let m: RegExpMatchArray;
  try {
    m = await out.waitFor(LISTENING_RE, opts.timeoutMs ?? 20_000, `server ${args.join(" ")}`);
  } catch (e) {
    proc.kill("SIGKILL");
    await proc.exited;
    await err.done;
    throw new Error(`${(e as Error).message}; stderr: ${JSON.stringify(err.text)}`);
  }
  const pid = Number(m[5]);
  if (pid !== proc.pid) throw new Error(`listening line names pid ${pid}, child is ${proc.pid}`);
  const rawHost = m[2]!;
  const exited = proc.exited;
  let exitCode: number | null = null;
  exited.then((c) => (exitCode = c));
  return {
    proc,
    pid,
    host: rawHost.startsWith("[") ? rawHost.slice(1, -1) : rawHost,
    port: Number(m[3]),
    protocol: m[4]!,
    version: m[1]!,
    line: m[0],
    stdout: () => out.text,
    stderr: () => err.text,
    fdCount: () => readdirSync(`/proc/${pid}/fd`).length,
    rss: () => {
      const status = readFileSync(`/proc/${pid}/status`, "utf8");
      const kb = /^VmRSS:\s+(\d+) kB$/m.exec(status);
      if (!kb) throw new Error(`no VmRSS in /proc/${pid}/status`);
      return Number(kb[1]) * 1024;
    },
    cpuMs: () => {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" "); // fields from 3 (state) on
      return (Number(f[11]) + Number(f[12])) * 10; // utime, stime (fields 14, 15)
    },
    async stop(signal: NodeJS.Signals = "SIGTERM", timeoutMs = 15_000) {
      if (exitCode !== null) return exitCode;
      proc.kill(signal);
      const timer = setTimeout(() => proc.kill("SIGKILL"), timeoutMs);
      try {
        const code = await exited;
        await Promise.all([out.done, err.done]);
        return proc.signalCode === "SIGKILL" ? null : code;
      } finally {
        clearTimeout(timer);
      }
    },
    exited,
    isAlive: () => exitCode === null && proc.exitCode === null && proc.signalCode === null,
  };
}

/** The echo server on 127.0.0.1 (or `host`), any free port. */
export function startEchoServer(extra: string[] = [], host = "127.0.0.1"): Promise<ServerProcess> {
  return startServer(["--protocol", "echo", "--host", host, "--port", "0", ...extra]);
}

export interface RunResult {
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion (SIGKILL after timeoutMs) and returns its output. */
export async function run(cmd: string[], timeoutMs = 20_000): Promise<RunResult> {
  const proc = Bun.spawn(cmd, { cwd: ROOT, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  live.add(proc);
  const timer = setTimeout(() => proc.kill("SIGKILL"), timeoutMs);
  try {
    const [stdout, stderr, code] = await Promise.all([
      new Response(proc.stdout).text(),
      new Response(proc.stderr).text(),
      proc.exited,
    ]);
    return { code: proc.signalCode ? null : code, signal: proc.signalCode === null ? null : String(proc.signalCode), stdout, stderr };
  } finally {
    clearTimeout(timer);
    live.delete(proc);
  }
}

/** Runs `bun src/server.ts ARGS` to completion. */
export function runServerCli(args: string[], timeoutMs?: number): Promise<RunResult> {
  return run([bunPath, "src/server.ts", ...args], timeoutMs);
}

/** Runs `bun src/client.ts ARGS` to completion. */
export function runClientCli(args: string[], timeoutMs?: number): Promise<RunResult> {
  return run([bunPath, "src/client.ts", ...args], timeoutMs);
}

/**
 * A long-running client CLI process (listen, interactive) whose output is collected as it
 * arrives; killed by killAll() like every other child started here.
 */
export class ClientProcess {
  readonly proc: Subprocess<"pipe", "pipe", "pipe">;
  stdout = "";
  stderr = "";
  /** Complete stdout lines so far (cheaper to poll than matching a long stdout). */
  stdoutLines = 0;
  readonly exited: Promise<number>;

  constructor(args: string[], env: Record<string, string> = {}) {
    this.proc = Bun.spawn([bunPath, "src/client.ts", ...args], {
      cwd: ROOT,
      stdin: "pipe",
      stdout: "pipe",
      stderr: "pipe",
      env: { ...process.env, ...env },
    });
    live.add(this.proc);
    this.exited = this.proc.exited.finally(() => live.delete(this.proc));
    void this.collect(this.proc.stdout, (t) => {
      this.stdout += t;
      for (let i = t.indexOf("\n"); i >= 0; i = t.indexOf("\n", i + 1)) this.stdoutLines++;
    });
    void this.collect(this.proc.stderr, (t) => (this.stderr += t));
  }

  private async collect(stream: ReadableStream<Uint8Array>, add: (t: string) => void): Promise<void> {
    const dec = new TextDecoder();
    for await (const chunk of stream) add(dec.decode(chunk, { stream: true }));
  }

  /** Resolves with the match once stdout (or stderr) matches; fails the test after ms. */
  async waitOut(re: RegExp, ms = 10_000, stream: "stdout" | "stderr" = "stdout"): Promise<RegExpMatchArray> {
    let m: RegExpMatchArray | null = null;
    await waitFor(() => (m = this[stream].match(re)) !== null, ms, `${re} on ${stream}; stdout: ${JSON.stringify(this.stdout.slice(-2000))}; stderr: ${JSON.stringify(this.stderr.slice(-2000))}`);
    return m!;
  }

  waitErr(re: RegExp, ms = 10_000): Promise<RegExpMatchArray> {
    return this.waitOut(re, ms, "stderr");
  }

  write(text: string): void {
    this.proc.stdin.write(text);
    this.proc.stdin.flush();
  }

  endInput(): void {
    this.proc.stdin.end();
  }

  /** Exit code, failing the test if it takes longer than ms. */
  async exitCode(ms = 10_000): Promise<number> {
    let code: number | null = null;
    this.exited.then((c) => (code = c));
    await waitFor(() => code !== null, ms, `client ${this.proc.pid} to exit; stderr: ${JSON.stringify(this.stderr)}`);
    return code!;
  }
}

/** Kills every child still running (afterAll). */
export async function killAll(): Promise<void> {
  const procs = [...live];
  for (const p of procs) p.kill("SIGKILL");
  await Promise.all(procs.map((p) => p.exited.catch(() => {})));
  live.clear();
}
