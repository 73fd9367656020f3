// Fan-out batching against the real server process over loopback: one client write
// carrying several BROADCAST frames and then a SEND_TO to one of the recipients. The hub
// batches a read's broadcasts per recipient; the target must still see every
// BROADCAST_MSG in order and then the DIRECT_MSG, byte for byte.

import { afterAll, describe, expect, test } from "bun:test";
import type net from "node:net";
import {
  decodeWelcome,
  encodeBroadcast,
  encodeBroadcastAck,
  encodeBroadcastMsg,
  encodeDirectMsg,
  encodeHello,
  encodeSendAck,
  encodeSendTo,
} from "../../src/protocols/codec/framed.ts";
import { concat } from "../util/chunking.ts";
import { killAll, startServer } from "../util/process.ts";
import { connect, firstMismatch, patternBytes, readExactly } from "../util/tcp.ts";

afterAll(killAll);

/** HELLO, then the WELCOME's client id. */
async function hello(s: net.Socket): Promise<number> {
  const reply = readExactly(s, 10, 10_000, "WELCOME");
  s.write(encodeHello());
  const w = decodeWelcome(await reply, 4, 6);
  if (w === null) throw new Error("bad WELCOME");
  return w.clientId;
}

function expectBytes(got: Uint8Array, want: Uint8Array, what: string): void {
  const at = firstMismatch(got, want);
  if (at !== -1) throw new Error(`${what}: ${got.length} bytes, expected ${want.length}; first difference at byte ${at}`);
  expect(at).toBe(-1);
}

describe("fan-out ordering through the real server", () => {
  test("one write of BROADCASTs then a SEND_TO: the target gets every BROADCAST_MSG in order, then the DIRECT_MSG", async () => {
    const srv = await startServer(["--protocol", "framed", "--port", "0"]);
    const sockets: net.Socket[] = [];
    try {
      const sender = await connect(srv.port);
      const target = await connect(srv.port);
      const other = await connect(srv.port);
      sockets.push(sender, target, other);
      const sid = await hello(sender);
      const tid = await hello(target);
      await hello(other);

      for (let round = 0; round < 10; round++) {
        // 16 broadcasts of varied sizes; in odd rounds one is larger than the hub's
        // batching threshold (16 KiB) and is written directly between the batched ones.
        const bodies = Array.from({ length: 16 }, (_, i) => patternBytes(round % 2 === 1 && i === 7 ? 20_000 : 1 + ((round * 16 + i) * 37) % 300, round * 100 + i));
        const direct = patternBytes(50, round * 100 + 99);
        const tail = patternBytes(9, round * 100 + 98);
        const request = concat(...bodies.map((b) => encodeBroadcast(b)), encodeSendTo(tid, direct), encodeBroadcast(tail));

        const toTarget = concat(...bodies.map((b) => encodeBroadcastMsg(sid, b)), encodeDirectMsg(sid, direct), encodeBroadcastMsg(sid, tail));
        const toOther = concat(...bodies.map((b) => encodeBroadcastMsg(sid, b)), encodeBroadcastMsg(sid, tail));
        const toSender = concat(...bodies.map(() => encodeBroadcastAck(2)), encodeSendAck(tid), encodeBroadcastAck(2));

        const gotTarget = readExactly(target, toTarget.length, 10_000, `target, round ${round}`);
        const gotOther = readExactly(other, toOther.length, 10_000, `other, round ${round}`);
        const gotSender = readExactly(sender, toSender.length, 10_000, `sender, round ${round}`);
        sender.write(request);
        expectBytes(await gotTarget, toTarget, `target stream, round ${round}`);
        expectBytes(await gotOther, toOther, `other stream, round ${round}`);
        expectBytes(await gotSender, toSender, `sender acks, round ${round}`);
      }
    } finally {
      for (const s of sockets) s.destroy();
      await srv.stop();
    }
  }, 30_000);
});
