/**
 * How fast are the ALU entry points the executor calls per instruction?
 * Each iteration runs 1024 operations over pre-built random operands.
 */
import { aluBinary, aluDiv, aluMul, aluOut, aluShift, condition } from "../lib/x86/alu.ts";
import { Op } from "../lib/x86/insn.ts";

const N = 1024;
const A = new Int32Array(N);
const B = new Int32Array(N);
let seed = 0x1234567;
for (let i = 0; i < N; i++) {
  seed = (Math.imul(seed, 1103515245) + 12345) | 0;
  A[i] = seed;
  seed = (Math.imul(seed, 1103515245) + 12345) | 0;
  B[i] = seed;
}
let sink = 0;

Deno.bench({
  name: "plain 32-bit add without flags (reference)",
  group: "add",
  baseline: true,
  fn() {
    for (let i = 0; i < N; i++) sink = (A[i]! + B[i]! + sink) | 0;
  },
});

Deno.bench({
  name: "aluBinary ADD 32-bit",
  group: "add",
  fn() {
    for (let i = 0; i < N; i++) aluBinary(Op.ADD, 4, A[i]!, 0, B[i]!, 0, 0x202);
    sink ^= aluOut[2]!;
  },
});

Deno.bench({
  name: "aluBinary SUB 64-bit",
  group: "add",
  fn() {
    for (let i = 0; i < N; i++) aluBinary(Op.SUB, 8, A[i]!, B[i]!, B[i]!, A[i]!, 0x202);
    sink ^= aluOut[2]!;
  },
});

Deno.bench({
  name: "aluBinary AND 8-bit",
  group: "add",
  fn() {
    for (let i = 0; i < N; i++) aluBinary(Op.AND, 1, A[i]!, 0, B[i]!, 0, 0x202);
    sink ^= aluOut[2]!;
  },
});

Deno.bench({
  name: "aluShift SHL 64-bit by 1..63",
  group: "add",
  fn() {
    for (let i = 0; i < N; i++) aluShift(Op.SHL, 8, A[i]!, B[i]!, i, 0x202);
    sink ^= aluOut[2]!;
  },
});

Deno.bench({
  name: "aluMul MUL 64x64->128",
  group: "add",
  fn() {
    for (let i = 0; i < N; i++) aluMul(Op.MUL, 8, A[i]!, B[i]!, B[i]!, A[i]!, 0x202);
    sink ^= aluOut[3]!;
  },
});

Deno.bench({
  name: "aluDiv DIV 128/64 (BigInt, cold path)",
  group: "add",
  fn() {
    for (let i = 0; i < N; i++) aluDiv(Op.DIV, 8, 0, 0, A[i]!, B[i]!, B[i]! | 1, 1, 0x202);
    sink ^= aluOut[0]!;
  },
});

Deno.bench({
  name: "condition() all 16",
  group: "add",
  fn() {
    for (let i = 0; i < N; i++) sink += condition(i & 15, A[i]!) ? 1 : 0;
  },
});
