// The long fuzz run (`deno task fuzz`): minutes to hours of the three suites in a worker,
// with a watchdog that reports a host hang (a case that never returns) by its seed and
// index, progress lines, and at the end every failure with the line that replays it.
//
//   deno run -A tests/fuzz/long_run.ts [--minutes 10] [--seed N] [--suite exec|asm|decode|patch|all]
//                                      [--steps 20000] [--hang 60] [--write-corpus DIR]
//   deno run -A tests/fuzz/long_run.ts --seed N --suite exec --only I   (replay one case)
//
// TEXTPOKE_FUZZ_MINUTES and TEXTPOKE_FUZZ_SEED set the defaults of --minutes and --seed.
// The fuzz test (tests/fuzz_test.ts) uses the same case numbering with --steps 2000.
import { asmCase, decodeCase, execCase, knownBug, runCase, type Suite, SUITES } from "./suites.ts";
import { asmCaseText, execCaseText } from "./corpus.ts";
import { hexBytes } from "../../lib/errors.ts";

function flag(name: string): string | undefined {
  const i = Deno.args.indexOf(`--${name}`);
  return i >= 0 ? Deno.args[i + 1] : undefined;
}

const seed = Number(
  flag("seed") ?? Deno.env.get("TEXTPOKE_FUZZ_SEED") ??
    crypto.getRandomValues(new Uint32Array(1))[0]!,
) >>> 0;
const minutes = Number(flag("minutes") ?? Deno.env.get("TEXTPOKE_FUZZ_MINUTES") ?? 10);
const suiteArg = flag("suite") ?? "all";
const suites: Suite[] = suiteArg === "all" ? [...SUITES] : [suiteArg as Suite];
const maxSteps = Number(flag("steps") ?? 20000);
const hangSeconds = Number(flag("hang") ?? 60);
const corpusDir = flag("write-corpus");
const only = flag("only");

for (const s of suites) {
  if (!SUITES.includes(s)) {
    console.error(`unknown suite ${s}: use ${SUITES.join(", ")} or all`);
    Deno.exit(2);
  }
}

if (only !== undefined) {
  // Replay one case in this process and print everything about it.
  const suite = suites.length === 1 ? suites[0]! : "exec";
  const r = runCase(suite, seed, Number(only), maxSteps);
  console.log(`${suite} seed ${seed} case ${only}: ${r.summary}`);
  console.log(r.problems.length === 0 ? "no problem" : r.problems.join("\n"));
  console.log("--- corpus file ---");
  console.log(r.corpus);
  Deno.exit(r.problems.length === 0 ? 0 : 1);
}

interface Failure {
  suite: string;
  index: number;
  problem: string;
  corpus: string;
}

const failures: Failure[] = [];
const stepsFlag = maxSteps === 20000 ? "" : ` --steps ${maxSteps}`;

/** The corpus file of a case that never returned (built without running it). */
function hungCorpus(suite: string, index: number, what: string): string {
  if (suite === "exec") return execCaseText(execCase(seed, index, maxSteps), what);
  if (suite === "asm") return asmCaseText(asmCase(seed, index), what);
  if (suite === "patch") return "";
  return `# ${what}\nkind: decode\nbitness: 64\n---\n${hexBytes(decodeCase(seed, index))}\n`;
}
const categories = new Set<string>();
let cases = 0;
let current = { suite: "", index: -1, i: 0 };
let lastMessage = Date.now();
const started = Date.now();
const deadline = started + minutes * 60_000;
let worker: Worker;

console.log(
  `fuzz: seed ${seed}, suites ${
    suites.join(",")
  }, ${minutes} min, exec budget ${maxSteps} steps, ` +
    `hang after ${hangSeconds} s`,
);

let known = 0;

function record(f: Failure): void {
  if (knownBug(f.problem)) {
    known++; // already in tests/corpus/ with status: open
    return;
  }
  failures.push(f);
  // One line per new kind of failure (numbers and bytes stripped), as it happens.
  const cat = f.problem.replace(/0x[0-9a-f]+|\b[0-9a-f]{2}\b|\d+/g, "#").slice(0, 100);
  if (!categories.has(cat)) {
    categories.add(cat);
    console.log(`FOUND ${f.suite} case ${f.index}: ${f.problem.slice(0, 300)}`);
    console.log(
      `  replay: deno task fuzz --seed ${seed} --suite ${f.suite}${stepsFlag} --only ${f.index}`,
    );
  }
  if (corpusDir !== undefined && f.corpus !== "") {
    const file = `${corpusDir}/${f.suite}-${seed}-${f.index}.txt`;
    Deno.writeTextFileSync(file, f.corpus.replace("\n", "\nstatus: open\n"));
  }
}

function spawn(start: number): void {
  worker = new Worker(new URL("./long_run_worker.ts", import.meta.url), { type: "module" });
  worker.onmessage = (ev: MessageEvent) => {
    lastMessage = Date.now();
    const m = ev.data;
    if (m.kind === "start") {
      current = { suite: m.suite, index: m.index, i: m.i };
      cases++;
    } else if (m.kind === "fail") {
      record({ suite: m.suite, index: m.index, problem: m.problems[0], corpus: m.corpus });
    }
  };
  worker.onerror = (e) => {
    e.preventDefault();
    record({
      suite: current.suite,
      index: current.index,
      problem: `worker died: ${e.message}`,
      corpus: "",
    });
    worker.terminate();
    spawn(current.i + 1);
  };
  worker.postMessage({ suites, seed, start, maxSteps });
}

spawn(0);
let lastReport = Date.now();
const timer = setInterval(() => {
  const now = Date.now();
  if (now - lastMessage > hangSeconds * 1000) {
    record({
      suite: current.suite,
      index: current.index,
      problem: `host hang: no progress for ${hangSeconds} s`,
      corpus: hungCorpus(
        current.suite,
        current.index,
        `host hang (fuzz ${current.suite} seed ${seed} case ${current.index})`,
      ),
    });
    worker.terminate();
    lastMessage = now;
    spawn(current.i + 1);
  }
  if (now - lastReport >= 30_000) {
    lastReport = now;
    const s = (now - started) / 1000;
    console.log(
      `  ${s.toFixed(0)} s: ${cases} cases (${
        (cases / s).toFixed(0)
      }/s), ${failures.length} failing`,
    );
  }
  if (now >= deadline) {
    clearInterval(timer);
    worker.terminate();
    finish();
  }
}, 250);

function finish(): void {
  const s = (Date.now() - started) / 1000;
  console.log(
    `fuzz done: seed ${seed}, ${cases} cases in ${s.toFixed(0)} s (${
      (cases / s).toFixed(0)
    }/s), ${failures.length} failing in ${categories.size} kinds (+${known} known bugs on file)`,
  );
  for (const f of failures.slice(0, 50)) {
    console.log(`  ${f.suite} ${f.index}: ${f.problem.slice(0, 200)}`);
    console.log(
      `    deno task fuzz --seed ${seed} --suite ${f.suite}${stepsFlag} --only ${f.index}`,
    );
  }
  Deno.exit(failures.length === 0 ? 0 : 1);
}
