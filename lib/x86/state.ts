/**
 * The small interfaces the instruction semantics (`execute.ts`) need from a CPU: register
 * state, memory accesses through the CPU's translation, and the few system operations
 * (interrupt delivery, iret, halt, serialization) that belong to the machine.
 *
 * `lib/machine/cpu.ts` implements {@link CpuCore}; nothing in `lib/x86` depends on the
 * machine. Emulated faults travel as thrown {@link X86Fault} values (not `Error`s: no
 * stack is captured), caught by the CPU's step loop and delivered through the IDT.
 *
 * Addresses are JS numbers: in 64-bit mode the signed value of the 64-bit address
 * (canonical addresses lie in [-2^47, 2^47) and are exact), in 32-bit mode [0, 2^32).
 *
 * @module
 */

/** Exception vectors (Intel SDM Vol. 3, 6.3.1). */
export const Vector = {
  /** Divide error. */
  DE: 0,
  /** Debug. */
  DB: 1,
  /** Non-maskable interrupt. */
  NMI: 2,
  /** Breakpoint (int3). */
  BP: 3,
  /** Overflow (into). */
  OF: 4,
  /** Invalid opcode. */
  UD: 6,
  /** Double fault. */
  DF: 8,
  /** Invalid TSS. */
  TS: 10,
  /** Segment not present (also: IDT gate not present). */
  NP: 11,
  /** Stack-segment fault (non-canonical stack access in 64-bit mode). */
  SS: 12,
  /** General protection. */
  GP: 13,
  /** Page fault. */
  PF: 14,
} as const;

/** Page-fault error-code bits (Intel SDM Vol. 3, 4.7). */
export const PfErr = {
  /** The page was present (a protection violation), else not present. */
  P: 1,
  /** The access was a write. */
  W: 2,
  /** The access was made at CPL 3. */
  U: 4,
  /** The access was an instruction fetch. */
  ID: 16,
} as const;

/**
 * An architectural exception raised while executing an instruction. Thrown by memory
 * accesses and instruction handlers, caught by the CPU's step loop, delivered via the IDT.
 */
export class X86Fault {
  /** Exception vector ({@link Vector}). */
  readonly vector: number;
  /** Error code, or -1 when the vector pushes none. */
  readonly errorCode: number;
  /** Faulting linear address (page faults: becomes CR2), else 0. */
  readonly address: number;
  /** Short human explanation used in diagnostics (triple-fault messages). */
  readonly why: string;
  /**
   * Creates a fault value.
   * @param vector Exception vector.
   * @param errorCode Error code, -1 for none.
   * @param address Faulting address for #PF.
   * @param why Explanation for diagnostics.
   */
  constructor(vector: number, errorCode: number, address: number, why: string) {
    this.vector = vector;
    this.errorCode = errorCode;
    this.address = address;
    this.why = why;
  }
}

/**
 * Creates the fault value for `#UD`.
 * @param why Explanation for diagnostics.
 * @returns The fault to throw.
 */
export function udFault(why: string): X86Fault {
  return new X86Fault(Vector.UD, -1, 0, why);
}

/**
 * Creates the fault value for `#GP(code)`.
 * @param code Error code.
 * @param why Explanation for diagnostics.
 * @returns The fault to throw.
 */
export function gpFault(code: number, why: string): X86Fault {
  return new X86Fault(Vector.GP, code, 0, why);
}

/** The lowest canonical address, -2^47, as a signed number. */
export const CANON_LOW: number = -0x800000000000;
/** One past the highest canonical address, 2^47. */
export const CANON_HIGH: number = 0x800000000000;

/**
 * The CPU as the instruction semantics see it. Implemented by `lib/machine/cpu.ts`.
 *
 * Registers are two `Int32Array`s of 16 (low and high 32 bits; rax..r15). Handlers set
 * {@link CpuCore.ip} only after the last access that can fault, so a thrown
 * {@link X86Fault} leaves `ip` at the faulting instruction.
 */
export interface CpuCore {
  /** 64 (long mode, 64-bit code) or 32 (flat protected mode). */
  readonly bitness: 32 | 64;
  /** Low 32 bits of rax..r15. */
  readonly lo: Int32Array;
  /** High 32 bits of rax..r15 (always 0 in 32-bit mode). */
  readonly hi: Int32Array;
  /** RFLAGS (bit 1 always set); reading it materializes pending lazy flags. */
  flags: number;
  /** Instruction pointer (signed in 64-bit mode). */
  ip: number;
  /** Current privilege level (cs & 3). */
  readonly cpl: number;
  /** Segment selectors ES, CS, SS, DS, FS, GS. */
  readonly sreg: Uint16Array;
  /** FS segment base. */
  fsBase: number;
  /** GS segment base. */
  gsBase: number;
  /** High 32 bits of the last {@link CpuCore.read64}. */
  hi64: number;
  /** Reads a byte (zero-extended). */
  read8(a: number): number;
  /** Reads 2 bytes little-endian (zero-extended). */
  read16(a: number): number;
  /** Reads 4 bytes little-endian (as int32). */
  read32(a: number): number;
  /** Reads 8 bytes: returns the low int32, sets {@link CpuCore.hi64}. */
  read64(a: number): number;
  /** Writes a byte. */
  write8(a: number, v: number): void;
  /** Writes 2 bytes. */
  write16(a: number, v: number): void;
  /** Writes 4 bytes. */
  write32(a: number, v: number): void;
  /** Writes 8 bytes given as two int32 halves. */
  write64(a: number, lo: number, hi: number): void;
  /**
   * `int n` / `int3`: delivers the software interrupt (DPL checked against CPL) with
   * `nextIp` as the saved ip. May throw an {@link X86Fault} (#GP, #NP, #PF...).
   */
  softwareInterrupt(vector: number, nextIp: number): void;
  /** iret with operand size `size` (2, 4 or 8); pops the frame and serializes. */
  iret(size: number): void;
  /** hlt: stop fetching until an interrupt (the ip is already past the hlt). */
  halt(): void;
  /** A serializing instruction retired (cpuid, iret): drop any stale fetch state. */
  serialize(): void;
  /** pause: a spin-wait hint (the SMP scheduler may switch CPUs here). */
  pause(): void;
  /** sti that set IF: interrupts stay blocked until after the next instruction. */
  interruptShadow(): void;
  /** Loads a data segment register (mov/pop to sreg). */
  loadSreg(index: number, selector: number): void;
  /**
   * Records the operands of an ADD/SUB/AND/OR/XOR/CMP/TEST whose arithmetic flags are
   * computed later, by `aluBinary`, when {@link CpuCore.flags} is next read (lazy flags:
   * most flag results are overwritten before anything reads them).
   */
  lazyFlags(op: number, size: number, aLo: number, aHi: number, bLo: number, bHi: number): void;
}
