/**
 * Lexing and parsing for the AT&T assembler: statements, operands and expressions.
 * Internal to {@link assemble}; nothing here is part of the public API.
 *
 * @module
 */

import { AssemblerError } from "../errors.ts";

/** A parsed expression node. */
export type Expr =
  | { t: "num"; v: bigint }
  | { t: "sym"; name: string; display: string; col: number }
  | { t: "dot" }
  | { t: "un"; op: string; a: Expr }
  | { t: "bin"; op: string; a: Expr; b: Expr };

/** A register as written, with its iced name and properties. */
export interface RegInfo {
  /** Lower-case AT&T name without `%`. */
  name: string;
  /** iced-x86 `Register` enum key. */
  iced: string;
  /** Size in bytes (1, 2, 4, 8); 2 for segment registers. */
  size: number;
  /** Encoding number 0–15 (ah..bh are 4–7). */
  num: number;
  /** "gpr", "sreg" or "ip". */
  cls: "gpr" | "sreg" | "ip";
  /** ah, ch, dh, bh: cannot be used with a REX prefix. */
  high8: boolean;
  /** spl, bpl, sil, dil, r8..r15 parts: need 64-bit mode. */
  needs64: boolean;
}

/** A parsed operand. */
export type Operand =
  | { k: "reg"; reg: RegInfo; star: boolean; col: number }
  | { k: "imm"; e: Expr; col: number }
  | {
    k: "mem";
    seg: RegInfo | undefined;
    disp: Expr | undefined;
    base: RegInfo | undefined;
    index: RegInfo | undefined;
    scale: number;
    star: boolean;
    col: number;
  };

const REGS = new Map<string, RegInfo>();
function addReg(name: string, iced: string, size: number, num: number, cls: RegInfo["cls"]) {
  REGS.set(name, {
    name,
    iced,
    size,
    num,
    cls,
    high8: /^[acdb]h$/.test(name),
    needs64: num >= 8 || /^(spl|bpl|sil|dil|r\w+)$/.test(name),
  });
}
{
  const b64 = ["rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi"];
  const b32 = ["eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi"];
  const b16 = ["ax", "cx", "dx", "bx", "sp", "bp", "si", "di"];
  const b8 = ["al", "cl", "dl", "bl", "spl", "bpl", "sil", "dil"];
  for (let i = 0; i < 8; i++) {
    addReg(b64[i]!, b64[i]!.toUpperCase(), 8, i, "gpr");
    addReg(b32[i]!, b32[i]!.toUpperCase(), 4, i, "gpr");
    addReg(b16[i]!, b16[i]!.toUpperCase(), 2, i, "gpr");
    addReg(b8[i]!, b8[i]!.toUpperCase(), 1, i, "gpr");
  }
  ["ah", "ch", "dh", "bh"].forEach((n, i) => addReg(n, n.toUpperCase(), 1, 4 + i, "gpr"));
  for (let i = 8; i < 16; i++) {
    addReg(`r${i}`, `R${i}`, 8, i, "gpr");
    addReg(`r${i}d`, `R${i}D`, 4, i, "gpr");
    addReg(`r${i}w`, `R${i}W`, 2, i, "gpr");
    addReg(`r${i}b`, `R${i}L`, 1, i, "gpr");
    addReg(`r${i}l`, `R${i}L`, 1, i, "gpr");
  }
  ["es", "cs", "ss", "ds", "fs", "gs"].forEach((n, i) => addReg(n, n.toUpperCase(), 2, i, "sreg"));
  addReg("rip", "RIP", 8, 0, "ip");
  addReg("eip", "EIP", 4, 0, "ip");
  // ah..bh are not "needs64"; spl..dil are.
  for (const n of ["ah", "ch", "dh", "bh"]) REGS.get(n)!.needs64 = false;
}

/** Looks up a register by its AT&T name (without `%`). */
export function lookupReg(name: string): RegInfo | undefined {
  return REGS.get(name.toLowerCase());
}

/** A cursor over one statement's text, with error reporting at 1-based columns. */
export class Cursor {
  /** Position in `s`. */
  pos = 0;
  /**
   * @param s Statement text.
   * @param line 1-based source line.
   * @param col0 1-based column of `s[0]` in the source line.
   */
  constructor(readonly s: string, readonly line: number, readonly col0: number) {}
  /** Column of the current position. */
  col(p: number = this.pos): number {
    return this.col0 + p;
  }
  /** Throws an AssemblerError at position `p`. */
  fail(msg: string, p: number = this.pos): never {
    throw new AssemblerError(msg, this.line, this.col(p));
  }
  /** Skips blanks. */
  ws(): void {
    while (this.pos < this.s.length && /\s/.test(this.s[this.pos]!)) this.pos++;
  }
  /** Next non-blank char without consuming. */
  peek(): string {
    this.ws();
    return this.s[this.pos] ?? "";
  }
  /** Consumes `c` if next. */
  eat(c: string): boolean {
    this.ws();
    if (this.s.startsWith(c, this.pos)) {
      this.pos += c.length;
      return true;
    }
    return false;
  }
  /** True at end. */
  done(): boolean {
    this.ws();
    return this.pos >= this.s.length;
  }
  /** Reads an identifier, or "" if none. */
  ident(): string {
    this.ws();
    const m = /^[A-Za-z_.$][A-Za-z0-9_.$]*/.exec(this.s.slice(this.pos));
    if (!m) return "";
    this.pos += m[0].length;
    return m[0];
  }
  /** Describes the token at the current position for error messages. */
  token(): string {
    this.ws();
    const m = /^(%?[A-Za-z0-9_.$]+|\S)/.exec(this.s.slice(this.pos));
    return m ? m[0] : "end of line";
  }
}

/** Numeric local label bookkeeping: how many definitions of each number so far. */
export type LocalCounts = Map<string, number>;

/** The internal symbol name of the k-th definition of numeric label n. */
export function localName(n: string, k: number): string {
  return `${n}\u0002${k}`;
}

/**
 * Parses an expression with GAS precedence: unary (- ~ !), then `* / % << >>`, then
 * `| & ^ !`, then `+ -`, then comparisons, then `&& ||`.
 */
export function parseExpr(c: Cursor, locals: LocalCounts): Expr {
  return parseLevel(c, locals, 0);
}

const LEVELS: string[][] = [
  ["&&", "||"],
  ["==", "!=", "<>", "<=", ">=", "<", ">"],
  ["+", "-"],
  ["|", "&", "^", "!"],
  ["*", "/", "%", "<<", ">>"],
];

function parseLevel(c: Cursor, locals: LocalCounts, lvl: number): Expr {
  if (lvl >= LEVELS.length) return parseUnary(c, locals);
  let a = parseLevel(c, locals, lvl + 1);
  for (;;) {
    c.ws();
    const ops = LEVELS[lvl]!;
    let found = "";
    for (const op of ops) {
      if (c.s.startsWith(op, c.pos)) {
        // `||`/`&&` must not be read as `|`/`&`, `<<` not as `<`.
        if (op.length === 1 && /[|&<>=!]/.test(c.s[c.pos + 1] ?? "") && op !== "!") {
          const two = c.s.slice(c.pos, c.pos + 2);
          if (["||", "&&", "<<", ">>", "<=", ">=", "==", "!=", "<>"].includes(two)) continue;
        }
        if (op === "!" && c.s[c.pos + 1] === "=") continue;
        found = op;
        break;
      }
    }
    if (!found) return a;
    c.pos += found.length;
    const b = parseLevel(c, locals, lvl + 1);
    a = { t: "bin", op: found, a, b };
  }
}

function parseUnary(c: Cursor, locals: LocalCounts): Expr {
  c.ws();
  const ch = c.s[c.pos] ?? "";
  if (ch === "-" || ch === "~" || ch === "!" || ch === "+") {
    c.pos++;
    const a = parseUnary(c, locals);
    return ch === "+" ? a : { t: "un", op: ch, a };
  }
  if (ch === "(") {
    c.pos++;
    const e = parseExpr(c, locals);
    if (!c.eat(")")) c.fail(`expected ')' but found '${c.token()}'`);
    return e;
  }
  const rest = c.s.slice(c.pos);
  const col = c.col();
  // Numeric local label reference: 1f / 1b.
  let m = /^([0-9]+)([fb])(?![A-Za-z0-9_.$])/.exec(rest);
  if (m) {
    c.pos += m[0].length;
    const n = m[1]!;
    const seen = locals.get(n) ?? 0;
    if (m[2] === "b") {
      if (seen === 0) {
        c.fail(`undefined local label '${m[0]}': no '${n}:' before it`, c.pos - m[0].length);
      }
      return { t: "sym", name: localName(n, seen - 1), display: m[0], col };
    }
    return { t: "sym", name: localName(n, seen), display: m[0], col };
  }
  m = /^(0[xX][0-9a-fA-F]+|0[bB][01]+|[0-9]+)(?![A-Za-z0-9_.$])/.exec(rest);
  if (m) {
    c.pos += m[0].length;
    const t = m[0];
    let v: bigint;
    if (/^0[0-7]+$/.test(t)) v = BigInt("0o" + t.slice(1));
    else if (/^0[0-9]+$/.test(t)) c.fail(`bad octal number '${t}'`, c.pos - t.length);
    else v = BigInt(t);
    return { t: "num", v };
  }
  m = /^'(\\.|[^\\'])'?/.exec(rest);
  if (m) {
    c.pos += m[0].length;
    const body = m[1]!;
    const esc: Record<string, number> = { n: 10, t: 9, r: 13, "0": 0, "\\": 92, "'": 39 };
    const v = body.length === 2 ? (esc[body[1]!] ?? body.charCodeAt(1)) : body.charCodeAt(0);
    return { t: "num", v: BigInt(v) };
  }
  if (ch === "." && !/^\.[A-Za-z0-9_.$]/.test(rest)) {
    c.pos++;
    return { t: "dot" };
  }
  const id = c.ident();
  if (id) return { t: "sym", name: id, display: id, col };
  if (ch === "%") c.fail(`unexpected register '${c.token()}' in an expression`);
  return c.fail(ch ? `unexpected '${c.token()}' in an expression` : "missing expression");
}

/** Parses one operand (AT&T syntax). */
export function parseOperand(c: Cursor, locals: LocalCounts): Operand {
  c.ws();
  const col = c.col();
  const star = c.eat("*");
  c.ws();
  if (c.peek() === "$") {
    c.pos++;
    if (star) c.fail("'*' cannot precede an immediate");
    return { k: "imm", e: parseExpr(c, locals), col };
  }
  let seg: RegInfo | undefined;
  if (c.peek() === "%") {
    const p = c.pos;
    const r = readReg(c);
    if (c.peek() === ":") {
      if (r.cls !== "sreg") c.fail(`'%${r.name}' is not a segment register`, p);
      c.pos++;
      seg = r;
    } else {
      return { k: "reg", reg: r, star, col };
    }
  }
  let disp: Expr | undefined;
  c.ws();
  // Is the next '(' a base/index group (starts with % or ,)?
  const isGroup = () => {
    const m = /^\(\s*(%|,)/.exec(c.s.slice(c.pos));
    return !!m;
  };
  if (!(c.peek() === "(" && isGroup())) {
    if (c.done() || c.peek() === ",") c.fail("missing memory operand");
    disp = parseExpr(c, locals);
  }
  let base: RegInfo | undefined, index: RegInfo | undefined;
  let scale = 1;
  if (c.peek() === "(") {
    c.pos++;
    if (c.peek() === "%") base = readReg(c);
    if (c.eat(",")) {
      // GAS wants an index register (or a scale) after the comma: `(%rbx,)` and
      // `(%rbx,,4)` are refused, `(%rbx,%rcx,)` means scale 1.
      if (c.peek() === "%") index = readReg(c);
      else if (c.peek() === ",") c.fail("a scale factor needs an index register before it");
      else if (c.peek() === ")") c.fail("expecting an index register or scale factor after ','");
      if (c.eat(",") && c.peek() !== ")") {
        const p = c.pos;
        const e = parseExpr(c, locals);
        if (e.t !== "num" || ![1n, 2n, 4n, 8n].includes(e.v)) {
          c.fail("scale factor must be 1, 2, 4 or 8", p);
        }
        scale = Number(e.v);
      }
    }
    if (!c.eat(")")) c.fail(`expected ')' but found '${c.token()}'`);
    for (const r of [base, index]) {
      if (r && r.cls === "sreg") c.fail(`'%${r.name}' cannot address memory`);
    }
  }
  return { k: "mem", seg, disp, base, index, scale, star, col };
}

function readReg(c: Cursor): RegInfo {
  c.ws();
  const p = c.pos;
  c.pos++; // '%'
  const m = /^[A-Za-z0-9]+/.exec(c.s.slice(c.pos));
  const name = m ? m[0] : "";
  const r = lookupReg(name);
  if (!r) c.fail(`unknown register '%${name}'`, p);
  c.pos += name.length;
  return r;
}

/** A statement: the text between `;`/newline separators, with its position. */
export interface RawStmt {
  /** Statement text with comments blanked out. */
  text: string;
  /** 1-based line. */
  line: number;
  /** 1-based column of text[0]. */
  col: number;
}

/**
 * Splits source into statements: removes `#` and `/* *\/` comments (keeping columns),
 * splits lines and `;`, respects quotes.
 */
export function splitStatements(source: string): RawStmt[] {
  const out: RawStmt[] = [];
  const lines = source.split(/\r?\n/);
  let inBlock = false;
  let blockLine = 0, blockCol = 0;
  for (let li = 0; li < lines.length; li++) {
    const src = lines[li]!;
    let cur = "";
    let start = 0;
    let quote = "";
    for (let i = 0; i < src.length; i++) {
      const ch = src[i]!;
      if (inBlock) {
        if (ch === "*" && src[i + 1] === "/") {
          inBlock = false;
          cur += "  ";
          i++;
        } else cur += " ";
        continue;
      }
      if (quote) {
        cur += ch;
        if (ch === "\\" && i + 1 < src.length) {
          cur += src[++i];
        } else if (ch === quote) quote = "";
        continue;
      }
      if (ch === '"') {
        quote = ch;
        cur += ch;
        continue;
      }
      if (ch === "'") {
        // character constant 'c: keep next char literally
        cur += ch;
        if (i + 1 < src.length) {
          if (src[i + 1] === "\\" && i + 2 < src.length) {
            cur += src[i + 1]! + src[i + 2]!;
            i += 2;
          } else {
            cur += src[i + 1];
            i++;
          }
          if (src[i + 1] === "'") {
            cur += "'";
            i++;
          }
        }
        continue;
      }
      if (ch === "/" && src[i + 1] === "*") {
        inBlock = true;
        blockLine = li + 1;
        blockCol = i + 1;
        cur += "  ";
        i++;
        continue;
      }
      if (ch === "#") break;
      if (ch === ";") {
        out.push({ text: cur, line: li + 1, col: start + 1 });
        cur = "";
        start = i + 1;
        continue;
      }
      cur += ch;
    }
    out.push({ text: cur, line: li + 1, col: start + 1 });
  }
  if (inBlock) throw new AssemblerError("unterminated '/*' comment", blockLine, blockCol);
  return out.filter((s) => s.text.trim() !== "");
}

/**
 * Expands `.rept N` / `.endr` (nested) over the statement list. N is evaluated by
 * `count`, which sees only constants and table symbols.
 */
export function expandRept(
  stmts: RawStmt[],
  count: (c: Cursor) => number,
): RawStmt[] {
  let i = 0;
  const walk = (depth: number, opener: RawStmt | undefined): RawStmt[] => {
    const out: RawStmt[] = [];
    while (i < stmts.length) {
      const s = stmts[i]!;
      const m = /^(\s*)(\.rept|\.endr)\b/i.exec(s.text);
      if (m) {
        const dir = m[2]!.toLowerCase();
        const dcol = s.col + m[1]!.length;
        if (dir === ".endr") {
          if (depth === 0) {
            throw new AssemblerError("'.endr' without a matching '.rept'", s.line, dcol);
          }
          i++;
          return out;
        }
        const c = new Cursor(s.text, s.line, s.col);
        c.pos = m[0].length;
        const n = count(c);
        if (!c.done()) c.fail(`unexpected '${c.token()}' after the .rept count`);
        i++;
        const body = walk(depth + 1, { ...s, col: dcol });
        for (let k = 0; k < n; k++) out.push(...body);
        continue;
      }
      out.push(s);
      i++;
    }
    if (depth > 0 && opener) {
      throw new AssemblerError(
        "unterminated '.rept': no matching '.endr'",
        opener.line,
        opener.col,
      );
    }
    return out;
  };
  return walk(0, undefined);
}
