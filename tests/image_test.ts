import assert from "node:assert/strict";
import { ImageError } from "../lib/errors.ts";
import { bzImageInfo } from "../lib/image/bzimage.ts";
import { loadKernelImage } from "../lib/image/image.ts";
import { lz4LegacyDecompress } from "../lib/image/lz4.ts";
import {
  bootRealKernel,
  ftraceBoot,
  realStaticCalls,
  runFtraceAll,
  runStaticCallUpdate,
} from "../lib/image/real_kernel.ts";
import { formatKernelReport, kernelReport } from "../lib/image/report.ts";
import { realKernelRace } from "../lib/image/race.ts";
import { parseSystemMap } from "../lib/image/system_map.ts";
import { callInsn, jmpInsn } from "../lib/ftrace/batch.ts";
import { bootKernel, MODULE_AREA_LAYOUT_64 } from "../lib/kernel/kernel.ts";
import { Machine } from "../lib/machine/machine.ts";
import { Ftrace } from "../lib/ftrace/ftrace.ts";
import { checkBoundaries, walkText } from "../lib/image/walk.ts";
import {
  DATA,
  INIT_TEXT,
  lz4LegacyPayload,
  OFF,
  RODATA,
  syntheticBzImage,
  syntheticSystemMap,
  syntheticVmlinux,
  TEXT,
} from "./_synthetic_kernel.ts";
import { checkCallerCallOutcomes } from "./_real_race.ts";

const NAME = "synthetic-vmlinux";
const at = (off: number) => TEXT + BigInt(off);

function imageError(fn: () => unknown, ...parts: string[]): ImageError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof ImageError, `expected an ImageError, got ${String(caught)}`);
  for (const p of parts) assert.ok(caught.message.includes(p), `"${caught.message}" lacks "${p}"`);
  return caught;
}

Deno.test("loadKernelImage() reads the functions, ftrace sites and static_call keys of a vmlinux", () => {
  const img = loadKernelImage(syntheticVmlinux(), { name: NAME });
  assert.equal(img.format, "vmlinux");
  assert.equal(img.version, "Linux version 9.9.9-synthetic (test) #1 SMP");
  assert.equal(img.fentry, at(OFF.fentry));
  assert.deepEqual(img.ftraceSites, [
    at(OFF.funcA),
    at(OFF.funcB),
    at(OFF.funcC),
    at(OFF.funcD),
    INIT_TEXT,
  ]);
  assert.equal(img.functions.find((f) => f.name === "func_b")?.address, at(OFF.funcB));
  assert.equal(img.staticCallSites.length, 2);
  const [key] = img.staticCallKeys;
  assert.equal(key?.name, "foo");
  assert.equal(key?.key, DATA);
  assert.equal(key?.trampoline, at(OFF.tramp));
  assert.equal(key?.target, at(OFF.funcA));
  assert.deepEqual(key?.sites.map((s) => [s.address, s.tail]), [
    [at(OFF.funcB + 5), false],
    [at(OFF.funcC + 5), true],
  ]);
  assert.equal(img.describe(at(OFF.funcB + 5)), "func_b+0x5");
  assert.equal(img.codeSectionOf(INIT_TEXT), ".init.text");
});

Deno.test("loadKernelImage() names the file when the bytes are neither ELF nor bzImage", () => {
  const e = imageError(
    () => loadKernelImage(new TextEncoder().encode("#!/bin/sh\necho hi\n"), { name: "notes.txt" }),
    "notes.txt",
    "neither an ELF image nor a bzImage",
    "23 21 2f 62",
  );
  assert.equal(e.file, "notes.txt");
});

Deno.test("loadKernelImage() reports a truncated image instead of crashing", () => {
  const full = syntheticVmlinux();
  imageError(
    () => loadKernelImage(full.subarray(0, 40), { name: NAME }),
    NAME,
    "Truncated ELF header",
  );
  imageError(
    () => loadKernelImage(full.subarray(0, full.length - 100), { name: NAME }),
    NAME,
    "past the end",
  );
});

Deno.test("loadKernelImage() names a missing symbol", () => {
  const e = imageError(
    () => loadKernelImage(syntheticVmlinux({ omit: ["__stop_mcount_loc"] }), { name: NAME }),
    "symbol __stop_mcount_loc is missing",
  );
  assert.equal(e.symbol, "__stop_mcount_loc");
  imageError(
    () => loadKernelImage(syntheticVmlinux({ omit: ["__fentry__"] }), { name: NAME }),
    "__fentry__",
  );
  imageError(
    () => loadKernelImage(syntheticVmlinux({ noSymtab: true }), { name: NAME }),
    "no symbol table",
  );
});

Deno.test("loadKernelImage() rejects an __mcount_loc entry outside kernel text", () => {
  const bad = 0xffffffff82000010n; // .rodata
  const e = imageError(
    () => loadKernelImage(syntheticVmlinux({ mcount: { index: 1, address: bad } }), { name: NAME }),
    "__mcount_loc entry 1",
    "0xffffffff82000010",
    "outside kernel text",
  );
  assert.equal(e.address, bad);
});

Deno.test("loadKernelImage() rejects an ftrace site that does not hold call __fentry__", () => {
  const e = imageError(
    () =>
      loadKernelImage(
        syntheticVmlinux({ patchText: { offset: OFF.funcB, bytes: [0x0f, 0x1f, 0x44, 0, 0] } }),
        { name: NAME },
      ),
    "ftrace site 0xffffffff81000080 (func_b+0x0) holds 0f 1f 44 00 00, not call __fentry__",
  );
  assert.equal(e.address, at(OFF.funcB));
});

Deno.test("loadKernelImage() rejects a static_call site that does not call its trampoline", () => {
  // The tail-call site turned into a call: the table's TAIL flag says jmp.
  imageError(
    () =>
      loadKernelImage(syntheticVmlinux({ patchText: { offset: OFF.funcC + 5, bytes: [0xe8] } }), {
        name: NAME,
      }),
    "static_call site 0xffffffff810000c5 (func_c+0x5)",
    "not jmp __SCT__foo",
  );
  imageError(
    () => loadKernelImage(syntheticVmlinux({ omit: ["__SCT__foo"] }), { name: NAME }),
    "has no trampoline __SCT__foo",
  );
  imageError(
    () => loadKernelImage(syntheticVmlinux({ omit: ["__SCK__foo"] }), { name: NAME }),
    "which is no __SCK__ symbol",
  );
});

Deno.test("loadKernelImage() reads a bzImage's LZ4 payload with its System.map", () => {
  const vmlinux = syntheticVmlinux({ noSymtab: true });
  const bz = syntheticBzImage(lz4LegacyPayload(vmlinux));
  const info = bzImageInfo(bz, "bz");
  assert.equal(info.compression, "lz4");
  assert.equal(info.version, "9.9.9-synthetic");
  const img = loadKernelImage(bz, { name: "vmlinuz", systemMap: syntheticSystemMap() });
  assert.equal(img.format, "bzImage");
  assert.equal(img.ftraceSites.length, 5);
  assert.equal(img.staticCallSites.length, 2);
  // System.map has no sizes: up to the next text symbol, within .text.
  assert.equal(img.functionAt(at(OFF.funcA + 7))?.name, "func_a");
  assert.equal(img.functions.find((f) => f.name === "start32")?.size, OFF.funcD - OFF.start32);
  assert.equal(img.functions.find((f) => f.name === "func_d")?.size, OFF.end - OFF.funcD);
  imageError(() => loadKernelImage(bz, { name: "vmlinuz" }), "vmlinuz", "pass its System.map");
});

Deno.test("loadKernelImage() rejects a bzImage whose payload is truncated or not LZ4", () => {
  const payload = lz4LegacyPayload(syntheticVmlinux({ noSymtab: true }));
  const bz = syntheticBzImage(payload);
  imageError(
    () => loadKernelImage(bz.subarray(0, bz.length - 64), { name: "vmlinuz" }),
    "vmlinuz",
    "truncated",
  );
  const gz = payload.slice();
  gz.set([0x1f, 0x8b, 0x08, 0x00], 0);
  imageError(
    () => loadKernelImage(syntheticBzImage(gz), { name: "vmlinuz" }),
    "compressed with gzip",
    "only LZ4",
  );
  // The block claims more bytes than remain.
  const cut = payload.slice();
  new DataView(cut.buffer).setUint32(4, 0x7fffffff, true);
  imageError(() => loadKernelImage(syntheticBzImage(cut), { name: "vmlinuz" }), "claims");
});

Deno.test("lz4LegacyDecompress() copies matches and checks the size", () => {
  // "abcd", then a match of 8 at offset 4, then the literal "x".
  const frame = Uint8Array.of(
    0x02,
    0x21,
    0x4c,
    0x18,
    9,
    0,
    0,
    0,
    0x44,
    0x61,
    0x62,
    0x63,
    0x64,
    4,
    0,
    0x10,
    0x78,
  );
  const out = lz4LegacyDecompress(frame, 13, "t");
  assert.equal(new TextDecoder().decode(out), "abcdabcdabcdx");
  imageError(() => lz4LegacyDecompress(frame, 14, "t"), "decompressed to 13 bytes");
  imageError(() => lz4LegacyDecompress(frame.subarray(4), 13, "t"), "legacy magic");
});

Deno.test("parseSystemMap() rejects Debian's placeholder and malformed lines", () => {
  imageError(
    () =>
      parseSystemMap(
        "ffffffffffffffff B The real System.map is in the linux-image-x-dbg package\n",
        "map",
      ),
    "no symbols",
  );
  imageError(() => parseSystemMap("ffffffff81000000 T _text\nbogus\n", "map"), "line 2");
  assert.equal(parseSystemMap("ffffffff81000000 T _text\n", "map")[0]?.address, TEXT);
});

Deno.test("walkText() finds int3 padding, VEX, EVEX and 32-bit code, and keeps every site on a boundary", () => {
  const img = loadKernelImage(syntheticVmlinux(), { name: NAME });
  const w = walkText(img);
  assert.equal(w.vex, 1);
  assert.equal(w.evex, 1);
  assert.deepEqual(w.code32.map((c) => c.symbol), ["start32"]);
  assert.deepEqual(w.issues, []);
  assert.ok(w.int3Runs >= 5 && w.int3 > 700, `${w.int3Runs} runs, ${w.int3} int3`);
  const init = walkText(img, ".init.text");
  const f = checkBoundaries(img, [w, init], img.ftraceSites);
  assert.equal(f.checked, 5);
  assert.deepEqual(f.off, []);
  // A "site" in the middle of an instruction is reported.
  const off = checkBoundaries(img, [w, init], [at(OFF.funcA + 1)]);
  assert.equal(off.off[0]?.where, "func_a+0x1");
});

Deno.test("walkText() restarts at a function symbol the sweep stepped over", () => {
  // A mov with imm32 starting 2 bytes before func_b swallows its first byte.
  const img = loadKernelImage(
    syntheticVmlinux({ patchText: { offset: OFF.funcB - 2, bytes: [0xb8] } }),
    { name: NAME },
  );
  const w = walkText(img);
  assert.deepEqual(w.resyncs.map((r) => r.symbol), ["func_b"]);
  assert.equal(w.starts[OFF.funcB], 1);
});

Deno.test("runFtraceAll() enables and disables every .text site in one batch on 4 CPUs", () => {
  const img = loadKernelImage(syntheticVmlinux(), { name: NAME });
  const rk = bootRealKernel(img, walkText(img), { cpus: 4, seed: 3 });
  const r = runFtraceAll(rk, { workload: 8 });
  assert.deepEqual(r.boot, { ...r.boot, nopped: 5, text: 4, init: 1 });
  assert.deepEqual(r.workload, ["func_a", "func_d"]);
  assert.equal(r.enable.sites, 4);
  assert.equal(r.enable.straddling, 1);
  assert.equal(r.enable.oopses, 0);
  assert.equal(r.disable.oopses, 0);
  // CPUs 1-3 called func_a while it was traced: the tracer saw them.
  assert.ok(r.enable.hits.slice(1).every((h) => h > 0), `hits ${r.enable.hits}`);
  assert.equal(r.enable.hits[0], 0);
  assert.equal(r.restored, 4);
  const phases = r.enable.phases.filter((p) => p.sites === 4).map((p) => p.phase);
  assert.deepEqual(phases, ["int3", "sync1", "tail", "sync2", "head", "sync3"]);
});

Deno.test("ftraceBoot() refuses a site whose bytes changed after loading", () => {
  const img = loadKernelImage(syntheticVmlinux(), { name: NAME });
  const rk = bootRealKernel(img, walkText(img), { cpus: 2 });
  rk.machine.memory.writeBytes(at(OFF.funcC), [0x90]);
  imageError(
    () => ftraceBoot(rk),
    "ftrace_init: site 0xffffffff810000c0 (func_c)",
    "not call __fentry__",
  );
});

Deno.test("bootRealKernel() maps the image at its link addresses and the model in the module area", () => {
  const img = loadKernelImage(syntheticVmlinux(), { name: NAME });
  const rk = bootRealKernel(img, walkText(img), { cpus: 2 });
  const k = rk.kernel;
  assert.equal(k.layout.textBase, MODULE_AREA_LAYOUT_64.textBase);
  assert.equal(k.layout.dataBase, MODULE_AREA_LAYOUT_64.dataBase);
  for (const [name, s] of img.sections) {
    assert.deepEqual(rk.machine.memory.readBytes(s.addr, 16), s.bytes.subarray(0, 16), name);
  }
  assert.deepEqual(rk.mapped.map((m) => [m.name, m.address]), [
    ...[...img.sections.values()].map((s) => [s.name, s.addr]),
  ]);
  // The model's natives and entry are outside the image; the image's .text is kernel text
  // (alias, code map) and stays read-only through its own mapping.
  assert.ok(k.symbol("int3") >= MODULE_AREA_LAYOUT_64.textBase);
  assert.equal(k.aliasOf(at(OFF.funcA)), at(OFF.funcA) + k.layout.textAlias - k.layout.textBase);
  assert.equal(k.code.isBoundary(at(OFF.funcA + 5)), true);
  assert.equal(k.code.isBoundary(at(OFF.funcA + 6)), false);
  assert.deepEqual(k.textRanges.map((r) => [r.start, r.size]), [[TEXT, OFF.end]]);
  assert.throws(() => k.mem.writeBytes(at(OFF.funcA), Uint8Array.of(0x90)), /read-only/);
});

Deno.test("Kernel.mapText() refuses a range over mapped memory, mapping nothing", () => {
  const img = loadKernelImage(syntheticVmlinux(), { name: NAME });
  const rk = bootRealKernel(img, walkText(img), { cpus: 1 });
  const k = rk.kernel;
  const pages = rk.machine.memory.pages.size;
  // Over the image's .rodata, and over the model's own text.
  assert.throws(() => k.mapText(RODATA, new Uint8Array(4096).fill(0xcc)), /overlaps mapped memory/);
  assert.throws(() => k.mapText(k.layout.textBase, Uint8Array.of(0xc3)), /overlaps mapped memory/);
  assert.throws(() => k.mapText(TEXT + 0x10000n + 1n, Uint8Array.of(0xc3)), /not page aligned/);
  assert.equal(rk.machine.memory.pages.size, pages);
  assert.equal(k.textRanges.length, 1);
  // Text the kernel does not own is not text_poke's to write.
  assert.throws(() => k.aliasOf(RODATA), /is not kernel text/);
});

Deno.test("bootKernel() keeps its default layout when no layout is given", () => {
  const k = bootKernel(new Machine({ bitness: 64 }), { entry: "64-gap" });
  assert.equal(k.layout.textBase, 0xffffffff81000000n);
  assert.equal(k.layout.textAlias, 0xffffffffc0000000n);
  assert.equal(k.layout.dataBase, 0xffffffff82000000n);
  assert.equal(k.symbol("int3") - k.layout.textBase, 0x1000n);
});

Deno.test("runStaticCallUpdate() moves a real key's call site and keeps its tail call a jmp", () => {
  const img = loadKernelImage(syntheticVmlinux(), { name: NAME });
  const rk = bootRealKernel(img, walkText(img), { cpus: 4 });
  const mem = rk.machine.memory;
  const key = img.staticCallKeys[0]!;
  const callSite = at(OFF.funcB + 5);
  const tailSite = at(OFF.funcC + 5);
  // static_call_init: both sites go straight to the key's function (func_a).
  realStaticCalls(rk);
  assert.deepEqual(mem.readBytes(callSite, 5), callInsn(callSite, at(OFF.funcA)));
  assert.deepEqual(mem.readBytes(tailSite, 5), jmpInsn(tailSite, at(OFF.funcA)));
  const r = runStaticCallUpdate(rk, key, at(OFF.funcD));
  assert.deepEqual([r.sites, r.tail, r.changed, r.verified, r.oopses], [2, 1, 2, 2, 0]);
  assert.deepEqual(mem.readBytes(key.trampoline, 5), jmpInsn(key.trampoline, at(OFF.funcD)));
  assert.deepEqual(mem.readBytes(callSite, 5), callInsn(callSite, at(OFF.funcD)));
  // The tail call stays a tail call: a call here would return into func_c's int3 padding.
  assert.deepEqual(mem.readBytes(tailSite, 5), jmpInsn(tailSite, at(OFF.funcD)));
  const off = runStaticCallUpdate(rk, key, null);
  assert.equal(off.to, "NULL");
  assert.equal(off.from, "func_d");
  assert.equal(off.verified, 2);
  assert.deepEqual(mem.readBytes(callSite, 5), Uint8Array.of(0x0f, 0x1f, 0x44, 0x00, 0x00));
  assert.deepEqual(mem.readBytes(tailSite, 5), Uint8Array.of(0xc3, 0xcc, 0xcc, 0xcc, 0xcc));
  assert.deepEqual(mem.readBytes(key.trampoline, 5), Uint8Array.of(0xc3, 0xcc, 0xcc, 0xcc, 0xcc));
});

Deno.test("kernelReport() gives the figures as a record and as text", () => {
  const rec = kernelReport(syntheticVmlinux(), { name: NAME, cpus: 2, workload: 4 });
  assert.equal(rec.ftrace.sites, 5);
  assert.equal(rec.ftrace.init, 1);
  assert.equal(rec.ftrace.straddling, 1);
  assert.equal(rec.staticCall.sites, 2);
  assert.equal(rec.staticCall.tail, 1);
  assert.equal(rec.patch?.ftrace.enable.sites, 4);
  assert.deepEqual(rec.patch?.staticCall.map((r) => [r.key, r.to, r.sites, r.verified]), [
    ["foo", "NULL", 2, 2],
  ]);
  assert.equal(rec.patch?.modelText, "0xffffffffc0000000");
  assert.doesNotThrow(() => JSON.stringify(rec));
  const text = formatKernelReport(rec);
  assert.match(text, /ftrace sites: 5 \(4 in \.text, 1 in \.init\.text\)/);
  assert.match(text, /32-bit code: start32/);
});

Deno.test("realKernelRace() runs the proposals on an image's own straddling sites", () => {
  const img = loadKernelImage(syntheticVmlinux(), { name: NAME });
  const walk = walkText(img);
  const landed = realKernelRace(img, walk, { proposal: "text-poke-emulate", transitions: 6 });
  assert.deepEqual(landed.sites, [{
    address: "0xffffffff810001fc",
    where: "func_d",
    lineOffset: 60,
  }]);
  assert.equal(landed.note, "");
  assert.equal(landed.transitions, 6);
  assert.ok(landed.executions > 100, `${landed.executions} executions`);
  assert.equal(landed.skipped + landed.other + landed.crashed, 0);
  assert.ok(landed.new > 0 && landed.old > 0);
  // The failure the landed handler prevents: jumping over the site skips calls.
  const skip = realKernelRace(img, walk, { proposal: "nop-skip", transitions: 6 });
  assert.ok(skip.skipped > 0, `nop-skip: ${skip.skipped} skipped`);
});

Deno.test("realKernelRace() classifies the executions of ftrace_regs_call nested in the fentry ones", () => {
  const img = loadKernelImage(syntheticVmlinux(), { name: NAME });
  checkCallerCallOutcomes(img, walkText(img), 6);
});

Deno.test("Ftrace.addSites() records sorted sites at once and refuses unsorted or repeated ones", () => {
  const k = bootKernel(new Machine({ bitness: 64 }), { entry: "64-gap" });
  const ft = new Ftrace(k);
  ft.addSite(0x2000n);
  assert.throws(() => ft.addSites([0x1000n, 0x3000n, 0x3000n]), /site 2 at 0x3000 repeats/);
  assert.throws(() => ft.addSites([0x1000n, 0x900n]), /comes before/);
  assert.deepEqual(ft.sites, [0x2000n]);
  // Merged with what is there; a site already recorded is kept once.
  ft.addSites([0x1000n, 0x2000n, 0x3000n]);
  assert.deepEqual(ft.sites, [0x1000n, 0x2000n, 0x3000n]);
  ft.addSites([0x4000n, 0x5000n]);
  assert.deepEqual(ft.sites, [0x1000n, 0x2000n, 0x3000n, 0x4000n, 0x5000n]);
});
