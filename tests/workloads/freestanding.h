/* Minimal x86-64 Linux runtime for workloads that must make no syscall of their own beyond
 * the ones they count: no libc, no loader, no allocator. Build with
 * -static -nostdlib -ffreestanding -fno-stack-protector -fno-builtin. */
#ifndef FREESTANDING_H
#define FREESTANDING_H

typedef unsigned long u64;
typedef long i64;

#define SYS_read 0
#define SYS_write 1
#define SYS_open 2
#define SYS_close 3
#define SYS_mmap 9
#define SYS_mprotect 10
#define SYS_munmap 11
#define SYS_brk 12
#define SYS_mremap 25
#define SYS_madvise 28
#define SYS_exit_group 231

#define PROT_READ 1
#define PROT_WRITE 2
#define MAP_PRIVATE 2
#define MAP_ANONYMOUS 0x20
#define MREMAP_MAYMOVE 1
#define MADV_DONTNEED 4
#define MADV_NOHUGEPAGE 15
#define PAGE 4096UL

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
__asm__(".global _start\n"
        "_start:\n"
        "  xor %rbp, %rbp\n"
        "  mov (%rsp), %rdi\n"
        "  lea 8(%rsp), %rsi\n"
        "  and $-16, %rsp\n"
        "  call c_start\n");

void __attribute__((used, noreturn)) c_start(long argc, char **argv) {
    exit_group(main((int)argc, argv));
}

#endif
