/**
 * `struct ftrace_ops` on the model: a tracer callback, its flags and its filter
 * (`include/linux/ftrace.h`).
 *
 * The callback is a TypeScript function with the kernel's signature
 * `func(ip, parent_ip, ops, regs)`; when an ops is registered it is bound to an address as
 * a native, so trampolines call it with the kernel calling convention and it reads and
 * writes `regs` in emulated memory. Flag bit values are the model's own; the names are the
 * kernel's.
 *
 * @module
 */

import { FtraceError } from "../errors.ts";
import type { PtRegs } from "../kernel/pt_regs.ts";

/** `FTRACE_OPS_FL_SAVE_REGS`: the callback needs a full pt_regs (ftrace_regs_caller). */
export const FTRACE_OPS_FL_SAVE_REGS = 1 << 2;
/**
 * `FTRACE_OPS_FL_IPMODIFY`: the callback may change `regs->ip` (livepatch). At most one
 * registered IPMODIFY ops per function, and never one with an empty filter
 * (`ftrace_hash_ipmodify_enable`).
 */
export const FTRACE_OPS_FL_IPMODIFY = 1 << 12;

/**
 * A tracer callback.
 *
 * @param ip Address of the traced function's fentry site.
 * @param parentIp The traced function's return address.
 * @param ops The ops it was registered with.
 * @param regs The full pt_regs (SAVE_REGS ops), or null.
 * @param cpu The CPU running it.
 */
export type FtraceFunc = (
  ip: bigint,
  parentIp: bigint,
  ops: FtraceOps,
  regs: PtRegs | null,
  cpu: number,
) => void;

/** Options of {@link FtraceOps}. */
export interface FtraceOpsOptions {
  /** Flags ({@link FTRACE_OPS_FL_SAVE_REGS}, {@link FTRACE_OPS_FL_IPMODIFY}). */
  flags?: number;
  /**
   * Traced functions (fentry site addresses) it wants. Absent or empty: every function,
   * as an ftrace_ops whose `filter_hash` is empty traces every function in the kernel.
   */
  filter?: Iterable<bigint>;
  /**
   * Give it its own trampoline when it is the only ops on a function (default true). Only
   * x86-64 has per-ops trampolines: on x86-32 this is ignored.
   */
  trampoline?: boolean;
}

/**
 * One `struct ftrace_ops`.
 *
 * @example An ops that counts calls to one function
 * ```ts
 * import { FtraceOps } from "@textpoke/textpoke";
 *
 * let n = 0;
 * const ops = new FtraceOps("count", () => n++, { filter: [0xffffffff81004000n] });
 * console.log(ops.matches(0xffffffff81004000n), ops.matches(0x1000n)); // true false
 * ```
 */
export class FtraceOps {
  /** Name, for symbols and messages. */
  readonly name: string;
  /** The callback. */
  readonly func: FtraceFunc;
  /** Flags. */
  flags: number;
  /**
   * Filter (`filter_hash`): null or an empty set means every traced function (the
   * constructor turns an empty filter into null). There is no "no function" filter, as in
   * the kernel: an ops that should trace nothing is not registered.
   */
  filter: Set<bigint> | null;
  /** Whether it gets a per-ops trampoline when alone on a function (x86-64 only). */
  readonly wantsTrampoline: boolean;
  /** Address of the ops structure in kernel data (set on first registration). */
  address = 0n;
  /** Address of the native bound to the callback (set on first registration). */
  callback = 0n;
  /** Its trampoline, once created (x86-64 only): entry and the call site inside. */
  trampoline: { readonly address: bigint; readonly callSite: bigint } | null = null;
  /** Number of callback invocations. */
  hits = 0;

  /**
   * Creates an ops; it does nothing until registered.
   *
   * @param name Name (used in symbols: letters, digits, `_`).
   * @param func The callback.
   * @param options Flags, filter, trampoline.
   * @throws {FtraceError} If the name is not a symbol name.
   */
  constructor(name: string, func: FtraceFunc, options: FtraceOpsOptions = {}) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
      throw new FtraceError(
        `ftrace_ops name "${name}" is not a symbol name (letters, digits and _, not a digit first)`,
      );
    }
    this.name = name;
    this.func = func;
    this.flags = options.flags ?? 0;
    const filter = options.filter === undefined ? null : new Set(options.filter);
    this.filter = filter === null || filter.size === 0 ? null : filter;
    this.wantsTrampoline = options.trampoline ?? true;
  }

  /** True when the callback needs a full pt_regs. */
  get saveRegs(): boolean {
    return (this.flags & FTRACE_OPS_FL_SAVE_REGS) !== 0;
  }

  /**
   * `ftrace_ops_test`: does this ops trace the function whose fentry site is `ip`?
   *
   * @param ip The fentry site.
   * @returns True when the filter is null or empty (every function) or contains `ip`.
   */
  matches(ip: bigint): boolean {
    return this.filter === null || this.filter.size === 0 || this.filter.has(ip);
  }
}
