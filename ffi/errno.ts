// The one errno translation point.
//
// - Hot paths call `rc(ret)`: a failing syscall yields `-errno` (a negative number),
//   so callers switch on `-Errno.EAGAIN` etc. without allocating.
// - Setup paths call `check(name, ret, detail)`: a failing syscall throws a SyscallError
//   that names the syscall and the errno, e.g. "bind: EADDRINUSE (127.0.0.1:5050)".
//
// errno is thread-local: each thread (each Worker) loads this module afresh and so gets its
// own view onto its own errno. Read it right after the failing call, with no await between.

import { toArrayBuffer } from "bun:ffi";
import { Errno, type ErrnoName } from "./constants.ts";
import { libc } from "./libc.ts";

const errnoPtr = libc.__errno_location();
if (!errnoPtr) throw new Error("bunpoll: __errno_location returned NULL");
// A live alias of this thread's errno: the memory is libc's TLS slot, valid as long as the thread.
const errnoView = new Int32Array(toArrayBuffer(errnoPtr, 0, 4));

const NAMES: Record<number, ErrnoName> = {};
for (const [name, num] of Object.entries(Errno)) NAMES[num] = name as ErrnoName;

/** The current thread's errno. */
export function errno(): number {
  return errnoView[0]!;
}

/** "EAGAIN" for 11; "errno 1234" for numbers we have no name for. */
export function errnoName(n: number): string {
  return NAMES[n] ?? `errno ${n}`;
}

/** Hot-path translation: returns `ret` when it succeeded, `-errno` when it failed (-1). */
export function rc(ret: number | bigint): number {
  // i64_fast returns are numbers whenever they fit in 53 bits, i.e. always for byte counts.
  return ret < 0 ? -errnoView[0]! : (ret as number);
}

export class SyscallError extends Error {
  readonly syscall: string;
  readonly errno: number;
  /** Node-style code, e.g. "EADDRINUSE". */
  readonly code: string;
  constructor(syscall: string, errnoValue: number, detail?: string) {
    const code = errnoName(errnoValue);
    super(`${syscall}: ${code}${detail ? ` (${detail})` : ""}`);
    this.name = "SyscallError";
    this.syscall = syscall;
    this.errno = errnoValue;
    this.code = code;
  }
}

/** Setup-path translation: returns `ret`, or throws a SyscallError naming syscall and errno. */
export function check(syscall: string, ret: number | bigint, detail?: string): number {
  if (ret < 0) throw new SyscallError(syscall, errnoView[0]!, detail);
  return ret as number;
}

/** Builds the error for a `-errno` value returned by a hot-path call. */
export function errorFromRc(syscall: string, negErrno: number, detail?: string): SyscallError {
  return new SyscallError(syscall, -negErrno, detail);
}
