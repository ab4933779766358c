import assert from "node:assert/strict";
import { Decoder, DecoderOptions } from "iced-x86";
import { gasFormatter } from "../lib/x86/disassemble.ts";
import { assemble } from "../lib/x86/assemble.ts";
import { AssemblerError, hexBytes, TextpokeError } from "../lib/errors.ts";
import { corpus } from "./_assemble_corpus.ts";

const hex = (
  src: string,
  bitness: 32 | 64 = 64,
  extra: Partial<Parameters<typeof assemble>[1]> = {},
) => hexBytes(assemble(src, { bitness, ...extra }).bytes);

function throwsAt(src: string, line: number, column: number, words: RegExp, bitness: 32 | 64 = 64) {
  assert.throws(
    () => assemble(src, { bitness, symbols: { EXT: 0x1000n } }),
    (e: unknown) => {
      assert.ok(e instanceof AssemblerError, `not an AssemblerError: ${String(e)}`);
      assert.equal(e.line, line, e.message);
      assert.equal(e.column, column, e.message);
      assert.match(e.message, words);
      return true;
    },
  );
}

Deno.test("assemble() encodes the kernel's int3 entry gap with symbols from the table", () => {
  const src = `
  testb $3, CS-ORIG_RAX(%rsp)
  jnz 1f
  .rept 6
  pushq 5*8(%rsp)
  .endr
1:
  call do_int3
  movl %eax, %esp`;
  const out = assemble(src, {
    bitness: 64,
    origin: 0xffffffff81000000n,
    symbols: new Map([["CS", 136n], ["ORIG_RAX", 120n], ["do_int3", 0xffffffff81000100n]]),
  });
  assert.equal(
    hexBytes(out.bytes),
    "f6 44 24 10 03 75 18 " + "ff 74 24 28 ".repeat(6) + "e8 dc 00 00 00 89 c4",
  );
  assert.equal(out.origin, 0xffffffff81000000n);
  assert.equal(out.lines.length, 10);
  assert.deepEqual(out.lines[2], {
    address: 0xffffffff81000007n,
    length: 4,
    line: 5,
    text: "pushq 5*8(%rsp)",
  });
});

Deno.test("assemble() resolves numeric local labels to the nearest 1b and 1f", () => {
  // jmp 1f skips to the second 1:, jmp 1b goes back to it.
  assert.equal(hex("1: nop\njmp 1f\nnop\n1: jmp 1b\njmp 1b"), "90 eb 01 90 eb fe eb fc");
  throwsAt("jmp 1b", 1, 5, /undefined local label '1b'/);
  throwsAt("jmp 1f\n", 1, 5, /undefined local label '1f': no '1:' after it/);
});

Deno.test("assemble() expands nested .rept blocks and evaluates the count from the symbol table", () => {
  assert.equal(
    hex(".rept 2\n.byte 1\n.rept N\n.byte 2\n.endr\n.endr", 64, { symbols: { N: 3 } }),
    "01 02 02 02 01 02 02 02",
  );
  assert.equal(hex(".rept 0\nud2\n.endr\nnop"), "90");
});

Deno.test("assemble() evaluates expressions with GAS precedence, '.', .set, .equ and =", () => {
  assert.equal(
    hex(".byte 1+2*3, (1+2)*3, 1<<4|1, ~0&0xff, 10/3, 10%3, -1"),
    "07 09 11 ff 03 01 ff",
  );
  // GAS binds | and & tighter than + and -.
  assert.equal(hex(".byte 1+2&3"), "03");
  assert.equal(hex(".set A, 4\n.equ B, A*2\nC = B+1\n.byte A, B, C"), "04 08 09");
  assert.equal(hex("nop\nnop\n.long .", 64, { origin: 0x1000n }), "90 90 02 10 00 00");
  assert.equal(hex(".byte 'a', 0x10, 010, 0b11"), "61 10 08 03");
});

Deno.test("assemble() emits .byte/.word/.long/.quad little-endian, with labels as absolute addresses", () => {
  const out = assemble("start:\n.word 0x1234\n.long 0x12345678\n.quad end\nend:", {
    bitness: 64,
    origin: 0xffffffff81000000n,
  });
  assert.equal(hexBytes(out.bytes), "34 12 78 56 34 12 0e 00 00 81 ff ff ff ff");
  assert.equal(out.labels.get("start"), 0xffffffff81000000n);
  assert.equal(out.labels.get("end"), 0xffffffff8100000en);
  assert.equal(hex('.ascii "ab"\n.asciz "c\\n"'), "61 62 63 0a 00");
});

Deno.test("assemble() relaxes a forward jmp to rel32 only when the target is out of rel8 range", () => {
  const far = assemble("jmp 1f\n.skip 127\n1: jne 1b", { bitness: 64 }).bytes;
  assert.equal(hexBytes(far.subarray(0, 2)), "eb 7f");
  const farther = assemble("jmp 1f\n.skip 128\n1:", { bitness: 64 }).bytes;
  assert.equal(hexBytes(farther.subarray(0, 5)), "e9 80 00 00 00");
  // A backward jcc just out of range becomes 0f 8x rel32.
  const back = assemble("1: .skip 127\njne 1b", { bitness: 64 }).bytes;
  assert.equal(hexBytes(back.subarray(127)), "0f 85 7b ff ff ff");
});

Deno.test("assemble() uses rel32 for calls and for branches to table symbols", () => {
  const syms = { ftrace_stub: 0x1010n };
  assert.equal(
    hex("call ftrace_stub\njmp ftrace_stub\nje ftrace_stub", 64, {
      origin: 0x1000n,
      symbols: syms,
    }),
    "e8 0b 00 00 00 e9 06 00 00 00 0f 84 00 00 00 00",
  );
  assert.equal(hex("call 1f\n1:"), "e8 00 00 00 00");
});

Deno.test("assemble() addresses labels RIP-relatively and keeps literal %rip displacements", () => {
  assert.equal(
    hex("movq var(%rip), %rax\nvar: .quad 0"),
    "48 8b 05 00 00 00 00 00 00 00 00 00 00 00 00",
  );
  assert.equal(hex("lea 0x10(%rip), %rax"), "48 8d 05 10 00 00 00");
});

Deno.test("assemble() applies prefixes on the same line, on their own line and after ';'", () => {
  assert.equal(hex("lock cmpxchgl %ecx, (%rdx)"), "f0 0f b1 0a");
  assert.equal(hex("lock\ncmpxchgl %ecx, (%rdx)"), "f0 0f b1 0a");
  assert.equal(hex("lock; incl (%rax) # comment\nrep stosb /* block */"), "f0 ff 00 f3 aa");
  assert.equal(hex("repne scasb\nrepe cmpsq"), "f2 ae f3 48 a7");
});

Deno.test("assemble() refuses 'lock' before an instruction that cannot be locked, like GNU as", () => {
  const notLockable = /expecting a lockable instruction after 'lock': '\w+' cannot be locked/;
  const regDest =
    /expecting a lockable instruction after 'lock': '\w+' is lockable only with a memory destination/;
  throwsAt("lock ror %cl,%rcx", 1, 6, notLockable);
  throwsAt("nop\n  lock nop", 2, 8, notLockable, 32);
  throwsAt("lock mov %eax,(%rbx)", 1, 6, notLockable);
  throwsAt("lock testb $-1,%al", 1, 6, notLockable);
  throwsAt("lock btl $1,(%rax)", 1, 6, notLockable);
  throwsAt("lock movsb", 1, 6, notLockable);
  throwsAt("lock add %eax,%ecx", 1, 6, regDest);
  throwsAt("lock add (%rax),%eax", 1, 6, regDest);
  throwsAt("lock xchg %eax,%ecx", 1, 6, regDest);
  throwsAt("lock cmpxchg %ecx,%edx", 1, 6, regDest);
  // The lockable ones with a memory destination still assemble; xchg may have it first.
  assert.equal(
    hex("lock xchg (%rbx),%eax\nlock xaddl %ecx,(%rax)\nlock btsl $1,(%rax)\nlock notq (%rax)"),
    "f0 87 03 f0 0f c1 08 f0 0f ba 28 01 f0 48 f7 10",
  );
  // On its own statement the prefix is just a byte, as in GAS.
  assert.equal(hex("lock; incl %eax", 32), "f0 40");
});

Deno.test("assemble() refuses 'rep' before anything but string instructions, ret and nop", () => {
  throwsAt("rep add %eax,%ecx", 1, 5, /invalid instruction 'add' after 'rep'/);
  throwsAt("repne jmp .", 1, 7, /invalid instruction 'jmp' after 'repne'/);
  throwsAt("rep nopl %eax", 1, 5, /invalid instruction 'nopl' after 'rep'/);
  throwsAt("lock rep incl (%rax)", 1, 10, /invalid instruction 'incl' after 'rep'/);
  throwsAt("rep lock", 1, 5, /invalid instruction 'lock' after 'rep'/);
  assert.equal(hex("rep ret\nrepne ret $8\nrep nop\nrepnz nop"), "f3 c3 f2 c2 08 00 f3 90 f2 90");
  assert.equal(hex("retw\nrepz retw $4", 32), "66 c3 66 f3 c2 04 00");
});

Deno.test("assemble() refuses the same type of prefix written twice, like GNU as", () => {
  throwsAt("lock lock incl (%rax)", 1, 6, /same type of prefix used twice: 'lock' after 'lock'/);
  throwsAt("rep repne movsb", 1, 5, /same type of prefix used twice: 'repne' after 'rep'/);
  throwsAt("lock rep rep stosb", 1, 10, /same type of prefix used twice: 'rep' after 'rep'/);
  // lock and rep are different types; separate statements are separate prefixes.
  throwsAt("rep lock movsb", 1, 10, /expecting a lockable instruction/);
  assert.equal(hex("lock;lock incl (%rax)\nrep;rep movsb"), "f0 f0 ff 00 f3 f3 a4");
});

Deno.test("assemble() refuses a memory operand with nothing or only a scale after the base", () => {
  throwsAt("mov %ah,0x12345678(%rbx,,4)", 1, 25, /a scale factor needs an index register/);
  throwsAt("mov (,,2),%eax", 1, 7, /a scale factor needs an index register/);
  throwsAt("mov (%rbx,,),%eax", 1, 11, /a scale factor needs an index register/);
  throwsAt("mov (%rbx,),%eax", 1, 11, /expecting an index register or scale factor after ','/);
  throwsAt("mov (,),%eax", 1, 7, /expecting an index register or scale factor after ','/, 32);
  // An empty scale after an index register means 1, as in GAS.
  assert.equal(hex("mov (%rbx,%rcx,),%eax\nmov (,%rcx,),%eax"), "8b 04 0b 8b 04 0d 00 00 00 00");
});

Deno.test("assemble() picks GAS's encodings for immediates, moffs and accumulator forms", () => {
  assert.equal(hex("mov %eax,%ecx"), "89 c1");
  assert.equal(
    hex("addl $1,%ecx\naddl $0x80,%ecx\naddl $0x80,%eax"),
    "83 c1 01 81 c1 80 00 00 00 05 80 00 00 00",
  );
  assert.equal(hex("push $1\npush $0x100"), "6a 01 68 00 01 00 00");
  assert.equal(hex("movabsq $0x1122334455667788, %rax"), "48 b8 88 77 66 55 44 33 22 11");
  assert.equal(hex("movl 0x1000,%eax", 32), "a1 00 10 00 00");
  assert.equal(hex("int $3\nint $0x80"), "cc cd 80");
  assert.equal(hex("iretq\niret\ncltq\ncqto"), "48 cf cf 48 98 48 99");
  // Labels in immediates take the full-width field, like a GAS relocation.
  assert.equal(hex("addl $x, %ecx\nx:"), "81 c1 06 00 00 00");
});

Deno.test("assemble() pads .align in code with GAS's multi-byte NOPs and .balign with a fill byte", () => {
  assert.equal(hex("ret\n.align 8"), "c3 0f 1f 80 00 00 00 00");
  assert.equal(hex("ret\n.align 4", 32), "c3 8d 76 00");
  assert.equal(hex("ret\n.balign 4, 0xcc"), "c3 cc cc cc");
  assert.equal(hex("ret\n.p2align 2"), "c3 0f 1f 00");
});

Deno.test("assemble() reports each kind of error with the line and column of the token", () => {
  throwsAt("nop\n  frob %eax", 2, 3, /unknown mnemonic 'frob'/);
  throwsAt("movl %eax, $1", 1, 12, /bad operand 2/);
  throwsAt("call missing", 1, 6, /undefined symbol 'missing'/);
  throwsAt("nop\n.byte 1, 0x100", 2, 1, /out of range for 8 bits/);
  throwsAt("addl $0x100000000, %eax", 1, 6, /out of range for 32 bits/);
  throwsAt("nop\n  .rept 3\nnop", 2, 3, /unterminated '\.rept'/);
  throwsAt(".endr", 1, 1, /'\.endr' without a matching '\.rept'/);
  throwsAt("x: nop\n x: nop", 2, 2, /label 'x' is defined twice/);
  throwsAt("mov %foo, %eax", 1, 5, /unknown register '%foo'/);
  throwsAt("incl %eax, %ecx", 1, 1, /takes 1 operand/);
  throwsAt("add $1, (%rax)", 1, 1, /cannot tell the operand size/);
  throwsAt("movl %eax, %rcx", 1, 12, /operand size mismatch/);
  throwsAt("push %rax", 1, 6, /does not exist in 32-bit mode/, 32);
  throwsAt("movb %ah, %r8b", 1, 1, /REX/);
  throwsAt(".frob 1", 1, 1, /unknown directive '\.frob'/);
  throwsAt("mov (%rax,%rsp), %eax", 1, 5, /cannot be an index register/);
  throwsAt("mov 8(%rax,%rcx,3), %eax", 1, 17, /scale factor/);
  throwsAt("/* open", 1, 1, /unterminated '\/\*'/);
  throwsAt("cltq", 1, 1, /not available in 32-bit mode/, 32);
  throwsAt("movq 0x100000000, %rax", 1, 6, /does not fit in 32 bits/);
});

Deno.test("assemble() never lets a host exception escape on malformed input", () => {
  const junk = [
    "mov",
    "mov ,",
    "mov %eax,",
    "(",
    "$",
    "jmp *",
    "jmp $1",
    "mov 1(,%eax,2,3), %eax",
    "lea %eax, %ecx",
    ".byte",
    ".align 3",
    ".rept -1",
    ".byte 1/0",
    ".skip -1",
    "movzbl (%rax), %al",
    "bswap %ax",
    "setel %al",
    "ret %eax",
    "push %cs",
    "mov %eax, %cs",
    ":",
    "1 nop",
    "'",
    "xchg $1, %eax",
    "shl %dl, %eax",
    "imul $1, %al",
    "int $0x100",
    "movs",
    "nopl",
    "jmp 1b:",
  ];
  for (const src of junk) {
    for (const bitness of [32, 64] as const) {
      try {
        assemble(src, { bitness });
      } catch (e) {
        assert.ok(e instanceof TextpokeError, `${src}: ${String(e)}`);
      }
    }
  }
  // Several of them must be refused, not silently assembled.
  for (
    const src of [
      "mov",
      "jmp $1",
      "lea %eax, %ecx",
      ".align 3",
      ".byte 1/0",
      "int $0x100",
      "shl %dl, %eax",
    ]
  ) {
    assert.throws(() => assemble(src, { bitness: 64 }), AssemblerError, src);
  }
});

for (const bits of [64, 32] as const) {
  Deno.test(`assemble() output decodes with iced-x86 and its GAS text reassembles to the same bytes (${bits}-bit)`, () => {
    const lines = corpus(bits).filter((l) => !l.includes(";"));
    const out = assemble(lines.join("\n"), { bitness: bits });
    const decoder = new Decoder(bits, out.bytes, DecoderOptions.None);
    const formatter = gasFormatter(true);
    const failures: string[] = [];
    try {
      let i = 0;
      for (const rec of out.lines) {
        const chunk = out.bytes.subarray(i, i + rec.length);
        i += rec.length;
        // Own-line prefixes ("lock" alone) are not instructions by themselves.
        if (rec.text === "lock" || rec.text.startsWith("rep")) continue;
        decoder.position = i - rec.length;
        decoder.ip = BigInt(i - rec.length);
        const ins = decoder.decode();
        try {
          if (ins.isInvalid || ins.length !== rec.length) {
            failures.push(
              `${rec.text}: decodes as ${ins.isInvalid ? "invalid" : ins.length + " bytes"}`,
            );
            continue;
          }
          const text = formatter.format(ins);
          let again: string;
          try {
            again = hexBytes(
              assemble(text, { bitness: bits, origin: BigInt(i - rec.length) }).bytes,
            );
          } catch (e) {
            failures.push(`${rec.text} -> ${text}: ${String(e)}`);
            continue;
          }
          if (again !== hexBytes(chunk)) {
            failures.push(`${rec.text} -> ${text}: ${hexBytes(chunk)} vs ${again}`);
          }
        } finally {
          ins.free();
        }
      }
    } finally {
      decoder.free();
      formatter.free();
    }
    assert.deepEqual(failures.slice(0, 20), []);
  });
}
