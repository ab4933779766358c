/**
 * The host tools some tests use as oracles (GNU as, ld, objcopy, node): whether one runs,
 * and GNU as's bytes for a piece of AT&T text.
 *
 * @module
 */

/**
 * Whether `name --version` runs on this machine.
 *
 * @param name The command.
 * @returns True when it ran and succeeded.
 */
export function haveTool(name: string): boolean {
  try {
    return new Deno.Command(name, { args: ["--version"], stdout: "null", stderr: "null" })
      .outputSync().success;
  } catch {
    return false;
  }
}

/**
 * Assembles `src` with GNU as (`--32`/`--64`), links it at `origin` with ld when one is
 * given (so calls to absolute symbols resolve), and returns the `.text` bytes.
 *
 * @param src AT&T text.
 * @param bits 32 or 64.
 * @param origin Where ld places `.text`; omitted: the object file's `.text` as is.
 * @returns The bytes.
 * @throws {Error} With the tool's stderr when as, ld or objcopy fails.
 */
export function gnuBytes(src: string, bits: 32 | 64, origin?: bigint): Uint8Array {
  const dir = Deno.makeTempDirSync({ prefix: "textpoke_gnu_" });
  try {
    Deno.writeTextFileSync(`${dir}/x.s`, src + "\n");
    const run = (cmd: string, args: string[]) => {
      const r = new Deno.Command(cmd, { args, stdout: "null", stderr: "piped" }).outputSync();
      if (!r.success) throw new Error(`${cmd}: ${new TextDecoder().decode(r.stderr)}`);
    };
    run("as", [`--${bits}`, "-o", `${dir}/x.o`, `${dir}/x.s`]);
    let obj = `${dir}/x.o`;
    if (origin !== undefined) {
      const emulation = bits === 64 ? "elf_x86_64" : "elf_i386";
      const text = `-Ttext=0x${origin.toString(16)}`;
      run("ld", ["-m", emulation, text, "-e", "0", "-o", `${dir}/x`, obj]);
      obj = `${dir}/x`;
    }
    run("objcopy", ["-O", "binary", "-j", ".text", obj, `${dir}/x.bin`]);
    return Deno.readFileSync(`${dir}/x.bin`);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}
