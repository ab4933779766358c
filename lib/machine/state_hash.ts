/**
 * A hash of everything observable in a machine: every CPU's registers, flags, selectors,
 * privilege, CR2, TSS, halt state, step count and queued interrupts; the page table
 * (virtual page, frame, permissions) and the contents of every mapped frame; the IDT and
 * the native bindings; and, when the machine has its SMP layer, that layer's trace hash,
 * step count and per-CPU stopped / NMI / stale-code / thread state.
 *
 * It is what "after the error the machine is exactly as before" means in the tests, and
 * a cheap determinism check: two runs with the same program, policy and seed end with the
 * same hash.
 *
 * @module
 */

import type { Machine } from "./machine.ts";

/** Two-lane 32-bit hash (FNV-1a and a murmur-style lane), 16 hex digits. */
class Hasher {
  a = 0x811c9dc5 | 0;
  b = 0x2545f491 | 0;
  word(w: number): void {
    this.a = Math.imul(this.a ^ (w | 0), 16777619);
    const x = this.b ^ (w | 0);
    this.b = (Math.imul((x << 13) | (x >>> 19), 0x5bd1e995) + 0x6b43a9b5) | 0;
  }
  num(n: number): void {
    if (Number.isInteger(n)) {
      this.word(n % 4294967296);
      this.word(Math.floor(n / 4294967296));
    } else this.str(String(n));
  }
  big(v: bigint): void {
    this.word(Number(BigInt.asUintN(32, v)));
    this.word(Number(BigInt.asUintN(32, v >> 32n)));
  }
  str(s: string): void {
    this.word(s.length);
    for (let i = 0; i < s.length; i++) this.word(s.charCodeAt(i));
  }
  bytes(b: Uint8Array): void {
    this.word(b.length);
    let i = 0;
    for (; i + 4 <= b.length; i += 4) {
      this.word(b[i]! | (b[i + 1]! << 8) | (b[i + 2]! << 16) | (b[i + 3]! << 24));
    }
    for (; i < b.length; i++) this.word(b[i]!);
  }
  hex(): string {
    return (this.a >>> 0).toString(16).padStart(8, "0") +
      (this.b >>> 0).toString(16).padStart(8, "0");
  }
}

/**
 * Hashes the whole observable state of `m` (see the module doc). {@link Machine.stateHash}
 * calls this.
 *
 * @param m The machine.
 * @param other Further plain, JSON-able state to fold in (a patcher's counters, kernel
 *   events); bigints are allowed.
 * @returns 16 hex digits.
 */
export function machineStateHash(m: Machine, other?: unknown): string {
  const h = new Hasher();
  h.word(m.bitness);
  h.word(m.cpus.length);
  for (const cpu of m.cpus) {
    for (let r = 0; r < 16; r++) {
      h.word(cpu.lo[r]!);
      h.word(cpu.hi[r]!);
    }
    h.num(cpu.ip);
    h.word(cpu.flags);
    for (let s = 0; s < 6; s++) h.word(cpu.sreg[s]!);
    h.word(cpu.cpl);
    h.num(cpu.fsBase);
    h.num(cpu.gsBase);
    h.num(cpu.cr2Value);
    h.big(cpu.tss.sp0);
    h.word(cpu.tss.ss0);
    h.word(cpu.halted ? 1 : 0);
    h.num(cpu.steps);
    h.word(cpu.pendingInterrupts);
  }
  const mem = m.memory;
  h.num(mem.usedBytes);
  const pages = [...mem.pages.entries()].sort((x, y) => x[0] - y[0]);
  h.word(pages.length);
  const seen = new Set<number>();
  for (const [vpn, entry] of pages) {
    h.num(vpn);
    h.num(entry);
    const frame = Math.floor(entry / 16);
    if (seen.has(frame)) continue;
    seen.add(frame);
    const bytes = mem.frames[frame];
    if (bytes === undefined) h.word(-1);
    else h.bytes(bytes);
  }
  for (let v = 0; v < 256; v++) {
    const g = m.idt[v];
    if (g === undefined) continue;
    h.word(v);
    h.num(g.handler);
    h.str(g.type);
    h.word(g.dpl);
  }
  for (const [at, b] of [...m.natives.entries()].sort((x, y) => x[0] - y[0])) {
    h.num(at);
    h.str(b.name);
  }
  const smp = m.smp;
  if (smp) {
    h.str(smp.trace.hash());
    h.num(smp.steps);
    for (let c = 0; c < smp.cpuCount; c++) {
      h.word(smp.isStopped(c) ? 1 : 0);
      h.word(smp.nmiBlocked(c) ? 1 : 0);
      h.word(smp.hasPendingCode(c) ? 1 : 0);
      const t = smp.thread(c);
      h.word(t === null ? -1 : t.done ? 1 : 0);
    }
  }
  if (other !== undefined) {
    h.str(JSON.stringify(other, (_k, v) => typeof v === "bigint" ? `${v}n` : v));
  }
  return h.hex();
}
