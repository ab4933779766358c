import assert from "node:assert/strict";
import { MachineError, MemoryError } from "../lib/errors.ts";
import { Machine } from "../lib/machine/machine.ts";
import { assemble } from "../lib/x86/assemble.ts";
import { boot, CODE, DATA, runToHlt, STACK_TOP } from "./_machine_fixture.ts";

Deno.test("Machine rejects a bad CPU count, bitness and step budget with MachineError", () => {
  assert.throws(() => new Machine({ bitness: 64, cpus: 0 }), MachineError);
  assert.throws(() => new Machine({ bitness: 64, cpus: 65 }), MachineError);
  assert.throws(() => new Machine({ bitness: 16 as 32 }), MachineError);
  assert.throws(() => new Machine({ bitness: 32, stepBudget: 0 }), MachineError);
  assert.equal(new Machine({ bitness: 64, cpus: 64 }).cpus.length, 64);
});

Deno.test("Cpu.getReg()/setReg() reject unknown names and 64-bit names on a 32-bit CPU", () => {
  const m64 = new Machine({ bitness: 64 });
  assert.throws(() => m64.cpus[0]!.getReg("xax"), MachineError);
  const m32 = new Machine({ bitness: 32 });
  assert.throws(() => m32.cpus[0]!.getReg("rax"), /Unknown register "rax" for a 32-bit CPU/);
  assert.throws(() => m32.cpus[0]!.setReg("r8", 1n), MachineError);
  m32.cpus[0]!.setReg("eax", 0x1234n);
  m32.cpus[0]!.setReg("ah", 0x56n);
  assert.equal(m32.cpus[0]!.getReg("ax"), 0x5634n);
});

Deno.test("Memory host accesses need a mapping and name the address otherwise", () => {
  const m = new Machine({ bitness: 64 });
  m.map(0x1000n, 0x1000, "r");
  m.writeBytes(0x1000n, [1, 2, 3]); // host writes ignore W
  assert.deepEqual([...m.readBytes(0x1000n, 3)], [1, 2, 3]);
  assert.throws(() => m.writeBytes(0x1ffen, [1, 2, 3, 4]), (e: unknown) => {
    assert.ok(e instanceof MemoryError);
    assert.equal(e.address, 0x2000n);
    assert.match(e.message, /0x2000 is not mapped/);
    return true;
  });
  assert.equal(m.readBytes(0x1ffen, 2).length, 2, "the failed write left the page as it was");
  assert.deepEqual([...m.readBytes(0x1ffen, 2)], [0, 0]);
  assert.throws(() => m.readBytes(0x5000n, 1), MemoryError);
  assert.throws(() => m.map(0x1000n, 0x10, "rw"), /already mapped/);
  assert.throws(() => m.read64(0x0000800000000000n), /not canonical/);
  m.write64(0x1008n, 0xffffffff81000000n);
  assert.equal(m.read64(0x1008n), 0xffffffff81000000n);
});

Deno.test("Memory enforces the frame limit with a MachineError and maps nothing", () => {
  const m = new Machine({ bitness: 64, memoryLimit: 4 * 4096 });
  m.map(0x1000n, 3 * 4096, "rw");
  assert.throws(() => m.map(0x10000n, 2 * 4096, "rw"), (e: unknown) => {
    assert.ok(e instanceof MachineError);
    assert.match(e.message, /Memory limit of 16384 bytes exceeded/);
    return true;
  });
  assert.equal(m.memory.isMapped(0x10000n), false);
  m.unmap(0x1000n, 4096);
  m.map(0x10000n, 2 * 4096, "rw"); // the freed frame is reused
});

Deno.test("Memory.alias() maps one frame twice: stores through the alias reach the text", () => {
  const m = new Machine({ bitness: 64 });
  const text = 0xffffffff81000000n;
  const poke = 0xffffc90000001000n;
  m.map(text, 0x1000, "rx");
  m.alias(text, poke, 0x1000, "rw");
  m.write32(poke + 4n, 0xdeadbeefn);
  assert.equal(m.read32(text + 4n), 0xdeadbeefn);
  assert.throws(() => m.alias(0x5000n, 0x6000n, 0x1000, "rw"), /not mapped/);
});

Deno.test("Machine.run() stops with a budget reason naming the address", () => {
  const b = boot(64, `1: jmp 1b`);
  const stop = b.m.run({ maxSteps: 1000 });
  assert.equal(stop.kind, "budget");
  assert.equal(stop.steps, 1000);
  assert.equal(stop.ip, CODE);
  assert.match(stop.message, /Step budget of 1000 exhausted; CPU 0 at 0x1000/);
  const small = new Machine({ bitness: 64, stepBudget: 50 });
  small.load(0x1000n, [0xeb, 0xfe], "rx");
  small.cpus[0]!.rip = 0x1000n;
  assert.equal(small.run().steps, 50, "the machine's default budget applies");
});

Deno.test("Cpu predecoded cache sees a host write: the new bytes run", () => {
  const b = boot(64, `f: mov $1, %eax\n ret\n start: call f\n hlt`);
  const start = b.labels.get("start")!;
  b.cpu.rip = start;
  assert.equal(b.m.run({ maxSteps: 10 }).kind, "hlt");
  assert.equal(b.cpu.getReg("eax"), 1n);
  b.m.writeBytes(CODE + 1n, [2]); // mov $2, %eax
  b.cpu.rip = start;
  b.m.run({ maxSteps: 10 });
  assert.equal(b.cpu.getReg("eax"), 2n, "a stale predecoded mov would leave 1");
});

Deno.test("Cpu predecoded cache sees a CPU store through a writable alias into the middle of an instruction", () => {
  const m = new Machine({ bitness: 64 });
  const text = 0x400000n;
  const alias = 0x800000n;
  const prog = assemble(
    `
  start:
    call f
    mov %eax, %ebx
    movb $0x42, (%rsi)      # the imm32's third byte of f's mov, via the alias
    call f
    hlt
  f:
    mov $0x11223344, %eax
    ret
  `,
    { bitness: 64, origin: text },
  );
  m.load(text, prog.bytes, "rx");
  m.alias(text, alias, 0x1000, "rw");
  m.map(0x10000n, 0x4000, "rw");
  const cpu = m.cpus[0]!;
  const f = prog.labels.get("f")!;
  cpu.setReg("rsp", STACK_TOP);
  cpu.setReg("rsi", alias + (f - text) + 3n);
  cpu.rip = text;
  assert.equal(m.run({ maxSteps: 20 }).kind, "hlt");
  assert.equal(cpu.getReg("ebx"), 0x11223344n);
  assert.equal(
    cpu.getReg("eax"),
    0x11423344n,
    "the instruction starting 3 bytes earlier was re-decoded",
  );
});

Deno.test("Cpu writes to read-only text fault even though the host may write it", () => {
  const b = boot(64, `movb $0x90, 0x1000\n handler: hlt`);
  b.m.setGate(14, { handler: b.labels.get("handler")! });
  assert.equal(b.m.run({ maxSteps: 5, until: b.labels.get("handler")! }).kind, "until");
  assert.equal(b.m.readBytes(CODE, 1)[0], 0xc6, "the text is unchanged");
});

Deno.test("Machine.bindNative() follows the x86-64 calling convention and returns like ret", () => {
  const b = boot(
    64,
    `
    mov $1, %edi
    mov $2, %esi
    mov $3, %edx
    mov $4, %ecx
    mov $5, %r8d
    mov $6, %r9d
    push $7
    call 0x3000
  back:
    add $8, %rsp
    mov %rsp, %rbx
    hlt
  `,
  );
  const seen: bigint[] = [];
  b.m.bindNative(0x3000n, (call) => {
    for (let i = 0; i < 7; i++) seen.push(call.arg(i));
    assert.equal(call.read64(call.cpu.getReg("rsp")), b.labels.get("back"));
    return 0xffffffff81000000n;
  }, "sum7");
  assert.equal(b.m.run({ maxSteps: 20 }).kind, "hlt");
  assert.deepEqual(seen, [1n, 2n, 3n, 4n, 5n, 6n, 7n]);
  assert.equal(b.cpu.getReg("rax"), 0xffffffff81000000n);
  assert.equal(b.cpu.getReg("rbx"), STACK_TOP);
});

Deno.test("Machine.bindNative() follows 32-bit regparm(3) and can stop the run (an oops)", () => {
  const b = boot(
    32,
    `
    mov $1, %eax
    mov $2, %edx
    mov $3, %ecx
    push $4
    call 0x3000
    add $4, %esp
    mov %eax, %ebx
    call 0x4000
    hlt
  `,
  );
  b.m.bindNative(
    0x3000n,
    (call) => call.arg(0) * 1000n + call.arg(1) * 100n + call.arg(2) * 10n + call.arg(3),
  );
  b.m.bindNative(0x4000n, (call) => call.stop("BUG: unexpected int3"), "do_int3");
  const stop = b.m.run({ maxSteps: 20 });
  assert.equal(b.cpu.getReg("ebx"), 1234n);
  assert.equal(stop.kind, "native");
  assert.equal(stop.ip, 0x4000n, "a stopped native does not return");
  assert.match(stop.message, /do_int3 at 0x4000 stopped: BUG: unexpected int3/);
});

Deno.test("Machine CPUs share memory; stepCpu() runs exactly one instruction on one CPU", () => {
  const b = boot(64, `incl 0x8000\n incl 0x8000\n hlt`, 2);
  assert.equal(b.m.stepCpu(1), null);
  assert.equal(b.m.cpus[1]!.rip, CODE + 7n);
  assert.equal(b.m.cpus[0]!.rip, CODE);
  assert.equal(b.m.read32(DATA), 1n);
  const stop = b.m.run({ maxSteps: 100 });
  assert.equal(stop.kind, "hlt");
  assert.equal(b.m.read32(DATA), 4n);
  assert.throws(() => b.m.stepCpu(2), MachineError);
});

Deno.test("Cpu trace records instructions, exception entries, irets and natives", () => {
  const b = boot(64, `int3\n call 0x3000\n hlt\n h: iretq`);
  b.m.setGate(3, { handler: b.labels.get("h")! });
  b.m.bindNative(0x3000n, () => 0n);
  b.cpu.enableTrace(100);
  b.m.run({ maxSteps: 20 });
  const kinds = b.cpu.traceRecords().map((r) => `${r.kind}@${r.ip.toString(16)}`);
  assert.deepEqual(kinds, [
    "insn@1000",
    "exception@1001",
    "insn@1007",
    "iret@1007",
    "insn@1001",
    "insn@3000",
    "native@3000",
    "insn@1006",
  ]);
  b.cpu.enableTrace(2);
  b.cpu.rip = CODE + 6n;
  b.m.run({ maxSteps: 20 });
  assert.equal(b.cpu.traceRecords().length, 1);
});

Deno.test("runToHlt() fixture sanity: a 32-bit machine wraps esp arithmetic", () => {
  const { cpu } = runToHlt(32, `xor %eax, %eax\n dec %eax\n hlt`);
  assert.equal(cpu.getReg("eax"), 0xffffffffn);
});

Deno.test("Machine.run() never throws a host exception on random bytes at CPL 0 and CPL 3", () => {
  let seed = 12345;
  const rnd = () => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed >> 16;
  };
  for (const bitness of [64, 32] as const) {
    for (let round = 0; round < 40; round++) {
      const m = new Machine({ bitness });
      const bytes = Array.from({ length: 4096 }, () => rnd() & 0xff);
      m.load(0x1000n, bytes, "rwx");
      m.map(0x10000n, 0x4000, "rw");
      for (let v = 0; v < 32; v++) m.setGate(v, { handler: 0x1000n + BigInt(rnd() & 0xfff) });
      const cpu = m.cpus[0]!;
      cpu.setReg(bitness === 64 ? "rsp" : "esp", 0x12000n);
      cpu.tss.sp0 = 0x14000n;
      if (round % 2 === 1) cpu.cs = bitness === 64 ? 0x33 : 0x73;
      cpu.rip = 0x1000n + BigInt(rnd() & 0xfff);
      const stop = m.run({ maxSteps: 2000 });
      assert.ok(["hlt", "budget", "triple-fault"].includes(stop.kind), stop.message);
    }
  }
});

Deno.test("Machine.splitStore hook splits a CPU store straddling a 64-byte line (when enabled)", () => {
  const b = boot(64, `movq $-1, 0x803c\n lock orq $-1, 0x807c\n hlt`);
  const seen: [number, number, boolean][] = [];
  b.m.splitStore = (_cpu, address, bytes, locked) => {
    seen.push([address, bytes.length, locked]);
    return locked ? bytes.length : 4;
  };
  b.cpu.splitLines = true;
  assert.equal(b.m.run({ maxSteps: 10 }).kind, "hlt");
  assert.equal(b.m.read64(DATA + 0x3cn), 0xffffffffn, "only the lower half landed");
  assert.equal(b.m.read64(DATA + 0x7cn), 0xffffffffffffffffn, "the locked store is whole");
  assert.deepEqual(seen, [[0x803c, 8, false], [0x807c, 8, true]]);
});

Deno.test("Machine.run() interleaves CPUs and stops when every CPU has halted", () => {
  const b = boot(64, `lock incl 0x8000\n hlt`, 3);
  const stop = b.m.run({ maxSteps: 100 });
  assert.equal(stop.kind, "hlt");
  assert.equal(b.m.read32(DATA), 3n);
  assert.ok(b.m.cpus.every((c) => c.halted));
});
