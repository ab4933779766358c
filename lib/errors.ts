/**
 * The error classes every layer throws. One base class, {@link TextpokeError}, so a
 * caller can catch everything textpoke raises with one `instanceof`; subclasses say which
 * layer refused and carry the address or bytes involved.
 *
 * Emulated faults are not errors: a #UD, #GP or #PF inside the machine is delivered as the
 * architectural exception, and a run that cannot go on ends with a stop reason. These
 * classes are for misuse of the API and for input the library cannot accept.
 *
 * @module
 */

/** Base class of every error textpoke throws. */
export class TextpokeError extends Error {
  /**
   * Creates the error.
   *
   * @param message Sentence-case description naming the address or bytes involved.
   * @param options Standard `ErrorOptions` (a `cause`).
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** AT&T assembler text that cannot be assembled; carries the line and column. */
export class AssemblerError extends TextpokeError {
  /** 1-based line of the offending text. */
  readonly line: number;
  /** 1-based column of the offending text. */
  readonly column: number;
  /**
   * Creates the error at a source position.
   *
   * @param message What is wrong, without the position (it is prefixed).
   * @param line 1-based line.
   * @param column 1-based column.
   */
  constructor(message: string, line: number, column: number) {
    super(`line ${line}, column ${column}: ${message}`);
    this.line = line;
    this.column = column;
  }
}

/** A memory access from the host side (loading, reading, writing) that the machine cannot do. */
export class MemoryError extends TextpokeError {
  /** The address involved. */
  readonly address: bigint;
  /**
   * Creates the error for one address.
   *
   * @param message What is wrong, naming the address.
   * @param address The address involved.
   */
  constructor(message: string, address: bigint) {
    super(message);
    this.address = address;
  }
}

/** A machine configuration or request outside what the machine supports. */
export class MachineError extends TextpokeError {}

/** A patch request the kernel model refuses (wrong length, wrong bytes, bad batch). */
export class PatchError extends TextpokeError {
  /** The address of the site involved, when there is one. */
  readonly address: bigint | undefined;
  /**
   * Creates the error for one patch site.
   *
   * @param message What is wrong, naming the address and the bytes.
   * @param address The site involved.
   */
  constructor(message: string, address?: bigint) {
    super(message);
    this.address = address;
  }
}

/** Formats bytes as the kernel prints them: `e8 00 00 00 00`. */
export function hexBytes(bytes: ArrayLike<number>): string {
  let s = "";
  for (let i = 0; i < bytes.length; i++) {
    if (i) s += " ";
    s += (bytes[i]! & 0xff).toString(16).padStart(2, "0");
  }
  return s;
}

/** Formats an address as `0xffffffff81000000`. */
export function hexAddr(address: bigint | number): string {
  // A negative value is a signed 64-bit address (the machine's internal form).
  return "0x" + BigInt.asUintN(64, BigInt(address)).toString(16);
}

/** An ELF image that cannot be read: not ELF, truncated, or an offset out of range. */
export class ElfError extends TextpokeError {
  /** The file offset involved. */
  readonly offset: number;
  /**
   * Creates the error for the ELF bytes at `offset`.
   *
   * @param message What is wrong, naming the file offset.
   * @param offset The file offset involved.
   */
  constructor(message: string, offset: number) {
    super(message);
    this.offset = offset;
  }
}

/**
 * A kernel image (vmlinux, bzImage, System.map) that cannot be loaded or whose tables
 * do not hold what they say: names the file and, where there is one, the address or
 * symbol involved.
 */
export class ImageError extends TextpokeError {
  /** The file (or the name given for the bytes). */
  readonly file: string;
  /** The address involved, when there is one. */
  readonly address: bigint | undefined;
  /** The symbol involved, when there is one. */
  readonly symbol: string | undefined;
  /**
   * Creates the error; the message is prefixed with the file name.
   *
   * @param file The file.
   * @param message What is wrong, naming the address or symbol.
   * @param where The address and/or symbol involved, and a `cause`.
   */
  constructor(
    file: string,
    message: string,
    where: { address?: bigint; symbol?: string; cause?: unknown } = {},
  ) {
    super(`${file}: ${message}`, where.cause === undefined ? undefined : { cause: where.cause });
    this.file = file;
    this.address = where.address;
    this.symbol = where.symbol;
  }
}

/**
 * An ftrace request the model refuses before touching anything: an `ftrace_ops` name that
 * cannot be a symbol, a traced function that cannot be laid out as asked.
 */
export class FtraceError extends TextpokeError {}

/**
 * An experiment or proposal request the library cannot run: an unknown proposal,
 * scenario, architecture or fetch mode, or an option out of range. Names the value given
 * and, where the choices are few, the known ones.
 */
export class ExperimentError extends TextpokeError {}
