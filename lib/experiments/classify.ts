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
