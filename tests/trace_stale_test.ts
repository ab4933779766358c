/**
 * The trace ring's retire records show the bytes a CPU executed, not memory: a CPU that
 * keeps running its predecoded copy of a call site another CPU rewrote (`stale` mode, or
 * a cached torn fetch) records the copy's bytes until it decodes the site again.
 */
import assert from "node:assert/strict";
import type { Machine } from "../lib/machine/machine.ts";
import { roundRobin, type SchedulePolicy } from "../lib/machine/schedule.ts";
import type { FetchMode, KernelContext, KernelGen } from "../lib/machine/smp.ts";
import type { RetireRecord } from "../lib/machine/trace.ts";
import { CODE, DATA, SHARED, smpMachine } from "./_smp_fixture.ts";

const OLD_COUNT = DATA + 0x100n;
const NEW_COUNT = DATA + 0x140n;
/** The new callee: its rel32 differs from the old one in three bytes. */
const F_NEW = 0x1580100n;
/** The call site: first instruction of CPU 1's program. */
const SITE = CODE + 0x1000n;
/** f_old is the first (and only) function of the shared code. */
const F_OLD = SHARED;

function le32(v: number): number[] {
  return [v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff, (v >>> 24) & 0xff];
}

function callBytes(site: bigint, target: bigint): number[] {
  return [0xe8, ...le32(Number(BigInt.asIntN(32, target - (site + 5n))))];
}

const OLD_CALL = callBytes(SITE, F_OLD);
const NEW_CALL = callBytes(SITE, F_NEW);

/** Round-robin, every other choice (a torn fetch's split) the old instruction. */
function roundRobinOld(): SchedulePolicy {
  const rr = roundRobin(1);
  return {
    name: "round-robin, old fetches",
    reset: (n) => rr.reset(n),
    pick: (runnable, count, last) => rr.pick(runnable, count, last),
    choose: () => 0,
  };
}

/**
 * CPU 1 loops `site: call f_old; <extra>; jmp site`; after 40 steps CPU 0 rewrites the
 * call to `call f_new` with one plain store, then steps on. Returns the machine, the
 * step of that store and CPU 1's retire records after it.
 */
function rewriteUnderCpu1(fetch: FetchMode, extra = "", policy = roundRobin(1)) {
  const { m, labels } = smpMachine(["hlt", `site: call f_old\n ${extra}\n jmp site`], {
    fetch,
    schedule: policy,
    traceCapacity: 4096,
    shared: `f_old: incq ${OLD_COUNT}\n ret`,
  });
  assert.equal(labels.get("c1.site"), SITE);
  assert.equal(labels.get("f_old"), F_OLD);
  m.load(F_NEW, [0x48, 0xff, 0x04, 0x25, ...le32(Number(NEW_COUNT)), 0xc3], "rx");
  m.spawn(0, function* (k: KernelContext): KernelGen {
    for (let i = 0; i < 40; i++) yield* k.step();
    yield* k.store(Number(SITE), NEW_CALL);
    for (let i = 0; i < 200; i++) yield* k.step();
  });
  m.run({ maxSteps: 300 });
  return after(m);
}

function after(m: Machine) {
  const recs = m.smp!.trace.records();
  const store = recs.find((r) => r.kind === "code-store" && r.cpu === 0);
  assert.ok(store !== undefined, "no code-store record");
  const cpu1 = recs.filter((r): r is RetireRecord =>
    r.kind === "retire" && r.cpu === 1 && r.step > store.step
  );
  // What each call at the site retired into: the ip of CPU 1's next instruction.
  const targets = new Set<bigint>();
  cpu1.forEach((r, i) => {
    if (r.ip === SITE && i + 1 < cpu1.length) targets.add(cpu1[i + 1]!.ip);
  });
  return {
    site: cpu1.filter((r) => r.ip === SITE).map((r) => r.bytes),
    targets,
    memory: [...m.readBytes(SITE, 5)],
    old: m.read64(OLD_COUNT),
    new: m.read64(NEW_COUNT),
  };
}

Deno.test("Smp retire records show the old call bytes a stale CPU still executes", () => {
  const r = rewriteUnderCpu1("stale", "sti");
  assert.deepEqual(r.memory, NEW_CALL);
  assert.ok(r.site.length >= 10, `only ${r.site.length} calls at the site after the store`);
  for (const bytes of r.site) assert.deepEqual(bytes, OLD_CALL);
  assert.deepEqual([...r.targets], [F_OLD]);
  assert.equal(r.new, 0n);
  assert.ok(r.old > 10n);
});

Deno.test("Smp retire records show the new call bytes in coherent mode", () => {
  const r = rewriteUnderCpu1("coherent", "sti");
  assert.ok(r.site.length >= 10, `only ${r.site.length} calls at the site after the store`);
  for (const bytes of r.site) assert.deepEqual(bytes, NEW_CALL);
  assert.deepEqual([...r.targets], [F_NEW]);
  assert.ok(r.new > 10n);
});

Deno.test("Smp retire records show the new bytes once a stale CPU serializes (cpuid)", () => {
  // cpuid after each call drops CPU 1's stale copy: its next fetch decodes the new call.
  const r = rewriteUnderCpu1("stale", "cpuid");
  assert.ok(r.site.length >= 5, `only ${r.site.length} calls at the site after the store`);
  const [first, ...rest] = r.site;
  // The first call after the store may still be the copy decoded before it.
  assert.ok(
    JSON.stringify(first) === JSON.stringify(OLD_CALL) ||
      JSON.stringify(first) === JSON.stringify(NEW_CALL),
  );
  for (const bytes of rest) assert.deepEqual(bytes, NEW_CALL);
  assert.ok(r.targets.has(F_NEW));
  assert.ok(r.new > 3n);
});

Deno.test("Smp retire records keep a cached torn fetch's bytes on every execution", () => {
  // CPU 1's copy is dropped by the store; its refetch takes split 0 (the old call, as
  // fetched before the store), cached until it serializes: every call runs f_old.
  const r = rewriteUnderCpu1("torn", "sti", roundRobinOld());
  assert.deepEqual(r.memory, NEW_CALL);
  assert.ok(r.site.length >= 10, `only ${r.site.length} calls at the site after the store`);
  for (const bytes of r.site) assert.deepEqual(bytes, OLD_CALL);
  assert.deepEqual([...r.targets], [F_OLD]);
  assert.equal(r.new, 0n);
});
