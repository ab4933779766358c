/**
 * The real Debian kernel (`deno task fetch-kernel` first; without it these benchmarks
 * are not registered and a warning says so):
 * - `kernel/decode-real-text`: our `decodeInto` sweeping the whole real `.text` (14.7 MB,
 *   6.7 M instructions, int3 padding included), against iced-x86's `decodeOut` on the
 *   same bytes as the baseline;
 * - `kernel/ftrace-enable-all`: registering an ftrace_ops that traces every function —
 *   one text_poke_bp batch of ~35,600 sites on a 4-CPU machine while CPUs 1-3 run real
 *   kernel functions (each iteration disables again, untimed).
 */

import { Decoder, DecoderOptions, Instruction } from "iced-x86";
import { cachedKernel } from "../lib/image/fetch.ts";
import { loadKernelImage } from "../lib/image/image.ts";
import { bootRealKernel, FtraceAll } from "../lib/image/real_kernel.ts";
import { walkText } from "../lib/image/walk.ts";
import { decodeInto } from "../lib/x86/decode.ts";
import { Insn } from "../lib/x86/insn.ts";

const kernel = cachedKernel();
if (kernel === null) {
  console.warn("SKIPPED: kernel benchmarks, because no kernel is cached (deno task fetch-kernel)");
} else {
  const image = loadKernelImage(Deno.readFileSync(kernel.vmlinux), { name: kernel.vmlinux });
  const text = image.sections.get(".text")!.bytes.slice();

  const ours = new Insn();
  const walkOurs = (): number => {
    let p = 0, n = 0;
    const end = text.length;
    while (p < end) {
      const len = decodeInto(ours, text, p, 64).len;
      p += len > 0 ? len : 1;
      n++;
    }
    return n;
  };
  const icedInsn = new Instruction();
  const icedDecoder = new Decoder(64, text, DecoderOptions.None);
  const walkIced = (): number => {
    icedDecoder.position = 0;
    let n = 0;
    while (icedDecoder.canDecode) {
      icedDecoder.decodeOut(icedInsn);
      n++;
    }
    return n;
  };
  const a = walkOurs(), b = walkIced();
  if (a !== b) console.warn(`decode-real-text: ours ${a} instructions, iced ${b}`);

  Deno.bench({
    name: "kernel/decode-real-text-iced",
    group: "kernel",
    baseline: true,
    n: 5,
    warmup: 1,
    fn: () => void walkIced(),
  });
  Deno.bench({
    name: "kernel/decode-real-text",
    group: "kernel",
    n: 5,
    warmup: 1,
    fn: () => void walkOurs(),
  });

  const all = new FtraceAll(bootRealKernel(image, walkText(image), { cpus: 4, seed: 1 }));
  Deno.bench({
    name: "kernel/ftrace-enable-all",
    group: "kernel",
    n: 5,
    warmup: 1,
    fn(b) {
      b.start();
      all.enable();
      b.end();
      all.disable();
    },
  });
}
