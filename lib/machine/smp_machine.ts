/**
 * Binds the SMP layer ({@link Smp}) to a {@link Machine}: the {@link SmpHost} view of
 * its CPUs and memory, and the machine hooks that route code stores, serializations,
 * irets, exception deliveries, torn fetches and line-straddling stores to the SMP model.
 *
 * @module
 */

import { IF } from "../x86/flags.ts";
import { decodeInto } from "../x86/decode.ts";
import type { Cpu } from "./cpu.ts";
import type { Machine } from "./machine.ts";
import { PAGE_SIZE } from "./memory.ts";
import type { SchedulePolicy } from "./schedule.ts";
import { type FetchMode, Smp, type SmpHost, StepStatus } from "./smp.ts";
import { SerializeReason, Trace } from "./trace.ts";

/** SMP options of a machine (see {@link attachSmp}). */
export interface SmpMachineOptions {
  /** Scheduling policy (default roundRobin(1)). */
  schedule?: SchedulePolicy;
  /** Instruction-fetch coherency mode (default `coherent`). */
  fetch?: FetchMode;
  /** Trace ring capacity in events (default 0: hash only). */
  traceCapacity?: number;
  /** Split plain stores that straddle a 64-byte line (default true). */
  splitStores?: boolean;
}

/** The {@link SmpHost} view of a {@link Machine}. */
export class MachineSmpHost implements SmpHost {
  /** The machine. */
  readonly machine: Machine;
  /** Number of CPUs. */
  readonly cpuCount: number;
  /** Code size. */
  readonly bitness: 32 | 64;
  /** The CPU a kernel thread writes for (host-side writes are otherwise the SMP's current writer), or -1. */
  writer: number = -1;
  /** Address at which a CPU stops before executing (NaN: none). */
  until: number = NaN;
  /** Kind of the last host stop (`hlt`, `triple-fault`, `native`, `until`). */
  stopKind: string[] = [];
  readonly #stopMessage: string[] = [];
  readonly #cpus: readonly Cpu[];

  /**
   * Wraps a machine.
   * @param machine The machine.
   */
  constructor(machine: Machine) {
    this.machine = machine;
    this.cpuCount = machine.cpus.length;
    this.bitness = machine.bitness;
    this.#cpus = machine.cpus;
  }

  /**
   * Executes one step of CPU `c` (see {@link SmpHost.stepCpu}).
   * @param c CPU index.
   * @returns A {@link StepStatus} code.
   */
  stepCpu(c: number): number {
    const cpu = this.#cpus[c]!;
    if (this.until !== this.until) cpu.stepOnce();
    else cpu.runSteps(1, this.until);
    const taken = cpu.takeStop();
    if (taken === null) return cpu.halted ? StepStatus.HALTED : StepStatus.RAN;
    this.stopKind[c] = taken[0];
    this.#stopMessage[c] = taken[1];
    return taken[0] === "hlt" ? StepStatus.HALTED : StepStatus.STOP_RUN;
  }

  /**
   * The diagnostic of CPU `c`'s last stop.
   * @param c CPU index.
   * @returns A sentence naming the address.
   */
  stopMessage(c: number): string {
    return this.#stopMessage[c] ?? `CPU ${c} stopped`;
  }

  /**
   * Queues an external interrupt on CPU `c`.
   * @param c CPU index.
   * @param vector The vector.
   */
  raiseInterrupt(c: number, vector: number): void {
    this.#cpus[c]!.raiseInterrupt(vector);
  }

  /**
   * Delivers an NMI to CPU `c` now.
   * @param c CPU index.
   * @returns A {@link StepStatus} code.
   */
  deliverNmi(c: number): number {
    const cpu = this.#cpus[c]!;
    cpu.deliverNow(2);
    const taken = cpu.takeStop();
    if (taken === null) return StepStatus.RAN;
    this.stopKind[c] = taken[0];
    this.#stopMessage[c] = taken[1];
    return StepStatus.STOP_RUN;
  }

  /**
   * Whether CPU `c` has interrupts enabled.
   * @param c CPU index.
   * @returns RFLAGS.IF.
   */
  interruptsEnabled(c: number): boolean {
    return (this.#cpus[c]!.flags & IF) !== 0;
  }

  /**
   * Whether CPU `c` is in the interrupt shadow of an `sti` (its next instruction retires
   * before any maskable interrupt).
   * @param c CPU index.
   * @returns True in the shadow.
   */
  interruptShadow(c: number): boolean {
    return this.#cpus[c]!.inInterruptShadow;
  }

  /**
   * Whether CPU `c` sits in hlt with nothing queued that could wake it.
   * @param c CPU index.
   * @returns True when halted.
   */
  isHalted(c: number): boolean {
    const cpu = this.#cpus[c]!;
    // A queued interrupt it can take wakes it (raised directly, or handed over by the
    // scheduler during an interrupt shadow).
    return cpu.halted && !(cpu.pendingInterrupts > 0 && (cpu.flags & IF) !== 0);
  }

  /**
   * The instruction pointer of CPU `c`.
   * @param c CPU index.
   * @returns The ip (internal number form).
   */
  ip(c: number): number {
    return this.#cpus[c]!.ip;
  }

  /**
   * Drops CPU `c`'s predecoded instructions over physical bytes.
   * @param c CPU index.
   * @param phys Physical address (frame * 4096 + offset).
   * @param length Number of bytes.
   */
  invalidateCode(c: number, phys: number, length: number): void {
    const frame = Math.floor(phys / PAGE_SIZE);
    this.#cpus[c]!.invalidateCode(frame, phys - frame * PAGE_SIZE, length);
  }

  /**
   * Reads physical memory.
   * @param phys Physical address.
   * @param length Number of bytes (within one frame).
   * @returns A copy.
   */
  readPhys(phys: number, length: number): Uint8Array {
    const frame = Math.floor(phys / PAGE_SIZE);
    const off = phys - frame * PAGE_SIZE;
    const bytes = this.machine.memory.frames[frame];
    if (bytes === undefined) return new Uint8Array(length);
    return bytes.slice(off, off + length);
  }

  /**
   * Reads memory at a virtual address (host side).
   * @param address Virtual address (internal form).
   * @param length Number of bytes.
   * @returns A copy.
   */
  readBytes(address: number, length: number): Uint8Array {
    return this.machine.memory.readBytesAt(address, length);
  }

  /**
   * Writes memory at a virtual address on behalf of CPU `c` (code stores are that CPU's).
   * @param c Writing CPU.
   * @param address Virtual address (internal form).
   * @param bytes The bytes.
   */
  writeBytes(c: number, address: number, bytes: Uint8Array): void {
    const mem = this.machine.memory;
    const saved = this.writer;
    this.writer = c;
    try {
      mem.writeBytesAt(address, bytes);
    } finally {
      this.writer = saved;
    }
  }
}

/**
 * Creates the {@link Smp} of `machine` and installs its hooks: code stores (routed by
 * fetch mode), serializations (cpuid, iret), exception deliveries, the torn-fetch
 * decoder and the split of line-straddling plain stores. Sets `machine.smp`, replacing
 * (and unhooking) any SMP layer the machine had. A machine created with more than one
 * CPU or an SMP option already has one; call this to change options afterwards.
 *
 * @param machine The machine (1–64 CPUs).
 * @param options Policy, fetch mode, trace capacity.
 * @returns The SMP layer (also reachable as `machine.smp`).
 */
export function attachSmp(machine: Machine, options: SmpMachineOptions = {}): Smp {
  const host = new MachineSmpHost(machine);
  const smpOptions: ConstructorParameters<typeof Smp>[1] = {
    trace: new Trace(options.traceCapacity ?? 0),
  };
  if (options.schedule !== undefined) smpOptions.schedule = options.schedule;
  if (options.fetch !== undefined) smpOptions.fetch = options.fetch;
  if (options.splitStores !== undefined) smpOptions.splitStores = options.splitStores;
  const smp = new Smp(host, smpOptions);
  machine.smp = smp;
  const mem = machine.memory;
  let iretPending = -1;
  machine.codeWritePolicy = (frame, offset, length, writer) => {
    if (writer < 0) writer = host.writer >= 0 ? host.writer : smp.currentWriter();
    smp.noteCodeStore(writer, frame * PAGE_SIZE + offset, length);
  };
  machine.onSerialize = (cpu) => {
    if (iretPending === cpu.index) {
      iretPending = -1;
      return; // noteIret already serialized
    }
    smp.serialize(cpu.index, SerializeReason.CPUID);
  };
  machine.onIret = (cpu, target) => {
    iretPending = cpu.index;
    smp.noteIret(cpu.index, target);
  };
  machine.onException = (cpu, vector, savedIp) => {
    smp.noteException(cpu.index, vector, savedIp);
  };
  const split = smp.splitStores && machine.cpus.length > 1;
  machine.splitStore = split
    ? (cpu, address, bytes, locked) => smp.splitStore(cpu.index, address, bytes, locked)
    : null;
  for (const cpu of machine.cpus) {
    cpu.splitLines = split;
    cpu.decodeHook = decodeInto;
    cpu.flushCode(); // a previous layer's torn copies must not survive
  }
  // With the trace ring on, every decode is reported so retire records show the bytes
  // each CPU decoded (a stale copy keeps its old bytes); the plain path keeps decodeInto.
  const noteDecodes = smp.wantsDecodes;
  if (smp.fetch === "torn") {
    for (const cpu of machine.cpus) {
      const index = cpu.index;
      cpu.decodeHook = (out, bytes, offset, bitness) => {
        if (smp.hasPendingCode(index)) {
          const frame = mem.frames.indexOf(bytes);
          if (frame >= 0) {
            const view = smp.fetchView(index, frame * PAGE_SIZE + offset, bytes, offset);
            if (view !== null) {
              decodeInto(out, view, 0, bitness);
              if (noteDecodes) smp.noteDecode(index, cpu.ip, view, 0);
              return;
            }
          }
        }
        decodeInto(out, bytes, offset, bitness);
        if (noteDecodes) smp.noteDecode(index, cpu.ip, bytes, offset);
      };
    }
  } else if (noteDecodes) {
    for (const cpu of machine.cpus) {
      const index = cpu.index;
      cpu.decodeHook = (out, bytes, offset, bitness) => {
        decodeInto(out, bytes, offset, bitness);
        smp.noteDecode(index, cpu.ip, bytes, offset);
      };
    }
  }
  return smp;
}
