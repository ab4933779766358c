/**
 * System.map: one symbol a line, `ffffffff81000000 T _text` (address, nm type letter,
 * name).
 *
 * @module
 */

import { ImageError } from "../errors.ts";

/** One System.map line. */
export interface SystemMapSymbol {
  /** Address. */
  readonly address: bigint;
  /** nm type letter (`T` global text, `t` local text, `D` data, …). */
  readonly type: string;
  /** Name. */
  readonly name: string;
}

/**
 * Parses a System.map.
 *
 * @param text The file's text.
 * @param file A name for messages.
 * @returns The symbols in file order.
 * @throws {ImageError} Naming the first malformed line, or when the map is empty (the
 *   placeholder System.map of Debian's image package says "ffffffffffffffff B The real
 *   System.map is in the linux-image-<version>-dbg package").
 * @example
 * ```ts
 * import { parseSystemMap } from "./system_map.ts";
 * const syms = parseSystemMap("ffffffff81000000 T _text\n", "System.map");
 * console.log(syms[0]!.name); // _text
 * ```
 */
export function parseSystemMap(text: string, file: string): SystemMapSymbol[] {
  const out: SystemMapSymbol[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === "") continue;
    const m = /^([0-9a-fA-F]{1,16})\s+(\S)\s+(\S+)/.exec(line);
    if (m === null) {
      throw new ImageError(file, `line ${i + 1} is not "address type name": ${line.slice(0, 80)}`);
    }
    out.push({ address: BigInt("0x" + m[1]), type: m[2]!, name: m[3]! });
  }
  const real = out.filter((s) => s.address !== 0xffffffffffffffffn);
  if (real.length === 0) {
    throw new ImageError(
      file,
      "System.map has no symbols (Debian's image package ships a placeholder; the real one is in linux-image-<version>-dbg)",
    );
  }
  return real;
}
