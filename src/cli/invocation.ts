// How the running CLI was started, so that its usage line and hints name a command the user
// can type again: the binary when compiled, the npm script or npx when started through one,
// else `bun run <script>`.

import { readFileSync } from "node:fs";
import { basename, isAbsolute, relative } from "node:path";

/** True in a `bun build --compile` executable: its modules live in Bun's embedded file system. */
export function isCompiled(): boolean {
  return Bun.main.startsWith("/$bunfs/");
}

/** The command line of the parent process, or null when it cannot be read. */
function parentCommand(): string[] | null {
  try {
    return readFileSync(`/proc/${process.ppid}/cmdline`, "utf8").split("\0").slice(0, -1);
  } catch {
    return null;
  }
}

/**
 * `dist/bunpoll` -> `bunpoll`; `npm start --`; `npm run client --`; `npx bun src/client.ts`;
 * `bun run src/server.ts`.
 */
export function invocation(env: Record<string, string | undefined> = process.env, parent: () => string[] | null = parentCommand): string {
  if (isCompiled()) return basename(process.argv0);
  const rel = relative(process.cwd(), Bun.main);
  const script = rel === "" || rel.startsWith("..") || isAbsolute(rel) ? Bun.main : rel;
  // npm and npx set these for what they run, and every descendant inherits them: trust them
  // only when what npm ran is this file (not, say, `npm test` starting a server).
  const event = env.npm_lifecycle_event;
  const line = env.npm_lifecycle_script;
  if (event === "npx") {
    // npx runs `sh -c "'bun' src/server.ts ..."`: that shell is our parent, or npx ran
    // something else that started us.
    const p = parent();
    if (p !== null && p.length === 3 && p[1] === "-c" && /^'?bun'? /.test(p[2]!) && (p[2]!.includes(rel) || p[2]!.includes(Bun.main))) {
      return `npx bun ${script}`;
    }
  } else if (event && line && (line.endsWith(` ${rel}`) || line.endsWith(` ${Bun.main}`))) {
    return event === "start" ? "npm start --" : `npm run ${event} --`;
  }
  return `bun run ${script}`;
}
