// Runner side of the stress clients: each load generator is its own process
// (`bun test/stress/clients/NAME.ts '<json config>'`), started with a raised fd limit. A
// client talks to the runner in lines on stdout, `@event NAME {json}` and one final
// `@result {json}`, and takes commands as lines on stdin (see child.ts).

import { resolve } from "node:path";
import type { FileSink, Subprocess } from "bun";
import { BUN, ROOT } from "./server.ts";

/** The hard fd limit here is 20000; clients holding thousands of sockets need most of it. */
export const CLIENT_FD_LIMIT = 20_000;
/** Default niceness of load generators (see SpawnOptions.nice). */
export const LOAD_NICE = 10;

const live = new Set<Subprocess>();

export class ClientProcess<R> {
  readonly result: Promise<R>;
  private readonly events: { name: string; data: unknown }[] = [];
  private readonly waiters = new Set<() => void>();
  private stderrText = "";
  private stdoutText = "";
  private exitCode: number | null = null;

  constructor(readonly name: string, readonly proc: Subprocess<"pipe", "pipe", "pipe">) {
    let resolveResult!: (r: R) => void;
    let rejectResult!: (e: Error) => void;
    this.result = new Promise<R>((res, rej) => {
      resolveResult = res;
      rejectResult = rej;
    });
    this.result.catch(() => {}); // observed by whoever awaits it; never an unhandled rejection
    let result: R | undefined;
    let haveResult = false;
    const stdoutDone = (async () => {
      const dec = new TextDecoder();
      let pending = "";
      for await (const chunk of proc.stdout) {
        pending += dec.decode(chunk, { stream: true });
        let nl: number;
        while ((nl = pending.indexOf("\n")) >= 0) {
          const line = pending.slice(0, nl);
          pending = pending.slice(nl + 1);
          if (line.startsWith("@result ")) {
            result = JSON.parse(line.slice(8)) as R;
            haveResult = true;
          } else if (line.startsWith("@event ")) {
            const sp = line.indexOf(" ", 7);
            const ev = sp < 0 ? line.slice(7) : line.slice(7, sp);
            this.events.push({ name: ev, data: sp < 0 ? null : JSON.parse(line.slice(sp + 1)) });
            for (const w of this.waiters) w();
          } else if (this.stdoutText.length < 64 * 1024) {
            this.stdoutText += line + "\n";
          }
        }
      }
    })();
    const stderrDone = (async () => {
      const dec = new TextDecoder();
      for await (const chunk of proc.stderr) {
        if (this.stderrText.length < 256 * 1024) this.stderrText += dec.decode(chunk, { stream: true });
      }
    })();
    void Promise.all([proc.exited, stdoutDone.catch(() => {}), stderrDone.catch(() => {})]).then(([code]) => {
      this.exitCode = code;
      for (const w of this.waiters) w();
      if (haveResult && code === 0) resolveResult(result as R);
      else {
        rejectResult(
          new Error(
            `client ${this.name} exited with ${proc.signalCode ?? code}${haveResult ? "" : " without a result"}; ` +
              `stderr: ${this.stderrText.slice(-1500).trim()}`,
          ),
        );
      }
    });
  }

  get pid(): number {
    return this.proc.pid;
  }

  stderr(): string {
    return this.stderrText;
  }

  /** Resolves with the data of the first `@event name` (already seen or future). */
  async event<T = unknown>(name: string, ms: number): Promise<T> {
    const deadline = performance.now() + ms;
    for (;;) {
      const e = this.events.find((x) => x.name === name);
      if (e) return e.data as T;
      if (this.exitCode !== null) throw new Error(`client ${this.name} exited before event "${name}"; stderr: ${this.stderrText.slice(-1500).trim()}`);
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`client ${this.name}: no event "${name}" within ${ms} ms`);
      await new Promise<void>((r) => {
        const t = setTimeout(done, Math.min(left, 200));
        const waiters = this.waiters;
        waiters.add(done);
        function done() {
          clearTimeout(t);
          waiters.delete(done);
          r();
        }
      });
    }
  }

  /** Sends one command line on stdin. */
  send(command: string): void {
    const sink = this.proc.stdin as FileSink;
    sink.write(command + "\n");
    sink.flush();
  }

  /** Waits for the result; kills the client if it takes longer than `ms`. */
  async done(ms: number): Promise<R> {
    const timer = setTimeout(() => this.proc.kill("SIGKILL"), ms);
    try {
      return await this.result;
    } finally {
      clearTimeout(timer);
    }
  }

  kill(): void {
    this.proc.kill("SIGKILL");
  }
}

export interface SpawnOptions {
  fdLimit?: number;
  /**
   * Scheduling niceness. Load generators run at 10: on a 2-core machine they would
   * otherwise take the CPU from the server and the latency probe (which run at 0), and
   * the probe would measure the load generator rather than the server.
   */
  nice?: number;
}

/** Starts test/stress/clients/NAME.ts with `config` as its argument. */
export function spawnClient<R>(name: string, config: object, opts: SpawnOptions = {}): ClientProcess<R> {
  const script = resolve(ROOT, "test/stress/clients", `${name}.ts`);
  const limit = opts.fdLimit ?? CLIENT_FD_LIMIT;
  const nice = opts.nice ?? LOAD_NICE;
  const exec = nice !== 0 ? `exec nice -n ${nice} "$0" "$@"` : `exec "$0" "$@"`;
  const proc = Bun.spawn(["sh", "-c", `ulimit -n ${limit}; ${exec}`, BUN, script, JSON.stringify(config)], {
    cwd: ROOT,
    stdin: "pipe",
    stdout: "pipe",
    stderr: "pipe",
  });
  live.add(proc);
  proc.exited.finally(() => live.delete(proc));
  return new ClientProcess<R>(name, proc);
}

export function killAllClients(): void {
  for (const p of live) p.kill("SIGKILL");
}
