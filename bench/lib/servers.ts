// Helpers to build and start benchmark servers: shared by the runner and the baseline check.

import { existsSync, mkdirSync, statSync } from "node:fs";
import type { Subprocess } from "bun";

const cBinaries = new Map<string, string | null>();

/**
 * Build bench/<dir>/<name>.c (baselines/c-epoll, baselines/c-http, loadgen/ws-load) with the system cc into bench/build/
 * (gitignored), once per process, and only when the source is newer than the binary.
 * Returns the binary's path, or null (with a note on stderr) when there is no cc or the
 * build fails.
 */
export function ensureCServer(root: string, name = "c-epoll", dir = "baselines", flags: string[] = []): string | null {
  const known = cBinaries.get(name);
  if (known !== undefined) return known;
  const built = buildC(root, name, dir, flags);
  cBinaries.set(name, built);
  return built;
}

/** The C WebSocket load generator (bench/loadgen/ws-load.c), with zlib when the headers are there. */
export function ensureWsLoad(root: string): string | null {
  const zlib = existsSync("/usr/include/zlib.h") ? ["-DWITH_ZLIB", "-lz"] : [];
  return ensureCServer(root, "ws-load", "loadgen", zlib);
}

function buildC(root: string, name: string, dir: string, flags: string[]): string | null {
  const src = `${root}bench/${dir}/${name}.c`;
  const out = `${root}bench/build/${name}`;
  const cc = Bun.which("cc");
  if (cc === null) {
    process.stderr.write(`note: no \`cc\` on PATH; the ${name} baseline is skipped\n`);
    return null;
  }
  if (existsSync(out) && statSync(out).mtimeMs >= statSync(src).mtimeMs) return out;
  mkdirSync(`${root}bench/build`, { recursive: true });
  const r = Bun.spawnSync([cc, "-O2", "-Wall", "-o", out, src, ...flags], { stderr: "pipe" });
  if (r.exitCode !== 0) {
    process.stderr.write(`note: building ${name} failed; skipped:\n${r.stderr.toString()}\n`);
    return null;
  }
  return out;
}

/**
 * Poll-connect to 127.0.0.1:port until it accepts, the process exits, or the timeout passes.
 * A successful probe connection is closed at once.
 */
export async function waitForPort(port: number, timeoutMs: number, proc?: Subprocess): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    if (proc !== undefined && proc.exitCode !== null) return false;
    try {
      const s = await Bun.connect({ hostname: "127.0.0.1", port, socket: { data() {} } });
      s.end();
      return true;
    } catch {
      await Bun.sleep(50);
    }
  }
  return false;
}

/** True if something already accepts on 127.0.0.1:port. */
export async function portInUse(port: number): Promise<boolean> {
  try {
    const s = await Bun.connect({ hostname: "127.0.0.1", port, socket: { data() {} } });
    s.end();
    return true;
  } catch {
    return false;
  }
}
