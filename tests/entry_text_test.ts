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
import { hexBytes } from "../lib/errors.ts";
import { gnuBytes, haveTool } from "./_gnu.ts";
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

/** Every stub: the five int3 entries, the NMI entries and the proposals' own entries. */
const STUBS = [
  ...ENTRY_VARIANTS,
  ...["nmi", "link", "fixup", "stub"].flatMap((k) => [`${k}-32`, `${k}-64`]),
];

const gnuOk = haveTool("as") && haveTool("ld") && haveTool("objcopy");
if (!gnuOk) {
  console.warn("SKIPPED: the entry stubs' GNU as oracle because as, ld or objcopy is missing");
}

/** A stub's text, origin and symbols, at the addresses both assemblers are given. */
function stubText(
  name: string,
): { text: string; bitness: 32 | 64; base: bigint; symbols: Map<string, bigint> } {
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
  return { text, bitness, base, symbols };
}

/** The same text through GNU as and ld at the same origin, with the same symbols. */
function gnuStubBytes(name: string): Uint8Array {
  const { text, bitness, base, symbols } = stubText(name);
  const sets = [...symbols].map(([k, v]) => `\t.set\t${k}, 0x${v.toString(16)}`).join("\n");
  return gnuBytes(`${sets}\n\t.text\n${text}`, bitness, base);
}

Deno.test({
  name:
    "int3EntrySource(), nmiEntrySource() and the proposals' stubs assemble to the bytes GNU as and ld give",
  ignore: !gnuOk,
  fn() {
    for (const name of STUBS) {
      const { text, bitness, base, symbols } = stubText(name);
      const ours = assemble(text, { bitness, origin: base, symbols }).bytes;
      assert.ok(ours.length > 16, `${name} is ${ours.length} bytes`);
      assert.deepEqual(hexBytes(ours), hexBytes(gnuStubBytes(name)), name);
    }
    assert.equal(STUBS.length, 13);
  },
});
