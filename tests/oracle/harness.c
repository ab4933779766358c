/*
 * Host-CPU oracle harness for textpoke's ALU and executor tests.
 *
 * Usage: harness IN OUT
 *
 * IN holds N case records of 200 bytes each:
 *   u64 regs[16]   rax, rcx, rdx, rbx, rsp (ignored), rbp, rsi, rdi, r8..r15
 *                  (32-bit build: only the low 32 bits of the first 8 are used)
 *   u64 rflags     loaded with popf (only arithmetic flags should vary)
 *   u8  len        number of code bytes that follow, the last of them a `ret` (c3)
 *   u8  code[63]
 * OUT receives N records of 144 bytes: u64 regs[16], u64 rflags, u64 status
 * (0 ran to the ret, 1 SIGFPE (#DE), 2 SIGILL, 3 SIGSEGV/SIGBUS).
 *
 * Every case's code is copied into one RWX mapping first (so no self-modifying-code
 * stalls), then each case runs through run_case(): an asm trampoline that saves the
 * callee-saved registers, loads every general register but the stack pointer and the
 * flags from the context, calls the case code, and stores registers and flags back.
 * A fault jumps (through the signal handler's context) to the case's final ret, so the
 * stored state is the one at the faulting instruction.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>

#define IN_SIZE 200
#define OUT_SIZE 144
#define SLOT 64

void *tp_code_ptr;
static void *volatile tp_ret_ptr;
static volatile int tp_status;

#ifdef __x86_64__
struct ctx { uint64_t r[16]; uint64_t flags; };
void run_case(struct ctx *c, void *code);
__asm__(
    ".text\n"
    ".globl run_case\n"
    "run_case:\n"
    "  push %rbx\n  push %rbp\n  push %r12\n  push %r13\n  push %r14\n  push %r15\n"
    "  mov %rsi, tp_code_ptr(%rip)\n"
    "  push %rdi\n"
    "  pushq 128(%rdi)\n  popfq\n"
    "  mov 0(%rdi), %rax\n  mov 8(%rdi), %rcx\n  mov 16(%rdi), %rdx\n  mov 24(%rdi), %rbx\n"
    "  mov 40(%rdi), %rbp\n  mov 48(%rdi), %rsi\n"
    "  mov 64(%rdi), %r8\n  mov 72(%rdi), %r9\n  mov 80(%rdi), %r10\n  mov 88(%rdi), %r11\n"
    "  mov 96(%rdi), %r12\n  mov 104(%rdi), %r13\n  mov 112(%rdi), %r14\n  mov 120(%rdi), %r15\n"
    "  mov 56(%rdi), %rdi\n"
    "  call *tp_code_ptr(%rip)\n"
    "  pushfq\n  push %rax\n  mov 16(%rsp), %rax\n"
    "  mov %rcx, 8(%rax)\n  mov %rdx, 16(%rax)\n  mov %rbx, 24(%rax)\n"
    "  mov %rbp, 40(%rax)\n  mov %rsi, 48(%rax)\n  mov %rdi, 56(%rax)\n"
    "  mov %r8, 64(%rax)\n  mov %r9, 72(%rax)\n  mov %r10, 80(%rax)\n  mov %r11, 88(%rax)\n"
    "  mov %r12, 96(%rax)\n  mov %r13, 104(%rax)\n  mov %r14, 112(%rax)\n  mov %r15, 120(%rax)\n"
    "  pop %rcx\n  mov %rcx, 0(%rax)\n  pop %rcx\n  mov %rcx, 128(%rax)\n"
    "  pop %rdi\n"
    "  pop %r15\n  pop %r14\n  pop %r13\n  pop %r12\n  pop %rbp\n  pop %rbx\n"
    "  ret\n");
#define NREGS 16
typedef uint64_t reg_t;
#else
struct ctx { uint32_t r[8]; uint32_t flags; };
void run_case(struct ctx *c, void *code);
__asm__(
    ".text\n"
    ".globl run_case\n"
    "run_case:\n"
    "  push %ebx\n  push %ebp\n  push %esi\n  push %edi\n"
    "  mov 24(%esp), %eax\n  mov %eax, tp_code_ptr\n"
    "  mov 20(%esp), %eax\n"
    "  push %eax\n"
    "  pushl 32(%eax)\n  popfl\n"
    "  mov 4(%eax), %ecx\n  mov 8(%eax), %edx\n  mov 12(%eax), %ebx\n"
    "  mov 20(%eax), %ebp\n  mov 24(%eax), %esi\n  mov 28(%eax), %edi\n"
    "  mov 0(%eax), %eax\n"
    "  call *tp_code_ptr\n"
    "  pushfl\n  push %eax\n  mov 8(%esp), %eax\n"
    "  mov %ecx, 4(%eax)\n  mov %edx, 8(%eax)\n  mov %ebx, 12(%eax)\n"
    "  mov %ebp, 20(%eax)\n  mov %esi, 24(%eax)\n  mov %edi, 28(%eax)\n"
    "  pop %ecx\n  mov %ecx, 0(%eax)\n  pop %ecx\n  mov %ecx, 32(%eax)\n"
    "  pop %eax\n"
    "  pop %edi\n  pop %esi\n  pop %ebp\n  pop %ebx\n"
    "  ret\n");
#define NREGS 8
typedef uint32_t reg_t;
#endif

static void on_signal(int sig, siginfo_t *si, void *ucv) {
  (void)si;
  ucontext_t *uc = ucv;
  tp_status = sig == SIGFPE ? 1 : sig == SIGILL ? 2 : 3;
#ifdef __x86_64__
  uc->uc_mcontext.gregs[REG_RIP] = (greg_t)(uintptr_t)tp_ret_ptr;
#else
  uc->uc_mcontext.gregs[REG_EIP] = (greg_t)(uintptr_t)tp_ret_ptr;
#endif
}

static unsigned char *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) { perror(path); exit(2); }
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *buf = malloc(n > 0 ? (size_t)n : 1);
  if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) { perror("read"); exit(2); }
  fclose(f);
  *len = (size_t)n;
  return buf;
}

int main(int argc, char **argv) {
  if (argc != 3) { fprintf(stderr, "usage: %s IN OUT\n", argv[0]); return 2; }
  size_t len;
  unsigned char *in = read_file(argv[1], &len);
  if (len % IN_SIZE) { fprintf(stderr, "input size %zu is not a multiple of %d\n", len, IN_SIZE); return 2; }
  size_t n = len / IN_SIZE;
  unsigned char *out = calloc(n ? n : 1, OUT_SIZE);
  unsigned char *code = mmap(NULL, (n ? n : 1) * SLOT, PROT_READ | PROT_WRITE | PROT_EXEC,
                             MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (code == MAP_FAILED) { perror("mmap"); return 2; }
  for (size_t i = 0; i < n; i++) {
    const unsigned char *rec = in + i * IN_SIZE;
    unsigned l = rec[136];
    if (l == 0 || l > SLOT - 1 || rec[136 + l] != 0xc3) {
      fprintf(stderr, "case %zu: bad code length %u\n", i, l);
      return 2;
    }
    memcpy(code + i * SLOT, rec + 137, l);
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_signal;
  sa.sa_flags = SA_SIGINFO | SA_NODEFER;
  sigaction(SIGFPE, &sa, NULL);
  sigaction(SIGILL, &sa, NULL);
  sigaction(SIGSEGV, &sa, NULL);
  sigaction(SIGBUS, &sa, NULL);
  for (size_t i = 0; i < n; i++) {
    const unsigned char *rec = in + i * IN_SIZE;
    struct ctx c;
    uint64_t r64[17];
    memcpy(r64, rec, sizeof r64);
    for (int k = 0; k < NREGS; k++) c.r[k] = (reg_t)r64[k];
    c.flags = (reg_t)r64[16];
    unsigned char *slot = code + i * SLOT;
    tp_ret_ptr = slot + rec[136] - 1;
    tp_status = 0;
    run_case(&c, slot);
    uint64_t o[18];
    memset(o, 0, sizeof o);
    for (int k = 0; k < NREGS; k++) o[k] = c.r[k];
    o[16] = c.flags;
    o[17] = (uint64_t)tp_status;
    memcpy(out + i * OUT_SIZE, o, sizeof o);
  }
  FILE *f = fopen(argv[2], "wb");
  if (!f || fwrite(out, OUT_SIZE, n, f) != n || fclose(f) != 0) { perror(argv[2]); return 2; }
  return 0;
}
