/**
 * Where the model must do what the kernel does (audit 5): one klp_ops per livepatched
 * function, unregistration leaving the list before the sites move, no per-ops trampolines
 * on x86-32, tail-call static_call sites patched as jumps, IPMODIFY exclusivity, the list
 * function's newest-first order, static_call_update's validation and early return, and
 * the scenarios x86-32 kernels do not have.
 */

import assert from "node:assert/strict";
import { PatchError } from "../lib/errors.ts";
import {
  callInsn,
  immediateRunner,
  jmpInsn,
  type PatchSite,
  rel32Target,
} from "../lib/ftrace/batch.ts";
import { Ftrace } from "../lib/ftrace/ftrace.ts";
import { FTRACE_OPS_FL_IPMODIFY, FTRACE_OPS_FL_SAVE_REGS, FtraceOps } from "../lib/ftrace/ops.ts";
import { nop5 } from "../lib/kernel/constants.ts";
import { bootKernel, type Kernel } from "../lib/kernel/kernel.ts";
import { Livepatch } from "../lib/livepatch/livepatch.ts";
import { Machine } from "../lib/machine/machine.ts";
import { installProposal } from "../lib/proposals/handler.ts";
import { notApplicable, runExperiment } from "../lib/experiments/experiment.ts";
import { SCT_RET, StaticCalls } from "../lib/static_call/static_call.ts";

function kernel(bitness: 32 | 64): Kernel {
  return bootKernel(new Machine({ bitness }), { entry: bitness === 64 ? "64-gap" : "32-seed" });
}

function runner(k: Kernel) {
  return immediateRunner((a, b) => k.textPoke(a, b), (a, n) => k.mem.readBytes(a, n));
}

function drive(g: Generator<unknown, void, unknown>): void {
  for (const _ of g);
}

/** A kernel with ftrace and `n` traced functions whose body is a no-op native. */
function traced(bitness: 32 | 64, n = 1) {
  const k = kernel(bitness);
  const ft = new Ftrace(k);
  k.bindNative("kf_work", () => {});
  const fns = ft.loadTracedFunctions(
    Array.from({ length: n }, (_, i) => ({ name: `kf_fn_${i}`, lineOffset: 0, body: "kf_work" })),
  );
  ft.init();
  return { k, ft, fns, run: runner(k) };
}

for (const bitness of [64, 32] as const) {
  const arch = `x86-${bitness}`;

  Deno.test(`Livepatch registers one klp_ops per function, each filtering that function alone (${arch})`, () => {
    const k = kernel(bitness);
    const ft = new Ftrace(k);
    const lp = new Livepatch(ft);
    const fs = lp.loadFunctions([{ name: "kf_a" }, { name: "kf_b" }, { name: "kf_c" }]);
    ft.init();
    const batches: PatchSite[][] = [];
    const base = runner(k);
    const run = function* (sites: readonly PatchSite[]) {
      batches.push([...sites]);
      yield* base(sites);
    };
    drive(lp.enable(run));
    assert.equal(lp.ops.length, 3);
    fs.forEach((f) => {
      const o = lp.opsOf(f);
      assert.deepEqual([...o.filter ?? []], [f.old]);
      assert.equal(o.flags, FTRACE_OPS_FL_SAVE_REGS | FTRACE_OPS_FL_IPMODIFY);
    });
    assert.deepEqual(new Set(ft.ops), new Set(lp.ops));
    // Three register_ftrace_function calls, three fentry batches of one site each.
    const fentry = batches.filter((b) => b[0]!.role === "fentry");
    assert.deepEqual(fentry.map((b) => b.map((s) => s.address)), fs.map((f) => [f.old]));
    // With several ops the callers call the list function.
    assert.equal(ft.callTarget(ft.regsCaller.callSite), ft.listFunc);
    for (const f of fs) k.call(0, f.old, [1n]);
    assert.deepEqual(fs.map((f) => [f.oldRuns, f.newRuns]), [[0, 1], [0, 1], [0, 1]]);
    // A tracer attached and detached leaves the callers' call alone (list func throughout).
    batches.length = 0;
    const tracer = new FtraceOps("kf_tracer", () => {}, { filter: fs.map((f) => f.old) });
    drive(ft.registerFtraceFunction(tracer, run));
    drive(ft.unregisterFtraceFunction(tracer, run));
    // x86-64: the sites move between the klp trampolines and ftrace_regs_caller; x86-32
    // (no per-ops trampolines) they call ftrace_regs_caller throughout and nothing moves.
    assert.equal(batches.length > 0, bitness === 64);
    assert.ok(batches.every((b) => b.every((s) => s.role === "fentry")));
    assert.equal(ft.callTarget(ft.regsCaller.callSite), ft.listFunc);
    drive(lp.disable(run));
    assert.equal(ft.ops.length, 0);
    for (const f of fs) k.call(0, f.old, [1n]);
    assert.deepEqual(fs.map((f) => [f.oldRuns, f.newRuns]), [[1, 1], [1, 1], [1, 1]]);
  });

  Deno.test(`Ftrace.unregisterFtraceFunction() takes the ops off the list before the sites move (${arch})`, () => {
    const { k, ft, fns, run: base } = traced(bitness);
    const f = fns[0]!;
    const a = new FtraceOps("kf_ua", () => {}, { filter: [f] });
    const b = new FtraceOps("kf_ub", () => {}, { filter: [f], flags: FTRACE_OPS_FL_SAVE_REGS });
    drive(ft.registerFtraceFunction(a, base));
    drive(ft.registerFtraceFunction(b, base));
    const seen: { role: string; a: number; b: number; listed: boolean }[] = [];
    const run = function* (sites: readonly PatchSite[]) {
      // A CPU runs f just before the batch lands: it still sees the old instruction.
      const [ha, hb] = [a.hits, b.hits];
      k.call(0, f);
      seen.push({
        role: sites[0]!.role,
        a: a.hits - ha,
        b: b.hits - hb,
        listed: ft.ops.includes(b),
      });
      yield* base(sites);
    };
    drive(ft.unregisterFtraceFunction(b, run));
    const fentry = seen.find((s) => s.role === "fentry");
    assert.ok(fentry !== undefined);
    // The site still calls ftrace_regs_caller, whose list function no longer calls B.
    assert.deepEqual(fentry, { role: "fentry", a: 1, b: 0, listed: false });
    assert.ok(seen.every((s) => s.b === 0 && !s.listed));
    // function_trace_op names the remaining ops from the start.
    assert.equal(k.mem.readWord(ft.functionTraceOp, bitness === 64 ? 8 : 4), a.address);
  });

  Deno.test(`Ftrace gives a lone ops its own trampoline on x86-64 only (${arch})`, () => {
    const { k, ft, fns, run } = traced(bitness, 2);
    const a = new FtraceOps("kf_ta", () => {}, { filter: [fns[0]!] });
    const r = new FtraceOps("kf_tr", () => {}, {
      filter: [fns[1]!],
      flags: FTRACE_OPS_FL_SAVE_REGS,
    });
    drive(ft.registerFtraceFunction(a, run));
    drive(ft.registerFtraceFunction(r, run));
    const at = (f: bigint) => rel32Target(f, k.mem.readBytes(f, 5), bitness);
    if (bitness === 64) {
      assert.ok(a.trampoline !== null && r.trampoline !== null);
      assert.equal(at(fns[0]!), a.trampoline.address);
      assert.equal(at(fns[1]!), r.trampoline.address);
    } else {
      assert.equal(a.trampoline, null);
      assert.equal(r.trampoline, null);
      assert.equal(at(fns[0]!), ft.caller.address);
      assert.equal(at(fns[1]!), ft.regsCaller.address);
      assert.ok(![...k.symbols.keys()].some((n) => n.startsWith("ftrace_ops_tramp_")));
    }
    k.call(0, fns[0]!);
    k.call(0, fns[1]!);
    assert.deepEqual([a.hits, r.hits], [1, 1]);
  });

  Deno.test(`Ftrace.registerFtraceFunction() refuses a second IPMODIFY ops on a function, changing nothing (${arch})`, () => {
    const k = kernel(bitness);
    const ft = new Ftrace(k);
    const lp = new Livepatch(ft);
    const [f] = lp.loadFunctions([{ name: "kf_ip" }]);
    ft.init();
    const run = runner(k);
    drive(lp.enable(run));
    const text = k.mem.readBytes(f!.old, 5);
    const regsCall = k.mem.readBytes(ft.regsCaller.callSite, 5);
    const other = new FtraceOps("kf_ip2", (_i, _p, _o, regs) => {
      if (regs !== null) regs.ip = f!.old + 5n;
    }, { filter: [f!.old], flags: FTRACE_OPS_FL_SAVE_REGS | FTRACE_OPS_FL_IPMODIFY });
    assert.throws(
      () => drive(ft.registerFtraceFunction(other, run)),
      (e: unknown) =>
        e instanceof PatchError && /IPMODIFY/.test(e.message) && /busy/.test(e.message),
    );
    assert.deepEqual(ft.ops, [...lp.ops]);
    assert.equal(other.address, 0n, "the refused ops was not set up");
    assert.deepEqual(k.mem.readBytes(f!.old, 5), text);
    assert.deepEqual(k.mem.readBytes(ft.regsCaller.callSite, 5), regsCall);
    // An IPMODIFY ops may not trace every function either (-EINVAL in the kernel).
    const all = new FtraceOps("kf_ip_all", () => {}, { flags: FTRACE_OPS_FL_IPMODIFY });
    assert.throws(() => drive(ft.registerFtraceFunction(all, run)), /empty filter/);
    // A second Livepatch of the same function is refused and leaves the first in place.
    const lp2 = new Livepatch(ft, "second");
    const [g] = lp2.loadFunctions([{ name: "kf_ip_other" }]);
    drive(lp2.enable(run)); // another function: fine
    assert.ok(lp2.enabled && g !== undefined);
    // A plain tracer shares the function.
    const tracer = new FtraceOps("kf_ip_tracer", () => {}, { filter: [f!.old] });
    drive(ft.registerFtraceFunction(tracer, run));
    k.call(0, f!.old, [1n]);
    assert.deepEqual([f!.oldRuns, f!.newRuns, tracer.hits], [0, 1, 1]);
  });

  Deno.test(`Livepatch.enable() undoes the functions it patched when ftrace refuses one (${arch})`, () => {
    const k = kernel(bitness);
    const ft = new Ftrace(k);
    const first = new Livepatch(ft, "first");
    const [, busy] = first.loadFunctions([{ name: "kf_u0" }, { name: "kf_u1" }]);
    const second = new Livepatch(ft, "second");
    const [free] = second.loadFunctions([{ name: "kf_u2" }]);
    ft.init();
    const run = runner(k);
    // Someone else modifies kf_u1's ip: the patch's second registration is refused.
    const squatter = new FtraceOps("kf_squat", () => {}, {
      filter: [busy!.old],
      flags: FTRACE_OPS_FL_SAVE_REGS | FTRACE_OPS_FL_IPMODIFY,
    });
    drive(ft.registerFtraceFunction(squatter, run));
    const before = k.mem.readBytes(first.funcs[0]!.old, 5);
    assert.throws(() => drive(first.enable(run)), /busy/);
    assert.ok(!first.enabled);
    assert.deepEqual(ft.ops, [squatter]);
    assert.deepEqual(k.mem.readBytes(first.funcs[0]!.old, 5), before);
    drive(second.enable(run));
    k.call(0, free!.old, [1n]);
    assert.deepEqual([free!.oldRuns, free!.newRuns], [0, 1]);
  });

  Deno.test(`ftrace_ops_list_func calls the newest ops first, as add_ftrace_ops prepends (${arch})`, () => {
    const { k, ft, fns, run } = traced(bitness);
    const order: string[] = [];
    const mk = (n: string) => new FtraceOps(n, () => void order.push(n), { filter: [fns[0]!] });
    const [a, b, c] = [mk("kf_la"), mk("kf_lb"), mk("kf_lc")];
    for (const o of [a, b, c]) drive(ft.registerFtraceFunction(o, run));
    assert.deepEqual(ft.ops, [c, b, a]);
    k.call(0, fns[0]!);
    assert.deepEqual(order, ["kf_lc", "kf_lb", "kf_la"]);
    // function_trace_op is the head of the list.
    assert.equal(k.mem.readWord(ft.functionTraceOp, bitness === 64 ? 8 : 4), c.address);
    drive(ft.unregisterFtraceFunction(b, run));
    order.length = 0;
    k.call(0, fns[0]!);
    assert.deepEqual(order, ["kf_lc", "kf_la"]);
  });

  Deno.test(`StaticCalls.staticCallUpdate() does nothing when the key already names the function (${arch})`, () => {
    const k = kernel(bitness);
    const sc = new StaticCalls(k);
    const labels = k.loadText("kf_fa:\n\tret\nkf_site:\n\tcall\tkf_fa\n\tret\n");
    const fa = labels.get("kf_fa")!;
    const key = sc.defineKey("kf_same", fa);
    sc.addInlineSite(key, labels.get("kf_site")!);
    let batches = 0;
    const base = runner(k);
    const run = function* (sites: readonly PatchSite[]) {
      batches++;
      yield* base(sites);
    };
    // A site the update would rewrite (a NOP5 where the key says fa) shows whether the
    // update ran at all: __static_call_update returns before looking at any site.
    const site = labels.get("kf_site")!;
    k.textPoke(site, nop5(bitness));
    drive(sc.staticCallUpdate(key, fa, run));
    assert.equal(batches, 0);
    assert.deepEqual(k.mem.readBytes(site, 5), nop5(bitness));
    // To NULL: the trampoline becomes ret (one batch); the site already holds the NOP5.
    drive(sc.staticCallUpdate(key, null, run));
    assert.equal(batches, 1);
    drive(sc.staticCallUpdate(key, null, run));
    assert.equal(batches, 1);
  });

  Deno.test(`StaticCalls.staticCallUpdate() refuses a site or trampoline holding unexpected bytes, changing nothing (${arch})`, () => {
    const k = kernel(bitness);
    const sc = new StaticCalls(k);
    const labels = k.loadText(
      "kf_va:\n\tret\nkf_vb:\n\tret\nkf_vsite:\n\tcall\tkf_va\n\tret\n",
    );
    const [fa, fb, site] = ["kf_va", "kf_vb", "kf_vsite"].map((n) => labels.get(n)!);
    const key = sc.defineKey("kf_val", fa!);
    sc.addInlineSite(key, site!);
    const ws = bitness === 64 ? 8 : 4;
    const run = runner(k);
    const snapshot = () => [
      k.mem.readBytes(key.trampoline, 8).join(),
      k.mem.readBytes(site!, 5).join(),
      k.mem.readWord(key.keyAddress, ws),
      key.func,
    ];
    // Corrupt text at the site: __static_call_validate BUG()s, the model refuses.
    k.textPoke(site!, Uint8Array.of(0xcc, 0xcc, 0xcc, 0xcc, 0xcc));
    const before = snapshot();
    assert.throws(
      () => drive(sc.staticCallUpdate(key, fb!, run)),
      (e: unknown) =>
        e instanceof PatchError && /Unexpected static_call instruction/.test(e.message),
    );
    assert.deepEqual(snapshot(), before);
    // A trampoline without its ud1 signature.
    k.textPoke(site!, callInsn(site!, fa!, bitness));
    k.textPoke(key.trampoline + 5n, Uint8Array.of(0xcc, 0xcc, 0xcc));
    const before2 = snapshot();
    assert.throws(() => drive(sc.staticCallUpdate(key, fb!, run)), /signature/);
    assert.deepEqual(snapshot(), before2);
  });
}

Deno.test("StaticCalls.staticCallUpdate() gives tail-call sites the sc-tail role, and the int3 handler emulates a jump there", () => {
  const k = kernel(64);
  const sc = new StaticCalls(k);
  const labels = k.loadText(`
kf_tfa:
	ret
kf_tfb:
	ret
kf_call_site:
	call	kf_tfa
	ret
kf_tail_site:
	.byte	0xe9, 0, 0, 0, 0
	int3
`);
  const [fa, fb] = [labels.get("kf_tfa")!, labels.get("kf_tfb")!];
  const key = sc.defineKey("kf_tail", fa);
  const callSite = labels.get("kf_call_site")!;
  const tailSite = labels.get("kf_tail_site")!;
  sc.addInlineSite(key, callSite);
  sc.addInlineSite(key, tailSite, { tail: true });
  const seen: PatchSite[] = [];
  const base = runner(k);
  const run = function* (sites: readonly PatchSite[]) {
    seen.push(...sites);
    yield* base(sites);
  };
  drive(sc.staticCallUpdate(key, fb, run));
  const roles = new Map(seen.map((s) => [s.address, s.role]));
  assert.equal(roles.get(key.trampoline), "sc-trampoline");
  assert.equal(roles.get(callSite), "sc-inline");
  assert.equal(roles.get(tailSite), "sc-tail");
  assert.deepEqual(k.mem.readBytes(tailSite, 5), jmpInsn(tailSite, fb));
  // The offset-reading strategies emulate what a tail site holds: a jmp, not a call.
  const h = installProposal(k, { push: "gap", target: "atomic-offset" });
  const tail = seen.find((s) => s.address === tailSite)!;
  assert.deepEqual(h.decide(tail), { op: "jmp", target: fb });
  const call = seen.find((s) => s.address === callSite)!;
  assert.deepEqual(h.decide(call), { op: "call", target: fb });
  // NULL: the tail site becomes the int3-padded ret, which the handler emulates as ret.
  seen.length = 0;
  drive(sc.staticCallUpdate(key, null, run));
  assert.deepEqual(k.mem.readBytes(tailSite, 5), SCT_RET);
  assert.deepEqual(h.decide(seen.find((s) => s.address === tailSite)!), { op: "ret" });
});

Deno.test("notApplicable() reports livepatch-transition on x86-32, where the kernel has no livepatch", () => {
  assert.match(
    notApplicable("livepatch-transition", "gap", "saved-target", "x86-32") ?? "",
    /no livepatch on x86-32/,
  );
  assert.equal(notApplicable("livepatch-transition", "gap", "saved-target", "x86-64"), null);
  assert.equal(notApplicable("static-call-update", "gap", "saved-target", "x86-32"), null);
});

Deno.test("runExperiment() patches only the static_call trampoline on x86-32, which has no inline static calls", () => {
  for (const arch of ["x86-32", "x86-64"] as const) {
    const r = runExperiment({
      scenario: "static-call-update",
      proposal: "gap-saved-target",
      arch,
      transitions: 3,
      timelines: true,
    });
    assert.ok(r.applicable && r.executions > 0, `${arch}: ${r.note}`);
    const roles = new Set(r.timelines!.flat().map((e) => e.role));
    assert.deepEqual(
      roles,
      arch === "x86-32" ? new Set(["sc-trampoline"]) : new Set(["sc-inline", "sc-trampoline"]),
    );
  }
});
