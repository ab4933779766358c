// The instruction corpus shared by the GNU as oracle test and the round-trip test:
// every mnemonic x operand form x size x register/memory variant the assembler supports.

import { Cond } from "../lib/x86/insn.ts";

/** The 16 condition suffixes in encoding order ("o", "no", "b", …). */
const CONDS = Object.keys(Cond).map((k) => k.toLowerCase());

/** Builds the corpus of one-line statements for a mode. */
export function corpus(bits: 32 | 64): string[] {
  const out: string[] = [];
  const R: Record<number, string[]> = bits === 64
    ? {
      1: ["%al", "%cl", "%bl", "%ah", "%sil", "%r8b", "%r15b"],
      2: ["%ax", "%cx", "%sp", "%r9w"],
      4: ["%eax", "%ecx", "%esp", "%ebp", "%r8d", "%r12d", "%r13d"],
      8: ["%rax", "%rcx", "%rsp", "%rbp", "%r8", "%r12", "%r13", "%r15"],
    }
    : {
      1: ["%al", "%cl", "%bl", "%ah", "%dh"],
      2: ["%ax", "%cx", "%sp", "%di"],
      4: ["%eax", "%ecx", "%esp", "%ebp", "%esi", "%edi"],
      8: [],
    };
  const M = bits === 64
    ? [
      "(%rax)",
      "(%rsp)",
      "(%rbp)",
      "(%r12)",
      "(%r13)",
      "8(%rsp)",
      "-8(%rbp)",
      "0x80(%rax)",
      "-0x81(%r13)",
      "0x12345678(%rbx,%rcx,4)",
      "(%rax,%r9,8)",
      "0x10(,%rdx,2)",
      "0x1000",
      "0x1234(%rip)",
      "%fs:0x28",
      "%gs:(%rax)",
      "%ss:(%rbp)",
      "%ds:(%rsp)",
      "(%eax)",
      "0(%rcx)",
    ]
    : [
      "(%eax)",
      "(%esp)",
      "(%ebp)",
      "8(%esp)",
      "-8(%ebp)",
      "0x80(%eax)",
      "0x12345678(%ebx,%ecx,4)",
      "0x10(,%edx,2)",
      "0x1000",
      "%fs:0x28",
      "%es:(%edi)",
    ];
  const sizes = (bits === 64 ? [1, 2, 4, 8] : [1, 2, 4]) as number[];
  const sfx: Record<number, string> = { 1: "b", 2: "w", 4: "l", 8: "q" };
  const imms = (sz: number) =>
    sz === 1
      ? ["$1", "$0x7f", "$-1", "$0xff"]
      : ["$1", "$-128", "$127", "$128", "$0x1234", "$-1", sz === 2 ? "$0xffff" : "$0x12345678"];
  for (const op of ["add", "or", "adc", "sbb", "and", "sub", "xor", "cmp", "test"]) {
    for (const sz of sizes) {
      for (const r of R[sz]!) {
        for (const r2 of R[sz]!.slice(0, 3)) {
          if (
            !(r.includes("ah") && /r\d|sil/.test(r2)) && !(r2.includes("ah") && /r\d|sil/.test(r))
          ) out.push(`${op} ${r2},${r}`);
        }
        for (const i of imms(sz)) out.push(`${op}${sfx[sz]} ${i},${r}`);
      }
      for (const m of M) {
        out.push(`${op}${sfx[sz]} $3,${m}`);
        out.push(`${op} ${R[sz]![1]},${m}`);
        if (op !== "test") out.push(`${op} ${m},${R[sz]![0]}`);
      }
      if (sz > 1) out.push(`${op}${sfx[sz]} $0x1234,${M[0]}`);
    }
  }
  for (const sz of sizes) {
    const s = sfx[sz];
    for (const r of R[sz]!) {
      out.push(`mov ${R[sz]![1]},${r}`, `mov${s} $5,${r}`, `mov${s} $-1,${r}`);
      for (const m of M) {
        if (r === "%ah" && /%r(8|9|1\d)/.test(m)) continue;
        out.push(`mov ${r},${m}`, `mov ${m},${r}`);
      }
      for (const u of ["inc", "dec", "neg", "not", "mul", "div", "idiv", "imul"]) {
        out.push(`${u} ${r}`);
      }
      for (const sh of ["rol", "ror", "rcl", "rcr", "shl", "shr", "sal", "sar"]) {
        out.push(`${sh} ${r}`, `${sh} $1,${r}`, `${sh} $5,${r}`, `${sh} %cl,${r}`);
      }
    }
    for (const m of M.slice(0, 8)) {
      out.push(`mov${s} $7,${m}`);
      for (const u of ["inc", "dec", "neg", "not", "mul", "div", "idiv", "imul"]) {
        out.push(`${u}${s} ${m}`);
      }
      for (const sh of ["shl", "sar", "rcr"]) {
        out.push(`${sh}${s} ${m}`, `${sh}${s} $3,${m}`, `${sh}${s} %cl,${m}`);
      }
    }
    const a = R[sz]![0]!;
    out.push(
      `xchg ${R[sz]![1]},${a}`,
      `xchg ${a},${R[sz]![1]}`,
      `xchg ${R[sz]![1]},${R[sz]![2]}`,
      `xchg ${a},${a}`,
    );
    out.push(`xchg ${a},${M[0]}`, `xchg ${M[1]},${a}`);
    out.push(
      `cmpxchg ${R[sz]![1]},${M[0]}`,
      `lock cmpxchg ${R[sz]![1]},${M[2]}`,
      `xadd ${a},${R[sz]![1]}`,
      `lock xadd ${a},${M[5]}`,
    );
    if (sz >= 2) {
      for (const m of [...M.slice(0, 6), R[sz]![2]!]) {
        out.push(`lea ${M[9]},${R[sz]![1]}`);
        out.push(
          `imul ${m},${R[sz]![1]}`,
          `imul $3,${m},${R[sz]![1]}`,
          `imul $300,${m},${R[sz]![1]}`,
        );
        for (const b of ["bt", "bts", "btr", "btc"]) {
          out.push(`${b} ${R[sz]![1]},${m}`, `${b}${s} $5,${m}`);
        }
        for (
          const cc of [
            ...CONDS,
            "z",
            "nz",
            "c",
            "nc",
          ]
        ) {
          out.push(`cmov${cc} ${m},${R[sz]![1]}`);
        }
        out.push(`nop${s} ${m}`);
      }
      out.push(`imul $5,${R[sz]![1]}`);
    }
    if (sz >= 4) out.push(`bswap ${R[sz]![1]}`, `bswap ${R[sz]![3]}`);
  }
  for (
    const cc of [
      ...CONDS,
      "z",
      "c",
      "nae",
      "nge",
    ]
  ) {
    out.push(`set${cc} %al`, `set${cc} ${R[1]![4]}`, `set${cc} ${M[3]}`);
  }
  // movzx / movsx.
  const zx = bits === 64
    ? [
      "movzbl %al,%ecx",
      "movzbw %al,%cx",
      "movzbq %al,%rcx",
      "movzwl %ax,%ecx",
      "movzwq %ax,%r9",
      "movsbl (%rax),%ecx",
      "movsbq %r8b,%rax",
      "movswl 4(%rsp),%eax",
      "movswq %ax,%rax",
      "movslq %eax,%rcx",
      "movslq (%rdi),%r12",
      "movzx %al,%ecx",
      "movsx %ax,%rcx",
      "movzbl %ah,%ecx",
      "movsbw %al,%ax",
    ]
    : [
      "movzbl %al,%ecx",
      "movzbw %al,%cx",
      "movzwl %ax,%ecx",
      "movsbl (%eax),%ecx",
      "movswl 4(%esp),%eax",
      "movzx %al,%ecx",
      "movsx %ax,%ecx",
      "movzbl %ah,%ecx",
      "movsbw %al,%ax",
    ];
  out.push(...zx);
  // push/pop, control flow, misc.
  if (bits === 64) {
    out.push(
      "push %rax",
      "push %r12",
      "pushq 5*8(%rsp)",
      "pushq (%r13)",
      "pushw %ax",
      "push $1",
      "push $-1",
      "push $0x1234",
      "pushq $0x12345678",
      "pushw $5",
      "pushw $0x1234",
      "pop %rbx",
      "pop %r15",
      "popq (%rax)",
      "popw %ax",
      "pushf",
      "pushfq",
      "popf",
      "popfq",
      "pushfw",
      "popfw",
      "push %fs",
      "pop %gs",
    );
    out.push(
      "call *%rax",
      "call *%r11",
      "call *(%rax)",
      "call *8(%rsp)",
      "callq *%rax",
      "jmp *%rax",
      "jmp *(%rip)",
      "jmpq *0x10(%rax,%rcx,8)",
      "call *%gs:0x10",
    );
    out.push(
      "ret",
      "retq",
      "ret $8",
      "leave",
      "leaveq",
      "iret",
      "iretq",
      "iretl",
      "iretw",
      "cltq",
      "cqto",
      "cbtw",
      "cwtl",
      "cwtd",
      "cltd",
      "cdqe",
      "cqo",
    );
    out.push(
      "movabs $0x1122334455667788,%rax",
      "movabsq $0x1122334455667788,%r10",
      "movq $0xffffffff,%rax",
      "movq $-1,%rax",
      "movabs 0x1122334455667788,%al",
      "movabs %rax,0x1122334455667788",
      "movabs 0x1000,%eax",
      "movl 0x1000,%eax",
      "mov %eax,0x1000",
    );
    out.push(
      "movq $0x12345678,(%rax)",
      "mov %ds,%eax",
      "mov %eax,%ds",
      "mov %fs,%ax",
      "movw %ds,(%rax)",
      "mov (%rax),%es",
      "mov %ss,%rax",
    );
  } else {
    out.push(
      "push %eax",
      "push %ebp",
      "pushl 5*4(%esp)",
      "pushl (%ebx)",
      "pushw %ax",
      "push $1",
      "push $-1",
      "push $0x1234",
      "pushl $0x12345678",
      "pushw $5",
      "pop %ebx",
      "popl (%eax)",
      "popw %ax",
      "pushf",
      "pushfl",
      "popf",
      "popfl",
      "pushfw",
      "push %ds",
      "push %es",
      "pop %es",
      "push %fs",
      "pop %gs",
      "push %ss",
    );
    out.push(
      "call *%eax",
      "call *(%eax)",
      "call *8(%esp)",
      "calll *%eax",
      "jmp *%eax",
      "jmpl *0x10(%eax,%ecx,4)",
      "call *%fs:0x10",
    );
    out.push(
      "ret",
      "retl",
      "ret $8",
      "leave",
      "leavel",
      "iret",
      "iretl",
      "iretw",
      "cbtw",
      "cwtl",
      "cwtd",
      "cltd",
      "cwde",
      "cdq",
    );
    out.push(
      "movl 0x1000,%eax",
      "movb 0x1000,%al",
      "movw 0x1000,%ax",
      "mov %eax,0x1000",
      "mov %al,0x1234",
      "mov %fs:0x10,%eax",
      "inc %eax",
      "dec %ecx",
      "incw %ax",
      "incb %al",
    );
    out.push("mov %ds,%eax", "mov %eax,%ds", "mov %fs,%ax", "movw %ds,(%eax)", "mov (%eax),%es");
  }
  out.push(
    "cld",
    "std",
    "cli",
    "sti",
    "clc",
    "stc",
    "cmc",
    "nop",
    "int3",
    "int $3",
    "int $0x80",
    "ud2",
    "hlt",
    "cpuid",
    "mfence",
    "lfence",
    "sfence",
    "pause",
  );
  for (const op of ["movs", "stos", "lods", "cmps", "scas"]) {
    for (const sz of sizes) {
      out.push(`${op}${sfx[sz]}`, `rep ${op}${sfx[sz]}`);
      if (op === "cmps" || op === "scas") out.push(`repne ${op}${sfx[sz]}`, `repe ${op}${sfx[sz]}`);
    }
  }
  const si = bits === 64 ? "%rsi" : "%esi", di = bits === 64 ? "%rdi" : "%edi";
  out.push(
    `movsb (${si}),(${di})`,
    `movsl %fs:(${si}),(${di})`,
    `movsw (${si}),%es:(${di})`,
    `stos %al,(${di})`,
    `lods (${si}),%eax`,
    `rep stosl %eax,(${di})`,
    `scas (${di}),%al`,
    `cmpsw (${si}),(${di})`,
  );
  out.push(
    "lock addl $1,(%eax)",
    "lock incl 4(%esp)",
    "lock orb $1,(%ecx)",
    "lock btsl $3,(%eax)",
    "lock xchg %eax,(%ecx)",
  );
  out.push("lock; addl $1,(%ecx)", "nopl 0x0(%eax,%eax,1)", "nopw 0x0(%eax,%eax,1)", "nopl (%eax)");
  return out;
}
