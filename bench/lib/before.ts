// The "before" checkout for `bench/run.ts --before REF`: a detached git worktree of REF,
// so that the server as it was at REF runs interleaved with the current one in one run.

import { existsSync, mkdirSync, realpathSync, symlinkSync } from "node:fs";
import os from "node:os";

export interface BeforeTree {
  /** The ref as given on the command line. */
  ref: string;
  /** The commit it resolved to. */
  sha: string;
  /** The worktree, with a trailing slash. */
  dir: string;
  /** False when an existing worktree at that commit was reused. */
  created: boolean;
}

function git(args: string[]): { ok: boolean; out: string; err: string } {
  const r = Bun.spawnSync(["git", ...args], { stdout: "pipe", stderr: "pipe" });
  return { ok: r.exitCode === 0, out: r.stdout.toString().trim(), err: r.stderr.toString().trim() };
}

/**
 * Resolve `ref` in the repository at `root` and make sure a clean worktree of that commit
 * exists at $TMPDIR/bunpoll-before/<sha>, with node_modules linked to root's. Outside the
 * repository on purpose: inside it, `tsc -p .` and `bun test` would pick up the old
 * sources and tests. Throws an Error saying what to do when that is not possible.
 */
export function ensureBeforeTree(root: string, ref: string): BeforeTree {
  const rev = git(["-C", root, "rev-parse", "--verify", "--quiet", `${ref}^{commit}`]);
  if (!rev.ok || rev.out === "") throw new Error(`--before ${ref}: not a commit in ${root}`);
  const sha = rev.out;
  const parent = `${os.tmpdir()}/bunpoll-before`;
  const dir = `${parent}/${sha}/`;
  let created = false;
  if (existsSync(dir)) {
    const head = git(["-C", dir, "rev-parse", "HEAD"]);
    // node_modules is an untracked symlink (the ignore rule `node_modules/` matches
    // directories only), so untracked files are not counted as changes.
    const status = git(["-C", dir, "status", "--porcelain", "--untracked-files=no"]);
    if (!head.ok || head.out !== sha || !status.ok || status.out !== "") {
      throw new Error(
        `--before ${ref}: ${dir} exists but is not a clean checkout of ${sha}; ` +
          `remove it (git worktree remove --force ${dir}) and run again`,
      );
    }
  } else {
    mkdirSync(parent, { recursive: true });
    // git still lists a worktree here whose directory was deleted (a cleaned /tmp): let
    // prune forget it, as `worktree add` refuses the path otherwise.
    const listed = git(["-C", root, "worktree", "list", "--porcelain"]);
    if (listed.out.split("\n").includes(`worktree ${dir.slice(0, -1)}`)) git(["-C", root, "worktree", "prune"]);
    const add = git(["-C", root, "worktree", "add", "--detach", dir, sha]);
    if (!add.ok) throw new Error(`--before ${ref}: git worktree add ${dir} failed: ${add.err}`);
    created = true;
  }
  if (!existsSync(`${dir}node_modules`)) {
    if (!existsSync(`${root}node_modules`)) throw new Error(`--before ${ref}: ${root}node_modules is missing (npm install)`);
    symlinkSync(realpathSync(`${root}node_modules`), `${dir}node_modules`);
  }
  return { ref, sha, dir, created };
}

/**
 * The commit of the checkout at `root`, plus "-dirty" with local changes to tracked files
 * other than bench/results/ (which every run rewrites).
 */
export function describeCheckout(root: string): string {
  const head = git(["-C", root, "rev-parse", "--short=12", "HEAD"]);
  if (!head.ok) return "unknown";
  const status = git(["-C", root, "status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)bench/results"]);
  return status.ok && status.out !== "" ? `${head.out}-dirty` : head.out;
}
