// serve(): the TCP server API before listen(). Kept as a deprecated alias until the HTTP
// server takes the name serve() in the shape of Bun.serve.

import { serveHandler, type ListenOptions, type Server } from "./listen.ts";
import type { Handler } from "./stream/stream.ts";

export type { Server } from "./listen.ts";

/** @deprecated Use listen({ socket: {...} }). */
export interface ServeOptions<T> extends Omit<ListenOptions<T>, "socket" | "data"> {
  handler: Handler<T>;
}

/** @deprecated Use listen({ hostname, port, socket: { open, data, ... } }), as Bun.listen. */
export function serve<T = undefined>(options: ServeOptions<T>): Server {
  return serveHandler(options, options.handler);
}
