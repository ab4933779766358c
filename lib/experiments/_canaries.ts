/**
 * Canary values the race workers keep in the callee-saved registers: a patched call that
 * returns with any of them changed clobbered its caller's state (classified `crashed`).
 * Shared by the demo's races (lib/experiments) and the real-kernel race (lib/image).
 *
 * @module
 */

/** x86-64 callee-saved registers and their canaries. */
export const CANARIES_64: readonly (readonly [string, bigint])[] = [
  ["rbx", 0xb0b0b0b0b0b0b0bn],
  ["rbp", 0xbeefbeefbeefbeefn],
  ["r12", 0x1212121212121212n],
  ["r13", 0x1313131313131313n],
  ["r14", 0x1414141414141414n],
  ["r15", 0x1515151515151515n],
];

/** x86-32 callee-saved registers and their canaries. */
export const CANARIES_32: readonly (readonly [string, bigint])[] = [
  ["ebx", 0xb0b0b0b0n],
  ["ebp", 0xbeefbeefn],
  ["esi", 0x51515151n],
  ["edi", 0xd1d1d1d1n],
];
