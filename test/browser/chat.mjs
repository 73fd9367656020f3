// The chat page in a real browser (Debian's Chromium, driven by playwright-core under Node):
// two pages exchange messages, and a framed client's BROADCAST appears in both. Run by
// test/integration/chat-browser.test.ts against a running server:
//   node chat.mjs HTTP_PORT FRAMED_PORT [SCREENSHOT.png]
// With a third argument it saves page A as it stands at the end (README's picture is one).
import net from "node:net";
import { chromium } from "playwright-core";

const port = Number(process.argv[2]);
const framedPort = Number(process.argv[3]);
const screenshot = process.argv[4];
const url = `http://127.0.0.1:${port}/`;
const fail = (msg) => {
  console.error(`chat: ${msg}`);
  process.exit(1);
};

const browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium", args: ["--no-sandbox"] });
try {
  const [a, b] = await Promise.all([browser.newPage(), browser.newPage()]);
  for (const p of [a, b]) {
    await p.goto(url);
    await p.waitForFunction(() => document.getElementById("status").textContent === "connected", null, { timeout: 10_000 });
  }
  // Page A speaks; page B hears it as "<id>: <nick>: <text>".
  await a.fill("#nick", "alice");
  await a.fill("#text", "hello from the browser");
  await a.press("#text", "Enter");
  await b.waitForFunction(() => [...document.querySelectorAll("#log li")].some((li) => /^\d+: alice: hello from the browser$/.test(li.textContent)), null, { timeout: 10_000 });
  const mine = await a.$$eval("#log li.mine", (lis) => lis.map((li) => li.textContent));
  if (!mine.includes("alice: hello from the browser")) fail(`page A did not show its own line: ${JSON.stringify(mine)}`);

  // A framed client (the protocol's BROADCAST, type 7) reaches both pages.
  await new Promise((resolve, reject) => {
    const s = net.connect(framedPort, "127.0.0.1");
    const body = Buffer.from("from a framed client");
    const frame = Buffer.alloc(4 + body.length);
    frame.writeUInt16BE(7, 0);
    frame.writeUInt16BE(body.length, 2);
    body.copy(frame, 4);
    s.on("error", reject);
    s.on("connect", () => s.write(frame));
    s.once("data", () => {
      s.end();
      resolve();
    }); // BROADCAST_ACK
  }).catch((e) => fail(`framed client: ${e.message}`));
  for (const p of [a, b]) {
    await p.waitForFunction(() => [...document.querySelectorAll("#log li")].some((li) => /^\d+: from a framed client$/.test(li.textContent)), null, { timeout: 10_000 });
  }
  if (screenshot) {
    await a.setViewportSize({ width: 720, height: 420 });
    await a.screenshot({ path: screenshot });
  }
  console.log("ok");
} finally {
  await browser.close();
}
