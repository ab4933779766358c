/**
 * The corpus file format: one case per file under `tests/corpus/`, replayed by
 * `tests/corpus_test.ts`.
 *
 * ```text
 * # what it broke (one or more comment lines; the first one is the test's name)
 * kind: asm | exec | decode
 * key: value            (headers, see below)
 * status: open          (optional: a known, unfixed bug; the replay is ignored loudly)
 * ---
 * body                  (asm: the text; exec and decode: hex bytes)
 * ```
 *
 * asm headers: `bitness`, `origin` (hex), `symbols` (`name=hex ...`), `expect` (`error`:
 * must be an AssemblerError with a line and column; `check` (default): {@link checkAsm}
 * must find nothing). exec headers: every field of {@link ExecCase}. decode headers:
 * `bitness`.
 *
 * @module
 */

import type { AsmCase } from "./asm_fuzz.ts";
import type { ExecCase, IdtMode } from "./exec_fuzz.ts";
import type { FetchMode } from "../../lib/machine/smp.ts";
import { hexBytes } from "../../lib/errors.ts";

/** A parsed corpus file. */
export interface CorpusEntry {
  /** File name. */
  file: string;
  /** The comment lines, without `#`. */
  comment: string[];
  /** `asm`, `exec` or `decode`. */
  kind: string;
  /** Header values. */
  headers: Map<string, string>;
  /** The body after `---`. */
  body: string;
  /** True when the bug is known and not fixed yet. */
  open: boolean;
}

/**
 * Parses a corpus file.
 *
 * @param file Its name (for messages).
 * @param text Its contents.
 * @returns The entry.
 */
export function parseCorpus(file: string, text: string): CorpusEntry {
  const lines = text.split("\n");
  const comment: string[] = [];
  const headers = new Map<string, string>();
  let i = 0;
  for (; i < lines.length; i++) {
    const l = lines[i]!;
    if (l === "---") break;
    if (l.startsWith("#")) comment.push(l.slice(1).trim());
    else if (l.trim() !== "") {
      const m = /^([a-z]+):\s*(.*)$/.exec(l);
      if (m === null) throw new Error(`${file}:${i + 1}: not a header: ${l}`);
      headers.set(m[1]!, m[2]!);
    }
  }
  if (i === lines.length) throw new Error(`${file}: no '---' line`);
  if (comment.length === 0) throw new Error(`${file}: no comment saying what it broke`);
  const body = lines.slice(i + 1).join("\n");
  return {
    file,
    comment,
    kind: headers.get("kind") ?? "",
    headers,
    body: body.endsWith("\n") ? body.slice(0, -1) : body,
    open: headers.get("status") === "open",
  };
}

function need(e: CorpusEntry, key: string): string {
  const v = e.headers.get(key);
  if (v === undefined) throw new Error(`${e.file}: missing header ${key}`);
  return v;
}

/**
 * Parses hex bytes (`0f 0b`, any whitespace).
 *
 * @param s The text.
 * @returns The bytes.
 */
export function parseHex(s: string): Uint8Array {
  const parts = s.split(/\s+/).filter((p) => p !== "");
  return Uint8Array.from(parts.map((p) => {
    const v = parseInt(p, 16);
    if (!/^[0-9a-f]{2}$/i.test(p)) throw new Error(`bad hex byte ${p}`);
    return v;
  }));
}

function bitnessOf(e: CorpusEntry): 32 | 64 {
  const b = need(e, "bitness");
  if (b !== "32" && b !== "64") throw new Error(`${e.file}: bitness ${b}`);
  return b === "32" ? 32 : 64;
}

/**
 * The assembler case of an `asm` entry.
 *
 * @param e The entry.
 * @returns The case.
 */
export function asmCaseOf(e: CorpusEntry): AsmCase {
  const symbols = new Map<string, bigint>();
  for (const pair of (e.headers.get("symbols") ?? "").split(/\s+/).filter((p) => p)) {
    const [k, v] = pair.split("=");
    symbols.set(k!, BigInt(v!));
  }
  return {
    bitness: bitnessOf(e),
    origin: BigInt(e.headers.get("origin") ?? "0"),
    text: e.body,
    symbols,
  };
}

/**
 * The exec case of an `exec` entry.
 *
 * @param e The entry.
 * @returns The case.
 */
export function execCaseOf(e: CorpusEntry): ExecCase {
  const list = (k: string) => (e.headers.get(k) ?? "").split(/\s+/).filter((p) => p !== "");
  return {
    bitness: bitnessOf(e),
    cpl: need(e, "cpl") === "3" ? 3 : 0,
    idt: need(e, "idt") as IdtMode,
    bytes: parseHex(e.body),
    entry: Number(e.headers.get("entry") ?? "0"),
    regs: list("regs").map((r) => BigInt(r)),
    flags: Number(e.headers.get("flags") ?? "2"),
    writableCode: e.headers.get("writable") === "true",
    extraGates: list("gates").map((g) => g.split("/").map(Number) as [number, number]),
    irqs: list("irqs").map(Number),
    cpus: Number(e.headers.get("cpus") ?? "1"),
    scheduleSeed: Number(e.headers.get("schedule") ?? "0"),
    fetch: (e.headers.get("fetch") ?? "coherent") as FetchMode,
    maxSteps: Number(e.headers.get("steps") ?? "2000"),
  };
}

/**
 * Writes an exec case as a corpus file.
 *
 * @param c The case.
 * @param what What it broke (the comment line).
 * @returns The file text.
 */
export function execCaseText(c: ExecCase, what: string): string {
  const hex = (v: bigint | number) => "0x" + v.toString(16);
  return [
    `# ${what}`,
    "kind: exec",
    `bitness: ${c.bitness}`,
    `cpl: ${c.cpl}`,
    `idt: ${c.idt}`,
    `entry: ${c.entry}`,
    `regs: ${c.regs.map(hex).join(" ")}`,
    `flags: ${hex(c.flags)}`,
    `writable: ${c.writableCode}`,
    `gates: ${c.extraGates.map(([v, d]) => `${v}/${d}`).join(" ")}`,
    `irqs: ${c.irqs.join(" ")}`,
    `cpus: ${c.cpus}`,
    `schedule: ${c.scheduleSeed}`,
    `fetch: ${c.fetch}`,
    `steps: ${c.maxSteps}`,
    "---",
    hexBytes(c.bytes).replace(/((?:[0-9a-f]{2} ){31}[0-9a-f]{2}) /g, "$1\n"),
    "",
  ].join("\n");
}

/**
 * Writes an assembler case as a corpus file.
 *
 * @param c The case.
 * @param what What it broke.
 * @returns The file text.
 */
export function asmCaseText(c: AsmCase, what: string): string {
  const syms = [...c.symbols].map(([k, v]) => `${k}=0x${v.toString(16)}`).join(" ");
  return [
    `# ${what.replace(/\n/g, " ")}`,
    "kind: asm",
    `bitness: ${c.bitness}`,
    `origin: 0x${c.origin.toString(16)}`,
    ...(syms ? [`symbols: ${syms}`] : []),
    "---",
    c.text,
    "",
  ].join("\n");
}
