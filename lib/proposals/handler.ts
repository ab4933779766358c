/**
 * The int3 handler of a proposal: one function per combination of the two axes, installed
 * in the kernel's ftrace hook slot (`ftrace_int3_handler(struct pt_regs **)`, which gets
 * the regs by reference and runs before `poke_int3_handler`, as in the seed of Torvalds,
 * 4 May 2019), plus the machine code its `push` strategy needs.
 *
 * The handler claims an int3 only at a site of the batch in flight. It first decides
 * *what* to emulate (the `target` axis), then *how* (the `push` axis):
 *
 * | target | at a fentry site | at a caller's call site | at a static_call site |
 * | --- | --- | --- | --- |
 * | `fixed-caller` | call `ftrace_regs_caller` | call `ftrace_update_func_call` (0: jump over); `push: "stub"`: call `ftrace_ops_list_func` | not applicable |
 * | `saved-target` | the new instruction's target, saved by the writer (NOP: jump over) | same | same (jmp at a trampoline, ret for NULL) |
 * | `atomic-offset` / `plain-offset` | one 4-byte read of the rel32 at ip: the NOP5's tail means the NOP, otherwise call ip+5+offset | same | jmp at a trampoline; `cc cc cc cc` (a NULL trampoline's padding) means ret |
 * | `emulate-new` | the instruction being written | same | same |
 *
 * `fixed-caller` at a caller's own call site (`ftrace_call` / `ftrace_regs_call`, role
 * `caller-call`) follows the seed of Torvalds, 4 May 2019 ("x86: Allow breakpoints to
 * emulate call functions"): when `is_ftrace_caller(ip)`, emulate a call to
 * `ftrace_update_func_call` — the target `ftrace_update_ftrace_func()` saved before it
 * started rewriting that call ({@link Ftrace.updateFuncCall}) — and when that is 0,
 * `int3_emulate_jmp(regs, ip + CALL_INSN_SIZE)`. Stange's stubs (`push: "stub"`, seed
 * 004) keep their own choice there: the `ftrace_ops_list_func` stub.
 *
 * Where the seed sketches and the model fills in: `saved-target` keeps one saved target
 * per site (`ftrace_get_addr_new` of each record) rather than one global, because a batch
 * may move sites to different targets; in this model it therefore behaves like
 * `emulate-new`, and the difference is only where the target is kept. `atomic-offset`
 * (Torvalds, 6 May 2019 22:23) must also know when the bytes are a NOP, which the mail does
 * not say: the handler compares them with the NOP5's tail. The difference between
 * `atomic-offset` and `plain-offset` is the writer: `xchg` (one locked, never split store)
 * against a plain store that a 64-byte line boundary splits; the handler's read is one
 * access in both (a native call is one step of the machine).
 *
 * With `push: "gap"` and `target: "emulate-new"` (what landed) the handler does not
 * claim the int3 and leaves it to the kernel's own `poke_int3_handler`.
 *
 * @module
 */

import { hexAddr, PatchError } from "../errors.ts";
import type { BatchRunner, PatchSite } from "../ftrace/batch.ts";
import { pokeSites, rel32Target, textPokeBpRunner } from "../ftrace/batch.ts";
import type { Ftrace } from "../ftrace/ftrace.ts";
import { INT3_INSN_OPCODE, nop5, RET_INSN_OPCODE } from "../kernel/constants.ts";
import { int3EmulateCall, int3EmulateJmp, int3EmulateRet } from "../kernel/emulate.ts";
import type { EntryVariant } from "../kernel/entry.ts";
import type { Int3Context } from "../kernel/int3.ts";
import type { Kernel } from "../kernel/kernel.ts";
import type { KernelContext, KernelGen } from "../machine/smp.ts";
import { SerializeReason } from "../machine/trace.ts";
import type { Smp } from "../machine/smp.ts";
import type { PushStrategy, TargetStrategy } from "./proposals.ts";
import {
  fixupEntrySource,
  linkEntrySource,
  PCPU_PUSH_PENDING,
  PCPU_PUSH_VAL,
  PCPU_SIZE,
  PCPU_STUB_RET,
  PCPU_STUB_TGT,
  stubSource,
} from "./push.ts";

/** What an int3 at a site in flux is made to do. */
export type Int3Action =
  | { readonly op: "call"; readonly target: bigint }
  | { readonly op: "jmp"; readonly target: bigint }
  | { readonly op: "ret" }
  /** Continue after the site (a NOP, or the nop-skip of `push: "none"`). */
  | { readonly op: "skip" };

/**
 * The int3 entry a push strategy runs with by default.
 *
 * @param push The strategy.
 * @param bitness 32 or 64.
 * @param landed For `gap` on x86-32: the v5.3 FIXUP_FRAME entry rather than the seed's.
 * @returns The kernel entry variant to boot with (link-register and entry-fixup replace
 *   the gate with their own stub afterwards, built on the no-gap entry's kernel).
 */
export function defaultEntry(push: PushStrategy, bitness: 32 | 64, landed = false): EntryVariant {
  if (push === "gap") return bitness === 64 ? "64-gap" : landed ? "32-fixup" : "32-seed";
  return bitness === 64 ? "64-nogap" : "32-plain";
}

/** Counters of a {@link ProposalHandler}. */
export interface HandlerStats {
  /** int3s claimed, by action. */
  call: number;
  /** Emulated jumps. */
  jmp: number;
  /** Emulated rets. */
  ret: number;
  /** Sites jumped over. */
  skip: number;
  /** int3s left to the kernel's poke handler. */
  deferred: number;
}

/** Options of {@link installProposal}. */
export interface InstallOptions {
  /** The push strategy. */
  push: PushStrategy;
  /** The target strategy. */
  target: TargetStrategy;
  /** ftrace, for the fixed callers (required by `fixed-caller`). */
  ftrace?: Ftrace | null;
}

/**
 * A proposal installed on a kernel: its int3 handler, its entry code, its per-CPU words,
 * and the batch runner that performs text_poke_bp under it.
 */
export class ProposalHandler {
  /** The kernel. */
  readonly kernel: Kernel;
  /** The push strategy. */
  readonly push: PushStrategy;
  /** The target strategy. */
  readonly target: TargetStrategy;
  /** Sites of the batch in flight, by address. */
  readonly sites: Map<bigint, PatchSite> = new Map();
  /** Per-CPU area of each CPU. */
  readonly percpu: readonly bigint[];
  /** Counters. */
  readonly stats: HandlerStats = { call: 0, jmp: 0, ret: 0, skip: 0, deferred: 0 };
  /** Called when a batch starts and ends (experiments record transition windows). */
  onBatch: (phase: "begin" | "end", sites: readonly PatchSite[]) => void = () => {};
  readonly #ftrace: Ftrace | null;
  readonly #ws: 4 | 8;
  readonly #sym: (name: string) => bigint;

  /**
   * Use {@link installProposal}.
   *
   * @param kernel The kernel.
   * @param options Axes and ftrace.
   */
  constructor(kernel: Kernel, options: InstallOptions) {
    this.kernel = kernel;
    this.push = options.push;
    this.target = options.target;
    this.#ftrace = options.ftrace ?? null;
    this.#ws = kernel.bitness === 64 ? 8 : 4;
    this.#sym = (n) => kernel.symbol(n);
    const m = kernel.machine;
    this.percpu = m.cpus.map((c) => {
      const a = kernel.allocData(PCPU_SIZE, `percpu_${c.index}`, 64);
      const n = m.memory.toNumber(a);
      if (kernel.bitness === 64) c.gsBase = n;
      else c.fsBase = n;
      return a;
    });
    if (this.target === "fixed-caller" && this.push !== "none" && this.#ftrace === null) {
      throw new PatchError("The fixed-caller target needs ftrace (its ftrace_regs_caller)");
    }
    if (this.push === "stub") {
      if (this.#ftrace === null) {
        kernel.loadText(
          "ftrace_regs_caller:\n\tud2\n",
          { name: "no ftrace" },
        );
        if (!kernel.symbols.has("ftrace_ops_list_func")) {
          kernel.bindNative("ftrace_ops_list_func", () => {});
        }
      }
      kernel.loadText(stubSource(kernel.bitness), { name: "int3 stubs" });
    }
    if (this.push === "link-register" || this.push === "entry-fixup") {
      const src = this.push === "link-register"
        ? linkEntrySource(kernel.bitness)
        : fixupEntrySource(kernel.bitness);
      const labels = kernel.loadText(src, { name: `int3 entry (${this.push})` });
      const entry = labels.get(this.push === "link-register" ? "int3_link" : "int3_fixup")!;
      m.setGate(3, { handler: entry, type: "interrupt", dpl: 3 });
    }
    if (this.push !== "none" && this.push !== "gap" && !kernel.symbols.has("int3_stub_ret")) {
      kernel.loadText("int3_stub_ret:\n\tret\n", { name: "int3 ret" });
    }
    kernel.dispatch.ftraceInt3Handler = this.handler;
  }

  /**
   * What the target strategy emulates at a site in flux.
   *
   * @param site The site.
   * @returns The action, or null when the strategy does not apply to this kind of site.
   */
  decide(site: PatchSite): Int3Action | null {
    const k = this.kernel;
    const bitness = k.bitness;
    switch (this.target) {
      case "fixed-caller": {
        if (site.role === "fentry") {
          return { op: "call", target: this.#ftrace!.regsCaller.address };
        }
        if (site.role !== "caller-call") return null;
        // Stange's stubs call the list function; the seed calls ftrace_update_func_call.
        if (this.push === "stub") return { op: "call", target: this.#ftrace!.listFunc };
        const saved = this.#ftrace!.updateFuncCall;
        return saved === 0n ? { op: "skip" } : { op: "call", target: saved };
      }
      case "saved-target":
      case "emulate-new":
        // static_call's RET0 form is written while the call it replaces is emulated.
        return insnAction(site.address, site.emulate ?? site.new, bitness);
      case "atomic-offset":
      case "plain-offset": {
        // One 4-byte read of the offset (Torvalds: "load four bytes from the instruction
        // stream, and just use that as the emulation target offset").
        const tail = k.mem.readBytes(site.address + 1n, 4);
        const nopTail = nop5(bitness).subarray(1);
        if (tail.every((b, i) => b === nopTail[i])) return { op: "skip" };
        // A static_call trampoline and a tail-call site hold a jump (jmp.d32, or the
        // int3-padded ret for NULL), never a call: emulate what they hold.
        const jump = site.role === "sc-trampoline" || site.role === "sc-tail";
        if (jump && tail.every((b) => b === INT3_INSN_OPCODE)) {
          return { op: "ret" };
        }
        const disp = (tail[0]! | (tail[1]! << 8) | (tail[2]! << 16) | (tail[3]! << 24)) | 0;
        const target = BigInt.asUintN(bitness, site.address + 5n + BigInt(disp));
        return jump ? { op: "jmp", target } : { op: "call", target };
      }
    }
  }

  /** The handler for the kernel's ftrace hook slot. */
  readonly handler = (ctx: Int3Context): boolean => {
    const regs = ctx.regs;
    if (regs.userMode()) return false;
    const ip = regs.ip - 1n;
    const site = this.sites.get(ip);
    if (site === undefined) return false;
    const next = ip + BigInt(site.new.length);
    if (this.push === "none") {
      int3EmulateJmp(regs, next);
      this.stats.skip++;
      return true;
    }
    if (this.push === "gap" && this.target === "emulate-new") {
      this.stats.deferred++;
      return false; // poke_int3_handler emulates the instruction being written
    }
    const action = this.decide(site);
    if (action === null) return false;
    this.stats[action.op]++;
    if (action.op === "skip") {
      int3EmulateJmp(regs, next);
      return true;
    }
    if (action.op === "jmp") {
      int3EmulateJmp(regs, action.target);
      return true;
    }
    const mem = this.kernel.mem;
    const ws = this.#ws;
    const pc = this.percpu[ctx.cpu]!;
    switch (this.push) {
      case "gap":
        ctx.regs = action.op === "call"
          ? int3EmulateCall(regs, action.target, ctx.pushMode)
          : int3EmulateRet(regs, ctx.pushMode);
        return true;
      case "stub":
        if (action.op === "ret") {
          regs.ip = this.#sym("int3_stub_ret");
          return true;
        }
        mem.writeWord(pc + BigInt(PCPU_STUB_RET), ws, ip + 5n);
        if (this.target === "fixed-caller" && site.role === "fentry") {
          regs.ip = this.#sym("ftrace_int3_stub_regs_caller");
        } else if (this.target === "fixed-caller") {
          regs.ip = this.#sym("ftrace_int3_stub_list_func");
        } else {
          mem.writeWord(pc + BigInt(PCPU_STUB_TGT), ws, action.target);
          regs.ip = this.#sym("int3_stub_call");
        }
        return true;
      case "link-register":
        if (action.op === "ret") {
          regs.ip = this.#sym("int3_stub_ret");
          return true;
        }
        mem.writeWord(regs.address - BigInt(ws), ws, ip + 5n);
        regs.ip = action.target;
        return true;
      case "entry-fixup":
        if (action.op === "ret") {
          regs.ip = this.#sym("int3_stub_ret");
          return true;
        }
        mem.writeWord(pc + BigInt(PCPU_PUSH_VAL), ws, ip + 5n);
        mem.writeWord(pc + BigInt(PCPU_PUSH_PENDING), ws, 1n);
        // The C-visible half of the push; the exit path stores the word.
        if (this.kernel.bitness === 64) regs.sp = regs.sp - 8n;
        regs.ip = action.target;
        return true;
    }
    return false;
  };

  /**
   * A {@link BatchRunner} that performs text_poke_bp as a kernel thread on `k`'s CPU:
   * every store is a step other CPUs can run between (a plain store straddling a 64-byte
   * line is two), the rel32 tail is stored with `xchg` under `atomic-offset`, and every
   * sync is an `on_each_cpu(sync_core)` that waits for all CPUs.
   *
   * @param k The patcher thread's context.
   * @param smp The SMP layer (for sync_core on each CPU).
   * @returns The runner.
   */
  threadRunner(k: KernelContext, smp: Smp): BatchRunner {
    return (sites) => this.#runBatch(k, smp, sites);
  }

  *#runBatch(k: KernelContext, smp: Smp, sites: readonly PatchSite[]): KernelGen {
    const kernel = this.kernel;
    const mem = kernel.machine.memory;
    const sorted = sites.slice().sort((a, b) => (a.address < b.address ? -1 : 1));
    const gen = kernel.textPokeBpBatch(pokeSites(sorted));
    for (const s of sorted) this.sites.set(s.address, s);
    this.onBatch("begin", sorted);
    kernel.dispatch.modifyingFtraceCode++;
    try {
      for (let r = gen.next(); !r.done; r = gen.next()) {
        const step = r.value;
        if (step.kind === "sync") {
          yield* k.onEachCpu((cpu) => smp.serialize(cpu, SerializeReason.SYNC_CORE), true);
          continue;
        }
        const at = mem.toNumber(kernel.aliasOf(step.address));
        if (step.step === 2 && this.target === "atomic-offset" && step.bytes.length === 4) {
          yield* k.xchg(at, step.bytes);
        } else {
          yield* k.store(at, step.bytes);
        }
      }
    } finally {
      kernel.dispatch.modifyingFtraceCode--;
      for (const s of sorted) this.sites.delete(s.address);
      this.onBatch("end", sorted);
    }
  }
}

/**
 * The action of an instruction, as `text_poke_loc_init` classifies it: a call or jmp to
 * its target, ret, or (a NOP5) continue after it.
 *
 * @param address Address of the instruction.
 * @param bytes The instruction (5 bytes: call, jmp, NOP5, or ret padded with int3).
 * @param bitness 32 or 64.
 * @returns The action.
 * @throws {PatchError} For any other instruction.
 */
export function insnAction(address: bigint, bytes: Uint8Array, bitness: 32 | 64): Int3Action {
  const t = rel32Target(address, bytes, bitness);
  if (t !== null) return bytes[0] === 0xe8 ? { op: "call", target: t } : { op: "jmp", target: t };
  if (bytes[0] === RET_INSN_OPCODE) return { op: "ret" };
  const nop = nop5(bitness);
  if (bytes.length === 5 && bytes.every((b, i) => b === nop[i])) return { op: "skip" };
  throw new PatchError(`Cannot emulate the instruction being written at ${hexAddr(address)}`);
}

/**
 * Installs a proposal on a booted kernel: per-CPU areas, stubs or its own int3 entry,
 * and its handler in the ftrace hook slot.
 *
 * @param kernel A kernel booted with {@link defaultEntry}'s variant (or any other, to
 *   show what goes wrong).
 * @param options The two axes and ftrace.
 * @returns The installed handler.
 * @example
 * ```ts
 * import { bootKernel, defaultEntry, installProposal, Machine } from "@textpoke/textpoke";
 *
 * const k = bootKernel(new Machine({ bitness: 64 }), { entry: defaultEntry("gap", 64) });
 * const h = installProposal(k, { push: "gap", target: "saved-target" });
 * console.log(h.push, h.target); // gap saved-target
 * ```
 */
export function installProposal(kernel: Kernel, options: InstallOptions): ProposalHandler {
  return new ProposalHandler(kernel, options);
}

/**
 * A {@link BatchRunner} for a stopped machine (tests, boot): the kernel's text_poke_bp,
 * every store at once.
 *
 * @param handler The installed proposal.
 * @returns The runner.
 */
export function stoppedRunner(handler: ProposalHandler): BatchRunner {
  return textPokeBpRunner(handler.kernel);
}
