/**
 * Tests of the SMP layer (lib/machine/smp.ts) on a toy host: a byte-code CPU with a
 * predecoded cache, so interleaving, IPIs, NMIs, kernel threads, split stores and the
 * fetch model are tested independently of the x86 executor.
 *
 * Toy ISA (one byte each unless noted): 90 nop, f4 hlt, fa cli, fb sti, cf iret,
 * a2 cpuid (serializes), 4x inc counter x, eb rel8 jmp (2 bytes), e8 a b (3 bytes:
 * "call" recording the 16-bit target a | b << 8 into calls[]), 06 (#UD: invalid).
 */
import assert from "node:assert/strict";
import { type FetchMode, Smp, type SmpHost, StepStatus } from "../lib/machine/smp.ts";
import { random, roundRobin, scripted } from "../lib/machine/schedule.ts";
import { Trace } from "../lib/machine/trace.ts";
import { MachineError } from "../lib/errors.ts";

class ToyHost implements SmpHost {
  readonly cpuCount: number;
  readonly bitness = 64 as const;
  readonly mem = new Uint8Array(4096);
  readonly ips: number[];
  readonly ifl: boolean[];
  readonly halted: boolean[];
  readonly irq: number[][];
  readonly stacks: number[][];
  readonly cache: Map<number, Uint8Array>[];
  readonly counters: number[][];
  readonly calls: number[][];
  readonly idt = new Map<number, number>();
  smp!: Smp;

  constructor(n: number) {
    this.cpuCount = n;
    this.ips = new Array(n).fill(0);
    this.ifl = new Array(n).fill(true);
    this.halted = new Array(n).fill(false);
    this.irq = Array.from({ length: n }, () => []);
    this.stacks = Array.from({ length: n }, () => []);
    this.cache = Array.from({ length: n }, () => new Map());
    this.counters = Array.from({ length: n }, () => new Array(16).fill(0));
    this.calls = Array.from({ length: n }, () => []);
  }

  load(at: number, bytes: number[]): void {
    this.mem.set(bytes, at);
  }

  #fetch(c: number): Uint8Array {
    const ip = this.ips[c]!;
    let e = this.cache[c]!.get(ip);
    if (!e) {
      const v = this.smp.fetchView(c, ip, this.mem, ip);
      e = (v ?? this.mem.subarray(ip)).slice(0, 3);
      this.cache[c]!.set(ip, e);
    }
    return e;
  }

  #deliver(c: number, vector: number): number {
    const h = this.idt.get(vector);
    if (h === undefined) return StepStatus.STOPPED;
    this.smp.noteException(c, vector, this.ips[c]!);
    this.stacks[c]!.push(this.ips[c]!);
    this.ifl[c] = false;
    this.halted[c] = false;
    this.ips[c] = h;
    return StepStatus.RAN;
  }

  stepCpu(c: number): number {
    if (this.irq[c]!.length > 0 && this.ifl[c]) return this.#deliver(c, this.irq[c]!.shift()!);
    const b = this.#fetch(c);
    const ip = this.ips[c]!;
    const op = b[0]!;
    this.ips[c] = ip + 1;
    if ((op & 0xf0) === 0x40) this.counters[c]![op & 15]!++;
    else if (op === 0x90) { /* nop */ }
    else if (op === 0xf4) {
      this.halted[c] = true;
      return StepStatus.HALTED;
    } else if (op === 0xfa) this.ifl[c] = false;
    else if (op === 0xfb) this.ifl[c] = true;
    else if (op === 0xa2) this.smp.serialize(c, 2);
    else if (op === 0xcf) {
      const back = this.stacks[c]!.pop()!;
      this.ifl[c] = true;
      this.ips[c] = back;
      this.smp.noteIret(c, back);
    } else if (op === 0xeb) this.ips[c] = ip + 2 + ((b[1]! << 24) >> 24);
    else if (op === 0xe8) {
      this.calls[c]!.push(b[1]! | (b[2]! << 8));
      this.ips[c] = ip + 3;
    } else {
      this.ips[c] = ip;
      return StepStatus.STOPPED;
    }
    return StepStatus.RAN;
  }
  stopMessage(c: number): string {
    return `CPU ${c} stopped`;
  }
  raiseInterrupt(c: number, vector: number): void {
    this.irq[c]!.push(vector);
  }
  deliverNmi(c: number): number {
    return this.#deliver(c, 2);
  }
  interruptsEnabled(c: number): boolean {
    return this.ifl[c]!;
  }
  isHalted(c: number): boolean {
    return this.halted[c]!;
  }
  ip(c: number): number {
    return this.ips[c]!;
  }
  invalidateCode(c: number, phys: number, length: number): void {
    for (const k of [...this.cache[c]!.keys()]) {
      if (k < phys + length && k + 3 > phys) this.cache[c]!.delete(k);
    }
  }
  readPhys(phys: number, length: number): Uint8Array {
    return this.mem.slice(phys, phys + length);
  }
  readBytes(address: number, length: number): Uint8Array {
    return this.mem.slice(address, address + length);
  }
  writeBytes(c: number, address: number, bytes: Uint8Array): void {
    // The toy's memory is one code frame: every store is reported, before it lands.
    this.smp.noteCodeStore(c, address, bytes.length);
    this.mem.set(bytes, address);
  }
}

function toy(n: number, fetch: FetchMode = "coherent", schedule = roundRobin(1)) {
  const host = new ToyHost(n);
  const smp = new Smp(host, { fetch, schedule, trace: new Trace(256) });
  host.smp = smp;
  return { host, smp };
}

Deno.test("Smp refuses a CPU count outside 1..64 and a missing CPU", () => {
  assert.throws(() => new Smp(new ToyHost(0)), MachineError);
  assert.throws(() => new Smp(new ToyHost(65)), /1\.\.64/);
  const { smp } = toy(2);
  assert.throws(() => smp.sendIpi(0, 2, 0xf0), /CPU 2 does not exist/);
  assert.throws(() => smp.sendNmi(0, -5), MachineError);
  assert.throws(() => smp.spawn(7, function* () {}), MachineError);
  assert.throws(() => smp.sendIpi(0, 1, 3), /32\.\.255/);
});

Deno.test("Smp.run() stops with 'halted' when every CPU halts", () => {
  const { host, smp } = toy(2);
  host.load(0, [0x40, 0x40, 0xf4]);
  const r = smp.run(1000);
  assert.equal(r.reason, "halted");
  assert.equal(r.steps, 6);
  assert.deepEqual(host.counters.map((c) => c[0]), [2, 2]);
});

Deno.test("Smp.run() stops at the step budget", () => {
  const { host, smp } = toy(2);
  host.load(0, [0xeb, 0xfe]);
  const r = smp.run(500);
  assert.equal(r.reason, "budget");
  assert.equal(r.steps, 500);
});

Deno.test("Smp takes an IPI only when IF=1 and holds it pending while IF=0", () => {
  const { host, smp } = toy(2, "coherent", scripted([1, 1, 1, 1]));
  // CPU 1: cli; inc x0; sti; inc x1; hlt.  IPI handler at 0x100: inc x5; iret.
  host.load(0, [0xfa, 0x40, 0xfb, 0x41, 0xf4]);
  host.load(0x100, [0x45, 0xcf]);
  host.idt.set(0xf0, 0x100);
  host.ips[0] = 0x200;
  host.load(0x200, [0xf4]);
  smp.run(1); // cpu1: cli
  smp.sendIpi(0, 1, 0xf0);
  smp.run(1); // cpu1: inc x0 (IF=0: IPI waits)
  assert.equal(host.counters[1]![5], 0);
  smp.run(1); // sti
  smp.run(1); // takes the IPI at this boundary instead of inc x1
  assert.equal(host.ips[1], 0x100);
  const r = smp.run(100);
  assert.equal(r.reason, "halted");
  assert.equal(host.counters[1]![5], 1);
  assert.equal(host.counters[1]![1], 1);
  const kinds = smp.trace.records(1).map((x) => x.kind);
  assert.ok(kinds.includes("ipi-taken") && kinds.includes("exception-exit"));
});

Deno.test("Smp delivers an NMI with IF=0 and blocks a second one until iret", () => {
  const { host, smp } = toy(1);
  host.load(0, [0xfa, 0x40, 0x40, 0x40, 0x40, 0xf4]);
  host.load(0x100, [0x45, 0x45, 0x45, 0xcf]);
  host.idt.set(2, 0x100);
  smp.run(1); // cli
  smp.sendNmi(-1, 0);
  smp.run(1); // NMI taken although IF=0
  assert.equal(host.ips[0], 0x100);
  smp.sendNmi(-1, 0); // latched: the handler is running
  smp.run(2);
  assert.equal(host.ips[0], 0x102, "a nested NMI interrupted the NMI handler");
  smp.run(2); // inc, iret → the latched NMI comes right after the iret
  smp.run(1);
  assert.equal(host.ips[0], 0x100, "the latched NMI was not delivered after iret");
  assert.equal(host.stacks[0]!.length, 1);
});

Deno.test("Smp.spawn() runs a kernel thread between other CPUs' instructions", () => {
  const { host, smp } = toy(2, "coherent", roundRobin(1));
  host.load(0, [0x40, 0x40, 0x40, 0x40, 0xf4]);
  const seen: number[] = [];
  const t = smp.spawn(0, function* (k) {
    for (let i = 0; i < 3; i++) {
      seen.push(host.counters[1]![0]!);
      yield* k.step();
    }
  });
  const r = smp.run(100);
  assert.equal(r.reason, "halted");
  assert.equal(t.done, true);
  // Round robin: CPU 1 retired one instruction between each thread step.
  assert.deepEqual(seen, [0, 1, 2]);
});

Deno.test("KernelContext.onEachCpu() runs fn on every CPU, the sender included, and waits", () => {
  const { host, smp } = toy(3, "coherent", random(11));
  host.load(0, [0x40, 0xeb, 0xfd]); // loop: inc x0; jmp loop
  const ran: number[] = [];
  let after = -1;
  smp.spawn(0, function* (k) {
    yield* k.onEachCpu((c) => ran.push(c), true);
    after = ran.length;
  });
  const r = smp.run(200);
  assert.equal(r.reason, "budget");
  assert.deepEqual([...ran].sort(), [0, 1, 2]);
  assert.equal(after, 3, "the thread went on before every CPU ran fn");
});

Deno.test("Smp.run() reports a deadlock when every CPU waits, never hangs", () => {
  const { host, smp } = toy(2, "coherent", scripted([1, 1]));
  host.ips[1] = 0x10;
  host.load(0x10, [0xfa, 0xf4]); // CPU 1: cli; hlt — can never take the IPI
  smp.spawn(0, function* (k) {
    yield* k.onEachCpu(() => {}, true);
  });
  const r = smp.run(1_000_000);
  assert.equal(r.reason, "deadlock");
  assert.match(r.message, /CPU 0 waits for on_each_cpu completion/);
  assert.ok(r.steps < 20);
  // Two threads waiting for each other.
  const b = toy(2);
  let f0 = false, f1 = false;
  b.smp.spawn(0, function* (k) {
    yield* k.waitUntil(() => f1, "flag 1");
    f0 = true;
  });
  b.smp.spawn(1, function* (k) {
    yield* k.waitUntil(() => f0, "flag 0");
    f1 = true;
  });
  assert.equal(b.smp.run(100).reason, "deadlock");
});

Deno.test("KernelContext.store() splits a line-straddling store, xchg never does", () => {
  const observe = (locked: boolean) => {
    const seen = new Set<string>();
    for (let seed = 0; seed < 40; seed++) {
      const { host, smp } = toy(2, "coherent", random(seed));
      host.ips[1] = 0x10;
      host.load(0x10, [0x90, 0x90, 0x90, 0xf4]);
      smp.spawn(0, function* (k) {
        if (locked) yield* k.xchg(0x3e, [1, 1, 1, 1]);
        else yield* k.store(0x3e, [1, 1, 1, 1]);
      });
      // Observe memory after each step of CPU 1 (as CPU 1's loads would).
      while (smp.run(1).reason === "budget") seen.add(hexOf(host.mem, 0x3e, 4));
    }
    return seen;
  };
  const plain = observe(false);
  assert.ok(plain.has("01010000"), `never saw half a store: ${[...plain]}`);
  const locked = observe(true);
  assert.deepEqual([...locked].filter((s) => s !== "00000000" && s !== "01010101"), []);
});

function hexOf(m: Uint8Array, at: number, n: number): string {
  return [...m.slice(at, at + n)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * CPU 1 loops over `e8 01 00` (a call to 1), CPU 0's thread rewrites it to `e8 02 02`
 * with one 3-byte store. Returns the targets CPU 1 called.
 */
function patchRace(fetch: FetchMode, seed: number, syncAfter: boolean) {
  const { host, smp } = toy(2, fetch, random(seed));
  host.ips[1] = 0x20;
  host.load(0x20, [0xe8, 0x01, 0x00, 0x40, 0xeb, 0xfa]); // call 1; inc; jmp 0x20
  host.load(0x100, [0xcf]); // IPI/iret
  host.idt.set(0xf0, 0x100);
  let synced = -1;
  smp.spawn(0, function* (k) {
    for (let i = 0; i < 3; i++) yield* k.step();
    yield* k.store(0x21, [0x02, 0x02]);
    if (syncAfter) {
      yield* k.onEachCpu((c) => {
        smp.serialize(c, 4);
        if (c === 1) synced = host.calls[1]!.length;
      }, true);
    }
  });
  smp.run(300);
  return { calls: host.calls[1]!, synced };
}

Deno.test("coherent fetch: every call after the store goes to the new target, never a mix", () => {
  for (let seed = 0; seed < 30; seed++) {
    const { calls } = patchRace("coherent", seed, false);
    const i = calls.indexOf(0x202);
    assert.ok(i > 0, `seed ${seed}: new target never called`);
    assert.ok(calls.slice(0, i).every((t) => t === 1));
    assert.ok(calls.slice(i).every((t) => t === 0x202), `seed ${seed}: ${calls}`);
  }
});

Deno.test("stale fetch: a CPU runs the old call until it serializes, then the new one", () => {
  for (let seed = 0; seed < 20; seed++) {
    const { calls, synced } = patchRace("stale", seed, true);
    // Without serialization, CPU 1 keeps calling the old target...
    assert.ok(calls.slice(0, synced).every((t) => t === 1), `seed ${seed}: ${calls}`);
    // ...and after the IPI-driven sync_core only the new one.
    assert.ok(calls.length > synced + 2);
    assert.ok(calls.slice(synced).every((t) => t === 0x202), `seed ${seed}: ${calls}`);
  }
  // Without the sync, it never sees the new bytes.
  const { calls } = patchRace("stale", 3, false);
  assert.ok(calls.length > 20 && calls.every((t) => t === 1));
});

Deno.test("torn fetch: some seeds call a target that is neither old nor new", () => {
  let mixed = 0;
  for (let seed = 0; seed < 30; seed++) {
    const { calls } = patchRace("torn", seed, false);
    if (calls.some((t) => t !== 1 && t !== 0x202)) mixed++;
  }
  assert.ok(mixed > 0, "no seed tore the call");
});

Deno.test("Smp with one seed gives one trace hash; another seed another", () => {
  const run = (seed: number) => {
    const { host, smp } = toy(4, "torn", random(seed));
    host.load(0, [0x40, 0x41, 0x90, 0xeb, 0xfb]);
    smp.spawn(2, function* (k) {
      for (let i = 0; i < 50; i++) yield* k.store(0x2, [i & 1 ? 0x42 : 0x90]);
    });
    smp.run(5000);
    return smp.trace.hash();
  };
  assert.equal(run(1), run(1));
  assert.notEqual(run(1), run(2));
});

Deno.test("Smp.noteCodeStore(): a CPU always sees its own code stores, even with other stores pending", () => {
  for (const fetch of ["stale", "torn"] as const) {
    for (let seed = 0; seed < 10; seed++) {
      const { host, smp } = toy(2, fetch, random(seed));
      host.ips[0] = 0x100;
      host.load(0x100, [0xeb, 0xfe]); // CPU 0 spins
      host.ips[1] = 0x20;
      host.load(0x20, [0x40, 0xeb, 0xfd]); // loop: inc x0; jmp loop
      smp.run(20);
      host.writeBytes(0, 0x20, Uint8Array.of(0x41)); // CPU 0's store: pending on CPU 1
      host.writeBytes(1, 0x20, Uint8Array.of(0x42)); // CPU 1's own store over it
      const before = [...host.counters[1]!];
      smp.run(200);
      assert.equal(host.counters[1]![0], before[0], `${fetch} seed ${seed}: ran the old byte`);
      assert.equal(host.counters[1]![1], before[1], `${fetch} seed ${seed}: ran CPU 0's byte`);
      assert.ok(host.counters[1]![2]! > 10);
    }
  }
});

Deno.test("Smp.step() takes one scheduling step at a time and reports the end", () => {
  const { host, smp } = toy(2);
  host.load(0, [0x40, 0xf4]);
  const results: (string | null)[] = [];
  for (let i = 0; i < 5; i++) results.push(smp.step()?.reason ?? null);
  assert.deepEqual(results, [null, null, null, null, "halted"]);
  assert.equal(smp.steps, 4);
  assert.deepEqual(host.counters.map((c) => c[0]), [1, 1]);
});
