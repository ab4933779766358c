// GNU as compatibility of assemble() for directives and symbol rules: symbol
// redefinition, .fill, alignment fill and maximum skip, rip-relative constants. GNU as
// (--64 / --32) plus objcopy is the oracle wherever the construct assembles there; where
// GAS refuses it (or where we refuse on purpose) the exact message, line and column are
// checked.
import assert from "node:assert/strict";
import { assemble } from "../lib/x86/assemble.ts";
import { AssemblerError, hexBytes } from "../lib/errors.ts";
import { gnuBytes, haveTool } from "./_gnu.ts";

const haveGas = haveTool("as") && haveTool("objcopy");
if (!haveGas) {
  console.warn("SKIPPED: assemble_gas_compat_test because GNU as or objcopy is missing");
}

/** Assembles `src` with GNU as and returns its .text bytes, or throws with its stderr. */
function gas(src: string, bits: 32 | 64): Uint8Array {
  return gnuBytes(src, bits);
}

/** Asserts assemble() gives GNU as's bytes, and (as a pin) the expected hex. */
function sameAsGas(src: string, expected: string, bits: 32 | 64 = 64): void {
  const ours = hexBytes(assemble(src, { bitness: bits }).bytes);
  assert.equal(hexBytes(gas(src, bits)), expected, `GNU as on ${JSON.stringify(src)}`);
  assert.equal(ours, expected, `assemble() on ${JSON.stringify(src)}`);
}

/** Asserts GNU as refuses `src` with `gasWords`. */
function gasRefuses(src: string, gasWords: RegExp, bits: 32 | 64 = 64): void {
  assert.throws(() => gas(src, bits), gasWords);
}

/** Asserts assemble() throws exactly `message` at line/column. */
function failsAt(src: string, line: number, column: number, message: string, bits: 32 | 64 = 64) {
  assert.throws(
    () => assemble(src, { bitness: bits }),
    (e: unknown) => {
      assert.ok(e instanceof AssemblerError, `not an AssemblerError: ${String(e)}`);
      assert.equal(e.message, `line ${line}, column ${column}: ${message}`);
      assert.equal(e.line, line);
      assert.equal(e.column, column);
      return true;
    },
  );
}

const test = (name: string, fn: () => void) => Deno.test({ name, ignore: !haveGas, fn });

test("assemble() lets .set and = redefine a symbol, each use seeing the latest value", () => {
  sameAsGas(".set i, 0\n.rept 3\n.byte i\n.set i, i+1\n.endr", "00 01 02");
  sameAsGas("X = 1\n.byte X\nX = X + 1\n.byte X", "01 02");
  sameAsGas("vector=0x20\n.rept 2\n.byte 0x6a, vector\nvector = vector+1\n.endr", "6a 20 6a 21");
  sameAsGas("X=1\n.equ X,2\n.byte X", "02");
  // A reference before any definition sees the first one, as in GAS.
  sameAsGas(".byte X\n.set X, 1\n.set X, 2", "01");
  // A label may follow a .set of the same name.
  sameAsGas(".set foo,3\nfoo: nop\n.byte foo", "90 00");
});

test("assemble() assembles the kernel's irq_entries_start pattern of =, .rept and .fill", () => {
  sameAsGas(
    "vector=0x20\n.rept 3\n0 :\n.byte 0x6a, vector\njmp 2f\n.fill 0b + 16 - ., 1, 0xcc\n" +
      "vector = vector+1\n.endr\n2: ret",
    "6a 20 eb 2c " + "cc ".repeat(12) + "6a 21 eb 1c " + "cc ".repeat(12) + "6a 22 eb 0c " +
      "cc ".repeat(12) + "c3",
  );
});

test("assemble() refuses to .set or = a name already defined as a label", () => {
  gasRefuses("foo: nop\n.set foo, 3", /2: Error: symbol `foo' is already defined/);
  failsAt("foo: nop\n.set foo, 3", 2, 1, "symbol 'foo' is already defined as a label");
  failsAt("foo: nop\n  foo = 3", 2, 3, "symbol 'foo' is already defined as a label");
});

test("assemble() pads .balign/.align/.p2align with an explicit 0x90 fill using GAS's NOPs", () => {
  sameAsGas("nop\n.balign 16, 0x90\nret", "90 66 66 2e 0f 1f 84 00 00 00 00 00 0f 1f 40 00 c3");
  sameAsGas("nop\n.balign 8, 0x90\nret", "90 8d b4 26 00 00 00 00 c3", 32);
  sameAsGas("nop\n.p2align 4, 0x90\nret", "90 66 66 2e 0f 1f 84 00 00 00 00 00 0f 1f 40 00 c3");
  sameAsGas("nop\n.align 8, 0x190\nret", "90 0f 1f 80 00 00 00 00 c3");
  sameAsGas(
    "nop\n.balign 32, 0x90\nret",
    "90 eb 1d " + "8d b4 26 00 00 00 00 ".repeat(4) + "90 c3",
    32,
  );
  // Any other fill stays a byte fill.
  sameAsGas("nop\n.balign 4, 0x91\nret", "90 91 91 91 c3");
});

test("assemble() emits .fill repeat, size, value like GAS", () => {
  sameAsGas(".fill 2, 4, 0x11223344", "44 33 22 11 44 33 22 11");
  // Sizes over 4: the low 4 bytes of the value, then zeros.
  sameAsGas(".fill 2, 8, 0x1122334455667788", "88 77 66 55 00 00 00 00 88 77 66 55 00 00 00 00");
  sameAsGas(".fill 1, 8, -1\n.fill 1, 5, -2", "ff ff ff ff 00 00 00 00 fe ff ff ff 00");
  // Sizes under 4: cut to size, no range error.
  sameAsGas(".fill 2, 3, 0x11223344\n.fill 1, 2, 0x123456", "44 33 22 44 33 22 56 34");
  // Defaults: size 1, value 0; a zero count or size emits nothing.
  sameAsGas(".fill 3\n.fill 2, 2\n.fill 0, 4, 1\nnop\n.fill 2, 0, 1", "00 00 00 00 00 00 00 90");
  sameAsGas("x=2\n.fill x,x,x", "02 00 02 00");
});

test("assemble() converges on a .fill whose count depends on '.' and on labels", () => {
  sameAsGas("a: jmp b\n.fill a + 16 - ., 1, 0xcc\nb: ret", "eb 0e " + "cc ".repeat(14) + "c3");
  sameAsGas("nop\n1: .fill 1b + 8 - ., 1, 0xcc\nret", "90 " + "cc ".repeat(8) + "c3", 32);
});

test("assemble() refuses the .fill forms GAS only warns about or misreads", () => {
  failsAt(".fill -1, 4, 1\nnop", 1, 1, "the repeat count -1 of .fill is out of range");
  failsAt(".fill 1, 9, 1", 1, 1, "the size of .fill must be a constant from 0 to 8, not 9");
  failsAt(".fill 2,,7", 1, 9, "the size of .fill is missing");
  failsAt(
    "a: .fill 1, 4, a",
    1,
    4,
    "the value of .fill must be an absolute constant, not an address",
  );
  gasRefuses("a: .fill 1, 4, a", /bad or irreducible absolute expression/);
});

test("assemble() honours the maximum-skip argument of .align/.balign/.p2align like GAS", () => {
  sameAsGas("nop\n.align 8, 0xcc, 3\nret", "90 c3");
  sameAsGas("nop\n.align 8, 0xcc, 7\nret", "90 cc cc cc cc cc cc cc c3");
  sameAsGas(".rept 6\nnop\n.endr\n.align 8, 0xcc, 3\nret", "90 90 90 90 90 90 cc cc c3");
  sameAsGas("nop\n.align 16,,3\nret", "90 c3");
  sameAsGas(".rept 14\nnop\n.endr\n.align 16,,3\nret", "90 ".repeat(14) + "66 90 c3");
  sameAsGas("nop\n.p2align 4,,15\nret", "90 66 66 2e 0f 1f 84 00 00 00 00 00 0f 1f 40 00 c3");
  sameAsGas("nop\n.balign 16, 0x90, 14\nret", "90 c3");
  // 0 means no limit.
  sameAsGas("nop\n.p2align 3,,0\nret", "90 0f 1f 80 00 00 00 00 c3");
  sameAsGas("nop\n.p2align 2,0xcc,0\nret", "90 cc cc cc c3");
  sameAsGas(
    ".rept 30\nnop\n.endr\n.p2align 6,,40\nret",
    "90 ".repeat(30) + "eb 20 " + "8d b4 26 00 00 00 00 ".repeat(4) + "8d 74 26 00 c3",
    32,
  );
});

test("assemble() names a missing forward local label like a missing backward one", () => {
  gasRefuses("jmp 1f\nret", /local label `"1" \(instance number 1 of a fb label\)' is not defined/);
  failsAt("jmp 1f\nret", 1, 5, "undefined local label '1f': no '1:' after it");
  failsAt("1: nop\njmp 1f", 2, 5, "undefined local label '1f': no '1:' after it");
});

test("assemble() refuses a size suffix on a direct jmp but not on an indirect one", () => {
  const cases = [["jmpq 1f\n1: ret", 64, 1], ["x: jmpq x", 64, 4], ["x: jmpl x", 32, 4]] as const;
  for (const [src, bits, col] of cases) {
    gasRefuses(src, /invalid instruction suffix for `jmp'/, bits);
    failsAt(src, 1, col, "invalid instruction suffix for 'jmp'", bits);
  }
  sameAsGas("jmpq *%rax\njmpq *(%rax)", "ff e0 ff 20");
  sameAsGas("jmpl *%eax", "ff e0", 32);
});

test("assemble() refuses out-of-range immediates and data that GAS truncates", () => {
  sameAsGas(".byte 255, -128\n.word 65535", "ff 80 ff ff");
  failsAt("movb $256,%al", 1, 6, "value 0x100 of the immediate is out of range for 8 bits");
  failsAt(".byte 256", 1, 1, "value 0x100 of a .byte item is out of range for 8 bits");
  failsAt(".word 70000", 1, 1, "value 0x11170 of a .word item is out of range for 16 bits");
});

test("assemble() takes a constant (%rip) displacement as the displacement itself", () => {
  sameAsGas(".set FOO,256\nmov FOO(%rip),%rax", "48 8b 05 00 01 00 00");
  sameAsGas(
    "a: nop\nnop\nb: mov (b-a)(%rip),%rax\nlea (b-a)(%rip),%rcx",
    "90 90 48 8b 05 02 00 00 00 48 8d 0d 02 00 00 00",
  );
  sameAsGas(".set FOO,0x40\nmovl $1, FOO(%rip)", "c7 05 40 00 00 00 01 00 00 00");
  // Addresses stay targets: labels, '.', and label-based .set symbols.
  sameAsGas("a: nop\n.set X, a+1\nmov X(%rip),%rax", "90 48 8b 05 f9 ff ff ff");
  sameAsGas("a: mov a(%rip),%rax\nmov .(%rip),%rax", "48 8b 05 f9 ff ff ff 48 8b 05 f9 ff ff ff");
});

Deno.test("assemble() treats (%rip) symbols from the options and forward constants as targets", () => {
  // GAS would emit a PC32 relocation against these; linked at 0 it gives these bytes.
  const hex = (src: string) =>
    hexBytes(assemble(src, { bitness: 64, symbols: { EXT: 0x40 } }).bytes);
  assert.equal(hex("mov EXT(%rip),%rax"), "48 8b 05 39 00 00 00");
  assert.equal(hex("mov FOO(%rip),%rax\n.set FOO,0x40"), "48 8b 05 39 00 00 00");
  assert.equal(hex("mov (fwd-a)(%rip),%rax\na: nop\nfwd: ret"), "48 8b 05 fa ff ff ff 90 c3");
});
