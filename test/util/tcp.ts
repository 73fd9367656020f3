// Raw TCP client helpers for black-box tests: node:net only, never bunpoll internals.
// Every helper is bounded in time: a peer that stops answering fails the test, it never
// hangs it.

import net from "node:net";

/** Rejects with a message naming `what` if `p` does not settle within `ms`. */
export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout>;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls `cond` every `everyMs` until it holds; throws after `ms`. */
export async function waitFor(cond: () => boolean | Promise<boolean>, ms: number, what: string, everyMs = 20): Promise<void> {
  const deadline = performance.now() + ms;
  for (;;) {
    if (await cond()) return;
    if (performance.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

/**
 * Deterministic, position-dependent bytes: a dropped, duplicated or reordered chunk
 * anywhere in the stream shows up as a mismatch (a constant fill would hide it).
 */
export function patternBytes(n: number, seed = 1): Buffer {
  const b = Buffer.allocUnsafe(n);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    b[i] = x & 0xff;
  }
  return b;
}

/** Index of the first differing byte, or -1. Cheaper to report than a multi-MB diff. */
export function firstMismatch(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  // Compare in 64 KiB slices with Buffer.compare, then locate the byte.
  const A = Buffer.from(a.buffer, a.byteOffset, a.byteLength);
  const B = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  for (let off = 0; off < n; off += 65536) {
    const end = Math.min(n, off + 65536);
    if (A.compare(B, off, end, off, end) !== 0) {
      for (let i = off; i < end; i++) if (A[i] !== B[i]) return i;
    }
  }
  return a.length === b.length ? -1 : n;
}

export interface ConnectOptions {
  host?: string;
  allowHalfOpen?: boolean;
  timeoutMs?: number;
}

/** Connects to host:port; rejects on error or after timeoutMs. */
export function connect(port: number, opts: ConnectOptions = {}): Promise<net.Socket> {
  const host = opts.host ?? "127.0.0.1";
  const p = new Promise<net.Socket>((resolve, reject) => {
    const s = net.connect({ port, host, allowHalfOpen: opts.allowHalfOpen ?? false });
    s.setNoDelay(true);
    const onError = (e: Error) => {
      s.destroy();
      reject(e);
    };
    s.once("error", onError);
    s.once("connect", () => {
      s.off("error", onError);
      resolve(s);
    });
  });
  return withTimeout(p, opts.timeoutMs ?? 10_000, `connect to ${host}:${port}`);
}

/** Writes `payload` in chunks, honouring backpressure; resolves when all of it is handed to the kernel. */
export async function writeAll(s: net.Socket, payload: Uint8Array, chunk = 256 * 1024): Promise<void> {
  for (let off = 0; off < payload.length; off += chunk) {
    const part = payload.subarray(off, Math.min(payload.length, off + chunk));
    const flushed = new Promise<void>((resolve, reject) => {
      s.write(part, (err) => (err ? reject(err) : resolve()));
    });
    // Wait for the callback: the bytes have left the socket's user-space queue.
    await flushed;
  }
}

/** Collects everything received on `s` until it has `n` bytes. */
export function readExactly(s: net.Socket, n: number, timeoutMs: number, what = `read ${n} bytes`): Promise<Buffer> {
  const p = new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let got = 0;
    const cleanup = () => {
      s.off("data", onData);
      s.off("error", onError);
      s.off("close", onClose);
    };
    const onData = (d: Buffer) => {
      chunks.push(d);
      got += d.length;
      if (got >= n) {
        cleanup();
        resolve(Buffer.concat(chunks, got));
      }
    };
    const onError = (e: Error) => {
      cleanup();
      reject(new Error(`${what}: ${e.message} after ${got} bytes`));
    };
    const onClose = () => {
      cleanup();
      reject(new Error(`${what}: connection closed after ${got} of ${n} bytes`));
    };
    s.on("data", onData);
    s.once("error", onError);
    s.once("close", onClose);
  });
  return withTimeout(p, timeoutMs, what);
}

/**
 * Collects everything until the peer's FIN ('end', ended: true) or until the socket closes
 * without one (ended: false, with the error if any, e.g. ECONNRESET).
 */
export function readToEnd(s: net.Socket, timeoutMs: number, what = "read to EOF"): Promise<{ data: Buffer; ended: boolean; error?: Error }> {
  const p = new Promise<{ data: Buffer; ended: boolean; error?: Error }>((resolve) => {
    const chunks: Buffer[] = [];
    let error: Error | undefined;
    s.on("data", (d: Buffer) => chunks.push(d));
    s.once("error", (e) => (error = e));
    s.once("end", () => resolve({ data: Buffer.concat(chunks), ended: true, error }));
    s.once("close", () => resolve({ data: Buffer.concat(chunks), ended: false, error }));
  });
  return withTimeout(p, timeoutMs, what);
}

/**
 * One echo round trip: writes `payload` while reading (a big payload would otherwise fill
 * both directions' buffers and deadlock), returns what came back.
 */
export async function echoRoundTrip(
  port: number,
  payload: Uint8Array,
  opts: { host?: string; timeoutMs?: number } = {},
): Promise<Buffer> {
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const s = await connect(port, { host: opts.host, timeoutMs });
  try {
    const reading = readExactly(s, payload.length, timeoutMs, `echo of ${payload.length} bytes`);
    await writeAll(s, payload);
    return await reading;
  } finally {
    s.destroy();
  }
}

/** Asserts a full echo of `payload` (fast byte compare, readable message). */
export async function expectEcho(port: number, payload: Uint8Array, opts: { host?: string; timeoutMs?: number } = {}): Promise<void> {
  const back = await echoRoundTrip(port, payload, opts);
  const at = firstMismatch(back, payload);
  if (back.length !== payload.length || at !== -1) {
    throw new Error(`echo mismatch: sent ${payload.length} bytes, got ${back.length}, first difference at byte ${at}`);
  }
}

/** A port that nothing listens on right now (bound, read back, released). */
export async function unusedPort(host = "127.0.0.1"): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((resolve, reject) => {
    srv.once("error", reject);
    srv.listen(0, host, () => resolve());
  });
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

/** Runs `fn(i)` for i in [0, n) with at most `limit` in flight. Rejects on the first failure. */
export async function mapLimit(n: number, limit: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < n) {
      const i = next++;
      await fn(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, n) }, worker));
}
