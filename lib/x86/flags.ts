/**
 * RFLAGS bit constants (Intel SDM Vol. 1, 3.4.3 "EFLAGS Register").
 *
 * The six arithmetic flags are {@link ARITH}; bit 1 always reads 1 ({@link FIXED1}).
 *
 * @example Testing the zero flag
 * ```ts
 * import { ZF } from "./flags.ts";
 * const rflags = 0x246;
 * console.log((rflags & ZF) !== 0); // true
 * ```
 *
 * @module
 */

/** Carry flag (bit 0). */
export const CF = 0x1;
/** Bit 1: reserved, always reads 1. */
export const FIXED1 = 0x2;
/** Parity flag (bit 2): set when the low byte of the result has an even number of 1 bits. */
export const PF = 0x4;
/** Auxiliary carry flag (bit 4): carry or borrow out of bit 3. */
export const AF = 0x10;
/** Zero flag (bit 6). */
export const ZF = 0x40;
/** Sign flag (bit 7). */
export const SF = 0x80;
/** Trap flag (bit 8): single-step. */
export const TF = 0x100;
/** Interrupt enable flag (bit 9). */
export const IF = 0x200;
/** Direction flag (bit 10): string instructions decrement when set. */
export const DF = 0x400;
/** Overflow flag (bit 11). */
export const OF = 0x800;
/** I/O privilege level field (bits 12–13). */
export const IOPL_MASK = 0x3000;
/** Nested task flag (bit 14). */
export const NT = 0x4000;
/** Resume flag (bit 16). */
export const RF = 0x10000;
/** Virtual-8086 mode flag (bit 17). */
export const VM = 0x20000;
/** Alignment check flag (bit 18). */
export const AC = 0x40000;
/** ID flag (bit 21): CPUID is supported when software can toggle it. */
export const ID = 0x200000;
/** The six arithmetic (status) flags: CF, PF, AF, ZF, SF, OF. */
export const ARITH = 0x8d5;
