/**
 * Real kernel images: load a Debian vmlinux (or bzImage + System.map), check its ftrace
 * and static_call tables, walk its text with the decoder, boot it on the emulated SMP
 * machine and run the package's ftrace and static_call on it, and report the figures.
 *
 * @example Report on Debian's cloud kernel (after `deno task fetch-kernel`)
 * ```ts ignore
 * import { formatKernelReport, kernelReport } from "@textpoke/textpoke";
 * const path = "vmlinux-6.1.0-56-cloud-amd64";
 * console.log(formatKernelReport(kernelReport(Deno.readFileSync(path), { name: path })));
 * ```
 *
 * @module
 */
export * from "./image.ts";
export * from "./bzimage.ts";
export * from "./system_map.ts";
export * from "./walk.ts";
export * from "./real_kernel.ts";
export * from "./report.ts";
export * from "./race.ts";
