/**
 * Turning experiment records into the demo's table and verdicts: plain strings, no
 * printing (the CLI prints them).
 *
 * @module
 */

import { PRESETS } from "../proposals/proposals.ts";
import type { ExperimentRecord } from "./experiment.ts";

/**
 * The one-line verdict on a proposal from its records (all scenarios and arches run).
 *
 * @param records The records of one proposal.
 * @returns A sentence.
 * @example
 * ```ts
 * import { verdict } from "@textpoke/textpoke";
 *
 * console.log(verdict([])); // "nothing ran"
 * ```
 */
export function verdict(records: readonly ExperimentRecord[]): string {
  const ran = records.filter((r) => r.applicable);
  if (ran.length === 0) return "nothing ran";
  const sum = (k: "skipped" | "other" | "crashed") => ran.reduce((a, r) => a + r[k], 0);
  const where = (k: "skipped" | "other" | "crashed") => {
    const s = new Set(ran.filter((r) => r[k] > 0).map((r) => r.scenario));
    return [...s].join(", ");
  };
  const parts: string[] = [];
  const crashed = sum("crashed");
  const skipped = sum("skipped");
  const other = sum("other");
  if (skipped > 0) parts.push(`misses calls (${skipped} skipped: ${where("skipped")})`);
  if (other > 0) parts.push(`runs a call neither instruction names (${other}: ${where("other")})`);
  if (crashed > 0) parts.push(`crashes (${crashed}: ${where("crashed")})`);
  const na = records.filter((r) => !r.applicable);
  const tail = na.length > 0
    ? `; n/a: ${[...new Set(na.map((r) => `${r.scenario} ${r.arch}`))].join(", ")}`
    : "";
  if (parts.length === 0) {
    return `every execution behaved as the old or the new instruction${tail}`;
  }
  const prefix = skipped === 0 && crashed === 0 ? "never skips, but " : "";
  return `${prefix}${parts.join("; ")}${tail}`;
}

const COLS = ["executions", "old", "new", "skipped", "other", "crashed"] as const;

/**
 * The demo's table: proposals down (one line per scenario and arch, then the verdict),
 * figures across.
 *
 * @param records Records in any order (grouped by proposal in preset order).
 * @returns The table as text, ending with a newline.
 */
export function formatTable(records: readonly ExperimentRecord[]): string {
  const order = PRESETS.map((p) => p.id as string);
  const ids = [...new Set(records.map((r) => r.proposal))].sort((a, b) => {
    const ia = order.indexOf(a), ib = order.indexOf(b);
    return (ia < 0 ? 99 : ia) - (ib < 0 ? 99 : ib) || (a < b ? -1 : 1);
  });
  const head = ["proposal", "scenario", "arch", "entry", ...COLS];
  const rows: string[][] = [];
  const verdicts = new Map<number, string>();
  for (const id of ids) {
    const mine = records.filter((r) => r.proposal === id);
    mine.forEach((r, i) => {
      rows.push([
        i === 0 ? id : "",
        r.scenario,
        r.arch,
        r.applicable ? r.entry : "",
        ...COLS.map((c) => (r.applicable ? String(r[c]) : c === "executions" ? "n/a" : "")),
      ]);
    });
    verdicts.set(rows.length, verdict(mine));
  }
  const width = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const fmt = (r: string[]) =>
    r.map((c, i) => (i < 4 ? c.padEnd(width[i]!) : c.padStart(width[i]!))).join("  ").trimEnd();
  const out: string[] = [fmt(head), width.map((w) => "-".repeat(w)).join("  ")];
  rows.forEach((r, i) => {
    out.push(fmt(r));
    const v = verdicts.get(i + 1);
    if (v !== undefined) out.push(`  => ${v}`);
  });
  return out.join("\n") + "\n";
}
