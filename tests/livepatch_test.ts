import assert from "node:assert/strict";
import { textPokeBpRunner } from "../lib/ftrace/batch.ts";
import { Ftrace } from "../lib/ftrace/ftrace.ts";
import { FtraceOps } from "../lib/ftrace/ops.ts";
import { bootKernel } from "../lib/kernel/kernel.ts";
import { Livepatch } from "../lib/livepatch/livepatch.ts";
import { Machine } from "../lib/machine/machine.ts";
import { runExperiment } from "../lib/experiments/experiment.ts";

for (const bitness of [64, 32] as const) {
  const arch = `x86-${bitness}`;

  Deno.test(`Livepatch.enable() redirects the old function to the new one and counts both (${arch})`, () => {
    const k = bootKernel(new Machine({ bitness }), {
      entry: bitness === 64 ? "64-gap" : "32-seed",
    });
    const ft = new Ftrace(k);
    const lp = new Livepatch(ft);
    const args: bigint[] = [];
    const [f, g] = lp.loadFunctions([
      { name: "f", lineOffset: 61, onNew: (_c, a) => void args.push(a) },
      { name: "g" },
    ]);
    ft.init();
    const run = textPokeBpRunner(k);
    k.call(0, f!.old, [5n]);
    assert.deepEqual([f!.oldRuns, f!.newRuns], [1, 0]);
    for (const _ of lp.enable(run));
    assert.ok(lp.enabled);
    k.call(0, f!.old, [6n]);
    k.call(0, g!.old, [7n]);
    assert.deepEqual([f!.oldRuns, f!.newRuns, g!.oldRuns, g!.newRuns], [1, 1, 0, 1]);
    assert.deepEqual(args, [6n]); // the new function got the traced function's argument
    // Each function's ops is SAVE_REGS | IPMODIFY and, alone on its function, calls
    // through its own trampoline on x86-64 (x86-32 has no per-ops trampolines).
    assert.ok(lp.opsOf(f!).saveRegs && lp.opsOf(g!).saveRegs);
    assert.equal(lp.opsOf(f!).trampoline !== null, bitness === 64);
    // A tracer on the same function: both run through ftrace_regs_caller, still redirected.
    let traced = 0;
    const tracer = new FtraceOps("t", () => traced++, { filter: [f!.old] });
    for (const _ of ft.registerFtraceFunction(tracer, run));
    k.call(0, f!.old, [8n]);
    assert.deepEqual([f!.oldRuns, f!.newRuns, traced], [1, 2, 1]);
    for (const _ of ft.unregisterFtraceFunction(tracer, run));
    for (const _ of lp.disable(run));
    k.call(0, f!.old, [9n]);
    assert.deepEqual([f!.oldRuns, f!.newRuns], [2, 2]);
    assert.throws(() => {
      for (const _ of lp.disable(run));
    }, /not enabled/);
  });

  Deno.test(`Livepatch.loadFunctions() refuses while the patch is enabled, changing nothing (${arch})`, () => {
    const k = bootKernel(new Machine({ bitness }), {
      entry: bitness === 64 ? "64-gap" : "32-seed",
    });
    const ft = new Ftrace(k);
    const lp = new Livepatch(ft);
    const [f] = lp.loadFunctions([{ name: "f" }]);
    ft.init();
    const run = textPokeBpRunner(k);
    for (const _ of lp.enable(run));
    // The failure it prevents: a function loaded now would be in funcs but not in the
    // registered filter, so its old body would keep running while the patch claims it.
    assert.throws(
      () => lp.loadFunctions([{ name: "late" }]),
      /is enabled: its functions are fixed/,
    );
    assert.deepEqual(lp.funcs.map((x) => x.name), ["f"]);
    assert.throws(() => k.symbol("late"));
    for (const _ of lp.disable(run));
    const [late] = lp.loadFunctions([{ name: "late" }]);
    for (const _ of lp.enable(run));
    k.call(0, late!.old, [1n]);
    k.call(0, f!.old, [2n]);
    assert.deepEqual([late!.oldRuns, late!.newRuns, f!.oldRuns, f!.newRuns], [0, 1, 0, 1]);
  });
}

Deno.test("livepatch under nop-skip runs the old, unpatched function while a tracer attaches", () => {
  // x86-64 only: the kernel has no livepatch on x86-32 (HAVE_LIVEPATCH), so the scenario
  // is reported as not applicable there.
  const na = runExperiment({
    scenario: "livepatch-transition",
    proposal: "nop-skip",
    arch: "x86-32",
    transitions: 20,
  });
  assert.equal(na.applicable, false);
  assert.match(na.note, /no livepatch on x86-32/);
  for (const arch of ["x86-64"] as const) {
    const bad = runExperiment({
      scenario: "livepatch-transition",
      proposal: "nop-skip",
      arch,
      transitions: 20,
    });
    assert.ok(bad.skipped > 0, JSON.stringify(bad));
    const good = runExperiment({
      scenario: "livepatch-transition",
      proposal: "gap-saved-target",
      arch,
      transitions: 20,
    });
    assert.equal(good.skipped + good.other + good.crashed, 0, JSON.stringify(good));
    assert.ok(good.new > 0);
  }
});
