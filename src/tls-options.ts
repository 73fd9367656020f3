// The library's `tls` option, in Bun's shape: `tls: { cert, key, ca, serverName, ... }` with
// PEM contents as strings, bytes or Bun.file() (the CLI takes paths), or an array whose
// first entry is the default certificate and whose others answer their `serverName` (SNI).

import type { Handler } from "./stream/stream.ts";
import { readPem, TlsServerContext, type PemSource, type TlsVersion } from "./stream/tls-context.ts";
import { tlsAcceptor } from "./stream/tls-stream.ts";

export interface TlsOptions {
  cert: PemSource;
  key: PemSource;
  /** CAs client certificates must chain to: when set, clients must present one. */
  ca?: PemSource;
  /** With an array of options: the SNI name this entry answers. */
  serverName?: string;
  /** Lowest version accepted (default "1.2"). */
  minVersion?: TlsVersion;
  /** OpenSSL cipher list for TLS 1.2. */
  ciphers?: string;
  /** Seconds a handshake may take before the connection is closed (default 10; 0: never). */
  handshakeTimeout?: number;
}

/** Builds the listener's contexts; the caller disposes the result when the server ends. */
export function serverContext(tls: TlsOptions | readonly TlsOptions[], alpn: readonly string[]): { ctx: TlsServerContext; handshakeTimeoutMs: number } {
  const list = Array.isArray(tls) ? (tls as readonly TlsOptions[]) : [tls as TlsOptions];
  if (list.length === 0) throw new RangeError("tls: an empty array (give at least one { cert, key })");
  const first = list[0]!;
  const timeout = first.handshakeTimeout ?? 10;
  if (!(timeout >= 0) || !Number.isFinite(timeout)) throw new RangeError(`tls.handshakeTimeout must be a finite number >= 0, got ${String(timeout)}`);
  const sni: Record<string, { cert: Uint8Array | string; key: Uint8Array | string }> = {};
  for (const o of list.slice(1)) {
    if (!o.serverName) throw new RangeError("tls: every entry after the first needs a serverName (SNI)");
    sni[o.serverName] = { cert: readPem(o.cert, "cert"), key: readPem(o.key, "key") };
  }
  const ctx = new TlsServerContext({
    cert: readPem(first.cert, "cert"),
    key: readPem(first.key, "key"),
    ca: first.ca !== undefined ? readPem(first.ca, "ca") : undefined,
    sni: list.length > 1 ? sni : undefined,
    minVersion: first.minVersion,
    ciphers: first.ciphers,
    alpn,
  });
  return { ctx, handshakeTimeoutMs: timeout * 1000 };
}

/** `protocol` behind a TLS handshake with the listener's current context. */
export function tlsServerHandler<T>(protocol: Handler<T>, ctx: TlsServerContext, handshakeTimeoutMs: number): Handler<unknown> {
  const options = { ctx: ctx.current as never, handshakeTimeoutMs };
  return tlsAcceptor(protocol, () => {
    options.ctx = ctx.current as never;
    return options;
  });
}
