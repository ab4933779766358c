/**
 * A real kernel image on the emulated machine, patched by the package's own ftrace and
 * static_call.
 *
 * Layout. The modeled kernel ({@link bootKernel}) owns the first MiB at the link address
 * of `.text` (`0xffffffff81000000`: its natives, int3 entry, trampolines) and its data at
 * `0xffffffff82000000`, so the image is loaded slid by {@link REAL_KERNEL_SLIDE} (1 MiB),
 * the way KASLR slides a kernel: every section moves by the same amount, rel32 calls
 * inside the image stay valid, and cache-line and page offsets do not change, so the
 * straddling counts are those of the image as linked. Reports give link addresses.
 * `.text` lies inside the model's text mapping, so the model's `text_poke` (through its
 * writable alias) and `text_poke_bp` patch it; `.rodata`, `.data`, `.init.text` and
 * `.init.data` are mapped beside it with their own permissions.
 *
 * At boot the kernel checks every fentry site is `call __fentry__` and turns it into
 * the NOP5 with `text_poke_early` (nobody else runs yet, `ftrace_init`); init-text sites
 * are dropped from the ftrace records after boot (`ftrace_free_init_mem`), so the runtime
 * batches cover `.text` only.
 *
 * @module
 */

import { hexAddr, ImageError, MachineError } from "../errors.ts";
import { type BatchRunner, callInsn, type PatchSite } from "../ftrace/batch.ts";
import { Ftrace } from "../ftrace/ftrace.ts";
import { FtraceOps } from "../ftrace/ops.ts";
import { rel32Straddles } from "../ftrace/trampolines.ts";
import { nop5 } from "../kernel/constants.ts";
import { bootKernel, type Kernel } from "../kernel/kernel.ts";
import { Machine } from "../machine/machine.ts";
import { random } from "../machine/schedule.ts";
import type { FetchMode, KernelContext, KernelGen, Smp } from "../machine/smp.ts";
import { SerializeReason } from "../machine/trace.ts";
import { type StaticCallKey, StaticCalls } from "../static_call/static_call.ts";
import { decodeInto } from "../x86/decode.ts";
import { Insn, Op, OpKind } from "../x86/insn.ts";
import type { KernelImage, StaticCallKeyInfo } from "./image.ts";
import type { TextWalk } from "./walk.ts";

/** How far the image is slid from its link addresses (1 MiB; see the module doc). */
export const REAL_KERNEL_SLIDE = 0x100000n;
/** Bytes of model text mapped at `0xffffffff81000000` (covers the slid `.text`). */
const MODEL_TEXT_SIZE = 0x1000000;
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
  /** Load address minus link address. */
  readonly slide: bigint;
  /** Where each section was mapped (loaded addresses). */
  readonly mapped: readonly {
    readonly name: string;
    readonly address: bigint;
    readonly size: number;
  }[];
}

/**
 * Boots the model kernel on a new machine, loads the image's sections slid by
 * {@link REAL_KERNEL_SLIDE}, sets ftrace up (its trampolines in model text) and attaches
 * the SMP layer with a random schedule.
 *
 * @param image The loaded image.
 * @param walk A {@link walkText} of its `.text` (the instruction boundaries text_poke_bp
 *   checks sites against).
 * @param options CPUs, seed, fetch mode, memory limit, int3 entry.
 * @returns The booted machine.
 * @throws {ImageError} If `.text` does not fit the model's text mapping.
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
  const slide = REAL_KERNEL_SLIDE;
  const machine = new Machine({
    bitness: 64,
    cpus: options.cpus ?? 4,
    memoryLimit: options.memoryLimit ?? 512 * 1024 * 1024,
  });
  const kernel = bootKernel(machine, {
    entry: options.entry ?? "64-gap",
    textSize: MODEL_TEXT_SIZE,
  });
  const textAt = text.addr + slide;
  if (
    textAt < kernel.layout.textBase ||
    textAt + BigInt(text.size) > kernel.layout.textBase + BigInt(kernel.layout.textSize)
  ) {
    throw new ImageError(
      image.name,
      `.text at ${hexAddr(text.addr)} (+${text.size}) does not fit the model's text mapping at ${
        hexAddr(kernel.layout.textBase)
      } (+${kernel.layout.textSize})`,
      { address: text.addr },
    );
  }
  const ftrace = new Ftrace(kernel);
  machine.memory.writeBytes(textAt, text.bytes);
  const region = kernel.code.add(`vmlinux .text (${image.name})`, textAt, text.bytes);
  if (walk.size === text.size) region.starts.set(walk.starts.subarray(0, text.size));
  const mapped = [{ name: ".text", address: textAt, size: text.size }];
  for (const [name, s] of image.sections) {
    if (name === ".text") continue;
    machine.load(s.addr + slide, s.bytes, PERMS[name] ?? "r", { user: false });
    mapped.push({ name, address: s.addr + slide, size: s.size });
  }
  ftrace.init();
  const smp = kernel.startSmp({
    schedule: random(options.seed ?? 1),
    fetch: options.fetch ?? "coherent",
  });
  return { image, walk, machine, kernel, ftrace, smp, slide, mapped };
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
  const { image, machine, slide, ftrace } = rk;
  const mem = machine.memory;
  const nop = nop5(64);
  const fentry = image.fentry + slide;
  const text = image.sections.get(".text")!;
  const textEnd = text.addr + BigInt(text.size);
  let nText = 0, nInit = 0;
  const kept: bigint[] = [];
  for (const link of image.ftraceSites) {
    const at = link + slide;
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
  // Sorted already (the image's sites are): append in one go (addSite sorts per call).
  for (const a of kept) ftrace.sites.push(a);
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
    const gen = kernel.textPokeBpBatch(
      sites.map((s) => ({ address: s.address, bytes: s.new, old: s.old })),
    );
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
    const { kernel, image, slide } = rk;
    const cpus = rk.machine.cpus.length;
    const n = options.workload ?? 32;
    this.workload = cpus > 1 && n > 0 ? runnableFunctions(rk, n) : [];
    if (this.workload.length > 0) {
      // One loop per other CPU, each calling every function in turn.
      for (let c = 1; c < cpus; c++) {
        const calls = this.workload.map((f, i) =>
          `\tmov $${i + c}, %edi\n\tmov $${c}, %esi\n\tcall ${hexAddr(f + slide)}\n`
        ).join("");
        const labels = kernel.loadText(`real_workload_${c}:\n${calls}\tjmp real_workload_${c}\n`, {
          name: `real workload ${c}`,
        });
        const at = labels.get(`real_workload_${c}`)!;
        if (at >= image.sections.get(".text")!.addr + slide) {
          throw new MachineError(`Model text reached the image's .text at ${hexAddr(at)}`);
        }
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
  /** Its trampoline's target as built. */
  readonly from: string;
  /** The function it was updated to (`NULL`: the trampoline returns, sites are NOP5s). */
  readonly to: string;
  /** Inline sites patched (calls; tail-call sites excluded, see the report). */
  readonly sites: number;
  /** Of which straddling a line. */
  readonly straddling: number;
  /** Sites holding `call <to>` (or the NOP5 for NULL) afterwards. */
  readonly verified: number;
  /** Wall time, ms. */
  readonly ms: number;
  /** Scheduling steps. */
  readonly steps: number;
  /** Oopses (must be 0). */
  readonly oopses: number;
}

/**
 * `static_call_update` on a real key: the key's `.text` call sites are first made direct
 * calls to the trampoline's target (`static_call_init`, text_poke_early at boot), then
 * the key is updated to `to` by the package's {@link StaticCalls.staticCallUpdate} as a
 * kernel thread on CPU 0 (trampoline, then every site in one batch).
 *
 * @param rk The booted image.
 * @param key The key (tail-call and init sites are left out: the model's update writes
 *   calls only).
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
  const { kernel, smp, image, slide } = rk;
  const mem = rk.machine.memory;
  const sc = new StaticCalls(kernel);
  const sites = key.sites.filter((s) =>
    !s.tail && !s.init && image.codeSectionOf(s.address) === ".text"
  );
  const from = key.target === null ? null : key.target + slide;
  // static_call_init: sites call the function directly (text_poke_early at boot).
  for (const s of sites) {
    const at = s.address + slide;
    mem.writeBytes(at, from === null ? nop5(64) : callInsn(at, from));
  }
  const k: StaticCallKey = {
    name: key.name,
    keyAddress: key.key + slide,
    trampoline: key.trampoline + slide,
    sites: sites.map((s) => s.address + slide),
    func: from,
  };
  sc.keys.set(key.name, k);
  const oops0 = kernel.oopses.length;
  const t0 = performance.now();
  const s0 = smp.steps;
  const target = to === null ? null : to + slide;
  const thread = smp.spawn(0, function* (kc) {
    const phases: BatchPhase[] = [];
    yield* _drive(sc.staticCallUpdate(k, target, threadBatchRunner(rk, kc, phases)));
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
    const want = target === null ? nop5(64) : callInsn(s, target);
    const b = mem.readBytes(s, 5);
    if (b.every((x, i) => x === want[i])) verified++;
  }
  return {
    key: key.name,
    from: key.target === null ? "NULL" : image.describe(key.target),
    to: to === null ? "NULL" : image.describe(to),
    sites: sites.length,
    straddling: sites.filter((s) => rel32Straddles(s.address)).length,
    verified,
    ms: performance.now() - t0,
    steps: smp.steps - s0,
    oopses: kernel.oopses.length - oops0,
  };
}
