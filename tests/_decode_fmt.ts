/**
 * One-line canonical text of a decoded instruction, used by the plain-text vectors:
 * `OP len osN asN [cc=..] [lock|rep|repne] [seg=..] : operand, operand`.
 *
 * @module
 */

import { type Insn, Op, OpKind, Prefix, Reg } from "../lib/x86/insn.ts";

const OPS: Record<number, string> = {};
for (const [k, v] of Object.entries(Op)) OPS[v] = k;
const CC = ["o", "no", "b", "ae", "e", "ne", "be", "a", "s", "ns", "p", "np", "l", "ge", "le", "g"];
const SREG = ["es", "cs", "ss", "ds", "fs", "gs"];
const R64 = ["rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi"];
const R8 = ["al", "cl", "dl", "bl", "spl", "bpl", "sil", "dil"];
const HI8 = ["ah", "ch", "dh", "bh"];

/** Register name for number `r` at `size` bytes. */
export function regName(r: number, size: number): string {
  if (r === Reg.RIP) return "rip";
  if (r >= 16 && r <= 19) return HI8[r - 16]!;
  if (r < 8) {
    if (size === 8) return R64[r]!;
    if (size === 4) return "e" + R64[r]!.slice(1);
    if (size === 2) return R64[r]!.slice(1);
    return R8[r]!;
  }
  return `r${r}` + (size === 8 ? "" : size === 4 ? "d" : size === 2 ? "w" : "b");
}

function hex(v: bigint): string {
  return "0x" + v.toString(16);
}

function operand(i: Insn, kind: number, reg: number, size: number): string {
  if (kind === OpKind.REG) return regName(reg, size);
  if (kind === OpKind.SREG) return SREG[reg]!;
  if (kind === OpKind.IMM) {
    const v = ((BigInt(i.immHi) << 32n) | BigInt(i.imm >>> 0)) & ((1n << BigInt(size * 8)) - 1n);
    return `$${hex(v)}`;
  }
  if (kind === OpKind.MEM) {
    const parts: string[] = [];
    if (i.base >= 0) parts.push(regName(i.base, i.addrSize));
    if (i.index >= 0) parts.push(`${regName(i.index, i.addrSize)}*${1 << i.scale}`);
    const d = (BigInt(i.dispHi) << 32n) | BigInt(i.disp >>> 0);
    const sd = BigInt.asIntN(64, d);
    let s = parts.join("+");
    if (sd !== 0n || parts.length === 0) {
      s += sd < 0n ? `-${hex(-sd)}` : (s ? "+" : "") + hex(sd);
    }
    return `m${size}[${s}]`;
  }
  return "?";
}

/** Canonical text of `i`. */
export function describe(i: Insn): string {
  let s = `${OPS[i.op] ?? i.op} ${i.len}`;
  if (i.op < Op.ADD) return s;
  s += ` os${i.opSize} as${i.addrSize}`;
  if (i.op === Op.JCC || i.op === Op.SETCC || i.op === Op.CMOVCC) s += ` cc=${CC[i.cc]}`;
  if (i.prefixes & Prefix.LOCK) s += " lock";
  if (i.prefixes & Prefix.REP) s += " rep";
  if (i.prefixes & Prefix.REPNE) s += " repne";
  if (i.seg >= 0) s += ` seg=${SREG[i.seg]}`;
  const ops: string[] = [];
  if (i.nops > 0) ops.push(operand(i, i.kind0, i.reg0, i.size0));
  if (i.nops > 1) ops.push(operand(i, i.kind1, i.reg1, i.size1));
  if (i.nops > 2) ops.push(operand(i, i.kind2, i.reg2, i.size2));
  if (ops.length) s += " : " + ops.join(", ");
  return s;
}
