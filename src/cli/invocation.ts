// How the running CLI was started, so that its usage line and hints name a command the user
// can type again: the binary when compiled, the npm script when started through one, else
// `bun run <script>`.

import { basename, isAbsolute, relative } from "node:path";

/** True in a `bun build --compile` executable: its modules live in Bun's embedded file system. */
export function isCompiled(): boolean {
  return Bun.main.startsWith("/$bunfs/");
}

/** `dist/bunpoll` -> `bunpoll`; `npm start --`; `npm run client --`; `bun run src/server.ts`. */
export function invocation(env: Record<string, string | undefined> = process.env): string {
  if (isCompiled()) return basename(process.argv0);
  const rel = relative(process.cwd(), Bun.main);
  const script = rel === "" || rel.startsWith("..") || isAbsolute(rel) ? Bun.main : rel;
  // npm sets these for the script it runs, and children inherit them: only trust them when
  // that script is the one running this file (not, say, `npm test` starting a server).
  const event = env.npm_lifecycle_event;
  const line = env.npm_lifecycle_script;
  if (event && line && (line.endsWith(` ${rel}`) || line.endsWith(` ${Bun.main}`))) {
    return event === "start" ? "npm start --" : `npm run ${event} --`;
  }
  return `bun run ${script}`;
}
