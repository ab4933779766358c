/**
 * The real Debian cloud kernel (fetched by `deno task fetch-kernel`, or by this file when
 * the cache is empty and apt-get is there): load it, walk its text, patch it.
 */
import assert from "node:assert/strict";
import { cachedKernel, type FetchedKernel, fetchKernel } from "../lib/image/fetch.ts";
import { type KernelImage, loadKernelImage } from "../lib/image/image.ts";
import { realKernelRace } from "../lib/image/race.ts";
import { checkCallerCallOutcomes } from "./_real_race.ts";
import { bootRealKernel, runFtraceAll, runStaticCallUpdate } from "../lib/image/real_kernel.ts";
import { callInsn, jmpInsn } from "../lib/ftrace/batch.ts";
import { XOR5RAX } from "../lib/static_call/static_call.ts";
import { formatKernelReport, kernelReport } from "../lib/image/report.ts";
import { checkBoundaries, type TextWalk, walkText } from "../lib/image/walk.ts";

async function findKernel(): Promise<FetchedKernel | string> {
  const have = cachedKernel();
  if (have !== null) return have;
  try {
    await new Deno.Command("apt-get", { args: ["--version"], stdout: "null" }).output();
  } catch {
    return "apt-get is missing and no kernel is cached (deno task fetch-kernel)";
  }
  try {
    return await fetchKernel({ bzImage: true });
  } catch (e) {
    return `fetching the Debian kernel failed: ${(e as Error).message}`;
  }
}

const found = await findKernel();
const skip = typeof found === "string" ? found : null;
if (skip !== null) console.warn(`SKIPPED: the real-kernel tests, because ${skip}`);
const kernel = typeof found === "string" ? null : found;
const noBz = kernel !== null && (kernel.vmlinuz === undefined || kernel.systemMap === undefined);
if (noBz) {
  console.warn(
    "SKIPPED: the bzImage test, because the cache has no vmlinuz/System.map (deno task fetch-kernel --bzimage)",
  );
}

let image: KernelImage | null = null;
let walks: TextWalk[] | null = null;
function load(): KernelImage {
  image ??= loadKernelImage(Deno.readFileSync(kernel!.vmlinux), { name: kernel!.vmlinux });
  return image;
}
function walked(): TextWalk[] {
  walks ??= [walkText(load(), ".text"), walkText(load(), ".init.text")];
  return walks;
}

Deno.test({
  name: "loadKernelImage() loads Debian's vmlinux with every ftrace and static_call site checked",
  ignore: skip !== null,
  fn() {
    const img = load();
    assert.match(img.version, /^Linux version 6\.\d+\.\d+-\d+-cloud-amd64 /);
    assert.ok(img.functions.length > 40_000, `${img.functions.length} functions`);
    // Every site was checked to hold call __fentry__ by the loader.
    assert.ok(img.ftraceSites.length > 35_000, `${img.ftraceSites.length} ftrace sites`);
    assert.ok(
      img.staticCallSites.length > 3_000,
      `${img.staticCallSites.length} static_call sites`,
    );
    assert.ok(img.staticCallKeys.length > 500);
    const key = img.staticCallKeys.find((k) => k.name === "preempt_schedule_notrace");
    assert.ok(key !== undefined && key.sites.length > 500);
    for (const s of [".text", ".rodata", ".data", ".init.text", ".init.data"]) {
      assert.ok(img.sections.has(s), s);
    }
  },
});

Deno.test({
  name: "walkText() walks Debian's whole .text without losing an instruction boundary",
  ignore: skip !== null,
  fn() {
    const img = load();
    const [text, init] = walked();
    assert.equal(text!.resyncs.length, 0);
    assert.deepEqual(text!.issues, []);
    assert.deepEqual(init!.issues, []);
    // The Xen PVH entry is 32-bit code inside the 64-bit text.
    assert.ok(text!.code32.some((c) => c.symbol === "pvh_start_xen"));
    assert.ok(text!.int3Runs > 1000 && text!.int3 > text!.code, "mostly int3 padding");
    assert.ok(text!.vex > 0 && text!.evex > 0, `VEX ${text!.vex}, EVEX ${text!.evex}`);
    assert.ok(text!.code > 2_000_000);
    const f = checkBoundaries(img, walked(), img.ftraceSites);
    assert.deepEqual(f.off, []);
    const sc = checkBoundaries(img, walked(), img.staticCallSites.map((s) => s.address));
    assert.deepEqual(sc.off, []);
  },
});

Deno.test({
  name: "runFtraceAll() traces every function of Debian's kernel in one batch on 4 CPUs and back",
  ignore: skip !== null,
  fn() {
    const img = load();
    const rk = bootRealKernel(img, walked()[0]!, { cpus: 4, seed: 1 });
    const r = runFtraceAll(rk, { workload: 32 });
    const inText = img.ftraceSites.filter((s) => img.codeSectionOf(s) === ".text").length;
    assert.equal(r.boot.nopped, img.ftraceSites.length);
    assert.equal(r.enable.sites, inText);
    assert.equal(r.disable.sites, inText);
    assert.equal(r.enable.oopses + r.disable.oopses, 0);
    assert.equal(r.restored, inText);
    assert.ok(r.workload.length > 8);
    assert.ok(r.enable.emulated > 0, "CPUs ran into sites in flux");
    assert.ok(r.enable.hits.slice(1).every((h) => h > 0), `hits ${r.enable.hits}`);
    const key = img.staticCallKeys.find((k) => k.name === "preempt_schedule_notrace")!;
    const sc = runStaticCallUpdate(rk, key, null);
    assert.ok(sc.sites > 500);
    assert.equal(sc.verified, sc.sites);
    assert.equal(sc.oopses, 0);
  },
});

Deno.test({
  name:
    "runStaticCallUpdate() moves Debian's cond_resched out of and back into the RET0 form, tail sites as jmps",
  ignore: skip !== null,
  fn() {
    const img = load();
    const rk = bootRealKernel(img, walked()[0]!, { cpus: 4, seed: 1 });
    const mem = rk.machine.memory;
    const key = img.staticCallKeys.find((k) => k.name === "cond_resched")!;
    const ret0 = img.symbols.get("__static_call_return0")!;
    const condResched = img.symbols.get("__cond_resched")!;
    assert.equal(key.target, ret0);
    // Text is mapped at its link address: the image's own bytes are there.
    assert.deepEqual(mem.readBytes(key.trampoline, 8).subarray(5), Uint8Array.of(0x0f, 0xb9, 0xcc));
    const live = key.sites.filter((s) => !s.init && img.codeSectionOf(s.address) === ".text");
    const tail = live.filter((s) => s.tail).map((s) => s.address);
    const calls = live.filter((s) => !s.tail).map((s) => s.address);
    assert.ok(tail.length > 0 && calls.length > 100, `${tail.length} tail, ${calls.length} call`);
    const out = runStaticCallUpdate(rk, key, condResched);
    assert.deepEqual([out.sites, out.tail, out.verified, out.oopses], [
      live.length,
      tail.length,
      live.length,
      0,
    ]);
    for (const s of tail) assert.deepEqual(mem.readBytes(s, 5), jmpInsn(s, condResched));
    for (const s of calls) assert.deepEqual(mem.readBytes(s, 5), callInsn(s, condResched));
    const back = runStaticCallUpdate(rk, key, ret0);
    assert.equal(back.verified, live.length);
    for (const s of calls) assert.deepEqual(mem.readBytes(s, 5), XOR5RAX);
    for (const s of tail) assert.deepEqual(mem.readBytes(s, 5), jmpInsn(s, ret0));
  },
});

Deno.test({
  name: "loadKernelImage() finds the same sites in Debian's bzImage with its System.map",
  ignore: skip !== null || noBz,
  fn() {
    const img = loadKernelImage(Deno.readFileSync(kernel!.vmlinuz!), {
      name: kernel!.vmlinuz!,
      systemMap: Deno.readTextFileSync(kernel!.systemMap!),
    });
    assert.equal(img.format, "bzImage");
    assert.deepEqual(img.ftraceSites, load().ftraceSites);
    assert.equal(img.staticCallSites.length, load().staticCallSites.length);
    assert.equal(img.version, load().version);
  },
});

Deno.test({
  name: "kernelReport() prints Debian's figures",
  ignore: skip !== null,
  fn() {
    const rec = kernelReport(load(), { cpus: 4, seed: 1 });
    const text = formatKernelReport(rec);
    assert.match(text, /ftrace sites: 3\d,\d{3} /);
    assert.match(text, /32-bit code: pvh_start_xen/);
    assert.equal(rec.ftrace.offBoundary, 0);
    assert.equal(rec.staticCall.offBoundary, 0);
    assert.equal(rec.patch?.ftrace.enable.oopses, 0);
    assert.doesNotMatch(text, /slid/);
    assert.match(text, /image at its link addresses/);
    assert.deepEqual(rec.patch?.staticCall.map((r) => [r.key, r.verified === r.sites]), [
      ["preempt_schedule_notrace", true],
      ["cond_resched", true],
      ["cond_resched", true],
    ]);
  },
});

Deno.test({
  name: "realKernelRace() finds the landed handler clean on Debian's own straddling sites",
  ignore: skip !== null,
  fn() {
    const landed = realKernelRace(load(), walked()[0]!, {
      proposal: "text-poke-emulate",
      transitions: 10,
    });
    assert.ok(landed.sites.length > 5, `${landed.sites.length} straddling sites`);
    assert.ok(landed.sites.every((s) => s.lineOffset >= 60 && s.lineOffset <= 62));
    assert.ok(landed.executions > 500);
    assert.equal(landed.skipped + landed.other + landed.crashed, 0, JSON.stringify(landed));
    const skip = realKernelRace(load(), walked()[0]!, { proposal: "nop-skip", transitions: 10 });
    assert.ok(skip.skipped > 0, "the nop-skip handler skips calls on the real sites");
  },
});

Deno.test({
  name: "realKernelRace() counts the executions of ftrace_regs_call on Debian's straddling sites",
  ignore: skip !== null,
  fn() {
    checkCallerCallOutcomes(load(), walked()[0]!, 10);
  },
});
