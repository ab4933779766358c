/**
 * Disassembly to GNU-as (AT&T) text through iced-x86's formatter, with symbol names for
 * known branch targets and immediates, and an objdump-like listing.
 *
 * @module
 */

import { Decoder, DecoderOptions, Formatter, FormatterSyntax } from "iced-x86";
import { hexBytes } from "../errors.ts";

/** Options of {@link disassemble}. */
export interface DisassembleOptions {
  /** 32-bit protected mode or 64-bit long mode. */
  bitness: 32 | 64;
  /** Address of `bytes[0]` (default 0). */
  origin?: bigint;
  /** Names of known addresses: address → name, or name → address. */
  symbols?: Map<bigint, string> | Record<string, bigint>;
}

/** One disassembled instruction. */
export interface DisassembledLine {
  /** Address of the instruction. */
  address: bigint;
  /** Its bytes (a copy). */
  bytes: Uint8Array;
  /** AT&T text, e.g. `call 0xffffffff81000000 <do_int3>`; `(bad)` for invalid bytes. */
  text: string;
  /** Name of a symbol at this address, when one is known. */
  label?: string;
}

/**
 * iced-x86's GAS formatter as {@link disassemble} sets it up (the caller frees it): hex
 * everywhere (iced's "small numbers in decimal" looks at the low 32 bits only and prints
 * `movabs $0x8000000000000000` as `$0`), no branch size, RIP-relative operands as
 * addresses. The assembler's round-trip tests format with it too.
 *
 * @param showUselessPrefixes Also print prefixes the instruction ignores (`data16 ret`),
 *   so that the text reassembles to the same bytes.
 * @returns A new formatter.
 */
export function gasFormatter(showUselessPrefixes = false): Formatter {
  const formatter = new Formatter(FormatterSyntax.Gas);
  formatter.showBranchSize = false;
  formatter.spaceAfterOperandSeparator = false;
  formatter.smallHexNumbersInDecimal = false;
  formatter.uppercaseHex = false;
  formatter.branchLeadingZeros = false;
  formatter.ripRelativeAddresses = true;
  formatter.showUselessPrefixes = showUselessPrefixes;
  return formatter;
}

/**
 * Disassembles machine code into AT&T text (iced-x86, GAS syntax). Branch targets and
 * immediates (above 0xffff) equal to a known symbol's address get ` <name>` appended, as objdump does.
 *
 * @param bytes The machine code.
 * @param options Bitness, origin and symbol names.
 * @returns One line per instruction, in address order.
 *
 * @example Disassemble a call
 * ```ts
 * import { disassemble } from "./disassemble.ts";
 * const lines = disassemble(new Uint8Array([0xe8, 0, 0, 0, 0]), {
 *   bitness: 64,
 *   symbols: { next: 5n },
 * });
 * if (lines[0]!.text !== "call 0x5 <next>") throw new Error(lines[0]!.text);
 * ```
 */
export function disassemble(bytes: Uint8Array, options: DisassembleOptions): DisassembledLine[] {
  const origin = options.origin ?? 0n;
  const names = new Map<bigint, string>();
  const syms = options.symbols;
  if (syms instanceof Map) { for (const [a, n] of syms) names.set(BigInt.asUintN(64, a), n); }
  else if (syms) {
    for (const [n, a] of Object.entries(syms)) names.set(BigInt.asUintN(64, BigInt(a)), n);
  }
  const decoder = new Decoder(options.bitness, bytes, DecoderOptions.None);
  const formatter = gasFormatter();
  const out: DisassembledLine[] = [];
  try {
    decoder.ip = origin;
    let off = 0;
    while (decoder.canDecode) {
      const ins = decoder.decode();
      try {
        const len = ins.length;
        const address = ins.ip;
        let text: string;
        if (ins.isInvalid) text = "(bad)";
        else {
          text = formatter.format(ins);
          // objdump-style symbol annotation for a direct branch target or an immediate.
          let target: bigint | undefined;
          if (ins.isJmpShortOrNear || ins.isJccShortOrNear || ins.isCallNear) {
            target = ins.nearBranchTarget;
          } else {
            const m = /\$0x([0-9a-f]+)/.exec(text);
            // Small immediates are counts and offsets, not addresses.
            if (m && m[1]!.length > 4) target = BigInt("0x" + m[1]);
          }
          const name = target !== undefined ? names.get(BigInt.asUintN(64, target)) : undefined;
          if (name !== undefined) text += ` <${name}>`;
        }
        const line: DisassembledLine = { address, bytes: bytes.slice(off, off + len), text };
        const here = names.get(BigInt.asUintN(64, address));
        if (here !== undefined) line.label = here;
        out.push(line);
        off += len;
      } finally {
        ins.free();
      }
    }
  } finally {
    decoder.free();
    formatter.free();
  }
  return out;
}

/**
 * Formats disassembled lines as an objdump-like listing: a `<label>:` header where a
 * symbol starts, then `address:  bytes  text`.
 *
 * @param lines Lines from {@link disassemble}.
 * @returns The listing, one instruction per line, ending with a newline.
 *
 * @example
 * ```ts
 * import { disassemble, formatListing } from "./disassemble.ts";
 * const text = formatListing(disassemble(new Uint8Array([0xcc]), { bitness: 64 }));
 * if (!text.includes("int3")) throw new Error(text);
 * ```
 */
export function formatListing(lines: DisassembledLine[]): string {
  let s = "";
  for (const l of lines) {
    if (l.label !== undefined) s += `\n${l.address.toString(16).padStart(16, "0")} <${l.label}>:\n`;
    s += `${l.address.toString(16).padStart(8, " ")}:\t${
      hexBytes(l.bytes).padEnd(21, " ")
    }\t${l.text}\n`;
  }
  return s;
}
