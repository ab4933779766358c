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
import { Op } from "../x86/insn.ts";

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
  for (let i = 0; i < n; i++) {
    names.push(`h${i}`);
    body += `  h${i}(c, S[${i}]);\n`;
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
  return make(...slots.map((s) => s.fn));
}

/** False once the host refused `new Function` (see {@link compileBlock}). */
let codegenAllowed = true;
