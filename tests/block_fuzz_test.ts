// Differential fuzzing of the block machinery (lib/machine/block.ts: compiled blocks,
// blocks that loop on themselves, one-go push/pop runs; iret's frame read): random loop
// programs run on two machines, one with budgets of random sizes (blocks, compiled once
// hot) and one a single step per run() (no blocks). After every chunk the two must agree
// on the stop, the step count, every register and every byte (Machine.stateHash).
//
// The programs are what the fast paths are built for and what can break them: loop bodies
// of pushes and pops (registers, immediates, words at disp(%rsp)) in runs, loads and stores
// through rsi, ALU operations and conditional moves, an inner branch, a software interrupt
// whose handler irets, and stacks that start near the bottom of their page so that some
// push runs into the unmapped page below (a #PF, whose handler stops the machine).
// Every case is derived from its index; a failure names it.
import assert from "node:assert/strict";
import { agree, CODE, DATA, pair, type Rig, STACK_TOP } from "./_block_rig.ts";
import { Rng } from "./fuzz/prng.ts";

// CI runs 400 cases (about a second); TEXTPOKE_BLOCK_FUZZ_CASES and TEXTPOKE_FUZZ_SEED run
// more, or others.
const CASES = Number(Deno.env.get("TEXTPOKE_BLOCK_FUZZ_CASES") ?? 400);
const BASE = Number(Deno.env.get("TEXTPOKE_FUZZ_SEED") ?? 0x5eed0000);

/** General registers a body may use freely (not the stack pointer, rsi, rcx or rbp). */
const REGS64 = ["rax", "rbx", "rdx", "rdi", "r8", "r9", "r10", "r11"];
const REGS32 = ["eax", "ebx", "edx", "edi"];

/** One random loop program, its setup and a description for failure messages. */
function program(seed: number): { src: string; bits: 32 | 64; setup: (r: Rig) => void } {
  const r = new Rng(seed);
  const bits: 32 | 64 = r.chance(0.7) ? 64 : 32;
  const regs = bits === 64 ? REGS64 : REGS32;
  const sp = bits === 64 ? "rsp" : "esp";
  const si = bits === 64 ? "rsi" : "esi";
  const w = bits === 64 ? 8 : 4;
  const sfx = bits === 64 ? "q" : "l";
  const reg = () => regs[r.int(regs.length)]!;
  const body: string[] = [];
  let depth = 0; // words pushed and not yet popped in this iteration
  // Two programs in five get an inner branch or an int (they end the loop's block early).
  const control = r.chance(0.4);
  const n = 3 + r.int(18);
  for (let i = 0; i < n; i++) {
    const k = r.int(12);
    if (k < 3) {
      // A run of pushes.
      for (let j = 1 + r.int(5); j > 0; j--) {
        const p = r.int(3);
        if (p === 0) body.push(`push %${reg()}`);
        else if (p === 1) body.push(`push $${r.int(0x10000) - 0x8000}`);
        else body.push(`push${sfx} ${w * r.int(4)}(%${sp})`);
        depth++;
      }
    } else if (k < 5 && depth > 0) {
      // A run of pops (never below this iteration's pushes).
      for (let j = 1 + r.int(depth); j > 0; j--, depth--) body.push(`pop %${reg()}`);
    } else if (k === 5) body.push(`mov ${4 * r.int(64)}(%${si}), %${reg()}`);
    else if (k === 6) body.push(`mov %${reg()}, ${4 * r.int(64)}(%${si})`);
    else if (k === 7) {
      const op = ["add", "sub", "xor", "and", "or", "adc"][r.int(6)]!;
      body.push(`${op} %${reg()}, %${reg()}`);
    } else if (k === 8) body.push(`add $${r.int(1000) - 500}, %${reg()}`);
    else if (k === 9) body.push(`cmp %${reg()}, %${reg()}`, `cmovl %${reg()}, %${reg()}`);
    else if (k === 10 && control) body.push(`test $1, %${regs[0]}`, `jz 1f`, `inc %${reg()}`, `1:`);
    else if (k === 11 && control && r.chance(0.5)) body.push("int $0x30");
    else body.push(`lea ${r.int(64)}(%${reg()}), %${reg()}`);
  }
  // Leave the stack as the iteration found it, or let it sink a word per iteration.
  const sink = r.chance(0.3) ? 1 : 0;
  while (depth > sink) {
    body.push(`pop %${reg()}`);
    depth--;
  }
  const iterations = 70 + r.int(200);
  const src = `
  mov $${iterations}, %ecx
loop:
${body.map((l) => (l.endsWith(":") ? l : `  ${l}`)).join("\n")}
  dec %ecx
  jnz loop
  hlt
pf:
  hlt
swint:
  add $${r.int(50)}, %${regs[1]}
  iret${sfx}
`;
  // Most stacks start near the top of their page; some near its bottom, so that pushes
  // (or the sinking stack) run into the unmapped page below.
  const low = r.chance(0.3);
  const start = low ? STACK_TOP - 0x1000n + BigInt(w * (2 + r.int(24))) : STACK_TOP - 0x200n;
  const init = regs.map(() => BigInt(r.u32()) | (BigInt(r.u32()) << 32n));
  return {
    src,
    bits,
    setup: ({ m, labels }) => {
      const cpu = m.cpus[0]!;
      m.setGate(14, { handler: labels.get("pf")!, type: "interrupt", dpl: 0 });
      m.setGate(0x30, { handler: labels.get("swint")!, type: "interrupt", dpl: 0 });
      regs.forEach((x, i) => cpu.setReg(x, bits === 64 ? init[i]! : init[i]! & 0xffffffffn));
      cpu.setReg(si, DATA);
      cpu.setReg(sp, start);
    },
  };
}

Deno.test(`compiled blocks agree with one-step runs on ${CASES} random loop programs`, () => {
  let compiledLoops = 0;
  let faults = 0;
  for (let i = 0; i < CASES; i++) {
    const seed = (BASE + i) | 0;
    const { src, bits, setup } = program(seed);
    const [fast, slow] = pair(src, setup, { bitness: bits });
    const r = new Rng(seed ^ 0x7fffffff);
    let stop = null;
    for (let chunk = 0; chunk < 400; chunk++) {
      const budget = r.chance(0.5) ? 1 + r.int(40) : 1 + r.int(3000);
      const what = `case ${i} (seed ${seed.toString(16)}), chunk ${chunk} of ${budget}`;
      try {
        stop = agree(fast, slow, budget, what);
      } catch (e) {
        throw new Error(`${(e as Error).message}\nprogram:${src}`);
      }
      if (stop.kind !== "budget") break;
    }
    // A push into the unmapped page faults, and so does the delivery of that #PF onto the
    // same stack: #DF, then a triple fault (no IST here), or the pf handler's hlt.
    assert.ok(
      stop !== null && (stop.kind === "hlt" || stop.kind === "triple-fault"),
      `case ${i}: ends with hlt or a triple fault, not ${stop?.kind}: ${stop?.message}`,
    );
    const pf = fast.labels.get("pf")!;
    if (stop.kind === "triple-fault" || stop.ip === pf || stop.ip === pf + 1n) faults++;
    if (fast.m.cpus[0]!.blockAt(CODE + 5n)?.loops) compiledLoops++;
  }
  // The programs exercise what they are for: looping blocks, and stacks that fault.
  assert.ok(compiledLoops > CASES / 4, `only ${compiledLoops} cases left a looping block`);
  assert.ok(faults > 3, `only ${faults} cases ended in the #PF handler`);
});
