import assert from "node:assert/strict";
import { DEMO_DEFAULTS, parseDemoArgs, runDemo, UsageError } from "../lib/cli.ts";
import { formatTable, verdict } from "../lib/experiments/report.ts";
import { ARCHES, SCENARIOS } from "../lib/experiments/experiment.ts";
import { PROPOSALS } from "../lib/proposals/proposals.ts";

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
