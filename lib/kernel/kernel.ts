/**
 * The modeled kernel booted on a {@link Machine}: memory layout, the chosen int3 entry in
 * the IDT, the C functions as natives, text_poke through a writable alias, and the API the
 * upper layers (ftrace, static_call, livepatch, proposals) build on.
 *
 * Layout (x86-64 / x86-32):
 *
 * | what | x86-64 | x86-32 |
 * | --- | --- | --- |
 * | natives (one 16-byte slot each) | `0xffffffff81000000` | `0xc1000000` |
 * | entry stubs | `+0x1000` | `+0x1000` |
 * | kernel text loaded by {@link Kernel.loadText} | `+0x4000` … | `+0x4000` … |
 * | writable alias of the text (text_poke) | `0xffffffffc0000000` | `0xf0000000` |
 * | kernel data ({@link Kernel.allocData}) | `0xffffffff82000000` | `0xc2000000` |
 * | per-CPU task stack and entry stack (tss.sp0), 16 KiB each | `0xffffc90000000000` | `0xc4000000` |
 * | user text / user stacks | `0x400000` / `0x7ff000000000` | `0x08048000` / `0xbf000000` |
 *
 * The `layout` option moves the text, its alias and the data: with
 * {@link MODULE_AREA_LAYOUT_64} the model lives in the module area (text
 * `0xffffffffc0000000`, data `0xffffffffd0000000`, alias `0xfffffeffc0000000`) and a real
 * image's `.text` is mapped at its link address by {@link Kernel.mapText}.
 *
 * Kernel faults (#PF, #GP, #UD, #SS, #DF, …) go to natives that record an oops with the
 * frame and stop the CPU, as `die()` would.
 *
 * @module
 */

import { hexAddr, MachineError, MemoryError } from "../errors.ts";
import type { Cpu } from "../machine/cpu.ts";
import type { Machine, StopReason } from "../machine/machine.ts";
import { copyOut, PAGE_SIZE, Perm } from "../machine/memory.ts";
import type { NativeCall, NativeFunction } from "../machine/native.ts";
import {
  type KernelContext,
  type KernelGen,
  type KernelThread,
  type Smp,
  STORE_STEP,
} from "../machine/smp.ts";
import { attachSmp, type SmpMachineOptions } from "../machine/smp_machine.ts";
import { SerializeReason } from "../machine/trace.ts";
import { assemble } from "../x86/assemble.ts";
import { CANON_HIGH, CANON_LOW } from "../x86/state.ts";
import { CodeMap } from "./code_map.ts";
import { selectors, X86_EFLAGS_IF, X86_TRAP_BP, X86_TRAP_NMI } from "./constants.ts";
import { defaultPushMode, type PushMode } from "./emulate.ts";
import {
  entryBitness,
  type EntrySource,
  type EntryVariant,
  int3EntrySource,
  nmiEntrySource,
} from "./entry.ts";
import { Int3Dispatch, type KernelEvent, type OopsEvent } from "./int3.ts";
import { PtRegs, ptRegsSymbols, type WordMemory } from "./pt_regs.ts";
import { type PokeSite, type PokeStep, TextPatcher } from "./text_poke.ts";

/** Options of {@link bootKernel}. */
export interface KernelOptions {
  /** The int3 entry variant (its bitness must be the machine's). */
  entry: EntryVariant;
  /**
   * How int3 handlers push: default `"direct"` for x86-64 and `32-fixup`, `"move"` for the
   * other x86-32 entries (the seed's C code).
   */
  pushMode?: PushMode;
  /** Bytes of kernel text to map (default 256 KiB). */
  textSize?: number;
  /** Bytes of kernel data to map (default 256 KiB). */
  dataSize?: number;
  /** Bytes of user text to map (default 64 KiB). */
  userTextSize?: number;
  /**
   * A custom int3 entry (for proposals that change the entry code, e.g. an entry that
   * fixes the frame up on return). Its text must define `int3`; `entry` still names the
   * variant it is closest to (bitness, default push mode).
   */
  entrySource?: EntrySource;
  /** Extra natives to bind before the entry is assembled (its text may call them). */
  natives?: Record<string, NativeFunction>;
  /**
   * Where the model's own text, its writable alias and its data live (default: the table
   * in the module doc). {@link MODULE_AREA_LAYOUT_64} moves them out of the kernel image's
   * range, so a real image can be mapped at its link addresses with {@link Kernel.mapText}.
   */
  layout?: KernelLayoutOptions;
}

/** Addresses {@link bootKernel} may place elsewhere (see {@link KernelOptions.layout}). */
export interface KernelLayoutOptions {
  /** Start of the model's text: natives, entry stubs, then {@link Kernel.loadText}. */
  readonly textBase?: bigint;
  /**
   * Writable alias of `textBase`. Every text range (the model's and those added by
   * {@link Kernel.mapText}) is aliased at the same distance `textAlias - textBase`.
   */
  readonly textAlias?: bigint;
  /** Start of kernel data ({@link Kernel.allocData}). */
  readonly dataBase?: bigint;
}

/**
 * An x86-64 layout that keeps the model out of the kernel image's 1 GiB
 * (`0xffffffff80000000`..`0xffffffffc0000000`): its text and data sit in the module area
 * (`MODULES_VADDR` is `0xffffffffc0000000` on a KASLR kernel, where ftrace's trampolines
 * are allocated too), and the text alias far below, so a real vmlinux can be mapped at
 * its link addresses and still be reached by rel32 calls from the model's text.
 */
export const MODULE_AREA_LAYOUT_64: Readonly<Required<KernelLayoutOptions>> = Object.freeze({
  textBase: 0xffffffffc0000000n,
  textAlias: 0xfffffeffc0000000n,
  dataBase: 0xffffffffd0000000n,
});

/** A range of text added by {@link Kernel.mapText}. */
export interface TextRange {
  /** Name given when it was mapped. */
  readonly name: string;
  /** First byte. */
  readonly start: bigint;
  /** Bytes. */
  readonly size: number;
}

/** Where the kernel lives in memory. */
export interface KernelLayout {
  /** Start of kernel text (`_stext`). */
  readonly textBase: bigint;
  /** Bytes of kernel text mapped. */
  readonly textSize: number;
  /** Writable alias of the text. */
  readonly textAlias: bigint;
  /** Start of kernel data. */
  readonly dataBase: bigint;
  /** Bytes of kernel data. */
  readonly dataSize: number;
  /** Start of the stacks area. */
  readonly stackBase: bigint;
  /** Bytes per stack. */
  readonly stackSize: number;
  /** Start of user text. */
  readonly userText: bigint;
  /** Bytes of user text. */
  readonly userTextSize: number;
  /** Start of the user stacks area. */
  readonly userStackBase: bigint;
}

const LAYOUT_64 = {
  textBase: 0xffffffff81000000n,
  textAlias: 0xffffffffc0000000n,
  dataBase: 0xffffffff82000000n,
  stackBase: 0xffffc90000000000n,
  userText: 0x400000n,
  userStackBase: 0x7ff000000000n,
};
const LAYOUT_32 = {
  textBase: 0xc1000000n,
  textAlias: 0xf0000000n,
  dataBase: 0xc2000000n,
  stackBase: 0xc4000000n,
  userText: 0x08048000n,
  userStackBase: 0xbf000000n,
};
const STACK_SIZE = 0x4000;
const ENTRY_OFFSET = 0x1000n;
const TEXT_OFFSET = 0x4000n;
const NATIVE_SLOT = 16n;

/** The result of {@link Kernel.call}: the stop and the return value. */
export interface CallResult {
  /** Why the run stopped (`"hlt"` at `kernel_return` when the function returned). */
  readonly stop: StopReason;
  /** True if the function returned to `kernel_return`. */
  readonly returned: boolean;
  /** rax / eax at the stop. */
  readonly value: bigint;
}

/**
 * Word access to the machine's memory for the kernel's C code: page-table lookups with
 * the permission a supervisor write needs (W), so a stray write by a handler to read-only
 * text is a fault (reported as an oops), not a silent change.
 */
const MASK64 = (1n << 64n) - 1n;
const MASK32 = (1n << 32n) - 1n;

class KernelMemory implements WordMemory {
  readonly #m: Machine;
  #page = NaN;
  #generation = -1;
  #pte = 0;
  #lastAddress = 0n; // toNum(0n) is 0 in both modes
  #lastNum = 0;
  #prevAddress = 0n;
  #prevNum = 0;
  constructor(m: Machine) {
    this.#m = m;
  }
  readBytes(address: bigint, length: number): Uint8Array {
    const mem = this.#m.memory;
    const a = this.toNum(address);
    const page = Math.floor(a / PAGE_SIZE);
    const off = a - page * PAGE_SIZE;
    const e = this.#entry(page);
    if (e !== undefined && off + length <= PAGE_SIZE && length >= 0) {
      const frame = mem.frames[Math.floor(e / 16)]!;
      // A loop beats `slice` for the 60-byte pt_regs moves of the 32-bit push.
      if (length > 256) return copyOut(frame, off, length);
      const out = new Uint8Array(length);
      for (let i = 0; i < length; i++) out[i] = frame[off + i]!;
      return out;
    }
    return mem.readBytes(address, length);
  }
  writeBytes(address: bigint, bytes: Uint8Array): void {
    const mem = this.#m.memory;
    const a = this.toNum(address);
    const page = Math.floor(a / PAGE_SIZE);
    const e = this.#entry(page);
    if (
      e !== undefined && (e & Perm.W) !== 0 && a - page * PAGE_SIZE + bytes.length <= PAGE_SIZE &&
      mem.toBigInt(a) === address
    ) {
      // One writable page: the checks below would pass; same store, no bigint walk.
      mem.writeBytesAt(a, bytes);
      return;
    }
    this.#checkWrite(address, bytes.length);
    mem.writeBytes(address, bytes);
  }
  moveBytes(dst: bigint, src: bigint, length: number): void {
    const mem = this.#m.memory;
    const a = this.toNum(src);
    const b = this.toNum(dst);
    const pa = Math.floor(a / PAGE_SIZE);
    const pb = Math.floor(b / PAGE_SIZE);
    const offA = a - pa * PAGE_SIZE;
    const offB = b - pb * PAGE_SIZE;
    const ea = this.#entry(pa);
    const eb = this.#entry(pb);
    if (
      ea !== undefined && eb !== undefined && length > 0 && offA + length <= PAGE_SIZE &&
      offB + length <= PAGE_SIZE && (eb & Perm.W) !== 0 &&
      mem.codeFrames[Math.floor(eb / 16)] === 0 && mem.toBigInt(b) === dst
    ) {
      // What writeBytes(dst, readBytes(src)) does here, without allocating the copy (a
      // typed array costs more than the 60-byte move of the 32-bit push).
      const from = mem.frames[Math.floor(ea / 16)]!;
      const to = mem.frames[Math.floor(eb / 16)]!;
      if (from === to) to.copyWithin(offB, offA, offA + length);
      else for (let i = 0; i < length; i++) to[offB + i] = from[offA + i]!;
      return;
    }
    this.writeBytes(dst, this.readBytes(src, length));
  }
  #checkWrite(address: bigint, length: number): void {
    const mem = this.#m.memory;
    const a = mem.toNumber(address);
    const last = a + length - 1;
    for (let p = Math.floor(a / PAGE_SIZE); p <= Math.floor(last / PAGE_SIZE); p++) {
      const e = mem.pages.get(p);
      if (e === undefined) {
        throw new MemoryError(`Kernel write to unmapped address ${hexAddr(address)}`, address);
      }
      if ((e & Perm.W) === 0) {
        throw new MemoryError(`Kernel write to read-only address ${hexAddr(address)}`, address);
      }
    }
  }
  toNum(address: bigint): number {
    // A trap converts the same few addresses (its pt_regs, its stack) again and again;
    // the 32-bit push's move alternates between two (the frame and its moved copy).
    if (address === this.#lastAddress) return this.#lastNum;
    if (address === this.#prevAddress) {
      const n = this.#prevNum;
      this.#prevAddress = this.#lastAddress;
      this.#prevNum = this.#lastNum;
      this.#lastAddress = address;
      this.#lastNum = n;
      return n;
    }
    const n = this.#m.bitness === 64
      ? Number(BigInt.asIntN(64, address))
      : address >= 0n && address <= MASK32
      ? Number(address)
      : Number(BigInt.asUintN(32, address));
    this.#prevAddress = this.#lastAddress;
    this.#prevNum = this.#lastNum;
    this.#lastAddress = address;
    this.#lastNum = n;
    return n;
  }
  /**
   * The page-table entry of virtual page `page`, remembering the last one while the page
   * table does not change (`mappingGeneration`): a trap reads and writes one pt_regs, on
   * one page, a dozen times.
   */
  #entry(page: number): number | undefined {
    const mem = this.#m.memory;
    if (page === this.#page && mem.mappingGeneration === this.#generation) return this.#pte;
    const e = mem.pages.get(page);
    if (e === undefined) return undefined;
    this.#page = page;
    this.#generation = mem.mappingGeneration;
    this.#pte = e;
    return e;
  }
  readNum(a: number, size: 4 | 8): bigint {
    const mem = this.#m.memory;
    const page = Math.floor(a / PAGE_SIZE);
    const off = a - page * PAGE_SIZE;
    const e = this.#entry(page);
    if (e !== undefined && off + size <= PAGE_SIZE) {
      const v = mem.views[Math.floor(e / 16)]!;
      return size === 8 ? v.getBigUint64(off, true) : BigInt(v.getUint32(off, true));
    }
    const address = mem.toBigInt(a);
    return size === 8 ? mem.read64(address) : mem.read32(address);
  }
  writeNum(a: number, size: 4 | 8, value: bigint): void {
    const mem = this.#m.memory;
    const page = Math.floor(a / PAGE_SIZE);
    const off = a - page * PAGE_SIZE;
    const e = this.#entry(page);
    if (e !== undefined && off + size <= PAGE_SIZE && (e & Perm.W) !== 0) {
      const f = Math.floor(e / 16);
      if (mem.codeFrames[f] === 0) {
        const v = mem.views[f]!;
        if (size === 8) v.setBigUint64(off, value, true); // stores value mod 2^64
        else v.setUint32(off, Number(BigInt.asUintN(32, value)), true);
        return;
      }
    }
    const address = mem.toBigInt(a);
    this.#checkWrite(address, size);
    if (size === 8) mem.write64(address, value);
    else mem.write32(address, value);
  }
  /** Offset of the word in the view {@link KernelMemory.frameView} returned last. */
  frameOffset = 0;
  /**
   * The frame's view under bytes [a, a + size) when they lie in one page and
   * {@link KernelMemory.readNum} (or, with `write`, {@link KernelMemory.writeNum}: a
   * writable page without predecoded code) would take its fast path there; null
   * otherwise. The int3 emulation's number path (emulate.ts) checks every access with it
   * before it changes anything.
   * @param a Internal address.
   * @param size Bytes.
   * @param write Whether the bytes will be written.
   * @returns The view (offset in {@link KernelMemory.frameOffset}), or null.
   */
  frameView(a: number, size: number, write: boolean): DataView | null {
    const mem = this.#m.memory;
    const page = Math.floor(a / PAGE_SIZE);
    const off = a - page * PAGE_SIZE;
    const e = this.#entry(page);
    if (e === undefined || off + size > PAGE_SIZE) return null;
    const f = Math.floor(e / 16);
    if (write && ((e & Perm.W) === 0 || mem.codeFrames[f] !== 0)) return null;
    this.frameOffset = off;
    return mem.views[f]!;
  }
  /**
   * `memory.toNumber(address)`, without its bigint constants on the usual path: the
   * conversion (cached) of {@link KernelMemory.toNum}, then the range checks.
   */
  #number(address: bigint): number {
    const n = this.toNum(address);
    if (this.#m.bitness === 64) {
      if (address >= 0n && address <= MASK64 && n >= CANON_LOW && n < CANON_HIGH) return n;
    } else if (address >= 0n && address <= MASK32) return n;
    return this.#m.memory.toNumber(address); // throws its MemoryError
  }
  readWord(address: bigint, size: 4 | 8): bigint {
    return this.readNum(this.#number(address), size);
  }
  writeWord(address: bigint, size: 4 | 8, value: bigint): void {
    this.writeNum(this.#number(address), size, value);
  }
}

const FAULTS: [number, string][] = [
  [0, "divide error"],
  [6, "invalid opcode"],
  [8, "double fault"],
  [10, "invalid TSS"],
  [11, "segment not present"],
  [12, "stack segment"],
  [13, "general protection fault"],
  [14, "page fault"],
];
const HAS_ERROR_CODE = new Set([8, 10, 11, 12, 13, 14]);

/**
 * The modeled kernel on one machine. Create it with {@link bootKernel}.
 */
export class Kernel {
  /** The machine. */
  readonly machine: Machine;
  /** 64 or 32. */
  readonly bitness: 32 | 64;
  /** The int3 entry variant installed. */
  readonly entry: EntryVariant;
  /** Where everything lives. */
  readonly layout: KernelLayout;
  /** The kernel's C code view of memory (word access, write permission checked). */
  readonly mem: WordMemory;
  /** The int3 handler chain (do_int3 / do_kernel_int3 state and events). */
  readonly dispatch: Int3Dispatch;
  /** text_poke / text_poke_bp and poke_int3_handler. */
  readonly patcher: TextPatcher;
  /** Instruction boundaries of everything loaded as kernel text. */
  readonly code: CodeMap;
  /** Every kernel symbol: natives, entry labels, loaded labels, data. */
  readonly symbols: Map<string, bigint> = new Map();
  /** NMIs handled, per CPU. */
  readonly nmiCount: number[];
  /**
   * What the NMI handler does besides counting (default: scribble 256 bytes of garbage
   * below its own frame, as a C handler's stack usage would).
   */
  nmiHandler: (regs: PtRegs, cpu: number) => void;
  /** Selectors of this bitness. */
  readonly sel: { kernelCs: number; kernelDs: number; userCs: number; userDs: number };
  /** The SMP layer, once {@link Kernel.startSmp} attached it. */
  smp: Smp | null = null;
  #textCursor: bigint;
  #userCursor: bigint;
  #dataCursor: bigint;
  #nativeCursor: bigint;
  #call: NativeCall | null = null;
  readonly #extraText: TextRange[] = [];

  /**
   * Use {@link bootKernel}.
   *
   * @param machine The machine.
   * @param options Boot options.
   */
  constructor(machine: Machine, options: KernelOptions) {
    const bitness = entryBitness(options.entry);
    if (machine.bitness !== bitness) {
      throw new MachineError(
        `Entry ${options.entry} is for an x86-${bitness} kernel, but the machine is ${machine.bitness}-bit`,
      );
    }
    this.machine = machine;
    this.bitness = bitness;
    this.entry = options.entry;
    const base = { ...(bitness === 64 ? LAYOUT_64 : LAYOUT_32) };
    const lo = options.layout ?? {};
    if (lo.textBase !== undefined) base.textBase = lo.textBase;
    if (lo.textAlias !== undefined) base.textAlias = lo.textAlias;
    if (lo.dataBase !== undefined) base.dataBase = lo.dataBase;
    const textSize = options.textSize ?? 0x40000;
    const dataSize = options.dataSize ?? 0x40000;
    const userTextSize = options.userTextSize ?? 0x10000;
    this.layout = { ...base, textSize, dataSize, stackSize: STACK_SIZE, userTextSize };
    this.mem = new KernelMemory(machine);
    this.sel = selectors(bitness);
    const pushMode = options.pushMode ??
      (options.entry === "32-fixup" ? "direct" : defaultPushMode(bitness));
    this.dispatch = new Int3Dispatch(pushMode);
    this.code = new CodeMap(bitness);
    this.nmiCount = machine.cpus.map(() => 0);
    this.nmiHandler = (regs) => {
      const below = regs.address - BigInt(2 * regs.wordSize);
      this.mem.writeBytes(below - 256n, new Uint8Array(256).fill(0xa5));
    };
    const l = this.layout;
    this.#textCursor = l.textBase + TEXT_OFFSET;
    this.#userCursor = l.userText;
    this.#dataCursor = l.dataBase;
    this.#nativeCursor = l.textBase;
    let byPage = NaN;
    let byGeneration = -1;
    let byFrame: Uint8Array = new Uint8Array(0);
    this.patcher = new TextPatcher({
      bitness,
      mem: this.mem,
      code: this.code,
      textBase: l.textBase,
      writeText: (a, b) => machine.memory.writeBytes(this.aliasOf(a), b),
      toNum: (a) => machine.memory.toNumber(a),
      textByte: (num) => {
        const mem = machine.memory;
        const page = Math.floor(num / PAGE_SIZE);
        // One page cached while the page table does not change: batches walk the text.
        if (page !== byPage || mem.mappingGeneration !== byGeneration) {
          const e = mem.pages.get(page);
          if (e === undefined) return -1;
          byPage = page;
          byGeneration = mem.mappingGeneration;
          byFrame = mem.frames[Math.floor(e / 16)]!;
        }
        return byFrame[num - page * PAGE_SIZE]!;
      },
    });
    this.dispatch.pokeInt3Handler = this.patcher.pokeInt3Handler;
    this.dispatch.onOops = () => this.#call?.stop("oops");
    this.#boot(options);
  }

  /** How int3 handlers push on this kernel. */
  get pushMode(): PushMode {
    return this.dispatch.pushMode;
  }

  /** Events recorded so far (SIGTRAPs, oopses, warnings). */
  get events(): readonly KernelEvent[] {
    return this.dispatch.events;
  }

  /** The oopses recorded so far. */
  get oopses(): OopsEvent[] {
    return this.dispatch.events.filter((e): e is OopsEvent => e.kind === "oops");
  }

  #boot(options: KernelOptions): void {
    const m = this.machine;
    const l = this.layout;
    m.map(l.textBase, l.textSize, "rx", { user: false });
    // Unused text is int3 padding, as in a real image: a wild jump traps at once.
    m.memory.writeBytes(l.textBase, new Uint8Array(l.textSize).fill(0xcc));
    m.alias(l.textBase, l.textAlias, l.textSize, "rw", { user: false });
    m.map(l.dataBase, l.dataSize, "rw", { user: false });
    m.map(l.stackBase, STACK_SIZE * 2 * m.cpus.length, "rw", { user: false });
    m.map(l.userText, l.userTextSize, "rx", { user: true });
    m.map(l.userStackBase, STACK_SIZE * m.cpus.length, "rw", { user: true });
    // Natives: the C functions.
    this.bindNative("do_int3", (call) => {
      this.#int3C(call, false);
    });
    this.bindNative("do_kernel_int3", (call) => this.#int3C(call, true));
    this.bindNative("do_nmi", (call) => {
      const regs = new PtRegs(this.mem, call.arg(0), this.bitness);
      this.nmiCount[call.cpu.index]!++;
      this.#runC(call, regs, () => this.nmiHandler(regs, call.cpu.index));
    });
    for (const [vector, name] of FAULTS) {
      const at = this.bindNative(`exc_${vector}`, (call) => this.#die(call, vector, name));
      m.setGate(vector, { handler: at, type: "interrupt", dpl: 0 });
    }
    for (const [name, fn] of Object.entries(options.natives ?? {})) this.bindNative(name, fn);
    // Entry stubs.
    const entryAt = l.textBase + ENTRY_OFFSET;
    const src = options.entrySource ?? int3EntrySource(this.entry);
    if (src.bitness !== this.bitness) {
      throw new MachineError(
        `Entry source ${src.name} is ${src.bitness}-bit, the kernel ${this.bitness}-bit`,
      );
    }
    const nmi = nmiEntrySource(this.bitness);
    const ret = `kernel_return:\n\thlt\n\tjmp kernel_return\n`;
    const all = `${src.text}\n${nmi.text}\n${ret}`;
    const symbols = new Map<string, bigint>([...this.symbols, ...src.symbols, ...nmi.symbols]);
    const out = assemble(all, { bitness: this.bitness, origin: entryAt, symbols });
    if (BigInt(out.bytes.length) > TEXT_OFFSET - ENTRY_OFFSET) {
      throw new MachineError(`Entry code of ${out.bytes.length} bytes does not fit`);
    }
    m.memory.writeBytes(entryAt, out.bytes);
    this.code.add(`entry ${this.entry}`, entryAt, out.bytes);
    for (const [k, v] of out.labels) this.symbols.set(k, v);
    m.setGate(X86_TRAP_BP, { handler: this.symbol("int3"), type: "interrupt", dpl: 3 });
    m.setGate(X86_TRAP_NMI, { handler: this.symbol("nmi"), type: "interrupt", dpl: 0 });
    for (const c of m.cpus) {
      c.tss.sp0 = this.entryStackTop(c.index);
      this.resetCpu(c.index);
    }
  }

  /**
   * `do_int3` (`kernelInt3` false) or `do_kernel_int3` (true, returns the regs' address)
   * as {@link Kernel.#runC} runs them, without a closure per trap.
   */
  #int3C(call: NativeCall, kernelInt3: boolean): bigint | undefined {
    const regs = new PtRegs(this.mem, call.arg(0), this.bitness);
    let out = regs;
    const prev = this.#call;
    this.#call = call;
    try {
      if (kernelInt3) out = this.dispatch.doKernelInt3(regs, call.cpu.index);
      else this.dispatch.doInt3(regs, call.cpu.index);
    } catch (e) {
      this.#memoryOops(call, e, regs);
    } finally {
      this.#call = prev;
    }
    return kernelInt3 ? out.address : undefined;
  }

  /** A fault of kernel C code (a MemoryError) is an oops; anything else goes on up. */
  #memoryOops(call: NativeCall, e: unknown, regs: PtRegs): void {
    if (!(e instanceof MemoryError)) throw e;
    this.dispatch.oops(
      call.cpu.index,
      `BUG: unable to handle page fault for address ${hexAddr(e.address)} in ${call.name}`,
      e.address,
      regs,
    );
  }

  /** Runs kernel C code: a fault in it (a write to read-only text) is an oops. */
  #runC(call: NativeCall, regs: PtRegs, body: () => void): void {
    const prev = this.#call;
    this.#call = call;
    try {
      body();
    } catch (e) {
      this.#memoryOops(call, e, regs);
    } finally {
      this.#call = prev;
    }
  }

  /** A fault in the kernel: oops with the exception frame, stop the CPU. */
  #die(call: NativeCall, vector: number, name: string): void {
    const cpu = call.cpu;
    const ws = BigInt(this.bitness / 8);
    const sp = cpu.getReg(this.bitness === 64 ? "rsp" : "esp");
    const frame = HAS_ERROR_CODE.has(vector) ? sp + ws : sp;
    const ip = this.bitness === 64 ? this.mem.readWord(frame, 8) : this.mem.readWord(frame, 4);
    const err = HAS_ERROR_CODE.has(vector)
      ? this.mem.readWord(sp, this.bitness === 64 ? 8 : 4)
      : -1n;
    let message = `${name}: ${err >= 0n ? `0x${err.toString(16)} ` : ""}at ${hexAddr(ip)}`;
    if (vector === 14) {
      message = `BUG: unable to handle page fault for address ${hexAddr(cpu.cr2)} at ${
        hexAddr(ip)
      }`;
    }
    const wsz = this.bitness === 64 ? 8 : 4;
    const cs = this.mem.readWord(frame + ws, wsz);
    if ((cs & 3n) !== 0n) {
      // A user task faulted: it gets the signal (and, with no other task to run, its CPU
      // stops); the kernel itself is fine.
      const signal = vector === 0 ? "SIGFPE" : vector === 6 ? "SIGILL" : "SIGSEGV";
      this.dispatch.events.push({
        kind: "signal",
        cpu: cpu.index,
        task: this.dispatch.taskName(cpu.index),
        signal,
        address: vector === 14 ? cpu.cr2 : ip,
        message: `${signal} (${name}) at ${hexAddr(ip)}`,
      });
      call.stop(`${signal} (${name}) in user mode at ${hexAddr(ip)}`);
      return;
    }
    // A pseudo pt_regs view whose ip/cs/flags are the hardware frame (the GPR slots are
    // whatever lies below it): enough for the record.
    const regs = new PtRegs(this.mem, frame - (this.bitness === 64 ? 128n : 48n), this.bitness);
    const event: OopsEvent = {
      kind: "oops",
      cpu: cpu.index,
      message,
      address: vector === 14 ? cpu.cr2 : ip,
      regsAddress: regs.address,
      regs: { ip, vector: BigInt(vector), error_code: err, sp },
    };
    this.dispatch.events.push(event);
    call.stop(message);
  }

  /**
   * Binds a TypeScript function as a kernel C function at the next native slot.
   *
   * @param name Its symbol.
   * @param fn The function (kernel calling convention; see the machine's natives).
   * @returns Its address.
   */
  bindNative(name: string, fn: NativeFunction): bigint {
    const existing = this.symbols.get(name);
    const at = existing ?? this.#nativeCursor;
    if (existing === undefined) {
      if (this.#nativeCursor + NATIVE_SLOT > this.layout.textBase + ENTRY_OFFSET) {
        throw new MachineError(`No native slot left for ${name}`);
      }
      this.#nativeCursor += NATIVE_SLOT;
      this.symbols.set(name, at);
    }
    this.machine.bindNative(at, fn, name);
    return at;
  }

  /**
   * A symbol's address.
   *
   * @param name The symbol.
   * @returns Its address.
   * @throws {MachineError} For an unknown symbol.
   */
  symbol(name: string): bigint {
    const v = this.symbols.get(name);
    if (v === undefined) throw new MachineError(`Unknown kernel symbol ${name}`);
    return v;
  }

  /**
   * Assembles AT&T source as kernel text at the next free address (16-byte aligned),
   * resolving against every kernel symbol, and records its labels and instruction
   * boundaries.
   *
   * @param source AT&T text.
   * @param options `name` for messages; `symbols` extra constants; `align` (default 16).
   * @returns The labels defined (also added to {@link Kernel.symbols}).
   */
  loadText(
    source: string,
    options: { name?: string; symbols?: Map<string, bigint>; align?: number } = {},
  ): Map<string, bigint> {
    const align = BigInt(options.align ?? 16);
    const at = (this.#textCursor + align - 1n) / align * align;
    const symbols = new Map([...this.symbols, ...(options.symbols ?? [])]);
    const out = assemble(source, { bitness: this.bitness, origin: at, symbols });
    const end = at + BigInt(out.bytes.length);
    if (end > this.layout.textBase + BigInt(this.layout.textSize)) {
      throw new MachineError(
        `Kernel text of ${out.bytes.length} bytes at ${
          hexAddr(at)
        } does not fit in ${this.layout.textSize} bytes of text`,
      );
    }
    this.machine.memory.writeBytes(at, out.bytes);
    this.code.add(options.name ?? `text@${hexAddr(at)}`, at, out.bytes);
    for (const [k, v] of out.labels) this.symbols.set(k, v);
    this.#textCursor = end;
    return out.labels;
  }

  /**
   * Loads raw machine code as kernel text at the next free address (16-byte aligned) and
   * records its instruction boundaries.
   *
   * @param bytes The code.
   * @param name A name for messages.
   * @returns The address of the first byte.
   */
  loadCode(bytes: Uint8Array, name = "code"): bigint {
    const at = (this.#textCursor + 15n) / 16n * 16n;
    const end = at + BigInt(bytes.length);
    if (end > this.layout.textBase + BigInt(this.layout.textSize)) {
      throw new MachineError(
        `Kernel code of ${bytes.length} bytes at ${
          hexAddr(at)
        } does not fit in ${this.layout.textSize} bytes of text`,
      );
    }
    this.machine.memory.writeBytes(at, bytes);
    this.code.add(name, at, bytes);
    this.#textCursor = end;
    return at;
  }

  /**
   * Assembles AT&T source as user text (CPL 3 code) at the next free user address.
   *
   * @param source AT&T text.
   * @returns Its labels (not added to the kernel's symbols).
   */
  loadUserText(source: string): Map<string, bigint> {
    const at = (this.#userCursor + 15n) / 16n * 16n;
    const out = assemble(source, { bitness: this.bitness, origin: at });
    if (at + BigInt(out.bytes.length) > this.layout.userText + BigInt(this.layout.userTextSize)) {
      throw new MachineError(`User text of ${out.bytes.length} bytes does not fit`);
    }
    this.machine.memory.writeBytes(at, out.bytes);
    this.#userCursor = at + BigInt(out.bytes.length);
    return out.labels;
  }

  /**
   * Allocates zeroed kernel data.
   *
   * @param size Bytes.
   * @param name Optional symbol for it.
   * @param align Alignment (default 8).
   * @returns Its address.
   */
  allocData(size: number, name?: string, align = 8): bigint {
    const a = BigInt(align);
    const at = (this.#dataCursor + a - 1n) / a * a;
    if (at + BigInt(size) > this.layout.dataBase + BigInt(this.layout.dataSize)) {
      throw new MachineError(`Kernel data of ${size} bytes does not fit`);
    }
    this.#dataCursor = at + BigInt(size);
    if (name !== undefined) this.symbols.set(name, at);
    return at;
  }

  /**
   * The writable alias of a text address (where text_poke writes).
   *
   * @param address Kernel text address.
   * @returns The alias address.
   */
  aliasOf(address: bigint): bigint {
    const l = this.layout;
    if (address < l.textBase || address >= l.textBase + BigInt(l.textSize)) {
      if (!this.#extraText.some((r) => address >= r.start && address < r.start + BigInt(r.size))) {
        throw new MemoryError(`${hexAddr(address)} is not kernel text`, address);
      }
    }
    return l.textAlias + (address - l.textBase);
  }

  /** Text ranges mapped by {@link Kernel.mapText}, in the order they were added. */
  get textRanges(): readonly TextRange[] {
    return this.#extraText;
  }

  /**
   * Maps code at its own address as more kernel text, read-only and executable, beside
   * the model's: a writable alias at the model's alias distance (so text_poke and
   * text_poke_bp patch it like the model's text) and a region of the code map (so
   * text_poke_bp checks sites against its instruction boundaries). This is how a real
   * image's `.text` is loaded at its link address.
   *
   * @param address Where the first byte goes (page aligned).
   * @param bytes The code.
   * @param options `name` for messages; `starts`: the instruction starts (1 per start,
   *   one byte per byte of code) when the caller knows them better than a linear sweep
   *   (a walk that resynchronises at symbols).
   * @returns The range.
   * @throws {MachineError} For an empty or unaligned range, `starts` of the wrong size, or
   *   a range (or its alias) that overlaps anything already mapped; checked before
   *   anything is mapped.
   * @example Map code at a chosen address and patch it
   * ```ts
   * import { bootKernel, Machine, MODULE_AREA_LAYOUT_64 } from "@textpoke/textpoke";
   *
   * const k = bootKernel(new Machine({ bitness: 64 }), {
   *   entry: "64-gap",
   *   layout: MODULE_AREA_LAYOUT_64,
   * });
   * k.mapText(0xffffffff81000000n, Uint8Array.of(0x0f, 0x1f, 0x44, 0x00, 0x00, 0xc3));
   * k.runPatch(k.textPokeBp(0xffffffff81000000n, Uint8Array.of(0xe9, 0, 0, 0, 0)));
   * console.log(k.machine.memory.readBytes(0xffffffff81000000n, 1)[0]); // 233
   * ```
   */
  mapText(
    address: bigint,
    bytes: Uint8Array,
    options: { name?: string; starts?: Uint8Array } = {},
  ): TextRange {
    const m = this.machine;
    const mem = m.memory;
    const size = bytes.length;
    const name = options.name ?? `text@${hexAddr(address)}`;
    if (size === 0) throw new MachineError(`Text ${name} at ${hexAddr(address)} is empty`);
    if (BigInt.asUintN(64, address) % BigInt(PAGE_SIZE) !== 0n) {
      throw new MachineError(`Text ${name} at ${hexAddr(address)} is not page aligned`);
    }
    if (options.starts !== undefined && options.starts.length !== size) {
      throw new MachineError(
        `Text ${name}: ${options.starts.length} instruction-start flags for ${size} bytes`,
      );
    }
    const alias = this.layout.textAlias + (address - this.layout.textBase);
    const first = Math.floor(mem.toNumber(address) / PAGE_SIZE);
    const aliasFirst = Math.floor(mem.toNumber(alias) / PAGE_SIZE);
    const pages = Math.ceil(size / PAGE_SIZE);
    for (let i = 0; i < pages; i++) {
      if (mem.pages.has(first + i) || mem.pages.has(aliasFirst + i)) {
        throw new MachineError(
          `Text ${name} at ${hexAddr(address)} (+${size}) or its alias at ${
            hexAddr(alias)
          } overlaps mapped memory`,
        );
      }
    }
    m.map(address, size, "rx", { user: false });
    mem.writeBytes(address, bytes);
    m.alias(address, alias, size, "rw", { user: false });
    const region = this.code.add(name, address, bytes);
    if (options.starts !== undefined) region.starts.set(options.starts);
    const range: TextRange = { name, start: address, size };
    this.#extraText.push(range);
    return range;
  }

  /**
   * Top of a CPU's task stack (where {@link Kernel.call} runs kernel code).
   *
   * @param cpu CPU index.
   * @returns The address just above the stack.
   */
  taskStackTop(cpu: number): bigint {
    return this.layout.stackBase + BigInt(STACK_SIZE * (2 * cpu + 1));
  }

  /**
   * Top of a CPU's entry stack (`tss.sp0`: where a trap from user mode lands).
   *
   * @param cpu CPU index.
   * @returns The address just above the stack.
   */
  entryStackTop(cpu: number): bigint {
    return this.layout.stackBase + BigInt(STACK_SIZE * (2 * cpu + 2));
  }

  /**
   * Top of a CPU's user stack.
   *
   * @param cpu CPU index.
   * @returns The address just above the stack.
   */
  userStackTop(cpu: number): bigint {
    return this.layout.userStackBase + BigInt(STACK_SIZE * (cpu + 1));
  }

  /**
   * Puts a CPU in kernel mode at `kernel_return` (halted state when run), IF set.
   *
   * @param cpu CPU index.
   */
  resetCpu(cpu: number): void {
    const c = this.#cpu(cpu);
    c.cs = this.sel.kernelCs;
    c.ss = this.sel.kernelDs;
    c.rflags = BigInt(X86_EFLAGS_IF | 2);
    c.setReg(this.bitness === 64 ? "rsp" : "esp", this.taskStackTop(cpu));
    c.rip = this.symbol("kernel_return");
  }

  #cpu(i: number): Cpu {
    const c = this.machine.cpus[i];
    if (c === undefined) throw new MachineError(`CPU ${i} does not exist`);
    return c;
  }

  /**
   * Prepares a CPU to call a kernel function: kernel mode, the task stack with
   * `kernel_return` as return address, arguments by the calling convention (x86-64 rdi,
   * rsi, rdx, rcx, r8, r9; x86-32 regparm(3) eax, edx, ecx), IF as asked.
   *
   * @param cpu CPU index.
   * @param fn Function address.
   * @param args Up to 6 (64) / 3 (32) arguments.
   * @param options `interrupts` (default true): IF at the call; `stackTop` to use
   *   another stack top (its alignment decides the trap frame's padding on x86-64).
   */
  prepareCall(
    cpu: number,
    fn: bigint,
    args: readonly bigint[] = [],
    options: { interrupts?: boolean; stackTop?: bigint } = {},
  ): void {
    const c = this.#cpu(cpu);
    const ws = BigInt(this.bitness / 8);
    const top = options.stackTop ?? this.taskStackTop(cpu);
    const sp = top - ws;
    this.mem.writeWord(sp, this.bitness === 64 ? 8 : 4, this.symbol("kernel_return"));
    c.cs = this.sel.kernelCs;
    c.ss = this.sel.kernelDs;
    c.setReg(this.bitness === 64 ? "rsp" : "esp", sp);
    const names = this.bitness === 64
      ? ["rdi", "rsi", "rdx", "rcx", "r8", "r9"]
      : ["eax", "edx", "ecx"];
    if (args.length > names.length) {
      throw new MachineError(`At most ${names.length} arguments in registers`);
    }
    args.forEach((v, i) => c.setReg(names[i]!, v));
    c.rflags = BigInt((options.interrupts ?? true) ? X86_EFLAGS_IF | 2 : 2);
    c.rip = fn;
  }

  /**
   * Calls a kernel function on a CPU and runs that CPU alone until it returns (or stops).
   *
   * @param cpu CPU index.
   * @param fn Function address or symbol.
   * @param args Arguments.
   * @param options Step budget (default 1,000,000) and the {@link Kernel.prepareCall} options.
   * @returns The stop, whether it returned, and rax/eax.
   * @example Call an assembled function
   * ```ts
   * import { bootKernel, Machine } from "@textpoke/textpoke";
   *
   * const k = bootKernel(new Machine({ bitness: 64 }), { entry: "64-gap" });
   * k.loadText("add2:\n lea 2(%rdi), %rax\n ret\n");
   * console.log(k.call(0, "add2", [40n]).value); // 42n
   * ```
   */
  call(
    cpu: number,
    fn: bigint | string,
    args: readonly bigint[] = [],
    options: { maxSteps?: number; interrupts?: boolean; stackTop?: bigint } = {},
  ): CallResult {
    const at = typeof fn === "string" ? this.symbol(fn) : fn;
    this.prepareCall(cpu, at, args, options);
    const stop = this.machine.run({ cpu, maxSteps: options.maxSteps ?? 1_000_000 });
    const c = this.#cpu(cpu);
    const returned = stop.kind === "hlt" && c.rip === this.symbol("kernel_return") + 1n;
    return { stop, returned, value: c.getReg(this.bitness === 64 ? "rax" : "eax") };
  }

  /**
   * Puts a CPU in user mode at `entry` on its user stack, IF set, with tss.sp0 at its
   * entry stack.
   *
   * @param cpu CPU index.
   * @param entry User address.
   */
  enterUser(cpu: number, entry: bigint): void {
    const c = this.#cpu(cpu);
    c.tss.sp0 = this.entryStackTop(cpu);
    c.setReg(this.bitness === 64 ? "rsp" : "esp", this.userStackTop(cpu) - 16n);
    c.ss = this.sel.userDs;
    c.cs = this.sel.userCs;
    c.rflags = BigInt(X86_EFLAGS_IF | 2);
    c.rip = entry;
  }

  /**
   * A pt_regs view at an address.
   *
   * @param address First member.
   * @returns The view.
   */
  regsAt(address: bigint): PtRegs {
    return new PtRegs(this.mem, address, this.bitness);
  }

  /**
   * `text_poke`: write text now through the alias and verify (no other CPU may run it).
   *
   * @param address Text address.
   * @param bytes The bytes.
   */
  textPoke(address: bigint, bytes: Uint8Array): void {
    this.patcher.textPoke(address, bytes);
  }

  /**
   * text_poke_bp of one site as a coroutine (see {@link TextPatcher.textPokeBp}).
   *
   * @param address The instruction.
   * @param bytes The new instruction.
   * @param options `old`, `emulate`.
   * @returns The patcher coroutine.
   */
  textPokeBp(
    address: bigint,
    bytes: Uint8Array,
    options: { old?: Uint8Array; emulate?: Uint8Array } = {},
  ): Generator<PokeStep, void, void> {
    return this.patcher.textPokeBp(address, bytes, options);
  }

  /**
   * The batch form of {@link Kernel.textPokeBp}.
   *
   * @param sites Sorted, non-overlapping sites.
   * @returns The patcher coroutine.
   */
  textPokeBpBatch(sites: readonly PokeSite[]): Generator<PokeStep, void, void> {
    return this.patcher.textPokeBpBatch(sites);
  }

  /**
   * Runs a patcher coroutine to its end with the machine stopped (every store at once,
   * every sync trivially complete).
   *
   * @param gen The coroutine.
   */
  runPatch(gen: Generator<PokeStep, void, void>): void {
    this.patcher.run(gen);
  }

  /**
   * Attaches the SMP layer (scheduler, IPIs, NMIs, kernel threads, fetch coherency) to the
   * kernel's machine. Call once, after loading code.
   *
   * @param options Schedule policy, fetch mode, trace capacity.
   * @returns The SMP layer (also {@link Kernel.smp}).
   */
  startSmp(options: SmpMachineOptions = {}): Smp {
    if (this.smp !== null) throw new MachineError("The SMP layer is already attached");
    this.smp = attachSmp(this.machine, options);
    return this.smp;
  }

  /**
   * The kernel-thread body that performs a patcher coroutine on the SMP machine: each
   * store is a plain store through the writable alias (one scheduling step, two if it
   * straddles a cache line), each sync is `on_each_cpu(do_sync_core, wait=1)`.
   *
   * @param k The thread's context.
   * @param gen The patcher coroutine.
   * @returns The thread body's generator.
   */
  patchThread(k: KernelContext, gen: Generator<PokeStep, void, void>): KernelGen {
    return this.#patchAll(k, [gen], 0);
  }

  /**
   * The body of {@link Kernel.patchThread} and {@link Kernel.spawnPatcher}, one generator
   * deep: each store is `KernelContext.store` spelled out (one step, two when it splits).
   */
  *#patchAll(
    k: KernelContext,
    gens: Iterable<Generator<PokeStep, void, void> | (() => Generator<PokeStep, void, void>)>,
    gap: number,
  ): KernelGen {
    const smp = this.smp;
    const mem = this.machine.memory;
    const delta = mem.toNumber(this.layout.textAlias) - mem.toNumber(this.layout.textBase);
    const sync = (cpu: number) => smp?.serialize(cpu, SerializeReason.SYNC_CORE);
    for (const g of gens) {
      const gen = typeof g === "function" ? g() : g;
      for (let r = gen.next(); !r.done; r = gen.next()) {
        const s = r.value;
        if (s.kind === "store") {
          const at = s.num === s.num ? s.num + delta : mem.toNumber(this.aliasOf(s.address));
          const written = k.storeBegin(at, s.bytes);
          yield STORE_STEP;
          if (written < s.bytes.length) {
            k.storeEnd(at, s.bytes, written);
            yield STORE_STEP;
          }
        } else {
          yield* k.onEachCpu(sync, true);
        }
      }
      for (let i = 0; i < gap; i++) yield* k.step();
    }
  }

  /**
   * Spawns a kernel thread on `cpu` that runs patcher coroutines one after another (with
   * `gap` plain steps between them), while the other CPUs go on executing.
   *
   * @param cpu The patcher's CPU.
   * @param gens The patcher coroutines (or functions making them, called when their turn comes).
   * @param gap Plain steps between two patches (default 0).
   * @returns The thread handle.
   */
  spawnPatcher(
    cpu: number,
    gens: Iterable<Generator<PokeStep, void, void> | (() => Generator<PokeStep, void, void>)>,
    gap = 0,
  ): KernelThread {
    const smp = this.smp;
    if (smp === null) throw new MachineError("Call startSmp() before spawning a patcher");
    return smp.spawn(cpu, (k) => this.#patchAll(k, gens, gap));
  }

  /**
   * The assembler symbols of this kernel's pt_regs layout and selectors (for sources).
   *
   * @returns Name → value.
   */
  asmSymbols(): Map<string, bigint> {
    const s = ptRegsSymbols(this.bitness);
    s.set("__KERNEL_CS", BigInt(this.sel.kernelCs));
    s.set("__KERNEL_DS", BigInt(this.sel.kernelDs));
    s.set("__USER_CS", BigInt(this.sel.userCs));
    s.set("__USER_DS", BigInt(this.sel.userDs));
    return s;
  }
}

/**
 * Boots the modeled kernel on a machine: maps text (read-only, with a writable alias),
 * data, stacks and user space, binds do_int3 / do_kernel_int3 / do_nmi and the fault
 * handlers, assembles the chosen int3 entry and installs it as vector 3 (an interrupt gate
 * of DPL 3, as `int3` is), and the NMI entry as vector 2.
 *
 * @param machine A fresh machine of the entry's bitness.
 * @param options The entry variant and sizes.
 * @returns The kernel.
 * @example An int3 nobody claims is an oops
 * ```ts
 * import { bootKernel, Machine } from "@textpoke/textpoke";
 *
 * const k = bootKernel(new Machine({ bitness: 64 }), { entry: "64-gap" });
 * k.loadText("bp:\n int3\n ret\n");
 * const r = k.call(0, "bp");
 * console.log(r.stop.kind, k.oopses.length); // native 1
 * ```
 */
export function bootKernel(machine: Machine, options: KernelOptions): Kernel {
  return new Kernel(machine, options);
}
