/**
 * An AT&T-syntax (GNU as) assembler for the x86 subset textpoke executes, encoding through
 * iced-x86's {@link Encoder}. It chooses the same encoding GNU `as` (binutils 2.40,
 * default options) chooses for each form: the sign-extended imm8 forms when the value
 * fits, the accumulator short forms, `89`/`88` for register-to-register moves, short
 * jumps when the target is in range, rel32 calls, the same prefix order and the same
 * multi-byte NOP padding for `.align`. `tests/assemble_gas_oracle_test.ts` and
 * `tests/assemble_gas_compat_test.ts` check this against `as` itself.
 *
 * Stricter than GNU as on purpose: an immediate or a data item that does not fit its
 * field (`movb $256, %al`, `.byte 256`, `.word 70000`), which GAS truncates with or
 * without a warning, is an error here; so are a negative `.skip`/`.fill` count (GAS
 * ignores it with a warning), and a `.fill` size over 8 (GAS clamps it) or left empty
 * (GAS reads it as 0).
 *
 * @module
 */

import { Code, Encoder, Instruction, MemoryOperand, Register, RepPrefixKind } from "iced-x86";
import { AssemblerError, TextpokeError } from "../errors.ts";
import {
  Cursor,
  expandRept,
  type Expr,
  type LocalCounts,
  localName,
  lookupReg,
  type Operand,
  parseExpr,
  parseOperand,
  type RegInfo,
  splitStatements,
} from "./assemble_parse.ts";

/** Options of {@link assemble}. */
export interface AssembleOptions {
  /** Code size: 32-bit protected mode or 64-bit long mode. */
  bitness: 32 | 64;
  /** Address of the first byte (default 0). Labels are absolute addresses. */
  origin?: bigint;
  /** Absolute symbols (constants, external function addresses) the text may use. */
  symbols?: Record<string, bigint | number> | Map<string, bigint | number>;
}

/** One statement that produced bytes, for listings. */
export interface AssembledLine {
  /** Address of the first byte. */
  address: bigint;
  /** Number of bytes emitted. */
  length: number;
  /** 1-based source line. */
  line: number;
  /** The statement text, trimmed. */
  text: string;
}

/** Result of {@link assemble}. */
export interface Assembled {
  /** The machine code. */
  bytes: Uint8Array;
  /** Address of `bytes[0]`. */
  origin: bigint;
  /** Every label (numeric local labels excluded) and `.set` symbol, as absolute values. */
  labels: Map<string, bigint>;
  /** One record per statement that emitted bytes, in order. */
  lines: AssembledLine[];
}

type Sz = 1 | 2 | 4 | 8;
const SZ_SUFFIX: Record<string, Sz> = { b: 1, w: 2, l: 4, q: 8 };
const SZ_NAME: Record<number, string> = { 1: "8", 2: "16", 4: "32", 8: "64" };

const CODE = Code as unknown as Record<string, number>;
const REG = Register as unknown as Record<string, number>;

function code(name: string): Code {
  const v = CODE[name];
  if (v === undefined) throw new Error(`internal: no iced Code ${name}`);
  return v as Code;
}

// Condition names -> canonical iced spelling (Jcc/Setcc/Cmovcc share them).
const CC: Record<string, string> = {
  o: "o",
  no: "no",
  b: "b",
  c: "b",
  nae: "b",
  ae: "ae",
  nb: "ae",
  nc: "ae",
  e: "e",
  z: "e",
  ne: "ne",
  nz: "ne",
  be: "be",
  na: "be",
  a: "a",
  nbe: "a",
  s: "s",
  ns: "ns",
  p: "p",
  pe: "p",
  np: "np",
  po: "np",
  l: "l",
  nge: "l",
  ge: "ge",
  nl: "ge",
  le: "le",
  ng: "le",
  g: "g",
  nle: "g",
};
const cap = (s: string) => s[0]!.toUpperCase() + s.slice(1);

const ALU = ["add", "or", "adc", "sbb", "and", "sub", "xor", "cmp"];
const SHIFT = ["rol", "ror", "rcl", "rcr", "shl", "shr", "sal", "sar"];
const UNARY = ["inc", "dec", "neg", "not", "mul", "div", "idiv"];
const BT = ["bt", "bts", "btr", "btc"];
/** Mnemonics that take a b/w/l/q suffix. */
const BASES = new Set([
  ...ALU,
  ...SHIFT,
  ...UNARY,
  ...BT,
  "test",
  "mov",
  "movabs",
  "imul",
  "xchg",
  "cmpxchg",
  "xadd",
  "lea",
  "push",
  "pop",
  "call",
  "jmp",
  "ret",
  "nop",
  "bswap",
  "int",
  "leave",
  "iret",
  "pushf",
  "popf",
  "movzx",
  "movsx",
  "movsxd",
]);

/** Fixed-form mnemonics: iced code per bitness (undefined: not valid in that mode). */
const FIXED: Record<string, [string | undefined, string | undefined]> = {
  cbtw: ["Cbw", "Cbw"],
  cbw: ["Cbw", "Cbw"],
  cwtl: ["Cwde", "Cwde"],
  cwde: ["Cwde", "Cwde"],
  cltq: [undefined, "Cdqe"],
  cdqe: [undefined, "Cdqe"],
  cwtd: ["Cwd", "Cwd"],
  cwd: ["Cwd", "Cwd"],
  cltd: ["Cdq", "Cdq"],
  cdq: ["Cdq", "Cdq"],
  cqto: [undefined, "Cqo"],
  cqo: [undefined, "Cqo"],
  cld: ["Cld", "Cld"],
  std: ["Std", "Std"],
  cli: ["Cli", "Cli"],
  sti: ["Sti", "Sti"],
  clc: ["Clc", "Clc"],
  stc: ["Stc", "Stc"],
  cmc: ["Cmc", "Cmc"],
  int3: ["Int3", "Int3"],
  ud2: ["Ud2", "Ud2"],
  hlt: ["Hlt", "Hlt"],
  cpuid: ["Cpuid", "Cpuid"],
  mfence: ["Mfence", "Mfence"],
  lfence: ["Lfence", "Lfence"],
  sfence: ["Sfence", "Sfence"],
  pause: ["Pause", "Pause"],
  iretw: ["Iretw", "Iretw"],
  iretd: ["Iretd", "Iretd"],
};
const STRING_OPS = ["movs", "stos", "lods", "cmps", "scas"];
const PREFIXES: Record<string, number> = {
  lock: 0xf0,
  rep: 0xf3,
  repe: 0xf3,
  repz: 0xf3,
  repne: 0xf2,
  repnz: 0xf2,
};

/** A prefix written before a mnemonic on the same statement. */
interface WrittenPrefix {
  /** Lower-case spelling (`lock`, `rep`, `repne`, ...). */
  name: string;
  /** 1-based column. */
  col: number;
}

/** Instructions that take `lock` when their destination is memory (xchg: either operand). */
const LOCKABLE = new Set([...ALU, "inc", "dec", "neg", "not", "bts", "btr", "btc"]);
LOCKABLE.delete("cmp");
for (const b of ["xchg", "cmpxchg", "xadd"]) LOCKABLE.add(b);

/**
 * Refuses the prefixes GNU as refuses: `lock` before anything but a lockable instruction
 * with a memory destination, and `rep`/`repe`/`repne` before anything but a string
 * instruction, `ret` or a plain `nop`. The double-prefix check is done while reading them.
 * An unknown mnemonic is left to the encoder to report.
 */
function checkPrefixes(
  written: WrittenPrefix[],
  mn: string,
  resolved: Mn | undefined,
  ops: Operand[],
  line: number,
  col: number,
): void {
  if (written.length === 0) return;
  if (PREFIXES[mn] === undefined && resolved === undefined) return;
  const base = resolved?.base ?? mn;
  const lock = written.find((w) => w.name === "lock");
  if (lock) {
    const dst = ops[ops.length - 1];
    const memDst = dst?.k === "mem" || (base === "xchg" && ops.some((o) => o.k === "mem"));
    if (!LOCKABLE.has(base) || !memDst) {
      const why = LOCKABLE.has(base)
        ? `'${mn}' is lockable only with a memory destination`
        : `'${mn}' cannot be locked`;
      throw new AssemblerError(
        `expecting a lockable instruction after 'lock': ${why}`,
        line,
        col,
      );
    }
  }
  const rep = written.find((w) => w.name !== "lock");
  if (rep) {
    const ok = STRING_OPS.includes(base) || base === "ret" ||
      (base === "nop" && resolved?.size === undefined && ops.length === 0);
    if (!ok) {
      throw new AssemblerError(
        `invalid instruction '${mn}' after '${rep.name}': only string instructions, ret and nop take it`,
        line,
        col,
      );
    }
  }
}

interface Val {
  v: bigint;
  /** Depends on a label's address (GAS would need a relocation: full-width field). */
  reloc: boolean;
  /**
   * Depends on a symbol GAS would leave to the linker: one from the `symbols` option (an
   * external to GAS) or a forward reference.
   */
  late?: boolean;
}

type Stmt =
  | { k: "label"; name: string; line: number; col: number }
  | { k: "set"; name: string; e: Expr; line: number; col: number }
  | { k: "data"; width: number; es: Expr[]; line: number; col: number; text: string }
  | { k: "raw"; bytes: Uint8Array; line: number; col: number; text: string }
  | {
    k: "align";
    n: number;
    /** Byte fill; undefined: code padding (multi-byte NOPs). */
    fill: number | undefined;
    /** Maximum bytes to skip; undefined: no limit. */
    max: number | undefined;
    line: number;
    col: number;
    text: string;
  }
  | {
    k: "skip";
    /** Repeat count (`.skip` size), may depend on `.` and labels. */
    e: Expr;
    /** Bytes per repeat (`.fill`); undefined: 1. */
    size: Expr | undefined;
    /** Fill value: a byte for `.skip`, a `.fill` value expression. */
    fill: number | Expr;
    line: number;
    col: number;
    text: string;
  }
  | {
    k: "insn";
    mn: string;
    mnCol: number;
    prefixes: number[];
    ops: Operand[];
    line: number;
    col: number;
    text: string;
    /** Branch relaxed to rel32 (sticky across passes, like GAS relaxation). */
    long: boolean;
  };

/** Pass state shared by evaluation and encoding. */
class Ctx {
  defs = new Map<string, Val>();
  prev = new Map<string, Val>();
  table = new Map<string, bigint>();
  dot = 0n;
  pass = 0;
  bits: 32 | 64 = 64;

  eval(e: Expr, line: number): Val {
    switch (e.t) {
      case "num":
        return { v: e.v, reloc: false };
      case "dot":
        return { v: this.dot, reloc: true };
      case "sym": {
        const d = this.defs.get(e.name);
        if (d) return d;
        const f = this.prev.get(e.name);
        if (f) return { v: f.v, reloc: f.reloc, late: true };
        const t = this.table.get(e.name);
        if (t !== undefined) return { v: t, reloc: false, late: true };
        if (this.pass === 0) return { v: this.dot, reloc: true };
        const fwd = /^([0-9]+)f$/.exec(e.display);
        if (fwd) {
          throw new AssemblerError(
            `undefined local label '${e.display}': no '${fwd[1]}:' after it`,
            line,
            e.col,
          );
        }
        throw new AssemblerError(`undefined symbol '${e.display}'`, line, e.col);
      }
      case "un": {
        const a = this.eval(e.a, line);
        const v = e.op === "-" ? -a.v : e.op === "~" ? ~a.v : (a.v === 0n ? 1n : 0n);
        return a.late ? { v, reloc: a.reloc, late: true } : { v, reloc: a.reloc };
      }
      case "bin": {
        const a = this.eval(e.a, line), b = this.eval(e.b, line);
        let v: bigint;
        let reloc = a.reloc || b.reloc;
        switch (e.op) {
          case "+":
            v = a.v + b.v;
            break;
          case "-":
            v = a.v - b.v;
            if (a.reloc && b.reloc) reloc = false;
            break;
          case "*":
            v = a.v * b.v;
            break;
          case "/":
          case "%":
            if (b.v === 0n) {
              if (this.pass === 0) return { v: 0n, reloc: true };
              throw new AssemblerError("division by zero", line, 1);
            }
            v = e.op === "/" ? a.v / b.v : a.v % b.v;
            break;
          case "<<":
            v = b.v > 255n ? 0n : a.v << b.v;
            break;
          case ">>":
            v = b.v > 255n ? (a.v < 0n ? -1n : 0n) : a.v >> b.v;
            break;
          case "&":
            v = a.v & b.v;
            break;
          case "|":
            v = a.v | b.v;
            break;
          case "^":
            v = a.v ^ b.v;
            break;
          case "!":
            v = a.v | ~b.v;
            break;
          case "&&":
            v = a.v && b.v ? 1n : 0n;
            break;
          case "||":
            v = a.v || b.v ? 1n : 0n;
            break;
          default: {
            const r = e.op === "=="
              ? a.v === b.v
              : e.op === "!=" || e.op === "<>"
              ? a.v !== b.v
              : e.op === "<"
              ? a.v < b.v
              : e.op === ">"
              ? a.v > b.v
              : e.op === "<="
              ? a.v <= b.v
              : a.v >= b.v;
            // GAS: comparisons yield -1 for true.
            v = r ? -1n : 0n;
          }
        }
        return a.late || b.late ? { v, reloc, late: true } : { v, reloc };
      }
    }
  }
}

const fits = (v: bigint, lo: bigint, hi: bigint) => v >= lo && v <= hi;
const fitsS8 = (v: bigint) => fits(v, -128n, 127n);
const fitsS32 = (v: bigint) => fits(v, -(1n << 31n), (1n << 31n) - 1n);

/** Range check for a `size`-byte field: signed or unsigned interpretations are both OK. */
function checkWidth(v: bigint, size: number, what: string, line: number, col: number): bigint {
  const bits = BigInt(size * 8);
  if (!fits(v, -(1n << (bits - 1n)), (1n << bits) - 1n)) {
    throw new AssemblerError(
      `value ${
        v < 0n ? "-0x" + (-v).toString(16) : "0x" + v.toString(16)
      } of ${what} is out of range for ${size * 8} bits`,
      line,
      col,
    );
  }
  return BigInt.asUintN(size * 8, v);
}

// GNU as 2.40 code-alignment NOPs (measured with `as --64` / `as --32`).
const NOPS64 = [
  "",
  "90",
  "6690",
  "0f1f00",
  "0f1f4000",
  "0f1f440000",
  "660f1f440000",
  "0f1f8000000000",
  "0f1f840000000000",
  "660f1f840000000000",
  "662e0f1f840000000000",
  "66662e0f1f840000000000",
].map(hexToBytes);
const NOPS32 = [
  "",
  "90",
  "6690",
  "8d7600",
  "8d742600",
  "8d74260090",
  "8db600000000",
  "8db42600000000",
].map(hexToBytes);

function hexToBytes(h: string): Uint8Array {
  const out = new Uint8Array(h.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(h.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/**
 * The code padding GNU as emits for `count` bytes: the longest NOP repeated, then the
 * remainder as one NOP; in 32-bit mode a padding over 20 bytes starts with a short jmp
 * over the rest (GAS does the same; over 129 bytes we use a rel32 jmp).
 */
export function nopPadding(count: number, bitness: 32 | 64): Uint8Array {
  const out = new Uint8Array(count);
  let p = 0;
  let left = count;
  if (bitness === 32 && count > 20) {
    if (count - 2 <= 127) {
      out[p++] = 0xeb;
      out[p++] = count - 2;
      left -= 2;
    } else {
      out[p++] = 0xe9;
      new DataView(out.buffer).setInt32(p, count - 5, true);
      p += 4;
      left -= 5;
    }
  }
  const table = bitness === 64 ? NOPS64 : NOPS32;
  const max = table.length - 1;
  while (left > 0) {
    const n = Math.min(left, max);
    out.set(table[n]!, p);
    p += n;
    left -= n;
  }
  return out;
}

/**
 * Assembles AT&T (GNU as) text into machine code.
 *
 * Supports the instructions textpoke's decoder knows (see `insn.ts`), labels, numeric
 * local labels (`1:` / `1b` / `1f`), `.rept`/`.endr`, `.byte`/`.word`/`.short`/`.long`/
 * `.quad`, `.ascii`/`.asciz`, `.align`/`.balign`/`.p2align` (with fill and maximum skip),
 * `.skip`, `.fill`, `.set`/`.equ`/`=` (redefinable, as in GAS), and GAS expressions. Branches to labels are relaxed like GAS relaxes them (rel8 when
 * in range, rel32 otherwise); calls and branches to table symbols use rel32.
 *
 * @param source The assembler text.
 * @param options Bitness, origin address and absolute symbols.
 * @returns The bytes, the labels and a per-statement record for listings.
 * @throws {AssemblerError} With line and column for anything it cannot assemble.
 *
 * @example Assemble the start of the int3 entry gap
 * ```ts
 * import { assemble } from "./assemble.ts";
 * const out = assemble("testb $3, CS-ORIG_RAX(%rsp)\njnz 1f\n1:", {
 *   bitness: 64,
 *   symbols: { CS: 136, ORIG_RAX: 120 },
 * });
 * // f6 44 24 10 03  75 00
 * if (out.bytes.length !== 7) throw new Error("unexpected length");
 * ```
 */
export function assemble(source: string, options: AssembleOptions): Assembled {
  try {
    return assembleInner(source, options);
  } catch (e) {
    if (e instanceof TextpokeError) throw e;
    throw new AssemblerError(`internal assembler failure: ${String(e)}`, 1, 1);
  }
}

function assembleInner(source: string, options: AssembleOptions): Assembled {
  const bits = options.bitness;
  if (bits !== 32 && bits !== 64) {
    throw new AssemblerError(`bitness must be 32 or 64, not ${String(bits)}`, 1, 1);
  }
  const origin = options.origin ?? 0n;
  const ctx = new Ctx();
  ctx.bits = bits;
  const syms = options.symbols;
  if (syms) {
    const entries = syms instanceof Map ? [...syms.entries()] : Object.entries(syms);
    for (const [k, v] of entries) ctx.table.set(k, BigInt(v));
  }
  const constOnly = (c: Cursor): number => {
    const e = parseExpr(c, new Map());
    const v = ctx.eval(e, c.line);
    if (v.reloc || v.v < 0n || v.v > 1_000_000n) {
      c.fail("the .rept count must be a constant from 0 to 1000000");
    }
    return Number(v.v);
  };
  const raw = expandRept(splitStatements(source), constOnly);
  const stmts = parseAll(raw, bits);

  const encoder = new Encoder(bits);
  try {
    let prevSizes: number[] = [];
    let prevVals: Array<bigint | undefined> = [];
    // First value of each symbol in the last pass: what a forward reference sees (GAS
    // binds a reference made before a redefinition to the earlier definition).
    let firsts = new Map<string, Val>();
    const chunks: Uint8Array[] = [];
    for (let pass = 0;; pass++) {
      if (pass > 50) throw new AssemblerError("layout does not converge", 1, 1);
      ctx.pass = pass;
      ctx.prev = firsts;
      ctx.defs = new Map();
      firsts = new Map();
      const labelNames = new Set<string>();
      const vals: Array<bigint | undefined> = [];
      chunks.length = 0;
      const sizes: number[] = [];
      let addr = origin;
      let changed = false;
      for (const [i, s] of stmts.entries()) {
        ctx.dot = addr;
        let bytes: Uint8Array | undefined;
        try {
          bytes = emit(s, ctx, encoder, addr);
        } catch (e) {
          if (e instanceof TextpokeError) throw e;
          throw new AssemblerError(`cannot assemble '${stmtText(s)}': ${String(e)}`, s.line, s.col);
        }
        if (s.k === "label" || s.k === "set") {
          const v: Val = s.k === "label" ? { v: addr, reloc: true } : ctx.eval(s.e, s.line);
          if (labelNames.has(s.name)) {
            throw new AssemblerError(
              s.k === "label"
                ? `label '${s.name}' is defined twice`
                : `symbol '${s.name}' is already defined as a label`,
              s.line,
              s.col,
            );
          }
          if (s.k === "label") labelNames.add(s.name);
          // A .set symbol may be redefined: compare each defining statement with its own
          // value in the previous pass, not with the symbol's latest value.
          if (prevVals[i] !== v.v) changed = true;
          vals[i] = v.v;
          if (!firsts.has(s.name)) firsts.set(s.name, v);
          ctx.defs.set(s.name, v);
        }
        const n = bytes ? bytes.length : 0;
        sizes.push(n);
        if (bytes) chunks.push(bytes);
        addr += BigInt(n);
      }
      if (sizes.length !== prevSizes.length || sizes.some((n, i) => n !== prevSizes[i])) {
        changed = true;
      }
      prevSizes = sizes;
      prevVals = vals;
      if (!changed && pass > 0) break;
    }
    // Assemble the output.
    const total = prevSizes.reduce((a, b) => a + b, 0);
    const bytes = new Uint8Array(total);
    let off = 0;
    for (const c of chunks) {
      bytes.set(c, off);
      off += c.length;
    }
    const lines: AssembledLine[] = [];
    let a = origin;
    stmts.forEach((s, i) => {
      const n = prevSizes[i]!;
      if (n > 0 && "text" in s) lines.push({ address: a, length: n, line: s.line, text: s.text });
      a += BigInt(n);
    });
    const labels = new Map<string, bigint>();
    for (const [k, v] of ctx.defs) if (!k.includes("\u0002")) labels.set(k, v.v);
    return { bytes, origin, labels, lines };
  } finally {
    encoder.free();
  }
}

function stmtText(s: Stmt): string {
  return "text" in s ? s.text : s.k === "label" ? s.name + ":" : s.name;
}

// ---------------------------------------------------------------------------------------
// Parsing statements

function parseAll(raw: ReturnType<typeof splitStatements>, bits: 32 | 64): Stmt[] {
  const out: Stmt[] = [];
  const locals: LocalCounts = new Map();
  for (const r of raw) {
    const c = new Cursor(r.text, r.line, r.col);
    // Labels (possibly several) at the start.
    for (;;) {
      c.ws();
      const m = /^([A-Za-z_.$][A-Za-z0-9_.$]*|[0-9]+)\s*:(?!:)/.exec(c.s.slice(c.pos));
      if (!m) break;
      const col = c.col();
      c.pos += m[0].length;
      let name = m[1]!;
      if (/^[0-9]+$/.test(name)) {
        const k = locals.get(name) ?? 0;
        locals.set(name, k + 1);
        name = localName(name, k);
      }
      out.push({ k: "label", name, line: r.line, col });
    }
    if (c.done()) continue;
    const text = c.s.slice(c.pos).trim();
    const startCol = c.col();
    // NAME = expr
    const eq = /^([A-Za-z_.$][A-Za-z0-9_.$]*)\s*=(?!=)/.exec(c.s.slice(c.pos));
    if (eq) {
      c.pos += eq[0].length;
      const e = parseExpr(c, locals);
      if (!c.done()) c.fail(`unexpected '${c.token()}' after the expression`);
      out.push({ k: "set", name: eq[1]!, e, line: r.line, col: startCol });
      continue;
    }
    const word = c.ident().toLowerCase();
    if (!word) c.fail(`expected a mnemonic, directive or label but found '${c.token()}'`);
    if (word.startsWith(".")) {
      const st = parseDirective(word, c, locals, startCol, text, bits);
      if (st) out.push(st);
      continue;
    }
    // Prefixes.
    const written: WrittenPrefix[] = [];
    let mn = word;
    let mnCol = startCol;
    while (PREFIXES[mn] !== undefined) {
      const same = written.find((w) => (w.name === "lock") === (mn === "lock"));
      if (same) {
        c.fail(`same type of prefix used twice: '${mn}' after '${same.name}'`, mnCol - c.col0);
      }
      written.push({ name: mn, col: mnCol });
      if (c.done()) break;
      mnCol = c.col();
      mn = c.ident().toLowerCase();
      if (!mn) c.fail(`expected an instruction after the prefix but found '${c.token()}'`);
    }
    if (PREFIXES[mn] !== undefined) {
      // Prefix on its own: GAS emits the byte by itself. With several, GAS takes the
      // last as the instruction, and a prefix cannot be locked or repeated.
      const last = written.pop()!;
      checkPrefixes(written, last.name, undefined, [], r.line, last.col);
      out.push({
        k: "raw",
        bytes: Uint8Array.of(PREFIXES[last.name]!),
        line: r.line,
        col: startCol,
        text,
      });
      continue;
    }
    const ops: Operand[] = [];
    if (!c.done()) {
      for (;;) {
        ops.push(parseOperand(c, locals));
        if (c.eat(",")) continue;
        if (!c.done()) c.fail(`unexpected '${c.token()}' in operand`);
        break;
      }
    }
    checkPrefixes(written, mn, resolveMnemonic(mn, bits), ops, r.line, mnCol);
    out.push({
      k: "insn",
      mn,
      mnCol,
      prefixes: written.map((w) => PREFIXES[w.name]!),
      ops,
      line: r.line,
      col: startCol,
      text,
      long: false,
    });
  }
  return out;
}

function parseDirective(
  word: string,
  c: Cursor,
  locals: LocalCounts,
  col: number,
  text: string,
  bits: 32 | 64,
): Stmt | undefined {
  const line = c.line;
  const exprList = (): Expr[] => {
    const es: Expr[] = [];
    if (c.done()) return es;
    for (;;) {
      es.push(parseExpr(c, locals));
      if (c.eat(",")) continue;
      if (!c.done()) c.fail(`unexpected '${c.token()}' in the ${word} list`);
      return es;
    }
  };
  const constArg = (what: string): number => {
    const p = c.pos;
    const e = parseExpr(c, locals);
    if (e.t !== "num" && !(e.t === "un" && e.a.t === "num")) {
      c.fail(`${what} of ${word} must be a number`, p);
    }
    const v = e.t === "num" ? e.v : (e.a as { v: bigint }).v * (e.op === "-" ? -1n : 1n);
    if (v < 0n || v > 1n << 20n) c.fail(`${what} of ${word} is out of range`, p);
    return Number(v);
  };
  switch (word) {
    case ".byte":
      return { k: "data", width: 1, es: exprList(), line, col, text };
    case ".word":
    case ".short":
    case ".value":
    case ".2byte":
      return { k: "data", width: 2, es: exprList(), line, col, text };
    case ".long":
    case ".int":
    case ".4byte":
      return { k: "data", width: 4, es: exprList(), line, col, text };
    case ".quad":
    case ".8byte":
      return { k: "data", width: 8, es: exprList(), line, col, text };
    case ".ascii":
    case ".asciz":
    case ".string": {
      const bytes: number[] = [];
      for (;;) {
        c.ws();
        const m = /^"((?:\\.|[^"\\])*)"/.exec(c.s.slice(c.pos));
        if (!m) c.fail(`expected a string after ${word}`);
        c.pos += m[0].length;
        const body = m[1]!;
        for (let i = 0; i < body.length; i++) {
          let ch = body.charCodeAt(i);
          if (body[i] === "\\") {
            const n = body[++i] ?? "";
            const oct = /^[0-7]{1,3}/.exec(body.slice(i));
            if (oct) {
              ch = parseInt(oct[0], 8) & 0xff;
              i += oct[0].length - 1;
            } else {
              ch = ({ n: 10, t: 9, r: 13, b: 8, f: 12 } as Record<string, number>)[n] ??
                n.charCodeAt(0);
            }
          }
          if (ch > 0xff) c.fail("only 8-bit characters are supported in strings");
          bytes.push(ch);
        }
        if (word !== ".ascii") bytes.push(0);
        if (!c.eat(",")) break;
      }
      if (!c.done()) c.fail(`unexpected '${c.token()}' after the string`);
      return { k: "raw", bytes: Uint8Array.from(bytes), line, col, text };
    }
    case ".align":
    case ".balign":
    case ".p2align": {
      let n = constArg("the alignment");
      if (word === ".p2align") {
        if (n > 16) c.fail("the .p2align power is out of range");
        n = 1 << n;
      } else if (n === 0) n = 1;
      if (n & (n - 1)) c.fail(`the alignment ${n} of ${word} is not a power of 2`);
      let fill: number | undefined;
      let max: number | undefined;
      if (c.eat(",")) {
        if (c.peek() !== "," && !c.done()) fill = constArg("the fill value") & 0xff;
        // GAS pads with code NOPs for an explicit 0x90 fill too.
        if (fill === 0x90) fill = undefined;
        // Maximum skip: 0 means no limit, as in GAS.
        if (c.eat(",")) max = constArg("the maximum skip") || undefined;
      }
      if (!c.done()) c.fail(`unexpected '${c.token()}' after ${word}`);
      return { k: "align", n, fill, max, line, col, text };
    }
    case ".skip":
    case ".space":
    case ".zero": {
      const e = parseExpr(c, locals);
      let fill = 0;
      if (word !== ".zero" && c.eat(",")) fill = constArg("the fill value") & 0xff;
      if (!c.done()) c.fail(`unexpected '${c.token()}' after ${word}`);
      return { k: "skip", e, size: undefined, fill, line, col, text };
    }
    case ".fill": {
      // .fill repeat[, size[, value]]: size defaults to 1, value to 0.
      const e = parseExpr(c, locals);
      let size: Expr | undefined;
      let fill: Expr = { t: "num", v: 0n };
      if (c.eat(",")) {
        // GAS reads an empty size as 0 (`.fill 2,,7` emits nothing): refuse it instead.
        if (c.peek() === "," || c.done()) c.fail(`the size of ${word} is missing`);
        size = parseExpr(c, locals);
        if (c.eat(",")) fill = parseExpr(c, locals);
      }
      if (!c.done()) c.fail(`unexpected '${c.token()}' after ${word}`);
      return { k: "skip", e, size, fill, line, col, text };
    }
    case ".set":
    case ".equ": {
      const name = c.ident();
      if (!name) c.fail(`expected a symbol name after ${word}`);
      if (!c.eat(",")) c.fail(`expected ',' after the symbol name in ${word}`);
      const e = parseExpr(c, locals);
      if (!c.done()) c.fail(`unexpected '${c.token()}' after the expression`);
      return { k: "set", name, e, line, col };
    }
    case ".code32":
    case ".code64":
      if ((word === ".code32") !== (bits === 32)) {
        c.fail(`${word} does not match the requested bitness ${bits}; pass it in the options`);
      }
      return undefined;
    case ".text":
    case ".globl":
    case ".global":
    case ".type":
    case ".size":
    case ".local":
    case ".weak":
    case ".hidden":
    case ".section":
    case ".pushsection":
    case ".popsection":
    case ".previous":
    case ".file":
    case ".ident":
    case ".cfi_startproc":
    case ".cfi_endproc":
      // Symbol visibility and sections do not change the bytes of one flat blob.
      return undefined;
    default:
      return c.fail(`unknown directive '${word}'`, c.pos - word.length);
  }
}

// ---------------------------------------------------------------------------------------
// Emission

function emit(s: Stmt, ctx: Ctx, enc: Encoder, addr: bigint): Uint8Array | undefined {
  switch (s.k) {
    case "label":
    case "set":
      return undefined;
    case "raw":
      return s.bytes;
    case "data": {
      const out = new Uint8Array(s.width * s.es.length);
      const dv = new DataView(out.buffer);
      s.es.forEach((e, i) => {
        const v = checkWidth(
          ctx.eval(e, s.line).v,
          s.width,
          `a ${s.text.split(/\s/)[0]} item`,
          s.line,
          s.col,
        );
        if (s.width === 1) dv.setUint8(i, Number(v));
        else if (s.width === 2) dv.setUint16(2 * i, Number(v), true);
        else if (s.width === 4) dv.setUint32(4 * i, Number(v), true);
        else dv.setBigUint64(8 * i, v, true);
      });
      return out;
    }
    case "align": {
      const mis = Number(addr % BigInt(s.n));
      let count = mis === 0 ? 0 : s.n - mis;
      // GAS skips the alignment entirely when it would need more than the maximum.
      if (s.max !== undefined && count > s.max) count = 0;
      if (s.fill !== undefined) return new Uint8Array(count).fill(s.fill);
      return nopPadding(count, ctx.bits);
    }
    case "skip": {
      const dir = s.text.split(/\s/)[0]!;
      const v = ctx.eval(s.e, s.line);
      if (v.v < 0n || v.v > 1n << 24n) {
        if (ctx.pass === 0) return new Uint8Array(0);
        throw new AssemblerError(
          `the ${s.size ? "repeat count" : "size"} ${v.v} of ${dir} is out of range`,
          s.line,
          s.col,
        );
      }
      if (typeof s.fill === "number") return new Uint8Array(Number(v.v)).fill(s.fill);
      // .fill: each repeat is the value's low 4 bytes (little-endian) zero-extended to
      // `size` bytes, or cut to `size` bytes, as GAS does.
      const size = s.size ? ctx.eval(s.size, s.line) : { v: 1n, reloc: false };
      const value = ctx.eval(s.fill, s.line);
      if (size.reloc || size.v < 0n || size.v > 8n) {
        if (ctx.pass === 0) return new Uint8Array(0);
        throw new AssemblerError(
          `the size of ${dir} must be a constant from 0 to 8, not ${
            size.reloc ? "an address" : size.v
          }`,
          s.line,
          s.col,
        );
      }
      if (value.reloc && ctx.pass > 0) {
        throw new AssemblerError(
          `the value of ${dir} must be an absolute constant, not an address`,
          s.line,
          s.col,
        );
      }
      const n = Number(size.v);
      const unit = new Uint8Array(n);
      const low = Number(BigInt.asUintN(32, value.v));
      for (let i = 0; i < n && i < 4; i++) unit[i] = (low >>> (8 * i)) & 0xff;
      const out = new Uint8Array(n * Number(v.v));
      for (let p = 0; p < out.length; p += n) out.set(unit, p);
      return out;
    }
    case "insn":
      return encodeInsn(s, ctx, enc, addr);
  }
}

type InsnStmt = Extract<Stmt, { k: "insn" }>;

interface Mn {
  base: string;
  size: Sz | undefined;
  cc: string | undefined;
  /** movzx/movsx source size. */
  src: Sz | undefined;
}

function resolveMnemonic(mn: string, bits: 32 | 64): Mn | undefined {
  const r = (base: string, size?: Sz, cc?: string, src?: Sz): Mn => ({ base, size, cc, src });
  if (FIXED[mn] || BASES.has(mn)) return r(mn);
  let m = /^j(.+)$/.exec(mn);
  if (m && CC[m[1]!]) return r("jcc", undefined, CC[m[1]!]);
  m = /^set(.+)$/.exec(mn);
  if (m && CC[m[1]!]) return r("setcc", 1, CC[m[1]!]);
  m = /^setb?(.+?)b$/.exec(mn);
  if (m && CC[m[1]!] && mn !== "setb") return r("setcc", 1, CC[m[1]!]);
  m = /^cmov(.+?)([wlq])?$/.exec(mn);
  if (m) {
    if (CC[m[1]! + (m[2] ?? "")] && !m[2]) return r("cmovcc", undefined, CC[m[1]!]);
    if (CC[m[1]!]) return r("cmovcc", SZ_SUFFIX[m[2] ?? ""], CC[m[1]!]);
    if (m[2] && CC[m[1]! + m[2]]) return r("cmovcc", undefined, CC[m[1]! + m[2]]);
  }
  m = /^mov([zs])([bw])([wlq])$/.exec(mn);
  if (m) return r(m[1] === "z" ? "movzx" : "movsx", SZ_SUFFIX[m[3]!], undefined, SZ_SUFFIX[m[2]!]);
  if (mn === "movslq") return r("movsx", 8, undefined, 4);
  m = /^(movs|stos|lods|cmps|scas)([bwlqd])$/.exec(mn);
  if (m) return r(m[1]!, m[2] === "d" ? 4 : SZ_SUFFIX[m[2]!]);
  if (STRING_OPS.includes(mn)) return r(mn);
  if (mn === "iret") return r("iret");
  if (mn === "pushfd") return r("pushf", 4);
  if (mn === "popfd") return r("popf", 4);
  const last = mn[mn.length - 1]!;
  const stem = mn.slice(0, -1);
  if (SZ_SUFFIX[last] && BASES.has(stem)) return r(stem, SZ_SUFFIX[last]);
  if (last === "b" && stem.startsWith("set") && CC[stem.slice(3)]) {
    return r("setcc", 1, CC[stem.slice(3)]);
  }
  void bits;
  return undefined;
}

/** iced Register for a RegInfo. */
function ireg(r: RegInfo): Register {
  const v = REG[r.iced];
  if (v === undefined) throw new Error(`internal: no iced register ${r.iced}`);
  return v as Register;
}

const ACC: Record<number, string> = { 1: "AL", 2: "AX", 4: "EAX", 8: "RAX" };

function encodeInsn(s: InsnStmt, ctx: Ctx, enc: Encoder, addr: bigint): Uint8Array {
  const bits = ctx.bits;
  const line = s.line;
  const fail = (msg: string, col: number = s.mnCol): never => {
    throw new AssemblerError(msg, line, col);
  };
  const mn = resolveMnemonic(s.mn, bits);
  if (!mn) return fail(`unknown mnemonic '${s.mn}'`);
  const ops = s.ops;
  const nops = ops.length;
  const badOp = (i: number, why = "") =>
    fail(`bad operand ${i + 1} for '${s.mn}'${why ? ": " + why : ""}`, ops[i]?.col ?? s.mnCol);
  const want = (...n: number[]) => {
    if (!n.includes(nops)) {
      fail(
        `'${s.mn}' takes ${n.join(" or ")} operand${
          n.length === 1 && n[0] === 1 ? "" : "s"
        }, not ${nops}`,
      );
    }
  };

  // Validate registers against the mode.
  let needsRex = false, hasHigh8 = false;
  for (const o of ops) {
    const regs = o.k === "reg" ? [o.reg] : o.k === "mem" ? [o.base, o.index] : [];
    for (const r of regs) {
      if (!r) continue;
      if (bits === 32 && (r.needs64 || r.size === 8)) {
        fail(`register '%${r.name}' does not exist in 32-bit mode`, o.col);
      }
      if (o.k === "reg" && r.cls === "gpr") {
        if (r.high8) hasHigh8 = true;
        if (r.needs64 && r.size === 1) needsRex = true;
      }
    }
  }
  if (needsRex && hasHigh8) {
    fail(`'%ah', '%bh', '%ch' and '%dh' cannot be used with a REX-only register`);
  }

  const gprs = ops.filter((o): o is Extract<Operand, { k: "reg" }> =>
    o.k === "reg" && o.reg.cls === "gpr"
  );
  const regSize = (): Sz | undefined => (gprs[gprs.length - 1]?.reg.size as Sz | undefined);
  /** Operand size: suffix, else from registers, else error. */
  const opSize = (allowDefault?: Sz): Sz => {
    const rs = regSize();
    if (mn.size !== undefined) {
      for (const g of gprs) {
        if (g.reg.size !== mn.size) {
          fail(
            `operand size mismatch: '%${g.reg.name}' is not a ${
              SZ_NAME[mn.size]
            }-bit register for '${s.mn}'`,
            g.col,
          );
        }
      }
      return mn.size;
    }
    if (rs !== undefined) {
      for (const g of gprs) {
        if (g.reg.size !== rs) {
          fail(
            `operand size mismatch between '%${g.reg.name}' and '%${
              gprs[gprs.length - 1]!.reg.name
            }'`,
            g.col,
          );
        }
      }
      return rs;
    }
    if (allowDefault) return allowDefault;
    return fail(
      `no size suffix and no register operand: cannot tell the operand size of '${s.mn}'`,
    );
  };
  const check64 = (sz: Sz) => {
    if (sz === 8 && bits === 32) {
      fail(`64-bit operand size is not available in 32-bit mode for '${s.mn}'`);
    }
  };

  // Memory operand -> iced MemoryOperand.
  const mem = (
    o: Extract<Operand, { k: "mem" }>,
  ): { m: MemoryOperand; reloc: boolean; abs: bigint | undefined } => {
    const d = o.disp ? ctx.eval(o.disp, line) : { v: 0n, reloc: false };
    let base = o.base;
    const index = o.index;
    if (index && index.cls !== "gpr") fail(`'%${index.name}' cannot be an index register`, o.col);
    if (
      index &&
      (index.num === 4 && index.size >= 4 && index.cls === "gpr" && index.name.endsWith("sp"))
    ) {
      fail(`'%${index.name}' cannot be an index register`, o.col);
    }
    if (base && base.cls === "gpr" && base.size < 4) {
      fail(`16-bit addressing is not supported`, o.col);
    }
    if (index && index.size < 4) fail(`16-bit addressing is not supported`, o.col);
    if (base && index && base.cls === "gpr" && base.size !== index.size) {
      fail("base and index registers differ in size", o.col);
    }
    if (base && base.cls === "ip" && index) {
      fail("RIP-relative addressing cannot have an index", o.col);
    }
    if (base && base.cls === "ip" && bits === 32) {
      fail("RIP-relative addressing needs 64-bit mode", o.col);
    }
    const asz = base ? base.size : index ? index.size : (bits === 64 ? 8 : 4);
    let v = d.v;
    let displSize: number;
    let abs: bigint | undefined;
    if (base && base.cls === "ip") {
      // iced wants the absolute target; it computes the rip-relative displacement. As in
      // GAS, `sym(%rip)` addresses sym (a label, `.`, a forward reference or a symbol from
      // the options, which GAS would leave to the linker), while a constant known at that
      // point - a number, an earlier `.set` constant, a difference of earlier labels - is
      // the displacement itself (resolved against the end of the instruction by the
      // caller: ripLiteral).
      if (!d.reloc && !d.late) {
        ripLiteral = BigInt.asIntN(64, v);
        if (!fitsS32(ripLiteral)) fail("RIP-relative displacement does not fit in 32 bits", o.col);
        v = addr + ripLiteral;
      }
      const t = base.size === 8 ? BigInt.asUintN(64, v) : BigInt.asUintN(32, v);
      v = t;
      displSize = base.size;
    } else {
      if (asz === 8) {
        v = BigInt.asIntN(64, v);
        if (!fitsS32(v)) {
          fail(
            `displacement 0x${BigInt.asUintN(64, v).toString(16)} does not fit in 32 bits`,
            o.col,
          );
        }
      } else {
        checkWidth(v, 4, "the displacement", line, o.col);
        v = BigInt.asIntN(32, v);
      }
      if (!base) {
        displSize = asz;
        abs = v;
      } else if (d.reloc) displSize = asz;
      else if (v === 0n) displSize = 0;
      else displSize = 1;
      if (!base && !index && asz === 8) v = BigInt.asUintN(64, v);
      if (asz === 4 && bits === 64) v = BigInt.asUintN(32, v);
      if (asz === 4 && bits === 32) v = BigInt.asUintN(32, v);
    }
    // GAS drops a segment override equal to the default segment of the base.
    let seg = Register.None;
    if (o.seg) {
      const dflt =
        base && base.cls === "gpr" && (base.num === 4 || base.num === 5) && base.size >= 4
          ? "ss"
          : "ds";
      if (o.seg.name !== dflt) seg = ireg(o.seg);
    }
    if (!base && !index) base = undefined;
    const m = new MemoryOperand(
      base ? ireg(base) : Register.None,
      index ? ireg(index) : Register.None,
      o.scale,
      v,
      displSize,
      false,
      seg,
    );
    return { m, reloc: d.reloc, abs };
  };

  const memOps: MemoryOperand[] = [];
  let ripLiteral: bigint | undefined;
  const insns: Instruction[] = [];
  try {
    const build = (
      name: string,
      args: Array<{ r: Register } | { m: MemoryOperand } | { i: bigint; signed: boolean }>,
    ): Instruction => {
      const c = code(name);
      const kinds = args.map((a) => ("r" in a ? "r" : "m" in a ? "m" : "i")).join("");
      const R = (i: number) => (args[i] as { r: Register }).r;
      const M = (i: number) => (args[i] as { m: MemoryOperand }).m;
      const I = (i: number) => {
        const a = args[i] as { i: bigint; signed: boolean };
        return a.signed ? Number(BigInt.asIntN(32, a.i)) : Number(BigInt.asUintN(32, a.i));
      };
      let ins: Instruction;
      switch (kinds) {
        case "":
          ins = Instruction.create(c);
          break;
        case "r":
          ins = Instruction.createReg(c, R(0));
          break;
        case "m":
          ins = Instruction.createMem(c, M(0));
          break;
        case "i":
          ins = (args[0] as { signed: boolean }).signed
            ? Instruction.createI32(c, I(0))
            : Instruction.createU32(c, I(0));
          break;
        case "rr":
          ins = Instruction.createRegReg(c, R(0), R(1));
          break;
        case "rm":
          ins = Instruction.createRegMem(c, R(0), M(1));
          break;
        case "mr":
          ins = Instruction.createMemReg(c, M(0), R(1));
          break;
        case "ri": {
          const a = args[1] as { i: bigint; signed: boolean };
          if (name === "Mov_r64_imm64") {
            ins = Instruction.createRegU64(c, R(0), BigInt.asUintN(64, a.i));
          } else {ins = a.signed
              ? Instruction.createRegI32(c, R(0), I(1))
              : Instruction.createRegU32(c, R(0), I(1));}
          break;
        }
        case "mi":
          ins = (args[1] as { signed: boolean }).signed
            ? Instruction.createMemI32(c, M(0), I(1))
            : Instruction.createMemU32(c, M(0), I(1));
          break;
        case "rri":
          ins = (args[2] as { signed: boolean }).signed
            ? Instruction.createRegRegI32(c, R(0), R(1), I(2))
            : Instruction.createRegRegU32(c, R(0), R(1), I(2));
          break;
        case "rmi":
          ins = (args[2] as { signed: boolean }).signed
            ? Instruction.createRegMemI32(c, R(0), M(1), I(2))
            : Instruction.createRegMemU32(c, R(0), M(1), I(2));
          break;
        default:
          throw new Error(`internal: operand pattern ${kinds}`);
      }
      insns.push(ins);
      return ins;
    };
    const mOp = (o: Extract<Operand, { k: "mem" }>) => {
      const r = mem(o);
      memOps.push(r.m);
      return { m: r.m };
    };
    const rOp = (r: RegInfo) => ({ r: ireg(r) });
    const accOf = (sz: number) => ({ r: REG[ACC[sz]!]! as Register });
    const imm = (o: Extract<Operand, { k: "imm" }>, sz: number, signed: boolean) => {
      const v = ctx.eval(o.e, line);
      let x = v.v;
      if (sz === 8) {
        x = BigInt.asIntN(64, x);
        if (!fitsS32(x)) {
          fail(
            `immediate 0x${
              BigInt.asUintN(64, x).toString(16)
            } does not fit in a sign-extended 32-bit field`,
            o.col,
          );
        }
      } else x = checkWidth(x, sz, "the immediate", line, o.col);
      return { i: signed ? BigInt.asIntN(Math.min(sz, 4) * 8, x) : x, signed, reloc: v.reloc };
    };
    /** Value of an immediate normalized as a signed number of the operand size. */
    const immVal = (o: Extract<Operand, { k: "imm" }>, sz: number) => {
      const v = ctx.eval(o.e, line);
      return { s: BigInt.asIntN(sz * 8, v.v), reloc: v.reloc };
    };
    /** rm operand (register or memory) as iced arg. */
    const rm = (o: Operand, i: number) => {
      if (o.k === "reg") {
        if (o.reg.cls !== "gpr") badOp(i);
        return rOp(o.reg);
      }
      if (o.k === "mem") return mOp(o);
      return badOp(i, "expected a register or memory operand");
    };
    const regOf = (o: Operand, i: number): RegInfo => {
      if (o.k !== "reg" || o.reg.cls !== "gpr") return badOp(i, "expected a general register");
      return o.reg;
    };
    let ins: Instruction | undefined;
    const base = mn.base;

    if (FIXED[base]) {
      want(0);
      const name = FIXED[base]![bits === 64 ? 1 : 0];
      if (!name) return fail(`'${s.mn}' is not available in ${bits}-bit mode`);
      ins = build(name, []);
    } else if (ALU.includes(base) || base === "test") {
      want(2);
      const [src, dst] = [ops[0]!, ops[1]!];
      const sz = opSize();
      check64(sz);
      const N = cap(base);
      const rm32 = `rm${SZ_NAME[sz]}`;
      if (src.k === "imm") {
        if (dst.k === "imm") badOp(1);
        const isAcc = dst.k === "reg" && dst.reg.num === 0 && dst.reg.cls === "gpr" &&
          !dst.reg.high8;
        const { s: sv, reloc } = immVal(src, sz);
        if (base === "test") {
          const w = sz === 8 ? 4 : sz;
          if (isAcc) {
            ins = build(`Test_${ACC[sz]}_imm${SZ_NAME[w]}`, [accOf(sz), imm(src, sz, sz === 8)]);
          } else ins = build(`Test_${rm32}_imm${SZ_NAME[w]}`, [rm(dst, 1), imm(src, sz, sz === 8)]);
        } else if (sz === 1) {
          if (isAcc) ins = build(`${N}_AL_imm8`, [accOf(1), imm(src, 1, false)]);
          else ins = build(`${N}_rm8_imm8`, [rm(dst, 1), imm(src, 1, false)]);
        } else if (!reloc && fitsS8(sv)) {
          imm(src, sz, true);
          ins = build(`${N}_${rm32}_imm8`, [rm(dst, 1), { i: sv, signed: true }]);
        } else if (isAcc) {
          ins = build(`${N}_${ACC[sz]}_imm${SZ_NAME[sz === 8 ? 4 : sz]}`, [
            accOf(sz),
            imm(src, sz, sz === 8),
          ]);
        } else {
          ins = build(`${N}_${rm32}_imm${SZ_NAME[sz === 8 ? 4 : sz]}`, [
            rm(dst, 1),
            imm(src, sz, sz === 8),
          ]);
        }
      } else if (src.k === "reg") {
        regOf(src, 0);
        ins = build(`${N}_${rm32}_r${SZ_NAME[sz]}`, [rm(dst, 1), rOp(src.reg)]);
      } else {
        if (base === "test") {
          ins = build(`Test_${rm32}_r${SZ_NAME[sz]}`, [rm(src, 0), rOp(regOf(dst, 1))]);
        } else {
          ins = build(`${N}_r${SZ_NAME[sz]}_${rm32}`, [rOp(regOf(dst, 1)), rm(src, 0)]);
        }
      }
    } else if (base === "mov" || base === "movabs") {
      want(2);
      ins = encodeMov(s, mn, ctx, ops, {
        build,
        rm,
        rOp,
        mOp,
        imm,
        regOf,
        opSize,
        check64,
        fail,
        badOp,
        mem,
        memOps,
      });
    } else if (base === "movzx" || base === "movsx" || base === "movsxd") {
      want(2);
      const [src, dst] = [ops[0]!, ops[1]!];
      const d = regOf(dst, 1);
      const dsz = (mn.size ?? d.size) as Sz;
      if (d.size !== dsz) {
        fail(`operand size mismatch: '%${d.name}' is not ${SZ_NAME[dsz]}-bit`, dst.col);
      }
      check64(dsz);
      let ssz = mn.src;
      if (src.k === "reg") {
        if (ssz !== undefined && src.reg.size !== ssz) {
          fail(`operand size mismatch: '%${src.reg.name}'`, src.col);
        }
        ssz = src.reg.size as Sz;
      }
      if (base === "movsxd") ssz = 4;
      if (ssz === undefined) {
        fail(`no size suffix: cannot tell the source size of '${s.mn}' (use movzbl, movswq, ...)`);
      }
      if (ssz! >= dsz) badOp(0, "the source must be narrower than the destination");
      if (ssz === 4) {
        if (base === "movzx") badOp(0);
        ins = build("Movsxd_r64_rm32", [rOp(d), rm(src, 0)]);
      } else {
        ins = build(`${base === "movzx" ? "Movzx" : "Movsx"}_r${SZ_NAME[dsz]}_rm${SZ_NAME[ssz!]}`, [
          rOp(d),
          rm(src, 0),
        ]);
      }
    } else if (base === "lea") {
      want(2);
      const [src, dst] = [ops[0]!, ops[1]!];
      if (src.k !== "mem") badOp(0, "lea needs a memory operand");
      const d = regOf(dst, 1);
      const sz = opSize();
      if (sz === 1) badOp(1);
      check64(sz);
      ins = build(`Lea_r${SZ_NAME[sz]}_m`, [rOp(d), mOp(src as Extract<Operand, { k: "mem" }>)]);
    } else if (base === "push" || base === "pop") {
      want(1);
      const o = ops[0]!;
      const N = cap(base);
      const dflt: Sz = bits === 64 ? 8 : 4;
      if (o.k === "reg" && o.reg.cls === "sreg") {
        const sz = mn.size ?? dflt;
        if (bits === 64 && !["fs", "gs"].includes(o.reg.name)) {
          badOp(0, `%${o.reg.name} cannot be pushed or popped in 64-bit mode`);
        }
        if (base === "pop" && o.reg.name === "cs") badOp(0);
        const pre = sz === 2 ? "w" : sz === 8 ? "q" : "d";
        if (sz === 8 && bits === 32 || sz === 4 && bits === 64 || sz === 1) badOp(0);
        ins = build(`${N}${pre}_${o.reg.name.toUpperCase()}`, [rOp(o.reg)]);
      } else if (o.k === "imm") {
        if (base === "pop") badOp(0);
        const sz = mn.size ?? dflt;
        if (sz === 1 || (sz === 4 && bits === 64) || (sz === 8 && bits === 32)) {
          fail(`invalid operand size for '${s.mn}'`);
        }
        const { s: sv, reloc } = immVal(o, sz);
        const pre = sz === 2 ? "Pushw" : sz === 4 ? "Pushd" : "Pushq";
        if (!reloc && fitsS8(sv)) {
          imm(o, sz, true);
          ins = build(`${pre}_imm8`, [{ i: sv, signed: true }]);
        } else {
          ins = build(sz === 2 ? "Push_imm16" : `${pre}_imm32`, [imm(o, sz, sz === 8)]);
        }
      } else {
        if (o.k === "reg" && o.reg.cls !== "gpr") badOp(0);
        const sz = opSize(dflt);
        if (sz === 1 || (sz === 4 && bits === 64) || (sz === 8 && bits === 32)) {
          fail(`invalid operand size ${SZ_NAME[sz]} for '${s.mn}' in ${bits}-bit mode`, o.col);
        }
        if (o.k === "reg") ins = build(`${N}_r${SZ_NAME[sz]}`, [rOp(o.reg)]);
        else ins = build(`${N}_rm${SZ_NAME[sz]}`, [rm(o, 0)]);
      }
    } else if (base === "pushf" || base === "popf") {
      want(0);
      const sz = mn.size ?? (bits === 64 ? 8 : 4);
      if (sz === 1 || (sz === 4 && bits === 64) || (sz === 8 && bits === 32)) {
        fail(`'${s.mn}' is not available in ${bits}-bit mode`);
      }
      ins = build(`${cap(base)}${sz === 2 ? "w" : sz === 4 ? "d" : "q"}`, []);
    } else if (base === "leave" || base === "iret") {
      want(0);
      const sz = mn.size ?? (base === "iret" ? 4 : bits === 64 ? 8 : 4);
      if (sz === 1 || (sz === 8 && bits === 32) || (base === "leave" && sz === 4 && bits === 64)) {
        fail(`'${s.mn}' is not available in ${bits}-bit mode`);
      }
      ins = build(`${cap(base)}${sz === 2 ? "w" : sz === 4 ? "d" : "q"}`, []);
    } else if (base === "ret") {
      want(0, 1);
      const sz = mn.size ?? (bits === 64 ? 8 : 4);
      if (sz === 1 || (sz === 4 && bits === 64) || (sz === 8 && bits === 32)) {
        fail(`'${s.mn}' is not available in ${bits}-bit mode`);
      }
      const sfx = sz === 2 ? "w" : sz === 4 ? "d" : "q";
      if (nops === 1) {
        const o = ops[0]!;
        if (o.k !== "imm") badOp(0, "expected $bytes");
        ins = build(`Retn${sfx}_imm16`, [imm(o as Extract<Operand, { k: "imm" }>, 2, false)]);
      } else ins = build(`Retn${sfx}`, []);
    } else if (base === "call" || base === "jmp" || base === "jcc") {
      want(1);
      const o = ops[0]!;
      const indirect = (o.k === "mem" || o.k === "reg") &&
        (o.star || o.k === "reg" || o.base || o.index || o.seg);
      if (o.k === "imm") badOp(0, "a branch target is written without '$'");
      if (indirect && base !== "jcc") {
        const sz = opSize(bits === 64 ? 8 : 4);
        if (sz !== (bits === 64 ? 8 : 4)) {
          fail(`invalid operand size ${SZ_NAME[sz]} for '${s.mn}' in ${bits}-bit mode`, o.col);
        }
        ins = build(`${cap(base)}_rm${SZ_NAME[sz]}`, [rm(o, 0)]);
      } else {
        if (o.k !== "mem" || o.star || indirect) badOp(0);
        // GAS takes no size suffix on a direct jmp (`jmpq *%rax` is fine, `jmpq label` not).
        if (base === "jmp" && mn.size !== undefined) fail(`invalid instruction suffix for 'jmp'`);
        if (mn.size !== undefined && mn.size !== (bits === 64 ? 8 : 4)) {
          fail(`'${s.mn}' is not available in ${bits}-bit mode`);
        }
        const tv = ctx.eval((o as { disp: Expr }).disp, line);
        const target = BigInt.asUintN(bits, tv.v);
        const next = (n: number) => addr + BigInt(n);
        const mode = bits === 64 ? "64" : "32";
        if (base === "call") {
          ins = Instruction.createBranch(code(`Call_rel32_${mode}`), target);
          insns.push(ins);
        } else {
          const shortLen = 2;
          // Only label-relative targets are relaxed (GAS uses rel32 plus a relocation for
          // absolute targets and external symbols).
          if (tv.reloc && !s.long) {
            const rel = BigInt.asIntN(bits, target - BigInt.asUintN(bits, next(shortLen)));
            if (!fitsS8(rel)) s.long = true;
          }
          const nm = base === "jmp" ? "Jmp" : `J${mn.cc}`;
          const wide = !tv.reloc || s.long;
          ins = Instruction.createBranch(code(`${nm}_rel${wide ? "32" : "8"}_${mode}`), target);
          insns.push(ins);
        }
      }
    } else if (base === "setcc") {
      want(1);
      if (mn.size !== 1) fail(`unknown mnemonic '${s.mn}'`);
      const o = ops[0]!;
      if (o.k === "reg" && o.reg.size !== 1) badOp(0, "setcc writes an 8-bit register");
      ins = build(`Set${mn.cc}_rm8`, [rm(o, 0)]);
    } else if (base === "cmovcc") {
      want(2);
      const sz = opSize();
      if (sz === 1) badOp(1);
      check64(sz);
      ins = build(`Cmov${mn.cc}_r${SZ_NAME[sz]}_rm${SZ_NAME[sz]}`, [
        rOp(regOf(ops[1]!, 1)),
        rm(ops[0]!, 0),
      ]);
    } else if (UNARY.includes(base) || (base === "imul" && nops === 1)) {
      want(1);
      const o = ops[0]!;
      const sz = opSize();
      check64(sz);
      const N = cap(base);
      if (bits === 32 && (base === "inc" || base === "dec") && o.k === "reg" && sz !== 1) {
        ins = build(`${N}_r${SZ_NAME[sz]}`, [rOp(o.reg)]);
      } else ins = build(`${N}_rm${SZ_NAME[sz]}`, [rm(o, 0)]);
    } else if (SHIFT.includes(base)) {
      want(1, 2);
      const dst = ops[nops - 1]!;
      // GAS encodes sal as shl (/4), not the /6 alias.
      const N = base === "sal" ? "Shl" : cap(base);
      if (nops === 1) {
        const sz = opSize();
        check64(sz);
        ins = build(`${N}_rm${SZ_NAME[sz]}_1`, [rm(dst, 0), { i: 1n, signed: false }]);
      } else {
        const cnt = ops[0]!;
        const g = gprs.filter((x) => x !== cnt);
        const sz = (mn.size ?? g[0]?.reg.size) as Sz | undefined;
        if (sz === undefined) {
          fail(`no size suffix and no register operand: cannot tell the operand size of '${s.mn}'`);
        }
        if (dst.k === "reg" && dst.reg.size !== sz) {
          fail(`operand size mismatch for '${s.mn}'`, dst.col);
        }
        check64(sz!);
        if (cnt.k === "reg") {
          if (cnt.reg.name !== "cl") badOp(0, "the count must be %cl or an immediate");
          ins = build(`${N}_rm${SZ_NAME[sz!]}_CL`, [rm(dst, 1), rOp(cnt.reg)]);
        } else if (cnt.k === "imm") {
          const v = ctx.eval(cnt.e, line);
          if (!v.reloc && v.v === 1n) {
            ins = build(`${N}_rm${SZ_NAME[sz!]}_1`, [rm(dst, 1), { i: 1n, signed: false }]);
          } else ins = build(`${N}_rm${SZ_NAME[sz!]}_imm8`, [rm(dst, 1), imm(cnt, 1, false)]);
        } else badOp(0);
      }
    } else if (base === "imul") {
      want(2, 3);
      const dst = regOf(ops[nops - 1]!, nops - 1);
      const sz = opSize();
      if (sz === 1) badOp(nops - 1);
      check64(sz);
      const S = SZ_NAME[sz];
      if (nops === 2 && ops[0]!.k !== "imm") {
        ins = build(`Imul_r${S}_rm${S}`, [rOp(dst), rm(ops[0]!, 0)]);
      } else {
        const io = ops[0]!;
        if (io.k !== "imm") badOp(0, "expected an immediate");
        const src = nops === 3 ? rm(ops[1]!, 1) : rOp(dst);
        const { s: sv, reloc } = immVal(io as Extract<Operand, { k: "imm" }>, sz);
        if (!reloc && fitsS8(sv)) {
          imm(io as Extract<Operand, { k: "imm" }>, sz, true);
          ins = build(`Imul_r${S}_rm${S}_imm8`, [rOp(dst), src, { i: sv, signed: true }]);
        } else {
          ins = build(`Imul_r${S}_rm${S}_imm${sz === 8 ? "32" : S}`, [
            rOp(dst),
            src,
            imm(io as Extract<Operand, { k: "imm" }>, sz, sz === 8),
          ]);
        }
      }
    } else if (base === "xchg") {
      want(2);
      const [a, b] = [ops[0]!, ops[1]!];
      const sz = opSize();
      check64(sz);
      const S = SZ_NAME[sz];
      if (a.k === "reg" && b.k === "reg") {
        regOf(a, 0);
        regOf(b, 1);
        const accA = a.reg.num === 0, accB = b.reg.num === 0;
        if (sz === 8 && accA && accB) {
          // GAS emits a plain nop for xchg %rax,%rax.
          ins = build("Nopd", []);
        } else if (sz !== 1 && (accA || accB) && !(bits === 64 && sz === 4 && accA && accB)) {
          const other = accB ? a.reg : b.reg;
          ins = build(`Xchg_r${S}_${ACC[sz]}`, [rOp(other), {
            r: ireg(lookupReg(ACC[sz]!.toLowerCase())!),
          }]);
        } else ins = build(`Xchg_rm${S}_r${S}`, [rOp(b.reg), rOp(a.reg)]);
      } else if (a.k === "reg") ins = build(`Xchg_rm${S}_r${S}`, [rm(b, 1), rOp(regOf(a, 0))]);
      else ins = build(`Xchg_rm${S}_r${S}`, [rm(a, 0), rOp(regOf(b, 1))]);
    } else if (base === "cmpxchg" || base === "xadd") {
      want(2);
      const sz = opSize();
      check64(sz);
      const S = SZ_NAME[sz];
      ins = build(`${cap(base)}_rm${S}_r${S}`, [rm(ops[1]!, 1), rOp(regOf(ops[0]!, 0))]);
    } else if (BT.includes(base)) {
      want(2);
      const [src, dst] = [ops[0]!, ops[1]!];
      const sz = opSize();
      if (sz === 1) fail(`'${s.mn}' has no 8-bit form`);
      check64(sz);
      const S = SZ_NAME[sz];
      if (src.k === "imm") {
        ins = build(`${cap(base)}_rm${S}_imm8`, [rm(dst, 1), imm(src, 1, false)]);
      } else ins = build(`${cap(base)}_rm${S}_r${S}`, [rm(dst, 1), rOp(regOf(src, 0))]);
    } else if (base === "bswap") {
      want(1);
      const r = regOf(ops[0]!, 0);
      const sz = opSize();
      if (sz < 4) badOp(0, "bswap needs a 32- or 64-bit register");
      ins = build(`Bswap_r${SZ_NAME[sz]}`, [rOp(r)]);
    } else if (base === "nop") {
      want(0, 1);
      if (nops === 0) {
        if (mn.size !== undefined) fail(`'${s.mn}' needs an operand`);
        ins = build("Nopd", []);
      } else {
        const sz = opSize();
        if (sz === 1) badOp(0);
        check64(sz);
        ins = build(`Nop_rm${SZ_NAME[sz]}`, [rm(ops[0]!, 0)]);
      }
    } else if (base === "int") {
      want(1);
      const o = ops[0]!;
      if (o.k !== "imm") badOp(0, "expected $vector");
      const v = imm(o as Extract<Operand, { k: "imm" }>, 1, false);
      // GAS turns `int $3` into the one-byte int3.
      ins = !v.reloc && v.i === 3n ? build("Int3", []) : build("Int_imm8", [v]);
    } else if (STRING_OPS.includes(base)) {
      // Explicit operands are allowed only as the implicit ones: (%rsi)/(%esi) with an
      // optional segment override for the source, (%rdi)/(%edi), and the accumulator.
      let sz = mn.size;
      let seg = Register.None;
      ops.forEach((o, i) => {
        if (o.k === "reg") {
          if (o.reg.cls !== "gpr" || o.reg.num !== 0 || o.reg.high8) {
            badOp(i, "expected the accumulator");
          }
          if (sz !== undefined && sz !== o.reg.size) {
            fail(`operand size mismatch for '${s.mn}'`, o.col);
          }
          sz = o.reg.size as Sz;
        } else if (o.k === "mem") {
          const b = o.base;
          if (!b || o.index || o.disp || b.size * 8 !== bits || !(b.num === 6 || b.num === 7)) {
            badOp(i, `expected (%${bits === 64 ? "r" : "e"}si) or (%${bits === 64 ? "r" : "e"}di)`);
          }
          if (o.seg) {
            if (b!.num === 7) {
              if (o.seg.name !== "es") badOp(i, "the destination segment is always %es");
            } else if (o.seg.name !== "ds") seg = ireg(o.seg);
          }
        } else badOp(i);
      });
      if (nops > 2) fail(`'${s.mn}' takes at most 2 operands`);
      if (sz === undefined) return fail(`'${s.mn}' needs a size suffix (b, w, l or q)`);
      check64(sz);
      const asz = bits;
      const rep = s.prefixes.includes(0xf2)
        ? RepPrefixKind.Repne
        : s.prefixes.includes(0xf3)
        ? RepPrefixKind.Repe
        : RepPrefixKind.None;
      const L = sz === 1 ? "b" : sz === 2 ? "w" : sz === 4 ? "d" : "q";
      const segNone = seg;
      switch (base) {
        case "movs":
          ins = ({
            b: Instruction.createMovsb,
            w: Instruction.createMovsw,
            d: Instruction.createMovsd,
            q: Instruction.createMovsq,
          })[L](asz, segNone, rep);
          break;
        case "lods":
          ins = ({
            b: Instruction.createLodsb,
            w: Instruction.createLodsw,
            d: Instruction.createLodsd,
            q: Instruction.createLodsq,
          })[L](asz, segNone, rep);
          break;
        case "cmps":
          ins = ({
            b: Instruction.createCmpsb,
            w: Instruction.createCmpsw,
            d: Instruction.createCmpsd,
            q: Instruction.createCmpsq,
          })[L](asz, segNone, rep);
          break;
        case "stos":
          ins = ({
            b: Instruction.createStosb,
            w: Instruction.createStosw,
            d: Instruction.createStosd,
            q: Instruction.createStosq,
          })[L](asz, rep);
          break;
        default:
          ins = ({
            b: Instruction.createScasb,
            w: Instruction.createScasw,
            d: Instruction.createScasd,
            q: Instruction.createScasq,
          })[L](asz, rep);
      }
      insns.push(ins);
    } else {
      fail(`unknown mnemonic '${s.mn}'`);
    }
    if (!ins) return fail(`unknown mnemonic '${s.mn}'`);
    // Prefixes written on the same line.
    for (const p of s.prefixes) {
      if (p === 0xf0) ins.hasLockPrefix = true;
      else if (!STRING_OPS.includes(base)) {
        if (p === 0xf3) ins.hasRepePrefix = true;
        else ins.hasRepnePrefix = true;
      }
    }
    let n: number;
    try {
      n = enc.encode(ins, addr);
      if (ripLiteral !== undefined) {
        // Now that the length is known, aim at next_ip + displacement.
        enc.takeBuffer();
        const mask = bits === 64 ? 64 : 32;
        ins.memoryDisplacement = BigInt.asUintN(mask, addr + BigInt(n) + ripLiteral);
        n = enc.encode(ins, addr);
      }
    } catch (e) {
      const msg = String(e instanceof Error ? e.message : e);
      if (ctx.pass === 0 && /too far|displacement/i.test(msg)) {
        // Placeholder values of forward references can be out of range in the first pass.
        enc.takeBuffer();
        return new Uint8Array(base === "jmp" || base === "jcc" ? 2 : 5);
      }
      return fail(`cannot encode '${s.text}': ${msg}`, s.col);
    }
    const out = enc.takeBuffer();
    if (out.length !== n) throw new Error("internal: encoder length");
    return gasPrefixOrder(out);
  } finally {
    // MemoryOperands are moved into the Instruction by the create* calls (wasm-bindgen
    // ownership), so only the instructions are freed here.
    for (const i of insns) i.free();
  }
}

// GAS emits legacy prefixes in this order: segment, 67, 66, f2/f3, f0 (tc-i386.c's
// prefix slots); iced puts lock/rep first. Reorder so the bytes match `as`.
function prefixRank(b: number): number {
  switch (b) {
    case 0x26:
    case 0x2e:
    case 0x36:
    case 0x3e:
    case 0x64:
    case 0x65:
      return 1;
    case 0x67:
      return 2;
    case 0x66:
      return 3;
    case 0xf2:
    case 0xf3:
      return 4;
    case 0xf0:
      return 5;
    default:
      return 0;
  }
}

function gasPrefixOrder(b: Uint8Array): Uint8Array {
  let n = 0;
  while (n < b.length && prefixRank(b[n]!) > 0) n++;
  if (n < 2) return b;
  // Pause (f3 90) and friends keep a mandatory prefix next to the opcode; our
  // instructions with two or more prefixes never rely on that.
  const pre = Array.from(b.subarray(0, n)).sort((x, y) => prefixRank(x) - prefixRank(y));
  b.set(pre, 0);
  return b;
}

interface MovHelpers {
  build: (
    name: string,
    args: Array<{ r: Register } | { m: MemoryOperand } | { i: bigint; signed: boolean }>,
  ) => Instruction;
  rm: (o: Operand, i: number) => { r: Register } | { m: MemoryOperand };
  rOp: (r: RegInfo) => { r: Register };
  mOp: (o: Extract<Operand, { k: "mem" }>) => { m: MemoryOperand };
  imm: (
    o: Extract<Operand, { k: "imm" }>,
    sz: number,
    signed: boolean,
  ) => { i: bigint; signed: boolean; reloc: boolean };
  regOf: (o: Operand, i: number) => RegInfo;
  opSize: (d?: Sz) => Sz;
  check64: (sz: Sz) => void;
  fail: (msg: string, col?: number) => never;
  badOp: (i: number, why?: string) => never;
  mem: (
    o: Extract<Operand, { k: "mem" }>,
  ) => { m: MemoryOperand; reloc: boolean; abs: bigint | undefined };
  memOps: MemoryOperand[];
}

function encodeMov(s: InsnStmt, mn: Mn, ctx: Ctx, ops: Operand[], h: MovHelpers): Instruction {
  const bits = ctx.bits;
  const [src, dst] = [ops[0]!, ops[1]!];
  const movabs = mn.base === "movabs";
  // Segment registers.
  const sreg = (o: Operand) => o.k === "reg" && o.reg.cls === "sreg";
  if (sreg(src) || sreg(dst)) {
    if (movabs) h.fail(`bad operand for '${s.mn}'`);
    if (sreg(src) && sreg(dst)) h.badOp(1);
    const sr = (sreg(src) ? src : dst) as Extract<Operand, { k: "reg" }>;
    const other = sreg(src) ? dst : src;
    const oi = sreg(src) ? 1 : 0;
    if (other.k === "imm") h.badOp(oi);
    if (!sreg(src) && sr.reg.name === "cs") h.badOp(1, "%cs cannot be loaded with mov");
    if (other.k === "reg") {
      const r = h.regOf(other, oi);
      if (r.size === 1) h.badOp(oi);
      if (mn.size !== undefined && mn.size !== r.size) h.fail("operand size mismatch", other.col);
      check(r.size === 8 && bits === 32, h);
      if (sreg(src)) {
        // GAS drops REX.W for mov %sreg,%r64 (the upper bits are zeroed anyway).
        const r32 = r.size === 8 ? lookupReg(r.num < 8 ? "e" + r.name.slice(1) : r.name + "d")! : r;
        return h.build(r.size === 2 ? "Mov_rm16_Sreg" : "Mov_r32m16_Sreg", [
          h.rOp(r32),
          h.rOp(sr.reg),
        ]);
      }
      return h.build(r.size === 8 ? "Mov_Sreg_r64m16" : "Mov_Sreg_r32m16", [
        h.rOp(sr.reg),
        h.rOp(r),
      ]);
    }
    if (mn.size !== undefined && mn.size !== 2) {
      h.fail(`'${s.mn}' with a segment register and memory must be 16-bit`);
    }
    const m = h.mOp(other as Extract<Operand, { k: "mem" }>);
    // GAS stores/loads a segment register to/from memory without a 66 prefix.
    if (sreg(src)) return h.build("Mov_r32m16_Sreg", [m, h.rOp(sr.reg)]);
    return h.build("Mov_Sreg_r32m16", [h.rOp(sr.reg), m]);
  }
  const sz = h.opSize();
  h.check64(sz);
  const S = SZ_NAME[sz];
  if (dst.k === "imm") h.badOp(1);
  if (src.k === "imm") {
    if (dst.k === "reg") {
      const r = h.regOf(dst, 1);
      if (sz === 8) {
        const v = BigInt.asIntN(64, ctx.eval(src.e, s.line).v);
        const reloc = ctx.eval(src.e, s.line).reloc;
        if (movabs || !fitsS32(v)) {
          if (!fits(ctx.eval(src.e, s.line).v, -(1n << 63n), (1n << 64n) - 1n)) {
            h.fail("the immediate does not fit in 64 bits", src.col);
          }
          return h.build("Mov_r64_imm64", [h.rOp(r), { i: v, signed: false }]);
        }
        void reloc;
        return h.build("Mov_rm64_imm32", [h.rOp(r), h.imm(src, 8, true)]);
      }
      return h.build(`Mov_r${S}_imm${S}`, [h.rOp(r), h.imm(src, sz, false)]);
    }
    if (movabs) h.badOp(1);
    return h.build(`Mov_rm${S}_imm${sz === 8 ? "32" : S}`, [
      h.rm(dst, 1),
      h.imm(src, sz, sz === 8),
    ]);
  }
  // moffs forms: movabs in 64-bit mode; plain mov to/from the accumulator with an absolute
  // address in 32-bit mode (GAS picks the shorter a0-a3 encoding there).
  const memOp = src.k === "mem" ? src : dst.k === "mem" ? dst : undefined;
  const regOp = src.k === "reg" ? src : dst.k === "reg" ? dst : undefined;
  if (
    memOp && regOp && !memOp.base && !memOp.index && regOp.reg.num === 0 && !regOp.reg.high8 &&
    (movabs || bits === 32)
  ) {
    const acc = ACC[sz]!;
    const v = memOp.disp ? ctx.eval(memOp.disp, s.line).v : 0n;
    const asz = movabs ? 8 : 4;
    const addrV = asz === 8
      ? BigInt.asUintN(64, v)
      : checkWidth(v, 4, "the address", s.line, memOp.col);
    const seg = memOp.seg
      ? (Register as unknown as Record<string, number>)[memOp.seg.iced]! as Register
      : Register.None;
    const m = new MemoryOperand(
      Register.None,
      Register.None,
      1,
      addrV,
      asz,
      false,
      memOp.seg && memOp.seg.name !== "ds" ? seg : Register.None,
    );
    h.memOps.push(m);
    const accReg = { r: (Register as unknown as Record<string, number>)[acc]! as Register };
    if (src.k === "mem") return h.build(`Mov_${acc}_moffs${S}`, [accReg, { m }]);
    return h.build(`Mov_moffs${S}_${acc}`, [{ m }, accReg]);
  }
  if (movabs) h.fail(`'${s.mn}' needs an immediate or an absolute address with the accumulator`);
  if (src.k === "reg") return h.build(`Mov_rm${S}_r${S}`, [h.rm(dst, 1), h.rOp(h.regOf(src, 0))]);
  return h.build(`Mov_r${S}_rm${S}`, [h.rOp(h.regOf(dst, 1)), h.rm(src, 0)]);
}

function check(bad: boolean, h: MovHelpers) {
  if (bad) h.fail("64-bit registers do not exist in 32-bit mode");
}
