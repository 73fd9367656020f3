// CPU affinity of the calling thread (sched_getaffinity/sched_setaffinity with pid 0, which
// Linux applies to the calling thread only): what --workers auto counts and --pin sets.

import { check, libc } from "../../ffi/index.ts";

/** cpu_set_t as glibc sizes it: 1024 CPUs. */
const CPU_SET_BYTES = 128;

/** The CPUs this thread may run on, ascending. */
export function allowedCpus(): number[] {
  const mask = new Uint8Array(new ArrayBuffer(CPU_SET_BYTES));
  check("sched_getaffinity", libc.sched_getaffinity(0, CPU_SET_BYTES, mask));
  const cpus: number[] = [];
  for (let i = 0; i < CPU_SET_BYTES * 8; i++) if (mask[i >> 3]! & (1 << (i & 7))) cpus.push(i);
  return cpus;
}

/** Pins the calling thread to one CPU. Throws a SyscallError (EINVAL: not allowed). */
export function pinThread(cpu: number): void {
  const mask = new Uint8Array(new ArrayBuffer(CPU_SET_BYTES));
  mask[cpu >> 3] = 1 << (cpu & 7);
  check("sched_setaffinity", libc.sched_setaffinity(0, CPU_SET_BYTES, mask), `cpu ${cpu}`);
}
