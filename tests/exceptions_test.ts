import assert from "node:assert/strict";
import { IF } from "../lib/x86/flags.ts";
import type { Machine } from "../lib/machine/machine.ts";
import { boot, CODE, STACK_TOP, words } from "./_machine_fixture.ts";

const USER_STACK = 0x11000n;

Deno.test("deliver() builds the 64-bit ring-0 frame on a 16-aligned stack and iretq undoes it", () => {
  const { m, cpu, labels } = boot(
    64,
    `
    int3
    mov $1, %eax
    hlt
  handler:
    iretq
  `,
  );
  const handler = labels.get("handler")!;
  m.setGate(3, { handler, type: "interrupt", dpl: 3 });
  cpu.setReg("rsp", STACK_TOP - 8n); // misaligned: delivery aligns down to 16 first
  cpu.rflags = 0x202n | 0x1n; // IF, CF
  const stop = m.run({ maxSteps: 10, until: handler });
  assert.equal(stop.kind, "until");
  const aligned = STACK_TOP - 16n;
  assert.equal(cpu.getReg("rsp"), aligned - 40n);
  assert.deepEqual(words(m, aligned - 40n, 5, 8), [
    CODE + 1n, // rip after the int3 (a trap)
    0x10n,
    0x203n,
    STACK_TOP - 8n,
    0x18n,
  ]);
  assert.equal(Number(cpu.rflags) & IF, 0, "interrupt gate clears IF");
  assert.equal(m.run({ maxSteps: 10 }).kind, "hlt");
  assert.equal(cpu.getReg("rsp"), STACK_TOP - 8n);
  assert.equal(cpu.rflags, 0x203n);
  assert.equal(cpu.getReg("eax"), 1n);
});

Deno.test("deliver() switches to tss.sp0 from ring 3 (64-bit) and iretq returns to ring 3", () => {
  const { m, cpu, labels } = boot(
    64,
    `
    int3
    mov $1, %eax
    hlt
  handler:
    iretq
  `,
  );
  const handler = labels.get("handler")!;
  m.setGate(3, { handler, type: "trap", dpl: 3 });
  cpu.cs = 0x33;
  cpu.ss = 0x2b;
  cpu.setReg("rsp", USER_STACK + 8n);
  cpu.rflags = 0x202n;
  cpu.tss.sp0 = STACK_TOP;
  assert.equal(m.run({ maxSteps: 10, until: handler }).kind, "until");
  assert.equal(cpu.cpl, 0);
  assert.equal(cpu.ss, 0, "a null SS is loaded on a privilege change in 64-bit mode");
  assert.deepEqual(words(m, STACK_TOP - 40n, 5, 8), [
    CODE + 1n,
    0x33n,
    0x202n,
    USER_STACK + 8n,
    0x2bn,
  ]);
  assert.notEqual(Number(cpu.rflags) & IF, 0, "trap gate keeps IF");
  // hlt at CPL 3 is #GP; stop just after the iretq instead.
  assert.equal(m.run({ maxSteps: 10, until: CODE + 1n }).kind, "until");
  assert.equal(cpu.cpl, 3);
  assert.equal(cpu.cs, 0x33);
  assert.equal(cpu.ss, 0x2b);
  assert.equal(cpu.getReg("rsp"), USER_STACK + 8n);
});

Deno.test("deliver() pushes only EFLAGS, CS, EIP at the same privilege in 32-bit mode", () => {
  const { m, cpu, labels } = boot(
    32,
    `
    int3
    mov $1, %eax
    hlt
  handler:
    iret
  `,
  );
  const handler = labels.get("handler")!;
  m.setGate(3, { handler, dpl: 3 });
  cpu.rflags = 0x202n;
  assert.equal(m.run({ maxSteps: 10, until: handler }).kind, "until");
  assert.equal(cpu.getReg("esp"), STACK_TOP - 12n, "no ESP/SS pushed");
  assert.deepEqual(words(m, STACK_TOP - 12n, 3, 4), [CODE + 1n, 0x60n, 0x202n]);
  assert.equal(m.run({ maxSteps: 10 }).kind, "hlt");
  assert.equal(cpu.getReg("esp"), STACK_TOP);
  assert.equal(cpu.getReg("eax"), 1n);
});

Deno.test("deliver() switches to tss.sp0 and pushes SS:ESP from ring 3 in 32-bit mode", () => {
  const { m, cpu, labels } = boot(
    32,
    `
    int3
    nop
  handler:
    iret
  `,
  );
  const handler = labels.get("handler")!;
  m.setGate(3, { handler, dpl: 3 });
  cpu.cs = 0x73;
  cpu.ss = 0x7b;
  cpu.setReg("esp", USER_STACK);
  cpu.tss.sp0 = STACK_TOP;
  assert.equal(m.run({ maxSteps: 10, until: handler }).kind, "until");
  assert.equal(cpu.ss, 0x68);
  assert.equal(cpu.getReg("esp"), STACK_TOP - 20n);
  assert.deepEqual(words(m, STACK_TOP - 20n, 5, 4), [CODE + 1n, 0x73n, 0x2n, USER_STACK, 0x7bn]);
  assert.equal(m.run({ maxSteps: 1 }).kind, "budget"); // the iret
  assert.equal(cpu.cpl, 3);
  assert.equal(cpu.ss, 0x7b);
  assert.equal(cpu.getReg("esp"), USER_STACK);
  assert.equal(cpu.rip, CODE + 1n);
});

Deno.test("deliver() raises #GP(vector*8+2) for int3 from ring 3 through a DPL-0 gate", () => {
  const { m, cpu, labels } = boot(64, `int3\n hlt\n bp: hlt\n gp: hlt`);
  m.setGate(3, { handler: labels.get("bp")!, dpl: 0 });
  m.setGate(13, { handler: labels.get("gp")! });
  cpu.cs = 0x33;
  cpu.ss = 0x2b;
  cpu.setReg("rsp", USER_STACK);
  cpu.tss.sp0 = STACK_TOP;
  assert.equal(m.run({ maxSteps: 10, until: labels.get("gp")! }).kind, "until");
  assert.deepEqual(
    words(m, STACK_TOP - 48n, 2, 8),
    [3n * 8n + 2n, CODE],
    "error code, faulting rip",
  );
});

function faultFrame(src: string, vector: number, setup?: (m: Machine) => void) {
  const b = boot(64, `${src}\n handler: hlt`);
  const handler = b.labels.get("handler")!;
  b.m.setGate(vector, { handler });
  setup?.(b.m);
  const stop = b.m.run({ maxSteps: 20, until: handler });
  assert.equal(stop.kind, "until", stop.message);
  const sp = b.cpu.getReg("rsp");
  return { ...b, sp, frame: words(b.m, sp, 5, 8) };
}

Deno.test("deliver() reports #PF with error code and CR2 for a write to read-only memory", () => {
  const { cpu, frame } = faultFrame(`movl $1, 0x9000`, 14, (m) => m.map(0x9000n, 0x1000, "r"));
  assert.equal(frame[0], 3n, "P | W");
  assert.equal(frame[1], CODE, "faulting rip");
  assert.equal(cpu.cr2, 0x9000n);
});

Deno.test("deliver() reports #PF for a read of an unmapped page and a fetch from a data page", () => {
  const a = faultFrame(`mov 0xa004, %eax`, 14);
  assert.equal(a.frame[0], 0n);
  assert.equal(a.cpu.cr2, 0xa004n);
  const b = faultFrame(`mov $0x8000, %eax\n jmp *%rax`, 14);
  assert.equal(b.frame[0], 0x11n, "P | I/D");
  assert.equal(b.frame[1], 0x8000n);
  assert.equal(b.cpu.cr2, 0x8000n);
});

Deno.test("deliver() reports #PF with U set for a user access to a supervisor page", () => {
  const b = boot(64, `mov 0x9000, %eax\n handler: hlt`);
  b.m.map(0x9000n, 0x1000, "rw", { user: false });
  b.m.setGate(14, { handler: b.labels.get("handler")! });
  b.cpu.cs = 0x33;
  b.cpu.setReg("rsp", USER_STACK);
  b.cpu.tss.sp0 = STACK_TOP;
  assert.equal(b.m.run({ maxSteps: 5, until: b.labels.get("handler")! }).kind, "until");
  assert.equal(b.m.read64(STACK_TOP - 48n), 5n, "P | U");
});

Deno.test("deliver() raises #UD at the faulting ip for unsupported and invalid bytes", () => {
  const a = faultFrame(`nop\n .byte 0x0f, 0x05`, 6);
  assert.equal(a.frame[0], CODE + 1n, "no error code; rip of the syscall bytes");
  const b = faultFrame(`ud2`, 6);
  assert.equal(b.frame[0], CODE);
});

Deno.test("deliver() raises #GP(0) for non-canonical addresses and #SS(0) for stack ones", () => {
  const a = faultFrame(`movabs $0x0000800000000000, %rax\n mov (%rax), %rbx`, 13);
  assert.deepEqual(a.frame.slice(0, 2), [0n, CODE + 10n]);
  const b = faultFrame(`movabs $0x0000800000000000, %rbp\n mov (%rbp), %rbx`, 12);
  assert.deepEqual(b.frame.slice(0, 2), [0n, CODE + 10n]);
  const c = faultFrame(`movabs $0x0000800000000000, %rax\n jmp *%rax`, 13);
  assert.deepEqual(c.frame.slice(0, 2), [0n, CODE + 10n], "the jump faults, not the fetch");
});

Deno.test("deliver() raises #DE for a division by zero at the div", () => {
  const { frame } = faultFrame(`xor %ecx, %ecx\n div %ecx`, 0);
  assert.equal(frame[0], CODE + 2n);
});

Deno.test("deliver() turns a fault while delivering #GP into #DF with error code 0", () => {
  const { frame } = faultFrame(`movabs $0x0000800000000000, %rax\n mov (%rax), %rbx`, 8, (m) => {
    m.clearGate(13);
  });
  assert.deepEqual(frame.slice(0, 2), [0n, CODE + 10n]);
});

Deno.test("Machine.run() stops with a triple fault naming every vector when gates are missing", () => {
  const { m } = boot(64, `ud2`);
  const stop = m.run({ maxSteps: 10 });
  assert.equal(stop.kind, "triple-fault");
  assert.equal(stop.ip, CODE);
  assert.match(stop.message, /0x1000/);
  assert.match(stop.message, /0f 0b/);
  assert.match(stop.message, /#UD.*#NP.*#DF.*#NP/);
  assert.equal(m.run({ maxSteps: 10 }).kind, "triple-fault", "the CPU stays shut down");
});

Deno.test("Machine.run() triple-faults when the stack is unusable for every delivery", () => {
  const { m, cpu } = boot(64, `int3`);
  m.setGate(3, { handler: 0x2000n });
  m.setGate(14, { handler: 0x2000n });
  m.setGate(8, { handler: 0x2000n });
  cpu.setReg("rsp", 0x30000n); // unmapped
  const stop = m.run({ maxSteps: 10 });
  assert.equal(stop.kind, "triple-fault");
  assert.match(stop.message, /#PF.*#PF.*#DF/);
});

Deno.test("cli/sti fault at CPL 3 with IOPL 0 and popf silently keeps IF", () => {
  const a = boot(64, `pushf\n andq $~0x200, (%rsp)\n popf\n cli\n handler: hlt`);
  a.m.setGate(13, { handler: a.labels.get("handler")! });
  a.cpu.cs = 0x33;
  a.cpu.setReg("rsp", USER_STACK);
  a.cpu.tss.sp0 = STACK_TOP;
  a.cpu.rflags = 0x202n;
  assert.equal(a.m.run({ maxSteps: 10, until: a.labels.get("handler")! }).kind, "until");
  const [err, rip, , flags] = words(a.m, STACK_TOP - 48n, 4, 8);
  assert.equal(err, 0n);
  assert.equal(rip, a.labels.get("handler")! - 1n, "the cli faulted");
  assert.notEqual(Number(flags) & IF, 0, "popf at CPL 3 kept IF");
});

Deno.test("Cpu.raiseInterrupt() wakes a halted CPU and the handler returns after the hlt", () => {
  const { m, cpu, labels } = boot(
    64,
    `
    sti
    hlt
    mov $1, %eax
    hlt
  irq:
    mov $5, %ebx
    iretq
  `,
  );
  m.setGate(0x20, { handler: labels.get("irq")! });
  const first = m.run({ maxSteps: 10 });
  assert.equal(first.kind, "hlt");
  assert.match(first.message, /no pending interrupt/);
  cpu.raiseInterrupt(0x20);
  cpu.flags &= ~IF;
  assert.equal(m.run({ maxSteps: 10 }).kind, "hlt", "IF = 0: the interrupt stays pending");
  assert.equal(cpu.getReg("ebx"), 0n);
  cpu.flags |= IF;
  assert.equal(m.run({ maxSteps: 10 }).kind, "hlt");
  assert.equal(cpu.getReg("ebx"), 5n);
  assert.equal(cpu.getReg("eax"), 1n);
});

Deno.test("sti delays a pending interrupt until after the next instruction", () => {
  const { m, cpu, labels } = boot(
    64,
    `
    sti
    mov $1, %eax
    hlt
  irq:
    mov %eax, %ebx
    iretq
  `,
  );
  m.setGate(0x20, { handler: labels.get("irq")! });
  cpu.raiseInterrupt(0x20);
  assert.equal(m.run({ maxSteps: 20 }).kind, "hlt");
  assert.equal(cpu.getReg("ebx"), 1n, "the mov after sti ran before the interrupt");
});

Deno.test("deliver() pushes the #PF error code after EIP in 32-bit mode", () => {
  const { m, cpu, labels } = boot(32, `movl $1, 0x9000\n handler: hlt`);
  m.map(0x9000n, 0x1000, "r");
  m.setGate(14, { handler: labels.get("handler")! });
  assert.equal(m.run({ maxSteps: 5, until: labels.get("handler")! }).kind, "until");
  assert.equal(cpu.getReg("esp"), STACK_TOP - 16n);
  assert.deepEqual(words(m, STACK_TOP - 16n, 4, 4), [3n, CODE, 0x60n, 0x2n]);
  assert.equal(cpu.cr2, 0x9000n);
});

Deno.test("fetch of an instruction crossing into a non-executable page raises #PF on that page", () => {
  const b = boot(64, `handler: hlt`);
  b.m.map(0x20000n, 0x1000, "rx");
  b.m.map(0x21000n, 0x1000, "rw");
  b.m.writeBytes(0x20ffen, [0x48, 0xb8, 1, 2, 3, 4, 5, 6, 7, 8]); // movabs across the boundary
  b.m.setGate(14, { handler: b.labels.get("handler")! });
  b.cpu.rip = 0x20ffen;
  assert.equal(b.m.run({ maxSteps: 5, until: b.labels.get("handler")! }).kind, "until");
  assert.equal(b.cpu.cr2, 0x21000n);
  assert.deepEqual(words(b.m, b.cpu.getReg("rsp"), 2, 8), [0x11n, 0x20ffen]);
  b.m.protect(0x21000n, 0x1000, "rx");
  b.cpu.rip = 0x20ffen;
  assert.equal(b.m.run({ maxSteps: 1 }).kind, "budget");
  assert.equal(b.cpu.getReg("rax"), 0x0807060504030201n);
});

Deno.test("CPU accesses crossing a page read both pages, and a faulting store stores nothing", () => {
  const b = boot(64, `mov (%rsi), %rax\n movq $-1, (%rdi)\n handler: hlt`);
  b.m.map(0x20000n, 0x1000, "rw");
  b.m.map(0x21000n, 0x1000, "r");
  b.m.write64(0x20ffcn, 0x1122334455667788n);
  b.m.setGate(14, { handler: b.labels.get("handler")! });
  b.cpu.setReg("rsi", 0x20ffcn);
  b.cpu.setReg("rdi", 0x20ffcn);
  assert.equal(b.m.run({ maxSteps: 5, until: b.labels.get("handler")! }).kind, "until");
  assert.equal(b.cpu.getReg("rax"), 0x1122334455667788n);
  assert.equal(b.cpu.cr2, 0x21000n);
  assert.equal(b.m.read64(0x20ffcn), 0x1122334455667788n, "no partial store");
});

Deno.test("iret() raises #GP(selector) when the saved SS is not the data segment of the new CPL", () => {
  // A frame whose SS word was overwritten, as the no-gap int3 push of 2019 does: the
  // emulated return address lands where the iret frame keeps SS.
  const frameWithSs = (ss: string) => `
    pushq ${ss}
    pushq $0x14000
    pushq $0x2
    pushq $0x10
    pushq $done
  at_iret:
    iretq
  done:
    hlt`;
  const ok = boot(64, frameWithSs("$0x18"));
  assert.equal(ok.m.run({ maxSteps: 20 }).kind, "hlt");
  assert.equal(ok.cpu.rip, ok.labels.get("done")! + 1n);
  const nullSs = boot(64, frameWithSs("$0"));
  assert.equal(nullSs.m.run({ maxSteps: 20 }).kind, "hlt", "null SS is valid for CPL 0 in 64-bit");
  assert.equal(nullSs.cpu.rip, nullSs.labels.get("done")! + 1n);
  const bad = faultFrame(frameWithSs("$0x4005"), 13);
  assert.equal(bad.frame[0], 0x4004n, "error code is the selector without RPL");
  assert.equal(bad.frame[1], bad.labels.get("at_iret")!, "the iretq faults, nothing is popped");
});
