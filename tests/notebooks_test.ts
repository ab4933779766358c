import assert from "node:assert/strict";
import {
  type Notebook,
  notebookImports,
  notebookProblems,
  silentCells,
} from "./_notebook_check.ts";

const dir = new URL("../notebooks/", import.meta.url);
const EXPECTED = [
  "00_overview.ipynb",
  "01_the_missed_call.ipynb",
  "02_kernel_int3_returns_regs.ipynb",
  "03_the_gap.ipynb",
  "04_emulate_what_you_rewrite.ipynb",
  "05_atomic_offset.ipynb",
  "06_performance.ipynb",
];
const numbered = [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) =>
  /^\d\d_.*\.ipynb$/.test(n)
).sort();
const load = (name: string): Notebook =>
  JSON.parse(Deno.readTextFileSync(new URL(name, dir))) as Notebook;

Deno.test("notebooks/ holds the seven numbered notebooks of the issue", () => {
  for (const name of EXPECTED) assert.ok(numbered.includes(name), `${name} is missing`);
});

for (const name of numbered) {
  Deno.test(`${name} opens with markdown and shows a Plot figure, without errors`, () => {
    assert.deepEqual(notebookProblems(load(name)), []);
  });
  Deno.test(`${name} has an output in every cell that prints or draws`, () => {
    assert.deepEqual(silentCells(load(name)), []);
  });
  Deno.test(`${name} imports the library only through ../mod.ts and ../lib/plot/mod.ts`, () => {
    const allowed = new Set(["../mod.ts", "../lib/plot/mod.ts", "@observablehq/plot", "node:fs"]);
    const bad = notebookImports(load(name)).filter((s) => !allowed.has(s));
    assert.deepEqual(bad, []);
  });
}

const svgOut = { output_type: "display_data", data: { "image/svg+xml": "<svg></svg>" } };

Deno.test("notebookProblems() accepts markdown, then code with an svg output", () => {
  const nb: Notebook = {
    metadata: { kernelspec: { name: "deno" } },
    cells: [
      { cell_type: "markdown", source: ["# Q"] },
      { cell_type: "code", source: "plot()", outputs: [svgOut] },
    ],
  };
  assert.deepEqual(notebookProblems(nb), []);
});

Deno.test("notebookProblems() accepts a <figure> holding an <svg> as text/html", () => {
  const nb: Notebook = {
    metadata: { kernelspec: { name: "deno" } },
    cells: [
      { cell_type: "markdown", source: "# Q" },
      {
        cell_type: "code",
        source: "plot()",
        outputs: [{
          output_type: "execute_result",
          data: { "text/html": ["<figure><h2>t</h2>", "<svg></svg></figure>"] },
        }],
      },
    ],
  };
  assert.deepEqual(notebookProblems(nb), []);
});

Deno.test("notebookProblems() rejects a notebook that starts with code", () => {
  const nb: Notebook = {
    metadata: { kernelspec: { name: "deno" } },
    cells: [
      { cell_type: "code", source: "1", outputs: [svgOut] },
      { cell_type: "markdown", source: "# late" },
    ],
  };
  assert.deepEqual(notebookProblems(nb), ["no markdown comes before the first code cell"]);
});

Deno.test("notebookProblems() rejects an unexecuted notebook (no figure)", () => {
  const nb: Notebook = {
    metadata: { kernelspec: { name: "deno" } },
    cells: [{ cell_type: "markdown", source: "# Q" }, {
      cell_type: "code",
      source: "plot()",
      outputs: [],
    }],
  };
  assert.deepEqual(notebookProblems(nb), ["no Plot figure among its outputs (was it executed?)"]);
});

Deno.test("notebookProblems() rejects an error output and an html output without svg", () => {
  const nb: Notebook = {
    metadata: { kernelspec: { name: "deno" } },
    cells: [
      { cell_type: "markdown", source: "# Q" },
      {
        cell_type: "code",
        source: "x",
        outputs: [
          { output_type: "execute_result", data: { "text/html": "<figure>no plot</figure>" } },
          { output_type: "error", ename: "TypeError", evalue: "x is undefined" },
        ],
      },
    ],
  };
  assert.deepEqual(notebookProblems(nb), [
    "cell 1 has an error output: TypeError: x is undefined",
    "no Plot figure among its outputs (was it executed?)",
  ]);
});

Deno.test("notebookImports() lists every specifier of the code cells", () => {
  const nb: Notebook = {
    cells: [
      { cell_type: "markdown", source: 'import { x } from "nope"' },
      {
        cell_type: "code",
        source: ['import { a } from "../mod.ts";\n', 'import { b } from "../lib/kernel/mod.ts";'],
      },
    ],
  };
  assert.deepEqual(notebookImports(nb), ["../mod.ts", "../lib/kernel/mod.ts"]);
});

Deno.test("silentCells() flags a printing cell and a figure cell without output (bare or displayed), and a table lost from a cell's output; not a definition", () => {
  const nb: Notebook = {
    cells: [
      { cell_type: "code", source: "const x = 1;", outputs: [] },
      { cell_type: "code", source: 'console.log("hi");', outputs: [] },
      {
        cell_type: "code",
        source: "const r = run();\nfigure(r, {\n  title: 't',\n});",
        outputs: [],
      },
      { cell_type: "code", source: "console.log(1);", outputs: [{ output_type: "stream" }] },
      { cell_type: "code", source: "function f() {\n  g();\n}", outputs: [] },
      { cell_type: "code", source: "await Deno.jupyter.display(figure(r));", outputs: [] },
      // A table lost, the line before it kept; and the same cell with its table.
      {
        cell_type: "code",
        source: 'console.log("n");\nconsole.table(rows);',
        outputs: [{ output_type: "stream", text: "n\n" }],
      },
      {
        cell_type: "code",
        source: 'console.log("n");\nconsole.table(rows);',
        outputs: [{ output_type: "stream", text: ["n\n", "┌───┐\n", "└───┘\n"] }],
      },
    ],
  };
  assert.deepEqual(silentCells(nb), [1, 2, 5, 6]);
});
