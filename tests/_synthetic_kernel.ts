/**
 * A tiny synthetic vmlinux (and bzImage) with everything `loadKernelImage` reads: a
 * `.text` with `__fentry__`, three traced functions, a static_call trampoline with a call
 * site and a tail-call site, a 32-bit label, VEX/EVEX instructions and int3 padding; an
 * `.init.text` function; `__mcount_loc` in `.init.data`; `.static_call_sites` in
 * `.rodata`; the key in `.data`; `.symtab`. Knobs break one thing at a time.
 */

export const TEXT = 0xffffffff81000000n;
export const RODATA = 0xffffffff82000000n;
export const DATA = 0xffffffff82400000n;
export const INIT_TEXT = 0xffffffff82800000n;
export const INIT_DATA = 0xffffffff82900000n;

/** Offsets in .text. */
export const OFF = {
  fentry: 0x00,
  funcA: 0x40,
  funcB: 0x80,
  funcC: 0xc0,
  tramp: 0x100,
  vex: 0x140,
  start32: 0x180,
  /** A function 60 bytes into its line: its fentry rel32 straddles the line. */
  funcD: 0x1fc,
  end: 0x400,
} as const;

export interface SynthOptions {
  /** Symbols to leave out. */
  omit?: string[];
  /** Replace mcount entry i with this address. */
  mcount?: { index: number; address: bigint };
  /** Bytes to write at a .text offset after building the code. */
  patchText?: { offset: number; bytes: number[] };
  /** Drop `.symtab` (and `.strtab`). */
  noSymtab?: boolean;
}

function rel32(bytes: Uint8Array, at: number, from: bigint, to: bigint): void {
  const d = Number(BigInt.asIntN(32, to - (from + 5n)));
  new DataView(bytes.buffer).setInt32(at, d, true);
}

function call(text: Uint8Array, off: number, op: number, to: bigint, base = TEXT): void {
  text[off] = op;
  rel32(text, off + 1, base + BigInt(off), to);
}

interface Sym {
  name: string;
  value: bigint;
  size: number;
  type: number; // 0 NOTYPE, 1 OBJECT, 2 FUNC
  shndx: number;
}

/** Builds the synthetic vmlinux. */
export function syntheticVmlinux(o: SynthOptions = {}): Uint8Array {
  const text = new Uint8Array(OFF.end).fill(0xcc);
  const fentry = TEXT + BigInt(OFF.fentry);
  const tramp = TEXT + BigInt(OFF.tramp);
  text[OFF.fentry] = 0xc3;
  // func_a: call __fentry__; xor %eax,%eax; ret
  call(text, OFF.funcA, 0xe8, fentry);
  text.set([0x31, 0xc0, 0xc3], OFF.funcA + 5);
  // func_b: call __fentry__; call __SCT__foo; ret
  call(text, OFF.funcB, 0xe8, fentry);
  call(text, OFF.funcB + 5, 0xe8, tramp);
  text[OFF.funcB + 10] = 0xc3;
  // func_c: call __fentry__; jmp __SCT__foo (tail call)
  call(text, OFF.funcC, 0xe8, fentry);
  call(text, OFF.funcC + 5, 0xe9, tramp);
  // __SCT__foo: jmp func_a; ud1
  call(text, OFF.tramp, 0xe9, TEXT + BigInt(OFF.funcA));
  text.set([0x0f, 0xb9, 0xcc], OFF.tramp + 5);
  // VEX shlx, EVEX vmovups, ret
  text.set([0xc4, 0xe2, 0xf9, 0xf7, 0xc0, 0x62, 0xf1, 0x7c, 0x48, 0x10, 0x00, 0xc3], OFF.vex);
  // start32: ljmp $0x10,$0x1000 (32-bit code; invalid in 64-bit mode)
  text.set([0xea, 0x00, 0x10, 0x00, 0x00, 0x10, 0x00], OFF.start32);
  // func_d: call __fentry__; ret (60 bytes into its 64-byte line)
  call(text, OFF.funcD, 0xe8, fentry);
  text[OFF.funcD + 5] = 0xc3;
  if (o.patchText) text.set(o.patchText.bytes, o.patchText.offset);

  const initText = new Uint8Array(0x40).fill(0xcc);
  call(initText, 0, 0xe8, fentry, INIT_TEXT);
  initText[5] = 0xc3;

  const banner = new TextEncoder().encode("Linux version 9.9.9-synthetic (test) #1 SMP\n\0");
  const rodata = new Uint8Array(0x100);
  rodata.set(banner, 0);
  // .static_call_sites at +0x80: {addr, key} self-relative, TAIL flag on the second.
  const scAt = 0x80;
  const rv = new DataView(rodata.buffer);
  const keyAddr = DATA;
  const sites: [bigint, number][] = [[TEXT + BigInt(OFF.funcB + 5), 0], [
    TEXT + BigInt(OFF.funcC + 5),
    1,
  ]];
  sites.forEach(([site, flags], i) => {
    const entry = RODATA + BigInt(scAt + 8 * i);
    rv.setInt32(scAt + 8 * i, Number(site - entry), true);
    rv.setInt32(scAt + 8 * i + 4, Number(keyAddr + BigInt(flags) - (entry + 4n)), true);
  });
  const data = new Uint8Array(0x40);
  new DataView(data.buffer).setBigUint64(0, TEXT + BigInt(OFF.funcA), true);

  const mcount = [
    TEXT + BigInt(OFF.funcA),
    TEXT + BigInt(OFF.funcB),
    TEXT + BigInt(OFF.funcC),
    TEXT + BigInt(OFF.funcD),
    INIT_TEXT,
  ];
  if (o.mcount) mcount[o.mcount.index] = o.mcount.address;
  const initData = new Uint8Array(0x40);
  mcount.forEach((a, i) => new DataView(initData.buffer).setBigUint64(i * 8, a, true));

  // Section indexes: 1 .text 2 .rodata 3 .data 4 .init.text 5 .init.data 6 .symtab 7 .strtab 8 .shstrtab
  let syms: Sym[] = [
    { name: "_stext", value: TEXT, size: 0, type: 0, shndx: 1 },
    { name: "__fentry__", value: fentry, size: 1, type: 2, shndx: 1 },
    { name: "func_a", value: TEXT + BigInt(OFF.funcA), size: 8, type: 2, shndx: 1 },
    { name: "func_b", value: TEXT + BigInt(OFF.funcB), size: 11, type: 2, shndx: 1 },
    { name: "func_c", value: TEXT + BigInt(OFF.funcC), size: 10, type: 2, shndx: 1 },
    { name: "__SCT__foo", value: tramp, size: 8, type: 2, shndx: 1 },
    { name: "vex_fn", value: TEXT + BigInt(OFF.vex), size: 12, type: 2, shndx: 1 },
    { name: "start32", value: TEXT + BigInt(OFF.start32), size: 7, type: 0, shndx: 1 },
    { name: "func_d", value: TEXT + BigInt(OFF.funcD), size: 6, type: 2, shndx: 1 },
    { name: "init_fn", value: INIT_TEXT, size: 6, type: 2, shndx: 4 },
    { name: "linux_banner", value: RODATA, size: banner.length, type: 1, shndx: 2 },
    { name: "__start_static_call_sites", value: RODATA + BigInt(scAt), size: 0, type: 0, shndx: 2 },
    {
      name: "__stop_static_call_sites",
      value: RODATA + BigInt(scAt + 16),
      size: 0,
      type: 0,
      shndx: 2,
    },
    { name: "__SCK__foo", value: keyAddr, size: 16, type: 1, shndx: 3 },
    { name: "__start_mcount_loc", value: INIT_DATA, size: 0, type: 0, shndx: 5 },
    { name: "__stop_mcount_loc", value: INIT_DATA + 40n, size: 0, type: 0, shndx: 5 },
  ];
  if (o.omit) syms = syms.filter((s) => !o.omit!.includes(s.name));

  const strtab: number[] = [0];
  const symtab = new Uint8Array(24 * (syms.length + 1));
  const sv = new DataView(symtab.buffer);
  syms.forEach((s, i) => {
    const at = 24 * (i + 1);
    sv.setUint32(at, strtab.length, true);
    strtab.push(...new TextEncoder().encode(s.name), 0);
    sv.setUint8(at + 4, (1 << 4) | s.type);
    sv.setUint16(at + 6, s.shndx, true);
    sv.setBigUint64(at + 8, s.value, true);
    sv.setBigUint64(at + 16, BigInt(s.size), true);
  });
  const names = [
    ".text",
    ".rodata",
    ".data",
    ".init.text",
    ".init.data",
    ".symtab",
    ".strtab",
    ".shstrtab",
  ];
  const shstr: number[] = [0];
  const nameOff = names.map((n) => {
    const off = shstr.length;
    shstr.push(...new TextEncoder().encode(n), 0);
    return off;
  });
  const bodies: {
    data: Uint8Array;
    addr: bigint;
    type: number;
    flags: number;
    link: number;
    entsize: number;
  }[] = [
    { data: text, addr: TEXT, type: 1, flags: 6, link: 0, entsize: 0 },
    { data: rodata, addr: RODATA, type: 1, flags: 2, link: 0, entsize: 0 },
    { data: data, addr: DATA, type: 1, flags: 3, link: 0, entsize: 0 },
    { data: initText, addr: INIT_TEXT, type: 1, flags: 6, link: 0, entsize: 0 },
    { data: initData, addr: INIT_DATA, type: 1, flags: 3, link: 0, entsize: 0 },
    { data: symtab, addr: 0n, type: o.noSymtab ? 1 : 2, flags: 0, link: 7, entsize: 24 },
    { data: Uint8Array.from(strtab), addr: 0n, type: 3, flags: 0, link: 0, entsize: 0 },
    { data: Uint8Array.from(shstr), addr: 0n, type: 3, flags: 0, link: 0, entsize: 0 },
  ];
  let off = 64;
  const offsets = bodies.map((b) => {
    off = (off + 15) & ~15;
    const at = off;
    off += b.data.length;
    return at;
  });
  const shoff = (off + 7) & ~7;
  const total = shoff + 64 * (bodies.length + 1);
  const out = new Uint8Array(total);
  const v = new DataView(out.buffer);
  out.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1], 0);
  v.setUint16(16, 2, true);
  v.setUint16(18, 62, true);
  v.setUint32(20, 1, true);
  v.setBigUint64(24, TEXT, true);
  v.setBigUint64(40, BigInt(shoff), true);
  v.setUint16(52, 64, true);
  v.setUint16(58, 64, true);
  v.setUint16(60, bodies.length + 1, true);
  v.setUint16(62, 8, true);
  bodies.forEach((b, i) => {
    out.set(b.data, offsets[i]!);
    const h = shoff + 64 * (i + 1);
    v.setUint32(h, nameOff[i]!, true);
    v.setUint32(h + 4, b.type, true);
    v.setBigUint64(h + 8, BigInt(b.flags), true);
    v.setBigUint64(h + 16, b.addr, true);
    v.setBigUint64(h + 24, BigInt(offsets[i]!), true);
    v.setBigUint64(h + 32, BigInt(b.data.length), true);
    v.setUint32(h + 40, b.link, true);
    v.setBigUint64(h + 48, 16n, true);
    v.setBigUint64(h + 56, BigInt(b.entsize), true);
  });
  return out;
}

/** An LZ4 block of literals only (valid LZ4: a last sequence with no match). */
export function lz4LiteralBlock(data: Uint8Array): Uint8Array {
  const head: number[] = [];
  const n = data.length;
  if (n < 15) head.push(n << 4);
  else {
    head.push(0xf0);
    let r = n - 15;
    while (r >= 255) {
      head.push(255);
      r -= 255;
    }
    head.push(r);
  }
  const out = new Uint8Array(head.length + n);
  out.set(head, 0);
  out.set(data, head.length);
  return out;
}

/** A bzImage around `payload` (already compressed, size trailer included). */
export function syntheticBzImage(payload: Uint8Array, version = "9.9.9-synthetic"): Uint8Array {
  const setupSects = 1;
  const pm = (setupSects + 1) * 512;
  const out = new Uint8Array(pm + 16 + payload.length);
  const v = new DataView(out.buffer);
  out[0x1f1] = setupSects;
  out[0x1fe] = 0x55;
  out[0x1ff] = 0xaa;
  out.set([0x48, 0x64, 0x72, 0x53], 0x202);
  v.setUint16(0x206, 0x20f, true);
  const vs = new TextEncoder().encode(version + "\0");
  out.set(vs, 0x300);
  v.setUint16(0x20e, 0x300 - 0x200, true);
  v.setUint32(0x248, 16, true);
  v.setUint32(0x24c, payload.length, true);
  out.set(payload, pm + 16);
  return out;
}

/** An LZ4 legacy frame of `data` (literal blocks of at most 8 MiB) plus the size trailer. */
export function lz4LegacyPayload(data: Uint8Array): Uint8Array {
  const parts: Uint8Array[] = [Uint8Array.of(0x02, 0x21, 0x4c, 0x18)];
  for (let o = 0; o < data.length; o += 8 << 20) {
    const block = lz4LiteralBlock(data.subarray(o, Math.min(data.length, o + (8 << 20))));
    const size = new Uint8Array(4);
    new DataView(size.buffer).setUint32(0, block.length, true);
    parts.push(size, block);
  }
  const trailer = new Uint8Array(4);
  new DataView(trailer.buffer).setUint32(0, data.length, true);
  parts.push(trailer);
  const n = parts.reduce((a, p) => a + p.length, 0);
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** A System.map for the synthetic kernel's symbols (text ones as `T`/`t`). */
export function syntheticSystemMap(): string {
  return [
    `${TEXT.toString(16)} T _stext`,
    `${TEXT.toString(16)} T __fentry__`,
    `${(TEXT + BigInt(OFF.funcA)).toString(16)} T func_a`,
    `${(TEXT + BigInt(OFF.funcB)).toString(16)} t func_b`,
    `${(TEXT + BigInt(OFF.funcC)).toString(16)} t func_c`,
    `${(TEXT + BigInt(OFF.tramp)).toString(16)} T __SCT__foo`,
    `${(TEXT + BigInt(OFF.vex)).toString(16)} t vex_fn`,
    `${(TEXT + BigInt(OFF.start32)).toString(16)} t start32`,
    `${(TEXT + BigInt(OFF.funcD)).toString(16)} t func_d`,
    `${RODATA.toString(16)} R linux_banner`,
    `${(RODATA + 0x80n).toString(16)} R __start_static_call_sites`,
    `${(RODATA + 0x90n).toString(16)} R __stop_static_call_sites`,
    `${DATA.toString(16)} D __SCK__foo`,
    `${INIT_TEXT.toString(16)} T init_fn`,
    `${INIT_DATA.toString(16)} D __start_mcount_loc`,
    `${(INIT_DATA + 40n).toString(16)} D __stop_mcount_loc`,
  ].join("\n") + "\n";
}
