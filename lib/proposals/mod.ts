/**
 * Every proposal of the 2019 thread: the two axes, the named presets, the int3 handler of
 * each combination and the machine code its push strategy needs.
 *
 * @module
 */
export * from "./handler.ts";
export * from "./proposals.ts";
export * from "./push.ts";
