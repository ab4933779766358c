/**
 * The emulated machine: shared memory, 1–64 CPUs, one IDT, native-function bindings, and
 * the run loop that ends with a {@link StopReason}.
 *
 * The mode is fixed per machine: `bitness: 64` is long mode with 64-bit code segments,
 * `bitness: 32` flat protected mode. Segments are flat (no GDT walk); CPL = cs & 3; the
 * selectors are the kernel's (`__KERNEL_CS` 0x10 / 0x60 ...). CPUs start at CPL 0 with
 * interrupts disabled, every register 0.
 *
 * @example Run a small program to its hlt
 * ```ts
 * import { Machine } from "./machine.ts";
 * const m = new Machine({ bitness: 64 });
 * // mov $5,%eax; add $2,%eax; hlt
 * m.load(0x1000n, [0xb8, 5, 0, 0, 0, 0x83, 0xc0, 2, 0xf4], "rx");
 * const cpu = m.cpus[0]!;
 * cpu.rip = 0x1000n;
 * const stop = m.run({ maxSteps: 100 });
 * console.log(stop.kind, cpu.getReg("rax")); // "hlt" 7n
 * ```
 *
 * @module
 */

import { hexAddr, MachineError } from "../errors.ts";
import { Cpu } from "./cpu.ts";
import type { Gate } from "./exceptions.ts";
import { type MapOptions, Memory, PAGE_SIZE, type PagePerms } from "./memory.ts";
import { makeNativeBinding, type NativeBinding, type NativeFunction } from "./native.ts";
import type { SchedulePolicy } from "./schedule.ts";
import type { FetchMode, KernelContext, KernelGen, KernelThread, Smp } from "./smp.ts";
import { attachSmp, type MachineSmpHost } from "./smp_machine.ts";
import { machineStateHash } from "./state_hash.ts";

/** Options of a {@link Machine}. */
export interface MachineOptions {
  /** 64 (long mode) or 32 (flat protected mode). */
  bitness: 32 | 64;
  /** Number of CPUs, 1–64 (default 1). */
  cpus?: number;
  /** Total bytes of memory frames (default 256 MiB). */
  memoryLimit?: number;
  /** Default step budget of {@link Machine.run} (default 10,000,000). */
  stepBudget?: number;
  /**
   * Scheduling policy of the CPUs (`roundRobin(q)`, `random(seed)`, or the explorer's):
   * default `roundRobin(1)`. Any SMP option (or more than one CPU) gives the machine its
   * SMP layer, {@link Machine.smp}.
   */
  schedule?: SchedulePolicy;
  /** Instruction-fetch coherency: `coherent` (default), `stale` or `torn`. */
  fetch?: FetchMode;
  /** Events kept by the trace ring of {@link Machine.smp} (default 0: trace hash only). */
  traceCapacity?: number;
  /** Split plain stores straddling a 64-byte line into two visible halves (default true). */
  splitStores?: boolean;
}

/** Why a run stopped. */
export type StopKind =
  /** A CPU executed hlt with IF = 0 or with no interrupt that could wake it. */
  | "hlt"
  /** The step budget ran out. */
  | "budget"
  /** A fault while delivering a double fault (the diagnostic names every vector). */
  | "triple-fault"
  /** A native function called `call.stop(...)`. */
  | "native"
  /** The CPU reached the `until` address of {@link RunOptions}. */
  | "until"
  /** No CPU can step but a kernel thread waits (SMP): the wait can never end. */
  | "deadlock"
  /** A kernel thread threw (SMP); the message names the error. */
  | "thread-error"
  /**
   * The CPU reached an architectural path the model does not have (a 32-bit iret with
   * NT = 1: a task return through the TSS back link); the message names it. Nothing of
   * the instruction happened: the ip is still at it.
   */
  | "unmodelled";

/** The result of {@link Machine.run} / {@link Machine.stepCpu}: a plain record. */
export interface StopReason {
  /** Why the run stopped. */
  readonly kind: StopKind;
  /**
   * The CPU concerned (for `budget`: under the SMP scheduler the CPU that took the last
   * step, without it the CPU whose turn is next).
   */
  readonly cpu: number;
  /** That CPU's ip at the stop (unsigned). */
  readonly ip: bigint;
  /** Steps taken by this run (all CPUs). */
  readonly steps: number;
  /** Human-readable diagnostic naming the address (and bytes / vectors for faults). */
  readonly message: string;
}

/** Options of {@link Machine.run}. */
export interface RunOptions {
  /** Step budget of this run (default: the machine's `stepBudget`). */
  maxSteps?: number;
  /** Stop (kind `"until"`) when the CPU reaches this address, before executing it. */
  until?: bigint;
  /** Run only this CPU (default: CPU 0 alone on a 1-CPU machine, round-robin otherwise). */
  cpu?: number;
}

/** An IDT gate for {@link Machine.setGate}. */
export interface GateOptions {
  /** Handler address. */
  handler: bigint;
  /** `"interrupt"` (clears IF, the default) or `"trap"` (keeps IF). */
  type?: "interrupt" | "trap";
  /** Descriptor privilege level, 0–3 (default 0): `int n` from CPL > dpl raises #GP. */
  dpl?: number;
}

/**
 * An emulated x86 machine.
 *
 * Extension points (the SMP work builds on these):
 * - {@link Machine.stepCpu} executes exactly one instruction or event on one CPU.
 * - {@link Machine.codeWritePolicy} decides what a store to predecoded code does to each
 *   CPU's cache (default: invalidate everywhere at once, the `coherent` mode).
 * - {@link Machine.onSerialize} runs when a CPU serializes (cpuid, iret).
 * - {@link Machine.onPause} runs on `pause` (spin-wait loops).
 * - {@link Machine.onIret} and {@link Machine.onException} see every iret and delivery.
 * - {@link Machine.splitStore} (with `cpu.splitLines`) splits line-straddling stores.
 *
 * @example Run a few instructions on one CPU
 * ```ts
 * import { assemble, Machine } from "@textpoke/textpoke";
 *
 * const m = new Machine({ bitness: 64 });
 * m.load(0x1000n, assemble("movl $7, %eax\n addl %eax, %eax\n hlt", { bitness: 64 }).bytes, "rx");
 * m.cpus[0]!.rip = 0x1000n;
 * const stop = m.run({ maxSteps: 10 });
 * console.log(stop.kind, m.cpus[0]!.getReg("eax")); // hlt 14n
 * ```
 */
export class Machine {
  /** 64 or 32. */
  readonly bitness: 32 | 64;
  /** The shared memory. */
  readonly memory: Memory;
  /** The CPUs. */
  readonly cpus: readonly Cpu[];
  /** The IDT (shared by all CPUs), internal form; use {@link Machine.setGate}. */
  readonly idt: (Gate | undefined)[] = new Array(256).fill(undefined);
  /** Native bindings by internal address. */
  readonly natives: Map<number, NativeBinding> = new Map();
  /** Default step budget of {@link Machine.run}. */
  readonly stepBudget: number;
  /**
   * Called for every store that hits a frame holding predecoded instructions (CPU stores
   * and host writes; `writer` is the CPU index or -1 for the host). The default
   * invalidates the bytes in every CPU's cache immediately.
   */
  codeWritePolicy: (frame: number, offset: number, length: number, writer: number) => void;
  /** Called when a CPU executes a serializing instruction (cpuid, iret). Default: nothing. */
  onSerialize: (cpu: Cpu) => void = () => {};
  /** Called when a CPU executes pause. Default: nothing. */
  onPause: (cpu: Cpu) => void = () => {};
  /**
   * Called when a CPU executes iret, after the frame is popped and before
   * {@link Machine.onSerialize}; `target` is the ip it returns to (internal form).
   */
  onIret: (cpu: Cpu, target: number) => void = () => {};
  /**
   * Called after an exception or interrupt has been delivered (the CPU is at the
   * handler); `savedIp` is the ip pushed in the frame (internal form).
   */
  onException: (cpu: Cpu, vector: number, savedIp: number) => void = () => {};
  /**
   * When set, called for a CPU store of 2–8 bytes that straddles a 64-byte line: returns
   * how many leading bytes to store now (the SMP layer commits the rest later, so other
   * CPUs may observe the store half done). `locked` is true for locked instructions.
   * Null (the default): every store is whole.
   */
  splitStore: ((cpu: Cpu, address: number, bytes: Uint8Array, locked: boolean) => number) | null =
    null;
  /**
   * The SMP layer (scheduler, IPIs, NMIs, kernel threads, fetch model), or null. A
   * machine with more than one CPU or any SMP option has one; `attachSmp()` replaces it.
   */
  smp: Smp | null = null;
  private rr = 0;

  /**
   * Creates a machine with zeroed CPUs at CPL 0 and no memory mapped.
   * @param options Mode, CPU count, memory limit, step budget.
   * @throws MachineError for a bad bitness, CPU count (1–64), limit or budget.
   */
  constructor(options: MachineOptions) {
    const { bitness } = options;
    if (bitness !== 32 && bitness !== 64) {
      throw new MachineError(`Bitness must be 32 or 64, not ${bitness}`);
    }
    const n = options.cpus ?? 1;
    if (!Number.isInteger(n) || n < 1 || n > 64) {
      throw new MachineError(`A machine has 1 to 64 CPUs, not ${n}`);
    }
    const budget = options.stepBudget ?? 10_000_000;
    if (!Number.isSafeInteger(budget) || budget < 1) {
      throw new MachineError(`Step budget must be a positive integer, not ${budget}`);
    }
    this.bitness = bitness;
    this.stepBudget = budget;
    this.memory = new Memory(bitness, options.memoryLimit);
    const cpus: Cpu[] = [];
    for (let i = 0; i < n; i++) cpus.push(new Cpu(this, i));
    this.cpus = cpus;
    this.codeWritePolicy = (frame, offset, length) => {
      for (const c of this.cpus) c.invalidateCode(frame, offset, length);
    };
    this.memory.onCodeWrite = (f, o, l, w) => this.codeWritePolicy(f, o, l, w);
    this.memory.onMappingChange = () => {
      for (const c of this.cpus) c.flushTlb();
    };
    this.memory.onFrameFree = (f) => {
      for (const c of this.cpus) c.dropFrame(f);
    };
    const smpWanted = n > 1 || options.schedule !== undefined || options.fetch !== undefined ||
      options.traceCapacity !== undefined || options.splitStores !== undefined;
    if (smpWanted) {
      const o: Parameters<typeof attachSmp>[1] = {};
      if (options.schedule !== undefined) o.schedule = options.schedule;
      if (options.fetch !== undefined) o.fetch = options.fetch;
      if (options.traceCapacity !== undefined) o.traceCapacity = options.traceCapacity;
      if (options.splitStores !== undefined) o.splitStores = options.splitStores;
      attachSmp(this, o);
    }
  }

  // -------------------------------------------------------------------------------------
  // SMP

  /** The SMP layer, or a clear error naming what needed it. */
  private needSmp(what: string): Smp {
    if (this.smp === null) {
      throw new MachineError(
        `${what} needs the SMP layer: create the machine with more than one CPU or a schedule`,
      );
    }
    return this.smp;
  }

  /**
   * Runs `body` as a kernel thread (a generator) on CPU `cpu`: each `yield` is one
   * scheduling step of that CPU, so the other CPUs execute between its stores, IPIs and
   * waits. See `KernelContext` for `store`, `xchg`, `load`, `syncCore`, `sendIpi`,
   * `onEachCpu` and `waitUntil`.
   * @param cpu The CPU.
   * @param body The thread body.
   * @returns A handle (`done`, `error`, `steps`).
   * @example
   * ```ts
   * import { Machine } from "./machine.ts";
   * const m = new Machine({ bitness: 64, cpus: 2 });
   * m.load(0x1000n, [0xf4], "rx"); // hlt
   * for (const c of m.cpus) c.rip = 0x1000n;
   * m.map(0x2000n, 0x1000, "rw");
   * const t = m.spawn(0, function* (k) {
   *   yield* k.store(0x2000, [1, 2, 3, 4]);
   * });
   * m.run({ maxSteps: 100 });
   * console.log(t.done, m.read32(0x2000n)); // true 67305985n
   * ```
   */
  spawn(cpu: number, body: (k: KernelContext) => KernelGen<unknown>): KernelThread {
    return this.needSmp("A kernel thread").spawn(cpu, body);
  }

  /**
   * Sends an IPI with `vector` from CPU `from` (-1: the host) to CPU `to` (-1: every other
   * CPU): taken through the IDT at the target's next instruction boundary with IF = 1.
   * @param from Sender, or -1.
   * @param to Target, or -1 for all others.
   * @param vector 32–255.
   */
  sendIpi(from: number, to: number, vector: number): void {
    this.needSmp("An IPI").sendIpi(from, to, vector);
  }

  /**
   * Sends an NMI from `from` (-1: the host) to `to` (-1: every other CPU): delivered
   * through IDT vector 2 even with IF = 0; blocked while an NMI handler runs, until its
   * iret.
   * @param from Sender, or -1.
   * @param to Target, or -1 for all others.
   */
  sendNmi(from: number, to: number): void {
    this.needSmp("An NMI").sendNmi(from, to);
  }

  /**
   * Replaces the scheduling policy (and resets it).
   * @param policy The policy.
   */
  setSchedule(policy: SchedulePolicy): void {
    this.needSmp("A schedule").setSchedule(policy);
  }

  /**
   * The running trace hash of the SMP layer (16 hex digits): same program, policy and
   * seed give the same hash.
   * @returns The hash.
   */
  traceHash(): string {
    return this.needSmp("A trace hash").trace.hash();
  }
  /**
   * A hash of everything observable in the machine — registers, flags, selectors, CPL,
   * CR2, TSS, halt state, steps and queued interrupts of every CPU, the page table and
   * the contents of every mapped frame, the IDT, the natives, and the SMP layer's state —
   * so "after the error the machine is exactly as before" is one comparison.
   *
   * @example
   * ```ts
   * import { Machine } from "@textpoke/textpoke";
   *
   * const m = new Machine({ bitness: 64 });
   * const before = m.stateHash();
   * m.map(0x1000n, 0x1000, "rw");
   * console.log(m.stateHash() !== before); // true
   * ```
   *
   * @param other Further plain state to fold in (bigints allowed), e.g. a patcher's counters.
   * @returns 16 hex digits.
   */
  stateHash(other?: unknown): string {
    return machineStateHash(this, other);
  }

  // -------------------------------------------------------------------------------------
  // Memory

  /**
   * Maps the pages covering `[address, address + bytes.length)` that are not mapped yet
   * (with `perms`; pages already mapped keep theirs) and writes the bytes.
   * @param address Load address.
   * @param bytes Code or data.
   * @param perms Permissions of newly mapped pages (default "rwx").
   * @param options U/S bit of newly mapped pages.
   * @example
   * ```ts
   * import { Machine } from "./machine.ts";
   * const m = new Machine({ bitness: 32 });
   * m.load(0x1000n, [0x90, 0xf4], "rx");
   * console.log(m.readBytes(0x1000n, 2)); // Uint8Array(2) [ 144, 244 ]
   * ```
   */
  load(
    address: bigint,
    bytes: ArrayLike<number>,
    perms: PagePerms = "rwx",
    options: MapOptions = {},
  ): void {
    const n = bytes.length;
    if (n === 0) return;
    const start = this.memory.toNumber(address);
    const first = Math.floor(start / PAGE_SIZE);
    const last = Math.floor((start + n - 1) / PAGE_SIZE);
    // Check the whole load before mapping anything, so a refused load leaves the machine
    // exactly as it was (no half-mapped range).
    const missing: number[] = [];
    for (let p = first; p <= last; p++) if (!this.memory.pages.has(p)) missing.push(p);
    const need = this.memory.usedBytes + missing.length * PAGE_SIZE;
    if (need > this.memory.limit) {
      throw new MachineError(
        `Memory limit of ${this.memory.limit} bytes exceeded: loading ${n} bytes at ${
          hexAddr(address)
        } maps ${missing.length} new pages and needs ${need} bytes`,
      );
    }
    for (const p of missing) {
      this.memory.map(this.memory.toBigInt(p * PAGE_SIZE), PAGE_SIZE, perms, options);
    }
    this.memory.writeBytes(address, bytes);
  }

  /** See {@link Memory.map}. @param address Start. @param size Bytes. @param perms Perms. @param options U/S. */
  map(address: bigint, size: number, perms: PagePerms, options: MapOptions = {}): void {
    this.memory.map(address, size, perms, options);
  }

  /**
   * See {@link Memory.alias}.
   * @param existing Mapped address.
   * @param aliasAddress Alias address.
   * @param size Bytes.
   * @param perms Alias permissions.
   * @param options U/S.
   */
  alias(
    existing: bigint,
    aliasAddress: bigint,
    size: number,
    perms: PagePerms,
    options: MapOptions = {},
  ): void {
    this.memory.alias(existing, aliasAddress, size, perms, options);
  }

  /** See {@link Memory.protect}. @param address Start. @param size Bytes. @param perms Perms. @param options U/S. */
  protect(address: bigint, size: number, perms: PagePerms, options: MapOptions = {}): void {
    this.memory.protect(address, size, perms, options);
  }

  /** See {@link Memory.unmap}. @param address Start. @param size Bytes. */
  unmap(address: bigint, size: number): void {
    this.memory.unmap(address, size);
  }

  /** See {@link Memory.readBytes}. @param address Start. @param n Count. @returns Bytes. */
  readBytes(address: bigint, n: number): Uint8Array {
    return this.memory.readBytes(address, n);
  }

  /** See {@link Memory.writeBytes}. @param address Start. @param bytes Bytes. */
  writeBytes(address: bigint, bytes: ArrayLike<number>): void {
    this.memory.writeBytes(address, bytes);
  }

  /** Host read of a byte. @param address Address. @returns Value. */
  read8(address: bigint): bigint {
    return this.memory.read8(address);
  }
  /** Host read of 2 bytes. @param address Address. @returns Value. */
  read16(address: bigint): bigint {
    return this.memory.read16(address);
  }
  /** Host write of a byte. @param address Address. @param value Value. */
  write8(address: bigint, value: bigint): void {
    this.memory.write8(address, value);
  }
  /** Host write of 2 bytes. @param address Address. @param value Value. */
  write16(address: bigint, value: bigint): void {
    this.memory.write16(address, value);
  }
  /** Host read of 8 bytes. @param address Address. @returns Value. */
  read64(address: bigint): bigint {
    return this.memory.read64(address);
  }
  /** Host read of 4 bytes. @param address Address. @returns Value. */
  read32(address: bigint): bigint {
    return this.memory.read32(address);
  }
  /** Host write of 8 bytes. @param address Address. @param value Value. */
  write64(address: bigint, value: bigint): void {
    this.memory.write64(address, value);
  }
  /** Host write of 4 bytes. @param address Address. @param value Value. */
  write32(address: bigint, value: bigint): void {
    this.memory.write32(address, value);
  }

  // -------------------------------------------------------------------------------------
  // IDT and natives

  /**
   * Installs an IDT gate (shared by all CPUs). The handler runs at CPL 0 with the
   * kernel's code selector.
   * @param vector 0–255.
   * @param gate Handler, type and DPL.
   * @throws MachineError for a bad vector or DPL.
   * @example
   * ```ts
   * import { Machine } from "./machine.ts";
   * const m = new Machine({ bitness: 64 });
   * m.setGate(3, { handler: 0x2000n, type: "interrupt", dpl: 3 });
   * ```
   */
  setGate(vector: number, gate: GateOptions): void {
    if (!Number.isInteger(vector) || vector < 0 || vector > 255) {
      throw new MachineError(`IDT vector ${vector} is outside 0–255`);
    }
    const dpl = gate.dpl ?? 0;
    if (!Number.isInteger(dpl) || dpl < 0 || dpl > 3) {
      throw new MachineError(`Gate DPL must be 0–3, not ${dpl}`);
    }
    const type = gate.type ?? "interrupt";
    if (type !== "interrupt" && type !== "trap") {
      throw new MachineError(`Gate type must be "interrupt" or "trap", not ${type}`);
    }
    this.idt[vector] = { handler: this.memory.toNumber(gate.handler), type, dpl };
  }

  /** Removes an IDT gate (delivery through it then raises #NP). @param vector 0–255. */
  clearGate(vector: number): void {
    this.idt[vector] = undefined;
  }

  /**
   * Binds a TypeScript function to an address: a CPU reaching it calls the function with
   * the kernel calling convention, puts the result in rax/eax and returns as `ret`. The
   * address needs no mapping. Bindings are by virtual address.
   * @param address Where the function lives.
   * @param fn The function.
   * @param name Name for messages (default: the address).
   * @example
   * ```ts
   * import { Machine } from "./machine.ts";
   * const m = new Machine({ bitness: 64 });
   * m.bindNative(0x3000n, (call) => call.arg(0) + call.arg(1), "add");
   * ```
   */
  bindNative(address: bigint, fn: NativeFunction, name?: string): void {
    const at = this.memory.toNumber(address);
    this.natives.set(at, makeNativeBinding(at, fn, name ?? hexAddr(address)));
    for (const c of this.cpus) c.flushCode();
  }

  /** Removes a native binding. @param address The bound address. */
  unbindNative(address: bigint): void {
    this.natives.delete(this.memory.toNumber(address));
    for (const c of this.cpus) c.flushCode();
  }

  // -------------------------------------------------------------------------------------
  // Running

  /** The CPU with index `i`, or a MachineError. */
  private checkCpu(i: number): Cpu {
    const c = this.cpus[i];
    if (c === undefined || !Number.isInteger(i)) {
      throw new MachineError(`CPU ${i} does not exist (the machine has ${this.cpus.length})`);
    }
    return c;
  }

  /** Builds the stop record for a CPU's stop request. */
  private stopOf(cpu: Cpu, taken: [string, string], steps: number): StopReason {
    return {
      kind: taken[0] as StopKind,
      cpu: cpu.index,
      ip: cpu.rip,
      steps,
      message: taken[1],
    };
  }

  /**
   * Executes exactly one instruction or one event (interrupt delivery) on CPU `i` — the
   * primitive the SMP scheduler drives.
   * @param i CPU index.
   * @returns null when the step happened, or why the CPU cannot step (hlt, triple fault,
   *   a native's stop request).
   */
  stepCpu(i: number): StopReason | null {
    const cpu = this.checkCpu(i);
    const n = cpu.runSteps(1);
    const taken = cpu.takeStop();
    if (taken === null) return null;
    return this.stopOf(cpu, taken, n);
  }

  /**
   * Runs until a stop: hlt (IF = 0 or nothing to wake it), triple fault, a native's stop,
   * the `until` address, or the step budget. One CPU runs alone; several CPUs are
   * interleaved one instruction at a time, round-robin, and the run stops when all have
   * halted or one stops otherwise.
   * @param options Budget, until address, CPU.
   * @returns The stop reason.
   */
  run(options: RunOptions = {}): StopReason {
    const max = options.maxSteps ?? this.stepBudget;
    if (!Number.isSafeInteger(max) || max < 0) {
      throw new MachineError(`maxSteps must be a non-negative integer, not ${max}`);
    }
    const until = options.until === undefined ? NaN : this.memory.toNumber(options.until);
    if (this.smp !== null && options.cpu === undefined) return this.runSmp(this.smp, max, until);
    if (options.cpu !== undefined || this.cpus.length === 1) {
      const cpu = this.checkCpu(options.cpu ?? 0);
      const n = cpu.runSteps(max, until);
      const taken = cpu.takeStop();
      if (taken !== null) return this.stopOf(cpu, taken, n);
      return this.budget(cpu, n, max);
    }
    let steps = 0;
    let idle = 0; // consecutive CPUs found halted with nothing to wake them
    while (steps < max) {
      const cpu = this.cpus[this.rr]!;
      this.rr = (this.rr + 1) % this.cpus.length;
      steps += cpu.runSteps(1, until);
      const taken = cpu.takeStop();
      if (taken === null) {
        idle = 0;
        continue;
      }
      if (taken[0] === "hlt") {
        if (++idle >= this.cpus.length) return this.stopOf(cpu, taken, steps);
        continue;
      }
      return this.stopOf(cpu, taken, steps);
    }
    return this.budget(this.cpus[this.rr]!, steps, max);
  }

  /** Builds the stop record for an exhausted budget. */
  /** {@link Machine.run} through the SMP scheduler; maps its result to a stop reason. */
  private runSmp(smp: Smp, max: number, until: number): StopReason {
    const host = smp.host as MachineSmpHost;
    host.until = until;
    const r = smp.run(max);
    host.until = NaN;
    const cpu = this.cpus[r.cpu < 0 ? 0 : r.cpu]!;
    let kind: StopKind;
    switch (r.reason) {
      case "halted":
        kind = "hlt";
        break;
      case "budget":
        kind = "budget";
        break;
      case "stopped":
        kind = "triple-fault";
        break;
      case "host":
        kind = (host.stopKind[cpu.index] ?? "native") as StopKind;
        break;
      default:
        kind = r.reason;
    }
    const message = r.reason === "budget"
      ? `Step budget of ${max} exhausted; CPU ${cpu.index} at ${hexAddr(cpu.rip)}`
      : r.message;
    return { kind, cpu: cpu.index, ip: cpu.rip, steps: r.steps, message };
  }

  /** The stop reason of a run whose step budget ran out. */
  private budget(cpu: Cpu, steps: number, max: number): StopReason {
    return {
      kind: "budget",
      cpu: cpu.index,
      ip: cpu.rip,
      steps,
      message: `Step budget of ${max} exhausted; CPU ${cpu.index} at ${hexAddr(cpu.rip)}`,
    };
  }
}
