/**
 * The CPU's block cache: for a predecoded instruction, the straight-line run of
 * predecoded instructions that starts there, so the step loop fetches once per run and
 * then executes the slots back to back.
 *
 * A block is made only of slots already in the CPU's predecoded cache, in the same
 * physical frame, at consecutive addresses: exactly the slots the one-step-at-a-time loop
 * would fetch next. It ends after the first instruction that is not straight-line (see
 * `straightLine` in the executor: branches, string instructions, serializing and
 * interrupt-related instructions), before an offset whose slot is not cached (not yet
 * decoded, a native, an instruction crossing the page), or at the end of the page.
 *
 * Invalidation follows the predecoded cache exactly: every removal of a slot from a
 * frame bumps that frame's {@link CodePage.epoch}, and a block whose epoch differs is
 * rebuilt. A running block stops after the instruction that removed slots (self-modifying
 * code), changed the fetch translation or raised any other attention condition; see
 * `Cpu.runSteps`.
 *
 * A block that ends with a relative jump or conditional jump back to its own first
 * instruction (a loop body; {@link Block.loops}) runs, once compiled, iteration after
 * iteration inside its function, as long as the branch is taken, nothing raised attention
 * and the step budget holds another whole iteration: exactly the block the step loop
 * would fetch and run next, without the trip through it.
 *
 * @module
 */

import type { Slot } from "../x86/execute.ts";
import { Op, OpKind, Reg } from "../x86/insn.ts";

/** The longest block, in instructions (bounds the work of a rebuild). */
export const MAX_BLOCK = 64;

/** The predecoded instructions of one physical frame, and its invalidation epoch. */
export class CodePage {
  /** Slot per offset (undefined: not decoded, or invalidated). */
  readonly slots: (Slot | undefined)[];
  /** Bumped whenever a slot of this frame is removed; blocks built earlier are stale. */
  epoch = 0;

  /**
   * An empty page.
   * @param size Bytes per page.
   */
  constructor(size: number) {
    this.slots = new Array<Slot | undefined>(size).fill(undefined);
  }
}

/** A straight-line run of cached slots starting at one slot. */
export class Block {
  /** The slots, in execution order. */
  readonly slots: Slot[];
  /** The frame the slots belong to. */
  readonly page: CodePage;
  /** {@link CodePage.epoch} when the block was built. */
  readonly epoch: number;
  /**
   * Offset of the slot that would follow when the block ended only because that slot was
   * not cached yet (-1 otherwise): once it is cached, the block is rebuilt longer.
   */
  readonly openAt: number;
  /**
   * The last slot is a `jmp`/`jcc` with a relative target at the block's first slot (a
   * loop body): the compiled form runs further iterations itself (see {@link BlockFn}).
   */
  readonly loops: boolean;
  /** Executions so far (a block is compiled when it gets hot). */
  runs = 0;
  /** The compiled form ({@link compileBlock}), once the block is hot. */
  fn: BlockFn | null = null;

  /**
   * A block (the CPU builds them with {@link buildBlock}).
   * @param slots The slots.
   * @param page Their frame.
   * @param openAt Offset of the uncached slot that ended the block, or -1.
   * @param loops Whether the last slot branches back to the first ({@link Block.loops}).
   */
  constructor(slots: Slot[], page: CodePage, openAt: number, loops = false) {
    this.slots = slots;
    this.page = page;
    this.epoch = page.epoch;
    this.openAt = openAt;
    this.loops = loops;
  }
}

/**
 * Builds the block that starts with the slot at `offset` of `page`.
 * @param page The frame's predecoded instructions.
 * @param offset Offset of the first slot (must be cached).
 * @param isStraight Whether a slot falls through (the executor's `straightLine`).
 * @returns The block (also stored in the first slot's `block`).
 */
export function buildBlock(
  page: CodePage,
  offset: number,
  isStraight: (s: Slot) => boolean,
): Block {
  const slots = page.slots;
  const first = slots[offset]!;
  const out: Slot[] = [first];
  let s = first;
  let off = offset;
  let openAt = -1;
  while (out.length < MAX_BLOCK && isStraight(s)) {
    off += s.len;
    if (off >= slots.length) break;
    const next = slots[off];
    if (next === undefined) {
      openAt = off;
      break;
    }
    out.push(next);
    s = next;
  }
  // A loop body: the last slot jumps (relative to the ip after it, on this page) to the
  // first. Pages are aligned, so offsets within the frame are offsets within the virtual
  // page; the compiled block still compares the ip itself before running again.
  const loops = (s.op === Op.JCC || s.op === Op.JMP) && off + s.len + s.imm === offset;
  const b = new Block(out, page, openAt, loops);
  first.block = b;
  return b;
}

/**
 * A compiled block: runs all the slots of `slots` (its own slots) on CPU `c` and returns
 * how many ran; it stops early after a slot that can store or call a hook and left
 * `c.attn` non-zero. A looping block ({@link Block.loops}) then runs its slots again
 * while its last slot left `c.ip` at the block's first instruction, `c.attn` is zero and
 * `budget` (at least the block's length on entry) holds another whole iteration; the
 * count covers every iteration. When a slot throws, it stores the number of instructions
 * that completed before it (earlier iterations included) in `c.blockFault` and rethrows.
 */
export type BlockFn = (c: unknown, slots: Slot[], budget: number) => number;

/**
 * Compiles a block to one function that calls each slot's bound handler directly (the
 * calls are monomorphic, so the JIT inlines the handlers), with the same stops as the
 * interpreted loop: after each slot that is not store-free, a non-zero `attn` returns
 * (a store-free slot cannot change it). The caller runs it only with a budget of at least
 * the block's length. A looping block's function wraps the slots in a loop that goes round
 * again only where the step loop would run this same block next with the same budget
 * check: the branch went back to the first instruction, no attention is pending (so no
 * slot was invalidated — removals raise it — and the fetch translation stands) and a
 * whole iteration fits the budget.
 *
 * Where the host forbids generating code (a browser page whose Content-Security-Policy
 * lacks 'unsafe-eval'), the first attempt fails, compilation is switched off for good and
 * blocks keep running interpreted: slower, never different.
 * @param slots The block's slots.
 * @param isStoreFree Whether a slot only reads (the executor's `storeFree`).
 * @returns The compiled function, or null where code generation is not allowed.
 */
export function compileBlock(
  slots: Slot[],
  isStoreFree: (s: Slot) => boolean,
  loops = false,
): BlockFn | null {
  if (!codegenAllowed) return null;
  const names: string[] = [];
  const n = slots.length;
  // `done`: instructions of earlier iterations (looping blocks only).
  const plus = loops ? "done + " : "";
  let body = loops
    ? "let k = 0;\nlet done = 0;\nconst ip0 = c.ip;\ntry {\nfor (;;) {\n"
    : "let k = 0;\ntry {\n";
  for (let i = 0; i < n; i++) names.push(`h${i}`);
  const runs: StackRun[] = [];
  for (let i = 0; i < n;) {
    // A run of plain pushes or pops (never the block's last slot): one call tries them
    // all at once (see `Cpu.stackPushRun`); where it declines, the slots run one by one.
    const kind = stackRunKind(slots[i]!);
    let m = 1;
    if (kind !== 0) {
      while (i + m < n - 1 && stackRunKind(slots[i + m]!) === kind) m++;
    }
    if (m >= 2) {
      const method = kind === 1 ? "stackPushRun" : "stackPopRun";
      names.push(`R${i}`);
      runs.push(new StackRun(slots.slice(i, i + m), kind === 1));
      body += `  run${i}: {\n`;
      body += `  if (c.${method}(R${i})) {\n`;
      body += `    k = ${i + m};\n    if (c.attn !== 0) return ${plus}${i + m};\n`;
      body += `    break run${i};\n  }\n`;
      for (let j = i; j < i + m; j++) body += slotText(slots, j, isStoreFree, loops, plus);
      body += "  }\n";
      i += m;
      continue;
    }
    body += slotText(slots, i, isStoreFree, loops, plus);
    i++;
  }
  if (loops) body += "}\n";
  body += `} catch (e) {\n  c.blockFault = ${plus}k;\n  throw e;\n}`;
  let make: (...fns: unknown[]) => BlockFn;
  try {
    make = new Function(
      ...names,
      `"use strict";\nreturn function block(c, S, budget) {\n${body}\n};`,
    ) as (
      ...fns: unknown[]
    ) => BlockFn;
  } catch {
    codegenAllowed = false; // EvalError under a CSP without 'unsafe-eval'
    return null;
  }
  return make(...slots.map((s) => s.fn), ...runs);
}

/**
 * A run of pushes or pops in a compiled block, described once at compile time for the
 * CPU's one-go path (`Cpu.stackPushRun` / `Cpu.stackPopRun`).
 */
export class StackRun {
  /** Pushes (true) or pops (false). */
  readonly push: boolean;
  /** Number of instructions. */
  readonly count: number;
  /** Sum of their lengths in bytes. */
  readonly len: number;
  /** Every one is at the 64-bit mode's stack size (memory operands: 64-bit addressing). */
  readonly ok64: boolean;
  /** Every one is at the 32-bit mode's stack size (memory operands: 32-bit addressing). */
  readonly ok32: boolean;
  /** Some push reads a memory operand. */
  readonly hasMem: boolean;
  /**
   * Per instruction, three words: the kind (0 register, 1 immediate, 2 memory at the
   * stack pointer + displacement), then the register, the immediate's halves or the
   * displacement.
   */
  readonly ops: Int32Array;

  /**
   * Describes a run.
   * @param slots The run's slots, each with a non-zero {@link stackRunKind} of one kind.
   * @param push Whether they are pushes.
   */
  constructor(slots: Slot[], push: boolean) {
    this.push = push;
    this.count = slots.length;
    this.ops = new Int32Array(slots.length * 3);
    let len = 0;
    let ok64 = true;
    let ok32 = true;
    let hasMem = false;
    for (let j = 0; j < slots.length; j++) {
      const s = slots[j]!;
      len += s.len;
      if (s.opSize === 2) ok64 = false;
      if (s.opSize !== 4) ok32 = false;
      if (s.kind0 === OpKind.IMM) {
        this.ops[3 * j] = 1;
        this.ops[3 * j + 1] = s.imm;
        this.ops[3 * j + 2] = s.immHi;
      } else if (s.kind0 === OpKind.MEM) {
        hasMem = true;
        if (s.addrSize !== 8) ok64 = false;
        if (s.addrSize !== 4) ok32 = false;
        this.ops[3 * j] = 2;
        this.ops[3 * j + 1] = s.disp;
      } else this.ops[3 * j + 1] = s.reg0;
    }
    this.len = len;
    this.ok64 = ok64;
    this.ok32 = ok32;
    this.hasMem = hasMem;
  }
}

/**
 * Whether a slot may join a run of stack accesses the CPU tries in one go: 1 for a push
 * of a register other than the stack pointer, of an immediate or of a word at a
 * displacement from the stack pointer, 2 for a pop into a
 * register other than the stack pointer, 0 otherwise. The operand size is checked when
 * the run executes (it depends on the mode).
 * @param s A slot.
 * @returns The run kind.
 */
export function stackRunKind(s: Slot): number {
  if (s.op === Op.PUSH) {
    const k = s.kind0;
    if (k === OpKind.IMM || (k === OpKind.REG && s.reg0 !== Reg.RSP)) return 1;
    // push disp(%rsp): no index, no FS/GS base (the address size is checked at run time).
    if (k === OpKind.MEM && s.base === Reg.RSP && s.index < 0 && s.seg < 4) return 1;
  } else if (s.op === Op.POP && s.kind0 === OpKind.REG && s.reg0 !== Reg.RSP) return 2;
  return 0;
}

/** The compiled text of slot `i`: the call, the count, the attention check or the end. */
function slotText(
  slots: Slot[],
  i: number,
  isStoreFree: (s: Slot) => boolean,
  loops: boolean,
  plus: string,
): string {
  const n = slots.length;
  let body = `  h${i}(c, S[${i}]);\n`;
  if (i === n - 1) {
    if (!loops) body += `  return ${n};\n`;
    else {
      body += `  done += ${n};\n`;
      body += `  if (c.ip !== ip0 || c.attn !== 0 || budget - done < ${n}) return done;\n`;
      body += "  k = 0;\n";
    }
  } else {
    body += `  k = ${i + 1};\n`;
    if (!isStoreFree(slots[i]!)) body += `  if (c.attn !== 0) return ${plus}${i + 1};\n`;
  }
  return body;
}

/** False once the host refused `new Function` (see {@link compileBlock}). */
let codegenAllowed = true;
