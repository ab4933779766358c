/**
 * Scheduling policies: which CPU of an SMP machine steps next.
 *
 * The machine interleaves its CPUs one scheduling step at a time (one retired
 * instruction, one delivered interrupt, one step of a kernel-thread coroutine, one half
 * of a store split at a cache line) and asks a {@link SchedulePolicy} before every
 * step. Every other nondeterministic decision of the machine (where a torn instruction
 * fetch splits, for instance) also goes through the policy's {@link SchedulePolicy.choose},
 * so a run is a pure function of the program, the policy and its seed: same inputs, same
 * trace hash, bit for bit.
 *
 * Three families:
 * - {@link roundRobin}: CPUs in index order, `quantum` steps each;
 * - {@link random}: a seeded PRNG ({@link Prng}, xoshiro128**) picks each quantum's CPU;
 * - {@link explore}: bounded exhaustive exploration, which re-runs a small program once
 *   per schedule and enumerates every interleaving (and every {@link SchedulePolicy.choose}
 *   alternative) up to a preemption bound.
 *
 * @module
 */

import { MachineError } from "../errors.ts";

/**
 * A scheduling policy, driven by the machine. Policies are plain objects with mutable
 * state: {@link SchedulePolicy.reset} puts them back at the start of their sequence.
 */
export interface SchedulePolicy {
  /** Short description, e.g. `random(42, quantum 1)`. */
  readonly name: string;
  /**
   * Starts (or restarts) the sequence of decisions for a machine of `cpuCount` CPUs.
   *
   * @param cpuCount Number of CPUs of the machine (1–64).
   */
  reset(cpuCount: number): void;
  /**
   * Picks the CPU that takes the next scheduling step.
   *
   * @param runnable One flag per CPU: 1 when that CPU can step now.
   * @param count Number of flags set in `runnable` (at least 1).
   * @param last The CPU that took the previous step, -1 before the first one; it may
   *   no longer be runnable.
   * @returns The index of a runnable CPU.
   */
  pick(runnable: Uint8Array, count: number, last: number): number;
  /**
   * Makes a nondeterministic choice of the machine other than "which CPU".
   *
   * @param n Number of alternatives (at least 1).
   * @returns An integer in `[0, n)`; 0 is the "least surprising" alternative.
   */
  choose(n: number): number;
}

// ---------------------------------------------------------------------------------------
// PRNG

/**
 * A small seeded pseudo-random generator: xoshiro128** (Blackman and Vigna, 2018) on four
 * 32-bit words of state, seeded by running splitmix32 on the seed. Period 2^128 - 1,
 * 32-bit outputs, no allocation. It is ours so that results never depend on the host's
 * `Math.random`.
 *
 * @example Same seed, same numbers
 * ```ts
 * import { Prng } from "./schedule.ts";
 * const a = new Prng(7), b = new Prng(7);
 * if (a.next() !== b.next()) throw new Error("not deterministic");
 * ```
 */
export class Prng {
  /**
   * The four 32-bit state words (a typed array: int32 values outside the small-integer
   * range would be boxed in object fields).
   */
  readonly state: Int32Array = new Int32Array(4);
  /**
   * Outputs are generated 64 at a time into this buffer (the same sequence as one at a
   * time): a scheduler's pick then does not wait on the generator's dependency chain.
   */
  readonly #buf: Int32Array = new Int32Array(64);
  #pos = 64;

  /**
   * Creates a generator seeded with `seed`.
   *
   * @param seed A safe integer (see {@link Prng.seed}).
   * @throws {MachineError} When `seed` is not a safe integer.
   */
  constructor(seed: number) {
    this.seed(seed);
  }

  /**
   * Re-seeds the generator: splitmix32 expands the seed's low 32 bits into the 128-bit
   * state (never all zero, which xoshiro cannot leave); the high bits of a seed outside
   * 0..2^32-1 go through a second splitmix32 stream xored in, so every safe integer has
   * its own sequence (`-1` and `2 ** 32 - 1` differ) and seeds 0..2^32-1 keep theirs.
   *
   * @param seed A safe integer (`Number.isSafeInteger`), negative ones included.
   * @throws {MachineError} When `seed` is not a safe integer (NaN, ±Infinity, 1.5,
   *   2 ** 53, a string...).
   */
  seed(seed: number): void {
    if (!Number.isSafeInteger(seed)) {
      throw new MachineError(
        `Seed must be a safe integer (|seed| < 2^53), got ${describe(seed)}`,
      );
    }
    let z = seed | 0;
    // The high part: 0 for 0..2^32-1, otherwise floor(seed / 2^32) in -2^21..2^21.
    let y = Math.floor(seed / 4294967296) | 0;
    const high = y !== 0;
    const out = [0, 0, 0, 0];
    for (let i = 0; i < 4; i++) {
      // splitmix32: golden-ratio increment, then two xorshift-multiply rounds.
      z = (z + 0x9e3779b9) | 0;
      let t = z;
      t = Math.imul(t ^ (t >>> 16), 0x85ebca6b);
      t = Math.imul(t ^ (t >>> 13), 0xc2b2ae35);
      out[i] = t ^ (t >>> 16);
      if (high) {
        y = (y + 0x7f4a7c15) | 0;
        let u = y ^ 0x5bd1e995;
        u = Math.imul(u ^ (u >>> 16), 0x85ebca6b);
        u = Math.imul(u ^ (u >>> 13), 0xc2b2ae35);
        out[i] = out[i]! ^ u ^ (u >>> 16);
      }
    }
    const st = this.state;
    st.set(out);
    if ((st[0]! | st[1]! | st[2]! | st[3]!) === 0) st[0] = 1;
    this.#pos = 64;
  }

  /**
   * Sets the raw 128-bit state (not all zero), e.g. to check known answers of
   * xoshiro128**; the next output is computed from it.
   *
   * @param words Four 32-bit state words, s0 first.
   */
  setState(words: readonly [number, number, number, number]): void {
    if ((words[0] | words[1] | words[2] | words[3]) === 0) {
      throw new MachineError("The xoshiro128** state must not be all zero");
    }
    this.state.set(words);
    this.#pos = 64;
  }

  /** Generates the next 64 outputs of xoshiro128** into the buffer. */
  #refill(): void {
    const st = this.state, buf = this.#buf;
    let s0 = st[0]!, s1 = st[1]!, s2 = st[2]!, s3 = st[3]!;
    for (let i = 0; i < 64; i++) {
      // result = rotl(s1 * 5, 7) * 9
      const m = Math.imul(s1, 5);
      buf[i] = Math.imul((m << 7) | (m >>> 25), 9);
      const t = s1 << 9;
      s2 ^= s0;
      s3 ^= s1;
      s1 ^= s2;
      s0 ^= s3;
      s2 ^= t;
      s3 = (s3 << 11) | (s3 >>> 21);
    }
    st[0] = s0;
    st[1] = s1;
    st[2] = s2;
    st[3] = s3;
    this.#pos = 0;
  }

  /**
   * Returns the next 32-bit output.
   *
   * @returns An unsigned 32-bit integer.
   */
  next(): number {
    if (this.#pos === 64) this.#refill();
    return this.#buf[this.#pos++]! >>> 0;
  }

  /**
   * Returns an integer in `[0, n)` for small n (≤ 65536) from the top 16 bits of the
   * next output, in integer arithmetic only (the scheduler's hot path).
   *
   * @param n Exclusive upper bound, 1 ≤ n ≤ 65536.
   * @returns An integer in `[0, n)`.
   */
  small(n: number): number {
    if (this.#pos === 64) this.#refill();
    return ((this.#buf[this.#pos++]! >>> 16) * n) >>> 16;
  }

  /**
   * Returns an integer in `[0, n)`, by multiply-high of the next output (bias below
   * n / 2^32, irrelevant for the small n of scheduling).
   *
   * @param n Exclusive upper bound, 1 ≤ n ≤ 2^32.
   * @returns An integer in `[0, n)`.
   */
  below(n: number): number {
    return Math.floor(this.next() * n / 4294967296);
  }
}

// ---------------------------------------------------------------------------------------
// Policies

/** A value for an error message (strings quoted, bigints with their n). */
function describe(v: unknown): string {
  if (typeof v === "string") return JSON.stringify(v);
  if (typeof v === "bigint") return `${v}n`;
  return String(v);
}

function checkQuantum(quantum: number): void {
  if (!Number.isSafeInteger(quantum) || quantum < 1) {
    throw new MachineError(`Quantum must be a positive integer, got ${describe(quantum)}`);
  }
}

/** The k-th runnable CPU (0-based k) in index order. */
function nthRunnable(runnable: Uint8Array, k: number): number {
  for (let i = 0; i < runnable.length; i++) {
    if (runnable[i] && k-- === 0) return i;
  }
  throw new MachineError(`Schedule asked for runnable CPU ${k} that does not exist`);
}

class RoundRobin implements SchedulePolicy {
  readonly name: string;
  readonly #quantum: number;
  readonly #prng: Prng;
  readonly #seed: number;
  #left = 0;

  constructor(quantum: number, seed: number) {
    checkQuantum(quantum);
    this.#quantum = quantum;
    this.#seed = seed;
    this.#prng = new Prng(seed);
    this.name = `roundRobin(${quantum})`;
  }

  reset(): void {
    this.#left = 0;
    this.#prng.seed(this.#seed);
  }

  pick(runnable: Uint8Array, _count: number, last: number): number {
    if (last >= 0 && this.#left > 0 && runnable[last]) {
      this.#left--;
      return last;
    }
    const n = runnable.length;
    for (let k = 1; k <= n; k++) {
      const i = (last + k) % n;
      if (runnable[i]) {
        this.#left = this.#quantum - 1;
        return i;
      }
    }
    throw new MachineError("Schedule found no runnable CPU");
  }

  choose(n: number): number {
    return n <= 1 ? 0 : this.#prng.below(n);
  }
}

/**
 * Round-robin scheduling: each runnable CPU in index order takes `quantum` consecutive
 * steps (fewer if it stops being runnable). Choices other than "which CPU" (see
 * {@link SchedulePolicy.choose}) come from a {@link Prng} seeded with `seed`.
 *
 * @param quantum Steps per turn, a positive integer (1 = strict alternation).
 * @param seed Seed of the PRNG behind {@link SchedulePolicy.choose}, a safe integer
 *   (default 0).
 * @returns A fresh policy.
 * @throws {MachineError} When `quantum` is not a positive integer or `seed` not a safe
 *   integer.
 * @example Alternate two CPUs instruction by instruction
 * ```ts
 * import { roundRobin } from "./schedule.ts";
 * const p = roundRobin(1);
 * p.reset(2);
 * const all = new Uint8Array([1, 1]);
 * const order = [p.pick(all, 2, -1), p.pick(all, 2, 0), p.pick(all, 2, 1)];
 * if (order.join() !== "0,1,0") throw new Error(order.join());
 * ```
 */
export function roundRobin(quantum = 1, seed = 0): SchedulePolicy {
  return new RoundRobin(quantum, seed);
}

/** The PRNG state lives in the policy itself (one object, no call on the hot path). */
class RandomPolicy extends Prng implements SchedulePolicy {
  readonly name: string;
  readonly quantum: number;
  readonly seedValue: number;
  left = 0;

  constructor(seed: number, quantum: number) {
    checkQuantum(quantum);
    super(seed);
    this.seedValue = seed;
    this.quantum = quantum;
    this.name = `random(${seed}, quantum ${quantum})`;
  }

  reset(): void {
    this.left = 0;
    this.seed(this.seedValue);
  }

  pick(runnable: Uint8Array, count: number, last: number): number {
    if (this.quantum !== 1) {
      if (this.left > 0 && last >= 0 && runnable[last] === 1) {
        this.left--;
        return last;
      }
      this.left = this.quantum - 1;
    }
    const k = this.small(count);
    return count === runnable.length ? k : nthRunnable(runnable, k);
  }

  choose(n: number): number {
    return n <= 1 ? 0 : this.below(n);
  }
}

/**
 * Random scheduling: every `quantum` steps, a {@link Prng} seeded with `seed` picks one
 * of the runnable CPUs uniformly (possibly the same one again). The same PRNG answers
 * {@link SchedulePolicy.choose}.
 *
 * @param seed The seed: a safe integer, negative ones included (each seed has its own
 *   sequence, see {@link Prng.seed}).
 * @param quantum Steps per pick (default 1: a fresh pick before every step).
 * @returns A fresh policy.
 * @throws {MachineError} When `seed` is not a safe integer or `quantum` not a positive
 *   integer.
 * @example Two policies with one seed agree
 * ```ts
 * import { random } from "./schedule.ts";
 * const a = random(42), b = random(42);
 * a.reset(4);
 * b.reset(4);
 * const all = new Uint8Array([1, 1, 1, 1]);
 * if (a.pick(all, 4, -1) !== b.pick(all, 4, -1)) throw new Error("differs");
 * ```
 */
export function random(seed: number, quantum = 1): SchedulePolicy {
  return new RandomPolicy(seed, quantum);
}

class Scripted implements SchedulePolicy {
  readonly name: string;
  readonly #cpus: readonly number[];
  readonly #then: SchedulePolicy;
  #pos = 0;

  constructor(cpus: readonly number[], then: SchedulePolicy) {
    cpus.forEach((c, i) => {
      if (!Number.isInteger(c) || c < 0 || c > 63) {
        throw new MachineError(
          `Scripted schedule entry ${i} must be a CPU index (an integer in 0..63), got ${
            describe(c)
          }`,
        );
      }
    });
    this.#cpus = cpus.slice();
    this.#then = then;
    this.name = `scripted(${cpus.length} steps, then ${then.name})`;
  }

  reset(cpuCount: number): void {
    const bad = this.#cpus.findIndex((c) => c >= cpuCount);
    if (bad >= 0) {
      throw new MachineError(
        `Scripted schedule entry ${bad} names CPU ${this.#cpus[bad]}, but the machine has CPUs 0..${
          cpuCount - 1
        }`,
      );
    }
    this.#pos = 0;
    this.#then.reset(cpuCount);
  }

  pick(runnable: Uint8Array, count: number, last: number): number {
    while (this.#pos < this.#cpus.length) {
      const c = this.#cpus[this.#pos++]!;
      if (runnable[c]) return c;
    }
    return this.#then.pick(runnable, count, last);
  }

  choose(n: number): number {
    return this.#then.choose(n);
  }
}

/**
 * A scripted schedule: the listed CPUs step in that order (an entry naming a CPU that is
 * not runnable at that moment is skipped), then `then` takes over. Handy for directed
 * tests ("CPU 1 runs three instructions, then CPU 0 stores").
 *
 * @param cpus CPU indices, one per step.
 * @param then The policy after the script (default {@link roundRobin}(1)).
 * @returns A fresh policy.
 * @throws {MachineError} When an entry is not an integer CPU index (here), or names a
 *   CPU the machine does not have (when a machine resets the policy).
 */
export function scripted(
  cpus: readonly number[],
  then: SchedulePolicy = roundRobin(1),
): SchedulePolicy {
  return new Scripted(cpus, then);
}

// ---------------------------------------------------------------------------------------
// Bounded exhaustive exploration

/** A small program the explorer can run once per schedule. */
export interface Explorable {
  /**
   * Runs the program to its end, asking `policy` for every decision, and returns its
   * outcome as a string key (e.g. `"r0=1 r1=0"`). Must be deterministic given the
   * policy's answers.
   *
   * @param policy The policy to obey (a replaying policy built by {@link explore}).
   * @returns The outcome key.
   */
  run(policy: SchedulePolicy): string;
}

/** Options of {@link explore}. */
export interface ExploreOptions {
  /**
   * Most preemptions per schedule: switching away from a CPU that could have stepped
   * again costs one; switching when it could not (it halted, waits, ended) is free, and
   * so are {@link SchedulePolicy.choose} alternatives. Default `Infinity` (every
   * interleaving).
   */
  preemptionBound?: number;
  /** Stop after this many schedules (default 100,000): `complete` is then false. */
  maxSchedules?: number;
  /** Most decisions one run may take (default 1,000,000) before the run is refused. */
  maxDecisions?: number;
}

/** What {@link explore} found. */
export interface ExploreResult {
  /** Number of schedules run (distinct decision sequences). */
  schedules: number;
  /** Outcome key → number of schedules that produced it. */
  outcomes: Map<string, number>;
  /** For each outcome, the decisions of the first schedule that produced it (see {@link replay}). */
  witnesses: Map<string, number[]>;
  /** True when every schedule within the bound was run. */
  complete: boolean;
  /** `"exhausted"` when complete, `"schedule cap"` when `maxSchedules` stopped it. */
  stopReason: "exhausted" | "schedule cap";
  /** Largest number of decisions one run took. */
  maxDepth: number;
}

/** One recorded decision point of a run under exploration. */
interface Point {
  chosen: number;
  count: number;
  /** Picking any alternative but 0 costs one preemption. */
  costly: boolean;
}

/**
 * Replays a decision prefix, then takes alternative 0 (keep running the same CPU; the
 * first `choose` alternative) and records every decision point.
 *
 * Alternatives of a pick are ordered: the last CPU first if it is still runnable (so 0
 * means "no preemption"), then the other runnable CPUs in index order.
 */
class ReplayPolicy implements SchedulePolicy {
  readonly name = "replay";
  readonly points: Point[] = [];
  readonly #prefix: readonly number[];
  readonly #maxDecisions: number;
  /** A user's {@link replay} (not the explorer's own replay). */
  readonly #user: boolean;

  constructor(prefix: readonly number[], maxDecisions: number, user = false) {
    this.#prefix = prefix;
    this.#maxDecisions = maxDecisions;
    this.#user = user;
  }

  reset(): void {
    this.points.length = 0;
  }

  #decide(count: number, costly: boolean): number {
    const i = this.points.length;
    if (i >= this.#maxDecisions) {
      throw new MachineError(
        `Explored run took more than ${this.#maxDecisions} decisions; the program is too long to explore`,
      );
    }
    let chosen = 0;
    if (i < this.#prefix.length) {
      chosen = this.#prefix[i]!;
      if (chosen >= count && this.#user) {
        throw new MachineError(
          `Replayed decision ${i} is ${chosen}, but that decision point has ${count} alternatives (0..${
            count - 1
          }): the decisions do not belong to this program`,
        );
      }
      if (chosen >= count) {
        throw new MachineError(
          `Explored program is not deterministic: decision ${i} had ${count} alternatives on replay, needed ${
            chosen + 1
          }`,
        );
      }
    }
    this.points.push({ chosen, count, costly });
    return chosen;
  }

  pick(runnable: Uint8Array, count: number, last: number): number {
    const lastRuns = last >= 0 && runnable[last] === 1;
    if (count === 1) {
      // Not a decision: record nothing, so forced steps do not deepen the tree.
      return lastRuns ? last : nthRunnable(runnable, 0);
    }
    const k = this.#decide(count, lastRuns);
    if (lastRuns) {
      if (k === 0) return last;
      // Alternatives 1.. are the other runnable CPUs in index order.
      let j = k - 1;
      for (let i = 0; i < runnable.length; i++) {
        if (i !== last && runnable[i] && j-- === 0) return i;
      }
      throw new MachineError(`Replayed pick ${k} is out of range: ${count} CPUs are runnable`);
    }
    return nthRunnable(runnable, k);
  }

  choose(n: number): number {
    return n <= 1 ? 0 : this.#decide(n, false);
  }
}

/** An integer ≥ `min`, or Infinity (no limit). */
function checkCount(what: string, v: number, min: number): void {
  if (typeof v !== "number" || !(v >= min) || !(Number.isInteger(v) || v === Infinity)) {
    throw new MachineError(
      `${what} must be an integer ≥ ${min} (or Infinity), got ${describe(v)}`,
    );
  }
}

/**
 * A policy that replays decisions recorded by {@link explore} (its `witnesses`), then
 * goes on without preempting. Use it to re-run one interesting schedule with tracing on.
 *
 * @param decisions The decision indices, as in {@link ExploreResult.witnesses}.
 * @returns A fresh policy.
 * @throws {MachineError} When a decision is not a non-negative integer (here), or is
 *   out of range at its decision point (during the run).
 */
export function replay(decisions: readonly number[]): SchedulePolicy {
  decisions.forEach((d, i) => {
    if (!Number.isSafeInteger(d) || d < 0) {
      throw new MachineError(
        `Replayed decision ${i} must be a non-negative integer, got ${describe(d)}`,
      );
    }
  });
  return new ReplayPolicy(decisions.slice(), Number.MAX_SAFE_INTEGER, true);
}

/**
 * Bounded exhaustive exploration: runs the program made by `setup` once per schedule
 * and enumerates every schedule whose number of preemptions stays within the bound,
 * collecting the set of outcomes.
 *
 * Stateless depth-first search by replay (as in CHESS): each run follows a prefix of
 * decisions, then runs without preempting, recording how many alternatives each decision
 * point had; the next prefix bumps the deepest decision that still has an unexplored
 * alternative within the bound. Every decision sequence is run exactly once, so
 * `schedules` counts distinct interleavings (times distinct `choose` answers). Steps
 * where only one CPU can run are not decisions.
 *
 * @param setup Builds a fresh program (machine, memory, registers) for each schedule.
 * @param options Bound and caps.
 * @returns Schedules run, outcome counts and a witness schedule per outcome.
 * @throws {MachineError} When a bound or cap is not an integer in range (or Infinity),
 *   or when the program is not deterministic or takes more than `maxDecisions`.
 * @example Store buffering has three sequentially consistent outcomes
 * ```ts
 * import { explore } from "./schedule.ts";
 * const r = explore(() => ({
 *   run(p) {
 *     const mem = { x: 0, y: 0 }, out = [-1, -1], pc = [0, 0];
 *     const prog = [
 *       [() => { mem.x = 1; }, () => { out[0] = mem.y; }],
 *       [() => { mem.y = 1; }, () => { out[1] = mem.x; }],
 *     ];
 *     p.reset(2);
 *     let last = -1;
 *     while (pc[0]! < 2 || pc[1]! < 2) {
 *       const runnable = new Uint8Array([pc[0]! < 2 ? 1 : 0, pc[1]! < 2 ? 1 : 0]);
 *       last = p.pick(runnable, runnable[0]! + runnable[1]!, last);
 *       prog[last]![pc[last]!++]!();
 *     }
 *     return out.join();
 *   },
 * }));
 * if (r.schedules !== 6 || r.outcomes.has("0,0")) throw new Error("not SC");
 * ```
 */
export function explore(setup: () => Explorable, options: ExploreOptions = {}): ExploreResult {
  const bound = options.preemptionBound ?? Infinity;
  const maxSchedules = options.maxSchedules ?? 100_000;
  const maxDecisions = options.maxDecisions ?? 1_000_000;
  checkCount("Preemption bound", bound, 0);
  checkCount("maxSchedules", maxSchedules, 1);
  checkCount("maxDecisions", maxDecisions, 1);
  const outcomes = new Map<string, number>();
  const witnesses = new Map<string, number[]>();
  let prefix: number[] = [];
  let schedules = 0;
  let maxDepth = 0;
  for (;;) {
    if (schedules >= maxSchedules) {
      return {
        schedules,
        outcomes,
        witnesses,
        complete: false,
        stopReason: "schedule cap",
        maxDepth,
      };
    }
    const policy = new ReplayPolicy(prefix, maxDecisions);
    const outcome = setup().run(policy);
    schedules++;
    const points = policy.points;
    if (points.length < prefix.length) {
      throw new MachineError(
        `Explored program is not deterministic: replay ended after ${points.length} of ${prefix.length} decisions`,
      );
    }
    if (points.length > maxDepth) maxDepth = points.length;
    outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
    if (!witnesses.has(outcome)) witnesses.set(outcome, points.map((p) => p.chosen));
    // Preemptions used before each point.
    const before = new Array<number>(points.length);
    let used = 0;
    for (let i = 0; i < points.length; i++) {
      before[i] = used;
      const p = points[i]!;
      if (p.costly && p.chosen !== 0) used++;
    }
    let next = -1;
    for (let i = points.length - 1; i >= 0; i--) {
      const p = points[i]!;
      if (p.chosen + 1 < p.count && before[i]! + (p.costly ? 1 : 0) <= bound) {
        next = i;
        break;
      }
    }
    if (next < 0) {
      return { schedules, outcomes, witnesses, complete: true, stopReason: "exhausted", maxDepth };
    }
    prefix = points.slice(0, next).map((p) => p.chosen);
    prefix.push(points[next]!.chosen + 1);
  }
}
