/**
 * `deno task fetch-kernel`: fetches the current Debian cloud kernel for the tests, the
 * benchmarks and the notebook.
 *
 * Resolves the versioned package from the metapackage (`apt-cache depends
 * linux-image-cloud-amd64`), downloads `<pkg>-dbg` (the vmlinux with symbols) and
 * `<pkg>-unsigned` (the config) with `apt-get download`, extracts only
 * `usr/lib/debug/boot/vmlinux-*` and `boot/config-*` (with `--bzimage` also
 * `boot/vmlinuz-*` and the real `System.map-*`) into a cache folder outside git, deletes
 * the packages, and prints where. Work already done is skipped.
 *
 * The cache folder is `$TEXTPOKE_KERNEL_CACHE`, else `$XDG_CACHE_HOME/textpoke/kernel`,
 * else `~/.cache/textpoke/kernel`, with one subfolder per `<package>_<version>`.
 *
 * This is a tool, not library code: it runs processes and touches files (Deno APIs), and
 * `mod.ts` does not export it.
 *
 * ```sh
 * deno task fetch-kernel            # prints the paths
 * deno task fetch-kernel --bzimage  # also vmlinuz and System.map
 * deno task fetch-kernel --json
 * ```
 *
 * @module
 */

/** Where a fetched kernel's files are. */
export interface FetchedKernel {
  /** The versioned package (`linux-image-6.1.0-56-cloud-amd64`). */
  readonly package: string;
  /** Its Debian version (`6.1.192-2`). */
  readonly version: string;
  /** The folder. */
  readonly dir: string;
  /** The vmlinux with symbols. */
  readonly vmlinux: string;
  /** The kernel config. */
  readonly config: string;
  /** The bzImage, when asked for. */
  readonly vmlinuz?: string;
  /** The real System.map, when asked for. */
  readonly systemMap?: string;
  /** False when everything was already there. */
  readonly fetched: boolean;
}

/** Options of {@link fetchKernel}. */
export interface FetchOptions {
  /** The metapackage (default `linux-image-cloud-amd64`). */
  metapackage?: string;
  /** Also extract `vmlinuz-*` and the real `System.map-*`. */
  bzImage?: boolean;
  /** Cache folder (default: see the module doc). */
  cacheDir?: string;
  /** Progress messages (default: to stderr). */
  log?: (line: string) => void;
}

async function run(cmd: string, args: string[], cwd?: string): Promise<string> {
  const out = await new Deno.Command(cmd, {
    args,
    ...(cwd === undefined ? {} : { cwd }),
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  if (!out.success) {
    const err = new TextDecoder().decode(out.stderr).trim();
    throw new Error(`${cmd} ${args.join(" ")} failed (exit ${out.code}): ${err}`);
  }
  return text;
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * The default cache folder.
 *
 * @returns `$TEXTPOKE_KERNEL_CACHE`, `$XDG_CACHE_HOME/textpoke/kernel` or
 *   `~/.cache/textpoke/kernel`.
 */
export function kernelCacheDir(): string {
  const env = Deno.env.get("TEXTPOKE_KERNEL_CACHE");
  if (env) return env;
  const xdg = Deno.env.get("XDG_CACHE_HOME");
  if (xdg) return `${xdg}/textpoke/kernel`;
  return `${Deno.env.get("HOME") ?? "/tmp"}/.cache/textpoke/kernel`;
}

/**
 * Finds an already fetched kernel in the cache without running apt.
 *
 * @param cacheDir The cache folder (default {@link kernelCacheDir}).
 * @returns The newest complete entry, or null.
 */
export function cachedKernel(cacheDir: string = kernelCacheDir()): FetchedKernel | null {
  let entries: string[] = [];
  try {
    entries = [...Deno.readDirSync(cacheDir)].filter((e) => e.isDirectory).map((e) => e.name);
  } catch {
    return null;
  }
  entries.sort().reverse();
  for (const e of entries) {
    const m = /^(linux-image-.+)_(.+)$/.exec(e);
    if (m === null) continue;
    const dir = `${cacheDir}/${e}`;
    const abi = m[1]!.replace(/^linux-image-/, "");
    const vmlinux = `${dir}/vmlinux-${abi}`;
    const config = `${dir}/config-${abi}`;
    if (!exists(vmlinux) || !exists(config)) continue;
    const vmlinuz = `${dir}/vmlinuz-${abi}`;
    const systemMap = `${dir}/System.map-${abi}`;
    return {
      package: m[1]!,
      version: m[2]!,
      dir,
      vmlinux,
      config,
      ...(exists(vmlinuz) ? { vmlinuz } : {}),
      ...(exists(systemMap) ? { systemMap } : {}),
      fetched: false,
    };
  }
  return null;
}

/**
 * Resolves, downloads and extracts the current Debian cloud kernel (see the module doc).
 *
 * @param options Metapackage, bzImage extraction, cache folder, log.
 * @returns Where the files are.
 * @throws {Error} When apt is missing or a command fails (the message names it).
 */
export async function fetchKernel(options: FetchOptions = {}): Promise<FetchedKernel> {
  const log = options.log ?? ((l: string) => console.error(l));
  const meta = options.metapackage ?? "linux-image-cloud-amd64";
  const cache = options.cacheDir ?? kernelCacheDir();
  const resolve = async (): Promise<string | null> => {
    const deps = await run("apt-cache", ["depends", meta]).catch(() => "");
    const m = /Depends:\s*(linux-image-[0-9][^\s<>]*)/.exec(deps);
    return m === null ? null : m[1]!;
  };
  let pkg = await resolve();
  if (pkg === null) {
    log(`apt-cache knows no ${meta}: running apt-get update`);
    await run("apt-get", ["update", "-qq"]);
    pkg = await resolve();
  }
  if (pkg === null) throw new Error(`apt-cache depends ${meta} names no linux-image package`);
  const show = await run("apt-cache", ["show", "--no-all-versions", pkg]);
  const version = /^Version:\s*(\S+)/m.exec(show)?.[1];
  if (version === undefined) throw new Error(`apt-cache show ${pkg} gives no Version`);
  const abi = pkg.replace(/^linux-image-/, "");
  const dir = `${cache}/${pkg}_${version}`;
  const vmlinux = `${dir}/vmlinux-${abi}`;
  const config = `${dir}/config-${abi}`;
  const vmlinuz = `${dir}/vmlinuz-${abi}`;
  const systemMap = `${dir}/System.map-${abi}`;
  const want = [vmlinux, config, ...(options.bzImage ? [vmlinuz, systemMap] : [])];
  const done = (fetched: boolean): FetchedKernel => ({
    package: pkg,
    version,
    dir,
    vmlinux,
    config,
    ...(exists(vmlinuz) ? { vmlinuz } : {}),
    ...(exists(systemMap) ? { systemMap } : {}),
    fetched,
  });
  if (want.every(exists)) return done(false);
  Deno.mkdirSync(dir, { recursive: true });
  // apt-get download drops privileges to _apt: give it a folder it may write.
  const dl = Deno.makeTempDirSync({ dir, prefix: "download-" });
  try {
    Deno.chmodSync(dl, 0o777);
    const needDbg = !exists(vmlinux) || (options.bzImage === true && !exists(systemMap));
    const needImg = !exists(config) || (options.bzImage === true && !exists(vmlinuz));
    const pkgs = [...(needDbg ? [`${pkg}-dbg`] : []), ...(needImg ? [`${pkg}-unsigned`] : [])];
    log(`apt-get download ${pkgs.join(" ")} (into ${dl})`);
    await run("apt-get", ["download", ...pkgs], dl);
    const debs = [...Deno.readDirSync(dl)].map((e) => e.name).filter((n) => n.endsWith(".deb"));
    const extract = async (deb: string, members: string[]) => {
      log(`extracting ${members.join(" ")} from ${deb}`);
      // dpkg-deb --fsys-tarfile X | tar -x --wildcards MEMBERS, without a shell.
      const dpkg = new Deno.Command("dpkg-deb", {
        args: ["--fsys-tarfile", `${dl}/${deb}`],
        stdout: "piped",
        stderr: "inherit",
      }).spawn();
      const tar = new Deno.Command("tar", {
        args: ["-x", "-C", dl, "--wildcards", ...members],
        stdin: "piped",
        stderr: "inherit",
      }).spawn();
      await dpkg.stdout.pipeTo(tar.stdin);
      const [a, b] = await Promise.all([dpkg.status, tar.status]);
      if (!a.success || !b.success) {
        throw new Error(`extracting ${members.join(" ")} from ${deb} failed`);
      }
    };
    for (const deb of debs) {
      if (deb.startsWith(`${pkg}-dbg_`)) {
        await extract(deb, [
          `./usr/lib/debug/boot/vmlinux-${abi}`,
          ...(options.bzImage ? [`./usr/lib/debug/boot/System.map-${abi}`] : []),
        ]);
        Deno.renameSync(`${dl}/usr/lib/debug/boot/vmlinux-${abi}`, vmlinux);
        if (options.bzImage) {
          Deno.renameSync(`${dl}/usr/lib/debug/boot/System.map-${abi}`, systemMap);
        }
      } else if (deb.startsWith(`${pkg}-unsigned_`)) {
        await extract(deb, [
          `./boot/config-${abi}`,
          ...(options.bzImage ? [`./boot/vmlinuz-${abi}`] : []),
        ]);
        Deno.renameSync(`${dl}/boot/config-${abi}`, config);
        if (options.bzImage) Deno.renameSync(`${dl}/boot/vmlinuz-${abi}`, vmlinuz);
      }
    }
  } finally {
    Deno.removeSync(dl, { recursive: true });
  }
  const missing = want.filter((p) => !exists(p));
  if (missing.length > 0) throw new Error(`fetch-kernel: still missing ${missing.join(", ")}`);
  return done(true);
}

if (import.meta.main) {
  const args = Deno.args;
  if (args.includes("-h") || args.includes("--help")) {
    console.log("Usage: deno task fetch-kernel [--bzimage] [--json] [--cache DIR]");
    Deno.exit(0);
  }
  const ci = args.indexOf("--cache");
  try {
    const r = await fetchKernel({
      bzImage: args.includes("--bzimage"),
      ...(ci >= 0 && args[ci + 1] ? { cacheDir: args[ci + 1]! } : {}),
    });
    if (args.includes("--json")) console.log(JSON.stringify(r, null, 2));
    else {
      console.log(`${r.package} ${r.version} ${r.fetched ? "fetched" : "already there"}`);
      console.log(`vmlinux: ${r.vmlinux}`);
      console.log(`config: ${r.config}`);
      if (r.vmlinuz) console.log(`vmlinuz: ${r.vmlinuz}`);
      if (r.systemMap) console.log(`System.map: ${r.systemMap}`);
    }
  } catch (e) {
    console.error(`fetch-kernel: ${(e as Error).message}`);
    Deno.exit(1);
  }
}
