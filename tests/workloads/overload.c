// build: -O1 -static -nostdlib -ffreestanding -fno-stack-protector -fno-builtin -fno-pie -no-pie
/* Produces an exact number of syscall records, as fast as it can, for the overload test: N
 * munmap calls on an unaligned address, each failing at once (EINVAL), so the tracer gets one
 * record per call and nothing else happens. Being freestanding, it makes no other traced
 * syscall: the records produced are exactly N.
 * Prints "ready" first, then (unless given `nowait`) waits for a line on stdin before it
 * starts, so that the test can stall the tracer in between. With PROCS > 1 it forks PROCS - 1
 * children that do the same N calls at the same time (one fork record each). Each process
 * prints "done N calls F failed" at the end, its own count; the first waits for the others.
 * Usage: overload N [nowait|wait] [PROCS] */
#include "freestanding.h"

static int is_nowait(const char *s) {
    const char *want = "nowait";
    while (*s && *s == *want) s++, want++;
    return *s == 0 && *want == 0;
}

static void append(char *buf, u64 *len, const char *s) {
    while (*s) buf[(*len)++] = *s++;
}

static void append_u64(char *buf, u64 *len, u64 v) {
    char digits[24];
    int i = 0;
    do {
        digits[i++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (i) buf[(*len)++] = digits[--i];
}

int main(int argc, char **argv) {
    u64 n = argc > 1 ? parse_u64(argv[1]) : 100000;
    u64 procs = argc > 3 ? parse_u64(argv[3]) : 1;
    put("ready\n");
    if (!(argc > 2 && is_nowait(argv[2]))) {
        char line[16];
        sys6(SYS_read, 0, (u64)line, sizeof line, 0, 0, 0);
    }
    int child = 0;
    for (u64 i = 1; i < procs && !child; i++) {
        i64 pid = sys_fork();
        if (failed(pid)) exit_group(2);
        child = pid == 0;
    }
    u64 fails = 0;
    for (u64 i = 0; i < n; i++)
        if (failed(sys6(SYS_munmap, 1, PAGE, 0, 0, 0, 0))) fails++;
    /* One write per line, so the lines of several processes do not mix. */
    char line[80];
    u64 len = 0;
    append(line, &len, "done ");
    append_u64(line, &len, n);
    append(line, &len, " calls ");
    append_u64(line, &len, fails);
    append(line, &len, " failed\n");
    write_all(line, len);
    if (!child)
        while (!failed(sys6(SYS_wait4, (u64)-1, 0, 0, 0, 0, 0))) {
        }
    return 0;
}
