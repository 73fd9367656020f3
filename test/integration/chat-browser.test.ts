// The chat page at / in headless Chromium (a real browser, driven by playwright-core under
// Node as users' tooling runs it): test/browser/chat.mjs does the browsing; this starts the
// server with an HTTP and a framed listener on one hub and checks the script's verdict.

import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { killAll, ROOT, run, startServer } from "../util/process.ts";
import { waitFor } from "../util/tcp.ts";

afterAll(killAll);

describe("the chat page in a browser", () => {
  test("two pages exchange messages, a framed client's BROADCAST appears in both, and the page can be pictured", async () => {
    const srv = await startServer(["--listen", "http:0", "--listen", "framed:0"]);
    try {
      await waitFor(() => /\(framed\)/.test(srv.stdout()), 5000, "the framed listener");
      const framedPort = Number(/:(\d+) \(framed\)/.exec(srv.stdout())![1]);
      const httpPort = Number(/:(\d+) \(http\)/.exec(srv.stdout())![1]);
      const dir = mkdtempSync(join(tmpdir(), "bunpoll-chat-"));
      const png = join(dir, "chat.png");
      try {
        const r = await run(["node", join(ROOT, "test/browser/chat.mjs"), String(httpPort), String(framedPort), png], 60_000);
        expect(r.stderr).toBe("");
        expect(r.stdout.trim()).toBe("ok");
        expect(r.code).toBe(0);
        // A PNG (README's picture of the page is taken this way).
        expect([...readFileSync(png).subarray(0, 8)]).toEqual([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    } finally {
      expect(await srv.stop()).toBe(0);
    }
  }, 90_000);
});
