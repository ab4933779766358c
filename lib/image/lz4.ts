/**
 * LZ4 "legacy" frames, the format of a bzImage built with CONFIG_KERNEL_LZ4 (`lz4 -l`):
 * the magic `02 21 4c 18`, then blocks of a little-endian u32 compressed size and that
 * many bytes of LZ4 block data, each decompressing to at most 8 MiB; the kernel build
 * appends the decompressed size as a u32 (`size_append`). The LZ4 block format itself is
 * decoded by the `lz4js` package (npm).
 *
 * @module
 */

import { decompressBlock } from "lz4js";
import { ImageError } from "../errors.ts";

/** Magic of an LZ4 legacy frame (`0x184c2102`, little-endian). */
export const LZ4_LEGACY_MAGIC = 0x184c2102;
/** Largest decompressed block of a legacy frame. */
export const LZ4_LEGACY_BLOCK = 8 * 1024 * 1024;

/**
 * Decompresses an LZ4 legacy frame (possibly several concatenated, as the kernel's
 * `unlz4` accepts).
 *
 * @param src The frame.
 * @param size The decompressed size if known (the kernel's trailing u32); the output is
 *   cut to it.
 * @param file A name for messages.
 * @returns The decompressed bytes.
 * @throws {ImageError} For a missing magic, a block running past the input, or output
 *   that is not `size` bytes long.
 * @example
 * ```ts ignore
 * const vmlinux = lz4LegacyDecompress(payload, trailingSize, "vmlinuz");
 * ```
 */
export function lz4LegacyDecompress(
  src: Uint8Array,
  size: number | undefined,
  file: string,
): Uint8Array {
  const v = new DataView(src.buffer, src.byteOffset, src.byteLength);
  if (src.length < 4 || v.getUint32(0, true) !== LZ4_LEGACY_MAGIC) {
    throw new ImageError(file, "LZ4 payload does not start with the legacy magic 02 21 4c 18");
  }
  const cap = size ?? src.length * 8;
  const out = new Uint8Array(cap + LZ4_LEGACY_BLOCK);
  let p = 4;
  let o = 0;
  while (p + 4 <= src.length && o < cap) {
    const n = v.getUint32(p, true);
    if (n === LZ4_LEGACY_MAGIC) {
      p += 4;
      continue;
    }
    p += 4;
    if (n === 0 || p + n > src.length) {
      if (size !== undefined && o >= size) break;
      throw new ImageError(
        file,
        `LZ4 block at payload offset 0x${(p - 4).toString(16)} claims ${n} bytes, but ${
          src.length - p
        } remain (truncated image?)`,
      );
    }
    // lz4js writes past the end of a typed array silently: leave a whole block of room.
    const end = decompressBlock(src, out, p, n, o) as number;
    if (end - o > LZ4_LEGACY_BLOCK || end < o) {
      throw new ImageError(
        file,
        `LZ4 block at payload offset 0x${(p - 4).toString(16)} is corrupt`,
      );
    }
    o = end;
    p += n;
  }
  if (size !== undefined && o !== size) {
    throw new ImageError(
      file,
      `LZ4 payload decompressed to ${o} bytes, but the image says ${size} (truncated image?)`,
    );
  }
  return out.subarray(0, o);
}
