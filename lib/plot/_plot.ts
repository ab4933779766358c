/**
 * Internal: Plot.plot with the shared headless document, typed as {@link PlotFigure}.
 *
 * @module
 */

import * as Plot from "@observablehq/plot";
import { plotDocument, type PlotFigure } from "./document.ts";

/** Plot's options minus the document (which is always ours). */
export type FigureOptions = Omit<Plot.PlotOptions, "document">;

/**
 * Draws a Plot figure into the shared document.
 *
 * @param options Plot options.
 * @returns The figure.
 */
export function drawPlot(options: FigureOptions): PlotFigure {
  return Plot.plot({ ...options, document: plotDocument() as never }) as unknown as PlotFigure;
}
