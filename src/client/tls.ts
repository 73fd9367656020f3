// The client side of TLS: `tls: true | { ca, insecure, serverName }` in connect(), and
// the CLI's --tls / --tls-ca FILE / --insecure. A connection's protocol runs over a
// TlsStream that verifies the server's certificate (against `ca`, or the system's CAs) and
// its name (serverName, default the host), unless insecure.

import type { Pointer } from "bun:ffi";
import type { Handler, Stream } from "../stream/stream.ts";
import type { TcpStream } from "../stream/tcp-stream.ts";
import { createClientContext, type PemInput } from "../stream/tls-context.ts";
import { TlsStream } from "../stream/tls-stream.ts";

export interface ClientTlsOptions {
  /** CAs to trust (PEM contents); default: the system's. */
  ca?: PemInput;
  /** Skip certificate verification: testing only. */
  insecure?: boolean;
  /** Name for SNI and the certificate check (default: the host connected to). */
  serverName?: string;
}

/** One client context per (ca, insecure): an SSL_CTX is costly and immutable here. */
const contexts = new Map<string, Pointer>();

function contextFor(o: ClientTlsOptions): Pointer {
  const ca = o.ca === undefined ? "" : typeof o.ca === "string" ? o.ca : new TextDecoder().decode(o.ca);
  const key = `${o.insecure ? 1 : 0}\n${ca}`;
  let ctx = contexts.get(key);
  if (ctx === undefined) contexts.set(key, (ctx = createClientContext({ ca: o.ca, insecure: o.insecure })));
  return ctx;
}

/**
 * A connect() handler that starts a TLS handshake once TCP is up and runs `protocol` over
 * it; `stream()` is the TLS stream to write to (null before the connect completes).
 */
export function tlsConnector(protocol: Handler<unknown>, host: string, o: ClientTlsOptions, handshakeTimeoutMs: number): { handler: Handler<unknown>; stream(): Stream<unknown> | null } {
  const ctx = contextFor(o); // throws (bad CA file) before anything connects
  let tls: TlsStream<unknown> | null = null;
  return {
    handler: {
      open(tcp) {
        tls = new TlsStream(tcp as TcpStream<unknown>, protocol, {
          ctx, server: false, handshakeTimeoutMs, serverName: o.serverName ?? host, verifyName: !o.insecure,
        }).start();
      },
      close: (s, reason, error) => protocol.close?.(s, reason, error),
    },
    stream: () => tls,
  };
}
