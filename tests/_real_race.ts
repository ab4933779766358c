/**
 * Checks shared by the realKernelRace() tests (synthetic image and Debian's): the
 * caller trampolines' call-site executions are counted and nested as the model harness
 * counts and nests them.
 */
import assert from "node:assert/strict";
import { EXECUTION_CLASSES } from "../lib/experiments/classify.ts";
import type { RealRaceEvent, RealRaceRecord } from "../lib/image/race.ts";

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
