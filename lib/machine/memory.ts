/**
 * Emulated memory: 4 KiB pages mapping virtual pages to physical frames with
 * permissions, shared by every CPU of a machine.
 *
 * One virtual address space (no CR3): a virtual page maps to a physical frame with read,
 * write, execute and user bits, and the same frame can be mapped at several virtual
 * addresses with different permissions ({@link Memory.alias}: the kernel's writable alias
 * of read-only text used by text_poke). Frames are allocated when mapped, up to a total
 * limit.
 *
 * Addresses inside the machine are numbers (signed in 64-bit mode, see `lib/x86/state.ts`);
 * this host-side API speaks bigint (unsigned, `0xffffffff81000000n`).
 *
 * Host writes ({@link Memory.writeBytes}) ignore the W permission but need a mapping, and
 * tell the machine about writes that hit predecoded code ({@link Memory.onCodeWrite}).
 *
 * @module
 */

import { hexAddr, MachineError, MemoryError } from "../errors.ts";

/** Page size in bytes. */
export const PAGE_SIZE = 4096;

/** Permission bits of a page-table entry. */
export const Perm = {
  /** Readable (every mapped page is; x86 has no write-only or execute-only pages). */
  R: 1,
  /** Writable. */
  W: 2,
  /** Executable. */
  X: 4,
  /** Accessible from CPL 3. */
  U: 8,
} as const;

/** Page permissions as a string: readable, plus write and/or execute. */
export type PagePerms = "r" | "rw" | "rx" | "rwx";

/** Options of {@link Memory.map} and {@link Memory.alias}. */
export interface MapOptions {
  /** Accessible from CPL 3 (the page-table U/S bit). Default true. */
  user?: boolean;
}

/** Total frame budget of a machine when none is given: 256 MiB. */
export const DEFAULT_MEMORY_LIMIT = 256 * 1024 * 1024;

const TWO32 = 4294967296;
const CANON = 0x800000000000;

/**
 * A copy of `n` bytes of `frame` from `off` (a loop for the few bytes of an instruction,
 * which is cheaper than `slice`).
 * @param frame Source bytes.
 * @param off First byte.
 * @param n Number of bytes.
 * @returns The copy.
 */
export function copyOut(frame: Uint8Array, off: number, n: number): Uint8Array {
  if (n > 32) return frame.slice(off, off + n);
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = frame[off + i]!;
  return out;
}

/**
 * Parses a permission string.
 * @param perms One of {@link PagePerms}.
 * @param user The U/S bit.
 * @returns The {@link Perm} bits.
 */
function permBits(perms: string, user: boolean): number {
  let bits = 0;
  switch (perms) {
    case "r":
      bits = Perm.R;
      break;
    case "rw":
      bits = Perm.R | Perm.W;
      break;
    case "rx":
      bits = Perm.R | Perm.X;
      break;
    case "rwx":
      bits = Perm.R | Perm.W | Perm.X;
      break;
    default:
      throw new MachineError(
        `Page permissions must be "r", "rw", "rx" or "rwx", not ${JSON.stringify(perms)}`,
      );
  }
  return user ? bits | Perm.U : bits;
}

/**
 * The physical frames and the page table of one machine.
 *
 * @example Map, write, read back
 * ```ts
 * import { Memory } from "./memory.ts";
 * const mem = new Memory(64);
 * mem.map(0x1000n, 0x1000, "rw");
 * mem.write64(0x1008n, 0x1122334455667788n);
 * console.log(mem.read32(0x100cn).toString(16)); // "11223344"
 * ```
 */
export class Memory {
  /** Address width of the machine (64: canonical signed addresses; 32: [0, 2^32)). */
  readonly bitness: 32 | 64;
  /** Maximum bytes of frames. */
  readonly limit: number;
  /** Page table: virtual page number → frame * 16 + {@link Perm} bits. */
  readonly pages: Map<number, number> = new Map();
  /** Frame contents, indexed by frame number (undefined once freed). */
  readonly frames: (Uint8Array | undefined)[] = [];
  /** DataViews over {@link Memory.frames}. */
  readonly views: (DataView | undefined)[] = [];
  /**
   * Per frame: nonzero when some CPU holds predecoded instructions from it, so stores to it
   * must be reported through {@link Memory.onCodeWrite}.
   */
  codeFrames: Uint8Array;
  /** Number of virtual pages mapping each frame. */
  private refs: number[] = [];
  private freeList: number[] = [];
  private used = 0;
  /**
   * Called for every store (CPU or host) to a frame whose {@link Memory.codeFrames} flag is
   * set, before the bytes change (the SMP `torn` fetch model reads the old ones):
   * `writer` is the CPU index, -1 for the host. Set by the machine.
   */
  onCodeWrite: (frame: number, offset: number, length: number, writer: number) => void = () => {};
  /**
   * Bumped by every change of the page table (map, alias, protect, unmap): a cached
   * translation taken at the same value is still valid.
   */
  mappingGeneration = 0;
  /** Called after any change of the page table (CPUs flush their TLBs). Set by the machine. */
  onMappingChange: () => void = () => {};
  /** Called when a frame is freed (CPUs drop predecoded instructions of it). */
  onFrameFree: (frame: number) => void = () => {};

  /**
   * Creates an empty address space.
   * @param bitness Address width of the machine.
   * @param limit Maximum total bytes of frames (default {@link DEFAULT_MEMORY_LIMIT}).
   */
  constructor(bitness: 32 | 64, limit: number = DEFAULT_MEMORY_LIMIT) {
    if (!Number.isSafeInteger(limit) || limit < PAGE_SIZE) {
      throw new MachineError(`Memory limit must be at least ${PAGE_SIZE} bytes, not ${limit}`);
    }
    this.bitness = bitness;
    this.limit = limit;
    this.codeFrames = new Uint8Array(Math.min(Math.ceil(limit / PAGE_SIZE), 1 << 16));
  }

  /** Bytes of frames allocated now. */
  get usedBytes(): number {
    return this.used * PAGE_SIZE;
  }

  /**
   * Converts a host address to the machine's internal number.
   * @param address Unsigned address.
   * @returns The internal address (signed in 64-bit mode).
   */
  toNumber(address: bigint): number {
    if (this.bitness === 64) {
      if (address < 0n || address >= 1n << 64n) {
        throw new MemoryError(`Address ${address} is not a 64-bit address`, address);
      }
      const n = Number(BigInt.asIntN(64, address));
      if (n < -CANON || n >= CANON) {
        throw new MemoryError(`Address ${hexAddr(address)} is not canonical`, address);
      }
      return n;
    }
    if (address < 0n || address >= 1n << 32n) {
      throw new MemoryError(`Address ${hexAddr(address)} is outside 32-bit memory`, address);
    }
    return Number(address);
  }

  /**
   * Converts an internal address back to an unsigned bigint.
   * @param n Internal address.
   * @returns The unsigned address.
   */
  toBigInt(n: number): bigint {
    return this.bitness === 64 ? BigInt.asUintN(64, BigInt(n)) : BigInt(n >>> 0);
  }

  /** First and last virtual page numbers of a range, validated. */
  private pageRange(address: bigint, size: number): [number, number] {
    if (!Number.isSafeInteger(size) || size <= 0) {
      throw new MemoryError(
        `Size ${size} at ${hexAddr(address)} must be a positive integer`,
        address,
      );
    }
    const start = this.toNumber(address);
    const end = start + size;
    // 64-bit: refuse a range that runs into the non-canonical hole, or past the top of the
    // address space (0xffff_ffff_ffff_f000 + 0x2000 would wrap to 0x1000).
    if (
      this.bitness === 64 ? (end > CANON && start < CANON) || (start < 0 && end > 0) : end > TWO32
    ) {
      throw new MemoryError(
        `Range ${hexAddr(address)} + ${size} leaves the address space`,
        address,
      );
    }
    const first = Math.floor(start / PAGE_SIZE);
    const last = Math.floor((end - 1) / PAGE_SIZE);
    return [first, last];
  }

  /** Allocates a zeroed frame within the limit. */
  private allocFrame(address: bigint): number {
    if ((this.used + 1) * PAGE_SIZE > this.limit) {
      throw new MachineError(
        `Memory limit of ${this.limit} bytes exceeded while mapping ${hexAddr(address)}`,
      );
    }
    let f = this.freeList.pop();
    if (f === undefined) {
      f = this.frames.length;
      this.frames.push(undefined);
      this.views.push(undefined);
      this.refs.push(0);
    }
    const bytes = new Uint8Array(PAGE_SIZE);
    this.frames[f] = bytes;
    this.views[f] = new DataView(bytes.buffer);
    this.refs[f] = 0;
    if (f >= this.codeFrames.length) {
      const grown = new Uint8Array(Math.max(f + 1, this.codeFrames.length * 2));
      grown.set(this.codeFrames);
      this.codeFrames = grown;
    }
    this.codeFrames[f] = 0;
    this.used++;
    return f;
  }

  /**
   * Maps `size` bytes (rounded out to whole pages) at `address` to fresh zeroed frames.
   *
   * @param address Start address (any alignment; the page containing it is mapped).
   * @param size Bytes to cover.
   * @param perms Permissions.
   * @param options U/S bit.
   * @throws MemoryError when a page is already mapped or the range is invalid;
   *   MachineError when the memory limit would be exceeded (nothing is mapped then).
   */
  map(address: bigint, size: number, perms: PagePerms, options: MapOptions = {}): void {
    const bits = permBits(perms, options.user ?? true);
    const [first, last] = this.pageRange(address, size);
    for (let p = first; p <= last; p++) {
      if (this.pages.has(p)) {
        throw new MemoryError(`Page ${hexAddr(this.pageAddr(p))} is already mapped`, address);
      }
    }
    const count = last - first + 1;
    if ((this.used + count) * PAGE_SIZE > this.limit) {
      throw new MachineError(
        `Memory limit of ${this.limit} bytes exceeded: mapping ${count} pages at ${
          hexAddr(address)
        } needs ${(this.used + count) * PAGE_SIZE} bytes`,
      );
    }
    for (let p = first; p <= last; p++) {
      const f = this.allocFrame(address);
      this.refs[f] = 1;
      this.pages.set(p, f * 16 + bits);
    }
    this.mappingChanged();
  }

  /** Every page table change: bumps {@link Memory.mappingGeneration} and tells the machine. */
  private mappingChanged(): void {
    this.mappingGeneration++;
    this.onMappingChange();
  }

  /** Throws a MemoryError naming the first page of `first..last` that is not mapped. */
  private requireMapped(first: number, last: number, address: bigint): void {
    for (let p = first; p <= last; p++) {
      if (!this.pages.has(p)) {
        throw new MemoryError(`Page ${hexAddr(this.pageAddr(p))} is not mapped`, address);
      }
    }
  }

  /** The unsigned address of virtual page `p`. */
  private pageAddr(p: number): bigint {
    return this.toBigInt(p * PAGE_SIZE);
  }

  /**
   * Maps the frames behind `existing` a second time at `aliasAddress` (both page-aligned
   * ranges of `size` bytes), with their own permissions: stores through either address
   * change the same bytes.
   *
   * @param existing Mapped start address.
   * @param aliasAddress New virtual address (must be unmapped).
   * @param size Bytes to cover.
   * @param perms Permissions of the alias.
   * @param options U/S bit of the alias.
   * @throws MemoryError when `existing` is not mapped, the alias overlaps a mapping, or the
   *   two addresses have different offsets within a page.
   */
  alias(
    existing: bigint,
    aliasAddress: bigint,
    size: number,
    perms: PagePerms,
    options: MapOptions = {},
  ): void {
    const bits = permBits(perms, options.user ?? true);
    const src = this.toNumber(existing);
    const dst = this.toNumber(aliasAddress);
    if ((src % PAGE_SIZE + PAGE_SIZE) % PAGE_SIZE !== (dst % PAGE_SIZE + PAGE_SIZE) % PAGE_SIZE) {
      throw new MemoryError(
        `Alias ${hexAddr(aliasAddress)} must have the same page offset as ${hexAddr(existing)}`,
        aliasAddress,
      );
    }
    const [sFirst, sLast] = this.pageRange(existing, size);
    const [dFirst] = this.pageRange(aliasAddress, size);
    for (let i = 0; i <= sLast - sFirst; i++) {
      if (!this.pages.has(sFirst + i)) {
        throw new MemoryError(
          `Page ${hexAddr(this.pageAddr(sFirst + i))} is not mapped, so it cannot be aliased`,
          existing,
        );
      }
      if (this.pages.has(dFirst + i)) {
        throw new MemoryError(
          `Page ${hexAddr(this.pageAddr(dFirst + i))} is already mapped`,
          aliasAddress,
        );
      }
    }
    for (let i = 0; i <= sLast - sFirst; i++) {
      const f = Math.floor(this.pages.get(sFirst + i)! / 16);
      this.refs[f]!++;
      this.pages.set(dFirst + i, f * 16 + bits);
    }
    this.mappingChanged();
  }

  /**
   * Changes the permissions of mapped pages.
   *
   * @param address Start address.
   * @param size Bytes to cover.
   * @param perms New permissions.
   * @param options U/S bit.
   * @throws MemoryError when a page in the range is not mapped (nothing changes then).
   */
  protect(address: bigint, size: number, perms: PagePerms, options: MapOptions = {}): void {
    const bits = permBits(perms, options.user ?? true);
    const [first, last] = this.pageRange(address, size);
    this.requireMapped(first, last, address);
    for (let p = first; p <= last; p++) {
      const f = Math.floor(this.pages.get(p)! / 16);
      this.pages.set(p, f * 16 + bits);
    }
    this.mappingChanged();
  }

  /**
   * Unmaps pages; a frame is freed when its last mapping goes.
   *
   * @param address Start address.
   * @param size Bytes to cover.
   * @throws MemoryError when a page in the range is not mapped (nothing changes then).
   */
  unmap(address: bigint, size: number): void {
    const [first, last] = this.pageRange(address, size);
    this.requireMapped(first, last, address);
    for (let p = first; p <= last; p++) {
      const f = Math.floor(this.pages.get(p)! / 16);
      this.pages.delete(p);
      if (--this.refs[f]! === 0) {
        this.onFrameFree(f);
        this.frames[f] = undefined;
        this.views[f] = undefined;
        this.codeFrames[f] = 0;
        this.freeList.push(f);
        this.used--;
      }
    }
    this.mappingChanged();
  }

  /**
   * Whether `address` is mapped.
   * @param address Any address.
   * @returns True when its page is mapped.
   */
  isMapped(address: bigint): boolean {
    return this.pages.has(Math.floor(this.toNumber(address) / PAGE_SIZE));
  }

  /**
   * The page-table entry of the page holding internal address `a`, or undefined.
   * @param a Internal address.
   * @returns frame * 16 + {@link Perm} bits.
   */
  entry(a: number): number | undefined {
    return this.pages.get(Math.floor(a / PAGE_SIZE));
  }

  /** Internal address + k with wrap-around (32-bit) or canonical check (64-bit). */
  private step(a: number, k: number, address: bigint): number {
    const n = a + k;
    if (this.bitness === 32) return n % TWO32;
    if (n >= CANON) {
      throw new MemoryError(`Range at ${hexAddr(address)} runs past the canonical hole`, address);
    }
    return n;
  }

  /** Checks that [a, a+n) is mapped; returns the internal start. */
  private checkRange(address: bigint, n: number): number {
    if (!Number.isSafeInteger(n) || n < 0) {
      throw new MemoryError(`Length ${n} at ${hexAddr(address)} is not valid`, address);
    }
    const a = this.toNumber(address);
    for (let k = 0; k < n;) {
      const x = this.step(a, k, address);
      if (this.entry(x) === undefined) {
        throw new MemoryError(
          `Address ${hexAddr(this.toBigInt(x))} is not mapped`,
          this.toBigInt(x),
        );
      }
      k += PAGE_SIZE - ((x % PAGE_SIZE) + PAGE_SIZE) % PAGE_SIZE;
    }
    return a;
  }

  /**
   * Reads bytes from the host side (permissions ignored, mapping required).
   * @param address Start address.
   * @param n Number of bytes.
   * @returns A copy of the bytes.
   * @throws MemoryError naming the first unmapped address.
   */
  readBytes(address: bigint, n: number): Uint8Array {
    const a = this.checkRange(address, n);
    const out = new Uint8Array(n);
    for (let k = 0; k < n; k++) {
      const x = this.step(a, k, address);
      const e = this.entry(x)!;
      out[k] = this.frames[Math.floor(e / 16)]![((x % PAGE_SIZE) + PAGE_SIZE) % PAGE_SIZE]!;
    }
    return out;
  }

  /**
   * Writes bytes from the host side: ignores the W permission but needs a mapping;
   * reports stores to predecoded code so CPUs re-decode.
   * @param address Start address.
   * @param bytes The bytes.
   * @throws MemoryError naming the first unmapped address (nothing is written then).
   */
  writeBytes(address: bigint, bytes: ArrayLike<number>): void {
    const n = bytes.length;
    const a = this.checkRange(address, n);
    const whole = bytes instanceof Uint8Array;
    let k = 0;
    while (k < n) {
      const x = this.step(a, k, address);
      const f = Math.floor(this.entry(x)! / 16);
      const off = ((x % PAGE_SIZE) + PAGE_SIZE) % PAGE_SIZE;
      const chunk = Math.min(n - k, PAGE_SIZE - off);
      const frame = this.frames[f]!;
      // Reported before the bytes land: the torn fetch model reads the old ones.
      if (this.codeFrames[f] !== 0) this.onCodeWrite(f, off, chunk, -1);
      if (whole) frame.set(chunk === n ? bytes : bytes.subarray(k, k + chunk), off);
      else for (let i = 0; i < chunk; i++) frame[off + i] = bytes[k + i]! & 0xff;
      k += chunk;
    }
  }

  /**
   * {@link Memory.readBytes} at an internal address (the machine's number form): the
   * same result and errors, without a bigint when the range sits in one page.
   * @param a Internal address.
   * @param n Number of bytes.
   * @returns A copy of the bytes.
   * @throws MemoryError naming the first unmapped address.
   */
  readBytesAt(a: number, n: number): Uint8Array {
    const page = Math.floor(a / PAGE_SIZE);
    const off = a - page * PAGE_SIZE;
    const e = n > 0 && off + n <= PAGE_SIZE ? this.pages.get(page) : undefined;
    if (e === undefined) return this.readBytes(this.toBigInt(a), n);
    return copyOut(this.frames[Math.floor(e / 16)]!, off, n);
  }

  /**
   * {@link Memory.writeBytes} at an internal address (the machine's number form): the
   * same effect, errors and code-write reports (before the bytes land), without a bigint
   * and with one bulk copy when the range sits in one page.
   * @param a Internal address.
   * @param bytes The bytes.
   * @throws MemoryError naming the first unmapped address (nothing is written then).
   */
  writeBytesAt(a: number, bytes: ArrayLike<number>): void {
    const n = bytes.length;
    const page = Math.floor(a / PAGE_SIZE);
    const off = a - page * PAGE_SIZE;
    const e = n > 0 && off + n <= PAGE_SIZE ? this.pages.get(page) : undefined;
    if (e === undefined || !(bytes instanceof Uint8Array)) {
      this.writeBytes(this.toBigInt(a), bytes);
      return;
    }
    const f = Math.floor(e / 16);
    if (this.codeFrames[f] !== 0) this.onCodeWrite(f, off, n, -1);
    const frame = this.frames[f]!;
    // A loop beats set() on the few bytes of an instruction.
    if (n <= 16) { for (let i = 0; i < n; i++) frame[off + i] = bytes[i]!; }
    else frame.set(bytes, off);
  }

  /** Host little-endian read of n bytes. */
  private readN(address: bigint, n: number): bigint {
    const b = this.readBytes(address, n);
    let v = 0n;
    for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]!);
    return v;
  }

  /** Host little-endian write of n bytes. */
  private writeN(address: bigint, n: number, value: bigint): void {
    const b = new Uint8Array(n);
    let v = BigInt.asUintN(n * 8, value);
    for (let i = 0; i < n; i++) {
      b[i] = Number(v & 0xffn);
      v >>= 8n;
    }
    this.writeBytes(address, b);
  }

  /** Host read of a byte. @param address Address. @returns The value. */
  read8(address: bigint): bigint {
    return this.readN(address, 1);
  }
  /** Host read of 2 bytes. @param address Address. @returns The value. */
  read16(address: bigint): bigint {
    return this.readN(address, 2);
  }
  /** Host read of 4 bytes. @param address Address. @returns The value. */
  read32(address: bigint): bigint {
    return this.readN(address, 4);
  }
  /** Host read of 8 bytes. @param address Address. @returns The value (unsigned). */
  read64(address: bigint): bigint {
    return this.readN(address, 8);
  }
  /** Host write of a byte. @param address Address. @param value Value (truncated). */
  write8(address: bigint, value: bigint): void {
    this.writeN(address, 1, value);
  }
  /** Host write of 2 bytes. @param address Address. @param value Value (truncated). */
  write16(address: bigint, value: bigint): void {
    this.writeN(address, 2, value);
  }
  /** Host write of 4 bytes. @param address Address. @param value Value (truncated). */
  write32(address: bigint, value: bigint): void {
    this.writeN(address, 4, value);
  }
  /** Host write of 8 bytes. @param address Address. @param value Value (truncated). */
  write64(address: bigint, value: bigint): void {
    this.writeN(address, 8, value);
  }
}
