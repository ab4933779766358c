// Compiled blocks need `new Function`; a browser page whose Content-Security-Policy lacks
// 'unsafe-eval' refuses it. The CPU must then keep running blocks interpreted, with the
// same results. This file runs in its own isolate, so switching code generation off here
// (which lib/machine/block.ts does for good after the first refusal) touches no other test.
import assert from "node:assert/strict";
import { Machine } from "../lib/machine/machine.ts";
import { assemble } from "../lib/x86/assemble.ts";

const CODE = 0x400000n;
const LOOP = `
loop:
  mov (%rsi), %rax
  add %rax, %rbx
  mov %rbx, 8(%rsi)
  dec %ecx
  jnz loop
  hlt
`;

function runLoop(): Machine {
  const m = new Machine({ bitness: 64 });
  m.load(CODE, assemble(LOOP, { bitness: 64, origin: CODE }).bytes, "rx");
  m.map(0x600000n, 0x1000, "rw");
  m.write64(0x600000n, 3n);
  const cpu = m.cpus[0]!;
  cpu.rip = CODE;
  cpu.setReg("rsi", 0x600000n);
  cpu.setReg("rcx", 1000n);
  assert.equal(m.run({ maxSteps: 100_000 }).kind, "hlt");
  return m;
}

Deno.test("Cpu.runSteps() runs hot blocks interpreted, with the same results, where new Function is refused", () => {
  const compiled = runLoop();
  assert.equal(compiled.cpus[0]!.blockAt(CODE)?.compiled, true, "code generation works here");

  const saved = globalThis.Function;
  // What a CSP without 'unsafe-eval' does to `new Function(...)`.
  globalThis.Function = function () {
    throw new EvalError("Refused to evaluate a string as JavaScript (CSP)");
  } as unknown as FunctionConstructor;
  let refused: Machine;
  try {
    refused = runLoop();
  } finally {
    globalThis.Function = saved;
  }
  const block = refused.cpus[0]!.blockAt(CODE);
  assert.ok(block !== null && block.length > 1, "the loop still runs as a block");
  assert.equal(block.compiled, false, "but interpreted");
  assert.equal(refused.cpus[0]!.getReg("rbx"), 3000n);
  assert.equal(refused.stateHash(), compiled.stateHash());
});
