// Worker of tests/fuzz/long_run.ts: runs cases from a start index and posts each start
// and each failure, so the driver can tell a host hang (no message for too long) from
// slow progress.
import { runCase, type Suite } from "./suites.ts";

/** The worker global, typed (Deno types `self` as a window). */
const worker = self as unknown as {
  onmessage: ((ev: MessageEvent<Job>) => void) | null;
  postMessage(message: unknown): void;
};

interface Job {
  suites: Suite[];
  seed: number;
  start: number;
  maxSteps: number;
}

worker.onmessage = (ev: MessageEvent<Job>) => {
  const { suites, seed, start, maxSteps } = ev.data;
  for (let i = start;; i++) {
    for (const suite of suites) {
      // Three assembler cases per index keep the suites at similar wall time.
      const reps = suite === "asm" ? 3 : 1;
      for (let r = 0; r < reps; r++) {
        const index = reps * i + r;
        worker.postMessage({ kind: "start", suite, index, i });
        let res;
        try {
          res = runCase(suite, seed, index, maxSteps);
        } catch (e) {
          res = { problems: [`harness threw: ${String(e)}`], corpus: "", summary: "" };
        }
        if (res.problems.length > 0) {
          worker.postMessage({
            kind: "fail",
            suite,
            index,
            problems: res.problems,
            corpus: res.corpus,
          });
        }
      }
    }
    worker.postMessage({ kind: "done", i });
  }
};
