// Regular files for the write path: open + fstat (+ the real path of what was opened) into
// a SharedFile whose ranges a write queue sends with sendfile(2) (epoll.ts), and pread for
// a stream that cannot use sendfile (a wrapping stream: TLS encrypts bytes in memory). The
// fd is closed through sockets.ts's closeFd when the SharedFile's last reference goes.
//
// These calls block on the disk like nginx without aio: files are expected in the page cache.

import { libc, rc, errorFromRc, Errno, O_RDONLY, O_CLOEXEC, O_NONBLOCK, S_IFMT, S_IFREG, S_IFDIR, statLayout } from "../../ffi/index.ts";
import { SharedFile } from "../buffers/shared-file.ts";
import { closeFd } from "./sockets.ts";

const utf8 = new TextEncoder();
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });
// Scratch for setup calls of this thread (never concurrent): own ArrayBuffers, stable addresses.
const statBuf = new Uint8Array(new ArrayBuffer(statLayout.size));
const statView = new DataView(statBuf.buffer);
const PATH_MAX = 4096;
const linkBuf = new Uint8Array(new ArrayBuffer(PATH_MAX));

export const FileKind = { Regular: 1, Directory: 2, Other: 3 } as const;

export interface OpenedFile {
  readonly file: SharedFile;
  /** FileKind of what was opened (a directory's fd is only good for its kind and path). */
  readonly kind: number;
  /**
   * The absolute path of what the fd refers to, symbolic links resolved (/proc/self/fd),
   * or null when it is not valid UTF-8. Read from the open fd: no race with a rename.
   */
  readonly realPath: string | null;
}

/**
 * Opens path read-only and fstats it (non-blocking: a FIFO must not stall the reactor). Returns the opened file (the caller owns its one
 * reference) or -errno (ENOENT, EACCES, ENOTDIR, ELOOP...). Never throws for a bad path.
 */
export function openFile(path: string): OpenedFile | number {
  if (path.includes("\0")) return -Errno.ENOENT;
  const fd = rc(libc.open(utf8.encode(path + "\0"), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
  if (fd < 0) return fd;
  const st = rc(libc.fstat(fd, statBuf));
  if (st < 0) {
    closeFd(fd);
    return st;
  }
  const mode = statView.getUint32(statLayout.mode, true) & S_IFMT;
  const size = Number(statView.getBigInt64(statLayout.fileSize, true));
  const mtimeMs = Number(statView.getBigInt64(statLayout.mtimeSec, true)) * 1000 + Number(statView.getBigInt64(statLayout.mtimeNsec, true)) / 1e6;
  const ino = Number(statView.getBigUint64(statLayout.ino, true));
  const file = new SharedFile(fd, size, mtimeMs, ino, closeFd);
  const kind = mode === S_IFREG ? FileKind.Regular : mode === S_IFDIR ? FileKind.Directory : FileKind.Other;
  return { file, kind, realPath: fdPath(fd) };
}

/** What /proc/self/fd/N points to, or null (unreadable, or not UTF-8). */
function fdPath(fd: number): string | null {
  const n = rc(libc.readlink(utf8.encode(`/proc/self/fd/${fd}\0`), linkBuf, PATH_MAX));
  if (n <= 0 || n >= PATH_MAX) return null;
  try {
    return strictUtf8.decode(linkBuf.subarray(0, n));
  } catch {
    return null;
  }
}

/**
 * file[start, end) read into memory (pread, so the file's own offset is never used): for a
 * stream that must transform the bytes. Throws a RangeError when the file is shorter than
 * end now (truncated since it was opened) and a SyscallError on a read error.
 */
export function readFileRange(file: SharedFile, start: number, end: number): Uint8Array {
  const out = new Uint8Array(new ArrayBuffer(end - start));
  let at = 0;
  while (at < out.length) {
    const n = rc(libc.pread(file.fd, out.subarray(at), out.length - at, start + at));
    if (n === -Errno.EINTR) continue;
    if (n < 0) throw errorFromRc("pread", n);
    if (n === 0) throw new RangeError(`file shorter than announced: ${start + at} of ${end} bytes`);
    at += n;
  }
  return out;
}
