// Test certificates made with the openssl CLI during the test run (keys are never
// committed): a CA, server certificates signed by it (P-256 keys, SANs for localhost and
// 127.0.0.1, one more for an SNI name), a client certificate, and the fingerprint helper
// tests use to tell which certificate a handshake got.

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface CertFiles {
  dir: string;
  ca: string;
  caKey: string;
  /** Server certificate for localhost / 127.0.0.1 and its key. */
  cert: string;
  key: string;
  /** A second server certificate (reload tests) for the same names. */
  cert2: string;
  key2: string;
  /** A certificate for the SNI name "other.test". */
  sniCert: string;
  sniKey: string;
  /** A client certificate (CN=alice) signed by the CA. */
  clientCert: string;
  clientKey: string;
  cleanup(): void;
}

function openssl(args: string[], cwd: string): void {
  const r = Bun.spawnSync(["openssl", ...args], { cwd, stderr: "pipe", stdout: "pipe" });
  if (r.exitCode !== 0) throw new Error(`openssl ${args.join(" ")}: ${r.stderr.toString()}`);
}

function signed(dir: string, name: string, subject: string, san: string | null): void {
  openssl(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", subject], dir);
  const ext = join(dir, `${name}.ext`);
  writeFileSync(ext, san ? `subjectAltName=${san}\n` : "extendedKeyUsage=clientAuth\n");
  openssl(["x509", "-req", "-in", `${name}.csr`, "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2", "-out", `${name}.crt`, "-extfile", ext], dir);
}

export function makeCerts(): CertFiles {
  const dir = mkdtempSync(join(tmpdir(), "bunpoll-certs-"));
  openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=bunpoll test CA"], dir);
  signed(dir, "server", "/CN=localhost", "DNS:localhost,IP:127.0.0.1");
  signed(dir, "server2", "/CN=localhost", "DNS:localhost,IP:127.0.0.1");
  signed(dir, "other", "/CN=other.test", "DNS:other.test");
  signed(dir, "client", "/CN=alice", null);
  const p = (f: string) => join(dir, f);
  return {
    dir,
    ca: p("ca.crt"), caKey: p("ca.key"),
    cert: p("server.crt"), key: p("server.key"),
    cert2: p("server2.crt"), key2: p("server2.key"),
    sniCert: p("other.crt"), sniKey: p("other.key"),
    clientCert: p("client.crt"), clientKey: p("client.key"),
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** The SHA-256 fingerprint of a PEM certificate file, as `openssl x509 -fingerprint` prints it. */
export function fingerprint(certFile: string): string {
  return fingerprintOfPem(readFileSync(certFile, "utf8"));
}

export function fingerprintOfPem(pem: string): string {
  const r = Bun.spawnSync(["openssl", "x509", "-noout", "-fingerprint", "-sha256"], { stdin: Buffer.from(pem), stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`openssl x509: ${r.stderr.toString()}`);
  return r.stdout.toString().trim().split("=")[1]!;
}
