import assert from "node:assert/strict";
import { hexAddr, PatchError } from "../lib/errors.ts";
import {
  callInsn,
  immediateRunner,
  jmpInsn,
  type PatchSite,
  rel32Target,
  textPokeBpRunner,
} from "../lib/ftrace/batch.ts";
import { Ftrace } from "../lib/ftrace/ftrace.ts";
import { FTRACE_OPS_FL_IPMODIFY, FTRACE_OPS_FL_SAVE_REGS, FtraceOps } from "../lib/ftrace/ops.ts";
import { rel32Straddles } from "../lib/ftrace/trampolines.ts";
import { nop5 } from "../lib/kernel/constants.ts";
import { bootKernel, type Kernel } from "../lib/kernel/kernel.ts";
import { Machine } from "../lib/machine/machine.ts";

interface Setup {
  k: Kernel;
  ft: Ftrace;
  fns: bigint[];
  /** First argument each body saw, per function. */
  seen: bigint[][];
  drive: (g: Generator<unknown, void, unknown>) => void;
  call: (i: number) => bigint;
}

function setup(bitness: 32 | 64, offsets = [60, 0, 62]): Setup {
  const k = bootKernel(new Machine({ bitness }), { entry: bitness === 64 ? "64-gap" : "32-seed" });
  const ft = new Ftrace(k);
  const seen: bigint[][] = offsets.map(() => []);
  offsets.forEach((_, i) => k.bindNative(`body_${i}`, (c) => void seen[i]!.push(c.arg(0))));
  const fns = ft.loadTracedFunctions(
    offsets.map((o, i) => ({ name: `fn_${i}`, lineOffset: o, body: `body_${i}` })),
  );
  ft.init();
  const drive = (g: Generator<unknown, void, unknown>) => {
    for (const _ of g);
  };
  const call = (i: number) => {
    const r = k.call(0, fns[i]!, [0x1000n + BigInt(i)]);
    assert.ok(r.returned, r.stop.message);
    return r.value;
  };
  return { k, ft, fns, seen, drive, call };
}

for (const bitness of [64, 32] as const) {
  const arch = `x86-${bitness}`;

  Deno.test(`Ftrace.init() turns every call __fentry__ into the NOP5 (${arch})`, () => {
    const { k, fns } = setup(bitness);
    for (const f of fns) assert.deepEqual(k.mem.readBytes(f, 5), nop5(bitness));
    assert.ok(rel32Straddles(fns[0]!) && rel32Straddles(fns[2]!) && !rel32Straddles(fns[1]!));
  });

  Deno.test(`Ftrace.init() refuses a site that is not call __fentry__ and changes nothing (${arch})`, () => {
    const k = bootKernel(new Machine({ bitness }), {
      entry: bitness === 64 ? "64-gap" : "32-seed",
    });
    const ft = new Ftrace(k);
    k.bindNative("b", () => {});
    const [good] = ft.loadTracedFunctions([{ name: "good", lineOffset: 0, body: "b" }]);
    const bad = k.loadText("bad:\n\tnop\n\tnop\n\tnop\n\tnop\n\tnop\n\tret\n").get("bad")!;
    ft.addSite(bad);
    const before = k.mem.readBytes(good!, 5);
    assert.throws(
      () => ft.init(),
      (e: unknown) => e instanceof PatchError && /not call __fentry__/.test(e.message),
    );
    assert.deepEqual(k.mem.readBytes(bad, 5), Uint8Array.of(0x90, 0x90, 0x90, 0x90, 0x90));
    assert.deepEqual(k.mem.readBytes(good!, 5), before);
    assert.equal(before[0], 0xe8);
  });

  Deno.test(`FtraceOps filter on one function yields exactly one hit (${arch})`, () => {
    const s = setup(bitness);
    let hits = 0;
    const ops = new FtraceOps("one", (ip) => {
      assert.equal(ip, s.fns[1]);
      hits++;
    }, { filter: [s.fns[1]!] });
    s.drive(s.ft.registerFtraceFunction(ops, textPokeBpRunner(s.k)));
    for (let i = 0; i < 3; i++) s.call(i);
    assert.equal(hits, 1);
    assert.deepEqual(s.seen.map((x) => x.length), [1, 1, 1]);
  });

  Deno.test(`Ftrace keeps exact counters for several ops, a changed filter and a removal (${arch})`, () => {
    const s = setup(bitness);
    const run = textPokeBpRunner(s.k);
    const a = new FtraceOps("a", () => {});
    const b = new FtraceOps("b", () => {}, { filter: [s.fns[0]!] });
    s.drive(s.ft.registerFtraceFunction(a, run));
    s.drive(s.ft.registerFtraceFunction(b, run));
    for (let i = 0; i < 3; i++) s.call(i);
    assert.deepEqual([a.hits, b.hits], [3, 1]);
    s.drive(s.ft.setFilter(b, [s.fns[1]!, s.fns[2]!], run));
    for (let i = 0; i < 3; i++) s.call(i);
    assert.deepEqual([a.hits, b.hits], [6, 3]);
    s.drive(s.ft.unregisterFtraceFunction(a, run));
    for (let i = 0; i < 3; i++) s.call(i);
    assert.deepEqual([a.hits, b.hits], [6, 5]);
    s.drive(s.ft.unregisterFtraceFunction(b, run));
    for (let i = 0; i < 3; i++) s.call(i);
    assert.deepEqual([a.hits, b.hits], [6, 5]);
    for (const f of s.fns) assert.deepEqual(s.k.mem.readBytes(f, 5), nop5(bitness));
  });

  Deno.test(`Ftrace gives a lone ops its own trampoline and two ops the list caller (${arch})`, () => {
    const s = setup(bitness);
    const run = textPokeBpRunner(s.k);
    const a = new FtraceOps("a", () => {});
    const b = new FtraceOps("b", () => {}, { flags: FTRACE_OPS_FL_SAVE_REGS });
    const c = new FtraceOps("c", () => {}, { trampoline: false });
    const target = (f: bigint) => rel32Target(f, s.k.mem.readBytes(f, 5), bitness);
    s.drive(s.ft.registerFtraceFunction(a, run));
    if (bitness === 64) {
      assert.ok(a.trampoline !== null);
      assert.equal(target(s.fns[0]!), a.trampoline!.address);
      assert.equal(s.ft.callTarget(a.trampoline!.callSite), a.callback);
    } else {
      // Only x86-64 has per-ops trampolines: a lone ops is reached through ftrace_caller.
      assert.equal(a.trampoline, null);
      assert.equal(target(s.fns[0]!), s.ft.caller.address);
    }
    s.drive(s.ft.registerFtraceFunction(c, run));
    assert.equal(target(s.fns[0]!), s.ft.caller.address);
    s.drive(s.ft.registerFtraceFunction(b, run));
    assert.equal(target(s.fns[0]!), s.ft.regsCaller.address);
    s.call(0);
    assert.deepEqual([a.hits, b.hits, c.hits], [1, 1, 1]);
  });

  Deno.test(`Ftrace moves every affected site in one text_poke_bp batch (${arch})`, () => {
    const s = setup(bitness, [60, 61, 62, 63, 8]);
    const run = textPokeBpRunner(s.k);
    const stats = s.k.patcher.stats;
    const a = new FtraceOps("a", () => {});
    s.drive(s.ft.registerFtraceFunction(a, run));
    // The callers' calls to the list function (one batch per caller, as
    // ftrace_update_ftrace_func does), the five sites in one batch, the callers' calls to a.
    assert.deepEqual([stats.batches, stats.sites], [5, 9]);
    const b = new FtraceOps("b", () => {});
    s.drive(s.ft.registerFtraceFunction(b, run));
    // The callers' calls to the list function, then the five sites (x86-64: from a's
    // trampoline to ftrace_caller; x86-32, without per-ops trampolines, they already call
    // ftrace_caller and stay); nothing more.
    assert.deepEqual(
      [stats.batches, stats.sites],
      bitness === 64 ? [8, 16] : [7, 11],
    );
  });

  Deno.test(`ftraceUpdateFtraceFunc() rewrites the call inside both caller trampolines (${arch})`, () => {
    const s = setup(bitness);
    const run = textPokeBpRunner(s.k);
    const ft = s.ft;
    assert.equal(ft.callTarget(ft.caller.callSite), ft.stub);
    assert.equal(ft.callTarget(ft.regsCaller.callSite), ft.stub);
    const a = new FtraceOps("a", () => {});
    s.drive(ft.registerFtraceFunction(a, run));
    // One ops: the callers call its callback directly (update_ftrace_function).
    assert.equal(ft.callTarget(ft.caller.callSite), a.callback);
    assert.equal(ft.callTarget(ft.regsCaller.callSite), a.callback);
    assert.equal(ft.updateFuncCall, a.callback);
    const b = new FtraceOps("b", () => {});
    s.drive(ft.registerFtraceFunction(b, run));
    assert.equal(ft.callTarget(ft.regsCaller.callSite), ft.listFunc);
    s.drive(ft.unregisterFtraceFunction(b, run));
    assert.equal(ft.callTarget(ft.regsCaller.callSite), a.callback);
    s.drive(ft.unregisterFtraceFunction(a, run));
    assert.equal(ft.callTarget(ft.regsCaller.callSite), ft.stub);
    assert.deepEqual(
      s.k.mem.readBytes(ft.caller.callSite, 5),
      callInsn(ft.caller.callSite, ft.stub),
    );
  });

  Deno.test(`Ftrace orders its batches as ftrace_modify_all_code and saves ftrace_update_func_call first (${arch})`, () => {
    const s = setup(bitness);
    const ft = s.ft;
    const inner = textPokeBpRunner(s.k);
    const log: string[] = [];
    const name = (t: bigint | null) =>
      t === null
        ? "nop"
        : t === ft.listFunc
        ? "list"
        : t === ft.stub
        ? "stub"
        : t === ft.regsCaller.address
        ? "regs_caller"
        : t === a.callback
        ? "a"
        : t === a.trampoline?.address
        ? "tramp_a"
        : t === ft.caller.address
        ? "caller"
        : hexAddr(t);
    const run = function* (sites: readonly PatchSite[]) {
      const s0 = sites[0]!;
      const to = name(rel32Target(s0.address, s0.new, bitness));
      if (s0.role === "caller-call") {
        // ftrace_update_func_call names the call being written before the batch starts;
        // each caller's call is a batch of its own.
        assert.equal(ft.updateFuncCall, rel32Target(s0.address, s0.new, bitness));
        assert.equal(sites.length, 1);
        const which = s0.address === ft.caller.callSite
          ? "call"
          : s0.address === ft.regsCaller.callSite
          ? "regs_call"
          : hexAddr(s0.address);
        log.push(`${which}:${name(ft.callTarget(s0.address))}->${to}`);
      } else {
        log.push(`sites:${sites.length}->${to}`);
      }
      yield* inner(sites);
    };
    const a = new FtraceOps("a", () => {});
    const b = new FtraceOps("b", () => {}, { flags: FTRACE_OPS_FL_SAVE_REGS });
    s.drive(ft.registerFtraceFunction(a, run));
    s.drive(ft.registerFtraceFunction(b, run));
    s.drive(ft.unregisterFtraceFunction(b, run));
    s.drive(ft.unregisterFtraceFunction(a, run));
    // A alone: its own trampoline on x86-64; ftrace_caller on x86-32 (no per-ops
    // trampolines there).
    const alone = bitness === 64 ? "tramp_a" : "caller";
    assert.deepEqual(log, [
      // A attaches: list function (ftrace_call, then ftrace_regs_call), sites to A's
      // trampoline, then A's callback.
      "call:stub->list",
      "regs_call:stub->list",
      `sites:3->${alone}`,
      "call:list->a",
      "regs_call:list->a",
      // B attaches: list function first, then the sites; the list function stays.
      "call:a->list",
      "regs_call:a->list",
      "sites:3->regs_caller",
      // B detaches: the list function is rewritten over itself while the sites still call
      // ftrace_regs_caller (v5.1 writes the breakpoint all the same), then A's callback.
      "call:list->list",
      "regs_call:list->list",
      `sites:3->${alone}`,
      "call:list->a",
      "regs_call:list->a",
      // A detaches.
      "call:a->list",
      "regs_call:a->list",
      "sites:3->nop",
      "call:list->stub",
      "regs_call:list->stub",
    ]);
    // As in the seed, nothing clears ftrace_update_func_call after a rewrite.
    assert.equal(ft.updateFuncCall, ft.stub);
  });

  Deno.test(`Ftrace reports which tracer function a caller's call site reached (${arch})`, () => {
    const s = setup(bitness);
    const ft = s.ft;
    const seen: [bigint, bigint][] = [];
    ft.onCallee = (_cpu, callee, ret) => void seen.push([callee, ret]);
    const run = textPokeBpRunner(s.k);
    const a = new FtraceOps("a", () => {}, { trampoline: false });
    s.drive(ft.registerFtraceFunction(a, run));
    s.call(0);
    assert.deepEqual(seen, [[a.callback, ft.caller.callSite + 5n]]);
    const b = new FtraceOps("b", () => {}, { trampoline: false });
    s.drive(ft.registerFtraceFunction(b, run));
    seen.length = 0;
    s.call(0);
    assert.deepEqual(seen, [[ft.listFunc, ft.caller.callSite + 5n]]);
    // ftrace_stub reports itself too: call the caller with its call still on the stub.
    s.drive(ft.unregisterFtraceFunction(a, run));
    s.drive(ft.unregisterFtraceFunction(b, run));
    s.k.textPoke(s.fns[1]!, callInsn(s.fns[1]!, ft.caller.address, bitness));
    seen.length = 0;
    s.call(1);
    assert.deepEqual(seen, [[ft.stub, ft.caller.callSite + 5n]]);
    assert.deepEqual(s.seen[1], [0x1001n]);
  });

  Deno.test(`ftrace_regs_caller hands the callback a full pt_regs of the traced function (${arch})`, () => {
    const s = setup(bitness);
    const got: Record<string, bigint> = {};
    const ops = new FtraceOps("regs", (ip, _p, _o, regs) => {
      assert.ok(regs !== null);
      got.ip = regs.ip;
      got.arg = bitness === 64 ? regs.get("di") : regs.get("ax");
      got.cs = regs.cs;
      got.fn = ip;
    }, { flags: FTRACE_OPS_FL_SAVE_REGS });
    s.drive(s.ft.registerFtraceFunction(ops, textPokeBpRunner(s.k)));
    s.call(1);
    assert.equal(got.fn, s.fns[1]);
    assert.equal(got.ip, s.fns[1]! + 5n);
    assert.equal(got.arg, 0x1001n);
    assert.equal(got.cs, bitness === 64 ? 0x10n : 0x60n);
  });

  Deno.test(`ftrace trampolines restore the registers a callback clobbers (${arch})`, () => {
    const s = setup(bitness);
    const scratch = bitness === 64
      ? ["rax", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11"]
      : ["eax", "ecx", "edx"];
    // A C callback may clobber every caller-saved register; the traced function must not see it.
    const clobber = new FtraceOps("clobber", (_ip, _p, _o, _r, cpu) => {
      for (const r of scratch) s.k.machine.cpus[cpu]!.setReg(r, 0xdeadn);
    }, { trampoline: true });
    s.drive(s.ft.registerFtraceFunction(clobber, textPokeBpRunner(s.k)));
    s.call(2);
    assert.deepEqual(s.seen[2], [0x1002n]);
    // Without a trampoline between them, the same clobber reaches the function body.
    const k = s.k;
    k.bindNative("clobber_then_body", (c) => {
      for (const r of scratch) c.cpu.setReg(r, 0xdeadn);
    });
    const naked = k.loadText("naked:\n\tcall\tclobber_then_body\n\tcall\tbody_2\n\tret\n").get(
      "naked",
    )!;
    k.call(0, naked, [0x2002n]);
    assert.equal(s.seen[2]![1], 0xdeadn);
  });

  Deno.test(`ftrace_regs_caller returns through regs->ip for an IPMODIFY ops (${arch})`, () => {
    const s = setup(bitness);
    const alt = s.k.loadText("alt:\n\tcall\tbody_0\n\tret\n").get("alt")!;
    const ops = new FtraceOps("redirect", (_ip, _p, _o, regs) => {
      regs!.ip = alt;
    }, { flags: FTRACE_OPS_FL_SAVE_REGS | FTRACE_OPS_FL_IPMODIFY, filter: [s.fns[2]!] });
    s.drive(s.ft.registerFtraceFunction(ops, textPokeBpRunner(s.k)));
    s.call(2);
    assert.deepEqual(s.seen[2], []);
    assert.deepEqual(s.seen[0], [0x1002n]);
  });
}

Deno.test("ftrace_ops_list_func does not call a SAVE_REGS ops from ftrace_caller", () => {
  const s = setup(64);
  const run = textPokeBpRunner(s.k);
  const plain = new FtraceOps("plain", () => {}, { trampoline: false });
  const wants = new FtraceOps("wants", () => {}, {
    flags: FTRACE_OPS_FL_SAVE_REGS,
    filter: [s.fns[0]!],
  });
  s.drive(s.ft.registerFtraceFunction(plain, run));
  s.drive(s.ft.registerFtraceFunction(wants, run));
  s.call(0);
  s.call(1);
  assert.deepEqual([plain.hits, wants.hits], [2, 1]);
  assert.throws(() => s.drive(s.ft.registerFtraceFunction(plain, run)), /already registered/);
});

Deno.test("callInsn() and jmpInsn() reach every 32-bit target in 32-bit mode, where eip wraps", () => {
  // From near the top of the address space to near the bottom: 2^32 - 0x1000 bytes away,
  // out of rel32 range as a 64-bit distance, one small forward rel32 once eip wraps.
  const from = 0xfffff000n;
  const to = 0x1000n;
  assert.deepEqual([...callInsn(from, to, 32)], [0xe8, 0xfb, 0x1f, 0x00, 0x00]);
  assert.deepEqual([...jmpInsn(from, to, 32)], [0xe9, 0xfb, 0x1f, 0x00, 0x00]);
  assert.equal(rel32Target(from, callInsn(from, to, 32), 32), to);
  // And backwards over the top: 0x1000 -> 0xfffff000.
  assert.equal(rel32Target(to, jmpInsn(to, from, 32), 32), from);
  // The same pair in 64-bit mode is out of range, and says so (the default is 64).
  for (const enc of [() => callInsn(from, to, 64), () => callInsn(from, to)]) {
    assert.throws(
      enc,
      (e: unknown) =>
        e instanceof PatchError && e.address === from &&
        e.message.includes(`Target ${hexAddr(to)} is out of rel32 range`) &&
        e.message.includes(hexAddr(from)),
    );
  }
  // A 64-bit address cannot be named in 32-bit mode at all.
  assert.throws(
    () => callInsn(0xffffffff81000000n, to, 32),
    (e: unknown) =>
      e instanceof PatchError && e.message.includes("0xffffffff81000000") &&
      e.message.includes("not a 32-bit address"),
  );
  assert.throws(
    () => jmpInsn(from, 0x100000000n, 32),
    (e: unknown) =>
      e instanceof PatchError && /target address is not a 32-bit address/.test(e.message),
  );
});

Deno.test("callInsn() in 32-bit mode encodes a call the CPU takes across the top of the address space", () => {
  // The 32-bit CPU agrees with the encoding: the call at 0xfffff000 lands on the hlt at
  // 0x1000 and pushes 0xfffff005.
  const m = new Machine({ bitness: 32 });
  m.load(0x1000n, Uint8Array.of(0xf4), "rx"); // hlt
  const page = new Uint8Array(0x1000).fill(0xcc);
  page.set(callInsn(0xfffff000n, 0x1000n, 32));
  m.load(0xfffff000n, page, "rx");
  m.map(0x10000n, 0x1000, "rw");
  const cpu = m.cpus[0]!;
  cpu.setReg("esp", 0x11000n);
  cpu.rip = 0xfffff000n;
  const stop = m.run({ maxSteps: 10 });
  assert.equal(stop.kind, "hlt");
  assert.equal(cpu.rip, 0x1001n);
  assert.equal(cpu.getReg("esp"), 0x10ffcn);
  assert.equal(m.memory.readBytes(0x10ffcn, 4).join(), [0x05, 0xf0, 0xff, 0xff].join());
});

Deno.test("Ftrace on x86-32 patches fentry sites with the bitness-aware callInsn()", () => {
  const k = bootKernel(new Machine({ bitness: 32 }), { entry: "32-fixup" });
  const ft = new Ftrace(k);
  k.bindNative("work", () => {});
  const [f] = ft.loadTracedFunctions([{ name: "traced", lineOffset: 0, body: "work" }]);
  ft.init();
  assert.deepEqual([...k.mem.readBytes(f!, 5)], [...nop5(32)]);
  let hits = 0;
  const ops = new FtraceOps("count32", () => hits++, { filter: [f!] });
  const run = immediateRunner((a, b) => k.textPoke(a, b), (a, n) => k.mem.readBytes(a, n));
  for (const _ of ft.registerFtraceFunction(ops, run));
  // x86-32 has no per-ops trampolines: the lone ops is reached through ftrace_caller.
  assert.equal(ops.trampoline, null);
  assert.deepEqual([...k.mem.readBytes(f!, 5)], [...callInsn(f!, ft.caller.address, 32)]);
  k.call(0, "traced");
  assert.equal(hits, 1);
});
