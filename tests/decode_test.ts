import assert from "node:assert/strict";
import { Code, Decoder, Instruction } from "iced-x86";
import { decode, decodeInto, insnLength } from "../lib/x86/decode.ts";
import { Insn, Op, OpKind, Prefix, Reg } from "../lib/x86/insn.ts";
import { describe } from "./_decode_fmt.ts";

function bytes(hex: string): Uint8Array {
  return new Uint8Array(hex.trim().split(/\s+/).filter((h) => h).map((h) => parseInt(h, 16)));
}

/** Reads `bytes = expected` lines; `#` starts a comment line. */
function vectors(file: string): { line: number; hex: string; want: string }[] {
  const text = Deno.readTextFileSync(new URL(`./vectors/${file}`, import.meta.url));
  const out: { line: number; hex: string; want: string }[] = [];
  text.split("\n").forEach((l, i) => {
    if (!l.trim() || l.startsWith("#")) return;
    const eq = l.indexOf(" = ");
    out.push({ line: i + 1, hex: l.slice(0, eq).trim(), want: l.slice(eq + 3).trim() });
  });
  return out;
}

for (const bits of [64, 32] as const) {
  Deno.test(`decode() matches every hand vector in decode${bits}.txt`, () => {
    const bad: string[] = [];
    const vs = vectors(`decode${bits}.txt`);
    assert.ok(vs.length > 50);
    for (const v of vs) {
      const got = describe(decode(bytes(v.hex), 0, bits));
      if (got !== v.want) bad.push(`line ${v.line}: ${v.hex}\n  want ${v.want}\n  got  ${got}`);
    }
    assert.equal(bad.length, 0, bad.join("\n"));
  });

  Deno.test(`decode() gives the lengths iced-x86 gives for the valid decode${bits}.txt vectors`, () => {
    const ins = new Instruction();
    const bad: string[] = [];
    for (const v of vectors(`decode${bits}.txt`)) {
      const b = bytes(v.hex);
      const dec = new Decoder(bits, b, 0);
      dec.decodeOut(ins);
      dec.free();
      if (ins.code === Code.INVALID) continue;
      const ours = decode(b, 0, bits);
      if (ours.len !== ins.length) {
        bad.push(`line ${v.line}: ${v.hex}: ours ${ours.len}, iced ${ins.length}`);
      }
    }
    ins.free();
    assert.equal(bad.length, 0, bad.join("\n"));
  });
}

Deno.test("decode() reports 0f 0b as ud2, cc as int3 and cd 03 as int 3", () => {
  assert.equal(decode(bytes("0f 0b")).op, Op.UD2);
  assert.equal(decode(bytes("cc")).op, Op.INT3);
  const i = decode(bytes("cd 03"));
  assert.equal(i.op, Op.INT);
  assert.equal(i.imm, 3);
  assert.equal(i.len, 2);
});

Deno.test("decode() reports 48 cf as iretq and cf as iretd in 64-bit mode", () => {
  assert.deepEqual([decode(bytes("48 cf")).op, decode(bytes("48 cf")).opSize], [Op.IRET, 8]);
  assert.equal(decode(bytes("cf")).opSize, 4);
  assert.equal(decode(bytes("66 cf"), 0, 32).opSize, 2);
});

Deno.test("decode() makes RIP-relative displacements relative to the next instruction", () => {
  // mov 0x10(%rip),%eax at 0x1000: reads 0x1000 + 6 + 0x10.
  const i = decode(bytes("8b 05 10 00 00 00"));
  assert.equal(i.base, Reg.RIP);
  assert.equal(i.index, Reg.NONE);
  assert.equal(i.disp, 0x10);
  assert.equal(0x1000 + i.len + i.disp, 0x1016);
  // The same ModRM in 32-bit mode is an absolute disp32.
  assert.equal(decode(bytes("8b 05 10 00 00 00"), 0, 32).base, Reg.NONE);
});

Deno.test("decode() sees the 32-bit NOP5 as lea 0(%esi,%eiz,1),%esi, which changes nothing", () => {
  const i = decode(bytes("3e 8d 74 26 00"), 0, 32);
  assert.equal(i.op, Op.LEA);
  assert.equal(i.len, 5);
  // Destination esi = esi + 0: no index (eiz), no displacement, so the lea is a no-op.
  assert.deepEqual([i.reg0, i.base, i.index, i.disp], [Reg.RSI, Reg.RSI, Reg.NONE, 0]);
});

Deno.test("decode() treats a REX prefix followed by a legacy prefix as absent", () => {
  const i = decode(bytes("48 66 89 c0"));
  assert.equal(i.opSize, 2);
  assert.equal(i.prefixes & Prefix.REX, 0);
  const j = decode(bytes("66 48 89 c0"));
  assert.equal(j.opSize, 8);
  assert.equal(
    j.prefixes & (Prefix.REX | Prefix.REX_W | Prefix.OPSIZE),
    Prefix.REX | Prefix.REX_W | Prefix.OPSIZE,
  );
});

Deno.test("decode() enforces the 15-byte limit and tells it apart from truncated input", () => {
  const ok = new Uint8Array(15).fill(0x66);
  ok[14] = 0x90;
  assert.deepEqual([decode(ok).op, decode(ok).len], [Op.NOP, 15]);
  const long = new Uint8Array(16).fill(0x66);
  long[15] = 0x90;
  assert.deepEqual([decode(long).op, decode(long).len], [Op.TOO_LONG, 15]);
  // movq $imm32,disp32(%rax) behind five 66 prefixes: 16 bytes.
  const long2 = bytes("66 66 66 66 66 48 c7 80 00 00 00 00 00 00 00 00 00 00");
  assert.equal(decode(long2).op, Op.TOO_LONG);
  // Ten prefixes and nothing after: the input ran out first.
  assert.deepEqual([
    decode(new Uint8Array(10).fill(0x66)).op,
    decode(new Uint8Array(10).fill(0x66)).len,
  ], [
    Op.TRUNCATED,
    10,
  ]);
  assert.deepEqual([decode(new Uint8Array(0)).op, decode(new Uint8Array(0)).len], [
    Op.TRUNCATED,
    0,
  ]);
});

Deno.test("decodeInto() decodes the same near the end of the buffer as in its middle", () => {
  const movabs = bytes("48 b8 88 77 66 55 44 33 22 11");
  const big = new Uint8Array(100);
  big.set(movabs, 40);
  const tail = new Uint8Array(13);
  tail.set(movabs, 3);
  const a = describe(decodeInto(new Insn(), big, 40, 64));
  const b = describe(decodeInto(new Insn(), tail, 3, 64));
  assert.equal(a, b);
  assert.equal(a, "MOV 10 os8 as8 : rax, $0x1122334455667788");
  // One byte short: truncated, and the zero padding must not invent a last byte.
  const short = decodeInto(new Insn(), tail.subarray(0, 12), 3, 64);
  assert.deepEqual([short.op, short.len], [Op.TRUNCATED, 9]);
});

Deno.test("decodeInto() overwrites every field of a reused record", () => {
  const rec = new Insn();
  decodeInto(rec, bytes("f0 48 81 84 c8 10 00 00 00 78 56 34 12"), 0, 64); // lock add imm to mem
  assert.equal(rec.op, Op.ADD);
  assert.equal(rec.kind0, OpKind.MEM);
  decodeInto(rec, bytes("90"), 0, 64);
  const fresh = decode(bytes("90"), 0, 64);
  assert.deepEqual({ ...rec }, { ...fresh });
  decodeInto(rec, bytes("48 8b 44 24 08"), 0, 64);
  decodeInto(rec, bytes("0f"), 0, 64);
  assert.deepEqual({ ...rec }, { ...decode(bytes("0f")) });
});

Deno.test("decode() refuses LOCK where the CPU raises #UD", () => {
  assert.equal(decode(bytes("f0 01 00")).op, Op.ADD);
  assert.equal(decode(bytes("f0 01 c0")).op, Op.INVALID, "register destination");
  assert.equal(decode(bytes("f0 39 00")).op, Op.INVALID, "cmp is not lockable");
  assert.equal(decode(bytes("f0 8b 00")).op, Op.INVALID, "mov is not lockable");
  assert.equal(decode(bytes("f0 0f a3 00")).op, Op.INVALID, "bt is not lockable");
  assert.equal(decode(bytes("f0 0f ab 00")).op, Op.BTS);
});

Deno.test("decode() reports the moffs offset of mov a1 in disp and dispHi", () => {
  const i = decode(bytes("48 a1 88 77 66 55 44 33 22 11"));
  assert.equal(i.op, Op.MOV);
  assert.equal(i.kind1, OpKind.MEM);
  assert.equal(i.disp >>> 0, 0x55667788);
  assert.equal(i.dispHi >>> 0, 0x11223344);
  assert.equal(i.len, 10);
});

Deno.test("insnLength() walks a mixed sequence of instructions", () => {
  // push %rbp; mov %rsp,%rbp; nopl 0(%rax,%rax,1); vzeroupper; call rel32; leave; ret
  const code = bytes("55 48 89 e5 0f 1f 44 00 00 c5 f8 77 e8 00 00 00 00 c9 c3");
  const lens: number[] = [];
  for (let p = 0; p < code.length;) {
    const n = insnLength(code, p, 64);
    lens.push(n);
    p += n;
  }
  assert.deepEqual(lens, [1, 3, 5, 3, 5, 1, 1]);
});
