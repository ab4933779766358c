/**
 * static_call keys, trampolines and inline sites on the modeled kernel.
 *
 * @module
 */
export * from "./static_call.ts";
