// TLS on every listener, black box: the real server with certificates made by the openssl
// CLI for this run, against clients nobody here wrote (openssl s_client, curl, Python's
// ssl and websockets, node:tls in Bun) and the project's own client; the failure cases
// (plaintext, garbage, TLS 1.1, a stalled handshake, a peer gone mid-record) each close that
// connection only, are counted by reason and leak no fd; SIGHUP reload seen by a new
// handshake's certificate; 1,000 handshakes with fds and RSS flat.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import tls from "node:tls";
import { fingerprint, fingerprintOfPem, makeCerts, type CertFiles } from "../util/certs.ts";
import { killAll, run, runClientCli, startServer, type ServerProcess } from "../util/process.ts";
import { connect, readToEnd, sleep, waitFor } from "../util/tcp.ts";
import { serve } from "../../src/serve.ts";
import { listen } from "../../src/listen.ts";
import type { TlsStream } from "../../src/stream/tls-stream.ts";

let certs: CertFiles;
let server: ServerProcess;
let bigSha = "";
const ports: Record<string, number> = {};

beforeAll(async () => {
  certs = makeCerts();
  // A static file larger than --max-buffered: over TLS it is read and encrypted a piece at a time.
  mkdirSync(join(certs.dir, "www"));
  const big = Buffer.alloc(3 * 1024 * 1024 + 12345);
  for (let i = 0; i < big.length; i++) big[i] = (i * 131 + (i >> 13)) & 0xff;
  writeFileSync(join(certs.dir, "www", "big.bin"), big);
  bigSha = new Bun.CryptoHasher("sha256").update(big).digest("hex");
  server = await startServer([
    "--static", join(certs.dir, "www"),
    "--listen", "echo+tls:0", "--listen", "http+tls:0", "--listen", "framed+tls:0", "--listen", "json+tls:0",
    "--tls-cert", certs.cert, "--tls-key", certs.key, "--tls-sni", `other.test=${certs.sniCert},${certs.sniKey}`,
    "--handshake-timeout", "0.5",
  ]);
  await waitFor(() => (server.stdout().match(/listening/g) ?? []).length === 4, 5000, "four listeners");
  for (const m of server.stdout().matchAll(/listening on 127\.0\.0\.1:(\d+) \((\w+)\+tls\)/g)) ports[m[2]!] = Number(m[1]);
}, 30_000);

afterAll(async () => {
  await killAll();
  certs?.cleanup();
});

/** openssl s_client with stdin at EOF: it handshakes, prints the session, and leaves. */
function sClient(port: number, ...args: string[]) {
  return run(["openssl", "s_client", "-connect", `127.0.0.1:${port}`, "-CAfile", certs.ca, ...args], 10_000);
}

/** The server's /stats close reasons, over https. */
async function closeReasons(): Promise<Record<string, number>> {
  const r = await run(["curl", "-sS", "--cacert", certs.ca, `https://localhost:${ports.http}/stats`]);
  if (r.code !== 0) throw new Error(`curl /stats: exit ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout).close_reasons;
}

/** A node:tls connection (Bun's), verified against the test CA. */
function tlsConnect(port: number, servername = "localhost"): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: "127.0.0.1", port, ca: readFileSync(certs.ca), servername }, () => resolve(s));
    s.once("error", reject);
  });
}

async function tlsEcho(s: tls.TLSSocket, payload: Buffer): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  const done = new Promise<void>((resolve, reject) => {
    s.on("data", (c: Buffer) => {
      chunks.push(c);
      n += c.length;
      if (n >= payload.length) resolve();
    });
    s.once("error", reject);
    s.once("close", () => reject(new Error(`closed after ${n} bytes`)));
  });
  s.write(payload);
  await done;
  s.removeAllListeners();
  return Buffer.concat(chunks);
}

describe("TLS with openssl s_client", () => {
  test("TLS 1.2 and TLS 1.3 handshakes, certificate verified", async () => {
    const v12 = await sClient(ports.echo!, "-tls1_2");
    expect(v12.stdout).toContain("Protocol  : TLSv1.2");
    expect(v12.stdout).toContain("Verify return code: 0 (ok)");
    const v13 = await sClient(ports.echo!, "-tls1_3");
    expect(v13.stdout).toContain("TLSv1.3");
    expect(v13.stdout).toContain("Verify return code: 0 (ok)");
  }, 30_000);

  test("ALPN: http/1.1 on the http listener, none on echo", async () => {
    const h = await sClient(ports.http!, "-alpn", "h2,http/1.1");
    expect(h.stdout).toContain("ALPN protocol: http/1.1");
    const e = await sClient(ports.echo!, "-alpn", "http/1.1");
    expect(e.stdout).toContain("No ALPN negotiated");
  }, 30_000);

  test("SNI: other.test gets its own certificate, any other name the default one", async () => {
    const other = await sClient(ports.echo!, "-servername", "other.test", "-verify_hostname", "other.test");
    expect(other.stdout).toMatch(/subject=CN ?= ?other\.test/);
    expect(other.stdout).toContain("Verify return code: 0 (ok)");
    const def = await sClient(ports.echo!, "-servername", "localhost");
    expect(def.stdout).toMatch(/subject=CN ?= ?localhost/);
  }, 30_000);

  test("a TLS 1.1 client that would otherwise connect is refused with protocol_version, counted as tls-version", async () => {
    const before = (await closeReasons())["tls-version"] ?? 0;
    const r = await sClient(ports.echo!, "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0");
    expect(r.code).not.toBe(0);
    expect(r.stdout + r.stderr).toMatch(/alert protocol version|unsupported protocol|no protocols available/);
    await waitFor(async () => ((await closeReasons())["tls-version"] ?? 0) === before + 1, 3000, "tls-version counted");
  }, 30_000);
});

describe("real clients over TLS", () => {
  test("curl --cacert: https /plaintext and /json", async () => {
    const p = await run(["curl", "-sS", "--cacert", certs.ca, `https://localhost:${ports.http}/plaintext`]);
    expect(p.stdout).toBe("Hello, World!");
    const j = await run(["curl", "-sS", "--cacert", certs.ca, "-w", "\n%{http_version}", `https://127.0.0.1:${ports.http}/json`]);
    expect(j.stdout).toBe('{"message":"Hello, World!"}\n1.1');
  }, 30_000);

  test("a static file larger than --max-buffered over https: intact, twice at once, fds back to baseline", async () => {
    const fds = server.fdCount();
    const url = `https://localhost:${ports.http}/big.bin`;
    const [a, b] = await Promise.all([1, 2].map(() => run(["sh", "-c", `curl -sS --cacert ${certs.ca} ${url} | sha256sum`])));
    expect(a!.stdout.split(" ")[0]).toBe(bigSha);
    expect(b!.stdout.split(" ")[0]).toBe(bigSha);
    const range = await run(["curl", "-sS", "--cacert", certs.ca, "-r", "100-199", "-o", "-", "-w", "%{http_code}", url]);
    expect(range.stdout.length).toBe(103);
    expect(range.stdout.endsWith("206")).toBe(true);
    await waitFor(() => server.fdCount() === fds, 5000, `fds back to ${fds}`);
  }, 30_000);

  test("Python's websockets over wss: text and 100 KiB binary echoed", async () => {
    const script = join(certs.dir, "wss.py");
    writeFileSync(script, `
import asyncio, ssl, sys, websockets
async def main():
    ctx = ssl.create_default_context(cafile=sys.argv[2])
    async with websockets.connect(sys.argv[1], ssl=ctx, compression=None, max_size=None) as ws:
        await ws.send("hello over wss")
        assert await ws.recv() == "hello over wss"
        blob = bytes(range(256)) * 400
        await ws.send(blob)
        assert await ws.recv() == blob
    print("wss ok")
asyncio.run(main())
`);
    const r = await run(["/usr/bin/python3", script, `wss://localhost:${ports.http}/ws/echo`, certs.ca], 20_000);
    expect(r.stderr).toBe("");
    expect(r.stdout.trim()).toBe("wss ok");
  }, 30_000);

  test("the project's client over framed+tls and json+tls; an unknown CA is refused with OpenSSL's reason", async () => {
    const ok = await runClientCli(["--port", String(ports.framed), "--tls", "--tls-ca", certs.ca, "echo", "hello tls"]);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toContain('received "hello tls"');
    const json = await runClientCli(["--protocol", "json", "--host", "localhost", "--port", String(ports.json), "--tls", "--tls-ca", certs.ca, "echo", "hi"]);
    expect(json.code).toBe(0);
    const bad = await runClientCli(["--port", String(ports.framed), "--tls", "ping", "--count", "1"]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain("certificate verify failed");
  }, 30_000);

  test("1 MiB echoed through node:tls, and a message whose records arrive one byte at a time (Python ssl)", async () => {
    const s = await tlsConnect(ports.echo!);
    const payload = Buffer.alloc(1024 * 1024);
    for (let i = 0; i < payload.length; i++) payload[i] = (i * 31 + 7) & 0xff;
    const back = await tlsEcho(s, payload);
    expect(back.equals(payload)).toBe(true);
    s.destroy();
    const r = await run(["/usr/bin/python3", join(import.meta.dir, "tls/records.py"), String(ports.echo), certs.ca, "split"], 20_000);
    expect(r.stderr).toBe("");
    expect(r.stdout).toContain("split ok");
  }, 30_000);
});

describe("the write path", () => {
  test("16 echoes written in one turn leave as one TLS record (one SSL_write, one send)", async () => {
    const r = await run(["/usr/bin/python3", join(import.meta.dir, "tls/records.py"), String(ports.echo), certs.ca, "coalesce"], 20_000);
    expect(r.stderr).toBe("");
    expect(r.stdout.trim()).toBe("records 1");
  }, 30_000);
});

describe("failures close that connection only, counted by reason, no fd leak", () => {
  test("plaintext HTTP, garbage, a stalled handshake and a peer gone mid-record", async () => {
    const fds = server.fdCount();
    const bystander = await tlsConnect(ports.echo!);
    const before = await closeReasons();
    // Plaintext and garbage: closed.
    for (const bytes of [Buffer.from("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), Buffer.from([0x16, 0x03, 0x01, 0xff, 0xff, 1, 2, 3]), Buffer.from("PING\n".repeat(50))]) {
      const s = await connect(ports.echo!);
      s.write(bytes);
      const r = await readToEnd(s, 5000);
      expect(r.ended || r.error !== undefined).toBe(true);
      s.destroy();
    }
    // A stalled handshake: closed after --handshake-timeout (0.5 s).
    const stalled = await connect(ports.framed!);
    const t0 = performance.now();
    const st = await readToEnd(stalled, 5000);
    expect(st.ended || st.error !== undefined).toBe(true);
    expect(performance.now() - t0).toBeGreaterThan(300);
    stalled.destroy();
    // Half a record, then gone.
    const v = await run(["/usr/bin/python3", join(import.meta.dir, "tls/records.py"), String(ports.echo), certs.ca, "vanish"], 20_000);
    expect(v.stdout).toContain("vanished");
    // The bystander never noticed.
    expect((await tlsEcho(bystander, Buffer.from("still here"))).toString()).toBe("still here");
    await waitFor(async () => {
      const after = await closeReasons();
      const d = (k: string) => (after[k] ?? 0) - (before[k] ?? 0);
      return d("tls-not-tls") === 3 && d("tls-handshake-timeout") === 1 && d("tls-truncated") === 1;
    }, 5000, "each failure counted by its reason");
    bystander.destroy();
    await waitFor(() => server.fdCount() === fds, 5000, `fds back to ${fds}`);
  }, 30_000);
});

describe("handshake churn", () => {
  test("1,000 handshakes (connect, echo, close): fds at baseline, RSS within 10% of the warmed-up level", async () => {
    const cycle = async () => {
      const s = await tlsConnect(ports.echo!);
      await tlsEcho(s, Buffer.from("x"));
      await new Promise<void>((r) => {
        s.once("close", () => r());
        s.end();
      });
    };
    const batch = async (n: number) => {
      for (let i = 0; i < n; i += 10) await Promise.all(Array.from({ length: Math.min(10, n - i) }, cycle));
    };
    const fds = server.fdCount();
    await batch(300); // warm-up: the JIT and the heap settle
    await sleep(200);
    const warm = server.rss();
    await batch(1000);
    await sleep(200);
    await waitFor(() => server.fdCount() === fds, 5000, `fds back to ${fds}`);
    const after = server.rss();
    console.log(`churn: RSS ${(warm / 1048576).toFixed(1)} MiB after warm-up, ${(after / 1048576).toFixed(1)} MiB after 1,000 more handshakes`);
    expect(after).toBeLessThanOrEqual(warm * 1.1);
  }, 60_000);
});

describe("SIGHUP reload", () => {
  test("new handshakes get the new certificate, open connections carry on, a bad file keeps the old one", async () => {
    const cert = join(certs.dir, "live.crt");
    const key = join(certs.dir, "live.key");
    copyFileSync(certs.cert, cert);
    copyFileSync(certs.key, key);
    const s = await startServer(["--listen", "echo+tls:0", "--tls-cert", cert, "--tls-key", key]);
    const served = async () => {
      const r = await run(["openssl", "s_client", "-connect", `127.0.0.1:${s.port}`, "-CAfile", certs.ca], 10_000);
      const pem = r.stdout.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/)![0];
      return fingerprintOfPem(pem);
    };
    expect(await served()).toBe(fingerprint(certs.cert));
    const open = await tlsConnect(s.port);
    copyFileSync(certs.cert2, cert);
    copyFileSync(certs.key2, key);
    s.proc.kill("SIGHUP");
    await waitFor(() => /reloaded TLS certificates/.test(s.stderr() + s.stdout()), 5000, "reload logged");
    expect(await served()).toBe(fingerprint(certs.cert2));
    expect((await tlsEcho(open, Buffer.from("same connection"))).toString()).toBe("same connection");
    // A key that does not match the certificate: refused, named, the old pair stays.
    copyFileSync(certs.key, key);
    s.proc.kill("SIGHUP");
    await waitFor(() => /TLS reload failed/.test(s.stderr() + s.stdout()), 5000, "failed reload logged");
    expect(s.stderr() + s.stdout()).toMatch(/TLS reload failed, keeping the old certificates: SSL_CTX_use_PrivateKey: key values mismatch/);
    expect(await served()).toBe(fingerprint(certs.cert2));
    open.destroy();
    expect(await s.stop("SIGTERM")).toBe(0);
  }, 30_000);
});

describe("client certificates", () => {
  test("--tls-client-ca: no certificate is refused, a CA-signed one is accepted", async () => {
    const s = await startServer(["--listen", "echo+tls:0", "--tls-cert", certs.cert, "--tls-key", certs.key, "--tls-client-ca", certs.ca]);
    const without = await run(["openssl", "s_client", "-connect", `127.0.0.1:${s.port}`, "-CAfile", certs.ca, "-tls1_2"], 10_000);
    expect(without.code).not.toBe(0);
    const withCert = await run(["openssl", "s_client", "-connect", `127.0.0.1:${s.port}`, "-CAfile", certs.ca, "-cert", certs.clientCert, "-key", certs.clientKey], 10_000);
    expect(withCert.stdout).toContain("Verify return code: 0 (ok)");
    expect(await s.stop("SIGTERM")).toBe(0);
  }, 30_000);

  test("a bad key file stops the server before it listens, naming the call and the reason", async () => {
    const r = await run([process.execPath, "src/server.ts", "--listen", "echo+tls:0", "--tls-cert", certs.cert, "--tls-key", certs.key2]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("SSL_CTX_use_PrivateKey: key values mismatch");
    const u = await run([process.execPath, "src/server.ts", "--listen", "echo+tls:0"]);
    expect(u.code).toBe(2);
    expect(u.stderr).toContain("needs --tls-cert FILE and --tls-key FILE");
  }, 30_000);
});

describe("library: tls in listen() and serve()", () => {
  test("serve({ tls }) answers https (fetch with the test CA) and says so in its URL", async () => {
    const srv = serve({ port: 0, tls: { cert: Bun.file(certs.cert), key: readFileSync(certs.key, "utf8") }, fetch: (req) => new Response(`${new URL(req.url).protocol} ok`) });
    try {
      expect(srv.url.protocol).toBe("https:");
      const res = await fetch(`https://localhost:${srv.port}/x`, { tls: { ca: readFileSync(certs.ca, "utf8") } } as RequestInit);
      expect(await res.text()).toBe("https: ok");
    } finally {
      await srv.stop({ graceful: false });
    }
  }, 30_000);

  test("listen({ tls: { ca } }) requires a client certificate and shows its subject to the handler", async () => {
    let subject: string | null = null;
    const srv = listen({
      port: 0,
      tls: { cert: readFileSync(certs.cert), key: readFileSync(certs.key), ca: readFileSync(certs.ca) },
      socket: {
        open(s) {
          subject = (s as unknown as TlsStream).peerSubject;
        },
        data(s, d) {
          s.write(d);
        },
      },
    });
    try {
      const s = await new Promise<tls.TLSSocket>((resolve, reject) => {
        const c = tls.connect({ host: "127.0.0.1", port: srv.port, ca: readFileSync(certs.ca), servername: "localhost", cert: readFileSync(certs.clientCert), key: readFileSync(certs.clientKey) }, () => resolve(c));
        c.once("error", reject);
      });
      expect((await tlsEcho(s, Buffer.from("mutual"))).toString()).toBe("mutual");
      expect(subject!).toBe("/CN=alice");
      s.destroy();
    } finally {
      await srv.stop({ graceful: false });
    }
  }, 30_000);
});
