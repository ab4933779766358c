/**
 * The x86 instruction decoder: bytes in, one {@link Insn} record out, in 32-bit protected
 * mode or 64-bit long mode.
 *
 * Table-driven: the prefix loop indexes `PFX`, the opcode indexes a handler table (`H1`
 * for the one-byte map, `H2` for 0F) and a small handler fills the operands. Every opcode
 * the CPU knows — SSE, x87, 3DNow!, VEX, EVEX, XOP included — gets its exact length from
 * the length tables (`LEN1`, `LEN2`) even when the operation is outside the supported set
 * ({@link Op.UNSUPPORTED}), so a linear sweep over real code stays in step.
 *
 * Choices where CPUs differ, all Intel's (and iced-x86's default):
 * - In 64-bit mode near `call`/`jmp`/`jcc` (relative and indirect) ignore 66: operand
 *   size 64, rel32.
 * - In 64-bit mode the ES/CS/SS/DS segment prefixes are ignored (`seg` stays -1).
 * - When both F2 and F3 are present the last one wins.
 *
 * The 32-bit NOP5 `3e 8d 74 26 00` decodes as what it is, `lea 0x0(%esi,%eiz,1),%esi`
 * (LEA, base esi, no index, disp 0): executing it writes esi to esi and touches no flags,
 * which is why the kernel can use it as a NOP.
 *
 * @module
 */

import { Insn, Op, OpKind, Prefix, Reg } from "./insn.ts";
import {
  H1,
  H2,
  IK_B,
  IK_D,
  IK_MOFFS,
  IK_NONE,
  IK_PTR,
  IK_REL8,
  IK_RELZ,
  IK_V,
  IK_W,
  IK_WB,
  IK_Z,
  L_INV64,
  L_INVALID,
  L_MODRM,
  L_REGONLY,
  LEN1,
  LEN2,
  PFX,
  PK_ADDRSIZE,
  PK_LOCK,
  PK_OPSIZE,
  PK_REP,
  PK_REPNE,
  PK_REX,
} from "./decode_tables.ts";

const MEM = OpKind.MEM;
const REG = OpKind.REG;
const IMM = OpKind.IMM;
const SREG = OpKind.SREG;

/** Ops with no explicit operand, by one-byte opcode; the size rule is in NOARG_SIZE. */
const NOARG_OP = new Uint8Array(256);
/** 0: operand size, 1: stack (default-64) size. */
const NOARG_SIZE = new Uint8Array(256);
NOARG_OP[0x98] = Op.CBW;
NOARG_OP[0x99] = Op.CWD;
NOARG_OP[0x9c] = Op.PUSHF;
NOARG_OP[0x9d] = Op.POPF;
NOARG_OP[0xc9] = Op.LEAVE;
NOARG_OP[0xcc] = Op.INT3;
NOARG_OP[0xcf] = Op.IRET;
NOARG_OP[0xf4] = Op.HLT;
NOARG_OP[0xf5] = Op.CMC;
NOARG_OP[0xf8] = Op.CLC;
NOARG_OP[0xf9] = Op.STC;
NOARG_OP[0xfa] = Op.CLI;
NOARG_OP[0xfb] = Op.STI;
NOARG_OP[0xfc] = Op.CLD;
NOARG_OP[0xfd] = Op.STD;
NOARG_SIZE[0x9c] = 1;
NOARG_SIZE[0x9d] = 1;
NOARG_SIZE[0xc9] = 1;

/** String ops by opcode (A4–AF); odd opcodes use the operand size, even ones bytes. */
const STR_OP = new Uint8Array(256);
STR_OP[0xa4] = STR_OP[0xa5] = Op.MOVS;
STR_OP[0xa6] = STR_OP[0xa7] = Op.CMPS;
STR_OP[0xaa] = STR_OP[0xab] = Op.STOS;
STR_OP[0xac] = STR_OP[0xad] = Op.LODS;
STR_OP[0xae] = STR_OP[0xaf] = Op.SCAS;

/** F6/F7 by /reg. */
const GRP3_OP = new Uint8Array([
  Op.TEST,
  Op.TEST,
  Op.NOT,
  Op.NEG,
  Op.MUL,
  Op.IMUL1,
  Op.DIV,
  Op.IDIV,
]);

/** Ops that accept LOCK (with a memory destination); everything else raises #UD. */
const LOCKABLE = new Uint8Array(128);
for (
  const op of [
    Op.ADD,
    Op.OR,
    Op.ADC,
    Op.SBB,
    Op.AND,
    Op.SUB,
    Op.XOR,
    Op.INC,
    Op.DEC,
    Op.NEG,
    Op.NOT,
    Op.XCHG,
    Op.CMPXCHG,
    Op.XADD,
    Op.BTS,
    Op.BTR,
    Op.BTC,
  ]
) LOCKABLE[op] = 1;

/** 16-bit addressing (67 in 32-bit mode): base and index per ModRM rm. */
const BASE16 = new Int8Array([
  Reg.RBX,
  Reg.RBX,
  Reg.RBP,
  Reg.RBP,
  Reg.RSI,
  Reg.RDI,
  Reg.RBP,
  Reg.RBX,
]);
const INDEX16 = new Int8Array([Reg.RSI, Reg.RDI, Reg.RSI, Reg.RDI, -1, -1, -1, -1]);

/** Zero-padded window for decodes near the end of the input (no out-of-bounds reads). */
const PAD = new Uint8Array(32);
/** Longest read past the opcode start: 14 prefixes + 4 VEX/EVEX + op + modrm + sib + 4 + 4. */
const WINDOW = 32;

function _i32(m: Uint8Array, p: number): number {
  return m[p]! | (m[p + 1]! << 8) | (m[p + 2]! << 16) | (m[p + 3]! << 24);
}

/** Byte register number: without REX, 4–7 are AH..BH (16–19). */
function _breg(r: number, rex: number): number {
  return rex === 0 && r >= 4 && r < 8 ? r + 12 : r;
}

/**
 * Decodes the memory form of a ModRM byte (mod != 3) into out.base/index/scale/disp.
 * `p` points after the ModRM byte; returns the position after SIB and displacement.
 */
function _mem(
  out: Insn,
  m: Uint8Array,
  p: number,
  modrm: number,
  rex: number,
  asz: number,
  bits: number,
): number {
  const mod = modrm >> 6;
  const rm = modrm & 7;
  let disp = 0;
  if (asz === 2) {
    if (mod === 0 && rm === 6) {
      out.base = -1;
      out.index = -1;
      disp = (m[p]! | (m[p + 1]! << 8)) << 16 >> 16;
      p += 2;
    } else {
      out.base = BASE16[rm]!;
      out.index = INDEX16[rm]!;
      if (mod === 1) disp = (m[p++]! << 24) >> 24;
      else if (mod === 2) {
        disp = (m[p]! | (m[p + 1]! << 8)) << 16 >> 16;
        p += 2;
      }
    }
    out.scale = 0;
    out.disp = disp;
    out.dispHi = disp >> 31;
    return p;
  }
  let base: number;
  let index = -1;
  let scale = 0;
  if (rm === 4) {
    const sib = m[p++]!;
    const ix = ((sib >> 3) & 7) | ((rex & 2) << 2);
    if (ix !== 4) {
      index = ix;
      scale = sib >> 6;
    }
    const bs = sib & 7;
    if (bs === 5 && mod === 0) {
      base = -1;
      disp = _i32(m, p);
      p += 4;
    } else base = bs | ((rex & 1) << 3);
  } else if (rm === 5 && mod === 0) {
    // ModRM 00 101: disp32, RIP-relative in 64-bit mode (SDM 2.2.1.6).
    base = bits === 64 ? Reg.RIP : -1;
    disp = _i32(m, p);
    p += 4;
  } else base = rm | ((rex & 1) << 3);
  if (mod === 1) disp = (m[p++]! << 24) >> 24;
  else if (mod === 2) {
    disp = _i32(m, p);
    p += 4;
  }
  out.base = base;
  out.index = index;
  out.scale = scale;
  out.disp = disp;
  out.dispHi = disp >> 31;
  return p;
}

/** Skips the memory bytes (SIB, displacement) of a ModRM byte; length only. */
function _skip(m: Uint8Array, p: number, modrm: number, asz: number): number {
  const mod = modrm >> 6;
  if (mod === 3) return p;
  const rm = modrm & 7;
  if (asz === 2) {
    if (mod === 0) return rm === 6 ? p + 2 : p;
    return p + mod;
  }
  if (rm === 4) {
    if (mod === 0 && (m[p]! & 7) === 5) return p + 5;
    p++;
  } else if (mod === 0 && rm === 5) return p + 4;
  return mod === 1 ? p + 1 : mod === 2 ? p + 4 : p;
}

/** Sets operand 0 from the ModRM r/m field (register of `size`, or memory). */
function _rm0(
  out: Insn,
  m: Uint8Array,
  p: number,
  modrm: number,
  rex: number,
  asz: number,
  bits: number,
  size: number,
): number {
  out.size0 = size;
  if (modrm >= 0xc0) {
    const r = (modrm & 7) | ((rex & 1) << 3);
    out.kind0 = REG;
    out.reg0 = size === 1 ? _breg(r, rex) : r;
    return p;
  }
  out.kind0 = MEM;
  return _mem(out, m, p, modrm, rex, asz, bits);
}

/** Bytes of an immediate of kind `ik`. */
function _immLen(ik: number, osz: number, asz: number, bits: number): number {
  switch (ik) {
    case IK_NONE:
      return 0;
    case IK_B:
    case IK_REL8:
      return 1;
    case IK_W:
      return 2;
    case IK_Z:
      return osz === 2 ? 2 : 4;
    case IK_V:
      return osz;
    case IK_WB:
      return 3;
    case IK_RELZ:
      return bits === 64 ? 4 : osz === 2 ? 2 : 4;
    case IK_MOFFS:
      return asz;
    case IK_PTR:
      return osz === 2 ? 4 : 6;
    case IK_D:
      return 4;
  }
  return 0;
}

/** Length of a VEX (C4/C5), EVEX (62) or XOP (8F) instruction; `p` at the first payload byte. */
function _vexLen(m: Uint8Array, p: number, lead: number, asz: number): number {
  let map: number;
  if (lead === 0xc5) {
    map = 1;
    p += 1;
  } else if (lead === 0x62) {
    map = m[p]! & 7;
    p += 3;
  } else {
    map = m[p]! & 0x1f;
    p += 2;
  }
  const opc = m[p++]!;
  if (lead !== 0x62 && lead !== 0x8f && map === 1 && opc === 0x77) return p; // vzeroupper/all
  const modrm = m[p++]!;
  p = _skip(m, p, modrm, asz);
  if (lead === 0x8f) return map === 8 ? p + 1 : map === 10 ? p + 4 : p;
  if (map === 3) return p + 1;
  if (map === 1) {
    if ((opc >= 0x70 && opc <= 0x73) || opc === 0xc2 || (opc >= 0xc4 && opc <= 0xc6)) return p + 1;
  }
  if (map === 7) return p + 4;
  return p;
}

/** Resets the operand fields: the unsupported/length-only record. */
function _clear(out: Insn): void {
  out.nops = 0;
  out.cc = 0;
  out.kind0 = 0;
  out.reg0 = -1;
  out.size0 = 0;
  out.kind1 = 0;
  out.reg1 = -1;
  out.size1 = 0;
  out.kind2 = 0;
  out.reg2 = -1;
  out.size2 = 0;
  out.base = -1;
  out.index = -1;
  out.scale = 0;
  out.disp = 0;
  out.dispHi = 0;
  out.imm = 0;
  out.immHi = 0;
}

/** 16-bit addressing (67 in 32-bit mode): fills the memory fields; `p` after ModRM. */
function _mem16(out: Insn, m: Uint8Array, p: number, modrm: number): number {
  return _mem(out, m, p, modrm, 0, 2, 32);
}

/** imm8 sign-extended. */
function _imm8s(out: Insn, m: Uint8Array, p: number): number {
  const v = (m[p]! << 24) >> 24;
  out.imm = v;
  out.immHi = v >> 31;
  return p + 1;
}

/** imm16 sign-extended. */
function _imm16s(out: Insn, m: Uint8Array, p: number): number {
  const v = ((m[p]! | (m[p + 1]! << 8)) << 16) >> 16;
  out.imm = v;
  out.immHi = v >> 31;
  return p + 2;
}

/** imm32 sign-extended to 64. */
function _imm32s(out: Insn, m: Uint8Array, p: number): number {
  const v = m[p]! | (m[p + 1]! << 8) | (m[p + 2]! << 16) | (m[p + 3]! << 24);
  out.imm = v;
  out.immHi = v >> 31;
  return p + 4;
}

/**
 * The full-width immediate of an operation of `sz` bytes: imm8, imm16 or imm32 as is
 * (zero-extended), imm32 sign-extended for 64-bit operations.
 */
function _immZ(out: Insn, m: Uint8Array, p: number, sz: number): number {
  if (sz === 1) {
    out.imm = m[p]!;
    return p + 1;
  }
  if (sz === 2) {
    out.imm = m[p]! | (m[p + 1]! << 8);
    return p + 2;
  }
  const v = m[p]! | (m[p + 1]! << 8) | (m[p + 2]! << 16) | (m[p + 3]! << 24);
  out.imm = v;
  if (sz === 8) out.immHi = v >> 31;
  return p + 4;
}

/**
 * Core decode over a buffer with at least {@link WINDOW} readable bytes from `off`.
 * Returns the instruction length as decoded (possibly > 15 or beyond the real input: the
 * caller classifies TOO_LONG / TRUNCATED). First step: prefixes.
 */
function _decode(out: Insn, m: Uint8Array, off: number, bits: number): number {
  let p = off;
  let pfx = 0;
  let seg = -1;
  let rex = 0;
  let b = m[p]!;
  let k = PFX[b]!;
  while (k !== 0) {
    if (k === PK_REX) {
      if (bits !== 64) break;
      rex = b;
    } else {
      // A legacy prefix after REX cancels it: REX counts only right before the opcode.
      rex = 0;
      if (k < PK_OPSIZE) {
        if (bits === 32 || k >= 5) seg = k - 1;
      } else if (k === PK_OPSIZE) pfx |= Prefix.OPSIZE;
      else if (k === PK_ADDRSIZE) pfx |= Prefix.ADDRSIZE;
      else if (k === PK_LOCK) pfx |= Prefix.LOCK;
      else if (k === PK_REPNE) pfx = (pfx & ~Prefix.REP) | Prefix.REPNE; // the last of F2/F3 wins
      else if (k === PK_REP) pfx = (pfx & ~Prefix.REPNE) | Prefix.REP;
    }
    p++;
    if (p - off >= 15) {
      out.prefixes = pfx;
      out.seg = seg;
      out.opSize = 4;
      out.addrSize = bits === 64 ? 8 : 4;
      return 16;
    }
    b = m[p]!;
    k = PFX[b]!;
  }
  p++;
  if (rex !== 0) pfx |= rex & 8 ? Prefix.REX | Prefix.REX_W : Prefix.REX;
  const w = rex & 8;
  const osz = w ? 8 : pfx & Prefix.OPSIZE ? 2 : 4;
  const asz = bits === 64 ? (pfx & Prefix.ADDRSIZE ? 4 : 8) : pfx & Prefix.ADDRSIZE ? 2 : 4;
  // Stack operations default to 64-bit in long mode; near branches are forced to 64.
  const ssz = bits === 64 ? (w ? 8 : pfx & Prefix.OPSIZE ? 2 : 8) : osz;
  const bsz = bits === 64 ? 8 : osz;
  out.prefixes = pfx;
  out.seg = seg;
  out.addrSize = asz;
  out.opSize = osz;
  out.nops = 0;
  out.cc = 0;
  out.kind0 = 0;
  out.reg0 = -1;
  out.size0 = 0;
  out.kind1 = 0;
  out.reg1 = -1;
  out.size1 = 0;
  out.kind2 = 0;
  out.reg2 = -1;
  out.size2 = 0;
  out.base = -1;
  out.index = -1;
  out.scale = 0;
  out.disp = 0;
  out.dispHi = 0;
  out.imm = 0;
  out.immHi = 0;

  // Second step: the opcode map entry.
  let h: number;
  let f: number;
  if (b !== 0x0f) {
    h = H1[b]!;
    f = LEN1[b]!;
  } else {
    b = m[p++]!;
    h = H2[b]!;
    f = LEN2[b]!;
  }

  // Third step: ModRM, decoded once for every opcode that has one. `rm` is the r/m
  // register (-1 for a memory operand, whose fields go straight into `out`), `g` the reg
  // field; `rmb`/`gb` are the same as byte registers (AH..BH without REX).
  let modrm = 0;
  let rm = -1;
  let g = 0;
  let rmk: number = MEM;
  if (f & L_MODRM) {
    modrm = m[p++]!;
    g = ((modrm >> 3) & 7) | ((rex & 4) << 1);
    if (modrm >= 0xc0 || f & L_REGONLY) { // register form (0F 20-27 always are)
      rm = (modrm & 7) | ((rex & 1) << 3);
      rmk = REG;
    } else if (asz === 2) p = _mem16(out, m, p, modrm);
    else {
      const mod = modrm >> 6;
      const r = modrm & 7;
      let disp = 0;
      if (r === 4) {
        const sib = m[p++]!;
        const ix = ((sib >> 3) & 7) | ((rex & 2) << 2);
        if (ix !== 4) {
          out.index = ix;
          out.scale = sib >> 6;
        }
        if ((sib & 7) === 5 && mod === 0) {
          disp = m[p]! | (m[p + 1]! << 8) | (m[p + 2]! << 16) | (m[p + 3]! << 24);
          p += 4;
        } else out.base = (sib & 7) | ((rex & 1) << 3);
      } else if (r === 5 && mod === 0) {
        // ModRM 00 101: disp32, RIP-relative in 64-bit mode (SDM 2.2.1.6).
        if (bits === 64) out.base = Reg.RIP;
        disp = m[p]! | (m[p + 1]! << 8) | (m[p + 2]! << 16) | (m[p + 3]! << 24);
        p += 4;
      } else out.base = r | ((rex & 1) << 3);
      if (mod === 1) disp = (m[p++]! << 24) >> 24;
      else if (mod === 2) {
        disp = m[p]! | (m[p + 1]! << 8) | (m[p + 2]! << 16) | (m[p + 3]! << 24);
        p += 4;
      }
      if (disp !== 0) {
        out.disp = disp;
        out.dispHi = disp >> 31;
      }
    }
  }
  const rmb = rex === 0 && rm >= 4 && rm < 8 ? rm + 12 : rm;
  const gb = rex === 0 && g >= 4 && g < 8 ? g + 12 : g;

  // Fourth step: the handler gives the operation, the operands and reads the immediate.
  let op: number = Op.UNSUPPORTED;
  switch (h) {
    case 1: { // A_ALU: 00-3D
      op = Op.ADD + (b >> 3);
      const form = b & 7;
      const sz = b & 1 ? osz : 1;
      out.opSize = sz;
      out.nops = 2;
      out.size0 = sz;
      out.size1 = sz;
      if (form < 2) {
        out.kind0 = rmk;
        out.reg0 = sz === 1 ? rmb : rm;
        out.kind1 = REG;
        out.reg1 = sz === 1 ? gb : g;
      } else if (form < 4) {
        out.kind0 = REG;
        out.reg0 = sz === 1 ? gb : g;
        out.kind1 = rmk;
        out.reg1 = sz === 1 ? rmb : rm;
      } else {
        out.kind0 = REG;
        out.reg0 = 0;
        out.kind1 = IMM;
        p = _immZ(out, m, p, sz);
      }
      break;
    }
    case 2: // A_PUSHS
    case 3: // A_POPS
      if (bits === 64) {
        op = Op.INVALID;
        break;
      }
      op = b & 1 ? Op.POP : Op.PUSH;
      out.nops = 1;
      out.kind0 = SREG;
      out.reg0 = b >> 3;
      out.size0 = 2;
      break;
    case 4: // A_INCDEC: 40-4F, only reached in 32-bit mode (in 64-bit mode they are REX)
      op = b < 0x48 ? Op.INC : Op.DEC;
      out.nops = 1;
      out.kind0 = REG;
      out.reg0 = b & 7;
      out.size0 = osz;
      break;
    case 5: // A_PUSHR
    case 6: // A_POPR
      op = b < 0x58 ? Op.PUSH : Op.POP;
      out.opSize = ssz;
      out.nops = 1;
      out.kind0 = REG;
      out.reg0 = (b & 7) | ((rex & 1) << 3);
      out.size0 = ssz;
      break;
    case 7: // A_63: movsxd in 64-bit mode, arpl in 32-bit mode
      if (bits === 32) break;
      op = Op.MOVSX;
      out.nops = 2;
      out.kind0 = REG;
      out.reg0 = g;
      out.size0 = osz;
      out.kind1 = rmk;
      out.reg1 = rm;
      out.size1 = osz === 8 ? 4 : osz;
      break;
    case 8: // A_PUSHI: 68 / 6A
      op = Op.PUSH;
      out.opSize = ssz;
      out.nops = 1;
      out.kind0 = IMM;
      out.size0 = ssz;
      p = b === 0x6a ? _imm8s(out, m, p) : ssz === 2 ? _imm16s(out, m, p) : _imm32s(out, m, p);
      break;
    case 9: // A_IMUL3: 69 / 6B
      op = Op.IMUL3;
      out.nops = 3;
      out.kind0 = REG;
      out.reg0 = g;
      out.size0 = osz;
      out.kind1 = rmk;
      out.reg1 = rm;
      out.size1 = osz;
      out.kind2 = IMM;
      out.size2 = osz;
      p = b === 0x6b ? _imm8s(out, m, p) : osz === 2 ? _imm16s(out, m, p) : _imm32s(out, m, p);
      break;
    case 10: // A_JCC8
      op = Op.JCC;
      out.cc = b & 15;
      out.opSize = bsz;
      out.nops = 1;
      out.kind0 = IMM;
      out.size0 = bsz;
      p = _imm8s(out, m, p);
      break;
    case 11: { // A_GRP1: 80-83
      if (b === 0x82 && bits === 64) {
        op = Op.INVALID;
        break;
      }
      op = Op.ADD + ((modrm >> 3) & 7);
      const sz = b & 1 ? osz : 1;
      out.opSize = sz;
      out.nops = 2;
      out.kind0 = rmk;
      out.reg0 = sz === 1 ? rmb : rm;
      out.size0 = sz;
      out.kind1 = IMM;
      out.size1 = sz;
      p = b === 0x83 ? _imm8s(out, m, p) : _immZ(out, m, p, sz);
      break;
    }
    case 12: { // A_EG: 84/85 test, 86/87 xchg, 88/89 mov E,G, 8A/8B mov G,E
      op = b < 0x86 ? Op.TEST : b < 0x88 ? Op.XCHG : Op.MOV;
      const sz = b & 1 ? osz : 1;
      out.opSize = sz;
      out.nops = 2;
      out.size0 = sz;
      out.size1 = sz;
      if (b < 0x8a) {
        out.kind0 = rmk;
        out.reg0 = sz === 1 ? rmb : rm;
        out.kind1 = REG;
        out.reg1 = sz === 1 ? gb : g;
      } else {
        out.kind0 = REG;
        out.reg0 = sz === 1 ? gb : g;
        out.kind1 = rmk;
        out.reg1 = sz === 1 ? rmb : rm;
      }
      break;
    }
    case 13: { // A_MOVFS: 8C, mov r/m, sreg
      const sr = (modrm >> 3) & 7;
      if (sr > 5) {
        op = Op.INVALID;
        break;
      }
      op = Op.MOV;
      out.nops = 2;
      const sz = rmk === REG ? osz : 2;
      out.opSize = sz;
      out.kind0 = rmk;
      out.reg0 = rm;
      out.size0 = sz;
      out.kind1 = SREG;
      out.reg1 = sr;
      out.size1 = 2;
      break;
    }
    case 14: // A_LEA
      if (rmk === REG) {
        op = Op.INVALID;
        break;
      }
      op = Op.LEA;
      out.nops = 2;
      out.kind0 = REG;
      out.reg0 = g;
      out.size0 = osz;
      out.kind1 = MEM;
      out.size1 = osz;
      break;
    case 15: { // A_MOVTS: 8E, mov sreg, r/m
      const sr = (modrm >> 3) & 7;
      if (sr > 5 || sr === 1) { // mov to CS is #UD
        op = Op.INVALID;
        break;
      }
      op = Op.MOV;
      out.opSize = 2;
      out.nops = 2;
      out.kind0 = SREG;
      out.reg0 = sr;
      out.size0 = 2;
      out.kind1 = rmk;
      out.reg1 = rm;
      out.size1 = rmk === REG ? osz : 2;
      break;
    }
    case 16: // A_8F: pop r/m, or XOP (map select 8..1F cannot be pop's /0)
      if ((m[p]! & 0x1f) >= 8) {
        p = _vexLen(m, p, 0x8f, asz);
        break;
      }
      modrm = m[p++]!;
      if ((modrm & 0x38) !== 0) {
        op = Op.INVALID;
        p = _skip(m, p, modrm, asz);
        break;
      }
      op = Op.POP;
      out.opSize = ssz;
      out.nops = 1;
      p = _rm0(out, m, p, modrm, rex, asz, bits, ssz);
      break;
    case 17: { // A_XCHGA: 90-97
      const r = (b & 7) | ((rex & 1) << 3);
      if (b === 0x90 && pfx & Prefix.REP) {
        op = Op.PAUSE; // F3 90 is PAUSE even with REX.B (as iced decodes it)
        break;
      }
      if (r === 0) {
        op = Op.NOP; // 90 is NOP, not xchg eax,eax (which would zero-extend rax)
        break;
      }
      op = Op.XCHG;
      out.nops = 2;
      out.kind0 = REG;
      out.reg0 = r;
      out.size0 = osz;
      out.kind1 = REG;
      out.reg1 = 0;
      out.size1 = osz;
      break;
    }
    case 18: // A_NOARG
      op = NOARG_OP[b]!;
      if (NOARG_SIZE[b] === 1) out.opSize = ssz;
      break;
    case 19: { // A_MOFFS: A0-A3
      op = Op.MOV;
      const sz = b & 1 ? osz : 1;
      out.opSize = sz;
      out.nops = 2;
      // moffs: absolute offset of address size; the high half (asz 8) goes to dispHi.
      if (asz === 8) {
        out.disp = _i32(m, p);
        out.dispHi = _i32(m, p + 4);
      } else if (asz === 4) {
        out.disp = _i32(m, p);
      } else {
        out.disp = m[p]! | (m[p + 1]! << 8);
      }
      p += asz;
      out.size0 = sz;
      out.size1 = sz;
      if (b < 0xa2) {
        out.kind0 = REG;
        out.reg0 = 0;
        out.kind1 = MEM;
      } else {
        out.kind0 = MEM;
        out.kind1 = REG;
        out.reg1 = 0;
      }
      break;
    }
    case 20: // A_STR
      op = STR_OP[b]!;
      out.opSize = b & 1 ? osz : 1;
      break;
    case 21: { // A_TESTA: A8 / A9
      op = Op.TEST;
      const sz = b & 1 ? osz : 1;
      out.opSize = sz;
      out.nops = 2;
      out.kind0 = REG;
      out.reg0 = 0;
      out.size0 = sz;
      out.kind1 = IMM;
      out.size1 = sz;
      p = _immZ(out, m, p, sz);
      break;
    }
    case 22: { // A_MOVB: B0-B7
      op = Op.MOV;
      out.opSize = 1;
      out.nops = 2;
      const r = (b & 7) | ((rex & 1) << 3);
      out.kind0 = REG;
      out.reg0 = rex === 0 && r >= 4 ? r + 12 : r;
      out.size0 = 1;
      out.kind1 = IMM;
      out.size1 = 1;
      out.imm = m[p++]!;
      break;
    }
    case 23: // A_MOVV: B8-BF
      op = Op.MOV;
      out.nops = 2;
      out.kind0 = REG;
      out.reg0 = (b & 7) | ((rex & 1) << 3);
      out.size0 = osz;
      out.kind1 = IMM;
      out.size1 = osz;
      if (osz === 8) { // movabs: the only imm64
        out.imm = _i32(m, p);
        out.immHi = _i32(m, p + 4);
        p += 8;
      } else p = _immZ(out, m, p, osz);
      break;
    case 24: { // A_SHIFT: C0 C1 D0-D3
      op = Op.ROL + ((modrm >> 3) & 7);
      const sz = b & 1 ? osz : 1;
      out.opSize = sz;
      out.nops = 2;
      out.kind0 = rmk;
      out.reg0 = sz === 1 ? rmb : rm;
      out.size0 = sz;
      out.size1 = 1;
      if (b >= 0xd2) {
        out.kind1 = REG;
        out.reg1 = 1; // cl
      } else {
        out.kind1 = IMM;
        out.imm = b >= 0xd0 ? 1 : m[p++]!;
      }
      break;
    }
    case 25: // A_RET: C2 / C3
      op = Op.RET;
      out.opSize = bsz;
      if (b === 0xc2) {
        out.nops = 1;
        out.kind0 = IMM;
        out.size0 = 2;
        out.imm = m[p]! | (m[p + 1]! << 8);
        p += 2;
      }
      break;
    case 26: // A_VEX: C4 / C5 (les / lds in 32-bit mode unless mod == 3)
    case 29: // A_EVEX: 62 (bound in 32-bit mode unless mod == 3)
      if (bits === 64 || m[p]! >= 0xc0) p = _vexLen(m, p, b, asz);
      else {
        modrm = m[p++]!;
        p = _skip(m, p, modrm, asz);
      }
      break;
    case 27: { // A_MOVI: C6 / C7
      const sz = b & 1 ? osz : 1;
      if ((modrm & 0x38) !== 0) {
        // Only C6 F8 (xabort ib) and C7 F8 (xbegin rel) live here besides mov.
        if (modrm !== 0xf8) op = Op.INVALID;
        p += b & 1 ? (osz === 2 ? 2 : 4) : 1; // xbegin honours 66 even in 64-bit mode
        break;
      }
      op = Op.MOV;
      out.opSize = sz;
      out.nops = 2;
      out.kind0 = rmk;
      out.reg0 = sz === 1 ? rmb : rm;
      out.size0 = sz;
      out.kind1 = IMM;
      out.size1 = sz;
      p = _immZ(out, m, p, sz);
      break;
    }
    case 28: // A_INT
      op = Op.INT;
      out.nops = 1;
      out.kind0 = IMM;
      out.size0 = 1;
      out.imm = m[p++]!;
      break;
    case 30: // A_CALLJMP: E8 / E9
      op = b === 0xe8 ? Op.CALL : Op.JMP;
      out.opSize = bsz;
      out.nops = 1;
      out.kind0 = IMM;
      out.size0 = bsz;
      p = bsz === 2 ? _imm16s(out, m, p) : _imm32s(out, m, p);
      break;
    case 31: // A_JMP8
      op = Op.JMP;
      out.opSize = bsz;
      out.nops = 1;
      out.kind0 = IMM;
      out.size0 = bsz;
      p = _imm8s(out, m, p);
      break;
    case 32: { // A_GRP3: F6 / F7
      const r = (modrm >> 3) & 7;
      const sz = b & 1 ? osz : 1;
      op = GRP3_OP[r]!;
      out.opSize = sz;
      out.kind0 = rmk;
      out.reg0 = sz === 1 ? rmb : rm;
      out.size0 = sz;
      if (r < 2) {
        out.nops = 2;
        out.kind1 = IMM;
        out.size1 = sz;
        p = _immZ(out, m, p, sz);
      } else out.nops = 1;
      break;
    }
    case 33: // A_GRP4: FE
      if ((modrm & 0x30) !== 0) {
        op = Op.INVALID;
        break;
      }
      op = modrm & 8 ? Op.DEC : Op.INC;
      out.opSize = 1;
      out.nops = 1;
      out.kind0 = rmk;
      out.reg0 = rmb;
      out.size0 = 1;
      break;
    case 34: { // A_GRP5: FF
      const r = (modrm >> 3) & 7;
      let sz = osz;
      if (r < 2) op = r === 0 ? Op.INC : Op.DEC;
      else if (r === 2 || r === 4) {
        op = r === 2 ? Op.CALL_IND : Op.JMP_IND;
        sz = bsz;
      } else if (r === 6) {
        op = Op.PUSH;
        sz = ssz;
      } else {
        // /3 /5 far call/jmp through memory (register form #UD), /7 #UD.
        if (r === 7 || rmk === REG) op = Op.INVALID;
        break;
      }
      out.opSize = sz;
      out.nops = 1;
      out.kind0 = rmk;
      out.reg0 = rm;
      out.size0 = sz;
      break;
    }
    case 41: // B_CMOV
      op = Op.CMOVCC;
      out.cc = b & 15;
      out.nops = 2;
      out.kind0 = REG;
      out.reg0 = g;
      out.size0 = osz;
      out.kind1 = rmk;
      out.reg1 = rm;
      out.size1 = osz;
      break;
    case 42: // B_JCC
      op = Op.JCC;
      out.cc = b & 15;
      out.opSize = bsz;
      out.nops = 1;
      out.kind0 = IMM;
      out.size0 = bsz;
      p = bsz === 2 ? _imm16s(out, m, p) : _imm32s(out, m, p);
      break;
    case 43: // B_SETCC
      op = Op.SETCC;
      out.cc = b & 15;
      out.opSize = 1;
      out.nops = 1;
      out.kind0 = rmk;
      out.reg0 = rmb;
      out.size0 = 1;
      break;
    case 44: // B_PUSHS: 0F A0 / A8
    case 45: // B_POPS: 0F A1 / A9
      op = b & 1 ? Op.POP : Op.PUSH;
      out.opSize = ssz;
      out.nops = 1;
      out.kind0 = SREG;
      out.reg0 = b < 0xa8 ? 4 : 5;
      out.size0 = 2;
      break;
    case 46: // B_BT: 0F A3 AB B3 BB
      op = Op.BT + ((b >> 3) & 3);
      out.nops = 2;
      out.kind0 = rmk;
      out.reg0 = rm;
      out.size0 = osz;
      out.kind1 = REG;
      out.reg1 = g;
      out.size1 = osz;
      break;
    case 50: { // B_BTI: 0F BA
      const r = (modrm >> 3) & 7;
      if (r < 4) {
        op = Op.INVALID;
        p++;
        break;
      }
      op = Op.BT + r - 4;
      out.nops = 2;
      out.kind0 = rmk;
      out.reg0 = rm;
      out.size0 = osz;
      out.kind1 = IMM;
      out.size1 = 1;
      out.imm = m[p++]!;
      break;
    }
    case 47: // B_IMUL2
      op = Op.IMUL2;
      out.nops = 2;
      out.kind0 = REG;
      out.reg0 = g;
      out.size0 = osz;
      out.kind1 = rmk;
      out.reg1 = rm;
      out.size1 = osz;
      break;
    case 48: { // B_EGB: 0F B0 B1 (cmpxchg), C0 C1 (xadd)
      op = b < 0xc0 ? Op.CMPXCHG : Op.XADD;
      const sz = b & 1 ? osz : 1;
      out.opSize = sz;
      out.nops = 2;
      out.kind0 = rmk;
      out.reg0 = sz === 1 ? rmb : rm;
      out.size0 = sz;
      out.kind1 = REG;
      out.reg1 = sz === 1 ? gb : g;
      out.size1 = sz;
      break;
    }
    case 49: { // B_MOVX: 0F B6 B7 (movzx), BE BF (movsx)
      op = b < 0xb8 ? Op.MOVZX : Op.MOVSX;
      out.nops = 2;
      out.kind0 = REG;
      out.reg0 = g;
      out.size0 = osz;
      out.kind1 = rmk;
      out.reg1 = b & 1 ? rm : rmb;
      out.size1 = b & 1 ? 2 : 1;
      break;
    }
    case 51: // B_BSWAP
      op = Op.BSWAP;
      out.nops = 1;
      out.kind0 = REG;
      out.reg0 = (b & 7) | ((rex & 1) << 3);
      out.size0 = osz;
      break;
    case 52: // B_NOPL: 0F 1F; /1../7 are reserved-NOP hints: unsupported
      if ((modrm & 0x38) === 0) op = Op.NOP;
      break;
    case 53: // B_NOARG: 0F 0B, 0F A2
      op = b === 0x0b ? Op.UD2 : Op.CPUID;
      break;
    case 54: // B_GRP15: 0F AE; fences are the register forms of /5 /6 /7 without 66/F2/F3
      if (modrm >= 0xe8 && (pfx & (Prefix.OPSIZE | Prefix.REP | Prefix.REPNE)) === 0) {
        op = modrm < 0xf0 ? Op.LFENCE : modrm < 0xf8 ? Op.MFENCE : Op.SFENCE;
      }
      break;
    case 55: // B_MAP38: 0F 38 xx /r
    case 56: // B_MAP3A: 0F 3A xx /r ib
      p++;
      modrm = m[p++]!;
      p = _skip(m, p, modrm, asz) + (h === 56 ? 1 : 0);
      break;
    case 57: // B_78: 66 0F 78 /0 ib ib (extrq), F2 0F 78 ib ib (insertq); 0F 78 is vmread
      if (pfx & Prefix.REPNE || (pfx & (Prefix.OPSIZE | Prefix.REP)) === Prefix.OPSIZE) p += 2;
      break;
    default:
      // Outside the supported set: the length tables give the immediate.
      if (f & L_INVALID || (f & L_INV64 && bits === 64)) op = Op.INVALID;
      else p += _immLen((f >> 1) & 15, osz, asz, bits);
  }
  if (pfx & Prefix.LOCK && op >= Op.ADD && (LOCKABLE[op] === 0 || out.kind0 !== MEM)) {
    op = Op.INVALID; // LOCK on a register destination or a non-lockable op: #UD
  }
  out.op = op;
  return p - off;
}

// ---------------------------------------------------------------------------------------
// 64-bit fast path: the most frequent forms of real compiled code (no legacy prefix, at
// most a REX), decoded with few branches. Everything else, and anything this path does
// not recognise, goes to `_decode`; both paths fill identical records (the fast path is a
// shortcut, never a second opinion: `tests/decode_fast_test.ts` checks them against each other).

/** Fast-path classes, by opcode (0–255 one-byte map, 256–511 the 0F map); 0: general path. */
const FC = new Uint8Array(512);
/** ModRM E,G / G,E forms: ALU 00–3B, test 84/85, xchg 86/87, mov 88–8B, lea 8D. */
const FC_EG = 1;
/** ModRM E,imm forms: 80 81 83 (group 1), C6 C7 (mov, /0 only). */
const FC_EI = 2;
/** Relative branches E8 E9 EB 70–7F 0F 80–8F, and push imm 68 / 6A: one signed immediate. */
const FC_REL = 3;
/** push / pop 50–5F. */
const FC_PUSHPOP = 4;
/** G, E with a byte/word source: 0F B6 B7 BE BF (movzx / movsx). */
const FC_MOVX = 5;
/** No operand: int3 CC (operand size), ret C3 and leave C9 (64-bit). */
const FC_NONE = 6;
for (let b = 0; b < 0x40; b++) if ((b & 7) < 4) FC[b] = FC_EG;
for (let b = 0x84; b <= 0x8b; b++) FC[b] = FC_EG;
FC[0x8d] = FC_EG;
for (const b of [0x80, 0x81, 0x83, 0xc6, 0xc7]) FC[b] = FC_EI;
for (const b of [0xe8, 0xe9, 0xeb, 0x68, 0x6a]) FC[b] = FC_REL;
for (const b of [0xc3, 0xc9, 0xcc]) FC[b] = FC_NONE;
for (let b = 0x70; b < 0x80; b++) FC[b] = FC_REL;
for (let b = 0x80; b < 0x90; b++) FC[256 + b] = FC_REL;
for (let b = 0x50; b < 0x60; b++) FC[b] = FC_PUSHPOP;
for (const b of [0xb6, 0xb7, 0xbe, 0xbf]) FC[256 + b] = FC_MOVX;

/** Operation of each fast-path opcode (index as {@link FC}). */
const FOP = new Uint8Array(512);
for (let b = 0; b < 0x40; b++) FOP[b] = Op.ADD + (b >> 3);
FOP[0x84] = FOP[0x85] = Op.TEST;
FOP[0x86] = FOP[0x87] = Op.XCHG;
FOP[0x88] =
  FOP[0x89] =
  FOP[0x8a] =
  FOP[0x8b] =
    Op.MOV;
FOP[0x8d] = Op.LEA;
FOP[0xc6] = FOP[0xc7] = Op.MOV;
FOP[0xe8] = Op.CALL;
FOP[0x68] = FOP[0x6a] = Op.PUSH;
FOP[0xc3] = Op.RET;
FOP[0xc9] = Op.LEAVE;
FOP[0xcc] = Op.INT3;
FOP[0xe9] = FOP[0xeb] = Op.JMP;
for (let b = 0x70; b < 0x80; b++) FOP[b] = Op.JCC;
for (let b = 0x80; b < 0x90; b++) FOP[256 + b] = Op.JCC;
for (let b = 0x50; b < 0x58; b++) FOP[b] = Op.PUSH;
for (let b = 0x58; b < 0x60; b++) FOP[b] = Op.POP;
FOP[256 + 0xb6] = FOP[256 + 0xb7] = Op.MOVZX;
FOP[256 + 0xbe] = FOP[256 + 0xbf] = Op.MOVSX;
/** 1 when the E,G form has the register operand first (G,E: 02/03-style, 8A 8B 8D). */
const FDIR = new Uint8Array(256);
for (let b = 0; b < 0x40; b++) FDIR[b] = (b >> 1) & 1;
FDIR[0x8a] = FDIR[0x8b] = FDIR[0x8d] = 1;

/** 1 for a REX byte (40–4F). */
const REXI = new Uint8Array(256);
/** {@link Prefix} bits of a REX byte. */
const REXP = new Uint8Array(256);
for (let i = 0x40; i < 0x50; i++) {
  REXI[i] = 1;
  REXP[i] = i & 8 ? Prefix.REX | Prefix.REX_W : Prefix.REX;
}

/**
 * ModRM memory forms in 64-bit addressing without prefixes, by ModRM byte:
 * bits 0–2 displacement bytes (0, 1, 4), bit 3 SIB follows, bit 4 RIP-relative.
 */
const MRM = new Uint8Array(256);
for (let i = 0; i < 0xc0; i++) {
  const mod = i >> 6, rm = i & 7;
  MRM[i] = (mod === 1 ? 1 : mod === 2 ? 4 : rm === 5 ? 4 : 0) | (rm === 4 ? 8 : 0) |
    (mod === 0 && rm === 5 ? 16 : 0);
}

/**
 * Memory operand of a fast-path ModRM (mod != 3, 64-bit addressing): fills base, index,
 * scale, disp, dispHi and returns the position after the displacement. `p` is after ModRM.
 */
function _fmem(out: Insn, m: Uint8Array, p: number, modrm: number, rex: number): number {
  const f = MRM[modrm]!;
  let base = (modrm & 7) | ((rex & 1) << 3);
  let index = -1;
  let scale = 0;
  let dl = f & 7;
  if (f & 8) {
    const sib = m[p++]!;
    const ix = ((sib >> 3) & 7) | ((rex & 2) << 2);
    if (ix !== 4) {
      index = ix;
      scale = sib >> 6;
    }
    if ((sib & 7) === 5 && modrm < 0x40) {
      base = -1;
      dl = 4;
    } else base = (sib & 7) | ((rex & 1) << 3);
  } else if (f & 16) base = Reg.RIP;
  // Read four bytes whatever the length (the window is padded), then keep 0, 1 or 4.
  const raw = m[p]! | (m[p + 1]! << 8) | (m[p + 2]! << 16) | (m[p + 3]! << 24);
  const disp = dl === 4 ? raw : dl === 1 ? (raw << 24) >> 24 : 0;
  out.base = base;
  out.index = index;
  out.scale = scale;
  out.disp = disp;
  out.dispHi = disp >> 31;
  return p + dl;
}

/**
 * The fast path: decodes `m[p..]` (64-bit mode, at least {@link WINDOW} bytes readable)
 * when it is one of the {@link FC} forms, filling every field of `out` but `len`.
 * Returns the length, or 0 to send the instruction to the general path.
 */
function _fast64(out: Insn, m: Uint8Array, p: number): number {
  const b0 = m[p]!;
  const r = REXI[b0]!;
  const rex = b0 & -r;
  let q = p + r;
  let b = m[q]!;
  const esc = b === 0x0f ? 256 : 0;
  q += esc >> 8;
  b = m[q++]!;
  const c = FC[esc | b]!;
  if (c === 0) return 0;
  const w = rex & 8;
  const osz = w ? 8 : 4;
  let op = FOP[esc | b]!;
  let nops = 2;
  let cc = 0;
  let k0 = 0, r0 = -1, s0 = 0, k1 = 0, r1 = -1, s1 = 0;
  let imm = 0, immHi = 0;
  let opSize = osz;
  if (c === FC_EG || c === FC_EI || c === FC_MOVX) {
    const modrm = m[q++]!;
    let ek: number = REG, er = -1;
    if (modrm >= 0xc0) {
      er = (modrm & 7) | ((rex & 1) << 3);
      out.base = -1;
      out.index = -1;
      out.scale = 0;
      out.disp = 0;
      out.dispHi = 0;
    } else {
      ek = MEM;
      q = _fmem(out, m, q, modrm, rex);
    }
    const sz = c === FC_MOVX ? osz : b & 1 ? osz : 1;
    // Byte registers 4–7 without REX are AH..BH.
    const erb = sz === 1 && rex === 0 && er >= 4 && er < 8 ? er + 12 : er;
    if (c === FC_EI) {
      const g3 = (modrm >> 3) & 7;
      if (b >= 0xc6) {
        if (g3 !== 0) return 0;
      } else op = Op.ADD + g3;
      k0 = ek;
      r0 = erb;
      s0 = sz;
      k1 = IMM;
      s1 = sz;
      const raw = m[q]! | (m[q + 1]! << 8) | (m[q + 2]! << 16) | (m[q + 3]! << 24);
      if (b === 0x83) {
        imm = (raw << 24) >> 24;
        immHi = imm >> 31;
        q++;
      } else if (sz === 1) {
        imm = raw & 0xff;
        q++;
      } else {
        imm = raw;
        if (sz === 8) immHi = raw >> 31;
        q += 4;
      }
    } else {
      const g = ((modrm >> 3) & 7) | ((rex & 4) << 1);
      if (c === FC_MOVX) {
        k0 = REG;
        r0 = g;
        s0 = osz;
        k1 = ek;
        r1 = b & 1 || rex !== 0 || er < 4 || er >= 8 ? er : er + 12;
        s1 = b & 1 ? 2 : 1;
      } else {
        if (b === 0x8d && ek === REG) return 0; // lea with a register source: #UD
        const gb = sz === 1 && rex === 0 && g >= 4 && g < 8 ? g + 12 : g;
        s0 = s1 = sz;
        if (FDIR[b]) {
          k0 = REG;
          r0 = gb;
          k1 = ek;
          r1 = erb;
        } else {
          k0 = ek;
          r0 = erb;
          k1 = REG;
          r1 = gb;
        }
      }
      opSize = sz;
    }
    if (c === FC_EI) opSize = sz;
  } else {
    out.base = -1;
    out.index = -1;
    out.scale = 0;
    out.disp = 0;
    out.dispHi = 0;
    nops = 1;
    k0 = REG;
    s0 = 8;
    opSize = 8;
    if (c === FC_REL) {
      k0 = IMM;
      if (esc !== 0 || (b >= 0xe8 && b < 0xea) || b === 0x68) {
        imm = m[q]! | (m[q + 1]! << 8) | (m[q + 2]! << 16) | (m[q + 3]! << 24);
        q += 4;
      } else imm = (m[q++]! << 24) >> 24;
      immHi = imm >> 31;
      if (op === Op.JCC) cc = b & 15;
    } else if (c === FC_PUSHPOP) r0 = (b & 7) | ((rex & 1) << 3);
    else { // FC_NONE
      nops = 0;
      k0 = 0;
      s0 = 0;
      if (b === 0xcc) opSize = osz;
    }
  }
  out.prefixes = REXP[b0]!;
  out.seg = -1;
  out.addrSize = 8;
  out.opSize = opSize;
  out.op = op;
  out.cc = cc;
  out.nops = nops;
  out.kind0 = k0;
  out.reg0 = r0;
  out.size0 = s0;
  out.kind1 = k1;
  out.reg1 = r1;
  out.size1 = s1;
  out.kind2 = 0;
  out.reg2 = -1;
  out.size2 = 0;
  out.imm = imm;
  out.immHi = immHi;
  return q - p;
}

/**
 * The 64-bit fast path of {@link decodeInto} on its own, for tests that compare it with
 * the general path: it decodes only the common forms it knows (ModRM ALU/mov/lea/test,
 * group-1 immediates, relative branches, push/pop, movzx/movsx, ret, leave, int3).
 *
 * @param out The record to fill (every field but `len`) when the form is known.
 * @param bytes Code bytes; at least 32 must be readable from `offset`.
 * @param offset Offset of the instruction.
 * @returns The instruction's length, or 0 when it is not a fast-path form (then `out` is
 *   unspecified and {@link decodeInto} takes the general path).
 */
export function decodeFast64(out: Insn, bytes: Uint8Array, offset: number): number {
  if (bytes.length - offset < WINDOW) return 0;
  return _fast64(out, bytes, offset);
}

/**
 * Decodes one instruction into `out` without allocating (the hot-path form): every field
 * of `out` is overwritten.
 *
 * @param out The record to fill.
 * @param bytes Code bytes.
 * @param offset Offset of the instruction's first byte in `bytes`.
 * @param bitness 32 (protected mode) or 64 (long mode).
 * @returns `out`, with `len` the instruction length (or the kind of failure in `op`:
 *   {@link Op.TRUNCATED} when `bytes` ends first, {@link Op.TOO_LONG} beyond 15 bytes).
 * @example Decode the 64-bit ideal NOP5
 * ```ts
 * import { decodeInto } from "./decode.ts";
 * import { Insn, Op } from "./insn.ts";
 * const insn = decodeInto(new Insn(), new Uint8Array([0x0f, 0x1f, 0x44, 0, 0]), 0, 64);
 * if (insn.op !== Op.NOP || insn.len !== 5) throw new Error("bad decode");
 * ```
 */
export function decodeInto(out: Insn, bytes: Uint8Array, offset: number, bitness: 32 | 64): Insn {
  const avail = bytes.length - offset;
  let len: number;
  if (avail >= WINDOW) {
    if (bitness === 64) {
      const n = _fast64(out, bytes, offset);
      if (n !== 0) {
        out.len = n;
        return out;
      }
    }
    len = _decode(out, bytes, offset, bitness);
  } else {
    if (avail <= 0) {
      out.prefixes = 0;
      out.seg = -1;
      out.opSize = bitness === 64 ? 4 : 4;
      out.addrSize = bitness === 64 ? 8 : 4;
      _clear(out);
      out.op = Op.TRUNCATED;
      out.len = 0;
      return out;
    }
    PAD.fill(0);
    for (let i = 0; i < avail; i++) PAD[i] = bytes[offset + i]!;
    len = _decode(out, PAD, 0, bitness);
  }
  if (len > 15 && avail >= 15) {
    _clear(out);
    out.op = Op.TOO_LONG;
    out.len = 15;
  } else if (len > avail) {
    _clear(out);
    out.op = Op.TRUNCATED;
    out.len = avail;
  } else out.len = len;
  return out;
}

/**
 * Decodes one instruction into a new record (the convenient, allocating form).
 *
 * @param bytes Code bytes.
 * @param offset Offset of the instruction (default 0).
 * @param bitness 32 or 64 (default 64).
 * @returns A fresh {@link Insn}.
 * @example Decode `call rel32`
 * ```ts
 * import { decode } from "./decode.ts";
 * import { Op } from "./insn.ts";
 * const insn = decode(new Uint8Array([0xe8, 0x10, 0, 0, 0]));
 * if (insn.op !== Op.CALL || insn.imm !== 16) throw new Error("bad decode");
 * ```
 */
export function decode(bytes: Uint8Array, offset = 0, bitness: 32 | 64 = 64): Insn {
  return decodeInto(new Insn(), bytes, offset, bitness);
}

const _scratch = new Insn();

/**
 * Length in bytes of the instruction at `offset` (0 when the input is empty; for a
 * truncated instruction, the bytes available; 15 for one that is too long).
 *
 * @param bytes Code bytes.
 * @param offset Offset of the instruction.
 * @param bitness 32 or 64.
 * @returns The length.
 */
export function insnLength(bytes: Uint8Array, offset: number, bitness: 32 | 64): number {
  return decodeInto(_scratch, bytes, offset, bitness).len;
}
