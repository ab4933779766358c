/**
 * The report of a real kernel image: what it holds (version, functions, ftrace and
 * static_call sites, sites whose rel32 straddles a 64-byte line), what the decoder found
 * walking its text, and what the package's patchers did to it on the emulated SMP
 * machine (boot-time NOPing, enabling and disabling tracing of every function in one
 * text_poke_bp batch each, the static_call updates of the `preempt=` modes). The image
 * is mapped at its link addresses; the model's own code sits in the module area. A plain
 * record (addresses as hex
 * strings, so it is JSON as it is) and a text form.
 *
 * @module
 */

import { hexAddr } from "../errors.ts";
import { rel32Straddles } from "../ftrace/trampolines.ts";
import { type KernelImage, loadKernelImage, type LoadOptions } from "./image.ts";
import {
  type BatchRecord,
  bootRealKernel,
  type FtraceRunRecord,
  runFtraceAll,
  runStaticCallUpdate,
  type StaticCallRunRecord,
} from "./real_kernel.ts";
import { checkBoundaries, formatWalkIssue, type TextWalk, walkText } from "./walk.ts";

/** The decoder's sweep of one section, without the bitmap. */
export interface WalkSummary {
  /** Section. */
  readonly section: string;
  /** Bytes. */
  readonly bytes: number;
  /** Instructions (int3 included). */
  readonly instructions: number;
  /** Instructions that are not int3. */
  readonly code: number;
  /** int3 bytes. */
  readonly int3: number;
  /** Runs of int3. */
  readonly int3Runs: number;
  /** Longest int3 run: bytes and where. */
  readonly longestInt3Run: { readonly length: number; readonly address: string };
  /** VEX / EVEX / XOP encoded instructions. */
  readonly vex: number;
  /** EVEX. */
  readonly evex: number;
  /** XOP. */
  readonly xop: number;
  /** Decoded with exact length but outside the executor's set. */
  readonly unsupported: number;
  /** Functions found to be 32-bit code. */
  readonly code32: readonly string[];
  /** Function symbols the sweep stepped over. */
  readonly resyncs: number;
  /** Undecodable places left (outside 32-bit code). */
  readonly issues: readonly string[];
  /** Wall time, ms. */
  readonly ms: number;
}

/** The report of one image. */
export interface KernelReportRecord {
  /** File name. */
  readonly file: string;
  /** `vmlinux` or `bzImage`. */
  readonly format: string;
  /** `linux_banner`. */
  readonly version: string;
  /** Loaded sections: name, link address, size. */
  readonly sections: readonly {
    readonly name: string;
    readonly address: string;
    readonly size: number;
  }[];
  /** Function symbols. */
  readonly functions: number;
  /** `__fentry__`. */
  readonly fentry: string;
  /** ftrace sites. */
  readonly ftrace: {
    readonly sites: number;
    readonly text: number;
    readonly init: number;
    /** Sites at no function symbol's start (leftover bodies of overridden weak functions). */
    readonly notAtSymbol: number;
    /** Sites whose rel32 straddles a 64-byte line. */
    readonly straddling: number;
    /** Sites per offset in their 64-byte line (64 counts). */
    readonly byLineOffset: readonly number[];
    /** Sites off an instruction boundary of the walk. */
    readonly offBoundary: number;
  };
  /** static_call keys and sites. */
  readonly staticCall: {
    readonly keys: number;
    readonly keysWithSites: number;
    readonly sites: number;
    readonly tail: number;
    readonly straddling: number;
    readonly offBoundary: number;
    /** Keys with the most sites. */
    readonly top: readonly {
      readonly name: string;
      readonly sites: number;
      readonly tail: number;
      readonly target: string;
    }[];
  };
  /** The decoder's sweeps. */
  readonly decode: readonly WalkSummary[];
  /** The patchers on the machine (absent with `patch: false`). */
  readonly patch?: {
    readonly cpus: number;
    readonly seed: number;
    /** Where the model's own text lives (the image is at its link addresses). */
    readonly modelText: string;
    /** The writable alias of the image's `.text` (where text_poke writes). */
    readonly textAlias: string;
    readonly bootMs: number;
    readonly ftrace: FtraceRunRecord;
    /**
     * static_call updates, in order: `preempt_schedule_notrace` to NULL (what
     * `preempt=none` does), then `cond_resched` to `__cond_resched` and back to
     * `__static_call_return0` (`preempt=voluntary`, then `preempt=full`); those the image
     * has.
     */
    readonly staticCall: readonly StaticCallRunRecord[];
  };
  /** Load time, ms. */
  readonly loadMs: number;
}

/** Options of {@link kernelReport}. */
export interface KernelReportOptions extends LoadOptions {
  /** Run the patchers on the emulated machine (default true). */
  patch?: boolean;
  /** CPUs (default 4). */
  cpus?: number;
  /** Schedule seed (default 1). */
  seed?: number;
  /** Real functions the other CPUs run during the batches (default 32). */
  workload?: number;
}

function summarize(w: TextWalk): WalkSummary {
  return {
    section: w.section,
    bytes: w.size,
    instructions: w.instructions,
    code: w.code,
    int3: w.int3,
    int3Runs: w.int3Runs,
    longestInt3Run: { length: w.longestInt3Run.length, address: hexAddr(w.longestInt3Run.address) },
    vex: w.vex,
    evex: w.evex,
    xop: w.xop,
    unsupported: w.unsupported,
    code32: w.code32.map((c) => `${c.symbol} (${hexAddr(c.address)}, ${c.size} bytes)`),
    resyncs: w.resyncs.length,
    issues: w.issues.map(formatWalkIssue),
    ms: Math.round(w.ms),
  };
}

/**
 * Builds the report of a kernel image: load and check it, walk its text, and (unless
 * `patch: false`) boot it on a `cpus`-CPU machine and run ftrace and static_call on it.
 *
 * @param input The image's bytes, or an already loaded image.
 * @param options Name, System.map, machine options.
 * @returns The record.
 * @throws {ImageError} For an image that cannot be loaded (see {@link loadKernelImage}).
 * @example
 * ```ts ignore
 * const rec = kernelReport(Deno.readFileSync(path), { name: path });
 * console.log(formatKernelReport(rec));
 * ```
 */
export function kernelReport(
  input: Uint8Array | KernelImage,
  options: KernelReportOptions = {},
): KernelReportRecord {
  const t0 = performance.now();
  const image = input instanceof Uint8Array ? loadKernelImage(input, options) : input;
  const loadMs = performance.now() - t0;
  const text = image.sections.get(".text")!;
  const walks = [walkText(image, ".text")];
  if (image.sections.has(".init.text")) walks.push(walkText(image, ".init.text"));
  const fnStarts = new Set(image.functions.map((f) => f.address));
  const byLineOffset = new Array<number>(64).fill(0);
  let straddling = 0, inText = 0, notAtSymbol = 0;
  for (const s of image.ftraceSites) {
    byLineOffset[Number(s & 63n)]!++;
    if (rel32Straddles(s)) straddling++;
    if (s >= text.addr && s < text.addr + BigInt(text.size)) inText++;
    if (!fnStarts.has(s)) notAtSymbol++;
  }
  const fb = checkBoundaries(image, walks, image.ftraceSites);
  const scb = checkBoundaries(image, walks, image.staticCallSites.map((s) => s.address));
  const keys = image.staticCallKeys;
  const top = keys.filter((k) => k.sites.length > 0)
    .sort((a, b) => b.sites.length - a.sites.length || (a.name < b.name ? -1 : 1))
    .slice(0, 8)
    .map((k) => ({
      name: k.name,
      sites: k.sites.length,
      tail: k.sites.filter((s) => s.tail).length,
      target: k.target === null ? "NULL" : image.describe(k.target),
    }));
  let patch: KernelReportRecord["patch"];
  if (options.patch ?? true) {
    const cpus = options.cpus ?? 4;
    const seed = options.seed ?? 1;
    const tb = performance.now();
    const rk = bootRealKernel(image, walks[0]!, { cpus, seed });
    const bootMs = performance.now() - tb;
    const ftrace = runFtraceAll(rk, { workload: options.workload ?? 32 });
    // The preempt= modes of a PREEMPT_DYNAMIC kernel (`sched_dynamic_update`):
    // none sets preempt_schedule_notrace to NULL (call sites become NOP5s); voluntary
    // points cond_resched at __cond_resched (its RET0 call sites become calls, its tail
    // sites jmps); full points it back at __static_call_return0 (the xor5rax form,
    // written while the call is emulated).
    const staticCall: StaticCallRunRecord[] = [];
    const byName = new Map(keys.map((k) => [k.name, k]));
    const psn = byName.get("preempt_schedule_notrace");
    if (psn !== undefined && psn.target !== null) {
      staticCall.push(runStaticCallUpdate(rk, psn, null));
    }
    const cr = byName.get("cond_resched");
    const condResched = image.symbols.get("__cond_resched");
    const ret0 = image.symbols.get("__static_call_return0");
    if (cr !== undefined && condResched !== undefined && ret0 !== undefined) {
      staticCall.push(runStaticCallUpdate(rk, cr, condResched));
      staticCall.push(runStaticCallUpdate(rk, cr, ret0));
    }
    if (staticCall.length === 0) {
      // Another kernel: the key with most live sites, to NULL.
      const cands = keys.filter((k) => k.target !== null)
        .map((k) => ({ k, n: k.sites.filter((s) => !s.init).length }))
        .sort((a, b) => b.n - a.n || (a.k.name < b.k.name ? -1 : 1));
      if (cands.length > 0 && cands[0]!.n > 0) {
        staticCall.push(runStaticCallUpdate(rk, cands[0]!.k, null));
      }
    }
    patch = {
      cpus,
      seed,
      modelText: hexAddr(rk.kernel.layout.textBase),
      textAlias: hexAddr(rk.kernel.aliasOf(text.addr)),
      bootMs: Math.round(bootMs),
      ftrace,
      staticCall,
    };
  }
  const rec: KernelReportRecord = {
    file: image.name,
    format: image.format,
    version: image.version,
    sections: [...image.sections.values()].map((s) => ({
      name: s.name,
      address: hexAddr(s.addr),
      size: s.size,
    })),
    functions: image.functions.length,
    fentry: hexAddr(image.fentry),
    ftrace: {
      sites: image.ftraceSites.length,
      text: inText,
      init: image.ftraceSites.length - inText,
      notAtSymbol,
      straddling,
      byLineOffset,
      offBoundary: fb.off.length,
    },
    staticCall: {
      keys: keys.length,
      keysWithSites: keys.filter((k) => k.sites.length > 0).length,
      sites: image.staticCallSites.length,
      tail: image.staticCallSites.filter((s) => s.tail).length,
      straddling: image.staticCallSites.filter((s) => rel32Straddles(s.address)).length,
      offBoundary: scb.off.length,
      top,
    },
    decode: walks.map(summarize),
    loadMs: Math.round(loadMs),
  };
  return patch === undefined ? rec : { ...rec, patch };
}

function n(x: number): string {
  return x.toLocaleString("en-US");
}

function batchLine(b: BatchRecord): string {
  const hits = b.hits.map((h, i) => `cpu${i} ${n(h)}`).join(", ");
  return `${n(b.sites)} sites (${b.straddling} straddling) in ${b.ms.toFixed(0)} ms, ` +
    `${n(b.steps)} scheduling steps (${n(b.patcherSteps)} by the patcher), ` +
    `${n(b.emulated)} int3 emulated, ${b.oopses} oopses; tracer hits ${hits}`;
}

/**
 * The text form of a report, one figure a line.
 *
 * @param r The record.
 * @returns Lines of text ending in a newline.
 */
export function formatKernelReport(r: KernelReportRecord): string {
  const out: string[] = [];
  out.push(`${r.file} (${r.format}, loaded in ${r.loadMs} ms)`);
  out.push(`  ${r.version}`);
  out.push(
    `  sections: ${r.sections.map((s) => `${s.name} ${s.address} ${n(s.size)}`).join(", ")}`,
  );
  out.push(`  functions: ${n(r.functions)}; __fentry__ at ${r.fentry}`);
  const f = r.ftrace;
  out.push(
    `ftrace sites: ${n(f.sites)} (${n(f.text)} in .text, ${n(f.init)} in .init.text), ` +
      `every one call __fentry__; ${n(f.notAtSymbol)} at no symbol's start; ` +
      `${f.straddling} with rel32 straddling a 64-byte line; ${f.offBoundary} off an instruction boundary`,
  );
  const busiest = f.byLineOffset.map((c, i) => [i, c] as const).filter(([, c]) => c > 0)
    .sort((a, b) => b[1] - a[1]).slice(0, 5).map(([i, c]) => `+${i}: ${n(c)}`).join(", ");
  out.push(`  by offset in the line: ${busiest}`);
  const s = r.staticCall;
  out.push(
    `static_call: ${s.keys} keys (${s.keysWithSites} with sites), ${n(s.sites)} sites ` +
      `(${s.tail} tail-call jmp), every one a call/jmp to its __SCT__ trampoline; ` +
      `${s.straddling} straddling; ${s.offBoundary} off an instruction boundary`,
  );
  for (const k of s.top) {
    out.push(`  ${k.name}: ${n(k.sites)} sites${k.tail ? ` (${k.tail} tail)` : ""} -> ${k.target}`);
  }
  for (const w of r.decode) {
    out.push(
      `decode ${w.section}: ${n(w.bytes)} bytes, ${n(w.instructions)} instructions in ${w.ms} ms ` +
        `(${n(w.code)} code, ${n(w.int3)} int3 in ${n(w.int3Runs)} runs, longest ${
          n(w.longestInt3Run.length)
        } at ${w.longestInt3Run.address})`,
    );
    out.push(
      `  VEX ${w.vex}, EVEX ${w.evex}, XOP ${w.xop}; ${
        n(w.unsupported)
      } outside the executor's set; ` +
        `32-bit code: ${w.code32.length ? w.code32.join(", ") : "none"}; ` +
        `boundaries lost: ${w.resyncs}; undecodable: ${
          w.issues.length ? w.issues.join("; ") : "none"
        }`,
    );
  }
  const p = r.patch;
  if (p !== undefined) {
    const b = p.ftrace.boot;
    out.push(
      `machine: ${p.cpus} CPUs, seed ${p.seed}; image at its link addresses, .text patched ` +
        `through its alias at ${p.textAlias}; the model's own code in the module area at ` +
        `${p.modelText} (booted in ${p.bootMs} ms)`,
    );
    out.push(
      `  ftrace_init: ${n(b.nopped)} sites checked and turned into NOP5 in ${b.ms.toFixed(0)} ms ` +
        `(${n(b.init)} init sites dropped after boot)`,
    );
    out.push(
      `  workload on CPUs 1-${p.cpus - 1}: ${p.ftrace.workload.length} real leaf functions (${
        p.ftrace.workload.slice(0, 4).join(", ")
      }, …)`,
    );
    out.push(`  enable every function, one text_poke_bp batch: ${batchLine(p.ftrace.enable)}`);
    out.push(`  disable again: ${batchLine(p.ftrace.disable)}`);
    out.push(`  sites back to NOP5: ${n(p.ftrace.restored)}`);
    for (const sc of p.staticCall) {
      const kinds = [
        `${n(sc.sites - sc.tail)} call`,
        ...(sc.tail > 0 ? [`${sc.tail} tail-call`] : []),
        ...(sc.ret0 > 0
          ? [`${n(sc.ret0)} ${sc.to === "__static_call_return0" ? "into" : "out of"} xor5rax`]
          : []),
        ...(sc.initSkipped > 0 ? [`${sc.initSkipped} init sites not live`] : []),
      ].join(", ");
      out.push(
        `  static_call_update(${sc.key}, ${sc.to}) from ${sc.from}: ${n(sc.sites)} sites ` +
          `(${kinds}; ${sc.straddling} straddling) in ${sc.ms.toFixed(0)} ms, ${
            n(sc.steps)
          } steps, ${n(sc.changed)} rewritten, ${n(sc.verified)} verified, ${sc.oopses} oopses`,
      );
    }
  }
  return out.join("\n") + "\n";
}
