import assert from "node:assert/strict";
import { ExperimentError, ImageError } from "../lib/errors.ts";
import { loadKernelImage } from "../lib/image/image.ts";
import { realKernelRace } from "../lib/image/race.ts";
import { walkText } from "../lib/image/walk.ts";
import {
  DATA,
  lz4LegacyPayload,
  RODATA,
  syntheticBzImage,
  syntheticSystemMap,
  syntheticVmlinux,
  TEXT,
} from "./_synthetic_kernel.ts";

const HEADER_VERSION = "9.9.9-synthetic";
const BANNER = "Linux version 9.9.9-synthetic (test) #1 SMP";

function caught(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  assert.fail("expected a throw");
}

function imageError(fn: () => unknown, ...parts: string[]): ImageError {
  const e = caught(fn);
  assert.ok(e instanceof ImageError, `expected an ImageError, got ${String(e)}`);
  for (const p of parts) assert.ok(e.message.includes(p), `"${e.message}" lacks "${p}"`);
  return e;
}

/** The synthetic bzImage (a stripped payload) and its System.map. */
function bz(vmlinux = syntheticVmlinux({ noSymtab: true })): Uint8Array {
  return syntheticBzImage(lz4LegacyPayload(vmlinux), HEADER_VERSION);
}

/** Every address of a System.map moved by `by`. */
function shifted(map: string, by: bigint): string {
  return map.replace(
    /^([0-9a-f]+) /gm,
    (_, a: string) => `${(BigInt("0x" + a) + by).toString(16)} `,
  );
}

/** The map with `linux_banner` moved to `address`. */
function bannerAt(address: bigint): string {
  return syntheticSystemMap().replace(
    /^\S+ R linux_banner$/m,
    `${address.toString(16)} D linux_banner`,
  );
}

/** Renames a section in the ELF's section-name table (same length). */
function renameSection(elf: Uint8Array, from: string, to: string): Uint8Array {
  assert.equal(from.length, to.length);
  const out = elf.slice();
  const needle = new TextEncoder().encode(`\0${from}\0`);
  for (let i = 0; i + needle.length <= out.length; i++) {
    if (needle.every((b, j) => out[i + j] === b)) {
      out.set(new TextEncoder().encode(to), i + 1);
      return out;
    }
  }
  throw new Error(`no section name ${from}`);
}

Deno.test("loadKernelImage() refuses a System.map whose _stext is not the image's .text address", () => {
  const map = shifted(syntheticSystemMap(), 0x200000n);
  const e = imageError(
    () => loadKernelImage(bz(), { name: "vmlinuz", systemMap: map }),
    "vmlinuz: System.map does not match the image: _stext 0xffffffff81200000 but .text is at 0xffffffff81000000",
  );
  assert.equal(e.symbol, "_stext");
  // Not blamed on the image's tables.
  assert.ok(!e.message.includes("ftrace site") && !e.message.includes("__mcount_loc"));
});

Deno.test("loadKernelImage() checks _text before _stext and names the map given", () => {
  const map = `${(TEXT - 0x1000n).toString(16)} T _text\n` + syntheticSystemMap();
  imageError(
    () =>
      loadKernelImage(bz(), {
        name: "vmlinuz",
        systemMap: map,
        systemMapName: "boot/System.map-9.9.9",
      }),
    "System.map boot/System.map-9.9.9 does not match the image: _text 0xffffffff80fff000",
  );
  // A matching _text loads.
  const ok = `${TEXT.toString(16)} T _text\n` + syntheticSystemMap();
  assert.equal(
    loadKernelImage(bz(), { name: "vmlinuz", systemMap: ok }).ftraceSites.length,
    5,
  );
});

Deno.test("loadKernelImage() names the System.map, not the kernel, in the map's syntax errors", () => {
  const map = syntheticSystemMap() + "zzz\n";
  const line = syntheticSystemMap().split("\n").length;
  const named = imageError(
    () => loadKernelImage(bz(), { name: "vmlinuz", systemMap: map, systemMapName: "maps/S.map" }),
    `maps/S.map: line ${line} is not "address type name": zzz`,
  );
  assert.equal(named.file, "maps/S.map");
  const dflt = imageError(() => loadKernelImage(bz(), { name: "vmlinuz", systemMap: map }));
  assert.equal(dflt.file, "System.map");
  assert.ok(!dflt.message.includes("vmlinuz"), dflt.message);
});

Deno.test("loadKernelImage() reads linux_banner from the section that holds it", () => {
  // A banner in .text padding (the map says so): read there, not at the same offset of .rodata.
  const at = 0x300;
  const text = new TextEncoder().encode("Linux version 7.7.7-moved #2\n\0");
  const vmlinux = syntheticVmlinux({ noSymtab: true, patchText: { offset: at, bytes: [...text] } });
  const img = loadKernelImage(bz(vmlinux), {
    name: "vmlinuz",
    systemMap: bannerAt(TEXT + BigInt(at)),
  });
  assert.equal(img.version, "Linux version 7.7.7-moved #2");
  // The vmlinux's own banner in .rodata still reads.
  assert.equal(loadKernelImage(syntheticVmlinux(), { name: "vmlinux" }).version, BANNER);
});

Deno.test("loadKernelImage() keeps the bzImage header's version when linux_banner holds no banner", () => {
  for (const address of [DATA, DATA + 8n, RODATA + 0x20n]) {
    const img = loadKernelImage(bz(), { name: "vmlinuz", systemMap: bannerAt(address) });
    assert.equal(img.version, HEADER_VERSION, `linux_banner at ${address.toString(16)}`);
  }
  // linux_banner outside every loaded section: not an error, the header's version.
  const far = loadKernelImage(bz(), { name: "vmlinuz", systemMap: bannerAt(TEXT + 0x10000000n) });
  assert.equal(far.version, HEADER_VERSION);
});

Deno.test("loadKernelImage() loads an image without .rodata whose banner is elsewhere", () => {
  // No .rodata (renamed away): the static_call table there goes too.
  const vmlinux = renameSection(syntheticVmlinux({ noSymtab: true }), ".rodata", ".rodatx");
  const map = bannerAt(DATA).split("\n").filter((l) => !l.includes("_static_call_sites")).join(
    "\n",
  );
  const img = loadKernelImage(bz(vmlinux), { name: "vmlinuz", systemMap: map });
  assert.equal(img.sections.has(".rodata"), false);
  assert.equal(img.version, HEADER_VERSION);
  assert.equal(img.ftraceSites.length, 5);
});

Deno.test("realKernelRace() refuses options it cannot run", () => {
  const img = loadKernelImage(syntheticVmlinux(), { name: "synthetic" });
  const walk = walkText(img);
  const cases: [Record<string, number>, string][] = [
    [{ cpus: 1 }, "cpus is 1; it needs at least 2"],
    [{ cpus: 0 }, "cpus is 0; it needs at least 2"],
    [{ cpus: 2.5 }, "cpus is 2.5"],
    [{ transitions: -1 }, "transitions is -1; it must be a whole number, 0 or more"],
    [{ transitions: 1.5 }, "transitions is 1.5"],
    [{ sites: -1 }, "sites is -1; it must be a whole number, 0 or more"],
    [{ sites: 0.5 }, "sites is 0.5"],
  ];
  for (const [opts, want] of cases) {
    const e = caught(() => realKernelRace(img, walk, { proposal: "gap-plain-offset", ...opts }));
    assert.ok(e instanceof ExperimentError, `${JSON.stringify(opts)}: ${String(e)}`);
    assert.ok(e.message.includes(want), `"${e.message}" lacks "${want}"`);
  }
});

Deno.test("realKernelRace() says sites: 0 raced none of the image's straddling sites", () => {
  const img = loadKernelImage(syntheticVmlinux(), { name: "synthetic" });
  const r = realKernelRace(img, walkText(img), { proposal: "gap-plain-offset", sites: 0 });
  assert.equal(r.executions, 0);
  assert.deepEqual(r.sites, []);
  assert.equal(r.note, "sites is 0: none of the image's 1 straddling fentry sites was raced");
  const none = realKernelRace(img, walkText(img), {
    proposal: "gap-plain-offset",
    transitions: 0,
    cpus: 2,
  });
  assert.equal(none.transitions, 0);
  assert.equal(none.note, "transitions is 0: the sites were never patched");
});
