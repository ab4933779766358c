import assert from "node:assert/strict";
import { ElfError } from "../lib/errors.ts";
import { parseElf, SHF_EXECINSTR, STT_FUNC } from "../lib/x86/elf.ts";
import { haveTool } from "./_gnu.ts";

const exe = Deno.readFileSync(Deno.execPath());

Deno.test("parseElf() reads the Deno executable's sections without copying them", () => {
  const elf = parseElf(exe);
  assert.equal(elf.is64, true);
  assert.equal(elf.machine, 62);
  const text = elf.section(".text")!;
  assert.ok(text.flags & SHF_EXECINSTR);
  const bytes = elf.sectionBytes(".text");
  assert.equal(bytes.length, text.size);
  assert.equal(bytes.buffer, exe.buffer, "a view, not a copy");
  assert.equal(bytes.byteOffset, exe.byteOffset + text.offset);
  const dyn = elf.symbols(".dynsym");
  assert.ok(dyn.length > 10);
  assert.ok(dyn.some((s) => s.name.length > 0));
});

const haveAs = haveTool("as");
if (!haveAs) console.warn("SKIPPED: ELF32 symbol test because GNU as is missing");

Deno.test({
  name: "parseElf() reads an ELF32 object's .text and .symtab",
  ignore: !haveAs,
  fn() {
    const dir = Deno.makeTempDirSync();
    try {
      Deno.writeTextFileSync(
        `${dir}/t.s`,
        ".text\n.globl f\n.type f,@function\nf:\n  push %ebp\n  ret\n.size f, .-f\n" +
          "g:\n  nop\n",
      );
      const r = new Deno.Command("as", { args: ["--32", "-o", `${dir}/t.o`, `${dir}/t.s`] })
        .outputSync();
      assert.ok(r.success, new TextDecoder().decode(r.stderr));
      const elf = parseElf(Deno.readFileSync(`${dir}/t.o`));
      assert.equal(elf.is64, false);
      assert.equal(elf.machine, 3);
      assert.deepEqual([...elf.sectionBytes(".text")], [0x55, 0xc3, 0x90]);
      const f = elf.symbols().find((s) => s.name === "f")!;
      assert.equal(f.value, 0n);
      assert.equal(f.size, 2);
      assert.equal(f.type, STT_FUNC);
      assert.equal(elf.sections[f.shndx]!.name, ".text");
      assert.equal(elf.symbols().find((s) => s.name === "g")!.value, 2n);
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
});

Deno.test("parseElf() rejects bytes that are not ELF, naming offset 0", () => {
  assert.throws(() => parseElf(new TextEncoder().encode("#!/bin/sh\necho hi\n")), (e: unknown) => {
    assert.ok(e instanceof ElfError);
    assert.equal(e.offset, 0);
    assert.match(e.message, /Not an ELF image/);
    return true;
  });
});

Deno.test("parseElf() rejects a truncated header and a section table past the end", () => {
  assert.throws(
    () => parseElf(exe.subarray(0, 40)),
    (e: unknown) => e instanceof ElfError && /Truncated ELF header/.test(e.message),
  );
  // Keep the header, cut the file before the section header table (at the end of the file).
  const cut = exe.subarray(0, exe.length - 64);
  assert.throws(
    () => parseElf(cut),
    (e: unknown) => e instanceof ElfError && /runs past the end/.test(e.message) && e.offset > 0,
  );
});

Deno.test("parseElf() rejects big-endian images", () => {
  const be = exe.slice(0, 64);
  be[5] = 2;
  assert.throws(() => parseElf(be), (e: unknown) => e instanceof ElfError && e.offset === 5);
});

Deno.test("ElfFile.sectionBytes() names a missing section", () => {
  assert.throws(() => parseElf(exe).sectionBytes(".nope"), /no section \.nope/);
});
