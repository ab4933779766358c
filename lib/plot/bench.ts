/**
 * Figures from `deno bench --json`: each benchmark's mean time per iteration, drawn
 * relative to its group's baseline, so suites whose iterations do unequal work share one
 * axis.
 *
 * @module
 */

import * as Plot from "@observablehq/plot";
import { drawPlot, type FigureOptions } from "./_plot.ts";
import type { PlotFigure } from "./document.ts";

/** One benchmark's result. */
export interface BenchRow {
  /** Its group (`Deno.bench({ group })`), or "" for none. */
  group: string;
  /** Its name. */
  name: string;
  /** The file it came from (its last path segment). */
  file: string;
  /** True for the group's reference. */
  baseline: boolean;
  /** Iterations measured. */
  n: number;
  /** Mean nanoseconds per iteration. */
  avg: number;
  /** Fastest iteration, ns. */
  min: number;
  /** 75th percentile, ns. */
  p75: number;
  /** 99th percentile, ns. */
  p99: number;
  /** `avg` divided by the mean of the group's baseline (1 for the baseline; NaN without one). */
  ratio: number;
}

interface BenchJson {
  benches?: {
    origin?: string;
    group?: string | null;
    name?: string;
    baseline?: boolean;
    results?: { ok?: { n: number; avg: number; min: number; p75: number; p99: number } }[];
  }[];
}

/**
 * Reads the JSON that `deno bench --json` prints (version 1) into rows; benchmarks that
 * failed are left out.
 *
 * @param json The parsed JSON, or the text deno bench printed (lines before the JSON are
 *   skipped).
 * @returns One row per successful benchmark, in file order.
 * @throws RangeError When the input has no `benches` array.
 * @example
 * ```ts
 * import { benchRows } from "@textpoke/textpoke/plot";
 *
 * const rows = benchRows({ version: 1, benches: [
 *   { origin: "file:///b/x_bench.ts", group: "g", name: "ref", baseline: true,
 *     results: [{ ok: { n: 10, avg: 200, min: 150, p75: 210, p99: 300 } }] },
 *   { origin: "file:///b/x_bench.ts", group: "g", name: "fast", baseline: false,
 *     results: [{ ok: { n: 10, avg: 100, min: 90, p75: 105, p99: 150 } }] },
 * ] });
 * console.log(rows[1]?.ratio); // 0.5
 * ```
 */
export function benchRows(json: unknown): BenchRow[] {
  // Benchmarks may print lines of their own before the JSON: start at the first "{" line.
  const text = typeof json === "string" ? json.slice(Math.max(0, json.search(/^\{/m))) : null;
  const parsed = (text === null ? json : JSON.parse(text)) as BenchJson;
  if (parsed === null || typeof parsed !== "object" || !Array.isArray(parsed.benches)) {
    throw new RangeError("Not the output of deno bench --json: no benches array");
  }
  const rows: BenchRow[] = [];
  for (const b of parsed.benches) {
    const ok = b.results?.[0]?.ok;
    if (ok === undefined) continue;
    rows.push({
      group: b.group ?? "",
      name: b.name ?? "",
      file: (b.origin ?? "").split("/").pop() ?? "",
      baseline: b.baseline === true,
      n: ok.n,
      avg: ok.avg,
      min: ok.min,
      p75: ok.p75,
      p99: ok.p99,
      ratio: NaN,
    });
  }
  for (const r of rows) {
    const base = rows.find((x) => x.baseline && x.group === r.group && x.file === r.file);
    r.ratio = base === undefined ? NaN : r.avg / base.avg;
  }
  return rows;
}

/**
 * Formats nanoseconds for people: "850 ns", "12.3 µs", "4.56 ms", "1.20 s".
 *
 * @param ns Nanoseconds.
 * @returns The text.
 */
export function formatNs(ns: number): string {
  if (ns < 1e3) return `${ns.toFixed(ns < 10 ? 2 : 0)} ns`;
  if (ns < 1e6) return `${(ns / 1e3).toPrecision(3)} µs`;
  if (ns < 1e9) return `${(ns / 1e6).toPrecision(3)} ms`;
  return `${(ns / 1e9).toPrecision(3)} s`;
}

/** Options of {@link benchFigure}. */
export interface BenchFigureOptions {
  /** A title. */
  title?: string;
  /** A caption. */
  caption?: string;
  /** Draw mean times on a log axis instead of ratios to the baseline (default false). */
  absolute?: boolean;
  /** Width in pixels (default 760). */
  width?: number;
}

/**
 * Bars of benchmark results: by default each bar is the time relative to its group's
 * baseline (the baseline is 1; shorter is faster), labelled with the mean time per
 * iteration; with `absolute`, mean times on a log axis.
 *
 * @param rows Rows from {@link benchRows}.
 * @param options Ratio or absolute, title.
 * @returns The Plot figure.
 */
export function benchFigure(
  rows: readonly BenchRow[],
  options: BenchFigureOptions = {},
): PlotFigure {
  const absolute = options.absolute === true;
  const data = rows
    .filter((r) => absolute || Number.isFinite(r.ratio))
    .map((r) => ({ ...r, label: formatNs(r.avg), kind: r.baseline ? "baseline" : "measured" }));
  const names = data.map((r) => r.name);
  const figure: FigureOptions = {
    width: options.width ?? 760,
    height: 50 + 22 * data.length,
    marginLeft: 240,
    marginRight: 80,
    x: absolute ? { type: "log", label: "mean time per iteration (ns, log)", grid: true } : {
      type: "log",
      label: "time relative to the group's baseline (log; < 1 is faster)",
      grid: true,
    },
    y: { domain: names, label: null },
    color: { domain: ["baseline", "measured"], range: ["#bdbdbd", "#3182bd"], legend: true },
    marks: [
      Plot.barX(data, {
        x1: 1,
        x2: absolute ? "avg" : "ratio",
        y: "name",
        fill: "kind",
      }),
      Plot.text(data, {
        // Faster-than-baseline bars grow left of 1: label them right of the axis.
        x: absolute ? "avg" : (d: BenchRow) => Math.max(d.ratio, 1),
        y: "name",
        text: "label",
        textAnchor: "start",
        dx: 4,
        fontSize: 10,
      }),
      Plot.ruleX([1]),
    ],
  };
  if (options.title !== undefined) figure.title = options.title;
  if (options.caption !== undefined) figure.caption = options.caption;
  return drawPlot(figure);
}
