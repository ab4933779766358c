import assert from "node:assert/strict";
import {
  benchFigure,
  benchRows,
  experimentSpans,
  formatNs,
  int3StackCells,
  outcomeBars,
  type OutcomeRecord,
  outcomeRows,
  stackCells,
  stackFigure,
  timelineFigure,
} from "../lib/plot/mod.ts";

const zero = () => 0n;
const count = (html: string, re: RegExp) => (html.match(re) ?? []).length;

Deno.test("int3StackCells() puts the x86-64 gap push in the gap, not on the frame", () => {
  const sp = 0x10000n;
  const regs = sp - 48n - 168n;
  const cells = int3StackCells({
    panel: "gap",
    bitness: 64,
    read: zero,
    regs,
    sp,
    pushed: sp - 8n,
  });
  const at = (a: bigint) => cells.find((c) => c.address === a)!;
  assert.equal(at(sp - 8n).owner, "emulated return address");
  assert.equal(at(sp - 16n).owner, "gap");
  assert.equal(at(regs + 160n).owner, "hardware frame");
  assert.equal(at(regs + 160n).label, "ss");
  assert.equal(at(regs).label, "r15");
  assert.equal(at(regs).owner, "pt_regs");
  assert.equal(at(sp).owner, "interrupted stack");
  assert.equal(at(regs - 8n).owner, "free");
});

Deno.test("int3StackCells() marks a push without the gap as clobbering ss", () => {
  const sp = 0x10000n;
  const cells = int3StackCells({
    panel: "nogap",
    bitness: 64,
    read: zero,
    regs: sp - 168n,
    sp,
    pushed: sp - 8n,
  });
  const c = cells.find((x) => x.address === sp - 8n)!;
  assert.equal(c.owner, "clobbered");
  assert.equal(c.label, "ret over ss");
  assert.equal(cells.filter((x) => x.owner === "gap").length, 0);
});

Deno.test("int3StackCells() treats &regs->sp as the interrupted stack on x86-32", () => {
  const sp = 0x8000n;
  const cells = int3StackCells({ panel: "32", bitness: 32, read: zero, regs: sp - 60n, sp });
  assert.equal(cells.find((c) => c.address === sp)!.owner, "interrupted stack");
  assert.equal(cells.find((c) => c.address === sp - 4n)!.label, "flags");
  assert.ok(cells.every((c) => c.size === 4));
});

Deno.test("int3StackCells() lets explicit regions override the default owners", () => {
  const sp = 0x8000n;
  const regs = sp - 60n;
  const cells = int3StackCells({
    panel: "32",
    bitness: 32,
    read: (a) => a,
    regs,
    sp,
    regions: [{ from: regs - 8n, to: regs, owner: "gap", labels: ["room", "room"] }],
  });
  const c = cells.find((x) => x.address === regs - 4n)!;
  assert.equal(c.owner, "gap");
  assert.equal(c.label, "room");
  assert.equal(c.value, regs - 4n);
});

Deno.test("stackFigure() draws one cell per word and a legend of the owners present", () => {
  const cells = stackCells("a", 64, 0x100n, 0x140n, [
    { from: 0x120n, to: 0x140n, owner: "hardware frame", labels: ["ip", "cs"] },
  ]);
  const html = stackFigure(cells, { title: "t", base: 0x120n }).outerHTML;
  assert.ok(html.startsWith("<figure"));
  assert.ok(html.includes("<svg"));
  assert.equal(count(html.slice(html.lastIndexOf("<svg")), /<rect /g), 8);
  assert.ok(html.includes("hardware frame"));
  assert.ok(html.includes("free"));
  assert.ok(!html.includes("clobbered"));
  assert.ok(html.includes("sp+0x8"));
});

Deno.test("timelineFigure() draws one bar per span and one tick per point", () => {
  const spans = [
    { lane: "CPU 1", t0: 0, t1: 10, kind: "old" },
    { lane: "CPU 2", t0: 5, t1: 30, kind: "skipped" },
    { lane: "CPU 1", t0: 12, t1: 20, kind: "new" },
  ];
  const points = [{ lane: "patcher", t: 11, kind: "store", label: "int3" }];
  const svg = timelineFigure(spans, points, {}).outerHTML;
  const plot = svg.slice(svg.lastIndexOf("<svg"));
  assert.equal(count(plot, /<rect /g), 3);
  assert.ok(plot.includes("<line") || plot.includes("<path"));
  assert.ok(svg.includes("patcher"));
});

const rec = (proposal: string, applicable: boolean, counts: number[]): OutcomeRecord => ({
  proposal,
  scenario: "ftrace-transition",
  arch: "x86-64",
  mode: "torn",
  applicable,
  executions: counts.reduce((a, b) => a + b, 0),
  old: counts[0]!,
  new: counts[1]!,
  skipped: counts[2]!,
  other: counts[3]!,
  crashed: counts[4]!,
});

Deno.test("outcomeRows() gives shares per class and leaves out runs that do not apply", () => {
  const rows = outcomeRows([rec("a", true, [1, 2, 1, 0, 0]), rec("b", false, [0, 0, 0, 0, 0])]);
  assert.equal(rows.length, 5);
  assert.deepEqual(rows.map((r) => r.share), [0.25, 0.5, 0.25, 0, 0]);
  assert.ok(rows.every((r) => r.proposal === "a"));
});

Deno.test("outcomeBars() draws a figure with the class legend", () => {
  const html = outcomeBars([rec("a", true, [1, 2, 1, 0, 0]), rec("b", true, [0, 3, 0, 1, 0])], {
    classes: ["skipped", "other"],
    counts: true,
  }).outerHTML;
  assert.ok(html.includes("<svg"));
  assert.ok(html.includes("skipped") && html.includes("other"));
  assert.ok(!html.includes(">crashed<"));
});

Deno.test("experimentSpans() names lanes from CPU 1 and cuts to the step range", () => {
  const r = {
    proposal: "p",
    scenario: "s",
    timelines: [[{ t0: 0, t1: 50, class: "old" as const }, {
      t0: 60,
      t1: 90,
      class: "new" as const,
    }], [{
      t0: 200,
      t1: 300,
      class: "skipped" as const,
    }]],
  };
  assert.deepEqual(experimentSpans(r, 40, 100), [
    { lane: "CPU 1", t0: 40, t1: 50, kind: "old" },
    { lane: "CPU 1", t0: 60, t1: 90, kind: "new" },
  ]);
  assert.throws(() => experimentSpans({ proposal: "p", scenario: "s" }), /no timelines/);
});

Deno.test("benchRows() reads deno bench --json and divides by the group's baseline", () => {
  const json = JSON.stringify({
    version: 1,
    benches: [
      {
        origin: "file:///x/a_bench.ts",
        group: "g",
        name: "ref",
        baseline: true,
        results: [{ ok: { n: 3, avg: 400, min: 1, p75: 1, p99: 1 } }],
      },
      {
        origin: "file:///x/a_bench.ts",
        group: "g",
        name: "ours",
        baseline: false,
        results: [{ ok: { n: 3, avg: 100, min: 1, p75: 1, p99: 1 } }],
      },
      {
        origin: "file:///x/a_bench.ts",
        group: "h",
        name: "lonely",
        baseline: false,
        results: [{ ok: { n: 3, avg: 7, min: 1, p75: 1, p99: 1 } }],
      },
      {
        origin: "file:///x/a_bench.ts",
        group: "g",
        name: "broken",
        baseline: false,
        results: [{ failed: "x" }],
      },
    ],
  });
  const rows = benchRows(json);
  assert.deepEqual(rows.map((r) => [r.name, r.ratio, r.file]), [
    ["ref", 1, "a_bench.ts"],
    ["ours", 0.25, "a_bench.ts"],
    ["lonely", NaN, "a_bench.ts"],
  ]);
  const html = benchFigure(rows).outerHTML;
  assert.ok(html.includes("ours") && !html.includes("lonely"));
  assert.ok(benchFigure(rows, { absolute: true }).outerHTML.includes("lonely"));
  assert.throws(() => benchRows({ hello: 1 }), /no benches array/);
});

Deno.test("formatNs() picks a unit people read", () => {
  assert.deepEqual([
    formatNs(5.5),
    formatNs(850),
    formatNs(12345),
    formatNs(4.56e6),
    formatNs(1.2e9),
  ], [
    "5.50 ns",
    "850 ns",
    "12.3 µs",
    "4.56 ms",
    "1.20 s",
  ]);
});

Deno.test("formatNs() picks the unit after rounding, so no unit boundary shows 1000", () => {
  assert.deepEqual(
    [999999, 999.6, 9.999, 99.96, 999_499, 999_500, 0.5, 12.34, 2.5e12, -1500].map(formatNs),
    [
      "1.00 ms",
      "1.00 µs",
      "10.0 ns",
      "100 ns",
      "999 µs",
      "1.00 ms",
      "0.50 ns",
      "12.3 ns",
      "2500 s",
      "-1.50 µs",
    ],
  );
});

Deno.test("formatNs() returns a dash for non-finite input", () => {
  assert.deepEqual([NaN, Infinity, -Infinity].map(formatNs), ["—", "—", "—"]);
});

Deno.test("benchRows() throws its RangeError when the text holds no JSON", () => {
  for (const text of ["Check file:///x\nerror: boom", "", "{ not json"]) {
    assert.throws(
      () => benchRows(text),
      (e: unknown) => e instanceof RangeError && /no JSON/.test(e.message),
      JSON.stringify(text),
    );
  }
});

const benchJson = (entries: [group: string, name: string, baseline: boolean, avg: number][]) =>
  JSON.stringify({
    version: 1,
    benches: entries.map(([group, name, baseline, avg]) => ({
      origin: "file:///x/a_bench.ts",
      group,
      name,
      baseline,
      results: [{ ok: { n: 3, avg, min: 1, p75: 1, p99: 1 } }],
    })),
  });

/** The y of each bar of the figure's bar mark. */
const barYs = (html: string) =>
  [...html.slice(html.lastIndexOf("<svg")).matchAll(/<rect [^>]*\by="([^"]+)"/g)].map((m) => m[1]);

Deno.test("benchFigure() gives same-named benchmarks of different groups their own rows", () => {
  const rows = benchRows(benchJson([
    ["decode", "ref", true, 400],
    ["decode", "ours", false, 100],
    ["step", "ref", true, 300],
    ["step", "ours", false, 600],
  ]));
  const html = benchFigure(rows).outerHTML;
  const ys = barYs(html);
  assert.equal(ys.length, 4);
  assert.equal(new Set(ys).size, 4, `bars share rows: ${ys.join(" ")}`);
  for (const label of ["decode/ref", "decode/ours", "step/ref", "step/ours"]) {
    assert.ok(html.includes(`>${label}<`), label);
  }
});

Deno.test("benchFigure() labels a benchmark by its bare name when the name is unique", () => {
  const html =
    benchFigure(benchRows(benchJson([["g", "ref", true, 400], ["g", "ours", false, 100]])))
      .outerHTML;
  assert.ok(html.includes(">ref<") && html.includes(">ours<"));
  assert.ok(!html.includes("g/ref"));
  assert.equal(new Set(barYs(html)).size, 2);
});

Deno.test("mod.ts (the core) pulls in neither Plot nor linkedom; lib/plot/mod.ts does", async () => {
  const info = async (path: string) => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["info", "--json", path],
      cwd: new URL("..", import.meta.url).pathname,
      stdout: "piped",
      stderr: "null",
    }).output();
    const graph = JSON.parse(new TextDecoder().decode(out.stdout)) as {
      modules: { kind?: string; specifier: string }[];
    };
    return graph.modules.filter((m) => m.kind === "npm").map((m) => m.specifier).join(" ");
  };
  const core = await info("mod.ts");
  assert.ok(!/observablehq|linkedom/.test(core), `core pulls in: ${core}`);
  const plot = await info("lib/plot/mod.ts");
  assert.ok(/observablehq\+plot|@observablehq\/plot/.test(plot) && /linkedom/.test(plot), plot);
});
