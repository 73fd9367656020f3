// A Connection that records what a handler does to it: writes (copied, as the real
// write() copies), end/close, pause/resume. With a handler attached, close() calls the
// handler's `close` like the reactor does, so hub membership is exercised for real.

import { StreamState, type CloseReason, type Connection, type Handler } from "../../src/stream/stream.ts";
import type { SharedBytes } from "../../src/buffers/shared-bytes.ts";
import type { SharedFile } from "../../src/buffers/shared-file.ts";
import { readFileRange } from "../../src/driver/files.ts";

let nextId = 1;

export interface FakeConnectionOptions {
  remoteAddress?: string;
  remotePort?: number;
  /** write() returns false once this many bytes are queued (default: never). */
  highWaterMark?: number;
  handler?: Handler<any>;
  /** The stream id (default: the next of a process-wide counter). */
  id?: number;
}

export class FakeConnection<T = any> implements Connection<T> {
  readonly id: number;
  data!: T;
  state: StreamState = StreamState.Open;
  readonly remoteAddress: string;
  readonly remotePort: number;
  bufferedAmount = 0;
  readonly highWaterMark: number;
  handler: Handler<any>;
  /** Every write, as a copy, in order. */
  readonly writes: Uint8Array[] = [];
  /** The buffer each write was given (not copied): shows whether a reply reused the input. */
  readonly sources: (Uint8Array | string)[] = [];
  writeCalls = 0;
  endCalls = 0;
  closeReason: CloseReason | null = null;
  paused = false;
  /** Runs after each accepted write: lets a test simulate the reactor closing a slow consumer. */
  afterWrite: ((conn: FakeConnection<T>) => void) | null = null;

  constructor(opts: FakeConnectionOptions = {}) {
    this.id = opts.id ?? nextId++;
    this.remoteAddress = opts.remoteAddress ?? "127.0.0.1";
    this.remotePort = opts.remotePort ?? 40000 + this.id;
    this.highWaterMark = opts.highWaterMark ?? Infinity;
    this.handler = opts.handler ?? {};
  }

  write(bytes: Uint8Array | string, start = 0, end = -1): boolean {
    this.writeCalls++;
    if (this.state >= StreamState.Flushing) return false;
    const b = typeof bytes === "string" ? new TextEncoder().encode(bytes) : bytes.slice(start, end < 0 ? bytes.length : end);
    this.writes.push(b);
    this.sources.push(bytes);
    this.bufferedAmount += b.length;
    this.afterWrite?.(this);
    return this.bufferedAmount < this.highWaterMark;
  }

  /** writePrefixed() calls; recorded in `writes` as one write, `sources` gets `bytes` itself. */
  prefixedWrites = 0;

  writePrefixed(prefix: number, bytes: Uint8Array, start = 0, end = bytes.length): boolean {
    this.prefixedWrites++;
    const b = new Uint8Array(4 + end - start);
    new DataView(b.buffer).setUint32(0, prefix >>> 0);
    b.set(bytes.subarray(start, end), 4);
    const ok = this.write(b);
    this.sources[this.sources.length - 1] = bytes;
    return ok;
  }

  /** writeShared() calls (recorded in `writes` like a copy; `sources` gets the SharedBytes' bytes). */
  sharedWrites = 0;

  writeShared(shared: SharedBytes, start = 0, end = shared.length): boolean {
    this.sharedWrites++;
    return this.write(shared.bytes, start, end);
  }

  /** writeFile() calls (recorded in `writes` as the file's bytes, read at once). */
  fileWrites = 0;

  writeFile(file: SharedFile, start = 0, end = file.size): boolean {
    this.fileWrites++;
    return this.write(readFileRange(file, start, end));
  }

  /** The reason passed to the last end() call. */
  endReason: CloseReason | undefined;

  end(reason?: CloseReason): void {
    this.endCalls++;
    this.endReason = reason;
    if (this.state >= StreamState.Flushing) return;
    this.state = StreamState.Flushing;
  }

  close(reason: CloseReason = "local"): void {
    if (this.state === StreamState.Closed) return;
    this.state = StreamState.Closed;
    this.closeReason = reason;
    this.handler.close?.(this, reason);
  }

  /** What the reactor does once an ended connection's output is flushed. */
  finishEnd(): void {
    if (this.state === StreamState.Flushing) this.close("local");
  }

  idleTimeoutMs = 0;
  setMaxBuffered(_bytes: number): void {}
  setTraffic(_traffic: unknown, _carried?: number): void {}
  setIdleTimeout(ms: number): void {
    this.idleTimeoutMs = ms;
  }

  setHandler<U>(handler: Handler<U>, pending?: Uint8Array): Connection<U> {
    this.handler = handler;
    handler.open?.(this as unknown as Connection<U>);
    if (pending !== undefined && pending.length > 0) handler.data?.(this as unknown as Connection<U>, pending);
    return this as unknown as Connection<U>;
  }

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
  }

  /** All bytes written so far, concatenated. */
  output(): Uint8Array {
    const total = this.writes.reduce((n, w) => n + w.length, 0);
    const out = new Uint8Array(total);
    let p = 0;
    for (const w of this.writes) {
      out.set(w, p);
      p += w.length;
    }
    return out;
  }

  /** Output since the last take(), then forget it. */
  take(): Uint8Array {
    const out = this.output();
    this.writes.length = 0;
    this.sources.length = 0;
    this.bufferedAmount = 0;
    return out;
  }

  text(): string {
    return new TextDecoder().decode(this.output());
  }
}

/** A connection opened on `handler` (open() has run). */
export function openConnection<T>(handler: Handler<T>, opts: FakeConnectionOptions = {}): FakeConnection<T> {
  const conn = new FakeConnection<T>({ ...opts, handler });
  handler.open?.(conn);
  return conn;
}

/**
 * Deliver `bytes` to handler.data as the reactor would, through one reused receive
 * buffer: each chunk is copied into the same scratch buffer first, so a handler that
 * keeps a chunk view past the call sees it overwritten by the next chunk (as in reality).
 */
export function deliver<T>(handler: Handler<T>, conn: Connection<T>, bytes: Uint8Array, chunkSizes?: number[]): void {
  const scratch = new Uint8Array(Math.max(1, bytes.length));
  let pos = 0;
  const sizes = chunkSizes ?? [bytes.length];
  for (let i = 0; pos < bytes.length; i++) {
    const size = Math.max(1, Math.min(sizes[i % sizes.length]!, bytes.length - pos));
    scratch.set(bytes.subarray(pos, pos + size), 0);
    handler.data?.(conn, scratch.subarray(0, size));
    // Poison the shared buffer like the next read would.
    scratch.fill(0xee, 0, size);
    pos += size;
  }
}
