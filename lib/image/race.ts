/**
 * The proposals' race on a real kernel's own straddling sites: the `ftrace-transition`
 * scenario of `lib/experiments/` (Rostedt, seed 004: ops A with its own trampoline and ops
 * B wanting regs on the same functions; each transition is NOP5 → A's trampoline →
 * `ftrace_regs_caller` → A's trampoline → NOP5), but the patched sites are the image's
 * fentry sites whose rel32 straddles a 64-byte line, at their own addresses and line
 * offsets, with their own bytes.
 *
 * What is real and what is not: the 5 bytes of each site, its address and cache line are
 * the image's; the function body after the site is replaced by an observer native bound
 * at `site + 5` (the real bodies touch per-CPU data and locks the machine does not have),
 * exactly as the model harness makes every body a native. Workers on CPUs 1.. call the
 * sites in a loop; each execution is classified with `classifyExecution`.
 *
 * The caller trampolines' own call sites (`ftrace_call` / `ftrace_regs_call`, rewritten by
 * `ftrace_update_ftrace_func`) are patched sites too: an execution that enters
 * `ftrace_caller` or `ftrace_regs_caller` also executes one, and it is classified as the
 * model harness classifies it (see `lib/experiments/_inner.ts`): a second execution,
 * counted in the totals and nested in the first on its CPU's timeline (`role:
 * "caller-call"`), by the first tracer function it reached.
 *
 * @module
 */

import { ExperimentError, hexAddr } from "../errors.ts";
import { FTRACE_OPS_FL_SAVE_REGS, FtraceOps } from "../ftrace/ops.ts";
import { rel32Straddles } from "../ftrace/trampolines.ts";
import { X86_EFLAGS_IF } from "../kernel/constants.ts";
import type { NativeCall } from "../machine/native.ts";
import type { FetchMode, KernelGen } from "../machine/smp.ts";
import { defaultEntry, installProposal } from "../proposals/handler.ts";
import { proposal as lookupProposal } from "../proposals/proposals.ts";
import { type ExecutionClass, type ExecutionCounts, recrashLast } from "../experiments/classify.ts";
import {
  calleeReached,
  closeInner,
  enterCaller,
  type InnerExec,
  noExecutions,
  SiteWindows,
} from "../experiments/_inner.ts";
import type { KernelImage } from "./image.ts";
import { bootRealKernel, ftraceBoot } from "./real_kernel.ts";
import type { TextWalk } from "./walk.ts";
import { CANARIES_64 } from "../experiments/_canaries.ts";

/** Options of {@link realKernelRace}. */
export interface RealRaceOptions {
  /** A preset id of `lib/proposals` (`gap-plain-offset`, `text-poke-emulate`, …). */
  proposal: string;
  /** At most this many straddling sites (default: every one in `.text`). */
  sites?: number;
  /** Transitions (full NOP5 → A → regs caller → A → NOP5 cycles; default 20). */
  transitions?: number;
  /** CPUs, the patcher's included (default 4). */
  cpus?: number;
  /** Scheduler seed (default 1). */
  seed?: number;
  /** Instruction-fetch mode (default `torn`). */
  mode?: FetchMode;
  /** Patcher steps of quiet between batches (default 120). */
  quiet?: number;
  /** Scheduling-step budget (default 20,000,000). */
  maxSteps?: number;
  /** Record per-CPU timelines. */
  timelines?: boolean;
}

/** One execution of a site, for timelines. */
export interface RealRaceEvent {
  /** Start step. */
  readonly t0: number;
  /** End step. */
  readonly t1: number;
  /**
   * Index of the fentry site (in {@link RealRaceRecord.sites}) whose execution this is, or,
   * for a `caller-call` execution, that it is nested in.
   */
  readonly site: number;
  /** `fentry`: the straddling site; `caller-call`: a caller trampoline's own call site. */
  readonly role: "fentry" | "caller-call";
  /** Link address of the site executed (the fentry site, or `ftrace_call` / `ftrace_regs_call`). */
  readonly address: string;
  /** Its class. */
  readonly class: ExecutionClass;
  /** Why it crashed. */
  readonly why?: string;
}

/** The result of {@link realKernelRace} (with the {@link ExecutionCounts}). */
export interface RealRaceRecord extends ExecutionCounts {
  /** Preset id. */
  readonly proposal: string;
  /** Push strategy. */
  readonly push: string;
  /** Target strategy. */
  readonly target: string;
  /** The int3 entry booted. */
  readonly entry: string;
  /** Fetch mode. */
  readonly mode: FetchMode;
  /** CPUs. */
  readonly cpus: number;
  /** Seed. */
  readonly seed: number;
  /** The sites: link address, `function+off`, offset in the 64-byte line. */
  readonly sites: readonly {
    readonly address: string;
    readonly where: string;
    readonly lineOffset: number;
  }[];
  /** Transitions performed. */
  transitions: number;
  /** Scheduling steps. */
  steps: number;
  /** How the run ended, if not normally. */
  note: string;
  /** Wall time, ms. */
  ms: number;
  /** Per-CPU timelines of CPUs 1.., when asked for. */
  timelines?: RealRaceEvent[][];
}

const HANG_STEPS = 40_000;

interface Open {
  site: number;
  t0: number;
  target: bigint | null;
  probes: number;
  crashed: boolean;
  why: string;
  /** The caller trampoline's call site this execution runs through, once entered. */
  inner: InnerExec | null;
}

/**
 * Runs one proposal's race on a real image's straddling fentry sites.
 *
 * @param image The loaded image.
 * @param walk A walk of its `.text`.
 * @param options The proposal and the machine.
 * @returns Counts per class (and timelines when asked).
 * @throws {ExperimentError} For an unknown proposal, fewer than 2 CPUs (CPU 0 patches,
 *   the others run the sites), or a negative or fractional `transitions` / `sites`.
 * @example
 * ```ts ignore
 * const r = realKernelRace(img, walkText(img), { proposal: "gap-plain-offset" });
 * console.log(r.old, r.new, r.other, r.crashed);
 * ```
 */
export function realKernelRace(
  image: KernelImage,
  walk: TextWalk,
  options: RealRaceOptions,
): RealRaceRecord {
  const t0 = performance.now();
  const cpus = options.cpus ?? 4;
  if (!Number.isInteger(cpus) || cpus < 2) {
    throw new ExperimentError(
      `realKernelRace: cpus is ${cpus}; it needs at least 2 (CPU 0 patches, CPUs 1.. run the sites)`,
    );
  }
  for (const key of ["transitions", "sites"] as const) {
    const v = options[key];
    if (v !== undefined && (!Number.isInteger(v) || v < 0)) {
      throw new ExperimentError(
        `realKernelRace: ${key} is ${v}; it must be a whole number, 0 or more`,
      );
    }
  }
  const p = lookupProposal(options.proposal);
  const seed = options.seed ?? 1;
  const mode = options.mode ?? "torn";
  const entry = defaultEntry(p.push, 64) as "64-gap" | "64-nogap";
  const rk = bootRealKernel(image, walk, { cpus, seed, fetch: mode, entry });
  ftraceBoot(rk);
  const { kernel: k, smp, ftrace, machine } = rk;
  const handler = installProposal(k, { push: p.push, target: p.target, ftrace });
  const all = ftrace.sites.filter((s) => rel32Straddles(s));
  const sites = all.slice(0, options.sites ?? all.length);
  // Only the raced sites stay ftrace records: every update plans over all records, and
  // the other ~35,600 would only be read and left alone.
  ftrace.sites.length = 0;
  ftrace.sites.push(...sites);
  const rec: RealRaceRecord = {
    proposal: p.id,
    push: p.push,
    target: p.target,
    entry,
    mode,
    cpus,
    seed,
    sites: sites.map((s) => ({
      address: hexAddr(s),
      where: image.describe(s),
      lineOffset: Number(s & 63n),
    })),
    transitions: 0,
    ...noExecutions(),
    steps: 0,
    note: "",
    ms: 0,
  };
  if (sites.length === 0) {
    rec.note = all.length === 0
      ? "the image has no fentry site whose rel32 straddles a line"
      : `sites is 0: none of the image's ${all.length} straddling fentry sites was raced`;
    rec.ms = performance.now() - t0;
    return rec;
  }
  const timelines: RealRaceEvent[][] | null = options.timelines
    ? Array.from({ length: cpus }, () => [])
    : null;
  const book = new SiteWindows(64);
  for (const s of sites) book.setInitial(s, k.mem.readBytes(s, 5));
  for (const c of [ftrace.caller, ftrace.regsCaller]) {
    book.initial.set(c.callSite, ftrace.callTarget(c.callSite));
  }
  const open: (Open | null)[] = new Array(cpus).fill(null);
  const lastClosed: (RealRaceEvent | null)[] = new Array(cpus).fill(null);
  const lastProgress: number[] = new Array(cpus).fill(0);
  const pendingRestart = new Set<number>();
  const now = () => smp.steps;

  // Workers: canaries in the callee-saved registers, then mark + call, site after site.
  const canarySrc = CANARIES_64.map(([r, v]) => `\tmovabs $${hexAddr(v)}, %${r}\n`).join("");
  k.bindNative("__race_mark", (call) => mark(call));
  const calls = sites.map((s, i) => `\tmov $${i}, %edi\n\tcall __race_mark\n\tcall ${hexAddr(s)}\n`)
    .join("");
  const labels = k.loadText(
    `race_worker:\n${canarySrc}race_loop:\n${calls}\tjmp race_loop\n`,
    { name: "real race workers" },
  );
  const workerEntry = labels.get("race_worker")!;
  sites.forEach((s, i) => {
    machine.bindNative(s + 5n, (call) => body(call, i), `race_body_${i}`);
  });

  const close = (cpu: number, e: Open): void => {
    open[cpu] = null;
    const t1 = now();
    lastProgress[cpu] = t1;
    // The nested call-site execution first, as the model harness does.
    if (e.inner !== null) {
      const inner = closeInner(e.inner, e, t1, book, rec);
      const base = {
        t0: e.inner.t0,
        t1,
        site: e.site,
        role: "caller-call" as const,
        address: hexAddr(e.inner.site),
        class: inner.class,
      };
      timelines?.[cpu]?.push(inner.why !== "" ? { ...base, why: inner.why } : base);
    }
    const address = sites[e.site]!;
    const cls = book.classify(address, {
      t0: e.t0,
      t1,
      target: e.target,
      crashed: e.crashed,
      oldBodyRan: false,
    });
    rec.executions++;
    rec[cls]++;
    const base = {
      t0: e.t0,
      t1,
      site: e.site,
      role: "fentry" as const,
      address: hexAddr(address),
      class: cls,
    };
    const ev: RealRaceEvent = e.why !== "" ? { ...base, why: e.why } : base;
    lastClosed[cpu] = ev;
    timelines?.[cpu]?.push(ev);
  };
  const recrash = (cpu: number, why: string): void => {
    const ev = recrashLast(rec, lastClosed[cpu], why, timelines?.[cpu]);
    if (ev !== null) lastClosed[cpu] = ev;
  };
  const clearPercpu = (cpu: number) => {
    k.mem.writeBytes(handler.percpu[cpu]!, new Uint8Array(64));
  };
  // From inside a native: its `ret` pops the worker entry.
  const restart = (call: NativeCall, cpu: number): void => {
    const c = call.cpu;
    const top = k.taskStackTop(cpu);
    k.mem.writeWord(top - 8n, 8, workerEntry);
    c.setReg("rsp", top - 8n);
    c.rflags = BigInt(X86_EFLAGS_IF | 2);
    c.cs = k.sel.kernelCs;
    c.ss = k.sel.kernelDs;
    clearPercpu(cpu);
    open[cpu] = null;
    lastProgress[cpu] = now();
  };
  const restartOutside = (cpu: number): void => {
    const c = machine.cpus[cpu]!;
    c.setReg("rsp", k.taskStackTop(cpu));
    c.rflags = BigInt(X86_EFLAGS_IF | 2);
    c.cs = k.sel.kernelCs;
    c.ss = k.sel.kernelDs;
    c.rip = workerEntry;
    clearPercpu(cpu);
    open[cpu] = null;
    lastProgress[cpu] = now();
    smp.touch();
  };
  const kill = (cpu: number, why: string, inNative: boolean): void => {
    const e = open[cpu];
    if (e !== null && e !== undefined) {
      e.crashed = true;
      e.why = why;
      close(cpu, e);
    } else recrash(cpu, why);
    if (!inNative) restartOutside(cpu);
    else pendingRestart.add(cpu);
  };
  function mark(call: NativeCall): void {
    const cpu = call.cpu.index;
    const prev = open[cpu];
    if (prev !== null && prev !== undefined) {
      prev.crashed = true;
      prev.why ||= "the site never reached its body";
      close(cpu, prev);
    }
    const c = call.cpu;
    const want = k.taskStackTop(cpu) - 8n;
    const sp = c.getReg("rsp");
    let bad = sp !== want ? `stack pointer ${hexAddr(sp)} instead of ${hexAddr(want)}` : "";
    for (const [r, v] of CANARIES_64) {
      if (c.getReg(r) !== v) bad ||= `callee-saved ${r} clobbered`;
    }
    if (c.ss !== k.sel.kernelDs) bad ||= `ss is 0x${c.ss.toString(16)} after an iret`;
    if (bad !== "") {
      recrash(cpu, bad);
      restart(call, cpu);
      return;
    }
    lastProgress[cpu] = now();
    open[cpu] = {
      site: Number(call.arg(0)),
      t0: now(),
      target: null,
      probes: 0,
      crashed: false,
      why: "",
      inner: null,
    };
  }
  function body(call: NativeCall, i: number): void {
    const cpu = call.cpu.index;
    const e = open[cpu];
    if (e === null || e === undefined) return;
    if (e.site !== i) {
      e.crashed = true;
      e.why ||= `body of site ${i} ran for site ${e.site}`;
    }
    const sp = call.cpu.getReg("rsp");
    const want = k.taskStackTop(cpu) - 8n;
    if (sp !== want) {
      e.crashed = true;
      e.why ||= `body ran with the stack pointer at ${hexAddr(sp)}`;
    }
    if (call.cpu.ss !== k.sel.kernelDs) {
      e.crashed = true;
      e.why ||= `ss is 0x${call.cpu.ss.toString(16)}: an iret went through a clobbered frame`;
    }
    close(cpu, e);
  }
  ftrace.onProbe = (cpu, target, ret) => {
    const e = open[cpu];
    if (e === null || e === undefined) return;
    if (e.probes++ > 0) return;
    e.target = target;
    e.inner = enterCaller(ftrace, target, now());
    const want = sites[e.site]! + 5n;
    if (ret !== want) {
      e.crashed = true;
      e.why = `return address ${hexAddr(ret)} instead of ${hexAddr(want)}`;
    }
  };
  ftrace.onCallee = (cpu, callee, ret) => calleeReached(open[cpu]?.inner, callee, ret);
  for (const v of [0, 6, 8, 10, 11, 12, 13, 14]) {
    k.bindNative(`exc_${v}`, (call) => {
      const c = call.cpu;
      const sp = c.getReg("rsp");
      const withCode = v === 8 || (v >= 10 && v <= 14);
      const ip = k.mem.readWord(sp + (withCode ? 8n : 0n), 8);
      kill(c.index, `exception ${v} at ${hexAddr(ip)}`, true);
      pendingRestart.delete(c.index);
      restart(call, c.index);
    });
  }
  k.dispatch.onOops = (e) => kill(e.cpu, e.message, true);
  for (const name of ["do_int3", "do_kernel_int3"]) {
    const at = k.symbols.get(name);
    if (at === undefined) continue;
    const inner = machine.natives.get(machine.memory.toNumber(at))!.fn;
    k.bindNative(name, (call) => {
      const r = inner(call);
      if (pendingRestart.delete(call.cpu.index)) {
        restart(call, call.cpu.index);
        return undefined;
      }
      return r;
    });
  }
  handler.onBatch = (phase, batch) => book.onBatch(phase, batch, now());
  for (let c = 1; c < cpus; c++) restartOutside(c);

  const opsA = new FtraceOps("race_a", () => {}, { filter: sites });
  const opsB = new FtraceOps("race_b", () => {}, { filter: sites, flags: FTRACE_OPS_FL_SAVE_REGS });
  const transitions = options.transitions ?? 20;
  const quiet = options.quiet ?? 120;
  const thread = smp.spawn(0, function* (kc): KernelGen {
    const run = handler.threadRunner(kc, smp);
    const q = function* () {
      for (let i = 0; i < quiet; i++) yield* kc.step();
    };
    for (let t = 0; t < transitions; t++) {
      yield* ftrace.registerFtraceFunction(opsA, run) as KernelGen;
      yield* q();
      yield* ftrace.registerFtraceFunction(opsB, run) as KernelGen;
      yield* q();
      yield* ftrace.unregisterFtraceFunction(opsB, run) as KernelGen;
      yield* q();
      yield* ftrace.unregisterFtraceFunction(opsA, run) as KernelGen;
      yield* q();
      rec.transitions++;
    }
  });
  const budget = options.maxSteps ?? 20_000_000;
  while (!thread.done) {
    const r = smp.run(Math.min(2_000, budget - smp.steps));
    if (thread.done) break;
    if (r.reason === "budget" && smp.steps >= budget) {
      rec.note = `step budget of ${budget} ran out`;
      break;
    }
    if (r.reason !== "budget") {
      rec.note = `${r.reason}: ${r.message}`;
      break;
    }
    const t = now();
    for (let c = 1; c < cpus; c++) {
      if (t - lastProgress[c]! > HANG_STEPS) kill(c, "hung", false);
    }
  }
  if (thread.error !== undefined && thread.error !== null && rec.note === "") {
    rec.note = `patcher thread: ${String(thread.error)}`;
  }
  if (transitions === 0 && rec.note === "") {
    rec.note = "transitions is 0: the sites were never patched";
  }
  rec.steps = smp.steps;
  rec.ms = performance.now() - t0;
  if (timelines !== null) rec.timelines = timelines.slice(1);
  return rec;
}
