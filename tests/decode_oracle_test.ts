/**
 * Differential test of the decoder against iced-x86: seeded random byte sequences (biased
 * toward prefixes and the supported opcodes) and a linear sweep over the .text of the Deno
 * executable, in 64-bit and 32-bit mode.
 *
 * TEXTPOKE_ORACLE_COUNT sets the number of random samples per mode (default 300,000).
 * The 64-bit sweep always covers the whole .text; TEXTPOKE_ORACLE_TEXT_MB limits the 32-bit
 * sweep in MiB (default 16; "all" for the whole .text).
 */

import assert from "node:assert/strict";
import { parseElf } from "../lib/x86/elf.ts";
import { Code, Decoder, Instruction } from "iced-x86";
import { decodeInto } from "../lib/x86/decode.ts";
import { Insn, Op } from "../lib/x86/insn.ts";
import { compare, hex, opName, Tally, walk, type WalkCounts } from "./_iced_oracle.ts";

const COUNT = Number(Deno.env.get("TEXTPOKE_ORACLE_COUNT") ?? 300_000);
/** MiB of .text swept as 32-bit code (it is only random-ish bytes there): 16 unless set. */
const TEXT_MB = Deno.env.get("TEXTPOKE_ORACLE_TEXT_MB") ?? "16";

/** mulberry32: small seeded PRNG. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const PREFIXES = [0x66, 0x67, 0xf0, 0xf2, 0xf3, 0x2e, 0x3e, 0x26, 0x36, 0x64, 0x65];
const OPS1 = [
  0x00,
  0x01,
  0x02,
  0x03,
  0x04,
  0x05,
  0x06,
  0x07,
  0x0e,
  0x16,
  0x17,
  0x1e,
  0x1f,
  0x08,
  0x09,
  0x10,
  0x11,
  0x18,
  0x19,
  0x20,
  0x21,
  0x28,
  0x29,
  0x30,
  0x31,
  0x38,
  0x39,
  0x3a,
  0x3b,
  0x3c,
  0x3d,
  0x50,
  0x55,
  0x5d,
  0x63,
  0x68,
  0x69,
  0x6a,
  0x6b,
  0x70,
  0x74,
  0x7f,
  0x80,
  0x81,
  0x82,
  0x83,
  0x84,
  0x85,
  0x86,
  0x87,
  0x88,
  0x89,
  0x8a,
  0x8b,
  0x8c,
  0x8d,
  0x8e,
  0x8f,
  0x90,
  0x91,
  0x97,
  0x98,
  0x99,
  0x9c,
  0x9d,
  0xa0,
  0xa1,
  0xa2,
  0xa3,
  0xa4,
  0xa5,
  0xa6,
  0xa7,
  0xa8,
  0xa9,
  0xaa,
  0xab,
  0xac,
  0xad,
  0xae,
  0xaf,
  0xb0,
  0xb4,
  0xb8,
  0xbf,
  0xc0,
  0xc1,
  0xc2,
  0xc3,
  0xc6,
  0xc7,
  0xc9,
  0xcc,
  0xcd,
  0xcf,
  0xd0,
  0xd1,
  0xd2,
  0xd3,
  0xe8,
  0xe9,
  0xeb,
  0xf4,
  0xf5,
  0xf6,
  0xf7,
  0xf8,
  0xf9,
  0xfa,
  0xfb,
  0xfc,
  0xfd,
  0xfe,
  0xff,
  0x40,
  0x48,
  0x62,
  0xc4,
  0xc5,
  0x27,
  0xd4,
  0xd6,
  0x9a,
  0xea,
];
const OPS2 = [
  0x40,
  0x45,
  0x4f,
  0x80,
  0x85,
  0x8f,
  0x90,
  0x94,
  0x9f,
  0xa0,
  0xa1,
  0xa8,
  0xa9,
  0xa2,
  0xa3,
  0xab,
  0xb3,
  0xbb,
  0xba,
  0xaf,
  0xb0,
  0xb1,
  0xb6,
  0xb7,
  0xbe,
  0xbf,
  0xc0,
  0xc1,
  0xc8,
  0xcc,
  0x1f,
  0x0b,
  0xae,
  0x38,
  0x3a,
  0x0f,
  0x78,
  0x20,
  0xb8,
  0xc7,
  0x01,
  0x00,
];

/** Fills `buf` with `n` 16-byte samples. */
function fill(buf: Uint8Array, rnd: () => number, bits: 32 | 64): void {
  for (let s = 0; s < buf.length; s += 16) {
    let p = s;
    for (let i = 0; i < 16; i++) buf[s + i] = (rnd() * 256) | 0;
    const np = rnd() < 0.5 ? 0 : (rnd() * 4) | 0;
    for (let i = 0; i < np; i++) buf[p++] = PREFIXES[(rnd() * PREFIXES.length) | 0]!;
    if (bits === 64 && rnd() < 0.4) buf[p++] = 0x40 | ((rnd() * 16) | 0);
    const r = rnd();
    if (r < 0.55) buf[p++] = OPS1[(rnd() * OPS1.length) | 0]!;
    else if (r < 0.85) {
      buf[p++] = 0x0f;
      buf[p++] = OPS2[(rnd() * OPS2.length) | 0]!;
    }
    // bias ModRM toward register forms and simple memory forms
    if (rnd() < 0.3) buf[p] = 0xc0 | ((rnd() * 64) | 0);
  }
}

function runRandom(bits: 32 | 64, seed: number, count: number): { c: WalkCounts; t: Tally } {
  const rnd = prng(seed);
  const t = new Tally();
  const c: WalkCounts = { insns: 0, supported: 0, invalid: 0 };
  const CHUNK = 65536;
  for (let done = 0; done < count; done += CHUNK) {
    const n = Math.min(CHUNK, count - done);
    const buf = new Uint8Array(n * 16);
    fill(buf, rnd, bits);
    // Each sample is decoded once at its start; walk() follows iced's lengths, so walk
    // sample by sample through a view of 16 bytes plus the following bytes.
    for (let s = 0; s < n; s++) {
      const r = walkOne(buf, s * 16, bits, t);
      c.insns++;
      if (r === 1) c.supported++;
      else if (r === 2) c.invalid++;
    }
  }
  return { c, t };
}

const _ins = new Instruction();
const _ours = new Insn();
let _dec: Decoder | null = null;
let _decBuf: Uint8Array | null = null;
let _decBits = 0;

/** Decodes the sample at `pos` with both; 1 supported, 2 iced-invalid, 0 otherwise. */
function walkOne(buf: Uint8Array, pos: number, bits: 32 | 64, t: Tally): number {
  if (_decBuf !== buf || _decBits !== bits) {
    _dec?.free();
    _dec = new Decoder(bits, buf, 0);
    _decBuf = buf;
    _decBits = bits;
  }
  const dec = _dec!;
  dec.position = pos;
  const ip = 0x100000n + BigInt(pos);
  dec.ip = ip;
  dec.decodeOut(_ins);
  decodeInto(_ours, buf, pos, bits);
  if (_ins.code === Code.INVALID) {
    if (_ours.op >= 8) t.add(`claims ${opName(_ours.op)} on invalid`, hex(buf, pos, 15));
    return 2;
  }
  const r = compare(_ours, _ins, ip, bits);
  if (r) t.add(r[0], `${r[1]} [${hex(buf, pos, _ins.length)}]`);
  return _ours.op >= 8 ? 1 : 0;
}

for (const bits of [64, 32] as const) {
  Deno.test(`decodeInto() agrees with iced-x86 on ${COUNT} random ${bits}-bit byte sequences`, () => {
    const t0 = performance.now();
    const { c, t } = runRandom(bits, 0x5eed + bits, COUNT);
    console.log(
      `random ${bits}-bit: ${c.insns} samples, ${c.supported} supported, ${c.invalid} iced-invalid, ` +
        `${t.total} mismatches (${((performance.now() - t0) / 1000).toFixed(1)} s)`,
    );
    assert.equal(t.total, 0, `mismatches by kind:\n${t.report()}`);
  });
}

const exe = parseElf(Deno.readFileSync(Deno.execPath()));
const textSec = exe.section(".text")!;
const textAll = exe.sectionBytes(".text");
const text32 = TEXT_MB === "all"
  ? textAll
  : textAll.subarray(0, Math.min(textAll.length, Number(TEXT_MB) << 20));

for (const bits of [64, 32] as const) {
  Deno.test(`decodeInto() agrees with iced-x86 on the Deno executable's .text swept as ${bits}-bit code`, () => {
    const t0 = performance.now();
    const t = new Tally();
    const text = bits === 64 ? textAll : text32;
    const c = walk(text, bits, textSec.addr, t);
    console.log(
      `.text ${bits}-bit (${(text.length / 1048576).toFixed(1)} MiB): ${c.insns} instructions, ` +
        `${c.supported} supported, ${c.invalid} iced-invalid, ${t.total} mismatches ` +
        `(${((performance.now() - t0) / 1000).toFixed(1)} s)`,
    );
    assert.equal(t.total, 0, `mismatches by kind:\n${t.report()}`);
  });
}

Deno.test("compare() flags a wrong length, op, register, displacement and immediate", () => {
  const cases: [string, (i: Insn) => void, RegExp][] = [
    ["48 8b 44 24 08", (i) => i.len = 4, /^len/],
    ["48 8b 44 24 08", (i) => i.op = Op.LEA, /^op MOV->LEA/],
    ["48 8b 44 24 08", (i) => i.reg0 = 1, /^reg MOV/],
    ["48 8b 44 24 08", (i) => i.disp = 9, /^disp MOV/],
    ["8b 05 10 00 00 00", (i) => i.base = -1, /^basendx MOV/],
    ["48 83 c4 f8", (i) => i.immHi = 0, /^imm ADD/],
    ["74 05", (i) => i.imm = 6, /^target JCC/],
    ["74 05", (i) => i.cc = 5, /^cc JCC/],
  ];
  const ins = new Instruction();
  for (const [hexText, corrupt, want] of cases) {
    const b = new Uint8Array([...hexText.split(" ").map((h) => parseInt(h, 16)), 0, 0, 0, 0]);
    const dec = new Decoder(64, b, 0);
    dec.ip = 0x1000n;
    dec.decodeOut(ins);
    dec.free();
    const ours = decodeInto(new Insn(), b, 0, 64);
    assert.equal(compare(ours, ins, 0x1000n, 64), null, `${hexText} agrees before corruption`);
    corrupt(ours);
    const r = compare(ours, ins, 0x1000n, 64);
    assert.ok(r && want.test(r[0]), `${hexText}: got ${r?.[0]}`);
  }
  ins.free();
});
