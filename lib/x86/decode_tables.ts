/**
 * Opcode tables for the decoder (`decode.ts`): one byte per opcode, built once at module
 * load from the short descriptions below. Three kinds of table:
 *
 * - `PFX`: which legacy prefix (or REX) a byte is.
 * - `LEN1` / `LEN2`: the length shape of every opcode of the one-byte and 0F maps (ModRM
 *   present, immediate kind, invalid in 64-bit mode). These make the length decoder cover
 *   the whole opcode map, supported or not.
 * - `H1` / `H2`: the handler that gives a supported opcode its operation and operands
 *   (0 = generic, length only).
 *
 * @module
 */

/** Prefix kinds in {@link PFX}: 1–6 are segment overrides (value − 1 is the segment). */
export const PK_OPSIZE = 8;
/** 67 address-size override. */
export const PK_ADDRSIZE = 9;
/** F0 lock. */
export const PK_LOCK = 10;
/** F2 repne. */
export const PK_REPNE = 11;
/** F3 rep / repe. */
export const PK_REP = 12;
/** 40–4F: REX in 64-bit mode, INC/DEC in 32-bit mode. */
export const PK_REX = 16;

/** Prefix kind of every byte (0: not a prefix). */
export const PFX: Uint8Array = new Uint8Array(256);
PFX[0x26] = 1; // ES
PFX[0x2e] = 2; // CS
PFX[0x36] = 3; // SS
PFX[0x3e] = 4; // DS
PFX[0x64] = 5; // FS
PFX[0x65] = 6; // GS
PFX[0x66] = PK_OPSIZE;
PFX[0x67] = PK_ADDRSIZE;
PFX[0xf0] = PK_LOCK;
PFX[0xf2] = PK_REPNE;
PFX[0xf3] = PK_REP;
for (let i = 0x40; i < 0x50; i++) PFX[i] = PK_REX;

/** Length flag: the opcode has a ModRM byte. */
export const L_MODRM = 1;
/** Length flag: invalid in 64-bit mode (#UD). */
export const L_INV64 = 0x20;
/** Length flag: the ModRM byte always names registers (0F 20–27: no SIB, no displacement). */
export const L_REGONLY = 0x40;
/** Length flag: no valid instruction has this opcode. */
export const L_INVALID = 0x80;

/** Immediate kinds, stored in bits 1–4 of the length tables. */
export const IK_NONE = 0;
/** imm8. */
export const IK_B = 1;
/** imm16. */
export const IK_W = 2;
/** imm16 or imm32 by operand size (imm32 with REX.W). */
export const IK_Z = 3;
/** imm16, imm32 or imm64 by operand size (B8+r). */
export const IK_V = 4;
/** imm16 then imm8 (enter). */
export const IK_WB = 5;
/** rel8. */
export const IK_REL8 = 6;
/** rel16/rel32 (always rel32 in 64-bit mode, Intel behaviour). */
export const IK_RELZ = 7;
/** moffs: address-size bytes. */
export const IK_MOFFS = 8;
/** Far pointer ptr16:16 / ptr16:32. */
export const IK_PTR = 9;
/** imm32 regardless of operand size. */
export const IK_D = 10;

function _fill(t: Uint8Array, spec: string, value: number): void {
  for (const part of spec.split(/\s+/)) {
    if (!part) continue;
    const [a, b] = part.split("-");
    const lo = parseInt(a!, 16);
    const hi = b === undefined ? lo : parseInt(b, 16);
    for (let i = lo; i <= hi; i++) t[i] = value;
  }
}

/** Length shape of the one-byte map. */
export const LEN1: Uint8Array = new Uint8Array(256);
{
  const M = L_MODRM;
  for (let i = 0; i < 0x40; i += 8) {
    _fill(LEN1, `${i.toString(16)}-${(i + 3).toString(16)}`, M);
    LEN1[i + 4] = IK_B << 1;
    LEN1[i + 5] = IK_Z << 1;
  }
  _fill(LEN1, "06 07 0e 16 17 1e 1f 27 2f 37 3f 60 61 d4 d5 d6 ce", L_INV64);
  LEN1[0xd4] = L_INV64 | (IK_B << 1);
  LEN1[0xd5] = L_INV64 | (IK_B << 1);
  LEN1[0x63] = M;
  LEN1[0x68] = IK_Z << 1;
  LEN1[0x69] = M | (IK_Z << 1);
  LEN1[0x6a] = IK_B << 1;
  LEN1[0x6b] = M | (IK_B << 1);
  _fill(LEN1, "70-7f e0-e3 eb", IK_REL8 << 1);
  LEN1[0x80] = M | (IK_B << 1);
  LEN1[0x81] = M | (IK_Z << 1);
  LEN1[0x82] = M | (IK_B << 1) | L_INV64;
  LEN1[0x83] = M | (IK_B << 1);
  _fill(LEN1, "84-8e d0-d3 d8-df f6 f7 fe ff", M);
  // 62, C4, C5 (EVEX/VEX or bound/les/lds) and 8F (XOP or pop) read their own ModRM.
  LEN1[0x9a] = (IK_PTR << 1) | L_INV64;
  LEN1[0xea] = (IK_PTR << 1) | L_INV64;
  _fill(LEN1, "a0-a3", IK_MOFFS << 1);
  LEN1[0xa8] = IK_B << 1;
  LEN1[0xa9] = IK_Z << 1;
  _fill(LEN1, "b0-b7", IK_B << 1);
  _fill(LEN1, "b8-bf", IK_V << 1);
  _fill(LEN1, "c0 c1 c6", M | (IK_B << 1));
  LEN1[0xc7] = M | (IK_Z << 1);
  _fill(LEN1, "c2 ca", IK_W << 1);
  LEN1[0xc8] = IK_WB << 1;
  _fill(LEN1, "cd e4-e7", IK_B << 1);
  _fill(LEN1, "e8 e9", IK_RELZ << 1);
}

/** Length shape of the 0F map. */
export const LEN2: Uint8Array = new Uint8Array(256);
{
  const M = L_MODRM;
  LEN2.fill(M);
  _fill(LEN2, "05-09 0b 0e 30-35 37 77 a0-a2 a8-aa c8-cf", 0);
  _fill(LEN2, "04 0a 0c 36 39 3b-3f 7a 7b", L_INVALID);
  // 0F A6 / A7 keep their ModRM: VIA PadLock (xsha*, xstore, xcrypt*) lives there.
  _fill(LEN2, "0f 70-73 a4 ac ba c2 c4-c6", M | (IK_B << 1));
  _fill(LEN2, "20-27", M | L_REGONLY);
  _fill(LEN2, "80-8f", IK_RELZ << 1);
  // 0F 38 and 0F 3A read their third opcode byte, then ModRM, themselves.
  _fill(LEN2, "38 3a", 0);
}

/** One-byte map handlers (see `decode.ts`). */
export const H1: Uint8Array = new Uint8Array(256);
/** 0F map handlers (see `decode.ts`). */
export const H2: Uint8Array = new Uint8Array(256);

// One-byte map handler numbers.
/** Length only. */
export const A_GEN = 0;
/** 00–3F ALU forms. */
export const A_ALU = 1;
/** push es/cs/ss/ds. */
export const A_PUSHS = 2;
/** pop es/ss/ds. */
export const A_POPS = 3;
/** 40–4F in 32-bit mode. */
export const A_INCDEC = 4;
/** 50–57. */
export const A_PUSHR = 5;
/** 58–5F. */
export const A_POPR = 6;
/** 63: movsxd (64) / arpl (32). */
export const A_63 = 7;
/** 68 / 6A. */
export const A_PUSHI = 8;
/** 69 / 6B. */
export const A_IMUL3 = 9;
/** 70–7F. */
export const A_JCC8 = 10;
/** 80–83. */
export const A_GRP1 = 11;
/** 84/85 test, 86/87 xchg, 88–8B mov. */
export const A_EG = 12;
/** 8C. */
export const A_MOVFS = 13;
/** 8D. */
export const A_LEA = 14;
/** 8E. */
export const A_MOVTS = 15;
/** 8F: pop r/m or XOP. */
export const A_8F = 16;
/** 90–97. */
export const A_XCHGA = 17;
/** 98, 99, 9C, 9D, C9, CC, CF, F4, F5, F8–FD: no operands. */
export const A_NOARG = 18;
/** A0–A3. */
export const A_MOFFS = 19;
/** String instructions. */
export const A_STR = 20;
/** A8 / A9. */
export const A_TESTA = 21;
/** B0–B7. */
export const A_MOVB = 22;
/** B8–BF. */
export const A_MOVV = 23;
/** C0 C1 D0–D3. */
export const A_SHIFT = 24;
/** C2 / C3. */
export const A_RET = 25;
/** C4 / C5: VEX or les/lds. */
export const A_VEX = 26;
/** C6 / C7. */
export const A_MOVI = 27;
/** CD. */
export const A_INT = 28;
/** 62: EVEX or bound. */
export const A_EVEX = 29;
/** E8 / E9. */
export const A_CALLJMP = 30;
/** EB. */
export const A_JMP8 = 31;
/** F6 / F7. */
export const A_GRP3 = 32;
/** FE. */
export const A_GRP4 = 33;
/** FF. */
export const A_GRP5 = 34;
/** 0F escape. */
export const A_0F = 35;
/** 04/05-style ALU with accumulator: handled by A_ALU; F6/F7 imm lengths: A_GRP3. */

_fill(H1, "00-05 08-0d 10-15 18-1d 20-25 28-2d 30-35 38-3d", A_ALU);
_fill(H1, "06 0e 16 1e", A_PUSHS);
_fill(H1, "07 17 1f", A_POPS);
_fill(H1, "40-4f", A_INCDEC);
_fill(H1, "50-57", A_PUSHR);
_fill(H1, "58-5f", A_POPR);
H1[0x62] = A_EVEX;
H1[0x63] = A_63;
_fill(H1, "68 6a", A_PUSHI);
_fill(H1, "69 6b", A_IMUL3);
_fill(H1, "70-7f", A_JCC8);
_fill(H1, "80-83", A_GRP1);
_fill(H1, "84-8b", A_EG);
H1[0x8c] = A_MOVFS;
H1[0x8d] = A_LEA;
H1[0x8e] = A_MOVTS;
H1[0x8f] = A_8F;
_fill(H1, "90-97", A_XCHGA);
_fill(H1, "98 99 9c 9d c9 cc cf f4 f5 f8-fd", A_NOARG);
_fill(H1, "a0-a3", A_MOFFS);
_fill(H1, "a4-a7 aa-af", A_STR);
_fill(H1, "a8 a9", A_TESTA);
_fill(H1, "b0-b7", A_MOVB);
_fill(H1, "b8-bf", A_MOVV);
_fill(H1, "c0 c1 d0-d3", A_SHIFT);
_fill(H1, "c2 c3", A_RET);
_fill(H1, "c4 c5", A_VEX);
_fill(H1, "c6 c7", A_MOVI);
H1[0xcd] = A_INT;
_fill(H1, "e8 e9", A_CALLJMP);
H1[0xeb] = A_JMP8;
_fill(H1, "f6 f7", A_GRP3);
H1[0xfe] = A_GRP4;
H1[0xff] = A_GRP5;
H1[0x0f] = A_0F;

// 0F map handler numbers (40 and up, so one switch serves both maps).
/** 0F 40–4F. */
export const B_CMOV = 41;
/** 0F 80–8F. */
export const B_JCC = 42;
/** 0F 90–9F. */
export const B_SETCC = 43;
/** 0F A0 / A8. */
export const B_PUSHS = 44;
/** 0F A1 / A9. */
export const B_POPS = 45;
/** 0F A3 AB B3 BB. */
export const B_BT = 46;
/** 0F AF. */
export const B_IMUL2 = 47;
/** 0F B0 B1 (cmpxchg), C0 C1 (xadd). */
export const B_EGB = 48;
/** 0F B6 B7 BE BF. */
export const B_MOVX = 49;
/** 0F BA. */
export const B_BTI = 50;
/** 0F C8–CF. */
export const B_BSWAP = 51;
/** 0F 1F. */
export const B_NOPL = 52;
/** 0F 0B, 0F A2: no operands. */
export const B_NOARG = 53;
/** 0F AE. */
export const B_GRP15 = 54;
/** 0F 38. */
export const B_MAP38 = 55;
/** 0F 3A. */
export const B_MAP3A = 56;
/** 0F 78 (vmread / extrq / insertq). */
export const B_78 = 57;

_fill(H2, "40-4f", B_CMOV);
_fill(H2, "80-8f", B_JCC);
_fill(H2, "90-9f", B_SETCC);
_fill(H2, "a0 a8", B_PUSHS);
_fill(H2, "a1 a9", B_POPS);
_fill(H2, "a3 ab b3 bb", B_BT);
H2[0xaf] = B_IMUL2;
_fill(H2, "b0 b1 c0 c1", B_EGB);
_fill(H2, "b6 b7 be bf", B_MOVX);
H2[0xba] = B_BTI;
_fill(H2, "c8-cf", B_BSWAP);
H2[0x1f] = B_NOPL;
_fill(H2, "0b a2", B_NOARG);
H2[0xae] = B_GRP15;
H2[0x38] = B_MAP38;
H2[0x3a] = B_MAP3A;
H2[0x78] = B_78;
