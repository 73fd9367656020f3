// A clock tests move by hand: `now()` returns the current value, `advance(ns)` moves it.

export class ManualClock {
  t: number;
  reads = 0;
  constructor(start = 1_000_000) {
    this.t = start;
  }
  readonly now = (): number => {
    this.reads++;
    return this.t;
  };
  advance(ns: number): void {
    this.t += ns;
  }
}
