/**
 * The instruction-fetch coherency model: what a CPU executes while another CPU rewrites
 * the `call` under it, in `coherent`, `stale` and `torn` mode.
 */
import assert from "node:assert/strict";
import type { Machine } from "../lib/machine/machine.ts";
import { explore, random, roundRobin, type SchedulePolicy } from "../lib/machine/schedule.ts";
import type { FetchMode, KernelContext, KernelGen } from "../lib/machine/smp.ts";
import { SerializeReason } from "../lib/machine/trace.ts";
import { CODE, DATA, smpMachine } from "./_smp_fixture.ts";

const OLD_COUNT = DATA + 0x100n;
const NEW_COUNT = DATA + 0x140n;
/** The new callee: far enough that its rel32 differs from the old one in three bytes. */
const F_NEW = 0x1580100n;
/** The call site: first instruction of CPU 1's program. */
const SITE = CODE + 0x1000n;
const FAULTS = 0x190000n;

function callBytes(site: bigint, target: bigint): number[] {
  const rel = Number(BigInt.asIntN(32, target - (site + 5n)));
  return [0xe8, rel & 0xff, (rel >> 8) & 0xff, (rel >> 16) & 0xff, (rel >>> 24) & 0xff];
}

/**
 * CPU 1 loops `site: call f_old; <extra>; jmp site`; CPU 0 runs `patcher` as a kernel
 * thread. #UD, #GP and #PF stop the run (natives at their handlers).
 */
function race(
  fetch: FetchMode,
  seed: number,
  patcher: (m: Machine, k: KernelContext) => KernelGen,
  extra = "",
  traceCapacity = 0,
) {
  const { m, labels } = smpMachine([
    "hlt",
    `site: call f_old\n sti\n ${extra}\n jmp site`,
  ], {
    fetch,
    schedule: seed < 0 ? roundRobin(1) : random(seed),
    traceCapacity,
    shared: `f_old: incq ${OLD_COUNT}\n ret`,
  });
  assert.equal(labels.get("c1.site"), SITE);
  m.load(F_NEW, [0x48, 0xff, 0x04, 0x25, ...le32(Number(NEW_COUNT)), 0xc3], "rx");
  for (const [vector, name] of [[6, "#UD"], [13, "#GP"], [14, "#PF"]] as const) {
    const at = FAULTS + BigInt(vector) * 0x10n;
    m.bindNative(at, (call) => call.stop(`${name} on CPU ${call.cpu.index}`), name);
    m.setGate(vector, { handler: at });
  }
  m.spawn(0, (k) => patcher(m, k));
  const stop = m.run({ maxSteps: 3000 });
  return {
    m,
    stop,
    old: Number(m.read64(OLD_COUNT)),
    new: Number(m.read64(NEW_COUNT)),
  };
}

function le32(v: number): number[] {
  return [v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff, (v >>> 24) & 0xff];
}

/** The naive patch: one plain 5-byte store of the new call over the old one. */
function* naive(_m: Machine, k: KernelContext): KernelGen {
  for (let i = 0; i < 40; i++) yield* k.step();
  yield* k.store(Number(SITE), callBytes(SITE, F_NEW));
}

Deno.test("a naive call patch never runs a mixed call in coherent mode", () => {
  for (let seed = 0; seed < 40; seed++) {
    const r = race("coherent", seed, naive);
    assert.equal(r.stop.kind, "budget", `seed ${seed}: ${r.stop.message}`);
    assert.ok(r.old > 0 && r.new > 0, `seed ${seed}: old ${r.old} new ${r.new}`);
  }
});

Deno.test("a naive call patch makes some seeds run a mixed call in torn mode", () => {
  const N = 40;
  let mixed = 0;
  for (let seed = 0; seed < N; seed++) {
    const r = race("torn", seed, naive);
    if (r.stop.kind === "native") {
      // A call to neither target: it lands on unmapped memory (#PF on the fetch).
      assert.match(r.stop.message, /#PF on CPU 1|#UD on CPU 1|#GP on CPU 1/);
      mixed++;
    } else {
      assert.equal(r.stop.kind, "budget");
    }
  }
  console.log(`torn mode: ${mixed} of ${N} seeds executed a mixed call`);
  assert.ok(mixed > 0 && mixed < N, `${mixed} of ${N}`);
});

/** Patch, let CPU 1 run, then sync every core with an IPI; records the counts. */
function patchThenSync(seen: { atStore: number; beforeSync: number; newBeforeSync: number }) {
  return function* (m: Machine, k: KernelContext): KernelGen {
    for (let i = 0; i < 20; i++) yield* k.step();
    yield* k.store(Number(SITE), callBytes(SITE, F_NEW));
    seen.atStore = Number(m.read64(OLD_COUNT));
    for (let i = 0; i < 200; i++) yield* k.step();
    seen.beforeSync = Number(m.read64(OLD_COUNT));
    seen.newBeforeSync = Number(m.read64(NEW_COUNT));
    yield* k.onEachCpu((cpu) => m.smp!.serialize(cpu, SerializeReason.SYNC_CORE), true);
  };
}

Deno.test("stale mode: a CPU runs the old call until an IPI-driven sync_core, then the new one", () => {
  const seen = { atStore: 0, beforeSync: 0, newBeforeSync: 0 };
  const r = race("stale", -1, patchThenSync(seen));
  assert.equal(r.stop.kind, "budget", r.stop.message);
  // After the store, CPU 1 kept calling the old function...
  assert.ok(seen.beforeSync > seen.atStore + 10, JSON.stringify(seen));
  assert.equal(seen.newBeforeSync, 0);
  // ...and after the sync only the new one (at most one old call was already under way).
  assert.ok(r.new > 10, `new ${r.new}`);
  assert.ok(r.old <= seen.beforeSync + 1, `old ${r.old} vs ${seen.beforeSync}`);
});

Deno.test("coherent mode: the same patch is seen before any sync (the control)", () => {
  const seen = { atStore: 0, beforeSync: 0, newBeforeSync: 0 };
  race("coherent", -1, patchThenSync(seen));
  assert.ok(seen.newBeforeSync > 10, JSON.stringify(seen));
});

Deno.test("stale mode: cpuid serializes instruction fetch, mfence does not", () => {
  const seen = { atStore: 0, beforeSync: 0, newBeforeSync: 0 };
  race("stale", -1, patchThenSync(seen), "cpuid");
  assert.ok(seen.newBeforeSync > 10, `cpuid: ${JSON.stringify(seen)}`);
  const fenced = { atStore: 0, beforeSync: 0, newBeforeSync: 0 };
  race("stale", -1, patchThenSync(fenced), "mfence");
  assert.equal(fenced.newBeforeSync, 0, `mfence: ${JSON.stringify(fenced)}`);
});

Deno.test("stale mode: an exception's delivery and iret serialize too", () => {
  const seen = { atStore: 0, beforeSync: 0, newBeforeSync: 0 };
  // CPU 1 loops through an int3 whose handler is just iretq.
  const r = raceWithInt3(seen);
  assert.ok(seen.newBeforeSync > 10, JSON.stringify(seen));
  assert.equal(r.stop.kind, "budget");
});

function raceWithInt3(seen: { atStore: number; beforeSync: number; newBeforeSync: number }) {
  const { m, labels } = smpMachine([
    "hlt",
    `site: call f_old\n sti\n int3\n jmp site`,
  ], {
    fetch: "stale",
    schedule: roundRobin(1),
    shared: `f_old: incq ${OLD_COUNT}\n ret\n bp: iretq`,
  });
  m.load(F_NEW, [0x48, 0xff, 0x04, 0x25, ...le32(Number(NEW_COUNT)), 0xc3], "rx");
  m.setGate(3, { handler: labels.get("bp")! });
  m.spawn(0, (k) => patchThenSync(seen)(m, k));
  return { stop: m.run({ maxSteps: 3000 }) };
}

Deno.test("torn mode: the same seed tears the same way (deterministic)", () => {
  const a = race("torn", 7, naive), b = race("torn", 7, naive);
  assert.equal(a.stop.kind, b.stop.kind);
  assert.equal(a.old, b.old);
  assert.equal(a.m.traceHash(), b.m.traceHash());
});

/** One execution of the call site by CPU 1 while CPU 0's thread stores the new call once. */
function oneShot(fetch: FetchMode) {
  return () => ({
    run(policy: SchedulePolicy): string {
      const { m, labels } = smpMachine(["hlt", "nop\n nop\n site: call f_old\n hlt"], {
        fetch,
        schedule: policy,
        shared: `f_old: movl $1, %eax\n ret\n`,
      });
      const site = labels.get("c1.site")!;
      m.load(F_NEW, [0xb8, 2, 0, 0, 0, 0xc3], "rx"); // movl $2, %eax; ret
      for (const vector of [6, 13, 14]) {
        const at = FAULTS + BigInt(vector) * 0x10n;
        m.bindNative(at, (call) => call.stop(`vector ${vector}`));
        m.setGate(vector, { handler: at });
      }
      m.spawn(0, function* (k) {
        yield* k.store(Number(site), callBytes(site, F_NEW));
      });
      const stop = m.run({ maxSteps: 100 });
      if (stop.kind !== "hlt") return `fault (${stop.message.replace(/.*stopped: /, "")})`;
      return m.cpus[1]!.getReg("eax") === 1n ? "old" : "new";
    },
  });
}

Deno.test("explore() of a naive patch: torn fetches add a fault outcome, coherent ones never", () => {
  const coherent = explore(oneShot("coherent"));
  assert.equal(coherent.complete, true);
  assert.deepEqual([...coherent.outcomes.keys()].sort(), ["new", "old"]);
  const torn = explore(oneShot("torn"));
  assert.equal(torn.complete, true);
  const keys = [...torn.outcomes.keys()].sort();
  assert.ok(keys.includes("old") && keys.includes("new"), keys.join());
  assert.ok(keys.some((k) => k.startsWith("fault")), keys.join());
  assert.ok(torn.schedules > coherent.schedules);
  console.log(
    `coherent: ${coherent.schedules} schedules ${
      JSON.stringify([...coherent.outcomes])
    }; torn: ${torn.schedules} schedules ${JSON.stringify([...torn.outcomes])}`,
  );
});

Deno.test("the trace shows a torn fetch and the mixed bytes CPU 1 executed", () => {
  const oldCall = callBytes(SITE, 0x180000n), newCall = callBytes(SITE, F_NEW);
  let found = false;
  for (let seed = 0; seed < 40 && !found; seed++) {
    const r = race("torn", seed, naive, "", 4096);
    if (r.stop.kind !== "native") continue;
    found = true;
    const recs = r.m.smp!.trace.records(1);
    const torn = recs.find((x) => x.kind === "torn-fetch");
    assert.ok(torn, "no torn-fetch record");
    // Which side the leading bytes came from, and how many.
    assert.match(torn.kind === "torn-fetch" ? torn.detail : "", /^(old|new) [1-9]\d*$/);
    const atSite = recs.filter((x) => x.kind === "retire" && x.ip === SITE);
    const last = atSite[atSite.length - 1]!;
    assert.equal(last.kind, "retire");
    if (last.kind !== "retire") continue;
    const bytes = last.bytes.slice(0, 5);
    assert.notDeepEqual(bytes, oldCall);
    assert.notDeepEqual(bytes, newCall);
    assert.equal(bytes[0], 0xe8);
  }
  assert.ok(found, "no seed tore");
});
