/**
 * ftrace's machine code, as AT&T source: the `ftrace_caller` and `ftrace_regs_caller`
 * trampolines (`arch/x86/kernel/ftrace_64.S`, `ftrace_32.S`) with their patchable call
 * sites `ftrace_call` / `ftrace_regs_call`, per-ops trampolines (copies whose call goes
 * straight to one ops' callback), `ftrace_stub`, `__fentry__`, and traced functions that
 * begin with a 5-byte `call __fentry__`.
 *
 * Calling convention of the tracer call, as in the kernel: `func(ip, parent_ip, ops,
 * regs)`; x86-64 in %rdi, %rsi, %rdx, %rcx; x86-32 regparm(3) in %eax, %edx, %ecx and
 * `regs` on the stack. `ip` is the address of the fentry site (the return address minus
 * MCOUNT_INSN_SIZE), `parent_ip` the traced function's own return address.
 *
 * `ftrace_regs_caller` builds a complete `struct pt_regs` (every register, flags, cs,
 * ss, `regs->sp` as the traced function saw it, `regs->ip` = the return address into the
 * traced function) and after the callback returns through `regs->ip` (an IPMODIFY ops —
 * livepatch — redirects the function by changing it) and restores every register from
 * pt_regs. It keeps the caller's flags as the kernel does: they are saved before the
 * trampoline's first flag-changing instruction (x86-64: `pushfq` first, then the frame, as
 * v5.1 `ftrace_64.S`; x86-32: the frame is made and freed with `lea`, as v5.1
 * `ftrace_32.S` makes and frees it with pushes, pops and `lea`), copied into
 * `regs->flags`, and after the callback `regs->flags` is what `popfq` / `popfl` restores,
 * so the handler sees the caller's flags and the traced function gets them back.
 * `ftrace_caller` saves only the argument and scratch registers, passes `regs = NULL` and,
 * like the kernel's, does not keep the flags.
 *
 * One addition the kernel does not have: every trampoline begins with `call
 * __probe_<name>`, a native that records which CPU entered it from which call site and
 * returns at once (it changes no register). That is how an experiment sees which target
 * each execution of a patched site reached.
 *
 * @module
 */

import { FtraceError } from "../errors.ts";

/** Size of the `call __fentry__` at the start of a traced function. */
export const MCOUNT_INSN_SIZE = 5;

/** Options of {@link ftraceCallerSource}. */
export interface CallerOptions {
  /** 32 or 64. */
  bitness: 32 | 64;
  /** Label of the trampoline (`ftrace_caller`, `ftrace_regs_caller`, `ftrace_ops_tramp_A`). */
  name: string;
  /** Label of its patchable call site (`ftrace_call`, `ftrace_regs_call`, ...). */
  callLabel: string;
  /** Save and restore a full pt_regs and return through regs->ip. */
  regs: boolean;
  /** Symbol of the initial call target (default `ftrace_stub`). */
  initialTarget?: string;
  /**
   * How the ops argument is loaded: `{ variable: sym }` loads it from a data word
   * (`function_trace_op`), `{ constant: sym }` uses a fixed ops address (per-ops).
   */
  ops: { variable: string } | { constant: string };
  /** Symbol of the probe native called first (default `__probe_<name>`). */
  probe?: string;
}

/**
 * Size of the register frame both trampolines reserve (a struct pt_regs). On x86-64
 * `ftrace_regs_caller` pushes the flags word above it first.
 *
 * @param bitness 32 or 64.
 * @returns 168 (x86-64) or 68 (x86-32).
 */
export function frameSize(bitness: 32 | 64): number {
  return bitness === 64 ? 168 : 68;
}

function caller64(o: CallerOptions): string {
  const F = 168;
  // ftrace_regs_caller keeps the caller's flags in one more word, pushed before the frame
  // (the kernel's `pushfq; save_mcount_regs 8`): the return address is then that much higher.
  const X = o.regs ? 8 : 0;
  const probe = o.probe ?? `__probe_${o.name}`;
  const target = o.initialTarget ?? "ftrace_stub";
  const loadOps = "variable" in o.ops
    ? `\tmovq\t${o.ops.variable}, %rdx\t\t/* function_trace_op */`
    : `\tmovq\t$${o.ops.constant}, %rdx\t\t/* this trampoline's ops */`;
  const saveFlags = o.regs
    ? `
	pushfq					/* the caller's flags, before any arithmetic here */`
    : "";
  const saveAll = o.regs
    ? `
	movq	%r15, 0(%rsp)
	movq	%r14, 8(%rsp)
	movq	%r13, 16(%rsp)
	movq	%r12, 24(%rsp)
	movq	%rbp, 32(%rsp)
	movq	%rbx, 40(%rsp)
	movq	${F}(%rsp), %rax		/* the flags pushed on entry */
	movq	%rax, 144(%rsp)			/* regs->flags */
	movq	$0x10, 136(%rsp)		/* regs->cs = __KERNEL_CS */
	movq	$0x18, 160(%rsp)		/* regs->ss = __KERNEL_DS */
	leaq	${F + X + 8}(%rsp), %rax
	movq	%rax, 152(%rsp)			/* regs->sp as the traced function saw it */
	movq	$-1, 120(%rsp)			/* orig_ax */`
    : "";
  const restoreAll = o.regs
    ? `
	/* regs->flags back into the word popfq restores (a handler may change them) */
	movq	144(%rsp), %rax
	movq	%rax, ${F}(%rsp)
	/* IPMODIFY: return through regs->ip (livepatch changes it) */
	movq	128(%rsp), %rax
	movq	%rax, ${F + X}(%rsp)
	movq	0(%rsp), %r15
	movq	8(%rsp), %r14
	movq	16(%rsp), %r13
	movq	24(%rsp), %r12
	movq	32(%rsp), %rbp
	movq	40(%rsp), %rbx`
    : "";
  const restoreFlags = o.regs
    ? `
	popfq					/* the caller's flags (or the handler's regs->flags) */`
    : "";
  return `
${o.name}:
	call	${probe}${saveFlags}
	subq	$${F}, %rsp			/* struct pt_regs */
	movq	%rax, 80(%rsp)
	movq	%rcx, 88(%rsp)
	movq	%rdx, 96(%rsp)
	movq	%rsi, 104(%rsp)
	movq	%rdi, 112(%rsp)
	movq	%r8, 72(%rsp)
	movq	%r9, 64(%rsp)
	movq	%r10, 56(%rsp)
	movq	%r11, 48(%rsp)${saveAll}
	movq	${F + X}(%rsp), %rax		/* return address into the traced function */
	movq	%rax, 128(%rsp)			/* regs->ip */
	movq	%rax, %rdi
	subq	$${MCOUNT_INSN_SIZE}, %rdi	/* ip: the fentry site */
	movq	${F + X + 8}(%rsp), %rsi		/* parent_ip */
${loadOps}
	${o.regs ? "movq\t%rsp, %rcx\t\t\t/* regs */" : "xorl\t%ecx, %ecx\t\t\t/* regs = NULL */"}
${o.callLabel}:
	call	${target}${restoreAll}
	movq	80(%rsp), %rax
	movq	88(%rsp), %rcx
	movq	96(%rsp), %rdx
	movq	104(%rsp), %rsi
	movq	112(%rsp), %rdi
	movq	72(%rsp), %r8
	movq	64(%rsp), %r9
	movq	56(%rsp), %r10
	movq	48(%rsp), %r11
	addq	$${F}, %rsp${restoreFlags}
	ret
`;
}

function caller32(o: CallerOptions): string {
  const F = 68;
  const probe = o.probe ?? `__probe_${o.name}`;
  const target = o.initialTarget ?? "ftrace_stub";
  const loadOps = "variable" in o.ops
    ? `\tmovl\t${o.ops.variable}, %ecx\t\t/* function_trace_op */`
    : `\tmovl\t$${o.ops.constant}, %ecx\t\t/* this trampoline's ops */`;
  // ftrace_regs_caller must not change the flags before pushfl has taken them nor after
  // popfl has put them back (v5.1 ftrace_32.S builds the frame with pushes and frees it
  // with lea): here lea moves %esp, where ftrace_caller uses sub and add.
  const open = o.regs
    ? `leal\t-${F}(%esp), %esp\t\t/* struct pt_regs; lea leaves the flags alone */`
    : `subl\t$${F}, %esp\t\t\t/* struct pt_regs */`;
  const close = o.regs
    ? `leal\t${F}(%esp), %esp\t\t/* lea: the restored flags stay */`
    : `addl\t$${F}, %esp`;
  const saveAll = o.regs
    ? `
	movl	%ebx, 0(%esp)
	movl	%esi, 12(%esp)
	movl	%edi, 16(%esp)
	movl	%ebp, 20(%esp)
	pushfl					/* the caller's flags: nothing here has changed them */
	popl	%eax
	movl	%eax, 56(%esp)			/* regs->flags */
	movl	$0x7b, 28(%esp)			/* ds */
	movl	$0x7b, 32(%esp)			/* es */
	movl	$0, 36(%esp)			/* fs */
	movl	$0, 40(%esp)			/* gs */
	movl	$-1, 44(%esp)			/* orig_ax */
	movl	$0x60, 52(%esp)			/* regs->cs = __KERNEL_CS */
	movl	$0x68, 64(%esp)			/* regs->ss = __KERNEL_DS */
	leal	${F + 4}(%esp), %eax
	movl	%eax, 60(%esp)			/* regs->sp as the traced function saw it */`
    : "";
  const restoreAll = o.regs
    ? `
	pushl	56(%esp)			/* regs->flags (a handler may change them) */
	popfl					/* ... are the flags from here on */
	/* IPMODIFY: return through regs->ip (livepatch changes it) */
	movl	48(%esp), %eax
	movl	%eax, ${F}(%esp)
	movl	0(%esp), %ebx
	movl	12(%esp), %esi
	movl	16(%esp), %edi
	movl	20(%esp), %ebp`
    : "";
  return `
${o.name}:
	call	${probe}
	${open}
	movl	%eax, 24(%esp)
	movl	%ecx, 4(%esp)
	movl	%edx, 8(%esp)${saveAll}
	movl	${F}(%esp), %eax		/* return address into the traced function */
	movl	%eax, 48(%esp)			/* regs->ip */
	subl	$${MCOUNT_INSN_SIZE}, %eax	/* ip: the fentry site */
	movl	${F + 4}(%esp), %edx		/* parent_ip */
${loadOps}
	${
    o.regs
      ? "pushl\t%esp\t\t\t/* regs (4th argument, on the stack) */"
      : "pushl\t$0\t\t\t/* regs = NULL */"
  }
${o.callLabel}:
	call	${target}
	addl	$4, %esp${restoreAll}
	movl	24(%esp), %eax
	movl	4(%esp), %ecx
	movl	8(%esp), %edx
	${close}
	ret
`;
}

/**
 * The AT&T source of a caller trampoline: `ftrace_caller` (`regs: false`),
 * `ftrace_regs_caller` (`regs: true`) or a per-ops copy of either.
 *
 * @param options Name, call-site label, regs or not, how the ops is loaded.
 * @returns The source; it defines `options.name` and `options.callLabel` and needs the
 *   symbols `ftrace_stub` (or the initial target), the probe and the ops symbol.
 * @example
 * ```ts
 * import { ftraceCallerSource } from "@textpoke/textpoke";
 *
 * const src = ftraceCallerSource({
 *   bitness: 64, name: "ftrace_regs_caller", callLabel: "ftrace_regs_call",
 *   regs: true, ops: { variable: "function_trace_op" },
 * });
 * console.log(src.includes("ftrace_regs_call:")); // true
 * ```
 */
export function ftraceCallerSource(options: CallerOptions): string {
  return options.bitness === 64 ? caller64(options) : caller32(options);
}

/** Options of {@link tracedFunctionSource}. */
export interface TracedFunctionOptions {
  /** 32 or 64. */
  bitness: 32 | 64;
  /** Label of the function. */
  name: string;
  /** Offset of the function's first byte inside its 64-byte line (0–63). */
  lineOffset: number;
  /** Symbol called by the body after the fentry site (a native that records the run). */
  body: string;
}

/**
 * The AT&T source of a traced function: aligned so that it starts `lineOffset` bytes
 * into a 64-byte line (padding with int3, as the kernel pads), then `call __fentry__`
 * (the 5-byte site ftrace patches), then `call <body>` with the arguments untouched,
 * then `ret`. With `lineOffset` 60–62 the site's rel32 straddles the line (see
 * {@link rel32Straddles}); at 63 only the opcode is in the line and the rel32 lies wholly
 * in the next one.
 *
 * @param options Name, line offset, body symbol.
 * @returns The source (defines `name`).
 * @throws {FtraceError} If `lineOffset` is not an integer in 0..63.
 */
export function tracedFunctionSource(options: TracedFunctionOptions): string {
  const { name, lineOffset, body } = options;
  if (!Number.isInteger(lineOffset) || lineOffset < 0 || lineOffset > 63) {
    throw new FtraceError(
      `Traced function ${name}: lineOffset must be an integer in 0..63, not ${lineOffset}`,
    );
  }
  return `
	.balign	64, 0xcc
	.skip	${lineOffset}, 0xcc
${name}:
	call	__fentry__
	call	${body}
	ret
`;
}

/**
 * Does a 5-byte site at `address` have its rel32 (bytes 1–4) straddle a 64-byte line?
 *
 * @param address The site.
 * @returns True when bytes 1..4 lie in two lines.
 */
export function rel32Straddles(address: bigint): boolean {
  const off = Number(address & 63n);
  return off + 1 < 64 && off + 4 >= 64;
}

/**
 * The small fixed pieces: `__fentry__` and `ftrace_stub` (both a bare `ret`, as with
 * dynamic ftrace once the sites are NOPs).
 *
 * @param probe Begin `ftrace_stub` with `call __probe_ftrace_stub` (the same observation
 *   every trampoline carries, so an experiment sees a caller's call reach the stub).
 * @returns The source (defines `__fentry__`, `ftrace_stub`).
 */
export function ftraceStubsSource(probe = false): string {
  return `
__fentry__:
	ret
ftrace_stub:
${probe ? "\tcall\t__probe_ftrace_stub\n" : ""}	ret
`;
}
