// The client library's public API.
//
//   import { connect } from "bunpoll/client";
//   const c = await connect({ port: 7000 });           // framed: HELLO -> WELCOME
//   c.on("message", (m) => console.log(m.kind, m.from, m.text));
//   await c.ping(); await c.broadcast("hi"); await c.send(3, "psst"); await c.stats();
//   await c.close();
//   const ws = await connect({ protocol: "ws", port: 8080, path: "/ws/chat" }); // WebSocket

export {
  connect,
  Client,
  defaultReactor,
  describeClose,
  DEFAULT_TIMEOUT_MS,
  type ClientOptions,
  type ClientEvents,
  type CloseInfo,
  type ReplyCallback,
} from "./client.ts";
export {
  connectWithReconnect,
  ReconnectingClient,
  Backoff,
  type BackoffOptions,
  type ReconnectOptions,
  type ReconnectingClientEvents,
} from "./reconnect.ts";
export { runBench, type BenchOptions, type BenchResult, type BenchProgress, type BenchLatency } from "./bench.ts";
export {
  ClientError,
  ServerError,
  NotSupportedError,
  ConnectionClosedError,
  RequestTimeoutError,
  ConnectError,
  ProtocolMismatchError,
} from "./errors.ts";
export {
  CLIENT_PROTOCOLS,
  DEFAULT_PORTS,
  DEFAULT_WS_PATH,
  WS_CHAT_PATH,
  SUPPORTED_OPS,
  type ClientProtocolName,
  type IncomingMessage,
  type Op,
  type ServerNotice,
  type ServerStats,
} from "./protocol.ts";
