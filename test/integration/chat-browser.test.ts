// The chat page at / in headless Chromium (a real browser, driven by playwright-core under
// Node as users' tooling runs it): test/browser/chat.mjs does the browsing; this starts the
// server with an HTTP and a framed listener on one hub and checks the script's verdict.

import { afterAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { killAll, ROOT, run, startServer } from "../util/process.ts";
import { waitFor } from "../util/tcp.ts";

afterAll(killAll);

describe("the chat page in a browser", () => {
  test("two pages exchange messages, and a framed client's BROADCAST appears in both", async () => {
    const srv = await startServer(["--listen", "http:0", "--listen", "framed:0"]);
    try {
      await waitFor(() => /\(framed\)/.test(srv.stdout()), 5000, "the framed listener");
      const framedPort = Number(/:(\d+) \(framed\)/.exec(srv.stdout())![1]);
      const httpPort = Number(/:(\d+) \(http\)/.exec(srv.stdout())![1]);
      const r = await run(["node", join(ROOT, "test/browser/chat.mjs"), String(httpPort), String(framedPort)], 60_000);
      expect(r.stderr).toBe("");
      expect(r.stdout.trim()).toBe("ok");
      expect(r.code).toBe(0);
    } finally {
      expect(await srv.stop()).toBe(0);
    }
  }, 90_000);
});
