// bunpoll's package root: the library API with its types.
export { listen, type ListenOptions, type SocketHandler, type Server } from "./listen.ts";
export { serve, SendStatus, type ServerWebSocket, type WebSocketHandler, type ServeOptions, type HttpServer, type HttpRequest, type Routes, type RouteHandler, type MethodTable } from "./serve.ts";
export { serveHandler } from "./listen.ts";
export { listenWorkers, serveWorkers, type WorkersOptions, type WorkersServer } from "./workers/library.ts";
export { staticFiles, FileResponse, type StaticFilesOptions, type StaticRequest } from "./protocols/http/static.ts";
export { SharedFile } from "./buffers/shared-file.ts";
export { Reactor, wakeReactor, reactorIndexOf, type ReactorOptions, type StopOptions } from "./reactor/reactor.ts";
export type { Listener } from "./reactor/listener.ts";
export type { ConnectionOptions } from "./stream/tcp-stream.ts";
export { SharedBytes } from "./buffers/shared-bytes.ts";
export { ReactorStats } from "./reactor/stats.ts";
export { StreamState, type Stream, type Connection, type Handler, type CloseReason } from "./stream/stream.ts";
export { createEchoProtocol } from "./protocols/echo.ts";
export { SyscallError } from "../ffi/errno.ts";
// The client library (also importable alone from src/client/index.ts).
export * from "./client/index.ts";
