// The layering rules of docs/ARCHITECTURE.md, checked on the source: only the driver does
// data-path I/O, lower layers import no upper one, every libc binding is used, and host:port
// text has one formatter.

import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative, resolve } from "node:path";
import { libc } from "../../ffi/index.ts";

const ROOT = resolve(import.meta.dir, "../..");

function files(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(join(ROOT, dir))) {
    const p = join(dir, name);
    if (statSync(join(ROOT, p)).isDirectory()) out.push(...files(p));
    else if (name.endsWith(".ts")) out.push(p);
  }
  return out;
}

const read = (p: string) => readFileSync(join(ROOT, p), "utf8");
/** The module paths a file imports, resolved relative to the repository. */
function imports(p: string): string[] {
  const out: string[] = [];
  for (const m of read(p).matchAll(/^\s*(?:import|export)\b[^"']*?from\s+["']([^"']+)["']/gm)) {
    const spec = m[1]!;
    out.push(spec.startsWith(".") ? relative(ROOT, resolve(ROOT, p, "..", spec)) : spec);
  }
  return out;
}

describe("layering", () => {
  test("only src/driver/ calls libc for data-path I/O (accept4, read, recv, write, send, sendmsg, shutdown, close)", () => {
    const offenders: string[] = [];
    for (const f of files("src")) {
      if (f.startsWith("src/driver/")) continue;
      for (const m of read(f).matchAll(/libc\.(accept4|read|recv|write|writev|send|sendmsg|shutdown|close)\(/g)) offenders.push(`${f}: libc.${m[1]}(`);
    }
    expect(offenders).toEqual([]);
    const driverFiles = files("src").filter((f) => /libc\.(accept4|recv|send|sendmsg|shutdown|close)\(/.test(read(f)));
    expect(driverFiles.length).toBeLessThanOrEqual(2);
  });

  test("lower layers import no upper one", () => {
    const rules: [string, RegExp][] = [
      ["src/buffers/", /^src\/(driver|stream|reactor|protocols|hub|stats|client)/],
      ["src/driver/", /^src\/(stream|reactor|protocols|hub|stats|client)/],
      ["src/stream/", /^src\/(protocols|hub|stats|client)/],
      ["src/reactor/", /^src\/(protocols|hub|stats|client)/],
      ["src/stats/", /^src\/(protocols|reactor|stream|driver|hub|client)/],
      ["src/hub.ts", /^src\/(protocols|stats|client|reactor|driver)/],
    ];
    const offenders: string[] = [];
    for (const f of files("src")) {
      for (const [layer, banned] of rules) {
        if (!f.startsWith(layer)) continue;
        for (const i of imports(f)) if (banned.test(i)) offenders.push(`${f} imports ${i}`);
      }
    }
    expect(offenders).toEqual([]);
  });

  test("every libc binding is used by src/ or ffi/", () => {
    const text = [...files("src"), ...files("ffi").filter((f) => f !== "ffi/libc.ts")].map(read).join("\n");
    const unused = Object.keys(libc).filter((name) => !text.includes(`libc.${name}(`) && !text.includes(`"${name}"`));
    expect(unused).toEqual([]);
  });

  test("host:port text is formatted in one place (formatHostPort)", () => {
    const offenders = [...files("src"), ...files("ffi")].filter((f) => f !== "ffi/structs.ts" && /`\[\$\{[^}]+\}\]:\$\{/.test(read(f)));
    expect(offenders).toEqual([]);
  });
});
