/**
 * The x86 boot protocol header of a bzImage (`Documentation/x86/boot.rst`) and its
 * compressed payload: the protected-mode part starts at `(setup_sects + 1) * 512`, the
 * payload at `payload_offset` from there, `payload_length` bytes long, compressed with
 * whatever its magic names. Only LZ4 (Debian's choice) is decompressed here.
 *
 * @module
 */

import { hexBytes, ImageError } from "../errors.ts";
import { lz4LegacyDecompress } from "./lz4.ts";

/** The compressions a bzImage payload can use, by their magic. */
export type BzCompression = "gzip" | "bzip2" | "lzma" | "xz" | "lzo" | "lz4" | "zstd" | "unknown";

/** The parts of a bzImage header this package reads. */
export interface BzImageInfo {
  /** Boot protocol version, e.g. `0x20f`. */
  readonly protocol: number;
  /** The header's kernel version string. */
  readonly version: string;
  /** File offset of the payload. */
  readonly payloadOffset: number;
  /** Payload length in bytes. */
  readonly payloadLength: number;
  /** Compression named by the payload's magic. */
  readonly compression: BzCompression;
}

/**
 * Is this a bzImage (boot flag `55 aa` at 0x1fe and `HdrS` at 0x202)?
 *
 * @param bytes The file.
 * @returns True for a bzImage header.
 */
export function isBzImage(bytes: Uint8Array): boolean {
  return bytes.length >= 0x250 && bytes[0x1fe] === 0x55 && bytes[0x1ff] === 0xaa &&
    bytes[0x202] === 0x48 && bytes[0x203] === 0x64 && bytes[0x204] === 0x72 &&
    bytes[0x205] === 0x53;
}

function compressionOf(p: Uint8Array): BzCompression {
  const b = (i: number) => p[i] ?? -1;
  if (b(0) === 0x1f && (b(1) === 0x8b || b(1) === 0x9e)) return "gzip";
  if (b(0) === 0x42 && b(1) === 0x5a && b(2) === 0x68) return "bzip2";
  if (b(0) === 0x5d && b(1) === 0x00 && b(2) === 0x00) return "lzma";
  if (b(0) === 0xfd && b(1) === 0x37 && b(2) === 0x7a && b(3) === 0x58) return "xz";
  if (b(0) === 0x89 && b(1) === 0x4c && b(2) === 0x5a && b(3) === 0x4f) return "lzo";
  if (b(0) === 0x02 && b(1) === 0x21 && b(2) === 0x4c && b(3) === 0x18) return "lz4";
  if (b(0) === 0x28 && b(1) === 0xb5 && b(2) === 0x2f && b(3) === 0xfd) return "zstd";
  return "unknown";
}

/**
 * Reads a bzImage's header.
 *
 * @param bytes The file.
 * @param file A name for messages.
 * @returns The header fields.
 * @throws {ImageError} When the header is missing, too old (protocol < 2.08 has no
 *   payload fields) or names a payload outside the file.
 */
export function bzImageInfo(bytes: Uint8Array, file: string): BzImageInfo {
  if (!isBzImage(bytes)) throw new ImageError(file, 'not a bzImage: no "HdrS" at offset 0x202');
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const protocol = v.getUint16(0x206, true);
  if (protocol < 0x208) {
    throw new ImageError(
      file,
      `boot protocol 0x${protocol.toString(16)} has no payload_offset (needs 2.08)`,
    );
  }
  const setupSects = bytes[0x1f1] || 4;
  const pm = (setupSects + 1) * 512;
  const payloadOffset = pm + v.getUint32(0x248, true);
  const payloadLength = v.getUint32(0x24c, true);
  if (payloadOffset + payloadLength > bytes.length || payloadLength < 8) {
    throw new ImageError(
      file,
      `payload at file offset 0x${payloadOffset.toString(16)} (+0x${
        payloadLength.toString(16)
      }) runs past the end of the ${bytes.length}-byte file (truncated image?)`,
    );
  }
  let version = "";
  const kv = v.getUint16(0x20e, true);
  if (kv !== 0 && kv + 0x200 < bytes.length) {
    let e = kv + 0x200;
    while (e < bytes.length && bytes[e] !== 0 && e - kv < 0x400) e++;
    version = new TextDecoder().decode(bytes.subarray(kv + 0x200, e));
  }
  const payload = bytes.subarray(payloadOffset, payloadOffset + payloadLength);
  return { protocol, version, payloadOffset, payloadLength, compression: compressionOf(payload) };
}

/**
 * Extracts the vmlinux ELF from a bzImage (LZ4 payloads only).
 *
 * @param bytes The file.
 * @param file A name for messages.
 * @returns The header fields and the decompressed vmlinux.
 * @throws {ImageError} For a header problem, a compression other than LZ4, or a corrupt
 *   or truncated payload.
 * @example
 * ```ts ignore
 * const { vmlinux } = extractBzImage(Deno.readFileSync("/boot/vmlinuz"), "/boot/vmlinuz");
 * ```
 */
export function extractBzImage(
  bytes: Uint8Array,
  file: string,
): BzImageInfo & { readonly vmlinux: Uint8Array } {
  const info = bzImageInfo(bytes, file);
  const payload = bytes.subarray(info.payloadOffset, info.payloadOffset + info.payloadLength);
  if (info.compression !== "lz4") {
    throw new ImageError(
      file,
      `payload compressed with ${info.compression} (starts ${
        hexBytes(payload.subarray(0, 4))
      }); only LZ4 (CONFIG_KERNEL_LZ4, Debian's) is supported`,
    );
  }
  // The build appends the decompressed size (scripts/Makefile.lib: size_append).
  const pv = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  const size = pv.getUint32(payload.length - 4, true);
  const vmlinux = lz4LegacyDecompress(payload.subarray(0, payload.length - 4), size, file);
  return { ...info, vmlinux };
}
