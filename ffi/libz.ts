// Declarative bun:ffi bindings to the system's zlib (libz.so.1): the streaming deflate and
// inflate that permessage-deflate with context takeover needs (RFC 7692), and that node:zlib's
// synchronous calls cannot keep between messages. Nothing here but symbol specs, constants
// and the z_stream layout; src/protocols/ws/deflate.ts drives them.
//
// Loaded on first use (zlibBindings()): a server that never compresses never opens libz.

import { dlopen, FFIType as T, type FFIFunction } from "bun:ffi";

const symbols = {
  zlibVersion: { args: [], returns: T.cstring },
  // deflateInit2_(strm, level, method, windowBits, memLevel, strategy, version, sizeof(z_stream))
  deflateInit2_: { args: [T.ptr, T.i32, T.i32, T.i32, T.i32, T.i32, T.ptr, T.i32], returns: T.i32 },
  deflate: { args: [T.ptr, T.i32], returns: T.i32 },
  deflateReset: { args: [T.ptr], returns: T.i32 },
  deflateEnd: { args: [T.ptr], returns: T.i32 },
  // inflateInit2_(strm, windowBits, version, sizeof(z_stream))
  inflateInit2_: { args: [T.ptr, T.i32, T.ptr, T.i32], returns: T.i32 },
  inflate: { args: [T.ptr, T.i32], returns: T.i32 },
  inflateReset: { args: [T.ptr], returns: T.i32 },
  inflateEnd: { args: [T.ptr], returns: T.i32 },
} as const satisfies Record<string, FFIFunction>;

export type ZlibSymbols = ReturnType<typeof dlopen<typeof symbols>>["symbols"];

let lib: ZlibSymbols | null = null;

/** The zlib entry points (libz.so.1 opened on the first call). */
export function zlibBindings(): ZlibSymbols {
  return (lib ??= dlopen("libz.so.1", symbols).symbols);
}

// Return codes and flush values (zlib.h).
export const Z_OK = 0;
export const Z_STREAM_END = 1;
export const Z_NEED_DICT = 2;
export const Z_BUF_ERROR = -5;
export const Z_NO_FLUSH = 0;
export const Z_SYNC_FLUSH = 2;
export const Z_DEFLATED = 8;
export const Z_DEFAULT_STRATEGY = 0;
export const Z_DEFAULT_COMPRESSION = -1;

/**
 * struct z_stream_s on LP64 (x86-64 and aarch64 alike): byte offsets of the fields we touch.
 * next_in/next_out are pointers, avail_in/avail_out 32-bit, total_in/total_out unsigned long.
 */
export const zStream = {
  size: 112,
  nextIn: 0,
  availIn: 8,
  nextOut: 24,
  availOut: 32,
  msg: 48,
} as const;
