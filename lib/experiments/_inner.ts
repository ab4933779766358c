/**
 * What the race harnesses share about observing patched sites: the transition windows the
 * patcher's batches open and close per site (with each site's target before any), and the
 * nested execution of a caller trampoline's own call site (`ftrace_call` /
 * `ftrace_regs_call`).
 *
 * An execution that enters `ftrace_caller` or `ftrace_regs_caller` also executes the
 * trampoline's call site, which `ftrace_update_ftrace_func` rewrites: it is a second
 * execution, nested in the first, from the trampoline's probe to the first execution's
 * end, classified by the first tracer function it reached (`ftrace_ops_list_func`, an
 * ops' callback or `ftrace_stub`, each reporting its return address, which must be the
 * call site's next ip). It is `crashed` when that return address is wrong or the task
 * died before any was reached. Used by the model race (`lib/experiments/experiment.ts`)
 * and the real-kernel race (`lib/image/race.ts`).
 *
 * @module
 */

import { type PatchSite, rel32Target } from "../ftrace/batch.ts";
import type { Ftrace } from "../ftrace/ftrace.ts";
import {
  classifyExecution,
  type ExecutionClass,
  type ExecutionCounts,
  type Observation,
  type TransitionWindow,
} from "./classify.ts";

/** Counts before any execution: every class at 0 (a record's starting counts). */
export function noExecutions(): ExecutionCounts {
  return { executions: 0, old: 0, new: 0, skipped: 0, other: 0, crashed: 0 };
}

/** The execution of a caller trampoline's call site, nested in an execution that entered it. */
export interface InnerExec {
  /** The call site (`ftrace_call` or `ftrace_regs_call`). */
  readonly site: bigint;
  /** Step the trampoline was entered. */
  readonly t0: number;
  /** The first tracer function reached (null: none yet). */
  callee: bigint | null;
  /** The callee saw a wrong return address. */
  crashed: boolean;
  /** Why it crashed. */
  why: string;
}

/** Every patched site's transition windows and the target it named before any. */
export class SiteWindows {
  /** The windows of each site, oldest first. */
  readonly windows: Map<bigint, TransitionWindow[]> = new Map();
  /** The target each site named before its first window (absent: null, no call). */
  readonly initial: Map<bigint, bigint | null> = new Map();
  readonly #bitness: 32 | 64;
  #open: TransitionWindow[] = [];

  /**
   * An empty book.
   *
   * @param bitness How the sites' rel32s are read.
   */
  constructor(bitness: 32 | 64) {
    this.#bitness = bitness;
  }

  /**
   * Records a site's target now, as the one it names before any window.
   *
   * @param site The site.
   * @param bytes Its 5 bytes now.
   */
  setInitial(site: bigint, bytes: Uint8Array): void {
    this.initial.set(site, rel32Target(site, bytes, this.#bitness));
  }

  /**
   * The patcher's batch hook: `begin` opens a window per site (until further notice),
   * `end` closes the batch's windows.
   *
   * @param phase Begin or end of the batch.
   * @param sites The batch's sites (at `begin`).
   * @param now The current step.
   */
  onBatch(phase: "begin" | "end", sites: readonly PatchSite[], now: number): void {
    if (phase === "begin") {
      this.#open = [];
      for (const s of sites) {
        const w: TransitionWindow = {
          t0: now,
          t1: Infinity,
          oldTarget: rel32Target(s.address, s.old, this.#bitness),
          newTarget: rel32Target(s.address, s.new, this.#bitness),
        };
        let list = this.windows.get(s.address);
        if (list === undefined) this.windows.set(s.address, list = []);
        list.push(w);
        this.#open.push(w);
      }
      return;
    }
    for (const w of this.#open) w.t1 = now;
    this.#open = [];
  }

  /**
   * Classifies one execution of a site against its windows.
   *
   * @param site The site.
   * @param obs What the execution did.
   * @returns Its class.
   */
  classify(site: bigint, obs: Observation): ExecutionClass {
    return classifyExecution(obs, this.windows.get(site) ?? [], this.initial.get(site) ?? null);
  }
}

/**
 * The first probe of an execution saw `target`: when it is one of the caller trampolines,
 * the execution of its call site starts.
 *
 * @param ft ftrace (null: no caller trampolines).
 * @param target The trampoline (or function) entered.
 * @param t0 The current step.
 * @returns The nested execution, or null when `target` is no caller trampoline.
 */
export function enterCaller(ft: Ftrace | null, target: bigint, t0: number): InnerExec | null {
  if (ft === null || (target !== ft.regsCaller.address && target !== ft.caller.address)) {
    return null;
  }
  const site = target === ft.regsCaller.address ? ft.regsCaller.callSite : ft.caller.callSite;
  return { site, t0, callee: null, crashed: false, why: "" };
}

/**
 * A tracer function was entered: the callee of the call site, if it is the first one,
 * which must see the call site's next ip as its return address.
 *
 * @param inner The CPU's open nested execution, if any.
 * @param callee The function entered.
 * @param ret The return address it saw.
 */
export function calleeReached(
  inner: InnerExec | null | undefined,
  callee: bigint,
  ret: bigint,
): void {
  if (inner === null || inner === undefined || inner.callee !== null) return;
  inner.callee = callee;
  if (ret !== inner.site + 5n) {
    inner.crashed = true;
    inner.why = `return address ${ret.toString(16)} instead of ${(inner.site + 5n).toString(16)}`;
  }
}

/**
 * Classifies a nested call-site execution when the execution it is nested in closes
 * (before that one), and counts it.
 *
 * @param inner The nested execution.
 * @param outer The execution it is nested in: whether it crashed, and why.
 * @param t1 The current step.
 * @param book The windows.
 * @param counts The run's counts, updated in place.
 * @returns Its class, and why it crashed ("" if it did not).
 */
export function closeInner(
  inner: InnerExec,
  outer: { readonly crashed: boolean; readonly why: string },
  t1: number,
  book: SiteWindows,
  counts: ExecutionCounts,
): { readonly class: ExecutionClass; readonly why: string } {
  // A task that died after the callee ran is the outer execution's failure, not this one's.
  const died = outer.crashed && inner.callee === null;
  const crashed = inner.crashed || died;
  const cls = book.classify(inner.site, {
    t0: inner.t0,
    t1,
    target: inner.callee,
    crashed,
    oldBodyRan: false,
  });
  counts.executions++;
  counts[cls]++;
  return { class: cls, why: inner.why !== "" ? inner.why : died ? outer.why : "" };
}
