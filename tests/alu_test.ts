import assert from "node:assert/strict";
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
  parity,
  undefinedFlags,
} from "../lib/x86/alu.ts";
import { AF, ARITH, CF, FIXED1, OF, PF, SF, ZF } from "../lib/x86/flags.ts";
import { Cond, Op } from "../lib/x86/insn.ts";

const NAMES: [number, string][] = [[CF, "CF"], [PF, "PF"], [AF, "AF"], [ZF, "ZF"], [SF, "SF"], [
  OF,
  "OF",
]];

/** Names of the arithmetic flags set in `f`, for readable assertion messages. */
function fl(f: number): string {
  return NAMES.filter(([b]) => f & b).map(([, n]) => n).join(",") || "-";
}

/** Asserts the arithmetic flags of aluOut[2] equal `want` exactly. */
function flagsAre(want: number, what: string): void {
  assert.equal(fl(aluOut[2]! & ARITH), fl(want), what);
}

function lo32(): number {
  return aluOut[0]! >>> 0;
}

function u64(lo: number, hi: number): bigint {
  return (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
}

function res64(): bigint {
  return u64(aluOut[0]!, aluOut[1]!);
}

function high64(): bigint {
  return u64(aluOut[3]!, aluOut[4]!);
}

function split(v: bigint): [number, number] {
  const m = v & 0xffffffffffffffffn;
  return [Number(m & 0xffffffffn) | 0, Number(m >> 32n) | 0];
}

Deno.test("parity() is 1 for bytes with an even number of set bits", () => {
  assert.equal(parity(0), 1);
  assert.equal(parity(0x03), 1);
  assert.equal(parity(0xff), 1);
  assert.equal(parity(0x01), 0);
  assert.equal(parity(0x7f), 0);
  assert.equal(parity(0x1ff), 1, "only the low byte counts");
});

Deno.test("aluBinary() ADD sets CF, ZF, AF and PF when a byte wraps to 0", () => {
  aluBinary(Op.ADD, 1, 0xff, 0, 1, 0, FIXED1);
  assert.equal(aluOut[0], 0);
  flagsAre(CF | ZF | AF | PF, "0xff + 1");
  aluBinary(Op.ADD, 1, 0x7f, 0, 1, 0, FIXED1);
  assert.equal(aluOut[0], 0x80);
  flagsAre(OF | SF | AF, "0x7f + 1 overflows");
  aluBinary(Op.ADD, 1, 0x0f, 0, 1, 0, FIXED1);
  flagsAre(AF, "0x0f + 1: carry out of bit 3, 0x10 has odd parity");
});

Deno.test("aluBinary() keeps the non-arithmetic flags and replaces the arithmetic ones", () => {
  aluBinary(Op.ADD, 4, 1, 0, 1, 0, 0x202 | ARITH);
  assert.equal(aluOut[2], 0x202, "1 + 1 clears all six, keeps IF and bit 1");
});

Deno.test("aluBinary() ADC adds the carry at the 32-bit and 64-bit wrap points", () => {
  aluBinary(Op.ADC, 4, -1, 0, 0, 0, FIXED1 | CF);
  assert.equal(lo32(), 0);
  flagsAre(CF | ZF | AF | PF, "0xffffffff + 0 + CF");
  aluBinary(Op.ADC, 4, -1, 0, 0, 0, FIXED1);
  assert.equal(lo32(), 0xffffffff);
  flagsAre(SF | PF, "no carry in, no carry out");
  aluBinary(Op.ADC, 8, -1, -1, 0, 0, FIXED1 | CF);
  assert.equal(res64(), 0n);
  flagsAre(CF | ZF | AF | PF, "2^64-1 + 0 + CF");
  aluBinary(Op.ADC, 8, -1, 0, 0, 0, FIXED1 | CF);
  assert.equal(res64(), 0x1_0000_0000n, "the carry crosses from the low into the high half");
  flagsAre(AF | PF, "0xffffffff + CF");
  aluBinary(Op.ADC, 8, -1, 0x7fffffff, 0, 0, FIXED1 | CF);
  assert.equal(res64(), 0x8000_0000_0000_0000n);
  flagsAre(OF | SF | AF | PF, "INT64_MAX + CF overflows");
  aluBinary(Op.ADC, 1, 0x7f, 0, 0, 0, FIXED1 | CF);
  assert.equal(aluOut[0], 0x80);
  flagsAre(OF | SF | AF, "0x7f + 0 + CF overflows a byte");
  aluBinary(Op.ADC, 2, 0xffff, 0, 0xffff, 0, FIXED1 | CF);
  assert.equal(aluOut[0], 0xffff);
  flagsAre(CF | SF | AF | PF, "0xffff + 0xffff + 1 = 0x1ffff");
});

Deno.test("aluBinary() SBB subtracts the borrow across the 64-bit halves", () => {
  aluBinary(Op.SBB, 4, 0, 0, 0, 0, FIXED1 | CF);
  assert.equal(lo32(), 0xffffffff);
  flagsAre(CF | SF | AF | PF, "0 - 0 - CF");
  aluBinary(Op.SBB, 8, 0, 1, 0, 0, FIXED1 | CF);
  assert.equal(res64(), 0xffff_ffffn, "2^32 - 0 - 1 borrows from the high half");
  flagsAre(AF | PF, "no borrow out");
  aluBinary(Op.SBB, 8, 0, 0, -1, -1, FIXED1 | CF);
  assert.equal(res64(), 0n, "0 - (2^64-1) - 1 wraps to 0");
  flagsAre(CF | ZF | PF | AF, "borrow out, zero, AF: 0 - 0xf - 1 borrows out of bit 3");
  aluBinary(Op.SBB, 1, 0x80, 0, 0, 0, FIXED1 | CF);
  assert.equal(aluOut[0], 0x7f);
  flagsAre(OF | AF, "0x80 - 0 - 1 overflows");
});

Deno.test("aluBinary() SUB and CMP compute a - b with signed overflow", () => {
  aluBinary(Op.SUB, 1, 0x80, 0, 1, 0, FIXED1);
  assert.equal(aluOut[0], 0x7f);
  flagsAre(OF | AF, "-128 - 1");
  aluBinary(Op.CMP, 4, 1, 0, 2, 0, FIXED1);
  assert.equal(lo32(), 0xffffffff);
  flagsAre(CF | SF | AF | PF, "1 cmp 2");
  aluBinary(Op.CMP, 8, 5, 0, 5, 0, FIXED1 | CF);
  flagsAre(ZF | PF, "equal 64-bit values");
  aluBinary(Op.CMP, 8, 0, 0x80000000, 1, 0, FIXED1);
  flagsAre(OF | AF | PF, "INT64_MIN - 1 overflows");
});

Deno.test("aluBinary() logic ops clear CF, OF and AF", () => {
  aluBinary(Op.AND, 4, 0xf0, 0, 0x0f, 0, FIXED1 | ARITH);
  assert.equal(aluOut[0], 0);
  flagsAre(ZF | PF, "and to zero");
  aluBinary(Op.OR, 8, 0, 0x80000000, 1, 0, FIXED1 | CF | OF | AF);
  assert.equal(res64(), 0x8000_0000_0000_0001n);
  flagsAre(SF, "or sets SF from bit 63; 0x01 low byte is odd");
  aluBinary(Op.XOR, 2, 0x1234, 0, 0x1234, 0, FIXED1);
  flagsAre(ZF | PF, "xor self");
  aluBinary(Op.TEST, 1, 0x81, 0, 0x80, 0, FIXED1);
  assert.equal(aluOut[0], 0x80);
  flagsAre(SF, "test");
});

Deno.test("aluUnary() INC and DEC preserve CF", () => {
  aluUnary(Op.INC, 1, 0xff, 0, FIXED1);
  assert.equal(aluOut[0], 0);
  flagsAre(ZF | AF | PF, "inc 0xff leaves CF clear");
  aluUnary(Op.INC, 1, 0xff, 0, FIXED1 | CF);
  flagsAre(CF | ZF | AF | PF, "inc 0xff keeps CF set");
  aluUnary(Op.DEC, 4, 0, 0, FIXED1);
  assert.equal(lo32(), 0xffffffff);
  flagsAre(SF | AF | PF, "dec 0 does not set CF");
  aluUnary(Op.INC, 4, 0x7fffffff, 0, FIXED1 | CF);
  flagsAre(CF | OF | SF | AF | PF, "inc INT32_MAX overflows, CF kept");
  aluUnary(Op.DEC, 8, 0, 0x80000000, FIXED1);
  assert.equal(res64(), 0x7fff_ffff_ffff_ffffn);
  flagsAre(OF | AF | PF, "dec INT64_MIN overflows");
  aluUnary(Op.INC, 8, -1, 0, FIXED1);
  assert.equal(res64(), 0x1_0000_0000n, "64-bit inc carries into the high half");
});

Deno.test("aluUnary() NEG of 0 clears CF and NEG of MIN overflows", () => {
  aluUnary(Op.NEG, 4, 0, 0, FIXED1 | CF);
  assert.equal(aluOut[0], 0);
  flagsAre(ZF | PF, "neg 0");
  aluUnary(Op.NEG, 1, 0x80, 0, FIXED1);
  assert.equal(aluOut[0], 0x80);
  flagsAre(CF | OF | SF, "neg -128");
  aluUnary(Op.NEG, 8, 0, 0x80000000, FIXED1);
  assert.equal(res64(), 0x8000_0000_0000_0000n);
  flagsAre(CF | OF | SF | PF, "neg INT64_MIN");
  aluUnary(Op.NEG, 8, 1, 0, FIXED1);
  assert.equal(res64(), 0xffff_ffff_ffff_ffffn);
  flagsAre(CF | SF | AF | PF, "neg 1");
});

Deno.test("aluUnary() NOT leaves every flag unchanged", () => {
  aluUnary(Op.NOT, 2, 0x00ff, 0, 0x2d7);
  assert.equal(aluOut[0], 0xff00);
  assert.equal(aluOut[2], 0x2d7);
  aluUnary(Op.NOT, 8, 0, -1, 0x202);
  assert.equal(res64(), 0xffff_ffffn);
  assert.equal(aluOut[2], 0x202);
});

Deno.test("aluShift() with a masked count of 0 changes neither value nor flags", () => {
  for (const op of [Op.ROL, Op.ROR, Op.RCL, Op.RCR, Op.SHL, Op.SHR, Op.SAR]) {
    for (const [size, count] of [[1, 0], [1, 32], [2, 32], [4, 32], [4, 0x60], [8, 64], [8, 0]]) {
      aluShift(op, size!, 0x5a, 0x77, count!, FIXED1 | CF | OF | PF);
      assert.equal(aluOut[0], 0x5a, `op ${op} size ${size} count ${count}`);
      assert.equal(aluOut[2], FIXED1 | CF | OF | PF, `op ${op} size ${size} count ${count}`);
    }
  }
});

Deno.test("aluShift() by 1 defines OF for SHL, SHR and SAR", () => {
  aluShift(Op.SHL, 1, 0x40, 0, 1, FIXED1);
  assert.equal(aluOut[0], 0x80);
  assert.equal(aluOut[2]! & (CF | OF), OF, "shl 0x40: sign changed");
  aluShift(Op.SHL, 1, 0xc0, 0, 1, FIXED1);
  assert.equal(aluOut[2]! & (CF | OF), CF, "shl 0xc0: CF = old MSB, sign kept");
  aluShift(Op.SHR, 1, 0x80, 0, 1, FIXED1);
  assert.equal(aluOut[0], 0x40);
  assert.equal(aluOut[2]! & (CF | OF), OF, "shr: OF = old MSB");
  aluShift(Op.SAR, 1, 0x81, 0, 1, FIXED1 | OF);
  assert.equal(aluOut[0], 0xc0);
  assert.equal(aluOut[2]! & (CF | OF), CF, "sar: OF = 0");
  aluShift(Op.SHR, 8, 0, 0x80000000, 1, FIXED1);
  assert.equal(res64(), 0x4000_0000_0000_0000n);
  assert.equal(aluOut[2]! & (CF | OF | ZF), OF);
});

Deno.test("aluShift() shifts 64-bit values across the halves with CF = last bit out", () => {
  aluShift(Op.SHL, 8, 1, 0, 63, FIXED1);
  assert.equal(res64(), 0x8000_0000_0000_0000n);
  assert.equal(aluOut[2]! & CF, 0);
  aluShift(Op.SHL, 8, 0x80000001, 0, 33, FIXED1);
  assert.equal(res64(), 0x2_0000_0000n, "bit 0 moves to bit 33, bit 31 falls out");
  assert.equal(aluOut[2]! & CF, CF, "bit 31 was the last out");
  aluShift(Op.SHR, 8, 0, 1, 32, FIXED1);
  assert.equal(res64(), 1n);
  aluShift(Op.SAR, 8, 0, 0xc0000000, 63, FIXED1);
  assert.equal(res64(), 0xffff_ffff_ffff_ffffn);
  assert.equal(aluOut[2]! & CF, CF, "bit 62 was the last out");
  aluShift(Op.SAR, 8, 0, 0x80000000, 63, FIXED1 | CF);
  assert.equal(aluOut[2]! & CF, 0, "bit 62 clear");
  aluShift(Op.ROL, 8, 0x1, 0x80000000, 4, FIXED1);
  assert.equal(res64(), 0x18n);
  aluShift(Op.ROR, 8, 0x1, 0, 1, FIXED1);
  assert.equal(res64(), 0x8000_0000_0000_0000n);
  assert.equal(aluOut[2]! & (CF | OF), CF | OF);
});

Deno.test("aluShift() RCL and RCR rotate 8/16-bit operands through CF modulo 9 and 17", () => {
  aluShift(Op.RCL, 1, 0x80, 0, 1, FIXED1 | CF);
  assert.equal(aluOut[0], 0x01);
  assert.equal(aluOut[2]! & CF, CF);
  aluShift(Op.RCL, 1, 0x5a, 0, 9, FIXED1 | CF);
  assert.equal(aluOut[0], 0x5a, "9 = full 9-bit turn");
  assert.equal(aluOut[2]! & CF, CF);
  aluShift(Op.RCL, 1, 0x80, 0, 10, FIXED1);
  assert.equal(aluOut[0], 0x00, "10 mod 9 = 1");
  assert.equal(aluOut[2]! & CF, CF);
  aluShift(Op.RCR, 2, 0x1234, 0, 17, FIXED1);
  assert.equal(aluOut[0], 0x1234, "17 = full 17-bit turn");
  aluShift(Op.RCR, 2, 0x0001, 0, 18, FIXED1);
  assert.equal(aluOut[0], 0, "18 mod 17 = 1");
  assert.equal(aluOut[2]! & CF, CF);
  aluShift(Op.RCR, 1, 0x01, 0, 1, FIXED1);
  assert.equal(aluOut[0], 0);
  assert.equal(aluOut[2]! & (CF | OF), CF, "OF = xor of the two top result bits");
  aluShift(Op.RCR, 4, 0, 0, 1, FIXED1 | CF);
  assert.equal(lo32(), 0x80000000);
  assert.equal(aluOut[2]! & (CF | OF), OF);
  aluShift(Op.RCL, 8, 0, 0x80000000, 1, FIXED1);
  assert.equal(res64(), 0n);
  assert.equal(aluOut[2]! & (CF | OF), CF | OF);
  aluShift(Op.RCR, 8, 1, 0, 63, FIXED1 | CF);
  assert.equal(res64(), 0b110n, "65-bit rotation right by 63 = left by 2 (CF enters bit 1)");
  assert.equal(aluOut[2]! & CF, 0);
});

Deno.test("aluShift() ROL of a byte by 8 keeps the value and sets CF from bit 0", () => {
  aluShift(Op.ROL, 1, 0x81, 0, 8, FIXED1);
  assert.equal(aluOut[0], 0x81);
  assert.equal(aluOut[2]! & CF, CF);
  aluShift(Op.ROR, 4, 0x1, 0, 4, FIXED1);
  assert.equal(lo32(), 0x10000000);
});

Deno.test("aluMul() IMUL sets CF and OF exactly when the result does not fit", () => {
  aluMul(Op.IMUL2, 4, 0x10000, 0, 0x10000, 0, FIXED1);
  assert.equal(aluOut[0], 0);
  assert.equal(aluOut[2]! & (CF | OF), CF | OF);
  aluMul(Op.IMUL2, 4, -1, 0, -1, 0, FIXED1 | CF | OF);
  assert.equal(aluOut[0], 1);
  assert.equal(aluOut[2]! & (CF | OF), 0);
  aluMul(Op.IMUL1, 1, 0x80, 0, 0xff, 0, FIXED1);
  assert.equal(aluOut[0], 0x80, "-128 * -1 = 128: AL");
  assert.equal(aluOut[3], 0x00, "AH");
  assert.equal(aluOut[2]! & (CF | OF), CF | OF);
  aluMul(Op.IMUL1, 1, 0xf0, 0, 0x08, 0, FIXED1);
  assert.equal(aluOut[0], 0x80, "-16 * 8 = -128 fits");
  assert.equal(aluOut[3], 0xff);
  assert.equal(aluOut[2]! & (CF | OF), 0);
  aluMul(Op.IMUL3, 2, 0x4000, 0, 2, 0, FIXED1);
  assert.equal(aluOut[0], 0x8000);
  assert.equal(aluOut[2]! & (CF | OF), CF | OF);
  aluMul(Op.IMUL2, 8, 0, 0x80000000, -1, -1, FIXED1);
  assert.equal(res64(), 0x8000_0000_0000_0000n, "INT64_MIN * -1 wraps");
  assert.equal(aluOut[2]! & (CF | OF), CF | OF);
  aluMul(Op.IMUL1, 8, 0, 0x80000000, -1, -1, FIXED1);
  assert.equal(high64(), 0n, "hi given as uint32 0x80000000 is still negative");
  aluMul(Op.IMUL1, 4, 0x80000000, 0, 2, 0, FIXED1);
  assert.equal(aluOut[3], -1, "0x80000000 as uint32 is INT32_MIN");
});

Deno.test("aluMul() MUL gives the 64-bit high halves exactly", () => {
  aluMul(Op.MUL, 8, -1, -1, -1, -1, FIXED1);
  assert.equal(res64(), 1n);
  assert.equal(high64(), 0xffff_ffff_ffff_fffen);
  assert.equal(aluOut[2]! & (CF | OF), CF | OF);
  aluMul(Op.MUL, 8, 0, 0x80000000, 2, 0, FIXED1);
  assert.equal(res64(), 0n);
  assert.equal(high64(), 1n);
  aluMul(Op.IMUL1, 8, -1, -1, -1, -1, FIXED1 | CF);
  assert.equal(res64(), 1n);
  assert.equal(high64(), 0n);
  assert.equal(aluOut[2]! & (CF | OF), 0);
  aluMul(Op.MUL, 4, -1, 0, -1, 0, FIXED1);
  assert.equal(lo32(), 1);
  assert.equal(aluOut[3]! >>> 0, 0xfffffffe);
  aluMul(Op.MUL, 2, 0xffff, 0, 0xffff, 0, FIXED1);
  assert.equal(aluOut[0], 0x0001);
  assert.equal(aluOut[3], 0xfffe);
  aluMul(Op.MUL, 1, 0x10, 0, 0x0f, 0, FIXED1 | CF | OF);
  assert.equal(aluOut[0], 0xf0);
  assert.equal(aluOut[3], 0);
  assert.equal(aluOut[2]! & (CF | OF), 0, "high half zero: CF = OF = 0");
});

Deno.test("aluMul() agrees with BigInt on random 64-bit and 32-bit products", () => {
  let seed = 12345;
  const next = () => (seed = (Math.imul(seed, 1103515245) + 12345) | 0);
  const M = (1n << 64n) - 1n;
  for (let i = 0; i < 2000; i++) {
    const a = u64(next(), next() >> (i % 33));
    const b = u64(next() >> (i % 7), next());
    const [al, ah] = split(a);
    const [bl, bh] = split(b);
    aluMul(Op.MUL, 8, al, ah, bl, bh, FIXED1);
    const p = a * b;
    assert.equal(res64(), p & M, `mul lo ${a} * ${b}`);
    assert.equal(high64(), p >> 64n, `mul hi ${a} * ${b}`);
    aluMul(Op.IMUL1, 8, al, ah, bl, bh, FIXED1);
    const sp = BigInt.asIntN(64, a) * BigInt.asIntN(64, b);
    assert.equal(res64(), sp & M, `imul lo ${a} * ${b}`);
    assert.equal(high64(), (sp >> 64n) & M, `imul hi ${a} * ${b}`);
    assert.equal((aluOut[2]! & CF) !== 0, BigInt.asIntN(64, sp) !== sp, `imul CF ${a} * ${b}`);
    aluMul(Op.IMUL1, 4, al, 0, bl, 0, FIXED1);
    const sp32 = BigInt(al) * BigInt(bl);
    assert.equal(u64(aluOut[0]!, aluOut[3]!), sp32 & M, `imul32 ${al} * ${bl}`);
  }
});

Deno.test("aluDiv() raises #DE (fault 1) on divide by zero and quotient overflow", () => {
  aluDiv(Op.DIV, 4, 0, 0, 5, 0, 0, 0, FIXED1);
  assert.equal(aluOut[5], 1, "divide by zero");
  aluDiv(Op.DIV, 1, 0x01, 0, 0x00, 0, 1, 0, FIXED1);
  assert.equal(aluOut[5], 1, "0x100 / 1 does not fit AL");
  aluDiv(Op.IDIV, 4, -1, 0, 0x80000000, 0, -1, 0, FIXED1);
  assert.equal(aluOut[5], 1, "INT32_MIN / -1");
  aluDiv(Op.IDIV, 1, 0xff, 0, 0x80, 0, 0xff, 0, FIXED1);
  assert.equal(aluOut[5], 1, "-128 / -1");
  aluDiv(Op.IDIV, 8, -1, -1, 0, 0x80000000, -1, -1, FIXED1);
  assert.equal(aluOut[5], 1, "INT64_MIN / -1");
  aluDiv(Op.DIV, 8, 2, 0, 0, 0, 2, 0, FIXED1);
  assert.equal(aluOut[5], 1, "hi >= divisor");
  aluDiv(Op.IDIV, 2, 0, 0, 0x8000, 0, 1, 0, FIXED1);
  assert.equal(aluOut[5], 1, "+32768 does not fit int16");
});

Deno.test("aluDiv() divides 128 by 64 bits exactly and truncates IDIV toward zero", () => {
  aluDiv(Op.DIV, 8, 1, 0, 0, 0, 2, 0, FIXED1);
  assert.equal(aluOut[5], 0);
  assert.equal(res64(), 0x8000_0000_0000_0000n, "2^64 / 2");
  assert.equal(high64(), 0n);
  aluDiv(Op.DIV, 8, 0x12345, 0, 0x6789abcd, 0x1234, 0x10000, 0x100, FIXED1);
  const n = (0x12345n << 64n) | 0x1234_6789abcdn;
  const d = 0x100_0001_0000n;
  assert.equal(res64(), n / d);
  assert.equal(high64(), n % d);
  aluDiv(Op.IDIV, 1, 0xff, 0, 0xf9, 0, 2, 0, FIXED1);
  assert.equal(aluOut[0], 0xfd, "-7 / 2 = -3");
  assert.equal(aluOut[3], 0xff, "remainder -1 has the dividend's sign");
  aluDiv(Op.IDIV, 4, 0, 0, 7, 0, -2, 0, FIXED1);
  assert.equal(aluOut[0], -3);
  assert.equal(aluOut[3], 1);
  aluDiv(Op.DIV, 2, 0x0001, 0, 0x0000, 0, 0x0002, 0, FIXED1);
  assert.equal(aluOut[0], 0x8000);
  assert.equal(aluOut[5], 0);
  aluDiv(Op.IDIV, 8, -1, -1, -7, -1, 2, 0, FIXED1);
  assert.equal(res64(), 0xffff_ffff_ffff_fffdn);
  assert.equal(high64(), 0xffff_ffff_ffff_ffffn);
});

Deno.test("aluBit() returns the old bit in CF and sets, clears or flips it", () => {
  aluBit(Op.BT, 8, 0, 0x80000000, 63, FIXED1 | ZF);
  assert.equal(aluOut[2]! & (CF | ZF), CF | ZF, "BT leaves ZF");
  aluBit(Op.BTS, 8, 0, 0, 40, FIXED1 | CF);
  assert.equal(res64(), 1n << 40n);
  assert.equal(aluOut[2]! & CF, 0);
  aluBit(Op.BTR, 4, -1, 0, 31, FIXED1);
  assert.equal(lo32(), 0x7fffffff);
  assert.equal(aluOut[2]! & CF, CF);
  aluBit(Op.BTC, 2, 0x8000, 0, 15, FIXED1);
  assert.equal(aluOut[0], 0);
  assert.equal(aluOut[2]! & CF, CF);
});

Deno.test("aluBswap() reverses 4 and 8 bytes", () => {
  aluBswap(4, 0x11223344, 0);
  assert.equal(lo32(), 0x44332211);
  aluBswap(8, 0x55667788, 0x11223344);
  assert.equal(res64(), 0x8877665544332211n);
});

Deno.test("condition() evaluates all 16 condition codes", () => {
  const cases: [number, number, boolean][] = [
    [Cond.O, OF, true],
    [Cond.O, 0, false],
    [Cond.NO, 0, true],
    [Cond.B, CF, true],
    [Cond.AE, CF, false],
    [Cond.E, ZF, true],
    [Cond.NE, ZF, false],
    [Cond.BE, ZF, true],
    [Cond.BE, CF, true],
    [Cond.BE, 0, false],
    [Cond.A, 0, true],
    [Cond.A, CF, false],
    [Cond.S, SF, true],
    [Cond.NS, SF, false],
    [Cond.P, PF, true],
    [Cond.NP, PF, false],
    [Cond.L, SF, true],
    [Cond.L, SF | OF, false],
    [Cond.L, OF, true],
    [Cond.GE, SF | OF, true],
    [Cond.GE, SF, false],
    [Cond.LE, ZF, true],
    [Cond.LE, SF, true],
    [Cond.LE, SF | OF, false],
    [Cond.G, 0, true],
    [Cond.G, SF | OF, true],
    [Cond.G, ZF | SF | OF, false],
    [Cond.G, OF, false],
  ];
  for (const [cc, f, want] of cases) {
    assert.equal(condition(cc, FIXED1 | f), want, `cc ${cc} flags ${fl(f)}`);
  }
  // Every condition and its negation disagree on every flag combination.
  for (let cc = 0; cc < 16; cc += 2) {
    for (let f = 0; f < 0x1000; f += 1) {
      assert.notEqual(condition(cc, f), condition(cc + 1, f));
    }
  }
});

Deno.test("undefinedFlags() names the flags the SDM leaves undefined", () => {
  assert.equal(undefinedFlags(Op.AND), AF);
  assert.equal(undefinedFlags(Op.ADD), 0);
  assert.equal(undefinedFlags(Op.MUL), SF | ZF | AF | PF);
  assert.equal(undefinedFlags(Op.DIV), ARITH);
  assert.equal(undefinedFlags(Op.SHL, 4, 1), AF);
  assert.equal(undefinedFlags(Op.SHL, 4, 2), AF | OF);
  assert.equal(undefinedFlags(Op.SHL, 4, 32), 0, "masked count 0: nothing changes");
  assert.equal(undefinedFlags(Op.SHR, 1, 9), AF | OF | CF, "count >= width");
  assert.equal(undefinedFlags(Op.ROL, 8, 1), 0);
  assert.equal(undefinedFlags(Op.RCR, 8, 5), OF);
  assert.equal(undefinedFlags(Op.BTS), OF | SF | AF | PF);
});

Deno.test("aluBinary() rejects an op that is not a binary ALU operation", () => {
  assert.throws(() => aluBinary(Op.MUL, 4, 0, 0, 0, 0, 0), RangeError);
  assert.throws(() => aluShift(Op.ADD, 4, 0, 0, 1, 0), RangeError);
});
