/**
 * How an execution of a patched site is classified, given the site's transition windows
 * and what the execution was seen doing. Pure functions, no machine.
 *
 * An execution spans from the moment its CPU was about to run the site's function (`t0`)
 * to the moment the function's body ran or the CPU's task died (`t1`), in scheduling
 * steps. The instructions it may legitimately behave as are those of every transition
 * window overlapping `[t0, t1]` (old and new), or, outside any window, the instruction the
 * site held then. Then:
 *
 * - `crashed`: a fault, an oops, a hang, or a corrupted frame (a clobbered register, a
 *   wrong return address, a stack pointer off by a word) during the execution;
 * - `skipped`: for livepatch, the old, unpatched body ran; otherwise no call happened
 *   although both the old and the new instruction make one;
 * - `old` / `new`: the call reached exactly the target the old / new instruction names
 *   (or no call, when that instruction is a NOP or ret);
 * - `other`: a call reached a target neither instruction names.
 *
 * @module
 */

/** The classes of an execution. */
export type ExecutionClass = "old" | "new" | "skipped" | "other" | "crashed";

/** Every class, in table order. */
export const EXECUTION_CLASSES: readonly ExecutionClass[] = [
  "old",
  "new",
  "skipped",
  "other",
  "crashed",
];

/** One transition of one site: from `oldTarget` to `newTarget` between two steps. */
export interface TransitionWindow {
  /** Step of the batch's first store. */
  readonly t0: number;
  /** Step after the batch's last sync (Infinity while in flight). */
  t1: number;
  /** Target the old instruction names (null: it makes no call). */
  readonly oldTarget: bigint | null;
  /** Target the new instruction names (null: it makes no call). */
  readonly newTarget: bigint | null;
}

/** What one execution was seen doing. */
export interface Observation {
  /** Start step. */
  readonly t0: number;
  /** End step. */
  readonly t1: number;
  /** The first call target reached (null: none). */
  readonly target: bigint | null;
  /** The task died or a frame was corrupted. */
  readonly crashed: boolean;
  /** For livepatch: the old, unpatched body ran. */
  readonly oldBodyRan: boolean;
}

/**
 * Classifies one execution.
 *
 * @param obs What it did.
 * @param windows The site's windows, oldest first.
 * @param initialTarget The target the site named before any window.
 * @returns Its class.
 * @example
 * ```ts
 * import { classifyExecution } from "@textpoke/textpoke";
 *
 * const w = [{ t0: 10, t1: 50, oldTarget: 0x100n, newTarget: 0x200n }];
 * const obs = { t0: 20, t1: 30, target: null, crashed: false, oldBodyRan: false };
 * console.log(classifyExecution(obs, w, 0x100n)); // skipped
 * ```
 */
export function classifyExecution(
  obs: Observation,
  windows: readonly TransitionWindow[],
  initialTarget: bigint | null,
): ExecutionClass {
  if (obs.crashed) return "crashed";
  if (obs.oldBodyRan) return "skipped";
  const olds: (bigint | null)[] = [];
  const news: (bigint | null)[] = [];
  let current = initialTarget;
  let changed = false;
  for (const w of windows) {
    if (w.t0 > obs.t1) break;
    if (w.t1 < obs.t0) {
      current = w.newTarget;
      changed = true;
      continue;
    }
    olds.push(w.oldTarget);
    news.push(w.newTarget);
  }
  if (olds.length === 0) {
    if (obs.target === current) return changed ? "new" : "old";
    return obs.target === null ? "skipped" : "other";
  }
  if (olds.includes(obs.target)) return "old";
  if (news.includes(obs.target)) return "new";
  return obs.target === null ? "skipped" : "other";
}

/** How many executions were observed, and how many ended in each class. */
export interface ExecutionCounts {
  /** Executions of patched sites observed. */
  executions: number;
  /** Executions that behaved as the old instruction. */
  old: number;
  /** Executions that behaved as the new instruction. */
  new: number;
  /** Executions where a call both instructions make did not happen. */
  skipped: number;
  /** Executions that called a target neither instruction names. */
  other: number;
  /** Executions that faulted, oopsed, hung or corrupted a frame. */
  crashed: number;
}

/**
 * Re-labels a CPU's last closed execution as `crashed`: a check at the start of the next
 * one (a clobbered callee-saved register, a wrong stack pointer, a fault between two
 * executions) shows that the last one corrupted the worker's frame although its body ran.
 * Moves its count from its class to `crashed`, and replaces it in the CPU's timeline
 * when it is still the timeline's last event.
 *
 * @param counts The run's counts, updated in place.
 * @param last The CPU's last closed execution, if any.
 * @param why What the check found.
 * @param timeline The CPU's timeline, when one is recorded.
 * @returns The re-labelled event, or null when there was none or it was already `crashed`.
 * @example
 * ```ts
 * import { recrashLast } from "@textpoke/textpoke";
 *
 * const counts = { executions: 1, old: 1, new: 0, skipped: 0, other: 0, crashed: 0 };
 * const ev = recrashLast(counts, { class: "old" as const }, "rbx clobbered", undefined);
 * console.log(ev?.class, counts.old, counts.crashed); // crashed 0 1
 * ```
 */
export function recrashLast<E extends { readonly class: ExecutionClass; readonly why?: string }>(
  counts: ExecutionCounts,
  last: E | null | undefined,
  why: string,
  timeline: E[] | undefined,
): E | null {
  if (last === null || last === undefined || last.class === "crashed") return null;
  counts[last.class]--;
  counts.crashed++;
  const ev: E = { ...last, class: "crashed", why };
  const end = timeline === undefined ? -1 : timeline.length - 1;
  if (end >= 0 && timeline![end] === last) timeline![end] = ev;
  return ev;
}
