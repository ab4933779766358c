/**
 * The host-CPU oracle: random register-only instruction sequences run natively (through
 * tests/oracle/harness.c, built with gcc at test time) and in textpoke; every register and
 * every defined arithmetic flag must agree.
 *
 * Environment:
 * - TEXTPOKE_HOST_CASES: cases per mode and per emulator side (default 100000).
 * - TEXTPOKE_HOST_SEED: PRNG seed (default: random, printed on failure).
 * - TEXTPOKE_ORACLE_STRICT=1: compare the SDM-undefined flags too (this library computes
 *   what the CPU it was developed on computes; other CPUs differ).
 */

import assert from "node:assert/strict";
import { ARITH } from "../lib/x86/flags.ts";
import { type Case, genCase, type GenInsn, type HostResult, K } from "./oracle/cases.ts";
import { Rng } from "./fuzz/prng.ts";
import { undefinedFlags } from "../lib/x86/alu.ts";
import { Op } from "../lib/x86/insn.ts";
import { buildHarness, compare, flagNames, type Harness, runHost } from "./oracle/host.ts";
import { refRun } from "./oracle/ref.ts";
import { Machine } from "../lib/machine/machine.ts";

const CASES = Number(Deno.env.get("TEXTPOKE_HOST_CASES") ?? 100_000);
const SEED = Number(Deno.env.get("TEXTPOKE_HOST_SEED") ?? (Math.random() * 2 ** 31) | 0);
const STRICT = Deno.env.get("TEXTPOKE_ORACLE_STRICT") === "1";
const MAX_REPORTS = 5;

const harness: Record<number, Harness> = {
  64: await buildHarness(64),
  32: await buildHarness(32),
};

globalThis.addEventListener("unload", () => {
  for (const h of Object.values(harness)) {
    if (!("skip" in h)) Deno.removeSync(h.dir, { recursive: true });
  }
});

function skipReason(bits: number): string | null {
  const h = harness[bits]!;
  if ("skip" in h) {
    console.warn(`SKIPPED: host-CPU oracle (${bits}-bit) because ${h.skip}`);
    return h.skip;
  }
  return null;
}

interface Batch {
  cases: Case[];
  host: HostResult[];
  /** Milliseconds spent generating the cases and running them on the host. */
  ms: number;
}

const batches: Record<number, Promise<Batch>> = {};

/** The batch of cases of one mode, generated and run on the host once, shared by the tests. */
function batch(bits: number): Promise<Batch> {
  return batches[bits] ??= (async () => {
    const t0 = performance.now();
    const b = await hostBatch(bits, (SEED + bits) | 0);
    return { ...b, ms: performance.now() - t0 };
  })();
}

async function hostBatch(
  bits: number,
  seed: number,
): Promise<{ cases: Case[]; host: HostResult[] }> {
  const h = harness[bits]!;
  if ("skip" in h) throw new Error(h.skip);
  const rng = new Rng(seed);
  const cases: Case[] = [];
  for (let i = 0; i < CASES; i++) cases.push(genCase(rng, bits, 4));
  const host = await runHost(h.path, h.dir, cases);
  return { cases, host };
}

/** Registers the ALU-level comparison of one mode. */
function aluTest(bits: 32 | 64): void {
  Deno.test({
    name:
      `aluBinary() and the other lib/x86/alu.ts functions agree with the host CPU on random ${bits}-bit sequences`,
    ignore: skipReason(bits) !== null,
    async fn() {
      const seed = (SEED + bits) | 0;
      const { cases, host, ms } = await batch(bits);
      const t1 = performance.now();
      const failures: string[] = [];
      let tainted = 0;
      let faults = 0;
      let undefDiff = 0;
      const undefDiffByFlag = new Map<number, number>();
      for (let i = 0; i < cases.length; i++) {
        const c = cases[i]!;
        const h = host[i]!;
        const s = refRun(c, bits);
        if (h.status > 1) {
          failures.push(`case ${i}: harness status ${h.status} (SIGILL/SIGSEGV): bad encoding`);
          continue;
        }
        if (h.status === 1) faults++;
        if (s.tainted && !STRICT) {
          tainted++;
          continue;
        }
        const regs: bigint[] = [];
        for (let r = 0; r < 16; r++) {
          regs.push((BigInt(s.r[r * 2 + 1]! >>> 0) << 32n) | BigInt(s.r[r * 2]! >>> 0));
        }
        const emu = { regs, flags: s.flags, status: s.status };
        const mask = STRICT ? ARITH : ARITH & ~s.undef;
        const d = (h.flags ^ s.flags) & s.undef & ARITH;
        if (d && h.status === s.status) {
          undefDiff++;
          undefDiffByFlag.set(d, (undefDiffByFlag.get(d) ?? 0) + 1);
        }
        const report = compare(bits, c, h, emu, mask, `case ${i} (seed ${seed}, ${bits}-bit):`);
        if (report) failures.push(report);
        if (failures.length >= MAX_REPORTS) break;
      }
      const t2 = performance.now();
      console.log(
        `${bits}-bit: ${cases.length} cases (seed ${seed}): host ${ms.toFixed(0)} ms ` +
          `(generate + run), alu compare ${(t2 - t1).toFixed(0)} ms; #DE ${faults}, ` +
          `skipped (read an undefined flag) ${tainted}, undefined-flag differences ${undefDiff}` +
          (undefDiff
            ? ` [${[...undefDiffByFlag].map(([m, n]) => `${flagNames(m)}:${n}`).join(" ")}]`
            : ""),
      );
      assert.equal(
        failures.length,
        0,
        `replay with TEXTPOKE_HOST_SEED=${SEED}\n${failures.join("\n")}`,
      );
    },
  });
}

/** Where the Machine side puts things: one 64-byte code slot per case, a #DE handler, a stack. */
const CODE_BASE = 0x400000;
const DE_HANDLER = 0x1000;
const STACK_TOP = 0x9f000;

/** Registers the whole-machine comparison of one mode; the last user of its batch. */
function machineTest(bits: 32 | 64): void {
  Deno.test({
    name: `Machine.run() executes random ${bits}-bit sequences exactly like the host CPU`,
    ignore: skipReason(bits) !== null,
    async fn() {
      const seed = (SEED + bits) | 0;
      const { cases, host, ms } = await batch(bits);
      // A mode's batch is freed before the next mode's is made: with TEXTPOKE_HOST_CASES in
      // the millions (deno task oracle) two batches do not fit in the default heap.
      delete batches[bits];
      const t1 = performance.now();
      const m = new Machine({ bitness: bits });
      // #DE goes through an interrupt gate to a hlt: the registers there are those at the fault.
      m.load(BigInt(DE_HANDLER), [0xf4], "rx");
      m.setGate(0, { handler: BigInt(DE_HANDLER) });
      m.map(BigInt(STACK_TOP - 0x4000), 0x5000, "rw");
      const code = new Uint8Array(cases.length * 64);
      cases.forEach((c, i) => {
        let o = i * 64;
        for (const g of c.insns) for (const b of g.bytes) code[o++] = b;
        code[o] = 0xf4; // hlt where the host has ret
      });
      m.load(BigInt(CODE_BASE), code, "rx");
      const cpu = m.cpus[0]!;
      const failures: string[] = [];
      let tainted = 0;
      for (let i = 0; i < cases.length; i++) {
        const c = cases[i]!;
        const h = host[i]!;
        for (let r = 0; r < 16; r++) {
          if (bits === 32 && r >= 8) break;
          const v = r === 4 ? BigInt(STACK_TOP) : c.regs[r]!;
          cpu.lo[r] = Number(v & 0xffffffffn) | 0;
          cpu.hi[r] = bits === 64 ? Number(v >> 32n) | 0 : 0;
        }
        cpu.rflags = BigInt(c.flags);
        cpu.rip = BigInt(CODE_BASE + i * 64);
        const stop = m.run({ maxSteps: 32 });
        const ip = Number(stop.ip);
        let status = 9;
        if (stop.kind === "hlt" && (ip === DE_HANDLER || ip === DE_HANDLER + 1)) status = 1;
        else if (stop.kind === "hlt" && ip > CODE_BASE + i * 64 && ip <= CODE_BASE + i * 64 + 64) {
          status = 0;
        }
        const regs: bigint[] = [];
        for (let r = 0; r < 16; r++) {
          regs.push(
            bits === 64 || r < 8
              ? (BigInt(cpu.hi[r]! >>> 0) << 32n) | BigInt(cpu.lo[r]! >>> 0)
              : 0n,
          );
        }
        const s = refRun(c, bits);
        if (s.tainted && !STRICT) {
          tainted++;
          continue;
        }
        const mask = STRICT ? ARITH : ARITH & ~s.undef;
        const report = compare(
          bits,
          c,
          h,
          { regs, flags: cpu.flags, status },
          mask,
          `case ${i} (seed ${seed}, ${bits}-bit), machine stop ${stop.kind} at 0x${
            ip.toString(16)
          }: ${stop.message}`,
        );
        if (report) failures.push(report);
        if (failures.length >= MAX_REPORTS) break;
      }
      const t2 = performance.now();
      console.log(
        `${bits}-bit Machine: ${cases.length} cases (seed ${seed}): host ${ms.toFixed(0)} ms, ` +
          `machine + compare ${(t2 - t1).toFixed(0)} ms (${
            (cases.length / ((t2 - t1) / 1000)).toFixed(0)
          } cases/s); ` +
          `skipped (read an undefined flag) ${tainted}`,
      );
      assert.equal(
        failures.length,
        0,
        `replay with TEXTPOKE_HOST_SEED=${SEED}\n${failures.join("\n")}`,
      );
    },
  });
}

// One mode at a time: its two tests, then the next mode's.
for (const bits of [64, 32] as const) {
  aluTest(bits);
  machineTest(bits);
}

Deno.test({
  name: "runHost() reports #DE and #UD on the host as statuses instead of dying",
  ignore: skipReason(64) !== null,
  async fn() {
    const h = harness[64]!;
    if ("skip" in h) return;
    const regs = Array.from({ length: 16 }, (_, i) => BigInt(i * 0x101));
    const mk = (bytes: number[]): Case => ({
      regs: [...regs],
      flags: 0x202,
      insns: [{ ...genCase(new Rng(1), 64, 1).insns[0]!, bytes }],
    });
    // xor ecx,ecx; div ecx  |  ud2  |  add eax,1
    const cases = [mk([0x31, 0xc9, 0xf7, 0xf1]), mk([0x0f, 0x0b]), mk([0x83, 0xc0, 0x01])];
    const res = await runHost(h.path, h.dir, cases);
    assert.deepEqual(res.map((r) => r.status), [1, 2, 0]);
    assert.equal(res[0]!.regs[1], 0n, "state at the fault: ecx already cleared");
    assert.equal(res[0]!.regs[0], regs[0], "eax untouched by the faulting div");
    assert.equal(res[2]!.regs[0], 1n);
    assert.equal(res[2]!.regs[15], regs[15], "r15 round-trips through the harness");
  },
});

Deno.test("compare() reports differing registers and defined flags but masks undefined ones", () => {
  const c: Case = { regs: Array.from({ length: 16 }, () => 0n), flags: 0x202, insns: [] };
  const host = { regs: Array.from({ length: 16 }, () => 0n), flags: 0x202 | 0x10, status: 0 };
  const same = { regs: [...host.regs], flags: 0x202, status: 0 };
  assert.equal(compare(64, c, host, same, ARITH & ~0x10, "masked"), null, "AF masked");
  const report = compare(64, c, host, same, ARITH, "strict");
  assert.match(report ?? "", /flags differ in AF/);
  const regs = [...host.regs];
  regs[9] = 1n;
  regs[4] = 5n;
  const wrong = compare(64, c, host, { regs, flags: 0x202 | 0x10, status: 0 }, ARITH, "r9");
  assert.match(wrong ?? "", /r9 host=0x0000000000000000 emu=0x0000000000000001/);
  assert.doesNotMatch(wrong ?? "", /rsp/, "rsp is never compared");
  assert.match(
    compare(32, c, host, { ...same, flags: host.flags, status: 1 }, ARITH, "st") ?? "",
    /status/,
  );
});

Deno.test("refRun() masks flags left undefined and skips cases that read them", () => {
  const rng = new Rng(3);
  const base = genCase(rng, 64, 1);
  const mul: GenInsn = {
    ...base.insns[0]!,
    kind: K.MULDIV,
    op: Op.MUL,
    size: 4,
    src: 1,
    bytes: [],
  };
  const setp: GenInsn = { ...mul, kind: K.SETCC, op: Op.SETCC, size: 1, dst: 3, cc: 10 };
  const add: GenInsn = { ...mul, kind: K.ALU, op: Op.ADD, dst: 0, src: 1 };
  const c = (insns: GenInsn[]): Case => ({ regs: base.regs, flags: 0x202, insns });
  const afterMul = refRun(c([mul]), 64);
  assert.equal(afterMul.undef, undefinedFlags(Op.MUL));
  assert.equal(afterMul.tainted, false);
  assert.equal(refRun(c([mul, setp]), 64).tainted, true, "setp reads PF, undefined after mul");
  const afterAdd = refRun(c([mul, add]), 64);
  assert.equal(afterAdd.undef, 0, "add defines all six again");
});
