// Resource limits: memory size, CPU count, step budget, trace buffer size. Each has a
// default, an option, and a clear typed error when exceeded; a refused request leaves
// the machine exactly as it was (state hash).
import assert from "node:assert/strict";
import { MachineError, MemoryError } from "../lib/errors.ts";
import { Machine } from "../lib/machine/machine.ts";
import { DEFAULT_MEMORY_LIMIT, Memory, PAGE_SIZE } from "../lib/machine/memory.ts";
import { attachSmp } from "../lib/machine/smp_machine.ts";
import { Trace } from "../lib/machine/trace.ts";
import { stateHash } from "./fuzz/state_hash.ts";

// ---------------------------------------------------------------------------------------
// Memory size

Deno.test("Memory defaults to a 256 MiB frame budget and takes another through memoryLimit", () => {
  assert.equal(DEFAULT_MEMORY_LIMIT, 256 * 1024 * 1024);
  assert.equal(new Machine({ bitness: 64 }).memory.limit, DEFAULT_MEMORY_LIMIT);
  assert.equal(new Machine({ bitness: 32, memoryLimit: 1 << 20 }).memory.limit, 1 << 20);
});

Deno.test("Machine.map() refuses to go over memoryLimit, names the limit and address, maps nothing", () => {
  const m = new Machine({ bitness: 64, memoryLimit: 4 * PAGE_SIZE });
  m.map(0x1000n, 2 * PAGE_SIZE, "rw");
  m.write64(0x1000n, 0x1122334455667788n);
  const before = stateHash(m);
  assert.throws(
    () => m.map(0x10000n, 3 * PAGE_SIZE, "rw"),
    (e: unknown) =>
      e instanceof MachineError && /Memory limit of 16384 bytes exceeded/.test(e.message) &&
      e.message.includes("0x10000") && e.message.includes("3 pages"),
  );
  assert.equal(stateHash(m), before, "a refused map leaves no page behind");
  assert.equal(m.memory.usedBytes, 2 * PAGE_SIZE);
  m.map(0x10000n, 2 * PAGE_SIZE, "rw"); // exactly the limit is fine
  assert.equal(m.memory.usedBytes, 4 * PAGE_SIZE);
});

Deno.test("Machine.load() over memoryLimit throws MachineError and maps or writes nothing", () => {
  const m = new Machine({ bitness: 32, memoryLimit: 2 * PAGE_SIZE });
  m.load(0x1000n, [0x90, 0x90], "rx");
  const before = stateHash(m);
  assert.throws(
    () => m.load(0x8000n, new Uint8Array(2 * PAGE_SIZE).fill(0xcc), "rwx"),
    (e: unknown) =>
      e instanceof MachineError &&
      /Memory limit of 8192 bytes exceeded: loading 8192 bytes at 0x8000 maps 2 new pages/
        .test(e.message),
  );
  assert.equal(stateHash(m), before);
});

Deno.test("Memory refuses a limit below one page or not an integer", () => {
  for (const bad of [0, 100, PAGE_SIZE - 1, 1.5, NaN, Infinity]) {
    assert.throws(
      () => new Machine({ bitness: 64, memoryLimit: bad }),
      (e: unknown) =>
        e instanceof MachineError && e.message.includes(`at least ${PAGE_SIZE} bytes, not ${bad}`),
      String(bad),
    );
  }
  assert.throws(() => new Memory(64, -1), MachineError);
});

Deno.test("Memory refuses ranges that leave the address space with a MemoryError naming the address", () => {
  const m32 = new Machine({ bitness: 32 });
  assert.throws(
    () => m32.map(0xfffff000n, 2 * PAGE_SIZE, "rw"),
    (e: unknown) =>
      e instanceof MemoryError && e.address === 0xfffff000n && /leaves/.test(e.message),
  );
  assert.throws(() => m32.map(0x100000000n, PAGE_SIZE, "rw"), MemoryError);
  const m64 = new Machine({ bitness: 64 });
  assert.throws(
    () => m64.map(0x0000800000000000n, PAGE_SIZE, "rw"),
    (e: unknown) => e instanceof MemoryError && /not canonical/.test(e.message),
  );
  assert.throws(() => m64.map(0x7ffffffff000n, 2 * PAGE_SIZE, "rw"), MemoryError);
  assert.throws(() => m64.map(0x1000n, 0, "rw"), MemoryError);
  // The top page plus one more would wrap past 2^64 to 0x0: refused, naming the address.
  assert.throws(
    () => m64.map(0xfffffffffffff000n, 2 * PAGE_SIZE, "rw"),
    (e: unknown) =>
      e instanceof MemoryError && e.message.includes("0xfffffffffffff000 + 8192 leaves"),
  );
  m64.map(0xfffffffffffff000n, PAGE_SIZE, "rw"); // the top page alone is fine
  assert.equal(m64.memory.pages.size, 1);
});

Deno.test("Machine host reads and writes of unmapped memory throw MemoryError, not a host TypeError", () => {
  const m = new Machine({ bitness: 64 });
  m.map(0x1000n, PAGE_SIZE, "rw");
  const before = stateHash(m);
  assert.throws(() => m.read64(0x1ffcn), MemoryError, "a read running off the page");
  assert.throws(() => m.writeBytes(0x1ff0n, new Uint8Array(32)), MemoryError);
  assert.throws(() => m.read8(0xffffffffffffffffn + 1n), MemoryError);
  assert.equal(stateHash(m), before, "a refused write writes nothing, not even its first part");
});

// ---------------------------------------------------------------------------------------
// CPU count

Deno.test("Machine has 1 CPU by default, up to 64 through cpus, and names a bad count", () => {
  assert.equal(new Machine({ bitness: 64 }).cpus.length, 1);
  assert.equal(new Machine({ bitness: 64, cpus: 64 }).cpus.length, 64);
  for (const bad of [0, -1, 65, 1.5, NaN]) {
    assert.throws(
      () => new Machine({ bitness: 64, cpus: bad }),
      (e: unknown) =>
        e instanceof MachineError && e.message === `A machine has 1 to 64 CPUs, not ${bad}`,
    );
  }
});

Deno.test("Machine.run() and stepCpu() refuse a CPU that does not exist", () => {
  const m = new Machine({ bitness: 32, cpus: 2 });
  assert.throws(
    () => m.run({ cpu: 2 }),
    (e: unknown) =>
      e instanceof MachineError && /CPU 2 does not exist \(the machine has 2\)/.test(e.message),
  );
  assert.throws(() => m.stepCpu(-1), MachineError);
  assert.throws(() => m.stepCpu(0.5), MachineError);
});

// ---------------------------------------------------------------------------------------
// Step budget

Deno.test("Machine.run() stops an endless loop at the default or given step budget", () => {
  const m = new Machine({ bitness: 64, stepBudget: 500 });
  m.load(0x1000n, [0xeb, 0xfe], "rx"); // jmp .
  m.cpus[0]!.rip = 0x1000n;
  assert.equal(new Machine({ bitness: 64 }).stepBudget, 10_000_000);
  const stop = m.run();
  assert.equal(stop.kind, "budget");
  assert.equal(stop.steps, 500);
  assert.equal(stop.message, "Step budget of 500 exhausted; CPU 0 at 0x1000");
  const short = m.run({ maxSteps: 7 });
  assert.deepEqual([short.kind, short.steps], ["budget", 7]);
  assert.equal(m.run({ maxSteps: 0 }).steps, 0);
});

Deno.test("Machine refuses a step budget that is not a positive safe integer", () => {
  for (const bad of [0, -1, 1.5, NaN, Infinity, 2 ** 53]) {
    assert.throws(
      () => new Machine({ bitness: 64, stepBudget: bad }),
      (e: unknown) =>
        e instanceof MachineError &&
        e.message === `Step budget must be a positive integer, not ${bad}`,
    );
  }
  const m = new Machine({ bitness: 64 });
  for (const bad of [-1, 0.5, NaN, Infinity]) {
    assert.throws(
      () => m.run({ maxSteps: bad }),
      (e: unknown) => e instanceof MachineError && e.message.includes(`not ${bad}`),
    );
  }
});

Deno.test("Smp.run() stops at its step budget and refuses a bad one", () => {
  const m = new Machine({ bitness: 32, cpus: 3 });
  m.load(0x1000n, [0xeb, 0xfe], "rx");
  for (const c of m.cpus) c.rip = 0x1000n;
  const smp = attachSmp(m);
  const r = smp.run(300);
  assert.equal(r.reason, "budget");
  assert.equal(r.steps, 300);
  assert.throws(
    () => smp.run(-5),
    (e: unknown) => e instanceof MachineError && e.message.includes("got -5"),
  );
});

// ---------------------------------------------------------------------------------------
// Trace buffer size

Deno.test("Cpu.enableTrace() keeps the last 4096 records by default, or the capacity given", () => {
  const m = new Machine({ bitness: 64 });
  m.load(0x1000n, [0xeb, 0xfe], "rx");
  const cpu = m.cpus[0]!;
  cpu.rip = 0x1000n;
  cpu.enableTrace();
  m.run({ maxSteps: 5000 });
  assert.equal(cpu.traceRecords().length, 4096);
  cpu.enableTrace(3);
  m.run({ maxSteps: 10 });
  assert.equal(cpu.traceRecords().length, 3);
  for (const bad of [0, -1, 1.5, NaN, 2 ** 24 + 1, 2 ** 30]) {
    assert.throws(
      () => cpu.enableTrace(bad),
      (e: unknown) =>
        e instanceof MachineError &&
        e.message === `Trace capacity must be an integer in 1..16777216, not ${bad}`,
    );
  }
  // A refused size leaves the ring as it was.
  assert.equal(cpu.traceRecords().length, 3);
});

Deno.test("Trace keeps no ring by default (hash only), a capacity up to 2^24, and names a bad one", () => {
  assert.equal(new Trace().capacity, 0);
  assert.equal(new Trace(16).capacity, 16);
  for (const bad of [-1, 1.5, (1 << 24) + 1]) {
    assert.throws(
      () => new Trace(bad),
      (e: unknown) =>
        e instanceof MachineError &&
        e.message === `Trace capacity must be an integer in 0..16777216, got ${bad}`,
    );
  }
  const m = new Machine({ bitness: 64, cpus: 2 });
  assert.throws(() => attachSmp(m, { traceCapacity: -1 }), MachineError);
  assert.equal(attachSmp(m, { traceCapacity: 8 }).trace.capacity, 8);
});

Deno.test("Trace ring holds at most its capacity while the hash covers every event", () => {
  const m = new Machine({ bitness: 64, cpus: 2 });
  m.load(0x1000n, [0x90, 0xeb, 0xfd], "rx"); // nop; jmp back
  for (const c of m.cpus) c.rip = 0x1000n;
  const smp = attachSmp(m, { traceCapacity: 5 });
  smp.run(100);
  assert.equal(smp.trace.records().length, 5);
  assert.ok(smp.trace.events >= 100, `${smp.trace.events} events hashed`);
});
