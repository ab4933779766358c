/**
 * Every proposal of the 2019 thread: the two axes, the named presets, the int3 handler of
 * each combination and the machine code its push strategy needs.
 *
 * @module
 */
export * from "./handler.ts";
export * from "./proposals.ts";
// push.ts's per-CPU slot offsets (PCPU_*) are the stubs' internals.
export { fixupEntrySource, linkEntrySource, stubSource } from "./push.ts";
