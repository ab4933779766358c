/**
 * `deno task notebooks`: executes every numbered notebook (`notebooks/NN_*.ipynb`) headless
 * through the real Deno Jupyter kernel with `jupyter nbconvert --to notebook --execute`,
 * keeping the outputs in the notebook (they are committed, so the figures show on a
 * repository page), and fails if any cell raises, showing the cell.
 *
 * ```sh
 * deno task notebooks                 # execute all, write outputs in place
 * deno task notebooks 03 05           # only the notebooks whose name starts with 03 or 05
 * deno task notebooks --check         # execute, check, leave the files alone
 * deno task notebooks --bench         # first refresh notebooks/data/bench.json (deno bench --json)
 * ```
 *
 * Needs Jupyter (`jupyter-nbconvert`, `python3-nbclient`, `jupyter-client` from Debian);
 * installs the Deno kernelspec (`deno jupyter --install`) when it is missing.
 *
 * @module
 */

import { type Notebook, silentCells } from "../tests/_notebook_check.ts";

const here = new URL(".", import.meta.url).pathname;
const root = new URL("..", import.meta.url).pathname;
const args = Deno.args.filter((a) => !a.startsWith("--"));
const check = Deno.args.includes("--check");
const bench = Deno.args.includes("--bench");
const env = { NO_COLOR: "1", PYDEVD_DISABLE_FILE_VALIDATION: "1" };

async function run(
  cmd: string,
  argv: string[],
  cwd = root,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(cmd, { args: argv, cwd, env, stdout: "piped", stderr: "piped" })
    .output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

function findJupyter(): string {
  // Debian's jupyter first: a python3 earlier on PATH (pyenv) may lack the Jupyter modules.
  for (const p of ["/usr/bin/jupyter", "/usr/local/bin/jupyter"]) {
    try {
      if (Deno.statSync(p).isFile) return p;
    } catch {
      // not there
    }
  }
  return "jupyter";
}

const jupyter = findJupyter();

async function ensureKernel(): Promise<void> {
  const list = await run(jupyter, ["kernelspec", "list", "--json"]).catch((e) => {
    console.error(`Cannot run ${jupyter}: ${e}`);
    console.error("Install Jupyter: apt-get install -y jupyter-nbconvert python3-nbclient jupyter-client");
    Deno.exit(1);
  });
  if (list.code !== 0) {
    console.error(list.stderr);
    Deno.exit(1);
  }
  const specs = JSON.parse(list.stdout).kernelspecs as Record<string, unknown>;
  if ("deno" in specs) return;
  console.error("Installing the Deno Jupyter kernelspec (deno jupyter --install)");
  const inst = await run(Deno.execPath(), ["jupyter", "--install"]);
  if (inst.code !== 0) {
    console.error(inst.stderr);
    Deno.exit(1);
  }
}

async function refreshBench(): Promise<void> {
  console.error("Running deno bench --json bench/ (a few minutes) …");
  const t = performance.now();
  const r = await run(Deno.execPath(), ["bench", "-A", "--json", "bench/"]);
  if (r.code !== 0) {
    console.error(r.stderr);
    console.error("deno bench failed; bench.json not updated");
    Deno.exit(1);
  }
  // Some benches print a summary line of their own before the JSON: keep both, apart.
  const at = Math.max(0, r.stdout.search(/^\{/m));
  Deno.mkdirSync(`${here}data`, { recursive: true });
  Deno.writeTextFileSync(`${here}data/bench.json`, r.stdout.slice(at));
  Deno.writeTextFileSync(`${here}data/bench_summary.txt`, r.stdout.slice(0, at));
  console.error(`bench.json written in ${((performance.now() - t) / 1000).toFixed(0)} s`);
}

/** The part of nbconvert's stderr that names the failing cell and the error. */
function cellError(stderr: string): string {
  const lines = stderr.split("\n").filter((l) =>
    !l.includes('"deno jupyter" is unstable') && !l.startsWith("[NbConvertApp]")
  );
  const at = lines.findIndex((l) => /CellExecutionError|An error occurred while executing/.test(l));
  return (at >= 0 ? lines.slice(at) : lines.slice(-40)).join("\n");
}

const notebooks = [...Deno.readDirSync(here)]
  .map((e) => e.name)
  .filter((n) => /^\d\d_.*\.ipynb$/.test(n))
  .filter((n) => args.length === 0 || args.some((a) => n.startsWith(a)))
  .sort();
if (notebooks.length === 0) {
  console.error(`No numbered notebook matches ${args.join(" ")}`);
  Deno.exit(1);
}

await ensureKernel();
if (bench) await refreshBench();
// Execute into a temp dir; copy back (unless --check) only a run without error whose
// every printing or figure cell has an output. Deno 2.9's kernel sometimes reports a cell
// idle before its output went out, and nbconvert drops what comes later: an
// `execute_result` about one cell in ten after a cell that ran the model (`1 + 1` too), a
// cell's console output more rarely (seen in 07's first cell), a `display_data` never.
// So the notebooks show figures with `await Deno.jupyter.display(…)`, and a run with a
// silent cell is retried (up to ATTEMPTS times).
const ATTEMPTS = 3;
const tmp = Deno.makeTempDirSync({ prefix: "textpoke-notebooks-" });
const failed: string[] = [];
const start = performance.now();
for (const nb of notebooks) {
  const t = performance.now();
  let status = "";
  for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
    const r = await run(jupyter, [
      "nbconvert",
      "--to",
      "notebook",
      "--execute",
      "--ExecutePreprocessor.timeout=900",
      "--ExecutePreprocessor.kernel_name=deno",
      "--output-dir",
      tmp,
      "--output",
      nb,
      nb,
    ], here);
    if (r.code !== 0) {
      status = `FAILED ${nb}\n${cellError(r.stderr)}\n`;
      break;
    }
    const executed = Deno.readTextFileSync(`${tmp}/${nb}`);
    const silent = silentCells(JSON.parse(executed) as Notebook);
    if (silent.length === 0) {
      if (!check) Deno.writeTextFileSync(`${here}${nb}`, executed);
      status = attempt === 1 ? "" : ` (attempt ${attempt})`;
      status = `ok     ${nb}${status}`;
      break;
    }
    status = `FAILED ${nb}: cells ${silent.join(", ")} lost their output in ${attempt} run(s)`;
  }
  const secs = ((performance.now() - t) / 1000).toFixed(1);
  if (!status.startsWith("ok")) failed.push(nb);
  console.log(`${status} (${secs} s)`);
}
Deno.removeSync(tmp, { recursive: true });
const total = ((performance.now() - start) / 1000).toFixed(1);
console.log(
  `${notebooks.length - failed.length} of ${notebooks.length} notebooks ran without error (${total} s)`,
);
if (failed.length > 0) Deno.exit(1);
