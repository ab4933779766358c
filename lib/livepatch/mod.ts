/**
 * klp-style function redirection on top of ftrace.
 *
 * @module
 */
export * from "./livepatch.ts";
