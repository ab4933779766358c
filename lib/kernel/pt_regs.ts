/**
 * `struct pt_regs` as the x86 entry code lays it out, and typed views over it in emulated
 * memory.
 *
 * x86-64 (`arch/x86/entry/calling.h`), 21 × 8 = 168 bytes, lowest address first:
 * r15 r14 r13 r12 bp bx r11 r10 r9 r8 ax cx dx si di orig_ax ip cs flags sp ss. The last
 * five words are the hardware exception frame, which on x86-64 always holds sp and ss.
 *
 * x86-32 (`arch/x86/include/asm/ptrace.h`), 17 × 4 = 68 bytes: bx cx dx si di bp ax ds es
 * fs gs orig_ax ip cs flags sp ss. A kernel-mode trap frame before v5.3 has no sp/ss: the
 * CPU pushed only flags, cs, ip, so the interrupted stack begins where `&regs->sp` is.
 * That is why the 32-bit push emulation has to move the whole truncated pt_regs.
 *
 * The views read and write emulated memory on every access, so a wrong stack layout is a
 * real clobber of real words, as in the kernel.
 *
 * @module
 */

import { MachineError } from "../errors.ts";

/** Byte offsets of the x86-64 pt_regs members, with the names of `calling.h`. */
export const PT_REGS_64 = {
  R15: 0,
  R14: 8,
  R13: 16,
  R12: 24,
  RBP: 32,
  RBX: 40,
  R11: 48,
  R10: 56,
  R9: 64,
  R8: 72,
  RAX: 80,
  RCX: 88,
  RDX: 96,
  RSI: 104,
  RDI: 112,
  ORIG_RAX: 120,
  RIP: 128,
  CS: 136,
  EFLAGS: 144,
  RSP: 152,
  SS: 160,
} as const;

/** Size of the x86-64 pt_regs: 168 bytes. */
export const SIZEOF_PTREGS_64 = 168;

/** Offset of r15 in the x86-64 pt_regs. */
export const R15 = 0;
/** Offset of r14. */
export const R14 = 8;
/** Offset of r13. */
export const R13 = 16;
/** Offset of r12. */
export const R12 = 24;
/** Offset of bp. */
export const RBP = 32;
/** Offset of bx. */
export const RBX = 40;
/** Offset of r11. */
export const R11 = 48;
/** Offset of r10. */
export const R10 = 56;
/** Offset of r9. */
export const R9 = 64;
/** Offset of r8. */
export const R8 = 72;
/** Offset of ax. */
export const RAX = 80;
/** Offset of cx. */
export const RCX = 88;
/** Offset of dx. */
export const RDX = 96;
/** Offset of si. */
export const RSI = 104;
/** Offset of di. */
export const RDI = 112;
/** Offset of orig_ax: -1 for an exception, the syscall number for a syscall. */
export const ORIG_RAX = 120;
/** Offset of ip (start of the hardware frame). */
export const RIP = 128;
/** Offset of cs. */
export const CS = 136;
/** Offset of flags. */
export const EFLAGS = 144;
/** Offset of sp. */
export const RSP = 152;
/** Offset of ss. */
export const SS = 160;

/**
 * Byte offsets of the x86-32 pt_regs members. `SP` and `SS` exist in a kernel-mode trap
 * frame only after the v5.3 FIXUP_FRAME; before, those offsets are the interrupted stack.
 */
export const PT_REGS_32 = {
  BX: 0,
  CX: 4,
  DX: 8,
  SI: 12,
  DI: 16,
  BP: 20,
  AX: 24,
  DS: 28,
  ES: 32,
  FS: 36,
  GS: 40,
  ORIG_AX: 44,
  IP: 48,
  CS: 52,
  FLAGS: 56,
  SP: 60,
  SS: 64,
} as const;

/** Size of the x86-32 pt_regs: 68 bytes. */
export const SIZEOF_PTREGS_32 = 68;

/**
 * The seed's `SAVED_KERNEL_REGS_SIZE`, `offsetof(struct pt_regs, sp)` on x86-32: the part
 * of pt_regs a kernel-mode trap really has (60 bytes).
 */
export const SAVED_KERNEL_REGS_SIZE_32 = 60;

/** The names of the x86-64 pt_regs members, in memory order. */
export const PT_REGS_FIELDS_64 = [
  "r15",
  "r14",
  "r13",
  "r12",
  "bp",
  "bx",
  "r11",
  "r10",
  "r9",
  "r8",
  "ax",
  "cx",
  "dx",
  "si",
  "di",
  "orig_ax",
  "ip",
  "cs",
  "flags",
  "sp",
  "ss",
] as const;

/** The names of the x86-32 pt_regs members, in memory order. */
export const PT_REGS_FIELDS_32 = [
  "bx",
  "cx",
  "dx",
  "si",
  "di",
  "bp",
  "ax",
  "ds",
  "es",
  "fs",
  "gs",
  "orig_ax",
  "ip",
  "cs",
  "flags",
  "sp",
  "ss",
] as const;

/** A member of the x86-64 pt_regs. */
export type PtRegsField64 = (typeof PT_REGS_FIELDS_64)[number];
/** A member of the x86-32 pt_regs. */
export type PtRegsField32 = (typeof PT_REGS_FIELDS_32)[number];
/** A member of either layout. */
export type PtRegsField = PtRegsField64 | PtRegsField32;

const OFFSETS_64: Map<string, number> = new Map(PT_REGS_FIELDS_64.map((f, i) => [f, i * 8]));
const OFFSETS_32: Map<string, number> = new Map(PT_REGS_FIELDS_32.map((f, i) => [f, i * 4]));

/**
 * The least memory a pt_regs view needs: byte-granular reads and writes at an address.
 * The machine's memory satisfies it; so does a plain test double.
 */
export interface ByteMemory {
  /**
   * Reads bytes.
   *
   * @param address First byte.
   * @param length Number of bytes.
   * @returns A copy of the bytes.
   */
  readBytes(address: bigint, length: number): Uint8Array;
  /**
   * Writes bytes.
   *
   * @param address First byte.
   * @param bytes The bytes.
   */
  writeBytes(address: bigint, bytes: Uint8Array): void;
}

/**
 * Word access on top of {@link ByteMemory}: what pt_regs and the push emulation use. Build
 * one with {@link wordMemory}; a faster implementation may be passed instead.
 */
export interface WordMemory extends ByteMemory {
  /**
   * Reads a little-endian word, zero-extended.
   *
   * @param address First byte.
   * @param size 4 or 8.
   * @returns The value.
   */
  readWord(address: bigint, size: 4 | 8): bigint;
  /**
   * Writes a little-endian word (truncated to `size` bytes).
   *
   * @param address First byte.
   * @param size 4 or 8.
   * @param value The value.
   */
  writeWord(address: bigint, size: 4 | 8, value: bigint): void;
  /**
   * Optional fast path: the machine's internal number for an address (signed in 64-bit
   * mode), or NaN when the memory has no numeric form.
   */
  toNum?(address: bigint): number;
  /** Optional fast path: {@link WordMemory.readWord} at an internal address. */
  readNum?(address: number, size: 4 | 8): bigint;
  /** Optional fast path: {@link WordMemory.writeWord} at an internal address. */
  writeNum?(address: number, size: 4 | 8, value: bigint): void;
  /**
   * Optional fast path: the same as `writeBytes(dst, readBytes(src, length))` (the ranges
   * may overlap), without the intermediate copy.
   */
  moveBytes?(dst: bigint, src: bigint, length: number): void;
}

const MASK64 = (1n << 64n) - 1n;
const MASK32 = (1n << 32n) - 1n;

/**
 * Adds word access to a byte memory (if it does not have it already).
 *
 * @param mem A memory with `readBytes` / `writeBytes`.
 * @returns A {@link WordMemory} over the same storage.
 * @example Words over a test double
 * ```ts
 * import { wordMemory } from "@textpoke/textpoke";
 *
 * const bytes = new Uint8Array(16);
 * const mem = wordMemory({
 *   readBytes: (a, n) => bytes.slice(Number(a), Number(a) + n),
 *   writeBytes: (a, b) => bytes.set(b, Number(a)),
 * });
 * mem.writeWord(8n, 8, 0x1234n);
 * console.log(mem.readWord(8n, 8)); // 4660n
 * ```
 */
export function wordMemory(mem: ByteMemory): WordMemory {
  const maybe = mem as Partial<WordMemory>;
  if (typeof maybe.readWord === "function" && typeof maybe.writeWord === "function") {
    return mem as WordMemory;
  }
  const scratch = new Uint8Array(8);
  const view = new DataView(scratch.buffer);
  return {
    readBytes: (a, n) => mem.readBytes(a, n),
    writeBytes: (a, b) => mem.writeBytes(a, b),
    readWord(address: bigint, size: 4 | 8): bigint {
      const b = mem.readBytes(address, size);
      const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
      return size === 8 ? v.getBigUint64(0, true) : BigInt(v.getUint32(0, true));
    },
    writeWord(address: bigint, size: 4 | 8, value: bigint): void {
      if (size === 8) view.setBigUint64(0, value & MASK64, true);
      else view.setUint32(0, Number(value & MASK32), true);
      mem.writeBytes(address, scratch.slice(0, size));
    },
  };
}

/** A plain copy of every pt_regs member, for records and assertions. */
export type PtRegsSnapshot = { [field: string]: bigint };

/**
 * A typed view of one `struct pt_regs` in emulated memory. Every getter and setter reads
 * or writes memory at once (nothing is cached), exactly like C code dereferencing
 * `regs->ip`.
 *
 * @example Read the trap ip of a frame
 * ```ts
 * import { PT_REGS_64, PtRegs, wordMemory } from "@textpoke/textpoke";
 *
 * const bytes = new Uint8Array(256);
 * const mem = wordMemory({
 *   readBytes: (a, n) => bytes.slice(Number(a), Number(a) + n),
 *   writeBytes: (a, b) => bytes.set(b, Number(a)),
 * });
 * mem.writeWord(16n + BigInt(PT_REGS_64.RIP), 8, 0x1001n);
 * const regs = new PtRegs(mem, 16n, 64);
 * console.log(regs.ip - 1n); // 4096n: the int3 itself
 * ```
 */
export class PtRegs {
  /** The memory the view reads and writes. */
  readonly mem: WordMemory;
  /** Address of the first member (r15 on x86-64, bx on x86-32). */
  readonly address: bigint;
  /** Which layout: 64 (168 bytes) or 32 (68 bytes). */
  readonly bitness: 32 | 64;
  /** Word size in bytes (8 or 4). */
  readonly wordSize: 4 | 8;
  readonly #base: number;
  readonly #fast: boolean;

  /**
   * Creates a view (reads nothing yet).
   *
   * @param mem Memory holding the frame.
   * @param address Address of the first member.
   * @param bitness Which layout.
   */
  constructor(mem: WordMemory, address: bigint, bitness: 32 | 64) {
    this.mem = mem;
    this.address = address;
    this.bitness = bitness;
    this.wordSize = bitness === 64 ? 8 : 4;
    const base = mem.toNum !== undefined && mem.readNum !== undefined &&
        mem.writeNum !== undefined
      ? mem.toNum(address)
      : NaN;
    this.#base = base;
    // 32-bit frames near the top of the address space would wrap: use the slow path.
    this.#fast = base === base && (bitness === 64 || base + SIZEOF_PTREGS_32 < 4294967296);
  }

  #read(off: number): bigint {
    if (this.#fast) return this.mem.readNum!(this.#base + off, this.wordSize);
    return this.mem.readWord(this.address + BigInt(off), this.wordSize);
  }

  #write(off: number, value: bigint): void {
    if (this.#fast) this.mem.writeNum!(this.#base + off, this.wordSize, value);
    else this.mem.writeWord(this.address + BigInt(off), this.wordSize, value);
  }

  /** Size of the layout in bytes (168 or 68). */
  get size(): number {
    return this.bitness === 64 ? SIZEOF_PTREGS_64 : SIZEOF_PTREGS_32;
  }

  /**
   * Offset of a member in this layout.
   *
   * @param field Member name (`"ip"`, `"orig_ax"`, `"r15"`, `"ds"`, ...).
   * @returns Its byte offset.
   * @throws {MachineError} For a member this layout does not have (`r8` on x86-32).
   */
  offsetOf(field: PtRegsField): number {
    const off = (this.bitness === 64 ? OFFSETS_64 : OFFSETS_32).get(field);
    if (off === undefined) {
      throw new MachineError(`pt_regs of x86-${this.bitness} has no member ${field}`);
    }
    return off;
  }

  /**
   * Address of a member (`&regs->field`).
   *
   * @param field Member name.
   * @returns Its address in emulated memory.
   */
  addressOf(field: PtRegsField): bigint {
    return this.address + BigInt(this.offsetOf(field));
  }

  /**
   * Reads a member.
   *
   * @param field Member name.
   * @returns Its value, zero-extended.
   */
  get(field: PtRegsField): bigint {
    return this.#read(this.offsetOf(field));
  }

  /**
   * Writes a member.
   *
   * @param field Member name.
   * @param value New value (truncated to the word size).
   */
  set(field: PtRegsField, value: bigint): void {
    this.#write(this.offsetOf(field), value);
  }

  /** `regs->ip`. */
  get ip(): bigint {
    return this.#read(this.bitness === 64 ? RIP : PT_REGS_32.IP);
  }
  set ip(value: bigint) {
    this.#write(this.bitness === 64 ? RIP : PT_REGS_32.IP, value);
  }
  /** `regs->sp` (on a pre-v5.3 32-bit kernel-mode frame: the interrupted stack's top word). */
  get sp(): bigint {
    return this.#read(this.bitness === 64 ? RSP : PT_REGS_32.SP);
  }
  set sp(value: bigint) {
    this.#write(this.bitness === 64 ? RSP : PT_REGS_32.SP, value);
  }
  /** `regs->cs` (the whole word, including any CS_FROM_KERNEL marker). */
  get cs(): bigint {
    return this.#read(this.bitness === 64 ? CS : PT_REGS_32.CS);
  }
  set cs(value: bigint) {
    this.#write(this.bitness === 64 ? CS : PT_REGS_32.CS, value);
  }
  /** `regs->flags`. */
  get flags(): bigint {
    return this.#read(this.bitness === 64 ? EFLAGS : PT_REGS_32.FLAGS);
  }
  set flags(value: bigint) {
    this.#write(this.bitness === 64 ? EFLAGS : PT_REGS_32.FLAGS, value);
  }
  /** `regs->ax`. */
  get ax(): bigint {
    return this.#read(this.bitness === 64 ? RAX : PT_REGS_32.AX);
  }
  set ax(value: bigint) {
    this.#write(this.bitness === 64 ? RAX : PT_REGS_32.AX, value);
  }
  /** `regs->orig_ax`. */
  get origAx(): bigint {
    return this.#read(this.bitness === 64 ? ORIG_RAX : PT_REGS_32.ORIG_AX);
  }
  set origAx(value: bigint) {
    this.#write(this.bitness === 64 ? ORIG_RAX : PT_REGS_32.ORIG_AX, value);
  }

  /**
   * The kernel's `user_mode(regs)`: the interrupted code ran at CPL 3 (`cs & 3`).
   *
   * @returns True for a trap from user mode.
   */
  userMode(): boolean {
    return (this.cs & 3n) !== 0n;
  }

  /**
   * A view of the same layout at another address (what the 32-bit push emulation returns
   * after moving the frame).
   *
   * @param address The new address of the first member.
   * @returns A new view.
   */
  at(address: bigint): PtRegs {
    return new PtRegs(this.mem, address, this.bitness);
  }

  /**
   * Copies every member out of memory.
   *
   * @returns Member name → value, in layout order.
   */
  snapshot(): PtRegsSnapshot {
    const out: PtRegsSnapshot = {};
    const fields = this.bitness === 64 ? PT_REGS_FIELDS_64 : PT_REGS_FIELDS_32;
    for (const f of fields) out[f] = this.get(f);
    return out;
  }
}

/**
 * The assembler symbol table of a layout: every offset by its kernel name, for sources
 * such as `testb $3, CS-ORIG_RAX(%rsp)`.
 *
 * @param bitness 32 or 64.
 * @returns Name → offset (64: `R15` … `SS`, `ORIG_RAX`, `SIZEOF_PTREGS`; 32: `PT_BX` …
 *   `PT_SS`, `PT_ORIG_AX`, `SIZEOF_PTREGS`).
 */
export function ptRegsSymbols(bitness: 32 | 64): Map<string, bigint> {
  const out = new Map<string, bigint>();
  if (bitness === 64) {
    for (const [k, v] of Object.entries(PT_REGS_64)) out.set(k, BigInt(v));
    out.set("SIZEOF_PTREGS", BigInt(SIZEOF_PTREGS_64));
  } else {
    for (const [k, v] of Object.entries(PT_REGS_32)) out.set(`PT_${k}`, BigInt(v));
    out.set("SIZEOF_PTREGS", BigInt(SIZEOF_PTREGS_32));
  }
  return out;
}
