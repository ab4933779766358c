/**
 * Natives at the edges: a return slot that faults, and host exceptions from a native body.
 */
import assert from "node:assert/strict";
import { MachineError, PatchError } from "../lib/errors.ts";
import { assemble } from "../lib/x86/assemble.ts";
import { Machine } from "../lib/machine/machine.ts";

const CODE = 0x1000n;
const STACK_TOP = 0x14000n;

function boot(bitness: 32 | 64, src: string) {
  const m = new Machine({ bitness });
  const a = assemble(src, { bitness, origin: CODE });
  m.load(CODE, a.bytes, "rwx");
  m.map(0x10000n, 0x4000, "rw");
  const cpu = m.cpus[0]!;
  cpu.setReg(bitness === 64 ? "rsp" : "esp", STACK_TOP);
  cpu.rip = CODE;
  return { m, cpu, labels: a.labels };
}

for (const bitness of [64, 32] as const) {
  const sp = bitness === 64 ? "%rsp" : "%esp";
  const ws = bitness === 64 ? 8 : 4;
  Deno.test(`a native whose return slot faults runs its body once, after the #PF handler fixed the stack (x86-${bitness})`, () => {
    // The stack pointer is unmapped when the native is reached: the #PF belongs to its
    // `ret`. The handler points the saved sp at a mapped slot holding the return address
    // and irets back to the native, which then runs, once.
    const { m, cpu, labels } = boot(
      bitness,
      `\tmov\t$0x30000, ${sp}\n\tmov\t$7, %eax\n\tjmp\t0x5000\n` +
        `pf:\n\tmov${bitness === 64 ? "q" : "l"}\t$0x11000, ${ws * 4}(${sp})\n` +
        `\tadd\t$${ws}, ${sp}\n\tiret${bitness === 64 ? "q" : ""}\n` +
        `back:\n\tnop\n`,
    );
    m.map(0x5000n, 0x1000, "rx");
    const back = labels.get("back")!;
    m.writeBytes(0x11000n, new Uint8Array(new BigUint64Array([back]).buffer).subarray(0, ws));
    let calls = 0;
    let raxAtFault = -1n;
    m.bindNative(0x5000n, () => {
      calls++;
      return 0x99;
    }, "f");
    m.setGate(14, { handler: labels.get("pf")! });
    m.onException = (c, v) => {
      if (v === 14) raxAtFault = c.getReg(bitness === 64 ? "rax" : "eax");
    };
    // From ring 3 the frame is the same shape in both modes: error code, ip, cs, flags, sp.
    if (bitness === 32) {
      cpu.cs = 0x73;
      cpu.ss = 0x7b;
      cpu.tss.sp0 = STACK_TOP;
      cpu.tss.ss0 = 0x68;
    } else {
      cpu.cs = 0x33;
      cpu.ss = 0x2b;
      cpu.tss.sp0 = STACK_TOP;
    }
    const stop = m.run({ maxSteps: 40, until: back });
    assert.equal(stop.kind, "until", stop.message);
    assert.equal(calls, 1, "the body ran once");
    assert.equal(raxAtFault, 7n, "nothing of the body had happened when the #PF was delivered");
    assert.equal(cpu.getReg(bitness === 64 ? "rax" : "eax"), 0x99n);
  });
}

Deno.test("Machine.run() names the native and the CPU when a native throws a host error, and passes typed errors as they are", () => {
  const { m } = boot(64, "\tcall\t0x5000\n\thlt\n");
  m.map(0x5000n, 0x1000, "rx");
  m.bindNative(0x5000n, () => {
    throw new Error("bug in native");
  }, "buggy");
  assert.throws(() => m.run({ maxSteps: 10 }), (e: unknown) => {
    assert.ok(e instanceof MachineError);
    assert.equal(e.message, "Native buggy at 0x5000 on CPU 0 threw: Error: bug in native");
    assert.ok(e.cause instanceof Error && e.cause.message === "bug in native");
    return true;
  });
  const typed = boot(64, "\tcall\t0x5000\n\thlt\n");
  typed.m.map(0x5000n, 0x1000, "rx");
  const refusal = new PatchError("Refused at 0x5000", 0x5000n);
  typed.m.bindNative(0x5000n, () => {
    throw refusal;
  }, "refuses");
  assert.throws(() => typed.m.run({ maxSteps: 10 }), (e: unknown) => e === refusal);
});

Deno.test("Machine.run() refuses a native's non-integer return value, naming the native", () => {
  const { m } = boot(64, "\tcall\t0x5000\n\thlt\n");
  m.map(0x5000n, 0x1000, "rx");
  m.bindNative(0x5000n, () => 1.5, "frac");
  assert.throws(
    () => m.run({ maxSteps: 10 }),
    (e: unknown) =>
      e instanceof MachineError &&
      e.message === "Native frac at 0x5000 returned 1.5, not an integer",
  );
});
