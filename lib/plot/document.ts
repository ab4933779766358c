/**
 * The headless document every figure is drawn into: a linkedom DOM, so Plot runs where
 * there is no browser (the Deno Jupyter kernel, tests, a CLI).
 *
 * @module
 */

import { DOMParser } from "linkedom";

/**
 * A figure as Plot returns it: an `<svg>` element, or a `<figure>` holding the `<svg>`
 * (with a title or a legend). Typed by the one member every caller uses; the object is
 * linkedom's element, which the Deno Jupyter kernel displays as `image/svg+xml` or
 * `text/html`.
 */
export interface PlotFigure {
  /** The figure's markup. */
  readonly outerHTML: string;
}

/** A DOM document Plot can draw into (pass it as Plot's `document` option). */
export interface PlotDocument {
  /** The root element. */
  readonly documentElement: unknown;
}

let shared: PlotDocument | null = null;

/**
 * A linkedom document for Plot's `document` option, created once and shared.
 *
 * @returns The document.
 * @example Draw a bar chart headless
 * ```ts
 * import * as Plot from "@observablehq/plot";
 * import { plotDocument } from "@textpoke/textpoke/plot";
 *
 * const svg = Plot.plot({ document: plotDocument(), marks: [Plot.barY([3, 1, 2])] });
 * console.log(svg.outerHTML.startsWith("<svg")); // true
 * ```
 */
export function plotDocument(): PlotDocument {
  if (shared === null) {
    shared = new DOMParser().parseFromString(
      "<html><body></body></html>",
      "text/html",
    ) as unknown as PlotDocument;
  }
  return shared;
}
