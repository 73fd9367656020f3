// Ways to cut a byte stream into chunks, for testing resumable decoders.

import fc from "fast-check";

export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let p = 0;
  for (const part of parts) {
    out.set(part, p);
    p += part.length;
  }
  return out;
}

/** Cut `bytes` at the given ascending offsets (empty chunks are kept: decoders must cope). */
export function splitAt(bytes: Uint8Array, points: readonly number[]): Uint8Array[] {
  const chunks: Uint8Array[] = [];
  let prev = 0;
  for (const p of points) {
    chunks.push(bytes.slice(prev, p));
    prev = p;
  }
  chunks.push(bytes.slice(prev));
  return chunks;
}

/** Every way to cut `bytes` in two (n + 1 ways, including empty halves). */
export function* everySplit(bytes: Uint8Array): Generator<Uint8Array[]> {
  for (let i = 0; i <= bytes.length; i++) yield splitAt(bytes, [i]);
}

/** Every way to cut `bytes` in three (O(n^2): keep inputs small). */
export function* everySplit3(bytes: Uint8Array): Generator<Uint8Array[]> {
  for (let i = 0; i <= bytes.length; i++) {
    for (let j = i; j <= bytes.length; j++) yield splitAt(bytes, [i, j]);
  }
}

export function byteByByte(bytes: Uint8Array): Uint8Array[] {
  return Array.from(bytes, (b) => Uint8Array.of(b));
}

/**
 * Feed chunks through one reused buffer, poisoned after each call, the way the reactor's
 * shared receive buffer behaves: a decoder that keeps a chunk view past `push` reads
 * garbage and the test fails.
 */
export function pushThroughSharedBuffer(chunks: Uint8Array[], push: (chunk: Uint8Array) => void): void {
  const max = chunks.reduce((n, c) => Math.max(n, c.length), 1);
  const shared = new Uint8Array(max);
  for (const c of chunks) {
    shared.set(c, 0);
    push(shared.subarray(0, c.length));
    shared.fill(0xa5);
  }
}

/** fast-check: a byte stream of `length` plus sorted cut points into it. */
export function cutPoints(length: number): fc.Arbitrary<number[]> {
  return fc.array(fc.integer({ min: 0, max: length }), { maxLength: 20 }).map((a) => a.sort((x, y) => x - y));
}
