/**
 * What a committed notebook must satisfy (checked by notebooks_test.ts): markdown before
 * its first code cell, at least one Plot figure among its outputs, no error output.
 *
 * @module
 */

/** The parts of an .ipynb file the checks read. */
export interface Notebook {
  cells: {
    cell_type: string;
    source: string | string[];
    outputs?: {
      output_type: string;
      text?: string | string[];
      data?: Record<string, string | string[]>;
      ename?: string;
      evalue?: string;
    }[];
  }[];
  metadata?: { kernelspec?: { name?: string } };
}

const text = (v: string | string[] | undefined): string =>
  v === undefined ? "" : Array.isArray(v) ? v.join("") : v;

/**
 * Problems with a notebook, as sentences (empty when it is fine).
 *
 * @param nb The parsed notebook.
 * @returns The problems.
 */
export function notebookProblems(nb: Notebook): string[] {
  const problems: string[] = [];
  const firstCode = nb.cells.findIndex((c) => c.cell_type === "code");
  const firstMd = nb.cells.findIndex((c) =>
    c.cell_type === "markdown" && text(c.source).trim() !== ""
  );
  if (firstCode < 0) problems.push("it has no code cell");
  if (firstMd < 0 || (firstCode >= 0 && firstMd > firstCode)) {
    problems.push("no markdown comes before the first code cell");
  }
  if (nb.metadata?.kernelspec?.name !== "deno") problems.push("its kernel is not deno");
  let figures = 0;
  for (const [i, c] of nb.cells.entries()) {
    for (const o of c.outputs ?? []) {
      if (o.output_type === "error") {
        problems.push(`cell ${i} has an error output: ${o.ename}: ${o.evalue}`);
      }
      const svg = text(o.data?.["image/svg+xml"]);
      const html = text(o.data?.["text/html"]);
      if (svg.includes("<svg") || (html.includes("<figure") && html.includes("<svg"))) figures++;
    }
  }
  if (figures === 0) problems.push("no Plot figure among its outputs (was it executed?)");
  return problems;
}

/**
 * The module specifiers a notebook's code cells import.
 *
 * @param nb The parsed notebook.
 * @returns Every `from "…"` specifier, in order.
 */
export function notebookImports(nb: Notebook): string[] {
  const out: string[] = [];
  for (const c of nb.cells) {
    if (c.cell_type !== "code") continue;
    for (const m of text(c.source).matchAll(/\bfrom\s+"([^"]+)"/g)) out.push(m[1]!);
  }
  return out;
}

const KEYWORDS =
  /^(const|let|var|for|if|while|function|interface|type|import|export|return|class|async|await)\b/;

/**
 * Code cells that should have printed or displayed something but have no output: cells that
 * call `console.*`, `Deno.jupyter.display`, or whose last top-level statement is a bare call
 * (a figure). The Deno kernel (2.9) sometimes loses a cell's `execute_result` (often) or
 * console output (rarely) under nbconvert, which is why the notebooks display their figures
 * with `await Deno.jupyter.display(…)` (a `display_data`, never lost in the runs that showed
 * the drop); the runner still re-executes a notebook with a silent cell. A cell that calls
 * `console.table` at its top level but whose output holds no table lost part of its output
 * (seen once: the table gone, the line printed before it kept); it counts as silent too.
 *
 * @param nb The parsed, executed notebook.
 * @returns Indices of the silent cells.
 */
export function silentCells(nb: Notebook): number[] {
  const out: number[] = [];
  for (const [i, c] of nb.cells.entries()) {
    if (c.cell_type !== "code") continue;
    const src = text(c.source);
    if ((c.outputs ?? []).length > 0) {
      const printed = (c.outputs ?? []).map((o) => text(o.text)).join("");
      if (/^console\.table\(/m.test(src) && !printed.includes("┌")) out.push(i);
      continue;
    }
    const last = src.split("\n").filter((l) =>
      /^[^\s)\]}]/.test(l) && !l.startsWith("//")
    ).at(-1) ?? "";
    const displays = /^[A-Za-z_$][\w$.]*\(/.test(last) && !KEYWORDS.test(last);
    if (src.includes("console.") || src.includes("Deno.jupyter.display(") || displays) {
      out.push(i);
    }
  }
  return out;
}
