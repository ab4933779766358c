/**
 * Litmus tests of the machine's data-memory model, by exhaustive exploration of every
 * interleaving: sequential consistency for aligned accesses, torn line-straddling plain
 * stores, atomic locked ones.
 */
import assert from "node:assert/strict";
import { explore } from "../lib/machine/schedule.ts";
import { DATA, litmus, reg } from "./_smp_fixture.ts";

const X = DATA, Y = DATA + 0x40n;

Deno.test("explore() finds exactly the SC outcomes of store buffering (never 0/0)", () => {
  const r = explore(
    litmus([
      `movl $1, ${X}\n movl ${Y}, %eax\n hlt`,
      `movl $1, ${Y}\n movl ${X}, %eax\n hlt`,
    ], (m) => `${reg(m, 0, "eax")}/${reg(m, 1, "eax")}`),
  );
  assert.equal(r.complete, true);
  // Three instructions per CPU, every interleaving: C(6, 3).
  assert.equal(r.schedules, 20);
  assert.deepEqual([...r.outcomes.keys()].sort(), ["0/1", "1/0", "1/1"]);
});

Deno.test("explore() finds the same SC outcomes of store buffering on a 32-bit machine", () => {
  const r = explore(
    litmus(
      [
        `movl $1, ${X}\n movl ${Y}, %eax\n hlt`,
        `movl $1, ${Y}\n movl ${X}, %eax\n hlt`,
      ],
      (m) => `${reg(m, 0, "eax")}/${reg(m, 1, "eax")}`,
      { bitness: 32 },
    ),
  );
  assert.equal(r.schedules, 20);
  assert.deepEqual([...r.outcomes.keys()].sort(), ["0/1", "1/0", "1/1"]);
});

Deno.test("explore() finds exactly the SC outcomes of message passing (never flag without data)", () => {
  const r = explore(
    litmus([
      `movl $42, ${X}\n movl $1, ${Y}\n hlt`,
      `movl ${Y}, %eax\n movl ${X}, %ebx\n hlt`,
    ], (m) => `flag=${reg(m, 1, "eax")} data=${reg(m, 1, "ebx")}`),
  );
  assert.equal(r.complete, true);
  assert.deepEqual([...r.outcomes.keys()].sort(), [
    "flag=0 data=0",
    "flag=0 data=2a",
    "flag=1 data=2a",
  ]);
});

// A 4-byte variable at 0x3e: two bytes in one 64-byte line, two in the next.
const SPLIT = DATA + 0x3en;

Deno.test("explore() sees a line-straddling plain store half done", () => {
  const r = explore(
    litmus([
      `movl $0xffffffff, ${SPLIT}\n hlt`,
      `movl ${SPLIT}, %eax\n hlt`,
    ], (m) => reg(m, 1, "eax")),
  );
  assert.equal(r.complete, true);
  // Old, new, and the lower line's half alone.
  assert.deepEqual([...r.outcomes.keys()].sort(), ["0", "ffff", "ffffffff"]);
});

Deno.test("explore() never sees a line-straddling xchg half done", () => {
  const r = explore(
    litmus([
      `movl $0xffffffff, %eax\n xchgl %eax, ${SPLIT}\n hlt`,
      `movl ${SPLIT}, %eax\n hlt`,
    ], (m) => reg(m, 1, "eax")),
  );
  assert.equal(r.complete, true);
  assert.deepEqual([...r.outcomes.keys()].sort(), ["0", "ffffffff"]);
});

Deno.test("explore() never sees a line-straddling lock add half done", () => {
  const r = explore(
    litmus([
      `movl $0x1ffff, ${SPLIT}\n lock addl $1, ${SPLIT}\n hlt`,
      `movl ${SPLIT}, %eax\n movl ${SPLIT}, %ebx\n hlt`,
    ], (m) => `${reg(m, 1, "eax")},${reg(m, 1, "ebx")}`),
  );
  assert.equal(r.complete, true);
  const seen = new Set([...r.outcomes.keys()].flatMap((k) => k.split(",")));
  // The plain store may show half done (0xffff); 0x1ffff → 0x20000 is one locked step, so
  // its half (0x10000: new lower bytes, old upper ones) never shows.
  assert.ok(seen.has("20000") && seen.has("ffff"), [...seen].join(" "));
  for (const v of seen) assert.ok(["0", "ffff", "1ffff", "20000"].includes(v), `saw ${v}`);
});

Deno.test("explore() with a preemption bound explores fewer schedules but keeps outcomes", () => {
  const setup = litmus([
    `movl $1, ${X}\n movl ${Y}, %eax\n hlt`,
    `movl $1, ${Y}\n movl ${X}, %eax\n hlt`,
  ], (m) => `${reg(m, 0, "eax")}/${reg(m, 1, "eax")}`);
  const b0 = explore(setup, { preemptionBound: 0 });
  const b1 = explore(setup, { preemptionBound: 1 });
  assert.equal(b0.schedules, 2);
  assert.deepEqual([...b0.outcomes.keys()].sort(), ["0/1", "1/0"]);
  assert.ok(b1.schedules > 2 && b1.schedules < 20);
  assert.ok(b1.outcomes.has("1/1"));
});
