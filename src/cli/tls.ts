// The server CLI's TLS flags: `--listen PROTO+tls:PORT` with `--tls-cert`/`--tls-key`
// (paths to PEM files), `--tls-sni NAME=CERT,KEY`, `--tls-client-ca`, `--tls-min-version`,
// `--tls-ciphers`, `--handshake-timeout`; and SIGHUP, which re-reads every file and swaps
// the certificates in for new handshakes (a bad file keeps the old ones and says why).

import { readFileSync } from "node:fs";
import { UsageError, type FlagSpecs } from "./args.ts";
import type { Handler } from "../stream/stream.ts";
import { TLS_VERSIONS, TlsServerContext, type TlsServerOptions, type TlsVersion } from "../stream/tls-context.ts";
import { tlsServerHandler } from "../tls-options.ts";

export const TLS_FLAGS = {
  "tls-cert": { type: "string", arg: "FILE", description: "TLS certificate chain (PEM, leaf first) for +tls listeners; SIGHUP re-reads it" },
  "tls-key": { type: "string", arg: "FILE", description: "TLS private key (PEM) for --tls-cert" },
  "tls-sni": { type: "string", arg: "NAME=CERT,KEY", description: "another certificate for clients asking for NAME (SNI; *.example.com allowed); repeatable", repeatable: true },
  "tls-client-ca": { type: "string", arg: "FILE", description: "require client certificates signed by these CAs (PEM)" },
  "tls-min-version": { type: "string", arg: "VER", description: "lowest TLS version accepted", default: "1.2", choices: TLS_VERSIONS },
  "tls-ciphers": { type: "string", arg: "LIST", description: "OpenSSL cipher list for TLS 1.2 (default: OpenSSL's)" },
  "handshake-timeout": { type: "number", arg: "SEC", description: "close a TLS connection whose handshake is not done after SEC (0: never)", default: 10, min: 0 },
} as const satisfies FlagSpecs;

/** What the TLS flags say, checked; built into contexts per listener by `context()`. */
export interface TlsConfig {
  handshakeTimeoutMs: number;
  /** Builds a context for one listener (ALPN differs per protocol); reload() re-reads the files. */
  context(alpn: readonly string[]): TlsServerContext;
  /** Re-reads every file into every context built; returns one line per outcome. */
  reload(): { ok: boolean; message: string };
}

function readPemFile(path: string, flag: string): Uint8Array {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new Error(`${flag} ${path}: ${(e as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (e as Error).message}`);
  }
}

function parseSni(spec: string): { name: string; cert: string; key: string } {
  const m = /^([^=\s]+)=([^,]+),(.+)$/.exec(spec);
  if (!m) throw new UsageError(`--tls-sni: expected NAME=CERT,KEY, got "${spec}"`);
  return { name: m[1]!, cert: m[2]!, key: m[3]! };
}

/** Null when no listener uses TLS (then no TLS flag may be given either). */
export function tlsFromFlags(flags: Record<string, unknown>, anyTls: boolean): TlsConfig | null {
  const cert = flags["tls-cert"] as string | undefined;
  const key = flags["tls-key"] as string | undefined;
  const sniSpecs = (flags["tls-sni"] as string[]).map(parseSni);
  const clientCa = flags["tls-client-ca"] as string | undefined;
  if (!anyTls) {
    const given = ["tls-cert", "tls-key", "tls-client-ca", "tls-ciphers"].find((f) => flags[f] !== undefined) ?? (sniSpecs.length > 0 ? "tls-sni" : undefined);
    if (given !== undefined) throw new UsageError(`--${given} needs a TLS listener (--listen PROTO+tls:PORT)`);
    return null;
  }
  if (cert === undefined || key === undefined) throw new UsageError("a +tls listener needs --tls-cert FILE and --tls-key FILE");
  const read = (): Omit<TlsServerOptions, "alpn"> => ({
    cert: readPemFile(cert, "--tls-cert"),
    key: readPemFile(key, "--tls-key"),
    ca: clientCa !== undefined ? readPemFile(clientCa, "--tls-client-ca") : undefined,
    sni: sniSpecs.length > 0
      ? Object.fromEntries(sniSpecs.map((s) => [s.name, { cert: readPemFile(s.cert, `--tls-sni ${s.name}`), key: readPemFile(s.key, `--tls-sni ${s.name}`) }]))
      : undefined,
    minVersion: flags["tls-min-version"] as TlsVersion,
    ciphers: flags["tls-ciphers"] as string | undefined,
  });
  const first = read(); // errors here stop the server before it listens
  const contexts: TlsServerContext[] = [];
  return {
    handshakeTimeoutMs: (flags["handshake-timeout"] as number) * 1000,
    context(alpn) {
      const c = new TlsServerContext({ ...first, alpn });
      contexts.push(c);
      return c;
    },
    reload() {
      try {
        const next = read();
        // Every context is built from the same files, so a bad file fails on the first one,
        // before any context has swapped: all keep their old certificates.
        for (const c of contexts) c.reload(next);
        return { ok: true, message: `reloaded TLS certificates (${cert}${sniSpecs.length > 0 ? ` and ${sniSpecs.length} SNI` : ""}): new handshakes use them` };
      } catch (e) {
        return { ok: false, message: `TLS reload failed, keeping the old certificates: ${(e as Error).message}` };
      }
    },
  };
}

/** A listener's handler over TLS: each connection's handshake first, then `protocol`. */
export function tlsHandler<T>(protocol: Handler<T>, tls: TlsConfig, ctx: TlsServerContext): Handler<unknown> {
  return tlsServerHandler(protocol, ctx, tls.handshakeTimeoutMs);
}
