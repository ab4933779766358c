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
 * @throws RangeError When the text holds no JSON (no line starts with "{", or the JSON from
 *   there does not parse), or the input has no `benches` array.
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
  let parsed: BenchJson;
  if (typeof json === "string") {
    const start = json.search(/^\{/m);
    if (start < 0) {
      throw new RangeError("Not the output of deno bench --json: no JSON object in the text");
    }
    try {
      parsed = JSON.parse(json.slice(start)) as BenchJson;
    } catch (cause) {
      const line = json.slice(start).split("\n", 1)[0] ?? "";
      throw new RangeError(
        `Not the output of deno bench --json: no JSON parses from the line "${
          line.length > 40 ? `${line.slice(0, 40)}…` : line
        }" to the end`,
        { cause },
      );
    }
  } else {
    parsed = json as BenchJson;
  }
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

/** The units of {@link formatNs}, smallest first: name and nanoseconds per unit. */
const NS_UNITS: readonly (readonly [string, number])[] = [
  ["ns", 1],
  ["µs", 1e3],
  ["ms", 1e6],
  ["s", 1e9],
];

/**
 * Formats nanoseconds for people: "850 ns", "12.3 µs", "4.56 ms", "1.20 s".
 *
 * Values get three significant digits (two decimals below 1 ns, none at 1000 s and
 * more). The unit is chosen after rounding, so a value that rounds up to 1000 of one unit
 * shows as 1.00 of the next: 999999 ns is "1.00 ms", 999.6 ns is "1.00 µs", and 9.999 ns is
 * "10.0 ns". Negative values keep their sign.
 *
 * @param ns Nanoseconds.
 * @returns The text, or "—" when `ns` is NaN or infinite.
 * @example
 * ```ts
 * import { formatNs } from "@textpoke/textpoke/plot";
 *
 * console.log(formatNs(999999)); // "1.00 ms"
 * ```
 */
export function formatNs(ns: number): string {
  if (!Number.isFinite(ns)) return "—";
  const sign = ns < 0 ? "-" : "";
  const abs = Math.abs(ns);
  let unit = 0;
  while (unit < NS_UNITS.length - 1 && abs >= NS_UNITS[unit + 1]![1]) unit++;
  for (;; unit++) {
    const [name, scale] = NS_UNITS[unit]!;
    const text = threeDigits(abs / scale);
    if (Number(text) < 1000 || unit === NS_UNITS.length - 1) return `${sign}${text} ${name}`;
  }
}

/** `v` (>= 0) with three significant digits, the decimals chosen after rounding. */
function threeDigits(v: number): string {
  let text = v.toFixed(2);
  if (Number(text) >= 10) text = v.toFixed(1);
  if (Number(text) >= 100) text = v.toFixed(0);
  return text;
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
    .map((r) => ({
      ...r,
      key: benchKey(r),
      label: formatNs(r.avg),
      kind: r.baseline ? "baseline" : "measured",
    }));
  const ticks = benchTicks(data);
  const keys = [...ticks.keys()];
  const figure: FigureOptions = {
    width: options.width ?? 760,
    height: 50 + 22 * keys.length,
    marginLeft: 240,
    marginRight: 80,
    x: absolute ? { type: "log", label: "mean time per iteration (ns, log)", grid: true } : {
      type: "log",
      label: "time relative to the group's baseline (log; < 1 is faster)",
      grid: true,
    },
    y: { domain: keys, tickFormat: (k: string) => ticks.get(k) ?? k, label: null },
    color: { domain: ["baseline", "measured"], range: ["#bdbdbd", "#3182bd"], legend: true },
    marks: [
      Plot.barX(data, {
        x1: 1,
        x2: absolute ? "avg" : "ratio",
        y: "key",
        fill: "kind",
      }),
      Plot.text(data, {
        // Faster-than-baseline bars grow left of 1: label them right of the axis.
        x: absolute ? "avg" : (d: BenchRow) => Math.max(d.ratio, 1),
        y: "key",
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

/** The row a benchmark gets in {@link benchFigure}: one per file, group and name. */
function benchKey(r: BenchRow): string {
  return JSON.stringify([r.file, r.group, r.name]);
}

/**
 * The tick label of each row key, in first-seen order: the bare name when no other row
 * shares it, else "group/name", else "file: group/name".
 */
function benchTicks(rows: readonly BenchRow[]): Map<string, string> {
  const seen = new Map<string, BenchRow>();
  for (const r of rows) if (!seen.has(benchKey(r))) seen.set(benchKey(r), r);
  const unique = [...seen.values()];
  const grouped = (r: BenchRow) => `${r.group === "" ? "(no group)" : r.group}/${r.name}`;
  const tally = (f: (r: BenchRow) => string) => {
    const n = new Map<string, number>();
    for (const r of unique) n.set(f(r), (n.get(f(r)) ?? 0) + 1);
    return n;
  };
  const byName = tally((r) => r.name);
  const byGroup = tally(grouped);
  const ticks = new Map<string, string>();
  for (const [key, r] of seen) {
    ticks.set(
      key,
      byName.get(r.name) === 1
        ? r.name
        : byGroup.get(grouped(r)) === 1
        ? grouped(r)
        : `${r.file}: ${grouped(r)}`,
    );
  }
  return ticks;
}
