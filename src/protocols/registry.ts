// The protocols the CLI can serve, with their default ports. Every protocol gets the
// process's one ProtocolContext, so listeners of different protocols share the hub
// (a broadcast reaches every client) and the stats.

import type { Handler } from "../stream/stream.ts";
import type { ProtocolContext } from "./context.ts";
import { createEchoProtocol } from "./echo.ts";
import { createFramedProtocol } from "./framed.ts";
import { createJsonProtocol } from "./json.ts";
import { createLineProtocol } from "./line.ts";
import { builtinApp } from "./http/app.ts";
import { createHttpProtocol } from "./http/server.ts";

export interface ProtocolEntry {
  defaultPort: number;
  create(ctx: ProtocolContext): Handler<any>;
}

export const PROTOCOLS = {
  framed: { defaultPort: 7000, create: (ctx) => createFramedProtocol(ctx) },
  json: { defaultPort: 9999, create: (ctx) => createJsonProtocol(ctx) },
  line: { defaultPort: 7070, create: (ctx) => createLineProtocol(ctx) },
  echo: { defaultPort: 5050, create: () => createEchoProtocol() },
  http: { defaultPort: 8080, create: (ctx) => createHttpProtocol(builtinApp(ctx)) },
} satisfies Record<string, ProtocolEntry>;

export type ProtocolName = keyof typeof PROTOCOLS;
export const PROTOCOL_NAMES = Object.keys(PROTOCOLS) as ProtocolName[];
