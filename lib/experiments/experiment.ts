/**
 * The race harness: one scenario under one proposal on one architecture, fetch mode and
 * seed, on an emulated SMP machine; the result is a plain record.
 *
 * The machine: CPU 0 runs the patcher as a kernel thread (every store, IPI and wait is a
 * scheduling step, so the other CPUs really run between them); every other CPU runs a
 * worker task that calls the patched functions in a loop, half of the calls with the
 * stack one word lower (the kernel is built with 8-byte stack alignment, so both
 * alignments of the interrupted stack occur). The scheduler is `random(seed)`, one
 * instruction per pick.
 *
 * How an execution is observed (nothing the kernel has, all outside the code under test):
 * - `__mark(k, variant)`, a native the worker calls before each call of function k, opens
 *   an execution and checks the worker's callee-saved registers and stack pointer (a
 *   clobber by the previous execution marks that one `crashed`);
 * - every trampoline (and every static_call target function) begins with a call to a
 *   probe native that records the target entered and checks the return address its
 *   caller pushed;
 * - the function's body is a native that closes the execution and checks the argument
 *   (or static_call result) and the stack pointer;
 * - both checks also require SS to be the kernel's. An iret through a frame whose SS slot
 *   was overwritten (a push emulated without a gap) raises #GP when the value is no valid
 *   SS, on hardware as in the model. But a 64-bit iret to CPL 0 accepts a null selector,
 *   so a clobber whose low 16 bits make one gets through and is caught here;
 * - kernel faults and oopses kill the worker's task (counted `crashed`) and a fresh task
 *   restarts the loop; a task that makes no progress for {@link HANG_STEPS} steps is
 *   killed the same way.
 * The patcher records each batch's window per site; {@link classifyExecution} does the
 * rest.
 *
 * A caller trampoline's own call site (`ftrace_call` / `ftrace_regs_call`) is a patched
 * site too: an execution that enters `ftrace_caller` or `ftrace_regs_caller` also executes
 * it, and is classified there as well (counted as a second execution, on the same CPU's
 * timeline, nested in the first): from the trampoline's probe to the body, by the first
 * tracer function it reached (`ftrace_ops_list_func`, an ops' callback or `ftrace_stub`,
 * each reporting its return address, which must be the call site's next ip). It is
 * `crashed` when that return address is wrong or the task died before any was reached.
 *
 * Scenarios (the sites of every one include rel32s that straddle a 64-byte line: the
 * functions start 60, 61, 62, 63 and 8 bytes into a line):
 * - `ftrace-transition` (Rostedt, seed 004): ops A and ops B (SAVE_REGS, so the list
 *   caller is `ftrace_regs_caller`) on the same functions; each transition is the full
 *   cycle NOP5 → A's own trampoline → `ftrace_regs_caller` (list function) → A's
 *   trampoline → NOP5. On x86-32, which has no per-ops trampolines, A alone is reached
 *   through `ftrace_caller` instead of a trampoline of its own. The callers' call follows
 *   `ftrace_modify_all_code` (see `Ftrace`): when B detaches it is rewritten (list
 *   function → list function, then after the sites moved → A's callback) while sites
 *   still call `ftrace_regs_caller`, so CPUs hit the int3 at `ftrace_regs_call`.
 * - `livepatch-transition`: every function is livepatched before the workers start, one
 *   klp ops per function as `klp_patch_func` does (on x86-64 its site calls that ops'
 *   trampoline, which sets regs->ip to the new function; the callers' call is the list
 *   function, as eight ops are registered); each transition attaches a tracer to the same
 *   functions (the sites move to `ftrace_regs_caller`) and detaches it (back to the klp
 *   trampolines); the callers' call stays on the list function throughout.
 * - `static-call-update`: a key used by inline sites and by callers of its trampoline;
 *   each transition is func_a → func_b → NULL → func_a (func_a(x) = x+1, func_b(x) = x+2).
 *   On x86-32 every user calls the trampoline: inline static calls need objtool
 *   (HAVE_STATIC_CALL_INLINE is x86-64 only), so only the trampoline is patched.
 *
 * `livepatch-transition` does not apply on x86-32 (HAVE_LIVEPATCH is x86-64 only; see
 * {@link notApplicable}).
 *
 * @module
 */

import { ExperimentError } from "../errors.ts";
import { type BatchRunner, immediateRunner, type SiteRole } from "../ftrace/batch.ts";
import { Ftrace } from "../ftrace/ftrace.ts";
import { FTRACE_OPS_FL_SAVE_REGS, FtraceOps } from "../ftrace/ops.ts";
import { X86_EFLAGS_IF } from "../kernel/constants.ts";
import type { EntryVariant } from "../kernel/entry.ts";
import { bootKernel, type Kernel } from "../kernel/kernel.ts";
import { Livepatch } from "../livepatch/livepatch.ts";
import { Machine } from "../machine/machine.ts";
import type { NativeCall } from "../machine/native.ts";
import { random } from "../machine/schedule.ts";
import type { FetchMode, KernelContext, KernelGen, Smp } from "../machine/smp.ts";
import { attachSmp } from "../machine/smp_machine.ts";
import { defaultEntry, installProposal, type ProposalHandler } from "../proposals/handler.ts";
import {
  type Arch,
  presetOf,
  proposal as lookupProposal,
  type PushStrategy,
  type TargetStrategy,
} from "../proposals/proposals.ts";
import { StaticCalls } from "../static_call/static_call.ts";
import { type ExecutionClass, type ExecutionCounts, recrashLast } from "./classify.ts";
import { CANARIES_32, CANARIES_64 } from "./_canaries.ts";
import {
  calleeReached,
  closeInner,
  enterCaller,
  type InnerExec,
  noExecutions,
  SiteWindows,
} from "./_inner.ts";

/** The scenario ids. */
export type ScenarioId = "ftrace-transition" | "livepatch-transition" | "static-call-update";

/** Every scenario id, in table order. */
export const SCENARIOS: readonly ScenarioId[] = [
  "ftrace-transition",
  "livepatch-transition",
  "static-call-update",
];

/** Every architecture, in table order. */
export const ARCHES: readonly Arch[] = ["x86-64", "x86-32"];

/** Every fetch mode. */
export const FETCH_MODES: readonly FetchMode[] = ["coherent", "stale", "torn"];

/** Steps a worker may go without finishing an execution before it counts as hung. */
export const HANG_STEPS = 40_000;

/** Options of {@link runExperiment}. */
export interface ExperimentOptions {
  /** The scenario. */
  scenario: ScenarioId;
  /** A named preset (see `PROPOSALS`); or give `push` and `target`. */
  proposal?: string;
  /** Push strategy (overrides the preset's). */
  push?: PushStrategy;
  /** Target strategy (overrides the preset's). */
  target?: TargetStrategy;
  /** Architecture (default x86-64). */
  arch?: Arch;
  /** Instruction-fetch coherency mode (default `torn`). */
  mode?: FetchMode;
  /** CPUs of the machine, the patcher's included (default 4, at least 2). */
  cpus?: number;
  /** Scheduler seed (default 1). */
  seed?: number;
  /** Transitions (full cycles of the scenario; default {@link DEFAULT_TRANSITIONS}). */
  transitions?: number;
  /** Int3 entry to boot instead of the strategy's own (e.g. a gap strategy on `64-nogap`). */
  entry?: EntryVariant;
  /** Record per-CPU timelines. */
  timelines?: boolean;
  /** Patcher steps of quiet between batches (default 120). */
  quiet?: number;
  /** Scheduling-step budget of the whole run (default 20,000,000). */
  maxSteps?: number;
}

/** One execution of a patched site, for timelines. */
export interface ExecutionEvent {
  /** Start step. */
  readonly t0: number;
  /** End step. */
  readonly t1: number;
  /** Index of the function called. */
  readonly fn: number;
  /** The patched site. */
  readonly site: bigint;
  /** What kind of site it is (`caller-call`: a caller trampoline's own call). */
  readonly role: SiteRole;
  /** First call target reached (null: none). */
  readonly target: bigint | null;
  /** Its class. */
  readonly class: ExecutionClass;
  /** Why it crashed, if it did. */
  readonly why?: string;
}

/** The result of one run: a plain record (with the {@link ExecutionCounts}). */
export interface ExperimentRecord extends ExecutionCounts {
  /** Scenario id. */
  scenario: ScenarioId;
  /** Preset id, or `push+target` for an unnamed combination. */
  proposal: string;
  /** Push strategy. */
  push: PushStrategy;
  /** Target strategy. */
  target: TargetStrategy;
  /** Architecture. */
  arch: Arch;
  /** Fetch mode. */
  mode: FetchMode;
  /** CPUs of the machine. */
  cpus: number;
  /** Scheduler seed. */
  seed: number;
  /** False when the combination does not apply (all counts are then 0). */
  applicable: boolean;
  /** Why it does not apply, or how the run ended if not normally. */
  note: string;
  /** The int3 entry the kernel ran with. */
  entry: string;
  /** Transitions performed. */
  transitions: number;
  /** Scheduling steps taken. */
  steps: number;
  /** Per-CPU timelines (workers only), when asked for. */
  timelines?: ExecutionEvent[][];
}

/** Default number of transitions per scenario (enough to show each effect). */
export const DEFAULT_TRANSITIONS: Readonly<Record<ScenarioId, number>> = {
  "ftrace-transition": 60,
  "livepatch-transition": 100,
  "static-call-update": 60,
};

/** Where the patched functions start in their 64-byte lines. */
export const LINE_OFFSETS: readonly number[] = [60, 61, 62, 60, 61, 62, 63, 8];

const ARG_BASE = 0x7e570000n;

/**
 * Does a combination apply to a scenario and architecture?
 *
 * @param scenario Scenario id.
 * @param push Push strategy.
 * @param target Target strategy.
 * @param arch Architecture.
 * @param preset The preset id, if the combination is one.
 * @returns null when it applies, else the reason it does not.
 */
export function notApplicable(
  scenario: ScenarioId,
  push: PushStrategy,
  target: TargetStrategy,
  arch: Arch,
  preset?: string,
): string | null {
  if (preset !== undefined) {
    const p = lookupProposal(preset);
    if (!p.arches.includes(arch)) return `${preset} was proposed for ${p.arches.join(", ")} only`;
  }
  // arch/x86/Kconfig selects HAVE_LIVEPATCH only for X86_64.
  if (scenario === "livepatch-transition" && arch === "x86-32") {
    return "the kernel has no livepatch on x86-32 (HAVE_LIVEPATCH is x86-64 only)";
  }
  if (scenario === "static-call-update" && push !== "none" && target === "fixed-caller") {
    return "no fixed caller exists for a static call (ftrace_regs_caller and Stange's stubs are ftrace's)";
  }
  return null;
}

interface OpenExec {
  fn: number;
  t0: number;
  target: bigint | null;
  probes: number;
  crashed: boolean;
  why: string;
  oldBody: boolean;
  /** The caller trampoline's call site this execution runs through, once entered. */
  inner: InnerExec | null;
}

interface Scenario {
  /** Functions the worker calls, in order. */
  userFns: bigint[];
  /** The patched site each function's execution goes through. */
  siteOf: bigint[];
  /** The kind of each function's site. */
  roleOf: SiteRole[];
  /** The return address a probe must see for function i. */
  retOf: bigint[];
  /** Expected body value for function i given the target reached. */
  expect: (fn: number, target: bigint | null) => bigint;
  /** The patcher's script. */
  script: (
    run: BatchRunner,
    k: KernelContext,
    transitions: number,
  ) => Generator<unknown, void, unknown>;
  /** Livepatch scenario: old body ran = skipped. */
  livepatch: boolean;
}

/**
 * Runs one experiment.
 *
 * @param options Scenario, proposal (or axes), arch, mode, CPUs, seed, transitions.
 * @returns The record.
 * @throws {ExperimentError} For an unknown proposal, scenario, arch or mode, or a bad option.
 * @example The behaviour before the thread misses calls
 * ```ts
 * import { runExperiment } from "@textpoke/textpoke";
 *
 * const r = runExperiment({ scenario: "ftrace-transition", proposal: "nop-skip", seed: 3 });
 * console.log(r.skipped > 0); // true
 * ```
 */
export function runExperiment(options: ExperimentOptions): ExperimentRecord {
  const scenario = options.scenario;
  if (!SCENARIOS.includes(scenario)) {
    throw new ExperimentError(`Unknown scenario "${scenario}"; known: ${SCENARIOS.join(", ")}`);
  }
  const preset = options.proposal === undefined ? undefined : lookupProposal(options.proposal);
  const push = options.push ?? preset?.push;
  const target = options.target ?? preset?.target;
  if (push === undefined || target === undefined) {
    throw new ExperimentError("Give a proposal, or both push and target");
  }
  const arch = options.arch ?? "x86-64";
  if (!ARCHES.includes(arch)) throw new ExperimentError(`Unknown arch "${arch}": x86-64 or x86-32`);
  const mode = options.mode ?? "torn";
  if (!FETCH_MODES.includes(mode)) {
    throw new ExperimentError(`Unknown mode "${mode}": coherent, stale or torn`);
  }
  const cpus = options.cpus ?? 4;
  if (!Number.isInteger(cpus) || cpus < 2 || cpus > 64) {
    throw new ExperimentError(`cpus must be an integer in 2..64, not ${cpus}`);
  }
  const seed = options.seed ?? 1;
  if (!Number.isSafeInteger(seed)) {
    throw new ExperimentError(`seed must be an integer, not ${seed}`);
  }
  const transitions = options.transitions ?? DEFAULT_TRANSITIONS[scenario];
  if (!Number.isInteger(transitions) || transitions < 0) {
    throw new ExperimentError(`transitions must be a non-negative integer, not ${transitions}`);
  }
  const bitness = arch === "x86-64" ? 64 : 32;
  // A preset named by the caller keeps its provenance (and its architectures); the same
  // point reached by naming the axes is labelled by the preset only where it applies.
  let presetId = (preset !== undefined && preset.push === push && preset.target === target)
    ? preset.id
    : presetOf(push, target);
  if (presetId !== undefined && presetId !== preset?.id) {
    if (!lookupProposal(presetId).arches.includes(arch)) presetId = undefined;
  }
  const entry = options.entry ?? defaultEntry(push, bitness, presetId === "text-poke-emulate");
  const record: ExperimentRecord = {
    scenario,
    proposal: presetId ?? `${push}+${target}`,
    push,
    target,
    arch,
    mode,
    cpus,
    seed,
    ...noExecutions(),
    applicable: true,
    note: "",
    entry: push === "link-register" ? "int3_link" : push === "entry-fixup" ? "int3_fixup" : entry,
    transitions: 0,
    steps: 0,
  };
  const na = notApplicable(scenario, push, target, arch, presetId);
  if (na !== null) {
    record.applicable = false;
    record.note = na;
    return record;
  }
  if (!entry.startsWith(bitness === 64 ? "64" : "32")) {
    throw new ExperimentError(`Entry ${entry} is not an ${arch} entry`);
  }
  new Run(record, options, bitness, entry, transitions).go();
  return record;
}

class Run {
  readonly record: ExperimentRecord;
  readonly options: ExperimentOptions;
  readonly bitness: 32 | 64;
  readonly kernel: Kernel;
  readonly smp: Smp;
  readonly handler: ProposalHandler;
  readonly ftrace: Ftrace | null;
  readonly ws: 4 | 8;
  readonly transitions: number;
  readonly open: (OpenExec | null)[];
  readonly lastProgress: number[];
  readonly book: SiteWindows;
  readonly timelines: ExecutionEvent[][] | null;
  readonly canaries: readonly (readonly [string, bigint])[];
  workerEntry = 0n;
  scenario!: Scenario;

  constructor(
    record: ExperimentRecord,
    options: ExperimentOptions,
    bitness: 32 | 64,
    entry: EntryVariant,
    transitions: number,
  ) {
    this.record = record;
    this.options = options;
    this.bitness = bitness;
    this.ws = bitness === 64 ? 8 : 4;
    this.transitions = transitions;
    this.canaries = bitness === 64 ? CANARIES_64 : CANARIES_32;
    this.book = new SiteWindows(bitness);
    const machine = new Machine({ bitness, cpus: record.cpus });
    this.kernel = bootKernel(machine, { entry, textSize: 0x40000 });
    this.smp = attachSmp(machine, { schedule: random(record.seed), fetch: record.mode });
    this.ftrace = record.scenario === "static-call-update" ? null : new Ftrace(this.kernel);
    this.handler = installProposal(this.kernel, {
      push: record.push,
      target: record.target,
      ftrace: this.ftrace,
    });
    this.open = machine.cpus.map(() => null);
    this.lastProgress = machine.cpus.map(() => 0);
    this.timelines = options.timelines === true ? machine.cpus.map(() => []) : null;
  }

  // ---------------------------------------------------------------------------------
  // Building the kernel image

  #bindObservers(): void {
    const k = this.kernel;
    k.bindNative("__mark", (call) => this.#mark(call));
    k.bindNative("__body", (call) => this.#body(call, false));
    if (this.ftrace !== null) {
      this.ftrace.onProbe = (cpu, target, ret) => this.#probe(cpu, target, ret);
      this.ftrace.onCallee = (cpu, callee, ret) =>
        calleeReached(this.open[cpu]?.inner, callee, ret);
    }
  }

  #workerSource(nfns: number): string {
    const lines: string[] = ["worker_entry:"];
    if (this.bitness === 64) {
      for (const [r, v] of this.canaries) lines.push(`\tmovabsq\t$0x${v.toString(16)}, %${r}`);
      lines.push("\tsti", "worker_loop:");
      for (const variant of [0, 1]) {
        if (variant === 1) lines.push("\tsubq\t$8, %rsp");
        for (let i = 0; i < nfns; i++) {
          lines.push(
            `\tmovl\t$${i}, %edi`,
            `\tmovl\t$${variant}, %esi`,
            "\tcall\t__mark",
            `\tmovq\t$${ARG_BASE + BigInt(i)}, %rdi`,
            `\tcall\tuser_fn_${i}`,
          );
        }
        if (variant === 1) lines.push("\taddq\t$8, %rsp");
      }
    } else {
      for (const [r, v] of this.canaries) lines.push(`\tmovl\t$0x${v.toString(16)}, %${r}`);
      lines.push("\tsti", "worker_loop:");
      for (const variant of [0, 1]) {
        if (variant === 1) lines.push("\tsubl\t$4, %esp");
        for (let i = 0; i < nfns; i++) {
          lines.push(
            `\tmovl\t$${i}, %eax`,
            `\tmovl\t$${variant}, %edx`,
            "\tcall\t__mark",
            `\tmovl\t$${ARG_BASE + BigInt(i)}, %eax`,
            `\tcall\tuser_fn_${i}`,
          );
        }
        if (variant === 1) lines.push("\taddl\t$4, %esp");
      }
    }
    lines.push("\tjmp\tworker_loop", "");
    return lines.join("\n");
  }

  #buildFtrace(livepatch: boolean): Scenario {
    const k = this.kernel;
    const ft = this.ftrace!;
    const n = LINE_OFFSETS.length;
    let fns: bigint[];
    let lp: Livepatch | null = null;
    if (livepatch) {
      lp = new Livepatch(ft, "scenario");
      const recs = lp.loadFunctions(LINE_OFFSETS.map((o, i) => ({
        name: `lp_fn_${i}`,
        lineOffset: o,
        onOld: (cpu: number, arg: bigint) => this.#bodyRan(cpu, arg, true),
        onNew: (cpu: number, arg: bigint) => this.#bodyRan(cpu, arg, false),
      })));
      fns = recs.map((r) => r.old);
    } else {
      fns = ft.loadTracedFunctions(
        LINE_OFFSETS.map((o, i) => ({ name: `traced_fn_${i}`, lineOffset: o, body: "__body" })),
      );
    }
    // user_fn_i is the traced function itself.
    k.loadText(this.#workerSource(n), {
      name: "worker",
      symbols: new Map(fns.map((f, i) => [`user_fn_${i}`, f])),
    });
    this.workerEntry = k.symbol("worker_entry");
    ft.init();
    const stopped = immediateRunner(
      (a, b) => k.textPoke(a, b),
      (a, len) => k.mem.readBytes(a, len),
    );
    const filter = fns;
    const scenario: Scenario = {
      userFns: fns,
      siteOf: fns,
      roleOf: fns.map(() => "fentry"),
      retOf: fns.map((f) => f + 5n),
      expect: (fn) => ARG_BASE + BigInt(fn),
      livepatch,
      script: () => (function* () {})(),
    };
    if (lp !== null) {
      for (const _ of lp.enable(stopped));
      const tracer = new FtraceOps("tracer", () => {}, { filter });
      scenario.script = function* (run, k2, transitions) {
        for (let t = 0; t < transitions; t++) {
          yield* ft.registerFtraceFunction(tracer, run);
          yield* quiet(k2);
          yield* ft.unregisterFtraceFunction(tracer, run);
          yield* quiet(k2);
        }
      };
    } else {
      const a = new FtraceOps("A", () => {}, { filter });
      const b = new FtraceOps("B", () => {}, { filter, flags: FTRACE_OPS_FL_SAVE_REGS });
      scenario.script = function* (run, k2, transitions) {
        for (let t = 0; t < transitions; t++) {
          yield* ft.registerFtraceFunction(a, run);
          yield* quiet(k2);
          yield* ft.registerFtraceFunction(b, run);
          yield* quiet(k2);
          yield* ft.unregisterFtraceFunction(b, run);
          yield* quiet(k2);
          yield* ft.unregisterFtraceFunction(a, run);
          yield* quiet(k2);
        }
      };
    }
    const q = this.options.quiet ?? 120;
    function* quiet(k2: KernelContext): Generator<unknown, void, unknown> {
      for (let i = 0; i < q; i++) yield* k2.step();
    }
    for (const s of fns) this.book.setInitial(s, k.mem.readBytes(s, 5));
    for (const c of [ft.caller, ft.regsCaller]) {
      this.book.initial.set(c.callSite, ft.callTarget(c.callSite));
    }
    return scenario;
  }

  #buildStaticCall(): Scenario {
    const k = this.kernel;
    const b64 = this.bitness === 64;
    for (const name of ["sc_func_a", "sc_func_b"]) {
      k.bindNative(`__probe_${name}`, (call) => {
        const sp = call.cpu.getReg(b64 ? "rsp" : "esp");
        const self = k.mem.readWord(sp, this.ws) - 5n;
        const ret = k.mem.readWord(sp + BigInt(this.ws), this.ws);
        this.#probe(call.cpu.index, self, ret);
      });
    }
    const funcs = b64
      ? `
sc_func_a:
	call	__probe_sc_func_a
	leaq	1(%rdi), %rax
	ret
sc_func_b:
	call	__probe_sc_func_b
	leaq	2(%rdi), %rax
	ret
`
      : `
sc_func_a:
	call	__probe_sc_func_a
	leal	1(%eax), %eax
	ret
sc_func_b:
	call	__probe_sc_func_b
	leal	2(%eax), %eax
	ret
`;
    const fl = k.loadText(funcs, { name: "static_call targets" });
    const q = this.options.quiet ?? 120;
    const fa = fl.get("sc_func_a")!;
    const fb = fl.get("sc_func_b")!;
    const sc = new StaticCalls(k);
    const key = sc.defineKey("sc_key", fa, { lineOffset: 61 });
    // Inline users: the site at LINE_OFFSETS[i] in its line; out-of-line users call the
    // trampoline.
    const pre = b64 ? "\tmovq\t%rdi, %rax\n" : "";
    const preLen = b64 ? 3 : 0;
    const post = b64 ? "\tmovq\t%rax, %rdi\n" : "";
    let src = "";
    // x86-32 has no inline static calls (HAVE_STATIC_CALL_INLINE needs objtool, which
    // x86/Kconfig offers for X86_64 only): there every user calls the trampoline.
    const nInline = b64 ? LINE_OFFSETS.length : 0;
    LINE_OFFSETS.slice(0, nInline).forEach((o, i) => {
      const start = (o - preLen + 64) % 64;
      src += `
	.balign	64, 0xcc
	.skip	${start}, 0xcc
user_fn_${i}:
${pre}sc_site_${i}:
	call	sc_func_a
sc_ret_${i}:
${post}	call	__body
	ret
`;
    });
    const nOol = b64 ? 2 : LINE_OFFSETS.length + 2;
    for (let j = 0; j < nOol; j++) {
      const i = nInline + j;
      src += `
	.balign	16, 0xcc
user_fn_${i}:
${pre}	call	__SCT__sc_key
sc_ret_${i}:
${post}	call	__body
	ret
`;
    }
    const n = nInline + nOol;
    const labels = k.loadText(`${src}\n${this.#workerSource(n)}`, { name: "static_call users" });
    this.workerEntry = labels.get("worker_entry")!;
    const userFns: bigint[] = [];
    const siteOf: bigint[] = [];
    const retOf: bigint[] = [];
    for (let i = 0; i < n; i++) {
      userFns.push(labels.get(`user_fn_${i}`)!);
      retOf.push(labels.get(`sc_ret_${i}`)!);
      if (i < nInline) {
        const s = labels.get(`sc_site_${i}`)!;
        sc.addInlineSite(key, s);
        siteOf.push(s);
      } else {
        siteOf.push(key.trampoline);
      }
    }
    for (const s of new Set(siteOf)) {
      this.book.setInitial(s, k.mem.readBytes(s, 5));
    }
    return {
      userFns,
      siteOf,
      roleOf: siteOf.map((_, i) => i < nInline ? "sc-inline" : "sc-trampoline"),
      retOf,
      livepatch: false,
      expect: (fn, target) =>
        ARG_BASE + BigInt(fn) + (target === fa ? 1n : target === fb ? 2n : 0n),
      script: function* (run, k2, transitions) {
        for (let t = 0; t < transitions; t++) {
          for (const f of [fb, null, fa]) {
            yield* sc.staticCallUpdate(key, f, run);
            for (let i = 0; i < q; i++) yield* k2.step();
          }
        }
      },
    };
  }

  // ---------------------------------------------------------------------------------
  // Observation

  #now(): number {
    return this.smp.steps;
  }

  #mark(call: NativeCall): void {
    const cpu = call.cpu.index;
    const fn = Number(call.arg(0));
    const variant = Number(call.arg(1));
    const prev = this.open[cpu];
    if (prev !== null && prev !== undefined) {
      prev.crashed = true;
      prev.why ||= "the function never reached its body";
      this.#close(cpu, prev);
    }
    // The worker's frame must be intact: callee-saved registers and the stack pointer.
    const c = call.cpu;
    const top = this.kernel.taskStackTop(cpu);
    const sp = c.getReg(this.bitness === 64 ? "rsp" : "esp");
    const want = top - BigInt(this.ws) * BigInt(1 + variant);
    let bad = sp !== want ? `stack pointer ${sp.toString(16)} instead of ${want.toString(16)}` : "";
    for (const [r, v] of this.canaries) {
      if (c.getReg(r) !== v) bad ||= `callee-saved ${r} clobbered`;
    }
    // An iret through a clobbered frame loads SS from it: #GP unless the value is a valid
    // SS, and a 64-bit iret to CPL 0 accepts a null one, which only this check catches.
    if (c.ss !== this.kernel.sel.kernelDs) bad ||= `ss is 0x${c.ss.toString(16)} after an iret`;
    if (bad !== "") {
      this.#recrash(cpu, bad);
      this.#restart(call, cpu);
      return;
    }
    this.lastProgress[cpu] = this.#now();
    this.open[cpu] = {
      fn,
      t0: this.#now(),
      target: null,
      probes: 0,
      crashed: false,
      why: "",
      oldBody: false,
      inner: null,
    };
  }

  #probe(cpu: number, target: bigint, ret: bigint): void {
    const e = this.open[cpu];
    if (e === null || e === undefined) return;
    if (e.probes++ > 0) return;
    e.target = target;
    e.inner = enterCaller(this.ftrace, target, this.#now());
    if (ret !== this.scenario.retOf[e.fn]) {
      e.crashed = true;
      e.why = `return address ${ret.toString(16)} instead of ${
        this.scenario.retOf[e.fn]!.toString(16)
      }`;
    }
  }

  #body(call: NativeCall, old: boolean): void {
    this.#bodyRan(call.cpu.index, call.arg(0), old);
  }

  #bodyRan(cpu: number, value: bigint, oldBody: boolean): void {
    const e = this.open[cpu];
    if (e === null || e === undefined) return;
    const c = this.kernel.machine.cpus[cpu]!;
    const sp = c.getReg(this.bitness === 64 ? "rsp" : "esp");
    const top = this.kernel.taskStackTop(cpu);
    const variantSp = [top - BigInt(2 * this.ws), top - BigInt(3 * this.ws)];
    if (!variantSp.includes(sp)) {
      e.crashed = true;
      e.why ||= `body ran with the stack pointer at ${sp.toString(16)}`;
    }
    if (c.ss !== this.kernel.sel.kernelDs) {
      e.crashed = true;
      e.why ||= `ss is 0x${c.ss.toString(16)}: an iret went through a clobbered frame`;
    }
    const want = this.scenario.expect(e.fn, e.target);
    if (BigInt.asUintN(this.bitness, value) !== want) {
      e.crashed = true;
      e.why ||= `body saw ${value.toString(16)} instead of ${want.toString(16)}`;
    }
    if (this.scenario.livepatch && oldBody) e.oldBody = true;
    this.#close(cpu, e);
  }

  #lastClosed: (ExecutionEvent | null)[] = [];

  #close(cpu: number, e: OpenExec): void {
    this.open[cpu] = null;
    const t1 = this.#now();
    this.lastProgress[cpu] = t1;
    if (e.inner !== null) this.#closeInner(cpu, e, e.inner, t1);
    const site = this.scenario.siteOf[e.fn]!;
    const cls = this.book.classify(site, {
      t0: e.t0,
      t1,
      target: e.target,
      crashed: e.crashed,
      oldBodyRan: e.oldBody,
    });
    this.record.executions++;
    this.record[cls]++;
    const role = this.scenario.roleOf[e.fn]!;
    const base = { t0: e.t0, t1, fn: e.fn, site, role, target: e.target, class: cls };
    const ev: ExecutionEvent = e.why !== "" ? { ...base, why: e.why } : base;
    this.#lastClosed[cpu] = ev;
    this.timelines?.[cpu]?.push(ev);
  }

  /** Classifies the execution of a caller's call site nested in `e` (before `e` itself). */
  #closeInner(cpu: number, e: OpenExec, inner: InnerExec, t1: number): void {
    const { class: cls, why } = closeInner(inner, e, t1, this.book, this.record);
    const base = {
      t0: inner.t0,
      t1,
      fn: e.fn,
      site: inner.site,
      role: "caller-call" as const,
      target: inner.callee,
      class: cls,
    };
    this.timelines?.[cpu]?.push(why !== "" ? { ...base, why } : base);
  }

  /** The frame checks at a mark failed: the last execution on this CPU corrupted it. */
  #recrash(cpu: number, why: string): void {
    const ev = recrashLast(this.record, this.#lastClosed[cpu], why, this.timelines?.[cpu]);
    if (ev !== null) this.#lastClosed[cpu] = ev;
  }

  /** The task on `cpu` died (fault, oops, hang): count it and start a fresh one. */
  #kill(cpu: number, why: string, inNative: boolean): void {
    const e = this.open[cpu];
    if (e !== null && e !== undefined) {
      e.crashed = true;
      e.why = why;
      this.#close(cpu, e);
    } else {
      this.#recrash(cpu, why);
    }
    if (!inNative) this.#restartOutside(cpu);
    else this.#pendingRestart.add(cpu);
  }

  #pendingRestart = new Set<number>();

  /** Restart from inside a native: the native's `ret` pops the worker entry. */
  #restart(call: NativeCall, cpu: number): void {
    const c = call.cpu;
    const top = this.kernel.taskStackTop(cpu);
    this.kernel.mem.writeWord(top - BigInt(this.ws), this.ws, this.workerEntry);
    c.setReg(this.bitness === 64 ? "rsp" : "esp", top - BigInt(this.ws));
    c.rflags = BigInt(X86_EFLAGS_IF | 2);
    c.cs = this.kernel.sel.kernelCs;
    c.ss = this.kernel.sel.kernelDs;
    this.#clearPercpu(cpu);
    this.open[cpu] = null;
    this.lastProgress[cpu] = this.#now();
  }

  #restartOutside(cpu: number): void {
    const c = this.kernel.machine.cpus[cpu]!;
    const top = this.kernel.taskStackTop(cpu);
    c.setReg(this.bitness === 64 ? "rsp" : "esp", top);
    c.rflags = BigInt(X86_EFLAGS_IF | 2);
    c.cs = this.kernel.sel.kernelCs;
    c.ss = this.kernel.sel.kernelDs;
    c.rip = this.workerEntry;
    this.#clearPercpu(cpu);
    this.open[cpu] = null;
    this.lastProgress[cpu] = this.#now();
    this.smp.touch();
  }

  #clearPercpu(cpu: number): void {
    const pc = this.handler.percpu[cpu]!;
    this.kernel.mem.writeBytes(pc, new Uint8Array(64));
  }

  // ---------------------------------------------------------------------------------
  // Running

  go(): void {
    const k = this.kernel;
    this.#bindObservers();
    const sc = this.record.scenario;
    this.scenario = sc === "static-call-update" ? this.#buildStaticCall() : this.#buildFtrace(
      sc === "livepatch-transition",
    );
    // Fault natives run on the faulting CPU: restart its task when they return.
    for (const v of [0, 6, 8, 10, 11, 12, 13, 14]) {
      k.bindNative(`exc_${v}`, (call) => {
        const c = call.cpu;
        const sp = c.getReg(this.bitness === 64 ? "rsp" : "esp");
        const withCode = v === 8 || (v >= 10 && v <= 14);
        const ip = k.mem.readWord(sp + (withCode ? BigInt(this.ws) : 0n), this.ws);
        this.#kill(c.index, `exception ${v} at ${ip.toString(16)}`, true);
        this.#pendingRestart.delete(call.cpu.index);
        this.#restart(call, call.cpu.index);
      });
    }
    k.dispatch.onOops = (e) => {
      this.#kill(e.cpu, e.message, true);
    };
    const doInt3 = k.symbols.get("do_int3");
    const doKernelInt3 = k.symbols.get("do_kernel_int3");
    // Wrap the kernel's int3 natives so an oops inside them restarts the task on return.
    for (const [name, at] of [["do_int3", doInt3], ["do_kernel_int3", doKernelInt3]] as const) {
      if (at === undefined) continue;
      const inner = k.machine.natives.get(k.machine.memory.toNumber(at))!.fn;
      k.bindNative(name, (call) => {
        const r = inner(call);
        if (this.#pendingRestart.delete(call.cpu.index)) {
          this.#restart(call, call.cpu.index);
          return undefined;
        }
        return r;
      });
    }
    this.handler.onBatch = (phase, sites) => this.book.onBatch(phase, sites, this.#now());
    for (let c = 1; c < this.record.cpus; c++) this.#restartOutside(c);
    const thread = this.smp.spawn(0, (kc) => {
      const run = this.handler.threadRunner(kc, this.smp);
      // The runner only yields the thread's own KernelYields.
      return this.scenario.script(run, kc, this.transitions) as KernelGen<unknown>;
    });
    const budget = this.options.maxSteps ?? 20_000_000;
    const chunk = 2_000;
    while (!thread.done) {
      const r = this.smp.run(Math.min(chunk, budget - this.smp.steps));
      if (thread.error !== undefined) throw thread.error;
      if (thread.done) break;
      if (r.reason === "budget" && this.smp.steps >= budget) {
        this.record.note = `step budget of ${budget} ran out`;
        break;
      }
      if (r.reason !== "budget") {
        this.record.note = `${r.reason}: ${r.message}`;
        break;
      }
      const now = this.#now();
      for (let c = 1; c < this.record.cpus; c++) {
        if (now - this.lastProgress[c]! > HANG_STEPS) this.#kill(c, "hung", false);
      }
    }
    this.record.steps = this.smp.steps;
    this.record.transitions = this.transitions;
    if (this.timelines !== null) this.record.timelines = this.timelines.slice(1);
  }
}
