/**
 * `text_poke`, `text_poke_bp` and its batch form (`arch/x86/kernel/alternative.c`).
 *
 * text_poke_bp replaces one instruction per site while other CPUs may be executing it.
 * The only intermediate state another CPU may fetch is the one-byte int3, and the int3
 * handler makes a CPU that hits it behave as the new instruction:
 *
 * 1. write `int3` over the first byte of every site; sync all CPUs (IPI → sync_core);
 * 2. write bytes 1..len-1 of every site; sync (only if some site has a tail);
 * 3. write the first byte of every site; sync; then stop matching in the handler.
 *
 *     writer (patcher CPU)              | reader (any CPU at a site)
 *     desc = sites (sorted)             |
 *     site[0] = cc  ; sync              | fetch cc → int3 → handler bsearch(desc)
 *     site[1..] = new tail ; sync       |   → emulate the new instruction
 *     site[0] = new head ; sync         | fetch the whole new instruction
 *     desc = null                       |
 *
 * The last sync is what makes clearing the descriptor safe: the int3 entry runs with
 * interrupts off, so a CPU still between its int3 and its handler cannot take the sync IPI,
 * and the patcher waits for every CPU to take it.
 *
 * The handler emulates the instruction being written, as c3d6324f841b (~v5.5) taught it:
 * CALL, JMP32, JMP8, NOP2 as `jmp +0`, NOP5 as `jmp.d32 +0`; an INT3 being written is not
 * consumed (it goes on to the next handler). RET and Jcc, which later kernels added
 * (`int3_emulate_ret`, `int3_emulate_jcc`), are emulated too. A site may ask to emulate a different instruction than
 * it writes (`emulate`), as static_call does for its RET0 form.
 *
 * The patcher is a coroutine: it yields a {@link PokeStep} for every store and every sync,
 * and whoever drives it (the SMP machine's kernel thread, or {@link TextPatcher.run} on
 * one CPU) performs them, so other CPUs really run between the steps.
 *
 * @module
 */

import { hexAddr, hexBytes, PatchError } from "../errors.ts";
import { decodeInto } from "../x86/decode.ts";
import { Insn, Op } from "../x86/insn.ts";
import type { CodeMap, CodeRegion } from "./code_map.ts";
import {
  CALL_INSN_OPCODE,
  INT3_INSN_OPCODE,
  INT3_INSN_SIZE,
  JCC32_INSN_SIZE,
  JMP32_INSN_OPCODE,
  JMP8_INSN_OPCODE,
  NOP5_32,
  NOP5_64,
  RET_INSN_OPCODE,
} from "./constants.ts";
import { int3EmulateCall, int3EmulateJcc, int3EmulateJmp, int3EmulateRet } from "./emulate.ts";
import type { Int3Context } from "./int3.ts";
import type { ByteMemory } from "./pt_regs.ts";

/** One site of a text_poke_bp batch. */
export interface PokeSite {
  /** Address of the instruction to replace. */
  address: bigint;
  /** The new instruction (1, 2 or 5 bytes; 6 for a Jcc32). */
  bytes: Uint8Array;
  /** What the caller expects to find there now (checked before anything is written). */
  old?: Uint8Array;
  /** The instruction the int3 handler emulates meanwhile (default: `bytes`). */
  emulate?: Uint8Array;
}

/** A step the patcher coroutine asks its driver to perform. */
export type PokeStep =
  | {
    /** Write text (through the writable alias). */
    readonly kind: "store";
    /** Text address of the first byte. */
    readonly address: bigint;
    /** The same address as the machine's internal number, NaN when the env has none. */
    readonly num: number;
    /** The bytes. */
    readonly bytes: Uint8Array;
    /** Which protocol step (1, 2, 3) or 0 for a plain text_poke. */
    readonly step: 0 | 1 | 2 | 3;
  }
  | {
    /** text_poke_sync: IPI every CPU to run sync_core and wait for all of them. */
    readonly kind: "sync";
    /** Which protocol step it ends. */
    readonly step: 1 | 2 | 3;
  };

/** What the patcher needs from the kernel. */
export interface TextPatchEnv {
  /** 32 or 64: decoding mode and NOP forms. */
  readonly bitness: 32 | 64;
  /** Reads of text (through the normal read-only mapping). */
  readonly mem: ByteMemory;
  /** Instruction boundaries of the kernel's text. */
  readonly code: CodeMap;
  /** Base for the descriptor's relative addresses (`_stext`). */
  readonly textBase: bigint;
  /**
   * Writes text through the writable alias at once (used by {@link TextPatcher.textPoke}
   * and by {@link TextPatcher.run}).
   *
   * @param address Text address.
   * @param bytes The bytes.
   */
  writeText(address: bigint, bytes: Uint8Array): void;
  /**
   * Optional fast path: the machine's internal number of a text address (NaN if none).
   *
   * @param address Text address.
   * @returns The internal number.
   */
  toNum?(address: bigint): number;
  /**
   * Optional fast path: reads one byte of text at an internal address.
   *
   * @param num Internal address.
   * @returns The byte.
   */
  textByte?(num: number): number;
}

/** The descriptor of the batch in flight (`bp_desc`): parallel arrays, sorted. */
interface PokeDesc {
  /** address - textBase, ascending. */
  rel: Float64Array;
  len: Uint8Array;
  /** Emulated opcode: cc, c3, e8, e9, eb or 0x70+cc. */
  opcode: Uint8Array;
  disp: Int32Array;
  addresses: bigint[];
  /** Internal numbers of the addresses (NaN when the env has none). */
  num: Float64Array;
  /** First byte of each new instruction. */
  head: Uint8Array;
  /** Bytes 1.. of every new instruction, one after the other. */
  tails: Uint8Array;
  /** Where site i's tail starts in `tails` (n + 1 entries: the last is the end). */
  tailAt: Float64Array;
}

const SCRATCH = new Insn();

function startsWith(bytes: Uint8Array, prefix: Uint8Array): boolean {
  for (let i = 0; i < prefix.length; i++) if (bytes[i] !== prefix[i]) return false;
  return true;
}

/**
 * Classifies the instruction to emulate, as `text_poke_loc_init` does.
 *
 * @returns [opcode, disp] or a reason it cannot be emulated.
 */
function classify(
  bitness: 32 | 64,
  insnBytes: Uint8Array,
  len: number,
): { opcode: number; disp: number } | string {
  // The kernel's own NOPs (x86_nops[]): the 32-bit NOP5 is an lea, not a nop opcode.
  if (
    len === 5 && insnBytes.length >= 5 &&
    (startsWith(insnBytes, NOP5_32) || startsWith(insnBytes, NOP5_64))
  ) {
    return { opcode: JMP32_INSN_OPCODE, disp: 0 };
  }
  const insn = decodeInto(SCRATCH, insnBytes, 0, bitness);
  const ilen = insn.len;
  const padded = () => {
    for (let i = ilen; i < len; i++) {
      if (insnBytes[i] !== INT3_INSN_OPCODE) return false;
    }
    return insnBytes.length >= len;
  };
  switch (insn.op) {
    case Op.INT3:
      if (ilen !== len) return `int3 is 1 byte, not ${len}`;
      return { opcode: INT3_INSN_OPCODE, disp: 0 };
    case Op.RET:
      if (insn.imm !== 0) return "ret imm16 cannot be emulated";
      if (!padded()) return `ret padded to ${len} bytes must be followed by int3s`;
      return { opcode: RET_INSN_OPCODE, disp: 0 };
    case Op.CALL:
      if (ilen !== 5 || len !== 5) return "only the 5-byte call rel32 can be emulated";
      return { opcode: CALL_INSN_OPCODE, disp: insn.imm | 0 };
    case Op.JMP:
      if (ilen === 5 && insnBytes[0] === JMP32_INSN_OPCODE && padded()) {
        return { opcode: JMP32_INSN_OPCODE, disp: insn.imm | 0 };
      }
      if (ilen === 2 && insnBytes[0] === JMP8_INSN_OPCODE && padded()) {
        return { opcode: JMP8_INSN_OPCODE, disp: insn.imm | 0 };
      }
      return `jmp of ${ilen} bytes in a ${len}-byte site cannot be emulated`;
    case Op.JCC:
      if (ilen !== len || (len !== 2 && len !== JCC32_INSN_SIZE)) {
        return `jcc of ${ilen} bytes in a ${len}-byte site cannot be emulated`;
      }
      return { opcode: 0x70 + insn.cc, disp: insn.imm | 0 };
    case Op.NOP:
      if (ilen !== len) return `a ${ilen}-byte nop in a ${len}-byte site cannot be emulated`;
      if (len === 2) return { opcode: JMP8_INSN_OPCODE, disp: 0 };
      if (len === 5) return { opcode: JMP32_INSN_OPCODE, disp: 0 };
      return `only NOP2 and NOP5 can be emulated, not a ${len}-byte nop`;
    default:
      return `${
        hexBytes(insnBytes.subarray(0, Math.max(1, Math.min(len, ilen || len))))
      } is not an instruction text_poke_bp can emulate (call, jmp, jcc, ret, int3, nop2, nop5)`;
  }
}

function isJcc32(bytes: Uint8Array): boolean {
  return bytes.length === JCC32_INSN_SIZE && bytes[0] === 0x0f && (bytes[1]! & 0xf0) === 0x80;
}

function eq(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Counters of the poke handler, for tests and experiments. */
export interface PokeStats {
  /** int3 traps the handler claimed. */
  emulated: number;
  /** Batches completed. */
  batches: number;
  /** Sites patched in completed batches. */
  sites: number;
}

/**
 * text_poke and text_poke_bp of one kernel, and its `poke_int3_handler`.
 *
 * @example Patch a NOP5 into a call on one CPU
 * ```ts
 * import { CodeMap, TextPatcher, wordMemory } from "@textpoke/textpoke";
 *
 * const text = Uint8Array.of(0x0f, 0x1f, 0x44, 0x00, 0x00, 0xc3);
 * const mem = wordMemory({
 *   readBytes: (a, n) => text.slice(Number(a - 0x1000n), Number(a - 0x1000n) + n),
 *   writeBytes: (a, b) => text.set(b, Number(a - 0x1000n)),
 * });
 * const code = new CodeMap(64);
 * code.add("f", 0x1000n, text);
 * const p = new TextPatcher({
 *   bitness: 64, mem, code, textBase: 0x1000n,
 *   writeText: (a, b) => mem.writeBytes(a, b),
 * });
 * p.run(p.textPokeBp(0x1000n, Uint8Array.of(0xe8, 0, 0, 0, 0)));
 * console.log(text[0]!.toString(16)); // e8
 * ```
 */
export class TextPatcher {
  /** The kernel side this patcher works on. */
  readonly env: TextPatchEnv;
  /** Counters. */
  readonly stats: PokeStats = { emulated: 0, batches: 0, sites: 0 };
  #desc: PokeDesc | null = null;
  #busy = false;

  /**
   * Creates a patcher with no batch in flight.
   *
   * @param env Memory, code map and the alias writer of the kernel.
   */
  constructor(env: TextPatchEnv) {
    this.env = env;
  }

  /** True while a text_poke_bp batch is between its first store and its last sync. */
  get inProgress(): boolean {
    return this.#busy;
  }

  /**
   * `text_poke`: writes text through the writable alias at once and verifies it reads
   * back. For use when no other CPU can be executing the bytes (boot, a stopped machine).
   *
   * @param address Text address.
   * @param bytes The bytes.
   * @throws {PatchError} If the address is not kernel text or the bytes do not read back.
   */
  textPoke(address: bigint, bytes: Uint8Array): void {
    this.#checkText(address, bytes.length);
    this.env.writeText(address, bytes);
    this.verify(address, bytes);
  }

  /**
   * The check after every text_poke: the text mapping must read back what was written.
   *
   * @param address Text address.
   * @param bytes What was written.
   * @param num The same address as the machine's internal number (NaN: use `address`).
   * @throws {PatchError} If it reads back something else.
   */
  verify(address: bigint, bytes: Uint8Array, num = NaN): void {
    const byte = this.env.textByte;
    if (num === num && byte !== undefined) {
      let same = true;
      for (let i = 0; i < bytes.length; i++) {
        if (byte.call(this.env, num + i) !== bytes[i]) {
          same = false;
          break;
        }
      }
      if (same) return;
    }
    const back = this.env.mem.readBytes(address, bytes.length);
    if (!eq(back, bytes)) {
      throw new PatchError(
        `text_poke at ${hexAddr(address)} wrote ${hexBytes(bytes)} but reads back ${
          hexBytes(back)
        }`,
        address,
      );
    }
  }

  #checkText(address: bigint, len: number): void {
    const code = this.env.code;
    const r = code.regionOf(address);
    if (r === undefined || address + BigInt(len) > r.start + BigInt(r.length)) {
      throw new PatchError(
        `Cannot poke ${len} bytes at ${hexAddr(address)}: not inside kernel text`,
        address,
      );
    }
  }

  /**
   * Names the instruction an offset falls inside, for a refusal: its start and the bytes
   * there now (`inside the instruction at 0x… (e8 00 00 00 00)`). Only called on the error
   * path, so the walk back to the start costs nothing on the hot one.
   */
  #insnAround(r: CodeRegion, off: number): string {
    let start = off;
    while (start > 0 && r.starts[start] !== 1) start--;
    let end = off + 1;
    while (end < r.length && r.starts[end] !== 1) end++;
    const at = r.start + BigInt(start);
    return `inside the instruction at ${hexAddr(at)}: ${
      hexBytes(this.env.mem.readBytes(at, end - start))
    }`;
  }

  /**
   * Checks a batch and builds its descriptor, touching nothing. Every precondition of
   * text_poke_bp is checked for every site before the first byte is written.
   *
   * @param sites The sites, sorted by address, not overlapping.
   * @returns The descriptor.
   * @throws {PatchError} Naming the site, expected and found bytes.
   */
  #prepare(sites: readonly PokeSite[]): PokeDesc {
    const env = this.env;
    const n = sites.length;
    const desc: PokeDesc = {
      rel: new Float64Array(n),
      len: new Uint8Array(n),
      opcode: new Uint8Array(n),
      disp: new Int32Array(n),
      addresses: new Array<bigint>(n),
      num: new Float64Array(n),
      head: new Uint8Array(n),
      tails: new Uint8Array(n * (JCC32_INSN_SIZE - INT3_INSN_SIZE)),
      tailAt: new Float64Array(n + 1),
    };
    const toNum = env.toNum;
    const byte = env.textByte;
    const baseNum = toNum === undefined ? NaN : toNum.call(env, env.textBase);
    const fast = baseNum === baseNum && byte !== undefined;
    const code = env.code;
    let prevRel = -Infinity;
    let prevEndRel = -Infinity;
    let prevAddr = 0n;
    // The region of the previous site, as offsets from _stext (NaN: none): most sites of a
    // batch share it, and numbers spare a bigint comparison per site.
    let region: CodeRegion | undefined = undefined;
    let regionRel = NaN;
    let regionEndRel = NaN;
    const found = new Uint8Array(JCC32_INSN_SIZE);
    const tails = desc.tails;
    let tailEnd = 0;
    for (let i = 0; i < n; i++) {
      const s = sites[i]!;
      const a = s.address;
      const len = s.bytes.length;
      if (!(len === 1 || len === 2 || len === 5 || (len === JCC32_INSN_SIZE && isJcc32(s.bytes)))) {
        throw new PatchError(
          `Cannot patch ${len} bytes (${hexBytes(s.bytes)}) at ${
            hexAddr(a)
          }: text_poke_bp replaces 1, 2 or 5 bytes (6 for a jcc rel32)`,
          a,
        );
      }
      // Offsets from _stext as numbers: exact for anything near the text.
      const rel = Number(a - env.textBase);
      if (i > 0 && rel <= prevRel) {
        throw new PatchError(
          `Batch is not sorted: site ${i} at ${hexAddr(a)} follows ${hexAddr(prevAddr)}`,
          a,
        );
      }
      if (i > 0 && rel < prevEndRel) {
        throw new PatchError(
          `Batch sites overlap: ${hexAddr(a)} lies inside the site at ${
            hexAddr(prevAddr)
          } (ends at ${hexAddr(prevAddr + BigInt(prevEndRel - prevRel))})`,
          a,
        );
      }
      let r: CodeRegion | undefined;
      let off: number;
      if (rel >= regionRel && rel < regionEndRel && Number.isSafeInteger(rel)) {
        r = region;
        off = rel - regionRel;
      } else {
        r = code.regionOf(a);
        off = r === undefined ? -1 : Number(a - r.start);
        if (r !== undefined) {
          region = r;
          regionRel = Number(r.start - env.textBase);
          regionEndRel = regionRel + r.length;
          if (!Number.isSafeInteger(regionRel) || !Number.isSafeInteger(regionEndRel)) {
            regionRel = regionEndRel = NaN;
          }
        }
      }
      if (r === undefined || off + len > r.length) {
        throw new PatchError(
          `Cannot poke ${len} bytes at ${hexAddr(a)}: not inside kernel text`,
          a,
        );
      }
      if (r.starts[off] !== 1) {
        throw new PatchError(
          `Cannot patch at ${hexAddr(a)}: not on an instruction boundary (${
            this.#insnAround(r, off)
          })`,
          a,
        );
      }
      if (off + len < r.length && r.starts[off + len] !== 1) {
        throw new PatchError(
          `Cannot patch ${len} bytes at ${hexAddr(a)}: ${
            hexAddr(a + BigInt(len))
          } is not on an instruction boundary (${this.#insnAround(r, off + len)})`,
          a,
        );
      }
      const num = fast ? baseNum + rel : NaN;
      if (fast) {
        for (let j = 0; j < len; j++) found[j] = byte!.call(env, num + j);
      } else found.set(env.mem.readBytes(a, len));
      if (s.old !== undefined && !eq(found.subarray(0, len), s.old)) {
        throw new PatchError(
          `Old bytes mismatch at ${hexAddr(a)}: expected ${hexBytes(s.old)}, found ${
            hexBytes(found.subarray(0, len))
          }`,
          a,
        );
      }
      const c = classify(env.bitness, s.emulate ?? s.bytes, len);
      if (typeof c === "string") {
        throw new PatchError(`Cannot patch at ${hexAddr(a)}: ${c}`, a);
      }
      desc.rel[i] = rel;
      desc.len[i] = len;
      desc.opcode[i] = c.opcode;
      desc.disp[i] = c.disp;
      desc.addresses[i] = a;
      desc.num[i] = fast ? num : toNum === undefined ? NaN : toNum.call(env, a);
      desc.head[i] = s.bytes[0]!;
      // The tails live in one buffer: a typed array per site costs more than the rest of
      // the checks together.
      desc.tailAt[i] = tailEnd;
      for (let j = INT3_INSN_SIZE; j < len; j++) tails[tailEnd++] = s.bytes[j]!;
      prevAddr = a;
      prevRel = rel;
      prevEndRel = rel + len;
    }
    desc.tailAt[n] = tailEnd;
    return desc;
  }

  /**
   * `text_poke_bp_batch` as a coroutine: yields a store for every write and a sync at the
   * end of each step; the driver performs them. Everything is validated before the first
   * yield, so an error leaves the text unchanged.
   *
   * @param sites Sorted, non-overlapping sites.
   * @returns A generator of steps (drive it with {@link TextPatcher.run} or the machine).
   * @throws {PatchError} On the first `next()` for bad input or a batch already running.
   */
  *textPokeBpBatch(sites: readonly PokeSite[]): Generator<PokeStep, void, void> {
    if (this.#busy) {
      throw new PatchError("text_poke_bp is already in progress (text_mutex is held)");
    }
    const desc = this.#prepare(sites);
    const n = desc.addresses.length;
    if (n === 0) return;
    this.#busy = true;
    try {
      // Publish the descriptor before the first int3 can be fetched (smp_wmb in the kernel).
      this.#desc = desc;
      const int3 = Uint8Array.of(INT3_INSN_OPCODE);
      // First step: an int3 over the first byte of every site.
      for (let i = 0; i < n; i++) {
        const num = desc.num[i]!;
        yield { kind: "store", address: desc.addresses[i]!, num, bytes: int3, step: 1 };
        this.verify(desc.addresses[i]!, int3, num);
      }
      yield { kind: "sync", step: 1 };
      // Second step: everything but the first byte.
      let tails = 0;
      const tailAt = desc.tailAt;
      for (let i = 0; i < n; i++) {
        const from = tailAt[i]!;
        const to = tailAt[i + 1]!;
        if (to > from) {
          const tail = desc.tails.subarray(from, to);
          const a = desc.addresses[i]! + 1n;
          const num = desc.num[i]! + 1;
          yield { kind: "store", address: a, num, bytes: tail, step: 2 };
          this.verify(a, tail, num);
          tails++;
        }
      }
      if (tails > 0) yield { kind: "sync", step: 2 };
      // Third step: the first byte (an int3 being written is already there).
      let heads = 0;
      // One 1-byte array per distinct first byte (a batch has a handful).
      const headBytes: (Uint8Array | undefined)[] = [];
      for (let i = 0; i < n; i++) {
        const h = desc.head[i]!;
        if (h === INT3_INSN_OPCODE) continue;
        const head = headBytes[h] ??= Uint8Array.of(h);
        const num = desc.num[i]!;
        yield { kind: "store", address: desc.addresses[i]!, num, bytes: head, step: 3 };
        this.verify(desc.addresses[i]!, head, num);
        heads++;
      }
      if (heads > 0) yield { kind: "sync", step: 3 };
      this.stats.batches++;
      this.stats.sites += n;
    } finally {
      this.#desc = null;
      this.#busy = false;
    }
  }

  /**
   * `text_poke_bp`: one site.
   *
   * @param address The instruction to replace.
   * @param bytes The new instruction.
   * @param options `old` to check first, `emulate` to emulate another instruction.
   * @returns A generator of steps.
   */
  textPokeBp(
    address: bigint,
    bytes: Uint8Array,
    options: { old?: Uint8Array; emulate?: Uint8Array } = {},
  ): Generator<PokeStep, void, void> {
    const site: PokeSite = { address, bytes };
    if (options.old !== undefined) site.old = options.old;
    if (options.emulate !== undefined) site.emulate = options.emulate;
    return this.textPokeBpBatch([site]);
  }

  /**
   * Drives a patcher coroutine to its end with nobody else running: stores happen at once
   * through the alias, syncs call `sync` (default: nothing to wait for).
   *
   * @param gen A generator from {@link TextPatcher.textPokeBpBatch} or
   *   {@link TextPatcher.textPokeBp}.
   * @param sync Called for each sync step (e.g. to serialize the other CPUs).
   */
  run(gen: Generator<PokeStep, void, void>, sync: (step: 1 | 2 | 3) => void = () => {}): void {
    for (let r = gen.next(); !r.done; r = gen.next()) {
      const s = r.value;
      if (s.kind === "store") this.env.writeText(s.address, s.bytes);
      else sync(s.step);
    }
  }

  /**
   * `poke_int3_handler`: if a batch is in flight and the int3 is one of its sites, emulate
   * the instruction being written. Pass it (bound) as the kernel's poke handler.
   *
   * As upstream (`ip += tp->len`), the displacement is added to the end of the whole site.
   * That is the end of the instruction for every form but one: a JMP8 padded with int3 to
   * fill a longer site, which `text_poke_loc_init` accepts. A CPU that hits the int3 then
   * jumps `len - 2` bytes past where the jmp8 itself goes. None of the callers modelled
   * here pads a JMP8; tests/kernel_entry_test.ts pins the arithmetic.
   *
   * @param ctx The trap.
   * @returns True if it claimed the int3.
   */
  readonly pokeInt3Handler = (ctx: Int3Context): boolean => {
    const desc = this.#desc;
    if (desc === null) return false;
    const regs = ctx.regs;
    if (regs.userMode()) return false;
    const ip = regs.ip - BigInt(INT3_INSN_SIZE);
    const key = Number(ip - this.env.textBase);
    const rel = desc.rel;
    let lo = 0;
    let hi = rel.length - 1;
    let i = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const v = rel[mid]!;
      if (v < key) lo = mid + 1;
      else if (v > key) hi = mid - 1;
      else {
        i = mid;
        break;
      }
    }
    if (i < 0) return false;
    const next = ip + BigInt(desc.len[i]!);
    const op = desc.opcode[i]!;
    const disp = BigInt(desc.disp[i]!);
    switch (op) {
      case INT3_INSN_OPCODE:
        // Someone poked an explicit int3: they want to handle it; do not consume.
        return false;
      case RET_INSN_OPCODE:
        ctx.regs = int3EmulateRet(regs, ctx.pushMode);
        break;
      case CALL_INSN_OPCODE:
        ctx.regs = int3EmulateCall(regs, next + disp, ctx.pushMode);
        break;
      case JMP32_INSN_OPCODE:
      case JMP8_INSN_OPCODE:
        int3EmulateJmp(regs, next + disp);
        break;
      default:
        int3EmulateJcc(regs, op - 0x70, next, disp);
    }
    this.stats.emulated++;
    return true;
  };
}

/**
 * The kernel's `text_gen_insn`: encodes a CALL, JMP32 or JMP8 at `address` to `target`
 * (or an INT3 / RET, which ignore the target; any other opcode, NOP5 included, is refused).
 *
 * @param opcode `CALL_INSN_OPCODE`, `JMP32_INSN_OPCODE`, `JMP8_INSN_OPCODE`,
 *   `RET_INSN_OPCODE` or `INT3_INSN_OPCODE`.
 * @param address Where the instruction will live.
 * @param target Where it goes.
 * @returns The instruction bytes.
 * @throws {PatchError} If the displacement does not fit (rel8 / rel32), or for another opcode.
 * @example A call
 * ```ts
 * import { CALL_INSN_OPCODE, hexBytes, textGenInsn } from "@textpoke/textpoke";
 *
 * console.log(hexBytes(textGenInsn(CALL_INSN_OPCODE, 0x1000n, 0x1010n))); // e8 0b 00 00 00
 * ```
 */
export function textGenInsn(opcode: number, address: bigint, target: bigint): Uint8Array {
  switch (opcode) {
    case CALL_INSN_OPCODE:
    case JMP32_INSN_OPCODE: {
      const disp = target - (address + 5n);
      if (disp < -(1n << 31n) || disp >= 1n << 31n) {
        throw new PatchError(
          `Cannot reach ${hexAddr(target)} from ${hexAddr(address)} with a rel32`,
          address,
        );
      }
      const out = new Uint8Array(5);
      out[0] = opcode;
      new DataView(out.buffer).setInt32(1, Number(disp), true);
      return out;
    }
    case JMP8_INSN_OPCODE: {
      const disp = target - (address + 2n);
      if (disp < -128n || disp > 127n) {
        throw new PatchError(
          `Cannot reach ${hexAddr(target)} from ${
            hexAddr(address)
          } with a jmp8 (displacement ${disp})`,
          address,
        );
      }
      return Uint8Array.of(JMP8_INSN_OPCODE, Number(BigInt.asUintN(8, disp)));
    }
    case RET_INSN_OPCODE:
    case INT3_INSN_OPCODE:
      return Uint8Array.of(opcode);
    default:
      throw new PatchError(`text_gen_insn cannot encode opcode 0x${opcode.toString(16)}`, address);
  }
}
