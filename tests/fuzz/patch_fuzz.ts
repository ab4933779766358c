/**
 * Patching-API fuzzing: random text_poke_bp batches, good and bad (addresses inside or
 * outside the text, on or off instruction boundaries, any length, stale or right
 * expected bytes, any order), against a booted kernel. Each batch must either be refused
 * with a {@link PatchError} that names an address and leaves the machine's state hash
 * unchanged, or land completely (every site holds its new bytes, no batch in flight).
 *
 * @module
 */

import { hexAddr, hexBytes, PatchError } from "../../lib/errors.ts";
import { Machine } from "../../lib/machine/machine.ts";
import { bootKernel, type Kernel } from "../../lib/kernel/kernel.ts";
import { NOP2, nop5 } from "../../lib/kernel/constants.ts";
import type { PokeSite } from "../../lib/kernel/text_poke.ts";
import { callInsn, jmpInsn } from "../../lib/ftrace/batch.ts";
import { insnLength } from "../../lib/x86/decode.ts";
import { describeError } from "./exec_fuzz.ts";
import type { Rng } from "./prng.ts";
import { stateHash } from "./state_hash.ts";

/** A kernel with a stretch of mixed-length instructions to patch. */
export interface PatchBed {
  /** The kernel. */
  k: Kernel;
  /** Start of the patchable text. */
  start: bigint;
  /** Its bytes. */
  length: number;
  /** Instruction starts in it. */
  starts: bigint[];
}

const BODY = `
patch_bed:
	call patch_target
	.byte 0x0f, 0x1f, 0x44, 0x00, 0x00
	jmp 1f
1:	xchg %ax, %ax
	nop
	int3
	ret
	movl $0x12345678, %eax
	jne 1b
	call patch_target
	.byte 0x3e, 0x8d, 0x74, 0x26, 0x00
	jmp patch_target
	ret
patch_target:
	ret
`;

/**
 * Boots a kernel with the patch bed loaded.
 *
 * @param bitness Mode.
 * @returns The bed.
 */
export function makePatchBed(bitness: 32 | 64): PatchBed {
  const k = bootKernel(new Machine({ bitness }), { entry: bitness === 64 ? "64-gap" : "32-fixup" });
  const labels = k.loadText(BODY);
  const start = labels.get("patch_bed")!;
  const end = labels.get("patch_target")! + 1n;
  const length = Number(end - start);
  const bytes = k.mem.readBytes(start, length);
  const starts: bigint[] = [];
  for (let off = 0; off < length;) {
    starts.push(start + BigInt(off));
    off += Math.max(1, insnLength(bytes, off, bitness));
  }
  return { k, start, length, starts };
}

function site(rng: Rng, bed: PatchBed): PokeSite {
  const k = bed.k;
  let address: bigint;
  switch (rng.int(8)) {
    case 0:
      address = bed.start + BigInt(rng.int(bed.length)); // anywhere, maybe mid-instruction
      break;
    case 1:
      address = rng.pick([
        k.layout.dataBase,
        k.layout.userText,
        k.layout.textAlias,
        k.layout.textBase + BigInt(k.layout.textSize) - 2n,
        bed.start + BigInt(bed.length) + BigInt(rng.int(64)),
      ]);
      break;
    default:
      address = rng.pick(bed.starts);
  }
  const target = bed.start + BigInt(bed.length - 1);
  let bytes: Uint8Array;
  switch (rng.int(9)) {
    case 0:
    case 1:
      try {
        bytes = rng.chance(0.5)
          ? callInsn(address, target, k.bitness)
          : jmpInsn(address, target, k.bitness);
      } catch {
        bytes = nop5(k.bitness); // address far from the text: no rel32 reaches it
      }
      break;
    case 2:
      bytes = nop5(k.bitness);
      break;
    case 3:
      bytes = NOP2.slice();
      break;
    case 4:
      bytes = Uint8Array.of(0xcc);
      break;
    case 5:
      bytes = Uint8Array.of(0xc3);
      break;
    case 6:
      bytes = Uint8Array.of(0xeb, rng.int(256));
      break;
    case 7:
      bytes = rng.bytes(rng.pick([0, 1, 2, 3, 4, 5, 6, 7, 16]));
      break;
    default:
      bytes = Uint8Array.of(0x0f, 0x80 + rng.int(16), 0, 0, 0, 0);
  }
  const s: PokeSite = { address, bytes };
  const r = rng.int(4);
  if (r === 0 || r === 1) {
    try {
      s.old = k.mem.readBytes(address, bytes.length);
      if (r === 1 && s.old.length > 0) s.old[rng.int(s.old.length)]! ^= 1 + rng.int(255);
    } catch {
      s.old = rng.bytes(bytes.length);
    }
  }
  return s;
}

/**
 * Makes one random batch against a bed.
 *
 * @param rng The generator.
 * @param bed The bed.
 * @returns 0–4 sites, sorted most of the time.
 */
export function generateBatch(rng: Rng, bed: PatchBed): PokeSite[] {
  const n = rng.pick([0, 1, 1, 1, 2, 2, 3, 4]);
  const sites: PokeSite[] = [];
  for (let i = 0; i < n; i++) sites.push(site(rng, bed));
  if (rng.chance(0.8)) {
    sites.sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : 0));
  }
  return sites;
}

/**
 * Applies a batch and checks the all-or-nothing contract.
 *
 * @param bed The bed (its kernel changes when the batch lands).
 * @param sites The batch.
 * @returns Problems (empty: the contract held) and whether it landed.
 */
export function checkBatch(
  bed: PatchBed,
  sites: PokeSite[],
): { problems: string[]; landed: boolean } {
  const k = bed.k;
  const hash = () => stateHash(k.machine, { patcher: k.patcher, other: k.events.length });
  const before = hash();
  const problems: string[] = [];
  const desc = sites.map((s) =>
    `${hexAddr(s.address)}:${hexBytes(s.bytes)}${s.old ? `(old ${hexBytes(s.old)})` : ""}`
  ).join(", ");
  try {
    k.runPatch(k.textPokeBpBatch(sites));
  } catch (e) {
    if (!(e instanceof PatchError)) {
      problems.push(`batch [${desc}] threw ${describeError(e)}`);
    } else if (!/0x[0-9a-f]+/.test(e.message) && !/in progress/.test(e.message)) {
      problems.push(`batch [${desc}] refused without naming an address: ${e.message}`);
    }
    if (hash() !== before) {
      problems.push(`batch [${desc}] refused (${String(e)}) but changed state`);
    }
    if (k.patcher.inProgress) problems.push(`batch [${desc}] refused but left a batch in flight`);
    return { problems, landed: false };
  }
  for (const s of sites) {
    const now = k.mem.readBytes(s.address, s.bytes.length);
    if (hexBytes(now) !== hexBytes(s.bytes)) {
      problems.push(`batch [${desc}] landed but ${hexAddr(s.address)} holds ${hexBytes(now)}`);
    }
  }
  if (k.patcher.inProgress) problems.push(`batch [${desc}] landed but is still in flight`);
  return { problems, landed: true };
}

/**
 * One patch-fuzz case: a fresh kernel (mode from the seed) and a sequence of batches,
 * each checked with {@link checkBatch}. Self-contained, so `(seed)` replays it.
 *
 * @param rng The case's generator.
 * @param batches How many batches to apply in sequence.
 * @returns Problems and how many batches landed.
 */
export function checkPatchCase(rng: Rng, batches = 6): { problems: string[]; landed: number } {
  const bed = makePatchBed(rng.chance(0.5) ? 64 : 32);
  const problems: string[] = [];
  let landed = 0;
  for (let b = 0; b < batches; b++) {
    let sites: PokeSite[];
    try {
      sites = generateBatch(rng, bed);
    } catch (e) {
      problems.push(`generator threw ${describeError(e)}`);
      break;
    }
    const r = checkBatch(bed, sites);
    problems.push(...r.problems);
    if (r.landed) landed++;
  }
  return { problems, landed };
}
