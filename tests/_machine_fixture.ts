/**
 * Shared fixture for the executor / machine / exception tests: a machine with a program
 * assembled at 0x1000, a stack and a data page.
 *
 * @module
 */
import { Machine } from "../lib/machine/machine.ts";
import type { Cpu } from "../lib/machine/cpu.ts";
import { assemble } from "../lib/x86/assemble.ts";

/** Where test programs are loaded. */
export const CODE = 0x1000n;
/** A read-write data page. */
export const DATA = 0x8000n;
/** Top of the (kernel) stack: pages 0x10000–0x14000 are mapped. */
export const STACK_TOP = 0x14000n;

/** A booted test machine. */
export interface Booted {
  /** The machine. */
  m: Machine;
  /** CPU 0. */
  cpu: Cpu;
  /** Labels of the program. */
  labels: Map<string, bigint>;
}

/**
 * Assembles `src` at {@link CODE}, maps it rx, maps data and stack, points rip/rsp there.
 * @param bitness Mode.
 * @param src AT&T text.
 * @param cpus CPU count.
 * @returns The machine, CPU 0 and labels.
 */
export function boot(bitness: 32 | 64, src: string, cpus = 1): Booted {
  const m = new Machine({ bitness, cpus });
  const a = assemble(src, { bitness, origin: CODE });
  m.load(CODE, a.bytes, "rx");
  m.map(DATA, 0x1000, "rw");
  m.map(0x10000n, 0x4000, "rw");
  for (const cpu of m.cpus) {
    cpu.setReg(bitness === 64 ? "rsp" : "esp", STACK_TOP);
    cpu.rip = CODE;
  }
  return { m, cpu: m.cpus[0]!, labels: a.labels };
}

/**
 * Boots and runs to the program's hlt, asserting that it stopped there.
 * @param bitness Mode.
 * @param src AT&T text ending in hlt.
 * @param setup Register setup before the run.
 * @returns The booted machine after the run.
 */
export function runToHlt(bitness: 32 | 64, src: string, setup?: (cpu: Cpu) => void): Booted {
  const b = boot(bitness, src);
  setup?.(b.cpu);
  const stop = b.m.run({ maxSteps: 100_000 });
  if (stop.kind !== "hlt") throw new Error(`expected hlt, got ${stop.kind}: ${stop.message}`);
  return b;
}

/**
 * `n` words of `size` bytes from `at` (a stack frame, for instance), as bigints.
 *
 * @param m The machine.
 * @param at First word's address.
 * @param n How many words.
 * @param size 4 or 8.
 * @returns The words, lowest address first.
 */
export function words(m: Machine, at: bigint, n: number, size: 4 | 8): bigint[] {
  const out: bigint[] = [];
  for (let i = 0; i < n; i++) {
    const a = at + BigInt(i * size);
    out.push(size === 8 ? m.read64(a) : m.read32(a));
  }
  return out;
}
