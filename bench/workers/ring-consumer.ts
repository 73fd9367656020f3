// The consuming thread of bench/workers/ring.ts: drains a ring (or counts postMessages) until
// it has seen `count` messages, then reports.
import { RingConsumer } from "../../src/workers/ring.ts";

declare const self: Worker;
self.onmessage = (e: MessageEvent) => {
  const m = e.data;
  if (m.mode === "ring") {
    const c = new RingConsumer(m.buffer);
    const flag = new Int32Array(m.flag);
    let seen = 0;
    let sum = 0;
    const bytes = c.bytes;
    const onRecord = (off: number, _len: number) => {
      sum += bytes[off]!;
    };
    while (seen < m.count) {
      const n = c.drain(onRecord);
      seen += n;
      if (n === 0) Atomics.wait(flag, 0, 0, 1); // brief sleep when empty (the eventfd's stand-in)
    }
    self.postMessage({ seen, sum });
  } else {
    let seen = 0;
    self.onmessage = (ev: MessageEvent) => {
      const d = ev.data;
      seen += Array.isArray(d) ? d.length : 1;
      if (seen >= m.count) self.postMessage({ seen });
    };
    self.postMessage({ ready: true });
  }
};
