/**
 * Maps an iced-x86 decoded instruction to what our decoder must report, and compares.
 * Shared by the oracle test (random bytes and the Deno executable's .text).
 *
 * @module
 */

import { Code, Decoder, Instruction, MemorySize, Mnemonic, OpKind as IK, Register } from "iced-x86";
import { decodeInto } from "../lib/x86/decode.ts";
import { Cond, Insn, Op, OpKind, Reg } from "../lib/x86/insn.ts";

const OP_NAME: Record<number, string> = {};
for (const [k, v] of Object.entries(Op)) OP_NAME[v] = k;
/** Name of an op number. */
export function opName(op: number): string {
  return OP_NAME[op] ?? String(op);
}

/** Condition suffixes in encoding order ("o", "no", "b", …), from the library's table. */
const COND = Object.keys(Cond).map((k) => k.toLowerCase());
const M = Mnemonic as unknown as Record<string, number>;
const SIMPLE = new Map<number, number>();
const CC = new Map<number, number>();
function _m(name: string): number {
  const v = M[name];
  if (v === undefined) throw new Error(`no iced mnemonic ${name}`);
  return v;
}
for (
  const [n, op] of [
    ["Add", Op.ADD],
    ["Or", Op.OR],
    ["Adc", Op.ADC],
    ["Sbb", Op.SBB],
    ["And", Op.AND],
    ["Sub", Op.SUB],
    ["Xor", Op.XOR],
    ["Cmp", Op.CMP],
    ["Rol", Op.ROL],
    ["Ror", Op.ROR],
    ["Rcl", Op.RCL],
    ["Rcr", Op.RCR],
    ["Shl", Op.SHL],
    ["Shr", Op.SHR],
    ["Sal", Op.SAL],
    ["Sar", Op.SAR],
    ["Test", Op.TEST],
    ["Inc", Op.INC],
    ["Dec", Op.DEC],
    ["Neg", Op.NEG],
    ["Not", Op.NOT],
    ["Mul", Op.MUL],
    ["Div", Op.DIV],
    ["Idiv", Op.IDIV],
    ["Movzx", Op.MOVZX],
    ["Movsx", Op.MOVSX],
    ["Movsxd", Op.MOVSX],
    ["Lea", Op.LEA],
    ["Xchg", Op.XCHG],
    ["Cmpxchg", Op.CMPXCHG],
    ["Xadd", Op.XADD],
    ["Bswap", Op.BSWAP],
    ["Cbw", Op.CBW],
    ["Cwde", Op.CBW],
    ["Cdqe", Op.CBW],
    ["Cwd", Op.CWD],
    ["Cdq", Op.CWD],
    ["Cqo", Op.CWD],
    ["Bt", Op.BT],
    ["Bts", Op.BTS],
    ["Btr", Op.BTR],
    ["Btc", Op.BTC],
    ["Push", Op.PUSH],
    ["Pop", Op.POP],
    ["Pushf", Op.PUSHF],
    ["Pushfd", Op.PUSHF],
    ["Pushfq", Op.PUSHF],
    ["Popf", Op.POPF],
    ["Popfd", Op.POPF],
    ["Popfq", Op.POPF],
    ["Leave", Op.LEAVE],
    ["Ret", Op.RET],
    ["Nop", Op.NOP],
    ["Pause", Op.PAUSE],
    ["Int3", Op.INT3],
    ["Int", Op.INT],
    ["Ud2", Op.UD2],
    ["Iret", Op.IRET],
    ["Iretd", Op.IRET],
    ["Iretq", Op.IRET],
    ["Hlt", Op.HLT],
    ["Cpuid", Op.CPUID],
    ["Mfence", Op.MFENCE],
    ["Lfence", Op.LFENCE],
    ["Sfence", Op.SFENCE],
    ["Cld", Op.CLD],
    ["Std", Op.STD],
    ["Cli", Op.CLI],
    ["Sti", Op.STI],
    ["Clc", Op.CLC],
    ["Stc", Op.STC],
    ["Cmc", Op.CMC],
  ] as const
) SIMPLE.set(_m(n), op);
const STRINGS = new Map<number, [number, number]>();
for (
  const [base, op] of [["Movs", Op.MOVS], ["Stos", Op.STOS], ["Lods", Op.LODS], ["Cmps", Op.CMPS], [
    "Scas",
    Op.SCAS,
  ]] as const
) {
  STRINGS.set(_m(base + "b"), [op, 1]);
  STRINGS.set(_m(base + "w"), [op, 2]);
  STRINGS.set(_m(base + "d"), [op, 4]);
  STRINGS.set(_m(base + "q"), [op, 8]);
}
for (let c = 0; c < 16; c++) {
  const s = COND[c]!;
  CC.set(_m("J" + s), Op.JCC * 16 + c);
  CC.set(_m("Set" + s), Op.SETCC * 16 + c);
  CC.set(_m("Cmov" + s), Op.CMOVCC * 16 + c);
}
const MOV = _m("Mov");
const IMUL = _m("Imul");
const CALL = _m("Call");
const JMP = _m("Jmp");
const CODE_NAME = Code as unknown as Record<number, string>;

/** Our register number and size for an iced general register, or null. */
function gpr(r: number): [number, number] | null {
  if (r >= Register.AL && r <= Register.R15L) {
    const i = r - Register.AL;
    if (i < 4) return [i, 1];
    if (i < 8) return [i + 12, 1];
    return [i - 4, 1];
  }
  if (r >= Register.AX && r <= Register.R15W) return [r - Register.AX, 2];
  if (r >= Register.EAX && r <= Register.R15D) return [r - Register.EAX, 4];
  if (r >= Register.RAX && r <= Register.R15) return [r - Register.RAX, 8];
  return null;
}

function regNum(r: number): number {
  if (r === Register.None) return -1;
  if (r === Register.RIP || r === Register.EIP) return Reg.RIP;
  const g = gpr(r);
  return g ? g[0] : 1000 + r;
}

/** Expected op (and cc) for an iced instruction; UNSUPPORTED when outside our set. */
export function expectedOp(ins: Instruction): { op: number; cc: number; size: number } {
  const mn = ins.mnemonic;
  const simple = SIMPLE.get(mn);
  const code = CODE_NAME[ins.code] ?? "";
  const suffix = /^(Leave|Retn|Pushf|Popf|Iret|Cbw|Cwde|Cdqe|Cwd|Cdq|Cqo)(w|d|q)?/.exec(code);
  const sizeOf = (s: string | undefined): number =>
    s === "w" ? 2 : s === "d" ? 4 : s === "q" ? 8 : 0;
  let size = suffix ? sizeOf(suffix[2]) : 0;
  if (code === "Cbw" || code === "Cwd" || code === "Iretw") size = 2;
  if (code === "Cwde" || code === "Cdq" || code === "Iretd") size = 4;
  if (code === "Cdqe" || code === "Cqo" || code === "Iretq") size = 8;
  if (simple !== undefined) {
    if (simple === Op.RET && ins.isCallFar) return { op: Op.UNSUPPORTED, cc: 0, size };
    return { op: simple, cc: 0, size };
  }
  const c = CC.get(mn);
  if (c !== undefined) return { op: c >> 4, cc: c & 15, size };
  if (ins.isStringInstruction) {
    const s = STRINGS.get(mn);
    if (s) return { op: s[0], cc: 0, size: s[1] };
  }
  if (mn === MOV) {
    for (let i = 0; i < ins.opCount; i++) {
      if (ins.opKind(i) === IK.Register) {
        const r = ins.opRegister(i);
        if (!gpr(r) && !(r >= Register.ES && r <= Register.GS)) {
          return { op: Op.UNSUPPORTED, cc: 0, size };
        }
      }
    }
    return { op: Op.MOV, cc: 0, size };
  }
  if (mn === IMUL) return { op: [0, Op.IMUL1, Op.IMUL2, Op.IMUL3][ins.opCount]!, cc: 0, size };
  if (mn === CALL) {
    if (ins.isCallNear) return { op: Op.CALL, cc: 0, size };
    if (ins.isCallNearIndirect) return { op: Op.CALL_IND, cc: 0, size };
  }
  if (mn === JMP) {
    if (ins.isJmpShortOrNear) return { op: Op.JMP, cc: 0, size };
    if (ins.isJmpNearIndirect) return { op: Op.JMP_IND, cc: 0, size };
  }
  return { op: Op.UNSUPPORTED, cc: 0, size };
}

const MASK: Record<number, bigint> = {
  1: 0xffn,
  2: 0xffffn,
  4: 0xffffffffn,
  8: 0xffffffffffffffffn,
};

function field(out: Insn, i: number): [number, number, number] {
  return i === 0
    ? [out.kind0, out.reg0, out.size0]
    : i === 1
    ? [out.kind1, out.reg1, out.size1]
    : [out.kind2, out.reg2, out.size2];
}

/**
 * Compares our record with iced's for a valid iced instruction at `ip`.
 *
 * @returns null when they agree, else a short mismatch key (for counting) and detail.
 */
export function compare(
  ours: Insn,
  ins: Instruction,
  ip: bigint,
  bits: number,
): [string, string] | null {
  const exp = expectedOp(ins);
  if (ours.len !== ins.length) return ["len", `ours ${ours.len} iced ${ins.length} (${ins})`];
  if (ours.op !== exp.op) {
    return [
      `op ${opName(exp.op)}->${opName(ours.op)}`,
      `iced ${ins} (${CODE_NAME[ins.code]}), ours ${opName(ours.op)}`,
    ];
  }
  if (exp.op === Op.UNSUPPORTED) return null;
  const tag = opName(exp.op);
  if (ours.cc !== exp.cc) return [`cc ${tag}`, `${ins}: cc ${ours.cc} vs ${exp.cc}`];
  if (exp.size && ours.opSize !== exp.size) {
    return [`opSize ${tag}`, `${ins}: opSize ${ours.opSize} vs ${exp.size}`];
  }
  if (
    exp.op === Op.MOVS || exp.op === Op.STOS || exp.op === Op.LODS || exp.op === Op.CMPS ||
    exp.op === Op.SCAS
  ) {
    const rep = (ours.prefixes & 2) !== 0;
    const repne = (ours.prefixes & 4) !== 0;
    if (rep !== ins.hasRepePrefix || repne !== ins.hasRepnePrefix) {
      return [`rep ${tag}`, `${ins}: rep ${rep} repne ${repne}`];
    }
    if (ours.addrSize * 8 !== addrBits(ins, bits, ours.addrSize)) {
      return [`addrSize ${tag}`, `${ins}: ${ours.addrSize}`];
    }
    return null;
  }
  if (exp.op === Op.NOP || exp.op === Op.PAUSE) return null;
  if (ours.nops !== ins.opCount) {
    return [`nops ${tag}`, `${ins}: nops ${ours.nops} vs ${ins.opCount}`];
  }
  const next = ip + BigInt(ins.length);
  for (let i = 0; i < ins.opCount; i++) {
    const [kind, reg, size] = field(ours, i);
    const k = ins.opKind(i);
    if (k === IK.Register) {
      const r = ins.opRegister(i);
      if (r >= Register.ES && r <= Register.GS) {
        if (kind !== OpKind.SREG || reg !== r - Register.ES) {
          return [`sreg ${tag}`, `${ins}: op${i} ${kind}/${reg}`];
        }
        continue;
      }
      const g = gpr(r);
      if (!g || kind !== OpKind.REG || reg !== g[0] || size !== g[1]) {
        return [
          `reg ${tag}`,
          `${ins}: op${i} kind ${kind} reg ${reg} size ${size} vs ${Register[r]}`,
        ];
      }
    } else if (k === IK.NearBranch16 || k === IK.NearBranch32 || k === IK.NearBranch64) {
      if (kind !== OpKind.IMM) return [`branch ${tag}`, `${ins}: op${i} kind ${kind}`];
      const m = MASK[ours.opSize]!;
      const t = (next + BigInt(ours.imm)) & m;
      if (t !== (ins.nearBranchTarget & m)) {
        return [`target ${tag}`, `${ins}: target ${t.toString(16)}`];
      }
    } else if (k === IK.Memory) {
      if (kind !== OpKind.MEM) return [`mem ${tag}`, `${ins}: op${i} kind ${kind}`];
      const am = MASK[ours.addrSize]!;
      if (ours.addrSize * 8 !== addrBits(ins, bits, ours.addrSize)) {
        return [`addrSize ${tag}`, `${ins}: ${ours.addrSize}`];
      }
      const base = regNum(ins.memoryBase);
      const index = regNum(ins.memoryIndex);
      if (ours.base !== base || ours.index !== index) {
        return [
          `basendx ${tag}`,
          `${ins}: base ${ours.base} index ${ours.index} vs ${base} ${index}`,
        ];
      }
      if (index >= 0 && 1 << ours.scale !== ins.memoryIndexScale) {
        return [`scale ${tag}`, `${ins}: scale ${ours.scale}`];
      }
      const d = (BigInt(ours.dispHi) << 32n) | BigInt(ours.disp >>> 0);
      const ours64 = base === Reg.RIP ? (next + d) & am : d & am;
      if (ours64 !== (ins.memoryDisplacementU64 & am)) {
        return [`disp ${tag}`, `${ins}: disp ${ours64.toString(16)}`];
      }
      const sp = ins.segmentPrefix;
      const iseg = sp === Register.None ? -1 : sp - Register.ES;
      const want = bits === 64 && iseg >= 0 && iseg < 4 ? -1 : iseg;
      if (ours.seg !== want) return [`seg ${tag}`, `${ins}: seg ${ours.seg} vs ${iseg}`];
      if (ins.memorySize !== 0 && exp.op !== Op.LEA) {
        // memory size in bytes from iced's MemorySize name
        const sz = memBytes(ins);
        if (sz && sz !== size) return [`memsize ${tag}`, `${ins}: size ${size} vs ${sz}`];
      }
    } else if (k >= IK.Immediate8 && k <= IK.Immediate32to64) {
      if (kind !== OpKind.IMM) return [`immkind ${tag}`, `${ins}: op${i} kind ${kind}`];
      const m = MASK[size] ?? MASK[8]!;
      const v = ((BigInt(ours.immHi) << 32n) | BigInt(ours.imm >>> 0)) & m;
      if (v !== (ins.immediate(i) & m)) {
        return [`imm ${tag}`, `${ins}: imm ${v.toString(16)} size ${size}`];
      }
    } else return [`kind ${tag}`, `${ins}: iced op kind ${k}`];
  }
  return null;
}

function addrBits(ins: Instruction, bits: number, ours: number): number {
  const b = ins.memoryBase !== Register.None ? ins.memoryBase : ins.memoryIndex;
  if (b === Register.RIP) return 64;
  if (b === Register.EIP) return 32;
  const g = gpr(b);
  if (g) return g[1] * 8;
  // No register (moffs, or disp32 alone): the displacement size tells only for moffs.
  void bits;
  return ours * 8;
}

const MEMSIZE_NAME: Record<number, string> = {};
for (const [k, v] of Object.entries(MemorySize)) if (typeof v === "number") MEMSIZE_NAME[v] = k;
function memBytes(ins: Instruction): number {
  const n = MEMSIZE_NAME[ins.memorySize] ?? "";
  if (/^(UInt8|Int8)$/.test(n)) return 1;
  if (/^(UInt16|Int16|WordOffset|SegPtr16)$/.test(n)) return 2;
  if (/^(UInt32|Int32|DwordOffset)$/.test(n)) return 4;
  if (/^(UInt64|Int64|QwordOffset)$/.test(n)) return 8;
  return 0;
}

/** Tally of mismatches by key, with the first example of each. */
export class Tally {
  /** Count per key. */
  readonly counts: Map<string, number> = new Map();
  /** First detail per key. */
  readonly examples: Map<string, string> = new Map();
  /** Total mismatches. */
  total = 0;
  /** Records one mismatch. */
  add(key: string, detail: string): void {
    this.total++;
    this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
    if (!this.examples.has(key)) this.examples.set(key, detail);
  }
  /** A multi-line report. */
  report(): string {
    return [...this.counts].sort((a, b) => b[1] - a[1]).slice(0, 40).map(([k, n]) =>
      `${n}× ${k}: e.g. ${this.examples.get(k)}`
    ).join("\n");
  }
}

/** Result counts of a walk. */
export interface WalkCounts {
  /** Instructions compared. */
  insns: number;
  /** Of which in our supported set. */
  supported: number;
  /** Of which iced found invalid. */
  invalid: number;
}

/**
 * Walks `bytes` linearly with both decoders (following iced's length) and tallies
 * mismatches.
 */
export function walk(bytes: Uint8Array, bits: 32 | 64, ip0: bigint, tally: Tally): WalkCounts {
  const dec = new Decoder(bits, bytes, 0);
  dec.ip = ip0;
  const ins = new Instruction();
  const ours = new Insn();
  const counts = { insns: 0, supported: 0, invalid: 0 };
  let pos = 0;
  while (pos < bytes.length) {
    dec.decodeOut(ins);
    decodeInto(ours, bytes, pos, bits);
    counts.insns++;
    const ip = ip0 + BigInt(pos);
    if (ins.code === Code.INVALID) {
      counts.invalid++;
      if (ours.op >= 8) {
        tally.add(
          `claims ${opName(ours.op)} on invalid`,
          `at ${ip.toString(16)}: ${hex(bytes, pos, 15)}`,
        );
      }
    } else {
      if (ours.op >= 8) counts.supported++;
      const r = compare(ours, ins, ip, bits);
      if (r) tally.add(r[0], `${r[1]} [${hex(bytes, pos, ins.length)}]`);
    }
    pos += ins.length;
  }
  dec.free();
  ins.free();
  return counts;
}

/** Hex of up to `n` bytes at `p`. */
export function hex(b: Uint8Array, p: number, n: number): string {
  const out: string[] = [];
  for (let i = 0; i < n && p + i < b.length; i++) out.push(b[p + i]!.toString(16).padStart(2, "0"));
  return out.join(" ");
}
