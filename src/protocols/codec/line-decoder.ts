// A resumable decoder for newline-delimited lines. A line ends at "\n"; a "\r" just
// before it is dropped, so "\r\n" clients (telnet, nc -C) work. Lines wholly inside a
// chunk are handed out zero-copy; a line that straddles chunks is copied into the
// decoder's own buffer, which never grows past maxLine + 1 bytes.

export interface LineSink {
  /** One line without its terminator. `buf` is valid only during this call. */
  line(buf: Uint8Array, offset: number, length: number): void;
  /**
   * A line passed maxLine bytes. The decoder has stopped: there is no cheap way to
   * resynchronise in the middle of an unbounded line, so the caller closes.
   */
  tooLong(): void;
}

const LF = 10;
const CR = 13;
const RETAIN_BYTES = 16 * 1024;
const MIN_BUFFER = 256;

export class LineDecoder {
  private buf: Uint8Array | null = null;
  private have = 0;
  private stopped = false;

  constructor(
    private readonly sink: LineSink,
    /** Largest line content in bytes, terminator excluded. */
    readonly maxLine: number,
  ) {}

  /** True while a line is partially received (frame-timeout hook). */
  get inFrame(): boolean {
    return this.have !== 0;
  }

  get bufferedBytes(): number {
    return this.have;
  }

  get isStopped(): boolean {
    return this.stopped;
  }

  stop(): void {
    this.stopped = true;
    this.buf = null;
    this.have = 0;
  }

  push(chunk: Uint8Array): void {
    const n = chunk.length;
    let pos = 0;
    while (pos < n && !this.stopped) {
      const nl = chunk.indexOf(LF, pos);
      if (nl === -1) {
        // No terminator in the rest of the chunk. +1: room for a "\r" that a "\n" in the
        // next chunk would turn into a terminator.
        const add = n - pos;
        if (this.have + add > this.maxLine + 1) {
          this.fail();
          return;
        }
        this.append(chunk, pos, n);
        return;
      }
      if (this.have === 0) {
        // Whole line inside this chunk: hand it out without copying.
        const start = pos;
        let len = nl - start;
        if (len > 0 && chunk[nl - 1] === CR) len--;
        pos = nl + 1;
        if (len > this.maxLine) {
          this.fail();
          return;
        }
        this.sink.line(chunk, start, len);
        continue;
      }
      if (this.have + (nl - pos) > this.maxLine + 1) {
        this.fail();
        return;
      }
      this.append(chunk, pos, nl);
      pos = nl + 1;
      this.deliverBuffered();
    }
  }

  /**
   * End of input (the peer half-closed): a final line without a terminator is still a
   * line. Returns true when one was delivered.
   */
  finish(): boolean {
    if (this.stopped || this.have === 0) return false;
    this.deliverBuffered();
    return true;
  }

  private deliverBuffered(): void {
    const b = this.buf!;
    let len = this.have;
    if (len > 0 && b[len - 1] === CR) len--;
    this.have = 0;
    if (len > this.maxLine) {
      this.fail();
      return;
    }
    if (b.length > RETAIN_BYTES) this.buf = null;
    this.sink.line(b, 0, len);
  }

  private append(chunk: Uint8Array, from: number, to: number): void {
    const need = this.have + (to - from);
    let b = this.buf;
    if (b === null || b.length < need) {
      let size = b === null ? MIN_BUFFER : b.length;
      while (size < need) size *= 2;
      const grown = new Uint8Array(size);
      if (b !== null && this.have > 0) grown.set(b.subarray(0, this.have), 0);
      this.buf = b = grown;
    }
    b.set(chunk.subarray(from, to), this.have);
    this.have = need;
  }

  private fail(): void {
    this.stop();
    this.sink.tooLong();
  }
}
