/**
 * The 64-bit fast path of `decodeInto` against the general path. The fast path only runs
 * when at least 32 bytes follow the instruction, so decoding a copy cut to 31 bytes takes
 * the general path: both records must agree field by field, at every byte offset of real
 * code and on random bytes biased toward REX and the fast-path opcodes.
 */

import assert from "node:assert/strict";
import { decodeFast64, decodeInto } from "../lib/x86/decode.ts";
import { Insn } from "../lib/x86/insn.ts";
import { parseElf } from "../lib/x86/elf.ts";

const FIELDS = Object.keys(new Insn()) as (keyof Insn)[];

/** Offsets the fast path decoded by itself (so the comparisons below compared two paths). */
let fastTaken = 0;
const probe = new Insn();

/** Decodes `bytes` at `off` with both paths; returns a description of the first difference. */
function differs(bytes: Uint8Array, off: number, fast: Insn, slow: Insn): string | null {
  if (decodeFast64(probe, bytes, off) !== 0) fastTaken++;
  for (const f of FIELDS) (fast as unknown as Record<string, number>)[f] = 0x5a5a5;
  decodeInto(fast, bytes, off, 64);
  const cut = bytes.slice(off, off + 31);
  decodeInto(slow, cut, 0, 64);
  for (const f of FIELDS) {
    if (fast[f] !== slow[f]) {
      const hex = [...cut.subarray(0, 16)].map((b) => b.toString(16).padStart(2, "0")).join(" ");
      return `${hex}: ${f} is ${fast[f]} on the fast path, ${slow[f]} on the general path`;
    }
  }
  return null;
}

Deno.test("decodeInto() fills the same record on the fast path as on the general path over real code", () => {
  const text = parseElf(Deno.readFileSync(Deno.execPath())).sectionBytes(".text");
  const fast = new Insn();
  const slow = new Insn();
  const bad: string[] = [];
  const end = Math.min(text.length - 32, 1 << 19);
  fastTaken = 0;
  for (let off = 0; off < end; off++) {
    const d = differs(text, off, fast, slow);
    if (d !== null && bad.push(d) >= 10) break;
  }
  assert.deepEqual(bad, []);
  assert.ok(fastTaken > end / 2, `the fast path decoded only ${fastTaken} of ${end} offsets`);
});

Deno.test("decodeInto() fills the same record on the fast path as on the general path on random bytes", () => {
  let s = 0x2545f491;
  const rnd = (): number => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return s >>> 0;
  };
  const hot = [0x40, 0x41, 0x44, 0x45, 0x48, 0x49, 0x4c, 0x4d, 0x0f, 0x89, 0x8b, 0x8d, 0x83];
  const buf = new Uint8Array(40);
  const fast = new Insn();
  const slow = new Insn();
  const bad: string[] = [];
  fastTaken = 0;
  for (let i = 0; i < 300_000; i++) {
    for (let j = 0; j < buf.length; j++) buf[j] = rnd() & 255;
    if (rnd() & 1) buf[0] = hot[rnd() % hot.length]!;
    if ((rnd() & 3) === 0) buf[1] = 0x0f;
    const d = differs(buf, 0, fast, slow);
    if (d !== null && bad.push(d) >= 10) break;
  }
  assert.deepEqual(bad, []);
  assert.ok(fastTaken > 100_000, `the fast path decoded only ${fastTaken} of 300000 inputs`);
});

Deno.test("decodeInto() decodes a REX.W memory form the same way near the end of the input", () => {
  // mov rax, [r12 + r13*8 + 0x12345678]: REX.WXB, SIB, disp32; then padding.
  const bytes = new Uint8Array(40);
  bytes.set([0x4b, 0x8b, 0x84, 0xec, 0x78, 0x56, 0x34, 0x12]);
  const insn = decodeInto(new Insn(), bytes, 0, 64);
  assert.equal(insn.len, 8);
  assert.equal(insn.base, 12);
  assert.equal(insn.index, 13);
  assert.equal(insn.scale, 3);
  assert.equal(insn.disp, 0x12345678);
  assert.equal(insn.opSize, 8);
  assert.equal(decodeFast64(new Insn(), bytes, 0), 8, "a fast-path form");
  assert.equal(differs(bytes, 0, new Insn(), new Insn()), null);
});
