// The line protocol, client side: newline-delimited chat. A line we send is a broadcast;
// what arrives is `<id>: text` (broadcast), `<id> (direct): text` (direct message) or
// `ERR text` (a notice). Nothing is acknowledged, so nothing here is a reply.

import { ERROR_MESSAGES, errorName, ErrorCode } from "../protocols/codec/errors.ts";
import { LineDecoder } from "../protocols/codec/line-decoder.ts";
import { NotSupportedError } from "./errors.ts";
import { utf8, utf8Lossy, type Encoded, type Op, type Wire, type WireSink } from "./protocol.ts";

/**
 * Longest line accepted from the server. The server caps what clients send (64 KiB by
 * default) and adds a short prefix; this is generous so a server with a raised
 * --max-line still works.
 */
const MAX_INCOMING_LINE = 1024 * 1024;

const BROADCAST_RE = /^(\d+): /;
const DIRECT_RE = /^(\d+) \(direct\): /;

/** `ERR <text>` back to an error name: the server writes the standard message per code. */
function errorNameOfText(text: string): string {
  if (text === "line too long") return errorName(ErrorCode.FRAME_TOO_LARGE);
  const i = ERROR_MESSAGES.indexOf(text);
  return i > 0 ? errorName(i) : "error";
}

export class LineWire implements Wire {
  readonly protocol = "line";
  readonly names: Record<Op, readonly [string, string]> = {
    hello: ["token line", "(no reply)"],
    ping: ["-", "-"],
    echo: ["-", "-"],
    broadcast: ["line", "(no reply)"],
    send: ["-", "-"],
    stats: ["-", "-"],
  };
  private readonly decoder: LineDecoder;

  constructor(private readonly sink: WireSink) {
    this.decoder = new LineDecoder(
      {
        line: (buf, off, len) => this.onLine(utf8Lossy.decode(buf.subarray(off, off + len))),
        tooLong: () => sink.mismatch(`a line from the server passed ${MAX_INCOMING_LINE} bytes; is it speaking the line protocol?`),
      },
      MAX_INCOMING_LINE,
    );
  }

  get inFrame(): boolean {
    return this.decoder.inFrame;
  }

  push(bytes: Uint8Array): void {
    this.decoder.push(bytes);
  }

  finish(): void {
    this.decoder.finish();
  }

  /** With auth on, the first line is the token. Success is silent; failure is `ERR` + close. */
  hello(token: string | undefined): Encoded | null {
    return token === undefined ? null : { bytes: utf8.encode(`${token}\n`), expectsReply: false };
  }

  ping(): Encoded {
    throw new NotSupportedError("ping", "line");
  }

  echo(): Encoded {
    throw new NotSupportedError("echo", "line");
  }

  /**
   * One line. CR and LF inside the text become spaces (as the server does when it relays
   * other protocols' messages to line clients): one message stays one line.
   */
  broadcast(payload: Uint8Array | string): Encoded {
    const text = typeof payload === "string" ? payload : utf8Lossy.decode(payload);
    return { bytes: utf8.encode(`${text.replace(/[\r\n]/g, " ")}\n`), expectsReply: false };
  }

  send(): Encoded {
    throw new NotSupportedError("send", "line");
  }

  stats(): Encoded {
    throw new NotSupportedError("stats", "line");
  }

  private onLine(line: string): void {
    let m = DIRECT_RE.exec(line);
    const kind = m ? "direct" : "broadcast";
    if (!m) m = BROADCAST_RE.exec(line);
    if (m) {
      const text = line.slice(m[0].length);
      this.sink.message({ kind, fromId: Number(m[1]), from: m[1]!, text, payload: utf8.encode(text) });
      return;
    }
    if (line.startsWith("ERR ")) {
      const text = line.slice(4);
      this.sink.error(errorNameOfText(text), text);
      return;
    }
    // Chat lines start with a decimal id; anything else is not from a line server we know.
    this.sink.notice({ code: "unrecognized_line", message: line });
  }
}
