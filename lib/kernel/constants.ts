/**
 * The kernel's instruction constants and selectors, with the kernel's names
 * (`arch/x86/include/asm/text-patching.h`, `arch/x86/include/asm/segment.h`): each opcode
 * constant has its size constant beside it.
 *
 * @module
 */

/** Opcode of `int3`. */
export const INT3_INSN_OPCODE = 0xcc;
/** Length of `int3`. */
export const INT3_INSN_SIZE = 1;
/** Opcode of `ret`. */
export const RET_INSN_OPCODE = 0xc3;
/** Length of `ret`. */
export const RET_INSN_SIZE = 1;
/** Opcode of `call rel32`. */
export const CALL_INSN_OPCODE = 0xe8;
/** Length of `call rel32`. */
export const CALL_INSN_SIZE = 5;
/** Opcode of `jmp rel32` (JMP.d32). */
export const JMP32_INSN_OPCODE = 0xe9;
/** Length of `jmp rel32`. */
export const JMP32_INSN_SIZE = 5;
/** Opcode of `jmp rel8`. */
export const JMP8_INSN_OPCODE = 0xeb;
/** Length of `jmp rel8`. */
export const JMP8_INSN_SIZE = 2;
/** Length of `jcc rel32` (`0f 8x rel32`), the one patchable 6-byte form. */
export const JCC32_INSN_SIZE = 6;
/**
 * The longest instruction text_poke_bp patched in one site as of the 2019 thread (5). The
 * model's text_poke_bp also accepts a 6-byte Jcc32 ({@link JCC32_INSN_SIZE}), as later
 * kernels do.
 */
export const POKE_MAX_OPCODE_SIZE = 5;

/** The ideal 64-bit NOP5 that ftrace writes over `call __fentry__`: `0f 1f 44 00 00`. */
export const NOP5_64: Uint8Array = Uint8Array.of(0x0f, 0x1f, 0x44, 0x00, 0x00);
/** The 32-bit kernel's NOP5: `3e 8d 74 26 00` (`ds lea 0x0(%esi,%eiz,1),%esi`). */
export const NOP5_32: Uint8Array = Uint8Array.of(0x3e, 0x8d, 0x74, 0x26, 0x00);
/** The 2-byte NOP the kernel uses on both bitnesses: `66 90`. */
export const NOP2: Uint8Array = Uint8Array.of(0x66, 0x90);

/**
 * The NOP5 of a bitness.
 *
 * @param bitness 32 or 64.
 * @returns A fresh copy of the 5-byte NOP the kernel of that bitness writes.
 */
export function nop5(bitness: 32 | 64): Uint8Array {
  return (bitness === 64 ? NOP5_64 : NOP5_32).slice();
}

/** x86-64 kernel code segment selector. */
export const KERNEL_CS_64 = 0x10;
/** x86-64 kernel data/stack selector. */
export const KERNEL_DS_64 = 0x18;
/** x86-64 user code segment selector (RPL 3). */
export const USER_CS_64 = 0x33;
/** x86-64 user data/stack selector (RPL 3). */
export const USER_DS_64 = 0x2b;
/** x86-32 kernel code segment selector. */
export const KERNEL_CS_32 = 0x60;
/** x86-32 kernel data/stack selector. */
export const KERNEL_DS_32 = 0x68;
/** x86-32 user code segment selector (RPL 3). */
export const USER_CS_32 = 0x73;
/** x86-32 user data/stack selector (RPL 3). */
export const USER_DS_32 = 0x7b;

/**
 * The v5.3 x86-32 entry's marker in the CS dword of pt_regs (bit 29; the CPU leaves the
 * high half of the pushed CS dword free): "this frame came from kernel mode and
 * FIXUP_FRAME built its sp/ss".
 */
export const CS_FROM_KERNEL = 1 << 29;

/** The vector of #BP (int3). */
export const X86_TRAP_BP = 3;
/** The vector of the NMI. */
export const X86_TRAP_NMI = 2;

/** RFLAGS bits the Jcc emulation reads (`arch/x86/include/uapi/asm/processor-flags.h`). */
export const X86_EFLAGS_CF = 0x0001;
/** Parity flag. */
export const X86_EFLAGS_PF = 0x0004;
/** Zero flag. */
export const X86_EFLAGS_ZF = 0x0040;
/** Sign flag. */
export const X86_EFLAGS_SF = 0x0080;
/** Trap flag. */
export const X86_EFLAGS_TF = 0x0100;
/** Interrupt enable flag. */
export const X86_EFLAGS_IF = 0x0200;
/** Overflow flag. */
export const X86_EFLAGS_OF = 0x0800;

/**
 * Code and data selectors of a bitness.
 *
 * @param bitness 32 or 64.
 * @returns The kernel's and the user's code and data selectors.
 */
export function selectors(
  bitness: 32 | 64,
): { kernelCs: number; kernelDs: number; userCs: number; userDs: number } {
  return bitness === 64
    ? { kernelCs: KERNEL_CS_64, kernelDs: KERNEL_DS_64, userCs: USER_CS_64, userDs: USER_DS_64 }
    : { kernelCs: KERNEL_CS_32, kernelDs: KERNEL_DS_32, userCs: USER_CS_32, userDs: USER_DS_32 };
}
