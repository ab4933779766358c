/**
 * Native functions: TypeScript functions bound to addresses. When a CPU's ip reaches a
 * bound address, the machine calls the function with the kernel calling convention
 * (x86-64: rdi, rsi, rdx, rcx, r8, r9, then the stack; x86-32 regparm(3): eax, edx, ecx,
 * then the stack), writes the return value to rax/eax and returns as `ret` would (pops
 * the return address). The whole call counts as one step.
 *
 * The kernel model's C functions (do_int3, ftrace_int3_handler, ...) are natives: they read
 * and write pt_regs in emulated memory through {@link NativeCall}.
 *
 * @module
 */

import { hexAddr, MachineError, TextpokeError } from "../errors.ts";
import { type Handler, Slot } from "../x86/execute.ts";
import { Op } from "../x86/insn.ts";
import { CANON_HIGH, CANON_LOW, type CpuCore, gpFault, Vector, X86Fault } from "../x86/state.ts";
import type { Cpu } from "./cpu.ts";
import type { Machine } from "./machine.ts";

/** What a native function sees: its arguments, the CPU, the machine and memory helpers. */
export interface NativeCall {
  /** The binding's name (for messages). */
  readonly name: string;
  /** The calling CPU. */
  readonly cpu: Cpu;
  /** The machine. */
  readonly machine: Machine;
  /** The address the function is bound to (unsigned). */
  readonly address: bigint;
  /**
   * Argument `i` (0-based) by the kernel calling convention.
   * @param i Argument index.
   * @returns Its value (unsigned, register width).
   */
  arg(i: number): bigint;
  /** Host read of 1 byte. */
  read8(address: bigint): bigint;
  /** Host read of 2 bytes. */
  read16(address: bigint): bigint;
  /** Host read of 4 bytes. */
  read32(address: bigint): bigint;
  /** Host read of 8 bytes. */
  read64(address: bigint): bigint;
  /** Host write of 1 byte. */
  write8(address: bigint, value: bigint): void;
  /** Host write of 2 bytes. */
  write16(address: bigint, value: bigint): void;
  /** Host write of 4 bytes. */
  write32(address: bigint, value: bigint): void;
  /** Host write of 8 bytes. */
  write64(address: bigint, value: bigint): void;
  /** Host read of bytes. */
  readBytes(address: bigint, n: number): Uint8Array;
  /** Host write of bytes. */
  writeBytes(address: bigint, bytes: ArrayLike<number>): void;
  /**
   * Stops the run after this call with kind `"native"` (an oops); the CPU stays at the
   * native's address and does not return.
   * @param message Diagnostic for the stop reason.
   */
  stop(message: string): void;
}

/**
 * A native function: returns the value for rax/eax (bigint or number), or nothing to leave
 * rax/eax as it is.
 */
export type NativeFunction = (call: NativeCall) => bigint | number | void;

/** A bound native, as the machine stores it. */
export interface NativeBinding {
  /** Name for traces and messages. */
  readonly name: string;
  /** Bound address, internal form. */
  readonly at: number;
  /** The function. */
  readonly fn: NativeFunction;
  /** The slot the fetch path returns for this address. */
  readonly slot: Slot;
}

const TWO32 = 4294967296;

const ARGS_64 = ["rdi", "rsi", "rdx", "rcx", "r8", "r9"];
const ARGS_32 = ["eax", "edx", "ecx"];
/** Their register numbers, for reading them without the lookup by name. */
const ARG_REGS_64 = [7, 6, 2, 1, 8, 9];
const ARG_REGS_32 = [0, 2, 1];

let lastLo = 0;
let lastHi = 0;
let lastWord = 0n;

/**
 * The unsigned bigint of a register's halves, the last one remembered (bigints are values:
 * a trap handler is called with the same pt_regs pointer again and again).
 */
function word64(lo: number, hi: number): bigint {
  if (lo !== lastLo || hi !== lastHi) {
    lastWord = (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
    lastLo = lo;
    lastHi = hi;
  }
  return lastWord;
}

class Call implements NativeCall {
  readonly name: string;
  readonly cpu: Cpu;
  readonly machine: Machine;
  readonly #at: number;
  #address: bigint | undefined = undefined;
  stopped = false;
  constructor(b: NativeBinding, cpu: Cpu) {
    this.name = b.name;
    this.cpu = cpu;
    this.machine = cpu.machine;
    this.#at = b.at;
  }
  get address(): bigint {
    // Converted on first use: most natives never ask.
    return this.#address ??= this.machine.memory.toBigInt(this.#at);
  }
  arg(i: number): bigint {
    const c = this.cpu;
    if (c.bitness === 64) {
      if (i < 6) {
        // What getReg("rdi") returns, without the lookup by name.
        const r = ARG_REGS_64[i];
        if (r === undefined) return c.getReg(ARGS_64[i]!);
        return word64(c.lo[r]!, c.hi[r]!);
      }
      return this.machine.memory.read64(c.getReg("rsp") + 8n + 8n * BigInt(i - 6));
    }
    if (i < 3) {
      const r = ARG_REGS_32[i];
      if (r === undefined) return c.getReg(ARGS_32[i]!);
      return BigInt(c.lo[r]! >>> 0);
    }
    return this.machine.memory.read32(
      BigInt.asUintN(32, c.getReg("esp") + 4n + 4n * BigInt(i - 3)),
    );
  }
  read8(a: bigint): bigint {
    return this.machine.memory.read8(a);
  }
  read16(a: bigint): bigint {
    return this.machine.memory.read16(a);
  }
  read32(a: bigint): bigint {
    return this.machine.memory.read32(a);
  }
  read64(a: bigint): bigint {
    return this.machine.memory.read64(a);
  }
  write8(a: bigint, v: bigint): void {
    this.machine.memory.write8(a, v);
  }
  write16(a: bigint, v: bigint): void {
    this.machine.memory.write16(a, v);
  }
  write32(a: bigint, v: bigint): void {
    this.machine.memory.write32(a, v);
  }
  write64(a: bigint, v: bigint): void {
    this.machine.memory.write64(a, v);
  }
  readBytes(a: bigint, n: number): Uint8Array {
    return this.machine.memory.readBytes(a, n);
  }
  writeBytes(a: bigint, bytes: ArrayLike<number>): void {
    this.machine.memory.writeBytes(a, bytes);
  }
  stop(message: string): void {
    this.stopped = true;
    this.cpu.requestStop("native", `${this.name} at ${hexAddr(this.address)} stopped: ${message}`);
  }
}

/** The handler of every native slot: call, set rax/eax, return as `ret`. */
const hNative: Handler = (core: CpuCore, s: Slot): void => {
  const cpu = core as Cpu;
  const b = s.data as NativeBinding;
  const call = new Call(b, cpu);
  cpu.traceEvent("native", b.at, -1);
  // The return address must be readable before the body runs: a fault there is the
  // `ret`'s, delivered with ip at the native, and the body must not run twice.
  const sp0 = cpu.spValue();
  if (cpu.bitness === 64) {
    if (sp0 < CANON_LOW || sp0 >= CANON_HIGH) {
      throw new X86Fault(Vector.SS, 0, 0, "non-canonical stack in native return");
    }
    cpu.read64(sp0);
  } else cpu.read32(sp0);
  let r: bigint | number | void;
  try {
    r = b.fn(call);
  } catch (e) {
    // Architectural faults are delivered; typed errors already name what is wrong. Any
    // other host exception is a bug in the native: say which one, on which CPU.
    if (e instanceof X86Fault || e instanceof TextpokeError) throw e;
    throw new MachineError(
      `Native ${b.name} at ${hexAddr(call.address)} on CPU ${cpu.index} threw: ${
        e instanceof Error ? `${e.name}: ${e.message}` : String(e)
      }`,
      { cause: e },
    );
  }
  if (call.stopped) return;
  if (typeof r === "number" && !Number.isSafeInteger(r)) {
    throw new MachineError(
      `Native ${b.name} at ${hexAddr(call.address)} returned ${r}, not an integer`,
    );
  }
  if (typeof r === "bigint" && r >= 0n && r <= 0xffffffffn) {
    // A 32-bit value (a 32-bit kernel's pointer): what the general case below does.
    cpu.lo[0] = Number(r) | 0;
    cpu.hi[0] = 0;
  } else if (r !== undefined) {
    // What setReg("rax" / "eax") does, without the lookup by name.
    const v = BigInt.asUintN(64, BigInt(r));
    cpu.lo[0] = Number(v & 0xffffffffn) | 0;
    cpu.hi[0] = cpu.bitness === 64 ? Number(v >> 32n) | 0 : 0;
  }
  // Return as `ret`: pop the return address.
  const sp = cpu.spValue();
  let target: number;
  if (cpu.bitness === 64) {
    if (sp < CANON_LOW || sp >= CANON_HIGH) {
      throw new X86Fault(Vector.SS, 0, 0, "non-canonical stack in native return");
    }
    const lo = cpu.read64(sp);
    target = cpu.hi64 * TWO32 + (lo >>> 0);
    if (target < CANON_LOW || target >= CANON_HIGH) {
      throw gpFault(0, "native returns to a non-canonical address");
    }
    cpu.setSpValue(sp + 8);
  } else {
    target = cpu.read32(sp) >>> 0;
    cpu.setSpValue((sp + 4) >>> 0);
  }
  cpu.ip = target;
};

/**
 * Creates the binding record (with its slot) for a native function.
 * @param at Internal address.
 * @param fn The function.
 * @param name Its name.
 * @returns The binding.
 */
export function makeNativeBinding(at: number, fn: NativeFunction, name: string): NativeBinding {
  const slot = new Slot();
  slot.op = Op.CALL; // informative only: the slot runs hNative
  slot.len = 1;
  const binding: NativeBinding = { name, at, fn, slot };
  slot.fn = hNative;
  slot.data = binding;
  return binding;
}
