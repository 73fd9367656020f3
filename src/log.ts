// The server's one logger: every line the server CLI prints about what it does (listening,
// signals, stopping, warnings, errors, the reactor's and the HTTP app's diagnostics) goes
// through here. `--log-format text` (the default) prints the lines as they always were;
// `--log-format json` prints each as one JSON object per line with `time` (ISO-8601),
// `level`, `event` (a short stable name), the fields known for it (`connection`, `remote`,
// `reason`...) and `message` (the text line without its "bunpoll: " prefix).
// Each line goes to the stream its text form uses: listening and stats lines to stdout,
// the rest to stderr.

import { formatHostPort } from "../ffi/index.ts";
import type { LogContext } from "./reactor/reactor.ts";

export const LOG_FORMATS = ["text", "json"] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];
export type LogLevel = "info" | "warn" | "error";

/** Fields of a structured line; undefined ones are left out. */
export type LogFields = Record<string, string | number | boolean | undefined>;

export interface LoggerOptions {
  format?: LogFormat;
  /** Where stdout lines go (default console.log). */
  stdout?: (line: string) => void;
  /** Where stderr lines go (default console.error). */
  stderr?: (line: string) => void;
  /** Wall clock, ms (default Date.now). */
  now?: () => number;
}

export class Logger {
  format: LogFormat;
  private readonly stdout: (line: string) => void;
  private readonly stderr: (line: string) => void;
  private readonly now: () => number;

  constructor(options: LoggerOptions = {}) {
    this.format = options.format ?? "text";
    this.stdout = options.stdout ?? ((l) => console.log(l));
    this.stderr = options.stderr ?? ((l) => console.error(l));
    this.now = options.now ?? Date.now;
  }

  /** A line for stdout, printed as `message` in text (listening lines, stats lines). */
  print(event: string, message: string, fields?: LogFields): void {
    this.stdout(this.format === "json" ? this.json("info", event, message, fields) : message);
  }

  /** stderr lines, printed as `bunpoll: message` in text. */
  info(event: string, message: string, fields?: LogFields): void {
    this.stderr(this.format === "json" ? this.json("info", event, message, fields) : `bunpoll: ${message}`);
  }

  warn(event: string, message: string, fields?: LogFields): void {
    this.stderr(this.format === "json" ? this.json("warn", event, message, fields) : `bunpoll: ${message}`);
  }

  error(event: string, message: string, fields?: LogFields): void {
    this.stderr(this.format === "json" ? this.json("error", event, message, fields) : `bunpoll: ${message}`);
  }

  /**
   * The reactor's `log` option (and the HTTP app's): text prints `[bunpoll] line` as the
   * reactor's default does; json takes the event, level and connection from `context`.
   */
  readonly component = (line: string, context?: LogContext): void => {
    if (this.format !== "json") {
      this.stderr(`[bunpoll] ${line}`);
      return;
    }
    let remote: string | undefined;
    const peer = context?.peer;
    if (peer !== undefined) {
      const address = peer.remoteAddress;
      if (address !== "") remote = formatHostPort(address, peer.remotePort);
    }
    this.stderr(
      this.json(context?.level ?? "warn", context?.event ?? "diagnostic", line, {
        connection: context?.connection,
        remote,
        reason: context?.reason,
        suppressed: context?.suppressed,
      }),
    );
  };

  private json(level: LogLevel, event: string, message: string, fields?: LogFields): string {
    const o: Record<string, unknown> = { time: new Date(this.now()).toISOString(), level, event };
    if (fields !== undefined) for (const k of Object.keys(fields)) if (fields[k] !== undefined) o[k] = fields[k];
    o.message = message;
    return JSON.stringify(o);
  }
}

/** The process's logger: the server CLI sets its format from `--log-format`. */
export const processLog = new Logger();
