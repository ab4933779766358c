/**
 * Random register-only instruction sequences for the host-CPU oracle, drawn from the fuzz
 * suite's seeded {@link Rng} (tests/fuzz/prng.ts): a small encoder for the ALU-class
 * instructions, and the binary case format read by tests/oracle/harness.c.
 *
 * Each generated instruction carries both its machine code and a descriptor
 * ({@link GenInsn}) that tests/oracle/ref.ts executes with lib/x86/alu.ts.
 *
 * @module
 */

import { Op } from "../../lib/x86/insn.ts";
import type { Rng } from "../fuzz/prng.ts";

/** Descriptor kinds understood by the reference interpreter. */
export const K = {
  ALU: 1,
  UNARY: 2,
  SHIFT: 3,
  MULDIV: 4,
  IMUL2: 5,
  IMUL3: 6,
  BT: 7,
  BSWAP: 8,
  XCHG: 9,
  CMPXCHG: 10,
  XADD: 11,
  MOVX: 12,
  SETCC: 13,
  CMOVCC: 14,
  CBW: 15,
  CWD: 16,
  LEA: 17,
  MOV: 18,
  /** CLC / STC / CMC (op). */
  FLAGOP: 19,
  /** push src; pop dst (two instructions, one descriptor). */
  PUSHPOP: 20,
  /** pushf; pop dst. */
  PUSHF: 21,
  /** Jcc rel8 over the next instruction (skips it when the condition holds). */
  JCC: 22,
} as const;

/** One generated instruction: its bytes and what it does. */
export interface GenInsn {
  bytes: number[];
  kind: number;
  op: number;
  /** Operand size (destination size for MOVX). */
  size: number;
  /** Destination register (Reg numbering, 16–19 = AH..BH), -1 none. */
  dst: number;
  /** Source register, -1 when the source is an immediate (or none). */
  src: number;
  /** Source size for MOVZX/MOVSX. */
  srcSize: number;
  /** Immediate, already extended to the operand: low and high 32 bits. */
  imm: number;
  immHi: number;
  /** SHIFT count source: 0 = the constant 1, 1 = CL, 2 = imm8. */
  countSrc: number;
  cc: number;
  base: number;
  index: number;
  scale: number;
  disp: number;
  addrSize: number;
}

/** A case: initial registers (16 × 64-bit, as BigInt), initial RFLAGS, instructions. */
export interface Case {
  regs: bigint[];
  flags: number;
  insns: GenInsn[];
}

const M64 = (1n << 64n) - 1n;

function blank(): GenInsn {
  return {
    bytes: [],
    kind: 0,
    op: 0,
    size: 4,
    dst: -1,
    src: -1,
    srcSize: 0,
    imm: 0,
    immHi: 0,
    countSrc: 0,
    cc: 0,
    base: -1,
    index: -1,
    scale: 0,
    disp: 0,
    addrSize: 8,
  };
}

const LEGACY_WIDE = [0, 1, 2, 3, 5, 6, 7];
const LEGACY_BYTE = [0, 1, 2, 3, 16, 17, 18, 19];
const REX_ANY = [0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];

/** Register choice for one instruction (keeps AH..BH and REX apart, never rsp/esp/spl). */
class Regs {
  hi8: boolean;
  constructor(readonly rng: Rng, readonly bits: number, hasByte: boolean) {
    this.hi8 = bits === 32 || (hasByte && rng.chance(0.3));
  }
  byte(): number {
    return this.rng.pick(this.hi8 ? LEGACY_BYTE : REX_ANY);
  }
  wide(): number {
    return this.rng.pick(this.hi8 ? LEGACY_WIDE : REX_ANY);
  }
  of(size: number): number {
    return size === 1 ? this.byte() : this.wide();
  }
}

interface EncOpts {
  size: number;
  /** Opcode bytes (after prefixes and REX). */
  opc: number[];
  /** ModRM reg field: a register (regIsReg) or an opcode extension digit. */
  reg: number;
  regIsReg: boolean;
  regByte: boolean;
  /** ModRM rm register (mod = 11). */
  rm: number;
  rmByte: boolean;
  imm?: number[];
  /** No REX.W even for size 8 (instructions defaulting to 64 bits); unused here. */
  w?: boolean;
  p66?: boolean;
}

function rexBits(r: number, isByte: boolean): { ext: number; force: boolean; hi: boolean } {
  if (r >= 16) return { ext: 0, force: false, hi: true };
  return { ext: r >= 8 ? 1 : 0, force: isByte && r >= 4 && r <= 7, hi: false };
}

function field(r: number): number {
  return r >= 16 ? r - 12 : r & 7;
}

function encRR(o: EncOpts): number[] {
  const out: number[] = [];
  if (o.p66 ?? o.size === 2) out.push(0x66);
  const w = o.w ?? o.size === 8;
  let rex = w ? 8 : 0;
  let force = false;
  let hi = false;
  if (o.regIsReg) {
    const b = rexBits(o.reg, o.regByte);
    rex |= b.ext << 2;
    force ||= b.force;
    hi ||= b.hi;
  }
  const b = rexBits(o.rm, o.rmByte);
  rex |= b.ext;
  force ||= b.force;
  hi ||= b.hi;
  if (rex !== 0 || force) {
    if (hi) throw new Error("encoder: AH..BH together with REX");
    out.push(0x40 | rex);
  }
  out.push(...o.opc);
  out.push(0xc0 | ((o.regIsReg ? field(o.reg) : o.reg) << 3) | field(o.rm));
  if (o.imm) out.push(...o.imm);
  return out;
}

function immBytes(v: number, n: number): number[] {
  const b: number[] = [];
  for (let i = 0; i < n; i++) b.push((v >>> (8 * i)) & 0xff);
  return b;
}

function randImm(rng: Rng, n: number): number {
  const r = rng.int(4);
  if (r === 0) return rng.int(5) - 2;
  if (r === 1) {
    const s = rng.pick([0x7f, 0x80, 0xff, 0x7fff, 0x8000, 0xffff, 0x7fffffff, 0x80000000]);
    return s + rng.int(3) - 1;
  }
  const v = rng.u32();
  return n === 1 ? v & 0xff : n === 2 ? v & 0xffff : v | 0;
}

/** Sign- or zero-extends an immediate of n bytes to the operand size, as (lo, hi). */
function extImm(g: GenInsn, v: number, n: number, size: number): void {
  let lo = n === 1 ? (v << 24) >> 24 : n === 2 ? (v << 16) >> 16 : v | 0;
  if (size === 1) lo &= 0xff;
  else if (size === 2) lo &= 0xffff;
  g.imm = lo;
  g.immHi = size === 8 ? lo >> 31 : 0;
}

function sizes(bits: number, byte: boolean): number[] {
  const s = bits === 64 ? [2, 4, 8, 8, 4] : [2, 4, 4];
  return byte ? [1, 1, ...s] : s;
}

type Gen = (rng: Rng, bits: number) => GenInsn | GenInsn[];

const genAlu: Gen = (rng, bits) => {
  const g = blank();
  g.kind = K.ALU;
  const isTest = rng.chance(1 / 9);
  g.op = isTest ? Op.TEST : Op.ADD + rng.int(8);
  const size = rng.pick(sizes(bits, true));
  g.size = size;
  const regs = new Regs(rng, bits, size === 1);
  const form = rng.int(isTest ? 3 : 5);
  const base = (g.op - Op.ADD) * 8;
  const wbit = size === 1 ? 0 : 1;
  if (form === 0 || form === 1) {
    // rm, reg (or reg, rm)
    g.dst = regs.of(size);
    g.src = regs.of(size);
    const opc = isTest ? 0x84 + wbit : base + wbit + (form === 1 ? 2 : 0);
    g.bytes = form === 1 && !isTest
      ? encRR({
        size,
        opc: [opc],
        reg: g.dst,
        regIsReg: true,
        regByte: size === 1,
        rm: g.src,
        rmByte: size === 1,
      })
      : encRR({
        size,
        opc: [opc],
        reg: g.src,
        regIsReg: true,
        regByte: size === 1,
        rm: g.dst,
        rmByte: size === 1,
      });
  } else if (form === 2) {
    // accumulator, imm
    g.dst = 0;
    const n = size === 1 ? 1 : size === 2 ? 2 : 4;
    const v = randImm(rng, n);
    extImm(g, v, n, size);
    const opc = isTest ? 0xa8 + wbit : base + 4 + wbit;
    g.bytes = [
      ...(size === 2 ? [0x66] : []),
      ...(size === 8 ? [0x48] : []),
      opc,
      ...immBytes(v, n),
    ];
  } else {
    // 80/81/83 /op (F6/F7 /0 for TEST)
    g.dst = regs.of(size);
    const short = size !== 1 && form === 4;
    const n = size === 1 || short ? 1 : size === 2 ? 2 : 4;
    const v = randImm(rng, n);
    extImm(g, v, n, size);
    const opc = isTest ? 0xf6 + wbit : size === 1 ? 0x80 : short ? 0x83 : 0x81;
    g.bytes = encRR({
      size,
      opc: [opc],
      reg: isTest ? 0 : g.op - Op.ADD,
      regIsReg: false,
      regByte: false,
      rm: g.dst,
      rmByte: size === 1,
      imm: immBytes(v, n),
    });
  }
  return g;
};

const genUnary: Gen = (rng, bits) => {
  const g = blank();
  g.kind = K.UNARY;
  g.op = rng.pick([Op.INC, Op.DEC, Op.NEG, Op.NOT]);
  const size = rng.pick(sizes(bits, true));
  g.size = size;
  const regs = new Regs(rng, bits, size === 1);
  g.dst = regs.of(size);
  if (bits === 32 && size !== 1 && (g.op === Op.INC || g.op === Op.DEC) && rng.chance(0.5)) {
    g.bytes = [...(size === 2 ? [0x66] : []), (g.op === Op.INC ? 0x40 : 0x48) + g.dst];
    return g;
  }
  const digit = g.op === Op.INC ? 0 : g.op === Op.DEC ? 1 : g.op === Op.NOT ? 2 : 3;
  const opc = g.op === Op.INC || g.op === Op.DEC ? 0xfe : 0xf6;
  g.bytes = encRR({
    size,
    opc: [opc + (size === 1 ? 0 : 1)],
    reg: digit,
    regIsReg: false,
    regByte: false,
    rm: g.dst,
    rmByte: size === 1,
  });
  return g;
};

const genShift: Gen = (rng, bits) => {
  const g = blank();
  g.kind = K.SHIFT;
  const digit = rng.int(8);
  g.op = Op.ROL + digit;
  const size = rng.pick(sizes(bits, true));
  g.size = size;
  const regs = new Regs(rng, bits, size === 1);
  g.dst = regs.of(size);
  g.countSrc = rng.int(3);
  const wbit = size === 1 ? 0 : 1;
  let opc: number;
  let imm: number[] | undefined;
  if (g.countSrc === 0) opc = 0xd0 + wbit;
  else if (g.countSrc === 1) opc = 0xd2 + wbit;
  else {
    opc = 0xc0 + wbit;
    const r = rng.int(4);
    const c = r === 0 ? rng.int(256) : r === 1 ? rng.int(4) : rng.int(size * 8 + 3);
    g.imm = c;
    imm = [c];
  }
  const o: EncOpts = {
    size,
    opc: [opc],
    reg: digit,
    regIsReg: false,
    regByte: false,
    rm: g.dst,
    rmByte: size === 1,
  };
  if (imm) o.imm = imm;
  g.bytes = encRR(o);
  return g;
};

const genMulDiv: Gen = (rng, bits) => {
  const g = blank();
  g.kind = K.MULDIV;
  const digit = 4 + rng.int(4);
  g.op = [Op.MUL, Op.IMUL1, Op.DIV, Op.IDIV][digit - 4]!;
  const size = rng.pick(sizes(bits, true));
  g.size = size;
  const regs = new Regs(rng, bits, size === 1);
  g.src = regs.of(size);
  g.bytes = encRR({
    size,
    opc: [0xf6 + (size === 1 ? 0 : 1)],
    reg: digit,
    regIsReg: false,
    regByte: false,
    rm: g.src,
    rmByte: size === 1,
  });
  return g;
};

const genImul: Gen = (rng, bits) => {
  const g = blank();
  const size = rng.pick(sizes(bits, false));
  g.size = size;
  const regs = new Regs(rng, bits, false);
  g.dst = regs.wide();
  g.src = regs.wide();
  if (rng.chance(0.5)) {
    g.kind = K.IMUL2;
    g.op = Op.IMUL2;
    g.bytes = encRR({
      size,
      opc: [0x0f, 0xaf],
      reg: g.dst,
      regIsReg: true,
      regByte: false,
      rm: g.src,
      rmByte: false,
    });
  } else {
    g.kind = K.IMUL3;
    g.op = Op.IMUL3;
    const n = rng.chance(0.5) ? 1 : size === 2 ? 2 : 4;
    const v = randImm(rng, n);
    extImm(g, v, n, size);
    g.bytes = encRR({
      size,
      opc: [n === 1 ? 0x6b : 0x69],
      reg: g.dst,
      regIsReg: true,
      regByte: false,
      rm: g.src,
      rmByte: false,
      imm: immBytes(v, n),
    });
  }
  return g;
};

const genBt: Gen = (rng, bits) => {
  const g = blank();
  g.kind = K.BT;
  const k = rng.int(4);
  g.op = Op.BT + k;
  const size = rng.pick(sizes(bits, false));
  g.size = size;
  const regs = new Regs(rng, bits, false);
  g.dst = regs.wide();
  if (rng.chance(0.5)) {
    g.src = regs.wide();
    g.bytes = encRR({
      size,
      opc: [0x0f, [0xa3, 0xab, 0xb3, 0xbb][k]!],
      reg: g.src,
      regIsReg: true,
      regByte: false,
      rm: g.dst,
      rmByte: false,
    });
  } else {
    const v = rng.int(256);
    g.imm = v;
    g.bytes = encRR({
      size,
      opc: [0x0f, 0xba],
      reg: 4 + k,
      regIsReg: false,
      regByte: false,
      rm: g.dst,
      rmByte: false,
      imm: [v],
    });
  }
  return g;
};

const genBswap: Gen = (rng, bits) => {
  const g = blank();
  g.kind = K.BSWAP;
  g.op = Op.BSWAP;
  g.size = bits === 64 && rng.chance(0.5) ? 8 : 4;
  g.dst = new Regs(rng, bits, false).wide();
  const rex = (g.size === 8 ? 8 : 0) | (g.dst >= 8 ? 1 : 0);
  g.bytes = [...(rex ? [0x40 | rex] : []), 0x0f, 0xc8 + (g.dst & 7)];
  return g;
};

const genXchgFamily: Gen = (rng, bits) => {
  const g = blank();
  const which = rng.int(3);
  g.kind = [K.XCHG, K.CMPXCHG, K.XADD][which]!;
  g.op = [Op.XCHG, Op.CMPXCHG, Op.XADD][which]!;
  const size = rng.pick(sizes(bits, true));
  g.size = size;
  const regs = new Regs(rng, bits, size === 1);
  g.dst = regs.of(size);
  g.src = regs.of(size);
  const wbit = size === 1 ? 0 : 1;
  if (which === 0 && size !== 1 && rng.chance(0.3)) {
    // 90+r: xchg eAX, r (90 itself is NOP, so r != 0 unless REX.B)
    g.dst = 0;
    if (g.src === 0) g.src = bits === 64 ? 8 : 1;
    const rex = (size === 8 ? 8 : 0) | (g.src >= 8 ? 1 : 0);
    g.bytes = [...(size === 2 ? [0x66] : []), ...(rex ? [0x40 | rex] : []), 0x90 + (g.src & 7)];
    return g;
  }
  const opc = which === 0 ? [0x86 + wbit] : which === 1 ? [0x0f, 0xb0 + wbit] : [0x0f, 0xc0 + wbit];
  g.bytes = encRR({
    size,
    opc,
    reg: g.src,
    regIsReg: true,
    regByte: size === 1,
    rm: g.dst,
    rmByte: size === 1,
  });
  return g;
};

const genMovx: Gen = (rng, bits) => {
  const g = blank();
  g.kind = K.MOVX;
  const sxd = bits === 64 && rng.chance(0.15);
  if (sxd) {
    g.op = Op.MOVSX;
    g.size = 8;
    g.srcSize = 4;
    const regs = new Regs(rng, bits, false);
    g.dst = regs.wide();
    g.src = regs.wide();
    g.bytes = encRR({
      size: 8,
      opc: [0x63],
      reg: g.dst,
      regIsReg: true,
      regByte: false,
      rm: g.src,
      rmByte: false,
    });
    return g;
  }
  g.op = rng.chance(0.5) ? Op.MOVZX : Op.MOVSX;
  g.srcSize = rng.chance(0.6) ? 1 : 2;
  g.size = rng.pick(
    g.srcSize === 1 ? sizes(bits, false) : sizes(bits, false).filter((s) => s !== 2),
  );
  // REX.W and AH..BH cannot meet in one instruction.
  const regs = new Regs(rng, bits, g.srcSize === 1 && g.size !== 8);
  g.dst = regs.wide();
  g.src = g.srcSize === 1 ? regs.byte() : regs.wide();
  const opc = (g.op === Op.MOVZX ? 0xb6 : 0xbe) + (g.srcSize === 1 ? 0 : 1);
  g.bytes = encRR({
    size: g.size,
    opc: [0x0f, opc],
    reg: g.dst,
    regIsReg: true,
    regByte: false,
    rm: g.src,
    rmByte: g.srcSize === 1,
  });
  return g;
};

const genSetcc: Gen = (rng, bits) => {
  const g = blank();
  g.kind = K.SETCC;
  g.op = Op.SETCC;
  g.size = 1;
  g.cc = rng.int(16);
  g.dst = new Regs(rng, bits, true).byte();
  g.bytes = encRR({
    size: 1,
    opc: [0x0f, 0x90 + g.cc],
    reg: 0,
    regIsReg: false,
    regByte: false,
    rm: g.dst,
    rmByte: true,
  });
  return g;
};

const genCmov: Gen = (rng, bits) => {
  const g = blank();
  g.kind = K.CMOVCC;
  g.op = Op.CMOVCC;
  g.size = rng.pick(sizes(bits, false));
  g.cc = rng.int(16);
  const regs = new Regs(rng, bits, false);
  g.dst = regs.wide();
  g.src = regs.wide();
  g.bytes = encRR({
    size: g.size,
    opc: [0x0f, 0x40 + g.cc],
    reg: g.dst,
    regIsReg: true,
    regByte: false,
    rm: g.src,
    rmByte: false,
  });
  return g;
};

const genCbw: Gen = (rng, bits) => {
  const g = blank();
  const cwd = rng.chance(0.5);
  g.kind = cwd ? K.CWD : K.CBW;
  g.op = cwd ? Op.CWD : Op.CBW;
  g.size = rng.pick(sizes(bits, false));
  g.bytes = [...(g.size === 2 ? [0x66] : []), ...(g.size === 8 ? [0x48] : []), cwd ? 0x99 : 0x98];
  return g;
};

const genLea: Gen = (rng, bits) => {
  const g = blank();
  g.kind = K.LEA;
  g.op = Op.LEA;
  g.size = rng.pick(sizes(bits, false));
  g.addrSize = bits === 64 ? (rng.chance(0.25) ? 4 : 8) : 4;
  const regs = new Regs(rng, bits, false);
  g.dst = regs.wide();
  // Always a SIB byte: base field 4 (rsp) is avoided, index field 4 without REX.X is "none".
  const noBase = rng.chance(0.1);
  g.base = noBase ? -1 : regs.wide();
  g.index = rng.chance(0.2) ? -1 : regs.wide();
  g.scale = rng.int(4);
  const mod = noBase ? 0 : g.base === 5 || g.base === 13 ? 1 + rng.int(2) : rng.int(3);
  const dispN = noBase ? 4 : mod === 1 ? 1 : mod === 2 ? 4 : 0;
  const dv = dispN === 0 ? 0 : dispN === 1 ? (rng.int(256) << 24) >> 24 : randImm(rng, 4);
  g.disp = dv | 0;
  const baseField = noBase ? 5 : g.base & 7;
  const indexField = g.index < 0 ? 4 : g.index & 7;
  const rex = (g.size === 8 ? 8 : 0) | (g.dst >= 8 ? 4 : 0) | (g.index >= 8 ? 2 : 0) |
    (g.base >= 8 ? 1 : 0);
  g.bytes = [
    ...(g.size === 2 ? [0x66] : []),
    ...(g.addrSize === 4 && bits === 64 ? [0x67] : []),
    ...(rex ? [0x40 | rex] : []),
    0x8d,
    (mod << 6) | ((g.dst & 7) << 3) | 4,
    (g.scale << 6) | (indexField << 3) | baseField,
    ...immBytes(dv, dispN),
  ];
  return g;
};

const genMov: Gen = (rng, bits) => {
  const g = blank();
  g.kind = K.MOV;
  g.op = Op.MOV;
  const size = rng.pick(sizes(bits, true));
  g.size = size;
  const regs = new Regs(rng, bits, size === 1);
  g.dst = regs.of(size);
  const form = rng.int(3);
  if (form === 0) {
    g.src = regs.of(size);
    g.bytes = encRR({
      size,
      opc: [0x88 + (size === 1 ? 0 : 1)],
      reg: g.src,
      regIsReg: true,
      regByte: size === 1,
      rm: g.dst,
      rmByte: size === 1,
    });
  } else if (form === 1 && size === 8) {
    // movabs r64, imm64
    const lo = rng.u32() | 0;
    const hi = rng.u32() | 0;
    g.imm = lo;
    g.immHi = hi;
    g.bytes = [
      0x48 | (g.dst >= 8 ? 1 : 0),
      0xb8 + (g.dst & 7),
      ...immBytes(lo, 4),
      ...immBytes(hi, 4),
    ];
  } else {
    const n = size === 1 ? 1 : size === 2 ? 2 : 4;
    const v = randImm(rng, n);
    extImm(g, v, n, size);
    g.bytes = encRR({
      size,
      opc: [size === 1 ? 0xc6 : 0xc7],
      reg: 0,
      regIsReg: false,
      regByte: false,
      rm: g.dst,
      rmByte: size === 1,
      imm: immBytes(v, n),
    });
  }
  return g;
};

const genFlagOp: Gen = (rng) => {
  const g = blank();
  g.kind = K.FLAGOP;
  const k = rng.int(3);
  g.op = [Op.CLC, Op.STC, Op.CMC][k]!;
  g.bytes = [[0xf8, 0xf9, 0xf5][k]!];
  return g;
};

const genStack: Gen = (rng, bits) => {
  const g = blank();
  const regs = new Regs(rng, bits, false);
  g.size = bits === 64 ? 8 : 4;
  g.dst = regs.wide();
  const pop = [...(g.dst >= 8 ? [0x41] : []), 0x58 + (g.dst & 7)];
  if (rng.chance(0.5)) {
    g.kind = K.PUSHF;
    g.op = Op.PUSHF;
    g.bytes = [0x9c, ...pop];
  } else {
    g.kind = K.PUSHPOP;
    g.op = Op.PUSH;
    g.src = regs.wide();
    g.bytes = [...(g.src >= 8 ? [0x41] : []), 0x50 + (g.src & 7), ...pop];
  }
  return g;
};

const genJcc: Gen = (rng, bits) => {
  const g = blank();
  g.kind = K.JCC;
  g.op = Op.JCC;
  g.cc = rng.int(16);
  let next = genInsn(rng, bits);
  while (next.length !== 1 || next[0]!.kind === K.JCC) next = genInsn(rng, bits);
  g.bytes = [0x70 + g.cc, next[0]!.bytes.length];
  return [g, next[0]!];
};

const GENS: [Gen, number][] = [
  [genFlagOp, 2],
  [genStack, 3],
  [genJcc, 4],
  [genAlu, 30],
  [genUnary, 8],
  [genShift, 20],
  [genMulDiv, 12],
  [genImul, 6],
  [genBt, 6],
  [genBswap, 2],
  [genXchgFamily, 6],
  [genMovx, 4],
  [genSetcc, 4],
  [genCmov, 4],
  [genCbw, 2],
  [genLea, 4],
  [genMov, 2],
];
const TOTAL = GENS.reduce((s, [, w]) => s + w, 0);

/** One random instruction (two for Jcc: the jump and the instruction it may skip). */
export function genInsn(rng: Rng, bits: number): GenInsn[] {
  let r = rng.int(TOTAL);
  for (const [gen, w] of GENS) {
    if (r < w) {
      const g = gen(rng, bits);
      return Array.isArray(g) ? g : [g];
    }
    r -= w;
  }
  return [genAlu(rng, bits) as GenInsn];
}

const SPECIAL = [
  0n,
  1n,
  M64,
  0x7fn,
  0x80n,
  0xffn,
  0x7fffn,
  0x8000n,
  0xffffn,
  0x7fffffffn,
  0x80000000n,
  0xffffffffn,
  0x7fffffffffffffffn,
  0x8000000000000000n,
  0xffffffff80000000n,
  0xffffffffffff8000n,
  0xffffffffffffff80n,
];

function randU64(rng: Rng): bigint {
  return (BigInt(rng.u32()) << 32n) | BigInt(rng.u32());
}

/** A register value biased towards the interesting ones. */
export function randValue(rng: Rng): bigint {
  const r = rng.int(10);
  if (r < 3) return randU64(rng);
  if (r < 5) return BigInt(rng.int(0x200) - 0x100) & M64;
  if (r < 8) return (rng.pick(SPECIAL) + BigInt(rng.int(5) - 2)) & M64;
  // random in the low bytes with a random sign bit position set/cleared
  const bitsN = BigInt(rng.pick([8, 16, 32]));
  return (randU64(rng) & ((1n << bitsN) - 1n)) |
    (rng.chance(0.5) ? M64 ^ ((1n << bitsN) - 1n) : 0n);
}

/** Reads register `r` (with AH..BH as 16–19) of `size` bytes from a BigInt register file. */
function readBig(regs: bigint[], r: number, size: number): bigint {
  if (r >= 16) return (regs[r - 16]! >> 8n) & 0xffn;
  return regs[r]! & ((1n << BigInt(size * 8)) - 1n);
}

function writeBig(regs: bigint[], r: number, size: number, v: bigint): void {
  if (r >= 16) {
    regs[r - 16] = (regs[r - 16]! & ~0xff00n & M64) | ((v & 0xffn) << 8n);
    return;
  }
  const m = (1n << BigInt(size * 8)) - 1n;
  regs[r] = (regs[r]! & ~m & M64) | (v & m);
}

/**
 * Makes a DIV/IDIV that starts a sequence mostly not fault: the high half of the dividend
 * becomes smaller than the divisor (DIV) or the sign extension of the low half (IDIV).
 */
function tameDivide(rng: Rng, regs: bigint[], g: GenInsn): void {
  if (rng.chance(0.1)) return; // keep some #DE
  const s = g.size;
  const hiReg = s === 1 ? 16 : 2;
  const loReg = 0;
  if (g.src === hiReg || (s > 1 && g.src === loReg)) return;
  const bitsN = BigInt(s * 8);
  let d = readBig(regs, g.src, s);
  if (d === 0n) {
    d = BigInt(rng.int(100) + 1);
    writeBig(regs, g.src, s, d);
  }
  if (g.op === Op.DIV) {
    writeBig(regs, hiReg, s, randU64(rng) % d);
  } else {
    const lo = readBig(regs, s === 1 ? 0 : loReg, s);
    const neg = (lo >> (bitsN - 1n)) & 1n;
    writeBig(regs, hiReg, s, neg ? M64 : 0n);
  }
}

/** A random case of 1..maxLen instructions. */
export function genCase(rng: Rng, bits: number, maxLen: number): Case {
  const regs: bigint[] = [];
  for (let i = 0; i < 16; i++) {
    let v = randValue(rng);
    if (bits === 32) v &= 0xffffffffn;
    regs.push(v);
  }
  regs[4] = 0n;
  if (bits === 32) { for (let i = 8; i < 16; i++) regs[i] = 0n; }
  const n = 1 + rng.int(maxLen);
  const insns: GenInsn[] = [];
  for (let i = 0; i < n; i++) insns.push(...genInsn(rng, bits));
  const first = insns[0]!;
  if (first.kind === K.MULDIV && (first.op === Op.DIV || first.op === Op.IDIV)) {
    tameDivide(rng, regs, first);
  }
  const flags = 0x202 | (rng.u32() & 0x8d5);
  return { regs, flags, insns };
}

/** Size of one input record of the harness. */
export const IN_SIZE = 200;
/** Size of one output record of the harness. */
export const OUT_SIZE = 144;

/** Serializes cases into the harness input format. */
export function encodeCases(cases: Case[]): Uint8Array {
  const buf = new Uint8Array(cases.length * IN_SIZE);
  const dv = new DataView(buf.buffer);
  cases.forEach((c, i) => {
    const o = i * IN_SIZE;
    for (let r = 0; r < 16; r++) dv.setBigUint64(o + r * 8, c.regs[r]!, true);
    dv.setBigUint64(o + 128, BigInt(c.flags), true);
    const code = caseCode(c);
    if (code.length > 63) throw new Error("case code too long");
    buf[o + 136] = code.length;
    buf.set(code, o + 137);
  });
  return buf;
}

/** The case's code bytes followed by `ret` (c3). */
export function caseCode(c: Case): Uint8Array {
  const bytes: number[] = [];
  for (const g of c.insns) bytes.push(...g.bytes);
  bytes.push(0xc3);
  return Uint8Array.from(bytes);
}

/** One decoded harness output record. */
export interface HostResult {
  regs: bigint[];
  flags: number;
  /** 0 ok, 1 #DE (SIGFPE), 2 SIGILL, 3 SIGSEGV. */
  status: number;
}

/** Parses the harness output. */
export function decodeResults(buf: Uint8Array, n: number): HostResult[] {
  if (buf.length !== n * OUT_SIZE) {
    throw new Error(`harness wrote ${buf.length} bytes, expected ${n * OUT_SIZE}`);
  }
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const res: HostResult[] = [];
  for (let i = 0; i < n; i++) {
    const o = i * OUT_SIZE;
    const regs: bigint[] = [];
    for (let r = 0; r < 16; r++) regs.push(dv.getBigUint64(o + r * 8, true));
    res.push({ regs, flags: dv.getUint32(o + 128, true), status: dv.getUint32(o + 136, true) });
  }
  return res;
}
