// ffi/: declarative libc bindings, constants, struct layouts and the errno translation point.
export { libc } from "./libc.ts";
export * from "./constants.ts";
export * from "./structs.ts";
export * from "./errno.ts";
