// A small declarative flag parser shared by the server and client CLIs. Unknown flags,
// missing values and malformed numbers are UsageErrors: the CLI prints usage and exits 2.

export class UsageError extends Error {
  override name = "UsageError";
}

export interface FlagSpec {
  type: "string" | "int" | "number" | "bool";
  /** Value name shown in usage, e.g. "PORT". */
  arg?: string;
  description: string;
  default?: string | number | boolean;
  repeatable?: boolean;
  /** Accepted values for a string flag. */
  choices?: readonly string[];
  min?: number;
  max?: number;
}

export type FlagSpecs = Record<string, FlagSpec>;
export type FlagValue = string | number | boolean | string[];

export interface Parsed {
  flags: Record<string, FlagValue | undefined>;
  positionals: string[];
}

function convert(name: string, spec: FlagSpec, raw: string): string | number {
  if (spec.type === "string") {
    if (spec.choices && !spec.choices.includes(raw)) {
      throw new UsageError(`--${name}: "${raw}" is not one of ${spec.choices.join(", ")}`);
    }
    return raw;
  }
  const v = spec.type === "int" ? (/^-?\d+$/.test(raw) ? Number(raw) : NaN) : /^-?\d+(\.\d+)?$/.test(raw) ? Number(raw) : NaN;
  if (!Number.isFinite(v)) throw new UsageError(`--${name}: expected ${spec.type === "int" ? "an integer" : "a number"}, got "${raw}"`);
  if (spec.min !== undefined && v < spec.min) throw new UsageError(`--${name}: must be >= ${spec.min}, got ${raw}`);
  if (spec.max !== undefined && v > spec.max) throw new UsageError(`--${name}: must be <= ${spec.max}, got ${raw}`);
  return v;
}

/**
 * Parses argv. Flags may appear anywhere (GNU style); "--" ends flag parsing.
 * `--flag=value` and `--flag value` both work; bools take no value (`--no-flag` negates).
 */
export function parseArgs(argv: readonly string[], specs: FlagSpecs): Parsed {
  const flags: Record<string, FlagValue | undefined> = {};
  const positionals: string[] = [];
  for (const [name, spec] of Object.entries(specs)) {
    if (spec.repeatable) flags[name] = [];
    else if (spec.default !== undefined) flags[name] = spec.default;
  }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--") {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (!a.startsWith("--") || a === "--") {
      if (a.startsWith("-") && a.length > 1 && !/^-\d/.test(a)) {
        if (a === "-h") { flags.help = true; continue; }
        throw new UsageError(`unknown option ${a}`);
      }
      positionals.push(a);
      continue;
    }
    const eq = a.indexOf("=");
    let name = eq >= 0 ? a.slice(2, eq) : a.slice(2);
    let spec = specs[name];
    if (!spec && name.startsWith("no-") && specs[name.slice(3)]?.type === "bool") {
      name = name.slice(3);
      flags[name] = false;
      continue;
    }
    if (!spec) throw new UsageError(`unknown option --${name}`);
    if (spec.type === "bool") {
      if (eq >= 0) throw new UsageError(`--${name} takes no value`);
      flags[name] = true;
      continue;
    }
    let raw: string;
    if (eq >= 0) raw = a.slice(eq + 1);
    else {
      if (i + 1 >= argv.length) throw new UsageError(`--${name} needs a value (${spec.arg ?? spec.type})`);
      raw = argv[++i]!;
    }
    const v = convert(name, spec, raw);
    if (spec.repeatable) (flags[name] as string[]).push(String(v));
    else flags[name] = v;
  }
  return { flags, positionals };
}

/** Formats the flags table for --help. */
export function formatFlags(specs: FlagSpecs): string {
  const rows = Object.entries(specs).map(([name, s]) => {
    const left = `  --${name}${s.type === "bool" ? "" : ` ${s.arg ?? s.type.toUpperCase()}`}`;
    const def = s.default !== undefined && s.type !== "bool" ? ` (default ${s.default})` : "";
    return [left, `${s.description}${def}`] as const;
  });
  const width = Math.max(...rows.map(([l]) => l.length)) + 2;
  return rows.map(([l, r]) => l.padEnd(width) + r).join("\n");
}
