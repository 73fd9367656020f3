// An open regular file that several write queues reference: the bytes of a static file
// leave through a queue's "file range" segments by sendfile(2), never through memory. The
// fd itself is opened and closed by the driver (src/driver/files.ts), which hands the
// close function in: this layer makes no syscalls.

/** Closes the fd when the last reference is released; the driver provides it. */
export type FileCloser = (fd: number) => void;

// A backstop, not the ownership: a reference dropped without release() (a FileResponse
// built and never written) still closes its fd once collected, and says so: that is a bug
// of whoever held it (Node warns the same way about an unclosed FileHandle).
const leaked = new FinalizationRegistry<{ fd: number; close: FileCloser }>((h) => {
  h.close(h.fd);
  console.warn(`[bunpoll] warning: a SharedFile (fd ${h.fd}) was garbage-collected without release(); its fd is closed now`);
});

/**
 * Reference-counted like SharedBytes: the opener holds one reference and each queued range
 * another; the fd closes when the last is released. The file is read as it is at send
 * time: size and mtime are what fstat said at open (the values a response announces).
 */
export class SharedFile implements Disposable {
  private refs = 1;
  private readonly token = {};

  constructor(
    /** The open fd: passed to the driver only (protocols never use it). */
    readonly fd: number,
    /** Bytes, as fstat reported at open. */
    readonly size: number,
    /** Modification time in ms (sub-ms precision kept), as fstat reported at open. */
    readonly mtimeMs: number,
    /** Inode number: with size and mtime, what an ETag is made from. */
    readonly ino: number,
    private readonly close: FileCloser,
  ) {
    leaked.register(this, { fd, close }, this.token);
  }

  get released(): boolean {
    return this.refs === 0;
  }

  retain(): void {
    if (this.refs === 0) throw new Error("SharedFile: retain() after the last release()");
    this.refs++;
  }

  release(): void {
    if (this.refs === 0) throw new Error("SharedFile: release() without a reference");
    if (--this.refs === 0) {
      leaked.unregister(this.token);
      this.close(this.fd);
    }
  }

  /** Releases the opener's reference: `using file = openFile(...)`. */
  [Symbol.dispose](): void {
    this.release();
  }
}
