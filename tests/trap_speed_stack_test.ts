// The compiled blocks' one-go runs of pushes and pops (Cpu.stackPushRun / stackPopRun,
// block.ts StackRun) and iret's frame read from the read TLB (Cpu.readFrame) do exactly
// what the one-instruction-at-a-time path does. Every program runs twice: once with
// large budgets (hot blocks compiled, the runs taken in one go) and once one step per
// run() (no blocks); the machines must agree on the stop, the step count and every
// register and byte (Machine.stateHash). Each test sets up a way the one-go path could go
// wrong: a run crossing into an unmapped page, a page made read-only after the run got
// hot (a stale translation), stores onto predecoded code, a load from a page the TLB
// does not hold, stores split at cache lines, a 32-bit run.
import assert from "node:assert/strict";
import { Machine } from "../lib/machine/machine.ts";
import { assemble } from "../lib/x86/assemble.ts";
import { agree, type Rig } from "./_block_rig.ts";

const CODE = 0x400000n;
const STACK = 0x600000n; // 0x600000–0x602000 mapped rw
const STACK_TOP = 0x602000n;

/** A machine with `src` at CODE, a two-page stack and a #PF gate at label `pf`. */
function rig(bits: 32 | 64, src: string, codePerms: "rx" | "rwx" = "rx"): Rig {
  const p = assemble(src, { bitness: bits, origin: CODE });
  const m = new Machine({ bitness: bits });
  m.load(CODE, p.bytes, codePerms);
  m.map(STACK, 0x2000, "rw");
  const pf = p.labels.get("pf");
  if (pf !== undefined) m.setGate(14, { handler: pf, type: "interrupt", dpl: 0 });
  const cpu = m.cpus[0]!;
  cpu.rip = CODE;
  cpu.setReg(bits === 64 ? "rsp" : "esp", STACK_TOP - 0x100n);
  return { m, labels: p.labels };
}

/** Both rigs, with the same setup applied. */
function pair(bits: 32 | 64, src: string, codePerms: "rx" | "rwx" = "rx"): [Rig, Rig] {
  return [rig(bits, src, codePerms), rig(bits, src, codePerms)];
}

/** Applies `f` to both rigs. */
function both(rigs: [Rig, Rig], f: (r: Rig) => void): void {
  f(rigs[0]);
  f(rigs[1]);
}

/** The programs' start: 200 calls of `body`, which makes its block hot (compiled). */
const HOT = `main:
  mov $200, %ecx
1:
  call body
  dec %ecx
  jnz 1b
`;

// HOT, then `hlt`; `again:` calls body once more with whatever rsp the test set, then
// halts. `pf:` is the #PF handler.
const BODY_64 = `
${HOT}  hlt
again:
  call body
  hlt
body:
  pushq $-1
  pushq %rax
  pushq %rbx
  pushq 8(%rsp)
  pushq %rdx
  popq %rdx
  popq %rsi
  popq %rbx
  popq %rax
  addq $8, %rsp
  ret
pf:
  hlt
`;

function warm64(): [Rig, Rig] {
  const rigs = pair(64, BODY_64);
  both(rigs, ({ m }) => {
    const c = m.cpus[0]!;
    c.setReg("rax", 0x1111222233334444n);
    c.setReg("rbx", 0x5555666677778888n);
    c.setReg("rdx", 0x99990000aaaabbbbn);
  });
  agree(rigs[0], rigs[1], 100_000, "warm-up");
  const body = rigs[0].m.cpus[0]!.blockAt(rigs[0].labels.get("body")!);
  assert.ok(body?.compiled === true, "body runs compiled");
  assert.equal(rigs[0].m.cpus[0]!.getReg("rsi"), 0x1111222233334444n, "pushq 8(%rsp) copied rax");
  return rigs;
}

Deno.test("Cpu.stackPushRun() runs a hot block's pushes and pops as one step each would", () => {
  const [fast] = warm64();
  const c = fast.m.cpus[0]!;
  assert.equal(c.getReg("rsp"), STACK_TOP - 0x100n);
  // Below the return address: $-1, rax, rbx, the copy of rax, rdx.
  assert.equal(fast.m.read64(STACK_TOP - 0x100n - 16n), 0xffffffffffffffffn);
  assert.equal(fast.m.read64(STACK_TOP - 0x100n - 24n), 0x1111222233334444n);
  assert.equal(fast.m.read64(STACK_TOP - 0x100n - 40n), 0x1111222233334444n);
  assert.equal(fast.m.read64(STACK_TOP - 0x100n - 48n), 0x99990000aaaabbbbn);
});

Deno.test("Cpu.stackPushRun() leaves a run that crosses into an unmapped page to fault where one step would", () => {
  const rigs = warm64();
  // rsp 0x600018: `call` stores at 0x600010, then the pushes at 0x600008, 0x600000 and
  // 0x5ffff8 — unmapped: #PF on the third push (and delivery on the same stack faults too).
  both(rigs, ({ m, labels }) => {
    const c = m.cpus[0]!;
    c.rip = labels.get("again")!;
    c.setReg("rsp", STACK + 0x18n);
  });
  const stop = agree(rigs[0], rigs[1], 1000, "page-crossing push");
  assert.equal(stop.kind, "triple-fault");
  assert.match(stop.message, /: #PF\(0x2\) at 0x5ffff8 \(page not present\)/);
  assert.equal(rigs[0].m.read64(STACK + 8n), 0xffffffffffffffffn, "the first push landed");
  assert.equal(rigs[0].m.read64(STACK), 0x1111222233334444n, "the second push landed");
});

Deno.test("Cpu.stackPushRun() does not use a stale translation after the stack page turns read-only", () => {
  const rigs = warm64();
  // Straight into `body` (no call): its first store is the run's first push.
  both(rigs, ({ m, labels }) => {
    m.write64(STACK_TOP - 0x108n, 0x77n);
    m.memory.protect(STACK + 0x1000n, 0x1000, "r");
    m.cpus[0]!.rip = labels.get("body")!;
  });
  const stop = agree(rigs[0], rigs[1], 1000, "read-only stack");
  assert.equal(stop.kind, "triple-fault");
  assert.match(stop.message, /: #PF\(0x3\) at 0x601ef8 \(page protection violation\)/);
  assert.equal(rigs[0].m.read64(STACK_TOP - 0x108n), 0x77n, "nothing of the run landed");
});

Deno.test("Cpu.stackPushRun() leaves a push whose load is on a page the TLB does not hold to fault where one step would", () => {
  const src = BODY_64.replace("pushq 8(%rsp)", "pushq 0x3000(%rsp)");
  const rigs = pair(64, src);
  both(rigs, ({ m }) => {
    m.map(STACK + 0x2000n, 0x3000, "rw"); // the load's page while warming up
  });
  agree(rigs[0], rigs[1], 100_000, "warm-up");
  assert.ok(rigs[0].m.cpus[0]!.blockAt(rigs[0].labels.get("body")!)?.compiled === true);
  both(rigs, ({ m, labels }) => {
    m.memory.unmap(STACK + 0x4000n, 0x1000);
    m.cpus[0]!.rip = labels.get("again")!;
  });
  const stop = agree(rigs[0], rigs[1], 1000, "load from an unmapped page");
  assert.equal(stop.kind, "hlt");
  assert.equal(rigs[0].m.cpus[0]!.rip, rigs[0].labels.get("pf")! + 1n, "the #PF handler ran");
  // sp before that push: STACK_TOP - 0x100 - 8 (call) - 3 * 8 (pushes).
  assert.equal(rigs[0].m.cpus[0]!.getReg("cr2"), STACK_TOP - 0x100n - 32n + 0x3000n);
});

Deno.test("Cpu.stackPopRun() leaves a run that crosses into an unmapped page to fault where one step would", () => {
  const src = `
${HOT}  hlt
body:
  mov %rsp, %rbp
  mov %rdi, %rsp
  popq %rax
  popq %rbx
  popq %rdx
  popq %rsi
  mov %rbp, %rsp
  ret
pf:
  hlt
`;
  const rigs = pair(64, src);
  both(rigs, ({ m }) => {
    m.cpus[0]!.setReg("rdi", STACK + 0x800n);
    for (let i = 0n; i < 4n; i++) m.write64(STACK + 0x800n + 8n * i, 0x100n + i);
    for (let i = 0n; i < 2n; i++) m.write64(STACK_TOP - 16n + 8n * i, 0x200n + i);
  });
  agree(rigs[0], rigs[1], 100_000, "warm-up");
  assert.ok(rigs[0].m.cpus[0]!.blockAt(rigs[0].labels.get("body")!)?.compiled === true);
  assert.equal(rigs[0].m.cpus[0]!.getReg("rsi"), 0x103n);
  // Pops from the last 16 bytes of the stack mapping: the third one reads unmapped memory.
  both(rigs, ({ m, labels }) => {
    const c = m.cpus[0]!;
    c.setReg("rdi", STACK_TOP - 16n);
    c.setReg("rsp", STACK_TOP - 0x100n);
    c.rip = labels.get("body")!;
  });
  const stop = agree(rigs[0], rigs[1], 1000, "page-crossing pop");
  assert.equal(stop.kind, "hlt");
  const c = rigs[0].m.cpus[0]!;
  assert.equal(c.getReg("cr2"), STACK_TOP);
  assert.equal(c.getReg("rax"), 0x200n, "the pops before the fault happened");
  assert.equal(c.getReg("rbx"), 0x201n);
  assert.equal(c.getReg("rdx"), 0x102n, "the faulting pop changed nothing");
});

Deno.test("Cpu.stackPushRun() lets pushes onto predecoded code invalidate it as one step would", () => {
  // The stack moves into the code page, over `target`; the pushed rsi and rdx are code
  // (mov $0x1234, %edx; nops; hlt) that then runs instead of the nops decoded before.
  // The call's own store (target+32) invalidates only what starts from target+18: the
  // new code at target+0..15 is there only through the run's stores. `target` is on
  // its own page, so those stores leave `body`'s compiled block alone.
  const src = `
${HOT}  call target
  mov %rsp, %rbp
  lea target+40(%rip), %rsp
  call body
  mov %rbp, %rsp
  jmp target
body:
  pushq %rax
  pushq %rbx
  pushq %rdx
  pushq %rsi
  addq $32, %rsp
  ret
  .balign 4096
target:
  .rept 48
  nop
  .endr
  ret
`;
  const rigs = pair(64, src, "rwx");
  both(rigs, ({ m }) => {
    const c = m.cpus[0]!;
    c.setReg("rsi", 0x90909000001234ban); // ba 34 12 00 00 90 90 90
    c.setReg("rdx", 0x90909090909090f4n); // f4: hlt
    c.setReg("rbx", 0x9090909090909090n);
    c.setReg("rax", 0x9090909090909090n);
  });
  const stop = agree(rigs[0], rigs[1], 100_000, "pushes onto code");
  assert.equal(stop.kind, "hlt");
  const c = rigs[0].m.cpus[0]!;
  assert.equal(c.getReg("edx"), 0x1234n, "the new code ran");
  assert.equal(c.rip, rigs[0].labels.get("target")! + 9n, "and stopped at its hlt");
});

Deno.test("Cpu.stackPushRun() leaves pushes to the split-store hook when stores split at cache lines", () => {
  const calls: [Machine, string][] = [];
  const rigs = pair(64, BODY_64);
  both(rigs, ({ m }) => {
    const c = m.cpus[0]!;
    c.splitLines = true;
    m.splitStore = (_cpu, address, bytes) => {
      calls.push([m, `${address.toString(16)}:${bytes.join(",")}`]);
      return bytes.length;
    };
    // Misaligned by 4: the push at 0x601efc straddles a 64-byte line.
    c.setReg("rsp", STACK_TOP - 0xf4n);
    c.setReg("rax", 0x1111222233334444n);
  });
  agree(rigs[0], rigs[1], 100_000, "split lines");
  assert.ok(rigs[0].m.cpus[0]!.blockAt(rigs[0].labels.get("body")!)?.compiled === true);
  const fast = calls.filter(([m]) => m === rigs[0].m).map(([, s]) => s);
  const slow = calls.filter(([m]) => m === rigs[1].m).map(([, s]) => s);
  assert.ok(fast.length > 0);
  assert.deepEqual(fast, slow);
});

Deno.test("Cpu.stackPushRun() runs 32-bit pushes of immediates, registers and stack words as one step each would", () => {
  const src = `
${HOT}  hlt
again:
  call body
  hlt
body:
  pushl $-1
  pushl $0x7b
  pushl %eax
  pushl 8(%esp)
  pushl %ebx
  popl %ebx
  popl %esi
  popl %edi
  popl %eax
  addl $4, %esp
  ret
pf:
  hlt
`;
  const rigs = pair(32, src);
  both(rigs, ({ m }) => {
    m.cpus[0]!.setReg("eax", 0x11223344n);
    m.cpus[0]!.setReg("ebx", 0x55667788n);
  });
  agree(rigs[0], rigs[1], 100_000, "32-bit warm-up");
  const c = rigs[0].m.cpus[0]!;
  assert.ok(c.blockAt(rigs[0].labels.get("body")!)?.compiled === true);
  assert.equal(c.getReg("esi"), 0xffffffffn, "pushl 8(%esp) copied the $-1");
  assert.equal(c.getReg("edi"), 0x7bn, "eax, 0x7b since the first call");
  assert.equal(c.getReg("eax"), 0x7bn);
  assert.equal(c.getReg("ebx"), 0x55667788n);
  // A run that crosses into the unmapped page below the stack.
  both(rigs, ({ m, labels }) => {
    const cpu = m.cpus[0]!;
    cpu.rip = labels.get("again")!;
    cpu.setReg("esp", STACK + 0xcn);
  });
  const stop = agree(rigs[0], rigs[1], 1000, "32-bit page-crossing push");
  assert.equal(stop.kind, "triple-fault");
  assert.match(stop.message, /: #PF\(0x2\) at 0x5ffffc \(page not present\)/);
});

Deno.test("iret() reads a frame that crosses into an unmapped page word by word, faulting there", () => {
  const src = `
main:
  mov $200, %ecx
1:
  call frame
  dec %ecx
  jnz 1b
  hlt
frame:
  pop %rdi
  mov %rsp, %rax
  pushq $0x18
  pushq %rax
  pushfq
  pushq $0x10
  pushq %rdi
  iretq
again:
  mov %rsi, %rsp
  iretq
back:
  hlt
pf:
  hlt
`;
  const rigs = pair(64, src);
  agree(rigs[0], rigs[1], 100_000, "iret warm-up");
  // ip, cs, flags in the stack's last 24 bytes; rsp and ss would be above, unmapped.
  both(rigs, ({ m, labels }) => {
    const c = m.cpus[0]!;
    m.write64(STACK_TOP - 24n, labels.get("back")!);
    m.write64(STACK_TOP - 16n, 0x10n);
    m.write64(STACK_TOP - 8n, 2n);
    c.setReg("rsi", STACK_TOP - 24n);
    c.rip = labels.get("again")!;
  });
  const stop = agree(rigs[0], rigs[1], 1000, "iret frame across a page");
  assert.equal(stop.kind, "hlt");
  const c = rigs[0].m.cpus[0]!;
  assert.equal(c.getReg("cr2"), STACK_TOP, "the load of the saved rsp faulted");
  assert.equal(c.rip, rigs[0].labels.get("pf")! + 1n, "the #PF handler ran, iret did not return");
});
