/**
 * ftrace on the modeled kernel: fentry sites, caller trampolines, ftrace_ops, the list
 * function, per-ops trampolines, and the batches that move sites.
 *
 * @module
 */
export * from "./batch.ts";
export * from "./ftrace.ts";
export * from "./ops.ts";
export * from "./trampolines.ts";
