/**
 * The modeled kernel: pt_regs, the int3 entry stubs (x86-64 with and without the gap,
 * x86-32 before the seed, the seed's, and v5.3's FIXUP_FRAME), do_int3 /
 * do_kernel_int3 with the handler chain, int3_emulate_*, text_poke and text_poke_bp
 * (single and batched), and the int3 self-test.
 *
 * @example An int3 whose handler emulates a call, with and without the gap
 * ```ts
 * import { bootKernel, int3Selftest, Machine } from "@textpoke/textpoke";
 *
 * for (const entry of ["64-gap", "32-seed", "32-plain"] as const) {
 *   const k = bootKernel(new Machine({ bitness: entry.startsWith("64") ? 64 : 32 }), { entry });
 *   console.log(entry, int3Selftest(k).passed); // true, true, false
 * }
 * ```
 *
 * @module
 */
export * from "./code_map.ts";
export * from "./constants.ts";
export * from "./emulate.ts";
export * from "./entry.ts";
export * from "./int3.ts";
export * from "./kernel.ts";
// The pt_regs layouts; the single offsets (R15 … SS) stay in pt_regs.ts: PT_REGS_64 has them.
export {
  type ByteMemory,
  PT_REGS_32,
  PT_REGS_64,
  PT_REGS_FIELDS_32,
  PT_REGS_FIELDS_64,
  PtRegs,
  type PtRegsField,
  type PtRegsField32,
  type PtRegsField64,
  type PtRegsSnapshot,
  ptRegsSymbols,
  SAVED_KERNEL_REGS_SIZE_32,
  SIZEOF_PTREGS_32,
  SIZEOF_PTREGS_64,
  type WordMemory,
  wordMemory,
} from "./pt_regs.ts";
export * from "./selftest.ts";
export * from "./text_poke.ts";
