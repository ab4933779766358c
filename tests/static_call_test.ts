import assert from "node:assert/strict";
import { PatchError } from "../lib/errors.ts";
import {
  type BatchRunner,
  callInsn,
  immediateRunner,
  jmpInsn,
  type PatchSite,
  textPokeBpRunner,
} from "../lib/ftrace/batch.ts";
import { nop5 } from "../lib/kernel/constants.ts";
import { bootKernel, type Kernel } from "../lib/kernel/kernel.ts";
import { Machine } from "../lib/machine/machine.ts";
import { installProposal, stoppedRunner } from "../lib/proposals/handler.ts";
import { runExperiment } from "../lib/experiments/experiment.ts";
import {
  inlineInsn,
  scInsnType,
  SCT_RET,
  STATIC_CALL_SELFTEST,
  staticCallInsn,
  type StaticCallPatchSite,
  StaticCalls,
  staticCallSelftest,
  XOR5RAX,
} from "../lib/static_call/static_call.ts";

function kernel(bitness: 32 | 64): Kernel {
  return bootKernel(new Machine({ bitness }), { entry: bitness === 64 ? "64-gap" : "32-seed" });
}

for (const bitness of [64, 32] as const) {
  const arch = `x86-${bitness}`;

  Deno.test(`staticCallSelftest() gives 3, 4, 3 through the trampoline and inline (${arch})`, () => {
    const k = kernel(bitness);
    const results = staticCallSelftest(k, textPokeBpRunner(k));
    assert.deepEqual(results.map((r) => r.step), STATIC_CALL_SELFTEST);
    assert.deepEqual(results.map((r) => r.viaTrampoline), [3n, 4n, 3n]);
    assert.deepEqual(results.map((r) => r.viaInline), [3n, 4n, 3n]);
    assert.ok(results.every((r) => r.passed));
  });

  Deno.test(`staticCallSelftest() passes under a proposal's batch runner (${arch})`, () => {
    const k = kernel(bitness);
    const h = installProposal(k, { push: "gap", target: "atomic-offset" });
    assert.ok(staticCallSelftest(k, stoppedRunner(h)).every((r) => r.passed));
  });

  Deno.test(`StaticCalls.staticCallUpdate() to NULL writes ret in the trampoline and NOP5 inline (${arch})`, () => {
    const k = kernel(bitness);
    const fa = k.loadText(
      bitness === 64
        ? "fa:\n\tleaq\t1(%rdi), %rax\n\tret\n"
        : "fa:\n\tleal\t1(%eax), %eax\n\tret\n",
    ).get("fa")!;
    const site = k.loadText("user:\n\tcall\tfa\n\tret\n").get("user")!;
    const sc = new StaticCalls(k);
    const key = sc.defineKey("k", fa, { lineOffset: 61 });
    sc.addInlineSite(key, site);
    const run = textPokeBpRunner(k);
    const batches = k.patcher.stats.batches;
    for (const _ of sc.staticCallUpdate(key, null, run));
    // The trampoline first, then the inline sites: two text_poke_bp batches.
    assert.equal(k.patcher.stats.batches - batches, 2);
    assert.deepEqual(k.mem.readBytes(key.trampoline, 5), SCT_RET);
    assert.deepEqual(k.mem.readBytes(site, 5), nop5(bitness));
    assert.equal(sc.trampolineTarget(key), null);
    assert.equal(k.mem.readWord(key.keyAddress, bitness === 64 ? 8 : 4), 0n);
    // A NULL static call returns at once (on x86-32 the argument register is the result).
    const r = k.call(0, key.trampoline, [7n]);
    assert.ok(r.returned, r.stop.message);
    if (bitness === 32) assert.equal(r.value, 7n);
    for (const _ of sc.staticCallUpdate(key, fa, run));
    assert.equal(sc.trampolineTarget(key), fa);
    assert.equal(k.call(0, site, [7n]).value, 8n);
  });

  Deno.test(`StaticCalls refuses an inline site that is not a call and a duplicate key (${arch})`, () => {
    const k = kernel(bitness);
    const sc = new StaticCalls(k);
    const key = sc.defineKey("k", null);
    const bad = k.loadText("bad:\n\tnop\n\tnop\n\tnop\n\tnop\n\tnop\n").get("bad")!;
    assert.throws(() => sc.addInlineSite(key, bad), PatchError);
    assert.throws(() => sc.defineKey("k", null), /already exists/);
    assert.equal(key.sites.length, 0);
  });
}

Deno.test("static_call updated without call emulation skips calls and crashes at the trampoline", () => {
  // nop-skip jumps over the int3: an inline site loses its call, a trampoline runs into
  // the ud1 behind its jmp. The emulating proposals never do either.
  const bad = runExperiment({
    scenario: "static-call-update",
    proposal: "nop-skip",
    transitions: 10,
  });
  assert.ok(bad.skipped > 0, JSON.stringify(bad));
  assert.ok(bad.crashed > 0, JSON.stringify(bad));
  const good = runExperiment({
    scenario: "static-call-update",
    proposal: "text-poke-emulate",
    transitions: 10,
  });
  assert.equal(good.skipped + good.other + good.crashed, 0);
});

Deno.test("immediateRunner() refuses a batch whose old bytes do not match, writing nothing", () => {
  const k = kernel(64);
  const sc = new StaticCalls(k);
  const key = sc.defineKey("k", null);
  const run = immediateRunner((a, b) => k.textPoke(a, b), (a, n) => k.mem.readBytes(a, n));
  const site = {
    address: key.trampoline,
    old: Uint8Array.of(0xe9, 0, 0, 0, 0),
    new: Uint8Array.of(0xe9, 1, 0, 0, 0),
    role: "sc-trampoline" as const,
  };
  assert.throws(() => {
    for (const _ of run([site]));
  }, /Old bytes mismatch/);
  assert.deepEqual(k.mem.readBytes(key.trampoline, 5), SCT_RET);
});

/** A text_poke_bp runner that passes a static_call site's `emulate` on. */
function emulatingRunner(k: Kernel, afterInt3?: () => void): BatchRunner {
  // deno-lint-ignore require-yield
  return function* (sites: readonly PatchSite[]): Generator<unknown, void, unknown> {
    const gen = k.textPokeBpBatch(sites.map((s) => {
      const emulate = (s as StaticCallPatchSite).emulate;
      return { address: s.address, bytes: s.new, old: s.old, ...(emulate ? { emulate } : {}) };
    }));
    for (let r = gen.next(); !r.done; r = gen.next()) {
      if (r.value.kind === "store") k.patcher.env.writeText(r.value.address, r.value.bytes);
      else if (r.value.step === 1) afterInt3?.();
    }
  };
}

const TAIL_SRC = `
tc_func_a:
	leaq	1(%rdi), %rax
	ret
tc_func_b:
	leaq	2(%rdi), %rax
	ret
tc_outer:
	movq	$7, %rax
	call	tc_mid
	addq	$100, %rax
	ret
tc_mid:
tc_site:
	.byte	0xe9, 0, 0, 0, 0	/* jmp __SCT__tc, a tail call */
	int3
	int3
`;

function tailKernel() {
  const k = kernel(64);
  const sc = new StaticCalls(k);
  const labels = k.loadText(TAIL_SRC, { name: "tail-call test" });
  const fa = labels.get("tc_func_a")!;
  const key = sc.defineKey("tc", fa);
  const site = labels.get("tc_site")!;
  sc.addInlineSite(key, site, { tail: true });
  return { k, sc, key, site, fa, fb: labels.get("tc_func_b")!, outer: labels.get("tc_outer")! };
}

Deno.test("StaticCalls.staticCallUpdate() keeps a tail-call site a jmp: the caller's caller gets the return", () => {
  const { k, sc, key, site, fb, outer } = tailKernel();
  assert.deepEqual(key.tail, new Set([site]));
  assert.equal(k.mem.readBytes(site, 1)[0], 0xe9);
  assert.equal(k.call(0, outer, [2n]).value, 103n);
  for (const _ of sc.staticCallUpdate(key, fb, textPokeBpRunner(k)));
  assert.deepEqual(k.mem.readBytes(site, 5), jmpInsn(site, fb));
  const r = k.call(0, outer, [2n]);
  assert.ok(r.returned, r.stop.message);
  assert.equal(r.value, 104n);
  // NULL: the tail site becomes ret, so tc_mid returns at once with rax untouched.
  for (const _ of sc.staticCallUpdate(key, null, textPokeBpRunner(k)));
  assert.deepEqual(k.mem.readBytes(site, 5), SCT_RET);
  assert.equal(k.call(0, outer, [2n]).value, 107n);
  assert.equal(k.oopses.length, 0);
});

Deno.test("inlineInsn() without the tail flag makes a tail-call site a call that returns into the int3 after it", () => {
  const { k, site, fb, outer } = tailKernel();
  k.textPoke(site, inlineInsn(site, fb, 64)); // what the update wrote before tail sites
  assert.equal(k.mem.readBytes(site, 1)[0], 0xe8);
  const r = k.call(0, outer, [2n]);
  assert.equal(r.returned, false);
  assert.equal(k.oopses.length, 1);
});

Deno.test("StaticCalls.addInlineSite() refuses a tail site that is not a jmp or ret, and a call site that is a jmp", () => {
  const { k, sc, key } = tailKernel();
  const labels = k.loadText("tc_bad:\n\tcall\ttc_func_a\n\tjmp\ttc_func_a\n\tret\n");
  const bad = labels.get("tc_bad")!;
  const before = k.mem.readBytes(bad, 10);
  assert.throws(() => sc.addInlineSite(key, bad, { tail: true }), /not a tail-call jmp or ret/);
  assert.throws(() => sc.addInlineSite(key, bad + 5n), /not a call, NOP5 or xor5rax/);
  assert.deepEqual(k.mem.readBytes(bad, 10), before);
});

Deno.test("staticCallInsn() gives the four insn types and the RET0 form 2e 2e 2e 31 c0", () => {
  const site = 0xffffffff81000000n;
  const f = 0xffffffff81000100n;
  assert.deepEqual(XOR5RAX, Uint8Array.of(0x2e, 0x2e, 0x2e, 0x31, 0xc0));
  const ret0 = staticCallInsn(site, f, { return0: f });
  assert.deepEqual([ret0.type, ret0.code, ret0.emulate], ["call", XOR5RAX, callInsn(site, f)]);
  assert.deepEqual(staticCallInsn(site, f).code, callInsn(site, f));
  assert.deepEqual(staticCallInsn(site, null).code, nop5(64));
  // A tail call to __static_call_return0 stays a jmp: only a call site can become xor.
  assert.deepEqual(staticCallInsn(site, f, { tail: true, return0: f }).code, jmpInsn(site, f));
  assert.deepEqual(staticCallInsn(site, null, { tail: true }).code, SCT_RET);
  // With X86_FEATURE_RETHUNK, RET is a jmp to the return thunk.
  const thunk = 0xffffffff81000200n;
  assert.deepEqual(
    staticCallInsn(site, null, { tail: true, returnThunk: thunk }).code,
    jmpInsn(site, thunk),
  );
  assert.deepEqual(
    [scInsnType(false, false), scInsnType(true, false), scInsnType(false, true)],
    ["call", "nop", "jmp"],
  );
  assert.equal(scInsnType(true, true), "ret");
});

Deno.test("StaticCalls.staticCallUpdate() to __static_call_return0 writes xor5rax and emulates the call meanwhile", () => {
  const k = kernel(64);
  const sc = new StaticCalls(k);
  const labels = k.loadText(
    "r0_fa:\n\tleaq\t1(%rdi), %rax\n\tret\nr0_user:\n\tmovq\t$5, %rax\nr0_site:\n\tcall\tr0_fa\n\tret\n",
  );
  const key = sc.defineKey("r0", labels.get("r0_fa")!);
  const site = labels.get("r0_site")!;
  const user = labels.get("r0_user")!;
  sc.addInlineSite(key, site);
  const ret0 = sc.defineReturn0();
  assert.equal(k.call(0, user, [2n]).value, 3n);
  // Between the int3 and the rest, a CPU at the site runs the emulated call to
  // __static_call_return0: 0, as before and after.
  const seen: bigint[] = [];
  const emulated = k.patcher.stats.emulated;
  const run = emulatingRunner(k, () => {
    if (k.mem.readBytes(site, 1)[0] === 0xcc) seen.push(k.call(0, user, [2n]).value);
  });
  for (const _ of sc.staticCallUpdate(key, ret0, run));
  assert.deepEqual(seen, [0n]);
  assert.equal(k.patcher.stats.emulated - emulated, 1);
  assert.deepEqual(k.mem.readBytes(site, 5), XOR5RAX);
  assert.equal(k.call(0, user, [2n]).value, 0n);
  assert.equal(k.call(0, key.trampoline, [2n]).value, 0n);
  // And back: the xor5rax site becomes a call again.
  for (const _ of sc.staticCallUpdate(key, labels.get("r0_fa")!, run));
  assert.equal(k.call(0, user, [2n]).value, 3n);
  assert.equal(k.oopses.length, 0);
});

Deno.test("textPokeBpRunner() passes the call to emulate along with the xor5rax form; without it text_poke_bp refuses", () => {
  const k = kernel(64);
  const sc = new StaticCalls(k);
  const labels = k.loadText(
    "x_fa:\n\tleaq\t1(%rdi), %rax\n\tret\nx_site:\n\tcall\tx_fa\n\tret\n",
  );
  const key = sc.defineKey("x", labels.get("x_fa")!);
  const site = labels.get("x_site")!;
  sc.addInlineSite(key, site);
  const ret0 = sc.defineReturn0();
  // The batch site carries `emulate` (the call being replaced); the runner forwards it.
  for (const _ of sc.staticCallUpdate(key, ret0, textPokeBpRunner(k)));
  assert.deepEqual(k.mem.readBytes(site, 5), XOR5RAX);
  assert.equal(k.call(0, site, [2n]).value, 0n);
  // The failure it prevents: a runner that dropped `emulate` would ask text_poke_bp to
  // emulate the xor5rax bytes themselves while the site is in flux — not an instruction
  // the int3 handler can run as the call — so the update would be refused.
  for (const _ of sc.staticCallUpdate(key, labels.get("x_fa")!, textPokeBpRunner(k)));
  const before = k.mem.readBytes(site, 5);
  assert.throws(() => {
    for (
      const _ of textPokeBpRunner(k)([
        { address: site, old: before, new: XOR5RAX, role: "sc-inline" },
      ])
    );
  }, (e: unknown) => e instanceof PatchError && /can emulate/.test(e.message));
  assert.deepEqual(k.mem.readBytes(site, 5), before);
});
