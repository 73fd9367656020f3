// Declarative bun:ffi bindings to glibc, one table per syscall family. Nothing here but
// symbol specs: error handling lives in errno.ts, constants in constants.ts, struct layouts
// in structs.ts.
//
// FFIType enum values rather than strings: bun-types knows i64_fast only as an enum.
// Return types are i32 or i64_fast on purpose: i64/u64/usize returns are BigInts, which
// allocate after every call (see shared/BUN-FFI-NOTES.md). Size arguments are u64.

import { dlopen, FFIType as T, type FFIFunction } from "bun:ffi";

const sockets = {
  socket: { args: [T.i32, T.i32, T.i32], returns: T.i32 },
  setsockopt: { args: [T.i32, T.i32, T.i32, T.ptr, T.u32], returns: T.i32 },
  getsockopt: { args: [T.i32, T.i32, T.i32, T.ptr, T.ptr], returns: T.i32 },
  bind: { args: [T.i32, T.ptr, T.u32], returns: T.i32 },
  listen: { args: [T.i32, T.i32], returns: T.i32 },
  accept4: { args: [T.i32, T.ptr, T.ptr, T.i32], returns: T.i32 },
  connect: { args: [T.i32, T.ptr, T.u32], returns: T.i32 },
  shutdown: { args: [T.i32, T.i32], returns: T.i32 },
  getsockname: { args: [T.i32, T.ptr, T.ptr], returns: T.i32 },
  getpeername: { args: [T.i32, T.ptr, T.ptr], returns: T.i32 },
} as const satisfies Record<string, FFIFunction>;

const epoll = {
  epoll_create1: { args: [T.i32], returns: T.i32 },
  epoll_ctl: { args: [T.i32, T.i32, T.i32, T.ptr], returns: T.i32 },
  epoll_wait: { args: [T.i32, T.ptr, T.i32, T.i32], returns: T.i32 },
  eventfd: { args: [T.u32, T.i32], returns: T.i32 },
} as const satisfies Record<string, FFIFunction>;

const io = {
  read: { args: [T.i32, T.ptr, T.u64], returns: T.i64_fast },
  write: { args: [T.i32, T.ptr, T.u64], returns: T.i64_fast },
  send: { args: [T.i32, T.ptr, T.u64, T.i32], returns: T.i64_fast },
  sendmsg: { args: [T.i32, T.ptr, T.i32], returns: T.i64_fast }, // gather send + MSG_NOSIGNAL
  recv: { args: [T.i32, T.ptr, T.u64, T.i32], returns: T.i64_fast },
  open: { args: [T.ptr, T.i32], returns: T.i32 }, // path: NUL-terminated bytes
  close: { args: [T.i32], returns: T.i32 },
} as const satisfies Record<string, FFIFunction>;

const files = {
  // sendfile(out, in, off_t *offset, count): the kernel copies file pages to the socket;
  // glibc's sendfile is sendfile64 on LP64 (a 64-bit off_t).
  sendfile: { args: [T.i32, T.i32, T.ptr, T.u64], returns: T.i64_fast },
  pread: { args: [T.i32, T.ptr, T.u64, T.i64], returns: T.i64_fast },
  fstat: { args: [T.i32, T.ptr], returns: T.i32 }, // struct stat: layout in structs.ts
  readlink: { args: [T.ptr, T.ptr, T.u64], returns: T.i64_fast },
  // syscall(SYS_openat2, dirfd, path, struct open_how *, size): glibc 2.36 has no openat2
  // wrapper. Only that call goes through it (the fixed signature below is openat2's).
  syscall: { args: [T.i64, T.i32, T.ptr, T.ptr, T.u64], returns: T.i64_fast },
} as const satisfies Record<string, FFIFunction>;

const mem = {
  // Copies between JS buffers: past a few bytes cheaper than a JS byte loop, and unlike
  // set(subarray()) it allocates no view.
  memcpy: { args: [T.ptr, T.ptr, T.u64], returns: T.void },
} as const satisfies Record<string, FFIFunction>;

const proc = {
  __errno_location: { args: [], returns: T.ptr },
  getrlimit: { args: [T.i32, T.ptr], returns: T.i32 },
  // pid 0: the calling thread (Linux affinity is per thread), so a Worker pins only itself.
  sched_getaffinity: { args: [T.i32, T.u64, T.ptr], returns: T.i32 },
  sched_setaffinity: { args: [T.i32, T.u64, T.ptr], returns: T.i32 },
} as const satisfies Record<string, FFIFunction>;

const lib = dlopen("libc.so.6", { ...sockets, ...epoll, ...io, ...files, ...mem, ...proc });

/** Raw libc entry points. Prefer the wrappers in errno.ts for anything that can fail. */
export const libc = lib.symbols;
