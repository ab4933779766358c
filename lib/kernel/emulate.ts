/**
 * The int3 instruction emulation helpers of `arch/x86/include/asm/text-patching.h`:
 * what an int3 handler does to `pt_regs` so that, when the CPU irets, the interrupted
 * context continues as if it had executed a jmp, push, call, ret or jcc instead of the
 * int3.
 *
 * The push is the subtle one, and there are three ways to do it, one per entry scheme:
 *
 * - `"direct"` — x86-64 with the `create_gap` entry (seed of Torvalds, 4 May 2019, as
 *   landed in v5.2) and x86-32 with v5.3's FIXUP_FRAME: the frame holds the interrupted
 *   sp, so `regs->sp -= word; *regs->sp = value`. It is safe only because the entry code
 *   left a gap between the interrupted stack and pt_regs; without the gap the store lands
 *   on the hardware frame itself (see the kernel tests).
 * - `"move"` — the seed's x86-32 variant: a kernel-mode trap frame has no sp/ss, the
 *   interrupted stack starts at `&regs->sp`, so pt_regs (the 60 bytes below sp) moves down
 *   one word and the value is written to `new->sp`, which *is* the interrupted stack's new
 *   top. The entry stub made room (`subl $8,%esp`) and switches to the returned regs
 *   (`movl %eax,%esp`).
 *
 * Every function returns the regs to use from then on (only `"move"` changes them).
 *
 * @module
 */

import { hexAddr, MachineError } from "../errors.ts";
import { CALL_INSN_SIZE, INT3_INSN_SIZE } from "./constants.ts";
import {
  X86_EFLAGS_CF,
  X86_EFLAGS_OF,
  X86_EFLAGS_PF,
  X86_EFLAGS_SF,
  X86_EFLAGS_ZF,
} from "./constants.ts";
import {
  PT_REGS_32,
  type PtRegs,
  RIP,
  RSP,
  SAVED_KERNEL_REGS_SIZE_32,
  SIZEOF_PTREGS_32,
  type WordMemory,
} from "./pt_regs.ts";
import { CANON_HIGH, CANON_LOW } from "../x86/state.ts";

/** How a push is emulated; see the module documentation. */
export type PushMode = "direct" | "move";

/**
 * The push mode the kernel of a bitness used in the seed: `"direct"` on x86-64, `"move"`
 * on x86-32.
 *
 * @param bitness 32 or 64.
 * @returns The default mode.
 */
export function defaultPushMode(bitness: 32 | 64): PushMode {
  return bitness === 64 ? "direct" : "move";
}

/** `CALL_INSN_SIZE - INT3_INSN_SIZE`: from just after the int3 to after the call. */
const CALL_NEXT = BigInt(CALL_INSN_SIZE - INT3_INSN_SIZE);

const LIMIT_64 = 1n << 64n;
const LIMIT_32 = 1n << 32n;

function mask(regs: PtRegs, v: bigint): bigint {
  // In range already (the usual case): comparisons, no new bigint.
  if (v >= 0n && v < (regs.bitness === 64 ? LIMIT_64 : LIMIT_32)) return v;
  return regs.bitness === 64 ? BigInt.asUintN(64, v) : BigInt.asUintN(32, v);
}

/**
 * `int3_emulate_jmp`: continue at `ip`.
 *
 * @param regs The trap frame.
 * @param ip The target.
 * @returns The same regs.
 */
export function int3EmulateJmp(regs: PtRegs, ip: bigint): PtRegs {
  regs.ip = mask(regs, ip);
  return regs;
}

/**
 * `int3_emulate_push`: push `value` onto the interrupted stack.
 *
 * @param regs The trap frame.
 * @param value The word to push.
 * @param mode `"direct"` (x86-64 gap, x86-32 FIXUP_FRAME) or `"move"` (x86-32 seed).
 * @returns The regs to use from now on: moved down one word in `"move"` mode.
 * @throws {MachineError} For `"move"` on x86-64 regs (that push exists only on x86-32).
 * @example Push onto a gapped 64-bit frame
 * ```ts
 * import { int3EmulatePush, PtRegs, wordMemory } from "@textpoke/textpoke";
 *
 * const bytes = new Uint8Array(0x400);
 * const mem = wordMemory({
 *   readBytes: (a, n) => bytes.slice(Number(a), Number(a) + n),
 *   writeBytes: (a, b) => bytes.set(b, Number(a)),
 * });
 * const regs = new PtRegs(mem, 0x100n, 64);
 * regs.sp = 0x380n;
 * int3EmulatePush(regs, 0xabcn, "direct");
 * console.log(regs.sp, mem.readWord(0x378n, 8)); // 888n 2748n
 * ```
 */
export function int3EmulatePush(regs: PtRegs, value: bigint, mode: PushMode): PtRegs {
  const ws = regs.wordSize;
  if (mode === "direct") {
    // The entry code left a gap between the interrupted stack and pt_regs (create_gap
    // on x86-64, FIXUP_FRAME's copy on x86-32): sp - word is free, not the iret frame.
    const sp = mask(regs, regs.sp - (ws === 8 ? 8n : 4n));
    regs.sp = sp;
    regs.mem.writeWord(sp, ws, value);
    return regs;
  }
  if (regs.bitness !== 32) {
    throw new MachineError(
      `The pt_regs move is the x86-32 push emulation only, not for x86-${regs.bitness} (pt_regs at ${
        hexAddr(regs.address)
      })`,
    );
  }
  // The truncated kernel-mode frame ends where the interrupted stack begins (&regs->sp).
  // Move it down one word (the entry's `subl $8,%esp` made room below it); then
  // `new->sp` *is* the interrupted stack's new top, and returning through the moved frame
  // is what lowers the interrupted sp.
  const moved = regs.at(regs.address - BigInt(ws));
  moveFrame(regs, moved);
  moved.sp = mask(regs, value);
  return moved;
}

/**
 * The inverse of {@link int3EmulatePush}: pop a word off the interrupted stack.
 *
 * @param regs The trap frame.
 * @param mode The push mode of the entry.
 * @returns The value and the regs to use from now on (moved up one word in `"move"` mode).
 */
export function int3EmulatePop(regs: PtRegs, mode: PushMode): { value: bigint; regs: PtRegs } {
  const ws = regs.wordSize;
  if (mode === "direct") {
    const sp = regs.sp;
    const value = regs.mem.readWord(sp, ws);
    regs.sp = mask(regs, sp + BigInt(ws));
    return { value, regs };
  }
  // The word at &regs->sp is the interrupted stack's top: read it, then move the
  // truncated frame up over it.
  const value = regs.sp;
  const moved = regs.at(regs.address + BigInt(ws));
  moveFrame(regs, moved);
  return { value, regs: moved };
}

/** Copies the truncated 32-bit frame of `from` to where `to` is. */
function moveFrame(from: PtRegs, to: PtRegs): void {
  const mem = from.mem;
  if (mem.moveBytes !== undefined) {
    mem.moveBytes(to.address, from.address, SAVED_KERNEL_REGS_SIZE_32);
    return;
  }
  const body = mem.readBytes(from.address, SAVED_KERNEL_REGS_SIZE_32);
  mem.writeBytes(to.address, body);
}

/**
 * `int3_emulate_call`: push the address after the 5-byte call the int3 replaced
 * (`ip - INT3_INSN_SIZE + CALL_INSN_SIZE`), then jump to `func`.
 *
 * @param regs The trap frame (its ip is just after the int3).
 * @param func The call target.
 * @param mode The push mode of the entry.
 * @returns The regs to use from now on.
 * @example Emulate `call 0x2000` for an int3 at 0x1000, on a gapped 64-bit frame
 * ```ts
 * import { int3EmulateCall, PtRegs, wordMemory } from "@textpoke/textpoke";
 *
 * const bytes = new Uint8Array(0x400);
 * const mem = wordMemory({
 *   readBytes: (a, n) => bytes.slice(Number(a), Number(a) + n),
 *   writeBytes: (a, b) => bytes.set(b, Number(a)),
 * });
 * const regs = new PtRegs(mem, 0x100n, 64);
 * regs.ip = 0x1001n; // int3 is a trap: ip is just after it
 * regs.sp = 0x380n;
 * int3EmulateCall(regs, 0x2000n, "direct");
 * console.log(regs.ip, regs.sp, mem.readWord(regs.sp, 8)); // 8192n 888n 4101n
 * ```
 */
export function int3EmulateCall(regs: PtRegs, func: bigint, mode: PushMode): PtRegs {
  const fast = callByNumbers(regs, func, mode);
  if (fast !== null) return fast;
  const nextIp = regs.ip + CALL_NEXT;
  const r = int3EmulatePush(regs, nextIp, mode);
  r.ip = mask(r, func);
  return r;
}

/**
 * `int3_emulate_ret`: pop the return address and continue there.
 *
 * @param regs The trap frame.
 * @param mode The push mode of the entry.
 * @returns The regs to use from now on.
 */
export function int3EmulateRet(regs: PtRegs, mode: PushMode): PtRegs {
  const { value, regs: r } = int3EmulatePop(regs, mode);
  r.ip = mask(r, value);
  return r;
}

/**
 * What the kernel's memory offers {@link callByNumbers} (its `KernelMemory`): the view of
 * a word where `readNum`/`writeNum` would take their fast path.
 */
interface FrameMemory {
  toNum(address: bigint): number;
  frameView(a: number, size: number, write: boolean): DataView | null;
  frameOffset: number;
}

function frameMemory(mem: WordMemory): FrameMemory | null {
  const m = mem as WordMemory & Partial<FrameMemory>;
  return typeof m.frameView === "function" && typeof m.toNum === "function"
    ? m as FrameMemory
    : null;
}

const TWO32 = 4294967296;
const CALL_NEXT_NUM = CALL_INSN_SIZE - INT3_INSN_SIZE;
const WORDS_32 = SAVED_KERNEL_REGS_SIZE_32 / 4;

/** The last call target split into halves (a handler emulates the same call again and again). */
let funcKey = -1n;
let funcLo = 0;
let funcHi = 0;

function splitFunc(v: bigint): void {
  if (v === funcKey) return;
  funcLo = Number(v & 0xffffffffn) | 0;
  funcHi = Number(v >> 32n) | 0;
  funcKey = v;
}

/**
 * {@link int3EmulateCall} with numbers instead of bigints, on the kernel's memory: the same
 * loads and stores in the same order with the same values, taken only when every one of
 * them would take the memory's fast path (checked before anything changes). Returns the
 * regs to use, or null (nothing changed) for the bigint path.
 */
function callByNumbers(regs: PtRegs, func: bigint, mode: PushMode): PtRegs | null {
  const mem = frameMemory(regs.mem);
  if (mem === null) return null;
  const base = mem.toNum(regs.address);
  if (base !== base) return null;
  if (regs.bitness === 64) {
    if (mode !== "direct") return null; // the bigint path throws
    const vIp = mem.frameView(base + RIP, 8, true);
    if (vIp === null) return null;
    const oIp = mem.frameOffset;
    const vSp = mem.frameView(base + RSP, 8, true);
    if (vSp === null) return null;
    const oSp = mem.frameOffset;
    // next ip = regs->ip + 4, the new sp = regs->sp - 8 (both mod 2^64).
    const ipLo = vIp.getInt32(oIp, true) >>> 0;
    const ipHi = vIp.getInt32(oIp + 4, true);
    const spLo = vSp.getInt32(oSp, true) >>> 0;
    const spHi = vSp.getInt32(oSp + 4, true);
    const nl = ipLo + CALL_NEXT_NUM;
    const nHi = (ipHi + (nl >= TWO32 ? 1 : 0)) | 0;
    const sl = spLo - 8;
    const sHi = (spHi - (sl < 0 ? 1 : 0)) | 0;
    const a = sHi * TWO32 + ((sl | 0) >>> 0);
    if (a < CANON_LOW || a >= CANON_HIGH) return null; // the bigint path throws
    const vTop = mem.frameView(a, 8, true);
    if (vTop === null) return null;
    const oTop = mem.frameOffset;
    splitFunc(func >= 0n && func < LIMIT_64 ? func : BigInt.asUintN(64, func));
    // regs->sp, then the pushed word, then regs->ip: the bigint path's order (they may
    // overlap: without the gap, the push lands on the frame).
    vSp.setInt32(oSp, sl | 0, true);
    vSp.setInt32(oSp + 4, sHi, true);
    vTop.setInt32(oTop, nl | 0, true);
    vTop.setInt32(oTop + 4, nHi, true);
    vIp.setInt32(oIp, funcLo, true);
    vIp.setInt32(oIp + 4, funcHi, true);
    return regs;
  }
  // 32-bit frames near the top of the address space wrap: the bigint path.
  if (base < 4 || base + SIZEOF_PTREGS_32 >= TWO32) return null;
  splitFunc(func >= 0n && func < LIMIT_32 ? func : BigInt.asUintN(32, func));
  if (mode === "direct") {
    const vIp = mem.frameView(base + PT_REGS_32.IP, 4, true);
    if (vIp === null) return null;
    const oIp = mem.frameOffset;
    const vSp = mem.frameView(base + PT_REGS_32.SP, 4, true);
    if (vSp === null) return null;
    const oSp = mem.frameOffset;
    const next = (vIp.getInt32(oIp, true) + CALL_NEXT_NUM) | 0;
    const sp = (vSp.getInt32(oSp, true) - 4) >>> 0;
    const vTop = mem.frameView(sp, 4, true);
    if (vTop === null) return null;
    const oTop = mem.frameOffset;
    vSp.setInt32(oSp, sp | 0, true);
    vTop.setInt32(oTop, next, true);
    vIp.setInt32(oIp, funcLo, true);
    return regs;
  }
  // "move": the truncated frame moves down one word, then new->sp = next ip and
  // new->ip = func; all of it, from regs - 4 to the old sp slot, in one writable page.
  const v = mem.frameView(base - 4, SAVED_KERNEL_REGS_SIZE_32 + 4, true);
  if (v === null) return null;
  const o = mem.frameOffset;
  const moved = regs.at(regs.address - 4n);
  const next = (v.getInt32(o + 4 + PT_REGS_32.IP, true) + CALL_NEXT_NUM) | 0;
  for (let i = 0; i < WORDS_32; i++) v.setInt32(o + 4 * i, v.getInt32(o + 4 + 4 * i, true), true);
  v.setInt32(o + PT_REGS_32.SP, next, true);
  v.setInt32(o + PT_REGS_32.IP, funcLo, true);
  return moved;
}

const JCC_MASK = [
  X86_EFLAGS_OF,
  X86_EFLAGS_CF,
  X86_EFLAGS_ZF,
  X86_EFLAGS_CF | X86_EFLAGS_ZF,
  X86_EFLAGS_SF,
  X86_EFLAGS_PF,
];

/**
 * The kernel's `__emulate_cc`: does condition `cc` (0–15, the low nibble of a Jcc
 * opcode) hold for `flags`? Conditions 0–11 test one mask (OF, CF, ZF, CF|ZF, SF, PF);
 * 12–15 compare SF with OF (and ZF for 14–15); an odd cc inverts.
 *
 * @param flags RFLAGS.
 * @param cc Condition code 0–15.
 * @returns Whether a Jcc with that condition is taken.
 */
export function emulateCc(flags: number, cc: number): boolean {
  const invert = (cc & 1) !== 0;
  let match: boolean;
  if (cc < 0xc) {
    match = (flags & JCC_MASK[cc >> 1]!) !== 0;
  } else {
    match = ((flags & X86_EFLAGS_SF) !== 0) !== ((flags & X86_EFLAGS_OF) !== 0);
    if (cc >= 0xe) match = match || (flags & X86_EFLAGS_ZF) !== 0;
  }
  return match !== invert;
}

/**
 * `int3_emulate_jcc`: continue at `ip + disp` if condition `cc` holds on the interrupted
 * flags, else at `ip` (the address after the Jcc).
 *
 * @param regs The trap frame.
 * @param cc Condition code 0–15.
 * @param ip Address after the conditional jump.
 * @param disp Its displacement.
 * @returns The same regs.
 */
export function int3EmulateJcc(regs: PtRegs, cc: number, ip: bigint, disp: bigint): PtRegs {
  const taken = emulateCc(Number(regs.flags & 0xffffn), cc & 0xf);
  return int3EmulateJmp(regs, taken ? ip + disp : ip);
}
