/**
 * static_call on the modeled kernel (the series Zijlstra was finishing in April 2019, as
 * landed in v5.10: `arch/x86/kernel/static_call.c`, `kernel/static_call.c`): keys with an
 * out-of-line trampoline `__SCT__<name>` (`jmp.d32` to the function, then `ud1`; `ret`
 * padded with int3 for NULL) and inline call sites (`call` to the function; the NOP5 for
 * NULL).
 *
 * {@link StaticCalls.staticCallUpdate} follows `__static_call_update`: store the new
 * function in the key, patch the trampoline (one text_poke_bp), then every inline site.
 * The kernel transforms each inline site with its own text_poke_bp; the model queues them
 * in one batch (what `text_poke_queue` / `text_poke_finish` do in later kernels), which
 * changes how often CPUs sync, not what a site can be seen doing.
 *
 * What a site becomes follows `__static_call_transform` of v6.1
 * (`arch/x86/kernel/static_call.c`): the type is chosen by "tail call?" and "NULL?"
 * (`__sc_insn`) — a call site gets `call func` (CALL) or the NOP5 (NOP), a tail-call site
 * (`STATIC_CALL_SITE_TAIL`) and the trampoline get `jmp func` (JMP) or `ret` (RET; `jmp
 * __x86_return_thunk` when the CPU has X86_FEATURE_RETHUNK). A call site whose function is
 * `__static_call_return0` gets the 5-byte `cs cs cs xorl %eax,%eax` ({@link XOR5RAX})
 * instead of the call, and text_poke_bp emulates the call while the site is in flux.
 *
 * @module
 */

import { hexAddr, hexBytes, PatchError } from "../errors.ts";
import {
  type BatchRunner,
  callInsn,
  jmpInsn,
  type PatchSite,
  rel32Target,
} from "../ftrace/batch.ts";
import { nop5 } from "../kernel/constants.ts";
import type { Kernel } from "../kernel/kernel.ts";

/** The NULL form of a static_call trampoline: `ret` padded with int3 to 5 bytes. */
export const SCT_RET: Uint8Array = Uint8Array.of(0xc3, 0xcc, 0xcc, 0xcc, 0xcc);

/**
 * `xor5rax`: `cs cs cs xorl %eax,%eax`, one 5-byte instruction that returns 0 in place of
 * a call to `__static_call_return0` (it clears all of rax in 64-bit mode).
 */
export const XOR5RAX: Uint8Array = Uint8Array.of(0x2e, 0x2e, 0x2e, 0x31, 0xc0);

/** `tramp_ud`: the `ud1 %esp, %ecx` after a trampoline's jmp, its signature. */
const TRAMP_UD: Uint8Array = Uint8Array.of(0x0f, 0xb9, 0xcc);

/** The four instruction types of `__static_call_transform` (`enum insn_type`). */
export type StaticCallInsnType = "call" | "nop" | "jmp" | "ret";

/**
 * `__sc_insn(null, tail)`: which instruction a site or trampoline gets.
 *
 * @param isNull The function is NULL.
 * @param tail A tail-call site or a trampoline.
 * @returns CALL, NOP, JMP or RET.
 */
export function scInsnType(isNull: boolean, tail: boolean): StaticCallInsnType {
  return tail ? (isNull ? "ret" : "jmp") : (isNull ? "nop" : "call");
}

/** Options of {@link staticCallInsn}. */
export interface StaticCallInsnOptions {
  /** A tail-call site (or the trampoline): JMP / RET instead of CALL / NOP. */
  readonly tail?: boolean;
  /** 32 or 64 (default 64). */
  readonly bitness?: 32 | 64;
  /** Address of `__static_call_return0` (call sites to it get {@link XOR5RAX}). */
  readonly return0?: bigint | null;
  /** `__x86_return_thunk` when the CPU has X86_FEATURE_RETHUNK: RET becomes `jmp` to it. */
  readonly returnThunk?: bigint | null;
}

/** What {@link staticCallInsn} writes at a site, and what text_poke_bp emulates meanwhile. */
export interface StaticCallInsn {
  /** The instruction type. */
  readonly type: StaticCallInsnType;
  /** The 5 bytes written. */
  readonly code: Uint8Array;
  /** The instruction the int3 handler emulates while the site is in flux, if not `code`. */
  readonly emulate?: Uint8Array;
}

/**
 * `__static_call_transform`'s choice for one site: `call func`, the NOP5, `jmp func`,
 * `ret` (or `jmp __x86_return_thunk`), and for a call to `__static_call_return0` the
 * {@link XOR5RAX} form with the call to emulate.
 *
 * @param site Address of the site.
 * @param func The function, or null.
 * @param options Tail call, bitness, `__static_call_return0`, return thunk.
 * @returns The bytes (and what to emulate).
 * @throws {PatchError} If the function is out of rel32 range of the site.
 * @example The RET0 form of a call site
 * ```ts
 * import { staticCallInsn } from "@textpoke/textpoke";
 *
 * const r0 = 0xffffffff81000100n;
 * const i = staticCallInsn(0xffffffff81000000n, r0, { return0: r0 });
 * console.log(i.code, i.emulate?.[0]); // Uint8Array(5) [ 46, 46, 46, 49, 192 ] 232
 * ```
 */
export function staticCallInsn(
  site: bigint,
  func: bigint | null,
  options: StaticCallInsnOptions = {},
): StaticCallInsn {
  const bitness = options.bitness ?? 64;
  const type = scInsnType(func === null, options.tail ?? false);
  switch (type) {
    case "call": {
      const code = callInsn(site, func!, bitness);
      if (options.return0 !== undefined && options.return0 !== null && func === options.return0) {
        return { type, code: XOR5RAX.slice(), emulate: code };
      }
      return { type, code };
    }
    case "nop":
      return { type, code: nop5(bitness) };
    case "jmp":
      return { type, code: jmpInsn(site, func!, bitness) };
    case "ret": {
      const thunk = options.returnThunk;
      return {
        type,
        code: thunk === undefined || thunk === null
          ? SCT_RET.slice()
          : jmpInsn(site, thunk, bitness),
      };
    }
  }
}

/** One `struct static_call_key` with its trampoline and inline sites. */
export interface StaticCallKey {
  /** Name (`__SCT__<name>` is the trampoline). */
  readonly name: string;
  /** Address of `key->func` in kernel data. */
  readonly keyAddress: bigint;
  /** The trampoline's `jmp` / `ret` (its first byte). */
  readonly trampoline: bigint;
  /** Inline sites (5-byte calls / NOP5s / RET0 forms, and tail-call jmps / rets), sorted. */
  readonly sites: bigint[];
  /** Which of {@link StaticCallKey.sites} are tail calls (`STATIC_CALL_SITE_TAIL`). */
  readonly tail?: Set<bigint>;
  /** The current function (null: NULL). */
  func: bigint | null;
}

/** A batch site of a static_call update (its `emulate` carries the RET0 form's call). */
export type StaticCallPatchSite = PatchSite;

/**
 * The trampoline instruction for a function.
 *
 * @param trampoline Trampoline address.
 * @param func The function, or null.
 * @param bitness 32 or 64 (default 64: the rel32 must reach; in 32-bit mode it always does).
 * @param returnThunk `__x86_return_thunk` if the CPU has X86_FEATURE_RETHUNK (default null).
 * @returns `jmp.d32 func`, or {@link SCT_RET} (`jmp returnThunk`) for NULL.
 * @throws {PatchError} If the function is out of rel32 range of the trampoline.
 */
export function trampolineInsn(
  trampoline: bigint,
  func: bigint | null,
  bitness: 32 | 64 = 64,
  returnThunk: bigint | null = null,
): Uint8Array {
  return staticCallInsn(trampoline, func, { tail: true, bitness, returnThunk }).code;
}

/**
 * The inline-site instruction for a function.
 *
 * @param site Site address.
 * @param func The function, or null.
 * @param bitness 32 or 64.
 * @param options Tail call, `__static_call_return0`, return thunk (see {@link staticCallInsn}).
 * @returns `call func` or the NOP5 (a tail site: `jmp func` or `ret`; a call to
 *   `__static_call_return0`: {@link XOR5RAX}).
 * @throws {PatchError} If the function is out of rel32 range of the site.
 */
export function inlineInsn(
  site: bigint,
  func: bigint | null,
  bitness: 32 | 64,
  options: Omit<StaticCallInsnOptions, "bitness"> = {},
): Uint8Array {
  return staticCallInsn(site, func, { ...options, bitness }).code;
}

/**
 * The AT&T source of a trampoline `__SCT__<name>` starting `lineOffset` bytes into a
 * 64-byte line: a placeholder `jmp.d32` (written by {@link StaticCalls.defineKey}) and
 * the `ud1` that follows it in real kernels.
 *
 * @param name Key name.
 * @param lineOffset 0–63.
 * @returns The source.
 */
export function trampolineSource(name: string, lineOffset: number): string {
  return `
	.balign	64, 0xcc
	.skip	${lineOffset}, 0xcc
__SCT__${name}:
	.byte	0xe9, 0, 0, 0, 0		/* jmp.d32 <func>, written at init */
	.byte	0x0f, 0xb9, 0xcc		/* ud1 */
`;
}

/**
 * The static_call keys of one kernel.
 *
 * @example The kernel's selftest
 * ```ts
 * import { bootKernel, immediateRunner, Machine, StaticCalls } from "@textpoke/textpoke";
 *
 * const k = bootKernel(new Machine({ bitness: 64 }), { entry: "64-gap" });
 * k.loadText("func_a:\n lea 1(%rdi), %rax\n ret\nfunc_b:\n lea 2(%rdi), %rax\n ret\n");
 * const sc = new StaticCalls(k);
 * const key = sc.defineKey("sc_selftest", k.symbol("func_a"));
 * const run = immediateRunner((a, b) => k.textPoke(a, b), (a, n) => k.mem.readBytes(a, n));
 * console.log(k.call(0, key.trampoline, [2n]).value); // 3n
 * for (const _ of sc.staticCallUpdate(key, k.symbol("func_b"), run));
 * console.log(k.call(0, key.trampoline, [2n]).value); // 4n
 * ```
 */
export class StaticCalls {
  /** The kernel. */
  readonly kernel: Kernel;
  /** Keys by name. */
  readonly keys: Map<string, StaticCallKey> = new Map();
  /** `__x86_return_thunk` if RET forms are `jmp` to it (X86_FEATURE_RETHUNK), else null. */
  readonly returnThunk: bigint | null;
  #return0: bigint | null;

  /**
   * Creates the (empty) key table of a kernel.
   *
   * @param kernel A booted kernel.
   * @param options `return0`: the address of `__static_call_return0` (default: the
   *   kernel's symbol of that name, if any; see {@link StaticCalls.defineReturn0});
   *   `returnThunk`: `__x86_return_thunk` when the CPU has X86_FEATURE_RETHUNK (default
   *   null: RET is `c3`).
   */
  constructor(kernel: Kernel, options: { return0?: bigint; returnThunk?: bigint } = {}) {
    this.kernel = kernel;
    this.#return0 = options.return0 ?? kernel.symbols.get("__static_call_return0") ?? null;
    this.returnThunk = options.returnThunk ?? null;
  }

  /** `__static_call_return0`, or null while the kernel has none. */
  get return0(): bigint | null {
    return this.#return0;
  }

  /**
   * `__static_call_return0` (`xorl %eax,%eax; ret`), loaded into kernel text the first
   * time it is asked for.
   *
   * @returns Its address.
   */
  defineReturn0(): bigint {
    if (this.#return0 === null) {
      const src = "__static_call_return0:\n\txorl\t%eax, %eax\n\tret\n";
      this.#return0 = this.kernel.loadText(src, { name: "__static_call_return0" })
        .get("__static_call_return0")!;
    }
    return this.#return0;
  }

  /**
   * What a site of a key gets for a function (see {@link staticCallInsn}).
   *
   * @param key The key.
   * @param site One of its sites.
   * @param func The function, or null.
   * @returns The bytes and what to emulate.
   * @throws {PatchError} If the function is out of rel32 range of the site.
   */
  siteInsn(key: StaticCallKey, site: bigint, func: bigint | null): StaticCallInsn {
    return staticCallInsn(site, func, {
      tail: key.tail?.has(site) ?? false,
      bitness: this.kernel.bitness,
      return0: this.#return0,
      returnThunk: this.returnThunk,
    });
  }

  /**
   * `DEFINE_STATIC_CALL(name, func)`: the key and its trampoline.
   *
   * @param name Key name (a symbol name).
   * @param func Initial function, or null.
   * @param options `lineOffset` of the trampoline in its 64-byte line (default 0).
   * @returns The key.
   * @throws {PatchError} If the key exists, the name is not a symbol name, the line offset
   *   is not in 0..63 or `func` cannot be reached from kernel text by a rel32 jmp; all
   *   checked before anything is allocated.
   */
  defineKey(
    name: string,
    func: bigint | null,
    options: { lineOffset?: number } = {},
  ): StaticCallKey {
    if (this.keys.has(name)) throw new PatchError(`static_call key ${name} already exists`);
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
      throw new PatchError(`static_call key name "${name}" is not a symbol name`);
    }
    const lineOffset = options.lineOffset ?? 0;
    if (!Number.isInteger(lineOffset) || lineOffset < 0 || lineOffset > 63) {
      throw new PatchError(
        `static_call key ${name}: lineOffset must be an integer in 0..63, not ${lineOffset}`,
      );
    }
    const k = this.kernel;
    if (func !== null) {
      // The trampoline's address is known only once it is loaded; a target that both ends
      // of kernel text reach is reached from anywhere between them.
      const lo = k.layout.textBase;
      const hi = lo + BigInt(k.layout.textSize) - 5n;
      try {
        jmpInsn(lo, func, k.bitness);
        jmpInsn(hi, func, k.bitness);
      } catch {
        throw new PatchError(
          `static_call key ${name}: function ${hexAddr(func)} is out of rel32 range of kernel text`,
        );
      }
    }
    const ws = k.bitness === 64 ? 8 : 4;
    const keyAddress = k.allocData(ws, `__SCK__${name}`);
    const labels = k.loadText(trampolineSource(name, lineOffset), {
      name: `__SCT__${name}`,
      align: 64,
    });
    const trampoline = labels.get(`__SCT__${name}`)!;
    const key: StaticCallKey = { name, keyAddress, trampoline, sites: [], tail: new Set(), func };
    k.mem.writeWord(keyAddress, ws, func ?? 0n);
    k.textPoke(trampoline, trampolineInsn(trampoline, func, k.bitness, this.returnThunk));
    this.keys.set(name, key);
    return key;
  }

  /**
   * Records an inline site of a key (an entry of `.static_call_sites`) and writes the
   * key's current function there (`static_call_init`).
   *
   * @param key The key.
   * @param site A 5-byte `call`, NOP5 or {@link XOR5RAX} in kernel text; with `tail`, a
   *   `jmp` or `ret` (`__static_call_validate`).
   * @param options `tail`: a tail-call site (`STATIC_CALL_SITE_TAIL`).
   * @throws {PatchError} If the key is not this table's, the site is already a site of a
   *   key, is not kernel text, or holds something else; checked before anything changes.
   */
  addInlineSite(key: StaticCallKey, site: bigint, options: { tail?: boolean } = {}): void {
    this.#own(key, "addInlineSite");
    const k = this.kernel;
    for (const other of this.keys.values()) {
      if (other.sites.includes(site)) {
        throw new PatchError(
          `static_call site ${hexAddr(site)} is already a site of key ${other.name}`,
          site,
        );
      }
    }
    const region = k.code.regionOf(site);
    if (region === undefined || site + 5n > region.start + BigInt(region.length)) {
      throw new PatchError(
        `static_call site ${hexAddr(site)} of key ${key.name} is not inside kernel text`,
        site,
      );
    }
    const found = k.mem.readBytes(site, 5);
    const tail = options.tail ?? false;
    const ok = tail
      ? found[0] === 0xe9 || found[0] === 0xc3
      : found[0] === 0xe8 || sameBytes(found, nop5(k.bitness)) || sameBytes(found, XOR5RAX);
    if (!ok) {
      throw new PatchError(
        `static_call site ${hexAddr(site)} holds ${hexBytes(found)}, not ${
          tail ? "a tail-call jmp or ret" : "a call, NOP5 or xor5rax"
        }`,
        site,
      );
    }
    if (tail && key.tail === undefined) {
      throw new PatchError(
        `static_call key ${key.name} has no tail-site set for the tail-call site ${hexAddr(site)}`,
        site,
      );
    }
    const want = staticCallInsn(site, key.func, {
      tail,
      bitness: k.bitness,
      return0: this.#return0,
      returnThunk: this.returnThunk,
    }).code;
    k.textPoke(site, want);
    key.sites.push(site);
    key.sites.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    if (tail) key.tail!.add(site);
  }

  /**
   * `__static_call_validate(insn, tail, tramp)`: a trampoline must carry its `ud1`
   * signature after the 5-byte instruction; a tail site or trampoline must hold a
   * `jmp.d32` or `ret` (the kernel also accepts a Jcc, which the model never writes), a
   * call site a `call`, the NOP5 or {@link XOR5RAX}. The kernel BUG()s; the model throws.
   */
  #validate(insn: bigint, tail: boolean, tramp: boolean): void {
    const k = this.kernel;
    if (tramp) {
      const sig = k.mem.readBytes(insn + 5n, 3);
      if (!sameBytes(sig, TRAMP_UD)) {
        throw new PatchError(
          `static_call trampoline ${hexAddr(insn)} has lost its signature: ${
            hexBytes(sig)
          } follows its jmp, not ud1 (${hexBytes(TRAMP_UD)})`,
          insn,
        );
      }
    }
    const found = k.mem.readBytes(insn, 5);
    const ok = tail
      ? found[0] === 0xe9 || found[0] === 0xc3
      : found[0] === 0xe8 || sameBytes(found, nop5(k.bitness)) || sameBytes(found, XOR5RAX);
    if (!ok) {
      throw new PatchError(
        `Unexpected static_call instruction at ${hexAddr(insn)}: ${hexBytes(found)}, not ${
          tail ? "a jmp.d32 or ret" : "a call, NOP5 or xor5rax"
        }`,
        insn,
      );
    }
  }

  /** Refuses a key this table did not define (another kernel's, or a hand-made object). */
  #own(key: StaticCallKey, what: string): void {
    if (this.keys.get(key.name) !== key) {
      throw new PatchError(
        `${what}: static_call key ${key.name} (key at ${hexAddr(key.keyAddress)}, trampoline at ${
          hexAddr(key.trampoline)
        }) was not defined by this kernel's static_call table`,
        key.trampoline,
      );
    }
  }

  /**
   * The function a key's trampoline jumps to now (null for `ret`).
   *
   * @param key The key.
   * @returns The target.
   * @throws {PatchError} If the key is not this table's.
   */
  trampolineTarget(key: StaticCallKey): bigint | null {
    this.#own(key, "trampolineTarget");
    const b = this.kernel.mem.readBytes(key.trampoline, 5);
    return rel32Target(key.trampoline, b, this.kernel.bitness);
  }

  /**
   * `static_call_update(name, func)`: the key, then the trampoline (one batch), then
   * every inline site (one batch): call sites become `call func` (the NOP5 for NULL,
   * {@link XOR5RAX} for `__static_call_return0`, emulating the call), tail-call sites
   * `jmp func` (`ret` for NULL). The batch's sites are {@link StaticCallPatchSite}s: a
   * runner should pass their `emulate` on to text_poke_bp.
   *
   * @param key The key.
   * @param func New function, or null.
   * @param run Performs each batch.
   * @returns A generator (drive it, or `yield*` it from a kernel thread).
   * @throws {PatchError} On the first `next()`, before anything is written, if the key is
   *   not this table's, `func` is out of rel32 range of the trampoline or a site, or the
   *   trampoline or a site holds what no static_call writes there (`__static_call_validate`,
   *   which BUG()s: the trampoline a `jmp.d32` or `ret` followed by its `ud1` signature, a
   *   call site a `call`, the NOP5 or {@link XOR5RAX}, a tail-call site a `jmp.d32` or
   *   `ret`). When the key already names `func` nothing happens at all: no batch, as
   *   `__static_call_update` returns early when `key->func == func`.
   */
  *staticCallUpdate(
    key: StaticCallKey,
    func: bigint | null,
    run: BatchRunner,
  ): Generator<unknown, void, unknown> {
    this.#own(key, "staticCallUpdate");
    // __static_call_update (kernel/static_call_inline.c): nothing to do when the key
    // already names the function.
    if (key.func === func) return;
    const k = this.kernel;
    const ws = k.bitness === 64 ? 8 : 4;
    // __static_call_validate (arch/x86/kernel/static_call.c) runs on the trampoline and
    // each site before it is transformed; here all are checked before the first write.
    this.#validate(key.trampoline, true, true);
    for (const s of key.sites) this.#validate(s, key.tail?.has(s) ?? false, false);
    // Every instruction is encoded before the key word is written: a target out of rel32
    // range of one site must not leave the key naming a function no site calls.
    const tramp: PatchSite = {
      address: key.trampoline,
      old: k.mem.readBytes(key.trampoline, 5),
      new: trampolineInsn(key.trampoline, func, k.bitness, this.returnThunk),
      role: "sc-trampoline",
    };
    const inline = key.sites.slice(); // the sites this update covers, fixed now
    const want = inline.map((s) => this.siteInsn(key, s, func));
    k.mem.writeWord(key.keyAddress, ws, func ?? 0n);
    key.func = func;
    if (!sameBytes(tramp.old, tramp.new)) yield* run([tramp]);
    const sites: StaticCallPatchSite[] = [];
    inline.forEach((s, i) => {
      // Read after the trampoline batch: a kernel thread may have yielded meanwhile.
      const old = k.mem.readBytes(s, 5);
      const w = want[i]!;
      if (!sameBytes(old, w.code)) {
        // The RET0 form is written while a call is emulated (`text_poke_bp(.., emulate)`):
        // a runner that passes `emulate` on to text_poke_bp honours it.
        // A tail-call site is a jump (jmp or ret), as the trampoline: its own role, so
        // an int3 handler does not emulate a call there.
        const role = key.tail?.has(s) === true ? "sc-tail" : "sc-inline";
        sites.push(
          w.emulate === undefined
            ? { address: s, old, new: w.code, role }
            : { address: s, old, new: w.code, role, emulate: w.emulate },
        );
      }
    });
    if (sites.length > 0) yield* run(sites);
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** One step of the static_call selftest: update (or not), call with an argument, expect. */
export interface StaticCallSelftestStep {
  /** The function to update to, or null for "no update". */
  readonly update: "func_a" | "func_b" | null;
  /** The argument. */
  readonly arg: bigint;
  /** The expected result. */
  readonly expect: bigint;
}

/** The kernel's `static_call_tests`: {NULL, 2, 3}, {func_b, 2, 4}, {func_a, 2, 3}. */
export const STATIC_CALL_SELFTEST: readonly StaticCallSelftestStep[] = [
  { update: null, arg: 2n, expect: 3n },
  { update: "func_b", arg: 2n, expect: 4n },
  { update: "func_a", arg: 2n, expect: 3n },
];

/** Result of one step of {@link staticCallSelftest}. */
export interface StaticCallSelftestResult {
  /** The step. */
  readonly step: StaticCallSelftestStep;
  /** What the call through the trampoline returned. */
  readonly viaTrampoline: bigint;
  /** What the inline site returned. */
  readonly viaInline: bigint;
  /** Both as expected. */
  readonly passed: boolean;
}

/**
 * The kernel's static_call selftest on a kernel: `func_a(x) = x + 1`, `func_b(x) = x + 2`
 * in machine code, a key starting at func_a, each step's update (text_poke_bp on the
 * stopped machine through `run`), then a call through the trampoline and through an inline
 * site on CPU 0.
 *
 * @param kernel A booted kernel.
 * @param run Performs each batch (e.g. {@link immediateRunner} or a proposal's).
 * @returns One result per step.
 */
export function staticCallSelftest(
  kernel: Kernel,
  run: BatchRunner,
): StaticCallSelftestResult[] {
  // f(x) = x + 1 and x + 2: the argument and the result in %rdi/%rax (x86-32 regparm: %eax).
  const lea = kernel.bitness === 64 ? "leaq" : "leal";
  const [arg, ret] = kernel.bitness === 64 ? ["%rdi", "%rax"] : ["%eax", "%eax"];
  const src = `
sc_func_a:
	${lea}	1(${arg}), ${ret}
	ret
sc_func_b:
	${lea}	2(${arg}), ${ret}
	ret
sc_selftest_caller:
	call	__SCT__sc_selftest
	ret
sc_selftest_inline:
	call	sc_func_a
	ret
`;
  const sc = new StaticCalls(kernel);
  const key = sc.defineKey("sc_selftest", null);
  const labels = kernel.loadText(src, { name: "static_call selftest" });
  const fa = labels.get("sc_func_a")!;
  const fb = labels.get("sc_func_b")!;
  for (const _ of sc.staticCallUpdate(key, fa, run));
  sc.addInlineSite(key, labels.get("sc_selftest_inline")!);
  const out: StaticCallSelftestResult[] = [];
  for (const step of STATIC_CALL_SELFTEST) {
    if (step.update !== null) {
      for (const _ of sc.staticCallUpdate(key, step.update === "func_a" ? fa : fb, run));
    }
    const viaTrampoline = kernel.call(0, labels.get("sc_selftest_caller")!, [step.arg]).value;
    const viaInline = kernel.call(0, labels.get("sc_selftest_inline")!, [step.arg]).value;
    out.push({
      step,
      viaTrampoline,
      viaInline,
      passed: viaTrampoline === step.expect && viaInline === step.expect,
    });
  }
  return out;
}
