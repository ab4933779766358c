/**
 * The SMP machine: CPU counts, deterministic interleaving, IPIs, NMIs, on_each_cpu,
 * kernel threads, deadlock detection, the trace.
 */
import assert from "node:assert/strict";
import { MachineError } from "../lib/errors.ts";
import { Machine } from "../lib/machine/machine.ts";
import { random, roundRobin, scripted } from "../lib/machine/schedule.ts";
import { DATA, smpMachine } from "./_smp_fixture.ts";

const ALU_LOOP = `
  movl $1, %eax
  movl $3, %ecx
loop:
  addl %ecx, %eax
  xorl %eax, %edx
  roll $3, %edx
  subl $1, %ecx
  jmp loop
`;

Deno.test("Machine refuses a CPU count outside 1..64", () => {
  assert.throws(() => new Machine({ bitness: 64, cpus: 0 }), MachineError);
  assert.throws(() => new Machine({ bitness: 64, cpus: 65 }), /1 to 64/);
  assert.throws(() => new Machine({ bitness: 64, cpus: 2.5 }), MachineError);
  assert.equal(new Machine({ bitness: 64, cpus: 64 }).cpus.length, 64);
});

Deno.test("Machine.sendIpi() and sendNmi() refuse a missing CPU and a bad vector", () => {
  const { m } = smpMachine(["hlt", "hlt"]);
  assert.throws(() => m.sendIpi(0, 2, 0xf0), /CPU 2 does not exist/);
  assert.throws(() => m.sendIpi(0, -3, 0xf0), MachineError);
  assert.throws(() => m.sendIpi(0, 1, 2), /32\.\.255/);
  assert.throws(() => m.sendNmi(0, 9), MachineError);
  assert.throws(() => m.spawn(5, function* () {}), MachineError);
});

Deno.test("Machine.run() with random(seed) gives one trace hash per seed over 1,000,000 steps on 4 CPUs", () => {
  const hash = (seed: number) => {
    const { m } = smpMachine([ALU_LOOP, ALU_LOOP, ALU_LOOP, ALU_LOOP], {
      schedule: random(seed),
    });
    const stop = m.run({ maxSteps: 1_000_000 });
    assert.equal(stop.kind, "budget");
    assert.equal(stop.steps, 1_000_000);
    return m.traceHash();
  };
  const a = hash(1), b = hash(1), c = hash(2);
  assert.equal(a, b);
  assert.notEqual(a, c);
});

Deno.test("Machine.run() with roundRobin(q) alternates CPUs q instructions at a time", () => {
  const { m } = smpMachine(["nop\n nop\n nop\n nop\n hlt", "nop\n nop\n nop\n nop\n hlt"], {
    schedule: roundRobin(2),
    traceCapacity: 64,
  });
  const stop = m.run({ maxSteps: 100 });
  assert.equal(stop.kind, "hlt");
  const order = m.smp!.trace.records().filter((r) => r.kind === "retire").map((r) => r.cpu);
  assert.deepEqual(order, [0, 0, 1, 1, 0, 0, 1, 1, 0, 1]);
});

Deno.test("an IPI is held pending while IF=0 and taken at the first boundary with IF=1", () => {
  const { m, labels } = smpMachine([
    "hlt",
    `cli
     incl ${DATA}
     incl ${DATA}
     sti
     incl ${DATA + 4n}
     incl ${DATA + 4n}
     hlt`,
  ], {
    schedule: scripted([1]),
    traceCapacity: 64,
    shared: `ipi: movl ${DATA}, %eax\n movl ${DATA + 4n}, %ebx\n iretq`,
  });
  m.setGate(0xf0, { handler: labels.get("ipi")! });
  m.run({ maxSteps: 1 }); // cli
  m.sendIpi(0, 1, 0xf0);
  const stop = m.run({ maxSteps: 100 });
  assert.equal(stop.kind, "hlt");
  const cpu = m.cpus[1]!;
  // The handler ran after both IF=0 increments and, sti's interrupt shadow, one more
  // instruction; once; and returned to finish the program.
  assert.equal(cpu.getReg("eax"), 2n);
  assert.equal(cpu.getReg("ebx"), 1n);
  assert.equal(m.read32(DATA + 4n), 2n);
  const taken = m.smp!.trace.records(1).filter((r) => r.kind === "ipi-taken");
  assert.equal(taken.length, 1);
});

Deno.test("Machine.sendIpi(-1, -1, v) interrupts every CPU once", () => {
  const prog = `sti\nloop: hlt\n jmp loop`;
  const { m, labels } = smpMachine([prog, prog, prog], {
    schedule: random(9),
    shared: `h: lock incl ${DATA}\n iretq`,
  });
  m.setGate(0xf2, { handler: labels.get("h")! });
  assert.equal(m.run({ maxSteps: 100 }).kind, "hlt");
  m.sendIpi(-1, -1, 0xf2);
  m.sendIpi(-1, -1, 0xf2); // still pending: one IRR bit per vector
  const stop = m.run({ maxSteps: 1000 });
  assert.equal(stop.kind, "hlt");
  assert.equal(m.read32(DATA), 3n);
});

Deno.test("an NMI interrupts an exception handler running with IF=0, and its iret is exact", () => {
  const { m, labels } = smpMachine([
    `movq $0x1234, %rbx
     int3
     movq %rsp, %r12
     hlt`,
  ], {
    schedule: roundRobin(1),
    shared: `
bp:  incl ${DATA}
     incl ${DATA}
     incl ${DATA}
     iretq
nmi: incl ${DATA + 8n}
     movq $99, %rbx
     movq %rsp, %r13
     iretq`,
  });
  m.setGate(3, { handler: labels.get("bp")! });
  m.setGate(2, { handler: labels.get("nmi")! });
  const cpu = m.cpus[0]!;
  const sp0 = cpu.getReg("rsp");
  m.run({ maxSteps: 3 }); // mov, int3 (delivery), first incl of the handler
  assert.equal(cpu.getReg("rip"), labels.get("bp")! + 7n);
  const inHandler = { rip: cpu.getReg("rip"), rsp: cpu.getReg("rsp"), flags: cpu.getReg("rflags") };
  assert.equal(inHandler.flags & 0x200n, 0n, "int3 handler runs with IF=0");
  m.sendNmi(-1, 0);
  m.run({ maxSteps: 1 }); // NMI delivery, although IF=0
  assert.equal(cpu.getReg("rip"), labels.get("nmi")!);
  m.sendNmi(-1, 0); // latched: NMIs are blocked until the NMI handler's iret
  m.run({ maxSteps: 4 }); // the NMI handler to its iret
  assert.equal(m.read32(DATA + 8n), 1n);
  // Exactly back into the int3 handler: same ip, stack, flags.
  assert.equal(cpu.getReg("rip"), inHandler.rip);
  assert.equal(cpu.getReg("rsp"), inHandler.rsp);
  assert.equal(cpu.getReg("rflags"), inHandler.flags);
  // The latched NMI is taken right after that iret.
  m.run({ maxSteps: 1 });
  assert.equal(cpu.getReg("rip"), labels.get("nmi")!);
  const stop = m.run({ maxSteps: 100 });
  assert.equal(stop.kind, "hlt");
  assert.equal(m.read32(DATA + 8n), 2n);
  assert.equal(m.read32(DATA), 3n);
  assert.equal(cpu.getReg("r12"), sp0, "the stack is balanced after both irets");
});

Deno.test("Machine.spawn() interleaves a kernel thread with the other CPUs' instructions", () => {
  const { m } = smpMachine(["hlt", `loop: incl ${DATA}\n jmp loop`], { schedule: roundRobin(1) });
  const seen: bigint[] = [];
  const t = m.spawn(0, function* (k) {
    for (let i = 0; i < 4; i++) {
      seen.push(m.read32(DATA));
      yield* k.step();
    }
  });
  m.run({ maxSteps: 10 });
  assert.equal(t.done, true);
  // One instruction of CPU 1 (incl or jmp) between thread steps.
  assert.deepEqual(seen, [0n, 1n, 1n, 2n]);
});

Deno.test("onEachCpu(fn, true) runs fn on every CPU, the sender too, before the thread goes on", () => {
  const { m } = smpMachine([
    "hlt",
    "sti\n" + ALU_LOOP,
    "sti\n" + ALU_LOOP,
    "sti\nloop: hlt\n jmp loop",
  ], {
    schedule: random(3),
  });
  const ran: number[] = [];
  let after: number[] = [];
  m.spawn(0, function* (k) {
    yield* k.onEachCpu((cpu) => ran.push(cpu), true);
    after = [...ran];
  });
  const stop = m.run({ maxSteps: 500 });
  assert.equal(stop.kind, "budget");
  assert.deepEqual([...after].sort(), [0, 1, 2, 3]);
  assert.equal(ran.length, 4);
});

Deno.test("Machine.run() reports a deadlock when every CPU waits, without hanging", () => {
  const { m } = smpMachine(["hlt", "cli\n hlt"], { schedule: scripted([1, 1]) });
  m.spawn(0, function* (k) {
    yield* k.onEachCpu(() => {}, true);
  });
  const stop = m.run({ maxSteps: 10_000_000 });
  assert.equal(stop.kind, "deadlock");
  assert.match(stop.message, /CPU 0 waits for on_each_cpu completion/);
  assert.ok(stop.steps < 10);
});

Deno.test("Machine.run() stops with thread-error when a kernel thread throws", () => {
  const { m } = smpMachine(["hlt", "hlt"]);
  m.spawn(0, function* (k) {
    yield* k.step();
    throw new Error("boom");
  });
  const stop = m.run({ maxSteps: 100 });
  assert.equal(stop.kind, "thread-error");
  assert.match(stop.message, /boom/);
});

Deno.test("the trace records IPIs, exceptions, code stores and serializations per CPU", () => {
  const { m, labels } = smpMachine(["hlt", "sti\nloop: nop\n jmp loop"], {
    schedule: roundRobin(1),
    traceCapacity: 256,
    fetch: "stale",
    shared: "h: iretq",
  });
  m.setGate(0xf1, { handler: labels.get("h")! });
  m.spawn(0, function* (k) {
    yield* k.step();
    yield* k.store(Number(labels.get("c1.loop")!), [0x90]);
    yield* k.sendIpi(1, 0xf1);
    yield* k.step();
  });
  m.run({ maxSteps: 20 });
  const kinds = new Set(m.smp!.trace.records().map((r) => `${r.cpu}:${r.kind}`));
  for (
    const k of [
      "0:code-store",
      "0:ipi-sent",
      "1:ipi-taken",
      "1:exception-entry",
      "1:exception-exit",
      "1:serialize",
      "1:retire",
      "0:thread",
    ]
  ) assert.ok(kinds.has(k), `missing ${k} in ${[...kinds]}`);
});

Deno.test("a line-straddling store completes when one CPU runs alone (machine.run({ cpu }))", () => {
  const { m } = smpMachine([`movl $0xffffffff, ${DATA + 0x3en}\n hlt`, "hlt"]);
  const stop = m.run({ cpu: 0, maxSteps: 10 });
  assert.equal(stop.kind, "hlt");
  assert.equal(m.read32(DATA + 0x3en), 0xffffffffn);
});

Deno.test("a halted CPU wakes for an interrupt raised on it directly between runs", () => {
  const { m, labels } = smpMachine(["sti\n hlt\n movl $7, %ebx\n hlt", "hlt"], {
    shared: "h: iretq",
  });
  m.setGate(0x30, { handler: labels.get("h")! });
  assert.equal(m.run({ maxSteps: 100 }).kind, "hlt");
  m.cpus[0]!.raiseInterrupt(0x30);
  assert.equal(m.run({ maxSteps: 100 }).kind, "hlt");
  assert.equal(m.cpus[0]!.getReg("ebx"), 7n);
});
