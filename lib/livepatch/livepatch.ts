/**
 * klp-style function redirection on top of ftrace (`kernel/livepatch/patch.c`,
 * `klp_ftrace_handler`). As `klp_patch_func` does, every patched function gets its own
 * `klp_ops`: an ftrace_ops with `FTRACE_OPS_FL_SAVE_REGS | FTRACE_OPS_FL_IPMODIFY` whose
 * filter is that one function (`ftrace_set_filter_ip`), registered by its own
 * `register_ftrace_function` (one ftrace update per function), whose handler sets
 * `regs->ip` to the replacement (`klp_arch_set_pc`), so that `ftrace_regs_caller` (or, on
 * x86-64, the ops' own trampoline) returns into the new function instead of the old
 * body. With two or more patched functions the trace function is therefore
 * `ftrace_ops_list_func`, and a tracer attached to the same functions later does not
 * change it.
 *
 * Not modelled: the consistency model's per-task transition (`func->transition`,
 * `current->patch_state`, `klp_update_patch_state`): every task switches to the new
 * functions as soon as its site's ops is registered. Nor `klp_find_ops` sharing one
 * klp_ops between patches of the same function (its `func_stack`): a second
 * {@link Livepatch} of a function already patched is refused, as the second IPMODIFY ops
 * on it.
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
  /** Name of the patch (its ops are `klp_<name>_<function>`). */
  readonly name: string;
  /** One `klp_ops` per patched function, in the order of {@link Livepatch.funcs}. */
  readonly #ops: FtraceOps[] = [];
  #enabled = false;

  /**
   * Creates the patch (nothing is loaded or registered yet).
   *
   * @param ftrace ftrace of the kernel.
   * @param name Name of the patch (a symbol name; ops names `klp_<name>_<function>`).
   */
  constructor(ftrace: Ftrace, name = "patch") {
    this.ftrace = ftrace;
    this.name = name;
  }

  /** The `klp_ops` of every patched function (SAVE_REGS | IPMODIFY, one function each). */
  get ops(): readonly FtraceOps[] {
    return this.#ops;
  }

  /**
   * The `klp_ops` of one patched function (`klp_find_ops(old_func)`).
   *
   * @param func A function of this patch.
   * @returns Its ops.
   * @throws {PatchError} If the function is not one of this patch's.
   */
  opsOf(func: KlpFunc): FtraceOps {
    const i = this.funcs.indexOf(func);
    if (i < 0) {
      throw new PatchError(`Function ${func.name} is not a function of livepatch ${this.name}`);
    }
    return this.#ops[i]!;
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
        `Livepatch ${this.name} is enabled: its functions are fixed until disable()`,
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
      // klp_patch_func's klp_ops: its filter is set by enable() (ftrace_set_filter_ip
      // before register_ftrace_function); an ops registered without one would trace
      // every function.
      const target = r.new;
      this.#ops.push(
        new FtraceOps(
          `klp_${this.name}_${r.name}`,
          (_ip, _parent, _ops, regs) => {
            // klp_ftrace_handler: klp_arch_set_pc(regs, new_func)
            if (regs !== null) regs.ip = target;
          },
          { flags: FTRACE_OPS_FL_SAVE_REGS | FTRACE_OPS_FL_IPMODIFY },
        ),
      );
    });
    return recs;
  }

  /**
   * `klp_enable_patch`: for each function in turn (`klp_patch_func`), set its ops' filter
   * to that function (`ftrace_set_filter_ip`) and register the ops, each registration an
   * ftrace update of its own. If one is refused, the ones already registered are
   * unregistered again (`klp_patch_object` → `klp_unpatch_object`) and the error is
   * rethrown.
   *
   * @param run Performs each batch.
   * @returns A generator.
   * @throws {PatchError} On the first `next()`, before anything changes, if the patch is
   *   already enabled or has no functions; later, after undoing what it did, if ftrace
   *   refuses an ops (e.g. another IPMODIFY ops already modifies that function).
   */
  *enable(run: BatchRunner): Generator<unknown, void, unknown> {
    if (this.#enabled) throw new PatchError(`Livepatch ${this.name} is already enabled`);
    if (this.funcs.length === 0) {
      throw new PatchError(
        `Livepatch ${this.name} has no functions (loadFunctions() first): nothing to patch`,
      );
    }
    this.#enabled = true;
    const done: FtraceOps[] = [];
    for (let i = 0; i < this.funcs.length; i++) {
      const ops = this.#ops[i]!;
      ops.filter = new Set([this.funcs[i]!.old]);
      try {
        yield* this.ftrace.registerFtraceFunction(ops, run);
      } catch (e) {
        // A runner that failed mid-batch leaves this ops registered: nothing is undone
        // then (disable() unregisters what is registered).
        if (this.ftrace.ops.includes(ops)) throw e;
        for (const d of done.reverse()) yield* this.ftrace.unregisterFtraceFunction(d, run);
        this.#enabled = false;
        throw e;
      }
      done.push(ops);
    }
  }

  /**
   * `klp_disable_patch`: unregister each function's ops in turn (`klp_unpatch_func`, one
   * ftrace update each; the old functions run again).
   *
   * @param run Performs each batch.
   * @returns A generator.
   * @throws {PatchError} On the first `next()` if the patch is not enabled.
   */
  *disable(run: BatchRunner): Generator<unknown, void, unknown> {
    if (!this.#enabled) throw new PatchError(`Livepatch ${this.name} is not enabled`);
    for (const ops of this.#ops) {
      if (this.ftrace.ops.includes(ops)) yield* this.ftrace.unregisterFtraceFunction(ops, run);
    }
    this.#enabled = false;
  }
}
