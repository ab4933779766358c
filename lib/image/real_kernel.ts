/**
 * A real kernel image on the emulated machine, patched by the package's own ftrace and
 * static_call.
 *
 * Layout. The modeled kernel ({@link bootKernel}) is booted with
 * {@link MODULE_AREA_LAYOUT_64}: its natives, int3 entry, ftrace trampolines and other
 * code live in the module area (`0xffffffffc0000000`, where a KASLR kernel allocates
 * modules and ftrace trampolines), its data at `0xffffffffd0000000`, so the image's
 * sections are mapped at exactly their link addresses. `.text` is mapped with
 * {@link Kernel.mapText}: read-only, with a writable alias and a code-map region whose
 * instruction starts are the walk's, so the model's `text_poke` and `text_poke_bp` patch
 * it as the kernel patches its own text; `.rodata`, `.data`, `.init.text` and
 * `.init.data` are mapped beside it with their own permissions.
 *
 * At boot the kernel checks every fentry site is `call __fentry__` and turns it into
 * the NOP5 with `text_poke_early` (nobody else runs yet, `ftrace_init`); init-text sites
 * are dropped from the ftrace records after boot (`ftrace_free_init_mem`), so the runtime
 * batches cover `.text` only.
 *
 * @module
 */

import { hexAddr, ImageError, MachineError, MemoryError } from "../errors.ts";
import { type BatchRunner, callInsn, type PatchSite, pokeSites } from "../ftrace/batch.ts";
import { Ftrace } from "../ftrace/ftrace.ts";
import { FtraceOps } from "../ftrace/ops.ts";
import { rel32Straddles } from "../ftrace/trampolines.ts";
import { nop5 } from "../kernel/constants.ts";
import { bootKernel, type Kernel, MODULE_AREA_LAYOUT_64 } from "../kernel/kernel.ts";
import { Machine } from "../machine/machine.ts";
import { random } from "../machine/schedule.ts";
import type { FetchMode, KernelContext, KernelGen, Smp } from "../machine/smp.ts";
import { SerializeReason } from "../machine/trace.ts";
import { type StaticCallKey, StaticCalls } from "../static_call/static_call.ts";
import { decodeInto } from "../x86/decode.ts";
import { Insn, Op, OpKind } from "../x86/insn.ts";
import type { KernelImage, StaticCallKeyInfo } from "./image.ts";
import type { TextWalk } from "./walk.ts";

/** Bytes of model text mapped in the module area (trampolines, workloads, race workers). */
const MODEL_TEXT_SIZE = 0x400000;
/** Scheduling steps per `Smp.run` call while waiting for a patcher thread. */
const RUN_CHUNK = 1024;
const PERMS: Record<string, "r" | "rw" | "rx"> = {
  ".rodata": "r",
  ".data": "rw",
  ".init.text": "rx",
  ".init.data": "rw",
};

/** Options of {@link bootRealKernel}. */
export interface RealKernelOptions {
  /** CPUs (default 4). */
  cpus?: number;
  /** Seed of the random schedule (default 1). */
  seed?: number;
  /** Instruction-fetch coherency mode (default `coherent`). */
  fetch?: FetchMode;
  /** Memory limit of the machine (default 512 MiB). */
  memoryLimit?: number;
  /** The x86-64 int3 entry (default `64-gap`, what landed). */
  entry?: "64-gap" | "64-nogap";
}

/** A real image loaded into a booted model kernel. */
export interface RealKernel {
  /** The image. */
  readonly image: KernelImage;
  /** The sweep of `.text` whose boundaries the kernel's code map uses. */
  readonly walk: TextWalk;
  /** The machine. */
  readonly machine: Machine;
  /** The model kernel (int3 entry, text_poke, natives). */
  readonly kernel: Kernel;
  /** ftrace on it (its sites are the image's `.text` sites once {@link ftraceBoot} ran). */
  readonly ftrace: Ftrace;
  /** The SMP layer. */
  readonly smp: Smp;
  /** Where each section was mapped (its link address). */
  readonly mapped: readonly {
    readonly name: string;
    readonly address: bigint;
    readonly size: number;
  }[];
}

/**
 * Boots the model kernel on a new machine with its own code and data in the module area
 * ({@link MODULE_AREA_LAYOUT_64}), maps the image's sections at their link addresses
 * (`.text` patchable through the kernel's text alias), sets ftrace up (its trampolines in
 * model text) and attaches the SMP layer with a random schedule.
 *
 * @param image The loaded image.
 * @param walk A {@link walkText} of its `.text` (the instruction boundaries text_poke_bp
 *   checks sites against).
 * @param options CPUs, seed, fetch mode, memory limit, int3 entry.
 * @returns The booted machine.
 * @throws {ImageError} If a section overlaps the model's memory.
 * @example
 * ```ts ignore
 * const img = loadKernelImage(bytes);
 * const rk = bootRealKernel(img, walkText(img), { cpus: 4 });
 * ```
 */
export function bootRealKernel(
  image: KernelImage,
  walk: TextWalk,
  options: RealKernelOptions = {},
): RealKernel {
  const text = image.sections.get(".text")!;
  const machine = new Machine({
    bitness: 64,
    cpus: options.cpus ?? 4,
    memoryLimit: options.memoryLimit ?? 512 * 1024 * 1024,
  });
  const kernel = bootKernel(machine, {
    entry: options.entry ?? "64-gap",
    textSize: MODEL_TEXT_SIZE,
    layout: MODULE_AREA_LAYOUT_64,
  });
  const mapOne = (name: string, map: () => void) => {
    try {
      map();
    } catch (e) {
      if (!(e instanceof MachineError) && !(e instanceof MemoryError)) throw e;
      const s = image.sections.get(name)!;
      throw new ImageError(
        image.name,
        `${name} at ${
          hexAddr(s.addr)
        } (+${s.size}) cannot be mapped at its link address: ${e.message}`,
        { address: s.addr },
      );
    }
  };
  const ftrace = new Ftrace(kernel);
  const starts = walk.size === text.size ? walk.starts.subarray(0, text.size) : undefined;
  mapOne(".text", () =>
    kernel.mapText(text.addr, text.bytes, {
      name: `vmlinux .text (${image.name})`,
      ...(starts === undefined ? {} : { starts }),
    }));
  const mapped = [{ name: ".text", address: text.addr, size: text.size }];
  for (const [name, s] of image.sections) {
    if (name === ".text") continue;
    mapOne(name, () => machine.load(s.addr, s.bytes, PERMS[name] ?? "r", { user: false }));
    mapped.push({ name, address: s.addr, size: s.size });
  }
  ftrace.init();
  const smp = kernel.startSmp({
    schedule: random(options.seed ?? 1),
    fetch: options.fetch ?? "coherent",
  });
  return { image, walk, machine, kernel, ftrace, smp, mapped };
}

/** What boot did to the fentry sites (`ftrace_init`). */
export interface FtraceBootRecord {
  /** Sites checked to be `call __fentry__` and turned into the NOP5. */
  readonly nopped: number;
  /** Of which in `.text` (kept as ftrace records after boot). */
  readonly text: number;
  /** Of which in `.init.text` (dropped after boot). */
  readonly init: number;
  /** Wall time, ms. */
  readonly ms: number;
}

/**
 * `ftrace_init` on the loaded image: check that every site holds `call __fentry__` (in
 * emulated memory), write the NOP5 with `text_poke_early` (a plain write: nobody else
 * runs at boot), and give ftrace the `.text` sites.
 *
 * @param rk The booted image.
 * @returns Counts and time.
 * @throws {ImageError} Naming a site that holds anything else.
 */
export function ftraceBoot(rk: RealKernel): FtraceBootRecord {
  const t0 = performance.now();
  const { image, machine, ftrace } = rk;
  const mem = machine.memory;
  const nop = nop5(64);
  const fentry = image.fentry;
  const text = image.sections.get(".text")!;
  const textEnd = text.addr + BigInt(text.size);
  let nText = 0, nInit = 0;
  const kept: bigint[] = [];
  for (const link of image.ftraceSites) {
    const at = link;
    const found = mem.readBytes(at, 5);
    const want = callInsn(at, fentry);
    for (let i = 0; i < 5; i++) {
      if (found[i] !== want[i]) {
        throw new ImageError(
          image.name,
          `ftrace_init: site ${hexAddr(link)} (${image.describe(link)}) holds ${
            Array.from(found, (b) => b.toString(16).padStart(2, "0")).join(" ")
          }, not call __fentry__`,
          { address: link, symbol: "__fentry__" },
        );
      }
    }
    mem.writeBytes(at, nop);
    if (link >= text.addr && link < textEnd) {
      kept.push(at);
      nText++;
    } else nInit++;
  }
  // `__mcount_loc` is sorted (the loader checked): one linear addSites.
  ftrace.addSites(kept);
  return { nopped: nText + nInit, text: nText, init: nInit, ms: performance.now() - t0 };
}

/**
 * Real functions the other CPUs can run while a batch is in flight: traced leaf
 * functions whose body (after the fentry site) touches no memory, calls nothing, jumps
 * only forward inside itself and returns (`ret` or `jmp __x86_return_thunk`).
 *
 * @param rk The booted image.
 * @param max At most this many (default 64).
 * @returns Their link addresses, by address.
 */
export function runnableFunctions(rk: RealKernel, max = 64): bigint[] {
  const { image } = rk;
  const text = image.sections.get(".text")!;
  const thunk = image.symbols.get("__x86_return_thunk");
  const insn = new Insn();
  const out: bigint[] = [];
  const bytes = text.bytes;
  for (const site of image.ftraceSites) {
    if (out.length >= max) break;
    const f = image.functionAt(site);
    if (f === undefined || f.address !== site || f.size < 6 || f.size > 96) continue;
    const start = Number(site - text.addr);
    const end = start + f.size;
    if (end > bytes.length) continue;
    // Every instruction of the body must qualify (all paths), and one must return.
    let p = start + 5;
    let returns = 0;
    let ok = true;
    while (p < end && ok) {
      decodeInto(insn, bytes, p, 64);
      const op = insn.op;
      const next = p + insn.len;
      if (op <= Op.TRUNCATED) ok = false;
      else if (op === Op.RET) returns++;
      else if (op === Op.JMP || op === Op.JCC) {
        const target = next + (insn.imm | 0);
        if (op === Op.JMP && thunk !== undefined && text.addr + BigInt(target) === thunk) {
          returns++;
        } else if (target <= p || target >= end) ok = false;
      } else if (
        op === Op.CALL || op === Op.CALL_IND || op === Op.JMP_IND || op === Op.INT ||
        op === Op.INT3 || op === Op.UD2 || op === Op.IRET || op === Op.HLT || op === Op.CLI ||
        op === Op.STI || op === Op.POPF || op === Op.PUSHF || op >= Op.MOVS || op === Op.PUSH ||
        op === Op.POP || op === Op.LEAVE || op === Op.CPUID
      ) ok = false;
      else if (
        op !== Op.LEA &&
        (insn.kind0 === OpKind.MEM || insn.kind1 === OpKind.MEM || insn.kind2 === OpKind.MEM)
      ) ok = false;
      else if (insn.kind0 === OpKind.SREG || insn.kind1 === OpKind.SREG) ok = false;
      // A write to rsp would leave the stack.
      else if (insn.kind0 === OpKind.REG && insn.reg0 === 4 && op !== Op.CMP && op !== Op.TEST) {
        ok = false;
      }
      p = next;
    }
    ok = ok && returns > 0 && p === end;
    if (ok) out.push(site);
  }
  return out;
}

/** One phase of a text_poke_bp batch on the machine. */
export interface BatchPhase {
  /** `int3`, `tail`, `head` (the stores of steps 1, 2, 3) or `sync1`..`sync3`. */
  readonly phase: string;
  /** Sites of the batch it belongs to. */
  readonly sites: number;
  /** Scheduling step at which it began. */
  readonly from: number;
  /** Scheduling step at which it ended. */
  readonly to: number;
}

/** One batch run as a kernel thread (see {@link runFtraceAll}). */
export interface BatchRecord {
  /** What it did (`enable`, `disable`). */
  readonly what: string;
  /** Sites in the batch. */
  readonly sites: number;
  /** Sites whose rel32 straddles a 64-byte line. */
  readonly straddling: number;
  /** Wall time of the whole update, ms. */
  readonly ms: number;
  /** Scheduling steps of the whole update (all CPUs). */
  readonly steps: number;
  /** Of which steps of the patcher thread. */
  readonly patcherSteps: number;
  /** Phases of the site batch, in scheduling steps. */
  readonly phases: readonly BatchPhase[];
  /** int3 traps the poke handler emulated during it. */
  readonly emulated: number;
  /** Tracer hits per CPU during it. */
  readonly hits: readonly number[];
  /** Oopses during it (must be 0). */
  readonly oopses: number;
  /** What the CPUs did, when asked for (`events: true`). */
  readonly events?: readonly FtraceEvent[];
}

/** What {@link runFtraceAll} did. */
export interface FtraceRunRecord {
  /** The boot-time NOPing. */
  readonly boot: FtraceBootRecord;
  /** Real functions CPUs 1.. ran meanwhile (link addresses). */
  readonly workload: readonly string[];
  /** Enabling every function. */
  readonly enable: BatchRecord;
  /** Disabling again. */
  readonly disable: BatchRecord;
  /** Sites whose bytes are the NOP5 again at the end. */
  readonly restored: number;
}

/**
 * A {@link BatchRunner} performing text_poke_bp as a kernel thread: plain stores through
 * the writable alias (line-straddling ones in two halves), each sync an
 * `on_each_cpu(sync_core)` that waits for every CPU; records the phases.
 *
 * @param rk The booted image.
 * @param k The patcher thread's context.
 * @param phases Where to record the phases.
 * @returns The runner.
 */
export function threadBatchRunner(
  rk: RealKernel,
  k: KernelContext,
  phases: BatchPhase[],
): BatchRunner {
  const { kernel, smp } = rk;
  const mem = rk.machine.memory;
  return function* (sites: readonly PatchSite[]): KernelGen {
    // static_call's RET0 form is written while the call it replaces is emulated.
    const gen = kernel.textPokeBpBatch(pokeSites(sites));
    let phase = "";
    let from = smp.steps;
    const mark = (p: string) => {
      if (p === phase) return;
      if (phase !== "") phases.push({ phase, sites: sites.length, from, to: smp.steps });
      phase = p;
      from = smp.steps;
    };
    for (let r = gen.next(); !r.done; r = gen.next()) {
      const s = r.value;
      if (s.kind === "sync") {
        mark(`sync${s.step}`);
        yield* k.onEachCpu((cpu) => smp.serialize(cpu, SerializeReason.SYNC_CORE), true);
      } else {
        mark(s.step === 1 ? "int3" : s.step === 2 ? "tail" : "head");
        yield* k.store(mem.toNumber(kernel.aliasOf(s.address)), s.bytes);
      }
    }
    mark("");
  };
}

function* _drive(gen: Generator<unknown, void, unknown>): KernelGen {
  yield* gen as KernelGen;
}

/** Something a CPU did during an update (with `events: true`). */
export interface FtraceEvent {
  /** Scheduling step. */
  readonly t: number;
  /** The CPU. */
  readonly cpu: number;
  /** `int3`: it hit a site in flux and the handler emulated it; `traced`: the tracer ran. */
  readonly kind: "int3" | "traced";
}

/** Options of {@link runFtraceAll}. */
export interface FtraceRunOptions {
  /** Record every int3 emulation and tracer call with its step (default false). */
  events?: boolean;
  /** Real functions CPUs 1.. call in a loop during the batches (default 32; 0: CPUs idle). */
  workload?: number;
  /** Step budget of each update (default 50,000,000). */
  maxSteps?: number;
}

/**
 * Tracing every function of a real image, one update at a time: construct it once
 * (`ftrace_init` and the workload on CPUs 1..), then {@link FtraceAll.enable} and
 * {@link FtraceAll.disable} as often as wanted (the benchmark times one enable).
 */
export class FtraceAll {
  /** The booted image. */
  readonly rk: RealKernel;
  /** What boot did. */
  readonly boot: FtraceBootRecord;
  /** Link addresses of the real functions CPUs 1.. call in a loop. */
  readonly workload: readonly bigint[];
  /** The ops tracing every function. */
  readonly ops: FtraceOps;
  /** Tracer hits per CPU since the last update began. */
  readonly hits: number[];
  readonly #budget: number;
  #events: FtraceEvent[] | null;

  /**
   * Boots ftrace on the image ({@link ftraceBoot}) and starts the workload.
   *
   * @param rk A freshly booted image.
   * @param options Workload size and step budget.
   * @throws {ImageError} If a site does not hold `call __fentry__`.
   */
  constructor(rk: RealKernel, options: FtraceRunOptions = {}) {
    this.rk = rk;
    this.boot = ftraceBoot(rk);
    const { kernel } = rk;
    const cpus = rk.machine.cpus.length;
    const n = options.workload ?? 32;
    this.workload = cpus > 1 && n > 0 ? runnableFunctions(rk, n) : [];
    if (this.workload.length > 0) {
      // One loop per other CPU, each calling every function in turn.
      for (let c = 1; c < cpus; c++) {
        const calls = this.workload.map((f, i) =>
          `\tmov $${i + c}, %edi\n\tmov $${c}, %esi\n\tcall ${hexAddr(f)}\n`
        ).join("");
        const labels = kernel.loadText(`real_workload_${c}:\n${calls}\tjmp real_workload_${c}\n`, {
          name: `real workload ${c}`,
        });
        const at = labels.get(`real_workload_${c}`)!;
        kernel.prepareCall(c, at, [], { interrupts: true });
      }
    }
    this.hits = new Array<number>(cpus).fill(0);
    const hits = this.hits;
    this.#events = options.events ? [] : null;
    const smp = rk.smp;
    this.ops = new FtraceOps("all", (_ip, _p, _o, _r, cpu) => {
      hits[cpu]!++;
      this.#events?.push({ t: smp.steps, cpu, kind: "traced" });
    });
    if (options.events) {
      const inner = kernel.dispatch.pokeInt3Handler;
      kernel.dispatch.pokeInt3Handler = (ctx) => {
        const claimed = inner !== null && inner(ctx);
        if (claimed) this.#events?.push({ t: smp.steps, cpu: ctx.cpu, kind: "int3" });
        return claimed;
      };
    }
    this.#budget = options.maxSteps ?? 50_000_000;
  }

  /**
   * `register_ftrace_function` of an ops tracing every function: one text_poke_bp batch
   * of every `.text` site (NOP5 to `call`), as a kernel thread on CPU 0.
   *
   * @returns The batch's record.
   */
  enable(): BatchRecord {
    const { ftrace } = this.rk;
    return this.#update("enable", (run) => ftrace.registerFtraceFunction(this.ops, run));
  }

  /**
   * `unregister_ftrace_function`: the batch back to NOP5.
   *
   * @returns The batch's record.
   */
  disable(): BatchRecord {
    const { ftrace } = this.rk;
    return this.#update("disable", (run) => ftrace.unregisterFtraceFunction(this.ops, run));
  }

  /**
   * How many `.text` sites hold the NOP5.
   *
   * @returns The count.
   */
  nopCount(): number {
    const nop = nop5(64);
    let n = 0;
    for (const s of this.rk.ftrace.sites) {
      const b = this.rk.machine.memory.readBytes(s, 5);
      if (b.every((x, i) => x === nop[i])) n++;
    }
    return n;
  }

  #update(
    what: string,
    body: (run: BatchRunner) => Generator<unknown, void, unknown>,
  ): BatchRecord {
    const rk = this.rk;
    const { kernel, smp } = rk;
    const budget = this.#budget;
    const phases: BatchPhase[] = [];
    let sites = 0, straddling = 0;
    const emulated0 = kernel.patcher.stats.emulated;
    const oops0 = kernel.oopses.length;
    this.hits.fill(0);
    if (this.#events !== null) this.#events = [];
    const t0 = performance.now();
    const s0 = smp.steps;
    const thread = smp.spawn(0, function* (k) {
      const inner = threadBatchRunner(rk, k, phases);
      const run: BatchRunner = function* (batch) {
        if (batch.length > sites) {
          sites = batch.length;
          straddling = batch.filter((s) => rel32Straddles(s.address)).length;
        }
        yield* inner(batch);
      };
      yield* _drive(body(run));
    });
    while (!thread.done) {
      const r = smp.run(RUN_CHUNK);
      if (r.reason === "thread-error") {
        throw new MachineError(`ftrace ${what}: the patcher thread failed: ${String(r.error)}`);
      }
      if (smp.steps - s0 > budget) {
        throw new MachineError(`ftrace ${what}: no end within ${budget} scheduling steps`);
      }
      if (r.reason !== "budget" && !thread.done) {
        throw new MachineError(`ftrace ${what}: the machine stopped (${r.message})`);
      }
    }
    if (thread.error !== undefined && thread.error !== null) {
      throw new MachineError(`ftrace ${what}: ${String(thread.error)}`);
    }
    return {
      what,
      sites,
      straddling,
      ms: performance.now() - t0,
      steps: smp.steps - s0,
      patcherSteps: thread.steps,
      phases,
      emulated: kernel.patcher.stats.emulated - emulated0,
      hits: this.hits.slice(),
      oopses: kernel.oopses.length - oops0,
      ...(this.#events === null ? {} : { events: this.#events }),
    };
  }
}

/**
 * The experiment of the issue on a real image: boot (`ftrace_init`), then register an
 * ftrace_ops tracing every function — one text_poke_bp batch of every `.text` site,
 * performed by a kernel thread on CPU 0 while CPUs 1.. call real leaf functions — then
 * unregister it (the batch back to NOP5).
 *
 * @param rk A freshly booted image.
 * @param options Workload size and step budget.
 * @returns Counts, durations, phases, hits.
 * @throws {MachineError} If an update does not finish within its budget or its thread
 *   throws.
 * @example
 * ```ts ignore
 * const rk = bootRealKernel(img, walkText(img), { cpus: 4 });
 * const r = runFtraceAll(rk);
 * console.log(r.enable.sites, r.enable.ms, r.enable.straddling);
 * ```
 */
export function runFtraceAll(rk: RealKernel, options: FtraceRunOptions = {}): FtraceRunRecord {
  const all = new FtraceAll(rk, options);
  const enable = all.enable();
  const disable = all.disable();
  return {
    boot: all.boot,
    workload: all.workload.map((f) => rk.image.describe(f)),
    enable,
    disable,
    restored: all.nopCount(),
  };
}

/** What {@link runStaticCallUpdate} did. */
export interface StaticCallRunRecord {
  /** The key. */
  readonly key: string;
  /** Its function before the update (the link-time target, or the previous update's). */
  readonly from: string;
  /** The function it was updated to (`NULL`: the trampoline returns). */
  readonly to: string;
  /** Live sites patched: the key's `.text` sites, call and tail-call alike. */
  readonly sites: number;
  /** Of which tail calls (`jmp func`, `ret` for NULL). */
  readonly tail: number;
  /** Call sites going out of (or into) the RET0 form, `xor5rax` (from / to `__static_call_return0`). */
  readonly ret0: number;
  /** Sites in `.init.text`, not live after boot (`static_call_update` skips them). */
  readonly initSkipped: number;
  /** Of the live sites, straddling a line. */
  readonly straddling: number;
  /** Sites rewritten by the batch (the others already held the new form). */
  readonly changed: number;
  /** Sites holding what `__static_call_transform` writes for `to` afterwards. */
  readonly verified: number;
  /** Wall time, ms. */
  readonly ms: number;
  /** Scheduling steps. */
  readonly steps: number;
  /** Oopses (must be 0). */
  readonly oopses: number;
}

/** The static_call table of a booted image, built once by {@link realStaticCalls}. */
const _tables = new WeakMap<RealKernel, StaticCalls>();

/**
 * The image's static_call keys on the model (`static_call_init` at boot): a
 * {@link StaticCalls} table whose `__static_call_return0` is the image's, with every key
 * and its live `.text` sites (tail calls marked), each site written with
 * `text_poke_early` in the form `__static_call_transform` gives the key's link-time
 * function (a call site to `__static_call_return0` becomes the `xor5rax` form). Init-text
 * sites are left out: after boot `static_call_update` skips them. Built on first use.
 *
 * @param rk The booted image.
 * @returns The table.
 */
export function realStaticCalls(rk: RealKernel): StaticCalls {
  const known = _tables.get(rk);
  if (known !== undefined) return known;
  const { kernel, image } = rk;
  const mem = rk.machine.memory;
  const return0 = image.symbols.get("__static_call_return0");
  const sc = new StaticCalls(kernel, return0 === undefined ? {} : { return0 });
  for (const key of image.staticCallKeys) {
    const live = key.sites.filter((s) => !s.init && image.codeSectionOf(s.address) === ".text");
    const k: StaticCallKey = {
      name: key.name,
      keyAddress: key.key,
      trampoline: key.trampoline,
      sites: live.map((s) => s.address),
      tail: new Set(live.filter((s) => s.tail).map((s) => s.address)),
      func: key.target,
    };
    for (const s of k.sites) mem.writeBytes(s, sc.siteInsn(k, s, k.func).code);
    sc.keys.set(key.name, k);
  }
  _tables.set(rk, sc);
  return sc;
}

/**
 * `static_call_update` on a real key by the package's {@link StaticCalls.staticCallUpdate},
 * as a kernel thread on CPU 0 while the other CPUs run: the trampoline, then every live
 * site in one batch — call sites to `call to` (the NOP5 for NULL, the `xor5rax` form for
 * `__static_call_return0`), tail-call sites to `jmp to` (`ret` for NULL). The key starts
 * from its link-time function (see {@link realStaticCalls}) or the previous update's.
 *
 * @param rk The booted image.
 * @param key The key.
 * @param to Link address of the new function, or null (NULL: `preempt=none` does this to
 *   `preempt_schedule_notrace`).
 * @returns Counts and time.
 * @throws {MachineError} If the thread fails.
 */
export function runStaticCallUpdate(
  rk: RealKernel,
  key: StaticCallKeyInfo,
  to: bigint | null,
): StaticCallRunRecord {
  const { kernel, smp, image } = rk;
  const mem = rk.machine.memory;
  const sc = realStaticCalls(rk);
  const k = sc.keys.get(key.name)!;
  const from = k.func;
  const initSkipped = key.sites.length - k.sites.length;
  const ret0 = sc.return0;
  let ret0Sites = 0;
  if (ret0 !== null && (from === ret0 || to === ret0)) {
    ret0Sites = k.sites.filter((s) => !k.tail!.has(s)).length;
  }
  const oops0 = kernel.oopses.length;
  const t0 = performance.now();
  const s0 = smp.steps;
  let changed = 0;
  const thread = smp.spawn(0, function* (kc) {
    const phases: BatchPhase[] = [];
    const inner = threadBatchRunner(rk, kc, phases);
    const run: BatchRunner = function* (batch) {
      // The sites' batch (call and tail-call sites), not the trampoline's.
      if (batch.length !== 0 && batch[0]!.role !== "sc-trampoline") changed = batch.length;
      yield* inner(batch);
    };
    yield* _drive(sc.staticCallUpdate(k, to, run));
  });
  while (!thread.done) {
    const r = smp.run(RUN_CHUNK);
    if (r.reason === "thread-error") {
      throw new MachineError(`static_call_update ${key.name}: ${String(r.error)}`);
    }
    if (r.reason !== "budget" && !thread.done) {
      throw new MachineError(`static_call_update ${key.name}: the machine stopped (${r.message})`);
    }
  }
  let verified = 0;
  for (const s of k.sites) {
    const want = sc.siteInsn(k, s, to).code;
    const b = mem.readBytes(s, 5);
    if (b.every((x, i) => x === want[i])) verified++;
  }
  return {
    key: key.name,
    from: from === null ? "NULL" : image.describe(from),
    to: to === null ? "NULL" : image.describe(to),
    sites: k.sites.length,
    tail: k.tail!.size,
    ret0: ret0Sites,
    initSkipped,
    straddling: k.sites.filter((s) => rel32Straddles(s)).length,
    changed,
    verified,
    ms: performance.now() - t0,
    steps: smp.steps - s0,
    oopses: kernel.oopses.length - oops0,
  };
}
