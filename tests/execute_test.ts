import assert from "node:assert/strict";
import { CF, DF, OF, SF, ZF } from "../lib/x86/flags.ts";
import { bindHandler, cpuidLeaf, Slot } from "../lib/x86/execute.ts";
import { decodeInto } from "../lib/x86/decode.ts";
import { boot, DATA, runToHlt, STACK_TOP } from "./_machine_fixture.ts";

Deno.test("execute() computes the binary ALU group with flags", () => {
  const { cpu } = runToHlt(
    64,
    `
    mov $5, %eax
    add $7, %eax          # 12
    mov $-1, %ebx
    add $1, %ebx          # 0, CF ZF
    setc %r8b
    setz %r9b
    mov $10, %ecx
    sub $11, %ecx         # -1
    mov $0xf0, %edx
    and $0x3c, %edx       # 0x30
    or $0x1, %edx         # 0x31
    xor $0xff, %edx       # 0xce
    stc
    mov $1, %esi
    adc $1, %esi          # 3
    stc
    mov $5, %edi
    sbb $1, %edi          # 3
    mov $3, %r10d
    cmp $3, %r10d
    sete %r11b
    test $4, %r10d
    setz %r12b
    hlt
  `,
  );
  assert.equal(cpu.getReg("eax"), 12n);
  assert.equal(cpu.getReg("ebx"), 0n);
  assert.equal(cpu.getReg("r8b"), 1n);
  assert.equal(cpu.getReg("r9b"), 1n);
  assert.equal(cpu.getReg("rcx"), 0xffffffffn);
  assert.equal(cpu.getReg("edx"), 0xcen);
  assert.equal(cpu.getReg("esi"), 3n);
  assert.equal(cpu.getReg("edi"), 3n);
  assert.equal(cpu.getReg("r11b"), 1n);
  assert.equal(cpu.getReg("r12b"), 1n);
});

Deno.test("execute() does 64-bit arithmetic with carries across the halves", () => {
  const { cpu } = runToHlt(
    64,
    `
    mov $0xffffffff, %eax
    add $1, %rax               # 0x100000000
    movabs $0x8000000000000000, %rbx
    sub $1, %rbx               # 0x7fffffffffffffff, OF
    seto %cl
    mov $-2, %rdx
    neg %rdx                   # 2
    hlt
  `,
  );
  assert.equal(cpu.getReg("rax"), 0x100000000n);
  assert.equal(cpu.getReg("rbx"), 0x7fffffffffffffffn);
  assert.equal(cpu.getReg("cl"), 1n);
  assert.equal(cpu.getReg("rdx"), 2n);
});

Deno.test("execute() shifts and rotates, inc/dec/neg/not", () => {
  const { cpu } = runToHlt(
    64,
    `
    mov $0x81, %eax
    shl $4, %eax        # 0x810
    mov $0x80000000, %ebx
    sar $4, %ebx        # 0xf8000000
    mov $0x80000000, %ecx
    shr $31, %ecx       # 1
    mov $0x12345678, %edx
    rol $8, %edx        # 0x34567812
    mov $0x12345678, %esi
    ror $8, %esi        # 0x78123456
    mov $3, %cl
    mov $1, %edi
    shl %cl, %edi       # 8 (count in cl)
    mov $5, %r8d
    inc %r8d
    dec %r8d
    dec %r8d            # 4
    mov $0, %r9d
    not %r9d            # 0xffffffff
    mov $1, %r10d
    neg %r10d           # 0xffffffff
    clc
    mov $1, %r11d
    rcl $1, %r11d       # 2
    hlt
  `,
  );
  assert.equal(cpu.getReg("eax"), 0x810n);
  assert.equal(cpu.getReg("ebx"), 0xf8000000n);
  assert.equal(cpu.getReg("edx"), 0x34567812n);
  assert.equal(cpu.getReg("esi"), 0x78123456n);
  assert.equal(cpu.getReg("edi"), 8n);
  assert.equal(cpu.getReg("r8d"), 4n);
  assert.equal(cpu.getReg("r9"), 0xffffffffn);
  assert.equal(cpu.getReg("r10"), 0xffffffffn);
  assert.equal(cpu.getReg("r11"), 2n);
});

Deno.test("execute() multiplies and divides in every form", () => {
  const { cpu } = runToHlt(
    64,
    `
    mov $0x10000, %eax
    mov $0x10000, %ecx
    mul %ecx             # edx:eax = 0x1_0000_0000
    mov %eax, %r8d
    mov %edx, %r9d
    mov $-3, %rax
    mov $7, %rcx
    imul %rcx            # rdx:rax = -21
    mov %rax, %r10
    mov %rdx, %r11
    mov $6, %esi
    imul $7, %esi, %edi  # 42
    imul %esi, %edi      # 252
    mov $0, %edx
    mov $100, %eax
    mov $7, %ecx
    div %ecx             # 14 r 2
    mov %eax, %r12d
    mov %edx, %r13d
    mov $-100, %rax
    cqo
    mov $7, %rcx
    idiv %rcx            # -14 r -2
    mov %rax, %r14
    mov %rdx, %r15
    mov $200, %ax
    mov $3, %bl
    div %bl              # al=66 ah=2
    hlt
  `,
  );
  assert.equal(cpu.getReg("r8d"), 0n);
  assert.equal(cpu.getReg("r9d"), 1n);
  assert.equal(cpu.getReg("r10"), BigInt.asUintN(64, -21n));
  assert.equal(cpu.getReg("r11"), BigInt.asUintN(64, -1n));
  assert.equal(cpu.getReg("edi"), 252n);
  assert.equal(cpu.getReg("r12d"), 14n);
  assert.equal(cpu.getReg("r13d"), 2n);
  assert.equal(cpu.getReg("r14"), BigInt.asUintN(64, -14n));
  assert.equal(cpu.getReg("r15"), BigInt.asUintN(64, -2n));
  assert.equal(cpu.getReg("al"), 66n);
  assert.equal(cpu.getReg("ah"), 2n);
});

Deno.test("execute() follows x86 partial-register write rules", () => {
  const { cpu } = runToHlt(
    64,
    `
    movabs $0x1122334455667788, %rax
    mov %rax, %rbx
    mov %rax, %rcx
    mov %rax, %rdx
    mov $0x99, %al        # 8-bit: preserve
    mov $0xaa, %bh        # AH..BH
    mov $0xbbbb, %cx      # 16-bit: preserve
    mov $0xcc, %edx       # 32-bit: zero upper half
    hlt
  `,
  );
  assert.equal(cpu.getReg("rax"), 0x1122334455667799n);
  assert.equal(cpu.getReg("rbx"), 0x112233445566aa88n);
  assert.equal(cpu.getReg("rcx"), 0x112233445566bbbbn);
  assert.equal(cpu.getReg("rdx"), 0xccn);
});

Deno.test("execute() moves data: movzx, movsx, movslq, lea, xchg, bswap, cbw/cwd", () => {
  const { cpu } = runToHlt(
    64,
    `
    mov $0x8000, %rsi
    movl $0x80ff7f01, (%rsi)
    movzbl 1(%rsi), %eax      # 0x7f
    movsbl 2(%rsi), %ebx      # 0xffffffff
    movswq 2(%rsi), %rcx      # sign-extended 0x80ff
    movslq (%rsi), %rdx
    lea 8(%rsi,%rax,4), %rdi  # 0x8000 + 8 + 0x1fc
    mov $1, %r8
    mov $2, %r9
    xchg %r8, %r9
    xchg %r8, (%rsi)          # memory xchg (locked)
    mov $0x11223344, %r10d
    bswap %r10d
    mov $0x80, %eax
    cbw                        # ax = 0xff80
    cwde                       # eax = 0xffff_ff80
    cdqe
    mov %rax, %r11
    mov $-5, %eax
    cltd                       # edx = -1
    hlt
  `,
  );
  assert.equal(cpu.getReg("ebx"), 0xffffffffn);
  assert.equal(cpu.getReg("rcx"), 0xffffffffffff80ffn);
  assert.equal(cpu.getReg("rdx"), 0xffffffffn);
  assert.equal(cpu.getReg("rdi"), 0x8000n + 8n + 0x7fn * 4n);
  assert.equal(cpu.getReg("r9"), 1n);
  assert.equal(cpu.getReg("r8"), 0x80ff7f01n);
  assert.equal(cpu.getReg("r10d"), 0x44332211n);
  assert.equal(cpu.getReg("r11"), 0xffffffffffffff80n);
});

Deno.test("execute() runs cmpxchg and xadd with their success and failure paths", () => {
  const { cpu, m } = runToHlt(
    64,
    `
    mov $0x8000, %rsi
    movq $5, (%rsi)
    mov $5, %rax
    mov $9, %rcx
    lock cmpxchg %rcx, (%rsi)   # equal: (%rsi) = 9, ZF
    setz %r8b
    mov $5, %rax
    lock cmpxchg %rcx, (%rsi)   # not equal: rax = 9
    setz %r9b
    mov $3, %rdx
    lock xadd %rdx, (%rsi)      # (%rsi) = 12, rdx = 9
    hlt
  `,
  );
  assert.equal(cpu.getReg("r8b"), 1n);
  assert.equal(cpu.getReg("r9b"), 0n);
  assert.equal(cpu.getReg("rax"), 9n);
  assert.equal(cpu.getReg("rdx"), 9n);
  assert.equal(m.read64(DATA), 12n);
});

Deno.test("execute() runs setcc, cmovcc (32-bit cmov zero-extends even when false) and bt*", () => {
  const { cpu, m } = runToHlt(
    64,
    `
    movabs $0xffffffff00000000, %rbx
    mov $1, %ecx
    cmp $2, %ecx
    setl %al
    setg %ah
    cmovg %ecx, %ebx            # false, but upper half cleared
    mov $7, %edx
    cmovl %ecx, %edx            # true
    mov $0x8000, %rsi
    movq $0, (%rsi)
    mov $67, %edi
    bts %rdi, (%rsi)            # bit 67 = byte 8, bit 3
    mov $0b1010, %r8d
    bt $1, %r8d
    setc %r9b
    btr $3, %r8d                # 0b0010
    btc $0, %r8d                # 0b0011
    hlt
  `,
  );
  assert.equal(cpu.getReg("al"), 1n);
  assert.equal(cpu.getReg("ah"), 0n);
  assert.equal(cpu.getReg("rbx"), 0n);
  assert.equal(cpu.getReg("edx"), 1n);
  assert.equal(m.read64(DATA + 8n), 8n);
  assert.equal(cpu.getReg("r9b"), 1n);
  assert.equal(cpu.getReg("r8d"), 3n);
});

Deno.test("execute() runs push/pop/call/ret/leave/jmp/jcc and indirect branches", () => {
  const { cpu, labels } = runToHlt(
    64,
    `
    mov $3, %ecx
    xor %eax, %eax
  1:
    add %ecx, %eax
    dec %ecx
    jnz 1b                     # eax = 6
    push $0x1234
    pop %rbx
    call f
    lea g(%rip), %rdx
    call *%rdx
    mov %rax, %r12
    lea h(%rip), %rdx
    jmp *%rdx
    ud2
  h:
    push %rbp
    mov %rsp, %rbp
    sub $32, %rsp
    leave
    mov %rsp, %r13
    hlt
  f:
    add $100, %eax
    ret
  g:
    push $7
    pop %rax
    ret
  `,
  );
  assert.ok(labels.has("f"));
  assert.equal(cpu.getReg("rbx"), 0x1234n);
  assert.equal(cpu.getReg("r12"), 7n);
  assert.equal(cpu.getReg("r13"), STACK_TOP);
  assert.equal(cpu.getReg("rsp"), STACK_TOP);
});

Deno.test("execute() pushes and pops flags, and ret imm16 drops arguments", () => {
  const { cpu } = runToHlt(
    64,
    `
    stc
    pushf
    clc
    popf
    setc %al
    push $1
    push $2
    call f
    mov %rsp, %rbx
    hlt
  f:
    ret $16
  `,
  );
  assert.equal(cpu.getReg("al"), 1n);
  assert.equal(cpu.getReg("rbx"), STACK_TOP);
});

Deno.test("execute() runs string instructions one iteration per step, honoring rcx and DF", () => {
  const b = boot(
    64,
    `
    mov $0x8000, %rsi
    lea 0x100(%rsi), %rdi
    mov $16, %ecx
    rep movsb
    hlt
  `,
  );
  b.m.writeBytes(DATA, [...Array(16).keys()].map((i) => i + 1));
  const stop = b.m.run({ maxSteps: 3 + 5 });
  assert.equal(stop.kind, "budget");
  assert.equal(b.cpu.getReg("rcx"), 11n, "five iterations took five steps");
  const end = b.m.run({ maxSteps: 100 });
  assert.equal(end.kind, "hlt");
  assert.equal(end.steps, 11 + 1, "eleven more iterations (the last one falls through), hlt");
  assert.deepEqual([...b.m.readBytes(DATA + 0x100n, 16)], [...Array(16).keys()].map((i) => i + 1));
  assert.equal(b.cpu.getReg("rcx"), 0n);
});

Deno.test("execute() runs stos, lods, repe cmps, repne scas and std", () => {
  const { cpu, m } = runToHlt(
    64,
    `
    mov $0x8000, %rdi
    mov $0x4141414141414141, %rax
    mov $4, %ecx
    rep stosq                 # 32 bytes of 'A'
    movb $0x42, 0x8010        # 'B' at offset 16
    mov $0x8000, %rdi
    mov $0x42, %al
    mov $100, %ecx
    repne scasb               # stops after the 'B'
    mov %rdi, %r8
    mov $0x8000, %rsi
    mov $0x8008, %rdi
    mov $32, %ecx
    repe cmpsb                # equal until the 'B' at 0x8010 vs 0x8018
    mov %rsi, %r9
    std
    mov $0x8003, %rsi
    lodsb
    mov %rsi, %r10
    cld
    hlt
  `,
  );
  assert.equal(m.read64(DATA + 24n), 0x4141414141414141n);
  assert.equal(cpu.getReg("r8"), 0x8011n);
  assert.equal(cpu.getReg("r9"), 0x8009n);
  assert.equal(cpu.getReg("r10"), 0x8002n);
  assert.equal(cpu.getReg("al"), 0x41n);
  assert.equal(Number(cpu.rflags) & DF, 0);
});

Deno.test("execute() answers cpuid with the TextpokeEmu vendor", () => {
  const { cpu } = runToHlt(64, `xor %eax, %eax\n cpuid\n hlt`);
  const name = [cpu.getReg("ebx"), cpu.getReg("edx"), cpu.getReg("ecx")]
    .map((v) => String.fromCharCode(...[0, 8, 16, 24].map((s) => Number((v >> BigInt(s)) & 0xffn))))
    .join("");
  assert.equal(name, "TextpokeEmu ");
  assert.equal(cpu.getReg("eax"), 1n);
  assert.deepEqual(cpuidLeaf(0x80000001, 64)[3], 1 << 29);
});

Deno.test("execute() treats nops, pause, fences and flag ops as specified", () => {
  const { cpu } = runToHlt(
    64,
    `
    nop
    .byte 0x0f, 0x1f, 0x44, 0x00, 0x00
    pause
    mfence
    lfence
    sfence
    stc
    cmc
    setc %al
    std
    cld
    hlt
  `,
  );
  assert.equal(cpu.getReg("al"), 0n);
  assert.equal(Number(cpu.rflags) & (DF | CF), 0);
});

Deno.test("execute() leaves all state unchanged on the 32-bit NOP5 3e 8d 74 26 00", () => {
  const b = boot(32, `.byte 0x3e, 0x8d, 0x74, 0x26, 0x00\n hlt`);
  const names = ["eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi", "eflags"];
  b.cpu.setReg("esi", 0xdeadbeefn);
  b.cpu.setReg("eflags", 0x2n | BigInt(ZF | SF | OF));
  const before = names.map((n) => b.cpu.getReg(n));
  assert.equal(b.m.run({ maxSteps: 1 }).kind, "budget");
  assert.equal(b.cpu.rip, 0x1005n);
  assert.deepEqual(names.map((n) => b.cpu.getReg(n)), before);
});

Deno.test("execute() runs 32-bit code: push/call/ret, 16-bit ops and movs to segment registers", () => {
  const { cpu } = runToHlt(
    32,
    `
    mov $0x12345678, %eax
    mov $0xabcd, %ax
    push %eax
    call f
    pop %ebx
    mov $0x7b, %ecx
    mov %ecx, %ds
    mov %ds, %edx
    hlt
  f:
    mov 4(%esp), %esi
    ret
  `,
  );
  assert.equal(cpu.getReg("eax"), 0x1234abcdn);
  assert.equal(cpu.getReg("ebx"), 0x1234abcdn);
  assert.equal(cpu.getReg("esi"), 0x1234abcdn);
  assert.equal(cpu.ds, 0x7b);
  assert.equal(cpu.getReg("edx"), 0x7bn);
  assert.equal(cpu.getReg("esp"), STACK_TOP);
});

Deno.test("bindHandler() marks locked instructions and xchg with memory as atomic", () => {
  const atomic = (bytes: number[]) =>
    bindHandler(decodeInto(new Slot(), new Uint8Array(bytes), 0, 64) as Slot).atomic;
  assert.equal(atomic([0xf0, 0x01, 0x06]), true, "lock add %eax,(%rsi)");
  assert.equal(atomic([0x87, 0x06]), true, "xchg %eax,(%rsi)");
  assert.equal(atomic([0xf0, 0x0f, 0xb1, 0x0e]), true, "lock cmpxchg %ecx,(%rsi)");
  assert.equal(atomic([0x01, 0x06]), false, "add %eax,(%rsi)");
  assert.equal(atomic([0x87, 0xc1]), false, "xchg %eax,%ecx");
});
