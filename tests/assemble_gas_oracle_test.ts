// Differential test: every instruction form the assembler supports, assembled by
// assemble() and by GNU as (--64 / --32), must give the same bytes line by line.
import assert from "node:assert/strict";
import { assemble } from "../lib/x86/assemble.ts";
import { hexBytes } from "../lib/errors.ts";
import { corpus } from "./_assemble_corpus.ts";

function haveTool(name: string): boolean {
  try {
    return new Deno.Command(name, { args: ["--version"], stdout: "null", stderr: "null" })
      .outputSync().success;
  } catch {
    return false;
  }
}
const toolsOk = haveTool("as") && haveTool("objcopy");
if (!toolsOk) {
  console.warn("SKIPPED: assemble_gas_oracle_test because GNU as or objcopy is missing");
}

function gasBytes(lines: string[], bits: 32 | 64): Uint8Array {
  const dir = Deno.makeTempDirSync({ prefix: "textpoke_gas_" });
  try {
    Deno.writeTextFileSync(`${dir}/x.s`, lines.join("\n") + "\n");
    const as = new Deno.Command("as", { args: [`--${bits}`, "-o", `${dir}/x.o`, `${dir}/x.s`] })
      .outputSync();
    if (!as.success) throw new Error(new TextDecoder().decode(as.stderr));
    const oc = new Deno.Command("objcopy", {
      args: ["-O", "binary", "-j", ".text", `${dir}/x.o`, `${dir}/x.bin`],
    })
      .outputSync();
    if (!oc.success) throw new Error(new TextDecoder().decode(oc.stderr));
    return Deno.readFileSync(`${dir}/x.bin`);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
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
