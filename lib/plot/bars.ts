/**
 * Bars for experiment records: for each proposal, how its executions of patched sites
 * split into old, new, skipped, other and crashed, stacked, so the proposals compare at a
 * glance.
 *
 * @module
 */

import * as Plot from "@observablehq/plot";
import { drawPlot, type FigureOptions } from "./_plot.ts";
import type { PlotFigure } from "./document.ts";
import { CLASS_COLORS, OUTCOME_CLASSES, type OutcomeClass, type OutcomeRecord } from "./classes.ts";

/** One bar segment: one class of one record. */
export interface OutcomeRow {
  /** The record's proposal. */
  proposal: string;
  /** Its scenario. */
  scenario: string;
  /** Its architecture. */
  arch: string;
  /** Its fetch mode. */
  mode: string;
  /** The class. */
  class: OutcomeClass;
  /** Executions of that class. */
  count: number;
  /** Share of the record's executions (0..1). */
  share: number;
}

/**
 * Flattens records into one row per (record, class); records that do not apply or saw
 * no execution give no rows.
 *
 * @param records Experiment records.
 * @returns The rows, in record then class order.
 * @example
 * ```ts
 * import { outcomeRows } from "@textpoke/textpoke/plot";
 * import { runExperiment } from "@textpoke/textpoke";
 *
 * const r = runExperiment({ scenario: "ftrace-transition", proposal: "nop-skip", transitions: 4 });
 * console.log(outcomeRows([r]).some((x) => x.class === "skipped")); // true (usually)
 * ```
 */
export function outcomeRows(records: readonly OutcomeRecord[]): OutcomeRow[] {
  const rows: OutcomeRow[] = [];
  for (const r of records) {
    if (!r.applicable || r.executions === 0) continue;
    for (const c of OUTCOME_CLASSES) {
      rows.push({
        proposal: r.proposal,
        scenario: r.scenario,
        arch: r.arch,
        mode: r.mode,
        class: c,
        count: r[c],
        share: r[c] / r.executions,
      });
    }
  }
  return rows;
}

/** Options of {@link outcomeBars}. */
export interface OutcomeBarsOptions {
  /** A title. */
  title?: string;
  /** A caption. */
  caption?: string;
  /** Plot counts instead of shares (default false: shares, so runs of unequal length compare). */
  counts?: boolean;
  /** Facet into rows by this field (e.g. "arch", "scenario", "mode"). */
  facet?: "arch" | "scenario" | "mode";
  /** Width in pixels (default 760). */
  width?: number;
  /**
   * Classes to draw (default: all). Old and new dominate every run; drawing only
   * skipped, other and crashed shows the failures on a readable scale.
   */
  classes?: readonly OutcomeClass[];
}

/**
 * Horizontal stacked bars, one per proposal (per facet), split by execution class.
 *
 * @param records Experiment records (not applicable ones are left out).
 * @param options Counts or shares, a facet, which classes.
 * @returns The Plot figure (a `<figure>` with the class legend).
 */
export function outcomeBars(
  records: readonly OutcomeRecord[],
  options: OutcomeBarsOptions = {},
): PlotFigure {
  const classes = options.classes ?? OUTCOME_CLASSES;
  const rows = outcomeRows(records).filter((r) => classes.includes(r.class));
  const proposals = [...new Set(records.map((r) => r.proposal))];
  const facet = options.facet;
  const facets = facet === undefined ? [""] : [...new Set(rows.map((r) => r[facet]))];
  const value = options.counts === true ? "count" : "share";
  const figure: FigureOptions = {
    width: options.width ?? 760,
    height: 40 + facets.length * (14 + 22 * proposals.length),
    marginLeft: 140,
    marginRight: facet === undefined ? 20 : 150,
    x: {
      label: value === "share" ? "share of executions" : "executions",
      percent: value === "share",
      grid: true,
    },
    y: { domain: proposals, label: null },
    color: {
      domain: classes.slice(),
      range: classes.map((c) => CLASS_COLORS[c]),
      legend: true,
    },
    marks: [
      Plot.barX(rows, {
        x: value,
        y: "proposal",
        fill: "class",
        ...(facet === undefined ? {} : { fy: facet }),
        order: classes.slice(),
      }),
      Plot.ruleX([0]),
    ],
  };
  if (facet !== undefined) figure.fy = { label: null };
  if (options.title !== undefined) figure.title = options.title;
  if (options.caption !== undefined) figure.caption = options.caption;
  return drawPlot(figure);
}
