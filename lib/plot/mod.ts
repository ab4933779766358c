/**
 * Figure helpers for the notebooks, on @observablehq/plot with a linkedom document:
 * stacks as byte-addressed cells coloured by owner, per-CPU timelines, stacked bars of
 * experiment outcomes and bars of `deno bench --json` results. This entry point is the
 * only one that imports Plot and linkedom; the core (`@textpoke/textpoke`) pulls in
 * neither.
 *
 * @example Compare two proposals in one figure
 * ```ts
 * import { runExperiment } from "@textpoke/textpoke";
 * import { outcomeBars } from "@textpoke/textpoke/plot";
 *
 * const records = ["nop-skip", "gap-saved-target"].map((proposal) =>
 *   runExperiment({ scenario: "ftrace-transition", proposal, transitions: 6 })
 * );
 * const figure = outcomeBars(records, { title: "ftrace transition" });
 * console.log(figure.outerHTML.includes("<svg")); // true
 * ```
 *
 * @module
 */
export * from "./bars.ts";
export * from "./bench.ts";
export * from "./classes.ts";
export * from "./document.ts";
export * from "./stack.ts";
export * from "./timeline.ts";
