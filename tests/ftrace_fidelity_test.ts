// Fidelity of the ftrace model to v5.1: ftrace_regs_caller keeps the caller's flags
// (arch/x86/kernel/ftrace_64.S, ftrace_32.S), an empty filter traces every function
// (kernel/trace/ftrace.c: an empty filter_hash matches all), and livepatch registers its
// ops with its functions in the filter (kernel/livepatch/patch.c, klp_patch_func).
import assert from "node:assert/strict";
import { PatchError } from "../lib/errors.ts";
import { immediateRunner } from "../lib/ftrace/batch.ts";
import { Ftrace } from "../lib/ftrace/ftrace.ts";
import { FTRACE_OPS_FL_IPMODIFY, FTRACE_OPS_FL_SAVE_REGS, FtraceOps } from "../lib/ftrace/ops.ts";
import { nop5 } from "../lib/kernel/constants.ts";
import { bootKernel, type Kernel } from "../lib/kernel/kernel.ts";
import { Livepatch } from "../lib/livepatch/livepatch.ts";
import { Machine } from "../lib/machine/machine.ts";

const CF = 0x1n, PF = 0x4n, ZF = 0x40n, SF = 0x80n, IF = 0x200n, DF = 0x400n, OF = 0x800n;
/** Flags a caller sets before the traced call: carry, zero, direction and more. */
const FLAG_SETS = [
  0x2n | CF | PF | ZF | DF | IF,
  0x2n | IF,
  0x2n | SF | OF | IF,
] as const;

interface Rig {
  k: Kernel;
  ft: Ftrace;
  fns: bigint[];
  bodyRuns: number[];
  /** Address of the instruction after `call fn_<i>` in the flags caller (the parent ip). */
  retAddr: bigint;
  run: ReturnType<typeof immediateRunner>;
  drive: (g: Generator<unknown, void, unknown>) => void;
  /** Calls fn_<i> from a caller that first loads `flags`; returns the flags after it. */
  callWithFlags: (i: number, flags: bigint) => bigint;
}

function rig(bitness: 32 | 64, nfns = 1): Rig {
  const k = bootKernel(new Machine({ bitness }), { entry: bitness === 64 ? "64-gap" : "32-seed" });
  const ft = new Ftrace(k);
  const bodyRuns = new Array<number>(nfns).fill(0);
  for (let i = 0; i < nfns; i++) k.bindNative(`fid_body_${i}`, () => void bodyRuns[i]!++);
  const fns = ft.loadTracedFunctions(
    Array.from({ length: nfns }, (_, i) => ({
      name: `fid_fn_${i}`,
      lineOffset: 8 * i,
      body: `fid_body_${i}`,
    })),
  );
  // flags_call(fn, flags): load flags, call fn, return the flags it came back with.
  const src = bitness === 64
    ? `
flags_call:
	movq	%rdi, %r11
	pushq	%rsi
	popfq
	call	*%r11
flags_call_ret:
	pushfq
	popq	%rax
	ret
`
    : `
flags_call:
	movl	%eax, %ecx
	pushl	%edx
	popfl
	call	*%ecx
flags_call_ret:
	pushfl
	popl	%eax
	ret
`;
  const labels = k.loadText(src, { name: "flags caller" });
  ft.init();
  const run = immediateRunner((a, b) => k.textPoke(a, b), (a, n) => k.mem.readBytes(a, n));
  const drive = (g: Generator<unknown, void, unknown>) => {
    for (const _ of g);
  };
  const callWithFlags = (i: number, flags: bigint) => {
    const r = k.call(0, labels.get("flags_call")!, [fns[i]!, flags]);
    assert.ok(r.returned, r.stop.message);
    return r.value;
  };
  return {
    k,
    ft,
    fns,
    bodyRuns,
    retAddr: labels.get("flags_call_ret")!,
    run,
    drive,
    callWithFlags,
  };
}

for (const bitness of [64, 32] as const) {
  const arch = `x86-${bitness}`;

  // Per-ops trampolines exist only on x86-64.
  for (const tramp of bitness === 64 ? [true, false] : [false]) {
    const via = tramp ? "the ops' own regs trampoline" : "ftrace_regs_caller";
    Deno.test(`ftraceCallerSource() regs: the handler sees the caller's flags in regs->flags and the caller gets them back, through ${via} (${arch})`, () => {
      const r = rig(bitness);
      const seen: { flags: bigint; ip: bigint; sp: bigint; parent: bigint; spWord: bigint }[] = [];
      const ops = new FtraceOps("fid_regs", (_ip, parent, _ops, regs) => {
        assert.ok(regs !== null);
        seen.push({
          flags: regs.flags,
          ip: regs.ip,
          sp: regs.sp,
          parent,
          spWord: r.k.mem.readWord(regs.sp, bitness === 64 ? 8 : 4),
        });
      }, { flags: FTRACE_OPS_FL_SAVE_REGS, filter: [r.fns[0]!], trampoline: tramp });
      r.drive(r.ft.registerFtraceFunction(ops, r.run));
      const site = r.ft.desiredTarget(r.fns[0]!);
      assert.equal(site, tramp ? ops.trampoline!.address : r.ft.regsCaller.address);
      for (const flags of FLAG_SETS) {
        seen.length = 0;
        const after = r.callWithFlags(0, flags);
        assert.equal(seen.length, 1, "the handler ran once");
        const s = seen[0]!;
        assert.equal(
          s.flags.toString(16),
          flags.toString(16),
          "regs->flags holds the flags the caller set",
        );
        assert.equal(after.toString(16), flags.toString(16), "the caller gets its flags back");
        // The frame moved (x86-64 keeps the flags in a word of its own): ip, sp and the
        // parent ip must still be where the kernel puts them.
        assert.equal(s.ip, r.fns[0]! + 5n, "regs->ip is the return address into the function");
        assert.equal(s.parent, r.retAddr, "parent_ip is the traced function's return address");
        assert.equal(
          s.spWord,
          r.retAddr,
          "regs->sp points at the traced function's return address",
        );
      }
      assert.equal(r.bodyRuns[0], FLAG_SETS.length);
    });
  }

  Deno.test(`ftraceCallerSource() regs: flags a handler writes to regs->flags are the flags the traced function returns with (${arch})`, () => {
    const r = rig(bitness);
    const ops = new FtraceOps("fid_flip", (_ip, _p, _o, regs) => {
      regs!.flags = regs!.flags ^ (CF | ZF);
    }, { flags: FTRACE_OPS_FL_SAVE_REGS, filter: [r.fns[0]!], trampoline: false });
    r.drive(r.ft.registerFtraceFunction(ops, r.run));
    const flags = FLAG_SETS[0];
    assert.equal(r.callWithFlags(0, flags).toString(16), (flags ^ (CF | ZF)).toString(16));
  });

  Deno.test(`Livepatch redirects a function and keeps the caller's flags across it (${arch})`, () => {
    const r = rig(bitness);
    const lp = new Livepatch(r.ft);
    const [f] = lp.loadFunctions([{ name: "fid_lp" }]);
    r.drive(lp.enable(r.run));
    for (const flags of FLAG_SETS) {
      const r2 = r.k.call(0, "flags_call", [f!.old, flags]);
      assert.ok(r2.returned, r2.stop.message);
      assert.equal(r2.value.toString(16), flags.toString(16));
    }
    assert.deepEqual([f!.oldRuns, f!.newRuns], [0, FLAG_SETS.length]);
  });

  Deno.test(`FtraceOps with an empty filter traces every function, as an empty filter_hash does (${arch})`, () => {
    const r = rig(bitness, 3);
    let hits = 0;
    const ops = new FtraceOps("fid_all", () => void hits++, { filter: [] });
    assert.equal(ops.filter, null);
    assert.ok(r.fns.every((f) => ops.matches(f)));
    r.drive(r.ft.registerFtraceFunction(ops, r.run));
    // Alone on each function: its own trampoline on x86-64, ftrace_caller on x86-32.
    const want = bitness === 64 ? ops.trampoline!.address : r.ft.caller.address;
    for (const f of r.fns) assert.equal(r.ft.desiredTarget(f), want);
    for (let i = 0; i < r.fns.length; i++) r.callWithFlags(i, 0x202n);
    assert.equal(hits, 3, "every traced function reached the callback");
  });

  Deno.test(`Ftrace.setFilter() with an empty filter moves the ops onto every function (${arch})`, () => {
    const r = rig(bitness, 3);
    let hits = 0;
    const ops = new FtraceOps("fid_widen", () => void hits++, { filter: [r.fns[1]!] });
    r.drive(r.ft.registerFtraceFunction(ops, r.run));
    assert.deepEqual(r.k.mem.readBytes(r.fns[0]!, 5), nop5(bitness));
    r.drive(r.ft.setFilter(ops, [], r.run));
    assert.ok(r.fns.every((f) => ops.matches(f)));
    for (let i = 0; i < r.fns.length; i++) r.callWithFlags(i, 0x202n);
    assert.equal(hits, 3);
  });

  Deno.test(`Livepatch.enable() registers its ops with only its functions in the filter (${arch})`, () => {
    const r = rig(bitness, 1);
    const lp = new Livepatch(r.ft);
    const [f] = lp.loadFunctions([{ name: "fid_patched" }]);
    r.drive(lp.enable(r.run));
    assert.deepEqual([...lp.opsOf(f!).filter ?? []], [f!.old]);
    // The unrelated traced function keeps its NOP and runs its own body.
    assert.deepEqual(r.k.mem.readBytes(r.fns[0]!, 5), nop5(bitness));
    r.callWithFlags(0, 0x202n);
    assert.equal(r.bodyRuns[0], 1);
    assert.equal(lp.opsOf(f!).hits, 0);
  });

  Deno.test(`Livepatch.enable() refuses a patch without functions instead of tracing every function (${arch})`, () => {
    const r = rig(bitness, 2);
    const lp = new Livepatch(r.ft);
    const before = r.fns.map((f) => r.k.mem.readBytes(f, 5));
    assert.throws(
      () => r.drive(lp.enable(r.run)),
      (e: unknown) => e instanceof PatchError && /no functions/.test(e.message),
    );
    assert.ok(!lp.enabled);
    assert.equal(r.ft.ops.length, 0);
    r.fns.forEach((f, i) => assert.deepEqual(r.k.mem.readBytes(f, 5), before[i]));
  });
}

Deno.test("FtraceOps.matches() treats a filter emptied after construction as every function", () => {
  const ops = new FtraceOps("fid_m", () => {}, {
    filter: [0x1000n],
    flags: FTRACE_OPS_FL_SAVE_REGS | FTRACE_OPS_FL_IPMODIFY,
  });
  assert.ok(ops.matches(0x1000n) && !ops.matches(0x2000n));
  ops.filter = new Set();
  assert.ok(ops.matches(0x2000n));
});
