// The int3 round trip's fast paths agree with the slow paths they short-cut: exception
// frames stored with one translation, the kernel memory's remembered page, the 32-bit
// push's frame move without a copy. Each test also shows the failure the fast path must
// not hide (a page that changed under a remembered translation).
import assert from "node:assert/strict";
import { MemoryError } from "../lib/errors.ts";
import { bootKernel } from "../lib/kernel/kernel.ts";
import { int3EmulatePop, int3EmulatePush } from "../lib/kernel/emulate.ts";
import { PtRegs, wordMemory } from "../lib/kernel/pt_regs.ts";
import { Machine } from "../lib/machine/machine.ts";
import { boot, CODE, STACK_TOP } from "./_machine_fixture.ts";

function trapTwice(bitness: 32 | 64): string {
  return `
    int3
  second:
    int3
    hlt
  handler:
    ${bitness === 64 ? "iretq" : "iret"}
`;
}

function frameAfterInt3(bitness: 32 | 64, sp: bigint): bigint[] {
  const { m, cpu, labels } = boot(bitness, trapTwice(bitness));
  const handler = labels.get("handler")!;
  m.setGate(3, { handler, type: "interrupt", dpl: 3 });
  cpu.setReg(bitness === 64 ? "rsp" : "esp", sp);
  assert.equal(m.run({ maxSteps: 10, until: handler }).kind, "until");
  const ws = bitness === 64 ? 8 : 4;
  const n = bitness === 64 ? 5 : 3;
  const top = bitness === 64 ? sp & ~15n : sp;
  const out: bigint[] = [];
  for (let i = 0; i < n; i++) {
    const a = top - BigInt((n - i) * ws);
    out.push(ws === 8 ? m.read64(a) : m.read32(a));
  }
  assert.equal(cpu.getReg(bitness === 64 ? "rsp" : "esp"), top - BigInt(n * ws));
  assert.equal(m.run({ maxSteps: 10, until: labels.get("second")! }).kind, "until");
  assert.equal(cpu.getReg(bitness === 64 ? "rsp" : "esp"), sp, "iret popped the frame");
  return out;
}

Deno.test("deliver() stores a frame across two pages like one inside a page (64-bit)", () => {
  // 0x12010: the five words sit at 0x11fe8..0x12010, three of them below the page boundary.
  for (const sp of [STACK_TOP - 0x100n, 0x12010n]) {
    assert.deepEqual(frameAfterInt3(64, sp), [CODE + 1n, 0x10n, 0x2n, sp, 0x18n], `sp ${sp}`);
  }
});

Deno.test("deliver() stores a frame across two pages like one inside a page (32-bit)", () => {
  for (const sp of [STACK_TOP - 0x100n, 0x12008n]) {
    const [ip, cs, flags] = frameAfterInt3(32, sp);
    assert.deepEqual([ip, cs, flags], [CODE + 1n, 0x60n, 0x2n], `sp ${sp}`);
  }
});

Deno.test("deliver() faults on a stack page made read-only after a trap wrote a frame there", () => {
  for (const bitness of [64, 32] as const) {
    const { m, labels } = boot(bitness, trapTwice(bitness));
    const handler = labels.get("handler")!;
    m.setGate(3, { handler, type: "interrupt", dpl: 3 });
    assert.equal(m.run({ maxSteps: 10, until: labels.get("second")! }).kind, "until");
    // The first frame went to the page below STACK_TOP; the translation of a remembered
    // page must not survive the page-table change.
    m.memory.protect(STACK_TOP - 0x1000n, 0x1000, "r");
    const stop = m.run({ maxSteps: 10 });
    assert.equal(stop.kind, "triple-fault", `${bitness}-bit: ${stop.message}`);
    assert.match(stop.message, /#PF/);
  }
});

Deno.test("PtRegs over kernel memory sees a page protected or replaced after an access", () => {
  const k = bootKernel(new Machine({ bitness: 64 }), { entry: "64-gap" });
  const page = (k.allocData(0x2000) + 0xfffn) & ~0xfffn;
  const regs = k.regsAt(page + 0x40n);
  regs.ip = 0x1234n;
  assert.equal(regs.ip, 0x1234n);
  k.machine.memory.protect(page, 0x1000, "r", { user: false });
  assert.throws(() => regs.ip = 0x5678n, MemoryError, "a write to a now read-only page");
  assert.equal(regs.ip, 0x1234n, "nothing was written");
  k.machine.memory.unmap(page, 0x1000);
  k.machine.memory.map(page, 0x1000, "rw", { user: false });
  assert.equal(regs.ip, 0n, "a fresh frame, not the old one");
  regs.sp = 0x99n;
  assert.equal(k.machine.memory.read64(page + 0x40n + 152n), 0x99n);
});

/** A 32-bit frame with a pattern in every byte of the 60 saved bytes and sp. */
function fill(mem: { writeBytes(a: bigint, b: Uint8Array): void }, at: bigint): Uint8Array {
  const body = new Uint8Array(68);
  for (let i = 0; i < body.length; i++) body[i] = (i * 37 + 11) & 0xff;
  mem.writeBytes(at, body);
  return body;
}

Deno.test("int3EmulatePush() in move mode moves the frame like readBytes + writeBytes", () => {
  const k = bootKernel(new Machine({ bitness: 32 }), { entry: "32-seed" });
  const page = (k.allocData(0x3000) + 0xfffn) & ~0xfffn;
  // Inside a page, and with the moved frame starting on the page below.
  for (const at of [page + 0x800n, page + 0x1000n]) {
    const bytes = new Uint8Array(0x100);
    const plain = wordMemory({
      readBytes: (a, n) => bytes.slice(Number(a - at + 0x80n), Number(a - at + 0x80n) + n),
      writeBytes: (a, b) => bytes.set(b, Number(a - at + 0x80n)),
    });
    fill(k.mem, at);
    fill(plain, at);
    const moved = int3EmulatePush(new PtRegs(k.mem, at, 32), 0xcafef00dn, "move");
    const want = int3EmulatePush(new PtRegs(plain, at, 32), 0xcafef00dn, "move");
    assert.equal(moved.address, at - 4n);
    assert.deepEqual(k.mem.readBytes(at - 4n, 68), plain.readBytes(at - 4n, 68));
    assert.deepEqual(moved.snapshot(), want.snapshot());
    const back = int3EmulatePop(moved, "move");
    const wantBack = int3EmulatePop(want, "move");
    assert.equal(back.value, 0xcafef00dn);
    assert.equal(back.regs.address, at);
    assert.deepEqual(k.mem.readBytes(at - 4n, 68), plain.readBytes(at - 4n, 68));
    assert.deepEqual(back.regs.snapshot(), wantBack.regs.snapshot());
  }
});

Deno.test("int3EmulatePush() in move mode writes nothing when the frame's page is read-only", () => {
  const k = bootKernel(new Machine({ bitness: 32 }), { entry: "32-seed" });
  const page = (k.allocData(0x2000) + 0xfffn) & ~0xfffn;
  const at = page + 0x800n;
  const body = fill(k.mem, at);
  const regs = new PtRegs(k.mem, at, 32);
  void regs.sp; // the kernel memory now remembers this page
  k.machine.memory.protect(page, 0x1000, "r", { user: false });
  assert.throws(() => int3EmulatePush(regs, 1n, "move"), MemoryError);
  assert.deepEqual(k.mem.readBytes(at, 68), body);
  assert.deepEqual(k.mem.readBytes(at - 4n, 4), new Uint8Array(4));
});
