/**
 * The decoded-instruction record: the contract between the decoder
 * (`decode.ts`), the executor, the oracles and the listings.
 *
 * One {@link Insn} object is reused for every decode on the hot path (the decoder
 * overwrites all fields), and the executor's predecoded cache keeps one per cached
 * address. Every field is a small integer so the record stays monomorphic.
 *
 * Operands are in Intel order: operand 0 is the destination. Memory operands are
 * described once per instruction (x86 has at most one explicit memory operand; string
 * instructions address memory implicitly through rsi/rdi).
 *
 * @module
 */

/** Operation numbers. ALU and shift groups are numbered like the ModRM `/reg` field. */
export const Op = {
  /** Valid x86, but outside the supported set: executing it raises #UD. `len` is exact. */
  UNSUPPORTED: 0,
  /** Not a valid encoding (or LOCK where illegal): executing it raises #UD. */
  INVALID: 1,
  /** Longer than 15 bytes: executing it raises #GP(0). */
  TOO_LONG: 2,
  /** The bytes ran out before the instruction ended (decode needs more input). */
  TRUNCATED: 3,

  // Binary ALU group, in ModRM /reg order: ADD + n.
  ADD: 8,
  OR: 9,
  ADC: 10,
  SBB: 11,
  AND: 12,
  SUB: 13,
  XOR: 14,
  CMP: 15,

  // Shift/rotate group, in ModRM /reg order: ROL + n (SAL, /6, is SHL).
  ROL: 16,
  ROR: 17,
  RCL: 18,
  RCR: 19,
  SHL: 20,
  SHR: 21,
  SAL: 22,
  SAR: 23,

  TEST: 24,
  INC: 25,
  DEC: 26,
  NEG: 27,
  NOT: 28,
  /** One-operand form: rdx:rax = rax * op0 (signed). */
  IMUL1: 29,
  /** op0 = op0 * op1. */
  IMUL2: 30,
  /** op0 = op1 * op2 (immediate). */
  IMUL3: 31,
  MUL: 32,
  DIV: 33,
  IDIV: 34,

  MOV: 40,
  /** op0 = zero-extend(op1); sizes in size0/size1. */
  MOVZX: 41,
  /** op0 = sign-extend(op1); also MOVSXD (63 /r). */
  MOVSX: 42,
  LEA: 43,
  XCHG: 44,
  CMPXCHG: 45,
  XADD: 46,
  BSWAP: 47,
  /** cbw / cwde / cdqe by opSize. */
  CBW: 48,
  /** cwd / cdq / cqo by opSize. */
  CWD: 49,
  /** Condition code in `cc`. */
  SETCC: 50,
  /** Condition code in `cc`. */
  CMOVCC: 51,
  BT: 52,
  BTS: 53,
  BTR: 54,
  BTC: 55,

  PUSH: 60,
  POP: 61,
  PUSHF: 62,
  POPF: 63,
  LEAVE: 64,

  /** Relative call: target = next ip + imm. */
  CALL: 70,
  /** Indirect call through op0 (register or memory). */
  CALL_IND: 71,
  /** `ret` / `ret imm16` (imm holds the byte count, 0 for plain ret). */
  RET: 72,
  /** Relative jmp (rel8 or rel32): target = next ip + imm. */
  JMP: 73,
  /** Indirect jmp through op0. */
  JMP_IND: 74,
  /** Conditional jump, condition in `cc`, target = next ip + imm. */
  JCC: 75,

  /** Every NOP form: 90, 66 90, 0f 1f /0, the ftrace and 32-bit NOP5s, f3 90 is PAUSE. */
  NOP: 80,
  PAUSE: 81,
  INT3: 82,
  /** `int imm8` (vector in imm). */
  INT: 83,
  UD2: 84,
  /** iret / iretd / iretq by opSize (2, 4, 8). */
  IRET: 85,
  HLT: 86,
  CPUID: 87,
  MFENCE: 88,
  LFENCE: 89,
  SFENCE: 90,
  CLD: 91,
  STD: 92,
  CLI: 93,
  STI: 94,
  CLC: 95,
  STC: 96,
  CMC: 97,

  // String instructions; element size in opSize, rep kind in `rep`.
  MOVS: 100,
  STOS: 101,
  LODS: 102,
  CMPS: 103,
  SCAS: 104,
} as const;

/** An operation number, one of the values of {@link Op}. */
export type OpCode = (typeof Op)[keyof typeof Op];

/** Kinds of operand. */
export const OpKind = {
  NONE: 0,
  /** General register `reg` of `size` bytes (see {@link Reg} for the numbering). */
  REG: 1,
  /** The instruction's memory operand (base, index, scale, disp, seg), `size` bytes. */
  MEM: 2,
  /** Immediate: low 32 bits in `imm`, high 32 bits in `immHi` (already extended). */
  IMM: 3,
  /** Segment register `reg` (0 ES, 1 CS, 2 SS, 3 DS, 4 FS, 5 GS). */
  SREG: 4,
} as const;

/**
 * Register numbers. 0–15 are rax..r15 (their 8/16/32-bit parts by size); with a byte
 * operand and no REX prefix, encodings 4–7 name AH, CH, DH, BH, which the decoder reports
 * as 16–19. {@link Reg.RIP} appears only as a memory base (RIP-relative addressing).
 */
export const Reg = {
  RAX: 0,
  RCX: 1,
  RDX: 2,
  RBX: 3,
  RSP: 4,
  RBP: 5,
  RSI: 6,
  RDI: 7,
  R8: 8,
  R9: 9,
  R10: 10,
  R11: 11,
  R12: 12,
  R13: 13,
  R14: 14,
  R15: 15,
  AH: 16,
  CH: 17,
  DH: 18,
  BH: 19,
  /** Memory base only: RIP-relative (the address is relative to the next instruction). */
  RIP: 20,
  /** No register (memory base or index absent). */
  NONE: -1,
} as const;

/** Prefix bits in {@link Insn.prefixes}. */
export const Prefix = {
  LOCK: 1,
  /** F3 (rep / repe). */
  REP: 2,
  /** F2 (repne). */
  REPNE: 4,
  /** 66 operand-size override. */
  OPSIZE: 8,
  /** 67 address-size override. */
  ADDRSIZE: 16,
  /** Any REX prefix present (64-bit mode). */
  REX: 32,
  REX_W: 64,
} as const;

/** Condition codes as encoded in the low nibble of Jcc/SETcc/CMOVcc. */
export const Cond = {
  O: 0,
  NO: 1,
  B: 2,
  AE: 3,
  E: 4,
  NE: 5,
  BE: 6,
  A: 7,
  S: 8,
  NS: 9,
  P: 10,
  NP: 11,
  L: 12,
  GE: 13,
  LE: 14,
  G: 15,
} as const;

/**
 * One decoded instruction. Reused: the decoder overwrites every field on each call, so
 * copy what you keep (or use the allocating `decode()` form).
 */
export class Insn {
  /** Length in bytes (1–15; for TOO_LONG 15, for TRUNCATED the bytes seen). */
  len = 0;
  /** Operation, one of {@link Op}. */
  op = 0;
  /** Operand size in bytes of the operation (1, 2, 4 or 8). */
  opSize = 4;
  /** Address size in bytes (2, 4 or 8). */
  addrSize = 4;
  /** {@link Prefix} bits. */
  prefixes = 0;
  /** Segment override, -1 for none, else 0 ES, 1 CS, 2 SS, 3 DS, 4 FS, 5 GS. */
  seg: number = -1;
  /** Condition code for JCC / SETCC / CMOVCC ({@link Cond}). */
  cc = 0;
  /** Number of explicit operands (0–3). */
  nops = 0;
  /** Operand 0 (destination) kind, register and size in bytes. */
  kind0 = 0;
  /** Register of operand 0 when kind0 is REG or SREG. */
  reg0: number = -1;
  /** Size in bytes of operand 0. */
  size0 = 0;
  /** Operand 1 kind. */
  kind1 = 0;
  /** Register of operand 1. */
  reg1: number = -1;
  /** Size in bytes of operand 1. */
  size1 = 0;
  /** Operand 2 kind. */
  kind2 = 0;
  /** Register of operand 2. */
  reg2: number = -1;
  /** Size in bytes of operand 2. */
  size2 = 0;
  /** Memory base register ({@link Reg}), -1 for none, {@link Reg.RIP} for RIP-relative. */
  base: number = -1;
  /** Memory index register, -1 for none. */
  index: number = -1;
  /** Memory scale as a shift count (0–3). */
  scale = 0;
  /** Memory displacement, signed 32-bit. */
  disp = 0;
  /**
   * High 32 bits of the 64-bit displacement: `disp >> 31` (its sign) for every ModRM form;
   * for the moffs forms of MOV (A0–A3) in 64-bit addressing, the real high half of the
   * absolute 64-bit offset (base and index are then NONE). Address = dispHi:disp + base +
   * index << scale, truncated to `addrSize`.
   */
  dispHi = 0;
  /** Immediate (low 32 bits, as int32) or relative branch displacement (signed). */
  imm = 0;
  /** High 32 bits of a 64-bit immediate (sign- or zero-extension applied by the decoder). */
  immHi = 0;

  /** Copies every field of `other` into this record. */
  copyFrom(other: Insn): this {
    this.len = other.len;
    this.op = other.op;
    this.opSize = other.opSize;
    this.addrSize = other.addrSize;
    this.prefixes = other.prefixes;
    this.seg = other.seg;
    this.cc = other.cc;
    this.nops = other.nops;
    this.kind0 = other.kind0;
    this.reg0 = other.reg0;
    this.size0 = other.size0;
    this.kind1 = other.kind1;
    this.reg1 = other.reg1;
    this.size1 = other.size1;
    this.kind2 = other.kind2;
    this.reg2 = other.reg2;
    this.size2 = other.size2;
    this.base = other.base;
    this.index = other.index;
    this.scale = other.scale;
    this.disp = other.disp;
    this.dispHi = other.dispHi;
    this.imm = other.imm;
    this.immHi = other.immHi;
    return this;
  }
}
