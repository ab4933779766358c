/**
 * Decoder throughput: iced-x86 (`decodeOut` into one reused Instruction) against our
 * `decodeInto`, both walking every instruction of the same 1 MiB of real x86-64 code
 * (the start of the Deno executable's .text, cut at an instruction boundary).
 * `decode/textpoke-length` walks the same instructions with `insnLength` (lengths only).
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

if (walkIced() !== count || walkOurs() !== count || walkLength() !== count) {
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
    } M insn/s`,
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
