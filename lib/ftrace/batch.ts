/**
 * The unit every patcher of this package hands to whoever performs text_poke_bp: a batch
 * of sites, each with its old and new instruction and its role, so that an int3 handler
 * strategy (see `lib/proposals/`) knows what kind of instruction is in flux at a site.
 *
 * ftrace, static_call and livepatch produce batches; a {@link BatchRunner} performs them.
 * The runner decides how the stores happen (on one CPU at once, or as a kernel thread
 * whose stores other CPUs can observe half done) and which int3 handler runs meanwhile.
 *
 * @module
 */

import { hexAddr, hexBytes, PatchError } from "../errors.ts";
import type { Kernel } from "../kernel/kernel.ts";
import type { PokeSite } from "../kernel/text_poke.ts";

/** What kind of instruction a patched site is. */
export type SiteRole =
  /** A traced function's `call __fentry__` / NOP5 (a call or nothing). */
  | "fentry"
  /** The `ftrace_call` / `ftrace_regs_call` site inside a caller trampoline (a call). */
  | "caller-call"
  /** A static_call trampoline (`jmp.d32` to the function, or `ret`). */
  | "sc-trampoline"
  /** An inline static_call site (a call, or a NOP5 for NULL; the RET0 form). */
  | "sc-inline"
  /**
   * A tail-call static_call site (`STATIC_CALL_SITE_TAIL`): a `jmp.d32` to the function,
   * or `ret` padded with int3 (`jmp __x86_return_thunk` with RETHUNK) for NULL — a jump,
   * like the trampoline, never a call.
   */
  | "sc-tail";

/** One site of a batch. */
export interface PatchSite {
  /** Address of the instruction. */
  readonly address: bigint;
  /** What is there now (checked before anything is written). */
  readonly old: Uint8Array;
  /** What will be there. */
  readonly new: Uint8Array;
  /** The kind of site. */
  readonly role: SiteRole;
  /**
   * The instruction the int3 handler emulates while the site is in flux, when it is not
   * `new` itself (static_call's RET0 form `2e 2e 2e 31 c0` is written while the call it
   * replaces is emulated).
   */
  readonly emulate?: Uint8Array;
}

/**
 * The text_poke_bp request for each site: `old` → `new`, with the instruction to emulate
 * meanwhile when it differs from `new`.
 *
 * @param sites The batch.
 * @returns One {@link PokeSite} per site, in the same order.
 */
export function pokeSites(sites: readonly PatchSite[]): PokeSite[] {
  return sites.map((s) =>
    s.emulate === undefined
      ? { address: s.address, bytes: s.new, old: s.old }
      : { address: s.address, bytes: s.new, old: s.old, emulate: s.emulate }
  );
}

/**
 * Performs one batch: all sites go from `old` to `new` by the text_poke_bp protocol. A
 * runner is a generator function so a kernel thread can yield at every store; a runner
 * for a stopped machine yields nothing.
 */
export type BatchRunner = (sites: readonly PatchSite[]) => Generator<unknown, void, unknown>;

/**
 * Encodes `call rel32` (`e8`) at `from` to `to`.
 *
 * @param from Address of the call.
 * @param to Target.
 * @param bitness 32 or 64 (default 64). In 32-bit mode eip wraps at 4 GiB, so every
 *   32-bit target is reachable; in 64-bit mode the target must lie within ±2 GiB.
 * @returns The 5 bytes.
 * @throws {PatchError} When the target is out of rel32 range (64-bit), or an address is
 *   not a 32-bit address (32-bit).
 *
 * @example A call that wraps around the top of a 32-bit address space
 * ```ts
 * import { callInsn, hexBytes } from "@textpoke/textpoke";
 *
 * console.log(hexBytes(callInsn(0xfffffff0n, 0x10n, 32))); // e8 1b 00 00 00
 * ```
 */
export function callInsn(from: bigint, to: bigint, bitness: 32 | 64 = 64): Uint8Array {
  return rel32Insn(0xe8, from, to, bitness);
}

/**
 * Encodes `jmp rel32` (`e9`, JMP.d32) at `from` to `to`.
 *
 * @param from Address of the jump.
 * @param to Target.
 * @param bitness 32 or 64 (default 64); see {@link callInsn}.
 * @returns The 5 bytes.
 * @throws {PatchError} When the target is out of rel32 range (64-bit), or an address is
 *   not a 32-bit address (32-bit).
 */
export function jmpInsn(from: bigint, to: bigint, bitness: 32 | 64 = 64): Uint8Array {
  return rel32Insn(0xe9, from, to, bitness);
}

function rel32Insn(opcode: number, from: bigint, to: bigint, bitness: 32 | 64): Uint8Array {
  const disp = to - (from + 5n);
  if (bitness === 32) {
    // eip is 32 bits wide: next-eip + rel32 is computed modulo 2^32 (SDM Vol. 2A, CALL
    // and JMP with a 32-bit operand size), so any 32-bit target is one rel32 away, in
    // one direction or the other. Only an address that is not 32-bit is wrong.
    for (const [what, a] of [["instruction", from], ["target", to]] as const) {
      if (a < 0n || a > 0xffffffffn) {
        throw new PatchError(
          `Cannot encode a rel32 ${opcode === 0xe8 ? "call" : "jmp"} at ${hexAddr(from)} to ${
            hexAddr(to)
          }: the ${what} address is not a 32-bit address`,
          from,
        );
      }
    }
  } else if (disp < -(1n << 31n) || disp >= 1n << 31n) {
    throw new PatchError(
      `Target ${hexAddr(to)} is out of rel32 range of the instruction at ${hexAddr(from)}`,
      from,
    );
  }
  const d = Number(BigInt.asIntN(32, disp));
  return Uint8Array.of(opcode, d & 0xff, (d >>> 8) & 0xff, (d >>> 16) & 0xff, (d >>> 24) & 0xff);
}

/**
 * The target a 5-byte call or jmp names, or null for anything else (a NOP, a ret).
 *
 * @param address Address of the instruction.
 * @param bytes Its bytes.
 * @param bitness 32 or 64 (targets wrap at that width).
 * @returns The target, or null.
 */
export function rel32Target(address: bigint, bytes: Uint8Array, bitness: 32 | 64): bigint | null {
  const op = bytes[0];
  if ((op !== 0xe8 && op !== 0xe9) || bytes.length < 5) return null;
  const disp = (bytes[1]! | (bytes[2]! << 8) | (bytes[3]! << 16) | (bytes[4]! << 24)) | 0;
  return BigInt.asUintN(bitness, address + 5n + BigInt(disp));
}

/**
 * Runs a batch on a machine nobody else executes (boot, tests): every site is written at
 * once. Every site's old bytes are checked before the first write. Yields nothing.
 *
 * @param write Writes bytes to text (through the alias).
 * @param read Reads text.
 * @returns A {@link BatchRunner}; it throws {@link PatchError} naming the site, the
 *   expected and the found bytes when a site does not hold its `old` bytes.
 */
export function immediateRunner(
  write: (address: bigint, bytes: Uint8Array) => void,
  read: (address: bigint, n: number) => Uint8Array,
): BatchRunner {
  // deno-lint-ignore require-yield
  return function* (sites: readonly PatchSite[]): Generator<unknown, void, unknown> {
    for (const s of sites) {
      const found = read(s.address, s.old.length);
      if (found.length !== s.old.length || !found.every((b, i) => b === s.old[i])) {
        // What ftrace_bug() reports for -EINVAL: the site, what it expected, what is there.
        throw new PatchError(
          `Old bytes mismatch at ${hexAddr(s.address)}: expected ${hexBytes(s.old)}, found ${
            hexBytes(found)
          }`,
          s.address,
        );
      }
    }
    for (const s of sites) write(s.address, s.new);
  };
}

/**
 * Runs each batch through the kernel's own `text_poke_bp` (all three steps, its checks and
 * its descriptor) on a machine nobody else executes. Yields nothing.
 *
 * @param kernel The kernel.
 * @returns A {@link BatchRunner}.
 */
export function textPokeBpRunner(kernel: Kernel): BatchRunner {
  // deno-lint-ignore require-yield
  return function* (sites: readonly PatchSite[]): Generator<unknown, void, unknown> {
    const sorted = sites.slice().sort((a, b) => (a.address < b.address ? -1 : 1));
    kernel.runPatch(
      kernel.textPokeBpBatch(pokeSites(sorted)),
    );
  };
}
