/**
 * Per-CPU timelines: one lane per CPU, time in scheduling steps along x, each execution
 * of a patched site a bar coloured by what it did (old, new, skipped, other, crashed),
 * and instants (a store, an IPI, a trap) as ticks.
 *
 * @module
 */

import * as Plot from "@observablehq/plot";
import { CLASS_COLORS, type TimelineRecord } from "./classes.ts";
import { drawPlot, type FigureOptions } from "./_plot.ts";
import type { PlotFigure } from "./document.ts";

/** Something that lasted from one step to another on one lane. */
export interface TimelineSpan {
  /** The lane (e.g. "CPU 1", "patcher"). */
  lane: string;
  /** Start step. */
  t0: number;
  /** End step. */
  t1: number;
  /** What it was (the colour key: an execution class, or e.g. "int3 handler"). */
  kind: string;
  /** A short label drawn on the bar when it is wide enough, or "". */
  label?: string;
}

/** Something that happened at one step on one lane. */
export interface TimelinePoint {
  /** The lane. */
  lane: string;
  /** The step. */
  t: number;
  /** What it was (e.g. "store", "sync_core", "int3"). */
  kind: string;
  /** A short label drawn above the tick, or "". */
  label?: string;
}

/** Options of {@link timelineFigure}. */
export interface TimelineFigureOptions {
  /** A title. */
  title?: string;
  /** A caption. */
  caption?: string;
  /** Lanes top to bottom (default: in order of first appearance). */
  lanes?: readonly string[];
  /** Colour of each span or point kind (defaults: {@link CLASS_COLORS}, then a palette). */
  colors?: Readonly<Record<string, string>>;
  /** Width in pixels (default 760). */
  width?: number;
  /** Label of the x axis (default "scheduling step"). */
  xLabel?: string;
}

const PALETTE = ["#636363", "#e6550d", "#3182bd", "#756bb1", "#31a354", "#a55194", "#8c6d31"];

/**
 * Draws per-lane timelines: spans as bars, points as ticks, with one colour legend.
 *
 * @param spans What lasted (executions, handler runs, batches).
 * @param points What happened at an instant (stores, IPIs, traps).
 * @param options Title, lanes, colours.
 * @returns The Plot figure.
 * @example
 * ```ts
 * import { timelineFigure } from "@textpoke/textpoke/plot";
 *
 * const fig = timelineFigure(
 *   [{ lane: "CPU 1", t0: 0, t1: 40, kind: "old" }, { lane: "CPU 1", t0: 50, t1: 90, kind: "new" }],
 *   [{ lane: "patcher", t: 45, kind: "store" }],
 * );
 * console.log(fig.outerHTML.includes("<svg")); // true
 * ```
 */
export function timelineFigure(
  spans: readonly TimelineSpan[],
  points: readonly TimelinePoint[] = [],
  options: TimelineFigureOptions = {},
): PlotFigure {
  const lanes = options.lanes?.slice() ?? [
    ...new Set([...spans.map((s) => s.lane), ...points.map((p) => p.lane)]),
  ];
  const kinds = [...new Set([...spans.map((s) => s.kind), ...points.map((p) => p.kind)])];
  const given: Readonly<Record<string, string>> = { ...CLASS_COLORS, ...options.colors };
  let next = 0;
  const range = kinds.map((k) => given[k] ?? PALETTE[next++ % PALETTE.length]!);
  const figure: FigureOptions = {
    width: options.width ?? 760,
    height: 50 + 34 * lanes.length,
    marginLeft: Math.max(70, 10 + 6.5 * Math.max(0, ...lanes.map((l) => l.length))),
    x: { label: options.xLabel ?? "scheduling step", grid: true },
    y: { domain: lanes, label: null, padding: 0.25 },
    color: { domain: kinds, range, legend: true },
    marks: [
      Plot.barX(spans, {
        x1: "t0",
        x2: (d: TimelineSpan) => Math.max(d.t1, d.t0 + 1),
        y: "lane",
        fill: "kind",
        inset: 0.5,
      }),
      Plot.tickX(points, { x: "t", y: "lane", stroke: "kind", strokeWidth: 2 }),
      Plot.text(points.filter((p) => (p.label ?? "") !== ""), {
        x: "t",
        y: "lane",
        text: "label",
        dy: -13,
        fontSize: 9,
      }),
      Plot.text(spans.filter((s) => (s.label ?? "") !== ""), {
        x: (d: TimelineSpan) => (d.t0 + d.t1) / 2,
        y: "lane",
        text: "label",
        fontSize: 9,
        fill: "white",
      }),
    ],
  };
  if (options.title !== undefined) figure.title = options.title;
  if (options.caption !== undefined) figure.caption = options.caption;
  return drawPlot(figure);
}

/**
 * The executions of an experiment run with `timelines: true` as spans, one lane per
 * worker CPU ("CPU 1", "CPU 2", …; CPU 0 is the patcher), optionally cut to a step range.
 *
 * @param record A record whose `timelines` were recorded.
 * @param from First step kept (default 0).
 * @param to Last step kept (default: all).
 * @returns The spans, kind = execution class.
 * @throws RangeError When the record has no timelines.
 */
export function experimentSpans(
  record: TimelineRecord,
  from = 0,
  to = Infinity,
): TimelineSpan[] {
  if (record.timelines === undefined) {
    throw new RangeError(
      `Record ${record.proposal}/${record.scenario} has no timelines: run it with timelines: true`,
    );
  }
  const spans: TimelineSpan[] = [];
  record.timelines.forEach((events, i) => {
    for (const e of events) {
      if (e.t1 < from || e.t0 > to) continue;
      spans.push({
        lane: `CPU ${i + 1}`,
        t0: Math.max(e.t0, from),
        t1: Math.min(e.t1, to),
        kind: e.class,
      });
    }
  });
  return spans;
}
