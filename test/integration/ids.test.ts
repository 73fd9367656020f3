// One id per client everywhere: the id a framed client is told in WELCOME, the id json
// clients see as from_id, and the id the server's log lines name are the same number.

import { afterAll, describe, expect, test } from "bun:test";
import { connect, readExactly, waitFor } from "../util/tcp.ts";
import { killAll, startServer } from "../util/process.ts";

afterAll(killAll);

describe("client ids", () => {
  test("the WELCOME id is the id in the server's log line about that connection", async () => {
    const server = await startServer(["--listen", "framed:0", "--listen", "echo:0", "--frame-timeout", "1"]);
    try {
      await waitFor(() => /\(echo\)/.test(server.stdout()), 5000, "the echo listener");
      const echoPort = Number(/:(\d+) \(echo\)/.exec(server.stdout())![1]);
      // A connection that never joins the hub (echo) first: a hub with its own counter
      // would number the framed clients differently from the reactor's log lines.
      const e = await connect(echoPort);
      e.write("x");
      await readExactly(e, 1, 5000);
      const ids: number[] = [];
      for (let i = 0; i < 3; i++) {
        const c = await connect(server.port);
        c.write(Buffer.from([0, 1, 0, 0])); // HELLO
        const w = await readExactly(c, 10, 5000);
        expect(w.readUInt16BE(0)).toBe(2); // WELCOME
        ids.push(w.readUInt32BE(4));
        if (i === 2) c.write(Buffer.from([0, 5, 0, 10, 1])); // half an ECHO: the frame timeout closes it
        else c.destroy();
      }
      expect(new Set(ids).size).toBe(3);
      await waitFor(() => /connection \d+: closed: a frame stayed incomplete/.test(server.stderr()), 10_000, "the frame-timeout log line");
      const logged = Number(/connection (\d+): closed: a frame stayed incomplete/.exec(server.stderr())![1]);
      expect(logged).toBe(ids[2]!);
      e.destroy();
    } finally {
      await server.stop();
    }
  });
});
