/**
 * Dynamic ftrace on the modeled kernel (`kernel/trace/ftrace.c`,
 * `arch/x86/kernel/ftrace.c` of v5.1): fentry sites NOPed at boot, the two caller
 * trampolines with their patchable call sites, `ftrace_ops_list_func`, per-ops
 * trampolines, and the updates that move every affected site in one text_poke_bp batch.
 *
 * What each fentry site holds, given the registered ops (as `ftrace_get_addr_new`):
 * - no ops traces it: the NOP5;
 * - exactly one, with its own trampoline: `call <that trampoline>`;
 * - otherwise: `call ftrace_regs_caller` if any of them wants regs, else
 *   `call ftrace_caller`.
 *
 * What the callers' `ftrace_call` / `ftrace_regs_call` site calls is
 * `ftrace_trace_function`, chosen as `update_ftrace_function` does: `ftrace_stub` with
 * no ops registered, the one ops' own callback with exactly one (the kernel's
 * `ftrace_ops_get_func`, which for an ops that is not RECURSION_SAFE returns
 * `ftrace_ops_assist_func`, a wrapper the model leaves out), `ftrace_ops_list_func` with
 * more. Each update follows `ftrace_modify_all_code` of v5.1: when the trace function
 * changes, first `ftrace_update_ftrace_func(ftrace_ops_list_func)` — a full breakpoint
 * cycle even when the call already names the list function, as v5.1's
 * `ftrace_modify_code` does (a later kernel skips the unchanged rewrite) — then the
 * fentry sites (`ftrace_replace_code`), then, unless the new trace function is the list
 * function, `ftrace_update_ftrace_func(<it>)`. So when the second of two ops detaches,
 * the callers' call is rewritten while the sites still call `ftrace_regs_caller`, and
 * CPUs running through it hit the int3 at `ftrace_regs_call` (the `is_ftrace_caller(ip)`
 * case of the seed of Torvalds, 4 May 2019).
 *
 * Registration adds the ops to the list before patching, so the list function already
 * sees it when a site starts calling it. Unregistration removes it first, as
 * `ftrace_shutdown` does (`__unregister_ftrace_function`: `remove_ftrace_ops` and the new
 * trace function and `function_trace_op`, then `ftrace_run_update_code` moves the sites):
 * while the sites move, a CPU that reaches the list function no longer calls the ops
 * (one still running through the ops' own trampoline does). The list is newest first:
 * `add_ftrace_ops` puts a new ops at the head, so the list function calls the ops in the
 * reverse order of registration.
 *
 * An ops with `FTRACE_OPS_FL_IPMODIFY` may not share a function with another one
 * (`ftrace_hash_ipmodify_enable` refuses it with -EBUSY), nor trace every function (an
 * empty filter: -EINVAL); {@link Ftrace.registerFtraceFunction} refuses both before
 * anything changes.
 *
 * Per-ops trampolines exist only on x86-64 (`arch/x86/kernel/ftrace.c` builds
 * `arch_ftrace_update_trampoline` under `CONFIG_X86_64` only): there they are assembled
 * when first needed (the kernel copies `ftrace_caller` into a fresh page); on x86-32 a
 * site traced by one ops alone calls `ftrace_caller` / `ftrace_regs_caller` like any
 * other.
 *
 * Every patch goes through a {@link BatchRunner}: the experiments pass one that runs
 * text_poke_bp as a kernel thread with a proposal's int3 handler; tests can pass
 * {@link immediateRunner}.
 *
 * @module
 */

import { hexAddr, hexBytes, PatchError } from "../errors.ts";
import { nop5 } from "../kernel/constants.ts";
import type { Kernel } from "../kernel/kernel.ts";
import { PtRegs } from "../kernel/pt_regs.ts";
import type { NativeCall } from "../machine/native.ts";
import { type BatchRunner, callInsn, type PatchSite, rel32Target } from "./batch.ts";
import { FTRACE_OPS_FL_IPMODIFY, type FtraceOps } from "./ops.ts";
import {
  ftraceCallerSource,
  ftraceStubsSource,
  MCOUNT_INSN_SIZE,
  tracedFunctionSource,
} from "./trampolines.ts";

/** A caller trampoline: its entry and its patchable call site. */
export interface CallerTrampoline {
  /** Entry (the label a fentry site calls). */
  readonly address: bigint;
  /** The `call` inside it (`ftrace_call` / `ftrace_regs_call` / the per-ops call). */
  readonly callSite: bigint;
}

/**
 * Called when a CPU enters a trampoline (the probe each trampoline begins with).
 *
 * @param cpu The CPU.
 * @param target Entry address of the trampoline (or function) entered.
 * @param returnAddress The return address its caller pushed (the site's next ip).
 */
export type ProbeHook = (cpu: number, target: bigint, returnAddress: bigint) => void;

/**
 * Called when a CPU enters a tracer function through a call (`ftrace_ops_list_func`, an
 * ops' callback, `ftrace_stub`): what a caller's call site reached.
 *
 * @param cpu The CPU.
 * @param callee The function entered.
 * @param returnAddress The return address its caller pushed (a call site's next ip).
 */
export type CalleeHook = (cpu: number, callee: bigint, returnAddress: bigint) => void;

/**
 * ftrace on one {@link Kernel}.
 *
 * @example Trace one function on a stopped machine
 * ```ts
 * import { bootKernel, Ftrace, FtraceOps, immediateRunner, Machine } from "@textpoke/textpoke";
 *
 * const k = bootKernel(new Machine({ bitness: 64 }), { entry: "64-gap" });
 * const ft = new Ftrace(k);
 * k.bindNative("work", () => {});
 * const [f] = ft.loadTracedFunctions([{ name: "traced", lineOffset: 0, body: "work" }]);
 * ft.init();
 * let hits = 0;
 * const ops = new FtraceOps("count", () => hits++, { filter: [f!] });
 * const run = immediateRunner((a, b) => k.textPoke(a, b), (a, n) => k.mem.readBytes(a, n));
 * for (const _ of ft.registerFtraceFunction(ops, run));
 * k.call(0, "traced");
 * console.log(hits); // 1
 * ```
 */
export class Ftrace {
  /** The kernel. */
  readonly kernel: Kernel;
  /** `ftrace_caller` (no regs). */
  readonly caller: CallerTrampoline;
  /** `ftrace_regs_caller` (full pt_regs). */
  readonly regsCaller: CallerTrampoline;
  /** `ftrace_ops_list_func` (a native). */
  readonly listFunc: bigint;
  /** `ftrace_stub`. */
  readonly stub: bigint;
  /** `__fentry__`. */
  readonly fentry: bigint;
  /** `function_trace_op`: the ops pointer the callers pass. */
  readonly functionTraceOp: bigint;
  /** The fentry sites (`__mcount_loc`), sorted. */
  readonly sites: bigint[] = [];
  /**
   * The registered ops, newest first (`ftrace_ops_list`, which `add_ftrace_ops` prepends
   * to): the order the list function calls them in.
   */
  readonly ops: FtraceOps[] = [];
  /** Observer of trampoline entries (default: nothing). */
  onProbe: ProbeHook = () => {};
  /** Observer of tracer-function entries (default: nothing). */
  onCallee: CalleeHook = () => {};
  /**
   * `ftrace_update_func_call` of the seed (Torvalds, 4 May 2019): the target
   * {@link Ftrace.ftraceUpdateFtraceFunc} saves before it starts rewriting the callers'
   * call. As in the mail it is never cleared afterwards (only the graph caller's
   * `ftrace_mod_jmp`, which the model does not have, sets it to 0); 0 until the first
   * rewrite.
   */
  updateFuncCall = 0n;
  /** The function the callers' call sites currently call. */
  #globalFunc: bigint;
  /** `saved_ftrace_func`: the trace function the last update applied. */
  #savedFunc: bigint;
  #initialized = false;
  /** Every ops this ftrace has set up (its symbols carry the name), by name. */
  readonly #byName: Map<string, FtraceOps> = new Map();
  readonly #ws: 4 | 8;

  /**
   * Loads `__fentry__`, `ftrace_stub`, both caller trampolines and the list function into
   * the kernel.
   *
   * @param kernel A booted kernel.
   */
  constructor(kernel: Kernel) {
    this.kernel = kernel;
    const bitness = kernel.bitness;
    this.#ws = bitness === 64 ? 8 : 4;
    this.functionTraceOp = kernel.allocData(this.#ws, "function_trace_op");
    this.listFunc = kernel.bindNative("ftrace_ops_list_func", (call) => this.#listFunc(call));
    for (const name of ["ftrace_caller", "ftrace_regs_caller"]) {
      this.#bindProbe(name);
    }
    kernel.bindNative("__probe_ftrace_stub", (call) => {
      const sp = call.cpu.getReg(this.#ws === 8 ? "rsp" : "esp");
      const ret = this.kernel.mem.readWord(sp + BigInt(this.#ws), this.#ws);
      this.onCallee(call.cpu.index, this.stub, ret);
    });
    const src = ftraceStubsSource(true) +
      ftraceCallerSource({
        bitness,
        name: "ftrace_caller",
        callLabel: "ftrace_call",
        regs: false,
        ops: { variable: "function_trace_op" },
      }) +
      ftraceCallerSource({
        bitness,
        name: "ftrace_regs_caller",
        callLabel: "ftrace_regs_call",
        regs: true,
        ops: { variable: "function_trace_op" },
      });
    const labels = kernel.loadText(src, { name: "ftrace trampolines", align: 64 });
    const get = (n: string) => labels.get(n)!;
    this.fentry = get("__fentry__");
    this.stub = get("ftrace_stub");
    this.caller = { address: get("ftrace_caller"), callSite: get("ftrace_call") };
    this.regsCaller = { address: get("ftrace_regs_caller"), callSite: get("ftrace_regs_call") };
    this.#globalFunc = this.stub;
    this.#savedFunc = this.stub;
  }

  /** The return address a native was called with (the word at the stack pointer). */
  #returnAddress(call: NativeCall): bigint {
    const sp = call.cpu.getReg(this.#ws === 8 ? "rsp" : "esp");
    return this.kernel.mem.readWord(sp, this.#ws);
  }

  #bindProbe(name: string): bigint {
    return this.kernel.bindNative(`__probe_${name}`, (call) => {
      const sp = call.cpu.getReg(this.#ws === 8 ? "rsp" : "esp");
      const self = this.kernel.mem.readWord(sp, this.#ws) - 5n;
      const ret = this.kernel.mem.readWord(sp + BigInt(this.#ws), this.#ws);
      this.onProbe(call.cpu.index, self, ret);
    });
  }

  /**
   * Assembles traced functions (each `call __fentry__; call <body>; ret`, starting
   * `lineOffset` bytes into a 64-byte line) and records their fentry sites.
   *
   * @param defs Name, line offset and body symbol of each function.
   * @returns Their addresses (= their fentry sites), in order.
   */
  loadTracedFunctions(
    defs: readonly { name: string; lineOffset: number; body: string }[],
  ): bigint[] {
    const bitness = this.kernel.bitness;
    const src = defs.map((d) => tracedFunctionSource({ bitness, ...d })).join("\n");
    const labels = this.kernel.loadText(src, { name: "traced functions", align: 64 });
    const out = defs.map((d) => labels.get(d.name)!);
    for (const a of out) this.addSite(a);
    return out;
  }

  /**
   * Records a fentry site (an entry of `__mcount_loc`).
   *
   * @param address The site: a 5-byte `call __fentry__` (until {@link Ftrace.init}).
   */
  addSite(address: bigint): void {
    if (this.sites.includes(address)) return;
    this.sites.push(address);
    this.sites.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  }

  /**
   * Records many fentry sites at once (`ftrace_process_locs` over a sorted
   * `__mcount_loc`): linear in the sites, where {@link Ftrace.addSite} per site is
   * quadratic.
   *
   * @param sortedAddresses The sites, strictly ascending.
   *   Sites already recorded are skipped, as {@link Ftrace.addSite} does.
   * @throws {PatchError} If they are not strictly ascending; checked before any is
   *   recorded.
   */
  addSites(sortedAddresses: readonly bigint[]): void {
    const n = sortedAddresses.length;
    if (n === 0) return;
    for (let i = 1; i < n; i++) {
      const prev = sortedAddresses[i - 1]!;
      const a = sortedAddresses[i]!;
      if (a <= prev) {
        throw new PatchError(
          `addSites: site ${i} at ${hexAddr(a)} ${a === prev ? "repeats" : "comes before"} site ${
            i - 1
          } at ${hexAddr(prev)}; the sites must be sorted and unique`,
          a,
        );
      }
    }
    const sites = this.sites;
    const first = sortedAddresses[0]!;
    const last = sortedAddresses[n - 1]!;
    const existing = new Set<bigint>();
    for (const s of sites) if (s >= first && s <= last) existing.add(s);
    const tail = sites.length === 0 || sites[sites.length - 1]! < first;
    // A site already recorded is left as it is, as addSite() does.
    for (const a of sortedAddresses) if (!existing.has(a)) sites.push(a);
    // Appending after the last site keeps the order; otherwise one merge sort.
    if (!tail) sites.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  }

  /**
   * `ftrace_init`: verify every site is `call __fentry__` and turn it into the NOP5
   * (text_poke, nobody else runs yet).
   *
   * @throws {PatchError} Naming a site that holds something else.
   */
  init(): void {
    const k = this.kernel;
    // Check every site before the first write: a bad one leaves the text unchanged.
    for (const s of this.sites) {
      const found = k.mem.readBytes(s, MCOUNT_INSN_SIZE);
      const want = callInsn(s, this.fentry, k.bitness);
      if (!found.every((b, i) => b === want[i])) {
        throw new PatchError(
          `ftrace_init: ${hexAddr(s)} holds ${hexBytes(found)}, not call __fentry__ (${
            hexBytes(want)
          })`,
          s,
        );
      }
    }
    for (const s of this.sites) k.textPoke(s, nop5(k.bitness));
    this.#initialized = true;
  }

  /**
   * The instruction a fentry site should hold with the ops registered now.
   *
   * @param site A fentry site.
   * @returns NOP5 or the call to its trampoline.
   */
  desiredInsn(site: bigint): Uint8Array {
    const target = this.desiredTarget(site);
    const bitness = this.kernel.bitness;
    return target === null ? nop5(bitness) : callInsn(site, target, bitness);
  }

  /**
   * The trampoline a fentry site should call (`ftrace_get_addr_new`), or null for the NOP.
   *
   * @param site A fentry site.
   * @returns The target, or null.
   */
  desiredTarget(site: bigint): bigint | null {
    const on = this.ops.filter((o) => o.matches(site));
    if (on.length === 0) return null;
    if (on.length === 1 && on[0]!.trampoline !== null) return on[0]!.trampoline.address;
    return on.some((o) => o.saveRegs) ? this.regsCaller.address : this.caller.address;
  }

  /** The function the callers' call sites call now (`ftrace_trace_function`). */
  get globalFunc(): bigint {
    return this.#globalFunc;
  }

  /**
   * `register_ftrace_function`: add the ops, create its trampoline if it wants one, then
   * patch the callers' call (if it changes) and every affected site (one batch each).
   *
   * @param ops The ops.
   * @param run Performs each batch.
   * @returns A generator (drive it, or `yield*` it from a kernel thread).
   * @throws {PatchError} On the first `next()`, before anything changes, if ftrace is not
   *   initialized, the ops is already registered, or it belongs to another kernel's
   *   ftrace or shares its name with another ops of this one; or, for an IPMODIFY ops, if
   *   its filter is empty (every function) or names a function another registered
   *   IPMODIFY ops traces (`ftrace_hash_ipmodify_enable`: -EINVAL, -EBUSY).
   */
  *registerFtraceFunction(ops: FtraceOps, run: BatchRunner): Generator<unknown, void, unknown> {
    this.#checkInitialized(`register ftrace_ops ${ops.name}`);
    if (this.ops.includes(ops)) {
      throw new PatchError(`ftrace_ops ${ops.name} is already registered`);
    }
    const same = this.#byName.get(ops.name);
    if (same !== undefined && same !== ops) {
      throw new PatchError(
        `Another ftrace_ops named ${ops.name} was registered on this kernel (its symbols ftrace_ops_${ops.name} are taken)`,
      );
    }
    if (same === undefined && ops.address !== 0n) {
      throw new PatchError(
        `ftrace_ops ${ops.name} was set up by another kernel's ftrace (ops at ${
          hexAddr(ops.address)
        }): make a new FtraceOps for this one`,
      );
    }
    this.#checkIpmodify(ops);
    this.#prepareOps(ops);
    // add_ftrace_ops: the new ops goes to the head of ftrace_ops_list.
    this.ops.unshift(ops);
    this.#writeFunctionTraceOp();
    yield* this.#modifyAllCode(run);
  }

  /**
   * `unregister_ftrace_function`: remove the ops from the list (the list function stops
   * calling it, `function_trace_op` and the trace function are chosen without it), then
   * patch every affected site away from it (`ftrace_shutdown`).
   *
   * @param ops A registered ops.
   * @param run Performs each batch.
   * @returns A generator.
   * @throws {PatchError} On the first `next()`, before anything changes, if the ops is not
   *   registered.
   */
  *unregisterFtraceFunction(
    ops: FtraceOps,
    run: BatchRunner,
  ): Generator<unknown, void, unknown> {
    const i = this.ops.indexOf(ops);
    if (i < 0) throw new PatchError(`ftrace_ops ${ops.name} is not registered`);
    // ftrace_shutdown: __unregister_ftrace_function (remove_ftrace_ops, then the trace
    // function and function_trace_op without it) comes before ftrace_run_update_code.
    this.ops.splice(i, 1);
    this.#writeFunctionTraceOp();
    yield* this.#modifyAllCode(run);
  }

  /**
   * `ftrace_set_filter` + update: replace an ops' filter and move the affected sites.
   *
   * @param ops The ops.
   * @param filter New filter (null or empty: every function, as an empty filter_hash).
   * @param run Performs each batch.
   * @returns A generator.
   * @throws {PatchError} On the first `next()`, before the filter changes, if the ops is
   *   registered and ftrace is not initialized.
   */
  *setFilter(
    ops: FtraceOps,
    filter: Iterable<bigint> | null,
    run: BatchRunner,
  ): Generator<unknown, void, unknown> {
    const registered = this.ops.includes(ops);
    if (registered) this.#checkInitialized(`set the filter of ftrace_ops ${ops.name}`);
    ops.filter = filter === null ? null : new Set(filter);
    if (registered) yield* this.#modifyAllCode(run);
  }

  /**
   * `ftrace_update_ftrace_func`: rewrite the call inside both caller trampolines to
   * `func`, saving it as `ftrace_update_func_call` first, as the seed does. As in v5.1,
   * the two `call` sites are rewritten one after the other, each by its own breakpoint
   * sequence (`update_ftrace_func`): `ftrace_call` first, then `ftrace_regs_call`, so
   * between the two the callers disagree. Each runs even when the call already names
   * `func` (the breakpoint is written all the same).
   *
   * @param func The new target (`ftrace_ops_list_func`, `ftrace_stub`, a callback).
   * @param run Performs the batch.
   * @returns A generator.
   */
  *ftraceUpdateFtraceFunc(func: bigint, run: BatchRunner): Generator<unknown, void, unknown> {
    const bitness = this.kernel.bitness;
    // Encoded before ftrace_update_func_call changes: an unreachable func changes nothing.
    const sites: PatchSite[] = [this.caller.callSite, this.regsCaller.callSite].map((a) => ({
      address: a,
      old: this.kernel.mem.readBytes(a, 5),
      new: callInsn(a, func, bitness),
      role: "caller-call" as const,
    }));
    this.updateFuncCall = func;
    for (const site of sites) yield* run([site]);
    this.#globalFunc = func;
  }

  /**
   * The target the call at a caller's call site names now.
   *
   * @param callSite `ftrace_call` or `ftrace_regs_call`.
   * @returns Its target.
   */
  callTarget(callSite: bigint): bigint | null {
    return rel32Target(callSite, this.kernel.mem.readBytes(callSite, 5), this.kernel.bitness);
  }

  #checkInitialized(what: string): void {
    if (!this.#initialized) {
      throw new PatchError(`Cannot ${what}: ftrace is not initialized (call init() first)`);
    }
  }

  /**
   * `ftrace_hash_ipmodify_enable` for an ops about to be registered: an IPMODIFY ops may
   * not trace every function (-EINVAL) nor a function another registered IPMODIFY ops
   * traces (-EBUSY, the record's FTRACE_FL_IPMODIFY is taken).
   */
  #checkIpmodify(ops: FtraceOps): void {
    if ((ops.flags & FTRACE_OPS_FL_IPMODIFY) === 0) return;
    if (ops.filter === null || ops.filter.size === 0) {
      throw new PatchError(
        `ftrace_ops ${ops.name} has FTRACE_OPS_FL_IPMODIFY and an empty filter: an ops that changes regs->ip may not trace every function`,
      );
    }
    for (const other of this.ops) {
      if ((other.flags & FTRACE_OPS_FL_IPMODIFY) === 0) continue;
      for (const ip of ops.filter) {
        if (other.matches(ip)) {
          throw new PatchError(
            `ftrace_ops ${ops.name} has FTRACE_OPS_FL_IPMODIFY but ftrace_ops ${other.name} already modifies regs->ip at ${
              hexAddr(ip)
            } (busy)`,
            ip,
          );
        }
      }
    }
  }

  #prepareOps(ops: FtraceOps): void {
    const k = this.kernel;
    if (ops.address === 0n) {
      ops.address = k.allocData(64, `ftrace_ops_${ops.name}`);
      ops.callback = k.bindNative(`ftrace_ops_func_${ops.name}`, (call) => {
        this.onCallee(call.cpu.index, ops.callback, this.#returnAddress(call));
        const regsAt = call.arg(3);
        const regs = regsAt === 0n ? null : new PtRegs(k.mem, regsAt, k.bitness);
        ops.hits++;
        ops.func(call.arg(0), call.arg(1), ops, regs, call.cpu.index);
      });
    }
    // Only x86-64 has dynamic (per-ops) trampolines (CONFIG_X86_64 in the arch code).
    if (ops.wantsTrampoline && ops.trampoline === null && k.bitness === 64) {
      const name = `ftrace_ops_tramp_${ops.name}`;
      this.#bindProbe(name);
      const src = ftraceCallerSource({
        bitness: k.bitness,
        name,
        callLabel: `${name}_call`,
        regs: ops.saveRegs,
        ops: { constant: `ftrace_ops_${ops.name}` },
        initialTarget: `ftrace_ops_func_${ops.name}`,
      });
      const labels = k.loadText(src, { name, align: 64 });
      ops.trampoline = { address: labels.get(name)!, callSite: labels.get(`${name}_call`)! };
    }
    this.#byName.set(ops.name, ops);
  }

  #writeFunctionTraceOp(): void {
    // set_function_trace_op: the head of ftrace_ops_list (the newest ops).
    const first = this.ops[0];
    this.kernel.mem.writeWord(this.functionTraceOp, this.#ws, first?.address ?? 0n);
  }

  /** The batch that brings every site to its desired instruction. */
  #sitePlan(): PatchSite[] {
    if (!this.#initialized) {
      throw new PatchError("ftrace is not initialized: call init() first");
    }
    const out: PatchSite[] = [];
    for (const s of this.sites) {
      const old = this.kernel.mem.readBytes(s, MCOUNT_INSN_SIZE);
      const want = this.desiredInsn(s);
      if (old.every((b, i) => b === want[i])) continue;
      out.push({ address: s, old, new: want, role: "fentry" });
    }
    return out;
  }

  /** `update_ftrace_function`: the trace function for the registered ops. */
  #traceFunction(): bigint {
    if (this.ops.length === 0) return this.stub;
    if (this.ops.length === 1) return this.ops[0]!.callback;
    return this.listFunc;
  }

  /**
   * `ftrace_modify_all_code`: the list function first (when the trace function changes),
   * the sites, then the new trace function unless it is the list function.
   *
   * @param run Performs each batch.
   */
  *#modifyAllCode(run: BatchRunner): Generator<unknown, void, unknown> {
    const func = this.#traceFunction();
    const update = func !== this.#savedFunc;
    this.#savedFunc = func;
    if (update) yield* this.ftraceUpdateFtraceFunc(this.listFunc, run);
    const plan = this.#sitePlan();
    if (plan.length > 0) yield* run(plan);
    if (update && func !== this.listFunc) yield* this.ftraceUpdateFtraceFunc(func, run);
  }

  /** `ftrace_ops_list_func(ip, parent_ip, op, regs)`: call every ops that traces ip. */
  #listFunc(call: NativeCall): void {
    const k = this.kernel;
    const ip = call.arg(0);
    const parent = call.arg(1);
    const regsAt = call.arg(3);
    const regs = regsAt === 0n ? null : new PtRegs(k.mem, regsAt, k.bitness);
    this.onCallee(call.cpu.index, this.listFunc, this.#returnAddress(call));
    // Newest first, as ftrace_ops_list is walked.
    for (const ops of this.ops.slice()) {
      if (!ops.matches(ip)) continue;
      // ftrace_ops_test: an ops that wants regs is not called without them.
      if (ops.saveRegs && regs === null) continue;
      ops.hits++;
      ops.func(ip, parent, ops, regs, call.cpu.index);
    }
  }
}
