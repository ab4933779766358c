// The two-machine rig of the block tests (block_test.ts, block_loop_test.ts): the same
// program on a machine run with large budgets (blocks, compiled once hot) and on one run a
// single step per run() (no blocks), compared on every register, byte and step.
import assert from "node:assert/strict";
import { Machine, type StopReason } from "../lib/machine/machine.ts";
import { assemble } from "../lib/x86/assemble.ts";

export const CODE = 0x400000n;
export const DATA = 0x600000n;
export const STACK_TOP = 0x700000n;

export interface Rig {
  m: Machine;
  labels: Map<string, bigint>;
}

/** How to build a rig: mode and the code page's permissions (default 64-bit, "rx"). */
export interface RigOptions {
  bitness?: 32 | 64;
  codePerms?: "rx" | "rwx";
}

/** A machine with `src` at CODE, a data page at DATA and a stack below STACK_TOP. */
export function rig(src: string, setup?: (r: Rig) => void, options: RigOptions = {}): Rig {
  const bitness = options.bitness ?? 64;
  const p = assemble(src, { bitness, origin: CODE });
  const m = new Machine({ bitness });
  m.load(CODE, p.bytes, options.codePerms ?? "rx");
  m.map(DATA, 0x1000, "rw");
  m.map(STACK_TOP - 0x1000n, 0x1000, "rw");
  const cpu = m.cpus[0]!;
  cpu.rip = CODE;
  cpu.setReg(bitness === 64 ? "rsp" : "esp", STACK_TOP - 64n);
  const r = { m, labels: p.labels };
  setup?.(r);
  return r;
}

/** Two identical machines: `fast` runs with big budgets, `slow` one step per run(). */
export function pair(src: string, setup?: (r: Rig) => void, options: RigOptions = {}): [Rig, Rig] {
  return [rig(src, setup, options), rig(src, setup, options)];
}

/** Runs `steps` steps one run() at a time (the one-step path, no blocks). */
export function stepwise(m: Machine, steps: number): StopReason {
  let stop: StopReason | null = null;
  let done = 0;
  while (done < steps) {
    stop = m.run({ maxSteps: 1 });
    done += stop.steps;
    if (stop.kind !== "budget") break;
  }
  return { ...stop!, steps: done };
}

/** Runs both rigs for the same budget (blocks vs one step at a time) and compares them. */
export function agree(fast: Rig, slow: Rig, steps: number, what: string): StopReason {
  const a = fast.m.run({ maxSteps: steps });
  const b = stepwise(slow.m, steps);
  assert.equal(a.kind, b.kind, `${what}: stop kind (${a.message} / ${b.message})`);
  assert.equal(a.steps, b.steps, `${what}: steps`);
  assert.equal(a.ip, b.ip, `${what}: ip`);
  // A budget stop names the budget, which differs (one step per run on the slow side).
  if (a.kind !== "budget") assert.equal(a.message, b.message, `${what}: message`);
  assert.equal(fast.m.cpus[0]!.steps, slow.m.cpus[0]!.steps, `${what}: CPU steps`);
  assert.equal(fast.m.stateHash(), slow.m.stateHash(), `${what}: machine state`);
  return a;
}
