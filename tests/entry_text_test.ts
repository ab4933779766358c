// The register save/restore text shared by the kernel's int3/NMI entries and the
// proposals' own int3 entries (lib/kernel/entry.ts, lib/proposals/push.ts): it must put
// every register where pt_regs says, and sharing it must not change one byte of any stub.
import assert from "node:assert/strict";
import {
  ENTRY_VARIANTS,
  int3EntrySource,
  nmiEntrySource,
  restoreRegsText,
  saveRegsText,
} from "../lib/kernel/entry.ts";
import { PT_REGS_FIELDS_32, PT_REGS_FIELDS_64 } from "../lib/kernel/pt_regs.ts";
import { fixupEntrySource, linkEntrySource, stubSource } from "../lib/proposals/push.ts";
import { assemble } from "../lib/x86/assemble.ts";
import { disassemble } from "../lib/x86/disassemble.ts";

/** The general-register part of pt_regs (below orig_ax), lowest address first. */
function savedFields(bitness: 32 | 64): string[] {
  const all: readonly string[] = bitness === 64 ? PT_REGS_FIELDS_64 : PT_REGS_FIELDS_32;
  return all.slice(0, all.indexOf("orig_ax"));
}

/** The AT&T register a pt_regs field is saved from (`bx` -> `%rbx` / `%ebx`, `r8` -> `%r8`). */
function regOf(field: string, bitness: 32 | 64): string {
  if (/^r\d+$/.test(field)) return `%${field}`;
  return `%${bitness === 64 ? "r" : "e"}${field}`;
}

/** The x86-32 segment slots hold constants: `__USER_DS` in ds/es, 0 in fs/gs. */
const SEGMENT_IMM: Record<string, string> = { ds: "$0x7b", es: "$0x7b", fs: "$0x0", gs: "$0x0" };

function listing(text: string, bitness: 32 | 64): string[] {
  return disassemble(assemble(text, { bitness }).bytes, { bitness }).map((l) => l.text);
}

for (const bitness of [64, 32] as const) {
  Deno.test(`saveRegsText(${bitness}) pushes every register so that it lands in its pt_regs slot`, () => {
    // Pushes go downwards: the last push is the lowest field (bx / r15).
    const expected = savedFields(bitness).reverse().map((f) =>
      `push ${SEGMENT_IMM[f] !== undefined && bitness === 32 ? SEGMENT_IMM[f] : regOf(f, bitness)}`
    );
    const got = listing(saveRegsText(bitness), bitness).filter((t) => t !== "cld");
    assert.deepEqual(got, expected);
  });

  Deno.test(`restoreRegsText(${bitness}) reloads every register from its slot and stops at orig_ax`, () => {
    const pops = savedFields(bitness)
      .filter((f) => !(bitness === 32 && f in SEGMENT_IMM))
      .map((f) => `pop ${regOf(f, bitness)}`);
    // x86-32 skips the four segment slots (16 bytes); orig_ax is left for the caller.
    const expected = bitness === 32 ? [...pops, "add $0x10,%esp"] : pops;
    assert.deepEqual(listing(restoreRegsText(bitness), bitness), expected);
  });
}

/**
 * SHA-256 of the bytes each stub assembles to, at the origins and external addresses of
 * {@link assembleStub}, recorded from the stubs as they were written before the save and
 * restore sequences were shared. To regenerate after an intended change to a stub, print
 * `await sha256(assembleStub(name))` for each name and paste the values.
 */
const STUB_SHA256: Readonly<Record<string, string>> = {
  "64-nogap": "b222f43bbaf35a34b6dbebfcdcc8b32cb803ff6ca3eb54257ec006f0ca94f0a3",
  "64-gap": "0ebaf12c5e4010975eec7fa17b9b6e91647eb32ddb187c356499713b907230d1",
  "32-plain": "b92e9238b1b47b2d2c5dca5f3336bb457eeede4210b3504770749c14fbdbfa66",
  "32-seed": "64158aee818305a4baed88f84d1cff34e21ef195e4132c8a8001785029465822",
  "32-fixup": "b9eafcf0ef48255629ded2204f2df5ce3b2a75b601e9994df2d5d043aec92978",
  "nmi-32": "e0e8dc91242c1cd59a708caa10ec2e6ef3e62726329fd8feeb97d61dc17223af",
  "link-32": "c4a62700349c34cf380303a3a5755ce3716556386a69ff480be570e9fc3a1fe1",
  "fixup-32": "b229a8a253f07c2961ca75d5e3e180176432c34acb896ea96adfc135d096307c",
  "stub-32": "0c9261cce6c465a87aa4b68bc88c94a9de1f0827741c1ca3c1880db8a2c444a5",
  "nmi-64": "44a5d1b0fc97b90bfc9a7ac1d410b8c99b20eefd742bec0e982a34f7437ba1ac",
  "link-64": "899309d09afc612a4c35bfaffe9a7b9b09cd6e86788fa78dde65c594506391ef",
  "fixup-64": "1ad0ff6cc413226778810bc4a86516a4e4d55b68df581139a256ff9c7cb3eb4d",
  "stub-64": "cd288681a247bdd0222f00d3e7fe1ac7986bef8c10142253f77d5f14c089fb31",
};

function assembleStub(name: string): Uint8Array {
  const bitness = name.startsWith("64") || name.endsWith("64") ? 64 : 32;
  const base = bitness === 64 ? 0xffffffff81000000n : 0xc1000000n;
  const symbols = new Map<string, bigint>([
    ["do_int3", base + 0x1000n],
    ["do_kernel_int3", base + 0x2000n],
    ["do_nmi", base + 0x3000n],
    ["ftrace_regs_caller", base + 0x4000n],
    ["ftrace_ops_list_func", base + 0x5000n],
  ]);
  const kind = name.replace(/-(32|64)$/, "");
  let text: string;
  if ((ENTRY_VARIANTS as readonly string[]).includes(name)) {
    const src = int3EntrySource(name as (typeof ENTRY_VARIANTS)[number]);
    text = src.text;
    for (const [k, v] of src.symbols) symbols.set(k, v);
  } else if (kind === "nmi") {
    const src = nmiEntrySource(bitness);
    text = src.text;
    for (const [k, v] of src.symbols) symbols.set(k, v);
  } else if (kind === "link") {
    text = linkEntrySource(bitness);
  } else if (kind === "fixup") {
    text = fixupEntrySource(bitness);
  } else {
    text = stubSource(bitness);
  }
  return assemble(text, { bitness, origin: base, symbols }).bytes;
}

async function sha256(bytes: Uint8Array): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", new Uint8Array(bytes)));
  return [...d].map((b) => b.toString(16).padStart(2, "0")).join("");
}

Deno.test("int3EntrySource(), nmiEntrySource() and the proposals' stubs assemble to the bytes recorded before the save/restore text was shared", async () => {
  for (const [name, want] of Object.entries(STUB_SHA256)) {
    assert.equal(await sha256(assembleStub(name)), want, `${name} changed`);
  }
});
