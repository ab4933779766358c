import assert from "node:assert/strict";
import { disassemble, formatListing } from "../lib/x86/disassemble.ts";
import { assemble } from "../lib/x86/assemble.ts";

Deno.test("disassemble() prints AT&T text with symbol names for known call targets", () => {
  const origin = 0xffffffff81000000n;
  const symbols = new Map([[0xffffffff81000100n, "do_int3"], [origin, "entry"]]);
  const code = assemble("call do_int3\nmovl %eax,%esp\ncall *%rax\nret", {
    bitness: 64,
    origin,
    symbols: { do_int3: 0xffffffff81000100n },
  }).bytes;
  const lines = disassemble(code, { bitness: 64, origin, symbols });
  assert.deepEqual(lines.map((l) => l.text), [
    "call 0xffffffff81000100 <do_int3>",
    "mov %eax,%esp",
    "call *%rax",
    "ret",
  ]);
  assert.deepEqual(lines.map((l) => l.address), [origin, origin + 5n, origin + 7n, origin + 9n]);
  assert.deepEqual(Array.from(lines[0]!.bytes), [0xe8, 0xfb, 0x00, 0x00, 0x00]);
  assert.equal(lines[0]!.label, "entry");
});

Deno.test("disassemble() accepts a name-to-address record and annotates address immediates", () => {
  const code = assemble("movq $0xffffffff81000100, %rax\nmovl $5, %eax", { bitness: 64 }).bytes;
  const lines = disassemble(code, { bitness: 64, symbols: { target: 0xffffffff81000100n } });
  assert.equal(lines[0]!.text, "mov $0xffffffff81000100,%rax <target>");
  // A small immediate is never taken for an address.
  assert.equal(lines[1]!.text, "mov $0x5,%eax");
});

Deno.test("disassemble() decodes 32-bit code and reports undecodable bytes as (bad)", () => {
  const lines = disassemble(new Uint8Array([0x83, 0xec, 0x08, 0xcf, 0x0f, 0xff]), { bitness: 32 });
  assert.deepEqual(lines.map((l) => l.text), ["sub $0x8,%esp", "iret", "(bad)"]);
});

Deno.test("disassemble() shows RIP-relative operands the way objdump writes them", () => {
  const lines = disassemble(new Uint8Array([0x48, 0x8b, 0x05, 0x10, 0, 0, 0]), { bitness: 64 });
  assert.equal(lines[0]!.text, "mov 0x10(%rip),%rax");
});

Deno.test("formatListing() prints address, bytes and text, with a header at each symbol", () => {
  const lines = disassemble(new Uint8Array([0x90, 0xcc]), {
    bitness: 64,
    origin: 0x1000n,
    symbols: new Map([[0x1001n, "trap"]]),
  });
  const text = formatListing(lines);
  assert.equal(
    text,
    "    1000:\t90                   \tnop\n\n0000000000001001 <trap>:\n    1001:\tcc                   \tint3\n",
  );
});
