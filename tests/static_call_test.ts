import assert from "node:assert/strict";
import { PatchError } from "../lib/errors.ts";
import { immediateRunner, textPokeBpRunner } from "../lib/ftrace/batch.ts";
import { nop5 } from "../lib/kernel/constants.ts";
import { bootKernel, type Kernel } from "../lib/kernel/kernel.ts";
import { Machine } from "../lib/machine/machine.ts";
import { installProposal, stoppedRunner } from "../lib/proposals/handler.ts";
import { runExperiment } from "../lib/experiments/experiment.ts";
import {
  SCT_RET,
  STATIC_CALL_SELFTEST,
  StaticCalls,
  staticCallSelftest,
} from "../lib/static_call/static_call.ts";

function kernel(bitness: 32 | 64): Kernel {
  return bootKernel(new Machine({ bitness }), { entry: bitness === 64 ? "64-gap" : "32-seed" });
}

for (const bitness of [64, 32] as const) {
  const arch = `x86-${bitness}`;

  Deno.test(`staticCallSelftest() gives 3, 4, 3 through the trampoline and inline (${arch})`, () => {
    const k = kernel(bitness);
    const results = staticCallSelftest(k, textPokeBpRunner(k));
    assert.deepEqual(results.map((r) => r.step), STATIC_CALL_SELFTEST);
    assert.deepEqual(results.map((r) => r.viaTrampoline), [3n, 4n, 3n]);
    assert.deepEqual(results.map((r) => r.viaInline), [3n, 4n, 3n]);
    assert.ok(results.every((r) => r.passed));
  });

  Deno.test(`staticCallSelftest() passes under a proposal's batch runner (${arch})`, () => {
    const k = kernel(bitness);
    const h = installProposal(k, { push: "gap", target: "atomic-offset" });
    assert.ok(staticCallSelftest(k, stoppedRunner(h)).every((r) => r.passed));
  });

  Deno.test(`StaticCalls.staticCallUpdate() to NULL writes ret in the trampoline and NOP5 inline (${arch})`, () => {
    const k = kernel(bitness);
    const fa = k.loadText(
      bitness === 64
        ? "fa:\n\tleaq\t1(%rdi), %rax\n\tret\n"
        : "fa:\n\tleal\t1(%eax), %eax\n\tret\n",
    ).get("fa")!;
    const site = k.loadText("user:\n\tcall\tfa\n\tret\n").get("user")!;
    const sc = new StaticCalls(k);
    const key = sc.defineKey("k", fa, { lineOffset: 61 });
    sc.addInlineSite(key, site);
    const run = textPokeBpRunner(k);
    const batches = k.patcher.stats.batches;
    for (const _ of sc.staticCallUpdate(key, null, run));
    // The trampoline first, then the inline sites: two text_poke_bp batches.
    assert.equal(k.patcher.stats.batches - batches, 2);
    assert.deepEqual(k.mem.readBytes(key.trampoline, 5), SCT_RET);
    assert.deepEqual(k.mem.readBytes(site, 5), nop5(bitness));
    assert.equal(sc.trampolineTarget(key), null);
    assert.equal(k.mem.readWord(key.keyAddress, bitness === 64 ? 8 : 4), 0n);
    // A NULL static call returns at once (on x86-32 the argument register is the result).
    const r = k.call(0, key.trampoline, [7n]);
    assert.ok(r.returned, r.stop.message);
    if (bitness === 32) assert.equal(r.value, 7n);
    for (const _ of sc.staticCallUpdate(key, fa, run));
    assert.equal(sc.trampolineTarget(key), fa);
    assert.equal(k.call(0, site, [7n]).value, 8n);
  });

  Deno.test(`StaticCalls refuses an inline site that is not a call and a duplicate key (${arch})`, () => {
    const k = kernel(bitness);
    const sc = new StaticCalls(k);
    const key = sc.defineKey("k", null);
    const bad = k.loadText("bad:\n\tnop\n\tnop\n\tnop\n\tnop\n\tnop\n").get("bad")!;
    assert.throws(() => sc.addInlineSite(key, bad), PatchError);
    assert.throws(() => sc.defineKey("k", null), /already exists/);
    assert.equal(key.sites.length, 0);
  });
}

Deno.test("static_call updated without call emulation skips calls and crashes at the trampoline", () => {
  // nop-skip jumps over the int3: an inline site loses its call, a trampoline runs into
  // the ud1 behind its jmp. The emulating proposals never do either.
  const bad = runExperiment({
    scenario: "static-call-update",
    proposal: "nop-skip",
    transitions: 10,
  });
  assert.ok(bad.skipped > 0, JSON.stringify(bad));
  assert.ok(bad.crashed > 0, JSON.stringify(bad));
  const good = runExperiment({
    scenario: "static-call-update",
    proposal: "text-poke-emulate",
    transitions: 10,
  });
  assert.equal(good.skipped + good.other + good.crashed, 0);
});

Deno.test("immediateRunner() refuses a batch whose old bytes do not match, writing nothing", () => {
  const k = kernel(64);
  const sc = new StaticCalls(k);
  const key = sc.defineKey("k", null);
  const run = immediateRunner((a, b) => k.textPoke(a, b), (a, n) => k.mem.readBytes(a, n));
  const site = {
    address: key.trampoline,
    old: Uint8Array.of(0xe9, 0, 0, 0, 0),
    new: Uint8Array.of(0xe9, 1, 0, 0, 0),
    role: "sc-trampoline" as const,
  };
  assert.throws(() => {
    for (const _ of run([site]));
  }, /Old bytes mismatch/);
  assert.deepEqual(k.mem.readBytes(key.trampoline, 5), SCT_RET);
});
