/**
 * klp-style function redirection on top of ftrace (`kernel/livepatch/patch.c`,
 * `klp_ftrace_handler`): one ftrace_ops with `FTRACE_OPS_FL_SAVE_REGS |
 * FTRACE_OPS_FL_IPMODIFY` whose filter is the patched functions and whose handler sets
 * `regs->ip` to the replacement (`klp_arch_set_pc`), so that `ftrace_regs_caller` (or the
 * ops' own trampoline) returns into the new function instead of the old body.
 *
 * Each patched function comes as a pair loaded by {@link Livepatch.loadFunctions}: the old
 * one (a traced function: `call __fentry__; call <old body>; ret`) and the new one
 * (`call <new body>; ret`). The bodies are natives that count executions, so a run can
 * tell "the new function ran" from "the old, unpatched function ran" — the failure
 * Rostedt's mail (seed 004) warns of: "the original 'buggy' patched function is called".
 *
 * @module
 */

import { PatchError } from "../errors.ts";
import type { BatchRunner } from "../ftrace/batch.ts";
import type { Ftrace } from "../ftrace/ftrace.ts";
import { FTRACE_OPS_FL_IPMODIFY, FTRACE_OPS_FL_SAVE_REGS, FtraceOps } from "../ftrace/ops.ts";

/** One patched function: the old and new addresses and how often each ran. */
export interface KlpFunc {
  /** Name. */
  readonly name: string;
  /** The old function (its fentry site). */
  readonly old: bigint;
  /** The replacement. */
  readonly new: bigint;
  /** Executions of the old body. */
  oldRuns: number;
  /** Executions of the new body. */
  newRuns: number;
}

/** Options of one function pair for {@link Livepatch.loadFunctions}. */
export interface KlpFuncDef {
  /** Name (a symbol name). */
  name: string;
  /**
   * Offset of the old function in its 64-byte line (60–62: the rel32 straddles; at 63 it
   * lies wholly in the next line).
   */
  lineOffset?: number;
  /** Called (with the CPU and the first argument) when the old body runs. */
  onOld?: (cpu: number, arg: bigint) => void;
  /** Called (with the CPU and the first argument) when the new body runs. */
  onNew?: (cpu: number, arg: bigint) => void;
}

/**
 * Livepatch on one {@link Ftrace}.
 *
 * @example Patch a function on a stopped machine
 * ```ts
 * import { bootKernel, Ftrace, immediateRunner, Livepatch, Machine } from "@textpoke/textpoke";
 *
 * const k = bootKernel(new Machine({ bitness: 64 }), { entry: "64-gap" });
 * const ft = new Ftrace(k);
 * const lp = new Livepatch(ft);
 * const [f] = lp.loadFunctions([{ name: "cmdline_show" }]);
 * ft.init();
 * const run = immediateRunner((a, b) => k.textPoke(a, b), (a, n) => k.mem.readBytes(a, n));
 * for (const _ of lp.enable(run));
 * k.call(0, f!.old);
 * console.log(f!.oldRuns, f!.newRuns); // 0 1
 * ```
 */
export class Livepatch {
  /** ftrace. */
  readonly ftrace: Ftrace;
  /** The patched functions. */
  readonly funcs: KlpFunc[] = [];
  /** The ops (`klp_ops`), SAVE_REGS | IPMODIFY. */
  readonly ops: FtraceOps;
  #enabled = false;

  /**
   * Creates the patch and its klp ops (nothing is loaded or registered yet).
   *
   * @param ftrace ftrace of the kernel.
   * @param name Name of the patch (ops name `klp_<name>`).
   */
  constructor(ftrace: Ftrace, name = "patch") {
    this.ftrace = ftrace;
    this.ops = new FtraceOps(
      `klp_${name}`,
      (ip, _parent, _ops, regs) => {
        // klp_ftrace_handler: klp_arch_set_pc(regs, new_func)
        const f = this.funcs.find((x) => x.old === ip);
        if (f === undefined || regs === null) return;
        regs.ip = f.new;
      },
      // No filter yet: enable() sets it to the patched functions before registering, as
      // klp_patch_func calls ftrace_set_filter_ip before register_ftrace_function (an
      // ops registered with an empty filter would trace every function).
      { flags: FTRACE_OPS_FL_SAVE_REGS | FTRACE_OPS_FL_IPMODIFY },
    );
  }

  /** True while the patch is registered. */
  get enabled(): boolean {
    return this.#enabled;
  }

  /**
   * Loads old/new function pairs (the old ones as traced functions) with counting bodies.
   *
   * @param defs The functions.
   * @returns Their records (also in {@link Livepatch.funcs}).
   * @throws {PatchError} While the patch is enabled, before anything changes: a patch's
   *   functions are fixed once `klp_enable_patch` has set its filter (disable it first).
   */
  loadFunctions(defs: readonly KlpFuncDef[]): KlpFunc[] {
    if (this.#enabled) {
      throw new PatchError(
        `Livepatch ${this.ops.name} is enabled: its functions are fixed until disable()`,
      );
    }
    const k = this.ftrace.kernel;
    const recs: { -readonly [K in keyof KlpFunc]: KlpFunc[K] }[] = [];
    const traced: { name: string; lineOffset: number; body: string }[] = [];
    let newSrc = "";
    for (const d of defs) {
      const rec = { name: d.name, old: 0n, new: 0n, oldRuns: 0, newRuns: 0 };
      k.bindNative(`klp_old_body_${d.name}`, (call) => {
        rec.oldRuns++;
        d.onOld?.(call.cpu.index, call.arg(0));
      });
      k.bindNative(`klp_new_body_${d.name}`, (call) => {
        rec.newRuns++;
        d.onNew?.(call.cpu.index, call.arg(0));
      });
      traced.push({ name: d.name, lineOffset: d.lineOffset ?? 0, body: `klp_old_body_${d.name}` });
      newSrc += `\n${d.name}__klp_new:\n\tcall\tklp_new_body_${d.name}\n\tret\n`;
      recs.push(rec);
    }
    const olds = this.ftrace.loadTracedFunctions(traced);
    const labels = k.loadText(newSrc, { name: "livepatch replacements" });
    recs.forEach((r, i) => {
      r.old = olds[i]!;
      r.new = labels.get(`${r.name}__klp_new`)!;
      this.funcs.push(r);
    });
    return recs;
  }

  /**
   * `klp_enable_patch`: set the ops' filter to the patched functions
   * (`ftrace_set_filter_ip`), then register it.
   *
   * @param run Performs each batch.
   * @returns A generator.
   * @throws {PatchError} On the first `next()`, before anything changes, if the patch is
   *   already enabled or has no functions (an empty filter would trace every function).
   */
  *enable(run: BatchRunner): Generator<unknown, void, unknown> {
    if (this.#enabled) throw new PatchError(`Livepatch ${this.ops.name} is already enabled`);
    if (this.funcs.length === 0) {
      throw new PatchError(
        `Livepatch ${this.ops.name} has no functions (loadFunctions() first): registering its ops with an empty filter would trace every function`,
      );
    }
    this.ops.filter = new Set(this.funcs.map((f) => f.old));
    this.#enabled = true;
    yield* this.ftrace.registerFtraceFunction(this.ops, run);
  }

  /**
   * `klp_disable_patch`: unregister the ops (the old functions run again).
   *
   * @param run Performs each batch.
   * @returns A generator.
   */
  *disable(run: BatchRunner): Generator<unknown, void, unknown> {
    if (!this.#enabled) throw new PatchError(`Livepatch ${this.ops.name} is not enabled`);
    yield* this.ftrace.unregisterFtraceFunction(this.ops, run);
    this.#enabled = false;
  }
}
