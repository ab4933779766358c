// Single-step traps (RFLAGS.TF): every instruction that starts with TF = 1 is followed by a
// #DB trap (vector 1) whose saved ip is the next instruction; see `Cpu.flags`.
import assert from "node:assert/strict";
import { Machine } from "../lib/machine/machine.ts";
import type { Cpu } from "../lib/machine/cpu.ts";
import { assemble } from "../lib/x86/assemble.ts";
import { TF } from "../lib/x86/flags.ts";

const CODE = 0x1000n;
const STACK_TOP = 0x14000n;
/** The handlers' log: the count at LOG, entries from LOG + 0x10. */
const LOG = 0x20000;
/** A mapped address the #PF handler points rbx/ebx at. */
const GOOD = 0x21000;
/** An unmapped address. */
const HOLE = 0x9000;
const NATIVE = 0x5000n;

/** One handler entry: which vector, the saved ip, the pushed flags, the handler's own flags. */
interface Entry {
  vector: number;
  ip: bigint;
  pushedTf: boolean;
  liveTf: boolean;
}

/**
 * A handler that appends an {@link Entry} to the log and returns with iret. `fix` runs
 * just before the error code is dropped and iret (the saved ip is then at the top of the
 * stack, or just above the error code).
 */
function handler(
  bits: 32 | 64,
  name: string,
  vector: number,
  errorCode: boolean,
  fix = "",
): string {
  if (bits === 64) {
    const ipOff = 16 + (errorCode ? 8 : 0);
    return `
${name}:
  push %rax
  push %rbx
  mov ${LOG}, %rbx
  shl $5, %rbx
  movq $${vector}, ${LOG + 0x10}(%rbx)
  mov ${ipOff}(%rsp), %rax
  mov %rax, ${LOG + 0x18}(%rbx)
  mov ${ipOff + 16}(%rsp), %rax
  mov %rax, ${LOG + 0x20}(%rbx)
  pushfq
  pop %rax
  mov %rax, ${LOG + 0x28}(%rbx)
  incq ${LOG}
  pop %rbx
  pop %rax
  ${fix}
  ${errorCode ? "add $8, %rsp" : ""}
  iretq
`;
  }
  const ipOff = 8 + (errorCode ? 4 : 0);
  return `
${name}:
  push %eax
  push %ebx
  mov ${LOG}, %ebx
  shl $4, %ebx
  movl $${vector}, ${LOG + 0x10}(%ebx)
  mov ${ipOff}(%esp), %eax
  mov %eax, ${LOG + 0x14}(%ebx)
  mov ${ipOff + 8}(%esp), %eax
  mov %eax, ${LOG + 0x18}(%ebx)
  pushfl
  pop %eax
  mov %eax, ${LOG + 0x1c}(%ebx)
  incl ${LOG}
  pop %ebx
  pop %eax
  ${fix}
  ${errorCode ? "add $4, %esp" : ""}
  iret
`;
}

/** Text that sets (or clears) TF through the stack: pushf / or (and) / popf. */
function setTf(bits: 32 | 64, on: boolean, label = ""): string {
  const w = bits === 64 ? "q" : "l";
  const sp = bits === 64 ? "%rsp" : "%esp";
  const op = on ? `or${w} $0x100, (${sp})` : `and${w} $-257, (${sp})`;
  const l = (k: number) => (label === "" ? "" : `${label}${k}: `);
  return `${l(0)}pushf${w}\n${l(1)}${op}\n${l(2)}popf${w}\n`;
}

interface Rig {
  m: Machine;
  cpu: Cpu;
  at: (label: string) => bigint;
}

/** A machine running `body` at CODE, with #DB, #BP, #UD and #PF handlers that log. */
function rig(bits: 32 | 64, body: string): Rig {
  const rbx = bits === 64 ? "%rbx" : "%ebx";
  const sp = bits === 64 ? "%rsp" : "%esp";
  const src = body +
    handler(bits, "db_handler", 1, false) +
    handler(bits, "bp_handler", 3, false) +
    handler(bits, "ud_handler", 6, false, `add${bits === 64 ? "q" : "l"} $2, (${sp})`) +
    handler(bits, "pf_handler", 14, true, `mov $${GOOD}, ${rbx}`);
  const a = assemble(src, { bitness: bits, origin: CODE });
  const m = new Machine({ bitness: bits });
  m.load(CODE, a.bytes, "rx");
  m.map(0x10000n, 0x4000, "rw");
  m.map(BigInt(LOG), 0x10000, "rw");
  const at = (label: string): bigint => {
    const v = a.labels.get(label);
    if (v === undefined) throw new Error(`no label ${label}`);
    return v;
  };
  m.setGate(1, { handler: at("db_handler"), type: "interrupt", dpl: 0 });
  m.setGate(3, { handler: at("bp_handler"), type: "interrupt", dpl: 3 });
  m.setGate(6, { handler: at("ud_handler"), type: "interrupt", dpl: 0 });
  m.setGate(14, { handler: at("pf_handler"), type: "interrupt", dpl: 0 });
  const cpu = m.cpus[0]!;
  cpu.setReg(bits === 64 ? "rsp" : "esp", STACK_TOP);
  cpu.rip = CODE;
  return { m, cpu, at };
}

/** The handlers' log. */
function log(m: Machine, bits: 32 | 64): Entry[] {
  const w = bits === 64 ? 8 : 4;
  const word = (a: number) => bits === 64 ? m.read64(BigInt(a)) : m.read32(BigInt(a));
  const n = Number(word(LOG));
  const out: Entry[] = [];
  for (let i = 0; i < n; i++) {
    const e = LOG + 0x10 + i * 4 * w;
    out.push({
      vector: Number(word(e)),
      ip: word(e + w),
      pushedTf: (Number(word(e + 2 * w)) & TF) !== 0,
      liveTf: (Number(word(e + 3 * w)) & TF) !== 0,
    });
  }
  return out;
}

/** A #DB entry as the tests expect it: the pushed flags keep TF, the handler runs without. */
function db(ip: bigint, pushedTf = true): Entry {
  return { vector: 1, ip, pushedTf, liveTf: false };
}

/**
 * The main program: set TF with popf, then ordinary instructions, int3, a faulting ud2
 * (skipped by its handler), a load that page-faults once (its handler repairs the pointer
 * and returns to it), hlt, and a popf that clears TF.
 */
function mainProgram(bits: 32 | 64): string {
  const rbx = bits === 64 ? "%rbx" : "%ebx";
  return `
  mov $${HOLE}, ${rbx}
${setTf(bits, true)}
s1: mov $1, %eax
s2: add $2, %eax
s3: nop
s4: int3
s5: nop
s6: ud2
s7: mov (${rbx}), %ecx
s8: hlt
${setTf(bits, false, "s9_")}
s12: mov $5, %edx
s13: hlt
`;
}

/** The log {@link mainProgram} must leave, in order. */
function mainExpected(at: (l: string) => bigint): Entry[] {
  return [
    db(at("s2")), // the popf that set TF did not trap; the instruction after it did
    db(at("s3")),
    db(at("s4")),
    { vector: 3, ip: at("s5"), pushedTf: true, liveTf: false }, // int3: #BP, no #DB after it
    db(at("s6")), // the #BP handler's iret restored TF: stepping goes on
    { vector: 6, ip: at("s6"), pushedTf: true, liveTf: false }, // the fault, not #DB
    { vector: 14, ip: at("s7"), pushedTf: true, liveTf: false }, // the fault, not #DB
    db(at("s8")), // the repaired load ran again and trapped once
    db(at("s9_0")), // hlt trapped (and woke) with the ip after it
    db(at("s9_1")),
    db(at("s9_2")),
    db(at("s12"), false), // the popf that cleared TF trapped once, its pushed flags TF = 0
  ];
}

for (const bits of [64, 32] as const) {
  Deno.test(`Cpu.flags with TF set raises one #DB per instruction in order (${bits}-bit)`, () => {
    const { m, cpu, at } = rig(bits, mainProgram(bits));
    const stop = m.run({ maxSteps: 10_000 });
    assert.equal(stop.kind, "hlt", stop.message);
    assert.equal(stop.ip, at("s13") + 1n);
    assert.deepEqual(log(m, bits), mainExpected(at));
    assert.equal(cpu.getReg("eax"), 3n);
    assert.equal(cpu.getReg("ecx"), 0n, "the repaired load read zeros");
    assert.equal(cpu.getReg("edx"), 5n);
    assert.equal(Number(cpu.rflags) & TF, 0);
    assert.equal(cpu.getReg(bits === 64 ? "rsp" : "esp"), STACK_TOP);
  });
}

Deno.test("Cpu.stepOnce() single-steps exactly as Cpu.runSteps() does", () => {
  const a = rig(64, mainProgram(64));
  assert.equal(a.m.run({ maxSteps: 10_000 }).kind, "hlt");
  const b = rig(64, mainProgram(64));
  let guard = 0;
  while (b.cpu.takeStop() === null) {
    b.cpu.stepOnce();
    assert.ok(++guard < 10_000, "the one-step loop reaches hlt");
  }
  assert.deepEqual(log(b.m, 64), mainExpected(b.at));
  assert.deepEqual(log(b.m, 64), log(a.m, 64));
  assert.equal(b.cpu.rip, a.cpu.rip);
  assert.equal(b.cpu.steps, a.cpu.steps);
  assert.equal(b.m.stateHash(), a.m.stateHash());
});

Deno.test("Cpu.rflags set to TF by the host traps after the very next instruction", () => {
  const { m, cpu, at } = rig(
    64,
    `
h1: mov $7, %eax
h2: inc %eax
${setTf(64, false, "h3_")}
  hlt
`,
  );
  cpu.rflags = cpu.rflags | BigInt(TF);
  assert.equal(m.run({ maxSteps: 1000 }).kind, "hlt");
  assert.deepEqual(log(m, 64), [
    db(at("h2")),
    db(at("h3_0")),
    db(at("h3_1")),
    db(at("h3_2")),
    db(at("h3_2") + 1n, false),
  ]);
  assert.equal(cpu.getReg("eax"), 8n);
});

for (const bits of [64, 32] as const) {
  Deno.test(`Cpu.flags with TF steps a native call as one instruction (${bits}-bit)`, () => {
    const rax = bits === 64 ? "%rax" : "%eax";
    const { m, cpu, at } = rig(
      bits,
      `
${setTf(bits, true)}
n1: mov $${NATIVE}, %eax
n2: call *${rax}
n3: nop
${setTf(bits, false, "n4_")}
  hlt
`,
    );
    const entryTf: boolean[] = [];
    m.bindNative(NATIVE, (call) => {
      entryTf.push((call.cpu.flags & TF) !== 0);
      return 42;
    }, "stepped");
    assert.equal(m.run({ maxSteps: 1000 }).kind, "hlt");
    assert.deepEqual(entryTf, [true]);
    assert.deepEqual(log(m, bits), [
      db(at("n2")),
      db(NATIVE), // after the call: the saved ip is the native's address
      db(at("n3")), // the native as one step: the trap names its return address
      db(at("n4_0")),
      db(at("n4_1")),
      db(at("n4_2")),
      db(at("n4_2") + 1n, false),
    ]);
    assert.equal(cpu.getReg("eax"), 42n);
  });
}

for (const bits of [64, 32] as const) {
  Deno.test(
    `Cpu.runSteps() traps once per instruction in a compiled looping block once TF is set (${bits}-bit)`,
    () => {
      const [ax, bx, cx, dx, si] = bits === 64
        ? ["%rax", "%rbx", "%ecx", "%edx", "%esi"]
        : ["%eax", "%ebx", "%ecx", "%edx", "%esi"];
      const { m, cpu, at } = rig(
        bits,
        `
  xor ${cx}, ${cx}
  mov $200, ${dx}
  xor ${si}, ${si}
loop:
l1: push ${ax}
l2: push ${bx}
l3: pop ${bx}
l4: pop ${ax}
l5: add $1, ${cx}
l6: cmp ${dx}, ${cx}
l7: jne loop
a1: cmp $1, ${si}
a2: je done
  mov $1, ${si}
  add $10, ${dx}
${setTf(bits, true)}
  jmp loop
done:
${setTf(bits, false, "d")}
  hlt
`,
      );
      cpu.setReg("eax", 0x1234);
      cpu.setReg("ebx", 0x5678);
      assert.equal(m.run({ maxSteps: 100_000 }).kind, "hlt");
      // The loop ran 200 times as a compiled looping block (with stack runs) before TF.
      assert.deepEqual(cpu.blockAt(at("loop")), { length: 7, compiled: true, loops: true });
      const body = ["l2", "l3", "l4", "l5", "l6", "l7"].map(at);
      const expected: Entry[] = [db(at("loop"))]; // the jmp after the popf that set TF
      for (let i = 0; i < 10; i++) {
        for (const ip of body) expected.push(db(ip));
        expected.push(db(i < 9 ? at("loop") : at("a1")));
      }
      expected.push(db(at("a2")), db(at("done")), db(at("d1")), db(at("d2")));
      expected.push(db(at("d2") + 1n, false));
      assert.deepEqual(log(m, bits), expected);
      assert.equal(cpu.getReg("ecx"), 210n);
      assert.equal(cpu.getReg("eax"), 0x1234n);
      assert.equal(cpu.getReg("ebx"), 0x5678n);
      assert.equal(cpu.getReg(bits === 64 ? "rsp" : "esp"), STACK_TOP);
    },
  );
}
