/**
 * Keeps the README true: its TypeScript examples run and print what the README shows, and
 * the table it opens with is what `deno task demo` prints today.
 *
 * @module
 */
import assert from "node:assert/strict";
import { parseDemoArgs, runDemo } from "../lib/cli.ts";
import { formatTable } from "../lib/experiments/report.ts";

const ROOT = new URL("../", import.meta.url);
const README = Deno.readTextFileSync(new URL("README.md", ROOT));

/** The fenced blocks of the README, in order, with their info string. */
function blocks(md: string): { lang: string; body: string }[] {
  const out: { lang: string; body: string }[] = [];
  const re = /^```([a-z]*)\n([\s\S]*?)^```$/gm;
  for (let m = re.exec(md); m !== null; m = re.exec(md)) {
    out.push({ lang: m[1]!, body: m[2]! });
  }
  return out;
}

/** Runs a README example against this checkout (the package's name mapped to mod.ts). */
function run(code: string): string {
  const src = code.replaceAll('"@textpoke/textpoke"', JSON.stringify(new URL("mod.ts", ROOT).href));
  const file = Deno.makeTempFileSync({
    dir: new URL("tests/", ROOT).pathname,
    suffix: "_readme.ts",
  });
  try {
    Deno.writeTextFileSync(file, src);
    const out = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--no-check", file],
      cwd: ROOT,
      stdout: "piped",
      stderr: "piped",
    }).outputSync();
    const dec = new TextDecoder();
    assert.equal(out.code, 0, dec.decode(out.stderr));
    return dec.decode(out.stdout);
  } finally {
    Deno.removeSync(file);
  }
}

Deno.test("README: every ts example followed by an output block prints exactly that output", () => {
  const bs = blocks(README);
  let checked = 0;
  for (let i = 0; i + 1 < bs.length; i++) {
    const ex = bs[i]!;
    const shown = bs[i + 1]!;
    if (ex.lang !== "ts" || shown.lang !== "") continue;
    assert.equal(run(ex.body).trimEnd(), shown.body.trimEnd(), `README example ${i}`);
    checked++;
  }
  assert.ok(checked >= 1, "the README shows at least one example with its output");
});

Deno.test("README: the litmus example finds exactly the outcomes its comment shows", () => {
  const ex = blocks(README).find((b) => b.lang === "ts" && b.body.includes("explore("));
  assert.ok(ex, "the README has the litmus example");
  const comment = /^\/\/ (\d+ Map\(\d+\) \{.*\})/m.exec(ex.body);
  assert.ok(comment, "the example ends with its output as a comment");
  assert.equal(run(ex.body).trim(), comment[1]);
});

Deno.test("README opens with the table deno task demo prints", () => {
  const table = blocks(README).find((b) => b.lang === "" && b.body.startsWith("proposal "));
  assert.ok(table, "the README shows the demo's table");
  const now = formatTable(runDemo(parseDemoArgs([])));
  assert.equal(table.body.trimEnd(), now.trimEnd());
});
