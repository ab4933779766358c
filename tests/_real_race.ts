/**
 * Checks shared by the realKernelRace() tests (synthetic image and Debian's): the
 * caller trampolines' call-site executions are counted and nested as the model harness
 * counts and nests them.
 */
import assert from "node:assert/strict";
import { EXECUTION_CLASSES } from "../lib/experiments/classify.ts";
import { hexAddr } from "../lib/errors.ts";
import type { KernelImage } from "../lib/image/image.ts";
import { realKernelRace, type RealRaceEvent, type RealRaceRecord } from "../lib/image/race.ts";
import { bootRealKernel } from "../lib/image/real_kernel.ts";
import type { TextWalk } from "../lib/image/walk.ts";

/**
 * Asserts a record with timelines is consistent: every execution is on a timeline and in
 * exactly one class, both for the fentry sites and the caller's call site, and every
 * `caller-call` execution is nested in the fentry execution that follows it on its CPU
 * (same site index, same end, later or equal start).
 *
 * @param rec A record run with `timelines: true`.
 * @returns Its `caller-call` events.
 */
export function checkCallerCalls(rec: RealRaceRecord): RealRaceEvent[] {
  assert.ok(rec.timelines !== undefined, "run with timelines: true");
  const events = rec.timelines.flat();
  assert.equal(events.length, rec.executions, "every execution is on a timeline");
  let sum = 0;
  for (const c of EXECUTION_CLASSES) {
    assert.equal(rec[c], events.filter((e) => e.class === c).length, `${c} count`);
    sum += rec[c];
  }
  assert.equal(sum, rec.executions);
  for (const tl of rec.timelines) {
    tl.forEach((e, i) => {
      if (e.role !== "caller-call") return;
      const outer = tl[i + 1];
      assert.ok(outer !== undefined, `caller-call at ${e.t0} closes its fentry execution`);
      assert.equal(outer.role, "fentry");
      assert.equal(outer.site, e.site);
      assert.equal(outer.t1, e.t1);
      assert.ok(outer.t0 <= e.t0, `nested: ${outer.t0} <= ${e.t0}`);
    });
  }
  const fentry = events.filter((e) => e.role === "fentry");
  assert.ok(fentry.every((e) => e.address === rec.sites[e.site]!.address));
  return events.filter((e) => e.role === "caller-call");
}

/**
 * The caller's call site under the landed handler and under nop-skip, on `img`: every
 * caller-call execution is at `ftrace_regs_call` (ops B wants regs), the landed handler
 * (`text-poke-emulate`) runs both instructions there and nothing else, and nop-skip skips
 * the tracer call there with one of the seeds 1–4 (the first that does ends the search:
 * not every seed shows it in a few transitions).
 *
 * @param img The image.
 * @param walk Its text walk.
 * @param transitions Transitions per race.
 */
export function checkCallerCallOutcomes(
  img: KernelImage,
  walk: TextWalk,
  transitions: number,
): void {
  // The model text is laid out the same on every boot: where the regs caller's call is.
  const regsCall = hexAddr(bootRealKernel(img, walk, { cpus: 2 }).ftrace.regsCaller.callSite);
  const landed = realKernelRace(img, walk, {
    proposal: "text-poke-emulate",
    transitions,
    timelines: true,
  });
  const calls = checkCallerCalls(landed);
  assert.ok(calls.length > 0, "caller-call executions are counted");
  assert.deepEqual([...new Set(calls.map((e) => e.address))], [regsCall]);
  // ftrace_update_ftrace_func rewrites it while CPUs run through it: both instructions run.
  assert.ok(calls.every((e) => e.class === "old" || e.class === "new"), JSON.stringify(calls));
  assert.ok(calls.some((e) => e.class === "old") && calls.some((e) => e.class === "new"));
  // The failure the landed handler prevents, at the caller's own call: jumping over the
  // int3 at ftrace_regs_call skips the tracer call both instructions make.
  let skipped: RealRaceEvent[] = [];
  for (const seed of [1, 2, 3, 4]) {
    const r = realKernelRace(img, walk, {
      proposal: "nop-skip",
      transitions,
      seed,
      timelines: true,
    });
    skipped = checkCallerCalls(r).filter((e) => e.class === "skipped");
    if (skipped.length > 0) break;
  }
  assert.ok(skipped.length > 0, "nop-skip skips calls at ftrace_regs_call");
  assert.ok(skipped.every((e) => e.address === regsCall));
}
