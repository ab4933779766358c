/**
 * `do_int3` / `do_kernel_int3` (`arch/x86/kernel/traps.c` as of the seed, Torvalds,
 * 4 May 2019): the C side of the int3 entry, as TypeScript that reads and writes pt_regs in
 * emulated memory.
 *
 * The handler chain, in the kernel's order:
 * 1. while ftrace modifies code (`modifying_ftrace_code`), ftrace's hook; it gets the regs
 *    by reference (`ftrace_int3_handler(struct pt_regs **)`) because emulating a call may
 *    move them;
 * 2. `poke_int3_handler` (text_poke_bp's, installed by {@link TextPatcher});
 * 3. the die notifier chain (`notify_die(DIE_INT3, …)`, kprobe-like users). A notifier
 *    gets plain regs and cannot return moved ones: that is why, as the seed explains, a
 *    notifier cannot emulate a call;
 * 4. nobody claimed it: from user mode the task gets SIGTRAP (recorded as an event, and
 *    the task goes on after the int3, like a breakpoint whose signal is ignored); from
 *    kernel mode it is an oops (`die("int3")`), recorded with the regs, and the CPU stops.
 *
 * `do_kernel_int3` returns the regs the entry must restore from (moved by the 32-bit seed
 * push); `do_int3` is the seed's wrapper that warns if they moved (its entry cannot follow).
 *
 * @module
 */

import type { PushMode } from "./emulate.ts";
import type { PtRegs, PtRegsSnapshot } from "./pt_regs.ts";

/** What a handler in the int3 chain sees. Handlers that move the frame replace `regs`. */
export interface Int3Context {
  /** The trap frame; a handler that emulates a push stores the returned regs here. */
  regs: PtRegs;
  /** The CPU that took the int3. */
  readonly cpu: number;
  /** How this kernel's entry lets a handler push (see `emulate.ts`). */
  readonly pushMode: PushMode;
}

/**
 * A handler that may claim an int3 (ftrace's hook, `poke_int3_handler`).
 *
 * @param ctx The trap; replace `ctx.regs` if the handler moved them.
 * @returns True if it handled the int3.
 */
export type Int3Handler = (ctx: Int3Context) => boolean;

/**
 * A die notifier (`register_die_notifier`) for DIE_INT3.
 *
 * @param regs The trap frame (it cannot be replaced from here).
 * @param cpu The CPU that took the int3.
 * @returns True to stop the chain (NOTIFY_STOP).
 */
export type DieNotifier = (regs: PtRegs, cpu: number) => boolean;

/** A user-mode int3 nobody claimed: the task got SIGTRAP. */
export interface SigtrapEvent {
  /** Discriminant. */
  readonly kind: "sigtrap";
  /** The CPU. */
  readonly cpu: number;
  /** The task running there. */
  readonly task: string;
  /** Address of the int3 (`regs->ip - 1`). */
  readonly address: bigint;
  /** The regs at the trap. */
  readonly regs: PtRegsSnapshot;
}

/** A kernel-mode int3 nobody claimed: `die("int3")`. */
export interface OopsEvent {
  /** Discriminant. */
  readonly kind: "oops";
  /** The CPU, which stops. */
  readonly cpu: number;
  /** The oops line, e.g. `int3: 0000 [#1] at 0xffffffff81000005`. */
  readonly message: string;
  /** Address of the int3 (`regs->ip - 1`), or of the faulting access. */
  readonly address: bigint;
  /** Address of the pt_regs. */
  readonly regsAddress: bigint;
  /** The regs at the oops. */
  readonly regs: PtRegsSnapshot;
}

/** A `WARN_ON_ONCE` that fired. */
export interface WarnEvent {
  /** Discriminant. */
  readonly kind: "warn";
  /** The CPU. */
  readonly cpu: number;
  /** What was warned about. */
  readonly message: string;
  /** The int3 address involved. */
  readonly address: bigint;
}

/** A user task killed by a fault (the kernel delivered a fatal signal). */
export interface SignalEvent {
  /** Discriminant. */
  readonly kind: "signal";
  /** The CPU. */
  readonly cpu: number;
  /** The task. */
  readonly task: string;
  /** Which signal. */
  readonly signal: "SIGSEGV" | "SIGILL" | "SIGFPE";
  /** The faulting ip (for a page fault: the address accessed). */
  readonly address: bigint;
  /** One line for people. */
  readonly message: string;
}

/** Everything the modeled kernel reports instead of printing. */
export type KernelEvent = SigtrapEvent | OopsEvent | WarnEvent | SignalEvent;

/**
 * The int3 handler chain of one kernel, with its state (ftrace's flag and hook, the poke
 * handler, the notifiers) and the events it records.
 *
 * @example A notifier claims a kernel int3 by skipping a 1-byte breakpoint
 * ```ts
 * import { Int3Dispatch, PtRegs, wordMemory } from "@textpoke/textpoke";
 *
 * const bytes = new Uint8Array(512);
 * const mem = wordMemory({
 *   readBytes: (a, n) => bytes.slice(Number(a), Number(a) + n),
 *   writeBytes: (a, b) => bytes.set(b, Number(a)),
 * });
 * const regs = new PtRegs(mem, 0n, 64);
 * regs.ip = 0x1001n;
 * regs.cs = 0x10n;
 * const d = new Int3Dispatch("direct");
 * d.registerDieNotifier((r) => r.ip === 0x1001n);
 * d.doKernelInt3(regs, 0);
 * console.log(d.events.length); // 0: claimed, no oops
 * ```
 */
export class Int3Dispatch {
  /** How the entry of this kernel lets handlers push. */
  pushMode: PushMode;
  /** `modifying_ftrace_code`: ftrace's hook runs only while this is non-zero. */
  modifyingFtraceCode = 0;
  /** ftrace's hook (`ftrace_int3_handler`), or null. */
  ftraceInt3Handler: Int3Handler | null = null;
  /** text_poke_bp's handler (`poke_int3_handler`), or null. */
  pokeInt3Handler: Int3Handler | null = null;
  /** The DIE_INT3 notifier chain, in registration order. */
  readonly notifiers: DieNotifier[] = [];
  /** Events recorded (SIGTRAPs, oopses, warnings), oldest first. */
  readonly events: KernelEvent[] = [];
  /** Number of int3 traps handled (any outcome). */
  traps = 0;
  /**
   * Called when an oops is recorded, to stop the CPU (set by the kernel that owns the
   * machine).
   */
  onOops: (event: OopsEvent) => void = () => {};
  /** Names the task running on a CPU (for SIGTRAP records). */
  taskName: (cpu: number) => string = (cpu) => `task/${cpu}`;
  readonly #warned = new Set<string>();

  /**
   * Creates an empty chain.
   *
   * @param pushMode How the entry lets handlers push.
   */
  constructor(pushMode: PushMode) {
    this.pushMode = pushMode;
  }

  /**
   * `register_die_notifier` for DIE_INT3.
   *
   * @param fn The notifier.
   * @returns A function that unregisters it.
   */
  registerDieNotifier(fn: DieNotifier): () => void {
    this.notifiers.push(fn);
    return () => {
      const i = this.notifiers.indexOf(fn);
      if (i >= 0) this.notifiers.splice(i, 1);
    };
  }

  /**
   * `do_kernel_int3`: run the chain on a trap frame.
   *
   * @param regs The pt_regs the entry built.
   * @param cpu The CPU that took the int3.
   * @returns The regs the entry must return through (moved by a 32-bit seed push).
   */
  doKernelInt3(regs: PtRegs, cpu: number): PtRegs {
    this.traps++;
    const ctx: Int3Context = { regs, cpu, pushMode: this.pushMode };
    const ftrace = this.ftraceInt3Handler;
    if (this.modifyingFtraceCode !== 0 && ftrace !== null && ftrace(ctx)) return ctx.regs;
    const poke = this.pokeInt3Handler;
    if (poke !== null && poke(ctx)) return ctx.regs;
    regs = ctx.regs;
    for (const n of this.notifiers) {
      if (n(regs, cpu)) return regs;
    }
    const address = regs.ip - 1n;
    if (regs.userMode()) {
      this.events.push({
        kind: "sigtrap",
        cpu,
        task: this.taskName(cpu),
        address,
        regs: regs.snapshot(),
      });
      return regs;
    }
    this.oops(cpu, `int3: 0000 [#1] at 0x${address.toString(16)}`, address, regs);
    return regs;
  }

  /**
   * The seed's `do_int3`: `WARN_ON_ONCE(do_kernel_int3(regs) != regs)` — for entries that
   * cannot switch to moved regs.
   *
   * @param regs The pt_regs the entry built.
   * @param cpu The CPU that took the int3.
   */
  doInt3(regs: PtRegs, cpu: number): void {
    const out = this.doKernelInt3(regs, cpu);
    if (out.address !== regs.address) {
      this.warnOnce(
        cpu,
        "do_int3: int3 handler moved pt_regs but the entry cannot follow",
        regs.ip - 1n,
      );
    }
  }

  /**
   * Records an oops and stops the CPU (through {@link Int3Dispatch.onOops}).
   *
   * @param cpu The CPU.
   * @param message The oops line.
   * @param address The address involved.
   * @param regs The regs at the oops.
   * @returns The event.
   */
  oops(cpu: number, message: string, address: bigint, regs: PtRegs): OopsEvent {
    const event: OopsEvent = {
      kind: "oops",
      cpu,
      message,
      address,
      regsAddress: regs.address,
      regs: regs.snapshot(),
    };
    this.events.push(event);
    this.onOops(event);
    return event;
  }

  /**
   * `WARN_ON_ONCE`: records a warning the first time a message is seen.
   *
   * @param cpu The CPU.
   * @param message What is wrong.
   * @param address The address involved.
   */
  warnOnce(cpu: number, message: string, address: bigint): void {
    if (this.#warned.has(message)) return;
    this.#warned.add(message);
    this.events.push({ kind: "warn", cpu, message, address });
  }
}
