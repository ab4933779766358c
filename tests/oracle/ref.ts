/**
 * A reference interpreter for the generated register-only instructions, built directly
 * on lib/x86/alu.ts: it lets the host-CPU oracle test the ALU before (and independently
 * of) the executor.
 *
 * @module
 */

import {
  aluBinary,
  aluBit,
  aluBswap,
  aluDiv,
  aluMul,
  aluOut,
  aluShift,
  aluUnary,
  condition,
  undefinedFlags,
} from "../../lib/x86/alu.ts";
import { ARITH, CF, OF } from "../../lib/x86/flags.ts";
import { Op } from "../../lib/x86/insn.ts";
import { type Case, type GenInsn, K } from "./cases.ts";

/** Register file: [2r] = low 32 bits, [2r+1] = high 32 bits, r = 0..15. */
export class RefState {
  r: Int32Array = new Int32Array(32);
  flags = 0;
  /** Arithmetic flags whose value is undefined (SDM) at this point. */
  undef = 0;
  /** 0 ok, 1 #DE. */
  status = 0;
  /** Set when an instruction consumed an undefined flag (its results depend on the CPU). */
  tainted = false;
  /** Set by a taken Jcc: the next instruction is skipped. */
  skip = false;
  constructor(readonly bits: number) {}
}

let tLo = 0;
let tHi = 0;

function read(s: RefState, reg: number, size: number): void {
  if (reg >= 16) {
    tLo = (s.r[(reg - 16) * 2]! >>> 8) & 0xff;
    tHi = 0;
    return;
  }
  const lo = s.r[reg * 2]!;
  tHi = 0;
  if (size === 1) tLo = lo & 0xff;
  else if (size === 2) tLo = lo & 0xffff;
  else {
    tLo = lo;
    if (size === 8) tHi = s.r[reg * 2 + 1]!;
  }
}

function write(s: RefState, reg: number, size: number, lo: number, hi: number): void {
  if (reg >= 16) {
    const i = (reg - 16) * 2;
    s.r[i] = (s.r[i]! & ~0xff00) | ((lo & 0xff) << 8);
    return;
  }
  const i = reg * 2;
  if (size === 1) s.r[i] = (s.r[i]! & ~0xff) | (lo & 0xff);
  else if (size === 2) s.r[i] = (s.r[i]! & ~0xffff) | (lo & 0xffff);
  else {
    s.r[i] = lo;
    s.r[i + 1] = size === 8 ? hi : 0;
  }
}

/** Flags read by a condition code. */
function ccFlags(cc: number): number {
  return [0x800, 0x1, 0x40, 0x41, 0x80, 0x4, 0x880, 0x8c0][cc >> 1]!;
}

function setFlags(s: RefState, written: number, undef: number): void {
  s.flags = aluOut[2]!;
  s.undef = (s.undef & ~written) | undef;
}

function consume(s: RefState, mask: number): void {
  if (s.undef & mask) s.tainted = true;
}

/** Executes one generated instruction. Returns false when it faulted (#DE). */
export function refStep(s: RefState, g: GenInsn): boolean {
  const size = g.size;
  switch (g.kind) {
    case K.ALU: {
      read(s, g.dst, size);
      const aLo = tLo;
      const aHi = tHi;
      let bLo = g.imm;
      let bHi = g.immHi;
      if (g.src >= 0) {
        read(s, g.src, size);
        bLo = tLo;
        bHi = tHi;
      }
      if (g.op === Op.ADC || g.op === Op.SBB) consume(s, CF);
      aluBinary(g.op, size, aLo, aHi, bLo, bHi, s.flags);
      if (g.op !== Op.CMP && g.op !== Op.TEST) write(s, g.dst, size, aluOut[0]!, aluOut[1]!);
      setFlags(s, ARITH, undefinedFlags(g.op, size));
      return true;
    }
    case K.UNARY: {
      read(s, g.dst, size);
      aluUnary(g.op, size, tLo, tHi, s.flags);
      write(s, g.dst, size, aluOut[0]!, aluOut[1]!);
      if (g.op === Op.INC || g.op === Op.DEC) setFlags(s, ARITH & ~CF, 0);
      else if (g.op === Op.NEG) setFlags(s, ARITH, 0);
      return true;
    }
    case K.SHIFT: {
      let count = 1;
      if (g.countSrc === 1) count = s.r[2]! & 0xff;
      else if (g.countSrc === 2) count = g.imm;
      read(s, g.dst, size);
      const masked = count & (size === 8 ? 0x3f : 0x1f);
      if (masked !== 0 && (g.op === Op.RCL || g.op === Op.RCR)) consume(s, CF);
      aluShift(g.op, size, tLo, tHi, count, s.flags);
      write(s, g.dst, size, aluOut[0]!, aluOut[1]!);
      if (masked !== 0) {
        const rot = g.op <= Op.RCR;
        setFlags(s, rot ? CF | OF : ARITH, undefinedFlags(g.op, size, count));
      }
      return true;
    }
    case K.MULDIV: {
      read(s, g.src, size);
      const bLo = tLo;
      const bHi = tHi;
      if (g.op === Op.MUL || g.op === Op.IMUL1) {
        read(s, 0, size);
        aluMul(g.op, size, tLo, tHi, bLo, bHi, s.flags);
        if (size === 1) {
          write(s, 0, 2, (aluOut[0]! & 0xff) | ((aluOut[3]! & 0xff) << 8), 0);
        } else {
          write(s, 0, size, aluOut[0]!, aluOut[1]!);
          write(s, 2, size, aluOut[3]!, aluOut[4]!);
        }
        setFlags(s, ARITH, undefinedFlags(g.op, size));
        return true;
      }
      let hiLo: number, hiHi: number, loLo: number, loHi: number;
      if (size === 1) {
        read(s, 16, 1);
        hiLo = tLo;
        hiHi = 0;
        read(s, 0, 1);
        loLo = tLo;
        loHi = 0;
      } else {
        read(s, 2, size);
        hiLo = tLo;
        hiHi = tHi;
        read(s, 0, size);
        loLo = tLo;
        loHi = tHi;
      }
      aluDiv(g.op, size, hiLo, hiHi, loLo, loHi, bLo, bHi, s.flags);
      if (aluOut[5] !== 0) {
        s.status = 1;
        return false;
      }
      if (size === 1) {
        write(s, 0, 2, (aluOut[0]! & 0xff) | ((aluOut[3]! & 0xff) << 8), 0);
      } else {
        write(s, 0, size, aluOut[0]!, aluOut[1]!);
        write(s, 2, size, aluOut[3]!, aluOut[4]!);
      }
      setFlags(s, ARITH, undefinedFlags(g.op, size));
      return true;
    }
    case K.IMUL2:
    case K.IMUL3: {
      let aLo: number, aHi: number;
      if (g.kind === K.IMUL2) {
        read(s, g.dst, size);
        aLo = tLo;
        aHi = tHi;
        read(s, g.src, size);
      } else {
        read(s, g.src, size);
        aLo = g.imm;
        aHi = g.immHi;
      }
      aluMul(g.op, size, tLo, tHi, aLo, aHi, s.flags);
      write(s, g.dst, size, aluOut[0]!, aluOut[1]!);
      setFlags(s, ARITH, undefinedFlags(g.op, size));
      return true;
    }
    case K.BT: {
      let bit = g.imm;
      if (g.src >= 0) {
        read(s, g.src, size);
        bit = tLo;
      }
      bit &= size * 8 - 1;
      read(s, g.dst, size);
      aluBit(g.op, size, tLo, tHi, bit, s.flags);
      if (g.op !== Op.BT) write(s, g.dst, size, aluOut[0]!, aluOut[1]!);
      setFlags(s, ARITH & ~0x40, undefinedFlags(g.op, size));
      return true;
    }
    case K.BSWAP: {
      read(s, g.dst, size);
      aluBswap(size, tLo, tHi);
      write(s, g.dst, size, aluOut[0]!, aluOut[1]!);
      return true;
    }
    case K.XCHG: {
      read(s, g.dst, size);
      const aLo = tLo;
      const aHi = tHi;
      read(s, g.src, size);
      write(s, g.dst, size, tLo, tHi);
      write(s, g.src, size, aLo, aHi);
      return true;
    }
    case K.CMPXCHG: {
      read(s, g.dst, size);
      const dLo = tLo;
      const dHi = tHi;
      read(s, 0, size);
      aluBinary(Op.CMP, size, tLo, tHi, dLo, dHi, s.flags);
      const flags = aluOut[2]!;
      if (flags & 0x40) {
        read(s, g.src, size);
        write(s, g.dst, size, tLo, tHi);
      } else {
        write(s, 0, size, dLo, dHi);
      }
      s.flags = flags;
      s.undef = 0;
      return true;
    }
    case K.XADD: {
      read(s, g.dst, size);
      const dLo = tLo;
      const dHi = tHi;
      read(s, g.src, size);
      aluBinary(Op.ADD, size, dLo, dHi, tLo, tHi, s.flags);
      const rLo = aluOut[0]!;
      const rHi = aluOut[1]!;
      setFlags(s, ARITH, 0);
      write(s, g.src, size, dLo, dHi);
      write(s, g.dst, size, rLo, rHi);
      return true;
    }
    case K.MOVX: {
      read(s, g.src, g.srcSize);
      let lo = tLo;
      let hi = 0;
      if (g.op === Op.MOVSX) {
        lo = g.srcSize === 1 ? (lo << 24) >> 24 : g.srcSize === 2 ? (lo << 16) >> 16 : lo | 0;
        hi = lo >> 31;
      }
      write(s, g.dst, size, lo, hi);
      return true;
    }
    case K.SETCC:
      consume(s, ccFlags(g.cc));
      write(s, g.dst, 1, condition(g.cc, s.flags) ? 1 : 0, 0);
      return true;
    case K.CMOVCC: {
      consume(s, ccFlags(g.cc));
      read(s, condition(g.cc, s.flags) ? g.src : g.dst, size);
      write(s, g.dst, size, tLo, tHi);
      return true;
    }
    case K.CBW: {
      read(s, 0, size);
      if (size === 2) write(s, 0, 2, ((tLo << 24) >> 24) & 0xffff, 0);
      else if (size === 4) write(s, 0, 4, (tLo << 16) >> 16, 0);
      else write(s, 0, 8, tLo, tLo >> 31);
      return true;
    }
    case K.CWD: {
      read(s, 0, size);
      const sign = size === 2 ? (tLo << 16) >> 31 : size === 4 ? tLo >> 31 : tHi >> 31;
      write(s, 2, size, sign, sign);
      return true;
    }
    case K.LEA: {
      // 64-bit arithmetic in BigInt: LEA is not on the ALU's path.
      let a = BigInt(g.disp);
      if (g.base >= 0) {
        read(s, g.base, 8);
        a += (BigInt(tHi >>> 0) << 32n) | BigInt(tLo >>> 0);
      }
      if (g.index >= 0) {
        read(s, g.index, 8);
        a += ((BigInt(tHi >>> 0) << 32n) | BigInt(tLo >>> 0)) << BigInt(g.scale);
      }
      if (g.addrSize === 4 || s.bits === 32) a &= 0xffffffffn;
      write(s, g.dst, size, Number(a & 0xffffffffn) | 0, Number((a >> 32n) & 0xffffffffn) | 0);
      return true;
    }
    case K.MOV: {
      let lo = g.imm;
      let hi = g.immHi;
      if (g.src >= 0) {
        read(s, g.src, size);
        lo = tLo;
        hi = tHi;
      }
      write(s, g.dst, size, lo, hi);
      return true;
    }
    case K.FLAGOP:
      if (g.op === Op.CMC) consume(s, CF);
      s.flags = g.op === Op.CLC ? s.flags & ~CF : g.op === Op.STC ? s.flags | CF : s.flags ^ CF;
      s.undef &= ~CF;
      return true;
    case K.PUSHPOP:
      read(s, g.src, size);
      write(s, g.dst, size, tLo, tHi);
      return true;
    case K.PUSHF:
      consume(s, ARITH);
      write(s, g.dst, size, s.flags, 0);
      return true;
    case K.JCC:
      consume(s, ccFlags(g.cc));
      s.skip = condition(g.cc, s.flags);
      return true;
    default:
      throw new Error(`ref: unknown kind ${g.kind}`);
  }
}

/** Runs a whole case; returns the final state. */
export function refRun(c: Case, bits: number): RefState {
  const s = new RefState(bits);
  for (let i = 0; i < 16; i++) {
    const v = c.regs[i]!;
    s.r[i * 2] = Number(v & 0xffffffffn) | 0;
    s.r[i * 2 + 1] = bits === 64 ? Number(v >> 32n) | 0 : 0;
  }
  s.flags = c.flags;
  for (const g of c.insns) {
    if (s.skip) {
      s.skip = false;
      continue;
    }
    if (!refStep(s, g)) break;
  }
  return s;
}
