// Differential test: every instruction form the assembler supports, assembled by
// assemble() and by GNU as (--64 / --32), must give the same bytes line by line.
import assert from "node:assert/strict";
import { assemble } from "../lib/x86/assemble.ts";
import { AssemblerError, hexBytes } from "../lib/errors.ts";
import { corpus } from "./_assemble_corpus.ts";
import { gnuBytes, haveTool } from "./_gnu.ts";

const toolsOk = haveTool("as") && haveTool("objcopy");
if (!toolsOk) {
  console.warn("SKIPPED: assemble_gas_oracle_test because GNU as or objcopy is missing");
}

function gasBytes(lines: string[], bits: 32 | 64): Uint8Array {
  return gnuBytes(lines.join("\n"), bits);
}

for (const bits of [64, 32] as const) {
  Deno.test({
    name: `assemble() matches GNU as --${bits} byte for byte on every instruction form`,
    ignore: !toolsOk,
    fn() {
      const lines = corpus(bits);
      // Ours: one statement per line, so each line's bytes are known.
      const mine = assemble(lines.join("\n"), { bitness: bits });
      const gas = gasBytes(lines, bits);
      const mismatches: string[] = [];
      let off = 0;
      const byLine = new Map(mine.lines.map((l) => [l.line, l]));
      for (let i = 0; i < lines.length; i++) {
        const l = byLine.get(i + 1);
        const n = l ? l.length : 0;
        const ours = mine.bytes.subarray(off, off + n);
        const theirs = gas.subarray(off, off + n);
        if (hexBytes(ours) !== hexBytes(theirs)) {
          mismatches.push(
            `${lines[i]}: ours ${hexBytes(ours)} / as ${hexBytes(gas.subarray(off, off + n + 4))}…`,
          );
          break; // offsets are off from here on
        }
        off += n;
      }
      assert.deepEqual(mismatches, []);
      assert.equal(mine.bytes.length, gas.length);
      assert.ok(lines.length > 1000, `corpus has ${lines.length} lines`);
    },
  });
}

Deno.test({
  name:
    "assemble() pads .align like GNU as in both modes, including the 32-bit jmp over long padding",
  ignore: !toolsOk,
  fn() {
    for (const bits of [64, 32] as const) {
      for (let pad = 0; pad < 64; pad++) {
        const src = `.rept ${(64 - pad) % 64}\nint3\n.endr\n.align 64\nret`;
        const mine = assemble(src, { bitness: bits });
        const gas = gasBytes(src.split("\n"), bits);
        assert.equal(hexBytes(mine.bytes), hexBytes(gas), `bits ${bits} pad ${pad}`);
      }
    }
  },
});

Deno.test({
  name: "assemble() relaxes jmp and jcc to labels exactly where GNU as does",
  ignore: !toolsOk,
  fn() {
    for (const bits of [64, 32] as const) {
      for (const n of [0, 60, 61, 62, 63, 64, 65, 126, 127, 128, 129, 130]) {
        const src = [
          "1: jmp 2f",
          "jne 1b",
          "je 2f",
          `.rept ${n}`,
          "nop",
          ".endr",
          "2: jmp 1b",
          "jl 1b",
          "call 1b",
        ];
        const mine = assemble(src.join("\n"), { bitness: bits });
        const gas = gasBytes(src, bits);
        assert.equal(hexBytes(mine.bytes), hexBytes(gas), `bits ${bits} n ${n}`);
      }
    }
  },
});

/** 1-based line numbers GNU as reports an error on. */
function gasErrorLines(lines: string[], bits: 32 | 64): Set<number> {
  const dir = Deno.makeTempDirSync({ prefix: "textpoke_gas_" });
  try {
    Deno.writeTextFileSync(`${dir}/x.s`, lines.join("\n") + "\n");
    const as = new Deno.Command("as", { args: [`--${bits}`, "-o", `${dir}/x.o`, `${dir}/x.s`] })
      .outputSync();
    const err = new TextDecoder().decode(as.stderr);
    return new Set([...err.matchAll(/x\.s:(\d+): Error:/g)].map((m) => Number(m[1])));
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}

// Prefix and memory-operand forms at the edge of what GAS accepts: `lock` before each
// instruction family with a register and a memory destination, `rep`/`repne` before them,
// doubled prefixes, and base/index/scale groups with empty parts.
function edgeForms(bits: 32 | 64): string[] {
  const a = bits === 64 ? "%rax" : "%eax", b = bits === 64 ? "%rbx" : "%ebx";
  const c = bits === 64 ? "%rcx" : "%ecx";
  const forms = [
    ...["add", "or", "adc", "sbb", "and", "sub", "xor", "cmp", "test", "mov"].flatMap((
      op,
    ) => [`${op}l $1,(${a})`, `${op} %edx,(${a})`, `${op} (${a}),%edx`, `${op} %edx,%ecx`]),
    ...["inc", "dec", "neg", "not", "mul", "div", "rol", "shr"].flatMap((
      op,
    ) => [`${op}l (${a})`, `${op}l %edx`]),
    ...["bt", "bts", "btr", "btc"].flatMap((op) => [`${op}l $1,(${a})`, `${op} %edx,%ecx`]),
    `xchg %edx,(${a})`,
    `xchg (${a}),%edx`,
    "xchg %edx,%ecx",
    `cmpxchg %edx,(${a})`,
    "cmpxchg %edx,%ecx",
    `xadd %edx,(${a})`,
    "xadd %edx,%ecx",
    `push (${a})`,
    `lea (${a}),%edx`,
    `jmp *(${a})`,
    "ret",
    "ret $8",
    "nop",
    `nopl (${a})`,
    "leave",
    "pause",
    "int3",
    "ud2",
    "movsb",
    "stosl",
    "lodsw",
    "cmpsb",
    "scasb",
  ];
  const out: string[] = [];
  for (const f of forms) for (const p of ["", "lock ", "rep ", "repne "]) out.push(p + f);
  out.push(
    "lock lock incl (%eax)".replace("%eax", a),
    "rep repe movsb",
    "repz repnz stosb",
    "lock rep lock movsb",
    "rep lock movsb",
    "lock rep incl (%eax)".replace("%eax", a),
    "rep",
    "lock",
    "repne",
    "lock rep",
    "rep lock",
    "rep rep",
  );
  for (
    const m of [
      `(${b},,4)`,
      `(${b},,1)`,
      `(${b},)`,
      `(${b},,)`,
      "(,,2)",
      "(,)",
      "(,,)",
      `0x10(,,1)`,
      `(${b},${c},)`,
      `(,${c})`,
      `(,${c},)`,
      `(,${c},2)`,
      `(${b}, ,2)`,
      `( ${b} , ${c} , 2 )`,
      `(${b},${c},2,)`,
      `(${b},${c},0)`,
    ]
  ) out.push(`mov ${m},%eax`);
  return out;
}

for (const bits of [64, 32] as const) {
  Deno.test({
    name: `assemble() refuses exactly the prefix and memory-operand forms GNU as --${bits} refuses`,
    ignore: !toolsOk,
    fn() {
      const lines = edgeForms(bits);
      const gasErr = gasErrorLines(lines, bits);
      const disagree: string[] = [];
      const ok: string[] = [];
      lines.forEach((l, i) => {
        let mine = true;
        try {
          assemble(l, { bitness: bits });
        } catch (e) {
          assert.ok(e instanceof AssemblerError, `${l}: ${String(e)}`);
          assert.ok(e.line === 1 && e.column >= 1, `${l}: ${e.message}`);
          mine = false;
        }
        if (mine === gasErr.has(i + 1)) {
          disagree.push(`${l}: ours ${mine ? "accepts" : "refuses"}, as the opposite`);
        }
        if (mine && !gasErr.has(i + 1)) ok.push(l);
      });
      assert.deepEqual(disagree, []);
      assert.ok(gasErr.size > 100 && ok.length > 50, `${gasErr.size} refused, ${ok.length} ok`);
      // The accepted ones give GAS's bytes.
      const mine = assemble(ok.join("\n"), { bitness: bits });
      const gas = gasBytes(ok, bits);
      let off = 0;
      for (const rec of mine.lines) {
        const theirs = hexBytes(gas.subarray(off, off + rec.length));
        assert.equal(hexBytes(mine.bytes.subarray(off, off + rec.length)), theirs, rec.text);
        off += rec.length;
      }
      assert.equal(mine.bytes.length, gas.length);
    },
  });
}
