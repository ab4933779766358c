// Every precondition of the patching API, on a booted kernel: the refusal is a typed
// error whose message names the address and, where there are bytes involved, the
// expected and found bytes; and after it the machine is exactly as before (state hash of
// memory, registers, queued interrupts, the patcher and the kernel's events).
import assert from "node:assert/strict";
import {
  ExperimentError,
  FtraceError,
  hexAddr,
  hexBytes,
  PatchError,
  TextpokeError,
} from "../lib/errors.ts";
import { Machine } from "../lib/machine/machine.ts";
import { bootKernel, type Kernel } from "../lib/kernel/kernel.ts";
import { NOP5_64 } from "../lib/kernel/constants.ts";
import { StaticCalls } from "../lib/static_call/static_call.ts";
import { Ftrace } from "../lib/ftrace/ftrace.ts";
import { FtraceOps } from "../lib/ftrace/ops.ts";
import { callInsn, immediateRunner } from "../lib/ftrace/batch.ts";
import { tracedFunctionSource } from "../lib/ftrace/trampolines.ts";
import { proposal } from "../lib/proposals/proposals.ts";
import { runExperiment } from "../lib/experiments/experiment.ts";
import { stateHash } from "./fuzz/state_hash.ts";

interface Fixture {
  k: Kernel;
  /** `call target` (5 bytes). */
  site: bigint;
  /** A NOP5 right after it. */
  nop: bigint;
  /** `ret` after the NOP5. */
  ret: bigint;
  target: bigint;
  other: bigint;
  hash: () => string;
}

function fixture(): Fixture {
  const k = bootKernel(new Machine({ bitness: 64 }), { entry: "64-gap" });
  const labels = k.loadText(`
target:
	ret
other:
	ret
f:
	call target
nop5:
	.byte 0x0f, 0x1f, 0x44, 0x00, 0x00
tail:
	ret
`);
  // Queue an interrupt so "queued work" is part of what must not change.
  k.machine.cpus[0]!.raiseInterrupt(0x40);
  return {
    k,
    site: labels.get("f")!,
    nop: labels.get("nop5")!,
    ret: labels.get("tail")!,
    target: labels.get("target")!,
    other: labels.get("other")!,
    hash: () =>
      stateHash(k.machine, {
        patcher: k.patcher,
        other: { events: k.events.length, symbols: [...k.symbols] },
      }),
  };
}

/** Asserts `fn` throws `cls` whose message contains every fragment, and returns it. */
function refuses<E extends TextpokeError>(
  fn: () => void,
  cls: new (...a: never[]) => E,
  fragments: string[],
): E {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof cls, `expected ${cls.name}, got ${String(caught)}`);
  for (const f of fragments) {
    assert.ok(caught.message.includes(f), `"${caught.message}" does not name ${f}`);
  }
  return caught;
}

Deno.test("textPokeBp() refuses a 3-byte patch naming the address and the bytes, changing nothing", () => {
  const f = fixture();
  const before = f.hash();
  const bytes = Uint8Array.of(0x90, 0x90, 0x90);
  const e = refuses(
    () => f.k.runPatch(f.k.textPokeBp(f.site, bytes)),
    PatchError,
    [hexAddr(f.site), hexBytes(bytes), "1, 2 or 5 bytes"],
  );
  assert.equal(e.address, f.site);
  assert.equal(f.hash(), before);
});

Deno.test("textPokeBp() refuses an empty and an oversized patch", () => {
  const f = fixture();
  const before = f.hash();
  for (const n of [0, 6, 7, 16]) {
    refuses(
      () => f.k.runPatch(f.k.textPokeBp(f.site, new Uint8Array(n).fill(0x90))),
      PatchError,
      [hexAddr(f.site), `Cannot patch ${n} bytes`],
    );
  }
  assert.equal(f.hash(), before);
});

Deno.test("textPokeBp() refuses an address inside an instruction, changing nothing", () => {
  const f = fixture();
  const before = f.hash();
  const mid = f.site + 1n;
  const e = refuses(
    () => f.k.runPatch(f.k.textPokeBp(mid, callInsn(mid, f.other))),
    PatchError,
    [
      hexAddr(mid),
      "not on an instruction boundary",
      // The instruction it falls inside: where it starts and what is there.
      `inside the instruction at ${hexAddr(f.site)}: ${hexBytes(callInsn(f.site, f.target))}`,
    ],
  );
  assert.equal(e.address, mid);
  assert.equal(f.hash(), before);
});

Deno.test("textPokeBp() refuses a patch whose end falls inside the next instruction", () => {
  const f = fixture();
  const before = f.hash();
  // `target:` is a 1-byte ret followed by `other:`'s ret and the call: 5 bytes from
  // `target` end inside the call.
  const e = refuses(
    () => f.k.runPatch(f.k.textPokeBp(f.target, callInsn(f.target, f.other))),
    PatchError,
    [
      hexAddr(f.target),
      `${hexAddr(f.target + 5n)} is not on an instruction boundary`,
      `inside the instruction at ${hexAddr(f.site)}: ${hexBytes(callInsn(f.site, f.target))}`,
    ],
  );
  assert.equal(e.address, f.target);
  assert.equal(f.hash(), before);
});

Deno.test("textPokeBp() and textPoke() refuse text outside the kernel image, naming the address", () => {
  const f = fixture();
  const before = f.hash();
  const l = f.k.layout;
  const outside = [
    l.dataBase, // kernel data
    l.userText, // user text
    l.textBase + BigInt(l.textSize), // one past the end of text
    l.textAlias, // the writable alias is not text either
  ];
  for (const a of outside) {
    const e = refuses(
      () => f.k.runPatch(f.k.textPokeBp(a, NOP5_64)),
      PatchError,
      [hexAddr(a), "not inside kernel text"],
    );
    assert.equal(e.address, a);
    refuses(() => f.k.textPoke(a, Uint8Array.of(0xcc)), PatchError, [hexAddr(a)]);
  }
  // A patch that starts inside the last loaded code but runs past its end.
  refuses(
    () => f.k.textPoke(f.ret, NOP5_64),
    PatchError,
    [hexAddr(f.ret)],
  );
  assert.equal(f.hash(), before);
});

Deno.test("textPokeBp() refuses stale expected bytes, naming the address, expected and found bytes", () => {
  const f = fixture();
  const before = f.hash();
  const stale = callInsn(f.site, f.other); // what the caller believes is there
  const found = callInsn(f.site, f.target); // what is there
  const e = refuses(
    () => f.k.runPatch(f.k.textPokeBp(f.site, NOP5_64, { old: stale })),
    PatchError,
    [hexAddr(f.site), `expected ${hexBytes(stale)}`, `found ${hexBytes(found)}`],
  );
  assert.equal(e.address, f.site);
  assert.equal(f.hash(), before);
});

Deno.test("textPokeBpBatch() refuses an unsorted batch naming both sites, writing no site", () => {
  const f = fixture();
  const before = f.hash();
  const e = refuses(
    () =>
      f.k.runPatch(f.k.textPokeBpBatch([
        { address: f.nop, bytes: callInsn(f.nop, f.target) },
        { address: f.site, bytes: NOP5_64 },
      ])),
    PatchError,
    ["not sorted", hexAddr(f.site), hexAddr(f.nop)],
  );
  assert.equal(e.address, f.site);
  assert.equal(f.hash(), before);
});

Deno.test("textPokeBpBatch() refuses overlapping and duplicate sites, writing no site", () => {
  const f = fixture();
  const before = f.hash();
  refuses(
    () =>
      f.k.runPatch(f.k.textPokeBpBatch([
        { address: f.site, bytes: NOP5_64 },
        { address: f.site + 2n, bytes: Uint8Array.of(0xcc) },
      ])),
    PatchError,
    ["overlap", hexAddr(f.site + 2n), hexAddr(f.site)],
  );
  refuses(
    () =>
      f.k.runPatch(f.k.textPokeBpBatch([
        { address: f.site, bytes: NOP5_64 },
        { address: f.site, bytes: NOP5_64 },
      ])),
    PatchError,
    [hexAddr(f.site)],
  );
  assert.equal(f.hash(), before);
});

Deno.test("textPokeBpBatch() checks every site before writing: a bad last site leaves the first unwritten", () => {
  const f = fixture();
  const before = f.hash();
  refuses(
    () =>
      f.k.runPatch(f.k.textPokeBpBatch([
        { address: f.site, bytes: NOP5_64 },
        { address: f.nop, bytes: callInsn(f.nop, f.target), old: Uint8Array.of(1, 2, 3, 4, 5) },
      ])),
    PatchError,
    [hexAddr(f.nop), "expected 01 02 03 04 05", `found ${hexBytes(NOP5_64)}`],
  );
  assert.equal(f.hash(), before);
});

Deno.test("textPokeBp() refuses an instruction the int3 handler could not emulate, naming its bytes", () => {
  const f = fixture();
  const before = f.hash();
  const mov = Uint8Array.of(0xb8, 1, 0, 0, 0); // mov $1,%eax
  refuses(
    () => f.k.runPatch(f.k.textPokeBp(f.site, mov)),
    PatchError,
    [hexAddr(f.site), hexBytes(mov)],
  );
  assert.equal(f.hash(), before);
});

Deno.test("textPokeBpBatch() refuses a second batch while one is in flight (text_mutex), changing nothing", () => {
  const f = fixture();
  const first = f.k.textPokeBpBatch([{ address: f.site, bytes: NOP5_64 }]);
  const step = first.next(); // the first int3 store is pending
  assert.equal(step.done, false);
  const before = f.hash();
  refuses(
    () => f.k.runPatch(f.k.textPokeBp(f.nop, callInsn(f.nop, f.target))),
    PatchError,
    ["already in progress"],
  );
  assert.equal(f.hash(), before);
  first.return(undefined);
});

function immediate(k: Kernel): ReturnType<typeof immediateRunner> {
  return immediateRunner((a, b) => k.textPoke(a, b), (a, n) => k.mem.readBytes(a, n));
}

Deno.test("staticCallUpdate() refuses a key this table never defined, changing nothing", () => {
  const f = fixture();
  const sc = new StaticCalls(f.k);
  const known = sc.defineKey("known", f.target);
  const before = f.hash();
  const run = immediate(f.k);
  // A key object from another kernel's table: its addresses mean nothing here. Both
  // kernels have the same layout, so its trampoline address is *inside* this kernel's
  // text (on the trampoline of "known"): the bug patched it silently.
  const other = fixture();
  const foreign = new StaticCalls(other.k).defineKey("ghost", other.target);
  assert.ok(f.k.code.regionOf(foreign.trampoline) !== undefined);
  const e = refuses(
    () => {
      for (const _ of sc.staticCallUpdate(foreign, f.other, run));
    },
    PatchError,
    ["ghost", hexAddr(foreign.trampoline), "not defined by this kernel's static_call table"],
  );
  assert.equal(e.address, foreign.trampoline);
  assert.equal(foreign.func, other.target);
  assert.equal(f.hash(), before);
  // A hand-made key with a known name and a trampoline outside this kernel's text: the
  // bug wrote the key word, then threw "not inside kernel text".
  const forged = { ...known, trampoline: f.k.layout.dataBase, func: known.func };
  refuses(
    () => {
      for (const _ of sc.staticCallUpdate(forged, f.other, run));
    },
    PatchError,
    ["known", hexAddr(f.k.layout.dataBase), "not defined by this kernel's static_call table"],
  );
  assert.equal(forged.func, f.target);
  assert.equal(f.hash(), before);
  // The same refusal for the other entry points that take a key.
  refuses(() => sc.addInlineSite(foreign, f.site), PatchError, ["ghost"]);
  refuses(() => sc.trampolineTarget(foreign), PatchError, ["ghost"]);
  assert.deepEqual(foreign.sites, []);
  assert.equal(f.hash(), before);
  // The table's own key still updates.
  for (const _ of sc.staticCallUpdate(known, f.other, run));
  assert.equal(sc.trampolineTarget(known), f.other);
});

Deno.test("staticCallUpdate() refuses a function out of rel32 range before writing the key word", () => {
  const f = fixture();
  const sc = new StaticCalls(f.k);
  const key = sc.defineKey("far", f.target);
  sc.addInlineSite(key, f.site);
  const before = f.hash();
  const far = 0x1000n; // user space: 2^64 - 2^31 - ... away from kernel text
  refuses(
    () => {
      for (const _ of sc.staticCallUpdate(key, far, immediate(f.k)));
    },
    PatchError,
    [hexAddr(far), hexAddr(key.trampoline), "out of rel32 range"],
  );
  assert.equal(key.func, f.target);
  assert.equal(f.k.mem.readWord(key.keyAddress, 8), f.target);
  assert.equal(f.hash(), before);
});

Deno.test("addInlineSite() refuses a site already recorded, or outside kernel text, changing nothing", () => {
  const f = fixture();
  const sc = new StaticCalls(f.k);
  const a = sc.defineKey("a", f.target);
  const b = sc.defineKey("b", f.other);
  sc.addInlineSite(a, f.site);
  const before = f.hash();
  refuses(() => sc.addInlineSite(a, f.site), PatchError, [
    hexAddr(f.site),
    "already a site of key a",
  ]);
  refuses(() => sc.addInlineSite(b, f.site), PatchError, [
    hexAddr(f.site),
    "already a site of key a",
  ]);
  // Kernel data that happens to hold a NOP5: readable, but not text.
  const data = f.k.allocData(8);
  f.k.mem.writeBytes(data, NOP5_64);
  const withData = f.hash();
  const e = refuses(
    () => sc.addInlineSite(b, data),
    PatchError,
    [hexAddr(data), "key b", "not inside kernel text"],
  );
  assert.equal(e.address, data);
  assert.deepEqual(a.sites, [f.site]);
  assert.deepEqual(b.sites, []);
  assert.equal(f.hash(), withData);
  assert.notEqual(withData, before);
});

Deno.test("defineKey() refuses a bad name, line offset or unreachable function before allocating", () => {
  const f = fixture();
  const sc = new StaticCalls(f.k);
  const before = f.hash();
  refuses(() => sc.defineKey("no spaces", f.target), PatchError, ['"no spaces"', "symbol name"]);
  refuses(
    () => sc.defineKey("off", f.target, { lineOffset: 64 }),
    PatchError,
    ["off", "lineOffset", "64"],
  );
  refuses(() => sc.defineKey("far", 0x1000n), PatchError, ["far", hexAddr(0x1000n), "rel32"]);
  assert.equal(sc.keys.size, 0);
  assert.equal(f.hash(), before);
});

Deno.test("defineKey() refuses a static_call key that already exists, changing nothing", () => {
  const f = fixture();
  const sc = new StaticCalls(f.k);
  sc.defineKey("twice", f.target);
  const before = f.hash();
  refuses(() => sc.defineKey("twice", f.other), PatchError, ["twice", "already exists"]);
  assert.equal(f.hash(), before);
});

function ftraceFixture(): { f: Fixture; ft: Ftrace; run: ReturnType<typeof immediateRunner> } {
  const f = fixture();
  const ft = new Ftrace(f.k);
  f.k.bindNative("work", () => {});
  ft.loadTracedFunctions([{ name: "traced", lineOffset: 0, body: "work" }]);
  ft.init();
  const run = immediateRunner((a, b) => f.k.textPoke(a, b), (a, n) => f.k.mem.readBytes(a, n));
  return { f, ft, run };
}

Deno.test("registerFtraceFunction() refuses an ops registered twice, naming it, changing nothing", () => {
  const { f, ft, run } = ftraceFixture();
  const ops = new FtraceOps("twice", () => {});
  for (const _ of ft.registerFtraceFunction(ops, run));
  const hash = () =>
    stateHash(f.k.machine, { patcher: f.k.patcher, other: ft.ops.map((o) => o.name) });
  const before = hash();
  refuses(
    () => {
      for (const _ of ft.registerFtraceFunction(ops, run));
    },
    PatchError,
    ["twice", "already registered"],
  );
  assert.equal(hash(), before);
});

Deno.test("unregisterFtraceFunction() refuses an ops that is not registered, changing nothing", () => {
  const { f, ft, run } = ftraceFixture();
  const registered = new FtraceOps("on", () => {});
  for (const _ of ft.registerFtraceFunction(registered, run));
  const hash = () =>
    stateHash(f.k.machine, { patcher: f.k.patcher, other: ft.ops.map((o) => o.name) });
  const before = hash();
  const stranger = new FtraceOps("stranger", () => {});
  refuses(
    () => {
      for (const _ of ft.unregisterFtraceFunction(stranger, run));
    },
    PatchError,
    ["stranger", "not registered"],
  );
  assert.equal(hash(), before);
  // Once removed, removing it again is refused too.
  for (const _ of ft.unregisterFtraceFunction(registered, run));
  refuses(
    () => {
      for (const _ of ft.unregisterFtraceFunction(registered, run));
    },
    PatchError,
    ["on", "not registered"],
  );
});

Deno.test("immediateRunner() refuses stale old bytes naming the site, expected and found bytes, writing no site", () => {
  const f = fixture();
  const before = f.hash();
  const stale = callInsn(f.site, f.other); // what the caller believes is there
  const found = callInsn(f.site, f.target); // what is there
  const e = refuses(
    () => {
      for (
        const _ of immediate(f.k)([
          // A good first site: it must stay unwritten when the second one is refused.
          { address: f.nop, old: NOP5_64, new: callInsn(f.nop, f.target), role: "fentry" },
          { address: f.site, old: stale, new: NOP5_64, role: "fentry" },
        ])
      );
    },
    PatchError,
    [hexAddr(f.site), `expected ${hexBytes(stale)}`, `found ${hexBytes(found)}`],
  );
  assert.equal(e.address, f.site);
  assert.equal(f.hash(), before);
});

Deno.test("FtraceOps() and loadTracedFunctions() refuse bad input with FtraceError, changing nothing", () => {
  const { f, ft } = ftraceFixture();
  const hash = () =>
    stateHash(f.k.machine, { patcher: f.k.patcher, other: [...f.k.symbols, ft.sites] });
  const before = hash();
  const e = refuses(() => new FtraceOps("my ops", () => {}), FtraceError, ['"my ops"', "symbol"]);
  assert.ok(e instanceof TextpokeError);
  refuses(() => new FtraceOps("1st", () => {}), FtraceError, ['"1st"']);
  for (const lineOffset of [64, -1, 1.5]) {
    refuses(
      () => tracedFunctionSource({ bitness: 64, name: "t", lineOffset, body: "work" }),
      FtraceError,
      ["Traced function t", "lineOffset", String(lineOffset)],
    );
    refuses(
      () => ft.loadTracedFunctions([{ name: "late", lineOffset, body: "work" }]),
      FtraceError,
      ["late", String(lineOffset)],
    );
  }
  assert.equal(hash(), before);
});

Deno.test("registerFtraceFunction() refuses to run before init(), changing nothing", () => {
  const f = fixture();
  const ft = new Ftrace(f.k);
  f.k.bindNative("work", () => {});
  ft.loadTracedFunctions([{ name: "traced", lineOffset: 0, body: "work" }]);
  const hash = () =>
    stateHash(f.k.machine, {
      patcher: f.k.patcher,
      other: [ft.ops.map((o) => o.name), ft.globalFunc, ft.updateFuncCall, [...f.k.symbols]],
    });
  const before = hash();
  const ops = new FtraceOps("early", () => {});
  refuses(
    () => {
      for (const _ of ft.registerFtraceFunction(ops, immediate(f.k)));
    },
    PatchError,
    ["early", "not initialized"],
  );
  // Before the fix the callers' call sites were already patched to the list function and
  // the ops was on the list when the refusal came.
  assert.equal(ft.callTarget(ft.caller.callSite), ft.stub);
  assert.equal(ops.address, 0n);
  assert.equal(hash(), before);
});

Deno.test("registerFtraceFunction() refuses an ops set up by another kernel, or a second ops of the same name", () => {
  const { f, ft, run } = ftraceFixture();
  const other = ftraceFixture();
  const theirs = new FtraceOps("theirs", () => {});
  for (const _ of other.ft.registerFtraceFunction(theirs, other.run));
  for (const _ of other.ft.unregisterFtraceFunction(theirs, other.run));
  const mine = new FtraceOps("mine", () => {});
  for (const _ of ft.registerFtraceFunction(mine, run));
  for (const _ of ft.unregisterFtraceFunction(mine, run));
  const hash = () =>
    stateHash(f.k.machine, {
      patcher: f.k.patcher,
      other: [ft.ops.map((o) => o.name), ft.globalFunc, [...f.k.symbols]],
    });
  const before = hash();
  refuses(
    () => {
      for (const _ of ft.registerFtraceFunction(theirs, run));
    },
    PatchError,
    ["theirs", hexAddr(theirs.address), "another kernel"],
  );
  // Its callback symbol would be rebound to the newcomer: the first ops' hits would go to it.
  refuses(
    () => {
      for (const _ of ft.registerFtraceFunction(new FtraceOps("mine", () => {}), run));
    },
    PatchError,
    ["mine", "Another ftrace_ops"],
  );
  assert.equal(hash(), before);
  // The ops this ftrace set up registers again.
  for (const _ of ft.registerFtraceFunction(mine, run));
  assert.deepEqual(ft.ops, [mine]);
});

Deno.test("proposal() and runExperiment() refuse bad input with ExperimentError naming the value", () => {
  const e = refuses(() => proposal("nope"), ExperimentError, ['"nope"', "gap-saved-target"]);
  assert.ok(e instanceof TextpokeError);
  refuses(
    () => runExperiment({ scenario: "ftrace-transition", proposal: "nop-skip", cpus: 1 }),
    ExperimentError,
    ["cpus", "2..64", "1"],
  );
  refuses(
    () => runExperiment({ scenario: "ftrace-transition", proposal: "nope" }),
    ExperimentError,
    ['"nope"'],
  );
  refuses(
    () => runExperiment({ scenario: "nope" as "ftrace-transition", proposal: "nop-skip" }),
    ExperimentError,
    ['"nope"', "ftrace-transition"],
  );
});
