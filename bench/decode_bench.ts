/**
 * Decoder throughput: iced-x86 (`decodeOut` into one reused Instruction) against our
 * `decodeInto`, both walking every instruction of the same 1 MiB of real x86-64 code
 * (the start of the Deno executable's .text, cut at an instruction boundary).
 * `decode/textpoke-length` walks the same instructions with `insnLength` (lengths only).
 * `decode/record-stores` is a floor, not a decoder: the same walk with every length known
 * in advance, making only the 24 field stores that fill an {@link Insn}. No decoder that
 * fills the record can beat it; it shows how much of the 5x target the stores alone take.
 *
 * Group `decode-grouped` decodes the very same instructions again, reordered so that equal
 * forms (first three bytes and length) sit next to each other. The work per instruction is
 * unchanged; only the host's branch predictor has an easier time. Its gap to `decode` is
 * what mispredicted form dispatch costs on real code, for both decoders.
 */

import { Decoder, Instruction } from "iced-x86";
import { decodeInto, insnLength } from "../lib/x86/decode.ts";
import { Insn } from "../lib/x86/insn.ts";
import { parseElf } from "../lib/x86/elf.ts";

const text = parseElf(Deno.readFileSync(Deno.execPath())).sectionBytes(".text");
const MIB = 1 << 20;

// Cut at the last instruction boundary at or before 1 MiB (as iced walks it).
const probe = new Decoder(64, text.subarray(0, MIB + 16), 0);
const probeInsn = new Instruction();
let cut = 0;
let count = 0;
while (true) {
  probe.decodeOut(probeInsn);
  if (cut + probeInsn.length > MIB) break;
  cut += probeInsn.length;
  count++;
}
probe.free();
const code = text.slice(0, cut);

/** The same instructions as `code`, stably grouped by their first three bytes and length. */
function groupedByForm(bytes: Uint8Array): Uint8Array {
  const insns: Uint8Array[] = [];
  for (let p = 0; p < bytes.length;) {
    const len = insnLength(bytes, p, 64);
    insns.push(bytes.subarray(p, p + len));
    p += len;
  }
  const key = (x: Uint8Array) => ((x[0]! << 16 | x[1]! << 8 | x[2]!) >>> 0) * 16 + x.length;
  insns.sort((a, b) => key(a) - key(b));
  const out = new Uint8Array(bytes.length);
  let q = 0;
  for (const x of insns) {
    out.set(x, q);
    q += x.length;
  }
  return out;
}
const grouped = groupedByForm(code);

// One walk function per input and decoder, not one taking the input as an argument: each
// keeps its own type feedback, so adding the grouped walks leaves the `decode` figures alone.
const icedInsn = new Instruction();
const icedDecoder = new Decoder(64, code, 0);
function walkIced(): number {
  icedDecoder.position = 0;
  let n = 0;
  while (icedDecoder.canDecode) {
    icedDecoder.decodeOut(icedInsn);
    n++;
  }
  return n;
}
const icedGrouped = new Decoder(64, grouped, 0);
function walkIcedGrouped(): number {
  icedGrouped.position = 0;
  let n = 0;
  while (icedGrouped.canDecode) {
    icedGrouped.decodeOut(icedInsn);
    n++;
  }
  return n;
}

const ours = new Insn();
function walkOurs(): number {
  let p = 0;
  let n = 0;
  const end = code.length;
  while (p < end) {
    p += decodeInto(ours, code, p, 64).len;
    n++;
  }
  return n;
}
function walkOursGrouped(): number {
  let p = 0;
  let n = 0;
  const end = grouped.length;
  while (p < end) {
    p += decodeInto(ours, grouped, p, 64).len;
    n++;
  }
  return n;
}

function walkLength(): number {
  let p = 0;
  let n = 0;
  const end = code.length;
  while (p < end) {
    p += insnLength(code, p, 64);
    n++;
  }
  return n;
}

// Lengths in advance, for the floor.
const lengths = new Uint8Array(code.length);
for (let p = 0; p < code.length; p += lengths[p]!) lengths[p] = decodeInto(ours, code, p, 64).len;

const filled = new Insn();
/** Every field store of a decode, values from the position so nothing folds away. */
function walkStores(): number {
  let p = 0;
  let n = 0;
  const end = code.length;
  const r = filled;
  while (p < end) {
    const len = lengths[p]!;
    r.len = len;
    r.op = p & 63;
    r.opSize = 8;
    r.addrSize = 8;
    r.prefixes = p & 3;
    r.seg = -1;
    r.cc = p & 15;
    r.nops = 2;
    r.kind0 = 1;
    r.reg0 = p & 15;
    r.size0 = 8;
    r.kind1 = 2;
    r.reg1 = -1;
    r.size1 = 8;
    r.kind2 = 0;
    r.reg2 = -1;
    r.size2 = 0;
    r.base = (p >> 4) & 15;
    r.index = -1;
    r.scale = 0;
    r.disp = p;
    r.dispHi = 0;
    r.imm = -p;
    r.immHi = -1;
    p += len;
    n++;
  }
  return n;
}

if (
  walkStores() !== count || walkIced() !== count || walkOurs() !== count ||
  walkLength() !== count || walkOursGrouped() !== count || walkIcedGrouped() !== count
) {
  throw new Error(
    `instruction counts differ: iced ${walkIced()}, ours ${walkOurs()}, expected ${count}`,
  );
}

function rate(f: () => number): number {
  for (let i = 0; i < 5; i++) f();
  let n = 0;
  const t0 = performance.now();
  let t = t0;
  while (t - t0 < 1000) {
    n += f();
    t = performance.now();
  }
  return n / ((t - t0) / 1000) / 1e6;
}
console.log(
  `decode: ${count} instructions in ${(cut / MIB).toFixed(3)} MiB; iced-x86 decodeOut ` +
    `${rate(walkIced).toFixed(1)} M insn/s, textpoke decodeInto ${
      rate(walkOurs).toFixed(1)
    } M insn/s; the record's stores alone (lengths known) ${rate(walkStores).toFixed(1)} M insn/s`,
);
console.log(
  `decode-grouped: the same instructions grouped by form; iced-x86 ${
    rate(walkIcedGrouped).toFixed(1)
  } M insn/s, textpoke ${rate(walkOursGrouped).toFixed(1)} M insn/s`,
);

Deno.bench({ name: "decode/iced-x86", group: "decode", baseline: true }, () => {
  walkIced();
});
Deno.bench({ name: "decode/textpoke", group: "decode" }, () => {
  walkOurs();
});
Deno.bench({ name: "decode/textpoke-length", group: "decode" }, () => {
  walkLength();
});
Deno.bench({ name: "decode/record-stores", group: "decode" }, () => {
  walkStores();
});

Deno.bench({ name: "decode-grouped/iced-x86", group: "decode-grouped", baseline: true }, () => {
  walkIcedGrouped();
});
Deno.bench({ name: "decode-grouped/textpoke", group: "decode-grouped" }, () => {
  walkOursGrouped();
});
