// A compiled block that ends with a branch back to its own first instruction runs further
// iterations inside its function (lib/machine/block.ts, `Block.loops`). That must change
// nothing observable: every program here runs on two machines, one with large budgets
// (the loop runs inside the compiled block, hundreds of iterations per call) and one a
// single step per run() (no blocks at all), and the two must agree on every register,
// every byte and the step count (Machine.stateHash), the stop kind and the ip. Each test
// targets one way the in-block loop could go wrong: a budget that ends mid-iteration, a
// store into the loop's own body, a fault on a later iteration, an interrupt or a stop
// request raised by a store in the middle of the loop.
import assert from "node:assert/strict";
import type { Machine, StopReason } from "../lib/machine/machine.ts";
import { agree, CODE, DATA, pair, type Rig } from "./_block_rig.ts";

const IF = 0x200;

// An inner loop of 6 (a load, a store, ALU, a conditional branch back to `loop`) run 37
// times per pass of an outer loop, 40 passes: the inner block loops in itself and leaves
// through the untaken jnz.
const NESTED_64 = `
outer:
  mov $37, %ecx
loop:
  mov (%rsi), %rax
  add %rax, %rbx
  mov %rbx, 8(%rsi)
  add $3, %rdi
  sub $1, %ecx
  jnz loop
  add $1, %r12
  cmp $40, %r12
  jne outer
  hlt
`;

const NESTED_32 = `
outer:
  mov $37, %ecx
loop:
  mov (%esi), %eax
  add %eax, %ebx
  mov %ebx, 8(%esi)
  add $3, %edi
  sub $1, %ecx
  jnz loop
  add $1, %ebp
  cmp $40, %ebp
  jne outer
  hlt
`;

for (const bitness of [64, 32] as const) {
  Deno.test(`Machine.run() stops a ${bitness}-bit self-looping compiled block at exactly maxSteps`, () => {
    const [fast, slow] = pair(bitness === 64 ? NESTED_64 : NESTED_32, ({ m }) => {
      m.write32(DATA, 5n);
      m.cpus[0]!.setReg(bitness === 64 ? "rsi" : "esi", DATA);
    }, { bitness });
    agree(fast, slow, 700, "warm-up");
    const loop = fast.labels.get("loop")!;
    assert.deepEqual(fast.m.cpus[0]!.blockAt(loop), { length: 6, compiled: true, loops: true });
    // Budgets that are not multiples of 6, several iterations long, ending at every
    // position in the body, some across the exit to the outer loop.
    const budgets = [1001, 997, 13, 7, 2, 3, 250, 251, 605, 4, 5, 6, 8, 9, 10, 11, 221, 1];
    for (const [i, n] of budgets.entries()) agree(fast, slow, n, `budget #${i} of ${n}`);
    const stop = agree(fast, slow, 100_000, "to hlt");
    assert.equal(stop.kind, "hlt");
    assert.equal(fast.m.cpus[0]!.getReg("edi"), 40n * 37n * 3n);
    assert.equal(fast.m.cpus[0]!.steps, 40 * (1 + 37 * 6 + 3) + 1);
  });
}

// The first instruction's immediate is rewritten from the sixth when ecx reaches 150
// (other iterations store to scratch data): iterations after that one must add 7.
const PATCH_FIRST = `
loop:
  mov $1, %eax
  add %rax, %rbx
  mov %r9, %rdi
  cmp $150, %ecx
  cmove %r8, %rdi
  movl $7, (%rdi)
  dec %ecx
  jnz loop
  hlt
`;

// The jnz's displacement is set to 0 when ecx reaches 120: the branch then falls to hlt
// whatever the flags.
const PATCH_BRANCH = `
loop:
  add $1, %rbx
  mov %r9, %rdi
  cmp $120, %ecx
  cmove %r8, %rdi
  movb $0, (%rdi)
  dec %ecx
branch:
  jnz loop
  hlt
`;

Deno.test("Cpu.runSteps() sees a self-looping block's store into its own first instruction on the next iteration", () => {
  const [fast, slow] = pair(PATCH_FIRST, ({ m, labels }) => {
    const cpu = m.cpus[0]!;
    cpu.setReg("r8", labels.get("loop")! + 1n);
    cpu.setReg("r9", DATA);
    cpu.setReg("rcx", 300n);
  }, { codePerms: "rwx" });
  agree(fast, slow, 800, "warm-up"); // 100 iterations: compiled by now
  assert.deepEqual(fast.m.cpus[0]!.blockAt(CODE), { length: 8, compiled: true, loops: true });
  const stop = agree(fast, slow, 10_000, "to hlt");
  assert.equal(stop.kind, "hlt");
  // ecx = 300..150 add 1 (the patch lands after the add), ecx = 149..1 add 7.
  assert.equal(fast.m.cpus[0]!.getReg("rbx"), 151n + 149n * 7n);
});

Deno.test("Cpu.runSteps() leaves a self-looping block whose own branch was rewritten", () => {
  const [fast, slow] = pair(PATCH_BRANCH, ({ m, labels }) => {
    const cpu = m.cpus[0]!;
    cpu.setReg("r8", labels.get("branch")! + 1n);
    cpu.setReg("r9", DATA);
    cpu.setReg("rcx", 300n);
  }, { codePerms: "rwx" });
  agree(fast, slow, 700, "warm-up");
  assert.deepEqual(fast.m.cpus[0]!.blockAt(CODE), { length: 7, compiled: true, loops: true });
  const stop = agree(fast, slow, 10_000, "to hlt");
  assert.equal(stop.kind, "hlt");
  assert.equal(fast.m.cpus[0]!.getReg("rbx"), 181n); // ecx = 300..120
  assert.equal(fast.m.cpus[0]!.getReg("ecx"), 119n);
});

// rsi walks 8 bytes per 7-instruction iteration off the end of the data page: #PF on iteration 513, by
// the load at index `at` of the body.
function walkOff(at: number): string {
  const body = ["add $1, %rbx", "add %rax, %rdx", "mov %rbx, %r10", "add $2, %r11"];
  body.splice(at, 0, "load: mov (%rsi), %rax");
  return `
loop:
  ${body.join("\n  ")}
  add $8, %rsi
  jmp loop
pf:
  hlt
`;
}

for (const at of [0, 2, 4]) {
  for (const chunk of [10_000, 777]) {
    Deno.test(`Cpu.runSteps() delivers #PF from slot ${at} on a later iteration of a self-looping block (budgets of ${chunk})`, () => {
      const [fast, slow] = pair(walkOff(at), ({ m, labels }) => {
        m.setGate(14, { handler: labels.get("pf")! });
        m.cpus[0]!.setReg("rsi", DATA);
      });
      let stop: StopReason;
      do stop = agree(fast, slow, chunk, "to the #PF handler"); while (stop.kind === "budget");
      assert.equal(stop.kind, "hlt");
      const cpu = fast.m.cpus[0]!;
      assert.equal(cpu.cr2, DATA + 0x1000n);
      // The frame's rip is the load: `at` instructions of the 513th iteration retired.
      const rip = fast.m.memory.read64(cpu.getReg("rsp") + 8n);
      assert.equal(rip, fast.labels.get("load")!);
      assert.equal(cpu.getReg("rbx"), at > 0 ? 513n : 512n);
      assert.equal(cpu.steps, 512 * 7 + at + 1 + 1); // + the fault + hlt
    });
  }
}

// A loop whose third instruction stores 8 bytes across a 64-byte line: with
// `splitLines` set every iteration calls Machine.splitStore, the hook that raises the
// interrupt or the stop request below in the middle of the loop.
const STRADDLE = `
loop:
  mov (%rsi), %rax
  add $1, %rax
  mov %rax, 60(%rsi)
after:
  add %rax, %rbx
  sub $1, %ecx
  jnz loop
  hlt
irq:
  add $1, %r10
  mov %rbx, %r11
  mov (%rsp), %r13
  iretq
`;

/** The STRADDLE rig; `onStore(cpu, n)` runs at the n-th split store (from 1). */
function straddle(onStore: (m: Machine, n: number) => void): [Rig, Rig] {
  return pair(STRADDLE, ({ m, labels }) => {
    const cpu = m.cpus[0]!;
    let n = 0;
    m.splitStore = (_cpu, _address, bytes) => {
      onStore(m, ++n);
      return bytes.length;
    };
    cpu.splitLines = true;
    cpu.flags |= IF;
    m.setGate(0x30, { handler: labels.get("irq")! });
    cpu.setReg("rsi", DATA);
    cpu.setReg("rcx", 1000n);
  });
}

Deno.test("Cpu.runSteps() takes an interrupt raised inside a self-looping block at the same step as stepping", () => {
  const at = new Set([100, 250, 251, 600]);
  const [fast, slow] = straddle((m, n) => {
    if (at.has(n)) m.cpus[0]!.raiseInterrupt(0x30);
  });
  agree(fast, slow, 500, "warm-up");
  assert.deepEqual(fast.m.cpus[0]!.blockAt(CODE), { length: 6, compiled: true, loops: true });
  let seen = 0n;
  for (let i = 0; i < 4; i++) {
    agree(fast, slow, 1003, `run ${i}`);
    const cpu = fast.m.cpus[0]!;
    if (cpu.getReg("r10") === seen) continue;
    seen = cpu.getReg("r10");
    // Taken right after the straddling store: the add that follows it had not run.
    assert.equal(cpu.getReg("r13"), fast.labels.get("after")!);
  }
  assert.equal(seen, 4n);
  const stop = agree(fast, slow, 100_000, "to hlt");
  assert.equal(stop.kind, "hlt");
});

Deno.test("Machine.run() stops at a stop request raised inside a self-looping block", () => {
  const [fast, slow] = straddle((m, n) => {
    if (n === 333) m.cpus[0]!.requestStop("native", "stop at the 333rd straddling store");
  });
  const stop = agree(fast, slow, 100_000, "to the stop");
  assert.equal(stop.kind, "native");
  assert.equal(stop.ip, fast.labels.get("after")!);
  assert.equal(stop.steps, 332 * 6 + 3);
  assert.deepEqual(fast.m.cpus[0]!.blockAt(CODE), { length: 6, compiled: true, loops: true });
});
