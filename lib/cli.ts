/**
 * `deno task demo`: every proposal of the 2019 thread on every scenario and both
 * architectures, one table on stdout (or `--json`), a progress bar on stderr.
 *
 * ```sh
 * deno task demo
 * deno task demo --proposal gap-plain-offset --scenario static-call-update --seed 7
 * deno task demo --json --arch x86-32
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";
import {
  ARCHES,
  DEFAULT_TRANSITIONS,
  type ExperimentRecord,
  FETCH_MODES,
  runExperiment,
  type ScenarioId,
  SCENARIOS,
} from "./experiments/experiment.ts";
import { formatTable } from "./experiments/report.ts";
import { formatKernelReport, kernelReport } from "./image/report.ts";
import { ImageError, TextpokeError } from "./errors.ts";
import { parseSystemMap } from "./image/system_map.ts";
import { type Arch, PROPOSALS } from "./proposals/proposals.ts";
import type { FetchMode } from "./machine/smp.ts";

/** The demo's defaults. */
export const DEMO_DEFAULTS: { cpus: number; seed: number; mode: FetchMode } = {
  cpus: 4,
  seed: 1,
  mode: "torn",
};

/** The flags `--kernel` goes with; the others only shape the demo's table. */
const KERNEL_FLAGS = ["--cpus", "--seed", "--json", "--system-map"] as const;

const USAGE = `Usage: deno task demo [options]

Runs every proposal of the 2019 int3 call-emulation thread on every scenario and both
architectures of the emulated SMP machine, and prints one table.

Options:
  --proposal <id>      only this proposal (${PROPOSALS.join(", ")}); repeatable
  --scenario <id>      only this scenario (${SCENARIOS.join(", ")}); repeatable
  --arch <arch>        only this architecture (${ARCHES.join(", ")}); repeatable
  --mode <mode>        instruction-fetch mode: ${
  FETCH_MODES.join(", ")
} (default ${DEMO_DEFAULTS.mode})
  --cpus <n>           CPUs, the patcher's included, 2..64 (default ${DEMO_DEFAULTS.cpus})
  --seed <n>           scheduler seed (default ${DEMO_DEFAULTS.seed})
  --transitions <n>    transitions per run (default: ${
  SCENARIOS.map((s) => `${s} ${DEFAULT_TRANSITIONS[s]}`).join(", ")
})
  --json               print the records as a JSON array instead of the table
  --kernel <path>      instead: load a real kernel (vmlinux with symbols, or a bzImage
                       with --system-map), patch its ftrace and static_call sites on a
                       --cpus machine and print the report (--json: the record);
                       takes only ${KERNEL_FLAGS.join(", ")};
                       \`deno task fetch-kernel\` downloads Debian's
  --system-map <path>  the System.map that goes with a bzImage (with --kernel only)
  -h, --help           this text
`;

/** A bad command line: the CLI prints the usage and exits with code 2. */
export class UsageError extends Error {}

/** The parsed command line. */
export interface DemoArgs {
  /** Proposals to run. */
  proposals: string[];
  /** Scenarios to run. */
  scenarios: ScenarioId[];
  /** Architectures to run. */
  arches: Arch[];
  /** Fetch mode. */
  mode: FetchMode;
  /** CPUs. */
  cpus: number;
  /** Seed. */
  seed: number;
  /** Transitions, or undefined for the scenario's default. */
  transitions: number | undefined;
  /** JSON output. */
  json: boolean;
  /** Help asked for. */
  help: boolean;
  /** A real kernel image to report on instead of the demo. */
  kernel: string | undefined;
  /** The System.map that goes with a bzImage. */
  systemMap: string | undefined;
}

function pick<T extends string>(
  values: string[] | undefined,
  known: readonly T[],
  what: string,
): T[] {
  if (values === undefined || values.length === 0) return known.slice();
  for (const v of values) {
    if (!(known as readonly string[]).includes(v)) {
      throw new UsageError(`Unknown ${what} "${v}"; known: ${known.join(", ")}`);
    }
  }
  return known.filter((k) => values.includes(k));
}

function int(
  value: string | undefined,
  what: string,
  min: number,
  max: number,
): number | undefined {
  if (value === undefined) return undefined;
  if (!/^-?\d+$/.test(value)) throw new UsageError(`--${what} needs an integer, not "${value}"`);
  const n = Number(value);
  if (n < min || n > max) throw new UsageError(`--${what} must be in ${min}..${max}, not ${n}`);
  return n;
}

/**
 * Parses the demo's command line.
 *
 * @param argv The arguments after the script name.
 * @returns The options.
 * @throws {UsageError} For an unknown flag or a bad value.
 */
export function parseDemoArgs(argv: readonly string[]): DemoArgs {
  let parsed;
  try {
    parsed = parseArgs({
      // `deno task demo -- --json` passes the "--" on: the flags after it are still flags.
      args: argv[0] === "--" ? argv.slice(1) : argv.slice(),
      strict: true,
      allowPositionals: false,
      options: {
        proposal: { type: "string", multiple: true },
        scenario: { type: "string", multiple: true },
        arch: { type: "string", multiple: true },
        mode: { type: "string" },
        cpus: { type: "string" },
        seed: { type: "string" },
        transitions: { type: "string" },
        json: { type: "boolean" },
        help: { type: "boolean", short: "h" },
        kernel: { type: "string" },
        "system-map": { type: "string" },
      },
    });
  } catch (e) {
    throw new UsageError(e instanceof Error ? e.message : String(e));
  }
  const v = parsed.values;
  if (v.kernel !== undefined) {
    const demoOnly = (["proposal", "scenario", "arch", "mode", "transitions"] as const)
      .filter((k) => v[k] !== undefined).map((k) => `--${k}`);
    if (demoOnly.length > 0) {
      throw new UsageError(
        `${demoOnly.join(", ")} cannot be used with --kernel: ${
          demoOnly.length === 1 ? "it shapes" : "they shape"
        } the demo's table, and the real-kernel report takes only ${KERNEL_FLAGS.join(", ")}`,
      );
    }
  } else if (v["system-map"] !== undefined) {
    throw new UsageError(
      "--system-map needs --kernel: it is the System.map of the bzImage given with --kernel",
    );
  }
  const mode = v.mode ?? DEMO_DEFAULTS.mode;
  if (!(FETCH_MODES as readonly string[]).includes(mode)) {
    throw new UsageError(`Unknown mode "${mode}"; known: ${FETCH_MODES.join(", ")}`);
  }
  return {
    proposals: pick(v.proposal, PROPOSALS, "proposal"),
    scenarios: pick(v.scenario, SCENARIOS, "scenario"),
    arches: pick(v.arch, ARCHES, "arch"),
    mode: mode as FetchMode,
    cpus: int(v.cpus, "cpus", 2, 64) ?? DEMO_DEFAULTS.cpus,
    seed: int(v.seed, "seed", 0, 2 ** 31 - 1) ?? DEMO_DEFAULTS.seed,
    transitions: int(v.transitions, "transitions", 0, 100_000),
    json: v.json ?? false,
    help: v.help ?? false,
    kernel: v.kernel,
    systemMap: v["system-map"],
  };
}

/**
 * Runs the demo's experiments.
 *
 * @param args Parsed options.
 * @param progress Called before each run with (done, total, label).
 * @returns The records, proposals first, then scenarios, then arches.
 */
export function runDemo(
  args: DemoArgs,
  progress: (done: number, total: number, label: string) => void = () => {},
): ExperimentRecord[] {
  const jobs: [string, ScenarioId, Arch][] = [];
  for (const p of args.proposals) {
    for (const s of args.scenarios) for (const a of args.arches) jobs.push([p, s, a]);
  }
  const out: ExperimentRecord[] = [];
  jobs.forEach(([p, s, a], i) => {
    progress(i, jobs.length, `${p} ${s} ${a}`);
    const opts: Parameters<typeof runExperiment>[0] = {
      scenario: s,
      proposal: p,
      arch: a,
      mode: args.mode,
      cpus: args.cpus,
      seed: args.seed,
    };
    if (args.transitions !== undefined) opts.transitions = args.transitions;
    out.push(runExperiment(opts));
  });
  progress(jobs.length, jobs.length, "done");
  return out;
}

function bar(done: number, total: number, label: string): string {
  const w = 30;
  const n = total === 0 ? w : Math.round((done / total) * w);
  return `\r[${"#".repeat(n)}${".".repeat(w - n)}] ${done}/${total} ${label}`.padEnd(90);
}

/**
 * The CLI: parse, run, print. Returns the exit code.
 *
 * @param argv Arguments.
 * @returns 0; 1 when the --kernel or --system-map file cannot be read or loaded; 2 for a
 *   bad command line.
 */
export function main(argv: readonly string[]): number {
  const enc = new TextEncoder();
  let args: DemoArgs;
  try {
    args = parseDemoArgs(argv);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    Deno.stderr.writeSync(enc.encode(`error: ${e.message}\n\n${USAGE}`));
    return 2;
  }
  if (args.help) {
    Deno.stdout.writeSync(enc.encode(USAGE));
    return 0;
  }
  if (args.kernel !== undefined) return kernelMain(args, enc);
  const records = runDemo(args, (d, t, label) => {
    Deno.stderr.writeSync(enc.encode(bar(d, t, label)));
  });
  Deno.stderr.writeSync(enc.encode("\n"));
  const text = args.json
    ? JSON.stringify(records, (_k, v) => (typeof v === "bigint" ? `0x${v.toString(16)}` : v), 2) +
      "\n"
    : formatTable(records);
  const bytes = enc.encode(text);
  let off = 0;
  while (off < bytes.length) off += Deno.stdout.writeSync(bytes.subarray(off));
  return 0;
}

/** A file the CLI could not read: `path: reason`, without Deno's repeat of the path. */
class FileError extends Error {}

function readFile<T>(path: string, read: (path: string) => T): T {
  try {
    return read(path);
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    // Deno says "Is a directory (os error 21): readfile '/tmp'"; the path comes first here.
    throw new FileError(`${path}: ${msg.replace(/: [a-z_]+ '.*'$/, "")}`, { cause: e });
  }
}

/** `--kernel PATH`: the real-kernel report (reading files is the CLI's job, not lib/image's). */
function kernelMain(args: DemoArgs, enc: TextEncoder): number {
  const path = args.kernel!;
  const mapPath = args.systemMap;
  let text: string;
  try {
    const bytes = readFile(path, Deno.readFileSync);
    let systemMap: string | undefined;
    if (mapPath !== undefined) {
      systemMap = readFile(mapPath, Deno.readTextFileSync);
      // lib/image names the kernel in a System.map's errors: check it here, under its own name.
      parseSystemMap(systemMap, mapPath);
    }
    const rec = kernelReport(bytes, {
      name: path,
      cpus: args.cpus,
      seed: args.seed,
      ...(systemMap !== undefined ? { systemMap } : {}),
    });
    text = args.json ? JSON.stringify(rec, null, 2) + "\n" : formatKernelReport(rec);
  } catch (e) {
    if (!(e instanceof TextpokeError) && !(e instanceof FileError)) throw e;
    let msg = e.message;
    if (e instanceof ImageError && mapPath === undefined) {
      // lib/image asks for its option; on the command line that is the flag.
      msg = msg.replace(/\(options\.systemMap\)$/, "with --system-map PATH");
    }
    Deno.stderr.writeSync(enc.encode(`error: ${msg}\n`));
    return 1;
  }
  const bytes = enc.encode(text);
  let off = 0;
  while (off < bytes.length) off += Deno.stdout.writeSync(bytes.subarray(off));
  return 0;
}

if (import.meta.main) {
  Deno.exit(main(Deno.args));
}
