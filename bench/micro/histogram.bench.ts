// Micro-benchmark of the load generator's histogram: record() runs once per reply on the
// loadgen's single thread, so it must stay in the low nanoseconds or it would cap the
// msgs/s the harness can measure.
//
//   bun bench/micro/histogram.bench.ts

import { bench, do_not_optimize, group, run, summary } from "mitata";
import { Histogram } from "../lib/histogram.ts";

// Pre-generated RTT-like values (ns): mostly 20-60 µs, a tail to 10 ms, some > 2^32 ns,
// so every branch of bucketIndex() is exercised. Generated once, outside the timed code.
const N = 4096;
const values = new Float64Array(N);
for (let i = 0; i < N; i++) {
  const r = Math.random();
  values[i] = r < 0.98 ? 20_000 + Math.random() * 40_000 : r < 0.999 ? Math.random() * 10_000_000 : 5e9 + Math.random() * 1e9;
}

const h = new Histogram();
let i = 0;

group("histogram", () => {
  summary(() => {
    bench("record(rtt ns)", () => {
      h.record(values[i++ & (N - 1)]!);
    });
    bench("recordN(rtt ns, 8)", () => {
      h.recordN(values[i++ & (N - 1)]!, 8);
    });
  });
  bench("percentile(0.99) over 4352 buckets", () => {
    do_not_optimize(h.percentile(0.99));
  });
  bench("summary() (6 percentile scans)", () => {
    do_not_optimize(h.summary(1000));
  });
});

await run();
