import assert from "node:assert/strict";
import { DEMO_DEFAULTS, parseDemoArgs, runDemo, UsageError } from "../lib/cli.ts";
import { formatTable, verdict } from "../lib/experiments/report.ts";
import { ARCHES, SCENARIOS } from "../lib/experiments/experiment.ts";
import { PROPOSALS } from "../lib/proposals/proposals.ts";
import {
  lz4LegacyPayload,
  syntheticBzImage,
  syntheticSystemMap,
  syntheticVmlinux,
} from "./_synthetic_kernel.ts";

const ROOT = new URL("../", import.meta.url);

function demo(args: string[]): { code: number; stdout: string; stderr: string; ms: number } {
  const t0 = performance.now();
  const out = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "lib/cli.ts", ...args],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).outputSync();
  const dec = new TextDecoder();
  return {
    code: out.code,
    stdout: dec.decode(out.stdout),
    stderr: dec.decode(out.stderr),
    ms: performance.now() - t0,
  };
}

Deno.test("parseDemoArgs() defaults to everything, 4 CPUs, torn, a fixed seed", () => {
  const a = parseDemoArgs([]);
  assert.deepEqual(a.proposals, PROPOSALS);
  assert.deepEqual(a.scenarios, SCENARIOS);
  assert.deepEqual(a.arches, ARCHES);
  assert.equal(a.cpus, 4);
  assert.equal(a.mode, "torn");
  assert.equal(a.seed, DEMO_DEFAULTS.seed);
  assert.equal(a.transitions, undefined);
  assert.equal(a.json, false);
});

Deno.test("parseDemoArgs() narrows with repeatable flags and reads numbers", () => {
  const a = parseDemoArgs([
    "--proposal",
    "gap-plain-offset",
    "--proposal",
    "nop-skip",
    "--scenario",
    "static-call-update",
    "--arch",
    "x86-32",
    "--mode",
    "stale",
    "--cpus",
    "3",
    "--seed",
    "9",
    "--transitions",
    "5",
    "--json",
  ]);
  assert.deepEqual(a.proposals, ["nop-skip", "gap-plain-offset"]);
  assert.deepEqual(a.scenarios, ["static-call-update"]);
  assert.deepEqual(a.arches, ["x86-32"]);
  assert.deepEqual([a.mode, a.cpus, a.seed, a.transitions, a.json], ["stale", 3, 9, 5, true]);
});

Deno.test("parseDemoArgs() rejects unknown flags and bad values with a UsageError", () => {
  for (
    const argv of [
      ["--bogus"],
      ["--proposal", "nope"],
      ["--scenario", "x"],
      ["--arch", "arm64"],
      ["--mode", "weak"],
      ["--cpus", "1"],
      ["--cpus", "four"],
      ["--seed", "-1"],
      ["--transitions", "1.5"],
      ["extra"],
    ]
  ) {
    assert.throws(() => parseDemoArgs(argv), UsageError, argv.join(" "));
  }
});

Deno.test("formatTable() prints proposals down, figures across and one verdict each", () => {
  const args = parseDemoArgs([
    "--proposal",
    "nop-skip",
    "--proposal",
    "gap-regs-caller",
    "--arch",
    "x86-64",
    "--transitions",
    "6",
  ]);
  const records = runDemo(args);
  assert.equal(records.length, 6);
  const text = formatTable(records);
  const lines = text.trimEnd().split("\n");
  assert.match(
    lines[0]!,
    /^proposal\s+scenario\s+arch\s+entry\s+executions\s+old\s+new\s+skipped\s+other\s+crashed$/,
  );
  assert.equal(lines.filter((l) => l.startsWith("  => ")).length, 2);
  assert.ok(lines.some((l) => l.startsWith("nop-skip ")));
  assert.match(text, /=> misses calls/);
  assert.match(text, /n\/a/);
  assert.match(
    verdict(records.filter((r) => r.proposal === "gap-regs-caller")),
    /never skips, but/,
  );
});

Deno.test("the demo CLI exits with code 2 and the usage on a bad flag", () => {
  const r = demo(["--bogus"]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /Usage: deno task demo/);
  assert.equal(r.stdout, "");
  const s = demo(["--cpus", "0"]);
  assert.equal(s.code, 2);
  assert.match(s.stderr, /--cpus must be in 2..64/);
});

Deno.test("the demo CLI prints the records as JSON with --json", () => {
  const r = demo([
    "--json",
    "--proposal",
    "gap-atomic-offset",
    "--scenario",
    "ftrace-transition",
    "--transitions",
    "4",
  ]);
  assert.equal(r.code, 0, r.stderr);
  const records = JSON.parse(r.stdout);
  assert.equal(records.length, 2);
  for (const rec of records) {
    for (
      const k of [
        "scenario",
        "proposal",
        "push",
        "target",
        "arch",
        "mode",
        "cpus",
        "seed",
        "executions",
        "old",
        "new",
        "skipped",
        "other",
        "crashed",
      ]
    ) assert.ok(k in rec, k);
    assert.equal(rec.proposal, "gap-atomic-offset");
    assert.equal(rec.skipped + rec.other + rec.crashed, 0);
  }
  assert.match(r.stderr, /\[#+\] 2\/2 done/);
});

Deno.test("the demo CLI runs every proposal, scenario and arch with the defaults in under 60 s", () => {
  const r = demo([]);
  assert.equal(r.code, 0, r.stderr);
  assert.ok(r.ms < 60_000, `${r.ms} ms`);
  const rows = r.stdout.split("\n").filter((l) =>
    !l.startsWith("  => ") && /\bx86-(64|32)\b/.test(l)
  );
  assert.equal(rows.length, PROPOSALS.length * SCENARIOS.length * ARCHES.length);
  assert.equal(r.stdout.split("\n").filter((l) => l.startsWith("  => ")).length, PROPOSALS.length);
});

/** A temporary folder with a synthetic bzImage and ELF (no .symtab) and the bzImage's map. */
function kernelFiles(): { dir: string; bz: string; elf: string; map: string; bad: string } {
  const dir = Deno.makeTempDirSync({ prefix: "textpoke_cli_" });
  const f = { dir, bz: `${dir}/vmlinuz`, elf: `${dir}/vmlinux`, map: `${dir}/System.map`, bad: "" };
  const vmlinux = syntheticVmlinux({ noSymtab: true });
  Deno.writeFileSync(f.bz, syntheticBzImage(lz4LegacyPayload(vmlinux)));
  Deno.writeFileSync(f.elf, vmlinux);
  Deno.writeTextFileSync(f.map, syntheticSystemMap());
  f.bad = `${dir}/notes.md`;
  Deno.writeTextFileSync(f.bad, "# not a map\nffffffff81000000 T _text\n");
  return f;
}

Deno.test("the demo CLI reports an unreadable --kernel or --system-map in one line with code 1", () => {
  const f = kernelFiles();
  try {
    const r = demo(["--kernel", f.dir]);
    assert.equal(r.stderr, `error: ${f.dir}: Is a directory (os error 21)\n`);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, "");
    const missing = `${f.dir}/nope`;
    const n = demo(["--kernel", missing]);
    assert.equal(n.stderr, `error: ${missing}: No such file or directory (os error 2)\n`);
    assert.equal(n.code, 1);
    const m = demo(["--kernel", f.bz, "--system-map", f.dir]);
    assert.equal(m.stderr, `error: ${f.dir}: Is a directory (os error 21)\n`);
    assert.equal(m.code, 1);
  } finally {
    Deno.removeSync(f.dir, { recursive: true });
  }
});

Deno.test("the demo CLI asks for --system-map PATH when the --kernel has no symbol table", () => {
  const f = kernelFiles();
  try {
    const r = demo(["--kernel", f.bz]);
    assert.equal(
      r.stderr,
      `error: ${f.bz}: a bzImage payload has no symbol table: pass its System.map with --system-map PATH\n`,
    );
    assert.equal(r.code, 1);
    assert.equal(r.stdout, "");
    const e = demo(["--kernel", f.elf]);
    assert.equal(
      e.stderr,
      `error: ${f.elf}: the ELF image has no symbol table (.symtab): pass a System.map with --system-map PATH\n`,
    );
    assert.equal(e.code, 1);
  } finally {
    Deno.removeSync(f.dir, { recursive: true });
  }
});

Deno.test("the demo CLI names the --system-map file, not the kernel, for a malformed map", () => {
  const f = kernelFiles();
  try {
    const r = demo(["--kernel", f.bz, "--system-map", f.bad]);
    assert.equal(r.stderr, `error: ${f.bad}: line 1 is not "address type name": # not a map\n`);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, "");
  } finally {
    Deno.removeSync(f.dir, { recursive: true });
  }
});

Deno.test("the demo CLI reports on a bzImage with its --system-map, --cpus, --seed and --json", () => {
  const f = kernelFiles();
  try {
    const r = demo([
      "--kernel",
      f.bz,
      "--system-map",
      f.map,
      "--cpus",
      "3",
      "--seed",
      "5",
      "--json",
    ]);
    assert.equal(r.code, 0, r.stderr);
    const rec = JSON.parse(r.stdout);
    assert.equal(rec.file, f.bz);
    assert.equal(rec.format, "bzImage");
    assert.equal(rec.patch.cpus, 3);
    assert.equal(rec.patch.seed, 5);
  } finally {
    Deno.removeSync(f.dir, { recursive: true });
  }
});

Deno.test("parseDemoArgs() refuses the demo's flags with --kernel and --system-map without it", () => {
  const only = "the real-kernel report takes only --cpus, --seed, --json, --system-map";
  for (
    const [argv, message] of [
      [
        ["--kernel", "k", "--proposal", "nop-skip"],
        `--proposal cannot be used with --kernel: it shapes the demo's table, and ${only}`,
      ],
      [
        ["--scenario", "static-call-update", "--kernel", "k", "--arch", "x86-32"],
        `--scenario, --arch cannot be used with --kernel: they shape the demo's table, and ${only}`,
      ],
      [
        ["--kernel", "k", "--transitions", "3", "--mode", "stale"],
        `--mode, --transitions cannot be used with --kernel: they shape the demo's table, and ${only}`,
      ],
      [
        ["--system-map", "m"],
        "--system-map needs --kernel: it is the System.map of the bzImage given with --kernel",
      ],
    ] as const
  ) {
    assert.throws(() => parseDemoArgs(argv), { name: "Error", message }, argv.join(" "));
    assert.throws(() => parseDemoArgs(argv), UsageError, argv.join(" "));
  }
  // `deno task demo -- …` hands the script a leading "--".
  const k = parseDemoArgs([
    "--",
    "--kernel",
    "k",
    "--system-map",
    "m",
    "--cpus",
    "3",
    "--seed",
    "2",
  ]);
  assert.deepEqual([k.kernel, k.systemMap, k.cpus, k.seed], ["k", "m", 3, 2]);
});

Deno.test("the demo CLI exits with code 2 and runs nothing for a flag --kernel does not take", () => {
  const f = kernelFiles();
  try {
    const r = demo(["--system-map", f.map, "--proposal", "nop-skip", "--transitions", "2"]);
    assert.equal(r.code, 2);
    assert.equal(r.stdout, "");
    assert.ok(
      r.stderr.startsWith(
        "error: --system-map needs --kernel: it is the System.map of the bzImage given with --kernel\n\nUsage: deno task demo",
      ),
      r.stderr,
    );
    assert.doesNotMatch(r.stderr, /\[[#.]+\]/);
    const k = demo(["--kernel", f.bz, "--system-map", f.map, "--mode", "stale"]);
    assert.equal(k.code, 2);
    assert.equal(k.stdout, "");
    assert.match(
      k.stderr,
      /^error: --mode cannot be used with --kernel: it shapes the demo's table/,
    );
  } finally {
    Deno.removeSync(f.dir, { recursive: true });
  }
});

Deno.test("the demo CLI's --help says which flags go with --kernel", () => {
  const r = demo(["--help"]);
  assert.equal(r.code, 0);
  assert.match(r.stdout, /takes only --cpus, --seed, --json, --system-map;/);
  assert.ok(
    r.stdout.includes(
      "--system-map <path>  the System.map that goes with a bzImage (with --kernel only)",
    ),
  );
});
