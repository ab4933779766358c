/**
 * Shared fixture for the SMP tests and benches: a machine with one program per CPU,
 * a shared data page, a stack per CPU and optional exception handlers.
 *
 * @module
 */
import { NOP5_32, NOP5_64 } from "../lib/kernel/constants.ts";
import type { EntryVariant } from "../lib/kernel/entry.ts";
import { bootKernel } from "../lib/kernel/kernel.ts";
import type { PokeStep } from "../lib/kernel/text_poke.ts";
import { Machine, type MachineOptions } from "../lib/machine/machine.ts";
import { type Explorable, random, type SchedulePolicy } from "../lib/machine/schedule.ts";
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

/** What {@link pokeRace} saw. */
export interface PokeRace {
  /** Wrong executions: oopses, or 1 when a crash stopped the run without one. */
  bad: number;
  /** Loop iterations of the three callers. */
  iterations: number;
  /** Calls that reached the tracer. */
  hits: number;
  /** int3 hits the kernel emulated. */
  emulated: number;
}

/**
 * A kernel on 4 CPUs whose CPUs 1-3 call a NOP5 site in a loop while CPU 0 turns it into a
 * call to a tracer and back, 6 times: with `text_poke_bp` (optionally without one of its
 * syncs, `dropSync` 1-3) or with one plain 5-byte store.
 *
 * @param bitness 32 or 64.
 * @param seed The random schedule's seed.
 * @param how `textPokeBp` or `plain`.
 * @param fetch The instruction-fetch mode.
 * @param dropSync A sync step of text_poke_bp to leave out (-1: none).
 * @returns What happened.
 */
export function pokeRace(
  bitness: 32 | 64,
  seed: number,
  how: "textPokeBp" | "plain",
  fetch: "torn" | "coherent",
  dropSync = -1,
): PokeRace {
  const entry: EntryVariant = bitness === 64 ? "64-gap" : "32-fixup";
  const k = bootKernel(new Machine({ bitness, cpus: 4 }), { entry });
  const nop = bitness === 64 ? NOP5_64 : NOP5_32;
  const [arg, counter] = bitness === 64 ? ["%rdi", "(%rdi)"] : ["%eax", "(%eax)"];
  const l = k.loadText(`
site_fn:
site:
	.byte ${[...nop].join(", ")}
	ret
worker:
1:	call	site_fn
	incl	${counter}
	jmp	1b
tracer:
	incl	4(${arg})
	ret
`);
  const site = l.get("site")!;
  const call = new Uint8Array(5);
  call[0] = 0xe8;
  new DataView(call.buffer).setInt32(1, Number(l.get("tracer")! - site - 5n), true);
  const counters = k.allocData(64);
  for (let c = 1; c < 4; c++) k.prepareCall(c, l.get("worker")!, [counters + BigInt(8 * c)]);
  const smp = k.startSmp({ schedule: random(seed), fetch });
  const gens: (() => Generator<PokeStep, void, void>)[] = [];
  for (let t = 0; t < 6; t++) {
    const bytes = t % 2 === 0 ? call : nop;
    gens.push(
      how === "textPokeBp"
        ? function* () {
          for (const s of k.textPokeBp(site, bytes)) {
            if (!(s.kind === "sync" && s.step === dropSync)) yield s;
          }
        }
        : function* () {
          // The naive patch: one plain 5-byte store, no int3, no sync.
          yield { kind: "store", address: site, num: NaN, bytes, step: 0 };
        },
    );
  }
  const thread = k.spawnPatcher(0, gens, 40);
  const r = smp.run(12_000);
  if (thread.error !== undefined) throw thread.error;
  let iterations = 0;
  let hits = 0;
  for (let c = 1; c < 4; c++) {
    iterations += Number(k.mem.readWord(counters + BigInt(8 * c), 4));
    hits += Number(k.mem.readWord(counters + BigInt(8 * c) + 4n, 4));
  }
  // A bad execution crashes its CPU (an oops: wild call into int3 padding, #UD, #PF),
  // which ends the run.
  const bad = k.oopses.length + (r.reason === "host" && k.oopses.length === 0 ? 1 : 0);
  return { bad, iterations, hits, emulated: k.patcher.stats.emulated };
}
