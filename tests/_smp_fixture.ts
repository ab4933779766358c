/**
 * Shared fixture for the SMP tests and benches: a machine with one program per CPU,
 * a shared data page, a stack per CPU and optional exception handlers.
 *
 * @module
 */
import { Machine, type MachineOptions } from "../lib/machine/machine.ts";
import type { Explorable, SchedulePolicy } from "../lib/machine/schedule.ts";
import { assemble } from "../lib/x86/assemble.ts";

/** Code of CPU i starts at CODE + i * 0x1000. */
export const CODE = 0x100000n;
/** Shared code (handlers, functions) starts here. */
export const SHARED = 0x180000n;
/** Shared read-write data: 64 KiB. */
export const DATA = 0x200000n;
/** Stack of CPU i: top at STACKS + (i + 1) * 0x2000. */
export const STACKS = 0x300000n;

/** Options of {@link smpMachine}. */
export interface SmpFixtureOptions extends Omit<MachineOptions, "bitness" | "cpus"> {
  /** AT&T text of shared code at {@link SHARED} (labels visible to every CPU program). */
  shared?: string;
  /** Mode (default 64). */
  bitness?: 32 | 64;
}

/** A booted SMP test machine. */
export interface SmpBooted {
  /** The machine. */
  m: Machine;
  /** Every label (shared code and each CPU's program; CPU labels prefixed `cN.`). */
  labels: Map<string, bigint>;
}

/**
 * Boots a machine (64-bit unless told) running `programs[i]` on CPU i. Symbols `DATA` and the shared
 * code's labels are available to every program.
 *
 * @param programs AT&T text per CPU.
 * @param options Machine options plus shared code.
 * @returns The machine and labels.
 */
export function smpMachine(programs: string[], options: SmpFixtureOptions = {}): SmpBooted {
  const { shared, bitness = 64, ...rest } = options;
  const m = new Machine({ bitness, cpus: programs.length, ...rest });
  const labels = new Map<string, bigint>();
  const symbols: Record<string, bigint> = { DATA };
  if (shared !== undefined) {
    const a = assemble(shared, { bitness, origin: SHARED, symbols });
    m.load(SHARED, a.bytes, "rx");
    for (const [k, v] of a.labels) {
      labels.set(k, v);
      symbols[k] = v;
    }
  }
  m.map(DATA, 0x10000, "rw");
  programs.forEach((src, i) => {
    const origin = CODE + BigInt(i) * 0x1000n;
    const a = assemble(src, { bitness, origin, symbols });
    m.load(origin, a.bytes.length ? a.bytes : [0xf4], "rx");
    for (const [k, v] of a.labels) labels.set(`c${i}.${k}`, v);
    m.map(STACKS + BigInt(i) * 0x2000n, 0x2000, "rw");
    const cpu = m.cpus[i]!;
    cpu.setReg(bitness === 64 ? "rsp" : "esp", STACKS + BigInt(i + 1) * 0x2000n);
    cpu.rip = origin;
  });
  return { m, labels };
}

/**
 * An {@link Explorable} over {@link smpMachine}: each schedule boots a fresh machine,
 * runs it to the end under the explorer's policy and formats the outcome.
 *
 * @param programs AT&T text per CPU.
 * @param outcome Reads the result from the machine after the run.
 * @param options Machine options.
 * @returns The setup function for `explore`.
 */
export function litmus(
  programs: string[],
  outcome: (m: Machine) => string,
  options: SmpFixtureOptions = {},
): () => Explorable {
  return () => ({
    run(policy: SchedulePolicy): string {
      const { m } = smpMachine(programs, { ...options, schedule: policy });
      const stop = m.run({ maxSteps: 10_000 });
      if (stop.kind !== "hlt") return `stop:${stop.kind}`;
      return outcome(m);
    },
  });
}

/**
 * Reads a 32-bit register of CPU `c` as hex.
 *
 * @param m The machine.
 * @param c CPU index.
 * @param reg Register name.
 * @returns Lowercase hex without 0x.
 */
export function reg(m: Machine, c: number, reg: string): string {
  return m.cpus[c]!.getReg(reg).toString(16);
}
