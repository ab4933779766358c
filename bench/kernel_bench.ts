// Benchmarks of the modeled kernel: the int3 trap path (entry stub → do_kernel_int3 →
// int3EmulateCall → iret into the callee → ret) and a 40,000-site text_poke_bp batch.
import { Machine } from "../lib/machine/machine.ts";
import { bootKernel, type Kernel } from "../lib/kernel/kernel.ts";
import { int3EmulateCall } from "../lib/kernel/emulate.ts";
import type { EntryVariant } from "../lib/kernel/entry.ts";
import { random } from "../lib/machine/schedule.ts";

const ROUND_TRIPS = 10_000;

function trapKernel(entry: EntryVariant): { k: Kernel; val: bigint } {
  const bits = entry.startsWith("64") ? 64 : 32;
  const k = bootKernel(new Machine({ bitness: bits }), { entry });
  const [ptr, count] = bits === 64 ? ["%rdi", "%rsi"] : ["%eax", "%edx"];
  const l = k.loadText(`
bench_loop:
bench_site:
	int3
	nop
	nop
	nop
	nop
	dec	${count}
	jnz	bench_loop
	ret
bench_magic:
	incl	(${ptr})
	ret
`);
  const site = l.get("bench_site")!;
  const magic = l.get("bench_magic")!;
  // ftrace's slot: it gets the regs by reference, so it works for the moving 32-bit push.
  k.dispatch.ftraceInt3Handler = (ctx) => {
    if (ctx.regs.ip - 1n !== site) return false;
    ctx.regs = int3EmulateCall(ctx.regs, magic, ctx.pushMode);
    return true;
  };
  k.dispatch.modifyingFtraceCode = 1;
  return { k, val: k.allocData(8) };
}

const t64 = trapKernel("64-gap");
const t32 = trapKernel("32-seed");

function roundTrips(t: { k: Kernel; val: bigint }): void {
  t.k.mem.writeWord(t.val, 4, 0n);
  const r = t.k.call(0, "bench_loop", [t.val, BigInt(ROUND_TRIPS)], { maxSteps: 2_000_000 });
  if (!r.returned || t.k.mem.readWord(t.val, 4) !== BigInt(ROUND_TRIPS)) {
    throw new Error(`bench loop failed: ${r.stop.message}`);
  }
}

Deno.bench({
  name: "trap/int3-roundtrip-64",
  group: "trap",
  baseline: true,
  fn: () => roundTrips(t64),
});
Deno.bench({
  name: "trap/int3-roundtrip-32",
  group: "trap",
  fn: () => roundTrips(t32),
});

// ---- poke: one text_poke_bp batch of 40,000 NOP5 sites into calls, 4 CPUs ----------

const SITES = 40_000;

function pokeKernel() {
  const k = bootKernel(new Machine({ bitness: 64, cpus: 4 }), {
    entry: "64-gap",
    textSize: 0x100000,
  });
  const l = k.loadText(`
tracer:
	incl	4(%rdi)
	ret
`);
  const tracer = l.get("tracer")!;
  // 40,000 functions `nop5; ret`, 8 bytes apart.
  const code = new Uint8Array(SITES * 8).fill(0xcc);
  for (let i = 0; i < SITES; i++) {
    code.set([0x0f, 0x1f, 0x44, 0x00, 0x00, 0xc3], i * 8);
  }
  const base = k.loadCode(code, "sites");
  const sites = [];
  for (let i = 0; i < SITES; i++) {
    const at = base + BigInt(i * 8);
    const call = new Uint8Array(5);
    call[0] = 0xe8;
    new DataView(call.buffer).setInt32(1, Number(tracer - at - 5n), true);
    sites.push({ address: at, bytes: call, old: code.slice(i * 8, i * 8 + 5) });
  }
  // CPUs 1-3 call three of the sites in a loop while the batch runs.
  const w = k.loadText(`
worker:
1:	call	${base}
	call	${base + BigInt((SITES / 2) * 8)}
	call	${base + BigInt((SITES - 1) * 8)}
	incl	(%rdi)
	jmp	1b
`);
  const counters = k.allocData(64);
  for (let c = 1; c < 4; c++) k.prepareCall(c, w.get("worker")!, [counters + BigInt(8 * c)]);
  const smp = k.startSmp({ schedule: random(1), fetch: "torn" });
  return { k, smp, sites, base, code };
}

const poke = pokeKernel();

Deno.bench({
  name: "poke/textPokeBp-batch-40000",
  group: "poke",
  baseline: true,
  fn: (b) => {
    const { k, smp, sites, base, code } = poke;
    // Back to NOP5 everywhere (untimed, host write: every CPU sees it at once).
    k.machine.memory.writeBytes(base, code);
    b.start();
    const t = k.spawnPatcher(0, [k.textPokeBpBatch(sites)]);
    while (!t.done) smp.run(4096);
    b.end();
    if (t.error !== undefined) throw t.error;
    if (k.oopses.length !== 0) throw new Error(k.oopses[0]!.message);
  },
});
