// The executor's fast paths agree with the slow ones they short-cut: condition codes
// evaluated on pending lazy flags, the per-operation ALU handlers, the push/pop forms and
// the victim TLB entries (which must be dropped with the main ones).
import assert from "node:assert/strict";
import { Machine } from "../lib/machine/machine.ts";
import { aluBinary, aluOut, condition } from "../lib/x86/alu.ts";
import { Op } from "../lib/x86/insn.ts";
import { assemble } from "../lib/x86/assemble.ts";

/** xorshift32: a small deterministic generator for operands. */
function rng(seed: number): () => number {
  let x = seed | 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return x | 0;
  };
}

function rd(m: Machine, a: bigint, w: bigint): bigint {
  return w === 8n ? m.memory.read64(a) : m.memory.read32(a);
}

const EDGES = [0, 1, -1, 0x7fffffff, -0x80000000, 0x80, 0xff, 2, -2];

function operand(next: () => number): number {
  const r = next();
  return (r & 7) === 0 ? EDGES[(r >>> 3) % EDGES.length]! : next();
}

Deno.test("Cpu.cond() on pending lazy flags equals condition() on the materialized flags", () => {
  const cpu = new Machine({ bitness: 64 }).cpus[0]!;
  const next = rng(12345);
  const ops = [Op.ADD, Op.SUB, Op.CMP, Op.AND, Op.TEST, Op.OR, Op.XOR];
  let checked = 0;
  for (let i = 0; i < 4000; i++) {
    const op = ops[i % ops.length]!;
    const size = (i >> 3) & 1 ? 8 : 4;
    const a = operand(next), ah = operand(next);
    // Equal operands (and equal high halves) exercise ZF and the <= conditions.
    const same = (i & 15) === 0;
    const b = same ? a : operand(next), bh = same || (i & 31) === 1 ? ah : operand(next);
    const before = (next() & 0x8d5) | 2; // arbitrary stale arithmetic flags
    aluBinary(op, size, a, ah, b, bh, before);
    const want = aluOut[2]!;
    for (let cc = 0; cc < 16; cc++) {
      cpu.flags = before;
      cpu.lazyFlags(op, size, a, ah, b, bh);
      assert.equal(
        cpu.cond(cc),
        condition(cc, want),
        `op ${op} size ${size} a ${a}:${ah} b ${b}:${bh} cc ${cc}`,
      );
      assert.equal(cpu.flags, want); // and materializing afterwards still gives the flags
      checked++;
    }
  }
  assert.equal(checked, 64000);
});

Deno.test("the per-operation ALU handlers give aluBinary's result and flags", () => {
  const m = new Machine({ bitness: 64 });
  const text = [
    "add %rbx, %rax",
    "sub %rbx, %rax",
    "xor %rbx, %rax",
    "and %rbx, %rax",
    "or %rbx, %rax",
    "cmp %rbx, %rax",
    "test %rbx, %rax",
    "add %ebx, %eax",
    "sub %ebx, %eax",
    "xor %ebx, %eax",
    "and %ebx, %eax",
    "or %ebx, %eax",
    "cmp %ebx, %eax",
    "add $-5, %rax",
    "sub $0x7fffffff, %rax",
    "and $0x7f, %eax",
    "or $-1, %eax",
    "xor $0x1234, %rax",
    "cmp $3, %eax",
  ];
  const ops = [
    Op.ADD,
    Op.SUB,
    Op.XOR,
    Op.AND,
    Op.OR,
    Op.CMP,
    Op.TEST,
    Op.ADD,
    Op.SUB,
    Op.XOR,
    Op.AND,
    Op.OR,
    Op.CMP,
    Op.ADD,
    Op.SUB,
    Op.AND,
    Op.OR,
    Op.XOR,
    Op.CMP,
  ];
  const imms = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, -5, 0x7fffffff, 0x7f, -1, 0x1234, 3];
  const base = 0x400000n;
  const code = assemble(text.join("\n") + "\nhlt", { bitness: 64, origin: base });
  m.load(base, code.bytes, "rx");
  const cpu = m.cpus[0]!;
  const next = rng(777);
  for (let round = 0; round < 200; round++) {
    cpu.rip = base;
    for (let k = 0; k < text.length; k++) {
      const a = operand(next), ah = operand(next), b = operand(next), bh = operand(next);
      cpu.setReg("rax", (BigInt(ah >>> 0) << 32n) | BigInt(a >>> 0));
      cpu.setReg("rbx", (BigInt(bh >>> 0) << 32n) | BigInt(b >>> 0));
      const flagsIn = Number(cpu.rflags);
      const size = text[k]!.includes("%r") ? 8 : 4;
      const isImm = k >= 13;
      const bl = isImm ? imms[k]! : b;
      const bhi = isImm ? (imms[k]! < 0 ? -1 : 0) : bh;
      aluBinary(ops[k]!, size, a, ah, bl, bhi, flagsIn);
      const writes = ops[k] !== Op.CMP && ops[k] !== Op.TEST;
      const want = writes
        ? (BigInt(aluOut[1]! >>> 0) << 32n) | BigInt(aluOut[0]! >>> 0)
        : (BigInt(ah >>> 0) << 32n) | BigInt(a >>> 0);
      const wantFlags = aluOut[2]!;
      const stop = m.run({ maxSteps: 1 });
      assert.equal(stop.kind, "budget");
      assert.equal(cpu.getReg("rax"), want, `${text[k]} with ${a}:${ah}, ${b}:${bh}`);
      assert.equal(Number(cpu.rflags), wantFlags, `${text[k]} flags`);
    }
  }
});

Deno.test("push/pop of registers move rsp and data as the generic forms do, in 64 and 32 bits", () => {
  for (const bitness of [64, 32] as const) {
    const m = new Machine({ bitness });
    const base = 0x400000n;
    const stack = 0x600000n;
    m.map(stack, 0x2000, "rw");
    const src = bitness === 64
      ? "push %rax\npush %rsp\npop %rbx\npop %rcx\npushw $7\npopw %dx\nhlt"
      : "push %eax\npush %esp\npop %ebx\npop %ecx\npushw $7\npopw %dx\nhlt";
    m.load(base, assemble(src, { bitness, origin: base }).bytes, "rx");
    const cpu = m.cpus[0]!;
    cpu.rip = base;
    const sp0 = stack + 0x1000n; // the pushes cross no page; a second page lies above
    cpu.setReg(bitness === 64 ? "rsp" : "esp", sp0);
    const v = bitness === 64 ? 0x1122334455667788n : 0x55667788n;
    cpu.setReg(bitness === 64 ? "rax" : "eax", v);
    const w = bitness === 64 ? 8n : 4n;
    m.run({ maxSteps: 2 });
    assert.equal(cpu.getReg(bitness === 64 ? "rsp" : "esp"), sp0 - 2n * w);
    assert.equal(rd(m, sp0 - w, w), v);
    assert.equal(rd(m, sp0 - 2n * w, w), sp0 - w); // push %rsp: old value
    m.run({ maxSteps: 4 });
    assert.equal(cpu.getReg(bitness === 64 ? "rbx" : "ebx"), sp0 - w);
    assert.equal(cpu.getReg(bitness === 64 ? "rcx" : "ecx"), v);
    assert.equal(cpu.getReg("dx"), 7n);
    assert.equal(cpu.getReg(bitness === 64 ? "rsp" : "esp"), sp0);
  }
});

Deno.test("Cpu's victim TLB entries are dropped with the main ones: a protected page faults", () => {
  const m = new Machine({ bitness: 64 });
  const base = 0x400000n;
  const a = 0x600000n;
  const b = 0x700000n;
  m.map(a, 0x1000, "rw");
  m.map(b, 0x1000, "rw");
  // Alternate stores between two pages so both sit in the write TLB (main + victim).
  const src = "movq %rax, (%rsi)\nmovq %rax, (%rdi)\nmovq %rax, (%rsi)\nmovq %rax, (%rdi)\nhlt";
  m.load(base, assemble(src, { bitness: 64, origin: base }).bytes, "rx");
  const cpu = m.cpus[0]!;
  cpu.rip = base;
  cpu.setReg("rsi", a);
  cpu.setReg("rdi", b);
  cpu.setReg("rax", 5n);
  m.run({ maxSteps: 2 });
  assert.equal(m.memory.read64(b), 5n);
  // Page a is now the victim entry; make it read-only: the next store must #PF, and with
  // no IDT the CPU ends in a triple fault at that store, not write through a stale entry.
  m.protect(a, 0x1000, "r");
  cpu.setReg("rax", 9n);
  const stop = m.run({ maxSteps: 10 });
  assert.equal(stop.kind, "triple-fault");
  assert.equal(m.memory.read64(a), 5n);
});
