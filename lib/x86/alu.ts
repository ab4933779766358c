/**
 * Integer arithmetic with RFLAGS exactly as the CPU computes them (Intel SDM Vol. 2
 * instruction pages; AF and PF included, PF from the low byte of the result).
 *
 * Values of 1, 2 or 4 bytes are JS numbers (only the low 8*size bits matter); 64-bit
 * values are (lo, hi) int32 pairs. Every function writes its results into the shared
 * scratch array {@link aluOut} and allocates nothing (DIV/IDIV of 4 and 8 bytes, which
 * are cold, use BigInt).
 *
 * Flags the SDM calls undefined get the values the host-CPU oracle
 * (tests/host_oracle_test.ts) observed on the machine this was developed on, an AMD EPYC
 * (Zen) core, on 200,000+ random cases with no difference:
 *
 * | instruction          | undefined flags   | value computed here                     |
 * | -------------------- | ----------------- | --------------------------------------- |
 * | AND, OR, XOR, TEST   | AF                | 0                                       |
 * | SHL, SHR, SAR (n≠0)  | AF; OF if n > 1   | AF = 1; OF by the last 1-bit step: SHL  |
 * |                      |                   | MSB(result) xor CF, SHR 0, SAR 0        |
 * | ROL, ROR, RCL, RCR   | OF if n > 1       | the count-1 formula on the final result |
 * | MUL, IMUL            | SF, ZF, AF, PF    | unchanged                               |
 * | DIV, IDIV            | all six           | CF, OF unchanged; AF = 1; SF = ZF = PF = 0 |
 * | BT, BTS, BTR, BTC    | OF, SF, AF, PF    | unchanged                               |
 *
 * Other CPUs (Intel cores in particular) differ on some of these; {@link undefinedFlags}
 * gives, per instruction, the mask of flags the SDM leaves undefined so that comparisons
 * with any CPU can ignore them.
 *
 * @example Adding with carry out
 * ```ts
 * import { aluBinary, aluOut } from "./alu.ts";
 * import { Op } from "./insn.ts";
 * import { CF, ZF } from "./flags.ts";
 * aluBinary(Op.ADD, 1, 0xff, 0, 1, 0, 0x2);
 * console.log(aluOut[0]!, (aluOut[2]! & CF) !== 0, (aluOut[2]! & ZF) !== 0); // 0 true true
 * ```
 *
 * @module
 */

import { AF, ARITH, CF, OF, PF, SF, ZF } from "./flags.ts";
import { Op } from "./insn.ts";

/**
 * The shared output of every ALU function (no allocation on the hot path):
 * `[0]` result lo (for size < 8 the result zero-extended from 8*size bits, as int32),
 * `[1]` result hi (size 8, else 0), `[2]` RFLAGS out, `[3]`/`[4]` second result lo/hi
 * (high half of MUL/IMUL1, remainder of DIV/IDIV), `[5]` fault (0 none, 1 #DE).
 */
export const aluOut: Int32Array = new Int32Array(6);

const out = aluOut;

/** PF bit (0 or {@link PF}) for each byte value. */
const PF_TABLE = new Uint8Array(256);
for (let i = 0; i < 256; i++) {
  let n = i;
  n ^= n >> 4;
  n ^= n >> 2;
  n ^= n >> 1;
  PF_TABLE[i] = (n & 1) === 0 ? PF : 0;
}

const NOT_ARITH = ~ARITH;

/**
 * The parity flag value of a byte.
 *
 * @param byte Any number; only its low 8 bits are used.
 * @returns 1 when the low byte has an even number of set bits (PF set), else 0.
 * @example
 * ```ts
 * import { parity } from "./alu.ts";
 * console.log(parity(0x03), parity(0x01)); // 1 0
 * ```
 */
export function parity(byte: number): number {
  return PF_TABLE[byte & 0xff]! >> 2;
}

/** Mask of the low 8*size bits, as int32 (size 4 gives -1). */
function maskOf(size: number): number {
  return size === 4 ? -1 : size === 2 ? 0xffff : 0xff;
}

/** The sign bit of an operand of `size` (1, 2 or 4) bytes, as int32. */
function signOf(size: number): number {
  return size === 4 ? -0x80000000 : size === 2 ? 0x8000 : 0x80;
}

/** Unsigned value of the low 8*size bits of `v` (size 1, 2 or 4). */
function uval(size: number, v: number): number {
  return size === 4 ? v >>> 0 : size === 2 ? v & 0xffff : v & 0xff;
}

/** Sign-extended value of the low 8*size bits of `v` (size 1, 2 or 4). */
function sval(size: number, v: number): number {
  return size === 4 ? v | 0 : size === 2 ? (v << 16) >> 16 : (v << 24) >> 24;
}

/** SF, ZF and PF of a masked result of size < 8. */
function szp(size: number, r: number): number {
  return (r === 0 ? ZF : 0) | ((r & signOf(size)) !== 0 ? SF : 0) | PF_TABLE[r & 0xff]!;
}

/** SF, ZF and PF of a 64-bit result. */
function szp64(lo: number, hi: number): number {
  return ((lo | hi) === 0 ? ZF : 0) | (hi < 0 ? SF : 0) | PF_TABLE[lo & 0xff]!;
}

function put(lo: number, hi: number, flags: number): void {
  out[0] = lo;
  out[1] = hi;
  out[2] = flags;
}

// ---------------------------------------------------------------------------------------
// ADD / ADC / SUB / SBB / CMP / logic

/** a + b + cin, flags CF PF AF ZF SF OF. `keepCf` preserves CF (INC). */
function add(
  size: number,
  aLo: number,
  aHi: number,
  bLo: number,
  bHi: number,
  cin: number,
  flags: number,
  keepCf: boolean,
): void {
  let f: number;
  let lo: number;
  let hi = 0;
  if (size === 4) {
    // The common case, spelled out.
    // Int32 only: the carry out of bit 31 is the majority of a, b and not-result.
    lo = (aLo + bLo + cin) | 0;
    f = (((aLo & bLo) | ((aLo | bLo) & ~lo)) >>> 31) | (lo === 0 ? ZF : 0) | (lo < 0 ? SF : 0) |
      PF_TABLE[lo & 0xff]! | ((aLo ^ bLo ^ lo) & AF) | (((aLo ^ lo) & (bLo ^ lo)) < 0 ? OF : 0);
  } else if (size === 8) {
    const sl = (aLo >>> 0) + (bLo >>> 0) + cin;
    const c0 = sl > 0xffffffff ? 1 : 0;
    const sh = (aHi >>> 0) + (bHi >>> 0) + c0;
    lo = sl | 0;
    hi = sh | 0;
    f = (sh > 0xffffffff ? CF : 0) | szp64(lo, hi) | ((aLo ^ bLo ^ lo) & AF) |
      (((aHi ^ hi) & (bHi ^ hi)) < 0 ? OF : 0);
  } else {
    const a = uval(size, aLo);
    const b = uval(size, bLo);
    const s = a + b + cin;
    lo = s & maskOf(size);
    f = (s > (size === 4 ? 0xffffffff : maskOf(size)) ? CF : 0) | szp(size, lo) |
      ((a ^ b ^ lo) & AF) | (((a ^ lo) & (b ^ lo) & signOf(size)) !== 0 ? OF : 0);
  }
  if (keepCf) f = (f & ~CF) | (flags & CF);
  put(lo, hi, (flags & NOT_ARITH) | f);
}

/** a - b - bin, flags CF PF AF ZF SF OF. `keepCf` preserves CF (DEC). */
function sub(
  size: number,
  aLo: number,
  aHi: number,
  bLo: number,
  bHi: number,
  bin: number,
  flags: number,
  keepCf: boolean,
): void {
  let f: number;
  let lo: number;
  let hi = 0;
  if (size === 4) {
    lo = (aLo - bLo - bin) | 0;
    f = (((~aLo & bLo) | ((~aLo | bLo) & lo)) >>> 31) | (lo === 0 ? ZF : 0) | (lo < 0 ? SF : 0) |
      PF_TABLE[lo & 0xff]! |
      ((aLo ^ bLo ^ lo) & AF) | (((aLo ^ bLo) & (aLo ^ lo)) < 0 ? OF : 0);
  } else if (size === 8) {
    const sl = (aLo >>> 0) - (bLo >>> 0) - bin;
    const b0 = sl < 0 ? 1 : 0;
    const sh = (aHi >>> 0) - (bHi >>> 0) - b0;
    lo = sl | 0;
    hi = sh | 0;
    f = (sh < 0 ? CF : 0) | szp64(lo, hi) | ((aLo ^ bLo ^ lo) & AF) |
      (((aHi ^ bHi) & (aHi ^ hi)) < 0 ? OF : 0);
  } else {
    const a = uval(size, aLo);
    const b = uval(size, bLo);
    const s = a - b - bin;
    lo = s & maskOf(size);
    f = (s < 0 ? CF : 0) | szp(size, lo) | ((a ^ b ^ lo) & AF) |
      (((a ^ b) & (a ^ lo) & signOf(size)) !== 0 ? OF : 0);
  }
  if (keepCf) f = (f & ~CF) | (flags & CF);
  put(lo, hi, (flags & NOT_ARITH) | f);
}

/** Logic result: CF = OF = 0; AF (undefined) cleared, as the oracle's CPU does. */
function logic(size: number, lo: number, hi: number, flags: number): void {
  if (size === 8) {
    put(lo | 0, hi | 0, (flags & NOT_ARITH) | szp64(lo | 0, hi | 0));
  } else {
    const r = lo & maskOf(size);
    put(r, 0, (flags & NOT_ARITH) | szp(size, r));
  }
}

/**
 * Two-operand ALU operation `a op b`: ADD, OR, ADC, SBB, AND, SUB, XOR, CMP, TEST.
 * CMP computes a - b and TEST a & b (the caller discards the value). ADC/SBB read CF
 * from `flags`. Flags: all six defined, except AF after OR/AND/XOR/TEST, which this
 * function clears (as the host-CPU oracle's CPU does).
 *
 * @param op One of Op.ADD..Op.CMP, Op.TEST.
 * @param size Operand size in bytes (1, 2, 4, 8).
 * @param aLo Destination operand (low 32 bits).
 * @param aHi Destination high 32 bits (size 8 only).
 * @param bLo Source operand (low 32 bits).
 * @param bHi Source high 32 bits (size 8 only).
 * @param flags RFLAGS in.
 * @returns Nothing; result in aluOut[0..1], RFLAGS in aluOut[2].
 * @example
 * ```ts
 * import { aluBinary, aluOut } from "./alu.ts";
 * import { Op } from "./insn.ts";
 * aluBinary(Op.SUB, 4, 1, 0, 2, 0, 0x2);
 * console.log(aluOut[0]! >>> 0, aluOut[2]! & 1); // 4294967295 1
 * ```
 */
export function aluBinary(
  op: number,
  size: number,
  aLo: number,
  aHi: number,
  bLo: number,
  bHi: number,
  flags: number,
): void {
  switch (op) {
    case Op.ADD:
      add(size, aLo, aHi, bLo, bHi, 0, flags, false);
      return;
    case Op.ADC:
      add(size, aLo, aHi, bLo, bHi, flags & CF, flags, false);
      return;
    case Op.SUB:
    case Op.CMP:
      sub(size, aLo, aHi, bLo, bHi, 0, flags, false);
      return;
    case Op.SBB:
      sub(size, aLo, aHi, bLo, bHi, flags & CF, flags, false);
      return;
    case Op.OR:
      logic(size, aLo | bLo, aHi | bHi, flags);
      return;
    case Op.AND:
    case Op.TEST:
      logic(size, aLo & bLo, aHi & bHi, flags);
      return;
    case Op.XOR:
      logic(size, aLo ^ bLo, aHi ^ bHi, flags);
      return;
    default:
      throw new RangeError(`aluBinary: op ${op} is not a binary ALU operation`);
  }
}

/**
 * One-operand ALU operation: INC, DEC (CF preserved, other five defined), NEG (CF = operand
 * != 0, all six defined), NOT (flags unchanged).
 *
 * @param op Op.INC, Op.DEC, Op.NEG or Op.NOT.
 * @param size Operand size in bytes (1, 2, 4, 8).
 * @param aLo Operand (low 32 bits).
 * @param aHi Operand high 32 bits (size 8 only).
 * @param flags RFLAGS in.
 * @returns Nothing; result in aluOut[0..1], RFLAGS in aluOut[2].
 * @example
 * ```ts
 * import { aluUnary, aluOut } from "./alu.ts";
 * import { Op } from "./insn.ts";
 * aluUnary(Op.NEG, 1, 1, 0, 0x2);
 * console.log(aluOut[0]!, aluOut[2]! & 1); // 255 1
 * ```
 */
export function aluUnary(op: number, size: number, aLo: number, aHi: number, flags: number): void {
  switch (op) {
    case Op.INC:
      add(size, aLo, aHi, 1, 0, 0, flags, true);
      return;
    case Op.DEC:
      sub(size, aLo, aHi, 1, 0, 0, flags, true);
      return;
    case Op.NEG:
      sub(size, 0, 0, aLo, aHi, 0, flags, false);
      return;
    case Op.NOT:
      if (size === 8) put(~aLo, ~aHi, flags);
      else put(~aLo & maskOf(size), 0, flags);
      return;
    default:
      throw new RangeError(`aluUnary: op ${op} is not a unary ALU operation`);
  }
}

// ---------------------------------------------------------------------------------------
// Shifts and rotates

// 64-bit shift helpers write into these two cells.
let rLo = 0;
let rHi = 0;

/** (lo, hi) << n for 0 <= n <= 64. */
function shl64(lo: number, hi: number, n: number): void {
  if (n === 0) {
    rLo = lo;
    rHi = hi;
  } else if (n < 32) {
    rHi = (hi << n) | (lo >>> (32 - n));
    rLo = lo << n;
  } else if (n < 64) {
    rHi = lo << (n - 32);
    rLo = 0;
  } else {
    rHi = 0;
    rLo = 0;
  }
}

/** (lo, hi) >>> n for 0 <= n <= 64. */
function shr64(lo: number, hi: number, n: number): void {
  if (n === 0) {
    rLo = lo;
    rHi = hi;
  } else if (n < 32) {
    rLo = (lo >>> n) | (hi << (32 - n));
    rHi = hi >>> n;
  } else if (n < 64) {
    rLo = hi >>> (n - 32);
    rHi = 0;
  } else {
    rLo = 0;
    rHi = 0;
  }
}

/** Bit k (0..63) of (lo, hi). */
function bit64(lo: number, hi: number, k: number): number {
  return k < 32 ? (lo >>> k) & 1 : (hi >>> (k - 32)) & 1;
}

/**
 * Shift or rotate: ROL, ROR, RCL, RCR, SHL (= SAL), SHR, SAR.
 *
 * `count` is the raw count operand, masked here (& 0x3f for size 8, else & 0x1f); RCL/RCR
 * on 8- and 16-bit operands rotate by the masked count mod 9 / mod 17. A masked count of 0
 * leaves value and flags unchanged. Defined flags: CF = last bit shifted out (rotates: the
 * bit that wrapped); OF for a count of 1 (SHL/SAL/RCL/ROL: MSB(result) xor CF, SHR: MSB of
 * the operand, SAR: 0, ROR/RCR: xor of the two top result bits); SHL/SHR/SAR set SF, ZF and
 * PF from the result. Undefined (see {@link undefinedFlags}): OF for counts other than 1
 * (computed as for the last 1-bit step: SHL MSB(result) xor CF, SHR and SAR 0, rotates the
 * count-1 formula on the final result), AF after SHL/SHR/SAR (set to 1), and CF for
 * SHL/SHR counts >= the width of an 8/16-bit operand (the bit a 32-bit shifter would
 * shift out last: 0, except SHL by exactly the width).
 *
 * @param op Op.ROL..Op.SAR.
 * @param size Operand size in bytes (1, 2, 4, 8).
 * @param aLo Operand (low 32 bits).
 * @param aHi Operand high 32 bits (size 8 only).
 * @param count Raw count (from CL or the immediate).
 * @param flags RFLAGS in.
 * @returns Nothing; result in aluOut[0..1], RFLAGS in aluOut[2].
 * @example
 * ```ts
 * import { aluShift, aluOut } from "./alu.ts";
 * import { Op } from "./insn.ts";
 * aluShift(Op.SHL, 1, 0x81, 0, 1, 0x2);
 * console.log(aluOut[0]!, aluOut[2]! & 1); // 2 1
 * ```
 */
export function aluShift(
  op: number,
  size: number,
  aLo: number,
  aHi: number,
  count: number,
  flags: number,
): void {
  if (size === 8) {
    shift64(op, aLo | 0, aHi | 0, count & 0x3f, flags);
    return;
  }
  const n = count & 0x1f;
  const mask = maskOf(size);
  const a = aLo & mask;
  if (n === 0) {
    put(a, 0, flags);
    return;
  }
  const bits = size << 3;
  const top = bits - 1;
  let r: number;
  let cf: number;
  let of: number;
  let f = flags;
  switch (op) {
    case Op.ROL: {
      const k = n & top;
      r = k === 0 ? a : ((a << k) | (uval(size, a) >>> (bits - k))) & mask;
      cf = r & 1;
      of = ((r >>> top) & 1) ^ cf;
      f = (f & ~(CF | OF)) | cf | (of << 11);
      break;
    }
    case Op.ROR: {
      const k = n & top;
      const ua = uval(size, a);
      r = ((ua >>> k) | (k === 0 ? 0 : a << (bits - k))) & mask;
      cf = (r >>> top) & 1;
      of = cf ^ ((r >>> (top - 1)) & 1);
      f = (f & ~(CF | OF)) | cf | (of << 11);
      break;
    }
    case Op.RCL: {
      const k = size === 1 ? n % 9 : size === 2 ? n % 17 : n;
      const cin = flags & CF;
      if (k === 0) {
        r = a;
        cf = cin;
      } else if (size === 4) {
        r = k === 1 ? (a << 1) | cin : (a << k) | (cin << (k - 1)) | (a >>> (33 - k));
        cf = (a >>> (32 - k)) & 1;
      } else {
        const w = bits + 1;
        const v = (cin << bits) | a;
        const rot = ((v << k) | (v >>> (w - k))) & ((1 << w) - 1);
        r = rot & mask;
        cf = (rot >>> bits) & 1;
      }
      of = ((r >>> top) & 1) ^ cf;
      f = (f & ~(CF | OF)) | cf | (of << 11);
      break;
    }
    case Op.RCR: {
      const k = size === 1 ? n % 9 : size === 2 ? n % 17 : n;
      const cin = flags & CF;
      if (k === 0) {
        r = a;
        cf = cin;
      } else if (size === 4) {
        r = k === 1 ? (a >>> 1) | (cin << 31) : (a >>> k) | (cin << (32 - k)) | (a << (33 - k));
        cf = (a >>> (k - 1)) & 1;
      } else {
        const w = bits + 1;
        const v = (cin << bits) | a;
        const rot = ((v >>> k) | (v << (w - k))) & ((1 << w) - 1);
        r = rot & mask;
        cf = (rot >>> bits) & 1;
      }
      of = ((r >>> top) & 1) ^ ((r >>> (top - 1)) & 1);
      f = (f & ~(CF | OF)) | cf | (of << 11);
      break;
    }
    case Op.SHL:
    case Op.SAL: {
      r = (a << n) & mask;
      cf = n <= bits ? (uval(size, a) >>> (bits - n)) & 1 : 0;
      of = ((r >>> top) & 1) ^ cf;
      f = (f & NOT_ARITH) | cf | (of << 11) | AF | szp(size, r);
      break;
    }
    case Op.SHR: {
      const ua = uval(size, a);
      r = (ua >>> n) & mask;
      cf = (ua >>> (n - 1)) & 1;
      of = n === 1 ? (ua >>> top) & 1 : 0;
      f = (f & NOT_ARITH) | cf | (of << 11) | AF | szp(size, r);
      break;
    }
    case Op.SAR: {
      const sa = sval(size, a);
      r = (sa >> n) & mask;
      cf = (sa >> (n - 1)) & 1;
      f = (f & NOT_ARITH) | cf | AF | szp(size, r);
      break;
    }
    default:
      throw new RangeError(`aluShift: op ${op} is not a shift or rotate`);
  }
  put(r, 0, f);
}

function shift64(op: number, lo: number, hi: number, n: number, flags: number): void {
  if (n === 0) {
    put(lo, hi, flags);
    return;
  }
  let cf: number;
  let of: number;
  let f = flags;
  switch (op) {
    case Op.ROL: {
      shl64(lo, hi, n);
      const l = rLo;
      const h = rHi;
      shr64(lo, hi, 64 - n);
      rLo |= l;
      rHi |= h;
      cf = rLo & 1;
      of = (rHi >>> 31) ^ cf;
      f = (f & ~(CF | OF)) | cf | (of << 11);
      break;
    }
    case Op.ROR: {
      shr64(lo, hi, n);
      const l = rLo;
      const h = rHi;
      shl64(lo, hi, 64 - n);
      rLo |= l;
      rHi |= h;
      cf = rHi >>> 31;
      of = cf ^ ((rHi >>> 30) & 1);
      f = (f & ~(CF | OF)) | cf | (of << 11);
      break;
    }
    case Op.RCL: {
      // 65-bit rotation: (x << n) | (cin << (n - 1)) | (x >>> (65 - n)).
      const cin = flags & CF;
      cf = bit64(lo, hi, 64 - n);
      shr64(lo, hi, 65 - n);
      const l = rLo;
      const h = rHi;
      shl64(lo, hi, n);
      rLo |= l;
      rHi |= h;
      if (cin) {
        if (n - 1 < 32) rLo |= 1 << (n - 1);
        else rHi |= 1 << (n - 33);
      }
      of = (rHi >>> 31) ^ cf;
      f = (f & ~(CF | OF)) | cf | (of << 11);
      break;
    }
    case Op.RCR: {
      const cin = flags & CF;
      cf = bit64(lo, hi, n - 1);
      shl64(lo, hi, 65 - n);
      const l = rLo;
      const h = rHi;
      shr64(lo, hi, n);
      rLo |= l;
      rHi |= h;
      if (cin) {
        const k = 64 - n;
        if (k < 32) rLo |= 1 << k;
        else rHi |= 1 << (k - 32);
      }
      of = (rHi >>> 31) ^ ((rHi >>> 30) & 1);
      f = (f & ~(CF | OF)) | cf | (of << 11);
      break;
    }
    case Op.SHL:
    case Op.SAL:
      cf = bit64(lo, hi, 64 - n);
      shl64(lo, hi, n);
      of = (rHi >>> 31) ^ cf;
      f = (f & NOT_ARITH) | cf | (of << 11) | AF | szp64(rLo, rHi);
      break;
    case Op.SHR:
      cf = bit64(lo, hi, n - 1);
      shr64(lo, hi, n);
      of = n === 1 ? hi >>> 31 : 0;
      f = (f & NOT_ARITH) | cf | (of << 11) | AF | szp64(rLo, rHi);
      break;
    case Op.SAR:
      cf = bit64(lo, hi, n - 1);
      if (n < 32) {
        rLo = (lo >>> n) | (hi << (32 - n));
        rHi = hi >> n;
      } else {
        rLo = hi >> (n - 32);
        rHi = hi >> 31;
      }
      f = (f & NOT_ARITH) | cf | AF | szp64(rLo, rHi);
      break;
    default:
      throw new RangeError(`aluShift: op ${op} is not a shift or rotate`);
  }
  put(rLo | 0, rHi | 0, f);
}

// ---------------------------------------------------------------------------------------
// Multiply

/** 128-bit product words, least significant first. */
const prod = new Int32Array(4);

/** Unsigned 64x64 -> 128 multiply into `prod`: four 32x32 -> 64 partial products. */
function mulu64(aLo: number, aHi: number, bLo: number, bHi: number): void {
  mulu32(aLo, bLo);
  const l00 = rLo >>> 0;
  const h00 = rHi >>> 0;
  mulu32(aLo, bHi);
  const l01 = rLo >>> 0;
  const h01 = rHi >>> 0;
  mulu32(aHi, bLo);
  const l10 = rLo >>> 0;
  const h10 = rHi >>> 0;
  mulu32(aHi, bHi);
  // Column sums stay below 2^34: exact in doubles.
  const m1 = h00 + l01 + l10;
  const c1 = m1 > 0xffffffff ? Math.floor(m1 / 4294967296) : 0;
  const m2 = h01 + h10 + (rLo >>> 0) + c1;
  const c2 = m2 > 0xffffffff ? Math.floor(m2 / 4294967296) : 0;
  prod[0] = l00;
  prod[1] = m1 | 0;
  prod[2] = m2 | 0;
  prod[3] = (rHi + c2) | 0;
}

/** Signed 64x64 -> 128 multiply into `prod`. */
function muls64(aLo: number, aHi: number, bLo: number, bHi: number): void {
  mulu64(aLo, aHi, bLo, bHi);
  // Signed high half = unsigned high half - (a < 0 ? b : 0) - (b < 0 ? a : 0), mod 2^64.
  if ((aHi | 0) < 0) subHigh(bLo, bHi);
  if ((bHi | 0) < 0) subHigh(aLo, aHi);
}

function subHigh(lo: number, hi: number): void {
  const sl = (prod[2]! >>> 0) - (lo >>> 0);
  prod[2] = sl | 0;
  prod[3] = ((prod[3]! >>> 0) - (hi >>> 0) - (sl < 0 ? 1 : 0)) | 0;
}

/** Unsigned 32x32 -> 64: low in rLo, high in rHi. */
function mulu32(a: number, b: number): void {
  const al = a & 0xffff;
  const ah = a >>> 16;
  const bl = b & 0xffff;
  const bh = b >>> 16;
  const m1 = ah * bl;
  const m2 = al * bh;
  const mid = ((al * bl) >>> 16) + (m1 & 0xffff) + (m2 & 0xffff);
  rHi = (ah * bh + (m1 >>> 16) + (m2 >>> 16) + (mid >>> 16)) | 0;
  rLo = Math.imul(a, b);
}

/**
 * Multiply. MUL and IMUL1 are widening (low half in aluOut[0..1], high half in
 * aluOut[3..4]); IMUL2/IMUL3 are truncating (result in aluOut[0..1]). CF = OF = 1 when the
 * high half is significant (MUL: non-zero; IMUL: not the sign extension of the low half).
 * SF, ZF, AF, PF are undefined by the SDM and returned unchanged (module doc).
 *
 * @param op Op.MUL, Op.IMUL1, Op.IMUL2 or Op.IMUL3.
 * @param size Operand size in bytes (1, 2, 4, 8).
 * @param aLo First factor (AL/AX/EAX/RAX for MUL/IMUL1), low 32 bits.
 * @param aHi First factor high 32 bits (size 8 only).
 * @param bLo Second factor, low 32 bits.
 * @param bHi Second factor high 32 bits (size 8 only).
 * @param flags RFLAGS in.
 * @returns Nothing; results in aluOut.
 * @example
 * ```ts
 * import { aluMul, aluOut } from "./alu.ts";
 * import { Op } from "./insn.ts";
 * aluMul(Op.MUL, 1, 0x10, 0, 0x10, 0, 0x2);
 * console.log(aluOut[0]!, aluOut[3]!, aluOut[2]! & 1); // 0 1 1
 * ```
 */
export function aluMul(
  op: number,
  size: number,
  aLo: number,
  aHi: number,
  bLo: number,
  bHi: number,
  flags: number,
): void {
  const signed = op !== Op.MUL;
  if (op !== Op.MUL && op !== Op.IMUL1 && op !== Op.IMUL2 && op !== Op.IMUL3) {
    throw new RangeError(`aluMul: op ${op} is not a multiply`);
  }
  let lo: number;
  let hi = 0;
  let xlo: number;
  let xhi = 0;
  let ov: boolean;
  if (size === 8) {
    if (signed) muls64(aLo, aHi, bLo, bHi);
    else mulu64(aLo, aHi, bLo, bHi);
    lo = prod[0]!;
    hi = prod[1]!;
    xlo = prod[2]!;
    xhi = prod[3]!;
    if (signed) {
      const s = hi >> 31;
      ov = xlo !== s || xhi !== s;
    } else {
      ov = (xlo | xhi) !== 0;
    }
  } else if (size === 4) {
    mulu32(aLo, bLo);
    lo = rLo;
    xlo = rHi;
    if (signed) {
      xlo = (xlo - ((aLo | 0) < 0 ? bLo >>> 0 : 0) - ((bLo | 0) < 0 ? aLo >>> 0 : 0)) | 0;
      ov = xlo !== lo >> 31;
    } else {
      ov = xlo !== 0;
    }
  } else {
    const bits = size << 3;
    const mask = maskOf(size);
    const p = signed ? sval(size, aLo) * sval(size, bLo) : uval(size, aLo) * uval(size, bLo);
    lo = p & mask;
    xlo = (p >> bits) & mask;
    ov = signed ? sval(size, p) !== p : xlo !== 0;
  }
  out[0] = lo;
  out[1] = hi;
  out[3] = xlo;
  out[4] = xhi;
  out[2] = (flags & ~(CF | OF)) | (ov ? CF | OF : 0);
}

// ---------------------------------------------------------------------------------------
// Divide (cold: BigInt allowed)

const B32 = 32n;
const M64 = (1n << 64n) - 1n;

function big(lo: number, hi: number): bigint {
  return (BigInt(hi >>> 0) << B32) | BigInt(lo >>> 0);
}

function fault(flags: number): void {
  out[0] = 0;
  out[1] = 0;
  out[2] = flags;
  out[3] = 0;
  out[4] = 0;
  out[5] = 1;
}

/**
 * Divide: DIV (unsigned) or IDIV (signed, quotient truncated toward zero, remainder with
 * the sign of the dividend). Dividend = hi:lo of 2*size bytes (size 1: AH:AL).
 * Quotient in aluOut[0..1], remainder in aluOut[3..4]; aluOut[5] = 1 (#DE) when the
 * divisor is 0 or the quotient does not fit in `size` bytes. All six arithmetic flags are
 * undefined; as on the oracle's CPU, CF and OF are returned unchanged, AF set, SF, ZF
 * and PF cleared. On #DE the flags are returned unchanged and the outputs are 0.
 *
 * @param op Op.DIV or Op.IDIV.
 * @param size Divisor size in bytes (1, 2, 4, 8).
 * @param hiLo High half of the dividend, low 32 bits (AH, DX, EDX, RDX).
 * @param hiHi High half of the dividend, high 32 bits (size 8 only).
 * @param loLo Low half of the dividend, low 32 bits (AL, AX, EAX, RAX).
 * @param loHi Low half of the dividend, high 32 bits (size 8 only).
 * @param dLo Divisor, low 32 bits.
 * @param dHi Divisor, high 32 bits (size 8 only).
 * @param flags RFLAGS in.
 * @returns Nothing; results in aluOut.
 * @example
 * ```ts
 * import { aluDiv, aluOut } from "./alu.ts";
 * import { Op } from "./insn.ts";
 * aluDiv(Op.DIV, 1, 0, 0, 100, 0, 7, 0, 0x2);
 * console.log(aluOut[0]!, aluOut[3]!, aluOut[5]!); // 14 2 0
 * ```
 */
export function aluDiv(
  op: number,
  size: number,
  hiLo: number,
  hiHi: number,
  loLo: number,
  loHi: number,
  dLo: number,
  dHi: number,
  flags: number,
): void {
  if (op !== Op.DIV && op !== Op.IDIV) throw new RangeError(`aluDiv: op ${op} is not a divide`);
  const signed = op === Op.IDIV;
  out[5] = 0;
  if (size <= 2) {
    const mask = maskOf(size);
    const d = signed ? sval(size, dLo) : uval(size, dLo);
    if (d === 0) return fault(flags);
    const n = size === 1
      ? ((hiLo & 0xff) << 8) | (loLo & 0xff)
      : ((hiLo & 0xffff) << 16) | (loLo & 0xffff);
    const nn = signed ? (size === 1 ? (n << 16) >> 16 : n | 0) : n >>> 0;
    const q = Math.trunc(nn / d);
    const r = nn - q * d;
    if (signed ? q !== sval(size, q) : q > mask) return fault(flags);
    out[0] = q & mask;
    out[1] = 0;
    out[2] = (flags & (NOT_ARITH | CF | OF)) | AF;
    out[3] = r & mask;
    out[4] = 0;
    return;
  }
  const bits = BigInt(size * 8);
  const wmask = (1n << bits) - 1n;
  let d = size === 8 ? big(dLo, dHi) : BigInt(dLo >>> 0);
  let n = size === 8
    ? (big(hiLo, hiHi) << 64n) | big(loLo, loHi)
    : (BigInt(hiLo >>> 0) << 32n) | BigInt(loLo >>> 0);
  if (d === 0n) return fault(flags);
  if (signed) {
    d = BigInt.asIntN(size * 8, d);
    n = BigInt.asIntN(size * 16, n);
  }
  const q = n / d;
  const r = n % d;
  if (signed ? BigInt.asIntN(size * 8, q) !== q : q > wmask) return fault(flags);
  const uq = q & M64;
  const ur = r & M64;
  out[0] = Number(uq & 0xffffffffn) | 0;
  out[1] = size === 8 ? Number(uq >> 32n) | 0 : 0;
  out[2] = (flags & (NOT_ARITH | CF | OF)) | AF;
  out[3] = Number(ur & 0xffffffffn) | 0;
  out[4] = size === 8 ? Number((ur >> 32n) & 0xffffffffn) | 0 : 0;
}

// ---------------------------------------------------------------------------------------
// Bit test, byte swap

/**
 * Bit test: BT, BTS, BTR, BTC on a register operand. CF = the old bit; ZF unchanged;
 * OF, SF, AF, PF undefined by the SDM (returned unchanged, as on the oracle's CPU).
 * BTS/BTR/BTC return the new
 * value in aluOut[0..1] (BT returns the operand unchanged).
 *
 * @param op Op.BT, Op.BTS, Op.BTR or Op.BTC.
 * @param size Operand size in bytes (2, 4, 8).
 * @param aLo Operand, low 32 bits.
 * @param aHi Operand, high 32 bits (size 8 only).
 * @param bit Bit offset, already reduced modulo 8*size.
 * @param flags RFLAGS in.
 * @returns Nothing; results in aluOut.
 * @example
 * ```ts
 * import { aluBit, aluOut } from "./alu.ts";
 * import { Op } from "./insn.ts";
 * aluBit(Op.BTS, 4, 0, 0, 3, 0x2);
 * console.log(aluOut[0]!, aluOut[2]! & 1); // 8 0
 * ```
 */
export function aluBit(
  op: number,
  size: number,
  aLo: number,
  aHi: number,
  bit: number,
  flags: number,
): void {
  let lo = size === 8 ? aLo | 0 : aLo & maskOf(size);
  let hi = size === 8 ? aHi | 0 : 0;
  const k = bit & 63;
  const inHi = k >= 32;
  const m = 1 << (k & 31);
  const word = inHi ? hi : lo;
  const cf = (word & m) !== 0 ? CF : 0;
  let w = word;
  switch (op) {
    case Op.BT:
      break;
    case Op.BTS:
      w = word | m;
      break;
    case Op.BTR:
      w = word & ~m;
      break;
    case Op.BTC:
      w = word ^ m;
      break;
    default:
      throw new RangeError(`aluBit: op ${op} is not a bit test`);
  }
  if (inHi) hi = w;
  else lo = w;
  put(lo, hi, (flags & ~CF) | cf);
}

/**
 * BSWAP: reverse the bytes of a 4- or 8-byte operand. Flags are not affected.
 *
 * @param size 4 or 8.
 * @param aLo Operand, low 32 bits.
 * @param aHi Operand, high 32 bits (size 8 only).
 * @returns Nothing; result in aluOut[0..1].
 * @example
 * ```ts
 * import { aluBswap, aluOut } from "./alu.ts";
 * aluBswap(4, 0x11223344, 0);
 * console.log(aluOut[0]!.toString(16)); // 44332211
 * ```
 */
export function aluBswap(size: number, aLo: number, aHi: number): void {
  if (size === 8) {
    out[0] = bswap32(aHi);
    out[1] = bswap32(aLo);
  } else {
    out[0] = bswap32(aLo);
    out[1] = 0;
  }
}

function bswap32(v: number): number {
  return (v << 24) | ((v & 0xff00) << 8) | ((v >>> 8) & 0xff00) | (v >>> 24);
}

// ---------------------------------------------------------------------------------------
// Conditions and undefined-flag masks

/**
 * Evaluates a condition code (the low nibble of Jcc / SETcc / CMOVcc) on RFLAGS.
 *
 * @param cc One of Cond.O..Cond.G (0–15).
 * @param flags RFLAGS.
 * @returns Whether the condition holds.
 * @example
 * ```ts
 * import { condition } from "./alu.ts";
 * import { Cond } from "./insn.ts";
 * console.log(condition(Cond.E, 0x46)); // true
 * ```
 */
export function condition(cc: number, flags: number): boolean {
  let r: boolean;
  switch (cc >> 1) {
    case 0:
      r = (flags & OF) !== 0;
      break;
    case 1:
      r = (flags & CF) !== 0;
      break;
    case 2:
      r = (flags & ZF) !== 0;
      break;
    case 3:
      r = (flags & (CF | ZF)) !== 0;
      break;
    case 4:
      r = (flags & SF) !== 0;
      break;
    case 5:
      r = (flags & PF) !== 0;
      break;
    case 6:
      r = ((flags & SF) !== 0) !== ((flags & OF) !== 0);
      break;
    default:
      r = (flags & ZF) !== 0 || ((flags & SF) !== 0) !== ((flags & OF) !== 0);
      break;
  }
  return (cc & 1) === 0 ? r : !r;
}

/**
 * The arithmetic flags the Intel SDM leaves undefined after an instruction, for masking
 * comparisons against another CPU (this library computes a specific value for them, see
 * each function's doc).
 *
 * - OR, AND, XOR, TEST: AF.
 * - SHL/SAL, SHR, SAR: AF when the masked count is non-zero; OF when the masked count is
 *   not 1; CF too for SHL/SHR when the masked count is >= the operand width
 *   (8-/16-bit operands only, as the count is masked to 5 or 6 bits).
 * - ROL, ROR, RCL, RCR: OF when the masked count is not 0 or 1.
 * - MUL, IMUL (all forms): SF, ZF, AF, PF.
 * - DIV, IDIV: all six.
 * - BT, BTS, BTR, BTC: OF, SF, AF, PF.
 * - Everything else: none.
 *
 * @param op An {@link Op} value.
 * @param size Operand size in bytes (used by shifts; default 4).
 * @param count Raw shift/rotate count (default 1).
 * @returns A mask of RFLAGS bits.
 * @example
 * ```ts
 * import { undefinedFlags } from "./alu.ts";
 * import { Op } from "./insn.ts";
 * console.log(undefinedFlags(Op.AND).toString(16)); // 10
 * ```
 */
export function undefinedFlags(op: number, size = 4, count = 1): number {
  switch (op) {
    case Op.OR:
    case Op.AND:
    case Op.XOR:
    case Op.TEST:
      return AF;
    case Op.SHL:
    case Op.SAL:
    case Op.SHR:
    case Op.SAR: {
      const n = count & (size === 8 ? 0x3f : 0x1f);
      if (n === 0) return 0;
      let m = AF;
      if (n !== 1) m |= OF;
      if (op !== Op.SAR && n >= size * 8) m |= CF;
      return m;
    }
    case Op.ROL:
    case Op.ROR:
    case Op.RCL:
    case Op.RCR: {
      const n = count & (size === 8 ? 0x3f : 0x1f);
      return n > 1 ? OF : 0;
    }
    case Op.MUL:
    case Op.IMUL1:
    case Op.IMUL2:
    case Op.IMUL3:
      return SF | ZF | AF | PF;
    case Op.DIV:
    case Op.IDIV:
      return ARITH;
    case Op.BT:
    case Op.BTS:
    case Op.BTR:
    case Op.BTC:
      return OF | SF | AF | PF;
    default:
      return 0;
  }
}
