/* Minimal Linux runtime (x86-64 and arm64) for workloads that must make no syscall of their
 * own beyond the ones they count: no libc, no loader, no allocator. Build with
 * -static -nostdlib -ffreestanding -fno-stack-protector -fno-builtin. */
#ifndef FREESTANDING_H
#define FREESTANDING_H

typedef unsigned long u64;
typedef long i64;

#if defined(__x86_64__)
#define SYS_read 0
#define SYS_write 1
#define SYS_mmap 9
#define SYS_mprotect 10
#define SYS_munmap 11
#define SYS_brk 12
#define SYS_mremap 25
#define SYS_madvise 28
#define SYS_wait4 61
#define SYS_exit_group 231
#elif defined(__aarch64__)
/* The generic syscall table (include/uapi/asm-generic/unistd.h). */
#define SYS_read 63
#define SYS_write 64
#define SYS_mmap 222
#define SYS_mprotect 226
#define SYS_munmap 215
#define SYS_brk 214
#define SYS_mremap 216
#define SYS_madvise 233
#define SYS_wait4 260
#define SYS_exit_group 94
#else
#error "freestanding.h knows the syscalls of x86-64 and arm64 only"
#endif

#define PROT_READ 1
#define PROT_WRITE 2
#define MAP_PRIVATE 2
#define MAP_ANONYMOUS 0x20
#define MREMAP_MAYMOVE 1
#define MADV_DONTNEED 4
#define MADV_NOHUGEPAGE 15
#define PAGE 4096UL

#if defined(__x86_64__)
static inline i64 sys6(i64 n, u64 a, u64 b, u64 c, u64 d, u64 e, u64 f) {
    i64 ret;
    register u64 r10 __asm__("r10") = d;
    register u64 r8 __asm__("r8") = e;
    register u64 r9 __asm__("r9") = f;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}
#else
static inline i64 sys6(i64 n, u64 a, u64 b, u64 c, u64 d, u64 e, u64 f) {
    register u64 x8 __asm__("x8") = (u64)n;
    register u64 x0 __asm__("x0") = a;
    register u64 x1 __asm__("x1") = b;
    register u64 x2 __asm__("x2") = c;
    register u64 x3 __asm__("x3") = d;
    register u64 x4 __asm__("x4") = e;
    register u64 x5 __asm__("x5") = f;
    __asm__ volatile("svc #0"
                     : "+r"(x0)
                     : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5)
                     : "memory");
    return (i64)x0;
}
#endif

/* A new process, as fork() makes it: the fork syscall on x86-64; clone(SIGCHLD) where the
 * architecture has no fork syscall (arm64). */
static inline i64 __attribute__((unused)) sys_fork(void) {
#if defined(__x86_64__)
    return sys6(57, 0, 0, 0, 0, 0, 0);
#else
    return sys6(220, 17 /* SIGCHLD */, 0, 0, 0, 0, 0);
#endif
}

static inline i64 failed(i64 ret) { return ret < 0 && ret > -4096; }

static void write_all(const char *s, u64 n) { sys6(SYS_write, 1, (u64)s, n, 0, 0, 0); }

static u64 str_len(const char *s) {
    u64 n = 0;
    while (s[n]) n++;
    return n;
}

static void put(const char *s) { write_all(s, str_len(s)); }

static void __attribute__((unused)) put_u64(u64 v) {
    char buf[24];
    int i = 23;
    buf[i] = 0;
    do {
        buf[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    put(buf + i);
}

static u64 parse_u64(const char *s) {
    u64 v = 0;
    while (*s >= '0' && *s <= '9') v = v * 10 + (u64)(*s++ - '0');
    return v;
}

static void __attribute__((noreturn)) exit_group(int code) {
    sys6(SYS_exit_group, (u64)code, 0, 0, 0, 0, 0);
    for (;;) {
    }
}

int main(int argc, char **argv);

/* The kernel enters at _start with the stack pointer at argc. */
#if defined(__x86_64__)
__asm__(".global _start\n"
        "_start:\n"
        "  xor %rbp, %rbp\n"
        "  mov (%rsp), %rdi\n"
        "  lea 8(%rsp), %rsi\n"
        "  and $-16, %rsp\n"
        "  call c_start\n");
#else
__asm__(".global _start\n"
        "_start:\n"
        "  mov x29, #0\n"
        "  mov x30, #0\n"
        "  ldr x0, [sp]\n"
        "  add x1, sp, #8\n"
        "  bl c_start\n");
#endif

void __attribute__((used, noreturn)) c_start(long argc, char **argv) {
    exit_group(main((int)argc, argv));
}

#endif
