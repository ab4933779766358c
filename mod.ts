/**
 * textpoke — the Linux kernel's x86 live-code-patching machinery (int3, text_poke_bp,
 * ftrace, static_call, livepatch) on an emulated SMP x86 machine you can watch and
 * measure.
 *
 * @example Decode the ftrace NOP5
 * ```ts
 * import { decode, Op } from "@textpoke/textpoke";
 *
 * const insn = decode(new Uint8Array([0x0f, 0x1f, 0x44, 0x00, 0x00]), 0, 64);
 * console.log(insn.len, insn.op === Op.NOP); // 5 true
 * ```
 *
 * @module
 */
export * from "./lib/errors.ts";
export * from "./lib/x86/insn.ts";
