/**
 * Where the kernel's instructions begin. text_poke_bp may only replace whole instructions,
 * so the model records every code region it loads and finds instruction boundaries by
 * decoding each region from its start (the way objtool walks a function).
 *
 * @module
 */

import { insnLength } from "../x86/decode.ts";

/** One region of code with its instruction starts. */
export interface CodeRegion {
  /** Name given when it was added (a symbol or a file). */
  readonly name: string;
  /** First byte. */
  readonly start: bigint;
  /** Length in bytes. */
  readonly length: number;
  /** 1 at each offset where an instruction starts. */
  readonly starts: Uint8Array;
}

/**
 * The kernel's map of code regions and instruction boundaries.
 *
 * @example Boundaries of `nop5; ret`
 * ```ts
 * import { CodeMap } from "@textpoke/textpoke";
 *
 * const map = new CodeMap(64);
 * map.add("f", 0x1000n, Uint8Array.of(0x0f, 0x1f, 0x44, 0x00, 0x00, 0xc3));
 * console.log(map.isBoundary(0x1000n), map.isBoundary(0x1002n), map.isBoundary(0x1005n));
 * // true false true
 * ```
 */
export class CodeMap {
  /** Decoding mode. */
  readonly bitness: 32 | 64;
  readonly #regions: CodeRegion[] = [];
  #last: CodeRegion | undefined = undefined;
  #lastEnd = 0n;

  /**
   * Creates an empty map.
   *
   * @param bitness Decoding mode of every region.
   */
  constructor(bitness: 32 | 64) {
    this.bitness = bitness;
  }

  /** The regions, sorted by start. */
  get regions(): readonly CodeRegion[] {
    return this.#regions;
  }

  /**
   * Adds a region and decodes its instruction starts.
   *
   * @param name A name for messages.
   * @param start Address of `bytes[0]`.
   * @param bytes The code as loaded.
   * @returns The region.
   */
  add(name: string, start: bigint, bytes: Uint8Array): CodeRegion {
    const starts = new Uint8Array(bytes.length);
    let off = 0;
    while (off < bytes.length) {
      starts[off] = 1;
      const len = insnLength(bytes, off, this.bitness);
      off += len > 0 ? len : 1;
    }
    const region: CodeRegion = { name, start, length: bytes.length, starts };
    const regions = this.#regions;
    let i = regions.length;
    while (i > 0 && regions[i - 1]!.start > start) i--;
    regions.splice(i, 0, region);
    return region;
  }

  /**
   * The region containing an address.
   *
   * @param address Any address.
   * @returns The region, or undefined outside every region.
   */
  regionOf(address: bigint): CodeRegion | undefined {
    const last = this.#last;
    if (last !== undefined && address >= last.start && address < this.#lastEnd) return last;
    const regions = this.#regions;
    let lo = 0;
    let hi = regions.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const r = regions[mid]!;
      if (address < r.start) hi = mid - 1;
      else if (address >= r.start + BigInt(r.length)) lo = mid + 1;
      else {
        this.#last = r;
        this.#lastEnd = r.start + BigInt(r.length);
        return r;
      }
    }
    return undefined;
  }

  /**
   * Does an instruction start at `address`? The end of a region counts as a boundary.
   *
   * @param address Any address.
   * @returns True on an instruction boundary of known code.
   */
  isBoundary(address: bigint): boolean {
    const r = this.regionOf(address);
    if (r !== undefined) return r.starts[Number(address - r.start)] === 1;
    const before = this.regionOf(address - 1n);
    return before !== undefined && address === before.start + BigInt(before.length);
  }
}
