/**
 * Decoder and executor fuzzing: a case is a byte stream, a mode, a privilege level, an IDT
 * layout and an initial register file, all derived from one 32-bit seed (or read back from
 * a corpus file). {@link runExecCase} runs it on a fresh machine whose IDT gates lead to
 * native handlers that record the vector and stop; {@link checkExecCase} runs it twice
 * and returns every broken property: a host exception, a stop that is not architectural,
 * state that no emulated instruction could produce, or a second run that differs.
 *
 * @module
 */

import { Machine } from "../../lib/machine/machine.ts";
import type { NativeCall } from "../../lib/machine/native.ts";
import { attachSmp } from "../../lib/machine/smp_machine.ts";
import { random as randomSchedule } from "../../lib/machine/schedule.ts";
import type { FetchMode } from "../../lib/machine/smp.ts";
import { decodeInto } from "../../lib/x86/decode.ts";
import { Insn, Op } from "../../lib/x86/insn.ts";
import { hexBytes } from "../../lib/errors.ts";
import { Rng } from "./prng.ts";
import { stateHash } from "./state_hash.ts";

/** Where the case's code is loaded (two pages, user-accessible). */
export const CODE = 0x1000n;
/** Bytes of code space. */
export const CODE_SIZE = 0x2000;
/** Data pages (user-accessible, rw). */
export const DATA = 0x8000n;
/** User stack pages; the stack starts at {@link USER_STACK_TOP}. */
export const USER_STACK = 0x10000n;
/** Top of the user (and CPL-0 entry) stack. */
export const USER_STACK_TOP = 0x12000n;
/** Supervisor-only stack for deliveries from ring 3 (`tss.sp0`). */
export const KERNEL_STACK_TOP = 0x22000n;
/** Native exception handlers: vector v lives at HANDLERS + 16 * v (no mapping needed). */
export const HANDLERS = 0x40000n;
/** Supervisor text of the "resume" handler stubs: vector v at STUBS + 32 * v. */
export const STUBS = 0x50000n;

/** How the IDT is set up. */
export type IdtMode =
  /** Gates 0–31 and a random selection above, each to a native that records and stops. */
  | "full"
  /**
   * The same gates, each to a stub (`call` native; drop the error code; iret) whose native
   * records the vector and moves the saved ip past a faulting instruction, so the run
   * goes on through many faults, irets and privilege changes until the budget.
   */
  | "resume"
  /** No gates at all: the first fault goes #NP → #DF → triple fault. */
  | "none"
  /** Gates present but the stacks a delivery would use are not mapped. */
  | "nostack";

/** One decoder/executor fuzz case: everything needed to replay it. */
export interface ExecCase {
  /** The mode. */
  bitness: 32 | 64;
  /** 0 or 3. */
  cpl: 0 | 3;
  /** IDT layout. */
  idt: IdtMode;
  /** Code loaded at {@link CODE}. */
  bytes: Uint8Array;
  /** Offset of the first instruction in `bytes`. */
  entry: number;
  /** Initial rax..r15 (eax..edi in 32-bit mode), unsigned. */
  regs: bigint[];
  /** Initial RFLAGS. */
  flags: number;
  /** Code pages are writable too (self-modifying code). */
  writableCode: boolean;
  /** Vectors above 31 that have a gate, with their DPL. */
  extraGates: [number, number][];
  /** External interrupts queued before the run. */
  irqs: number[];
  /** CPUs; above 1 the run goes through the SMP layer with a seeded random schedule. */
  cpus: number;
  /** Schedule seed of an SMP run. */
  scheduleSeed: number;
  /** Fetch mode of an SMP run. */
  fetch: FetchMode;
  /** Step budget. */
  maxSteps: number;
}

/** What a run of an {@link ExecCase} ended with (plain data, compared between runs). */
export interface ExecOutcome {
  /** Stop kind (machine run) or SMP run reason. */
  kind: string;
  /** The stopping CPU's ip. */
  ip: string;
  /** Steps taken. */
  steps: number;
  /** The stop message. */
  message: string;
  /** Every handler entry: `vector@savedIp/errorCode` in order. */
  vectors: string[];
  /** {@link stateHash} of the machine after the run. */
  state: string;
  /** The SMP trace hash (SMP runs only). */
  trace: string;
}

const NAMES64 = ["rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi"];
const NAMES32 = ["eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi"];
/** Vectors whose exception frame carries an error code. */
const HAS_ERROR = new Set([8, 10, 11, 12, 13, 14, 17, 21, 29, 30]);

// Opcode material for the structured byte generator.
const PREFIXES = [0x66, 0x67, 0xf2, 0xf3, 0xf0, 0x2e, 0x36, 0x3e, 0x26, 0x64, 0x65];
const TWO_BYTE = [
  0x05,
  0x0b,
  0x1f,
  0x31,
  0xa2,
  0xa3,
  0xab,
  0xaf,
  0xb0,
  0xb1,
  0xb3,
  0xb6,
  0xb7,
  0xba,
  0xbb,
  0xbc,
  0xbd,
  0xbe,
  0xbf,
  0xc0,
  0xc1,
  0xc8,
  0x00,
  0x01,
  0x20,
  0x22,
  0x07,
  0x35,
  0x34,
];
/** Short programs worth splicing in: stack games, iret, int n, string ops, far transfers. */
const SNIPPETS_64: number[][] = [
  [0x48, 0xcf], // iretq
  [0xcf], // iret (32-bit operand)
  [0xcd, 0x03], // int $3
  [0xcc], // int3
  [0xce], // into (invalid in 64-bit)
  [0xf1], // int1
  [0xf4], // hlt
  [0xfa], // cli
  [0xfb], // sti
  [0x9c, 0x9d], // pushf; popf
  [0x0f, 0xa2], // cpuid
  [0x0f, 0x0b], // ud2
  [0xf3, 0xa4], // rep movsb
  [0xf3, 0x48, 0xab], // rep stosq
  [0xf2, 0xae], // repne scasb
  [0x48, 0xf7, 0xf1], // div %rcx
  [0x48, 0xf7, 0xf9], // idiv %rcx
  [0xc3], // ret
  [0xc2, 0x08, 0x00], // ret $8
  [0xff, 0xe0], // jmp *%rax
  [0xff, 0xd0], // call *%rax
  [0x48, 0x89, 0xc4], // mov %rax,%rsp
  [0x48, 0x87, 0x20], // xchg %rsp,(%rax)
  [0xf0, 0x48, 0x0f, 0xb1, 0x0b], // lock cmpxchg %rcx,(%rbx)
  [0xc9], // leave
  [0x8e, 0xd8], // mov %eax,%ds
  [0x0f, 0x01, 0xf8], // swapgs
  [0xe8, 0xfb, 0xff, 0xff, 0xff], // call to itself - 0
  [0xeb, 0xfe], // jmp .
  [0x48, 0x8b, 0x05, 0x00, 0x00, 0x00, 0x00], // mov 0(%rip),%rax
];
const SNIPPETS_32: number[][] = [
  [0xcf],
  [0x66, 0xcf],
  [0xcd, 0x03],
  [0xcc],
  [0xce],
  [0xf4],
  [0xfa],
  [0xfb],
  [0x9c, 0x9d],
  [0x0f, 0xa2],
  [0xf3, 0xa4],
  [0xf3, 0xab],
  [0xf7, 0xf1],
  [0xf7, 0xf9],
  [0xc3],
  [0xc2, 0x04, 0x00],
  [0xff, 0xe0],
  [0xff, 0xd0],
  [0x89, 0xc4],
  [0x60], // pusha
  [0x61], // popa
  [0x8e, 0xd0], // mov %eax,%ss
  [0x8e, 0xd8],
  [0x1f], // pop %ds
  [0x0f, 0xa1], // pop %fs
  [0x62, 0x00], // bound
  [0xea, 0, 0x10, 0, 0, 0x60, 0], // ljmp $0x60,$0x1000
  [0x9a, 0, 0x10, 0, 0, 0x73, 0], // lcall $0x73,$0x1000
  [0xeb, 0xfe],
  [0xc8, 0x10, 0x00, 0x01], // enter $16,$1
];

function structured(rng: Rng, bitness: 32 | 64, out: number[]): void {
  const n = rng.int(4) === 0 ? rng.int(3) : 0;
  for (let i = 0; i < n; i++) out.push(rng.pick(PREFIXES));
  if (bitness === 64 && rng.chance(0.4)) out.push(0x40 | rng.int(16));
  if (rng.chance(0.2)) {
    out.push(0x0f, rng.chance(0.7) ? rng.pick(TWO_BYTE) : rng.int(256));
  } else out.push(rng.int(256));
  // ModRM and what follows: biased toward register and simple memory forms.
  const mod = rng.pick([0, 1, 2, 3, 3, 3]);
  const modrm = (mod << 6) | (rng.int(8) << 3) | rng.int(8);
  out.push(modrm);
  if (mod !== 3 && (modrm & 7) === 4) out.push(rng.int(256));
  const tail = mod === 1 ? 1 : mod === 2 ? 4 : 0;
  for (let i = 0; i < tail + rng.pick([0, 0, 1, 2, 4]); i++) out.push(rng.int(256));
}

/**
 * Generates code bytes: pure noise, opcode-shaped instructions, or snippets of
 * privileged and control-transfer instructions, mixed.
 *
 * @param rng The generator.
 * @param bitness Mode.
 * @param length Bytes wanted.
 * @returns The bytes.
 */
export function generateCode(rng: Rng, bitness: 32 | 64, length: number): Uint8Array {
  const style = rng.int(4);
  if (style === 0) return rng.bytes(length);
  const out: number[] = [];
  const snippets = bitness === 64 ? SNIPPETS_64 : SNIPPETS_32;
  while (out.length < length) {
    const r = rng.int(10);
    if (r < (style === 1 ? 8 : 4)) structured(rng, bitness, out);
    else if (r < 8) out.push(...rng.pick(snippets));
    else out.push(rng.int(256));
  }
  return Uint8Array.from(out.slice(0, length));
}

/**
 * A register value: usually a pointer into something mapped (so loads and stores do
 * something), sometimes a boundary value, sometimes noise.
 */
function regValue(rng: Rng, bitness: 32 | 64): bigint {
  const mask = bitness === 64 ? (1n << 64n) - 1n : 0xffffffffn;
  switch (rng.int(9)) {
    case 0:
      return 0n;
    case 1:
      return BigInt(rng.int(64));
    case 2:
      return DATA + BigInt(rng.int(0x2000));
    case 3:
      return USER_STACK + BigInt(rng.int(0x2000));
    case 4:
      return CODE + BigInt(rng.int(CODE_SIZE));
    case 5:
      return bitness === 64
        ? rng.pick([
          0x7ffffffffff8n,
          0x800000000000n,
          0xffff800000000000n,
          0xfffffffffffffff8n,
          0xffffffff80000000n,
          0x7fffffffffffffffn,
          0x8000000000000000n,
        ])
        : rng.pick([0xfffffff8n, 0x7fffffffn, 0x80000000n, 0xfffn, 0xffffffffn]);
    case 6:
      return BigInt(rng.u32()) & mask;
    case 7:
      return rng.u64() & mask;
    default:
      return BigInt(rng.int(0x10000));
  }
}

/**
 * Builds the case of a seed.
 *
 * @param seed The case seed.
 * @param options Overrides (the fuzz test fixes the CPU count; the long run varies it).
 * @returns The case.
 */
export function generateExecCase(
  seed: number,
  options: { maxSteps?: number; smp?: boolean } = {},
): ExecCase {
  const rng = new Rng(seed);
  const bitness = rng.chance(0.5) ? 64 : 32;
  const cpl = rng.chance(0.5) ? 3 : 0;
  const idtRoll = rng.int(20);
  const idt: IdtMode = idtRoll === 0
    ? "none"
    : idtRoll === 1
    ? "nostack"
    : idtRoll < 11
    ? "full"
    : "resume";
  const len = rng.pick([16, 64, 256, 1024, CODE_SIZE]);
  const bytes = generateCode(rng, bitness, len);
  const entry = rng.chance(0.7) ? 0 : rng.int(len);
  const regs: bigint[] = [];
  for (let r = 0; r < (bitness === 64 ? 16 : 8); r++) regs.push(regValue(rng, bitness));
  regs[4] = rng.chance(0.9) ? USER_STACK_TOP - BigInt(rng.int(64)) : regValue(rng, bitness);
  let flags = 0x2;
  if (rng.chance(0.5)) flags |= rng.u32() & 0x8d5; // CF PF AF ZF SF OF
  if (rng.chance(0.3)) flags |= 0x200; // IF
  if (rng.chance(0.1)) flags |= 0x400; // DF
  if (rng.chance(0.1)) flags |= 0x3000; // IOPL 3
  const extraGates: [number, number][] = [];
  for (let i = rng.int(6); i > 0; i--) extraGates.push([32 + rng.int(224), rng.int(4)]);
  const irqs: number[] = [];
  if (rng.chance(0.15)) irqs.push(32 + rng.int(224));
  const smp = options.smp ?? true;
  const cpus = smp && rng.chance(0.25) ? 2 + rng.int(3) : 1;
  return {
    bitness,
    cpl,
    idt,
    bytes,
    entry,
    regs,
    flags,
    writableCode: rng.chance(0.5),
    extraGates,
    irqs,
    cpus,
    scheduleSeed: rng.u32(),
    fetch: rng.pick(["coherent", "stale", "torn"] as const),
    maxSteps: options.maxSteps ?? 2000,
  };
}

/** A machine set up for a case, with the list the handlers append to. */
export interface ExecSetup {
  /** The machine. */
  machine: Machine;
  /** Handler entries recorded so far. */
  vectors: string[];
}

/**
 * Builds the machine of a case (fresh each time: nothing shared between runs).
 *
 * @param c The case.
 * @returns The machine and the vector log.
 */
export function setupExecCase(c: ExecCase): ExecSetup {
  const m = new Machine({ bitness: c.bitness, cpus: c.cpus, memoryLimit: 1 << 20 });
  const vectors: string[] = [];
  m.load(CODE, new Uint8Array(CODE_SIZE), c.writableCode ? "rwx" : "rx");
  m.writeBytes(CODE, c.bytes);
  m.map(DATA, 0x2000, "rw");
  m.map(USER_STACK, 0x2000, "rw");
  if (c.idt !== "nostack") m.map(KERNEL_STACK_TOP - 0x2000n, 0x2000, "rw", { user: false });
  const wide = c.bitness === 64;
  const resume = c.idt === "resume";
  const scratch = new Insn();
  const record = (v: number) => (call: NativeCall) => {
    const cpu = call.cpu;
    const w = wide ? 8n : 4n;
    // A resume stub called us: the return address sits above the frame.
    let at = (BigInt(cpu.spValue()) & (wide ? (1n << 64n) - 1n : 0xffffffffn)) +
      (resume ? w : 0n);
    // The frame may be shorter than the vector suggests (`int $13` pushes no error
    // code), so a read may run off the stack: that is the harness's guess, not a fault.
    const read = (a: bigint) => {
      try {
        return wide ? call.read64(a) : call.read32(a);
      } catch {
        return -1n;
      }
    };
    let err = "";
    // Software `int n` pushes no error code even for these vectors; the log then shows
    // the saved ip as the error code, which is harmless for a fuzz log.
    if (HAS_ERROR.has(v)) {
      err = "/" + read(at).toString(16);
      at += w;
    }
    const saved = read(at);
    vectors.push(`${v}@${saved.toString(16)}${err}`);
    if (saved < 0n) {
      if (!resume) call.stop(`vector ${v}`);
      return;
    }
    if (!resume) {
      call.stop(`vector ${v}`);
      return;
    }
    // Faults save the faulting ip: step over that instruction (traps saved the next one).
    if (v === 3 || v === 4 || v >= 32) return;
    let code: Uint8Array;
    try {
      code = call.readBytes(saved, 16);
    } catch {
      return; // unmapped: the same fault again, until the budget
    }
    const len = decodeInto(scratch, code, 0, c.bitness).len;
    const next = saved + BigInt(Math.max(1, len));
    if (wide) call.write64(at, next);
    else call.write32(at, next & 0xffffffffn);
  };
  if (c.idt !== "none") {
    for (let v = 0; v < 32; v++) {
      m.setGate(v, { handler: handlerOf(c, v), dpl: v === 3 || v === 4 ? 3 : 0 });
    }
    for (const [v, dpl] of c.extraGates) m.setGate(v, { handler: handlerOf(c, v), dpl });
    for (let v = 0; v < 256; v++) {
      if (m.idt[v] === undefined) continue;
      m.bindNative(HANDLERS + BigInt(16 * v), record(v), `vec${v}`);
      if (!resume) continue;
      // call HANDLERS+16v; [add $w,%sp]; iret — 32 bytes per vector.
      const stub = new Array<number>(32).fill(0xcc);
      const rel = Number(HANDLERS + BigInt(16 * v) - (STUBS + BigInt(32 * v) + 5n));
      stub.splice(
        0,
        5,
        0xe8,
        rel & 0xff,
        (rel >> 8) & 0xff,
        (rel >> 16) & 0xff,
        (rel >>> 24) & 0xff,
      );
      let k = 5;
      if (HAS_ERROR.has(v)) {
        const add = wide ? [0x48, 0x83, 0xc4, 8] : [0x83, 0xc4, 4];
        stub.splice(k, add.length, ...add);
        k += add.length;
      }
      const ret = wide ? [0x48, 0xcf] : [0xcf];
      stub.splice(k, ret.length, ...ret);
      m.load(STUBS + BigInt(32 * v), stub, "rx", { user: false });
    }
  }
  const names = wide ? NAMES64 : NAMES32;
  for (const [i, cpu] of m.cpus.entries()) {
    for (let r = 0; r < c.regs.length; r++) {
      cpu.setReg(r < 8 ? names[r]! : `r${r}`, c.regs[r]!);
    }
    // Each CPU of an SMP case starts at its own spot of the same code.
    cpu.rip = CODE + BigInt((c.entry + 97 * i) % c.bytes.length);
    cpu.flags = c.flags;
    cpu.tss.sp0 = c.idt === "nostack" ? 0x30000n : KERNEL_STACK_TOP;
    if (c.cpl === 3) {
      cpu.cs = wide ? 0x33 : 0x73;
      cpu.ss = wide ? 0x2b : 0x7b;
      cpu.ds = cpu.es = wide ? 0x2b : 0x7b;
    } else if (c.idt === "nostack") cpu.setReg(wide ? "rsp" : "esp", 0x30000n);
    for (const v of c.irqs) cpu.raiseInterrupt(v);
  }
  return { machine: m, vectors };
}

function handlerOf(c: ExecCase, v: number): bigint {
  return c.idt === "resume" ? STUBS + BigInt(32 * v) : HANDLERS + BigInt(16 * v);
}

/**
 * Runs a case once on a fresh machine.
 *
 * @param c The case.
 * @returns The outcome (a host exception propagates).
 */
export function runExecCase(c: ExecCase): ExecOutcome {
  return runOn(c, setupExecCase(c));
}

/** Stop kinds a run may end with. */
const MACHINE_KINDS = new Set(["hlt", "budget", "triple-fault", "native"]);
const SMP_KINDS = new Set(["halted", "budget", "stopped", "host"]);

/**
 * Checks what the machine looks like after a run: nothing outside what instructions can do.
 */
function invariants(c: ExecCase, o: ExecOutcome, m: Machine): string[] {
  const bad: string[] = [];
  const kinds = c.cpus === 1 ? MACHINE_KINDS : SMP_KINDS;
  if (!kinds.has(o.kind)) bad.push(`stop kind ${o.kind} is not architectural`);
  if (o.steps > c.maxSteps) bad.push(`${o.steps} steps exceed the budget of ${c.maxSteps}`);
  if (!(o.message.length > 0)) bad.push("empty stop message");
  if (c.cpus === 1 && o.kind === "native" && !/stopped: vector \d+$/.test(o.message)) {
    bad.push(`native stop that no handler asked for: ${o.message}`);
  }
  if (c.cpus === 1 && c.idt === "full" && o.kind === "native" && o.vectors.length !== 1) {
    bad.push(`native stop with ${o.vectors.length} handler entries`);
  }
  if (c.idt === "none" && o.vectors.length !== 0) bad.push("a handler ran with an empty IDT");
  for (const cpu of m.cpus) {
    const tag = `CPU ${cpu.index}`;
    if (!Number.isSafeInteger(cpu.ip)) bad.push(`${tag} ip is ${cpu.ip}`);
    if (c.bitness === 32 && (cpu.ip < 0 || cpu.ip >= 2 ** 32)) {
      bad.push(`${tag} ip ${cpu.ip} outside 32-bit space`);
    }
    if (c.bitness === 64 && (cpu.ip < -(2 ** 47) || cpu.ip >= 2 ** 47)) {
      bad.push(`${tag} ip ${cpu.ip} is not canonical`);
    }
    if (cpu.cpl !== (cpu.cs & 3)) bad.push(`${tag} cpl ${cpu.cpl} but cs ${cpu.cs}`);
    if (!Number.isInteger(cpu.flags) || (cpu.flags & 2) === 0) {
      bad.push(`${tag} rflags ${cpu.flags} lost bit 1`);
    }
    if (cpu.cpl === 3 && cpu.halted) bad.push(`${tag} halted at CPL 3 (hlt is privileged)`);
    if (c.bitness === 32) {
      for (let r = 0; r < 16; r++) {
        if (cpu.hi[r] !== 0) bad.push(`${tag} 32-bit machine holds high bits in reg ${r}`);
        if (r >= 8 && cpu.lo[r] !== 0) bad.push(`${tag} 32-bit machine wrote r${r}`);
      }
    }
    if (!Number.isSafeInteger(cpu.cr2Value)) bad.push(`${tag} cr2 is ${cpu.cr2Value}`);
  }
  if (c.cpus === 1 && o.kind === "hlt" && m.cpus[0]!.cpl !== 0) {
    bad.push("hlt stop at CPL 3");
  }
  const pages = 2 + 2 + 2 + (c.idt === "nostack" ? 0 : 2) + (c.idt === "resume" ? stubPages(c) : 0);
  if (m.memory.pages.size !== pages) {
    bad.push(`${m.memory.pages.size} pages mapped after the run, ${pages} before`);
  }
  if (m.memory.usedBytes !== pages * 4096) bad.push(`${m.memory.usedBytes} bytes of frames in use`);
  return bad;
}

function stubPages(c: ExecCase): number {
  const set = new Set<number>();
  for (let v = 0; v < 32; v++) set.add(Math.floor((32 * v) / 4096));
  for (const [v] of c.extraGates) set.add(Math.floor((32 * v) / 4096));
  return set.size;
}

/** The result of {@link checkExecCase}. */
export interface ExecCheck {
  /** The first run's outcome (undefined when it threw). */
  outcome?: ExecOutcome;
  /** Broken properties, empty when the case passed. */
  problems: string[];
  /** Milliseconds of the two runs. */
  ms: number;
}

/**
 * Runs a case twice (fresh machines) and lists every broken property: a host exception,
 * a non-architectural stop or state, a run longer than `slowMs`, a second run that
 * differs in stop, address, vectors, state hash or trace hash.
 *
 * @param c The case.
 * @param slowMs A run longer than this counts as a host hang.
 * @returns The outcome and the problems.
 */
export function checkExecCase(c: ExecCase, slowMs = 2000): ExecCheck {
  const t0 = performance.now();
  let first: ExecOutcome;
  let setup: ExecSetup;
  try {
    setup = setupExecCase(c);
    first = runOn(c, setup);
  } catch (e) {
    return { problems: [`host exception: ${describeError(e)}`], ms: performance.now() - t0 };
  }
  const t1 = performance.now();
  const problems = invariants(c, first, setup.machine);
  if (t1 - t0 > slowMs) problems.push(`run took ${(t1 - t0).toFixed(0)} ms (host hang?)`);
  let second: ExecOutcome;
  try {
    second = runExecCase(c);
  } catch (e) {
    problems.push(`host exception on the second run only: ${describeError(e)}`);
    return { outcome: first, problems, ms: performance.now() - t0 };
  }
  for (const k of ["kind", "ip", "steps", "message", "state", "trace"] as const) {
    if (first[k] !== second[k]) {
      problems.push(`not deterministic: ${k} ${String(first[k])} then ${String(second[k])}`);
    }
  }
  if (first.vectors.join() !== second.vectors.join()) {
    problems.push(`not deterministic: vectors ${first.vectors} then ${second.vectors}`);
  }
  return { outcome: first, problems, ms: performance.now() - t0 };
}

function runOn(c: ExecCase, s: ExecSetup): ExecOutcome {
  const m = s.machine;
  if (c.cpus === 1) {
    const stop = m.run({ maxSteps: c.maxSteps });
    return {
      kind: stop.kind,
      ip: stop.ip.toString(16),
      steps: stop.steps,
      message: stop.message,
      vectors: s.vectors,
      state: stateHash(m),
      trace: "",
    };
  }
  const smp = attachSmp(m, { schedule: randomSchedule(c.scheduleSeed), fetch: c.fetch });
  const r = smp.run(c.maxSteps);
  return {
    kind: r.reason,
    ip: m.cpus[r.cpu]?.rip.toString(16) ?? "?",
    steps: r.steps,
    message: r.message,
    vectors: s.vectors,
    state: stateHash(m, { smp }),
    trace: smp.trace.hash(),
  };
}

/**
 * One line naming an error: its class, message and first stack frame.
 *
 * @param e Anything thrown.
 * @returns The description.
 */
export function describeError(e: unknown): string {
  if (e instanceof Error) {
    const at = e.stack?.split("\n").find((l) => l.includes(" at "))?.trim() ?? "";
    return `${e.name}: ${e.message} ${at}`;
  }
  return String(e);
}

// ---------------------------------------------------------------------------------------
// Decoder alone

const FIELDS = Object.keys(new Insn()) as (keyof Insn)[];

/**
 * Decodes every offset of a buffer (so the last instructions run off its end) twice: into
 * a fresh record and into one left dirty by another decode. Lists anything that throws,
 * a length outside 0–15, a truncated or too-long result that contradicts the bytes left,
 * or a field that depends on what the record held before.
 *
 * @param bytes The buffer.
 * @param bitness Mode.
 * @returns Problems, empty when none.
 */
export function checkDecode(bytes: Uint8Array, bitness: 32 | 64): string[] {
  const bad: string[] = [];
  const dirty = new Insn();
  for (let off = 0; off <= bytes.length; off++) {
    let fresh: Insn;
    try {
      fresh = decodeInto(new Insn(), bytes, off, bitness);
      // Dirty the reused record with the decode of a different offset first.
      decodeInto(dirty, bytes, (off * 7 + 3) % (bytes.length + 1), bitness);
      decodeInto(dirty, bytes, off, bitness);
    } catch (e) {
      bad.push(`decodeInto threw at offset ${off} of ${hexBytes(bytes)}: ${describeError(e)}`);
      break;
    }
    const left = bytes.length - off;
    const where = `${bitness}-bit ${hexBytes(bytes.subarray(off, off + 16))}`;
    if (!Number.isInteger(fresh.len) || fresh.len < 0 || fresh.len > 15) {
      bad.push(`length ${fresh.len} for ${where}`);
    }
    if (fresh.op !== Op.TRUNCATED && fresh.len > left) {
      bad.push(`length ${fresh.len} runs past the ${left} bytes left: ${where}`);
    }
    if (left === 0 && fresh.op !== Op.TRUNCATED) bad.push("empty input is not TRUNCATED");
    for (const f of FIELDS) {
      if (typeof fresh[f] !== "number") continue;
      if (fresh[f] !== dirty[f]) {
        bad.push(`field ${f} is ${dirty[f]} after a reused record, ${fresh[f]} fresh: ${where}`);
        break;
      }
    }
    if (bad.length > 4) break;
  }
  return bad;
}
