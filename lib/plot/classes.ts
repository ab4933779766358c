/**
 * The execution classes the figures colour, and the record shapes the figures read,
 * declared structurally so the plot entry point documents everything it accepts (an
 * `ExperimentRecord` from the core satisfies them).
 *
 * @module
 */

import { EXECUTION_CLASSES, type ExecutionClass } from "../experiments/classify.ts";

export type { ExecutionClass };

/** What one execution of a patched site did (the experiments' {@link ExecutionClass}). */
export type OutcomeClass = ExecutionClass;

/** Every class, in the order bars stack and legends list them (the experiments' order). */
export const OUTCOME_CLASSES: readonly OutcomeClass[] = EXECUTION_CLASSES;

/** The colour of each class (shared by timelines and bars). */
export const CLASS_COLORS: Readonly<Record<OutcomeClass, string>> = {
  old: "#6baed6",
  new: "#31a354",
  skipped: "#fd8d3c",
  other: "#9e58c6",
  crashed: "#de2d26",
};

/** The counts of one experiment run that the bars draw (an `ExperimentRecord` fits). */
export interface OutcomeRecord {
  /** Proposal id. */
  readonly proposal: string;
  /** Scenario id. */
  readonly scenario: string;
  /** Architecture. */
  readonly arch: string;
  /** Fetch mode. */
  readonly mode: string;
  /** False when the combination does not apply. */
  readonly applicable: boolean;
  /** Executions observed. */
  readonly executions: number;
  /** Executions that behaved as the old instruction. */
  readonly old: number;
  /** … as the new instruction. */
  readonly new: number;
  /** … skipped a call. */
  readonly skipped: number;
  /** … called a third target. */
  readonly other: number;
  /** … crashed. */
  readonly crashed: number;
}

/** One execution on a timeline (an experiment's `ExecutionEvent` fits). */
export interface TimelineExecution {
  /** Start step. */
  readonly t0: number;
  /** End step. */
  readonly t1: number;
  /** Its class. */
  readonly class: OutcomeClass;
}

/** A run with per-CPU timelines (an `ExperimentRecord` run with `timelines: true` fits). */
export interface TimelineRecord {
  /** Proposal id. */
  readonly proposal: string;
  /** Scenario id. */
  readonly scenario: string;
  /** One list per worker CPU (CPU 1 first). */
  readonly timelines?: readonly (readonly TimelineExecution[])[];
}
