// The CPU's block cache (lib/machine/block.ts) changes nothing observable: every program
// here runs twice, once with large budgets (blocks, compiled once hot) and once one step
// per run() (no blocks), and the two machines must agree on every register, every byte,
// the step count (Machine.stateHash) and the stop. Each test targets a way blocks could
// go wrong: code written by the block itself or through an alias, a fault inside a block,
// a budget ending mid-block, a native address inside a straight line, a page boundary.
import assert from "node:assert/strict";
import { agree, CODE, DATA, pair, type Rig, rig } from "./_block_rig.ts";

const ALIAS = 0x800000n;

// A hot loop whose 4th instruction stores 7 into the immediate of its 5th at iteration
// 150 (when ecx is 150; other iterations store to scratch data): the rest of the loop
// must load 7, not the stale predecoded 1. r8 is the address the store patches.
const SELF_PATCH = `
loop:
  mov %r9, %rdi
  cmp $150, %ecx
  cmove %r8, %rdi
  movl $7, (%rdi)
patch:
  mov $1, %eax
  add %rax, %rbx
  dec %ecx
  jnz loop
  hlt
`;

function selfPatch(viaAlias: boolean): void {
  const setup = ({ m, labels }: Rig) => {
    const cpu = m.cpus[0]!;
    const imm = labels.get("patch")! + 1n;
    if (viaAlias) m.alias(CODE, ALIAS, 0x1000, "rw");
    cpu.setReg("r8", viaAlias ? imm - CODE + ALIAS : imm);
    cpu.setReg("r9", DATA);
    cpu.setReg("rcx", 300n);
  };
  const [fast, slow] = pair(SELF_PATCH, setup, { codePerms: viaAlias ? "rx" : "rwx" });
  // 100 iterations: the loop block is compiled by now.
  agree(fast, slow, 800, "warm-up");
  assert.equal(fast.m.cpus[0]!.blockAt(CODE)?.compiled, true);
  const stop = agree(fast, slow, 10_000, "to hlt");
  assert.equal(stop.kind, "hlt");
  // Iterations with ecx = 300..151 add 1, ecx = 150..1 add 7.
  assert.equal(fast.m.cpus[0]!.getReg("rbx"), 150n + 150n * 7n);
}

Deno.test("Cpu.runSteps() sees a compiled block's store into its own later instruction", () => {
  selfPatch(false);
});

Deno.test("Cpu.runSteps() sees a block's store into its own code through a writable alias", () => {
  selfPatch(true);
});

Deno.test("Cpu.runSteps() runs a block that patches its next instruction every time", () => {
  // The store hits the block being run on every iteration: never compiled, always exact.
  const src = `
loop:
  mov %ecx, patch+1(%rip)
  add $1, %edx
patch:
  mov $0, %eax
  add %rax, %rbx
  dec %ecx
  jnz loop
  hlt
`;
  const [fast, slow] = pair(src, ({ m }) => m.cpus[0]!.setReg("rcx", 200n), { codePerms: "rwx" });
  const stop = agree(fast, slow, 5_000, "to hlt");
  assert.equal(stop.kind, "hlt");
  assert.equal(fast.m.cpus[0]!.getReg("rbx"), (200n * 201n) / 2n);
});

// A loop whose 3rd instruction divides by ecx, counting down: #DE when ecx reaches 0.
const DIV_LOOP = `
loop:
  xor %edx, %edx
  mov $1000, %eax
  div %ecx
  add %rax, %rbx
  dec %ecx
  jmp loop
de:
  hlt
`;

for (const start of [5n, 200n]) {
  const when = start < 64n ? "an interpreted" : "a compiled";
  Deno.test(`Cpu.runSteps() delivers #DE raised by the 3rd instruction of ${when} block exactly`, () => {
    const setup = ({ m, labels }: Rig) => {
      m.setGate(0, { handler: labels.get("de")! });
      m.cpus[0]!.setReg("rcx", start);
    };
    const [fast, slow] = pair(DIV_LOOP, setup);
    const stop = agree(fast, slow, 10_000, "to the #DE handler");
    assert.equal(stop.kind, "hlt");
    const m = fast.m;
    // The frame's rip is the div: the two instructions before it retired, the div did not.
    const rsp = m.cpus[0]!.getReg("rsp");
    assert.equal(m.memory.read64(rsp), fast.labels.get("loop")! + 7n);
    assert.equal(m.cpus[0]!.getReg("eax"), 1000n);
    assert.equal(m.cpus[0]!.steps, Number(start) * 6 + 2 + 1 + 1); // + div fault + hlt
  });
}

Deno.test("Cpu.runSteps() delivers #PF from the 3rd instruction of a compiled block with CR2", () => {
  // rsi walks 8 bytes per iteration off the end of the data page.
  const src = `
loop:
  add $8, %rsi
  add $1, %rbx
  mov (%rsi), %rax
  add %rax, %rdx
  jmp loop
pf:
  hlt
`;
  const setup = ({ m, labels }: Rig) => {
    m.setGate(14, { handler: labels.get("pf")! });
    m.cpus[0]!.setReg("rsi", DATA);
  };
  const [fast, slow] = pair(src, setup);
  const stop = agree(fast, slow, 10_000, "to the #PF handler");
  assert.equal(stop.kind, "hlt");
  const cpu = fast.m.cpus[0]!;
  assert.equal(cpu.cr2, DATA + 0x1000n);
  assert.equal(cpu.getReg("rbx"), 512n); // the add before the load retired
  assert.equal(fast.m.memory.read64(cpu.getReg("rsp") + 8n), fast.labels.get("loop")! + 8n);
});

Deno.test("Machine.run() budgets that end inside blocks stop at the exact instruction", () => {
  const src = `
loop:
  add $1, %rax
  add $2, %rbx
  mov %rbx, (%rsi)
  add $3, %rdx
  mov (%rsi), %rdi
  sub $1, %ecx
  jnz loop
  hlt
`;
  const setup = ({ m }: Rig) => {
    m.cpus[0]!.setReg("rcx", 1000n);
    m.cpus[0]!.setReg("rsi", DATA);
  };
  const [fast, slow] = pair(src, setup);
  agree(fast, slow, 700, "warm-up");
  assert.equal(fast.m.cpus[0]!.blockAt(CODE)?.compiled, true);
  // Budgets of every size from 2 to 9 and a few odd ones: most end mid-block.
  const budgets = [2, 3, 4, 5, 6, 7, 8, 9, 13, 29, 2, 5, 3];
  for (const [i, n] of budgets.entries()) agree(fast, slow, n, `budget #${i} of ${n}`);
  const stop = agree(fast, slow, 100_000, "to hlt");
  assert.equal(stop.kind, "hlt");
  assert.equal(fast.m.cpus[0]!.getReg("rax"), 1000n);
});

// The native at `nat` replaces a `pop %rdx` that balances the push: bound or not, the loop
// continues at `after` with the stack balanced.
const NATIVE_LOOP = `
loop:
  lea after(%rip), %rax
  push %rax
  add $1, %rbx
nat:
  pop %rdx
after:
  add $2, %rbx
  dec %ecx
  jnz loop
  hlt
`;

Deno.test("Cpu.runSteps() calls a native bound inside a compiled straight-line block", () => {
  const calls = [0, 0];
  const [fast, slow] = pair(NATIVE_LOOP, ({ m }) => m.cpus[0]!.setReg("rcx", 300n));
  agree(fast, slow, 700, "warm-up");
  const cpu = fast.m.cpus[0]!;
  assert.equal(cpu.blockAt(CODE)?.length, 7); // lea .. jnz, through `nat`
  assert.equal(cpu.blockAt(CODE)?.compiled, true);
  const nat = fast.labels.get("nat")!;
  fast.m.bindNative(nat, () => void calls[0]!++, "count");
  slow.m.bindNative(nat, () => void calls[1]!++, "count");
  const stop = agree(fast, slow, 100_000, "to hlt");
  assert.equal(stop.kind, "hlt");
  assert.equal(calls[0], 200); // 700 steps = 100 iterations before binding
  assert.deepEqual(calls, [200, 200]);
  assert.equal(cpu.getReg("rbx"), 900n);
});

Deno.test("Cpu.blockAt() shows blocks ending before a native address and at a page end", () => {
  const { m, labels } = rig(NATIVE_LOOP, ({ m, labels }) => {
    m.bindNative(labels.get("nat")!, () => {}, "nothing");
    m.cpus[0]!.setReg("rcx", 300n);
  });
  assert.equal(m.run({ maxSteps: 100_000 }).kind, "hlt");
  const cpu = m.cpus[0]!;
  assert.deepEqual(cpu.blockAt(CODE), { length: 3, compiled: true, loops: false });
  assert.deepEqual(cpu.blockAt(labels.get("after")!), { length: 3, compiled: true, loops: false });
  assert.equal(cpu.blockAt(labels.get("nat")!), null);
});

Deno.test("Cpu.runSteps() runs straight-line code across a page boundary and a remapped page", () => {
  // The loop starts 8 bytes before the page end; its 6-byte add straddles the boundary.
  const src = `
  .rept 4096 - 8
  nop
  .endr
loop:
  add $1, %rax
  nop
  add $0x11223344, %edx
  add $3, %rsi
  add $4, %rdi
  dec %ecx
  jnz loop
  hlt
`;
  const setup = ({ m, labels }: Rig) => {
    m.cpus[0]!.rip = labels.get("loop")!;
    m.cpus[0]!.setReg("rcx", 400n);
  };
  const [fast, slow] = pair(src, setup);
  assert.equal(fast.labels.get("loop")!, CODE + 4088n);
  agree(fast, slow, 910, "warm-up"); // 130 iterations
  const cpu = fast.m.cpus[0]!;
  assert.deepEqual(cpu.blockAt(CODE + 4088n), { length: 2, compiled: true, loops: false }); // add, nop
  assert.equal(cpu.blockAt(CODE + 4093n), null); // the straddling add is never cached
  assert.deepEqual(cpu.blockAt(CODE + 0x1003n), { length: 4, compiled: true, loops: false }); // add .. jnz, to `loop`
  // Replace the second page with a copy that adds 5 to rdi instead of 4.
  for (const r of [fast, slow]) {
    const bytes = r.m.readBytes(CODE + 0x1000n, 0x1000);
    assert.deepEqual([...bytes.subarray(7, 11)], [0x48, 0x83, 0xc7, 0x04]);
    bytes[10] = 5;
    r.m.unmap(CODE + 0x1000n, 0x1000);
    r.m.load(CODE + 0x1000n, bytes, "rx");
  }
  const stop = agree(fast, slow, 100_000, "to hlt");
  assert.equal(stop.kind, "hlt");
  assert.equal(cpu.getReg("rdi"), 130n * 4n + 270n * 5n);
  assert.equal(cpu.getReg("edx"), BigInt((400 * 0x11223344) >>> 0));
});
