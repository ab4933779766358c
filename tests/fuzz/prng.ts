/**
 * The fuzz suite's seeded generator: sfc32 (a small, fast, well-mixed 32-bit PRNG) with
 * the few draws the generators need. A case is fully determined by `(suite seed, index)`
 * through {@link caseSeed}, so any failure can be replayed from the two numbers printed.
 *
 * @module
 */

/** A seeded random source (sfc32). */
export class Rng {
  #a: number;
  #b: number;
  #c: number;
  #d: number;

  /**
   * Creates a generator from a 32-bit seed.
   *
   * @param seed Any integer; only its low 32 bits matter.
   */
  constructor(seed: number) {
    this.#a = 0x9e3779b9;
    this.#b = 0x243f6a88;
    this.#c = 0xb7e15162;
    this.#d = seed | 0;
    for (let i = 0; i < 12; i++) this.u32();
  }

  /**
   * The next 32 random bits.
   *
   * @returns An unsigned 32-bit integer.
   */
  u32(): number {
    const a = this.#a, b = this.#b, c = this.#c, d = this.#d;
    const t = (((a + b) | 0) + d) | 0;
    this.#d = (d + 1) | 0;
    this.#a = b ^ (b >>> 9);
    this.#b = (c + (c << 3)) | 0;
    this.#c = ((c << 21) | (c >>> 11)) + t | 0;
    return t >>> 0;
  }

  /**
   * A uniform integer in `[0, n)`.
   *
   * @param n Exclusive bound (1 to 2^32).
   * @returns The integer.
   */
  int(n: number): number {
    return Math.floor((this.u32() / 4294967296) * n);
  }

  /**
   * True with probability `p`.
   *
   * @param p Probability in [0, 1].
   * @returns The draw.
   */
  chance(p: number): boolean {
    return this.u32() / 4294967296 < p;
  }

  /**
   * One element of a non-empty array.
   *
   * @param items The choices.
   * @returns One of them.
   */
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }

  /**
   * `n` random bytes.
   *
   * @param n Count.
   * @returns The bytes.
   */
  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.u32() & 0xff;
    return out;
  }

  /**
   * A random unsigned 64-bit value.
   *
   * @returns The value.
   */
  u64(): bigint {
    return (BigInt(this.u32()) << 32n) | BigInt(this.u32());
  }
}

/**
 * The seed of case `index` of a run seeded with `seed` (a 32-bit hash of both).
 *
 * @param seed The run's seed.
 * @param index The case number.
 * @returns The case's own seed.
 */
export function caseSeed(seed: number, index: number): number {
  let h = Math.imul(seed ^ 0x5bd1e995, 0x85ebca6b) ^ Math.imul(index + 1, 0xc2b2ae35);
  h ^= h >>> 16;
  h = Math.imul(h, 0x7feb352d);
  h ^= h >>> 15;
  h = Math.imul(h, 0x846ca68b);
  h ^= h >>> 16;
  return h >>> 0;
}
