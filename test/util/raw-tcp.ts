// Raw loopback TCP sockets built from the project's own setup calls, for tests that must
// control exactly when bytes are sent and read (no Bun or node:net socket in between).

import { libc, rc, Errno, SOCK_NONBLOCK, SOCK_CLOEXEC } from "../../ffi/index.ts";
import { createListenSocket, localAddress, startConnect } from "../../src/driver/sockets.ts";

/** Accepts one connection from a non-blocking listening fd, waiting up to 5 s for it. */
export async function acceptRaw(listenFd: number): Promise<number> {
  const deadline = performance.now() + 5000;
  for (;;) {
    const fd = rc(libc.accept4(listenFd, null, null, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (fd >= 0) return fd;
    if (fd !== -Errno.EAGAIN) throw new Error(`accept4: errno ${-fd}`);
    if (performance.now() > deadline) throw new Error("accept4: nothing to accept");
    await Bun.sleep(1);
  }
}

export interface RawPair extends Disposable {
  /** The accepted (server) side. */
  a: number;
  /** The connecting (client) side. */
  b: number;
}

/**
 * A connected, non-blocking loopback TCP pair of raw fds. Disposing it closes both sides; a
 * test that hands a side to its own owner (or closes it) sets that field to -1.
 */
export async function rawTcpPair(): Promise<RawPair> {
  using listener = createListenSocket({ hostname: "127.0.0.1", port: 0 });
  const { fd } = startConnect("127.0.0.1", localAddress(listener.value).port);
  using client = fd;
  const a = await acceptRaw(listener.value);
  const pair: RawPair = {
    a,
    b: client.release(),
    [Symbol.dispose]() {
      if (pair.a >= 0) libc.close(pair.a);
      if (pair.b >= 0) libc.close(pair.b);
      pair.a = pair.b = -1;
    },
  };
  return pair;
}
