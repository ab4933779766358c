// iret and delivery details checked against the Intel SDM (Vol. 2A IRET and INT n
// pseudocode): which flags an iret may change, RFLAGS.NT, null SS, data segment registers
// on a return to ring 3, the TSS stack, and natives fetched from supervisor pages.
import assert from "node:assert/strict";
import { boot, CODE, STACK_TOP, words } from "./_machine_fixture.ts";

const USER_STACK = 0x11000n;
const NATIVE = 0x5000n;

/** A program that irets to `next` with the given saved flags, CS and SS. */
function iretTo(bits: 32 | 64, flags: number, cs: number, ss: number): string {
  const p = bits === 64 ? "pushq" : "pushl";
  return `
    ${p} $${ss}
    ${p} $0x13000
    ${p} $${flags}
    ${p} $${cs}
    ${p} $next
  at_iret:
    ${bits === 64 ? "iretq" : "iret"}
  next:
    nop
    hlt
  gp:
    hlt`;
}

for (const bits of [64, 32] as const) {
  const ucs = bits === 64 ? 0x33 : 0x73;
  const uds = bits === 64 ? 0x2b : 0x7b;
  const kcs = bits === 64 ? 0x10 : 0x60;
  const kds = bits === 64 ? 0x18 : 0x68;

  Deno.test(`iret() at CPL 3 leaves IOPL and IF alone (${bits}-bit)`, () => {
    const { m, cpu, labels } = boot(bits, iretTo(bits, 0x3002, ucs, uds));
    cpu.cs = ucs;
    cpu.ss = uds;
    cpu.setReg(bits === 64 ? "rsp" : "esp", USER_STACK);
    cpu.rflags = 0x202n; // IF = 1, IOPL = 0
    assert.equal(m.run({ maxSteps: 20, until: labels.get("next")! }).kind, "until");
    assert.equal(cpu.cpl, 3);
    assert.equal(cpu.rflags, 0x202n, "saved IOPL 3 and IF 0 are ignored at CPL 3");
  });

  Deno.test(`iret() at CPL 0 loads IOPL and IF from the frame (${bits}-bit)`, () => {
    const { m, cpu, labels } = boot(bits, iretTo(bits, 0x3002, kcs, kds));
    cpu.rflags = 0x202n;
    assert.equal(m.run({ maxSteps: 20, until: labels.get("next")! }).kind, "until");
    assert.equal(cpu.rflags, 0x3002n);
  });

  Deno.test(`iret() to ring 3 nulls data segment registers holding kernel selectors (${bits}-bit)`, () => {
    const { m, cpu, labels } = boot(bits, iretTo(bits, 0x202, ucs, uds));
    cpu.ds = kds;
    cpu.es = uds; // DPL 3: kept
    cpu.fs = kds | 3; // the kernel data descriptor whatever the RPL
    cpu.gs = kcs;
    assert.equal(m.run({ maxSteps: 20, until: labels.get("next")! }).kind, "until");
    assert.equal(cpu.cpl, 3);
    assert.deepEqual([cpu.ds, cpu.es, cpu.fs, cpu.gs], [0, uds, 0, 0]);
    assert.equal(cpu.ss, uds);
  });

  Deno.test(`iret() at the same privilege keeps the data segment registers (${bits}-bit)`, () => {
    const { m, cpu, labels } = boot(bits, iretTo(bits, 0x2, kcs, kds));
    cpu.ds = kds;
    cpu.es = kds;
    assert.equal(m.run({ maxSteps: 20, until: labels.get("next")! }).kind, "until");
    assert.deepEqual([cpu.ds, cpu.es], [kds, kds]);
  });

  Deno.test(`fetchSlow() raises #PF 0x15 for a native in a supervisor page at CPL 3 (${bits}-bit)`, () => {
    const { m, cpu, labels } = boot(bits, `call ${NATIVE}\n after: nop\n pf: hlt`);
    m.map(NATIVE, 0x1000, "rx", { user: false });
    let calls = 0;
    m.bindNative(NATIVE, () => {
      calls++;
      return 42;
    }, "kernel_fn");
    m.setGate(14, { handler: labels.get("pf")! });
    cpu.cs = ucs;
    cpu.ss = uds;
    cpu.setReg(bits === 64 ? "rsp" : "esp", USER_STACK);
    cpu.tss.sp0 = STACK_TOP;
    assert.equal(m.run({ maxSteps: 10, until: labels.get("pf")! }).kind, "until");
    assert.equal(calls, 0, "the native did not run");
    assert.equal(cpu.cr2, NATIVE);
    const frame = bits === 64 ? words(m, STACK_TOP - 48n, 3, 8) : words(m, STACK_TOP - 24n, 3, 4);
    assert.deepEqual(frame, [0x15n, NATIVE, BigInt(ucs)], "P | U | I/D, saved ip at the native");
  });

  Deno.test(`fetchSlow() runs natives at CPL 0 in supervisor pages and unmapped ones at CPL 3 (${bits}-bit)`, () => {
    const ax = bits === 64 ? "rax" : "eax";
    const kernel = boot(bits, `call ${NATIVE}\n after: nop`);
    kernel.m.map(NATIVE, 0x1000, "rx", { user: false });
    kernel.m.bindNative(NATIVE, (c) => c.cpu.cpl + 42, "kernel_fn");
    assert.equal(kernel.m.run({ maxSteps: 10, until: kernel.labels.get("after")! }).kind, "until");
    assert.equal(kernel.cpu.getReg(ax), 42n);
    const user = boot(bits, `call ${NATIVE}\n after: nop`);
    user.m.bindNative(NATIVE, (c) => c.cpu.cpl + 42, "unmapped_fn");
    user.cpu.cs = ucs;
    user.cpu.ss = uds;
    user.cpu.setReg(bits === 64 ? "rsp" : "esp", USER_STACK);
    assert.equal(user.m.run({ maxSteps: 10, until: user.labels.get("after")! }).kind, "until");
    assert.equal(user.cpu.getReg(ax), 45n, "an unmapped native runs (at CPL 3)");
  });
}

Deno.test("iret() with NT = 1 raises #GP(0) in 64-bit mode and pops nothing", () => {
  const { m, cpu, labels } = boot(64, iretTo(64, 0x2, 0x10, 0x18));
  m.setGate(13, { handler: labels.get("gp")! });
  cpu.rflags = 0x4002n; // NT
  assert.equal(m.run({ maxSteps: 20, until: labels.get("gp")! }).kind, "until");
  const frameTop = (STACK_TOP - 40n) & ~15n; // five pushes, then delivery aligns to 16
  assert.deepEqual(words(m, frameTop - 48n, 2, 8), [0n, labels.get("at_iret")!]);
  assert.equal(m.read64(frameTop - 48n + 32n), STACK_TOP - 40n, "saved rsp: the frame unpopped");
});

Deno.test("iret() with NT = 1 stops the 32-bit machine: task return is not modelled", () => {
  const { m, cpu, labels } = boot(32, iretTo(32, 0x2, 0x60, 0x68));
  cpu.rflags = 0x4002n;
  const stop = m.run({ maxSteps: 20 });
  assert.equal(stop.kind, "unmodelled");
  assert.match(
    stop.message,
    /iret with NT=1: task return through the TSS back link is not modelled/,
  );
  assert.equal(stop.ip, labels.get("at_iret")!);
  assert.equal(cpu.getReg("esp"), STACK_TOP - 20n, "nothing popped");
  assert.equal(cpu.rflags, 0x4002n);
  assert.equal(m.run({ maxSteps: 20 }).kind, "unmodelled", "it stays stopped there");
});

Deno.test("iret() loads NT from the frame when the live NT is clear", () => {
  const { m, cpu, labels } = boot(32, iretTo(32, 0x4002, 0x60, 0x68));
  assert.equal(m.run({ maxSteps: 20, until: labels.get("next")! }).kind, "until");
  assert.equal(cpu.rflags, 0x4002n);
});

Deno.test("iretq raises #GP(0) for a null SS whose RPL is not the new CPL", () => {
  for (const [ss, cs, ok] of [[0, 0x10, true], [3, 0x10, false], [1, 0x10, false]] as const) {
    const { m, cpu, labels } = boot(64, iretTo(64, 0x2, cs, ss));
    m.setGate(13, { handler: labels.get("gp")! });
    const stop = m.run({ maxSteps: 20, until: ok ? labels.get("next")! : labels.get("gp")! });
    assert.equal(stop.kind, "until", `ss ${ss}`);
    if (ok) assert.equal(cpu.ss, 0);
    else {
      const frameTop = (STACK_TOP - 40n) & ~15n;
      assert.deepEqual(words(m, frameTop - 48n, 2, 8), [0n, labels.get("at_iret")!], `ss ${ss}`);
    }
  }
});

Deno.test("deliver() raises #SS(0) naming the value in hex for a non-canonical RSP0", () => {
  const { m, cpu } = boot(64, `int3`);
  m.setGate(3, { handler: CODE, dpl: 3 });
  cpu.cs = 0x33;
  cpu.ss = 0x2b;
  cpu.setReg("rsp", USER_STACK);
  cpu.tss.sp0 = 0x0000800000000000n;
  const stop = m.run({ maxSteps: 5 });
  assert.equal(stop.kind, "triple-fault", "every delivery from ring 3 needs RSP0");
  assert.match(stop.message, /^.*: #SS\(0x0\) \(tss\.sp0 0x800000000000 is not canonical\)/);
});
