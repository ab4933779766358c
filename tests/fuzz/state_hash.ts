/**
 * The tests' state hash: {@link Machine.stateHash} (the library's hash of everything
 * observable in a machine, its SMP layer included) plus, when given, a kernel patcher's
 * state and any other plain data.
 *
 * @module
 */

import type { Machine } from "../../lib/machine/machine.ts";
import type { Smp } from "../../lib/machine/smp.ts";
import type { TextPatcher } from "../../lib/kernel/text_poke.ts";

/** What else to fold into {@link stateHash}. */
export interface StateHashExtras {
  /** An SMP layer not attached to the machine (the machine's own is always included). */
  smp?: Smp | null;
  /** A kernel's patcher: whether a batch is in flight, and its counters. */
  patcher?: TextPatcher;
  /** Anything else (kernel events, registered ops...) as plain JSON-able data. */
  other?: unknown;
}

/**
 * Hashes the whole observable state of a machine and the extras.
 *
 * @param m The machine.
 * @param extras Patcher and other state to include.
 * @returns 16 hex digits.
 */
export function stateHash(m: Machine, extras: StateHashExtras = {}): string {
  const smp = extras.smp && extras.smp !== m.smp
    ? {
      trace: extras.smp.trace.hash(),
      steps: extras.smp.steps,
      cpus: Array.from({ length: extras.smp.cpuCount }, (_, c) => [
        extras.smp!.isStopped(c),
        extras.smp!.nmiBlocked(c),
        extras.smp!.hasPendingCode(c),
      ]),
    }
    : undefined;
  const p = extras.patcher;
  const patcher = p
    ? {
      inProgress: p.inProgress,
      emulated: p.stats.emulated,
      batches: p.stats.batches,
      sites: p.stats.sites,
    }
    : undefined;
  if (smp === undefined && patcher === undefined && extras.other === undefined) {
    return m.stateHash();
  }
  return m.stateHash({ smp, patcher, other: extras.other });
}
