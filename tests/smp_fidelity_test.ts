// Fidelity of the SMP layer: both kinds of torn fetch, no fetch going back to bytes
// already replaced, the sti shadow for the call-function IPI, bad senders, seeds and
// the explorer's and replay's argument checks.
import assert from "node:assert/strict";
import { MachineError } from "../lib/errors.ts";
import {
  type Explorable,
  explore,
  Prng,
  random,
  replay,
  roundRobin,
  type SchedulePolicy,
  scripted,
} from "../lib/machine/schedule.ts";
import { CODE, DATA, pokeRace, SHARED, smpMachine } from "./_smp_fixture.ts";

// ---- torn fetch: both kinds of split ----------------------------------------------------

/** Code of the reader's function: `movb $1, %al; ret` (b0 01 c3), inside one line. */
const SITE = 0x190010n;

/**
 * CPU 0 stores `b4 02` (movb $2, %ah) over `b0 01` with one plain 2-byte store; CPU 1
 * calls the site twice from eax = 0. Outcome: eax in hex.
 */
function twoByteStore(fetch: "coherent" | "stale" | "torn"): () => Explorable {
  return () => ({
    run(policy: SchedulePolicy): string {
      const { m } = smpMachine([
        `movw $0x02b4, ${SITE}\n hlt`,
        `movl $0, %eax\n call ${SITE}\n call ${SITE}\n hlt`,
      ], { schedule: policy, fetch });
      m.load(SITE, [0xb0, 0x01, 0xc3], "rwx");
      const s = m.run({ maxSteps: 10_000 });
      assert.equal(s.kind, "hlt", s.message);
      return (m.cpus[1]!.getReg("rax") & 0xffffn).toString(16);
    },
  });
}

Deno.test("explore() in torn mode finds both torn mixes of a 2-byte code store: old head with new tail, and new head with old tail", () => {
  const torn = new Set(explore(twoByteStore("torn")).outcomes.keys());
  // "2": b0 02 (old first byte, new second byte: movb $2, %al).
  assert.ok(torn.has("2"), [...torn].join(" "));
  // "101": first call old (al = 1), second call b4 01 (new first byte, stale tail:
  // movb $1, %ah), the hazard text_poke_bp's second sync exists for.
  assert.ok(torn.has("101"), [...torn].join(" "));
  for (const o of ["1", "200", "201"]) assert.ok(torn.has(o), o);
  // Neither mix exists when fetches are atomic.
  const coherent = new Set(explore(twoByteStore("coherent")).outcomes.keys());
  assert.deepEqual([...coherent].sort(), ["1", "200", "201"]);
});

Deno.test("textPokeBp() without its second sync (after the tail, before the first byte) runs a wrong instruction in torn mode; with it, never", () => {
  const SEEDS = 8;
  let badWithout = 0;
  let badWith = 0;
  let badCoherent = 0;
  for (let seed = 0; seed < SEEDS; seed++) {
    badWithout += Math.sign(pokeRace(64, seed, "textPokeBp", "torn", 2).bad);
    badWith += Math.sign(pokeRace(64, seed, "textPokeBp", "torn").bad);
    badCoherent += Math.sign(pokeRace(64, seed, "textPokeBp", "coherent", 2).bad);
  }
  console.log(
    `${SEEDS} seeds, torn: ${badWithout} bad without sync 2, ${badWith} with it; coherent without it: ${badCoherent}`,
  );
  assert.ok(badWithout > 0, `dropping sync 2 went unnoticed in ${SEEDS} seeds`);
  assert.equal(badWith, 0);
});

// ---- torn fetch never goes back ----------------------------------------------------------

Deno.test("a CPU in torn mode never executes bytes older than bytes it already executed at that address", () => {
  const D0 = DATA, D1 = DATA + 8n;
  const outcomes = explore(() => ({
    run(policy: SchedulePolicy): string {
      const { m } = smpMachine([
        // Two stores to the immediate of `movb $1, %al`: 1 -> 2 -> 3.
        `movb $0x02, ${SITE + 1n}\n movb $0x03, ${SITE + 1n}\n hlt`,
        // A first call into the page predecodes it (so the stores hit code), then two
        // calls of the site record what each one ran.
        `call ${SITE + 0x20n}\n movl $0, %eax\n call ${SITE}\n movl %eax, ${D0}
         movl $0, %eax\n call ${SITE}\n movl %eax, ${D1}\n hlt`,
      ], { schedule: policy, fetch: "torn" });
      m.load(SITE, [0xb0, 0x01, 0xc3, ...new Array<number>(29).fill(0x90), 0xc3], "rwx");
      const s = m.run({ maxSteps: 10_000 });
      assert.equal(s.kind, "hlt", s.message);
      return `${m.readBytes(D0, 1)[0]},${m.readBytes(D1, 1)[0]}`;
    },
  })).outcomes;
  const keys = [...outcomes.keys()].sort();
  for (const o of keys) {
    const [a, b] = o.split(",").map(Number);
    assert.ok(b! >= a!, `outcome ${o}: the second call ran older bytes (${keys.join(" ")})`);
  }
  // It still moves forward through every version.
  for (const o of ["1,1", "1,2", "1,3", "2,2", "2,3", "3,3"]) assert.ok(keys.includes(o), o);
});

// ---- the sti shadow -----------------------------------------------------------------------

Deno.test("Smp.onEachCpu() runs its function after the instruction following sti, as the IDT path does", () => {
  const prog = `cli\n movl $50, %ecx\n 1: decl %ecx\n jnz 1b\n sti\n nop\n nop\n hlt`;
  // cli (1) + movl (5) + decl (2) + jnz (2): sti at +10, the nop after it at +11.
  const sti = CODE + 0x1000n + 10n;
  let ipCall = -1n;
  {
    const { m } = smpMachine([`1: jmp 1b`, prog], { schedule: roundRobin(1) });
    m.cpus[1]!.setReg("rflags", 0x2n);
    m.smp!.onEachCpu(0, (c) => {
      if (c === 1) ipCall = m.cpus[1]!.rip;
    });
    m.run({ maxSteps: 2000 });
  }
  let ipIdt = -1n;
  {
    const { m } = smpMachine([`1: jmp 1b`, prog], {
      shared: `h: movq (%rsp), %rbx\n iretq`,
      schedule: roundRobin(1),
    });
    m.setGate(0xf0, { handler: SHARED, type: "interrupt", dpl: 0 });
    m.cpus[1]!.setReg("rflags", 0x2n);
    m.sendIpi(-1, 1, 0xf0);
    m.run({ maxSteps: 2000 });
    ipIdt = m.cpus[1]!.getReg("rbx");
  }
  assert.equal(ipIdt, sti + 2n, "the IDT path honours the shadow");
  assert.equal(ipCall, sti + 2n, "the call-function IPI waits for the shadowed nop");
});

// ---- bad senders --------------------------------------------------------------------------

Deno.test("Smp.sendIpi(), sendNmi() and onEachCpu() refuse a sender CPU that does not exist and change nothing", () => {
  const { m } = smpMachine([`1: incl %eax\n jmp 1b`, `hlt`], { schedule: random(1) });
  const state = m.stateHash(), trace = m.traceHash();
  const smp = m.smp!;
  for (const from of [9, 2, -2, 0.5, NaN]) {
    assert.throws(() => smp.sendIpi(from, -1, 0xf0), (e: unknown) => {
      assert.ok(e instanceof MachineError);
      assert.match(e.message, new RegExp(`sender CPU ${from} does not exist`));
      return true;
    });
    assert.throws(() => smp.sendNmi(from, -1), /sender CPU .* does not exist/);
    assert.throws(() => smp.onEachCpu(from, () => {}), /sender CPU .* does not exist/);
  }
  assert.equal(m.stateHash(), state);
  assert.equal(m.traceHash(), trace);
  // The host (-1) and real CPUs are still fine senders.
  smp.onEachCpu(-1, () => {});
  smp.sendIpi(0, 1, 0xf0);
  assert.notEqual(m.stateHash(), state);
});

// ---- seeds and quanta ----------------------------------------------------------------------

Deno.test("random() and roundRobin() refuse a seed that is not a safe integer, and each safe seed has its own sequence", () => {
  for (const bad of [NaN, Infinity, -Infinity, 1.5, 2 ** 53, undefined, "7", 1n] as unknown[]) {
    assert.throws(() => random(bad as number), (e: unknown) => {
      assert.ok(e instanceof MachineError);
      assert.match(e.message, /Seed must be a safe integer/);
      return true;
    }, String(bad));
    // (roundRobin's seed defaults to 0 when undefined.)
    if (bad !== undefined) {
      assert.throws(() => roundRobin(1, bad as number), /Seed must be a safe integer/);
    }
    assert.throws(() => new Prng(bad as number), /Seed must be a safe integer/);
  }
  for (const q of [0, -1, 1.5, NaN, Infinity]) {
    assert.throws(() => random(1, q), /Quantum must be a positive integer/);
    assert.throws(() => roundRobin(q), /Quantum must be a positive integer/);
  }
  const first = (s: number) => {
    const p = new Prng(s);
    return [p.next(), p.next()].join();
  };
  // Seeds 0..2^32-1 keep the sequences they always had: the state is splitmix32 of the
  // seed alone (a reference expansion written here), no high part mixed in.
  const splitmix32 = (seed: number): [number, number, number, number] => {
    let z = seed | 0;
    const next = () => {
      z = (z + 0x9e3779b9) | 0;
      let t = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      t = Math.imul(t ^ (t >>> 13), 0xc2b2ae35);
      return t ^ (t >>> 16);
    };
    return [next(), next(), next(), next()];
  };
  for (const seed of [0, 1, 7, 2 ** 31, 2 ** 32 - 1]) {
    const ref = new Prng(0);
    ref.setState(splitmix32(seed));
    assert.equal(first(seed), [ref.next(), ref.next()].join(), `seed ${seed}`);
  }
  // Outside that range no seed aliases another.
  assert.notEqual(first(-1), first(2 ** 32 - 1));
  assert.notEqual(first(2 ** 32), first(0));
  assert.notEqual(first(2 ** 32 + 1), first(1));
  assert.notEqual(first(-(2 ** 40)), first(0));
  assert.equal(first(-0), first(0));
});

// ---- explorer, replay, scripted --------------------------------------------------------------

const tiny = (): Explorable => ({
  run(p: SchedulePolicy): string {
    p.reset(2);
    p.pick(new Uint8Array([1, 1]), 2, -1);
    return "x";
  },
});

Deno.test("explore() refuses a maxDecisions, maxSchedules or preemption bound that is not an integer in range", () => {
  for (const v of [0, -5, NaN, 1.5]) {
    assert.throws(
      () => explore(tiny, { maxDecisions: v }),
      (e: unknown) => {
        assert.ok(e instanceof MachineError);
        assert.equal(e.message, `maxDecisions must be an integer ≥ 1 (or Infinity), got ${v}`);
        return true;
      },
    );
    assert.throws(() => explore(tiny, { maxSchedules: v }), /maxSchedules must be an integer/);
  }
  for (const v of [-1, NaN, 0.5]) {
    assert.throws(() => explore(tiny, { preemptionBound: v }), /Preemption bound must be/);
  }
  // Infinity is "no limit"; 1 decision is enough here.
  assert.equal(explore(tiny, { maxDecisions: 1 }).schedules, 2);
  assert.equal(explore(tiny, { maxDecisions: Infinity, maxSchedules: Infinity }).schedules, 2);
});

Deno.test("replay() names a decision that does not fit the program instead of calling it nondeterministic", () => {
  assert.throws(
    () => replay([0, -1]),
    /Replayed decision 1 must be a non-negative integer, got -1$/,
  );
  assert.throws(() => replay([0.5]), /Replayed decision 0 must be a non-negative integer/);
  const { m } = smpMachine([`1: jmp 1b`, `1: jmp 1b`], { schedule: replay([5]) });
  assert.throws(() => m.run({ maxSteps: 10 }), (e: unknown) => {
    assert.ok(e instanceof MachineError);
    assert.match(
      e.message,
      /Replayed decision 0 is 5, but that decision point has 2 alternatives/,
    );
    assert.doesNotMatch(e.message, /not deterministic/);
    return true;
  });
});

Deno.test("scripted() refuses an entry that is not a CPU of the machine instead of skipping it", () => {
  assert.throws(() => scripted([0, -1]), /Scripted schedule entry 1 must be a CPU index/);
  assert.throws(() => scripted([0.5]), /Scripted schedule entry 0 must be a CPU index/);
  assert.throws(
    () => smpMachine([`hlt`, `hlt`], { schedule: scripted([1, 7]) }),
    /Scripted schedule entry 1 names CPU 7, but the machine has CPUs 0\.\.1$/,
  );
  // Valid entries still steer the machine.
  const { m } = smpMachine([`hlt`, `hlt`], { schedule: scripted([1, 0]) });
  assert.equal(m.run({ maxSteps: 10 }).kind, "hlt");
});
