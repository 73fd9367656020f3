// The protocols the CLI can serve, with their default ports.

import type { Handler } from "../types.ts";
import { createEchoProtocol } from "./echo.ts";

export interface ProtocolEntry {
  defaultPort: number;
  create(): Handler<any>;
}

export const PROTOCOLS = {
  echo: { defaultPort: 5050, create: () => createEchoProtocol() },
} satisfies Record<string, ProtocolEntry>;

export type ProtocolName = keyof typeof PROTOCOLS;
export const PROTOCOL_NAMES = Object.keys(PROTOCOLS) as ProtocolName[];
