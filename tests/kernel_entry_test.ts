// The int3 entry variants run end to end on the emulated machine: the emulated call works
// where the entry leaves room for it, and where it does not, the test names the word that
// is clobbered and shows how the return goes wrong.
import assert from "node:assert/strict";
import { Machine } from "../lib/machine/machine.ts";
import { CS_FROM_KERNEL, NOP5_32, NOP5_64 } from "../lib/kernel/constants.ts";
import { int3EmulateCall } from "../lib/kernel/emulate.ts";
import { entryBitness, type EntryVariant, int3EntrySource } from "../lib/kernel/entry.ts";
import { bootKernel, type Kernel, type KernelOptions } from "../lib/kernel/kernel.ts";
import type { PtRegsSnapshot } from "../lib/kernel/pt_regs.ts";
import { int3Selftest } from "../lib/kernel/selftest.ts";
import type { PokeStep } from "../lib/kernel/text_poke.ts";

function boot(entry: EntryVariant, extra: Partial<KernelOptions> = {}): Kernel {
  return bootKernel(new Machine({ bitness: entryBitness(entry) }), { entry, ...extra });
}

/** A function with an int3 padded to a call's size, and the callee it should "call". */
function loadSite(k: Kernel): { fn: bigint; site: bigint; magic: bigint; val: bigint } {
  const ptr = k.bitness === 64 ? "%rdi" : "%eax";
  const l = k.loadText(`
site_fn:
site:
	int3
	nop
	nop
	nop
	nop
	ret
magic:
	movl	$1, (${ptr})
	ret
`);
  return {
    fn: l.get("site_fn")!,
    site: l.get("site")!,
    magic: l.get("magic")!,
    val: k.allocData(8),
  };
}

/** Registers a notifier that emulates the call and records what it changed in pt_regs. */
function emulateCallOnce(k: Kernel, site: bigint, magic: bigint) {
  const seen: { before?: PtRegsSnapshot; after?: PtRegsSnapshot; regs?: bigint } = {};
  k.dispatch.registerDieNotifier((regs) => {
    if (regs.ip - 1n !== site) return false;
    seen.before = regs.snapshot();
    seen.regs = regs.address;
    int3EmulateCall(regs, magic, k.pushMode);
    seen.after = regs.snapshot();
    return true;
  });
  return seen;
}

function changed(a: PtRegsSnapshot, b: PtRegsSnapshot): string[] {
  return Object.keys(a).filter((f) => a[f] !== b[f]);
}

Deno.test("int3Selftest() passes on every entry that leaves room for the push: 64-gap, 32-seed, 32-fixup", () => {
  for (const v of ["64-gap", "32-seed", "32-fixup"] as const) {
    const k = boot(v);
    const r = int3Selftest(k);
    assert.equal(r.passed, true, `${v}: ${r.corrupted.join()} ${r.stop.message}`);
    assert.equal(r.emulated, 1);
    assert.equal(k.events.length, 0);
  }
});

Deno.test("int3Selftest() fails on the 64-nogap entry: the emulated push lands on the saved SS and iretq raises #GP", () => {
  const k = boot("64-nogap");
  const r = int3Selftest(k);
  assert.equal(r.passed, false);
  assert.equal(r.val, 0n, "the callee never ran: the iretq into it faulted");
  assert.equal(k.oopses.length, 1);
  const oops = k.oopses[0]!;
  assert.equal(oops.regs.vector, 13n, "#GP");
  // The error code is the clobbered SS selector: the low bits of the emulated return
  // address, RPL cleared.
  assert.equal(oops.regs.error_code! & 3n, 0n);
  assert.notEqual(oops.regs.error_code, 0n);
  assert.match(oops.message, /general protection fault/);
});

Deno.test("bootKernel() installs a custom entry source that calls natives given at boot", () => {
  const base = int3EntrySource("64-gap");
  let hooked = 0;
  const k = bootKernel(new Machine({ bitness: 64 }), {
    entry: "64-gap",
    entrySource: {
      ...base,
      text: base.text.replace("call\tdo_int3", "call\tmy_hook\n\tcall\tdo_int3"),
    },
    natives: { my_hook: () => void hooked++ },
  });
  assert.equal(int3Selftest(k).passed, true);
  assert.equal(hooked, 1);
});

Deno.test("the 64-nogap entry lets int3EmulateCall() overwrite the SS word of the iret frame when the stack is 16-byte aligned", () => {
  const k = boot("64-nogap");
  const { fn, site, magic, val } = loadSite(k);
  const seen = emulateCallOnce(k, site, magic);
  // rsp ≡ 0 (mod 16) at the int3: the CPU pushes SS at rsp - 8, exactly where the
  // emulated push stores the return address.
  const r = k.call(0, fn, [val], { stackTop: k.taskStackTop(0) - 8n });
  const ret = site + 5n;
  assert.deepEqual(
    changed(seen.before!, seen.after!),
    ["ip", "ss", "sp"].sort((a, b) =>
      Object.keys(seen.before!).indexOf(a) - Object.keys(seen.before!).indexOf(b)
    ),
  );
  assert.equal(
    seen.after!.ss,
    ret,
    "pt_regs->ss (the iret frame's SS) now holds the return address",
  );
  assert.equal(seen.after!.sp, seen.before!.sp! - 8n);
  // The frame is pt_regs itself: the pushed word is &regs->ss.
  assert.equal(seen.after!.sp, seen.regs! + 160n);
  // iretq then finds the return address where SS belongs: SS's RPL and DPL no longer
  // match CPL 0, so the CPU raises #GP(selector) on the iretq, as hardware does.
  assert.equal(r.returned, false);
  assert.equal(k.oopses.length, 1);
  assert.equal(k.oopses[0]!.regs.vector, 13n);
  assert.equal(k.oopses[0]!.regs.error_code, ret & 0xfffcn, "#GP names the clobbered SS");
});

Deno.test("the 64-nogap entry survives the push only by luck when rsp ≡ 8 (mod 16): it lands in the alignment padding", () => {
  const k = boot("64-nogap");
  const { fn, site, magic, val } = loadSite(k);
  const seen = emulateCallOnce(k, site, magic);
  const r = k.call(0, fn, [val]); // rsp ≡ 8 at the int3: the CPU aligned down by 8
  assert.deepEqual(changed(seen.before!, seen.after!), ["ip", "sp"]);
  assert.equal(
    seen.after!.sp,
    seen.regs! + 168n,
    "the push went just above pt_regs, into the padding",
  );
  assert.equal(r.returned, true);
  assert.equal(k.mem.readWord(val, 8), 1n);
});

Deno.test("the 64-gap entry keeps the iret frame intact whatever the alignment", () => {
  for (const shift of [0n, 8n]) {
    const k = boot("64-gap");
    const { fn, site, magic, val } = loadSite(k);
    const seen = emulateCallOnce(k, site, magic);
    const r = k.call(0, fn, [val], { stackTop: k.taskStackTop(0) - shift });
    assert.deepEqual(changed(seen.before!, seen.after!), ["ip", "sp"]);
    // The push lands 6 words above the copied frame, in the gap.
    assert.ok(seen.after!.sp! >= seen.regs! + 168n + 48n - 8n);
    assert.equal(r.returned, true, r.stop.message);
    assert.equal(k.mem.readWord(val, 8), 1n);
    assert.equal(k.machine.cpus[0]!.ss, k.sel.kernelDs);
    assert.equal(k.oopses.length, 0);
  }
});

Deno.test("the 32-plain entry with the seed's memmove push returns through do_int3's overwritten return address", () => {
  const k = boot("32-plain", { pushMode: "move" });
  const r = int3Selftest(k);
  assert.equal(r.passed, false);
  // The memmove moved pt_regs one word down over `call do_int3`'s return address: the
  // native returned to the saved %ebx (0x2222 in the self-test) and faulted there.
  const oops = k.oopses[0];
  assert.ok(oops, "an oops");
  assert.match(oops.message, /page fault for address 0x2222/);
  assert.equal(k.events[0]?.kind, "warn");
  assert.equal(r.val, 0n, "int3_magic never ran");
});

Deno.test("the 32-plain entry with a direct push corrupts the interrupted stack and writes into read-only text", () => {
  const k = boot("32-plain", { pushMode: "direct" });
  const r = int3Selftest(k);
  assert.equal(r.passed, false);
  // Without sp in the frame, regs->sp is the interrupted stack's top word: the function's
  // return address (kernel_return). "sp -= 4" corrupts it, and the store goes to the text.
  const target = k.symbol("kernel_return") - 4n;
  const oops = k.oopses[0];
  assert.ok(oops);
  assert.match(oops.message, new RegExp(`page fault for address 0x${target.toString(16)}`));
});

Deno.test("the 32-seed entry moves pt_regs and switches %esp to the moved copy", () => {
  const k = boot("32-seed");
  const { fn, site, magic, val } = loadSite(k);
  let moved = 0n;
  let orig = 0n;
  k.dispatch.ftraceInt3Handler = (ctx) => {
    if (ctx.regs.ip - 1n !== site) return false;
    orig = ctx.regs.address;
    ctx.regs = int3EmulateCall(ctx.regs, magic, ctx.pushMode);
    moved = ctx.regs.address;
    return true;
  };
  k.dispatch.modifyingFtraceCode = 1;
  const r = k.call(0, fn, [val]);
  assert.equal(moved, orig - 4n);
  assert.equal(r.returned, true, r.stop.message);
  assert.equal(k.mem.readWord(val, 4), 1n);
});

Deno.test("the 32-fixup entry builds a complete pt_regs (sp, ss, CS_FROM_KERNEL) from kernel mode", () => {
  const k = boot("32-fixup");
  const { fn, site, magic, val } = loadSite(k);
  const seen = emulateCallOnce(k, site, magic);
  const spAtCall = k.taskStackTop(0) - 4n;
  const r = k.call(0, fn, [val]);
  assert.equal(seen.before!.sp, spAtCall, "regs->sp is the interrupted esp");
  assert.equal(seen.before!.ss, BigInt(k.sel.kernelDs));
  assert.equal(seen.before!.cs, BigInt(k.sel.kernelCs | CS_FROM_KERNEL));
  assert.deepEqual(changed(seen.before!, seen.after!), ["ip", "sp"]);
  assert.equal(r.returned, true, r.stop.message);
  assert.equal(k.machine.cpus[0]!.cs, k.sel.kernelCs, "IRET_FRAME strips the marker");
  assert.equal(k.mem.readWord(val, 4), 1n);
});

const USER_SRC_64 = `
ustart:
	movl	$1, %eax
ubp:
	int3
	movl	$2, %ebx
1:	jmp	1b
`;
const USER_SRC_32 = USER_SRC_64;

Deno.test("a user-mode int3 takes the no-gap path and behaves as a plain breakpoint (SIGTRAP) on every entry", () => {
  for (const v of ["64-nogap", "64-gap", "32-plain", "32-seed", "32-fixup"] as const) {
    const k = boot(v);
    const l = k.loadUserText(k.bitness === 64 ? USER_SRC_64 : USER_SRC_32);
    let regsAt = 0n;
    k.dispatch.registerDieNotifier((regs) => {
      regsAt = regs.address;
      return false;
    });
    k.enterUser(0, l.get("ustart")!);
    const cpu = k.machine.cpus[0]!;
    const sp = cpu.getReg(k.bitness === 64 ? "rsp" : "esp");
    const stop = k.machine.run({ cpu: 0, maxSteps: 300 });
    assert.equal(stop.kind, "budget", `${v}: ${stop.message}`);
    const ev = k.events[0];
    assert.equal(ev?.kind, "sigtrap", v);
    assert.equal(ev?.kind === "sigtrap" && ev.address, l.get("ubp"));
    assert.equal(ev?.kind === "sigtrap" && ev.task, "task/0");
    assert.equal(cpu.cpl, 3);
    assert.equal(cpu.getReg("ebx"), 2n, `${v}: continued after the int3`);
    assert.equal(cpu.getReg(k.bitness === 64 ? "rsp" : "esp"), sp);
    // No gap from user mode: pt_regs sits right under the top of the entry stack.
    const size = k.bitness === 64 ? 168n : 68n;
    assert.equal(regsAt, k.entryStackTop(0) - size, `${v}: pt_regs at the top of tss.sp0`);
    assert.equal(k.oopses.length, 0);
  }
});

Deno.test("do_int3 records an oops with the regs for an unclaimed kernel int3", () => {
  for (const v of ["64-gap", "32-fixup"] as const) {
    const k = boot(v);
    const { fn, site, val } = loadSite(k);
    const r = k.call(0, fn, [val]);
    assert.equal(r.stop.kind, "native");
    const oops = k.oopses[0]!;
    assert.equal(oops.address, site);
    assert.equal(oops.regs.ip, site + 1n);
    assert.match(oops.message, /int3/);
  }
});

Deno.test("textPokeBp() on a running CPU: a CPU that hits the int3 runs the call being written", () => {
  for (const v of ["64-gap", "32-seed", "32-fixup"] as const) {
    const k = boot(v);
    const nop = k.bitness === 64 ? NOP5_64 : NOP5_32;
    const reg = k.bitness === 64 ? "%rdi" : "%eax";
    const l = k.loadText(`
traced:
tsite:
	.byte ${[...nop].join(", ")}
	ret
tracer:
	incl	(${reg})
	ret
`);
    const val = k.allocData(8);
    const site = l.get("tsite")!;
    const tracer = l.get("tracer")!;
    const rel = tracer - (site + 5n);
    const call = new Uint8Array(5);
    call[0] = 0xe8;
    new DataView(call.buffer).setInt32(1, Number(BigInt.asIntN(32, rel)), true);
    const gen = k.textPokeBp(site, call, { old: nop });
    // Step 1 only: the site holds int3 + old tail.
    const first = gen.next().value;
    assert.ok(first && first.kind === "store");
    k.patcher.env.writeText(first.address, first.bytes);
    assert.equal(k.machine.readBytes(site, 1)[0], 0xcc);
    let r = k.call(0, "traced", [val]);
    assert.equal(r.returned, true, `${v}: ${r.stop.message}`);
    assert.equal(k.mem.readWord(val, 4), 1n, `${v}: the emulated call reached the tracer`);
    assert.equal(k.patcher.stats.emulated, 1);
    k.runPatch(gen);
    assert.deepEqual([...k.machine.readBytes(site, 5)], [...call]);
    r = k.call(0, "traced", [val]);
    assert.equal(k.mem.readWord(val, 4), 2n, `${v}: the real call`);
    assert.equal(k.patcher.stats.emulated, 1);
  }
});

Deno.test("textPokeBp() emulates a RET and a Jcc being written, on every entry with room for it", () => {
  for (const v of ["64-gap", "32-seed", "32-fixup"] as const) {
    const k = boot(v);
    const [ax, arg] = k.bitness === 64 ? ["%rax", "%rdi"] : ["%eax", "%eax"];
    const l = k.loadText(`
tramp:
	.byte	0xe9
	.long	tramp_target - tramp_end
tramp_end:
	ud2
tramp_target:
	mov	$1, ${ax}
	ret
caller:
	mov	$7, ${ax}
	call	tramp
	ret
jcc_fn:
	cmp	$5, ${arg}
jsite:
	.byte	0x0f, 0x84
	.long	jtaken - jend
jend:
	mov	$2, ${ax}
	ret
	.rept	16
	.byte	0xcc
	.endr
jtaken:
	mov	$3, ${ax}
	ret
`);
    const tramp = l.get("tramp")!;
    // A static_call trampoline going NULL: `jmp.d32 target` becomes `ret` padded with int3.
    const jmpLen = l.get("tramp_target")! - tramp - 2n; // the jmp (ud2 follows it)
    assert.equal(jmpLen, 5n);
    const gen = k.textPokeBp(tramp, Uint8Array.of(0xc3, 0xcc, 0xcc, 0xcc, 0xcc));
    const s = gen.next().value;
    assert.ok(s && s.kind === "store");
    k.patcher.env.writeText(s.address, s.bytes);
    let r = k.call(0, "caller");
    assert.equal(r.returned, true, `${v}: ${r.stop.message}`);
    assert.equal(r.value, 7n, `${v}: the emulated ret returned at once to the caller`);
    k.runPatch(gen);
    r = k.call(0, "caller");
    assert.equal(r.value, 7n);
    // je being written over jne: the emulation follows the interrupted flags.
    const jsite = l.get("jsite")!;
    const jne = k.machine.readBytes(jsite, 6);
    jne[1] = 0x85;
    const g2 = k.textPokeBp(jsite, jne);
    const s2 = g2.next().value;
    assert.ok(s2 && s2.kind === "store");
    k.patcher.env.writeText(s2.address, s2.bytes);
    assert.equal(k.call(0, "jcc_fn", [5n]).value, 2n, `${v}: jne not taken when equal`);
    assert.equal(k.call(0, "jcc_fn", [6n]).value, 3n, `${v}: jne taken`);
    assert.equal(k.patcher.stats.emulated, 3);
    k.runPatch(g2);
    assert.equal(k.call(0, "jcc_fn", [6n]).value, 3n);
    assert.equal(k.oopses.length, 0);
  }
});

Deno.test("a fault in user mode kills the task with a signal, not an oops", () => {
  const k = boot("64-gap");
  const l = k.loadUserText("ustart:\n\tud2\n");
  k.enterUser(0, l.get("ustart")!);
  const stop = k.machine.run({ cpu: 0, maxSteps: 100 });
  assert.equal(stop.kind, "native");
  assert.equal(k.oopses.length, 0);
  const ev = k.events[0];
  assert.equal(ev?.kind === "signal" && ev.signal, "SIGILL");
});

// Upstream's poke_int3_handler advances ip by the whole site (`ip += tp->len`) before it
// adds the displacement, and text_poke_loc_init lets a JMP8 be padded with int3 to fill
// the site. So while a padded JMP8 is in flux, a CPU that hits the int3 jumps len - 2 bytes
// past where the jmp8 itself goes. The model keeps upstream's arithmetic and this test pins it.
for (const bitness of [64, 32] as const) {
  Deno.test(`textPokeBp() of a JMP8 padded with int3 emulates it, as upstream does, from the end of the site (x86-${bitness})`, () => {
    const k = bootKernel(new Machine({ bitness }), {
      entry: bitness === 64 ? "64-gap" : "32-fixup",
    });
    const l = k.loadText(
      "fn:\n\txorl %eax, %eax\nsite:\n\t.byte 0x0f, 0x1f, 0x44, 0x00, 0x00\n\tret\n" +
        "\t.skip 10, 0xcc\njmp8_target:\n\tmovb $1, %al\n\tret\npast_padding:\n\tmovb $2, %al\n\tret\n",
    );
    const site = l.get("site")!;
    assert.equal(l.get("jmp8_target")! - site, 16n);
    assert.equal(l.get("past_padding")! - site, 19n);
    if (bitness === 32) k.textPoke(site, NOP5_32);
    const nop = k.mem.readBytes(site, 5);
    const gen = k.textPokeBp(site, Uint8Array.of(0xeb, 14, 0xcc, 0xcc, 0xcc));
    const write = (step: IteratorResult<PokeStep, void>) => {
      if (!step.done && step.value.kind === "store") {
        k.textPoke(step.value.address, step.value.bytes);
      }
    };
    write(gen.next()); // the int3
    gen.next(); // its sync
    assert.deepEqual(k.mem.readBytes(site, 5), Uint8Array.of(0xcc, ...nop.subarray(1)));
    const emulated = k.call(0, l.get("fn")!);
    for (let s = gen.next(); !s.done; s = gen.next()) write(s);
    assert.deepEqual(k.mem.readBytes(site, 5), Uint8Array.of(0xeb, 14, 0xcc, 0xcc, 0xcc));
    const executed = k.call(0, l.get("fn")!);
    assert.equal(executed.value & 0xffn, 1n, "the jmp8 goes to site + 2 + 14");
    assert.equal(emulated.value & 0xffn, 2n, "the int3 handler goes to site + 5 + 14");
    assert.equal(k.patcher.stats.emulated, 1);
  });
}
