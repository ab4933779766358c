/**
 * The int3 (and NMI) entry stubs of the modeled kernel, as AT&T source assembled and run
 * by the emulator, one per variant of the 2019 thread.
 *
 * | variant | from | what it does on a kernel-mode int3 |
 * | --- | --- | --- |
 * | `64-nogap` | x86-64 before v5.2 | pt_regs directly under the hardware frame |
 * | `64-gap` | x86-64 v5.2 (`idtentry … create_gap=1`) | `testb $3,CS-ORIG_RAX(%rsp)`; six `pushq 5*8(%rsp)` copy orig_ax+frame 48 bytes lower |
 * | `32-plain` | x86-32 before the seed | `call do_int3` on the truncated frame |
 * | `32-seed` | x86-32 of the seed (Torvalds, 4 May 2019) | `subl $8,%esp; call do_kernel_int3; movl %eax,%esp` |
 * | `32-fixup` | x86-32 v5.3 (3c88c692c287) | FIXUP_FRAME builds sp/ss, marks CS_FROM_KERNEL; IRET_FRAME rebuilds the frame under regs->sp |
 *
 * Every stub saves every general register into pt_regs order, sets orig_ax = -1, calls
 * the C handler with the pt_regs pointer (x86-64: %rdi, error code 0 in %esi; x86-32
 * regparm: %eax, error code 0 in %edx), restores every register and returns with iret.
 *
 * Simplifications, each one irrelevant to the frame geometry the thread argues about:
 * no swapgs/CR3 switch, no trampoline-to-thread stack switch (the CPU's own switch to
 * TSS.sp0 is modeled), no register clearing, and on x86-32 the four segment-register
 * slots (ds es fs gs) are filled with constants (`__USER_DS`, `__USER_DS`, 0, 0) rather
 * than pushed from segment registers, and skipped rather than reloaded on exit.
 *
 * @module
 */

import { MachineError } from "../errors.ts";
import { USER_DS_32 } from "./constants.ts";

/** The selectable int3 entry variants. */
export type EntryVariant = "64-nogap" | "64-gap" | "32-plain" | "32-seed" | "32-fixup";

/** Every entry variant, x86-64 first. */
export const ENTRY_VARIANTS: readonly EntryVariant[] = [
  "64-nogap",
  "64-gap",
  "32-plain",
  "32-seed",
  "32-fixup",
];

/**
 * The bitness of an entry variant.
 *
 * @param variant An entry variant.
 * @returns 64 or 32.
 */
export function entryBitness(variant: EntryVariant): 32 | 64 {
  return variant.startsWith("64") ? 64 : 32;
}

/** One assembled-from-text piece of the kernel's entry code. */
export interface EntrySource {
  /** The variant (for the NMI stub: the bitness's name, `"nmi-64"` / `"nmi-32"`). */
  readonly name: string;
  /** 32 or 64. */
  readonly bitness: 32 | 64;
  /** AT&T source. Labels it defines: the entry point `name` and `<entry>_ret`. */
  readonly text: string;
  /** The label of the entry point (the IDT gate's handler). */
  readonly entry: string;
  /** Native (TypeScript) functions the text calls, by symbol name. */
  readonly calls: readonly string[];
  /** The other symbols the text needs (offsets and selectors), with their values. */
  readonly symbols: ReadonlyMap<string, bigint>;
}

const PUSH_REGS_64 = `
	/* PUSH_AND_CLEAR_REGS: the rest of pt_regs, di at the top, r15 at the bottom */
	pushq	%rdi
	pushq	%rsi
	pushq	%rdx
	pushq	%rcx
	pushq	%rax
	pushq	%r8
	pushq	%r9
	pushq	%r10
	pushq	%r11
	pushq	%rbx
	pushq	%rbp
	pushq	%r12
	pushq	%r13
	pushq	%r14
	pushq	%r15
`;

const POP_REGS_64 = `
	/* POP_REGS (orig_ax stays on the stack) */
	popq	%r15
	popq	%r14
	popq	%r13
	popq	%r12
	popq	%rbp
	popq	%rbx
	popq	%r11
	popq	%r10
	popq	%r9
	popq	%r8
	popq	%rax
	popq	%rcx
	popq	%rdx
	popq	%rsi
	popq	%rdi
`;

function symbols64(): Map<string, bigint> {
  return new Map([
    ["ORIG_RAX", 120n],
    ["CS", 136n],
  ]);
}

function symbols32(): Map<string, bigint> {
  return new Map([
    ["__USER_DS", 0x7bn],
    ["__KERNEL_DS", 0x68n],
    ["CS_FROM_KERNEL", 1n << 29n],
    ["USER_SEGMENT_RPL_MASK", 3n],
  ]);
}

function entry64(gap: boolean): EntrySource {
  const name = gap ? "64-gap" : "64-nogap";
  const gapText = gap
    ? `
	/*
	 * create_gap (v5.2): from kernel mode, copy orig_ax and the 5-word hardware
	 * frame 6 words lower, so that an emulated push onto the interrupted stack
	 * (regs->sp -= 8) lands in the old copy, not in the frame iret will use.
	 */
	testb	$3, CS-ORIG_RAX(%rsp)
	jnz	1f
	.rept 6
	pushq	5*8(%rsp)
	.endr
1:
`
    : "";
  const text = `
int3:
	pushq	$-1				/* ORIG_RAX: no syscall to restart */
${gapText}${saveRegsText(64)}
	movq	%rsp, %rdi			/* pt_regs pointer */
	xorl	%esi, %esi			/* no error code */
	call	do_int3
int3_ret:
${restoreRegsText(64)}${dropOrigAx(64)}
	iretq
`;
  return { name, bitness: 64, text, entry: "int3", calls: ["do_int3"], symbols: symbols64() };
}

const SAVE_ALL_32_HEAD = `
	cld
	pushl	$0				/* gs (PUSH_GS; segments not modeled) */
`;

const SAVE_ALL_32_TAIL = `
	pushl	$0				/* fs */
	pushl	$${hex(USER_DS_32)}			/* es: __USER_DS */
	pushl	$${hex(USER_DS_32)}			/* ds: __USER_DS */
	pushl	%eax
	pushl	%ebp
	pushl	%edi
	pushl	%esi
	pushl	%edx
	pushl	%ecx
	pushl	%ebx
`;

const RESTORE_REGS_32 = `
	/* RESTORE_REGS 4 */
	popl	%ebx
	popl	%ecx
	popl	%edx
	popl	%esi
	popl	%edi
	popl	%ebp
	popl	%eax
	addl	$16, %esp			/* ds es fs gs (orig_eax stays on the stack) */
`;

/** A selector as a literal immediate, so the text needs no symbol table (lib/proposals). */
function hex(v: number): string {
  return `0x${v.toString(16)}`;
}

/**
 * The AT&T text that saves every general register in pt_regs order (x86-64: di first,
 * r15 last, as `PUSH_AND_CLEAR_REGS` without the clearing; x86-32: `SAVE_ALL` with the
 * segment slots filled with constants). It runs right after the stub pushed orig_ax, so
 * `%rsp`/`%esp` ends pointing at a complete pt_regs. The kernel's entries and the
 * proposals' own int3 entries (lib/proposals/push.ts) are built from it, so their frames
 * cannot drift apart.
 *
 * @param bitness 32 or 64.
 * @returns AT&T source, one instruction a line.
 * @example The x86-64 save starts with %rdi
 * ```ts
 * import { saveRegsText } from "@textpoke/textpoke";
 *
 * console.log(saveRegsText(64).includes("pushq\t%rdi")); // true
 * ```
 */
export function saveRegsText(bitness: 32 | 64): string {
  return bitness === 64 ? PUSH_REGS_64 : `${SAVE_ALL_32_HEAD}${SAVE_ALL_32_TAIL}`;
}

/**
 * The AT&T text that undoes {@link saveRegsText}: it reloads every general register from
 * pt_regs (x86-32: and skips the four segment slots) and leaves `%rsp`/`%esp` pointing at
 * orig_ax, which the caller drops (or reuses) itself.
 *
 * @param bitness 32 or 64.
 * @returns AT&T source, one instruction a line.
 */
export function restoreRegsText(bitness: 32 | 64): string {
  return bitness === 64 ? POP_REGS_64 : RESTORE_REGS_32;
}

/** Drops orig_ax after {@link restoreRegsText}. */
function dropOrigAx(bitness: 32 | 64): string {
  return bitness === 64
    ? "\taddq\t$8, %rsp\t\t\t/* orig_ax */\n"
    : "\taddl\t$4, %esp\t\t\t/* orig_eax */\n";
}

const FIXUP_FRAME_32 = `
	/*
	 * FIXUP_FRAME (v5.3): the high bits of the CS dword are ours (CS_FROM_*).
	 * From kernel mode the frame lacks sp/ss: build a complete 5-word iret frame
	 * below the old one, so pt_regs is whole and regs->sp is the interrupted sp.
	 * The old 5 words (gs, orig_eax, ip, cs, flags) become the gap.
	 */
	andl	$0x0000ffff, 3*4(%esp)
	testl	$USER_SEGMENT_RPL_MASK, 3*4(%esp)
	jnz	2f
	orl	$CS_FROM_KERNEL, 3*4(%esp)
	pushl	$__KERNEL_DS			/* ss */
	pushl	%esp				/* sp (points at ss) */
	addl	$6*4, (%esp)			/* point sp back at the previous context */
	pushl	6*4(%esp)			/* flags */
	pushl	6*4(%esp)			/* cs */
	pushl	6*4(%esp)			/* ip */
	pushl	6*4(%esp)			/* orig_eax */
	pushl	6*4(%esp)			/* gs */
2:
`;

const IRET_FRAME_32 = `
	/*
	 * IRET_FRAME (v5.3): rebuild the 3-word iret frame right under the (maybe
	 * changed) regs->sp without lowering %esp in between, so that an NMI in the
	 * middle does not scribble on it.
	 */
	testl	$CS_FROM_KERNEL, 1*4(%esp)
	jz	3f
	pushl	%eax
	pushl	%ecx
	movl	5*4(%esp), %eax			/* (modified) regs->sp */
	movl	4*4(%esp), %ecx			/* flags */
	movl	%ecx, -4(%eax)
	movl	3*4(%esp), %ecx			/* cs */
	andl	$0x0000ffff, %ecx
	movl	%ecx, -8(%eax)
	movl	2*4(%esp), %ecx			/* ip */
	movl	%ecx, -12(%eax)
	movl	1*4(%esp), %ecx			/* eax */
	movl	%ecx, -16(%eax)
	popl	%ecx
	lea	-16(%eax), %esp
	popl	%eax
3:
`;

function entry32(variant: "32-plain" | "32-seed" | "32-fixup"): EntrySource {
  const fixup = variant === "32-fixup";
  const call = variant === "32-seed"
    ? `
	/* make room on the kernel stack for push emulation; */
	/* do_kernel_int3 returns the possibly moved pt_regs */
	subl	$8, %esp
	call	do_kernel_int3
	movl	%eax, %esp
`
    : `
	call	do_int3
`;
  const text = `
int3:
	pushl	$-1				/* orig_eax: mark this as an int */
${SAVE_ALL_32_HEAD}${fixup ? FIXUP_FRAME_32 : ""}${SAVE_ALL_32_TAIL}
	xorl	%edx, %edx			/* zero error code */
	movl	%esp, %eax			/* pt_regs pointer */
${call}
int3_ret:
${restoreRegsText(32)}${dropOrigAx(32)}${fixup ? IRET_FRAME_32 : ""}
	iret
`;
  return {
    name: variant,
    bitness: 32,
    text,
    entry: "int3",
    calls: [variant === "32-seed" ? "do_kernel_int3" : "do_int3"],
    symbols: symbols32(),
  };
}

/**
 * The AT&T source of an int3 entry variant.
 *
 * @param variant Which entry.
 * @returns Its source, entry label, the natives it calls and the symbols it needs.
 * @throws {MachineError} For an unknown variant.
 * @example The x86-64 gap stub
 * ```ts
 * import { int3EntrySource } from "@textpoke/textpoke";
 *
 * const src = int3EntrySource("64-gap");
 * console.log(src.text.includes("pushq\t5*8(%rsp)")); // true
 * ```
 */
export function int3EntrySource(variant: EntryVariant): EntrySource {
  switch (variant) {
    case "64-nogap":
      return entry64(false);
    case "64-gap":
      return entry64(true);
    case "32-plain":
    case "32-seed":
    case "32-fixup":
      return entry32(variant);
    default:
      throw new MachineError(
        `Unknown int3 entry variant ${String(variant)}; known: ${ENTRY_VARIANTS.join(", ")}`,
      );
  }
}

/**
 * The AT&T source of the NMI entry: save every register, call `do_nmi` with the regs
 * pointer, restore, iret. It runs on the interrupted stack (no IST), so an NMI pushes its
 * frame right under whatever the int3 path has on the stack: exactly the hazard the gap
 * and IRET_FRAME must survive.
 *
 * @param bitness 32 or 64.
 * @returns The NMI stub's source (entry label `nmi`).
 */
export function nmiEntrySource(bitness: 32 | 64): EntrySource {
  const text = bitness === 64
    ? `
nmi:
	pushq	$-1
${saveRegsText(64)}
	movq	%rsp, %rdi
	xorl	%esi, %esi
	call	do_nmi
${restoreRegsText(64)}${dropOrigAx(64)}
	iretq
`
    : `
nmi:
	pushl	$-1
${saveRegsText(32)}
	xorl	%edx, %edx
	movl	%esp, %eax
	call	do_nmi
${restoreRegsText(32)}${dropOrigAx(32)}
	iret
`;
  return {
    name: `nmi-${bitness}`,
    bitness,
    text,
    entry: "nmi",
    calls: ["do_nmi"],
    symbols: bitness === 64 ? symbols64() : symbols32(),
  };
}
