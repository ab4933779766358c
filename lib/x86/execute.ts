/**
 * Instruction semantics: one handler per operation (and specialized handlers for the hot
 * forms), bound once to each predecoded instruction so the CPU's loop is
 * `fetch slot → execute(cpu, slot)` (which calls `slot.fn(cpu, slot)`, directly for the
 * hot handlers).
 *
 * Handlers work on a {@link CpuCore} (registers, memory through the CPU's translation,
 * system hooks). They raise emulated exceptions by throwing {@link X86Fault} and set
 * `cpu.ip` only after their last access that can fault, so a fault leaves the
 * instruction restartable (Intel SDM Vol. 3, 6.5 "faults").
 *
 * Flags come from `alu.ts` (no flag logic here).
 *
 * Documented choices:
 * - `rep` string instructions run one iteration per call (one step each, interruptible
 *   between iterations, as on a CPU); the ip stays on the instruction until the count
 *   runs out.
 * - `mfence`/`lfence`/`sfence` are no-ops: data accesses are sequentially consistent in
 *   this machine, and none of them serializes instruction fetch (only `cpuid` and `iret`
 *   call {@link CpuCore.serialize}).
 * - `cpuid` returns the fixed leaves of {@link cpuidLeaf}, vendor `"TextpokeEmu "`.
 * - Locked instructions (LOCK prefix, or `xchg` with memory) are atomic trivially (one
 *   host thread) and are marked with {@link Slot.atomic} for the SMP model.
 * - Loading a data segment register stores the selector only (flat segments; FS/GS bases
 *   are separate fields).
 *
 * @module
 */

import { aluBinary, aluBit, aluBswap, aluDiv, aluMul, aluOut, aluShift, aluUnary } from "./alu.ts";
import { AC, ARITH, CF, DF, ID, IF, IOPL_MASK, NT, RF, VM, ZF } from "./flags.ts";
import { Insn, Op, OpKind, Prefix, Reg } from "./insn.ts";
import {
  CANON_HIGH as CANON_HIGH_EXPORT,
  CANON_LOW as CANON_LOW_EXPORT,
  type CpuCore,
  gpFault,
  udFault,
  Vector,
  X86Fault,
} from "./state.ts";

/**
 * The CPU as bound handlers see it: a {@link CpuCore} that also evaluates condition codes
 * itself, so a Jcc after a lazily-flagged ALU op need not materialize RFLAGS.
 */
export interface ExecCore extends CpuCore {
  /**
   * Evaluates a condition code on the current flags (as `condition(cc, flags)` would).
   * @param cc Condition code 0–15.
   * @returns Whether it holds.
   */
  cond(cc: number): boolean;
}

/** A bound instruction handler. */
export type Handler = (c: ExecCore, s: Slot) => void;

/**
 * A predecoded instruction: the decoded {@link Insn} plus its bound handler. The CPU's
 * predecoded cache holds one per instruction start (keyed by physical frame + offset).
 */
export class Slot extends Insn {
  /** The handler bound by {@link bindHandler}. */
  fn: Handler = hUndefined;
  /** True for locked read-modify-write instructions (LOCK prefix or xchg with memory). */
  atomic = false;
  /** Machine payload (natives bind theirs here); null for ordinary instructions. */
  data: unknown = null;
  /** The memory operand is base + disp in 64-bit addressing with no index or FS/GS. */
  simpleEa = false;
  /**
   * Index of {@link Slot.fn} among the hot handlers {@link execute} calls directly (0: not
   * one of them, `execute` calls `fn`). Set by {@link bindHandler} together with `fn`.
   */
  hot = 0;
  /**
   * Machine payload of the CPU's block cache (the straight-line run starting here); null
   * until the CPU builds one. The executor never reads it.
   */
  block: unknown = null;
}

const REG = OpKind.REG;
const MEM = OpKind.MEM;
const IMM = OpKind.IMM;
const SREG = OpKind.SREG;
const TWO32 = 4294967296;
// Module-local copies: an imported binding is re-loaded (with a TDZ check) at every use.
const CANON_LOW = CANON_LOW_EXPORT;
const CANON_HIGH = CANON_HIGH_EXPORT;

/** High half of the last 64-bit operand read (module scratch, no allocation). */
let H = 0;

function ssFault(why: string): X86Fault {
  return new X86Fault(Vector.SS, 0, 0, why);
}

function nonCanonical(s: Slot): X86Fault {
  if (s.seg === 2 || (s.seg < 0 && (s.base === Reg.RSP || s.base === Reg.RBP))) {
    return ssFault("non-canonical stack address");
  }
  return gpFault(0, "non-canonical address");
}

// ---------------------------------------------------------------------------------------
// Effective addresses

/** Effective address parts (no segment base) in 64-bit addressing: returns lo, H = hi. */
function eaParts64(c: CpuCore, s: Slot): number {
  let sumLo = s.disp >>> 0;
  let sumHi = s.dispHi;
  const b = s.base;
  if (b === Reg.RIP) {
    const n = c.ip + s.len;
    const h = Math.floor(n / TWO32);
    sumHi += h;
    sumLo += n - h * TWO32;
  } else if (b >= 0) {
    sumLo += c.lo[b]! >>> 0;
    sumHi += c.hi[b]!;
  }
  const i = s.index;
  if (i >= 0) {
    const m = 1 << s.scale;
    sumLo += (c.lo[i]! >>> 0) * m;
    sumHi += c.hi[i]! * m;
  }
  const carry = Math.floor(sumLo / TWO32);
  H = (sumHi + carry) | 0;
  return (sumLo - carry * TWO32) | 0;
}

/** Effective address (no segment base) in 32- or 16-bit addressing, unsigned. */
function eaRaw32(c: CpuCore, s: Slot): number {
  let sum = s.disp;
  const b = s.base;
  if (b === Reg.RIP) sum += c.ip + s.len;
  else if (b >= 0) sum += c.lo[b]!;
  if (s.index >= 0) sum += c.lo[s.index]! << s.scale;
  return s.addrSize === 2 ? sum & 0xffff : sum >>> 0;
}

/** The linear address of the memory operand (segment base added, canonical checked). */
function ea(c: CpuCore, s: Slot): number {
  const b = s.base;
  if (s.simpleEa) {
    // base + disp32, 64-bit addressing, no index, no FS/GS: the common case, kept small.
    // A base whose high half is 0 (or -1) plus a disp32 is always canonical.
    const hi = c.hi[b]!;
    if (hi === 0) return (c.lo[b]! >>> 0) + s.disp;
    const a = hi * TWO32 + (c.lo[b]! >>> 0) + s.disp;
    if (a < CANON_LOW || a >= CANON_HIGH) throw nonCanonical(s);
    return a;
  }
  return eaGeneral(c, s);
}

function eaGeneral(c: CpuCore, s: Slot): number {
  let a: number;
  if (s.addrSize === 8) {
    const b = s.base;
    if (s.index < 0 && b >= 0 && b !== Reg.RIP) {
      a = c.hi[b]! * TWO32 + (c.lo[b]! >>> 0) + s.disp;
    } else if (b === Reg.RIP) {
      a = c.ip + s.len + s.disp;
    } else {
      const lo = eaParts64(c, s);
      a = H * TWO32 + (lo >>> 0);
      if ((H << 16) >> 16 !== H) throw nonCanonical(s);
    }
    if (s.seg >= 4) a += s.seg === 4 ? c.fsBase : c.gsBase;
    if (a < CANON_LOW || a >= CANON_HIGH) throw nonCanonical(s);
    return a;
  }
  a = eaRaw32(c, s);
  if (s.seg >= 4) a += s.seg === 4 ? c.fsBase : c.gsBase;
  if (c.bitness === 64) {
    if (a < CANON_LOW || a >= CANON_HIGH) throw nonCanonical(s);
    return a;
  }
  return a >>> 0;
}

// ---------------------------------------------------------------------------------------
// Operands

function rdReg(c: CpuCore, r: number, size: number): number {
  if (size === 4) return c.lo[r]!;
  if (size === 8) {
    H = c.hi[r]!;
    return c.lo[r]!;
  }
  if (size === 2) return c.lo[r]! & 0xffff;
  return r >= 16 ? (c.lo[r - 16]! >> 8) & 0xff : c.lo[r]! & 0xff;
}

function wrReg(c: CpuCore, r: number, size: number, v: number, vh: number): void {
  if (size === 4) {
    c.lo[r] = v;
    c.hi[r] = 0;
  } else if (size === 8) {
    c.lo[r] = v;
    c.hi[r] = vh;
  } else if (size === 2) {
    c.lo[r] = (c.lo[r]! & ~0xffff) | (v & 0xffff);
  } else if (r >= 16) {
    c.lo[r - 16] = (c.lo[r - 16]! & ~0xff00) | ((v & 0xff) << 8);
  } else {
    c.lo[r] = (c.lo[r]! & ~0xff) | (v & 0xff);
  }
}

function rdMem(c: CpuCore, a: number, size: number): number {
  if (size === 4) return c.read32(a);
  if (size === 8) {
    const v = c.read64(a);
    H = c.hi64;
    return v;
  }
  if (size === 2) return c.read16(a);
  return c.read8(a);
}

function wrMem(c: CpuCore, a: number, size: number, v: number, vh: number): void {
  if (size === 4) c.write32(a, v);
  else if (size === 8) c.write64(a, v, vh);
  else if (size === 2) c.write16(a, v);
  else c.write8(a, v);
}

/** Reads operand 1 (REG, IMM, MEM or SREG) at `size` bytes; sets H for 64-bit values. */
function rdOp1(c: CpuCore, s: Slot, size: number): number {
  const k = s.kind1;
  if (k === REG) return rdReg(c, s.reg1, size);
  if (k === IMM) {
    H = s.immHi;
    return s.imm;
  }
  if (k === MEM) return rdMem(c, ea(c, s), size);
  if (k === SREG) {
    H = 0;
    return c.sreg[s.reg1]!;
  }
  H = 0;
  return 0;
}

/** The ip after this instruction. */
function nip(c: CpuCore, s: Slot): number {
  const n = c.ip + s.len;
  return c.bitness === 64 ? n : n >>> 0;
}

/** Validates a branch target: #GP(0) when non-canonical (64), truncation (32/16). */
function target(c: CpuCore, s: Slot, t: number): number {
  if (c.bitness === 64) {
    if (t < CANON_LOW || t >= CANON_HIGH) throw gpFault(0, "non-canonical branch target");
    return t;
  }
  return s.opSize === 2 ? t & 0xffff : t >>> 0;
}

// ---------------------------------------------------------------------------------------
// Stack

/** Stack operand size: 8 in 64-bit mode (2 with 66), else the operand size. */
function stk(c: CpuCore, s: Slot): number {
  return c.bitness === 64 ? (s.opSize === 2 ? 2 : 8) : s.opSize;
}

/** Current stack pointer as an address (64: signed, canonical-checked by the caller). */
function sp(c: CpuCore): number {
  return c.bitness === 64 ? c.hi[4]! * TWO32 + (c.lo[4]! >>> 0) : c.lo[4]! >>> 0;
}

function stackAddr(c: CpuCore, a: number): number {
  if (c.bitness === 64) {
    if (a < CANON_LOW || a >= CANON_HIGH) throw ssFault("non-canonical stack address");
    return a;
  }
  return a >>> 0;
}

function setSp(c: CpuCore, a: number): void {
  if (c.bitness === 64) {
    c.hi[4] = Math.floor(a / TWO32);
    c.lo[4] = a | 0;
  } else {
    c.lo[4] = a | 0;
  }
}

function push(c: CpuCore, size: number, v: number, vh: number): void {
  const a = stackAddr(c, sp(c) - size);
  wrMem(c, a, size, v, vh);
  setSp(c, a);
}

/** Reads the stack at rsp + off; H set for size 8. */
function peek(c: CpuCore, off: number, size: number): number {
  return rdMem(c, stackAddr(c, sp(c) + off), size);
}

/** A value of size `size` read as an address-like number (8: signed). */
function asAddr(lo: number, hi: number, size: number): number {
  if (size === 8) return hi * TWO32 + (lo >>> 0);
  if (size === 4) return lo >>> 0;
  return lo & 0xffff;
}

// ---------------------------------------------------------------------------------------
// Handlers: faults

function hUndefined(): void {
  throw udFault("invalid or unsupported instruction");
}

function hTooLong(): void {
  throw gpFault(0, "instruction longer than 15 bytes");
}

// ---------------------------------------------------------------------------------------
// Handlers: data movement

function hMov(c: CpuCore, s: Slot): void {
  const v = rdOp1(c, s, s.size1);
  const vh = H;
  if (s.kind0 === REG) wrReg(c, s.reg0, s.size0, v, vh);
  else if (s.kind0 === MEM) wrMem(c, ea(c, s), s.size0, v, vh);
  else {
    if (s.reg0 === 1) throw udFault("mov to cs");
    c.loadSreg(s.reg0, v & 0xffff);
  }
  c.ip = nip(c, s);
}

function hMovRR32(c: CpuCore, s: Slot): void {
  c.lo[s.reg0] = c.lo[s.reg1]!;
  c.hi[s.reg0] = 0;
  c.ip = nip(c, s);
}

function hMovRR64(c: CpuCore, s: Slot): void {
  c.lo[s.reg0] = c.lo[s.reg1]!;
  c.hi[s.reg0] = c.hi[s.reg1]!;
  c.ip += s.len;
}

function hMovRM32(c: CpuCore, s: Slot): void {
  const v = c.read32(ea(c, s));
  c.lo[s.reg0] = v;
  c.hi[s.reg0] = 0;
  c.ip = nip(c, s);
}

function hMovRM64(c: CpuCore, s: Slot): void {
  const v = c.read64(ea(c, s));
  c.lo[s.reg0] = v;
  c.hi[s.reg0] = c.hi64;
  c.ip += s.len;
}

function hMovMR32(c: CpuCore, s: Slot): void {
  c.write32(ea(c, s), c.lo[s.reg1]!);
  c.ip = nip(c, s);
}

function hMovMR64(c: CpuCore, s: Slot): void {
  c.write64(ea(c, s), c.lo[s.reg1]!, c.hi[s.reg1]!);
  c.ip += s.len;
}

function hMovRI(c: CpuCore, s: Slot): void {
  c.lo[s.reg0] = s.imm;
  c.hi[s.reg0] = s.opSize === 8 ? s.immHi : 0;
  c.ip = nip(c, s);
}

function hMovzx(c: CpuCore, s: Slot): void {
  const v = rdOp1(c, s, s.size1);
  const z = s.size1 === 1 ? v & 0xff : v & 0xffff;
  wrReg(c, s.reg0, s.size0, z, 0);
  c.ip = nip(c, s);
}

function hMovsx(c: CpuCore, s: Slot): void {
  const v = rdOp1(c, s, s.size1);
  const x = s.size1 === 1 ? (v << 24) >> 24 : s.size1 === 2 ? (v << 16) >> 16 : v | 0;
  wrReg(c, s.reg0, s.size0, x, x >> 31);
  c.ip = nip(c, s);
}

function hLea(c: CpuCore, s: Slot): void {
  let lo: number;
  let hi = 0;
  if (s.addrSize === 8) {
    lo = eaParts64(c, s);
    hi = H;
  } else lo = eaRaw32(c, s) | 0;
  wrReg(c, s.reg0, s.opSize, lo, hi);
  c.ip = nip(c, s);
}

function hXchg(c: CpuCore, s: Slot): void {
  const size = s.opSize;
  if (s.kind0 === REG && s.kind1 === REG) {
    const a = rdReg(c, s.reg0, size);
    const ah = H;
    const b = rdReg(c, s.reg1, size);
    const bh = H;
    wrReg(c, s.reg0, size, b, bh);
    wrReg(c, s.reg1, size, a, ah);
  } else {
    const memFirst = s.kind0 === MEM;
    const r = memFirst ? s.reg1 : s.reg0;
    const addr = ea(c, s);
    const m = rdMem(c, addr, size);
    const mh = H;
    const v = rdReg(c, r, size);
    wrMem(c, addr, size, v, H);
    wrReg(c, r, size, m, mh);
  }
  c.ip = nip(c, s);
}

function hCmpxchg(c: CpuCore, s: Slot): void {
  const size = s.opSize;
  const acc = rdReg(c, Reg.RAX, size);
  const acch = H;
  let addr = 0;
  let d: number;
  if (s.kind0 === MEM) {
    addr = ea(c, s);
    d = rdMem(c, addr, size);
  } else d = rdReg(c, s.reg0, size);
  const dh = H;
  const src = rdReg(c, s.reg1, size);
  const srch = H;
  aluBinary(Op.CMP, size, acc, acch, d, dh, c.flags);
  const flags = aluOut[2]!;
  if (flags & ZF) {
    if (s.kind0 === MEM) wrMem(c, addr, size, src, srch);
    else wrReg(c, s.reg0, size, src, srch);
  } else {
    // The locked cycle always writes the destination (with its own value on failure).
    if (s.kind0 === MEM) wrMem(c, addr, size, d, dh);
    wrReg(c, Reg.RAX, size, d, dh);
  }
  c.flags = flags;
  c.ip = nip(c, s);
}

function hXadd(c: CpuCore, s: Slot): void {
  const size = s.opSize;
  let addr = 0;
  let d: number;
  if (s.kind0 === MEM) {
    addr = ea(c, s);
    d = rdMem(c, addr, size);
  } else d = rdReg(c, s.reg0, size);
  const dh = H;
  const src = rdReg(c, s.reg1, size);
  aluBinary(Op.ADD, size, d, dh, src, H, c.flags);
  const lo = aluOut[0]!;
  const hi = aluOut[1]!;
  const flags = aluOut[2]!;
  if (s.kind0 === MEM) {
    wrMem(c, addr, size, lo, hi);
    wrReg(c, s.reg1, size, d, dh);
  } else {
    wrReg(c, s.reg1, size, d, dh);
    wrReg(c, s.reg0, size, lo, hi);
  }
  c.flags = flags;
  c.ip = nip(c, s);
}

function hBswap(c: CpuCore, s: Slot): void {
  const r = s.reg0;
  if (s.opSize === 2) {
    // 16-bit BSWAP is undefined; Intel cores clear the low word.
    c.lo[r] = c.lo[r]! & ~0xffff;
  } else {
    aluBswap(s.opSize, c.lo[r]!, c.hi[r]!);
    wrReg(c, r, s.opSize, aluOut[0]!, aluOut[1]!);
  }
  c.ip = nip(c, s);
}

function hCbw(c: CpuCore, s: Slot): void {
  const a = c.lo[0]!;
  if (s.opSize === 2) wrReg(c, 0, 2, (a << 24) >> 24, 0);
  else if (s.opSize === 4) wrReg(c, 0, 4, (a << 16) >> 16, 0);
  else wrReg(c, 0, 8, a, a >> 31);
  c.ip = nip(c, s);
}

function hCwd(c: CpuCore, s: Slot): void {
  const size = s.opSize;
  const sign = size === 2 ? ((c.lo[0]! << 16) >> 31) : size === 4 ? c.lo[0]! >> 31 : c.hi[0]! >> 31;
  wrReg(c, Reg.RDX, size, sign, sign);
  c.ip = nip(c, s);
}

function hSetcc(c: ExecCore, s: Slot): void {
  const v = c.cond(s.cc) ? 1 : 0;
  if (s.kind0 === REG) wrReg(c, s.reg0, 1, v, 0);
  else c.write8(ea(c, s), v);
  c.ip = nip(c, s);
}

function hCmovcc(c: ExecCore, s: Slot): void {
  const size = s.opSize;
  const v = rdOp1(c, s, size); // the source is read (and may fault) either way
  const vh = H;
  if (c.cond(s.cc)) wrReg(c, s.reg0, size, v, vh);
  else if (size === 4) c.hi[s.reg0] = 0; // 32-bit cmov zero-extends even when false
  c.ip = nip(c, s);
}

// ---------------------------------------------------------------------------------------
// Handlers: ALU

function hAlu(c: CpuCore, s: Slot): void {
  const size = s.opSize;
  const op = s.op;
  let a: number;
  let addr = 0;
  if (s.kind0 === REG) a = rdReg(c, s.reg0, size);
  else {
    addr = ea(c, s);
    a = rdMem(c, addr, size);
  }
  const ah = H;
  const b = rdOp1(c, s, size);
  aluBinary(op, size, a, ah, b, H, c.flags);
  if (op !== Op.CMP && op !== Op.TEST) {
    const lo = aluOut[0]!;
    const hi = aluOut[1]!;
    const f = aluOut[2]!;
    if (s.kind0 === REG) wrReg(c, s.reg0, size, lo, hi);
    else wrMem(c, addr, size, lo, hi);
    c.flags = f;
  } else c.flags = aluOut[2]!;
  c.ip = nip(c, s);
}

/** ALU reg, reg at 4 or 8 bytes (hi of a 4-byte result is 0 per the ALU contract). */
function hAluRR(c: CpuCore, s: Slot): void {
  const r0 = s.reg0;
  const r1 = s.reg1;
  aluBinary(s.op, s.opSize, c.lo[r0]!, c.hi[r0]!, c.lo[r1]!, c.hi[r1]!, c.flags);
  c.lo[r0] = aluOut[0]!;
  c.hi[r0] = aluOut[1]!;
  c.flags = aluOut[2]!;
  c.ip = nip(c, s);
}

function hAluRI(c: CpuCore, s: Slot): void {
  const r0 = s.reg0;
  aluBinary(s.op, s.opSize, c.lo[r0]!, c.hi[r0]!, s.imm, s.immHi, c.flags);
  c.lo[r0] = aluOut[0]!;
  c.hi[r0] = aluOut[1]!;
  c.flags = aluOut[2]!;
  c.ip = nip(c, s);
}

/**
 * Result of ADD, SUB, AND, OR or XOR at 4 or 8 bytes (returns lo, H = hi; 0 for size 4).
 * Only the value: the flags of these lazily-flagged forms come from `aluBinary` when read.
 */
function lazyResult(op: number, size: number, a: number, ah: number, b: number, bh: number) {
  let lo: number;
  let hi = 0;
  switch (op) {
    case Op.ADD:
      lo = (a + b) | 0;
      if (size === 8) hi = (ah + bh + ((a >>> 0) + (b >>> 0) > 0xffffffff ? 1 : 0)) | 0;
      break;
    case Op.SUB:
      lo = (a - b) | 0;
      if (size === 8) hi = (ah - bh - ((a >>> 0) < (b >>> 0) ? 1 : 0)) | 0;
      break;
    case Op.AND:
      lo = a & b;
      if (size === 8) hi = ah & bh;
      break;
    case Op.OR:
      lo = a | b;
      if (size === 8) hi = ah | bh;
      break;
    default: // XOR
      lo = a ^ b;
      if (size === 8) hi = ah ^ bh;
  }
  H = hi;
  return lo;
}

/** ADD/SUB/AND/OR/XOR/CMP/TEST reg, mem at 4 or 8 bytes, flags lazy. */
function hLazyRM(c: CpuCore, s: Slot): void {
  const r0 = s.reg0;
  const op = s.op;
  const size = s.opSize;
  const b = rdMem(c, ea(c, s), size);
  const bh = size === 8 ? H : 0;
  const a = c.lo[r0]!;
  const ah = c.hi[r0]!;
  if (op !== Op.CMP && op !== Op.TEST) {
    c.lo[r0] = lazyResult(op, size, a, ah, b, bh);
    c.hi[r0] = H;
  }
  c.lazyFlags(op, size, a, ah, b, bh);
  c.ip = nip(c, s);
}

// Per-operation lazy forms (one handler per op, so no branch on the op at run time).
// A 4-byte destination gets hi = 0.

function hAddRR(c: CpuCore, s: Slot): void {
  const r0 = s.reg0;
  const r1 = s.reg1;
  const a = c.lo[r0]!;
  const b = c.lo[r1]!;
  if (s.opSize === 8) {
    const ah = c.hi[r0]!;
    const bh = c.hi[r1]!;
    c.lo[r0] = (a + b) | 0;
    c.hi[r0] = (ah + bh + ((a >>> 0) + (b >>> 0) > 0xffffffff ? 1 : 0)) | 0;
    c.lazyFlags(Op.ADD, 8, a, ah, b, bh);
  } else {
    c.lo[r0] = (a + b) | 0;
    c.hi[r0] = 0;
    c.lazyFlags(Op.ADD, 4, a, 0, b, 0);
  }
  c.ip = nip(c, s);
}

function hAddRI(c: CpuCore, s: Slot): void {
  const r0 = s.reg0;
  const a = c.lo[r0]!;
  const b = s.imm;
  if (s.opSize === 8) {
    const ah = c.hi[r0]!;
    const bh = s.immHi;
    c.lo[r0] = (a + b) | 0;
    c.hi[r0] = (ah + bh + ((a >>> 0) + (b >>> 0) > 0xffffffff ? 1 : 0)) | 0;
    c.lazyFlags(Op.ADD, 8, a, ah, b, bh);
  } else {
    c.lo[r0] = (a + b) | 0;
    c.hi[r0] = 0;
    c.lazyFlags(Op.ADD, 4, a, 0, b, 0);
  }
  c.ip = nip(c, s);
}

function hSubRR(c: CpuCore, s: Slot): void {
  const r0 = s.reg0;
  const r1 = s.reg1;
  const a = c.lo[r0]!;
  const b = c.lo[r1]!;
  if (s.opSize === 8) {
    const ah = c.hi[r0]!;
    const bh = c.hi[r1]!;
    c.lo[r0] = (a - b) | 0;
    c.hi[r0] = (ah - bh - ((a >>> 0) < (b >>> 0) ? 1 : 0)) | 0;
    c.lazyFlags(Op.SUB, 8, a, ah, b, bh);
  } else {
    c.lo[r0] = (a - b) | 0;
    c.hi[r0] = 0;
    c.lazyFlags(Op.SUB, 4, a, 0, b, 0);
  }
  c.ip = nip(c, s);
}

function hSubRI(c: CpuCore, s: Slot): void {
  const r0 = s.reg0;
  const a = c.lo[r0]!;
  const b = s.imm;
  if (s.opSize === 8) {
    const ah = c.hi[r0]!;
    const bh = s.immHi;
    c.lo[r0] = (a - b) | 0;
    c.hi[r0] = (ah - bh - ((a >>> 0) < (b >>> 0) ? 1 : 0)) | 0;
    c.lazyFlags(Op.SUB, 8, a, ah, b, bh);
  } else {
    c.lo[r0] = (a - b) | 0;
    c.hi[r0] = 0;
    c.lazyFlags(Op.SUB, 4, a, 0, b, 0);
  }
  c.ip = nip(c, s);
}

function hXorRR(c: CpuCore, s: Slot): void {
  const r0 = s.reg0;
  const r1 = s.reg1;
  const a = c.lo[r0]!;
  const b = c.lo[r1]!;
  if (s.opSize === 8) {
    const ah = c.hi[r0]!;
    const bh = c.hi[r1]!;
    c.lo[r0] = a ^ b;
    c.hi[r0] = ah ^ bh;
    c.lazyFlags(Op.XOR, 8, a, ah, b, bh);
  } else {
    c.lo[r0] = a ^ b;
    c.hi[r0] = 0;
    c.lazyFlags(Op.XOR, 4, a, 0, b, 0);
  }
  c.ip = nip(c, s);
}

function hXorRI(c: CpuCore, s: Slot): void {
  const r0 = s.reg0;
  const a = c.lo[r0]!;
  const b = s.imm;
  if (s.opSize === 8) {
    const ah = c.hi[r0]!;
    const bh = s.immHi;
    c.lo[r0] = a ^ b;
    c.hi[r0] = ah ^ bh;
    c.lazyFlags(Op.XOR, 8, a, ah, b, bh);
  } else {
    c.lo[r0] = a ^ b;
    c.hi[r0] = 0;
    c.lazyFlags(Op.XOR, 4, a, 0, b, 0);
  }
  c.ip = nip(c, s);
}

function hAndRR(c: CpuCore, s: Slot): void {
  const r0 = s.reg0;
  const r1 = s.reg1;
  const a = c.lo[r0]!;
  const b = c.lo[r1]!;
  if (s.opSize === 8) {
    const ah = c.hi[r0]!;
    const bh = c.hi[r1]!;
    c.lo[r0] = a & b;
    c.hi[r0] = ah & bh;
    c.lazyFlags(Op.AND, 8, a, ah, b, bh);
  } else {
    c.lo[r0] = a & b;
    c.hi[r0] = 0;
    c.lazyFlags(Op.AND, 4, a, 0, b, 0);
  }
  c.ip = nip(c, s);
}

function hAndRI(c: CpuCore, s: Slot): void {
  const r0 = s.reg0;
  const a = c.lo[r0]!;
  const b = s.imm;
  if (s.opSize === 8) {
    const ah = c.hi[r0]!;
    const bh = s.immHi;
    c.lo[r0] = a & b;
    c.hi[r0] = ah & bh;
    c.lazyFlags(Op.AND, 8, a, ah, b, bh);
  } else {
    c.lo[r0] = a & b;
    c.hi[r0] = 0;
    c.lazyFlags(Op.AND, 4, a, 0, b, 0);
  }
  c.ip = nip(c, s);
}

function hOrRR(c: CpuCore, s: Slot): void {
  const r0 = s.reg0;
  const r1 = s.reg1;
  const a = c.lo[r0]!;
  const b = c.lo[r1]!;
  if (s.opSize === 8) {
    const ah = c.hi[r0]!;
    const bh = c.hi[r1]!;
    c.lo[r0] = a | b;
    c.hi[r0] = ah | bh;
    c.lazyFlags(Op.OR, 8, a, ah, b, bh);
  } else {
    c.lo[r0] = a | b;
    c.hi[r0] = 0;
    c.lazyFlags(Op.OR, 4, a, 0, b, 0);
  }
  c.ip = nip(c, s);
}

function hOrRI(c: CpuCore, s: Slot): void {
  const r0 = s.reg0;
  const a = c.lo[r0]!;
  const b = s.imm;
  if (s.opSize === 8) {
    const ah = c.hi[r0]!;
    const bh = s.immHi;
    c.lo[r0] = a | b;
    c.hi[r0] = ah | bh;
    c.lazyFlags(Op.OR, 8, a, ah, b, bh);
  } else {
    c.lo[r0] = a | b;
    c.hi[r0] = 0;
    c.lazyFlags(Op.OR, 4, a, 0, b, 0);
  }
  c.ip = nip(c, s);
}

/** CMP/TEST reg, reg (lazy): flags only. */
function hCmpTestRR(c: CpuCore, s: Slot): void {
  const r0 = s.reg0;
  const r1 = s.reg1;
  if (s.opSize === 8) c.lazyFlags(s.op, 8, c.lo[r0]!, c.hi[r0]!, c.lo[r1]!, c.hi[r1]!);
  else c.lazyFlags(s.op, 4, c.lo[r0]!, 0, c.lo[r1]!, 0);
  c.ip = nip(c, s);
}

/** CMP/TEST reg, imm (lazy): flags only. */
function hCmpTestRI(c: CpuCore, s: Slot): void {
  const r0 = s.reg0;
  if (s.opSize === 8) c.lazyFlags(s.op, 8, c.lo[r0]!, c.hi[r0]!, s.imm, s.immHi);
  else c.lazyFlags(s.op, 4, c.lo[r0]!, 0, s.imm, 0);
  c.ip = nip(c, s);
}

function hAluRM(c: CpuCore, s: Slot): void {
  const r0 = s.reg0;
  const size = s.opSize;
  const b = rdMem(c, ea(c, s), size);
  aluBinary(s.op, size, c.lo[r0]!, c.hi[r0]!, b, H, c.flags);
  if (s.op !== Op.CMP && s.op !== Op.TEST) {
    c.lo[r0] = aluOut[0]!;
    c.hi[r0] = aluOut[1]!;
  }
  c.flags = aluOut[2]!;
  c.ip = nip(c, s);
}

function hUnary(c: CpuCore, s: Slot): void {
  const size = s.opSize;
  let a: number;
  let addr = 0;
  if (s.kind0 === REG) a = rdReg(c, s.reg0, size);
  else {
    addr = ea(c, s);
    a = rdMem(c, addr, size);
  }
  aluUnary(s.op, size, a, H, c.flags);
  const lo = aluOut[0]!;
  const hi = aluOut[1]!;
  const f = aluOut[2]!;
  if (s.kind0 === REG) wrReg(c, s.reg0, size, lo, hi);
  else wrMem(c, addr, size, lo, hi);
  c.flags = f;
  c.ip = nip(c, s);
}

function hShift(c: CpuCore, s: Slot): void {
  const size = s.opSize;
  let a: number;
  let addr = 0;
  if (s.kind0 === REG) a = rdReg(c, s.reg0, size);
  else {
    addr = ea(c, s);
    a = rdMem(c, addr, size);
  }
  const ah = H;
  const count = rdOp1(c, s, 1) & 0xff;
  if ((count & (size === 8 ? 0x3f : 0x1f)) !== 0) {
    aluShift(s.op, size, a, ah, count, c.flags);
    const lo = aluOut[0]!;
    const hi = aluOut[1]!;
    const f = aluOut[2]!;
    if (s.kind0 === REG) wrReg(c, s.reg0, size, lo, hi);
    else wrMem(c, addr, size, lo, hi);
    c.flags = f;
  } else if (s.kind0 === REG && size === 4) {
    c.hi[s.reg0] = 0; // a 32-bit register destination is written (zero-extended) anyway
  }
  c.ip = nip(c, s);
}

/** Reads operand 0 (REG or MEM) at `size`. */
function rdOp0(c: CpuCore, s: Slot, size: number): number {
  if (s.kind0 === REG) return rdReg(c, s.reg0, size);
  return rdMem(c, ea(c, s), size);
}

function hMulWide(c: CpuCore, s: Slot): void {
  const size = s.opSize;
  const b = rdOp0(c, s, size);
  const bh = H;
  const a = rdReg(c, Reg.RAX, size);
  aluMul(s.op, size, a, H, b, bh, c.flags);
  if (size === 1) {
    wrReg(c, Reg.RAX, 2, (aluOut[0]! & 0xff) | ((aluOut[3]! & 0xff) << 8), 0);
  } else {
    wrReg(c, Reg.RAX, size, aluOut[0]!, aluOut[1]!);
    wrReg(c, Reg.RDX, size, aluOut[3]!, aluOut[4]!);
  }
  c.flags = aluOut[2]!;
  c.ip = nip(c, s);
}

function hImul2(c: CpuCore, s: Slot): void {
  const size = s.opSize;
  let a: number;
  let ah: number;
  let b: number;
  let bh: number;
  if (s.op === Op.IMUL3) {
    a = rdOp1(c, s, size);
    ah = H;
    b = s.imm;
    bh = s.immHi;
  } else {
    a = rdReg(c, s.reg0, size);
    ah = H;
    b = rdOp1(c, s, size);
    bh = H;
  }
  aluMul(s.op, size, a, ah, b, bh, c.flags);
  wrReg(c, s.reg0, size, aluOut[0]!, aluOut[1]!);
  c.flags = aluOut[2]!;
  c.ip = nip(c, s);
}

function hDiv(c: CpuCore, s: Slot): void {
  const size = s.opSize;
  const d = rdOp0(c, s, size);
  const dh = H;
  if (size === 1) {
    const ax = c.lo[0]!;
    aluDiv(s.op, 1, (ax >> 8) & 0xff, 0, ax & 0xff, 0, d, dh, c.flags);
  } else {
    const hiLo = rdReg(c, Reg.RDX, size);
    const hiHi = H;
    const loLo = rdReg(c, Reg.RAX, size);
    aluDiv(s.op, size, hiLo, hiHi, loLo, H, d, dh, c.flags);
  }
  if (aluOut[5] !== 0) throw new X86Fault(Vector.DE, -1, 0, "divide error");
  if (size === 1) {
    wrReg(c, Reg.RAX, 2, (aluOut[0]! & 0xff) | ((aluOut[3]! & 0xff) << 8), 0);
  } else {
    wrReg(c, Reg.RAX, size, aluOut[0]!, aluOut[1]!);
    wrReg(c, Reg.RDX, size, aluOut[3]!, aluOut[4]!);
  }
  c.flags = aluOut[2]!;
  c.ip = nip(c, s);
}

function hBit(c: CpuCore, s: Slot): void {
  const size = s.opSize;
  const bits = size * 8;
  let offLo: number;
  let off: number;
  if (s.kind1 === IMM) {
    offLo = s.imm;
    off = s.imm & (bits - 1);
  } else {
    offLo = rdReg(c, s.reg1, size);
    off = size === 2 ? (offLo << 16) >> 16 : size === 4 ? offLo | 0 : H * TWO32 + (offLo >>> 0);
  }
  const bit = offLo & (bits - 1);
  if (s.kind0 === REG) {
    const a = rdReg(c, s.reg0, size);
    aluBit(s.op, size, a, H, bit, c.flags);
    if (s.op !== Op.BT) wrReg(c, s.reg0, size, aluOut[0]!, aluOut[1]!);
  } else {
    let addr = ea(c, s);
    if (s.kind1 === REG) {
      // Bit-string addressing: a register offset selects any operand-sized word.
      addr += Math.floor(off / bits) * size;
      if (c.bitness === 64) {
        if (addr < CANON_LOW || addr >= CANON_HIGH) throw nonCanonical(s);
      } else addr = addr >>> 0;
    }
    const a = rdMem(c, addr, size);
    aluBit(s.op, size, a, H, bit, c.flags);
    if (s.op !== Op.BT) wrMem(c, addr, size, aluOut[0]!, aluOut[1]!);
  }
  c.flags = aluOut[2]!;
  c.ip = nip(c, s);
}

// ---------------------------------------------------------------------------------------
// Handlers: stack and control flow

function hPush(c: CpuCore, s: Slot): void {
  const size = stk(c, s);
  let v: number;
  let vh = 0;
  const k = s.kind0;
  if (k === REG) {
    v = rdReg(c, s.reg0, size);
    vh = H;
  } else if (k === IMM) {
    v = s.imm;
    vh = s.immHi;
  } else if (k === MEM) {
    v = rdMem(c, ea(c, s), size);
    vh = H;
  } else v = c.sreg[s.reg0]!;
  push(c, size, v, vh);
  c.ip = nip(c, s);
}

/** push reg at the mode's natural stack size (64: 8 bytes, 32: 4); else {@link hPush}. */
function hPushR(c: CpuCore, s: Slot): void {
  const r = s.reg0;
  if (c.bitness === 64) {
    if (s.opSize === 2) return hPush(c, s);
    const a = c.hi[4]! * TWO32 + (c.lo[4]! >>> 0) - 8;
    if (a < CANON_LOW || a >= CANON_HIGH) throw ssFault("non-canonical stack address");
    c.write64(a, c.lo[r]!, c.hi[r]!);
    c.hi[4] = Math.floor(a / TWO32);
    c.lo[4] = a | 0;
    c.ip += s.len;
    return;
  }
  if (s.opSize !== 4) return hPush(c, s);
  const a = (c.lo[4]! - 4) >>> 0;
  c.write32(a, c.lo[r]!);
  c.lo[4] = a | 0;
  c.ip = (c.ip + s.len) >>> 0;
}

/** pop reg at the mode's natural stack size (64: 8 bytes, 32: 4); else {@link hPop}. */
function hPopR(c: CpuCore, s: Slot): void {
  const r = s.reg0;
  if (c.bitness === 64) {
    if (s.opSize === 2) return hPop(c, s);
    const a = c.hi[4]! * TWO32 + (c.lo[4]! >>> 0);
    if (a < CANON_LOW || a >= CANON_HIGH) throw ssFault("non-canonical stack address");
    const v = c.read64(a);
    const vh = c.hi64;
    const n = a + 8;
    c.hi[4] = Math.floor(n / TWO32);
    c.lo[4] = n | 0;
    c.lo[r] = v; // pop %rsp: the loaded value wins
    c.hi[r] = vh;
    c.ip += s.len;
    return;
  }
  if (s.opSize !== 4) return hPop(c, s);
  const a = c.lo[4]! >>> 0;
  const v = c.read32(a);
  c.lo[4] = (a + 4) | 0;
  c.lo[r] = v;
  c.hi[r] = 0;
  c.ip = (c.ip + s.len) >>> 0;
}

function hPop(c: CpuCore, s: Slot): void {
  const size = stk(c, s);
  const old = sp(c);
  const v = peek(c, 0, size);
  const vh = H;
  const k = s.kind0;
  if (k === REG) {
    setSp(c, old + size);
    wrReg(c, s.reg0, size, v, vh); // pop %rsp: the loaded value wins
  } else if (k === MEM) {
    // The destination address is computed with the incremented rsp (SDM POP).
    setSp(c, old + size);
    try {
      wrMem(c, ea(c, s), size, v, vh);
    } catch (e) {
      setSp(c, old);
      throw e;
    }
  } else {
    c.loadSreg(s.reg0, v & 0xffff);
    setSp(c, old + size);
  }
  c.ip = nip(c, s);
}

function hPushf(c: CpuCore, s: Slot): void {
  const size = stk(c, s);
  push(c, size, c.flags & ~(RF | VM), 0);
  c.ip = nip(c, s);
}

/** Flags any POPF may change (RF, VM, VIF, VIP never; IF and IOPL by privilege). */
const POPF_MASK = ARITH | 0x100 /* TF */ | DF | NT | AC | ID;

function hPopf(c: CpuCore, s: Slot): void {
  const size = stk(c, s);
  const v = peek(c, 0, size);
  let mask = POPF_MASK;
  const iopl = (c.flags & IOPL_MASK) >> 12;
  if (c.cpl === 0) mask |= IOPL_MASK | IF;
  else if (c.cpl <= iopl) mask |= IF; // otherwise IF is silently kept (SDM POPF)
  if (size === 2) mask &= 0xffff;
  c.flags = ((c.flags & ~mask) | (v & mask) | 2) & ~RF;
  setSp(c, sp(c) + size);
  c.ip = nip(c, s);
}

function hLeave(c: CpuCore, s: Slot): void {
  const size = stk(c, s);
  if (c.bitness === 64) {
    const frame = stackAddr(c, c.hi[5]! * TWO32 + (c.lo[5]! >>> 0));
    const v = rdMem(c, frame, size);
    const vh = H;
    setSp(c, frame + size);
    wrReg(c, Reg.RBP, size, v, vh);
  } else {
    const frame = c.lo[5]! >>> 0;
    const v = rdMem(c, frame, size);
    c.lo[4] = (frame + size) | 0;
    wrReg(c, Reg.RBP, size, v, 0);
  }
  c.ip = nip(c, s);
}

function pushIp(c: CpuCore, size: number, ip: number): void {
  push(c, size, ip | 0, Math.floor(ip / TWO32) | 0);
}

function hCall(c: CpuCore, s: Slot): void {
  const ret = nip(c, s);
  const t = target(c, s, c.ip + s.len + s.imm);
  pushIp(c, stk(c, s), ret);
  c.ip = t;
}

function hCallInd(c: CpuCore, s: Slot): void {
  const size = stk(c, s);
  const v = rdOp0(c, s, size);
  const t = target(c, s, asAddr(v, H, size));
  pushIp(c, size, nip(c, s));
  c.ip = t;
}

function hRet(c: CpuCore, s: Slot): void {
  const size = stk(c, s);
  const v = peek(c, 0, size);
  const t = target(c, s, asAddr(v, H, size));
  setSp(c, sp(c) + size + (s.imm & 0xffff));
  c.ip = t;
}

function hJmp(c: CpuCore, s: Slot): void {
  c.ip = target(c, s, c.ip + s.len + s.imm);
}

function hJmpInd(c: CpuCore, s: Slot): void {
  const size = stk(c, s);
  const v = rdOp0(c, s, size);
  c.ip = target(c, s, asAddr(v, H, size));
}

function hJcc(c: ExecCore, s: Slot): void {
  if (c.cond(s.cc)) c.ip = target(c, s, c.ip + s.len + s.imm);
  else c.ip = nip(c, s);
}

// ---------------------------------------------------------------------------------------
// Handlers: system

function hNop(c: CpuCore, s: Slot): void {
  c.ip = nip(c, s);
}

function hPause(c: CpuCore, s: Slot): void {
  c.ip = nip(c, s);
  c.pause();
}

function hInt3(c: CpuCore, s: Slot): void {
  c.softwareInterrupt(Vector.BP, nip(c, s));
}

function hInt(c: CpuCore, s: Slot): void {
  c.softwareInterrupt(s.imm & 0xff, nip(c, s));
}

function hIret(c: CpuCore, s: Slot): void {
  c.iret(s.opSize);
}

function hHlt(c: CpuCore, s: Slot): void {
  if (c.cpl !== 0) throw gpFault(0, "hlt at CPL 3");
  c.ip = nip(c, s);
  c.halt();
}

/** Vendor string words of CPUID leaf 0: "Text" "poke" "Emu " in EBX, EDX, ECX. */
const VENDOR = [0x74786554, 0x656b6f70, 0x20756d45];

/**
 * The fixed CPUID leaves of the emulated CPU: leaf 0 (max leaf 1, vendor
 * `"TextpokeEmu "`), leaf 1 (family 6 signature, CMOV), 0x80000000 (max 0x80000001) and
 * 0x80000001 (LM in 64-bit machines); every other leaf reads as zeros.
 *
 * @param leaf EAX input.
 * @param bitness Machine mode (64 reports long mode).
 * @returns `[eax, ebx, ecx, edx]`.
 * @example
 * ```ts
 * import { cpuidLeaf } from "./execute.ts";
 * console.log(cpuidLeaf(0, 64)[0]); // 1
 * ```
 */
export function cpuidLeaf(leaf: number, bitness: 32 | 64): [number, number, number, number] {
  switch (leaf >>> 0) {
    case 0:
      return [1, VENDOR[0]!, VENDOR[2]!, VENDOR[1]!];
    case 1:
      return [0x00000600, 0, 0, 1 << 15];
    case 0x80000000:
      return [0x80000001 | 0, 0, 0, 0];
    case 0x80000001:
      return [0, 0, 0, bitness === 64 ? 1 << 29 : 0];
    default:
      return [0, 0, 0, 0];
  }
}

function hCpuid(c: CpuCore, s: Slot): void {
  const r = cpuidLeaf(c.lo[0]!, c.bitness);
  wrReg(c, Reg.RAX, 4, r[0], 0);
  wrReg(c, Reg.RBX, 4, r[1], 0);
  wrReg(c, Reg.RCX, 4, r[2], 0);
  wrReg(c, Reg.RDX, 4, r[3], 0);
  c.ip = nip(c, s);
  c.serialize();
}

function ioplCheck(c: CpuCore, what: string): void {
  if (c.cpl > (c.flags & IOPL_MASK) >> 12) throw gpFault(0, `${what} with CPL > IOPL`);
}

function hFlagOp(c: CpuCore, s: Slot): void {
  switch (s.op) {
    case Op.CLD:
      c.flags &= ~DF;
      break;
    case Op.STD:
      c.flags |= DF;
      break;
    case Op.CLI:
      ioplCheck(c, "cli");
      c.flags &= ~IF;
      break;
    case Op.STI:
      ioplCheck(c, "sti");
      if ((c.flags & IF) === 0) c.interruptShadow(); // SDM STI: one-instruction delay
      c.flags |= IF;
      break;
    case Op.CLC:
      c.flags &= ~CF;
      break;
    case Op.STC:
      c.flags |= CF;
      break;
    default: // CMC
      c.flags ^= CF;
  }
  c.ip = nip(c, s);
}

// ---------------------------------------------------------------------------------------
// String instructions

function strPtr(c: CpuCore, r: number, asz: number, seg: number): number {
  let a: number;
  if (asz === 8) {
    a = c.hi[r]! * TWO32 + (c.lo[r]! >>> 0);
  } else a = asz === 4 ? c.lo[r]! >>> 0 : c.lo[r]! & 0xffff;
  if (seg >= 4) a += seg === 4 ? c.fsBase : c.gsBase;
  if (c.bitness === 64) {
    if (a < CANON_LOW || a >= CANON_HIGH) throw gpFault(0, "non-canonical string address");
    return a;
  }
  return a >>> 0;
}

function strAdvance(c: CpuCore, r: number, asz: number, delta: number): void {
  if (asz === 8) {
    const v = c.hi[r]! * TWO32 + (c.lo[r]! >>> 0) + delta;
    c.hi[r] = Math.floor(v / TWO32);
    c.lo[r] = v | 0;
  } else if (asz === 4) {
    c.lo[r] = (c.lo[r]! + delta) | 0;
    c.hi[r] = 0;
  } else c.lo[r] = (c.lo[r]! & ~0xffff) | ((c.lo[r]! + delta) & 0xffff);
}

function countZero(c: CpuCore, asz: number): boolean {
  if (asz === 8) return c.lo[1] === 0 && c.hi[1] === 0;
  if (asz === 4) return c.lo[1] === 0;
  return (c.lo[1]! & 0xffff) === 0;
}

function hString(c: CpuCore, s: Slot): void {
  const rep = s.prefixes & (Prefix.REP | Prefix.REPNE);
  const asz = s.addrSize;
  if (rep !== 0 && countZero(c, asz)) {
    c.ip = nip(c, s);
    return;
  }
  const size = s.opSize;
  const delta = c.flags & DF ? -size : size;
  const srcSeg = s.seg;
  let flags = c.flags;
  switch (s.op) {
    case Op.MOVS: {
      const v = rdMem(c, strPtr(c, Reg.RSI, asz, srcSeg), size);
      wrMem(c, strPtr(c, Reg.RDI, asz, -1), size, v, H);
      strAdvance(c, Reg.RSI, asz, delta);
      strAdvance(c, Reg.RDI, asz, delta);
      break;
    }
    case Op.STOS: {
      const v = rdReg(c, Reg.RAX, size);
      wrMem(c, strPtr(c, Reg.RDI, asz, -1), size, v, H);
      strAdvance(c, Reg.RDI, asz, delta);
      break;
    }
    case Op.LODS: {
      const v = rdMem(c, strPtr(c, Reg.RSI, asz, srcSeg), size);
      wrReg(c, Reg.RAX, size, v, H);
      strAdvance(c, Reg.RSI, asz, delta);
      break;
    }
    case Op.CMPS: {
      const a = rdMem(c, strPtr(c, Reg.RSI, asz, srcSeg), size);
      const ah = H;
      const b = rdMem(c, strPtr(c, Reg.RDI, asz, -1), size);
      aluBinary(Op.CMP, size, a, ah, b, H, flags);
      flags = aluOut[2]!;
      strAdvance(c, Reg.RSI, asz, delta);
      strAdvance(c, Reg.RDI, asz, delta);
      break;
    }
    default: { // SCAS
      const a = rdReg(c, Reg.RAX, size);
      const ah = H;
      const b = rdMem(c, strPtr(c, Reg.RDI, asz, -1), size);
      aluBinary(Op.CMP, size, a, ah, b, H, flags);
      flags = aluOut[2]!;
      strAdvance(c, Reg.RDI, asz, delta);
    }
  }
  c.flags = flags;
  if (rep === 0) {
    c.ip = nip(c, s);
    return;
  }
  // One iteration per step: decrement the count; stay on the instruction unless done.
  if (asz === 8) {
    const v = c.hi[1]! * TWO32 + (c.lo[1]! >>> 0) - 1;
    if (c.lo[1] === 0) c.hi[1] = (c.hi[1]! - 1) | 0;
    c.lo[1] = v | 0;
  } else strAdvance(c, Reg.RCX, asz, -1);
  let done = countZero(c, asz);
  if (s.op === Op.CMPS || s.op === Op.SCAS) {
    if (rep === Prefix.REP && (flags & ZF) === 0) done = true;
    if (rep === Prefix.REPNE && (flags & ZF) !== 0) done = true;
  }
  if (done) c.ip = nip(c, s);
}

// ---------------------------------------------------------------------------------------
// Binding

function isAlu(op: number): boolean {
  return op >= Op.ADD && op <= Op.CMP || op === Op.TEST;
}

/**
 * Binds the handler for a decoded instruction (and sets {@link Slot.atomic}). Chooses a
 * specialized handler for the hot register/immediate/simple-memory forms.
 *
 * @param s A slot the decoder has just filled.
 * @returns `s`, ready to execute with `s.fn(cpu, s)`.
 * @example
 * ```ts
 * import { bindHandler, Slot } from "./execute.ts";
 * import { decodeInto } from "./decode.ts";
 * const s = bindHandler(decodeInto(new Slot(), new Uint8Array([0x90]), 0, 64) as Slot);
 * console.log(typeof s.fn); // "function"
 * ```
 */
export function bindHandler(s: Slot): Slot {
  const fn = pick(s);
  s.fn = fn;
  s.hot = HOT.get(fn) ?? 0;
  s.atomic = (s.prefixes & Prefix.LOCK) !== 0 ||
    (s.op === Op.XCHG && (s.kind0 === MEM || s.kind1 === MEM));
  s.data = null;
  s.simpleEa = s.addrSize === 8 && s.base >= 0 && s.base < 16 && s.index < 0 && s.seg < 4;
  return s;
}

/** Per-op lazy handlers by `op - Op.ADD` (ADC, SBB: eager; CMP, TEST: undefined). */
const LAZY_RR: (Handler | undefined)[] = [
  hAddRR,
  hOrRR,
  undefined,
  undefined,
  hAndRR,
  hSubRR,
  hXorRR,
];
const LAZY_RI: (Handler | undefined)[] = [
  hAddRI,
  hOrRI,
  undefined,
  undefined,
  hAndRI,
  hSubRI,
  hXorRI,
];

function pick(s: Slot): Handler {
  const op = s.op;
  const wide = s.opSize === 4 || s.opSize === 8;
  if (isAlu(op)) {
    if (wide && s.kind0 === REG) {
      if (op === Op.ADC || op === Op.SBB) {
        // They read CF, so the flags before them must be real: computed eagerly.
        if (s.kind1 === REG) return hAluRR;
        if (s.kind1 === IMM) return hAluRI;
        if (s.kind1 === MEM) return hAluRM;
      } else {
        if (s.kind1 === REG) return LAZY_RR[op - Op.ADD] ?? hCmpTestRR;
        if (s.kind1 === IMM) return LAZY_RI[op - Op.ADD] ?? hCmpTestRI;
        if (s.kind1 === MEM) return hLazyRM;
      }
    }
    return hAlu;
  }
  if (op >= Op.ROL && op <= Op.SAR) return hShift;
  switch (op) {
    case Op.MOV:
      if (wide && s.size0 === s.opSize && s.size1 === s.opSize) {
        const k0 = s.kind0;
        const k1 = s.kind1;
        if (k0 === REG && k1 === REG) return s.opSize === 8 ? hMovRR64 : hMovRR32;
        if (k0 === REG && k1 === MEM) return s.opSize === 8 ? hMovRM64 : hMovRM32;
        if (k0 === MEM && k1 === REG) return s.opSize === 8 ? hMovMR64 : hMovMR32;
        if (k0 === REG && k1 === IMM) return hMovRI;
      }
      return hMov;
    case Op.INC:
    case Op.DEC:
    case Op.NEG:
    case Op.NOT:
      return hUnary;
    case Op.IMUL1:
    case Op.MUL:
      return hMulWide;
    case Op.IMUL2:
    case Op.IMUL3:
      return hImul2;
    case Op.DIV:
    case Op.IDIV:
      return hDiv;
    case Op.MOVZX:
      return hMovzx;
    case Op.MOVSX:
      return hMovsx;
    case Op.LEA:
      return hLea;
    case Op.XCHG:
      return hXchg;
    case Op.CMPXCHG:
      return hCmpxchg;
    case Op.XADD:
      return hXadd;
    case Op.BSWAP:
      return hBswap;
    case Op.CBW:
      return hCbw;
    case Op.CWD:
      return hCwd;
    case Op.SETCC:
      return hSetcc;
    case Op.CMOVCC:
      return hCmovcc;
    case Op.BT:
    case Op.BTS:
    case Op.BTR:
    case Op.BTC:
      return hBit;
    case Op.PUSH:
      return s.kind0 === REG ? hPushR : hPush;
    case Op.POP:
      return s.kind0 === REG ? hPopR : hPop;
    case Op.PUSHF:
      return hPushf;
    case Op.POPF:
      return hPopf;
    case Op.LEAVE:
      return hLeave;
    case Op.CALL:
      return hCall;
    case Op.CALL_IND:
      return hCallInd;
    case Op.RET:
      return hRet;
    case Op.JMP:
      return hJmp;
    case Op.JMP_IND:
      return hJmpInd;
    case Op.JCC:
      return hJcc;
    case Op.NOP:
    case Op.MFENCE:
    case Op.LFENCE:
    case Op.SFENCE:
      return hNop;
    case Op.PAUSE:
      return hPause;
    case Op.INT3:
      return hInt3;
    case Op.INT:
      return hInt;
    case Op.IRET:
      return hIret;
    case Op.HLT:
      return hHlt;
    case Op.CPUID:
      return hCpuid;
    case Op.CLD:
    case Op.STD:
    case Op.CLI:
    case Op.STI:
    case Op.CLC:
    case Op.STC:
    case Op.CMC:
      return hFlagOp;
    case Op.MOVS:
    case Op.STOS:
    case Op.LODS:
    case Op.CMPS:
    case Op.SCAS:
      return hString;
    case Op.TOO_LONG:
      return hTooLong;
    default: // UNSUPPORTED, INVALID, UD2, TRUNCATED
      return hUndefined;
  }
}

/**
 * Straight-line handlers that never store to memory and call no CPU hook (they may read
 * memory and fault): what {@link storeFree} answers.
 */
const STORE_FREE = new Set<Handler>([
  hMovRR32,
  hMovRR64,
  hMovRM32,
  hMovRM64,
  hMovRI,
  hMovzx,
  hMovsx,
  hLea,
  hBswap,
  hCbw,
  hCwd,
  hCmovcc,
  hAluRR,
  hAluRI,
  hLazyRM,
  hAddRR,
  hAddRI,
  hSubRR,
  hSubRI,
  hXorRR,
  hXorRI,
  hAndRR,
  hAndRI,
  hOrRR,
  hOrRI,
  hCmpTestRR,
  hCmpTestRI,
  hAluRM,
  hImul2,
  hPopR,
  hNop,
]);

/**
 * Handlers after which execution always continues at `ip + len` (or the instruction
 * faults with the ip unchanged), with no effect on instruction fetch other than through
 * stores: what {@link straightLine} answers.
 */
const STRAIGHT = new Set<Handler>([
  ...STORE_FREE,
  // …and the straight-line handlers that store or call a CPU hook:
  hMov,
  hMovMR32,
  hMovMR64,
  hXchg,
  hCmpxchg,
  hXadd,
  hSetcc,
  hAlu,
  hUnary,
  hShift,
  hMulWide,
  hDiv,
  hBit,
  hPush,
  hPushR,
  hPop,
]);

/**
 * Whether a bound straight-line instruction only reads: it stores nothing and calls no
 * CPU hook, so it cannot change instruction memory or the CPU's pending events (it may
 * still fault). The CPU's compiled blocks check for pending events only after the others.
 *
 * @param s A slot bound by {@link bindHandler}.
 * @returns True for loads, register and flag operations.
 * @example
 * ```ts
 * import { bindHandler, Slot, storeFree } from "./execute.ts";
 * import { decodeInto } from "./decode.ts";
 * const s = bindHandler(decodeInto(new Slot(), new Uint8Array([0x90]), 0, 64) as Slot);
 * console.log(storeFree(s)); // true
 * ```
 */
export function storeFree(s: Slot): boolean {
  return STORE_FREE.has(s.fn);
}

/**
 * Whether a bound instruction is straight-line: when it completes it has advanced the ip
 * by its length and done nothing else that concerns instruction fetch (no branch, no
 * `rep` iteration, no interrupt, serialization, pause or flag-IF change); it may fault.
 * The CPU's block cache runs such instructions back to back.
 *
 * @param s A slot bound by {@link bindHandler}.
 * @returns True when execution always falls through to the next instruction.
 * @example
 * ```ts
 * import { bindHandler, Slot, straightLine } from "./execute.ts";
 * import { decodeInto } from "./decode.ts";
 * const s = bindHandler(decodeInto(new Slot(), new Uint8Array([0x90]), 0, 64) as Slot);
 * console.log(straightLine(s)); // true: nop falls through
 * ```
 */
export function straightLine(s: Slot): boolean {
  return STRAIGHT.has(s.fn);
}

// ---------------------------------------------------------------------------------------
// Dispatch

/**
 * The hot handlers, by {@link Slot.hot} index (from 1). {@link execute} switches on the
 * index and calls them directly: V8 inlines direct calls, where `s.fn(c, s)` is a
 * megamorphic indirect call (the dispatch alone cost ~6 ns per instruction).
 */
const HOT_HANDLERS: Handler[] = [
  hMovRM64,
  hMovMR64,
  hJcc,
  hAddRR,
  hSubRI,
  hXorRR,
  hSubRR,
  hAddRI,
  hCmpTestRR,
  hCmpTestRI,
  hMovRR64,
  hMovRM32,
  hMovMR32,
  hMovRR32,
  hMovRI,
  hAndRR,
  hAndRI,
  hOrRR,
  hOrRI,
  hXorRI,
  hLazyRM,
  hJmp,
  hCall,
  hRet,
  hNop,
  hPushR,
  hPopR,
];
const HOT = new Map<Handler, number>(HOT_HANDLERS.map((h, i) => [h, i + 1]));

/**
 * Executes one bound instruction: the same as `s.fn(c, s)`, with the hot handlers called
 * directly (see {@link Slot.hot}).
 *
 * @param c The CPU.
 * @param s A slot bound by {@link bindHandler} (or any slot with `hot` 0).
 * @example
 * ```ts
 * import { bindHandler, execute, Slot } from "./execute.ts";
 * import { decodeInto } from "./decode.ts";
 * const s = bindHandler(decodeInto(new Slot(), new Uint8Array([0x90]), 0, 64) as Slot);
 * console.log(s.hot > 0); // true: nop is a hot handler
 * ```
 */
export function execute(c: ExecCore, s: Slot): void {
  switch (s.hot) {
    case 1:
      hMovRM64(c, s);
      return;
    case 2:
      hMovMR64(c, s);
      return;
    case 3:
      hJcc(c, s);
      return;
    case 4:
      hAddRR(c, s);
      return;
    case 5:
      hSubRI(c, s);
      return;
    case 6:
      hXorRR(c, s);
      return;
    case 7:
      hSubRR(c, s);
      return;
    case 8:
      hAddRI(c, s);
      return;
    case 9:
      hCmpTestRR(c, s);
      return;
    case 10:
      hCmpTestRI(c, s);
      return;
    case 11:
      hMovRR64(c, s);
      return;
    case 12:
      hMovRM32(c, s);
      return;
    case 13:
      hMovMR32(c, s);
      return;
    case 14:
      hMovRR32(c, s);
      return;
    case 15:
      hMovRI(c, s);
      return;
    case 16:
      hAndRR(c, s);
      return;
    case 17:
      hAndRI(c, s);
      return;
    case 18:
      hOrRR(c, s);
      return;
    case 19:
      hOrRI(c, s);
      return;
    case 20:
      hXorRI(c, s);
      return;
    case 21:
      hLazyRM(c, s);
      return;
    case 22:
      hJmp(c, s);
      return;
    case 23:
      hCall(c, s);
      return;
    case 24:
      hRet(c, s);
      return;
    case 25:
      hNop(c, s);
      return;
    case 26:
      hPushR(c, s);
      return;
    case 27:
      hPopR(c, s);
      return;
    default:
      s.fn(c, s);
  }
}
