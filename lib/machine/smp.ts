/**
 * The SMP layer of the machine: deterministic interleaving of N CPUs, IPIs and NMIs,
 * kernel-thread coroutines, split plain stores, and the instruction-fetch coherency
 * model (`coherent`, `stale`, `torn`).
 *
 * {@link Smp} drives a {@link SmpHost} (the machine: registers, memory, the
 * instruction-level step, IDT delivery) one scheduling step at a time, asking its
 * {@link SchedulePolicy} which CPU goes next. A scheduling step of a CPU is exactly one
 * of:
 * - committing the second half of its plain store that straddled a 64-byte line;
 * - taking an NMI (vector 2, through the IDT, even with IF=0);
 * - taking an IPI at an instruction boundary with IF=1 outside an `sti` interrupt shadow
 *   (through the IDT, or natively for the call-function vector that {@link Smp.onEachCpu}
 *   uses);
 * - one step of its kernel thread (the code between two `yield`s);
 * - one instruction.
 *
 * @module
 */

import { MachineError } from "../errors.ts";
import { insnLength } from "../x86/decode.ts";
import { roundRobin, type SchedulePolicy } from "./schedule.ts";
import { SerializeReason, ThreadOp, Trace, TraceKind } from "./trace.ts";

/** Instruction-fetch coherency mode of a machine (see {@link Smp}). */
export type FetchMode = "coherent" | "stale" | "torn";

/** The cache-line size that plain stores may be split at. */
export const CACHE_LINE_SIZE = 64;
/** The longest x86 instruction. */
export const MAX_INSN_SIZE = 15;
const EMPTY = new Uint8Array(0);
/** Linux's CALL_FUNCTION_VECTOR: the IPI that {@link Smp.onEachCpu} sends. */
export const CALL_FUNCTION_VECTOR = 0xfb;
/** The NMI vector. */
export const NMI_VECTOR = 2;

/** Result codes of {@link SmpHost.stepCpu}. */
export const StepStatus = {
  /** The instruction retired (or a fault was delivered); the CPU can go on. */
  RAN: 0,
  /** The CPU executed hlt and now waits for an interrupt. */
  HALTED: 1,
  /** The CPU stopped for good (triple fault): it never steps again. */
  STOPPED: 2,
  /** The whole run must stop now (a native's stop request, an `until` address). */
  STOP_RUN: 3,
} as const;

/**
 * What {@link Smp} needs from the machine. Virtual addresses are JS numbers as in
 * `lib/x86/state.ts` (signed in 64-bit mode); code locations are physical, as
 * `frame * 4096 + offset`, so that a store through a writable alias (text_poke) and a
 * fetch through the executable mapping meet.
 */
export interface SmpHost {
  /** Number of CPUs. */
  readonly cpuCount: number;
  /** Code size of the machine (to find instruction lengths). */
  readonly bitness: 32 | 64;
  /**
   * Executes one step on `cpu`: an external interrupt queued by
   * {@link SmpHost.raiseInterrupt} if IF=1 (after an interrupt shadow), else one
   * instruction (delivering any fault it raises).
   *
   * @param cpu CPU index.
   * @returns A {@link StepStatus} code.
   */
  stepCpu(cpu: number): number;
  /**
   * The diagnostic of the last {@link StepStatus.STOP_RUN} or STOPPED of `cpu`.
   *
   * @param cpu CPU index.
   * @returns A sentence naming the address.
   */
  stopMessage(cpu: number): string;
  /**
   * Queues an external interrupt on `cpu`, delivered through the IDT by its next
   * {@link SmpHost.stepCpu} (the caller checked IF=1).
   *
   * @param cpu CPU index.
   * @param vector The vector.
   */
  raiseInterrupt(cpu: number, vector: number): void;
  /**
   * Delivers an NMI (vector 2) through the IDT now, whatever IF says.
   *
   * @param cpu CPU index.
   * @returns A {@link StepStatus} code (STOPPED on a triple fault).
   */
  deliverNmi(cpu: number): number;
  /** True when RFLAGS.IF is set on `cpu`. */
  interruptsEnabled(cpu: number): boolean;
  /**
   * True when `cpu` is in an interrupt shadow (the instruction after an `sti` that set
   * IF): no maskable interrupt, the call-function IPI included, is taken before that
   * instruction retires. Optional: a host without it has no shadow.
   */
  interruptShadow?(cpu: number): boolean;
  /** True when `cpu` is in the hlt state. */
  isHalted(cpu: number): boolean;
  /** Current instruction pointer of `cpu`. */
  ip(cpu: number): number;
  /** Drops `cpu`'s predecoded instructions overlapping physical `[phys, phys + length)`. */
  invalidateCode(cpu: number, phys: number, length: number): void;
  /** Reads `length` bytes of physical memory (within one frame). */
  readPhys(phys: number, length: number): Uint8Array;
  /** Reads `length` bytes at a virtual address (host side, no faults). */
  readBytes(address: number, length: number): Uint8Array;
  /**
   * Writes bytes at a virtual address on behalf of `cpu`, going through the code-store
   * path ({@link Smp.noteCodeStore} with `cpu` as the writer) like a store by that CPU.
   */
  writeBytes(cpu: number, address: number, bytes: Uint8Array): void;
}

/** Why {@link Smp.run} returned. */
export type SmpStopReason =
  /** Every CPU is halted (or stopped) and nothing can wake one. */
  | "halted"
  /** No CPU can step but a kernel thread waits: the wait can never end. */
  | "deadlock"
  /** The step budget ran out. */
  | "budget"
  /** Every CPU stopped for good (triple fault...). */
  | "stopped"
  /** A kernel thread threw; the error is in {@link RunResult.error}. */
  | "thread-error"
  /** The host asked to stop the run (a native's stop, an `until` address). */
  | "host";

/** Result of {@link Smp.run}. */
export interface RunResult {
  /** Why the run stopped. */
  reason: SmpStopReason;
  /** Scheduling steps taken by this call. */
  steps: number;
  /** A sentence for people. */
  message: string;
  /** The error a kernel thread threw (reason `thread-error`). */
  error?: unknown;
  /**
   * The CPU concerned: the one that stopped the run; for `budget`, the CPU that took the
   * last step (-1 when no step was ever taken).
   */
  cpu: number;
}

/**
 * What a kernel thread yields: one scheduling step, or a wait that blocks its CPU until
 * `until()` is true. Obtain them from {@link KernelContext} methods.
 */
export interface KernelYield {
  /** The kind of step, one of {@link ThreadOp}. */
  readonly op: number;
  /** For a wait: the condition that unblocks the thread. */
  readonly until?: () => boolean;
  /** For a wait: what it waits for (used in the deadlock message). */
  readonly what?: string;
}

/** The generator type of a kernel thread and of the {@link KernelContext} helpers. */
export type KernelGen<T = void> = Generator<KernelYield | undefined, T, unknown>;

/** A function called on a CPU by an IPI (see {@link Smp.onEachCpu}). */
export type IpiFunction = (cpu: number) => void;

/** Handle of a spawned kernel thread. */
export interface KernelThread {
  /** The CPU it runs on. */
  readonly cpu: number;
  /** True once the generator returned (or threw). */
  readonly done: boolean;
  /** The error it threw, if any. */
  readonly error: unknown;
  /** Steps it took. */
  readonly steps: number;
}

/** Options of {@link Smp}. */
export interface SmpOptions {
  /** Scheduling policy (default {@link roundRobin}(1)). */
  schedule?: SchedulePolicy;
  /** Instruction-fetch coherency mode (default `coherent`). */
  fetch?: FetchMode;
  /** The trace to record into (default: hash only). */
  trace?: Trace;
  /** Split plain stores that straddle a 64-byte line into two visible halves (default true). */
  splitStores?: boolean;
}

const STEP: KernelYield = { op: ThreadOp.STEP };
const STORE: KernelYield = { op: ThreadOp.STORE };

/**
 * The yield of one plain-store step, for kernel threads that store through
 * {@link KernelContext.storeBegin} and {@link KernelContext.storeEnd} instead of
 * {@link KernelContext.store}.
 */
export const STORE_STEP: KernelYield = STORE;
const LOAD: KernelYield = { op: ThreadOp.LOAD };
const IPI: KernelYield = { op: ThreadOp.IPI };

/**
 * A store by another CPU that this CPU has not serialized since: physical range and the
 * bytes before it. In `torn` mode a fetch of the range rewrites `old` with what the CPU
 * decoded (its view never goes back), so the array is copied first (`own`): the store's
 * entries on other CPUs share the original.
 */
interface PendingCode {
  phys: number;
  length: number;
  old: Uint8Array;
  own: boolean;
}

/** One on_each_cpu request: fn and the CPUs that have not run it yet. */
interface CallRequest {
  fn: IpiFunction;
  left: number;
}

class ThreadState implements KernelThread {
  readonly cpu: number;
  readonly gen: KernelGen<unknown>;
  done = false;
  error: unknown = undefined;
  steps = 0;
  wait: KernelYield | null = null;
  constructor(cpu: number, gen: KernelGen<unknown>) {
    this.cpu = cpu;
    this.gen = gen;
  }
}

/**
 * The kernel-thread view of the machine, passed to the generator given to
 * {@link Smp.spawn}. Each method is a generator: call it with `yield*`; each of its
 * yields is one scheduling step of the thread's CPU, so the other CPUs run between them.
 */
export class KernelContext {
  /** The CPU this thread runs on. */
  readonly cpu: number;
  readonly #smp: Smp;

  /**
   * Created by {@link Smp} for each CPU.
   *
   * @param smp The SMP layer.
   * @param cpu The CPU the thread runs on.
   */
  constructor(smp: Smp, cpu: number) {
    this.#smp = smp;
    this.cpu = cpu;
  }

  /**
   * One plain step (kernel code that touches nothing shared).
   *
   * @returns The generator to `yield*`.
   */
  *step(): KernelGen {
    yield STEP;
  }

  /**
   * A plain store of `bytes` at `address` (memcpy of one chunk): one step, or two when
   * it straddles a 64-byte line (the lower line's part first), so another CPU can see
   * it half done. Stores to code go through the fetch model.
   *
   * @param address First byte.
   * @param bytes The bytes (1 or more).
   * @returns The generator to `yield*`.
   */
  *store(address: number, bytes: ArrayLike<number>): KernelGen {
    const split = this.#smp.splitStores ? splitPoint(address, bytes.length) : 0;
    if (split === 0) {
      // Written before the first yield: the caller's bytes need no copy.
      this.#smp.host.writeBytes(
        this.cpu,
        address,
        bytes instanceof Uint8Array ? bytes : Uint8Array.from(bytes),
      );
      yield STORE;
      return;
    }
    // The upper part lands a step later: keep a copy of what the caller passed.
    const all = Uint8Array.from(bytes);
    this.#smp.host.writeBytes(this.cpu, address, all.subarray(0, split));
    this.#smp.trace.event(TraceKind.STORE_HALF, this.cpu, address | 0, hiOf(address), split);
    yield STORE;
    this.#smp.host.writeBytes(this.cpu, address + split, all.subarray(split));
    yield STORE;
  }

  /**
   * {@link KernelContext.store} without a generator, for hot loops: performs the store, or
   * only its lower line's part when it straddles a 64-byte line, and returns the number of
   * bytes written. The caller then yields {@link STORE_STEP}; when fewer than all bytes
   * were written it calls {@link KernelContext.storeEnd} with the same arguments and
   * yields {@link STORE_STEP} again, exactly as `store` does. `bytes` must not change
   * in between.
   *
   * @param address First byte.
   * @param bytes The bytes (1 or more).
   * @returns Bytes written now (`bytes.length` unless the store splits).
   */
  storeBegin(address: number, bytes: Uint8Array): number {
    const split = this.#smp.splitStores ? splitPoint(address, bytes.length) : 0;
    if (split === 0) {
      this.#smp.host.writeBytes(this.cpu, address, bytes);
      return bytes.length;
    }
    this.#smp.host.writeBytes(this.cpu, address, bytes.subarray(0, split));
    this.#smp.trace.event(TraceKind.STORE_HALF, this.cpu, address | 0, hiOf(address), split);
    return split;
  }

  /**
   * The second step of a split {@link KernelContext.storeBegin}: writes the upper line's
   * part.
   *
   * @param address First byte of the whole store.
   * @param bytes The bytes of the whole store.
   * @param written What `storeBegin` returned.
   */
  storeEnd(address: number, bytes: Uint8Array, written: number): void {
    this.#smp.host.writeBytes(this.cpu, address + written, bytes.subarray(written));
  }

  /**
   * A locked exchange (`xchg` with memory): atomic whatever the alignment. One step.
   *
   * @param address First byte.
   * @param bytes The new bytes.
   * @returns The generator to `yield*`; it returns the old bytes.
   */
  *xchg(address: number, bytes: ArrayLike<number>): KernelGen<Uint8Array> {
    const all = bytes instanceof Uint8Array ? bytes : Uint8Array.from(bytes);
    const old = this.#smp.host.readBytes(address, all.length);
    this.#smp.host.writeBytes(this.cpu, address, all);
    yield STORE;
    return old;
  }

  /**
   * A load of `length` bytes (one step; a load is atomic at this granularity).
   *
   * @param address First byte.
   * @param length Number of bytes.
   * @returns The generator to `yield*`; it returns the bytes.
   */
  *load(address: number, length: number): KernelGen<Uint8Array> {
    const b = this.#smp.host.readBytes(address, length);
    yield LOAD;
    return b;
  }

  /**
   * `sync_core()` on this CPU: serializes it (its stale fetch state is dropped). One step.
   *
   * @returns The generator to `yield*`.
   */
  *syncCore(): KernelGen {
    this.#smp.serialize(this.cpu, SerializeReason.SYNC_CORE);
    yield STEP;
  }

  /**
   * Sends an IPI with `vector` to `target` (-1: every other CPU). One step.
   *
   * @param target CPU index, or -1 for all but this one.
   * @param vector The vector.
   * @returns The generator to `yield*`.
   */
  *sendIpi(target: number, vector: number): KernelGen {
    this.#smp.sendIpi(this.cpu, target, vector);
    yield IPI;
  }

  /**
   * The kernel's `on_each_cpu(fn, wait)`: queues `fn` on every other CPU with a
   * call-function IPI (one step), runs `fn` here (as the kernel does, with interrupts
   * off; one step), then, when `wait`, blocks until every other CPU has run it.
   *
   * @param fn The function, called with the CPU index.
   * @param wait Wait for every CPU to have run it.
   * @returns The generator to `yield*`.
   */
  *onEachCpu(fn: IpiFunction, wait: boolean): KernelGen {
    const req = this.#smp.onEachCpu(this.cpu, fn);
    yield IPI;
    fn(this.cpu);
    yield STEP;
    if (wait && req.left > 0) {
      yield { op: ThreadOp.WAIT, until: () => req.left === 0, what: "on_each_cpu completion" };
    }
  }

  /**
   * Blocks this CPU until `until()` is true (checked before each scheduling step). If no
   * CPU can step while it waits, the run stops with reason `deadlock`.
   *
   * @param until The condition.
   * @param what What is awaited, for the deadlock message.
   * @returns The generator to `yield*`.
   */
  *waitUntil(until: () => boolean, what = "a condition"): KernelGen {
    if (until()) return;
    yield { op: ThreadOp.WAIT, until, what };
  }
}

function hiOf(address: number): number {
  return Math.floor(address / 4294967296) | 0;
}

/**
 * Where a plain store of `length` bytes at `address` splits: the number of bytes in the
 * first 64-byte line, or 0 when it does not straddle a line.
 *
 * @param address First byte.
 * @param length Size of the store.
 * @returns Bytes before the line boundary, or 0.
 */
export function splitPoint(address: number, length: number): number {
  // The low bits of an integer survive ToInt32 (two's complement), negative ones too.
  const off = address & (CACHE_LINE_SIZE - 1);
  return off + length > CACHE_LINE_SIZE ? CACHE_LINE_SIZE - off : 0;
}

/**
 * The SMP layer: interleaving, IPIs, NMIs, kernel threads, split stores and the
 * instruction-fetch coherency model, over a {@link SmpHost}.
 *
 * Fetch model (per machine). Every CPU has a cache of predecoded instructions; the host
 * reports each store that hits predecoded code, before it lands, to
 * {@link Smp.noteCodeStore}:
 * - `coherent`: every CPU's predecoded copy of the bytes is dropped at once; every later
 *   fetch sees the store. A fetch is atomic with respect to stores.
 * - `stale`: the writer's own copy is dropped at once (x86 snoops self-modifying code),
 *   but another CPU's copy is dropped only when that CPU serializes (iret, cpuid,
 *   interrupt or exception delivery, sync_core). Until then it goes on executing the old
 *   instruction if it had decoded it; a CPU that had not decoded it fetches the new
 *   bytes.
 * - `torn`: every CPU's copy is dropped at once, but until a CPU serializes, each fetch
 *   it makes of bytes another CPU stored to may combine bytes from before and after
 *   those stores: at a split point s, either the bytes below s come from the CPU's old
 *   view and the bytes from s on from memory now (as when a fetch reads the lower part
 *   of an instruction before a store becomes visible and the upper part after), or the
 *   mirror, the bytes below s from memory now and the bytes from s on from the old view
 *   (a new first byte with a stale tail). The old view is memory as it was when the CPU
 *   last serialized, except that bytes it has fetched since are what it fetched: a CPU
 *   never fetches bytes older than bytes it already decoded at the same address. The
 *   policy's {@link SchedulePolicy.choose} picks among 2d alternatives, d the number of
 *   positions where the two views differ inside the instruction: alternative 0 is the
 *   old instruction entirely (what `stale` runs), the last the new one, the others are
 *   the 2(d - 1) distinct mixes. The decoded result is cached like any fetch, so the CPU keeps executing that
 *   (possibly torn) copy until it serializes or another store hits it; {@link explore}
 *   enumerates the split points like any other decision. Instructions that cross a
 *   page boundary are never torn.
 *
 * Data: loads and stores are sequentially consistent (each instruction is atomic in its
 * step), except that a plain store straddling a 64-byte line is split
 * ({@link Smp.splitStore}): its lower part is visible at once, the rest is committed as
 * the first thing of the writer's next step, so other CPUs may observe it half done in
 * between. Locked operations (LOCK prefix, xchg with memory) are never split.
 *
 * @example A kernel thread on CPU 0 next to CPU 1 (with `machine.smp`)
 * ```ts ignore
 * const smp = machine.smp;
 * smp.spawn(0, function* (k) {
 *   yield* k.store(site, [0xcc]);
 *   yield* k.onEachCpu((cpu) => smp.serialize(cpu, SerializeReason.SYNC_CORE), true);
 * });
 * const result = smp.run(100_000);
 * ```
 */
export class Smp {
  /** The machine driven. */
  readonly host: SmpHost;
  /** Number of CPUs. */
  readonly cpuCount: number;
  /** The fetch coherency mode. */
  readonly fetch: FetchMode;
  /** The trace (hash always, ring if it has capacity). */
  readonly trace: Trace;
  /** Whether straddling plain stores are split. */
  readonly splitStores: boolean;
  /** The scheduling policy. */
  policy: SchedulePolicy;
  /** Scheduling steps taken so far. */
  steps = 0;
  /** The CPU that took the last step (-1 before the first). */
  last: number = -1;
  /**
   * True while {@link Smp.run} runs: host-side stores then come from the stepping CPU
   * (a native function), see {@link Smp.currentWriter}.
   */
  running = false;

  // Per-CPU state.
  readonly #stopped: Uint8Array;
  readonly #nmiPending: Uint8Array;
  readonly #nmiBlocked: Uint8Array;
  /** Pending external vectors, a 256-bit mask per CPU (8 words). */
  readonly #irr: Uint32Array;
  readonly #irrCount: Int32Array;
  readonly #calls: CallRequest[][];
  readonly #threads: (ThreadState | null)[];
  readonly #contexts: KernelContext[];
  readonly #pendingCode: PendingCode[][];
  readonly #half: ({ address: number; bytes: Uint8Array } | null)[];
  /** Nonzero when a CPU's next step is not simply an instruction. */
  readonly #attn: Uint8Array;
  readonly #runnable: Uint8Array;
  #waiting = 0;
  #dirty = true;
  #count = 0;
  readonly #diff = new Int32Array(MAX_INSN_SIZE);
  /** The bytes of the last torn fetch (for the ring's retire record). */
  #tornBytes: Uint8Array | null = null;
  /**
   * Per CPU, while the trace ring is on: the bytes each instruction had when the CPU
   * last decoded it, by ip ({@link Smp.noteDecode}), i.e. what its predecoded copy holds.
   */
  readonly #decoded: Map<number, Uint8Array>[];

  /**
   * Creates the SMP layer of a machine (see `attachSmp` for a {@link SmpHost} over a
   * `Machine`).
   *
   * @param host The machine.
   * @param options Policy, fetch mode, trace.
   */
  constructor(host: SmpHost, options: SmpOptions = {}) {
    const n = host.cpuCount;
    if (!Number.isInteger(n) || n < 1 || n > 64) {
      throw new MachineError(`CPU count must be an integer in 1..64, got ${n}`);
    }
    const fetch = options.fetch ?? "coherent";
    if (fetch !== "coherent" && fetch !== "stale" && fetch !== "torn") {
      throw new MachineError(`Unknown fetch mode "${fetch}": use coherent, stale or torn`);
    }
    this.host = host;
    this.cpuCount = n;
    this.fetch = fetch;
    this.trace = options.trace ?? new Trace(0);
    this.splitStores = options.splitStores ?? true;
    this.policy = options.schedule ?? roundRobin(1);
    this.policy.reset(n);
    this.#stopped = new Uint8Array(n);
    this.#nmiPending = new Uint8Array(n);
    this.#nmiBlocked = new Uint8Array(n);
    this.#irr = new Uint32Array(n * 8);
    this.#irrCount = new Int32Array(n);
    this.#calls = Array.from({ length: n }, () => []);
    this.#threads = new Array<ThreadState | null>(n).fill(null);
    this.#contexts = Array.from({ length: n }, (_, i) => new KernelContext(this, i));
    this.#pendingCode = Array.from({ length: n }, () => []);
    this.#half = new Array<{ address: number; bytes: Uint8Array } | null>(n).fill(null);
    this.#attn = new Uint8Array(n);
    this.#runnable = new Uint8Array(n);
    this.#decoded = Array.from({ length: n }, () => new Map<number, Uint8Array>());
  }

  #checkCpu(cpu: number, what: string): void {
    if (!Number.isInteger(cpu) || cpu < 0 || cpu >= this.cpuCount) {
      throw new MachineError(
        `${what}: CPU ${cpu} does not exist (the machine has CPUs 0..${this.cpuCount - 1})`,
      );
    }
  }

  /** A sender: a CPU of this machine, or -1 (the host). */
  #checkFrom(from: number, what: string): void {
    if (from !== -1 && !(Number.isInteger(from) && from >= 0 && from < this.cpuCount)) {
      throw new MachineError(
        `${what}: sender CPU ${from} does not exist (use 0..${
          this.cpuCount - 1
        }, or -1 for the host)`,
      );
    }
  }

  /**
   * Replaces the scheduling policy (and resets it).
   *
   * @param policy The new policy.
   */
  setSchedule(policy: SchedulePolicy): void {
    this.policy = policy;
    policy.reset(this.cpuCount);
  }

  /**
   * Whether `cpu` stopped for good (triple fault).
   *
   * @param cpu CPU index.
   * @returns True when it never steps again.
   */
  isStopped(cpu: number): boolean {
    return this.#stopped[cpu] === 1;
  }

  /**
   * Whether `cpu` is inside an NMI handler (NMIs blocked until its next iret).
   *
   * @param cpu CPU index.
   * @returns True while NMIs are blocked.
   */
  nmiBlocked(cpu: number): boolean {
    return this.#nmiBlocked[cpu] === 1;
  }

  /**
   * Tells the scheduler that the host changed a CPU's state behind its back (registers,
   * hlt state, IF): it re-evaluates which CPUs can step.
   */
  touch(): void {
    this.#dirty = true;
  }

  /**
   * Runs `body` as a kernel thread on `cpu`: the CPU executes no instruction until the
   * generator returns, and each `yield` of it is one scheduling step. While it runs the
   * CPU takes call-function IPIs between steps (the kernel waits with interrupts on) but
   * holds other interrupts and NMIs pending (they need an interrupted instruction
   * stream).
   *
   * @param cpu The CPU.
   * @param body The thread body.
   * @returns A handle to observe it.
   * @example
   * ```ts ignore
   * smp.spawn(0, function* (k) {
   *   yield* k.store(site, [0xcc]);
   *   yield* k.onEachCpu(() => {}, true);
   * });
   * ```
   */
  spawn(cpu: number, body: (k: KernelContext) => KernelGen<unknown>): KernelThread {
    this.#checkCpu(cpu, "Cannot spawn a kernel thread");
    const old = this.#threads[cpu];
    if (old && !old.done) throw new MachineError(`CPU ${cpu} already runs a kernel thread`);
    const t = new ThreadState(cpu, body(this.#contexts[cpu]!));
    this.#threads[cpu] = t;
    this.#dirty = true;
    return t;
  }

  /**
   * The kernel thread running on `cpu`, if any.
   *
   * @param cpu CPU index.
   * @returns Its handle, or null.
   */
  thread(cpu: number): KernelThread | null {
    const t = this.#threads[cpu];
    return t && !t.done ? t : null;
  }

  /**
   * Sends an IPI: `vector` becomes pending on `to` (or on every CPU but `from` when `to`
   * is -1), taken through the IDT at its next instruction boundary with IF=1. A vector
   * already pending is not queued twice (one IRR bit per vector, as in the local APIC);
   * the highest pending vector is taken first.
   *
   * @param from Sending CPU (-1: the host).
   * @param to Target CPU, or -1 for all others.
   * @param vector Vector 32–255.
   * @throws {MachineError} When `from` or `to` is not a CPU of the machine or `vector`
   *   is out of range; nothing is queued then.
   */
  sendIpi(from: number, to: number, vector: number): void {
    this.#checkFrom(from, `Cannot send IPI ${vector}`);
    if (to !== -1) this.#checkCpu(to, `Cannot send IPI ${vector}`);
    if (!Number.isInteger(vector) || vector < 32 || vector > 255) {
      throw new MachineError(`IPI vector must be in 32..255, got ${vector}`);
    }
    this.trace.event(TraceKind.IPI_SENT, from < 0 ? 0xff : from, 0, 0, vector, to);
    for (let c = 0; c < this.cpuCount; c++) {
      if (to === -1 ? c === from : c !== to) continue;
      const w = c * 8 + (vector >> 5), bit = 1 << (vector & 31);
      if ((this.#irr[w]! & bit) === 0) {
        this.#irr[w] = this.#irr[w]! | bit;
        this.#irrCount[c]!++;
      }
    }
    this.#dirty = true;
  }

  /**
   * Sends an NMI to `to` (-1: every CPU but `from`). Delivered at the target's next step
   * even with IF=0 and inside another exception handler; while it runs an NMI handler
   * (until its next iret) a further NMI stays latched (one).
   *
   * @param from Sending CPU (-1: the host).
   * @param to Target CPU, or -1 for all others.
   * @throws {MachineError} When `from` or `to` is not a CPU of the machine; nothing is
   *   queued then.
   */
  sendNmi(from: number, to: number): void {
    this.#checkFrom(from, "Cannot send an NMI");
    if (to !== -1) this.#checkCpu(to, "Cannot send an NMI");
    this.trace.event(TraceKind.IPI_SENT, from < 0 ? 0xff : from, 0, 0, NMI_VECTOR, to);
    for (let c = 0; c < this.cpuCount; c++) {
      if (to === -1 ? c === from : c !== to) continue;
      this.#nmiPending[c] = 1;
    }
    this.#dirty = true;
  }

  /**
   * Queues `fn` on every CPU but `from` and sends them the call-function IPI; returns
   * the request, whose `left` counts CPUs that have not run it yet. A target runs it at
   * its next instruction boundary with IF=1 outside an `sti` shadow (a halted CPU wakes, runs it and goes back
   * to its hlt, as the idle loop would). The sender's own call is up to the caller (see
   * {@link KernelContext.onEachCpu}).
   *
   * @param from The sending CPU (-1: the host; then every CPU runs it).
   * @param fn The function.
   * @returns The request.
   * @throws {MachineError} When `from` is not a CPU of the machine (nor -1); nothing is
   *   queued then.
   */
  onEachCpu(from: number, fn: IpiFunction): { readonly left: number } {
    this.#checkFrom(from, "Cannot call a function on each CPU");
    const req: CallRequest = { fn, left: 0 };
    for (let c = 0; c < this.cpuCount; c++) {
      if (c === from) continue;
      this.#calls[c]!.push(req);
      req.left++;
    }
    if (req.left > 0) this.sendIpi(from, -1, CALL_FUNCTION_VECTOR);
    return req;
  }

  /**
   * Serializes `cpu`: drops its stale and torn predecoded copies. The host calls it for
   * cpuid, iret and exception delivery; {@link KernelContext.syncCore} for sync_core.
   *
   * @param cpu CPU index.
   * @param reason One of {@link SerializeReason}.
   */
  serialize(cpu: number, reason: number): void {
    this.trace.event(TraceKind.SERIALIZE, cpu, 0, 0, reason);
    const list = this.#pendingCode[cpu]!;
    if (list.length === 0) return;
    for (const p of list) this.host.invalidateCode(cpu, p.phys, p.length);
    list.length = 0;
  }

  /**
   * The host calls this on iret: ends NMI blocking (the CPU unblocks NMIs at the first
   * iret after an NMI) and serializes.
   *
   * @param cpu CPU index.
   * @param target The ip iret returns to.
   */
  noteIret(cpu: number, target: number): void {
    this.trace.event(TraceKind.EXCEPTION_EXIT, cpu, target | 0, hiOf(target));
    if (this.#nmiBlocked[cpu]) {
      this.#nmiBlocked[cpu] = 0;
      if (this.#nmiPending[cpu]) this.#dirty = true;
    }
    this.serialize(cpu, SerializeReason.IRET);
  }

  /**
   * The host calls this when an exception or interrupt is delivered (serializing).
   *
   * @param cpu CPU index.
   * @param vector The vector.
   * @param savedIp The ip pushed in the frame.
   */
  noteException(cpu: number, vector: number, savedIp: number): void {
    this.trace.event(TraceKind.EXCEPTION_ENTRY, cpu, savedIp | 0, hiOf(savedIp), vector);
    this.serialize(cpu, SerializeReason.INTERRUPT);
  }

  /**
   * The host calls this before a store by `writer` lands on bytes some CPU has
   * predecoded (physical `[phys, phys + length)`, within one frame). See the class
   * documentation for what each fetch mode does.
   *
   * @param writer The storing CPU (-1: the host itself, e.g. a loader: always coherent).
   * @param phys First byte, physical.
   * @param length Number of bytes.
   */
  noteCodeStore(writer: number, phys: number, length: number): void {
    this.trace.event(
      TraceKind.CODE_STORE,
      writer < 0 ? 0xff : writer,
      phys | 0,
      hiOf(phys),
      length,
    );
    if (this.fetch === "coherent" || writer < 0 || this.cpuCount === 1) {
      for (let c = 0; c < this.cpuCount; c++) {
        this.host.invalidateCode(c, phys, length);
        if (this.#pendingCode[c]!.length !== 0) this.#dropPending(c, phys, length);
      }
      return;
    }
    const old = this.host.readPhys(phys, length);
    const torn = this.fetch === "torn";
    for (let c = 0; c < this.cpuCount; c++) {
      if (c === writer) {
        // A CPU sees its own stores (x86 snoops self-modifying code): its view of the
        // bytes it overwrites becomes coherent.
        this.host.invalidateCode(c, phys, length);
        if (this.#pendingCode[c]!.length !== 0) this.#dropPending(c, phys, length);
        continue;
      }
      if (torn) this.host.invalidateCode(c, phys, length);
      const list = this.#pendingCode[c]!;
      list.push({ phys, length, old, own: false });
      // A CPU that never serializes: bound the memory, as if it had serialized.
      if (list.length > 4096) this.serialize(c, SerializeReason.OTHER);
    }
  }

  /**
   * Forgets `cpu`'s pending stores that overlap `[phys, phys + length)` (dropping its
   * predecoded copies of them): that CPU's view of those bytes is coherent again.
   */
  #dropPending(cpu: number, phys: number, length: number): void {
    const list = this.#pendingCode[cpu]!;
    let j = 0;
    for (let i = 0; i < list.length; i++) {
      const p = list[i]!;
      if (p.phys < phys + length && p.phys + p.length > phys) {
        this.host.invalidateCode(cpu, p.phys, p.length);
      } else {
        list[j++] = p;
      }
    }
    list.length = j;
  }

  /**
   * The CPU a host-side store is attributed to: the CPU taking the current step while
   * {@link Smp.run} runs (a native function storing), else -1 (the host).
   *
   * @returns A CPU index or -1.
   */
  currentWriter(): number {
    return this.running ? this.last : -1;
  }

  /**
   * Whether `cpu` has code stores by other CPUs it has not serialized since (the torn
   * fetch hook only needs to look when it has).
   *
   * @param cpu CPU index.
   * @returns True when some are pending.
   */
  hasPendingCode(cpu: number): boolean {
    return this.#pendingCode[cpu]!.length !== 0;
  }

  /**
   * The torn-fetch hook: the host calls it when `cpu` decodes an instruction at physical
   * `phys` (bytes `frame[offset..]`). Returns the bytes to decode instead (a view of at
   * most 15 bytes, valid until the next call), or null to decode the frame's bytes.
   *
   * @param cpu The fetching CPU.
   * @param phys Physical address of the instruction.
   * @param frame The frame's bytes.
   * @param offset Offset of the instruction in `frame`.
   * @returns The bytes to decode, or null.
   */
  fetchView(cpu: number, phys: number, frame: Uint8Array, offset: number): Uint8Array | null {
    const list = this.#pendingCode[cpu]!;
    if (list.length === 0 || this.fetch !== "torn") return null;
    const avail = Math.min(MAX_INSN_SIZE, frame.length - offset);
    let hit = false;
    for (const p of list) {
      if (p.phys < phys + avail && p.phys + p.length > phys) {
        hit = true;
        break;
      }
    }
    if (!hit) return null;
    const now = frame.slice(offset, offset + avail);
    const old = now.slice();
    // Undo the pending stores newest first: the CPU's old view (memory at its last
    // serialization, with the bytes it fetched since).
    for (let i = list.length - 1; i >= 0; i--) {
      const p = list[i]!;
      for (let j = 0; j < p.length; j++) {
        const k = p.phys + j - phys;
        if (k >= 0 && k < avail) old[k] = p.old[j]!;
      }
    }
    const bitness = this.host.bitness;
    const span = Math.min(
      avail,
      Math.max(insnLength(old, 0, bitness), insnLength(now, 0, bitness)),
    );
    // Differing positions inside the instruction: each distinct mix is one alternative.
    const diff = this.#diff;
    let nd = 0;
    for (let k = 0; k < span; k++) if (old[k] !== now[k]) diff[nd++] = k;
    if (nd === 0) return null;
    // 2 * nd alternatives. 0: the old instruction (old bytes up to the last difference).
    // 1 .. nd-1: old lower bytes, new upper bytes, the split moving down one difference
    // at a time. nd .. 2nd-2: the mirror, new lower bytes and old upper bytes, the split
    // moving up one difference at a time. 2nd-1: the new instruction.
    const k = this.policy.choose(2 * nd);
    if (k < nd) {
      const split = diff[nd - 1 - k]! + 1;
      for (let j = 0; j < split; j++) now[j] = old[j]!;
      if (k !== 0) this.trace.event(TraceKind.TORN_FETCH, cpu, phys | 0, hiOf(phys), split);
    } else if (k < 2 * nd - 1) {
      const split = diff[k - nd + 1]!;
      for (let j = split; j < avail; j++) now[j] = old[j]!;
      // b = 1: the `split` leading bytes are the new ones.
      this.trace.event(TraceKind.TORN_FETCH, cpu, phys | 0, hiOf(phys), split, 1);
    }
    // The CPU has now seen these bytes: a later fetch may combine them with newer bytes
    // but never goes back to older ones (without a serialization in between).
    const len = Math.min(avail, Math.max(1, insnLength(now, 0, bitness)));
    for (const p of list) {
      const lo = Math.max(p.phys, phys), hi = Math.min(p.phys + p.length, phys + len);
      if (lo >= hi) continue;
      if (!p.own) {
        p.old = p.old.slice();
        p.own = true;
      }
      for (let a = lo; a < hi; a++) p.old[a - p.phys] = now[a - phys]!;
    }
    if (this.trace.capacity !== 0) this.#tornBytes = now.slice();
    return now;
  }

  /**
   * Whether the host should report decodes with {@link Smp.noteDecode}: only while the
   * trace ring is on (the hash does not need the bytes, so the plain path skips it).
   *
   * @returns True when the ring records retired instructions.
   */
  get wantsDecodes(): boolean {
    return this.trace.capacity !== 0;
  }

  /**
   * The host calls this when `cpu` decodes the instruction at `ip` from
   * `bytes[offset..]` (a fetch that missed the CPU's predecoded cache; torn bytes
   * included), while {@link Smp.wantsDecodes}. The ring's retire records at `ip` then
   * show these bytes for as long as the CPU executes that decoded copy, even after
   * another CPU changed memory under it (`stale`), until it decodes `ip` again.
   * Without these reports a retire record shows memory as it was before the step (or
   * the torn bytes of that step's fetch).
   *
   * @param cpu The decoding CPU.
   * @param ip Its instruction pointer (internal number form, as {@link SmpHost.ip}).
   * @param bytes The bytes decoded (a frame, or a buffer).
   * @param offset Offset of the instruction's first byte in `bytes`.
   */
  noteDecode(cpu: number, ip: number, bytes: Uint8Array, offset: number): void {
    if (this.trace.capacity === 0) return;
    const end = Math.min(bytes.length, offset + MAX_INSN_SIZE);
    this.#decoded[cpu]!.set(ip, bytes.slice(offset, end));
  }

  /**
   * The host calls this from the data-store path of an instruction: returns how many
   * leading bytes to write now; the rest becomes visible at the writer's next step (see
   * the class documentation). Returns the whole length when the store is locked, fits in
   * one 64-byte line, the machine has one CPU, or the CPU runs outside {@link Smp.run}
   * (e.g. `machine.run({ cpu })`).
   *
   * @param cpu The storing CPU.
   * @param address First byte (virtual).
   * @param bytes All the bytes of the store.
   * @param locked True for locked operations (never split).
   * @returns How many leading bytes to write now.
   */
  splitStore(cpu: number, address: number, bytes: Uint8Array, locked: boolean): number {
    // Outside Smp.run (a host-driven single-CPU run) nobody would commit the rest later.
    if (locked || !this.splitStores || this.cpuCount === 1 || !this.running) {
      return bytes.length;
    }
    const s = splitPoint(address, bytes.length);
    if (s === 0 || this.#half[cpu] !== null) return bytes.length;
    this.#half[cpu] = { address: address + s, bytes: bytes.slice(s) };
    this.trace.event(TraceKind.STORE_HALF, cpu, address | 0, hiOf(address), s);
    this.#dirty = true;
    return s;
  }

  /**
   * Whether a maskable interrupt can be taken by `c` now: IF=1 and not in the interrupt
   * shadow of an `sti`.
   */
  #maskableOk(c: number): boolean {
    const host = this.host;
    return host.interruptsEnabled(c) &&
      (host.interruptShadow === undefined || !host.interruptShadow(c));
  }

  #deliverable(c: number, hasThread: boolean): boolean {
    if (this.#calls[c]!.length > 0 && (hasThread || this.#maskableOk(c))) return true;
    if (hasThread) return false;
    if (this.#nmiPending[c] && !this.#nmiBlocked[c]) return true;
    return this.#irrCount[c]! > 0 && this.host.interruptsEnabled(c);
  }

  #recompute(): void {
    let count = 0, waiting = 0, pending = false;
    const r = this.#runnable;
    const host = this.host;
    for (let c = 0; c < this.cpuCount; c++) {
      let ok = 0;
      const t = this.#threads[c] ?? null;
      const hasThread = t !== null && !t.done;
      const queued = this.#irrCount[c]! > 0 || this.#calls[c]!.length > 0 ||
        this.#nmiPending[c] === 1;
      if (queued) pending = true;
      this.#attn[c] = hasThread || queued || this.#half[c] !== null ? 1 : 0;
      if (this.#stopped[c]) {
        ok = 0;
      } else if (this.#half[c] !== null) {
        ok = 1;
      } else if (hasThread) {
        if (t.wait !== null) {
          waiting++;
          if (t.wait.until!()) t.wait = null;
        }
        ok = t.wait === null || this.#deliverable(c, true) ? 1 : 0;
      } else if (host.isHalted(c)) {
        ok = this.#deliverable(c, false) ? 1 : 0;
      } else {
        ok = 1;
      }
      r[c] = ok;
      count += ok;
    }
    this.#count = count;
    this.#waiting = waiting;
    // Waits and IF changes are not events: re-check before every step while anything
    // waits or is pending.
    this.#dirty = pending || waiting > 0;
  }

  /**
   * Takes one scheduling step (the policy picks the CPU).
   *
   * @returns null after a step, or the result that ends a run (nothing could step, a
   *   thread threw, the host stopped).
   */
  step(): RunResult | null {
    if (this.#dirty) this.#recompute();
    if (this.#count === 0) return this.#idle(this.steps);
    const n = this.cpuCount;
    const c = n === 1 ? 0 : this.policy.pick(this.#runnable, this.#count, this.last);
    this.last = c;
    this.steps++;
    this.trace.step = this.steps;
    this.running = true;
    try {
      const res = this.#attn[c] === 0 ? this.#insn(c) : this.#special(c);
      if (res !== null) res.steps = 1;
      return res;
    } finally {
      this.running = false;
    }
  }

  /**
   * Runs until every CPU is halted or stopped, a deadlock, a thread error, a host stop,
   * or `maxSteps` scheduling steps.
   *
   * @param maxSteps Step budget of this call.
   * @returns Why it stopped and how many steps it took.
   */
  run(maxSteps: number): RunResult {
    if (!Number.isSafeInteger(maxSteps) || maxSteps < 0) {
      throw new MachineError(`Step budget must be a non-negative integer, got ${maxSteps}`);
    }
    const start = this.steps;
    const limit = start + maxSteps;
    const policy = this.policy;
    const r = this.#runnable;
    const attn = this.#attn;
    const host = this.host;
    const trace = this.trace;
    const single = this.cpuCount === 1;
    const ring = trace.capacity !== 0;
    // The host may have changed CPUs between runs (registers, queued interrupts, hlt).
    this.#dirty = true;
    this.running = true;
    try {
      while (this.steps < limit) {
        if (this.#dirty) this.#recompute();
        if (this.#count === 0) return this.#idle(start);
        const c = single ? 0 : policy.pick(r, this.#count, this.last);
        this.last = c;
        this.steps++;
        if (ring) trace.step = this.steps;
        let res: RunResult | null = null;
        if (attn[c] === 0 && !ring) {
          // The hot path: one instruction, hashed.
          const ip = host.ip(c);
          const st = host.stepCpu(c);
          trace.retire(c, ip | 0, 0, null, 0, 0);
          if (st !== StepStatus.RAN) res = this.#status(c, st);
        } else {
          res = attn[c] === 0 ? this.#insn(c) : this.#special(c);
        }
        if (res !== null) {
          res.steps = this.steps - start;
          return res;
        }
      }
    } finally {
      this.running = false;
    }
    return {
      reason: "budget",
      steps: this.steps - start,
      message: `Step budget of ${maxSteps} ran out`,
      cpu: this.last,
    };
  }

  #idle(start: number): RunResult {
    const steps = this.steps - start;
    if (this.#waiting > 0) {
      const what: string[] = [];
      let cpu = -1;
      for (const t of this.#threads) {
        if (t && !t.done && t.wait) {
          what.push(`CPU ${t.cpu} waits for ${t.wait.what}`);
          if (cpu < 0) cpu = t.cpu;
        }
      }
      return {
        reason: "deadlock",
        steps,
        message: `Deadlock: no CPU can step; ${what.join(", ")}`,
        cpu,
      };
    }
    let stopped = 0;
    for (let c = 0; c < this.cpuCount; c++) stopped += this.#stopped[c]!;
    if (stopped === this.cpuCount) {
      return { reason: "stopped", steps, message: this.host.stopMessage(0), cpu: 0 };
    }
    return {
      reason: "halted",
      steps,
      message: "Every CPU is halted with nothing to wake it",
      cpu: this.last < 0 ? 0 : this.last,
    };
  }

  /** One instruction on CPU `c`: the hot path. */
  #insn(c: number): RunResult | null {
    const host = this.host;
    const ip = host.ip(c);
    const trace = this.trace;
    if (trace.capacity === 0) {
      const st = host.stepCpu(c);
      trace.retire(c, ip | 0, 0, null, 0, 0);
      return st === StepStatus.RAN ? null : this.#status(c, st);
    }
    // Ring on: the bytes the CPU executed. The torn bytes when this step's fetch tore;
    // else the bytes it decoded at ip (noteDecode, before executing: a store by the
    // instruction itself does not show), which its predecoded copy still holds when
    // memory changed since (stale); else, for a host that reports no decodes, memory
    // at ip before the step. When ip was decoded before, the step either runs that copy
    // or decodes ip again, so the memory read is only needed for an unknown ip.
    const decoded = this.#decoded[c]!;
    let bytes = decoded.has(ip) ? EMPTY : this.#bytesAt(ip);
    this.#tornBytes = null;
    const st = host.stepCpu(c);
    if (this.#tornBytes !== null) bytes = this.#tornBytes;
    else bytes = decoded.get(ip) ?? bytes;
    trace.retire(
      c,
      ip | 0,
      Math.floor(ip / 4294967296) | 0,
      bytes,
      0,
      bytes.length === 0 ? 0 : insnLength(bytes, 0, host.bitness),
    );
    return st === StepStatus.RAN ? null : this.#status(c, st);
  }

  #bytesAt(ip: number): Uint8Array {
    try {
      return this.host.readBytes(ip, MAX_INSN_SIZE);
    } catch {
      return new Uint8Array(0);
    }
  }

  #status(c: number, st: number): RunResult | null {
    this.#dirty = true;
    if (st === StepStatus.HALTED || st === StepStatus.RAN) return null;
    if (st === StepStatus.STOPPED) {
      this.#stopped[c] = 1;
      return null;
    }
    return { reason: "host", steps: 0, message: this.host.stopMessage(c), cpu: c };
  }

  /** A step of CPU `c` that is not simply an instruction (see the module documentation). */
  #special(c: number): RunResult | null {
    // 1. The rest of a split store.
    const half = this.#half[c] ?? null;
    if (half !== null) {
      this.#half[c] = null;
      this.host.writeBytes(c, half.address, half.bytes);
      this.#dirty = true;
      return null;
    }
    const t = this.#threads[c] ?? null;
    const hasThread = t !== null && !t.done;
    // 2. NMI, even with IF=0, unless an NMI handler runs (blocked until its iret).
    if (!hasThread && this.#nmiPending[c] && !this.#nmiBlocked[c]) {
      this.#nmiPending[c] = 0;
      this.#nmiBlocked[c] = 1;
      this.#dirty = true;
      this.trace.event(TraceKind.NMI, c, 0, 0, NMI_VECTOR, -1);
      return this.#status(c, this.host.deliverNmi(c));
    }
    // 3. Call-function IPIs: run natively (the handler is kernel C code).
    const calls = this.#calls[c]!;
    // Maskable: IF=1 and no sti shadow (a thread waits with interrupts on).
    if (calls.length > 0 && (hasThread || this.#maskableOk(c))) {
      this.#clearIrr(c, CALL_FUNCTION_VECTOR);
      this.trace.event(TraceKind.IPI_TAKEN, c, 0, 0, CALL_FUNCTION_VECTOR, -1);
      // Interrupt delivery and the handler's iret both serialize.
      this.serialize(c, SerializeReason.INTERRUPT);
      const list = calls.splice(0);
      for (const req of list) {
        req.fn(c);
        req.left--;
      }
      this.serialize(c, SerializeReason.IRET);
      this.#dirty = true;
      return null;
    }
    // 4. Other IPIs through the IDT, highest vector first (as the local APIC does).
    if (!hasThread && this.#irrCount[c]! > 0 && this.host.interruptsEnabled(c)) {
      let v = -1;
      for (let w = 7; w >= 0 && v < 0; w--) {
        const bits = this.#irr[c * 8 + w]!;
        if (bits !== 0) v = w * 32 + 31 - Math.clz32(bits);
      }
      if (v !== CALL_FUNCTION_VECTOR) {
        this.#clearIrr(c, v);
        this.trace.event(TraceKind.IPI_TAKEN, c, 0, 0, v, -1);
        this.host.raiseInterrupt(c, v);
        this.#dirty = true;
        return this.#status(c, this.host.stepCpu(c));
      }
      // A call-function vector with an empty queue (already served): drop it.
      this.#clearIrr(c, v);
      this.#dirty = true;
    }
    // 5. A kernel-thread step.
    if (hasThread) return this.#threadStep(t);
    // 6. One instruction.
    return this.#insn(c);
  }

  #threadStep(t: ThreadState): RunResult | null {
    const c = t.cpu;
    t.steps++;
    let res: IteratorResult<KernelYield | undefined, unknown>;
    try {
      res = t.gen.next();
    } catch (e) {
      t.done = true;
      t.error = e;
      this.#dirty = true;
      return {
        reason: "thread-error",
        steps: 0,
        message: `Kernel thread on CPU ${c} threw: ${e instanceof Error ? e.message : String(e)}`,
        error: e,
        cpu: c,
      };
    }
    if (res.done) {
      t.done = true;
      this.trace.event(TraceKind.THREAD, c, 0, 0, ThreadOp.DONE);
      this.#dirty = true;
      return null;
    }
    const y = res.value;
    const op = y === undefined || y === null ? ThreadOp.STEP : y.op;
    this.trace.event(TraceKind.THREAD, c, 0, 0, op);
    if (y && y.until !== undefined) {
      t.wait = y;
      this.#dirty = true;
    }
    return null;
  }

  #clearIrr(c: number, v: number): void {
    const w = c * 8 + (v >> 5), bit = 1 << (v & 31);
    if (this.#irr[w]! & bit) {
      this.#irr[w] = this.#irr[w]! & ~bit;
      this.#irrCount[c]!--;
    }
  }
}
