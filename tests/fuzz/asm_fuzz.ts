/**
 * Assembler fuzzing: AT&T text made by mutating real sources (the assembler corpus, the
 * kernel's int3/NMI entry stubs, the ftrace and static_call trampolines) or from scratch.
 * {@link checkAsm} demands one of two outcomes: an {@link AssemblerError} with a line and
 * column inside the text, or bytes whose every instruction decodes in iced-x86 to exactly
 * the bytes the statement produced and whose iced GAS text reassembles to the same bytes.
 *
 * @module
 */

import { Decoder, DecoderOptions, type Formatter } from "iced-x86";
import { gasFormatter } from "../../lib/x86/disassemble.ts";
import { assemble } from "../../lib/x86/assemble.ts";
import { AssemblerError, hexBytes } from "../../lib/errors.ts";
import { int3EntrySource, nmiEntrySource } from "../../lib/kernel/entry.ts";
import { ftraceCallerSource, ftraceStubsSource } from "../../lib/ftrace/trampolines.ts";
import { trampolineSource } from "../../lib/static_call/static_call.ts";
import { corpus } from "../_assemble_corpus.ts";
import { describeError } from "./exec_fuzz.ts";
import type { Rng } from "./prng.ts";

/** One assembler fuzz case. */
export interface AsmCase {
  /** Mode to assemble in. */
  bitness: 32 | 64;
  /** Origin. */
  origin: bigint;
  /** The text. */
  text: string;
  /** Absolute symbols it may use. */
  symbols: Map<string, bigint>;
}

/** A real source to mutate. */
interface Seed {
  name: string;
  bitness: 32 | 64;
  text: string;
  symbols: Map<string, bigint>;
}

/**
 * Assigns an address to every undefined symbol of `text` (assembling repeatedly), so a
 * real source assembles stand-alone.
 */
function resolveSymbols(
  text: string,
  bitness: 32 | 64,
  base: Map<string, bigint>,
): Map<string, bigint> {
  const symbols = new Map(base);
  let next = bitness === 64 ? 0xffffffff81200000n : 0xc1200000n;
  for (let i = 0; i < 200; i++) {
    try {
      assemble(text, { bitness, origin: originOf(bitness), symbols });
      return symbols;
    } catch (e) {
      const m = e instanceof AssemblerError ? /undefined symbol '([^']+)'/.exec(e.message) : null;
      if (m === null) throw e;
      symbols.set(m[1]!, next);
      next += 0x40n;
    }
  }
  return symbols;
}

function originOf(bitness: 32 | 64): bigint {
  return bitness === 64 ? 0xffffffff81001000n : 0xc1001000n;
}

let seedsCache: Seed[] | null = null;

/**
 * The real sources the mutator starts from (built once).
 *
 * @returns Name, mode, text and symbols of each.
 */
export function seedSources(): Seed[] {
  if (seedsCache !== null) return seedsCache;
  const out: Seed[] = [];
  for (const bits of [64, 32] as const) {
    const lines = corpus(bits);
    for (let i = 0; i < lines.length; i += 24) {
      out.push({
        name: `corpus${bits}:${i}`,
        bitness: bits,
        text: lines.slice(i, i + 24).join("\n"),
        symbols: new Map(),
      });
    }
  }
  for (const v of ["64-nogap", "64-gap", "32-plain", "32-seed", "32-fixup"] as const) {
    const s = int3EntrySource(v);
    out.push({
      name: `entry ${v}`,
      bitness: s.bitness,
      text: s.text,
      symbols: resolveSymbols(s.text, s.bitness, new Map(s.symbols)),
    });
  }
  for (const bits of [64, 32] as const) {
    const nmi = nmiEntrySource(bits);
    out.push({
      name: `nmi ${bits}`,
      bitness: bits,
      text: nmi.text,
      symbols: resolveSymbols(nmi.text, bits, new Map(nmi.symbols)),
    });
    for (const regs of [false, true]) {
      const text = ftraceCallerSource({
        bitness: bits,
        name: regs ? "ftrace_regs_caller" : "ftrace_caller",
        callLabel: regs ? "ftrace_regs_call" : "ftrace_call",
        regs,
        ops: { variable: "function_trace_op" },
      });
      out.push({
        name: `ftrace ${bits} regs=${regs}`,
        bitness: bits,
        text,
        symbols: resolveSymbols(text, bits, new Map()),
      });
    }
    const stubs = ftraceStubsSource();
    out.push({
      name: `ftrace stubs ${bits}`,
      bitness: bits,
      text: stubs,
      symbols: resolveSymbols(stubs, bits, new Map()),
    });
    const sc = trampolineSource("fuzz_key", 0);
    out.push({
      name: `static_call ${bits}`,
      bitness: bits,
      text: sc,
      symbols: resolveSymbols(sc, bits, new Map()),
    });
  }
  seedsCache = out;
  return out;
}

const REGS = [
  "%rax",
  "%eax",
  "%ax",
  "%al",
  "%ah",
  "%r8",
  "%r8d",
  "%r8w",
  "%r8b",
  "%rsp",
  "%esp",
  "%sp",
  "%spl",
  "%rbp",
  "%r13",
  "%r12d",
  "%rip",
  "%eip",
  "%cs",
  "%ss",
  "%ds",
  "%fs",
  "%gs",
  "%cr0",
  "%cr3",
  "%dr7",
  "%xmm0",
  "%st",
  "%st(1)",
  "%mm0",
  "%k1",
  "%ymm3",
  "%r15b",
  "%sil",
  "%dil",
];
const NUMBERS = [
  "0",
  "1",
  "-1",
  "0x7f",
  "0x80",
  "-0x80",
  "-0x81",
  "0xff",
  "0x100",
  "0x7fff",
  "0x8000",
  "0xffff",
  "0x10000",
  "0x7fffffff",
  "0x80000000",
  "-0x80000000",
  "-0x80000001",
  "0xffffffff",
  "0x100000000",
  "0x7fffffffffffffff",
  "0x8000000000000000",
  "0xffffffffffffffff",
  "0x10000000000000000",
  "-0x8000000000000001",
  "1<<63",
  "1<<64",
  "1<<-1",
  "~0",
  "08",
  "0b101",
  "0b2",
  "'a",
  "1f",
  "1b",
  "2f",
  ".",
  ".-1",
  "(1)",
  "((((1))))",
  "1/0",
  "1%0",
  "-(-0x80000000)",
];
const TOKENS = [
  "$",
  "(",
  ")",
  ",",
  "*",
  ":",
  ";",
  "\n",
  "#",
  "/*",
  "*/",
  "'",
  '"',
  ".",
  "-",
  "+",
  "%",
  "(,",
  ",,",
  "(%rax,%rbx,3)",
  "(%eax,%esp,2)",
  "(,%rcx,8)",
  "0(%rip)",
  "lock ",
  "rep ",
  "repne ",
  "data16 ",
  "addr32 ",
  "rex.w ",
  "{vex} ",
  ".byte 0x90",
  ".rept 3",
  ".endr",
  ".align 16",
  ".balign 7",
  ".p2align 33",
  ".set x, 1",
  ".equ y, x+1",
  "z = 3",
  ".skip 2",
  ".skip -1",
  ".quad",
  ".long 1,",
  ".word 0x10000",
  '.ascii "x"',
  '.string "\\"',
  ".globl a",
  ".section .text",
  ".fill 2, 3, 4",
  "1:",
  "1:\n",
  "a:",
  "a:a:",
  "jmp",
  "call",
  "ret",
  "int3",
  "iretq",
  "movq",
  "movl",
  "movb",
  "movabs",
  "lea",
  "push",
  "pop",
  "xchg",
  "cmpxchg8b",
  "nopw",
  "nopl",
  "jmp *",
  "call *",
  "ljmp",
  "lcall",
  "hlt",
  "\t",
  "  ",
  "\u00e9",
  "\u0000",
  "\\",
];
const ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789%$(),*:;.-+#'\"\n\t _<>|&^~!=/\\[]{}@";

function mutateOnce(rng: Rng, text: string): string {
  const at = text.length === 0 ? 0 : rng.int(text.length + 1);
  switch (rng.int(11)) {
    case 0: // delete a run of characters
      return text.slice(0, at) + text.slice(at + 1 + rng.int(4));
    case 1: // insert a character
      return text.slice(0, at) + ALPHABET[rng.int(ALPHABET.length)] + text.slice(at);
    case 2:
    case 3: // insert a token
      return text.slice(0, at) + rng.pick(TOKENS) + text.slice(at);
    case 4: { // replace a number
      const nums = [...text.matchAll(/-?(?:0x[0-9a-f]+|\d+)/gi)];
      if (nums.length === 0) return text + rng.pick(NUMBERS);
      const m = rng.pick(nums);
      return text.slice(0, m.index) + rng.pick(NUMBERS) + text.slice(m.index! + m[0].length);
    }
    case 5: { // replace a register
      const regs = [...text.matchAll(/%[a-z0-9]+/g)];
      if (regs.length === 0) return text.slice(0, at) + rng.pick(REGS) + text.slice(at);
      const m = rng.pick(regs);
      return text.slice(0, m.index) + rng.pick(REGS) + text.slice(m.index! + m[0].length);
    }
    case 6: { // change or drop a size suffix
      const words = [...text.matchAll(/\b([a-z]{2,6})([bwlq])\b/g)];
      if (words.length === 0) return text;
      const m = rng.pick(words);
      const suffix = rng.pick(["", "b", "w", "l", "q", "bl", "x"]);
      return text.slice(0, m.index) + m[1] + suffix + text.slice(m.index! + m[0].length);
    }
    case 7: { // duplicate, drop or swap lines
      const lines = text.split("\n");
      const i = rng.int(lines.length), j = rng.int(lines.length);
      const r = rng.int(3);
      if (r === 0) lines.splice(i, 0, lines[j]!);
      else if (r === 1) lines.splice(i, 1);
      else [lines[i], lines[j]] = [lines[j]!, lines[i]!];
      return lines.join("\n");
    }
    case 8: // replace a character
      return text.slice(0, at) + ALPHABET[rng.int(ALPHABET.length)] + text.slice(at + 1);
    case 9: { // swap two operands of a line
      const lines = text.split("\n");
      const i = rng.int(lines.length);
      const parts = lines[i]!.split(",");
      if (parts.length >= 2) {
        const a = parts[0]!, b = parts[parts.length - 1]!;
        const mnem = /^(\s*\S+\s+)(.*)$/.exec(a);
        if (mnem) {
          parts[0] = mnem[1] + b.trim();
          parts[parts.length - 1] = " " + mnem[2];
        }
      }
      lines[i] = parts.join(",");
      return lines.join("\n");
    }
    default: // splice a random corpus line in
      return text.slice(0, at) + "\n" + rng.pick(corpus(rng.chance(0.5) ? 64 : 32)) + "\n" +
        text.slice(at);
  }
}

/**
 * Makes the case of a seed: a real source (or a few corpus lines) with 0–5 mutations,
 * assembled in its own mode most of the time.
 *
 * @param rng The generator.
 * @returns The case.
 */
export function generateAsmCase(rng: Rng): AsmCase {
  const seeds = seedSources();
  let s: Seed;
  let text: string;
  if (rng.chance(0.6)) {
    const bits = rng.chance(0.5) ? 64 : 32;
    const lines = corpus(bits);
    const n = 1 + rng.int(6);
    const picked: string[] = [];
    for (let i = 0; i < n; i++) picked.push(rng.pick(lines));
    s = { name: "corpus", bitness: bits, text: "", symbols: new Map() };
    text = picked.join("\n");
  } else {
    s = rng.pick(seeds);
    text = s.text;
  }
  const k = rng.chance(0.15) ? 0 : rng.chance(0.6) ? 1 : 2 + rng.int(4);
  for (let i = 0; i < k; i++) text = mutateOnce(rng, text);
  const bitness = rng.chance(0.9) ? s.bitness : s.bitness === 64 ? 32 : 64;
  const origin = rng.chance(0.5) ? originOf(bitness) : BigInt(rng.int(0x10000));
  return { bitness, origin, text, symbols: s.symbols };
}

let decoders: Map<number, { formatter: Formatter }> | null = null;

function formatter(): Formatter {
  decoders ??= new Map();
  let f = decoders.get(0);
  if (f === undefined) {
    f = { formatter: gasFormatter(true) };
    decoders.set(0, f);
  }
  return f.formatter;
}

/** The outcome of {@link checkAsm}. */
export interface AsmCheck {
  /** `"error"` (a typed error), `"bytes"` (accepted) or `"bug"`. */
  result: "error" | "bytes" | "bug";
  /** Bytes assembled, when accepted. */
  length: number;
  /** Broken properties. */
  problems: string[];
}

/**
 * Assembles a case and checks the outcome (see the module doc).
 *
 * @param c The case.
 * @returns What happened and what is wrong.
 */
export function checkAsm(c: AsmCase): AsmCheck {
  const problems: string[] = [];
  let out: ReturnType<typeof assemble>;
  try {
    out = assemble(c.text, { bitness: c.bitness, origin: c.origin, symbols: c.symbols });
  } catch (e) {
    if (!(e instanceof AssemblerError)) {
      problems.push(`not an AssemblerError: ${describeError(e)}`);
      return { result: "bug", length: 0, problems };
    }
    if (/internal/i.test(e.message)) problems.push(`host exception behind: ${e.message}`);
    const lines = c.text.split("\n");
    if (!Number.isInteger(e.line) || e.line < 1 || e.line > lines.length) {
      problems.push(`line ${e.line} outside 1..${lines.length}: ${e.message}`);
    } else {
      const width = lines[e.line - 1]!.length;
      if (!Number.isInteger(e.column) || e.column < 1 || e.column > width + 1) {
        problems.push(`column ${e.column} outside 1..${width + 1} of line ${e.line}: ${e.message}`);
      }
    }
    return { result: problems.length ? "bug" : "error", length: 0, problems };
  }
  // Same text, same bytes.
  try {
    const again = assemble(c.text, { bitness: c.bitness, origin: c.origin, symbols: c.symbols });
    if (hexBytes(again.bytes) !== hexBytes(out.bytes)) problems.push("not deterministic");
  } catch (e) {
    problems.push(`second assembly threw: ${describeError(e)}`);
  }
  roundTrip(c, out, problems);
  return { result: problems.length ? "bug" : "bytes", length: out.bytes.length, problems };
}

function sameBranch(bitness: 32 | 64, ip: bigint, bytes: Uint8Array, gas: string): boolean {
  const d = new Decoder(bitness, bytes, DecoderOptions.None);
  try {
    d.ip = ip;
    const ins = d.decode();
    try {
      const branch = ins.isJccShortOrNear || ins.isJmpShortOrNear;
      return branch && ins.length === bytes.length && formatter().format(ins) === gas;
    } finally {
      ins.free();
    }
  } finally {
    d.free();
  }
}

const PREFIX_ONLY = /^(lock|rep|repe|repz|repne|repnz|data16|data32|addr16|addr32|rex[.a-z]*)$/;

function roundTrip(c: AsmCase, out: ReturnType<typeof assemble>, problems: string[]): void {
  const fm = formatter();
  let i = 0;
  for (const rec of out.lines) {
    const start = Number(rec.address - out.origin);
    const chunk = out.bytes.subarray(start, start + rec.length);
    i = start + rec.length;
    const text = rec.text.replace(/^(?:[A-Za-z_.$0-9]+:\s*)+/, "").trim();
    if (text.startsWith(".") || PREFIX_ONLY.test(text) || text === "") continue;
    const decoder = new Decoder(c.bitness, chunk, DecoderOptions.None);
    try {
      decoder.ip = rec.address;
      let off = 0;
      while (off < chunk.length) {
        const ins = decoder.decode();
        try {
          const len = ins.length;
          const bytes = chunk.subarray(off, off + len);
          if (ins.isInvalid) {
            problems.push(`"${rec.text}" gave ${hexBytes(chunk)}, invalid for iced-x86`);
            return;
          }
          const gas = fm.format(ins);
          let again: Uint8Array;
          try {
            again = assemble(gas, {
              bitness: c.bitness,
              origin: ins.ip,
            }).bytes;
          } catch (e) {
            problems.push(
              `"${rec.text}" gave ${hexBytes(bytes)} = "${gas}", which does not reassemble: ${
                String(e)
              }`,
            );
            return;
          }
          // GAS (and ours) encode a branch to a literal address as rel32: the same
          // instruction as iced's rel8 reading, so compare those by their text.
          if (hexBytes(again) !== hexBytes(bytes) && !sameBranch(c.bitness, ins.ip, again, gas)) {
            problems.push(
              `"${rec.text}" gave ${hexBytes(bytes)} = "${gas}", which reassembles to ${
                hexBytes(again)
              }`,
            );
            return;
          }
          off += len;
        } finally {
          ins.free();
        }
      }
    } finally {
      decoder.free();
    }
  }
  void i;
}
