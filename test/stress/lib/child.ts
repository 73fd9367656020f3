// Client-process side of the runner <-> client line protocol (see clients.ts):
// `@event NAME {json}` and `@result {json}` on stdout, commands on stdin. A client whose
// runner goes away (stdin closes) exits, and every client has a hard deadline, so no load
// generator outlives the suite.

export function config<T>(): T {
  const raw = process.argv[2];
  if (!raw) {
    console.error("usage: bun test/stress/clients/NAME.ts '<json config>'");
    process.exit(2);
  }
  return JSON.parse(raw) as T;
}

export function emit(name: string, data: unknown = null): void {
  process.stdout.write(`@event ${name} ${JSON.stringify(data)}\n`);
}

/** Prints the result and exits 0 once stdout is flushed. */
export function finish(result: unknown): never {
  process.stdout.write(`@result ${JSON.stringify(result)}\n`, () => process.exit(0));
  // process.exit in the callback; keep the type `never` for callers.
  throw new FinishSignal();
}

class FinishSignal extends Error {
  constructor() {
    super("finished");
  }
}

/** Runs `main`; a thrown error ends the process with status 1 and the stack on stderr. */
export function run(main: () => Promise<void>, hardDeadlineMs: number): void {
  const t = setTimeout(() => {
    console.error(`hard deadline of ${hardDeadlineMs} ms passed, exiting`);
    process.exit(3);
  }, hardDeadlineMs);
  t.unref?.();
  main().catch((e) => {
    if (e instanceof FinishSignal) return;
    console.error(e instanceof Error ? (e.stack ?? e.message) : String(e));
    process.exit(1);
  });
}

type CommandHandler = (line: string) => void;
let handlers: CommandHandler[] | null = null;

/** Calls `h` with each command line from the runner. Exits when stdin closes. */
export function onCommand(h: CommandHandler): void {
  if (handlers === null) {
    handlers = [];
    const hs = handlers;
    void (async () => {
      const dec = new TextDecoder();
      let pending = "";
      for await (const chunk of Bun.stdin.stream()) {
        pending += dec.decode(chunk, { stream: true });
        let nl: number;
        while ((nl = pending.indexOf("\n")) >= 0) {
          const line = pending.slice(0, nl).trim();
          pending = pending.slice(nl + 1);
          for (const f of hs) f(line);
        }
      }
      // The runner is gone.
      process.exit(4);
    })();
  }
  handlers.push(h);
}

/** Resolves on the first command line equal to `word` or starting with `word `. */
export function command(word: string): Promise<string> {
  return new Promise((resolve) => {
    onCommand((line) => {
      if (line === word || line.startsWith(word + " ")) resolve(line.slice(word.length).trim());
    });
  });
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
