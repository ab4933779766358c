/**
 * One emulated CPU: registers, privilege, per-access-kind TLBs, the predecoded-instruction
 * cache (keyed by physical frame + offset), the step loop, and the host-side register API.
 *
 * Extension points for the SMP model:
 * - {@link Cpu.runSteps} runs up to n steps (one instruction or one event each);
 *   `Machine.stepCpu(i)` wraps it for one step; {@link Cpu.deliverNow} takes an interrupt
 *   (an NMI) immediately; {@link Cpu.raiseInterrupt} queues one for the next boundary
 *   with IF = 1 (sti shadow honored).
 * - Stores that hit a frame holding predecoded code call `memory.onCodeWrite`, which the
 *   machine routes to `Machine.codeWritePolicy` (default: {@link Cpu.invalidateCode} on
 *   every CPU, the `coherent` mode). A `stale` policy defers other CPUs' invalidations
 *   until they serialize: {@link Cpu.serialize} (cpuid, iret) calls `Machine.onSerialize`;
 *   iret also calls `Machine.onIret`, deliveries `Machine.onException`.
 * - {@link Cpu.fetchSlow} is the only place bytes become instructions; a `torn` model can
 *   replace {@link Cpu.decodeHook}.
 * - With {@link Cpu.splitLines} set, stores straddling a 64-byte line go through
 *   `Machine.splitStore`, which may land only their lower part now.
 * - `Slot.atomic` marks locked instructions; `pause` calls `Machine.onPause`.
 *
 * Hot path: the loop reads one attention word, looks the slot up by
 * `ip - fetchPageBase` in the fetch TLB's slot array and runs it with `execute(cpu, slot)`
 * (a switch that calls the hot handlers directly, `slot.fn` otherwise). Each TLB (read,
 * write, fetch) keeps a victim entry: the page it held before its last refill.
 * Arithmetic flags of ADD/SUB/AND/OR/XOR/CMP/TEST are lazy: the operands are recorded and
 * `aluBinary` computes the flags when {@link Cpu.flags} is next read; {@link Cpu.cond}
 * answers Jcc/SETcc/CMOVcc from the recorded operands when it can.
 *
 * Single-step (RFLAGS.TF, Intel SDM Vol. 3, "Single-Step Exception Condition" in the
 * debug chapter, and the table "Priority Among Concurrent Events"): an instruction that
 * starts with TF = 1 is followed, once it completes, by a #DB trap (vector 1, no error
 * code, the saved ip is the next instruction's), delivered in the same step as the
 * instruction. Storing TF = 1 raises an attention bit, so with TF set the loop runs one
 * instruction per step through its checked path and never a block, compiled block or
 * stack run. Details are on {@link Cpu.flags}.
 *
 * @module
 */

import { hexAddr, hexBytes, MachineError } from "../errors.ts";
import { decodeInto } from "../x86/decode.ts";
import { bindHandler, execute, Slot, storeFree, straightLine } from "../x86/execute.ts";
import { aluBinary, aluOut, condition } from "../x86/alu.ts";
import { IF, TF } from "../x86/flags.ts";
import { Op } from "../x86/insn.ts";
import {
  CANON_HIGH,
  CANON_LOW,
  type CpuCore,
  gpFault,
  PfErr,
  Vector,
  X86Fault,
} from "../x86/state.ts";
import { deliver, iret, isDoubleFault, Selector, vectorName } from "./exceptions.ts";
import type { Machine } from "./machine.ts";
import { type Block, buildBlock, CodePage, compileBlock, type StackRun } from "./block.ts";
import { Perm } from "./memory.ts";

const TWO32 = 4294967296;
const PAGE = 4096;

/** Attention bits checked once per step. */
const ATTN_STOP = 1;
const ATTN_HALT = 2;
const ATTN_IRQ = 4;
const ATTN_TRACE = 8;
const ATTN_SHADOW = 16;
const ATTN_UNTIL = 32;
/** The predecoded cache lost slots or the fetch TLB was dropped: a running block stops. */
const ATTN_REFETCH = 64;
/**
 * RFLAGS.TF may be set: every step goes through `service()`, which single-steps.
 * Raised by the flags setter whenever it stores TF = 1 (popf, iret, the register API);
 * dropped by `service` once TF reads 0. While TF is 1 this bit is set, so no block,
 * compiled block or stack run starts (they run only with `attn` 0), and an instruction
 * that sets TF inside a block (popf, iret: never straight-line) ends that block.
 */
const ATTN_STEP = 128;
/** Interpreted runs of a block before it is compiled. */
const BLOCK_HOT = 64;

/** No fetch page: an offset that never indexes a slot (kept a small integer so the
 * field stays a Smi on the hot path). */
const NO_PAGE = 1;
const NO_CODE = new CodePage(0);
const NO_SLOTS: (Slot | undefined)[] = NO_CODE.slots;

/** Access kinds for translation. */
const READ = 0;
const WRITE = 1;
const FETCH = 2;

/** One record of the optional per-CPU trace. */
export interface TraceRecord {
  /** `insn`: an instruction is about to execute; `exception`: delivery (vector);
   * `iret`: iret executed at `ip`; `native`: a bound TypeScript function ran at `ip`. */
  readonly kind: "insn" | "exception" | "iret" | "native";
  /** The CPU index. */
  readonly cpu: number;
  /** The instruction address (for `exception`: the saved ip). */
  readonly ip: bigint;
  /** The vector for `exception`, else -1. */
  readonly vector: number;
}

/** The task-state fields the machine uses: the ring-0 stack for entries from ring 3. */
export interface Tss {
  /** Ring-0 stack pointer (`tss.sp0`, rsp0 / esp0). */
  sp0: bigint;
  /** Ring-0 stack segment (32-bit machines; default `__KERNEL_DS`). */
  ss0: number;
}

interface RegInfo {
  reg: number;
  size: number;
}

const NAMES64 = ["rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi"];
const NAMES32 = ["eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi"];
const NAMES16 = ["ax", "cx", "dx", "bx", "sp", "bp", "si", "di"];
const NAMES8 = ["al", "cl", "dl", "bl", "spl", "bpl", "sil", "dil"];
const SREGS = ["es", "cs", "ss", "ds", "fs", "gs"];

function regTable(bitness: 32 | 64): Map<string, RegInfo> {
  const t = new Map<string, RegInfo>();
  for (let i = 0; i < 8; i++) {
    if (bitness === 64) t.set(NAMES64[i]!, { reg: i, size: 8 });
    t.set(NAMES32[i]!, { reg: i, size: 4 });
    t.set(NAMES16[i]!, { reg: i, size: 2 });
    if (bitness === 64 || i < 4) t.set(NAMES8[i]!, { reg: i, size: 1 });
  }
  ["ah", "ch", "dh", "bh"].forEach((n, i) => t.set(n, { reg: 16 + i, size: 1 }));
  if (bitness === 64) {
    for (let i = 8; i < 16; i++) {
      t.set(`r${i}`, { reg: i, size: 8 });
      t.set(`r${i}d`, { reg: i, size: 4 });
      t.set(`r${i}w`, { reg: i, size: 2 });
      t.set(`r${i}b`, { reg: i, size: 1 });
    }
  }
  return t;
}

/**
 * An emulated x86 CPU of a {@link Machine}. Get one from `machine.cpus[i]`.
 *
 * @example Set registers and read them back
 * ```ts
 * import { Machine } from "./machine.ts";
 * const m = new Machine({ bitness: 64 });
 * const cpu = m.cpus[0]!;
 * cpu.setReg("rax", 0x1122334455667788n);
 * console.log(cpu.getReg("eax").toString(16)); // "55667788"
 * ```
 */
export class Cpu implements CpuCore {
  /** The machine this CPU belongs to. */
  readonly machine: Machine;
  /** Index of this CPU in `machine.cpus`. */
  readonly index: number;
  /** 64 or 32. */
  readonly bitness: 32 | 64;
  /** Low 32 bits of rax..r15 (internal representation; prefer {@link Cpu.getReg}). */
  readonly lo: Int32Array = new Int32Array(16);
  /** High 32 bits of rax..r15. */
  readonly hi: Int32Array = new Int32Array(16);
  /** Materialized RFLAGS; its arithmetic bits are stale while {@link Cpu.lzOp} is set. */
  private fl = 2;
  /** Pending lazy-flag operation (0: none) and its operands. */
  private lzOp = 0;
  private lzSize = 0;
  private lzA = 0;
  private lzAh = 0;
  private lzB = 0;
  private lzBh = 0;
  /** Instruction pointer, internal number form (signed in 64-bit mode); see {@link Cpu.rip}. */
  ip = 0;
  private cplValue = 0;
  /** Segment selectors ES, CS, SS, DS, FS, GS. */
  readonly sreg: Uint16Array = new Uint16Array(6);
  /** FS base (internal number form). */
  fsBase = 0;
  /** GS base (internal number form). */
  gsBase = 0;
  /** High half of the last 64-bit read (executor scratch). */
  hi64 = 0;
  /** CR2: the address of the last page fault (internal number form). */
  cr2Value = 0;
  /** Ring-0 stack for entries from ring 3. */
  readonly tss: Tss;
  /** Index in its block of the slot that faulted in a compiled block (see block.ts). */
  blockFault = 0;
  /** Instructions and events executed by this CPU since creation. */
  steps = 0;
  /**
   * When true (set by the SMP layer with `Machine.splitStore`), stores of 2–8 bytes that
   * straddle a 64-byte line go through `Machine.splitStore`.
   */
  splitLines = false;
  /** Replaceable decoder entry (the SMP `torn` fetch model hooks in here). */
  decodeHook: (out: Slot, bytes: Uint8Array, offset: number, bitness: 32 | 64) => void = decodeInto;

  // Step-loop state.
  private attn = 0;
  private haltedFlag = false;
  private shutdown = false;
  private stopKind = "";
  private stopMessage = "";
  private pendingIrq: number[] = [];
  private traceCap = 0;
  private traceBuf: TraceRecord[] = [];
  private tracePos = 0;
  private untilIp = NaN;

  // TLBs: one entry per access kind (base of the virtual page, frame bytes/view, frame).
  private rBase = NaN;
  private rBytes: Uint8Array = new Uint8Array(0);
  private rView: DataView = new DataView(new ArrayBuffer(0));
  private wBase = NaN;
  private wBytes: Uint8Array = new Uint8Array(0);
  private wView: DataView = new DataView(new ArrayBuffer(0));
  private wFrame = 0;
  private codeFrames: Uint8Array;
  private fBase = NO_PAGE;
  private fSlots: (Slot | undefined)[] = NO_SLOTS;
  private fPage: CodePage = NO_CODE;
  // Victim entries: the page each TLB held before its last refill (code paths alternate
  // between two pages — stack and data, caller and callee text — so a miss usually hits
  // here and swaps instead of translating). Reset with the main entries.
  private rBase2 = NaN;
  private rBytes2: Uint8Array = new Uint8Array(0);
  private rView2: DataView = new DataView(new ArrayBuffer(0));
  private wBase2 = NaN;
  private wBytes2: Uint8Array = new Uint8Array(0);
  private wView2: DataView = new DataView(new ArrayBuffer(0));
  private wFrame2 = 0;
  private fBase2 = NO_PAGE;
  private fSlots2: (Slot | undefined)[] = NO_SLOTS;
  private fPage2: CodePage = NO_CODE;
  /** Predecoded instructions: physical frame → slot per offset (and block epoch). */
  private readonly codePages: Map<number, CodePage> = new Map();
  private readonly regs: Map<string, RegInfo>;
  private readonly fetchBuf = new Uint8Array(32);

  /**
   * Creates CPU `index` of `machine` (the machine does this; not meant to be called
   * directly).
   * @param machine Owner.
   * @param index CPU index.
   */
  constructor(machine: Machine, index: number) {
    this.machine = machine;
    this.index = index;
    this.bitness = machine.bitness;
    this.codeFrames = machine.memory.codeFrames;
    this.regs = regTable(this.bitness);
    const k64 = this.bitness === 64;
    this.sreg[1] = k64 ? Selector.KERNEL_CS_64 : Selector.KERNEL_CS_32;
    const ds = k64 ? Selector.KERNEL_DS_64 : Selector.KERNEL_DS_32;
    this.sreg[0] = this.sreg[2] = this.sreg[3] = ds;
    this.sreg[4] = this.sreg[5] = k64 ? 0 : ds;
    this.tss = { sp0: 0n, ss0: ds };
  }

  /**
   * RFLAGS as a number (bit 1 always set). Reading it computes pending lazy flags.
   *
   * Setting TF (bit 8) turns on single-stepping (Intel SDM Vol. 3, "Single-Step Exception
   * Condition"): every instruction that *starts* with TF = 1 is followed by a #DB trap
   * (vector 1, no error code, saved ip = the next instruction, pushed flags as they are
   * after the instruction) taken in the same step, before any pending interrupt. So:
   * - the instruction that sets TF (popf, iret, or this setter from the host) is not
   *   trapped itself; the next instruction is (an instruction that clears TF is);
   * - delivery of any exception or interrupt clears TF in the live flags but the pushed
   *   copy keeps it, so the handler runs unstepped and its iret resumes stepping (the
   *   instruction after that iret traps);
   * - a fault has priority: the faulting instruction did not complete, the fault is
   *   delivered and no #DB is taken for it (if the handler returns to it with TF = 1, its
   *   re-execution is stepped);
   * - `int3` / `int n` deliver their vector, which clears TF: no #DB follows them (the
   *   SDM's note that debuggers must emulate INT n); the instruction after the handler's
   *   iret traps;
   * - `hlt` completes, then its #DB is taken at once and wakes the CPU (a debug exception
   *   resumes a halted processor, SDM HLT): the saved ip is the instruction after hlt;
   * - a native function bound to an address is one instruction: when TF was 1 as it was
   *   entered, a #DB follows its return (saved ip = the return address), unless it
   *   stopped the run;
   * - a `rep` string instruction traps after each iteration (saved ip = itself until the
   *   count runs out), because the executor runs one iteration per step.
   * Not modelled: DR6 (no debug registers, so DR6.BS is not reported), the one-instruction
   * suppression of #DB after `mov ss` / `pop ss`, and RF.
   */
  get flags(): number {
    if (this.lzOp !== 0) {
      aluBinary(this.lzOp, this.lzSize, this.lzA, this.lzAh, this.lzB, this.lzBh, this.fl);
      this.fl = aluOut[2]!;
      this.lzOp = 0;
    }
    return this.fl;
  }
  set flags(v: number) {
    this.lzOp = 0;
    this.fl = v;
    // TF = 1: step one instruction at a time (see ATTN_STEP); cleared lazily by service().
    if ((v & TF) !== 0) this.attn |= ATTN_STEP;
  }

  /**
   * Evaluates a condition code (Jcc / SETcc / CMOVcc) without materializing pending lazy
   * flags when the pending operation decides it directly: ZF for every lazy op, the
   * unsigned and signed orderings of SUB/CMP (`a < b`), and the conditions of a logic op
   * (CF = OF = 0, so they reduce to ZF and SF). Anything else materializes the flags.
   * @param cc Condition code (0–15).
   * @returns Whether the condition holds.
   */
  cond(cc: number): boolean {
    const op = this.lzOp;
    if (op === 0) return condition(cc, this.fl);
    const k = cc >> 1;
    const a = this.lzA | 0;
    const b = this.lzB | 0;
    const w = this.lzSize === 8;
    const ah = w ? this.lzAh | 0 : 0;
    const bh = w ? this.lzBh | 0 : 0;
    let r: boolean;
    if (op === Op.SUB || op === Op.CMP) {
      if (k === 2) r = ((a ^ b) | (ah ^ bh)) === 0;
      else if (k === 1 || k === 3) {
        // Unsigned a < b (CF), or a <= b (CF | ZF).
        r = ah !== bh ? (ah >>> 0) < (bh >>> 0) : (a >>> 0) < (b >>> 0);
        if (k === 3 && !r) r = ((a ^ b) | (ah ^ bh)) === 0;
      } else if (k === 6 || k === 7) {
        // Signed a < b (SF != OF), or a <= b (ZF | SF != OF).
        if (w) r = ah !== bh ? ah < bh : (a >>> 0) < (b >>> 0);
        else r = a < b;
        if (k === 7 && !r) r = ((a ^ b) | (ah ^ bh)) === 0;
      } else return condition(cc, this.flags);
    } else if (op === Op.AND || op === Op.TEST || op === Op.OR || op === Op.XOR) {
      let lo: number;
      let hi: number;
      if (op === Op.OR) {
        lo = a | b;
        hi = ah | bh;
      } else if (op === Op.XOR) {
        lo = a ^ b;
        hi = ah ^ bh;
      } else {
        lo = a & b;
        hi = ah & bh;
      }
      const zf = (lo | hi) === 0;
      const sf = (w ? hi : lo) < 0;
      // CF = OF = 0 after a logic op.
      if (k === 0 || k === 1) r = false;
      else if (k === 2 || k === 3) r = zf;
      else if (k === 4 || k === 6) r = sf;
      else if (k === 7) r = zf || sf;
      else return condition(cc, this.flags);
    } else if (k === 2) {
      // ADD: the result is zero.
      if (w) {
        const carry = (a >>> 0) + (b >>> 0) > 0xffffffff ? 1 : 0;
        r = ((a + b) | 0) === 0 && ((ah + bh + carry) | 0) === 0;
      } else r = ((a + b) | 0) === 0;
    } else return condition(cc, this.flags);
    return (cc & 1) === 0 ? r : !r;
  }

  /**
   * Defers the flags of an ADD/SUB/AND/OR/XOR/CMP/TEST until they are read.
   * @param op Operation.
   * @param size 4 or 8.
   * @param aLo First operand, low half.
   * @param aHi First operand, high half.
   * @param bLo Second operand, low half.
   * @param bHi Second operand, high half.
   */
  lazyFlags(op: number, size: number, aLo: number, aHi: number, bLo: number, bHi: number): void {
    // A pending op needs no materializing: the new op redefines all six arithmetic flags.
    this.lzOp = op;
    this.lzSize = size;
    this.lzA = aLo;
    this.lzAh = aHi;
    this.lzB = bLo;
    this.lzBh = bHi;
  }

  // -------------------------------------------------------------------------------------
  // Host-side register API

  /** Looks a general register name up, or throws a MachineError. */
  private info(name: string): RegInfo {
    const r = this.regs.get(name.toLowerCase());
    if (r === undefined) {
      throw new MachineError(
        `Unknown register ${JSON.stringify(name)} for a ${this.bitness}-bit CPU`,
      );
    }
    return r;
  }

  /**
   * Reads a register by name: general registers of every size (`rax`, `eax`, `ax`, `al`,
   * `ah`, `r8d`...), `rip`/`eip`, `rflags`/`eflags`, segment registers, `cr2`,
   * `fsbase`/`gsbase`.
   * @param name Register name (case-insensitive).
   * @returns The value, unsigned.
   * @throws MachineError for an unknown name (or a 64-bit name on a 32-bit CPU).
   */
  getReg(name: string): bigint {
    const n = name.toLowerCase();
    switch (n) {
      case "rip":
      case "eip":
        if (n === "rip" && this.bitness === 32) break;
        return this.rip;
      case "rflags":
      case "eflags":
        if (n === "rflags" && this.bitness === 32) break;
        return BigInt(this.flags >>> 0);
      case "cr2":
        return this.cr2;
      case "fsbase":
        return this.machine.memory.toBigInt(this.fsBase);
      case "gsbase":
        return this.machine.memory.toBigInt(this.gsBase);
    }
    const si = SREGS.indexOf(n);
    if (si >= 0) return BigInt(this.sreg[si]!);
    const { reg, size } = this.info(n);
    if (reg >= 16) return BigInt((this.lo[reg - 16]! >> 8) & 0xff);
    const lo = BigInt(this.lo[reg]! >>> 0);
    if (size === 8) return (BigInt(this.hi[reg]! >>> 0) << 32n) | lo;
    return lo & ((1n << BigInt(size * 8)) - 1n);
  }

  /**
   * Writes a register by name (x86 rules: 32-bit writes zero the upper half, 8/16-bit
   * writes preserve the rest).
   * @param name Register name, as for {@link Cpu.getReg} (not `cr2`).
   * @param value New value (truncated to the register's width).
   * @throws MachineError for an unknown name.
   */
  setReg(name: string, value: bigint | number): void {
    const v = BigInt.asUintN(64, BigInt(value));
    const n = name.toLowerCase();
    switch (n) {
      case "rip":
      case "eip":
        if (n === "rip" && this.bitness === 32) break;
        this.rip = v;
        return;
      case "rflags":
      case "eflags":
        if (n === "rflags" && this.bitness === 32) break;
        this.flags = (Number(v & 0xffffffffn) | 2) | 0;
        this.updateAttn();
        return;
      case "fsbase":
        this.fsBase = this.machine.memory.toNumber(v);
        return;
      case "gsbase":
        this.gsBase = this.machine.memory.toNumber(v);
        return;
    }
    const si = SREGS.indexOf(n);
    if (si >= 0) {
      if (si === 1) this.setCs(Number(v & 0xffffn));
      else this.sreg[si] = Number(v & 0xffffn);
      return;
    }
    const { reg, size } = this.info(n);
    const lo = Number(v & 0xffffffffn) | 0;
    if (reg >= 16) {
      this.lo[reg - 16] = (this.lo[reg - 16]! & ~0xff00) | ((lo & 0xff) << 8);
    } else if (size === 8) {
      this.lo[reg] = lo;
      this.hi[reg] = Number(v >> 32n) | 0;
    } else if (size === 4) {
      this.lo[reg] = lo;
      this.hi[reg] = 0;
    } else if (size === 2) {
      this.lo[reg] = (this.lo[reg]! & ~0xffff) | (lo & 0xffff);
    } else {
      this.lo[reg] = (this.lo[reg]! & ~0xff) | (lo & 0xff);
    }
  }

  /** The instruction pointer (unsigned). Setting it also ends a hlt or shutdown state. */
  get rip(): bigint {
    return this.machine.memory.toBigInt(this.ip);
  }
  set rip(value: bigint) {
    this.ip = this.machine.memory.toNumber(BigInt.asUintN(this.bitness, value));
    this.haltedFlag = false;
    this.shutdown = false;
    this.updateAttn();
  }

  /** RFLAGS / EFLAGS as a bigint. */
  get rflags(): bigint {
    return BigInt(this.flags >>> 0);
  }
  set rflags(value: bigint) {
    this.setReg("eflags", value);
  }

  /** CR2, the last page-fault address (unsigned). */
  get cr2(): bigint {
    return this.machine.memory.toBigInt(this.cr2Value);
  }

  /** Code segment selector; CPL follows its low two bits. */
  get cs(): number {
    return this.sreg[1]!;
  }
  set cs(v: number) {
    this.setCs(v);
  }
  /** Stack segment selector. */
  get ss(): number {
    return this.sreg[2]!;
  }
  set ss(v: number) {
    this.sreg[2] = v;
  }
  /** DS selector. */
  get ds(): number {
    return this.sreg[3]!;
  }
  set ds(v: number) {
    this.sreg[3] = v;
  }
  /** ES selector. */
  get es(): number {
    return this.sreg[0]!;
  }
  set es(v: number) {
    this.sreg[0] = v;
  }
  /** FS selector. */
  get fs(): number {
    return this.sreg[4]!;
  }
  set fs(v: number) {
    this.sreg[4] = v;
  }
  /** GS selector. */
  get gs(): number {
    return this.sreg[5]!;
  }
  set gs(v: number) {
    this.sreg[5] = v;
  }

  /** Current privilege level: `cs & 3` (change it by setting {@link Cpu.cs}). */
  get cpl(): number {
    return this.cplValue;
  }

  /** Number of external interrupts queued by {@link Cpu.raiseInterrupt}, not yet taken. */
  get pendingInterrupts(): number {
    return this.pendingIrq.length;
  }

  /** True while the CPU sits in hlt waiting for an interrupt. */
  get halted(): boolean {
    return this.haltedFlag;
  }

  /**
   * Loads CS (flat model: only the selector); CPL becomes `cs & 3`, TLBs are flushed when
   * it changes.
   * @param selector The selector.
   */
  setCs(selector: number): void {
    this.sreg[1] = selector & 0xffff;
    const cpl = selector & 3;
    if (cpl !== this.cplValue) {
      this.cplValue = cpl;
      this.flushTlb();
    }
  }

  /**
   * The stack pointer as an internal address (signed in 64-bit mode).
   * @returns rsp / esp.
   */
  spValue(): number {
    return this.bitness === 64 ? this.hi[4]! * TWO32 + (this.lo[4]! >>> 0) : this.lo[4]! >>> 0;
  }

  /**
   * Sets the stack pointer from an internal address.
   * @param a New rsp / esp.
   */
  setSpValue(a: number): void {
    if (this.bitness === 64) this.hi[4] = Math.floor(a / TWO32);
    else this.hi[4] = 0;
    this.lo[4] = a | 0;
  }

  /**
   * Queues an external interrupt, delivered (as an interrupt, EXT = 1) at the next
   * instruction boundary with IF = 1; wakes a halted CPU.
   * @param vector Vector 32–255 (0–31 are accepted too).
   */
  raiseInterrupt(vector: number): void {
    if (!Number.isInteger(vector) || vector < 0 || vector > 255) {
      throw new MachineError(`Interrupt vector ${vector} is outside 0–255`);
    }
    this.pendingIrq.push(vector);
    this.updateAttn();
  }

  /**
   * Delivers an interrupt now, regardless of IF (an NMI, or an event the SMP layer
   * decided to take at this instruction boundary), with the double/triple-fault rules;
   * wakes a halted CPU. Counts as the caller's step.
   * @param vector Vector 0–255.
   */
  deliverNow(vector: number): void {
    if (!Number.isInteger(vector) || vector < 0 || vector > 255) {
      throw new MachineError(`Interrupt vector ${vector} is outside 0–255`);
    }
    this.haltedFlag = false;
    this.updateAttn();
    try {
      deliver(this, vector, -1, this.ip, false);
    } catch (e) {
      if (!(e instanceof X86Fault)) throw e;
      this.exception(e);
    }
    this.steps++;
  }

  // -------------------------------------------------------------------------------------
  // Trace

  /**
   * Turns on the trace ring buffer (instructions, exception entries, irets, natives).
   * @param capacity Records kept (oldest dropped first), 1 to 2^24.
   */
  enableTrace(capacity = 4096): void {
    if (!Number.isInteger(capacity) || capacity < 1 || capacity > 1 << 24) {
      throw new MachineError(`Trace capacity must be an integer in 1..16777216, not ${capacity}`);
    }
    this.traceCap = capacity;
    this.traceBuf = [];
    this.tracePos = 0;
    this.updateAttn();
  }

  /** Turns the trace off and drops its records. */
  disableTrace(): void {
    this.traceCap = 0;
    this.traceBuf = [];
    this.updateAttn();
  }

  /**
   * The trace records, oldest first.
   * @returns Plain records.
   */
  traceRecords(): TraceRecord[] {
    if (this.traceBuf.length < this.traceCap) return this.traceBuf.slice();
    return this.traceBuf.slice(this.tracePos).concat(this.traceBuf.slice(0, this.tracePos));
  }

  /**
   * Appends a record when tracing is on (used by delivery, iret and natives).
   * @param kind Record kind.
   * @param ip Internal address.
   * @param vector Vector or -1.
   */
  traceEvent(kind: TraceRecord["kind"], ip: number, vector: number): void {
    if (this.traceCap === 0) return;
    const r: TraceRecord = { kind, cpu: this.index, ip: this.machine.memory.toBigInt(ip), vector };
    if (this.traceBuf.length < this.traceCap) this.traceBuf.push(r);
    else {
      this.traceBuf[this.tracePos] = r;
      this.tracePos = (this.tracePos + 1) % this.traceCap;
    }
  }

  // -------------------------------------------------------------------------------------
  // Caches

  /** Drops the TLB entries (after a mapping or CPL change). */
  flushTlb(): void {
    this.rBase = NaN;
    this.wBase = NaN;
    this.rBase2 = NaN;
    this.wBase2 = NaN;
    this.dropFetchTlb();
    this.codeFrames = this.machine.memory.codeFrames;
  }

  /**
   * Invalidates predecoded instructions overlapping bytes [offset, offset+length) of a
   * physical frame, including instructions that start up to 14 bytes earlier.
   * @param frame Physical frame number.
   * @param offset Offset in the frame.
   * @param length Number of bytes written.
   */
  invalidateCode(frame: number, offset: number, length: number): void {
    const page = this.codePages.get(frame);
    if (page === undefined) return;
    const slots = page.slots;
    const end = Math.min(PAGE, offset + length);
    let removed = false;
    for (let i = Math.max(0, offset - 14); i < end; i++) {
      const s = slots[i];
      if (s !== undefined && i + s.len > offset) {
        slots[i] = undefined;
        removed = true;
      }
    }
    if (removed) {
      // Blocks of this frame are stale, and a block running now must stop.
      page.epoch++;
      this.attn |= ATTN_REFETCH;
    }
  }

  /**
   * The block cached for the instruction at `address` (diagnostics: see block.ts), if it
   * is current: its length in instructions, whether it runs compiled and whether it is a
   * loop body (its last instruction branches back to its first; compiled, such a block
   * runs its iterations itself).
   * @param address Instruction address.
   * @returns The block's shape, or null when none is cached or it is stale.
   */
  blockAt(address: bigint): { length: number; compiled: boolean; loops: boolean } | null {
    const mem = this.machine.memory;
    const a = mem.toNumber(address);
    const e = mem.entry(a);
    if (e === undefined) return null;
    const page = this.codePages.get(Math.floor(e / 16));
    const b = page?.slots[((a % PAGE) + PAGE) % PAGE]?.block as Block | null | undefined;
    if (b === null || b === undefined || b.page !== page || b.epoch !== page.epoch) return null;
    return { length: b.slots.length, compiled: b.fn !== null, loops: b.loops };
  }

  /** Drops every predecoded instruction of this CPU. */
  flushCode(): void {
    for (const page of this.codePages.values()) page.epoch++;
    this.codePages.clear();
    this.dropFetchTlb();
  }

  /** Drops both fetch TLB entries (a running block stops). */
  private dropFetchTlb(): void {
    this.fBase = NO_PAGE;
    this.fSlots = NO_SLOTS;
    this.fPage = NO_CODE;
    this.fBase2 = NO_PAGE;
    this.fSlots2 = NO_SLOTS;
    this.fPage2 = NO_CODE;
    this.attn |= ATTN_REFETCH;
  }

  /**
   * Drops the predecoded instructions of one frame (the frame was freed).
   * @param frame Physical frame number.
   */
  dropFrame(frame: number): void {
    const page = this.codePages.get(frame);
    if (page === undefined) return;
    page.epoch++;
    this.codePages.delete(frame);
    this.dropFetchTlb();
  }

  // -------------------------------------------------------------------------------------
  // Translation and memory accesses (CpuCore)

  /** Translates; throws #PF. Returns the page-table entry. */
  private translate(a: number, kind: number, user: boolean): number {
    const e = this.machine.memory.pages.get(Math.floor(a / PAGE));
    const code = (kind === WRITE ? PfErr.W : 0) | (user ? PfErr.U : 0) |
      (kind === FETCH ? PfErr.ID : 0);
    if (e === undefined) throw new X86Fault(Vector.PF, code, a, "page not present");
    const p = e & 15;
    if (
      (user && (p & Perm.U) === 0) || (kind === WRITE && (p & Perm.W) === 0) ||
      (kind === FETCH && (p & Perm.X) === 0)
    ) {
      throw new X86Fault(Vector.PF, code | PfErr.P, a, "page protection violation");
    }
    return e;
  }

  /** a + k with the mode's wrap-around / canonical rule. */
  private next(a: number, k: number): number {
    const n = a + k;
    if (this.bitness === 32) return n % TWO32;
    if (n >= CANON_HIGH) throw gpFault(0, "access runs into non-canonical addresses");
    return n;
  }

  /** TLB miss or page-crossing read: translate (#PF), refill the read TLB, read. */
  private readSlow(a: number, size: number): number {
    const o2 = a - this.rBase2;
    if (o2 >= 0 && o2 <= PAGE - size) {
      // Victim hit: swap the two entries.
      const base = this.rBase2;
      const bytes = this.rBytes2;
      const view = this.rView2;
      this.rBase2 = this.rBase;
      this.rBytes2 = this.rBytes;
      this.rView2 = this.rView;
      this.rBase = base;
      this.rBytes = bytes;
      this.rView = view;
      if (size === 1) return bytes[o2]!;
      if (size === 2) return view.getUint16(o2, true);
      if (size === 4) return view.getInt32(o2, true);
      this.hi64 = view.getInt32(o2 + 4, true);
      return view.getInt32(o2, true);
    }
    const e = this.translate(a, READ, this.cplValue === 3);
    const f = Math.floor(e / 16);
    const mem = this.machine.memory;
    const base = a - (((a % PAGE) + PAGE) % PAGE);
    this.rBase2 = this.rBase;
    this.rBytes2 = this.rBytes;
    this.rView2 = this.rView;
    this.rBase = base;
    this.rBytes = mem.frames[f]!;
    this.rView = mem.views[f]!;
    const o = a - base;
    if (o + size <= PAGE) {
      if (size === 1) return this.rBytes[o]!;
      if (size === 2) return this.rView.getUint16(o, true);
      if (size === 4) return this.rView.getInt32(o, true);
      this.hi64 = this.rView.getInt32(o + 4, true);
      return this.rView.getInt32(o, true);
    }
    // Crosses a page: translate the second page before reading anything.
    const b = this.next(a, PAGE - o);
    const e2 = this.translate(b, READ, this.cplValue === 3);
    const f2 = mem.frames[Math.floor(e2 / 16)]!;
    const f1 = this.rBytes;
    const bytes = this.fetchBuf;
    for (let k = 0; k < size; k++) bytes[k] = o + k < PAGE ? f1[o + k]! : f2[o + k - PAGE]!;
    const lo = bytes[0]! | (bytes[1]! << 8) | (bytes[2]! << 16) | (bytes[3]! << 24);
    if (size === 2) return lo & 0xffff;
    if (size === 4) return lo;
    this.hi64 = bytes[4]! | (bytes[5]! << 8) | (bytes[6]! << 16) | (bytes[7]! << 24);
    return lo;
  }

  /**
   * A store that straddles a 64-byte line on a machine with a split-store hook: asks the
   * hook how many leading bytes land now and stores only those (the SMP layer commits
   * the rest). Locked instructions are identified by the slot at the current ip.
   */
  private writeLineSplit(a: number, size: number, lo: number, hi: number): void {
    const hook = this.machine.splitStore;
    if (hook === null) {
      for (let k = 0; k < size; k++) {
        this.writeByteNow(this.next(a, k), (k < 4 ? lo >>> (8 * k) : hi >>> (8 * (k - 4))) & 0xff);
      }
      return;
    }
    const bytes = new Uint8Array(size);
    for (let k = 0; k < size; k++) {
      bytes[k] = (k < 4 ? lo >>> (8 * k) : hi >>> (8 * (k - 4))) & 0xff;
    }
    const off = this.ip - this.fBase;
    const slot = off >= 0 && off < PAGE ? this.fSlots[off] : undefined;
    const n = Math.min(size, Math.max(0, hook(this, a, bytes, slot?.atomic ?? false)));
    for (let k = 0; k < n; k++) this.writeByteNow(this.next(a, k), bytes[k]!);
  }

  /** Stores one byte through the translation (no line-split check). */
  private writeByteNow(a: number, v: number): void {
    const o = a - this.wBase;
    if (o >= 0 && o < PAGE) {
      if (this.codeFrames[this.wFrame] !== 0) this.codeStore(this.wFrame, o, 1);
      this.wBytes[o] = v;
      return;
    }
    this.writeSlow(a, 1, v, 0);
  }

  /** TLB miss or page-crossing write: translate both pages first, then store. */
  private writeSlow(a: number, size: number, lo: number, hi: number): void {
    if (size > 1 && this.splitLines && ((a % 64) + 64) % 64 > 64 - size) {
      // Check the whole access first, so a faulting store stores nothing.
      this.translate(a, WRITE, this.cplValue === 3);
      this.translate(this.next(a, size - 1), WRITE, this.cplValue === 3);
      this.writeLineSplit(a, size, lo, hi);
      return;
    }
    const o2 = a - this.wBase2;
    if (o2 >= 0 && o2 <= PAGE - size) {
      // Victim hit: swap the two entries, then store as the fast path does.
      const base = this.wBase2;
      const bytes = this.wBytes2;
      const view = this.wView2;
      const frame = this.wFrame2;
      this.wBase2 = this.wBase;
      this.wBytes2 = this.wBytes;
      this.wView2 = this.wView;
      this.wFrame2 = this.wFrame;
      this.wBase = base;
      this.wBytes = bytes;
      this.wView = view;
      this.wFrame = frame;
      this.codeFrames = this.machine.memory.codeFrames;
      this.storeFast(o2, size, lo, hi);
      return;
    }
    const user = this.cplValue === 3;
    const e = this.translate(a, WRITE, user);
    const mem = this.machine.memory;
    const f = Math.floor(e / 16);
    const base = a - (((a % PAGE) + PAGE) % PAGE);
    const o = a - base;
    if (o + size <= PAGE) {
      this.wBase2 = this.wBase;
      this.wBytes2 = this.wBytes;
      this.wView2 = this.wView;
      this.wFrame2 = this.wFrame;
      this.wBase = base;
      this.wBytes = mem.frames[f]!;
      this.wView = mem.views[f]!;
      this.wFrame = f;
      this.codeFrames = mem.codeFrames;
      this.storeFast(o, size, lo, hi);
      return;
    }
    const b = this.next(a, PAGE - o);
    const e2 = this.translate(b, WRITE, user);
    const f2 = Math.floor(e2 / 16);
    this.storeSplit(f, o, f2, size, lo, hi);
  }

  /** Stores at offset `o` of the write-TLB frame and reports code stores. */
  private storeFast(o: number, size: number, lo: number, hi: number): void {
    const v = this.wView;
    if (this.codeFrames[this.wFrame] !== 0) this.codeStore(this.wFrame, o, size);
    if (size === 1) this.wBytes[o] = lo;
    else if (size === 2) v.setUint16(o, lo, true);
    else if (size === 4) v.setInt32(o, lo, true);
    else {
      v.setInt32(o, lo, true);
      v.setInt32(o + 4, hi, true);
    }
  }

  /** A store split over frames f1 (from offset o) and f2 (from 0). */
  private storeSplit(f1: number, o: number, f2: number, size: number, lo: number, hi: number) {
    const mem = this.machine.memory;
    const b1 = mem.frames[f1]!;
    const b2 = mem.frames[f2]!;
    const n1 = PAGE - o;
    if (mem.codeFrames[f1] !== 0) this.codeStore(f1, o, n1);
    if (mem.codeFrames[f2] !== 0) this.codeStore(f2, 0, size - n1);
    for (let k = 0; k < size; k++) {
      const byte = (k < 4 ? lo >>> (8 * k) : hi >>> (8 * (k - 4))) & 0xff;
      if (o + k < PAGE) b1[o + k] = byte;
      else b2[o + k - PAGE] = byte;
    }
  }

  /** Reports a store to a frame holding predecoded code (before the bytes change). */
  private codeStore(frame: number, offset: number, length: number): void {
    this.machine.memory.onCodeWrite(frame, offset, length, this.index);
  }

  /** Reads a byte. @param a Address. @returns The byte. */
  read8(a: number): number {
    const o = a - this.rBase;
    if (o >= 0 && o < PAGE) return this.rBytes[o]!;
    return this.readSlow(a, 1);
  }
  /** Reads 2 bytes. @param a Address. @returns The value. */
  read16(a: number): number {
    const o = a - this.rBase;
    if (o >= 0 && o <= PAGE - 2) return this.rView.getUint16(o, true);
    return this.readSlow(a, 2);
  }
  /** Reads 4 bytes. @param a Address. @returns The value as int32. */
  read32(a: number): number {
    const o = a - this.rBase;
    if (o >= 0 && o <= PAGE - 4) return this.rView.getInt32(o, true);
    return this.readSlow(a, 4);
  }
  /** Reads 8 bytes. @param a Address. @returns The low int32 (high in hi64). */
  read64(a: number): number {
    const o = a - this.rBase;
    if (o >= 0 && o <= PAGE - 8) {
      this.hi64 = this.rView.getInt32(o + 4, true);
      return this.rView.getInt32(o, true);
    }
    return this.readSlow(a, 8);
  }
  /** Writes a byte. @param a Address. @param v Value. */
  write8(a: number, v: number): void {
    const o = a - this.wBase;
    if (o >= 0 && o < PAGE) {
      if (this.codeFrames[this.wFrame] !== 0) this.codeStore(this.wFrame, o, 1);
      this.wBytes[o] = v;
      return;
    }
    this.writeSlow(a, 1, v, 0);
  }
  /** Writes 2 bytes. @param a Address. @param v Value. */
  write16(a: number, v: number): void {
    const o = a - this.wBase;
    if (o >= 0 && o <= PAGE - 2) {
      if ((o & 63) > 62 && this.splitLines) {
        this.writeLineSplit(a, 2, v, 0);
        return;
      }
      if (this.codeFrames[this.wFrame] !== 0) this.codeStore(this.wFrame, o, 2);
      this.wView.setUint16(o, v, true);
      return;
    }
    this.writeSlow(a, 2, v, 0);
  }
  /** Writes 4 bytes. @param a Address. @param v Value. */
  write32(a: number, v: number): void {
    const o = a - this.wBase;
    if (o >= 0 && o <= PAGE - 4) {
      if ((o & 63) > 60 && this.splitLines) {
        this.writeLineSplit(a, 4, v, 0);
        return;
      }
      if (this.codeFrames[this.wFrame] !== 0) this.codeStore(this.wFrame, o, 4);
      this.wView.setInt32(o, v, true);
      return;
    }
    this.writeSlow(a, 4, v, 0);
  }
  /** Writes 8 bytes. @param a Address. @param lo Low half. @param hi High half. */
  write64(a: number, lo: number, hi: number): void {
    const o = a - this.wBase;
    if (o >= 0 && o <= PAGE - 8) {
      if ((o & 63) > 56 && this.splitLines) {
        this.writeLineSplit(a, 8, lo, hi);
        return;
      }
      if (this.codeFrames[this.wFrame] !== 0) this.codeStore(this.wFrame, o, 8);
      this.wView.setInt32(o, lo, true);
      this.wView.setInt32(o + 4, hi, true);
      return;
    }
    this.writeSlow(a, 8, lo, hi);
  }

  /**
   * Runs a compiled block's run of pushes (see {@link StackRun}: of a register other than
   * the stack pointer, of an immediate, or of a word at the stack pointer +
   * displacement) in one go — when that is sure to do exactly what running them one by
   * one would: every one is at the mode's stack size, every store lands in the page the
   * write TLB holds now and every load in a page the read TLB holds (so none can fault),
   * the written frame holds no predecoded code and stores are not split at cache lines
   * (so none reports anything or raises attention). Otherwise it changes nothing and
   * returns false, and the block runs the instructions one by one. Called by compiled
   * blocks only (their generated code, like their `attn` checks).
   * @param run The run.
   * @returns Whether the pushes ran.
   */
  private stackPushRun(run: StackRun): boolean {
    if (this.splitLines || this.codeFrames[this.wFrame] !== 0) return false;
    const is64 = this.bitness === 64;
    if (!(is64 ? run.ok64 : run.ok32)) return false;
    const size = is64 ? 8 : 4;
    const count = run.count;
    const ops = run.ops;
    const lo = this.lo;
    const hi = this.hi;
    const top = is64 ? hi[4]! * TWO32 + (lo[4]! >>> 0) : lo[4]! >>> 0;
    const low = top - size * count;
    const o = low - this.wBase;
    if (!(o >= 0 && o + size * count <= PAGE)) return false;
    if (run.hasMem) {
      // Each load at sp + disp (sp before its push) from a page the read TLB holds.
      let sp = top;
      for (let j = 0; j < count; j++) {
        if (ops[3 * j] === 2) {
          const a = is64 ? sp + ops[3 * j + 1]! : (sp + ops[3 * j + 1]!) >>> 0;
          const r1 = a - this.rBase;
          const r2 = a - this.rBase2;
          if (!((r1 >= 0 && r1 <= PAGE - size) || (r2 >= 0 && r2 <= PAGE - size))) return false;
        }
        sp -= size;
      }
    }
    const v = this.wView;
    let off = (o + size * count) | 0; // an int32 offset keeps the DataView stores fast
    let sp = top;
    for (let j = 0; j < count; j++) {
      off -= size;
      // Separate branches: a conditional expression choosing the value is many times
      // slower here (V8 12).
      const k = ops[3 * j]!;
      if (k === 0) {
        const r = ops[3 * j + 1]!;
        v.setInt32(off, lo[r]!, true);
        if (is64) v.setInt32(off + 4, hi[r]!, true);
      } else if (k === 1) {
        v.setInt32(off, ops[3 * j + 1]!, true);
        if (is64) v.setInt32(off + 4, ops[3 * j + 2]!, true);
      } else {
        const a = is64 ? sp + ops[3 * j + 1]! : (sp + ops[3 * j + 1]!) >>> 0;
        let rv = this.rView;
        let ro = a - this.rBase;
        if (!(ro >= 0 && ro <= PAGE - size)) {
          rv = this.rView2;
          ro = a - this.rBase2;
        }
        ro = ro | 0;
        const x = rv.getInt32(ro, true);
        if (is64) {
          const y = rv.getInt32(ro + 4, true);
          v.setInt32(off, x, true);
          v.setInt32(off + 4, y, true);
        } else v.setInt32(off, x, true);
      }
      sp -= size;
    }
    this.endStackRun(low, run.len);
    return true;
  }

  /**
   * Runs a compiled block's run of pops into registers other than the stack pointer (see
   * {@link StackRun}) in one go — when every one is at the mode's stack size and every
   * load comes from a page one of the read TLB's entries holds (so none can fault).
   * Otherwise it changes nothing and returns false, and the block runs the instructions
   * one by one. Called by compiled blocks only.
   * @param run The run.
   * @returns Whether the pops ran.
   */
  private stackPopRun(run: StackRun): boolean {
    const is64 = this.bitness === 64;
    if (!(is64 ? run.ok64 : run.ok32)) return false;
    const size = is64 ? 8 : 4;
    const count = run.count;
    const ops = run.ops;
    const lo = this.lo;
    const hi = this.hi;
    const top = is64 ? hi[4]! * TWO32 + (lo[4]! >>> 0) : lo[4]! >>> 0;
    let v = this.rView;
    let o = top - this.rBase;
    if (!(o >= 0 && o + size * count <= PAGE)) {
      o = top - this.rBase2;
      if (!(o >= 0 && o + size * count <= PAGE)) return false;
      v = this.rView2;
    }
    o = o | 0; // an int32 offset keeps the DataView loads fast
    for (let j = 0; j < count; j++) {
      const r = ops[3 * j + 1]!;
      lo[r] = v.getInt32(o, true);
      if (is64) hi[r] = v.getInt32(o + 4, true);
      else hi[r] = 0;
      o += size;
    }
    this.endStackRun(top + size * count, run.len);
    return true;
  }

  /**
   * The end of a one-go stack run: the stack pointer becomes `sp` (an internal address;
   * esp's upper half stays 0) and the ip moves past the run's `len` bytes.
   */
  private endStackRun(sp: number, len: number): void {
    if (this.bitness === 64) {
      this.hi[4] = Math.floor(sp / TWO32);
      this.lo[4] = sp | 0;
      this.ip += len;
    } else {
      this.lo[4] = sp | 0;
      this.ip = (this.ip + len) >>> 0;
    }
  }

  /**
   * The read TLB's view when bytes [a, a + length) lie in the page of one of its entries
   * (so a load of them at the current CPL cannot fault and reads these bytes), with
   * {@link Cpu.readOffset} set to the offset of `a`; null otherwise. Changes no TLB
   * state. iret reads its frame through it.
   * @param a Address of the first byte.
   * @param length Number of bytes.
   * @returns The frame's view, or null.
   */
  readFrame(a: number, length: number): DataView | null {
    let o = a - this.rBase;
    if (o >= 0 && o + length <= PAGE) {
      this.readOffset = o | 0;
      return this.rView;
    }
    o = a - this.rBase2;
    if (o >= 0 && o + length <= PAGE) {
      this.readOffset = o | 0;
      return this.rView2;
    }
    return null;
  }

  /** Offset of the bytes in the view {@link Cpu.readFrame} returned last. */
  readOffset = 0;

  /**
   * A supervisor-mode store (exception frames): checks W and presence as at CPL 0, does
   * not touch the TLBs.
   * @param a Address.
   * @param size 4 or 8.
   * @param lo Low half.
   * @param hi High half.
   */
  sysWrite(a: number, size: number, lo: number, hi: number): void {
    const e = this.translate(a, WRITE, false);
    const o = ((a % PAGE) + PAGE) % PAGE;
    const f = Math.floor(e / 16);
    if (o + size <= PAGE) {
      const mem = this.machine.memory;
      if (mem.codeFrames[f] !== 0) this.codeStore(f, o, size);
      const v = mem.views[f]!;
      if (size === 8) {
        v.setInt32(o, lo, true);
        v.setInt32(o + 4, hi, true);
      } else if (size === 4) v.setInt32(o, lo, true);
      else if (size === 2) v.setUint16(o, lo, true);
      else mem.frames[f]![o] = lo;
      return;
    }
    let f2 = f;
    if (o + size > PAGE) f2 = Math.floor(this.translate(this.next(a, PAGE - o), WRITE, false) / 16);
    this.storeSplit(f, o, f2, size, lo, hi);
  }

  /**
   * The fast path of exception-frame stores: when bytes [low, low + length) lie in one
   * page, translates that page once as {@link Cpu.sysWrite} would (a #PF names `first`,
   * the address the frame's first store would have faulted on) and returns the frame's
   * view, with {@link Cpu.sysOffset} set to the offset of `low`. Returns null when the
   * range crosses a page or its frame holds predecoded code: store word by word then.
   * @param first Address of the first store (inside the range).
   * @param low Lowest byte of the frame.
   * @param length Bytes in the frame.
   * @returns The frame's view, or null.
   */
  sysFrame(first: number, low: number, length: number): DataView | null {
    const o = ((low % PAGE) + PAGE) % PAGE;
    if (o + length > PAGE) return null;
    const mem = this.machine.memory;
    const page = Math.floor(first / PAGE);
    let e = this.sysPte;
    if (page !== this.sysPage || mem.mappingGeneration !== this.sysGeneration) {
      // Page entries change only with the generation: a page that passed stays valid.
      e = this.translate(first, WRITE, false);
      this.sysPage = page;
      this.sysGeneration = mem.mappingGeneration;
      this.sysPte = e;
    }
    const f = Math.floor(e / 16);
    if (mem.codeFrames[f] !== 0) return null;
    this.sysOffset = o;
    return mem.views[f]!;
  }

  /** Offset of the frame in the view {@link Cpu.sysFrame} returned last. */
  sysOffset = 0;
  /** The last page {@link Cpu.sysFrame} translated, its generation and its entry. */
  private sysPage = NaN;
  private sysGeneration = -1;
  private sysPte = 0;

  // -------------------------------------------------------------------------------------
  // System operations (CpuCore)

  /** `int n` / `int3`. @param vector Vector. @param nextIp Saved ip (after the instruction). */
  softwareInterrupt(vector: number, nextIp: number): void {
    deliver(this, vector, -1, nextIp, true);
  }

  /** iret. @param size Operand size. */
  iret(size: number): void {
    iret(this, size);
  }

  /** hlt (ip already advanced). */
  halt(): void {
    this.haltedFlag = true;
    this.updateAttn();
  }

  /** A serializing instruction or event: tells the machine (the SMP fetch model). */
  serialize(): void {
    this.machine.onSerialize(this);
  }

  /** pause: tells the machine (the SMP scheduler may switch CPUs). */
  pause(): void {
    this.machine.onPause(this);
  }

  /** Blocks interrupt delivery until after the next instruction (sti). */
  interruptShadow(): void {
    this.attn |= ATTN_SHADOW;
  }

  /**
   * True between an `sti` (that opened an interrupt shadow) and the step that retires the
   * next instruction: no maskable interrupt, IDT-delivered or the SMP layer's
   * call-function IPI, is taken here.
   */
  get inInterruptShadow(): boolean {
    return (this.attn & ATTN_SHADOW) !== 0;
  }

  /** Loads a data segment selector. @param index Segment number. @param selector Value. */
  loadSreg(index: number, selector: number): void {
    this.sreg[index] = selector;
  }

  // -------------------------------------------------------------------------------------
  // Fetch

  /** The predecoded slots of a frame, created (and the frame marked as code) on demand. */
  private pageFor(frame: number): CodePage {
    let page = this.codePages.get(frame);
    if (page === undefined) {
      page = new CodePage(PAGE);
      this.codePages.set(frame, page);
      this.machine.memory.codeFrames[frame] = 1;
    }
    return page;
  }

  /**
   * The slow path of instruction fetch: canonical check, native bindings (checked like
   * code at CPL 3 when their page is mapped), translation (#PF with I/D set for
   * non-executable pages), then the predecoded slot of the
   * physical frame + offset, decoding on a miss. Instructions that cross a page are
   * decoded from both frames and not cached.
   * @param ip Internal address of the instruction.
   * @returns The slot to execute.
   */
  fetchSlow(ip: number): Slot {
    if (this.bitness === 64 && (ip < CANON_LOW || ip >= CANON_HIGH)) {
      throw gpFault(0, "non-canonical instruction pointer");
    }
    const machine = this.machine;
    if (machine.natives.size !== 0) {
      const n = machine.natives.get(ip);
      if (n !== undefined) {
        // A native in a mapped page is fetched like the code there at CPL 3: the same
        // #PF (U/S, present, execute) as an ordinary fetch. At CPL 0, and at addresses
        // with no mapping (allowed: see Machine.bindNative), it runs without translation.
        if (this.cplValue === 3 && machine.memory.pages.has(Math.floor(ip / PAGE))) {
          this.translate(ip, FETCH, true);
        }
        return n.slot;
      }
    }
    const o2 = ip - this.fBase2;
    if (o2 >= 0 && o2 < PAGE) {
      // Victim hit: swap the two entries.
      const base = this.fBase2;
      const victim = this.fSlots2;
      const victimPage = this.fPage2;
      this.fBase2 = this.fBase;
      this.fSlots2 = this.fSlots;
      this.fPage2 = this.fPage;
      this.fBase = base;
      this.fSlots = victim;
      this.fPage = victimPage;
      const hit = victim[o2];
      if (hit !== undefined) return hit;
    }
    const user = this.cplValue === 3;
    const e = this.translate(ip, FETCH, user);
    const frame = Math.floor(e / 16);
    const base = ip - (((ip % PAGE) + PAGE) % PAGE);
    const page = this.pageFor(frame);
    const slots = page.slots;
    if (base !== this.fBase) {
      this.fBase2 = this.fBase;
      this.fSlots2 = this.fSlots;
      this.fPage2 = this.fPage;
    }
    this.fBase = base;
    this.fSlots = slots;
    this.fPage = page;
    const off = ip - base;
    const cached = slots[off];
    if (cached !== undefined) return cached;
    const mem = machine.memory;
    const s = new Slot();
    this.decodeHook(s, mem.frames[frame]!, off, this.bitness);
    if (s.op !== Op.TRUNCATED) {
      bindHandler(s);
      slots[off] = s;
      return s;
    }
    // Crosses into the next page: fetch it too (its own #PF), decode, do not cache.
    const e2 = this.translate(this.next(ip, PAGE - off), FETCH, user);
    const f1 = mem.frames[frame]!;
    const f2 = mem.frames[Math.floor(e2 / 16)]!;
    const buf = new Uint8Array(15);
    for (let k = 0; k < 15; k++) buf[k] = off + k < PAGE ? f1[off + k]! : f2[off + k - PAGE]!;
    this.decodeHook(s, buf, 0, this.bitness);
    return bindHandler(s);
  }

  // -------------------------------------------------------------------------------------
  // Step loop

  /** Recomputes the attention bits the step loop checks once per step. */
  private updateAttn(): void {
    this.attn = (this.stopKind !== "" ? ATTN_STOP : 0) |
      (this.haltedFlag || this.shutdown ? ATTN_HALT : 0) |
      (this.pendingIrq.length !== 0 ? ATTN_IRQ : 0) |
      (this.traceCap !== 0 ? ATTN_TRACE : 0) |
      (this.untilIp === this.untilIp ? ATTN_UNTIL : 0) |
      ((this.fl & TF) !== 0 ? ATTN_STEP : 0) |
      (this.attn & (ATTN_SHADOW | ATTN_REFETCH));
  }

  /**
   * Requests that the current run stop after this step (natives: an oops).
   * @param kind Stop kind.
   * @param message Diagnostic.
   */
  requestStop(kind: string, message: string): void {
    this.stopKind = kind;
    this.stopMessage = message;
    this.updateAttn();
  }

  /**
   * Takes the pending stop request, if any.
   * @returns `[kind, message]` or null.
   */
  takeStop(): [string, string] | null {
    if (this.stopKind === "") return null;
    const r: [string, string] = [this.stopKind, this.stopMessage];
    this.stopKind = "";
    this.stopMessage = "";
    this.updateAttn();
    return r;
  }

  /** Services attention bits: 0 = execute an instruction, 1 = an event took the step, 2 = stop. */
  private service(): number {
    this.attn &= ~ATTN_REFETCH;
    if (this.stopKind !== "") return 2;
    if (this.shutdown) {
      this.requestStop("triple-fault", `CPU ${this.index} is shut down after a triple fault`);
      return 2;
    }
    if ((this.attn & ATTN_SHADOW) !== 0) {
      this.attn &= ~ATTN_SHADOW;
    } else if (this.pendingIrq.length !== 0 && (this.flags & IF) !== 0) {
      const v = this.pendingIrq.shift()!;
      this.haltedFlag = false;
      this.updateAttn();
      try {
        deliver(this, v, -1, this.ip, false);
      } catch (e) {
        if (!(e instanceof X86Fault)) throw e;
        this.exception(e);
      }
      return 1;
    }
    if (this.haltedFlag) {
      this.requestStop(
        "hlt",
        `CPU ${this.index} halted at ${hexAddr(this.rip)} with ${
          (this.flags & IF) !== 0 ? "no pending interrupt" : "interrupts disabled"
        }`,
      );
      return 2;
    }
    if (this.ip === this.untilIp) {
      this.requestStop("until", `CPU ${this.index} reached ${hexAddr(this.rip)}`);
      return 2;
    }
    if (this.traceCap !== 0) this.traceEvent("insn", this.ip, -1);
    if ((this.attn & ATTN_STEP) !== 0) {
      // TF lives in `fl` (lazy flags cover only the arithmetic bits).
      if ((this.fl & TF) !== 0) {
        this.singleStep();
        return 1;
      }
      this.attn &= ~ATTN_STEP;
    }
    return 0;
  }

  /**
   * Runs the instruction at the ip, which starts with TF = 1, and then takes the
   * single-step #DB trap unless the instruction faulted (the fault is delivered instead),
   * delivered a software interrupt (`int3`, `int n`: TF is cleared and no trap follows)
   * or stopped the run (a native's stop). One step in all. See {@link Cpu.flags}.
   */
  private singleStep(): void {
    const s = this.execOne();
    if (s === undefined) return;
    if (s.op === Op.INT3 || s.op === Op.INT || this.stopKind !== "") return;
    // A trap after hlt wakes the CPU; the saved ip is the instruction after it.
    this.haltedFlag = false;
    this.updateAttn();
    try {
      deliver(this, Vector.DB, -1, this.ip, false);
    } catch (e) {
      if (!(e instanceof X86Fault)) throw e;
      this.exception(e);
    }
  }

  /**
   * Exactly one step (an instruction, or one pending event): the SMP scheduler's entry,
   * without the bookkeeping of {@link Cpu.runSteps}.
   */
  stepOnce(): void {
    if (this.attn !== 0) {
      const r = this.service();
      if (r === 2) return;
      if (r === 1) {
        this.steps++;
        return;
      }
    }
    this.execOne();
    this.steps++;
  }

  /**
   * Fetches and executes the instruction at the ip; a fault is delivered, with the ip back
   * at the faulting instruction.
   * @returns The slot executed, or undefined when it faulted.
   */
  private execOne(): Slot | undefined {
    const ip = this.ip;
    const off = ip - this.fBase;
    let s = off >= 0 && off < PAGE ? this.fSlots[off] : undefined;
    try {
      if (s === undefined) s = this.fetchSlow(ip);
      execute(this, s);
      return s;
    } catch (e) {
      if (!(e instanceof X86Fault)) throw e;
      this.ip = ip;
      this.exception(e);
      return undefined;
    }
  }

  /**
   * Runs up to `max` steps (instructions or events) or until a stop request.
   * @param max Step limit.
   * @param until Internal address at which to stop before executing (NaN for none).
   * @returns Steps taken.
   */
  runSteps(max: number, until = NaN): number {
    this.untilIp = until;
    this.updateAttn();
    let n = 0;
    while (n < max) {
      if (this.attn !== 0) {
        const r = this.service();
        if (r === 2) break;
        if (r === 1) {
          n++;
          continue;
        }
      }
      const ip = this.ip;
      let off = ip - this.fBase;
      let s = off >= 0 && off < PAGE ? this.fSlots[off] : undefined;
      if (s === undefined) {
        try {
          s = this.fetchSlow(ip);
        } catch (e) {
          if (!(e instanceof X86Fault)) throw e;
          this.ip = ip;
          this.exception(e);
          n++;
          continue;
        }
        // A slot fetchSlow did not leave in the fetch TLB's page (a native, an
        // instruction crossing the page) is run alone below.
        off = ip - this.fBase;
        if (off < 0 || off >= PAGE || this.fSlots[off] !== s) off = -1;
      }
      if (off >= 0 && max - n > 1 && this.attn === 0) {
        // A cached slot with nothing pending: run its block (see block.ts).
        let b = s.block as Block | null;
        if (
          b === null || b.epoch !== b.page.epoch ||
          (b.openAt >= 0 && b.page.slots[b.openAt] !== undefined)
        ) b = buildBlock(this.fPage, off, straightLine);
        n += this.runBlock(b, max - n);
        continue;
      }
      try {
        execute(this, s);
      } catch (e) {
        if (!(e instanceof X86Fault)) throw e;
        this.ip = ip;
        this.exception(e);
      }
      n++;
    }
    this.steps += n;
    if (this.untilIp === this.untilIp) {
      this.untilIp = NaN;
      this.updateAttn();
    }
    return n;
  }

  /**
   * Executes the slots of a block in order, at most `budget` of them, stopping after an
   * instruction that raised an attention condition (or removed predecoded code) and at a
   * fault, which is delivered as the one-step loop would (ip back at the faulting
   * instruction, the fault counted as its step). A compiled looping block may run several
   * iterations, each one exactly what this loop would do next (see block.ts).
   * @returns Steps taken.
   */
  private runBlock(b: Block, budget: number): number {
    const slots = b.slots;
    const end = slots.length < budget ? slots.length : budget;
    let k = 0;
    let at = this.ip;
    const fn = b.fn;
    if (fn !== null && end === slots.length) {
      try {
        return fn(this, slots, budget);
      } catch (e) {
        if (!(e instanceof X86Fault)) throw e;
        // Instructions retired before the faulting one (earlier iterations of a looping
        // block included); every iteration starts at the block's first instruction and
        // its slots are consecutive, which gives the faulting slot's address.
        k = this.blockFault;
        const last = k % slots.length;
        for (let i = 0; i < last; i++) at += slots[i]!.len;
        this.ip = at;
        this.exception(e);
        return k + 1;
      }
    }
    if (++b.runs === BLOCK_HOT && slots.length > 1) b.fn = compileBlock(slots, storeFree, b.loops);
    try {
      while (k < end) {
        at = this.ip;
        execute(this, slots[k]!);
        k++;
        if (this.attn !== 0) break;
      }
    } catch (e) {
      if (!(e instanceof X86Fault)) throw e;
      this.ip = at;
      this.exception(e);
      k++;
    }
    return k;
  }

  /** Reads up to 15 instruction bytes for diagnostics. */
  private bytesAt(ip: number): string {
    const mem = this.machine.memory;
    const out: number[] = [];
    for (let k = 0; k < 8; k++) {
      const e = mem.entry(ip + k);
      if (e === undefined) break;
      const a = ip + k;
      out.push(mem.frames[Math.floor(e / 16)]![((a % PAGE) + PAGE) % PAGE]!);
    }
    return out.length === 0 ? "unmapped" : hexBytes(out);
  }

  /** One link of a fault chain for diagnostics: `#GP(0x1a) (why)`. */
  private describe(f: X86Fault): string {
    let s = vectorName(f.vector);
    if (f.errorCode >= 0) s += `(0x${f.errorCode.toString(16)})`;
    if (f.vector === Vector.PF) s += ` at ${hexAddr(this.machine.memory.toBigInt(f.address))}`;
    return `${s} (${f.why})`;
  }

  /** Delivers a fault raised by the instruction at `this.ip`, with #DF / triple-fault rules. */
  private exception(f: X86Fault): void {
    const chain = [this.describe(f)];
    let v = f.vector;
    let err = f.errorCode;
    let addr = f.address;
    for (;;) {
      try {
        if (v === Vector.PF) this.cr2Value = addr;
        deliver(this, v, err, this.ip, false);
        return;
      } catch (g) {
        if (!(g instanceof X86Fault)) throw g;
        chain.push(this.describe(g));
        if (v === Vector.DF) {
          this.shutdown = true;
          this.haltedFlag = false;
          this.requestStop(
            "triple-fault",
            `Triple fault on CPU ${this.index} at ${hexAddr(this.rip)} (bytes ${
              this.bytesAt(this.ip)
            }): ${chain.join(" → ")}`,
          );
          return;
        }
        if (isDoubleFault(v, g.vector)) {
          v = Vector.DF;
          err = 0;
          chain.push("#DF");
        } else {
          v = g.vector;
          err = g.errorCode;
          addr = g.address;
        }
      }
    }
  }
}

/** Re-exported so machine users can name the executor's slot type. */
export { Slot };
/** Re-exported fault type. */
export { X86Fault };
