// Unit tests of the kernel model's pieces on a plain byte-array memory (no machine):
// pt_regs layouts, the int3_emulate_* helpers, the handler chain, CodeMap and the
// text_poke_bp validation and protocol.
import assert from "node:assert/strict";
import { MachineError, PatchError } from "../lib/errors.ts";
import { type EntryVariant, int3EntrySource } from "../lib/kernel/entry.ts";
import { condition } from "../lib/x86/alu.ts";
import { CodeMap } from "../lib/kernel/code_map.ts";
import { NOP2, NOP5_32, NOP5_64 } from "../lib/kernel/constants.ts";
import {
  emulateCc,
  int3EmulateCall,
  int3EmulateJcc,
  int3EmulatePush,
  int3EmulateRet,
} from "../lib/kernel/emulate.ts";
import { Int3Dispatch } from "../lib/kernel/int3.ts";
import {
  CS,
  ORIG_RAX,
  PT_REGS_32,
  PT_REGS_FIELDS_32,
  PT_REGS_FIELDS_64,
  PtRegs,
  ptRegsSymbols,
  R15,
  RIP,
  SIZEOF_PTREGS_32,
  SIZEOF_PTREGS_64,
  SS,
  type WordMemory,
  wordMemory,
} from "../lib/kernel/pt_regs.ts";
import { type PokeStep, textGenInsn, TextPatcher } from "../lib/kernel/text_poke.ts";

function flatMemory(size: number, base = 0n): { bytes: Uint8Array; mem: WordMemory } {
  const bytes = new Uint8Array(size);
  const mem = wordMemory({
    readBytes: (a, n) => bytes.slice(Number(a - base), Number(a - base) + n),
    writeBytes: (a, b) => bytes.set(b, Number(a - base)),
  });
  return { bytes, mem };
}

Deno.test("PT_REGS_64 lays out 21 words, r15 first and ss last, 168 bytes", () => {
  assert.equal(PT_REGS_FIELDS_64.length, 21);
  assert.equal(SIZEOF_PTREGS_64, 168);
  assert.equal(R15, 0);
  assert.equal(ORIG_RAX, 120);
  assert.equal(RIP, 128);
  assert.equal(CS - ORIG_RAX, 16);
  assert.equal(SS, 160);
  assert.equal(ptRegsSymbols(64).get("CS"), 136n);
});

Deno.test("PT_REGS_32 lays out 17 words, bx first, sp at 60, 68 bytes", () => {
  assert.equal(PT_REGS_FIELDS_32.length, 17);
  assert.equal(SIZEOF_PTREGS_32, 68);
  assert.deepEqual(
    [PT_REGS_32.BX, PT_REGS_32.GS, PT_REGS_32.ORIG_AX, PT_REGS_32.IP, PT_REGS_32.SP, PT_REGS_32.SS],
    [0, 40, 44, 48, 60, 64],
  );
  assert.equal(ptRegsSymbols(32).get("PT_ORIG_AX"), 44n);
});

Deno.test("PtRegs reads and writes members in emulated memory at their offsets", () => {
  const { mem } = flatMemory(1024);
  const r64 = new PtRegs(mem, 0x100n, 64);
  r64.ip = 0xffffffff81000001n;
  r64.set("r9", 9n);
  assert.equal(mem.readWord(0x100n + 128n, 8), 0xffffffff81000001n);
  assert.equal(mem.readWord(0x100n + 64n, 8), 9n);
  const r32 = new PtRegs(mem, 0x200n, 32);
  r32.cs = 0x60n | (1n << 29n);
  assert.equal(mem.readWord(0x200n + 52n, 4), 0x20000060n);
  assert.equal(r32.userMode(), false);
  r32.cs = 0x73n;
  assert.equal(r32.userMode(), true);
  assert.equal(Object.keys(r32.snapshot()).join(), PT_REGS_FIELDS_32.join());
});

Deno.test("int3EmulatePush() direct lowers regs->sp by a word and stores there", () => {
  const { mem } = flatMemory(0x1000);
  const regs = new PtRegs(mem, 0x400n, 64);
  regs.sp = 0x800n;
  const out = int3EmulatePush(regs, 0x1234n, "direct");
  assert.equal(out, regs);
  assert.equal(regs.sp, 0x7f8n);
  assert.equal(mem.readWord(0x7f8n, 8), 0x1234n);
});

Deno.test("int3EmulatePush() move shifts the truncated 32-bit pt_regs down one word and writes new->sp", () => {
  const { mem } = flatMemory(0x1000);
  const regs = new PtRegs(mem, 0x400n, 32);
  PT_REGS_FIELDS_32.forEach((f, i) => regs.set(f, BigInt(0x100 + i)));
  // &regs->sp is the interrupted stack's top word: 0x100 + 15 was "stack data".
  const moved = int3EmulatePush(regs, 0xc0ffeen, "move");
  assert.equal(moved.address, 0x3fcn);
  // Every saved member up to flags moved intact.
  PT_REGS_FIELDS_32.slice(0, 15).forEach((f, i) => assert.equal(moved.get(f), BigInt(0x100 + i)));
  // new->sp is the interrupted stack's new top, one word below the old one, holding the value.
  assert.equal(moved.addressOf("sp"), regs.addressOf("sp") - 4n);
  assert.equal(moved.sp, 0xc0ffeen);
  // The old top of the interrupted stack was not touched.
  assert.equal(mem.readWord(regs.addressOf("sp"), 4), 0x10fn);
});

Deno.test("int3EmulatePush() move refuses x86-64 regs with MachineError, writing nothing", () => {
  const { bytes, mem } = flatMemory(0x1000);
  const regs = new PtRegs(mem, 0x400n, 64);
  regs.sp = 0x800n;
  const before = bytes.slice();
  assert.throws(
    () => int3EmulatePush(regs, 0x1234n, "move"),
    (e: unknown) =>
      e instanceof MachineError && /x86-32 push emulation only, not for x86-64/.test(e.message) &&
      e.message.includes("0x400"),
  );
  assert.deepEqual([...bytes], [...before]);
});

Deno.test("PtRegs.offsetOf() and int3EntrySource() refuse what does not exist with MachineError", () => {
  const { mem } = flatMemory(0x100);
  assert.throws(
    () => new PtRegs(mem, 0n, 32).offsetOf("r8"),
    (e: unknown) => e instanceof MachineError && /x86-32 has no member r8/.test(e.message),
  );
  assert.throws(
    () => int3EntrySource("64-bogus" as EntryVariant),
    (e: unknown) =>
      e instanceof MachineError && /Unknown int3 entry variant 64-bogus; known: 64-nogap/.test(
        e.message,
      ),
  );
});

Deno.test("int3EmulateCall() pushes ip - 1 + 5 and jumps", () => {
  const { mem } = flatMemory(0x1000);
  const regs = new PtRegs(mem, 0x100n, 64);
  regs.ip = 0x5001n;
  regs.sp = 0x900n;
  int3EmulateCall(regs, 0x7000n, "direct");
  assert.equal(regs.ip, 0x7000n);
  assert.equal(mem.readWord(0x8f8n, 8), 0x5005n);
});

Deno.test("int3EmulateRet() undoes int3EmulateCall() in both push modes", () => {
  for (const [bits, mode] of [[64, "direct"], [32, "direct"], [32, "move"]] as const) {
    const { mem } = flatMemory(0x1000);
    const regs = new PtRegs(mem, 0x400n, bits);
    regs.ip = 0x5001n;
    if (mode === "direct") regs.sp = 0x900n;
    const called = int3EmulateCall(regs, 0x7000n, mode);
    called.ip = 0x7001n; // as if the callee had begun with an int3 over its ret
    const back = int3EmulateRet(called, mode);
    assert.equal(back.ip, 0x5005n, `${bits} ${mode}`);
    assert.equal(back.address, regs.address);
    if (mode === "direct") assert.equal(back.sp, 0x900n);
  }
});

Deno.test("emulateCc() agrees with the CPU's condition() for every cc and flag combination", () => {
  const bits = [0x1, 0x4, 0x40, 0x80, 0x800];
  for (let m = 0; m < 32; m++) {
    let flags = 2;
    bits.forEach((b, i) => {
      if (m & (1 << i)) flags |= b;
    });
    for (let cc = 0; cc < 16; cc++) {
      assert.equal(emulateCc(flags, cc), condition(cc, flags), `cc ${cc} flags ${flags}`);
    }
  }
});

Deno.test("int3EmulateJcc() takes the branch only when the condition holds", () => {
  const { mem } = flatMemory(0x400);
  const regs = new PtRegs(mem, 0n, 64);
  regs.flags = 0x46n; // ZF
  int3EmulateJcc(regs, 4, 0x1006n, 0x20n); // je
  assert.equal(regs.ip, 0x1026n);
  int3EmulateJcc(regs, 5, 0x1006n, 0x20n); // jne
  assert.equal(regs.ip, 0x1006n);
});

Deno.test("Int3Dispatch.doKernelInt3() records an oops for an unclaimed kernel int3 and SIGTRAP for user mode", () => {
  const { mem } = flatMemory(0x400);
  const regs = new PtRegs(mem, 0n, 64);
  regs.ip = 0x1001n;
  regs.cs = 0x10n;
  const d = new Int3Dispatch("direct");
  let stopped = -1;
  d.onOops = (e) => stopped = e.cpu;
  d.doKernelInt3(regs, 2);
  assert.equal(d.events[0]?.kind, "oops");
  assert.equal(stopped, 2);
  regs.cs = 0x33n;
  d.doKernelInt3(regs, 1);
  const ev = d.events[1];
  assert.equal(ev?.kind, "sigtrap");
  assert.equal(ev?.kind === "sigtrap" && ev.address, 0x1000n);
});

Deno.test("Int3Dispatch runs ftrace's hook only while modifyingFtraceCode is set, before the poke handler", () => {
  const { mem } = flatMemory(0x400);
  const regs = new PtRegs(mem, 0n, 64);
  regs.cs = 0x10n;
  const order: string[] = [];
  const d = new Int3Dispatch("direct");
  d.ftraceInt3Handler = () => (order.push("ftrace"), true);
  d.pokeInt3Handler = () => (order.push("poke"), true);
  d.doKernelInt3(regs, 0);
  d.modifyingFtraceCode = 1;
  d.doKernelInt3(regs, 0);
  assert.deepEqual(order, ["poke", "ftrace"]);
  assert.equal(d.events.length, 0);
});

Deno.test("Int3Dispatch.doInt3() warns when a handler moved the regs its entry cannot follow", () => {
  const { mem } = flatMemory(0x400);
  const regs = new PtRegs(mem, 0x100n, 32);
  regs.cs = 0x60n;
  regs.ip = 0x2001n;
  const d = new Int3Dispatch("move");
  d.pokeInt3Handler = (ctx) => {
    ctx.regs = int3EmulateCall(ctx.regs, 0x3000n, ctx.pushMode);
    return true;
  };
  d.doInt3(regs, 0);
  assert.equal(d.events[0]?.kind, "warn");
});

// ---- text_poke_bp on a flat memory -------------------------------------------------

const BASE = 0x10000n;

function textFixture(bitness: 32 | 64 = 64) {
  // f0: nop5; ret   f1: call f0; ret   f2: jmp8 +0; nop2; ret   f3: jcc32 ; ret
  const nop5 = bitness === 64 ? NOP5_64 : NOP5_32;
  const code = Uint8Array.of(
    ...nop5,
    0xc3, // 0..5
    0xe8,
    0xf6,
    0xff,
    0xff,
    0xff,
    0xc3, // 6..11: call BASE (rel -10)
    0xeb,
    0x00,
    ...NOP2,
    0xc3, // 12..16
    0x0f,
    0x84,
    0x10,
    0x00,
    0x00,
    0x00,
    0xc3, // 17..23
  );
  const { bytes: all, mem } = flatMemory(0x400, BASE);
  all.set(code);
  const bytes = all.subarray(0, 0x40);
  const map = new CodeMap(bitness);
  map.add("text", BASE, code);
  const writes: { address: bigint; bytes: Uint8Array }[] = [];
  const patcher = new TextPatcher({
    bitness,
    mem,
    code: map,
    textBase: BASE,
    writeText: (a, b) => {
      writes.push({ address: a, bytes: b.slice() });
      mem.writeBytes(a, b);
    },
  });
  return { bytes, mem, patcher, writes };
}

/** Drives a patcher to its first store and performs it. */
function firstStore(patcher: TextPatcher, gen: Generator<PokeStep, void, void>): void {
  const s = gen.next().value;
  assert.ok(s && s.kind === "store");
  patcher.env.writeText(s.address, s.bytes);
}

const CALL_F1 = Uint8Array.of(0xe8, 0x01, 0x00, 0x00, 0x00); // call BASE+6 from BASE

Deno.test("textPokeBp() writes int3, then the tail, then the head, with a sync after each step", () => {
  const { bytes, patcher, writes } = textFixture();
  const steps: string[] = [];
  const gen = patcher.textPokeBp(BASE, CALL_F1, { old: NOP5_64 });
  for (let r = gen.next(); !r.done; r = gen.next()) {
    const s: PokeStep = r.value;
    if (s.kind === "store") {
      steps.push(`store${s.step}@${s.address - BASE}:${s.bytes.length}`);
      patcher.env.writeText(s.address, s.bytes);
    } else steps.push(`sync${s.step}`);
  }
  assert.deepEqual(steps, ["store1@0:1", "sync1", "store2@1:4", "sync2", "store3@0:1", "sync3"]);
  assert.deepEqual([...bytes.subarray(0, 5)], [...CALL_F1]);
  assert.equal(writes[0]!.bytes[0], 0xcc);
});

Deno.test("poke_int3_handler emulates the call being written while the site holds int3", () => {
  const { mem, patcher } = textFixture();
  const gen = patcher.textPokeBp(BASE, CALL_F1);
  const first = gen.next().value as PokeStep;
  assert.equal(first.kind, "store");
  patcher.env.writeText(first.address, (first as { bytes: Uint8Array }).bytes);
  // A CPU hits the int3 at BASE: trap frame with ip = BASE + 1.
  const regs = new PtRegs(mem, BASE + 0x100n, 64);
  regs.ip = BASE + 1n;
  regs.cs = 0x10n;
  regs.sp = BASE + 0x300n;
  const ctx = { regs, cpu: 1, pushMode: "direct" as const };
  assert.equal(patcher.pokeInt3Handler(ctx), true);
  assert.equal(regs.ip, BASE + 6n);
  assert.equal(mem.readWord(BASE + 0x2f8n, 8), BASE + 5n);
  // Another address is not claimed.
  regs.ip = BASE + 7n;
  assert.equal(patcher.pokeInt3Handler(ctx), false);
  patcher.run(gen);
  // After the batch, nothing is claimed any more.
  regs.ip = BASE + 1n;
  assert.equal(patcher.pokeInt3Handler(ctx), false);
});

Deno.test("poke_int3_handler emulates NOP5 and NOP2 as jumps over them and an int3 being written not at all", () => {
  const { mem, patcher } = textFixture();
  const regs = new PtRegs(mem, BASE + 0x100n, 64);
  regs.cs = 0x10n;
  const ctx = { regs, cpu: 0, pushMode: "direct" as const };
  const gen = patcher.textPokeBpBatch([
    { address: BASE + 6n, bytes: NOP5_64 },
    { address: BASE + 14n, bytes: NOP2.slice() },
    { address: BASE + 16n, bytes: Uint8Array.of(0xcc) },
  ]);
  firstStore(patcher, gen);
  regs.ip = BASE + 7n;
  assert.equal(patcher.pokeInt3Handler(ctx), true);
  assert.equal(regs.ip, BASE + 11n);
  regs.ip = BASE + 15n;
  assert.equal(patcher.pokeInt3Handler(ctx), true);
  assert.equal(regs.ip, BASE + 16n);
  regs.ip = BASE + 17n;
  assert.equal(patcher.pokeInt3Handler(ctx), false);
  patcher.run(gen);
});

Deno.test("poke_int3_handler emulates a Jcc32 being written with the interrupted flags", () => {
  const { mem, patcher } = textFixture();
  const regs = new PtRegs(mem, BASE + 0x100n, 64);
  regs.cs = 0x10n;
  const ctx = { regs, cpu: 0, pushMode: "direct" as const };
  const jne = Uint8Array.of(0x0f, 0x85, 0x20, 0x00, 0x00, 0x00);
  const gen = patcher.textPokeBp(BASE + 17n, jne);
  firstStore(patcher, gen);
  regs.flags = 0x2n; // ZF clear: jne taken
  regs.ip = BASE + 18n;
  assert.equal(patcher.pokeInt3Handler(ctx), true);
  assert.equal(regs.ip, BASE + 23n + 0x20n);
  regs.flags = 0x42n;
  regs.ip = BASE + 18n;
  patcher.pokeInt3Handler(ctx);
  assert.equal(regs.ip, BASE + 23n);
  patcher.run(gen);
});

function assertRefused(fn: () => void, pattern: RegExp, bytes: Uint8Array, before: Uint8Array) {
  assert.throws(fn, (e: unknown) => e instanceof PatchError && pattern.test(e.message));
  assert.deepEqual([...bytes], [...before], "text changed");
}

Deno.test("textPokeBp() refuses a length other than 1, 2, 5 (6 for Jcc) and leaves the text unchanged", () => {
  const { bytes, patcher } = textFixture();
  const before = bytes.slice();
  const drive = (b: Uint8Array) => () => patcher.run(patcher.textPokeBp(BASE + 6n, b));
  assertRefused(
    drive(Uint8Array.of(0x90, 0x90, 0x90)),
    /Cannot patch 3 bytes .* at 0x10006/,
    bytes,
    before,
  );
  assertRefused(
    drive(new Uint8Array(6).fill(0x90)),
    /1, 2 or 5 bytes \(6 for a jcc/,
    bytes,
    before,
  );
  assertRefused(drive(new Uint8Array(7).fill(0x90)), /Cannot patch 7 bytes/, bytes, before);
});

Deno.test("textPokeBp() refuses an address not on an instruction boundary", () => {
  const { bytes, patcher } = textFixture();
  const before = bytes.slice();
  assertRefused(
    () => patcher.run(patcher.textPokeBp(BASE + 2n, Uint8Array.of(0xeb, 0x00))),
    // It names the instruction the address falls inside: its start and its bytes.
    /at 0x10002: not on an instruction boundary \(inside the instruction at 0x10000: 0f 1f 44 00 00\)/,
    bytes,
    before,
  );
  // Two bytes at the start of a 5-byte NOP end inside it.
  assertRefused(
    () => patcher.run(patcher.textPokeBp(BASE, Uint8Array.of(0xeb, 0x03))),
    /0x10002 is not on an instruction boundary \(inside the instruction at 0x10000: 0f 1f 44 00 00\)/,
    bytes,
    before,
  );
  // Inside the last byte of a call: the walk back finds the call's start.
  assertRefused(
    () => patcher.run(patcher.textPokeBp(BASE + 10n, Uint8Array.of(0xcc))),
    /at 0x1000a: .*inside the instruction at 0x10006: e8 f6 ff ff ff\)/,
    bytes,
    before,
  );
});

Deno.test("textPokeBp() refuses when the old bytes are not what the caller expects", () => {
  const { bytes, patcher } = textFixture();
  const before = bytes.slice();
  assertRefused(
    () => patcher.run(patcher.textPokeBp(BASE + 6n, NOP5_64, { old: NOP5_64 })),
    /Old bytes mismatch at 0x10006: expected 0f 1f 44 00 00, found e8 f6 ff ff ff/,
    bytes,
    before,
  );
});

Deno.test("textPokeBpBatch() refuses an unsorted or overlapping batch and writes nothing", () => {
  const { bytes, patcher } = textFixture();
  const before = bytes.slice();
  assertRefused(
    () =>
      patcher.run(patcher.textPokeBpBatch([
        { address: BASE + 6n, bytes: NOP5_64 },
        { address: BASE, bytes: CALL_F1 },
      ])),
    /not sorted: site 1 at 0x10000 follows 0x10006/,
    bytes,
    before,
  );
  assertRefused(
    () =>
      patcher.run(patcher.textPokeBpBatch([
        { address: BASE + 12n, bytes: Uint8Array.of(0x66, 0x90) },
        { address: BASE + 12n, bytes: Uint8Array.of(0xeb, 0x00) },
      ])),
    /not sorted/,
    bytes,
    before,
  );
  // A valid first site does not get its int3 when the second one is bad.
  assertRefused(
    () =>
      patcher.run(patcher.textPokeBpBatch([
        { address: BASE, bytes: CALL_F1 },
        { address: BASE + 6n, bytes: NOP5_64, old: NOP5_64 },
      ])),
    /Old bytes mismatch/,
    bytes,
    before,
  );
});

Deno.test("textPokeBp() refuses an instruction it could not emulate and text outside the kernel", () => {
  const { bytes, patcher } = textFixture();
  const before = bytes.slice();
  assertRefused(
    () => patcher.run(patcher.textPokeBp(BASE + 12n, Uint8Array.of(0x31, 0xc0))),
    /31 c0 is not an instruction text_poke_bp can emulate/,
    bytes,
    before,
  );
  assertRefused(
    () => patcher.run(patcher.textPokeBp(BASE + 0x1000n, Uint8Array.of(0xcc))),
    /not inside kernel text/,
    bytes,
    before,
  );
});

Deno.test("textPoke() verifies the bytes read back through the text mapping", () => {
  const { mem } = flatMemory(0x100, BASE);
  const map = new CodeMap(64);
  map.add("t", BASE, new Uint8Array(16).fill(0x90));
  const broken = new TextPatcher({
    bitness: 64,
    mem,
    code: map,
    textBase: BASE,
    writeText: () => {}, // an alias that does not reach the text
  });
  assert.throws(
    () => broken.textPoke(BASE + 4n, Uint8Array.of(0xcc)),
    /text_poke at 0x10004 wrote cc but reads back 00/,
  );
});

Deno.test("CodeMap.isBoundary() follows the decoder through a region and its end", () => {
  const map = new CodeMap(64);
  map.add("a", 0x1000n, Uint8Array.of(0xe8, 0, 0, 0, 0, 0xc3));
  assert.equal(map.isBoundary(0x1000n), true);
  assert.equal(map.isBoundary(0x1003n), false);
  assert.equal(map.isBoundary(0x1005n), true);
  assert.equal(map.isBoundary(0x1006n), true);
  assert.equal(map.isBoundary(0x1007n), false);
  assert.equal(map.regionOf(0x0fffn), undefined);
});

Deno.test("textGenInsn() encodes call, jmp32 and jmp8 and refuses a displacement that does not fit", () => {
  assert.deepEqual([...textGenInsn(0xe8, 0x1000n, 0x1010n)], [0xe8, 0x0b, 0, 0, 0]);
  assert.deepEqual([...textGenInsn(0xe9, 0x1000n, 0x0f00n)], [0xe9, 0xfb, 0xfe, 0xff, 0xff]);
  assert.deepEqual([...textGenInsn(0xeb, 0x1000n, 0x1002n)], [0xeb, 0x00]);
  assert.deepEqual([...textGenInsn(0xeb, 0x1000n, 0x0f82n)], [0xeb, 0x80]);
  assert.throws(() => textGenInsn(0xeb, 0x1000n, 0x1082n), /jmp8 \(displacement 128\)/);
  assert.throws(() => textGenInsn(0xe8, 0x1000n, 0x100001000n), /with a rel32/);
  assert.throws(() => textGenInsn(0x90, 0x1000n, 0x1000n), /cannot encode opcode 0x90/);
});
