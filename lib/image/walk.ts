/**
 * A linear sweep of real kernel text with the package's decoder, the way objtool walks
 * it: decode from the section's start, instruction after instruction, restarting at a
 * function symbol if the sweep ever steps over one (a lost boundary). What real text
 * holds besides plain code is counted: int3 padding runs, VEX / EVEX / XOP encodings,
 * encodings invalid in 64-bit mode, and functions that are really 32-bit code (they
 * decode cleanly in 32-bit mode; their boundaries are taken from that decode).
 *
 * @module
 */

import { hexAddr, hexBytes } from "../errors.ts";
import { decodeInto } from "../x86/decode.ts";
import { Insn, Op } from "../x86/insn.ts";
import type { KernelFunction, KernelImage } from "./image.ts";

/** A place where the 64-bit sweep failed to decode (invalid, truncated, too long). */
export interface WalkIssue {
  /** Address. */
  readonly address: bigint;
  /** `function+off`. */
  readonly where: string;
  /** The first bytes there. */
  readonly bytes: string;
  /** `invalid`, `truncated` or `too-long`. */
  readonly kind: string;
}

/** What a sweep of one code section found. */
export interface TextWalk {
  /** Section name. */
  readonly section: string;
  /** Its first address. */
  readonly start: bigint;
  /** Its size. */
  readonly size: number;
  /** Instructions decoded (int3 padding included). */
  readonly instructions: number;
  /** Of which single int3 bytes. */
  readonly int3: number;
  /** Maximal runs of consecutive int3 (a lone int3 is a run of 1). */
  readonly int3Runs: number;
  /** The longest run, in bytes, and where it starts. */
  readonly longestInt3Run: { readonly length: number; readonly address: bigint };
  /** Instructions that are not int3. */
  readonly code: number;
  /** Instructions decoded as NOPs (`90`, `0f 1f /0`, …). */
  readonly nops: number;
  /** VEX-encoded instructions (c4 / c5). */
  readonly vex: number;
  /** EVEX-encoded instructions (62). */
  readonly evex: number;
  /** XOP-encoded instructions (8f with map ≥ 8). */
  readonly xop: number;
  /** Instructions outside the executor's set (decoded with their exact length). */
  readonly unsupported: number;
  /** Places the 64-bit decode failed, outside code found to be 32-bit. */
  readonly issues: readonly WalkIssue[];
  /** Function symbols the sweep stepped over (restarted there). */
  readonly resyncs: readonly { readonly symbol: string; readonly address: bigint }[];
  /** Functions that decode cleanly only in 32-bit mode. */
  readonly code32: readonly {
    readonly symbol: string;
    readonly address: bigint;
    readonly size: number;
  }[];
  /** 1 at every offset where an instruction starts (32-bit code by its 32-bit decode). */
  readonly starts: Uint8Array;
  /** Wall time of the sweep, ms. */
  readonly ms: number;
}

const LEGACY_PREFIX = new Uint8Array(256);
for (const p of [0x26, 0x2e, 0x36, 0x3e, 0x64, 0x65, 0x66, 0x67, 0xf0, 0xf2, 0xf3]) {
  LEGACY_PREFIX[p] = 1;
}

/** 1: VEX, 2: EVEX, 3: XOP, 0: neither (64-bit mode). */
function encodingClass(b: Uint8Array, off: number, end: number): number {
  let p = off;
  while (p < end && LEGACY_PREFIX[b[p]!] === 1) p++;
  const op = b[p];
  if (op === 0xc4 || op === 0xc5) return 1;
  if (op === 0x62) return 2;
  if (op === 0x8f && p + 1 < end && (b[p + 1]! & 0x1f) >= 8) return 3;
  return 0;
}

/**
 * Sweeps one code section of a kernel image.
 *
 * @param image The loaded image.
 * @param section `.text` (default) or `.init.text`.
 * @returns What was found, with the instruction-start bitmap.
 * @example Count int3 padding in Debian's .text
 * ```ts ignore
 * const walk = walkText(loadKernelImage(bytes));
 * console.log(walk.instructions, walk.int3Runs, walk.vex, walk.evex, walk.code32);
 * ```
 */
export function walkText(image: KernelImage, section = ".text"): TextWalk {
  const t0 = performance.now();
  const sec = image.sections.get(section);
  if (sec === undefined) {
    return {
      section,
      start: 0n,
      size: 0,
      instructions: 0,
      int3: 0,
      int3Runs: 0,
      longestInt3Run: { length: 0, address: 0n },
      code: 0,
      nops: 0,
      vex: 0,
      evex: 0,
      xop: 0,
      unsupported: 0,
      issues: [],
      resyncs: [],
      code32: [],
      starts: new Uint8Array(0),
      ms: 0,
    };
  }
  const bytes = sec.bytes;
  const size = sec.size;
  const base = sec.addr;
  const fns: KernelFunction[] = image.functions.filter((f) =>
    f.address >= base && f.address < base + BigInt(size)
  );
  const fnOff = Float64Array.from(fns, (f) => Number(f.address - base));
  const starts = new Uint8Array(size + 1);
  const insn = new Insn();
  let instructions = 0, int3 = 0, int3Runs = 0, nops = 0, vex = 0, evex = 0, xop = 0;
  let unsupported = 0;
  let run = 0, longest = 0, longestAt = 0;
  const bad: { off: number; kind: string }[] = [];
  const resyncs: { symbol: string; address: bigint }[] = [];
  let fi = 0;
  let off = 0;
  while (off < size) {
    // A function symbol stepped over: restart there (the previous decode was wrong).
    while (fi < fnOff.length && fnOff[fi]! < off) {
      const f = fnOff[fi]!;
      if (starts[f] !== 1) {
        resyncs.push({ symbol: fns[fi]!.name, address: fns[fi]!.address });
        off = f;
      }
      fi++;
    }
    starts[off] = 1;
    decodeInto(insn, bytes, off, 64);
    let len = insn.len;
    const op = insn.op;
    instructions++;
    if (op === Op.INT3) {
      int3++;
      if (run === 0) int3Runs++;
      run++;
      if (run > longest) {
        longest = run;
        longestAt = off - run + 1;
      }
    } else {
      run = 0;
      if (op === Op.NOP) nops++;
      else if (op <= Op.TRUNCATED) {
        if (op === Op.UNSUPPORTED) unsupported++;
        else {
          bad.push({
            off,
            kind: op === Op.INVALID ? "invalid" : op === Op.TOO_LONG ? "too-long" : "truncated",
          });
          if (len <= 0 || op !== Op.INVALID) len = len > 0 ? Math.min(len, 15) : 1;
        }
      }
      const b = bytes[off]!;
      // Cheap pre-test: only instructions whose first bytes could be VEX/EVEX/XOP.
      if (b === 0xc4 || b === 0xc5 || b === 0x62 || b === 0x8f || LEGACY_PREFIX[b] === 1) {
        const c = encodingClass(bytes, off, Math.min(size, off + 15));
        if (c === 1) vex++;
        else if (c === 2) evex++;
        else if (c === 3) xop++;
      }
    }
    off += len > 0 ? len : 1;
  }
  starts[size] = 1;

  // Functions with undecodable bytes: are they 32-bit code?
  const code32: { symbol: string; address: bigint; size: number }[] = [];
  const issues: WalkIssue[] = [];
  const checked = new Set<KernelFunction>();
  for (const { off: o, kind } of bad) {
    const address = base + BigInt(o);
    const f = image.functionAt(address) ?? image.symbolAt(address);
    if (f !== undefined && f.size > 0 && !checked.has(f)) {
      checked.add(f);
      const fo = Number(f.address - base);
      const fend = Math.min(size, fo + f.size);
      if (_cleanIn32(bytes, fo, fend, insn)) {
        code32.push({ symbol: f.name, address: f.address, size: f.size });
        starts.fill(0, fo, fend);
        for (let p = fo; p < fend;) {
          starts[p] = 1;
          decodeInto(insn, bytes, p, 32);
          p += insn.len > 0 ? insn.len : 1;
        }
        starts[fend] = 1;
        continue;
      }
    }
    if (f !== undefined && code32.some((c) => c.symbol === f.name)) continue;
    issues.push({
      address,
      where: image.describe(address),
      bytes: hexBytes(bytes.subarray(o, Math.min(size, o + 8))),
      kind,
    });
  }
  return {
    section,
    start: base,
    size,
    instructions,
    int3,
    int3Runs,
    longestInt3Run: { length: longest, address: base + BigInt(longestAt) },
    code: instructions - int3,
    nops,
    vex,
    evex,
    xop,
    unsupported,
    issues,
    resyncs,
    code32,
    starts,
    ms: performance.now() - t0,
  };
}

function _cleanIn32(bytes: Uint8Array, from: number, to: number, insn: Insn): boolean {
  for (let p = from; p < to;) {
    decodeInto(insn, bytes, p, 32);
    if (insn.op === Op.INVALID || insn.op === Op.TOO_LONG || insn.op === Op.TRUNCATED) return false;
    p += insn.len;
  }
  return true;
}

/** Sites of one kind checked against a walk's instruction starts. */
export interface BoundaryCheck {
  /** Sites checked. */
  readonly checked: number;
  /** Sites whose first byte or whose end is not an instruction start. */
  readonly off: readonly { readonly address: bigint; readonly where: string }[];
}

/**
 * Checks that every site (of length `len`) starts and ends on an instruction boundary of
 * the walks (sites in no walked section count as off).
 *
 * @param image The image (for names).
 * @param walks Walks of the code sections.
 * @param sites Site addresses.
 * @param len Site length (5 for calls).
 * @returns The count checked and the sites off a boundary.
 */
export function checkBoundaries(
  image: KernelImage,
  walks: readonly TextWalk[],
  sites: Iterable<bigint>,
  len = 5,
): BoundaryCheck {
  let checked = 0;
  const off: { address: bigint; where: string }[] = [];
  for (const a of sites) {
    checked++;
    const w = walks.find((w) => a >= w.start && a < w.start + BigInt(w.size));
    const o = w === undefined ? -1 : Number(a - w.start);
    if (w === undefined || w.starts[o] !== 1 || w.starts[o + len] !== 1) {
      off.push({ address: a, where: image.describe(a) });
    }
  }
  return { checked, off };
}

/**
 * A one-line description of a walk issue, for reports.
 *
 * @param i The issue.
 * @returns `0xffffffff81000123 (fn+0x3): invalid, bytes 06 0f …`.
 */
export function formatWalkIssue(i: WalkIssue): string {
  return `${hexAddr(i.address)} (${i.where}): ${i.kind}, bytes ${i.bytes}`;
}
