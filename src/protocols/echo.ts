// Raw echo: every byte that arrives goes back. The simplest protocol on the reactor, and
// the one the benchmarks compare with other servers. write() copies the bytes out of the
// shared receive buffer, and a full output queue pauses reading (backpressure) by itself.

import type { Handler } from "../stream/stream.ts";

export function createEchoProtocol(): Handler<undefined> {
  return {
    data(conn, bytes) {
      conn.write(bytes);
    },
  };
}
