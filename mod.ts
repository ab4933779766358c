/**
 * textpoke — the Linux kernel's x86 live-code-patching machinery (int3, text_poke_bp,
 * ftrace, static_call, livepatch) on an emulated SMP x86 machine you can watch and
 * measure.
 *
 * Layers, bottom up: `decode`/`assemble`/`disassemble` (the ISA), `Machine` (memory,
 * CPUs, exceptions, natives), the modeled kernel, the patchers and the proposals of the
 * 2019 LKML thread.
 *
 * @example Assemble a call, run it, read the result
 * ```ts
 * import { assemble, Machine } from "@textpoke/textpoke";
 *
 * const { bytes } = assemble(
 *   `movl $20, %edi
 *    call double_it
 *    hlt
 *   double_it:
 *    leal (%rdi,%rdi,1), %eax
 *    ret`,
 *   { bitness: 64, origin: 0x1000n },
 * );
 * const m = new Machine({ bitness: 64 });
 * m.load(0x1000n, bytes, "rx");
 * m.map(0x8000n, 0x1000, "rw");
 * const cpu = m.cpus[0]!;
 * cpu.setReg("rsp", 0x9000n);
 * cpu.rip = 0x1000n;
 * const stop = m.run({ maxSteps: 100 });
 * console.log(stop.kind, cpu.getReg("rax")); // hlt 40n
 * ```
 *
 * @module
 */
export * from "./lib/errors.ts";
export * from "./lib/x86/insn.ts";
export { decode, decodeInto, insnLength } from "./lib/x86/decode.ts";
export { assemble, nopPadding } from "./lib/x86/assemble.ts";
export type { Assembled, AssembledLine, AssembleOptions } from "./lib/x86/assemble.ts";
export { disassemble, formatListing } from "./lib/x86/disassemble.ts";
export type { DisassembledLine, DisassembleOptions } from "./lib/x86/disassemble.ts";
export { ElfFile, parseElf } from "./lib/x86/elf.ts";
export type { ElfSection, ElfSymbol } from "./lib/x86/elf.ts";
export * as flags from "./lib/x86/flags.ts";
export { Vector } from "./lib/x86/state.ts";
export { Machine } from "./lib/machine/machine.ts";
export type {
  GateOptions,
  MachineOptions,
  RunOptions,
  StopKind,
  StopReason,
} from "./lib/machine/machine.ts";
export { Cpu } from "./lib/machine/cpu.ts";
export type { TraceRecord, Tss } from "./lib/machine/cpu.ts";
export { DEFAULT_MEMORY_LIMIT, Memory, PAGE_SIZE } from "./lib/machine/memory.ts";
export type { MapOptions, PagePerms } from "./lib/machine/memory.ts";
export type { NativeCall, NativeFunction } from "./lib/machine/native.ts";
export type { NativeBinding } from "./lib/machine/native.ts";
export type { Gate } from "./lib/machine/exceptions.ts";
export type { CpuCore } from "./lib/x86/state.ts";
export type { ExecCore, Handler, Slot } from "./lib/x86/execute.ts";
export { explore, Prng, random, replay, roundRobin, scripted } from "./lib/machine/schedule.ts";
export type {
  Explorable,
  ExploreOptions,
  ExploreResult,
  SchedulePolicy,
} from "./lib/machine/schedule.ts";
export { SerializeReason, ThreadOp, Trace, TraceKind } from "./lib/machine/trace.ts";
export type {
  ExceptionEntryRecord,
  ExceptionExitRecord,
  IpiRecord,
  MiscRecord,
  RetireRecord,
  SerializeRecord,
  StoreRecord,
  TimelineRecord,
} from "./lib/machine/trace.ts";
export {
  CACHE_LINE_SIZE,
  CALL_FUNCTION_VECTOR,
  KernelContext,
  MAX_INSN_SIZE,
  NMI_VECTOR,
  Smp,
  StepStatus,
} from "./lib/machine/smp.ts";
export type {
  FetchMode,
  IpiFunction,
  KernelGen,
  KernelThread,
  KernelYield,
  RunResult,
  SmpHost,
  SmpOptions,
  SmpStopReason,
} from "./lib/machine/smp.ts";
export { attachSmp, MachineSmpHost } from "./lib/machine/smp_machine.ts";
export type { SmpMachineOptions } from "./lib/machine/smp_machine.ts";
export * from "./lib/kernel/mod.ts";
export * from "./lib/ftrace/mod.ts";
export * from "./lib/static_call/mod.ts";
export * from "./lib/livepatch/mod.ts";
export * from "./lib/proposals/mod.ts";
export * from "./lib/experiments/mod.ts";
export * from "./lib/image/mod.ts";
