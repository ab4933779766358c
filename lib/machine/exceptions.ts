/**
 * Exception and interrupt delivery through the IDT, the double/triple-fault rules, and
 * iret — with the exact stack frames the kernel's entry code relies on (REFERENCE.md,
 * "Layouts and frames"):
 *
 * - 64-bit: align RSP down to 16, push SS, RSP, RFLAGS, CS, RIP (+ error code), always;
 *   from ring 3, switch to `tss.sp0` first (and load a null SS).
 * - 32-bit: same privilege pushes EFLAGS, CS, EIP (+ error code) only; from ring 3 switch
 *   to `tss.sp0` with SS = `__KERNEL_DS` and push SS, ESP first.
 * - Interrupt gates clear IF, trap gates keep it; TF, NT, RF and VM are cleared (Intel SDM
 *   Vol. 3, 6.12.1). The RF bit is not set in the saved image of faults (a documented
 *   simplification: instruction breakpoints are not modeled).
 * - A software `int n`/`int3` to a gate whose DPL is below CPL raises #GP(n*8+2); a
 *   missing gate raises #NP(n*8+2+EXT).
 * - A contributory fault (or #PF) while delivering a contributory fault (or #PF) becomes
 *   #DF (error code 0); any fault while delivering #DF is a triple fault, which stops the
 *   CPU with a diagnostic naming every vector and the address (SDM Vol. 3, 6.15,
 *   "Interrupt 8").
 *
 * @module
 */

import { AC, IF, IOPL_MASK, NT, RF, TF, VM } from "../x86/flags.ts";
import { CANON_HIGH, CANON_LOW, gpFault, Vector, X86Fault } from "../x86/state.ts";
import type { Cpu } from "./cpu.ts";
import { hexAddr } from "../errors.ts";

/** Segment selectors of the modeled kernel (REFERENCE.md). */
export const Selector = {
  /** x86-64 `__KERNEL_CS`. */
  KERNEL_CS_64: 0x10,
  /** x86-64 `__KERNEL_DS`. */
  KERNEL_DS_64: 0x18,
  /** x86-64 `__USER_CS`. */
  USER_CS_64: 0x33,
  /** x86-64 `__USER_DS`. */
  USER_DS_64: 0x2b,
  /** x86-32 `__KERNEL_CS`. */
  KERNEL_CS_32: 0x60,
  /** x86-32 `__KERNEL_DS`. */
  KERNEL_DS_32: 0x68,
  /** x86-32 `__USER_CS`. */
  USER_CS_32: 0x73,
  /** x86-32 `__USER_DS`. */
  USER_DS_32: 0x7b,
} as const;

/** An IDT gate as the machine stores it. */
export interface Gate {
  /** Handler address (internal number form). */
  readonly handler: number;
  /** Interrupt gates clear IF on entry; trap gates do not. */
  readonly type: "interrupt" | "trap";
  /** Descriptor privilege level: the highest CPL allowed to `int n` through it. */
  readonly dpl: number;
}

/** Mnemonics of the architectural vectors, for diagnostics. */
const NAMES: Record<number, string> = {
  0: "#DE",
  1: "#DB",
  2: "NMI",
  3: "#BP",
  4: "#OF",
  5: "#BR",
  6: "#UD",
  7: "#NM",
  8: "#DF",
  10: "#TS",
  11: "#NP",
  12: "#SS",
  13: "#GP",
  14: "#PF",
  16: "#MF",
  17: "#AC",
  18: "#MC",
  19: "#XM",
};

/**
 * Name of a vector for messages: `#GP`, `#PF`, or `vector 0x80`.
 * @param vector The vector.
 * @returns Its name.
 */
export function vectorName(vector: number): string {
  return NAMES[vector] ?? `vector 0x${vector.toString(16)}`;
}

/** Whether `vector` is a contributory exception (SDM Table 6-4). */
function contributory(vector: number): boolean {
  return vector === 0 || (vector >= 10 && vector <= 13);
}

/**
 * Whether a fault `second` raised while delivering `first` becomes a double fault.
 * @param first Vector being delivered.
 * @param second Vector of the fault raised during delivery.
 * @returns True for the SDM's #DF combinations.
 */
export function isDoubleFault(first: number, second: number): boolean {
  if (contributory(first)) return contributory(second);
  if (first === Vector.PF) return second === Vector.PF || contributory(second);
  return false;
}

const TWO32 = 4294967296;

/** Scratch for the words of one frame (delivery does not nest: nothing runs between). */
const FRAME_WORDS: number[] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

/**
 * Delivers one event through the IDT: checks the gate, pushes the frame (supervisor
 * accesses), switches stack/CS/CPL and jumps to the handler. Throws an {@link X86Fault}
 * (leaving registers unchanged) when the delivery itself faults.
 *
 * @param cpu The CPU.
 * @param vector Vector 0–255.
 * @param errorCode Error code to push, -1 for none.
 * @param savedIp The ip saved in the frame (faulting ip for faults, next ip for traps).
 * @param software True for `int n`/`int3` (DPL checked, EXT = 0).
 */
export function deliver(
  cpu: Cpu,
  vector: number,
  errorCode: number,
  savedIp: number,
  software: boolean,
): void {
  const machine = cpu.machine;
  const gate = machine.idt[vector];
  const ext = software ? 0 : 1;
  if (gate === undefined) {
    throw new X86Fault(Vector.NP, vector * 8 + 2 + ext, 0, `no IDT gate for vector ${vector}`);
  }
  if (software && cpu.cpl > gate.dpl) {
    throw gpFault(
      vector * 8 + 2,
      `int ${vector} at CPL ${cpu.cpl} through a gate of DPL ${gate.dpl}`,
    );
  }
  const fromUser = cpu.cpl > 0;
  const flags = cpu.flags;
  const cs = cpu.sreg[1]!;
  const ss = cpu.sreg[2]!;
  const words = FRAME_WORDS;
  let n = 0;
  let sp: number;
  const oldSp = cpu.spValue();
  if (cpu.bitness === 64) {
    sp = fromUser ? tssStack(cpu) : oldSp;
    sp -= ((sp % 16) + 16) % 16;
    // Pairs of (lo, hi): the old RSP is pushed from its register halves, bit-exact.
    words[0] = ss;
    words[1] = 0;
    words[2] = cpu.lo[4]!;
    words[3] = cpu.hi[4]!;
    words[4] = flags;
    words[5] = 0;
    words[6] = cs;
    words[7] = 0;
    words[8] = savedIp | 0;
    words[9] = Math.floor(savedIp / TWO32) | 0;
    n = 10;
    if (errorCode >= 0) {
      words[10] = errorCode;
      words[11] = 0;
      n = 12;
    }
    const low = sp - 4 * n;
    // The whole frame canonical and in one page (the usual case): one translation, the
    // same stores in the same order; otherwise word by word, faulting where it faults.
    const v = low >= CANON_LOW && sp - 8 < CANON_HIGH ? cpu.sysFrame(sp - 8, low, 4 * n) : null;
    if (v !== null) {
      let o = cpu.sysOffset + 4 * n;
      for (let i = 0; i < n; i += 2) {
        o -= 8;
        v.setInt32(o, words[i]!, true);
        v.setInt32(o + 4, words[i + 1]!, true);
      }
      sp = low;
    } else {
      for (let i = 0; i < n; i += 2) {
        sp -= 8;
        if (sp < CANON_LOW || sp >= CANON_HIGH) {
          throw new X86Fault(Vector.SS, 0, 0, "non-canonical stack during delivery");
        }
        cpu.sysWrite(sp, 8, words[i]!, words[i + 1]!);
      }
    }
  } else {
    sp = fromUser ? tssStack(cpu) : oldSp;
    if (fromUser) {
      words[0] = ss;
      words[1] = oldSp;
      n = 2;
    }
    words[n++] = flags;
    words[n++] = cs;
    words[n++] = savedIp;
    if (errorCode >= 0) words[n++] = errorCode;
    const low = sp - 4 * n;
    const v = low >= 0 ? cpu.sysFrame((sp - 4) >>> 0, low, 4 * n) : null;
    if (v !== null) {
      let o = cpu.sysOffset + 4 * n;
      for (let i = 0; i < n; i++) {
        o -= 4;
        v.setInt32(o, words[i]! | 0, true);
      }
      sp = low;
    } else {
      for (let i = 0; i < n; i++) {
        sp = (sp - 4) >>> 0;
        cpu.sysWrite(sp, 4, words[i]! | 0, 0);
      }
    }
  }
  // Commit: nothing above changed a register.
  cpu.setSpValue(sp);
  if (fromUser) {
    cpu.sreg[2] = cpu.bitness === 64 ? 0 : cpu.tss.ss0;
  }
  cpu.setCs(cpu.bitness === 64 ? Selector.KERNEL_CS_64 : Selector.KERNEL_CS_32);
  let f = flags & ~(TF | NT | RF | VM);
  if (gate.type === "interrupt") f &= ~IF;
  cpu.flags = f;
  cpu.ip = gate.handler;
  cpu.traceEvent("exception", savedIp, vector);
  machine.onException(cpu, vector, savedIp);
}

/**
 * The ring-0 stack from the TSS. A 64-bit RSP0 that is not canonical is a stack fault,
 * #SS(0) (SDM INT n, 64-bit gate: "IF StackAddress is non-canonical THEN #SS(0)"); a
 * value the register cannot hold at all (negative, or wider than the mode) is an invalid
 * TSS, #TS(0).
 */
function tssStack(cpu: Cpu): number {
  const sp0 = cpu.tss.sp0;
  const mem = cpu.machine.memory;
  const bits = cpu.bitness === 64 ? 64n : 32n;
  if (sp0 < 0n || sp0 >= 1n << bits) {
    throw new X86Fault(Vector.TS, 0, 0, `tss.sp0 ${hexSp0(sp0)} is not a usable stack`);
  }
  if (bits === 64n && sp0 >= 0x0000800000000000n && sp0 < 0xffff800000000000n) {
    throw new X86Fault(Vector.SS, 0, 0, `tss.sp0 ${hexSp0(sp0)} is not canonical`);
  }
  return mem.toNumber(sp0);
}

/** `0x…` for a TSS stack value (a negative one keeps its sign). */
function hexSp0(v: bigint): string {
  return v < 0n ? `-0x${(-v).toString(16)}` : `0x${v.toString(16)}`;
}

/** Code selectors iret accepts, per mode. */
function validCs(bitness: 32 | 64, cs: number): boolean {
  return bitness === 64
    ? cs === Selector.KERNEL_CS_64 || cs === Selector.USER_CS_64
    : cs === Selector.KERNEL_CS_32 || cs === Selector.USER_CS_32;
}

/**
 * Whether `ss` may be loaded by an iret returning to `cpl` (SDM IRET, "RETURN-TO-OUTER-
 * PRIVILEGE-LEVEL" and the 64-bit rules): a null selector only in 64-bit mode to CPL 0–2
 * and only with RPL = the new CPL, otherwise the writable data segment whose RPL and DPL equal the new CPL. A clobbered
 * saved SS (the no-gap push of the 2019 thread) therefore raises #GP, as on hardware.
 */
function validSs(bitness: 32 | 64, ss: number, cpl: number): boolean {
  if ((ss & 0xfffc) === 0) return bitness === 64 && cpl !== 3 && (ss & 3) === cpl;
  if ((ss & 3) !== cpl) return false;
  const data = cpl === 0
    ? (bitness === 64 ? Selector.KERNEL_DS_64 : Selector.KERNEL_DS_32)
    : (bitness === 64 ? Selector.USER_DS_64 : Selector.USER_DS_32);
  return ss === data;
}

/**
 * Flags any iret may change; IF and IOPL depend on CPL (SDM IRET: IOPL only at CPL 0,
 * IF only at CPL <= IOPL), so neither IOPL bit is in here.
 */
const IRET_MASK = 0xdd5 /* ARITH|TF|DF|OF */ | NT | RF | AC | 0x200000 /* ID */;

/**
 * Whether a data segment register holding `sel` is nulled by an iret to an outer
 * privilege level (SDM IRET, RETURN-TO-OUTER-PRIVILEGE-LEVEL: ES, FS, GS and DS whose
 * data or non-conforming code segment has DPL < the new CPL). The modeled GDT's DPL-0
 * descriptors are the mode's `__KERNEL_CS` and `__KERNEL_DS` (matched by index, whatever
 * the RPL); the user selectors have DPL 3 and stay. Selectors the model has no
 * descriptor for are left alone, as is the hidden base (`fsBase`/`gsBase`).
 */
function kernelSelector(bitness: 32 | 64, sel: number): boolean {
  const index = sel & 0xfffc;
  return bitness === 64
    ? index === Selector.KERNEL_CS_64 || index === Selector.KERNEL_DS_64
    : index === Selector.KERNEL_CS_32 || index === Selector.KERNEL_DS_32;
}

/** Stop kind of an iret the model cannot carry out (see {@link iret}). */
const UNMODELLED_STOP = "unmodelled";

/** ES, DS, FS, GS: the segment registers an outer-level iret checks. */
const DATA_SREGS: readonly number[] = [0, 3, 4, 5];

/** The halves of the last 8-byte word {@link iretWord} or {@link viewWord} read. */
let lastLo = 0;
let lastHi = 0;

/** Word `k` of an iret frame at `sp` (a #SS for a non-canonical 64-bit stack). */
function iretWord(cpu: Cpu, sp: number, k: number, size: number, is64: boolean): number {
  let a = sp + k * size;
  if (is64) {
    if (a < CANON_LOW || a >= CANON_HIGH) {
      throw new X86Fault(Vector.SS, 0, 0, "non-canonical stack in iret");
    }
  } else a = a >>> 0;
  if (size === 8) {
    lastLo = cpu.read64(a);
    lastHi = cpu.hi64;
    return lastHi * TWO32 + (lastLo >>> 0);
  }
  return size === 4 ? cpu.read32(a) >>> 0 : cpu.read16(a);
}

/** {@link iretWord} from the frame's view (see `Cpu.readFrame`): size 4 or 8. */
function viewWord(v: DataView, o: number, k: number, size: number): number {
  if (size === 8) {
    lastLo = v.getInt32(o + 8 * k, true);
    lastHi = v.getInt32(o + 8 * k + 4, true);
    return lastHi * TWO32 + (lastLo >>> 0);
  }
  return v.getInt32(o + 4 * k, true) >>> 0;
}

/**
 * iret / iretd / iretq: pops the frame, returns to CS:IP (and SS:SP where the mode pops
 * them), restores RFLAGS by the CPL rules, and serializes.
 *
 * 64-bit mode always pops RIP, CS, RFLAGS, RSP, SS; 32-bit mode pops EIP, CS, EFLAGS and
 * ESP, SS only when returning to an outer privilege level, and then nulls every data
 * segment register that holds a kernel (DPL 0) selector (so does 64-bit mode).
 *
 * With NT = 1 in the current flags (SDM IRET): 64-bit mode raises #GP(0); 32-bit mode
 * would return to the task in the TSS back link, and hardware task switching is not
 * modelled, so the CPU stops (kind `"unmodelled"`) with the ip at the iret and
 * nothing popped, rather than returning as if NT were clear.
 *
 * @param cpu The CPU.
 * @param size Operand size: 2, 4 or 8.
 */
export function iret(cpu: Cpu, size: number): void {
  const sp = cpu.spValue();
  const is64 = cpu.bitness === 64;
  const oldFlags = cpu.flags;
  if ((oldFlags & NT) !== 0) {
    if (is64) throw gpFault(0, "iret with NT = 1 in 64-bit mode");
    cpu.requestStop(
      UNMODELLED_STOP,
      `CPU ${cpu.index} at ${hexAddr(cpu.rip)}: iret with NT=1: task return through the ` +
        "TSS back link is not modelled",
    );
    return;
  }
  // The frame's five words in a page the read TLB holds (the usual case): the same loads,
  // none of which can fault, without a translation each.
  const v = size !== 2 ? cpu.readFrame(sp, 5 * size) : null;
  const o = cpu.readOffset;
  const ipv = v !== null ? viewWord(v, o, 0, size) : iretWord(cpu, sp, 0, size, is64);
  const cs = (v !== null ? viewWord(v, o, 1, size) : iretWord(cpu, sp, 1, size, is64)) & 0xffff;
  const fl = (v !== null ? viewWord(v, o, 2, size) : iretWord(cpu, sp, 2, size, is64)) % TWO32;
  const newCpl = cs & 3;
  const cpl = cpu.cpl;
  if (newCpl < cpl) throw gpFault(cs & 0xfffc, "iret to an inner privilege level");
  if (!validCs(cpu.bitness, cs)) throw gpFault(cs & 0xfffc, `iret to selector ${cs}`);
  let newSp: number;
  let newSs = -1;
  let spLo = 0;
  let spHi = 0;
  if (is64 || newCpl > cpl) {
    newSp = v !== null ? viewWord(v, o, 3, size) : iretWord(cpu, sp, 3, size, is64);
    if (size === 8) {
      spLo = lastLo;
      spHi = lastHi; // the popped RSP goes back bit-exact, canonical or not
    }
    newSs = (v !== null ? viewWord(v, o, 4, size) : iretWord(cpu, sp, 4, size, is64)) & 0xffff;
    if (!validSs(cpu.bitness, newSs, newCpl)) {
      throw gpFault(newSs & 0xfffc, `iret with stack selector ${newSs} to CPL ${newCpl}`);
    }
  } else newSp = (sp + 3 * size) >>> 0;
  let target = ipv;
  if (is64) {
    if (size === 8 && target >= 0x8000000000000000) target -= TWO32 * TWO32;
    if (target < CANON_LOW || target >= CANON_HIGH) {
      throw gpFault(0, "iret to a non-canonical address");
    }
  } else if (size === 2) target &= 0xffff;
  let mask = IRET_MASK;
  const iopl = (oldFlags & IOPL_MASK) >> 12;
  if (cpl === 0) mask |= IF | IOPL_MASK;
  else if (cpl <= iopl) mask |= IF;
  if (size === 2) mask &= 0xffff;
  const iretIp = cpu.ip;
  cpu.flags = (oldFlags & ~mask) | (fl & mask) | 2;
  if (is64 && size === 8) {
    cpu.lo[4] = spLo;
    cpu.hi[4] = spHi;
  } else cpu.setSpValue(is64 ? newSp % (TWO32 * TWO32) : newSp >>> 0);
  if (newSs >= 0) cpu.sreg[2] = newSs;
  if (newCpl > cpl) {
    const sreg = cpu.sreg;
    for (let i = 0; i < DATA_SREGS.length; i++) {
      const k = DATA_SREGS[i]!;
      if (kernelSelector(cpu.bitness, sreg[k]!)) sreg[k] = 0;
    }
  }
  cpu.setCs(cs);
  cpu.ip = target;
  cpu.traceEvent("iret", iretIp, -1);
  cpu.machine.onIret(cpu, target);
  cpu.serialize();
}
