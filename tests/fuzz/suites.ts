/**
 * The three fuzz suites as "case number → problems", shared by `tests/fuzz_test.ts`-style
 * loops and the long-run driver. Case `i` of a suite under seed `s` is always the same
 * input, so `(suite, seed, i)` replays a failure.
 *
 * @module
 */

import { caseSeed, Rng } from "./prng.ts";
import {
  checkDecode,
  checkExecCase,
  type ExecCase,
  generateCode,
  generateExecCase,
} from "./exec_fuzz.ts";
import { type AsmCase, checkAsm, generateAsmCase } from "./asm_fuzz.ts";
import { asmCaseText, execCaseText } from "./corpus.ts";
import { checkPatchCase } from "./patch_fuzz.ts";
import { hexBytes } from "../../lib/errors.ts";

/** Suite names. */
export type Suite = "exec" | "asm" | "decode" | "patch";

/** Every suite. */
export const SUITES: readonly Suite[] = ["exec", "asm", "decode", "patch"];

/** What one case did. */
export interface CaseResult {
  /** Broken properties (empty: passed). */
  problems: string[];
  /** A corpus file reproducing it (for failures). */
  corpus: string;
  /** A one-line summary of the outcome. */
  summary: string;
}

/**
 * The exec case `i` of `seed`.
 *
 * @param seed Run seed.
 * @param i Case number.
 * @param maxSteps Step budget per run.
 * @returns The case.
 */
export function execCase(seed: number, i: number, maxSteps: number): ExecCase {
  return generateExecCase(caseSeed(seed, i), { maxSteps });
}

/**
 * The assembler case `i` of `seed`.
 *
 * @param seed Run seed.
 * @param i Case number.
 * @returns The case.
 */
export function asmCase(seed: number, i: number): AsmCase {
  return generateAsmCase(new Rng(caseSeed(seed ^ 0xa5a5a5, i)));
}

/**
 * The decoder buffer `i` of `seed` (decoded in both modes).
 *
 * @param seed Run seed.
 * @param i Case number.
 * @returns The bytes.
 */
export function decodeCase(seed: number, i: number): Uint8Array {
  const rng = new Rng(caseSeed(seed ^ 0xdec0de, i));
  const bits = rng.chance(0.5) ? 64 : 32;
  return rng.chance(0.5) ? rng.bytes(1 + rng.int(40)) : generateCode(rng, bits, 1 + rng.int(40));
}

/**
 * Runs case `i` of a suite.
 *
 * @param suite Which suite.
 * @param seed Run seed.
 * @param i Case number.
 * @param maxSteps Exec step budget.
 * @returns Problems, a corpus file and a summary.
 */
export function runCase(suite: Suite, seed: number, i: number, maxSteps: number): CaseResult {
  const what = (p: string[]) => `${p[0] ?? "passed"} (fuzz ${suite} seed ${seed} case ${i})`;
  if (suite === "exec") {
    const c = execCase(seed, i, maxSteps);
    const r = checkExecCase(c, 10_000);
    return {
      problems: r.problems,
      corpus: execCaseText(c, what(r.problems)),
      summary: `${c.bitness}-bit CPL ${c.cpl} idt ${c.idt} cpus ${c.cpus}: ${
        r.outcome?.kind ?? "threw"
      } after ${r.outcome?.steps ?? "?"} steps, ${r.outcome?.vectors.length ?? 0} vectors, ${
        r.ms.toFixed(1)
      } ms`,
    };
  }
  if (suite === "asm") {
    const c = asmCase(seed, i);
    const r = checkAsm(c);
    return {
      problems: r.problems,
      corpus: asmCaseText(c, what(r.problems)),
      summary: `${c.bitness}-bit ${r.result} ${r.length} bytes: ${
        JSON.stringify(c.text.slice(0, 80))
      }`,
    };
  }
  if (suite === "patch") {
    const r = checkPatchCase(new Rng(caseSeed(seed ^ 0x9a7c4, i)));
    return {
      problems: r.problems,
      corpus: "",
      summary: `${r.landed} of 6 batches landed`,
    };
  }
  const bytes = decodeCase(seed, i);
  const problems = [...checkDecode(bytes, 32), ...checkDecode(bytes, 64)];
  return {
    problems,
    corpus: [`# ${what(problems)}`, "kind: decode", "bitness: 64", "---", hexBytes(bytes), ""]
      .join("\n"),
    summary: hexBytes(bytes),
  };
}

/**
 * Patterns of the bugs on file in tests/corpus/ as `status: open`, so fuzz runs do not
 * report them again. Empty: the assembler ones (`lock` before an instruction that cannot
 * take it, a memory operand with an empty index) are fixed and replayed as regressions.
 */
const KNOWN_BUGS: readonly RegExp[] = [];

/**
 * True for a problem that is one of the bugs on file in tests/corpus/ (status: open).
 *
 * @param problem A problem line from {@link runCase} or `checkAsm`.
 * @returns Whether it is already on file.
 */
export function knownBug(problem: string): boolean {
  return KNOWN_BUGS.some((re) => re.test(problem));
}
