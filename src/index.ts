// bunpoll's package root: the library API with its types.
export { serve, type ServeOptions, type Server } from "./serve.ts";
export { Reactor, wakeReactor, type ReactorOptions, type StopOptions } from "./reactor/reactor.ts";
export type { Listener } from "./reactor/listener.ts";
export type { ConnectionOptions } from "./reactor/connection.ts";
export { SharedBytes } from "./reactor/write-queue.ts";
export { ReactorStats } from "./reactor/stats.ts";
export { ConnState, type Connection, type Handler, type CloseReason } from "./types.ts";
export { createEchoProtocol } from "./protocols/echo.ts";
export { SyscallError } from "../ffi/errno.ts";
// The client library (also importable alone from src/client/index.ts).
export * from "./client/index.ts";
