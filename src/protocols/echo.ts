// Raw echo: every byte that arrives goes back. The simplest protocol on the reactor, and
// the one the benchmarks compare with other servers. write() copies the bytes out of the
// shared receive buffer, and a full output queue pauses reading (backpressure) by itself.

import type { Stream } from "../stream/stream.ts";

/** Only `data`: usable as a reactor Handler and as listen()'s `socket` alike. */
export interface EchoHandler {
  data(stream: Stream<any>, bytes: Uint8Array): void;
}

export function createEchoProtocol(): EchoHandler {
  return {
    data(conn, bytes) {
      conn.write(bytes);
    },
  };
}
