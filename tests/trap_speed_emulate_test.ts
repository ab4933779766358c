// int3EmulateCall on the kernel's own memory takes a number path (emulate.ts,
// callByNumbers, through KernelMemory.frameView) instead of bigint reads and writes. It
// must leave memory, the returned regs and any error exactly as the bigint path does —
// which these tests run on a second kernel through a plain byte memory (wordMemory over
// the same kernel accessors, so the same permission checks) — including where the
// number path must step aside: a push target that is read-only, unmapped or
// non-canonical, a frame whose 32-bit move crosses a page, a push that lands on the frame
// itself.
import assert from "node:assert/strict";
import { bootKernel, type Kernel } from "../lib/kernel/kernel.ts";
import { int3EmulateCall, type PushMode } from "../lib/kernel/emulate.ts";
import { PtRegs, wordMemory } from "../lib/kernel/pt_regs.ts";
import type { EntryVariant } from "../lib/kernel/entry.ts";
import { Machine } from "../lib/machine/machine.ts";

interface Case {
  /** Offset of the frame from a page-aligned data area (two pages). */
  frame: number;
  ip: bigint;
  /** regs->sp, or a function of the frame's address. */
  sp: bigint | ((frame: bigint, k: Kernel) => bigint);
  func: bigint;
  /** Extra mappings, and the ranges of them to compare. */
  setup?: (k: Kernel) => void;
  watch?: [bigint, number][];
}

function kernel(entry: EntryVariant): { k: Kernel; area: bigint } {
  const bits = entry.startsWith("64") ? 64 : 32;
  const k = bootKernel(new Machine({ bitness: bits }), { entry });
  const area = k.allocData(0x3000, "area", 0x1000);
  return { k, area };
}

/** Runs int3EmulateCall on both paths; returns what the number path saw and did. */
function compare(entry: EntryVariant, mode: PushMode, c: Case): { viewed: number } {
  const fast = kernel(entry);
  const slow = kernel(entry);
  const bits = entry.startsWith("64") ? 64 : 32;
  const ws = bits === 64 ? 8 : 4;
  let viewed = 0;
  const fm = fast.k.mem as unknown as { frameView: (...a: unknown[]) => unknown };
  const frameView = fm.frameView.bind(fm);
  fm.frameView = (...a: unknown[]) => {
    viewed++;
    return frameView(...a);
  };
  const results: { value: bigint | Error; bytes: Uint8Array }[] = [];
  for (
    const [{ k, area }, mem] of [
      [fast, fast.k.mem],
      [
        slow,
        wordMemory({
          readBytes: (a, n) => slow.k.mem.readBytes(a, n),
          writeBytes: (a, b) => slow.k.mem.writeBytes(a, b),
        }),
      ],
    ] as const
  ) {
    c.setup?.(k);
    const address = area + BigInt(c.frame);
    for (let i = 0n; i < 0x3000n; i += 8n) k.mem.writeWord(area + i, 8, 0x0101010101010101n * i);
    const regs = new PtRegs(mem, address, bits);
    regs.ip = c.ip;
    regs.sp = typeof c.sp === "bigint" ? c.sp : c.sp(address, k);
    let value: bigint | Error;
    try {
      const out = int3EmulateCall(regs, c.func, mode);
      value = out.address - address;
      assert.equal(out.mem, mem);
    } catch (e) {
      value = e as Error;
    }
    const bytes = [...k.mem.readBytes(area, 0x3000)];
    for (const [at, n] of c.watch ?? []) bytes.push(...k.mem.readBytes(at, n));
    results.push({ value, bytes: new Uint8Array(bytes) });
  }
  const [a, b] = results as [(typeof results)[0], (typeof results)[0]];
  if (a.value instanceof Error || b.value instanceof Error) {
    assert.ok(a.value instanceof Error && b.value instanceof Error, `${a.value} / ${b.value}`);
    assert.equal(a.value.constructor, b.value.constructor);
    assert.equal(a.value.message, b.value.message);
  } else assert.equal(a.value, b.value, "returned regs");
  assert.deepEqual(a.bytes, b.bytes, `memory after a ${ws}-byte push`);
  return { viewed };
}

const FUNC64 = 0xffffffff81004000n;
const FUNC32 = 0xc1004000n;

Deno.test("int3EmulateCall() on kernel memory pushes and jumps as the bigint path does (x86-64)", () => {
  const r = compare("64-gap", "direct", {
    frame: 0x1100,
    ip: 0xffffffff81000001n,
    sp: (f) => f + 0x200n,
    func: FUNC64,
  });
  assert.ok(r.viewed >= 3, "the number path ran");
  // ip + 4 and sp - 8 carrying and borrowing across 32 bits (and ip past 2^64).
  const r2 = compare("64-gap", "direct", {
    frame: 0x1100,
    ip: 0xfffffffffffffffen,
    sp: 0xffff888000000000n,
    func: -1n,
    setup: (k) => {
      k.machine.map(0xffff887ffffff000n, 0x1000, "rw", { user: false });
      // Where a push that forgot the borrow would land.
      k.machine.map(0xffff8880fffff000n, 0x1000, "rw", { user: false });
    },
    watch: [[0xffff887ffffff000n, 0x1000], [0xffff8880fffff000n, 0x1000]],
  });
  assert.ok(r2.viewed >= 3, "the number path ran");
});

Deno.test("int3EmulateCall() on kernel memory lets a push that lands on the frame itself clobber it as the bigint path does", () => {
  // No gap: regs->sp points just above regs->ip, so the push overwrites the saved ip.
  const r = compare("64-nogap", "direct", {
    frame: 0x1100,
    ip: 0xffffffff81000001n,
    sp: (f) => f + 136n,
    func: FUNC64,
  });
  assert.ok(r.viewed >= 3);
});

Deno.test("int3EmulateCall() on kernel memory fails as the bigint path does for a read-only, unmapped or non-canonical push target", () => {
  compare("64-gap", "direct", {
    frame: 0x1100,
    ip: 0xffffffff81000001n,
    sp: (_f, k) => k.layout.textBase + 0x108n, // kernel text: read-only
    func: FUNC64,
  });
  compare("64-gap", "direct", {
    frame: 0x1100,
    ip: 0xffffffff81000001n,
    sp: 0x1008n, // unmapped
    func: FUNC64,
  });
  compare("64-gap", "direct", {
    frame: 0x1100,
    ip: 0xffffffff81000001n,
    sp: 0x0000800000000008n, // sp - 8 is the first non-canonical address
    func: FUNC64,
  });
});

Deno.test("int3EmulateCall() on kernel memory pushes as the bigint path does (x86-32 FIXUP_FRAME)", () => {
  const r = compare("32-fixup", "direct", {
    frame: 0x1100,
    ip: 0xc1000001n,
    sp: (f) => f + 0x100n,
    func: FUNC32,
  });
  assert.ok(r.viewed >= 3);
  compare("32-fixup", "direct", {
    frame: 0x1100,
    ip: 0xfffffffen,
    sp: 2n,
    func: 1n << 40n,
  });
});

Deno.test("int3EmulateCall() on kernel memory moves the 32-bit frame as the bigint path does", () => {
  const r = compare("32-seed", "move", {
    frame: 0x1100,
    ip: 0xc1000001n,
    sp: 0xdeadbeefn,
    func: FUNC32,
  });
  assert.ok(r.viewed >= 1);
  // The move crosses into the previous page: the bigint path's byte copy.
  compare("32-seed", "move", { frame: 0x1002, ip: 0xc1000001n, sp: 0n, func: FUNC32 });
  // The frame's last words on the next page.
  compare("32-seed", "move", { frame: 0x1fd0, ip: 0xc1000001n, sp: 0n, func: FUNC32 });
});

Deno.test("int3EmulateCall() on kernel memory refuses the move on x86-64 as the bigint path does", () => {
  compare("64-gap", "move", { frame: 0x1100, ip: 1n, sp: 0x100n, func: FUNC64 });
});

Deno.test("a native's bigint result reaches rax/eax whole, 32-bit or wider", () => {
  for (const bits of [64, 32] as const) {
    for (const value of [0n, 0xffffffffn, 0x100000000n, -1n, 0x123456789abcdef0n]) {
      const m = new Machine({ bitness: bits });
      m.load(0x1000n, new Uint8Array([0xe8, 0xfb, 0x1f, 0x00, 0x00, 0xf4]), "rx"); // call 0x3000; hlt
      m.map(0x8000n, 0x1000, "rw");
      m.bindNative(0x3000n, () => value, "value");
      const c = m.cpus[0]!;
      c.rip = 0x1000n;
      c.setReg(bits === 64 ? "rsp" : "esp", 0x9000n);
      assert.equal(m.run({ maxSteps: 10 }).kind, "hlt");
      const want = BigInt.asUintN(bits, value);
      assert.equal(c.getReg(bits === 64 ? "rax" : "eax"), want, `${bits}-bit ${value}`);
    }
  }
});

Deno.test("the kernel memory's remembered conversions keep refusing addresses that are not canonical", () => {
  const { k, area } = kernel("64-gap");
  const mem = k.mem as unknown as { toNum(a: bigint): number };
  // Three addresses in turn: more than the two the conversion remembers.
  for (let i = 0; i < 3; i++) {
    for (const a of [area, area + 8n, area + 16n]) {
      assert.equal(mem.toNum(a), Number(BigInt.asIntN(64, a)));
      k.mem.writeWord(a, 8, a);
      assert.equal(k.mem.readWord(a, 8), a);
    }
  }
  assert.throws(() => k.mem.readWord(0x0000800000000000n, 8), /not canonical/);
  assert.throws(() => k.mem.writeWord(0x0000800000000000n, 8, 1n), /not canonical/);
});
