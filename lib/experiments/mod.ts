/**
 * Race harnesses that run each proposal on each scenario and return plain records.
 *
 * @module
 */
export * from "./classify.ts";
export * from "./experiment.ts";
export * from "./report.ts";
