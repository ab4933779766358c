/**
 * Loading a real x86-64 Linux kernel image: a vmlinux ELF with its symbol table, or a
 * bzImage (its compressed payload is a stripped vmlinux) with a System.map. The image is
 * never copied: section bytes are views of the file.
 *
 * What is taken from it, as the kernel itself finds it at boot:
 * - the function symbols and `__fentry__`;
 * - the ftrace sites: the 8-byte absolute addresses between `__start_mcount_loc` and
 *   `__stop_mcount_loc` (`ftrace_init` → `ftrace_process_locs`), each of which must hold
 *   `call __fentry__` as built;
 * - the static_call sites: pairs of self-relative s32 (`struct static_call_site`: `addr`,
 *   `key`) between `__start_static_call_sites` and `__stop_static_call_sites`, with the
 *   flags `STATIC_CALL_SITE_TAIL` (1) and `STATIC_CALL_SITE_INIT` (2) in the key's low
 *   bits (`kernel/static_call_inline.c`); each site is a `call` (or, for a tail call, a
 *   `jmp`) to its key's `__SCT__` trampoline.
 *
 * Everything is checked before it is returned: a table entry pointing outside kernel text
 * or a site holding other bytes is an {@link ImageError} naming the address and symbol.
 *
 * @module
 */

import { ElfError, hexAddr, hexBytes, ImageError } from "../errors.ts";
import { type ElfFile, parseElf, SHT_NOBITS, STT_FUNC } from "../x86/elf.ts";
import { extractBzImage, isBzImage } from "./bzimage.ts";
import { parseSystemMap } from "./system_map.ts";

/** `STATIC_CALL_SITE_TAIL`: the site is a tail call (`jmp`). */
export const STATIC_CALL_SITE_TAIL = 1;
/** `STATIC_CALL_SITE_INIT`: the site is in init text (freed after boot). */
export const STATIC_CALL_SITE_INIT = 2;
/** Mask of the flag bits in a static_call site's key field. */
export const STATIC_CALL_SITE_FLAGS = 3;
/** `MCOUNT_INSN_SIZE`: a fentry site is a 5-byte call. */
export const FENTRY_INSN_SIZE = 5;

/** One section of the image kept for mapping and reading. */
export interface ImageSection {
  /** Section name (`.text`). */
  readonly name: string;
  /** Link address. */
  readonly addr: bigint;
  /** Size in bytes. */
  readonly size: number;
  /** The bytes (a view of the file). */
  readonly bytes: Uint8Array;
  /** Executable. */
  readonly exec: boolean;
  /** Writable. */
  readonly write: boolean;
}

/** A function of the kernel (from `.symtab`, or a text symbol of System.map). */
export interface KernelFunction {
  /** Name. */
  readonly name: string;
  /** Address. */
  readonly address: bigint;
  /** Size in bytes (System.map has none: the distance to the next text symbol). */
  readonly size: number;
}

/** One static_call site. */
export interface StaticCallSiteInfo {
  /** Address of the `call` / `jmp`. */
  readonly address: bigint;
  /** Address of the `struct static_call_key`. */
  readonly key: bigint;
  /** Key name without the `__SCK__` prefix. */
  readonly name: string;
  /** A tail call (`jmp`). */
  readonly tail: boolean;
  /** In init text. */
  readonly init: boolean;
}

/** One static_call key with its trampoline and sites. */
export interface StaticCallKeyInfo {
  /** Name without the `__SCK__` / `__SCT__` prefix. */
  readonly name: string;
  /** Address of the key (`__SCK__<name>`). */
  readonly key: bigint;
  /** Address of the trampoline (`__SCT__<name>`). */
  readonly trampoline: bigint;
  /** What the trampoline jumps to as built (null: `ret`, a NULL call). */
  readonly target: bigint | null;
  /** Its sites, sorted by address. */
  readonly sites: StaticCallSiteInfo[];
}

/** Options of {@link loadKernelImage}. */
export interface LoadOptions {
  /** A name for messages (a file path); default `"kernel image"`. */
  name?: string;
  /** The text of a System.map (needed with a bzImage, whose payload is stripped). */
  systemMap?: string;
  /** A name for the System.map's messages (a file path); default `"System.map"`. */
  systemMapName?: string;
}

const CODE_SECTIONS = [".text", ".init.text"] as const;
/** The sections mapped into a machine (the issue's list). */
export const MAPPED_SECTIONS: readonly string[] = [
  ".text",
  ".rodata",
  ".data",
  ".init.text",
  ".init.data",
];

/**
 * A loaded, checked kernel image.
 */
export class KernelImage {
  /** Name for messages. */
  readonly name: string;
  /** What the bytes were. */
  readonly format: "vmlinux" | "bzImage";
  /** The (decompressed) vmlinux ELF. */
  readonly elf: ElfFile;
  /** `linux_banner` (or the bzImage header's version string). */
  readonly version: string;
  /** Sections kept (those of {@link MAPPED_SECTIONS} present in the image), by name. */
  readonly sections: Map<string, ImageSection>;
  /** Every symbol address by name (first definition wins). */
  readonly symbols: Map<string, bigint>;
  /** Functions, sorted by address. */
  readonly functions: readonly KernelFunction[];
  /**
   * Every sized symbol in `.text` / `.init.text`, functions and assembler labels alike
   * (`pvh_start_xen` is no STT_FUNC), sorted by address.
   */
  readonly codeSymbols: readonly KernelFunction[];
  /** `__fentry__`. */
  readonly fentry: bigint;
  /** ftrace sites (`__mcount_loc`), sorted. */
  readonly ftraceSites: readonly bigint[];
  /** static_call sites in table order. */
  readonly staticCallSites: readonly StaticCallSiteInfo[];
  /** static_call keys that have sites or a trampoline, sorted by name. */
  readonly staticCallKeys: readonly StaticCallKeyInfo[];
  readonly #fnStarts: Float64Array;
  readonly #codeStarts: Float64Array;

  /**
   * Use {@link loadKernelImage}.
   *
   * @param init The parsed parts.
   */
  constructor(init: {
    name: string;
    format: "vmlinux" | "bzImage";
    elf: ElfFile;
    version: string;
    sections: Map<string, ImageSection>;
    symbols: Map<string, bigint>;
    functions: KernelFunction[];
    codeSymbols: KernelFunction[];
    fentry: bigint;
    ftraceSites: bigint[];
    staticCallSites: StaticCallSiteInfo[];
    staticCallKeys: StaticCallKeyInfo[];
  }) {
    this.name = init.name;
    this.format = init.format;
    this.elf = init.elf;
    this.version = init.version;
    this.sections = init.sections;
    this.symbols = init.symbols;
    this.functions = init.functions;
    this.codeSymbols = init.codeSymbols;
    this.fentry = init.fentry;
    this.ftraceSites = init.ftraceSites;
    this.staticCallSites = init.staticCallSites;
    this.staticCallKeys = init.staticCallKeys;
    this.#fnStarts = Float64Array.from(init.functions, (f) => _num(f.address));
    this.#codeStarts = Float64Array.from(init.codeSymbols, (f) => _num(f.address));
  }

  /**
   * A symbol's address.
   *
   * @param name The symbol.
   * @returns Its address.
   * @throws {ImageError} Naming the symbol when the image has none of that name.
   */
  symbol(name: string): bigint {
    const v = this.symbols.get(name);
    if (v === undefined) {
      throw new ImageError(this.name, `symbol ${name} is missing`, { symbol: name });
    }
    return v;
  }

  /**
   * The function containing an address (the last function starting at or before it
   * whose size covers it).
   *
   * @param address Any address.
   * @returns The function, or undefined (padding, or text no symbol covers).
   */
  functionAt(address: bigint): KernelFunction | undefined {
    return _covering(this.functions, this.#fnStarts, address);
  }

  /**
   * The sized code symbol (function or assembler label) containing an address.
   *
   * @param address Any address.
   * @returns The symbol, or undefined.
   */
  symbolAt(address: bigint): KernelFunction | undefined {
    return _covering(this.codeSymbols, this.#codeStarts, address);
  }

  /**
   * `name+0xoff` for an address, as the kernel prints it.
   *
   * @param address Any address.
   * @returns The symbolic form, or the hex address.
   */
  describe(address: bigint): string {
    const f = this.functionAt(address) ?? this.symbolAt(address);
    if (f === undefined) return hexAddr(address);
    const off = address - f.address;
    return off === 0n ? f.name : `${f.name}+0x${off.toString(16)}`;
  }

  /**
   * The kept section containing an address.
   *
   * @param address Any address.
   * @returns The section, or undefined.
   */
  sectionAt(address: bigint): ImageSection | undefined {
    for (const s of this.sections.values()) {
      if (address >= s.addr && address < s.addr + BigInt(s.size)) return s;
    }
    return undefined;
  }

  /**
   * Reads bytes of a kept section (a view, not a copy).
   *
   * @param address First byte.
   * @param n Count.
   * @returns The bytes.
   * @throws {ImageError} When the range is not inside one kept section.
   */
  read(address: bigint, n: number): Uint8Array {
    const s = this.sectionAt(address);
    if (s === undefined || address + BigInt(n) > s.addr + BigInt(s.size)) {
      throw new ImageError(
        this.name,
        `${n} bytes at ${hexAddr(address)} lie outside the loaded sections (${
          [...this.sections.keys()].join(", ")
        })`,
        { address },
      );
    }
    const o = Number(address - s.addr);
    return s.bytes.subarray(o, o + n);
  }

  /**
   * The code section (`.text` or `.init.text`) containing an address.
   *
   * @param address Any address.
   * @returns Its name, or undefined.
   */
  codeSectionOf(address: bigint): string | undefined {
    for (const name of CODE_SECTIONS) {
      const s = this.sections.get(name);
      if (s && address >= s.addr && address < s.addr + BigInt(s.size)) return name;
    }
    return undefined;
  }
}

function _covering(
  list: readonly KernelFunction[],
  starts: Float64Array,
  address: bigint,
): KernelFunction | undefined {
  const a = _num(address);
  let lo = 0;
  let hi = starts.length - 1;
  let best = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    if (starts[mid]! <= a) {
      best = mid;
      lo = mid + 1;
    } else hi = mid - 1;
  }
  // Aliases share a start: any of them whose size covers the address will do.
  for (let i = best; i >= 0 && starts[i] === starts[best]; i--) {
    const f = list[i]!;
    if (address < f.address + BigInt(Math.max(f.size, 1))) return f;
  }
  return undefined;
}

const BANNER_PREFIX = "Linux version ";
const BANNER_MAX = 1024;

/** `linux_banner` up to its newline or NUL, or undefined when it is not readable as one. */
function readBanner(
  sections: ReadonlyMap<string, ImageSection>,
  banner: bigint | undefined,
): string | undefined {
  if (banner === undefined) return undefined;
  for (const s of sections.values()) {
    if (banner < s.addr || banner >= s.addr + BigInt(s.size)) continue;
    const o = Number(banner - s.addr);
    const limit = Math.min(s.bytes.length, o + BANNER_MAX);
    let e = o;
    while (e < limit && s.bytes[e] !== 0 && s.bytes[e] !== 10) e++;
    const text = new TextDecoder().decode(s.bytes.subarray(o, e));
    return text.startsWith(BANNER_PREFIX) ? text : undefined;
  }
  return undefined;
}

function _num(a: bigint): number {
  // Kernel addresses: keep 53 bits of precision by dropping the sign-extension half.
  return Number(BigInt.asUintN(52, a));
}

/**
 * Loads a kernel image: a vmlinux (x86-64 ELF with `.symtab`) or a bzImage (with
 * `options.systemMap`), and checks its ftrace and static_call tables against its text.
 *
 * @param bytes The file's bytes (kept, not copied: section views point into it).
 * @param options A name for messages; the System.map text for a bzImage (and its name for
 *   messages).
 * @returns The loaded image.
 * @throws {ImageError} For bytes that are neither ELF nor bzImage, a truncated image, a
 *   missing symbol, a table entry outside text, or a site whose bytes are not what the
 *   table says; the message names the file and the address or symbol. A System.map whose
 *   `_text` (or `_stext`) is not the image's `.text` address is refused first, and its
 *   syntax errors name `options.systemMapName`.
 * @example Load Debian's vmlinux and count its ftrace sites
 * ```ts ignore
 * import { loadKernelImage } from "@textpoke/textpoke";
 * const path = "/usr/lib/debug/boot/vmlinux-6.1.0-56-cloud-amd64";
 * const img = loadKernelImage(Deno.readFileSync(path), { name: path });
 * console.log(img.version, img.ftraceSites.length);
 * ```
 */
export function loadKernelImage(bytes: Uint8Array, options: LoadOptions = {}): KernelImage {
  const name = options.name ?? "kernel image";
  let elfBytes = bytes;
  let format: "vmlinux" | "bzImage" = "vmlinux";
  let headerVersion = "";
  const isElf = bytes.length >= 4 && bytes[0] === 0x7f && bytes[1] === 0x45 &&
    bytes[2] === 0x4c && bytes[3] === 0x46;
  if (!isElf) {
    if (!isBzImage(bytes)) {
      throw new ImageError(
        name,
        `neither an ELF image nor a bzImage (starts with ${
          hexBytes(bytes.subarray(0, 8))
        }; a bzImage has "HdrS" at offset 0x202)`,
      );
    }
    const bz = extractBzImage(bytes, name);
    elfBytes = bz.vmlinux;
    headerVersion = bz.version;
    format = "bzImage";
  }
  let elf: ElfFile;
  try {
    elf = parseElf(elfBytes);
  } catch (e) {
    if (e instanceof ElfError) {
      throw new ImageError(name, `${format === "bzImage" ? "payload: " : ""}${e.message}`, {
        cause: e,
      });
    }
    throw e;
  }
  if (!elf.is64 || elf.machine !== 62) {
    throw new ImageError(
      name,
      `not an x86-64 kernel (ELF class ${elf.is64 ? 64 : 32}, e_machine ${elf.machine})`,
    );
  }
  const sections = new Map<string, ImageSection>();
  for (const sname of MAPPED_SECTIONS) {
    const s = elf.section(sname);
    if (s === undefined || s.type === SHT_NOBITS) continue;
    let view: Uint8Array;
    try {
      view = elf.sectionBytes(sname);
    } catch (e) {
      throw new ImageError(name, `truncated image: ${(e as Error).message}`, { cause: e });
    }
    sections.set(sname, {
      name: sname,
      addr: s.addr,
      size: s.size,
      bytes: view,
      exec: (s.flags & 4) !== 0,
      write: (s.flags & 1) !== 0,
    });
  }
  if (!sections.has(".text")) throw new ImageError(name, "the image has no .text section");

  const inCode = (a: bigint, n: number): boolean => {
    for (const c of CODE_SECTIONS) {
      const s = sections.get(c);
      if (s && a >= s.addr && a + BigInt(n) <= s.addr + BigInt(s.size)) return true;
    }
    return false;
  };

  // Symbols: .symtab, else System.map.
  const symbols = new Map<string, bigint>();
  const functions: KernelFunction[] = [];
  const codeSymbols: KernelFunction[] = [];
  let elfSyms;
  try {
    elfSyms = elf.symbols();
  } catch (e) {
    throw new ImageError(name, `truncated image: ${(e as Error).message}`, { cause: e });
  }
  if (elfSyms.length > 1) {
    for (const s of elfSyms) {
      if (s.name === "" || s.shndx === 0) continue;
      if (!symbols.has(s.name)) symbols.set(s.name, s.value);
      if (s.type === STT_FUNC) functions.push({ name: s.name, address: s.value, size: s.size });
      if (s.size > 0 && (s.type === STT_FUNC || s.type === 0) && inCode(s.value, 1)) {
        codeSymbols.push({ name: s.name, address: s.value, size: s.size });
      }
    }
  } else if (options.systemMap !== undefined) {
    const mapName = options.systemMapName ?? "System.map";
    const map = parseSystemMap(options.systemMap, mapName);
    // A map of another build (or another KASLR-less link) shifts every address: check its
    // start of text against the image's before anything trusts it.
    const textAddr = sections.get(".text")!.addr;
    const anchor = map.find((s) => s.name === "_text") ?? map.find((s) => s.name === "_stext");
    if (anchor !== undefined && anchor.address !== textAddr) {
      throw new ImageError(
        name,
        `${
          mapName === "System.map" ? "System.map" : `System.map ${mapName}`
        } does not match the image: ${anchor.name} ${hexAddr(anchor.address)} but .text is at ${
          hexAddr(textAddr)
        }`,
        { address: anchor.address, symbol: anchor.name },
      );
    }
    for (const s of map) {
      if (!symbols.has(s.name)) symbols.set(s.name, s.address);
    }
    const text = map.filter((s) => s.type === "t" || s.type === "T" || s.type === "W");
    text.sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : 0));
    for (let i = 0; i < text.length; i++) {
      const s = text[i]!;
      let j = i + 1;
      while (j < text.length && text[j]!.address === s.address) j++;
      const next = text[j]?.address ?? s.address;
      // No sizes in a System.map: up to the next text symbol, within the section.
      let end = next;
      for (const c of CODE_SECTIONS) {
        const cs = sections.get(c);
        const ce = cs === undefined ? 0n : cs.addr + BigInt(cs.size);
        if (cs && s.address >= cs.addr && s.address < ce && (end > ce || end <= s.address)) {
          end = ce;
        }
      }
      const f = { name: s.name, address: s.address, size: Number(end - s.address) };
      functions.push(f);
      codeSymbols.push(f);
    }
  } else {
    throw new ImageError(
      name,
      format === "bzImage"
        ? "a bzImage payload has no symbol table: pass its System.map (options.systemMap)"
        : "the ELF image has no symbol table (.symtab): pass a System.map (options.systemMap)",
    );
  }
  const byAddress = (a: KernelFunction, b: KernelFunction) =>
    a.address < b.address ? -1 : a.address > b.address ? 1 : 0;
  functions.sort(byAddress);
  codeSymbols.sort(byAddress);

  const get = (sym: string): bigint => {
    const v = symbols.get(sym);
    if (v === undefined) throw new ImageError(name, `symbol ${sym} is missing`, { symbol: sym });
    return v;
  };
  const readAt = (address: bigint, n: number, what: string): Uint8Array => {
    for (const s of sections.values()) {
      if (address >= s.addr && address + BigInt(n) <= s.addr + BigInt(s.size)) {
        const o = Number(address - s.addr);
        return s.bytes.subarray(o, o + n);
      }
    }
    throw new ImageError(name, `${what} at ${hexAddr(address)} lies outside the loaded sections`, {
      address,
    });
  };
  // Version: linux_banner, read from whichever loaded section holds it; the bzImage
  // header's version when it cannot be read or is no "Linux version" string.
  const version = readBanner(sections, symbols.get("linux_banner")) ?? headerVersion;

  const nameOf = (address: bigint): string => {
    let best: KernelFunction | undefined;
    for (const f of functions) {
      if (f.address > address) break;
      best = f;
    }
    return best === undefined ? "" : ` (${best.name}+0x${(address - best.address).toString(16)})`;
  };

  // ftrace: __mcount_loc.
  const fentry = get("__fentry__");
  const mStart = get("__start_mcount_loc");
  const mStop = get("__stop_mcount_loc");
  if (mStop < mStart || (mStop - mStart) % 8n !== 0n) {
    throw new ImageError(
      name,
      `__mcount_loc table ${hexAddr(mStart)}..${
        hexAddr(mStop)
      } is not a whole number of 8-byte entries`,
      { address: mStart, symbol: "__start_mcount_loc" },
    );
  }
  const mCount = Number(mStop - mStart) / 8;
  const mBytes = readAt(mStart, mCount * 8, "__mcount_loc table");
  const mView = new DataView(mBytes.buffer, mBytes.byteOffset, mBytes.byteLength);
  const ftraceSites: bigint[] = new Array(mCount);
  for (let i = 0; i < mCount; i++) {
    const site = mView.getBigUint64(i * 8, true);
    const entry = mStart + BigInt(i * 8);
    if (!inCode(site, FENTRY_INSN_SIZE)) {
      throw new ImageError(
        name,
        `__mcount_loc entry ${i} at ${hexAddr(entry)} points to ${
          hexAddr(site)
        }, outside kernel text (.text, .init.text)`,
        { address: site, symbol: "__start_mcount_loc" },
      );
    }
    const found = readAt(site, FENTRY_INSN_SIZE, "ftrace site");
    const disp = BigInt(
      (found[1]! | (found[2]! << 8) | (found[3]! << 16) | (found[4]! << 24)) | 0,
    );
    if (found[0] !== 0xe8 || site + 5n + disp !== fentry) {
      throw new ImageError(
        name,
        `ftrace site ${hexAddr(site)}${nameOf(site)} holds ${
          hexBytes(found)
        }, not call __fentry__ (${hexAddr(fentry)})`,
        { address: site, symbol: "__fentry__" },
      );
    }
    ftraceSites[i] = site;
  }
  ftraceSites.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));

  // static_call: .static_call_sites.
  const keyNames = new Map<bigint, string>();
  const tramps = new Map<string, bigint>();
  for (const [sym, v] of symbols) {
    if (sym.startsWith("__SCK__")) keyNames.set(v, sym.slice(7));
    else if (sym.startsWith("__SCT__")) tramps.set(sym.slice(7), v);
  }
  const staticCallSites: StaticCallSiteInfo[] = [];
  const keys = new Map<string, StaticCallKeyInfo>();
  const sStart = symbols.get("__start_static_call_sites");
  const sStop = symbols.get("__stop_static_call_sites");
  if ((sStart === undefined) !== (sStop === undefined)) {
    const missing = sStart === undefined ? "__start_static_call_sites" : "__stop_static_call_sites";
    throw new ImageError(name, `symbol ${missing} is missing`, { symbol: missing });
  }
  const keyOf = (kname: string, key: bigint): StaticCallKeyInfo => {
    let k = keys.get(kname);
    if (k === undefined) {
      const trampoline = tramps.get(kname);
      if (trampoline === undefined) {
        throw new ImageError(
          name,
          `static_call key __SCK__${kname} has no trampoline __SCT__${kname}`,
          {
            address: key,
            symbol: `__SCT__${kname}`,
          },
        );
      }
      const tb = readAt(trampoline, 5, `trampoline __SCT__${kname}`);
      let target: bigint | null;
      if (tb[0] === 0xe9) {
        target = trampoline + 5n +
          BigInt((tb[1]! | (tb[2]! << 8) | (tb[3]! << 16) | (tb[4]! << 24)) | 0);
      } else if (tb[0] === 0xc3) target = null;
      else {
        throw new ImageError(
          name,
          `trampoline __SCT__${kname} at ${hexAddr(trampoline)} holds ${
            hexBytes(tb)
          }, not jmp.d32 or ret`,
          { address: trampoline, symbol: `__SCT__${kname}` },
        );
      }
      k = { name: kname, key, trampoline, target, sites: [] };
      keys.set(kname, k);
    }
    return k;
  };
  if (sStart !== undefined && sStop !== undefined) {
    if (sStop < sStart || (sStop - sStart) % 8n !== 0n) {
      throw new ImageError(
        name,
        `static_call site table ${hexAddr(sStart)}..${
          hexAddr(sStop)
        } is not a whole number of 8-byte entries`,
        { address: sStart, symbol: "__start_static_call_sites" },
      );
    }
    const n = Number(sStop - sStart) / 8;
    const tb = readAt(sStart, n * 8, "static_call site table");
    const tv = new DataView(tb.buffer, tb.byteOffset, tb.byteLength);
    for (let i = 0; i < n; i++) {
      const entry = sStart + BigInt(i * 8);
      const address = entry + BigInt(tv.getInt32(i * 8, true));
      const rawKey = entry + 4n + BigInt(tv.getInt32(i * 8 + 4, true));
      const flags = Number(rawKey & BigInt(STATIC_CALL_SITE_FLAGS));
      const key = rawKey & ~BigInt(STATIC_CALL_SITE_FLAGS);
      const kname = keyNames.get(key);
      if (kname === undefined) {
        throw new ImageError(
          name,
          `static_call site entry ${i} at ${hexAddr(entry)} names key ${
            hexAddr(key)
          }, which is no __SCK__ symbol`,
          { address: key },
        );
      }
      if (!inCode(address, 5)) {
        throw new ImageError(
          name,
          `static_call site entry ${i} at ${hexAddr(entry)} (key __SCK__${kname}) points to ${
            hexAddr(address)
          }, outside kernel text (.text, .init.text)`,
          { address, symbol: `__SCK__${kname}` },
        );
      }
      const k = keyOf(kname, key);
      const tail = (flags & STATIC_CALL_SITE_TAIL) !== 0;
      const bytes = readAt(address, 5, "static_call site");
      const want = tail ? 0xe9 : 0xe8;
      const disp = BigInt(
        (bytes[1]! | (bytes[2]! << 8) | (bytes[3]! << 16) | (bytes[4]! << 24)) | 0,
      );
      if (bytes[0] !== want || address + 5n + disp !== k.trampoline) {
        throw new ImageError(
          name,
          `static_call site ${hexAddr(address)}${nameOf(address)} holds ${hexBytes(bytes)}, not ${
            tail ? "jmp" : "call"
          } __SCT__${kname} (${hexAddr(k.trampoline)})`,
          { address, symbol: `__SCT__${kname}` },
        );
      }
      const site: StaticCallSiteInfo = {
        address,
        key,
        name: kname,
        tail,
        init: (flags & STATIC_CALL_SITE_INIT) !== 0,
      };
      staticCallSites.push(site);
      k.sites.push(site);
    }
  }
  for (const [key, kname] of keyNames) {
    if (tramps.has(kname)) keyOf(kname, key);
  }
  const staticCallKeys = [...keys.values()].sort((a, b) => (a.name < b.name ? -1 : 1));
  for (const k of staticCallKeys) {
    k.sites.sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : 0));
  }

  return new KernelImage({
    name,
    format,
    elf,
    version,
    sections,
    symbols,
    functions,
    codeSymbols,
    fentry,
    ftraceSites,
    staticCallSites,
    staticCallKeys,
  });
}
