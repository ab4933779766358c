// Every precondition of the patching API, on a booted kernel: the refusal is a typed
// error whose message names the address and, where there are bytes involved, the
// expected and found bytes; and after it the machine is exactly as before (state hash of
// memory, registers, queued interrupts, the patcher and the kernel's events).
import assert from "node:assert/strict";
import { hexAddr, hexBytes, PatchError, type TextpokeError } from "../lib/errors.ts";
import { Machine } from "../lib/machine/machine.ts";
import { bootKernel, type Kernel } from "../lib/kernel/kernel.ts";
import { NOP5_64 } from "../lib/kernel/constants.ts";
import { StaticCalls } from "../lib/static_call/static_call.ts";
import { Ftrace } from "../lib/ftrace/ftrace.ts";
import { FtraceOps } from "../lib/ftrace/ops.ts";
import { callInsn, immediateRunner } from "../lib/ftrace/batch.ts";
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
    [hexAddr(mid), "not on an instruction boundary"],
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
    [hexAddr(f.target), "is not on an instruction boundary"],
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

// KNOWN BUG (lib/static_call/static_call.ts, staticCallUpdate): it never checks that the
// key belongs to its table, and writes the key word before anything else, so a foreign
// key is "updated" by writing wherever its keyAddress points. TEXTPOKE_KNOWN_BUGS=1 runs it.
const knownBugs = Deno.env.get("TEXTPOKE_KNOWN_BUGS") === "1";
if (!knownBugs) {
  console.warn(
    "KNOWN BUG (ignored until fixed): staticCallUpdate() accepts a key its table never defined",
  );
}
Deno.test({
  name: "staticCallUpdate() refuses a key this table never defined, changing nothing",
  ignore: !knownBugs,
}, () => {
  const f = fixture();
  const sc = new StaticCalls(f.k);
  sc.defineKey("known", f.target);
  const before = f.hash();
  const run = immediateRunner((a, b) => f.k.textPoke(a, b), (a, n) => f.k.mem.readBytes(a, n));
  // A key object from another kernel's table: its addresses mean nothing here.
  const other = fixture();
  const foreign = new StaticCalls(other.k).defineKey("ghost", other.target);
  refuses(
    () => {
      for (const _ of sc.staticCallUpdate(foreign, f.other, run));
    },
    PatchError,
    ["ghost"],
  );
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
