/**
 * The machine code each `push` strategy needs besides the kernel's own entry stubs, as
 * AT&T source, and the per-CPU words they share with the int3 handler.
 *
 * - `stub` (Nicolai Stange, 27 Apr 2019, quoted in seed 004): the handler points the iret
 *   frame's ip at a stub that pushes the return address and jumps. Stange's patch had
 *   one stub per fixed target (`ftrace_regs_caller`, `ftrace_ops_list_func`); the
 *   return address lives in a per-CPU word because the stub runs after the iret, in the
 *   interrupted context. For the other targets the model adds the generic form
 *   `pushq %gs:ret; jmpq *%gs:target` and, to emulate a `ret` (a static_call trampoline
 *   becoming NULL), iret to a bare `ret`. Works with an entry that leaves no gap.
 * - `link-register` (Steven Rostedt, seed 004: "add another slot to pt_regs, call it link
 *   register"): the sketch names only the slot. The model puts it one word below pt_regs
 *   (so the C-visible layout does not change), zeroes it on entry, and the entry's return
 *   path turns a non-zero link into a push: it copies the iret frame one frame lower,
 *   lowers the frame's sp by a word and stores the link there, then irets.
 * - `entry-fixup` (Andy Lutomirski's earlier idea, quoted by Torvalds in seed 000,
 *   3 May 2019: "your code to move entries around on the stack just as you return"): the
 *   C handler emulates the push in the C-visible frame only — on x86-64 it lowers
 *   `regs->sp`, on x86-32 (no sp in a kernel-mode frame) it cannot — and leaves the word
 *   in a per-CPU variable with a pending flag; the return path sees the flag, moves the
 *   iret frame down and stores the word on the interrupted stack.
 * - `gap` uses the kernel's entries (`64-gap`, `32-seed`, `32-fixup`) and
 *   `int3_emulate_push`; `none` uses the entries from before the thread.
 *
 * Per-CPU words live at the CPU's per-CPU base: %gs on x86-64, %fs on x86-32 (as the
 * kernel addresses per-CPU data).
 *
 * @module
 */

import { restoreRegsText, saveRegsText } from "../kernel/entry.ts";

/** Offset of the "a push is pending" flag in the per-CPU area (entry-fixup). */
export const PCPU_PUSH_PENDING = 0;
/** Offset of the word to push (entry-fixup). */
export const PCPU_PUSH_VAL = 8;
/** Offset of the return address a stub pushes (stub). */
export const PCPU_STUB_RET = 16;
/** Offset of the target a generic stub jumps to (stub). */
export const PCPU_STUB_TGT = 24;
/** Size of the per-CPU area. */
export const PCPU_SIZE = 64;

/**
 * The x86-32 return path shared by `link-register` and `entry-fixup`. On entry the stack
 * holds word, ip, cs, flags and then the interrupted stack (a kernel-mode frame has no
 * sp/ss); it makes that ip, cs, flags, word, so the word is the interrupted stack's new
 * top after the iret: the push.
 */
const PUSH_UNDER_FRAME_32 = `
	pushl	%eax
	pushl	%ecx
	movl	8(%esp), %ecx			/* the word */
	movl	12(%esp), %eax
	movl	%eax, 8(%esp)			/* ip */
	movl	16(%esp), %eax
	movl	%eax, 12(%esp)			/* cs */
	movl	20(%esp), %eax
	movl	%eax, 16(%esp)			/* flags */
	movl	%ecx, 20(%esp)			/* the push */
	popl	%ecx
	popl	%eax
	iret
`;

/**
 * The int3 entry of the `link-register` strategy (label `int3_link`).
 *
 * @param bitness 32 or 64.
 * @returns AT&T source; it calls the kernel's `do_int3` with the pt_regs pointer.
 */
export function linkEntrySource(bitness: 32 | 64): string {
  if (bitness === 64) {
    return `
int3_link:
	pushq	$-1				/* orig_ax */
${saveRegsText(64)}
	pushq	$0				/* the link register, just below pt_regs */
	leaq	8(%rsp), %rdi			/* pt_regs */
	xorl	%esi, %esi
	call	do_int3
	cmpq	$0, (%rsp)
	jne	1f
	addq	$8, %rsp
${restoreRegsText(64)}
	addq	$8, %rsp			/* orig_ax */
	iretq
1:
	/* The link register is set: push it onto the interrupted stack on the way out. */
	movq	(%rsp), %rax
	movq	%rax, 8+120(%rsp)		/* park it in orig_ax, dead from here on */
	addq	$8, %rsp
${restoreRegsText(64)}
	/* now: link, ip, cs, flags, sp, ss: copy all six one frame lower */
	.rept 6
	pushq	5*8(%rsp)
	.endr
	pushq	%rax
	pushq	%rcx
	movq	48(%rsp), %rax			/* frame sp */
	subq	$8, %rax
	movq	%rax, 48(%rsp)
	movq	16(%rsp), %rcx			/* the link */
	movq	%rcx, (%rax)			/* the push */
	popq	%rcx
	popq	%rax
	addq	$8, %rsp			/* the link copy */
	iretq
`;
  }
  return `
int3_link:
	pushl	$-1				/* orig_eax */
${saveRegsText(32)}
	pushl	$0				/* the link register, just below pt_regs */
	leal	4(%esp), %eax			/* pt_regs */
	xorl	%edx, %edx
	call	do_int3
	cmpl	$0, (%esp)
	jne	1f
	addl	$4, %esp
${restoreRegsText(32)}
	addl	$4, %esp			/* orig_eax */
	iret
1:
	movl	(%esp), %eax
	movl	%eax, 4+44(%esp)		/* park the link in orig_eax */
	addl	$4, %esp
${restoreRegsText(32)}
	/* now: link, ip, cs, flags | interrupted stack */
${PUSH_UNDER_FRAME_32}`;
}

/**
 * The int3 entry of the `entry-fixup` strategy (label `int3_fixup`).
 *
 * @param bitness 32 or 64.
 * @returns AT&T source; it calls the kernel's `do_int3` and reads the per-CPU words at
 *   {@link PCPU_PUSH_PENDING} and {@link PCPU_PUSH_VAL} (%gs / %fs based).
 */
export function fixupEntrySource(bitness: 32 | 64): string {
  if (bitness === 64) {
    return `
int3_fixup:
	pushq	$-1				/* orig_ax */
${saveRegsText(64)}
	movq	%rsp, %rdi
	xorl	%esi, %esi
	call	do_int3
	cmpq	$0, %gs:${PCPU_PUSH_PENDING}
	jne	1f
${restoreRegsText(64)}
	addq	$8, %rsp			/* orig_ax */
	iretq
1:
${restoreRegsText(64)}
	addq	$8, %rsp			/* orig_ax */
	/* The handler lowered regs->sp: move the frame below it, then store the word. */
	.rept 5
	pushq	4*8(%rsp)
	.endr
	pushq	%rax
	pushq	%rcx
	movq	40(%rsp), %rax			/* the lowered sp */
	movq	%gs:${PCPU_PUSH_VAL}, %rcx
	movq	%rcx, (%rax)
	movq	$0, %gs:${PCPU_PUSH_PENDING}
	popq	%rcx
	popq	%rax
	iretq
`;
  }
  return `
int3_fixup:
	pushl	$-1				/* orig_eax */
${saveRegsText(32)}
	movl	%esp, %eax
	xorl	%edx, %edx
	call	do_int3
	cmpl	$0, %fs:${PCPU_PUSH_PENDING}
	jne	1f
${restoreRegsText(32)}
	addl	$4, %esp			/* orig_eax */
	iret
1:
${restoreRegsText(32)}
	addl	$4, %esp			/* orig_eax */
	/* ip, cs, flags | interrupted stack: put the word on top of the frame */
	pushl	%fs:${PCPU_PUSH_VAL}
	movl	$0, %fs:${PCPU_PUSH_PENDING}
${PUSH_UNDER_FRAME_32}`;
}

/**
 * Stange's stubs, and the generic forms the model adds (labels
 * `ftrace_int3_stub_regs_caller`, `ftrace_int3_stub_list_func`, `int3_stub_call`,
 * `int3_stub_ret`).
 *
 * @param bitness 32 or 64.
 * @returns AT&T source; it needs `ftrace_regs_caller` and `ftrace_ops_list_func`.
 */
export function stubSource(bitness: 32 | 64): string {
  const seg = bitness === 64 ? "%gs" : "%fs";
  const push = bitness === 64 ? "pushq" : "pushl";
  const jmpi = bitness === 64 ? "jmpq" : "jmpl";
  return `
ftrace_int3_stub_regs_caller:
	${push}	${seg}:${PCPU_STUB_RET}
	jmp	ftrace_regs_caller
ftrace_int3_stub_list_func:
	${push}	${seg}:${PCPU_STUB_RET}
	jmp	ftrace_ops_list_func
int3_stub_call:
	${push}	${seg}:${PCPU_STUB_RET}
	${jmpi}	*${seg}:${PCPU_STUB_TGT}
int3_stub_ret:
	ret
`;
}
