/**
 * Per-CPU timelines of an SMP run: a bounded ring buffer of plain records and a running
 * trace hash.
 *
 * The hash is updated on every event whether or not the ring is on, so two runs can be
 * compared bit for bit at the cost of two multiplications per word. The ring (off by
 * default) keeps the last `capacity` events in one `Int32Array`, eight words per event,
 * and {@link Trace.records} turns them into plain objects only when asked.
 *
 * @module
 */

import { MachineError } from "../errors.ts";

/** Event kinds, as stored in the ring. */
export const TraceKind = {
  /** An instruction retired: `ip`, `bytes`. */
  RETIRE: 1,
  /** Exception or interrupt delivery: `vector`, `ip` of the interrupted instruction. */
  EXCEPTION_ENTRY: 2,
  /** iret: `ip` of the iret, `target` the ip it returned to. */
  EXCEPTION_EXIT: 3,
  /** IPI sent: `to` the target CPU (-1 for all others), `vector`. */
  IPI_SENT: 4,
  /** IPI taken at an instruction boundary: `vector`. */
  IPI_TAKEN: 5,
  /** NMI delivered. */
  NMI: 6,
  /** A store that hit code (a predecoded frame): `address`, `length`. */
  CODE_STORE: 7,
  /** A serializing event: `reason` (see {@link SerializeReason}). */
  SERIALIZE: 8,
  /** One step of a kernel-thread coroutine: `what` (see {@link ThreadOp}). */
  THREAD: 10,
  /** The first half of a plain store split at a cache line became visible: `address`, `length`. */
  STORE_HALF: 11,
  /**
   * A torn instruction fetch: `ip` is the instruction's physical address (frame * 4096 +
   * offset), `detail` how many leading bytes came from before the concurrent store, or
   * (`b` = 1, the mirror split) how many leading bytes came from after it.
   */
  TORN_FETCH: 12,
} as const;

/** Why a CPU serialized. */
export const SerializeReason = {
  IRET: 1,
  CPUID: 2,
  INTERRUPT: 3,
  SYNC_CORE: 4,
  OTHER: 5,
} as const;

/** What a kernel-thread step did. */
export const ThreadOp = {
  STEP: 0,
  STORE: 1,
  LOAD: 2,
  IPI: 3,
  WAIT: 4,
  DONE: 5,
} as const;

const KIND_NAMES = [
  "",
  "retire",
  "exception-entry",
  "exception-exit",
  "ipi-sent",
  "ipi-taken",
  "nmi",
  "code-store",
  "serialize",
  "",
  "thread",
  "store-half",
  "torn-fetch",
] as const;
const SERIALIZE_NAMES = ["", "iret", "cpuid", "interrupt", "sync_core", "other"] as const;
const THREAD_NAMES = ["step", "store", "load", "ipi", "wait", "done"] as const;

/** A retired instruction. */
export interface RetireRecord {
  /** Global step number of the event. */
  step: number;
  /** CPU index. */
  cpu: number;
  /** Kind. */
  kind: "retire";
  /** Address of the instruction. */
  ip: bigint;
  /**
   * Its bytes as the CPU executed them (at most 16): those of the copy it decoded, so in
   * the `stale` fetch mode the old bytes of a predecoded instruction it still runs after
   * another CPU rewrote it, in `torn` mode the torn mix; otherwise memory at `ip`.
   */
  bytes: number[];
}

/** Exception or interrupt delivery. */
export interface ExceptionEntryRecord {
  /** Global step number of the event. */
  step: number;
  /** CPU index. */
  cpu: number;
  /** Kind. */
  kind: "exception-entry";
  /** The vector (3 for int3, 2 for NMI, 6 for #UD...). */
  vector: number;
  /** ip pushed in the frame. */
  ip: bigint;
}

/** Return from an exception or interrupt (iret). */
export interface ExceptionExitRecord {
  /** Global step number of the event. */
  step: number;
  /** CPU index. */
  cpu: number;
  /** Kind. */
  kind: "exception-exit";
  /** The ip iret returned to. */
  ip: bigint;
}

/** An IPI sent, taken, or an NMI. */
export interface IpiRecord {
  /** Global step number of the event. */
  step: number;
  /** CPU index (the sender for `ipi-sent`, the target otherwise). */
  cpu: number;
  /** Kind. */
  kind: "ipi-sent" | "ipi-taken" | "nmi";
  /** The vector. */
  vector: number;
  /** For `ipi-sent`: the target CPU, -1 for every other CPU. */
  to: number;
}

/** A store to code, or the first visible half of a split plain store. */
export interface StoreRecord {
  /** Global step number of the event. */
  step: number;
  /** CPU index of the writer. */
  cpu: number;
  /** Kind. */
  kind: "code-store" | "store-half";
  /** First byte written. */
  address: bigint;
  /** Number of bytes. */
  length: number;
}

/** A serializing event. */
export interface SerializeRecord {
  /** Global step number of the event. */
  step: number;
  /** CPU index. */
  cpu: number;
  /** Kind. */
  kind: "serialize";
  /** What serialized. */
  reason: "iret" | "cpuid" | "interrupt" | "sync_core" | "other";
}

/** A kernel-thread step, or a torn fetch. */
export interface MiscRecord {
  /** Global step number of the event. */
  step: number;
  /** CPU index. */
  cpu: number;
  /** Kind. */
  kind: "thread" | "torn-fetch";
  /** For `torn-fetch`: the physical address of the torn instruction; else 0. */
  ip: bigint;
  /**
   * Thread step kind (`thread`); for `torn-fetch` the split: `old N` (N leading bytes from
   * before the store, the rest after it) or `new N` (N leading bytes from after it).
   */
  detail: string;
}

/** One plain trace record. */
export type TimelineRecord =
  | RetireRecord
  | ExceptionEntryRecord
  | ExceptionExitRecord
  | IpiRecord
  | StoreRecord
  | SerializeRecord
  | MiscRecord;

/** Words per ring slot: kind|cpu<<8|len<<16, step, lo, hi, 4 payload words. */
const W = 8;

function toBig(lo: number, hi: number): bigint {
  return (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
}

/**
 * The trace of one machine: a running 64-bit hash of every event, and an optional ring
 * buffer of the last events.
 *
 * Hash: two independent 32-bit lanes over the event words. Lane A is FNV-1a applied to
 * whole 32-bit words (`h = (h ^ w) * 16777619`, basis 0x811c9dc5); lane B is
 * `h = rotl(h ^ w, 13) * 0x5bd1e995 + 0x6b43a9b5`, basis 0x2545f491. Not cryptographic:
 * it tells two runs apart, it does not resist an adversary.
 *
 * @example Same events, same hash
 * ```ts
 * import { Trace } from "./trace.ts";
 * const a = new Trace(), b = new Trace();
 * a.retire(0, 0x1000, 0, null, 0, 1);
 * b.retire(0, 0x1000, 0, null, 0, 1);
 * if (a.hash() !== b.hash()) throw new Error("differs");
 * ```
 */
export class Trace {
  /**
   * The two hash lanes, A then B (a typed array: int32 values outside the small-integer
   * range would be boxed in object fields, on every instruction).
   */
  readonly lanes: Int32Array = Int32Array.of(0x811c9dc5 | 0, 0x2545f491 | 0);
  /** Events seen (hashed), whether or not recorded. */
  events = 0;
  /** Step number stamped on records (the machine sets it). */
  step = 0;
  /** Ring capacity in events; 0 when the ring is off. */
  readonly capacity: number;
  #ring: Int32Array;
  #head = 0;
  #count = 0;

  /**
   * Creates a trace (the hash always runs; the ring only with a capacity).
   *
   * @param capacity Number of events the ring keeps (0 = ring off, hash only).
   */
  constructor(capacity = 0) {
    if (!Number.isInteger(capacity) || capacity < 0 || capacity > 1 << 24) {
      throw new MachineError(`Trace capacity must be an integer in 0..16777216, got ${capacity}`);
    }
    this.capacity = capacity;
    this.#ring = new Int32Array(capacity * W);
  }

  /** Clears the ring and resets the hash. */
  clear(): void {
    this.lanes[0] = 0x811c9dc5 | 0;
    this.lanes[1] = 0x2545f491 | 0;
    this.events = 0;
    this.step = 0;
    this.#head = 0;
    this.#count = 0;
  }

  /**
   * Mixes one 32-bit word into both hash lanes.
   *
   * @param w The word.
   */
  mix(w: number): void {
    const h = this.lanes;
    h[0] = Math.imul(h[0]! ^ w, 16777619);
    const x = h[1]! ^ w;
    h[1] = Math.imul((x << 13) | (x >>> 19), 0x5bd1e995) + 0x6b43a9b5;
  }

  /**
   * The trace hash: 16 hex digits (lane A then lane B).
   *
   * @returns The hash as a hex string.
   */
  hash(): string {
    return (this.lanes[0]! >>> 0).toString(16).padStart(8, "0") +
      (this.lanes[1]! >>> 0).toString(16).padStart(8, "0");
  }

  #slot(kind: number, cpu: number, len: number, lo: number, hi: number): number {
    const o = this.#head * W;
    const r = this.#ring;
    r[o] = kind | (cpu << 8) | (len << 16);
    r[o + 1] = this.step;
    r[o + 2] = lo;
    r[o + 3] = hi;
    r[o + 4] = 0;
    r[o + 5] = 0;
    r[o + 6] = 0;
    r[o + 7] = 0;
    if (++this.#head === this.capacity) this.#head = 0;
    if (this.#count < this.capacity) this.#count++;
    return o;
  }

  /**
   * Records a retired instruction (the hot path: one word into each hash lane, plus the
   * ring when on). The hash takes the low 32 bits of the address and the CPU.
   *
   * @param cpu CPU index.
   * @param ipLo Low 32 bits of its address.
   * @param ipHi High 32 bits of its address (ring only).
   * @param bytes Where its bytes are (only read when the ring is on), or null.
   * @param offset Offset of the first byte in `bytes`.
   * @param len Its length.
   */
  retire(
    cpu: number,
    ipLo: number,
    ipHi: number,
    bytes: Uint8Array | null,
    offset: number,
    len: number,
  ): void {
    this.events++;
    // Inlined mix() of ipLo ^ cpu * golden ratio (kind RETIRE is implied).
    const w = ipLo ^ Math.imul(cpu + 1, 0x9e3779b1);
    const h = this.lanes;
    h[0] = Math.imul(h[0]! ^ w, 16777619);
    const x = h[1]! ^ w;
    h[1] = Math.imul((x << 13) | (x >>> 19), 0x5bd1e995) + 0x6b43a9b5;
    if (this.capacity === 0) return;
    const o = this.#slot(TraceKind.RETIRE, cpu, len, ipLo, ipHi);
    if (bytes !== null) {
      const r = this.#ring;
      const n = len < 16 ? len : 16;
      for (let i = 0; i < n; i++) {
        const k = o + 4 + (i >> 2);
        r[k] = r[k]! | ((bytes[offset + i]! & 0xff) << ((i & 3) * 8));
      }
    }
  }

  /**
   * Records any other event: hashed as three words, kept in the ring when on.
   *
   * @param kind One of {@link TraceKind}.
   * @param cpu CPU index.
   * @param lo Low 32 bits of the address (or 0).
   * @param hi High 32 bits of the address (or 0).
   * @param a First payload word (vector, target CPU, length, reason...).
   * @param b Second payload word.
   */
  event(kind: number, cpu: number, lo: number, hi: number, a = 0, b = 0): void {
    this.events++;
    this.mix(kind | (cpu << 8) | (a << 16));
    this.mix(lo ^ b);
    this.mix(hi);
    if (this.capacity === 0) return;
    const o = this.#slot(kind, cpu, 0, lo, hi);
    this.#ring[o + 4] = a;
    this.#ring[o + 5] = b;
  }

  /** Number of records currently in the ring. */
  get size(): number {
    return this.#count;
  }

  /**
   * The records in the ring, oldest first, as plain objects.
   *
   * @param cpu Only this CPU's records (default: all).
   * @returns The records.
   */
  records(cpu?: number): TimelineRecord[] {
    const out: TimelineRecord[] = [];
    const r = this.#ring;
    const start = (this.#head - this.#count + this.capacity) % (this.capacity || 1);
    for (let n = 0; n < this.#count; n++) {
      const o = ((start + n) % this.capacity) * W;
      const head = r[o]!;
      const kind = head & 0xff, c = (head >>> 8) & 0xff, len = head >>> 16;
      if (cpu !== undefined && c !== cpu) continue;
      const step = r[o + 1]!, lo = r[o + 2]!, hi = r[o + 3]!;
      const a = r[o + 4]!, b = r[o + 5]!;
      const addr = toBig(lo, hi);
      switch (kind) {
        case TraceKind.RETIRE: {
          const bytes: number[] = [];
          for (let i = 0; i < len && i < 16; i++) {
            bytes.push((r[o + 4 + (i >> 2)]! >>> ((i & 3) * 8)) & 0xff);
          }
          out.push({ step, cpu: c, kind: "retire", ip: addr, bytes });
          break;
        }
        case TraceKind.EXCEPTION_ENTRY:
          out.push({ step, cpu: c, kind: "exception-entry", vector: a, ip: addr });
          break;
        case TraceKind.EXCEPTION_EXIT:
          out.push({ step, cpu: c, kind: "exception-exit", ip: addr });
          break;
        case TraceKind.IPI_SENT:
        case TraceKind.IPI_TAKEN:
        case TraceKind.NMI:
          out.push({
            step,
            cpu: c,
            kind: KIND_NAMES[kind] as "ipi-sent" | "ipi-taken" | "nmi",
            vector: a,
            to: b,
          });
          break;
        case TraceKind.CODE_STORE:
        case TraceKind.STORE_HALF:
          out.push({
            step,
            cpu: c,
            kind: KIND_NAMES[kind] as "code-store" | "store-half",
            address: addr,
            length: a,
          });
          break;
        case TraceKind.SERIALIZE:
          out.push({
            step,
            cpu: c,
            kind: "serialize",
            reason: SERIALIZE_NAMES[a] === "" || SERIALIZE_NAMES[a] === undefined
              ? "other"
              : SERIALIZE_NAMES[a] as SerializeRecord["reason"],
          });
          break;
        default:
          out.push({
            step,
            cpu: c,
            kind: kind === TraceKind.THREAD ? "thread" : "torn-fetch",
            ip: addr,
            detail: kind === TraceKind.THREAD
              ? (THREAD_NAMES[a] ?? String(a))
              : `${b === 1 ? "new" : "old"} ${a}`,
          });
      }
    }
    return out;
  }
}
