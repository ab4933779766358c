/**
 * Builds tests/oracle/harness.c with gcc (64-bit, or 32-bit with -m32) and runs batches of
 * cases on the host CPU. Also formats mismatches for failure messages.
 *
 * @module
 */

import { Decoder, DecoderOptions, Formatter, FormatterSyntax } from "iced-x86";
import { ARITH } from "../../lib/x86/flags.ts";
import { type Case, caseCode, decodeResults, encodeCases, type HostResult } from "./cases.ts";

const HARNESS_C = new URL("./harness.c", import.meta.url).pathname;

/** A built harness, or the reason it could not be built. */
export type Harness = { path: string; dir: string } | { skip: string };

/** Compiles the harness for `bits` (64 or 32) into a fresh temp dir. */
export async function buildHarness(bits: number): Promise<Harness> {
  const dir = await Deno.makeTempDir({ prefix: `textpoke_oracle${bits}_` });
  const path = `${dir}/harness${bits}`;
  const args = ["-O2", "-no-pie", "-w", "-o", path, HARNESS_C];
  if (bits === 32) args.unshift("-m32");
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command("gcc", { args, stdout: "piped", stderr: "piped" }).output();
  } catch {
    return { skip: "gcc is missing" };
  }
  if (!out.success) {
    const err = new TextDecoder().decode(out.stderr).split("\n").slice(0, 3).join(" ");
    return {
      skip: bits === 32
        ? `gcc -m32 is missing (install gcc-multilib): ${err}`
        : `gcc failed: ${err}`,
    };
  }
  return { path, dir };
}

/** Runs `cases` on the host CPU through the harness at `path`. */
export async function runHost(path: string, dir: string, cases: Case[]): Promise<HostResult[]> {
  const inPath = `${dir}/in.bin`;
  const outPath = `${dir}/out.bin`;
  await Deno.writeFile(inPath, encodeCases(cases));
  const out = await new Deno.Command(path, {
    args: [inPath, outPath],
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  if (!out.success) {
    throw new Error(`harness failed (${out.code}): ${new TextDecoder().decode(out.stderr)}`);
  }
  return decodeResults(await Deno.readFile(outPath), cases.length);
}

/** Disassembles a case's code with iced-x86 (AT&T-free Intel syntax). */
export function disassemble(bytes: Uint8Array, bits: number): string {
  try {
    const dec = new Decoder(bits, bytes, DecoderOptions.None);
    const fmt = new Formatter(FormatterSyntax.Intel);
    const lines: string[] = [];
    for (const ins of dec.decodeAll()) {
      lines.push(fmt.format(ins));
      ins.free();
    }
    fmt.free();
    dec.free();
    return lines.join("; ");
  } catch (e) {
    return `(no disassembly: ${e})`;
  }
}

/** Register names (index = Reg number). */
export const REG_NAMES = [
  "rax",
  "rcx",
  "rdx",
  "rbx",
  "rsp",
  "rbp",
  "rsi",
  "rdi",
  "r8",
  "r9",
  "r10",
  "r11",
  "r12",
  "r13",
  "r14",
  "r15",
];

const FLAG_NAMES: [number, string][] = [
  [0x1, "CF"],
  [0x4, "PF"],
  [0x10, "AF"],
  [0x40, "ZF"],
  [0x80, "SF"],
  [0x800, "OF"],
];

/** Names of the flags in `mask`. */
export function flagNames(mask: number): string {
  return FLAG_NAMES.filter(([b]) => mask & b).map(([, n]) => n).join(",") || "-";
}

function hex64(v: bigint, bits: number): string {
  return "0x" + v.toString(16).padStart(bits / 4, "0");
}

/** What an emulator-side run produced, for comparison with the host. */
export interface EmuResult {
  regs: bigint[];
  flags: number;
  status: number;
}

/**
 * Compares an emulator result with the host's; returns null when they agree, else a
 * multi-line report. `flagMask` is the set of arithmetic flags to compare.
 */
export function compare(
  bits: number,
  c: Case,
  host: HostResult,
  emu: EmuResult,
  flagMask: number,
  header: string,
): string | null {
  const diffs: string[] = [];
  if (host.status !== emu.status) diffs.push(`status host=${host.status} emu=${emu.status}`);
  const n = bits === 64 ? 16 : 8;
  const m = bits === 64 ? (1n << 64n) - 1n : 0xffffffffn;
  for (let r = 0; r < n; r++) {
    if (r === 4) continue;
    const h = host.regs[r]! & m;
    const e = emu.regs[r]! & m;
    if (h !== e) diffs.push(`${REG_NAMES[r]} host=${hex64(h, bits)} emu=${hex64(e, bits)}`);
  }
  const fd = (host.flags ^ emu.flags) & flagMask & ARITH;
  if (fd) {
    diffs.push(
      `flags differ in ${flagNames(fd)}: host=${flagNames(host.flags & ARITH)} emu=${
        flagNames(emu.flags & ARITH)
      } (compared ${flagNames(flagMask)})`,
    );
  }
  if (diffs.length === 0) return null;
  const code = caseCode(c);
  const lines = [
    header,
    `  bytes: ${[...code].map((b) => b.toString(16).padStart(2, "0")).join(" ")}`,
    `  asm:   ${disassemble(code, bits)}`,
    `  flags in: ${flagNames(c.flags & ARITH)} (0x${c.flags.toString(16)})`,
    `  regs in:  ${
      c.regs.slice(0, n).map((v, i) => i === 4 ? "" : `${REG_NAMES[i]}=${hex64(v & m, bits)}`)
        .filter((x) => x).join(" ")
    }`,
    ...diffs.map((d) => "  " + d),
  ];
  return lines.join("\n");
}
