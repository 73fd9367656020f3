// --balance acceptor: the main thread listens on one socket per --listen, accepts, and hands
// each connection's fd to the live worker with the fewest connections (open ones, read from
// shared memory, plus those handed over and not yet adopted). The handover is a small SPSC
// ring per worker (fd, listener index) and a wake of the worker's eventfd; the worker adopts
// the fd at its next turn. The main thread's reactor only accepts: it never reads a byte.

import { Reactor } from "../reactor/reactor.ts";
import type { Listener } from "../reactor/listener.ts";
import { ListenFailure, type ServingConfig } from "../cli/serving.ts";
import { closeFd } from "../driver/sockets.ts";
import { formatHostPort } from "../../ffi/index.ts";
import { wakeReactor } from "../reactor/reactor.ts";
import { processLog as log } from "../log.ts";
import { RingProducer } from "./ring.ts";
import { Field, HANDOFF_BYTES, type Control, type SharedState } from "./shared.ts";

/** Bytes of one handoff record in its ring (length word + body). */
const RECORD = 4 + HANDOFF_BYTES;

export class Acceptor {
  private readonly reactor: Reactor;
  private readonly listeners: { listener: Listener<any>; protocol: string }[] = [];
  private readonly rings: RingProducer[];
  private next = 0;

  constructor(cfg: ServingConfig, state: SharedState, private readonly owners: Uint8Array, private readonly control: Control) {
    this.rings = state.handoff.map((b) => new RingProducer(b));
    // Accepting only: no busy polling, no connections of its own.
    this.reactor = new Reactor({ busyPollUs: 0, log: log.component });
    cfg.specs.forEach((spec, i) => {
      try {
        const listener = this.reactor.listen({
          hostname: spec.host,
          port: spec.port,
          handler: {},
          handOff: (fd) => this.handOff(fd, i),
        });
        this.listeners.push({ listener, protocol: spec.protocol });
      } catch (e) {
        this.reactor[Symbol.dispose]();
        throw ListenFailure.of(formatHostPort(spec.host, spec.port), e);
      }
    });
  }

  listening(): { address: string; protocol: string }[] {
    return this.listeners.map((l) => ({ address: l.listener.describe(), protocol: l.protocol }));
  }

  /** Starts accepting (the listeners are open from the constructor; the kernel queues meanwhile). */
  start(): void {
    this.reactor.start();
  }

  /** Takes in the backlog (handed over like any connection), then closes the listeners. */
  stop(): void {
    void this.reactor.stop({ graceful: true });
  }

  private handOff(fd: number, listenerIndex: number): void {
    const w = this.leastLoaded();
    if (w < 0) {
      closeFd(fd); // no live worker: refuse rather than hold it
      return;
    }
    const ring = this.rings[w]!;
    const at = ring.reserve(HANDOFF_BYTES);
    if (at < 0) {
      closeFd(fd); // thousands waiting for one worker: it is not adopting
      return;
    }
    // Owned by that worker from here: closed for it should it die before adopting.
    if (fd < this.owners.length) Atomics.store(this.owners, fd, w + 1);
    const words = new Int32Array(ring.bytes.buffer, ring.bytes.byteOffset + at, 2);
    words[0] = fd;
    words[1] = listenerIndex;
    ring.commit(HANDOFF_BYTES);
    ring.publish();
    const c = this.control;
    const wakeFd = c.load(Field.WakeFd, w);
    if (wakeFd > 0 && Atomics.exchange(c.words, c.at(Field.WakePending, w), 1) === 0) wakeReactor(wakeFd);
  }

  /** The live worker with the fewest connections, counting those handed over but not adopted. */
  private leastLoaded(): number {
    const n = this.rings.length;
    let best = -1;
    let bestLoad = Infinity;
    // Ties go round robin: start after the last choice.
    for (let k = 0; k < n; k++) {
      const w = (this.next + k) % n;
      if (this.control.load(Field.Alive, w) === 0) continue;
      const load = this.control.load(Field.Connections, w) + this.rings[w]!.used / RECORD;
      if (load < bestLoad) {
        bestLoad = load;
        best = w;
      }
    }
    this.next = (best + 1) % n;
    return best;
  }
}
