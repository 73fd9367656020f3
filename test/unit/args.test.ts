// src/cli/: the declarative flag parser shared by the server and client CLIs, the command
// their usage lines name, and counted nouns.

import { describe, test, expect } from "bun:test";
import { parseArgs, formatFlags, UsageError, type FlagSpecs } from "../../src/cli/args.ts";
import { invocation, isCompiled } from "../../src/cli/invocation.ts";
import { noun, plural } from "../../src/cli/plural.ts";

const SPECS = {
  protocol: { type: "string", arg: "NAME", description: "protocol", default: "echo", choices: ["echo", "line"] },
  host: { type: "string", arg: "ADDR", description: "listen address", default: "127.0.0.1" },
  port: { type: "int", arg: "PORT", description: "listen port", min: 0, max: 65535 },
  listen: { type: "string", arg: "PROTO:PORT", description: "listen spec", repeatable: true },
  "idle-timeout": { type: "number", arg: "SEC", description: "idle timeout", default: 0, min: 0 },
  help: { type: "bool", description: "show this help" },
  verbose: { type: "bool", description: "chatty", default: true },
} as const satisfies FlagSpecs;

const parse = (...argv: string[]) => parseArgs(argv, SPECS);

function usageError(argv: string[]): string {
  try {
    parse(...argv);
  } catch (e) {
    expect(e).toBeInstanceOf(UsageError);
    expect((e as Error).name).toBe("UsageError");
    return (e as Error).message;
  }
  throw new Error(`no UsageError for ${JSON.stringify(argv)}`);
}

describe("parseArgs", () => {
  test("defaults, and an empty list for repeatable flags", () => {
    const { flags, positionals } = parse();
    expect(flags).toEqual({ protocol: "echo", host: "127.0.0.1", listen: [], "idle-timeout": 0, verbose: true });
    expect(flags.port).toBeUndefined();
    expect(flags.help).toBeUndefined();
    expect(positionals).toEqual([]);
  });

  test("--flag value and --flag=value", () => {
    expect(parse("--port", "5050").flags.port).toBe(5050);
    expect(parse("--port=5051").flags.port).toBe(5051);
    expect(parse("--host", "::1").flags.host).toBe("::1");
    expect(parse("--host=::1").flags.host).toBe("::1");
    expect(parse("--host=a=b").flags.host).toBe("a=b"); // only the first = splits
  });

  test("types: int, number, string with choices", () => {
    expect(parse("--port", "0").flags.port).toBe(0);
    expect(parse("--port", "65535").flags.port).toBe(65535);
    expect(parse("--idle-timeout", "1.5").flags["idle-timeout"]).toBe(1.5);
    expect(parse("--idle-timeout", "2").flags["idle-timeout"]).toBe(2);
    expect(parse("--protocol", "line").flags.protocol).toBe("line");
  });

  test("bools: --flag, --no-flag, -h", () => {
    expect(parse("--help").flags.help).toBe(true);
    expect(parse("-h").flags.help).toBe(true);
    expect(parse("--no-verbose").flags.verbose).toBe(false);
    expect(parse("--no-verbose", "--verbose").flags.verbose).toBe(true); // last one wins
  });

  test("repeatable flags collect in order", () => {
    expect(parse("--listen", "echo:1", "--listen=line:2").flags.listen).toEqual(["echo:1", "line:2"]);
  });

  test("positionals anywhere (GNU style); -- ends flags; negative numbers are positionals", () => {
    const r = parse("echo", "--port", "1", "hello world", "--", "--port", "-x");
    expect(r.positionals).toEqual(["echo", "hello world", "--port", "-x"]);
    expect(r.flags.port).toBe(1);
    expect(parse("-5").positionals).toEqual(["-5"]);
    expect(parse("-").positionals).toEqual(["-"]);
  });

  test("later values override earlier ones", () => {
    expect(parse("--port", "1", "--port", "2").flags.port).toBe(2);
  });

  test.each([
    [["--bogus"], "unknown option --bogus"],
    [["-x"], "unknown option -x"],
    [["--port"], "--port needs a value (PORT)"],
    [["--port", "abc"], '--port: expected an integer, got "abc"'],
    [["--port", "1.5"], '--port: expected an integer, got "1.5"'],
    [["--port", "0x10"], '--port: expected an integer, got "0x10"'],
    [["--port", ""], '--port: expected an integer, got ""'],
    [["--port", "70000"], "--port: must be <= 65535, got 70000"],
    [["--port", "-1"], "--port: must be >= 0, got -1"],
    [["--idle-timeout", "1e3"], '--idle-timeout: expected a number, got "1e3"'],
    [["--idle-timeout", "-0.5"], "--idle-timeout: must be >= 0, got -0.5"],
    [["--protocol", "http"], '--protocol: "http" is not one of echo, line'],
    [["--help=yes"], "--help takes no value"],
    [["--no-port"], "unknown option --no-port"],
  ] as const)("%p is a UsageError: %s", (argv, message) => {
    expect(usageError([...argv])).toBe(message);
  });
});

describe("formatFlags", () => {
  const text = formatFlags(SPECS);
  const lines = text.split("\n");

  test("one aligned line per flag, with value names and defaults", () => {
    expect(lines.length).toBe(Object.keys(SPECS).length);
    expect(text).toContain("--port PORT");
    expect(text).toContain("--idle-timeout SEC");
    expect(text).toContain("protocol (default echo)");
    expect(text).toContain("listen address (default 127.0.0.1)");
    // Bools show neither a value name nor a default.
    const help = lines.find((l) => l.includes("--help"))!;
    expect(help).toMatch(/^ {2}--help +show this help$/);
    expect(lines.find((l) => l.includes("--verbose"))).toMatch(/^ {2}--verbose +chatty$/);
    // Descriptions start in one column.
    const starts = lines.map((l) => /^( {2}--\S+(?: \S+)?)( +)/.exec(l)!).map((m) => m[1]!.length + m[2]!.length);
    expect(new Set(starts).size).toBe(1);
  });
});

describe("plural", () => {
  test("1 takes the singular; 0, 2 and fractions the plural", () => {
    expect(plural(1, "connection")).toBe("1 connection");
    expect(plural(0, "connection")).toBe("0 connections");
    expect(plural(2, "byte")).toBe("2 bytes");
    expect(plural(1.5, "second")).toBe("1.5 seconds");
    expect(plural(1234, "sample", "1,234")).toBe("1,234 samples");
    expect(noun(1, "reply", "replies")).toBe("reply");
    expect(noun(3, "reply", "replies")).toBe("replies");
  });
});

describe("invocation", () => {
  // These run from the sources under bun test, so not compiled.
  const self = `bun run ${Bun.main.startsWith(process.cwd() + "/") ? Bun.main.slice(process.cwd().length + 1) : Bun.main}`;

  test("from the sources: bun run and the script", () => {
    expect(isCompiled()).toBe(false);
    expect(invocation({})).toBe(self);
  });

  test("an npm script that runs this file: npm start --, npm run NAME --", () => {
    const script = `bun run ${Bun.main}`;
    expect(invocation({ npm_lifecycle_event: "start", npm_lifecycle_script: script })).toBe("npm start --");
    expect(invocation({ npm_lifecycle_event: "client", npm_lifecycle_script: script })).toBe("npm run client --");
    // Inherited from a script that runs something else: not how this process was started.
    expect(invocation({ npm_lifecycle_event: "test", npm_lifecycle_script: "tsc --noEmit -p . && bun test" })).toBe(self);
  });

  test("npx bun SCRIPT: only when npx's shell is the parent", () => {
    const env = { npm_lifecycle_event: "npx", npm_lifecycle_script: "bun" };
    const rel = self.slice("bun run ".length);
    expect(invocation(env, () => ["sh", "-c", `'bun' ${Bun.main} --nope`])).toBe(`npx bun ${rel}`);
    expect(invocation(env, () => ["sh", "-c", `bun run ${Bun.main}`])).toBe(`npx bun ${rel}`);
    // `npx bun test` starting a server: the variables are inherited, the parent is not npx's.
    expect(invocation(env, () => ["sh", "-c", "'bun' test"])).toBe(self);
    expect(invocation(env, () => [process.execPath, "test"])).toBe(self);
    expect(invocation(env, () => null)).toBe(self);
  });
});
