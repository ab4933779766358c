/**
 * Every proposal of the 2019 thread ("x86: Allow breakpoints to emulate call functions"),
 * as a point on two axes, and the named presets the CLI, notebooks and tests use.
 *
 * The thread mixes two questions; the model keeps them apart so that every combination
 * can run on the same machine:
 *
 * - **push** — how the int3 handler makes a call happen in the interrupted context:
 *   - `none`: jump over the site (the behaviour before the thread; Rostedt, seed 004).
 *   - `stub`: iret to a stub that pushes the return address and jumps (Nicolai Stange's
 *     patch, quoted by Zijlstra on 27 Apr 2019 in seed 004).
 *   - `link-register`: a slot next to pt_regs that the return path turns into a push
 *     (Steven Rostedt, seed 004, early May 2019: "add another slot to pt_regs, call it
 *     link register").
 *   - `entry-fixup`: the handler only records the word to push; the entry's exit path
 *     moves the iret frame down and stores it (Andy Lutomirski's earlier idea, quoted in
 *     seed 000, 3 May 2019: "the version where the entry code fixes it up").
 *   - `gap`: the handler pushes into the gap the entry left (seed 001, Torvalds,
 *     4 May 2019; 64-bit `create_gap`, 32-bit pt_regs move or v5.3 FIXUP_FRAME).
 * - **target** — which call it emulates:
 *   - `fixed-caller`: `ftrace_regs_caller` at fentry sites; at the trampolines' own call
 *     sites the seed's `ftrace_update_func_call` (a jump over the site while it is 0), or
 *     `ftrace_ops_list_func` with Stange's stubs (the RFC in seed 001; Stange's two stubs);
 *   - `saved-target`: the one target being written, saved by the writer (Torvalds,
 *     6 May 2019 18:13, seed 002);
 *   - `atomic-offset`: the rel32 read with one locked cycle, the writer storing it with
 *     `xchg` (Torvalds, 6 May 2019 22:23, seed 003);
 *   - `plain-offset`: the same with plain loads and stores (the control);
 *   - `emulate-new`: the handler emulates the instruction being written (what landed in
 *     ~v5.5, c3d6324f841b).
 *
 * Each preset says on which architectures the thread proposes it; a combination that
 * does not apply to a scenario or architecture is reported as not applicable by the
 * experiments, never silently run as something else.
 *
 * @module
 */

import { ExperimentError } from "../errors.ts";

/** How the int3 handler makes the emulated call happen. */
export type PushStrategy = "none" | "stub" | "link-register" | "entry-fixup" | "gap";

/** Which call the int3 handler emulates. */
export type TargetStrategy =
  | "fixed-caller"
  | "saved-target"
  | "atomic-offset"
  | "plain-offset"
  | "emulate-new";

/** Every push strategy, in the order of the thread. */
export const PUSH_STRATEGIES: readonly PushStrategy[] = [
  "none",
  "stub",
  "link-register",
  "entry-fixup",
  "gap",
];

/** Every target strategy, in the order of the thread. */
export const TARGET_STRATEGIES: readonly TargetStrategy[] = [
  "fixed-caller",
  "saved-target",
  "atomic-offset",
  "plain-offset",
  "emulate-new",
];

/** The stable ids of the named presets. */
export type ProposalId =
  | "nop-skip"
  | "stub-trampoline"
  | "link-register"
  | "entry-fixup"
  | "gap-regs-caller"
  | "gap-saved-target"
  | "gap-atomic-offset"
  | "gap-plain-offset"
  | "text-poke-emulate";

/** The two architectures of the model. */
export type Arch = "x86-64" | "x86-32";

/** A named preset: one point on each axis, with its provenance. */
export interface Proposal {
  /** Stable id. */
  readonly id: ProposalId;
  /** How the call is made to happen. */
  readonly push: PushStrategy;
  /** Which call is emulated (ignored by `push: "none"`, which emulates none). */
  readonly target: TargetStrategy;
  /** Architectures the thread proposes it for. */
  readonly arches: readonly Arch[];
  /** The mail(s) it follows: author and date. */
  readonly source: string;
  /** One line: what it does. */
  readonly summary: string;
}

/** The named presets, in the order of the thread. */
export const PRESETS: readonly Proposal[] = [
  {
    id: "nop-skip",
    push: "none",
    target: "fixed-caller",
    arches: ["x86-64", "x86-32"],
    source: "ftrace_int3_handler before May 2019, described by Steven Rostedt (seed 004)",
    summary: "the handler treats the site as a NOP and jumps over it",
  },
  {
    id: "stub-trampoline",
    push: "stub",
    target: "fixed-caller",
    arches: ["x86-64"],
    source:
      "Nicolai Stange, 27 Apr 2019 (quoted in seed 004); his series was x86_64-only (unverified)",
    summary: "iret to a stub that pushes the return address and jumps to the regs caller",
  },
  {
    id: "link-register",
    push: "link-register",
    target: "saved-target",
    arches: ["x86-64", "x86-32"],
    source: "Steven Rostedt, early May 2019 (seed 004)",
    summary: "a pt_regs slot the int3 return path turns into a push",
  },
  {
    id: "entry-fixup",
    push: "entry-fixup",
    target: "saved-target",
    arches: ["x86-64", "x86-32"],
    source: "Andy Lutomirski's earlier idea, quoted in seed 000 (3 May 2019)",
    summary: "the entry's exit path moves the iret frame down and stores the pushed word",
  },
  {
    id: "gap-regs-caller",
    push: "gap",
    target: "fixed-caller",
    arches: ["x86-64", "x86-32"],
    source: "the RFC as posted by Linus Torvalds, 4 May 2019 (seed 001)",
    summary: "push into the entry's gap, emulate a call to ftrace_regs_caller",
  },
  {
    id: "gap-saved-target",
    push: "gap",
    target: "saved-target",
    arches: ["x86-64", "x86-32"],
    source: "Linus Torvalds, 6 May 2019 18:13 (seed 002)",
    summary: "push into the gap, emulate a call to the one target being written",
  },
  {
    id: "gap-atomic-offset",
    push: "gap",
    target: "atomic-offset",
    arches: ["x86-64", "x86-32"],
    source: "Linus Torvalds, 6 May 2019 22:23 (seed 003)",
    summary: "push into the gap, call ip+5+offset read with one locked cycle (writer: xchg)",
  },
  {
    id: "gap-plain-offset",
    push: "gap",
    target: "plain-offset",
    arches: ["x86-64", "x86-32"],
    source: "control for seed 003: the same without the locked cycles",
    summary: "push into the gap, call ip+5+offset written with a plain store",
  },
  {
    id: "text-poke-emulate",
    push: "gap",
    target: "emulate-new",
    arches: ["x86-64", "x86-32"],
    source: "what landed: v5.2 gap, v5.3 FIXUP_FRAME, ~v5.5 c3d6324f841b",
    summary: "text_poke_bp's handler emulates the instruction being written",
  },
];

/** The stable ids of the named presets, in order. */
export const PROPOSALS: readonly ProposalId[] = PRESETS.map((p) => p.id);

/**
 * Looks a preset up by id.
 *
 * @param id A preset id (see {@link PROPOSALS}).
 * @returns The preset.
 * @throws {ExperimentError} For an unknown id (the message lists the known ones).
 * @example
 * ```ts
 * import { proposal } from "@textpoke/textpoke";
 *
 * const p = proposal("gap-saved-target");
 * console.log(p.push, p.target); // gap saved-target
 * ```
 */
export function proposal(id: string): Proposal {
  const p = PRESETS.find((q) => q.id === id);
  if (p === undefined) {
    throw new ExperimentError(`Unknown proposal "${id}"; known: ${PROPOSALS.join(", ")}`);
  }
  return p;
}

/**
 * The preset id of an axis combination, if it is one of the named presets.
 *
 * @param push A push strategy.
 * @param target A target strategy.
 * @returns The preset id, or undefined for an unnamed combination.
 */
export function presetOf(push: PushStrategy, target: TargetStrategy): ProposalId | undefined {
  if (push === "none") return "nop-skip";
  return PRESETS.find((p) => p.push === push && p.target === target)?.id;
}
