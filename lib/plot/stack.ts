/**
 * Stacks drawn as byte-addressed cells, one per machine word, coloured by who owns the
 * word: the interrupted code's stack, the hardware (iret) frame, the rest of pt_regs, the
 * entry's gap, the return address an emulated call pushed, or a word of the frame that
 * push clobbered. Several panels (before / after, with / without the gap) share one
 * address axis, so the same word sits on the same row in each.
 *
 * @module
 */

import * as Plot from "@observablehq/plot";
import { PT_REGS_FIELDS_32, PT_REGS_FIELDS_64 } from "../kernel/pt_regs.ts";
import { drawPlot, type FigureOptions } from "./_plot.ts";
import type { PlotFigure } from "./document.ts";

/** Who a stack word belongs to. */
export type StackOwner =
  | "interrupted stack"
  | "hardware frame"
  | "pt_regs"
  | "gap"
  | "emulated return address"
  | "clobbered"
  | "handler frame"
  | "free";

/** Every owner, in legend order, with its colour. */
export const STACK_OWNER_COLORS: Readonly<Record<StackOwner, string>> = {
  "interrupted stack": "#9ecae1",
  "hardware frame": "#fd8d3c",
  "pt_regs": "#fdd0a2",
  "gap": "#e5e5e5",
  "emulated return address": "#31a354",
  "clobbered": "#de2d26",
  "handler frame": "#bcbddc",
  "free": "#ffffff",
};

/** One machine word of a stack, in one panel. */
export interface StackCell {
  /** The panel it is drawn in (e.g. "before the push", "x86-64 without the gap"). */
  panel: string;
  /** Address of its first byte. */
  address: bigint;
  /** Its size in bytes (4 or 8). */
  size: number;
  /** Who owns it. */
  owner: StackOwner;
  /** A short name drawn in the cell (a pt_regs member, "ret"), or "". */
  label: string;
  /** Its value, if known. */
  value?: bigint;
}

/** An address range given an owner and, optionally, names for its words. */
export interface StackRegion {
  /** First byte. */
  from: bigint;
  /** One past the last byte. */
  to: bigint;
  /** The owner of its words. */
  owner: StackOwner;
  /** One label per word from `from` up (missing ones are ""). */
  labels?: readonly string[];
}

/** Options of {@link int3StackCells}. */
export interface Int3StackOptions {
  /** The panel name. */
  panel: string;
  /** 64 or 32 (word size and pt_regs layout). */
  bitness: 32 | 64;
  /** Reads a word of emulated memory (e.g. `(a, n) => kernel.mem.readWord(a, n)`). */
  read: (address: bigint, size: 4 | 8) => bigint;
  /** Address of pt_regs (the entry's pointer). */
  regs: bigint;
  /**
   * Bytes of pt_regs the trap frame really has: default 168 on x86-64, 60 on x86-32 (a
   * kernel-mode trap before v5.3 has no sp/ss: the interrupted stack starts there).
   */
  regsSize?: number;
  /** The interrupted stack pointer (the top of the stack the int3 interrupted). */
  sp: bigint;
  /** Address where an emulated push stored the return address, if it did. */
  pushed?: bigint;
  /** Lowest address drawn (default: 2 words below pt_regs). */
  lo?: bigint;
  /** One past the highest address drawn (default: 4 words above `sp`). */
  hi?: bigint;
  /**
   * Ranges with an explicit owner (checked first): e.g. the 8 bytes the x86-32 seed entry
   * reserves below pt_regs as the "gap", or the return address of `call do_int3`.
   */
  regions?: readonly StackRegion[];
}

const HW_FRAME = new Set(["ip", "cs", "flags", "sp", "ss"]);

/**
 * Cells for an int3 trap frame as the kernel's C handler sees it: pt_regs members named,
 * the iret frame (ip, cs, flags, sp, ss) as the hardware frame, the words between pt_regs
 * and the interrupted stack as the gap, and the emulated push's word as the emulated
 * return address, or as clobbered when it landed inside pt_regs.
 *
 * @param options The frame's geometry and a memory reader.
 * @returns One cell per word from `lo` to `hi`, lowest address first.
 * @example The x86-64 gap, without touching a machine
 * ```ts
 * import { int3StackCells } from "@textpoke/textpoke/plot";
 *
 * const sp = 0x1000n;
 * const cells = int3StackCells({
 *   panel: "64-gap", bitness: 64, read: () => 0n,
 *   regs: sp - 48n - 168n, sp, pushed: sp - 8n,
 * });
 * console.log(cells.find((c) => c.address === sp - 8n)?.owner); // emulated return address
 * ```
 */
export function int3StackCells(options: Int3StackOptions): StackCell[] {
  const ws = options.bitness / 8;
  const w = BigInt(ws);
  const fields: readonly string[] = options.bitness === 64 ? PT_REGS_FIELDS_64 : PT_REGS_FIELDS_32;
  const regsSize = BigInt(options.regsSize ?? (options.bitness === 64 ? 168 : 60));
  const lo = options.lo ?? options.regs - 2n * w;
  const hi = options.hi ?? options.sp + 4n * w;
  const regsEnd = options.regs + regsSize;
  const cells: StackCell[] = [];
  for (let a = lo; a < hi; a += w) {
    const value = options.read(a, ws as 4 | 8);
    let owner: StackOwner;
    let label = "";
    const region = options.regions?.find((r) => a >= r.from && a < r.to);
    const inRegs = a >= options.regs && a < regsEnd;
    const field = inRegs ? fields[Number((a - options.regs) / w)] ?? "" : "";
    if (options.pushed !== undefined && a === options.pushed) {
      owner = inRegs ? "clobbered" : "emulated return address";
      label = inRegs ? `ret over ${field}` : "ret";
    } else if (region !== undefined) {
      owner = region.owner;
      label = region.labels?.[Number((a - region.from) / w)] ?? "";
    } else if (inRegs) {
      owner = HW_FRAME.has(field) ? "hardware frame" : "pt_regs";
      label = field;
    } else if (a >= regsEnd && a < options.sp) {
      owner = "gap";
    } else if (a >= options.sp) {
      owner = "interrupted stack";
    } else {
      owner = "free";
    }
    cells.push({ panel: options.panel, address: a, size: ws, owner, label, value });
  }
  return cells;
}

/**
 * Cells for an address range from explicit regions (words no region covers are "free").
 *
 * @param panel The panel name.
 * @param bitness 64 or 32 (the word size).
 * @param lo Lowest address drawn.
 * @param hi One past the highest address drawn.
 * @param regions The owners of the range, first match wins.
 * @param read Optional memory reader for the values.
 * @returns One cell per word, lowest address first.
 */
export function stackCells(
  panel: string,
  bitness: 32 | 64,
  lo: bigint,
  hi: bigint,
  regions: readonly StackRegion[],
  read?: (address: bigint, size: 4 | 8) => bigint,
): StackCell[] {
  const ws = bitness / 8;
  const w = BigInt(ws);
  const cells: StackCell[] = [];
  for (let a = lo; a < hi; a += w) {
    const r = regions.find((x) => a >= x.from && a < x.to);
    const cell: StackCell = {
      panel,
      address: a,
      size: ws,
      owner: r?.owner ?? "free",
      label: r === undefined ? "" : r.labels?.[Number((a - r.from) / w)] ?? "",
    };
    if (read !== undefined) cell.value = read(a, ws as 4 | 8);
    cells.push(cell);
  }
  return cells;
}

/** Options of {@link stackFigure}. */
export interface StackFigureOptions {
  /** A title above the figure. */
  title?: string;
  /** A caption below it. */
  caption?: string;
  /** Addresses are labelled as offsets from this one (e.g. the interrupted sp). */
  base?: bigint;
  /** The name of the base in labels (default "sp"). */
  baseName?: string;
  /** Draw each cell's value (hex, low 32 bits) beside its label (default false). */
  values?: boolean;
  /** Width in pixels (default 200 per panel plus the axis). */
  width?: number;
  /** Height of one word's row in pixels (default 17). */
  rowHeight?: number;
}

function hexOffset(a: bigint, base: bigint | undefined, name: string): string {
  if (base === undefined) return `0x${a.toString(16)}`;
  const d = a - base;
  if (d === 0n) return name;
  return d > 0n ? `${name}+0x${d.toString(16)}` : `${name}−0x${(-d).toString(16)}`;
}

/**
 * Draws stack cells: one column per panel, one row per word, higher addresses on top,
 * coloured by owner, with a legend of the owners present.
 *
 * @param cells The cells (from {@link int3StackCells} or {@link stackCells}).
 * @param options Title, address base, values.
 * @returns The Plot figure (a `<figure>` holding the `<svg>` and the legend).
 * @example
 * ```ts
 * import { stackCells, stackFigure } from "@textpoke/textpoke/plot";
 *
 * const cells = stackCells("demo", 64, 0x100n, 0x120n, [
 *   { from: 0x110n, to: 0x120n, owner: "hardware frame", labels: ["ip", "cs"] },
 * ]);
 * console.log(stackFigure(cells, { base: 0x110n }).outerHTML.includes("<svg")); // true
 * ```
 */
export function stackFigure(
  cells: readonly StackCell[],
  options: StackFigureOptions = {},
): PlotFigure {
  const panels = [...new Set(cells.map((c) => c.panel))];
  const addresses = [...new Set(cells.map((c) => c.address))].sort((a, b) =>
    a < b ? 1 : a > b ? -1 : 0
  );
  const name = options.baseName ?? "sp";
  const rowKey = (a: bigint) => hexOffset(a, options.base, name);
  const owners = (Object.keys(STACK_OWNER_COLORS) as StackOwner[]).filter((o) =>
    cells.some((c) => c.owner === o)
  );
  const rows = cells.map((c) => ({
    panel: c.panel,
    row: rowKey(c.address),
    owner: c.owner,
    text: options.values === true && c.value !== undefined
      ? `${c.label}${c.label === "" ? "" : " "}${
        (c.value & 0xffffffffn).toString(16).padStart(c.size * 2 > 8 ? 8 : c.size * 2, "0")
      }`
      : c.label,
  }));
  const rowHeight = options.rowHeight ?? 17;
  const figure: FigureOptions = {
    width: options.width ?? 110 + 200 * panels.length,
    height: 40 + rowHeight * addresses.length,
    marginLeft: 100,
    marginTop: 30,
    x: { domain: panels, axis: "top", label: null, padding: 0.06 },
    y: { domain: addresses.map(rowKey), label: null, padding: 0.04 },
    color: {
      domain: owners,
      range: owners.map((o) => STACK_OWNER_COLORS[o]),
      legend: true,
    },
    style: { fontSize: "11px" },
    marks: [
      Plot.cell(rows, { x: "panel", y: "row", fill: "owner", stroke: "#555", strokeWidth: 0.5 }),
      Plot.text(rows, {
        x: "panel",
        y: "row",
        text: "text",
        fontFamily: "monospace",
        fill: (d: { owner: StackOwner }) => d.owner === "clobbered" ? "white" : "black",
      }),
    ],
  };
  if (options.title !== undefined) figure.title = options.title;
  if (options.caption !== undefined) figure.caption = options.caption;
  return drawPlot(figure);
}
