/**
 * `int3_selftest` (7457c0da024b, v5.3), on the model: execute an `int3` padded to the size
 * of a call, whose handler emulates a call to `int3_magic(&val)`, a function that sets
 * `*ptr = 1`. Afterwards the flag must be 1 and nothing corrupted: every register as
 * before (SS included), the stack pointer back where it was, the stack above it untouched.
 * On x86-64 the int3 runs with rsp 16-byte aligned, so the hardware frame has no padding
 * word above it: the worst case for an entry without the gap.
 *
 * The landed kernel emulates from a die notifier; that only works because its push does
 * not move pt_regs. On a kernel whose push moves them (the seed's x86-32 scheme) the test
 * uses the handler slot that gets the regs by reference, ftrace's, exactly as the seed
 * says a notifier cannot do it (Torvalds, 4 May 2019).
 *
 * @module
 */

import type { StopReason } from "../machine/machine.ts";
import { int3EmulateCall } from "./emulate.ts";
import type { Kernel } from "./kernel.ts";

/** What {@link int3Selftest} found. */
export interface SelftestResult {
  /** True when the flag is 1 and nothing was corrupted. */
  readonly passed: boolean;
  /** The flag's value afterwards. */
  readonly val: bigint;
  /** Registers (or "stack") whose value changed across the test. */
  readonly corrupted: readonly string[];
  /** How the run ended. */
  readonly stop: StopReason;
  /** How many times the handler emulated the call. */
  readonly emulated: number;
}

/**
 * The self-test's function and its "callee", which stores 1 through the pointer argument
 * (x86-64: %rdi; x86-32 regparm(3): %eax, both for the test function and int3_magic).
 */
function selftestSource(bitness: 32 | 64): string {
  return `
int3_selftest_fn:
int3_selftest_ip:
	int3
	nop
	nop
	nop
	nop
	ret
int3_magic:
	movl	$1, (${bitness === 64 ? "%rdi" : "%eax"})
	ret
`;
}

const REGS_64 = [
  "rax",
  "rbx",
  "rcx",
  "rdx",
  "rsi",
  "rdi",
  "rbp",
  "rsp",
  "r8",
  "r9",
  "r10",
  "r11",
  "r12",
  "r13",
  "r14",
  "r15",
];
const REGS_32 = ["eax", "ebx", "ecx", "edx", "esi", "edi", "ebp", "esp"];

/**
 * Runs the kernel's int3 self-test on one CPU.
 *
 * @param kernel A booted kernel.
 * @param cpu The CPU to run it on (default 0).
 * @returns The flag, what was corrupted and how the run ended.
 * @example The gap makes it pass
 * ```ts
 * import { bootKernel, int3Selftest, Machine } from "@textpoke/textpoke";
 *
 * const k = bootKernel(new Machine({ bitness: 64 }), { entry: "64-gap" });
 * console.log(int3Selftest(k).passed); // true
 * ```
 */
export function int3Selftest(kernel: Kernel, cpu = 0): SelftestResult {
  if (!kernel.symbols.has("int3_selftest_fn")) {
    kernel.loadText(selftestSource(kernel.bitness), { name: "int3_selftest" });
  }
  const ip = kernel.symbol("int3_selftest_ip");
  const magic = kernel.symbol("int3_magic");
  const valAt = kernel.symbols.get("int3_selftest_val") ??
    kernel.allocData(8, "int3_selftest_val");
  const ws = kernel.bitness === 64 ? 8 : 4;
  kernel.mem.writeWord(valAt, ws, 0n);
  let emulated = 0;
  const d = kernel.dispatch;
  const moves = kernel.pushMode === "move";
  const undo: (() => void)[] = [];
  if (moves) {
    const prevHook = d.ftraceInt3Handler;
    d.ftraceInt3Handler = (ctx) => {
      if (ctx.regs.userMode() || ctx.regs.ip - 1n !== ip) return prevHook?.(ctx) ?? false;
      ctx.regs = int3EmulateCall(ctx.regs, magic, ctx.pushMode);
      emulated++;
      return true;
    };
    d.modifyingFtraceCode++;
    undo.push(() => {
      d.ftraceInt3Handler = prevHook;
      d.modifyingFtraceCode--;
    });
  } else {
    undo.push(d.registerDieNotifier((regs) => {
      if (regs.userMode() || regs.ip - 1n !== ip) return false;
      int3EmulateCall(regs, magic, kernel.pushMode);
      emulated++;
      return true;
    }));
  }
  try {
    const names = kernel.bitness === 64 ? REGS_64 : REGS_32;
    // On x86-64, start the function with rsp ≡ 0 (mod 16) at the int3: the CPU then
    // pushes the frame with no alignment padding, the case where an entry without the
    // gap loses a word of its iret frame (SS) to the emulated push.
    const top = kernel.taskStackTop(cpu) - (kernel.bitness === 64 ? 8n : 0n);
    kernel.prepareCall(cpu, kernel.symbol("int3_selftest_fn"), [valAt], { stackTop: top });
    const c = kernel.machine.cpus[cpu]!;
    // Distinct values in every other register, to see any of them corrupted.
    names.forEach((n, i) => {
      if (n !== "rsp" && n !== "esp" && n !== "rdi" && n !== "eax") {
        c.setReg(n, BigInt(0x1111 * (i + 1)));
      }
    });
    const before = new Map(names.map((n) => [n, c.getReg(n)]));
    const spBefore = before.get(kernel.bitness === 64 ? "rsp" : "esp")!;
    const ssBefore = c.ss;
    const stackBefore = kernel.mem.readBytes(spBefore, Number(top - spBefore));
    const stop = kernel.machine.run({ cpu, maxSteps: 10_000 });
    const returned = stop.kind === "hlt" && c.rip === kernel.symbol("kernel_return") + 1n;
    const corrupted: string[] = [];
    for (const n of names) {
      const expect = n === "rsp" || n === "esp" ? spBefore + BigInt(ws) : before.get(n)!;
      if (c.getReg(n) !== expect) corrupted.push(n);
    }
    // The return address slot was consumed by ret; the rest of the stack must be intact.
    const stackAfter = kernel.mem.readBytes(spBefore, Number(top - spBefore));
    if (stackAfter.some((b, i) => b !== stackBefore[i])) corrupted.push("stack");
    if (c.ss !== ssBefore) corrupted.push("ss");
    if (!returned) corrupted.push("return");
    const val = kernel.mem.readWord(valAt, ws);
    return { passed: val === 1n && corrupted.length === 0, val, corrupted, stop, emulated };
  } finally {
    for (const u of undo) u();
  }
}
