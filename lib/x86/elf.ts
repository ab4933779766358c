/**
 * A small little-endian ELF reader (ELF32 and ELF64): the file header, the section
 * headers and the symbol tables. It never copies the image: section bytes are
 * `subarray` views of the input, so a 280 MB vmlinux costs only its section table.
 *
 * @module
 */

import { ElfError } from "../errors.ts";

/** Section type: no file bytes (.bss). */
export const SHT_NOBITS = 8;
/** Section type: symbol table. */
export const SHT_SYMTAB = 2;
/** Section type: dynamic symbol table. */
export const SHT_DYNSYM = 11;
/** Section flag: occupies memory at run time. */
export const SHF_ALLOC = 2;
/** Section flag: executable. */
export const SHF_EXECINSTR = 4;
/** Symbol type: function. */
export const STT_FUNC = 2;

/** One section header. */
export interface ElfSection {
  /** Index in the section header table. */
  readonly index: number;
  /** Name from the section-name string table. */
  readonly name: string;
  /** `sh_type` (SHT_*). */
  readonly type: number;
  /** `sh_flags` (SHF_*). */
  readonly flags: number;
  /** Virtual address. */
  readonly addr: bigint;
  /** File offset of the bytes. */
  readonly offset: number;
  /** Size in bytes. */
  readonly size: number;
  /** `sh_link` (for symbol tables: the string table's index). */
  readonly link: number;
  /** `sh_entsize`. */
  readonly entsize: number;
}

/** One symbol-table entry. */
export interface ElfSymbol {
  /** Name from the linked string table. */
  readonly name: string;
  /** `st_value` (an address for defined symbols). */
  readonly value: bigint;
  /** `st_size`. */
  readonly size: number;
  /** Type: `st_info & 15` (STT_*). */
  readonly type: number;
  /** Binding: `st_info >> 4`. */
  readonly bind: number;
  /** Section index (`st_shndx`). */
  readonly shndx: number;
}

const _utf8 = new TextDecoder();

/** A parsed ELF image: headers decoded, bytes left in place. */
export class ElfFile {
  /** The whole image (not copied). */
  readonly bytes: Uint8Array;
  /** ELFCLASS64. */
  readonly is64: boolean;
  /** `e_type` (1 rel, 2 exec, 3 dyn). */
  readonly type: number;
  /** `e_machine` (3 i386, 62 x86-64). */
  readonly machine: number;
  /** `e_entry`. */
  readonly entry: bigint;
  /** The section headers, in table order. */
  readonly sections: readonly ElfSection[];
  readonly #view: DataView;

  /**
   * Wraps decoded headers; use {@link parseElf} to make one.
   *
   * @param bytes The image.
   * @param is64 Class.
   * @param type e_type.
   * @param machine e_machine.
   * @param entry e_entry.
   * @param sections Decoded section headers.
   */
  constructor(
    bytes: Uint8Array,
    is64: boolean,
    type: number,
    machine: number,
    entry: bigint,
    sections: ElfSection[],
  ) {
    this.bytes = bytes;
    this.is64 = is64;
    this.type = type;
    this.machine = machine;
    this.entry = entry;
    this.sections = sections;
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  /**
   * The first section called `name`.
   *
   * @param name Section name, e.g. `.text`.
   * @returns The section, or undefined.
   */
  section(name: string): ElfSection | undefined {
    return this.sections.find((s) => s.name === name);
  }

  /**
   * The file bytes of section `name`, as a view into the image.
   *
   * @param name Section name.
   * @returns A subarray of {@link ElfFile.bytes}.
   * @throws {ElfError} When the section is missing, has no file bytes, or runs past the end.
   */
  sectionBytes(name: string): Uint8Array {
    const s = this.section(name);
    if (!s) throw new ElfError(`ELF image has no section ${name}`, 0);
    if (s.type === SHT_NOBITS) {
      throw new ElfError(`Section ${name} has no file bytes (SHT_NOBITS)`, s.offset);
    }
    _range(this.bytes, s.offset, s.size, `section ${name}`);
    return this.bytes.subarray(s.offset, s.offset + s.size);
  }

  /**
   * Reads a symbol table (`.symtab` by default; `.dynsym` for the dynamic one).
   *
   * @param table Section name of the table.
   * @returns Every entry, including the null symbol 0; empty when the table is absent.
   * @throws {ElfError} When the table or its string table lies outside the image.
   */
  symbols(table = ".symtab"): ElfSymbol[] {
    const s = this.section(table);
    if (!s || (s.type !== SHT_SYMTAB && s.type !== SHT_DYNSYM)) return [];
    const strs = this.sections[s.link];
    if (!strs) {
      throw new ElfError(`Symbol table ${table} links to missing section ${s.link}`, s.offset);
    }
    _range(this.bytes, s.offset, s.size, `symbol table ${table}`);
    _range(this.bytes, strs.offset, strs.size, `string table ${strs.name}`);
    const ent = this.is64 ? 24 : 16;
    const n = Math.floor(s.size / ent);
    const v = this.#view;
    const out: ElfSymbol[] = new Array(n);
    for (let i = 0; i < n; i++) {
      const o = s.offset + i * ent;
      const nameOff = v.getUint32(o, true);
      let value: bigint, size: number, info: number, shndx: number;
      if (this.is64) {
        info = v.getUint8(o + 4);
        shndx = v.getUint16(o + 6, true);
        value = v.getBigUint64(o + 8, true);
        size = Number(v.getBigUint64(o + 16, true));
      } else {
        value = BigInt(v.getUint32(o + 4, true));
        size = v.getUint32(o + 8, true);
        info = v.getUint8(o + 12);
        shndx = v.getUint16(o + 14, true);
      }
      out[i] = {
        name: _cstr(this.bytes, strs.offset, strs.size, nameOff),
        value,
        size,
        type: info & 15,
        bind: info >> 4,
        shndx,
      };
    }
    return out;
  }
}

function _range(bytes: Uint8Array, offset: number, size: number, what: string): void {
  if (offset < 0 || size < 0 || offset + size > bytes.length) {
    throw new ElfError(
      `ELF ${what} at file offset 0x${offset.toString(16)} (+0x${size.toString(16)}) ` +
        `runs past the end of the ${bytes.length}-byte image`,
      offset,
    );
  }
}

function _cstr(bytes: Uint8Array, base: number, limit: number, off: number): string {
  if (off >= limit) return "";
  let e = base + off;
  const end = base + limit;
  while (e < end && bytes[e] !== 0) e++;
  return _utf8.decode(bytes.subarray(base + off, e));
}

/**
 * Parses the headers of a little-endian ELF32 or ELF64 image without copying it.
 *
 * @param bytes The whole file.
 * @returns The parsed image.
 * @throws {ElfError} For a non-ELF, big-endian or truncated image, or section headers
 *   outside the file (the message names the file offset).
 * @example Find the .text of an executable
 * ```ts ignore
 * import { parseElf } from "./elf.ts";
 * const elf = parseElf(Deno.readFileSync(Deno.execPath()));
 * const text = elf.sectionBytes(".text");
 * ```
 */
export function parseElf(bytes: Uint8Array): ElfFile {
  if (
    bytes.length < 16 || bytes[0] !== 0x7f || bytes[1] !== 0x45 || bytes[2] !== 0x4c ||
    bytes[3] !== 0x46
  ) {
    throw new ElfError("Not an ELF image: no \\x7fELF magic at file offset 0", 0);
  }
  const cls = bytes[4];
  if (cls !== 1 && cls !== 2) throw new ElfError(`Unknown ELF class ${cls} at file offset 4`, 4);
  if (bytes[5] !== 1) {
    throw new ElfError(`ELF image is not little-endian (EI_DATA ${bytes[5]} at file offset 5)`, 5);
  }
  const is64 = cls === 2;
  const ehsize = is64 ? 64 : 52;
  if (bytes.length < ehsize) {
    throw new ElfError(
      `Truncated ELF header: ${bytes.length} bytes, need ${ehsize} (file offset ${bytes.length})`,
      bytes.length,
    );
  }
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const type = v.getUint16(16, true);
  const machine = v.getUint16(18, true);
  const entry = is64 ? v.getBigUint64(24, true) : BigInt(v.getUint32(24, true));
  const shoff = is64 ? Number(v.getBigUint64(40, true)) : v.getUint32(32, true);
  const shentsize = v.getUint16(is64 ? 58 : 46, true);
  let shnum = v.getUint16(is64 ? 60 : 48, true);
  let shstrndx = v.getUint16(is64 ? 62 : 50, true);
  const sections: ElfSection[] = [];
  if (shoff !== 0) {
    const want = is64 ? 64 : 40;
    if (shentsize < want) {
      throw new ElfError(`ELF section header size ${shentsize} is below ${want}`, is64 ? 58 : 46);
    }
    _range(bytes, shoff, shentsize, "section header 0");
    // Extended numbering: counts too big for the header live in section 0.
    if (shnum === 0) {
      shnum = is64 ? Number(v.getBigUint64(shoff + 32, true)) : v.getUint32(shoff + 20, true);
    }
    if (shstrndx === 0xffff) shstrndx = v.getUint32(shoff + (is64 ? 40 : 24), true);
    _range(bytes, shoff, shnum * shentsize, "section header table");
    const raw: { nameOff: number; s: Omit<ElfSection, "name"> }[] = [];
    for (let i = 0; i < shnum; i++) {
      const o = shoff + i * shentsize;
      const nameOff = v.getUint32(o, true);
      const s = is64
        ? {
          index: i,
          type: v.getUint32(o + 4, true),
          flags: Number(v.getBigUint64(o + 8, true)),
          addr: v.getBigUint64(o + 16, true),
          offset: Number(v.getBigUint64(o + 24, true)),
          size: Number(v.getBigUint64(o + 32, true)),
          link: v.getUint32(o + 40, true),
          entsize: Number(v.getBigUint64(o + 56, true)),
        }
        : {
          index: i,
          type: v.getUint32(o + 4, true),
          flags: v.getUint32(o + 8, true),
          addr: BigInt(v.getUint32(o + 12, true)),
          offset: v.getUint32(o + 16, true),
          size: v.getUint32(o + 20, true),
          link: v.getUint32(o + 24, true),
          entsize: v.getUint32(o + 36, true),
        };
      raw.push({ nameOff, s });
    }
    const strs = raw[shstrndx]?.s;
    if (strs) _range(bytes, strs.offset, strs.size, "section-name string table");
    for (const { nameOff, s } of raw) {
      sections.push({ ...s, name: strs ? _cstr(bytes, strs.offset, strs.size, nameOff) : "" });
    }
  }
  return new ElfFile(bytes, is64, type, machine, entry, sections);
}
