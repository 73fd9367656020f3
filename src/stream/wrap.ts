// A stream over another stream: TLS next, then WebSocket message streams. The wrapper
// installs itself as the inner stream's handler (setHandler) and presents the Stream
// interface to the protocol above, which never learns it is not talking to TCP:
//
//   protocol handler  <- data(plain) --  WrappingStream  <- data(wire) --  inner stream
//   protocol handler  -- write(plain) -> WrappingStream  -- write(wire) -> inner stream
//
// A subclass implements decode() (wire bytes in, deliver() plain bytes out) and encode()
// (plain bytes out, inner.write() wire bytes). Lifecycle events (drain, end, close, error,
// timeout) pass through; flow control is the inner stream's: bufferedAmount and pause/resume
// are its own, so backpressure holds across the layers.

import type { SharedBytes } from "../buffers/shared-bytes.ts";
import type { SharedFile } from "../buffers/shared-file.ts";
import { readFileRange } from "../driver/files.ts";
import type { CloseReason, Handler, Stream, StreamState, TrafficCounters } from "./stream.ts";

const utf8 = new TextEncoder();
/** A file range over a wrapping stream is read and encoded this much at a time. */
const FILE_PIECE = 64 * 1024;

export abstract class WrappingStream<T = unknown> implements Stream<T> {
  data: T = undefined as T;
  handler: Handler<T>;

  constructor(readonly inner: Stream<any>, handler: Handler<T>) {
    this.handler = handler;
  }

  /** Puts the wrapper between `inner` and its protocol: the protocol's open runs now. */
  protected install(pending?: Uint8Array): this {
    const self = this;
    this.inner.setHandler<unknown>(
      {
        open: () => self.handler.open?.(self),
        data: (_s, bytes) => self.decode(bytes),
        drain: () => self.handler.drain?.(self),
        end: () => self.handler.end?.(self),
        close: (_s, reason, error) => self.handler.close?.(self, reason, error),
        error: (_s, error) => self.handler.error?.(self, error),
        timeout: self.handler.timeout ? () => self.handler.timeout!(self) : undefined,
        full: () => self.handler.full?.(self),
        inFrame: () => self.handler.inFrame?.(self) ?? false,
        pauseWhileAsync: self.handler.pauseWhileAsync,
        allowHalfOpen: self.handler.allowHalfOpen,
        shutdown: self.handler.shutdown ? () => self.handler.shutdown!(self) : undefined,
      },
      pending,
    );
    return this;
  }

  /** Wire bytes from the inner stream (valid during the call): decode, then deliver(). */
  protected abstract decode(wire: Uint8Array): void | Promise<void>;

  /** Plain bytes from the protocol: encode and write them to the inner stream. */
  protected abstract encode(plain: Uint8Array, start: number, end: number): boolean;

  /** Hands decoded bytes to the protocol (valid during the call, like any data). */
  protected deliver(plain: Uint8Array): void | Promise<void> {
    return this.handler.data?.(this, plain);
  }

  get id(): number {
    return this.inner.id;
  }

  get state(): StreamState {
    return this.inner.state;
  }

  get remoteAddress(): string {
    return this.inner.remoteAddress;
  }

  get remotePort(): number {
    return this.inner.remotePort;
  }

  get bufferedAmount(): number {
    return this.inner.bufferedAmount;
  }

  write(bytes: Uint8Array | string, start = 0, end = -1): boolean {
    if (typeof bytes === "string") {
      const b = utf8.encode(bytes);
      return this.encode(b, 0, b.length);
    }
    if (end < 0) end = bytes.length;
    if (!(start >= 0 && start <= end && end <= bytes.length)) {
      throw new RangeError(`write range [${start}, ${end}) is outside the buffer (length ${bytes.length})`);
    }
    return this.encode(bytes, start, end);
  }

  writePrefixed(prefix: number, bytes: Uint8Array, start = 0, end = bytes.length): boolean {
    const b = new Uint8Array(4 + end - start);
    new DataView(b.buffer).setUint32(0, prefix >>> 0);
    b.set(bytes.subarray(start, end), 4);
    return this.encode(b, 0, b.length);
  }

  /** A transform makes its own bytes: shared bytes are encoded like a copy. */
  writeShared(shared: SharedBytes, start = 0, end = shared.length): boolean {
    return this.write(shared.bytes, start, end);
  }

  /**
   * A transform cannot use sendfile: the range is read (pread) a piece at a time and each
   * piece encoded like a write. The copies count towards the inner stream's maxBuffered.
   */
  writeFile(file: SharedFile, start = 0, end = file.size): boolean {
    if (!(Number.isSafeInteger(start) && Number.isSafeInteger(end) && start >= 0 && start <= end && end <= file.size)) {
      throw new RangeError(`writeFile range [${start}, ${end}) is outside the file (size ${file.size})`);
    }
    let ok = true;
    for (let at = start; at < end; at += FILE_PIECE) {
      const piece = readFileRange(file, at, Math.min(end, at + FILE_PIECE));
      ok = this.encode(piece, 0, piece.length);
    }
    return ok;
  }

  end(reason?: CloseReason): void {
    this.inner.end(reason);
  }

  close(reason?: CloseReason, error?: Error): void {
    this.inner.close(reason, error);
  }

  pause(): void {
    this.inner.pause();
  }

  resume(): void {
    this.inner.resume();
  }

  setIdleTimeout(ms: number): void {
    this.inner.setIdleTimeout(ms);
  }

  setMaxBuffered(bytes: number): void {
    this.inner.setMaxBuffered(bytes);
  }

  setTraffic(traffic: TrafficCounters | null, carried?: number): void {
    this.inner.setTraffic(traffic, carried);
  }

  setHandler<U>(handler: Handler<U>, pending?: Uint8Array): Stream<U> {
    const self = this as unknown as WrappingStream<U>;
    self.handler = handler;
    handler.open?.(self);
    if (pending !== undefined && pending.length > 0) handler.data?.(self, pending);
    return self;
  }
}
