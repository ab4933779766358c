// The core is runtime-neutral (DESIGN.md, decision 8: only lib/cli.ts and the tools touch
// Deno's APIs): bundled with `deno bundle --platform node` (iced-x86 left to Node's own
// resolution, as a package manager installs it), it runs under Node and gives the same
// machine state and the same experiment record as here. Skipped, loudly, without `node`.
import assert from "node:assert/strict";
import { haveTool } from "./_gnu.ts";

const ROOT = new URL("..", import.meta.url);

/** The work both runtimes do; its JSON is compared. */
const ENTRY = `
import { assemble, Machine, runExperiment } from "../mod.ts";
const p = assemble("mov $5, %eax\\nimul $7, %eax, %ebx\\npush %rbx\\npop %rcx\\nhlt", {
  bitness: 64,
  origin: 0x400000n,
});
const m = new Machine({ bitness: 64 });
m.load(0x400000n, p.bytes, "rx");
m.map(0x600000n, 0x1000, "rw");
m.cpus[0].rip = 0x400000n;
m.cpus[0].setReg("rsp", 0x601000n);
const stop = m.run({ maxSteps: 100 });
const r = runExperiment({ scenario: "static-call-update", proposal: "gap-plain-offset", seed: 3 });
console.log(JSON.stringify({
  stop: stop.kind,
  steps: stop.steps,
  rcx: String(m.cpus[0].getReg("rcx")),
  hash: m.stateHash(),
  record: [r.executions, r.old, r.new, r.skipped, r.other, r.crashed, r.steps],
}));
`;

const node = haveTool("node");
if (!node) console.warn("SKIPPED: tests/node_test.ts because node is missing");

Deno.test({
  name:
    "the core bundled for Node runs there and matches Deno: machine state and experiment record",
  ignore: !node,
  fn() {
    // Inside the repository, so that Node finds iced-x86 in its node_modules.
    const dir = Deno.makeTempDirSync({ dir: new URL("tests/", ROOT).pathname, prefix: "node_" });
    try {
      Deno.writeTextFileSync(`${dir}/entry.ts`, ENTRY.replaceAll("../mod.ts", "../../mod.ts"));
      const dec = new TextDecoder();
      const b = new Deno.Command(Deno.execPath(), {
        args: [
          "bundle",
          "--platform",
          "node",
          "--external",
          "iced-x86",
          "-o",
          `${dir}/bundle.mjs`,
          `${dir}/entry.ts`,
        ],
        cwd: ROOT,
        stdout: "piped",
        stderr: "piped",
      }).outputSync();
      assert.equal(b.code, 0, `deno bundle failed: ${dec.decode(b.stderr)}`);
      const n = new Deno.Command("node", {
        args: [`${dir}/bundle.mjs`],
        cwd: ROOT,
        stdout: "piped",
        stderr: "piped",
      }).outputSync();
      assert.equal(n.code, 0, `node failed: ${dec.decode(n.stderr)}`);
      const there = JSON.parse(dec.decode(n.stdout));

      // The same entry here, under Deno.
      const d = new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", "--no-check", `${dir}/entry.ts`],
        cwd: ROOT,
        stdout: "piped",
        stderr: "piped",
      }).outputSync();
      assert.equal(d.code, 0, `deno failed: ${dec.decode(d.stderr)}`);
      assert.deepEqual(there, JSON.parse(dec.decode(d.stdout)));
      assert.equal(there.rcx, "35");
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
});
