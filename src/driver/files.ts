// Regular files for the write path: open + fstat (+ the real path of what was opened) into
// a SharedFile whose ranges a write queue sends with sendfile(2) (epoll.ts), and pread for
// a stream that cannot use sendfile (a wrapping stream: TLS encrypts bytes in memory). The
// fd is closed through sockets.ts's closeFd when the SharedFile's last reference goes.
//
// These calls block on the disk like nginx without aio: files are expected in the page cache.

import {
  libc, rc, errorFromRc, Errno, O_RDONLY, O_CLOEXEC, O_NONBLOCK, S_IFMT, S_IFREG, S_IFDIR, statLayout,
  SYS_openat2, AT_FDCWD, RESOLVE_NO_SYMLINKS, OPEN_HOW_SIZE, openHow,
} from "../../ffi/index.ts";
import { SharedFile } from "../buffers/shared-file.ts";
import { closeFd } from "./sockets.ts";

const utf8 = new TextEncoder();
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });
// Scratch for the calls of this thread (never concurrent): own ArrayBuffers, stable addresses.
const statBuf = new Uint8Array(new ArrayBuffer(statLayout.size));
const statView = new DataView(statBuf.buffer);
const PATH_MAX = 4096;
const linkBuf = new Uint8Array(new ArrayBuffer(PATH_MAX));
/** A path as NUL-terminated UTF-8 (encodeInto: no allocation per open). */
const pathBuf = new Uint8Array(new ArrayBuffer(PATH_MAX * 3 + 1));
const OPEN_FLAGS = O_RDONLY | O_CLOEXEC | O_NONBLOCK;
const how = new Uint32Array(new ArrayBuffer(OPEN_HOW_SIZE));
how[openHow.flagsWord] = OPEN_FLAGS;
how[openHow.resolveWord] = RESOLVE_NO_SYMLINKS;
/** openat2 is missing (a kernel before 5.6) or filtered (a seccomp profile): open + readlink always. */
let noOpenat2 = false;

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
  if (!encodePath(path)) return -Errno.ENOENT;
  const fd = rc(libc.open(pathBuf, OPEN_FLAGS));
  if (fd < 0) return fd;
  return opened(fd, fdPath(fd));
}

/**
 * openFile for a path that is absolute and normalized (no ".", "..", or empty segments):
 * when no component is a symbolic link its real path is itself, and one openat2(2) with
 * RESOLVE_NO_SYMLINKS both opens it and proves that, where openFile needs a readlink of
 * /proc/self/fd. A path through a link (ELOOP) or a kernel without openat2 takes openFile.
 */
export function openNormalizedFile(path: string): OpenedFile | number {
  if (noOpenat2) return openFile(path);
  if (!encodePath(path)) return -Errno.ENOENT;
  const fd = rc(libc.syscall(SYS_openat2, AT_FDCWD, pathBuf, how, OPEN_HOW_SIZE));
  if (fd >= 0) return opened(fd, path);
  if (fd === -Errno.ENOSYS || fd === -Errno.EPERM) noOpenat2 = true;
  else if (fd !== -Errno.ELOOP) return fd;
  return openFile(path);
}

/** Writes path, NUL-terminated, into pathBuf; false when it holds a NUL or is too long. */
function encodePath(path: string): boolean {
  if (path.includes("\0")) return false;
  const { read, written } = utf8.encodeInto(path, pathBuf);
  if (read !== path.length || written >= pathBuf.length) return false;
  pathBuf[written] = 0;
  return true;
}

/** fstat of a freshly opened fd into an OpenedFile that owns it (closed on failure). */
function opened(fd: number, realPath: string | null): OpenedFile | number {
  const st = rc(libc.fstat(fd, statBuf));
  if (st < 0) {
    closeFd(fd);
    return st;
  }
  const v = statView;
  const mode = v.getUint32(statLayout.mode, true) & S_IFMT;
  // 64-bit fields as two words: no BigInt per open (sizes and times fit in 53 bits).
  const size = u64(v, statLayout.fileSize);
  const mtimeMs = u64(v, statLayout.mtimeSec) * 1000 + u64(v, statLayout.mtimeNsec) / 1e6;
  const file = new SharedFile(fd, size, mtimeMs, u64(v, statLayout.ino), closeFd);
  const kind = mode === S_IFREG ? FileKind.Regular : mode === S_IFDIR ? FileKind.Directory : FileKind.Other;
  return { file, kind, realPath };
}

function u64(v: DataView, at: number): number {
  return v.getUint32(at, true) + v.getUint32(at + 4, true) * 0x1_0000_0000;
}

/** What /proc/self/fd/N points to, or null (unreadable, or not UTF-8). */
function fdPath(fd: number): string | null {
  encodePath(`/proc/self/fd/${fd}`);
  const n = rc(libc.readlink(pathBuf, linkBuf, PATH_MAX));
  if (n <= 0 || n >= PATH_MAX) return null;
  try {
    return strictUtf8.decode(linkBuf.subarray(0, n));
  } catch {
    return null;
  }
}

/**
 * file[start, end) read into dest[at, at + end - start) (pread): a TLS stream reads a file
 * piece straight into the plaintext it encrypts. Same errors as readFileRange.
 */
export function readFileInto(file: SharedFile, start: number, end: number, dest: Uint8Array, at: number): void {
  let done = 0;
  const n = end - start;
  while (done < n) {
    const r = rc(libc.pread(file.fd, dest.subarray(at + done, at + n), n - done, start + done));
    if (r === -Errno.EINTR) continue;
    if (r < 0) throw errorFromRc("pread", r);
    if (r === 0) throw new RangeError(`file shorter than announced: ${start + done} of ${end} bytes`);
    done += r;
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
