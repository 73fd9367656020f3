// Automatic reconnection with exponential backoff and jitter, for long-lived clients
// (`listen`, `interactive`). The first connection must succeed (a server that is absent
// at start is an error the caller reports); after that, a lost connection is retried
// until it comes back, the server refuses us (unauthorized: retrying cannot help), the
// attempt limit is reached, or close() is called.

import { plural } from "../cli/plural.ts";
import { Client, connect, type ClientOptions, type CloseInfo } from "./client.ts";
import { Listeners } from "./events.ts";
import { ClientError, ConnectError, ConnectionClosedError } from "./errors.ts";
import { SUPPORTED_OPS, type IncomingMessage, type Op, type ServerNotice, type ServerStats } from "./protocol.ts";

export interface BackoffOptions {
  /** Delay before the first retry (ms). Default 100. */
  initialMs?: number;
  /** Ceiling of the delay (ms). Default 5000. */
  maxMs?: number;
  /** Growth per attempt. Default 2. */
  factor?: number;
  /**
   * Fraction of the delay that is random: the delay is uniform in [d * (1 - jitter), d].
   * Default 0.5. Jitter keeps many clients cut off by one restart from all coming back in
   * the same millisecond.
   */
  jitter?: number;
  /** Give up after this many failed attempts in a row (0: never). Default 0. */
  maxAttempts?: number;
  /** Injectable for tests. Default Math.random. */
  random?: () => number;
}

/** Delays of exponential backoff with jitter. `next()` after each failure, `reset()` after a success. */
export class Backoff {
  readonly initialMs: number;
  readonly maxMs: number;
  readonly factor: number;
  readonly jitter: number;
  readonly maxAttempts: number;
  private readonly random: () => number;
  /** Failed attempts since the last reset. */
  attempt = 0;

  constructor(o: BackoffOptions = {}) {
    this.initialMs = o.initialMs ?? 100;
    this.maxMs = o.maxMs ?? 5000;
    this.factor = o.factor ?? 2;
    this.jitter = Math.min(1, Math.max(0, o.jitter ?? 0.5));
    this.maxAttempts = o.maxAttempts ?? 0;
    this.random = o.random ?? Math.random;
    if (!(this.initialMs > 0) || !(this.maxMs >= this.initialMs) || !(this.factor >= 1)) {
      throw new RangeError("backoff: need initialMs > 0, maxMs >= initialMs, factor >= 1");
    }
  }

  /** True when the attempt limit is reached. */
  get exhausted(): boolean {
    return this.maxAttempts > 0 && this.attempt >= this.maxAttempts;
  }

  /** The delay before the next attempt (ms); counts the attempt. */
  next(): number {
    const ceiling = Math.min(this.maxMs, this.initialMs * this.factor ** this.attempt);
    this.attempt++;
    return ceiling * (1 - this.jitter * this.random());
  }

  reset(): void {
    this.attempt = 0;
  }
}

export interface ReconnectingClientEvents {
  message: (m: IncomingMessage) => void;
  notice: (n: ServerNotice) => void;
  /** The connection was lost; a retry follows unless `willRetry` is false. */
  disconnect: (info: CloseInfo, willRetry: boolean) => void;
  /** Waiting `delayMs` before attempt number `attempt`. */
  reconnecting: (attempt: number, delayMs: number, lastError: Error | null) => void;
  /** Connected again (the client id may have changed). */
  reconnect: (client: Client) => void;
  /** No more retries: why. */
  giveUp: (reason: Error) => void;
}

export interface ReconnectOptions extends ClientOptions {
  backoff?: BackoffOptions;
}

/** A client that reconnects by itself. Requests made while disconnected reject at once. */
export class ReconnectingClient {
  private current: Client | null = null;
  private stopped = false;
  private wakeSleep: (() => void) | null = null;
  private readonly backoff: Backoff;
  private readonly listeners = new Listeners<ReconnectingClientEvents>();
  private resolveDone!: (reason: Error | null) => void;
  /** Settles when the client stops for good: null after close(), else the reason it gave up. */
  readonly done: Promise<Error | null>;

  constructor(private readonly options: ReconnectOptions) {
    this.backoff = new Backoff(options.backoff);
    this.done = new Promise((r) => (this.resolveDone = r));
  }

  /** The live client, or null while reconnecting. */
  get client(): Client | null {
    return this.current;
  }

  get isConnected(): boolean {
    return this.current !== null && this.current.isOpen;
  }

  on<K extends keyof ReconnectingClientEvents>(event: K, listener: ReconnectingClientEvents[K]): () => void {
    return this.listeners.on(event, listener);
  }

  private emit<K extends keyof ReconnectingClientEvents>(event: K, ...args: Parameters<ReconnectingClientEvents[K]>): void {
    this.listeners.emit(event, ...args);
  }

  /** The first connection; rejects (ConnectError) when it fails. */
  async start(): Promise<Client> {
    const c = await connect(this.options);
    this.adopt(c);
    return c;
  }

  private adopt(c: Client): void {
    this.current = c;
    this.backoff.reset();
    c.on("message", (m) => this.emit("message", m));
    c.on("notice", (n) => this.emit("notice", n));
    c.on("close", (info) => this.onLost(c, info));
  }

  private onLost(c: Client, info: CloseInfo): void {
    if (this.current !== c) return;
    this.current = null;
    if (this.stopped || info.byClient) return;
    const refusal = refusalOf(info);
    this.emit("disconnect", info, refusal === null);
    if (refusal !== null) {
      this.finish(refusal);
      return;
    }
    void this.retryLoop();
  }

  private async retryLoop(): Promise<void> {
    let lastError: Error | null = null;
    while (!this.stopped) {
      if (this.backoff.exhausted) {
        this.finish(new ClientError("gave_up", `gave up after ${plural(this.backoff.attempt, "attempt")}${lastError ? `: ${lastError.message}` : ""}`));
        return;
      }
      const delay = this.backoff.next();
      this.emit("reconnecting", this.backoff.attempt, delay, lastError);
      await this.sleep(delay);
      if (this.stopped) return;
      try {
        const c = await connect(this.options);
        if (this.stopped) {
          c.destroy();
          return;
        }
        this.adopt(c);
        this.emit("reconnect", c);
        return;
      } catch (e) {
        lastError = e as Error;
        // The server is up and says no: retrying cannot help.
        if (e instanceof ConnectError && e.code === "unauthorized") {
          this.finish(e);
          return;
        }
      }
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.wakeSleep = null;
        resolve();
      }, ms);
      this.wakeSleep = () => {
        clearTimeout(t);
        this.wakeSleep = null;
        resolve();
      };
    });
  }

  private finish(reason: Error | null): void {
    if (this.stopped) return;
    this.stopped = true;
    if (reason !== null) this.emit("giveUp", reason);
    this.resolveDone(reason);
  }

  /** Stops reconnecting and closes the connection. */
  async close(): Promise<void> {
    const c = this.current;
    this.finish(null);
    this.wakeSleep?.();
    if (c !== null) await c.close();
  }

  // Requests go to the live connection; while reconnecting they reject at once, since
  // queueing them for a server that may never come back would hang the caller.
  private live(): Client {
    if (this.current === null || !this.current.isOpen) throw new ConnectionClosedError("not connected (reconnecting)");
    return this.current;
  }

  supports(op: Op): boolean {
    return SUPPORTED_OPS[this.options.protocol ?? "framed"].includes(op);
  }

  async ping(payload?: string | Uint8Array): Promise<number> {
    return this.live().ping(payload);
  }
  async echo(text: string): Promise<string> {
    return this.live().echo(text);
  }
  async broadcast(payload: string | Uint8Array): Promise<number | null> {
    return this.live().broadcast(payload);
  }
  async send(to: number | string, payload: string | Uint8Array): Promise<void> {
    return this.live().send(to, payload);
  }
  async stats(): Promise<ServerStats> {
    return this.live().stats();
  }
}

/** A close the server meant: it said "unauthorized" before closing. Null: worth retrying. */
function refusalOf(info: CloseInfo): Error | null {
  if (info.lastNotice?.code === "unauthorized") {
    return new ClientError("unauthorized", `the server refused us: ${info.lastNotice.message || "unauthorized"}`);
  }
  if (info.reason === "protocol") return info.error ?? new ClientError("protocol_mismatch", "protocol error");
  return null;
}

/** Connects (the first attempt must succeed) and keeps reconnecting after that. */
export async function connectWithReconnect(options: ReconnectOptions = {}): Promise<ReconnectingClient> {
  const rc = new ReconnectingClient(options);
  await rc.start();
  return rc;
}
