// The echo protocol, client side: raw bytes out, the same bytes back. There is no framing,
// so a reply is "the next N bytes", N being the length of the request it answers (TCP
// keeps order and the server sends back exactly what it got).

import { plural } from "../cli/plural.ts";
import { NotSupportedError } from "./errors.ts";
import { utf8, type Encoded, type Op, type Wire, type WireSink } from "./protocol.ts";

export class EchoWire implements Wire {
  readonly protocol = "echo";
  readonly names: Record<Op, readonly [string, string]> = {
    hello: ["-", "-"],
    ping: ["-", "-"],
    echo: ["bytes", "same bytes"],
    broadcast: ["-", "-"],
    send: ["-", "-"],
    stats: ["-", "-"],
  };
  /** Lengths of the requests still waiting for their bytes, oldest first. */
  private readonly expected: number[] = [];
  private head = 0;
  /** The reply being filled (for the oldest expected length). */
  private current: Uint8Array | null = null;
  private have = 0;

  constructor(private readonly sink: WireSink) {}

  get inFrame(): boolean {
    return this.have > 0;
  }

  push(bytes: Uint8Array): void {
    let pos = 0;
    while (pos < bytes.length) {
      if (this.current === null) {
        if (this.head >= this.expected.length) {
          this.sink.mismatch(`${plural(bytes.length - pos, "byte")} from the server with no request waiting; is it an echo server?`);
          return;
        }
        this.current = new Uint8Array(this.expected[this.head++]!);
        this.have = 0;
        if (this.head > 1024 && this.head * 2 > this.expected.length) {
          this.expected.splice(0, this.head);
          this.head = 0;
        }
      }
      const cur = this.current;
      const take = Math.min(cur.length - this.have, bytes.length - pos);
      cur.set(bytes.subarray(pos, pos + take), this.have);
      this.have += take;
      pos += take;
      if (this.have === cur.length) {
        this.current = null;
        this.have = 0;
        this.sink.reply({ op: "echo", bytes: cur, text: null });
      }
    }
  }

  finish(): void {}

  hello(): null {
    return null;
  }

  echo(payload: Uint8Array | string): Encoded {
    const bytes = typeof payload === "string" ? utf8.encode(payload) : payload;
    // An empty request gets no bytes back, so nothing could ever complete it.
    if (bytes.length === 0) throw new RangeError("the echo protocol cannot echo an empty message");
    return { bytes, expectsReply: true };
  }

  /** The reply to this request is the next `length` bytes after the earlier requests' replies. */
  requestWritten(_op: Op, encoded: Encoded): void {
    this.expected.push(encoded.bytes.length);
  }

  ping(): Encoded {
    throw new NotSupportedError("ping", "echo");
  }

  broadcast(): Encoded {
    throw new NotSupportedError("broadcast", "echo");
  }

  send(): Encoded {
    throw new NotSupportedError("send", "echo");
  }

  stats(): Encoded {
    throw new NotSupportedError("stats", "echo");
  }
}
