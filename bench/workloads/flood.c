// build: -O2
/* A record flood for the daemon's throughput: traced syscalls at RATE calls per second (0: as
 * fast as it can) for SECONDS, each one record for the tracer. KIND `fail` (the default) calls
 * munmap on an unaligned address, which fails at once (EINVAL), so that the program can produce
 * records faster than any reader needs; `pair` maps and unmaps one page. Prints the calls it
 * made as ops.
 * Usage: flood [RATE] [SECONDS] [fail|pair] */
#include <sys/mman.h>

#include "bench.h"

#define BATCH 128 /* syscalls between two looks at the clock */

int main(int argc, char **argv) {
    uint64_t rate = bench_arg(argc, argv, 1, 400000);
    uint64_t seconds = bench_arg(argc, argv, 2, 3);
    int pairs = argc > 3 && strcmp(argv[3], "pair") == 0;
    uint64_t made = 0;
    uint64_t start = bench_start();
    uint64_t end = start + seconds * 1000000000ull;
    for (;;) {
        for (int i = 0; i < BATCH / 2; i++) {
            if (pairs) {
                void *p =
                    mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
                if (p == MAP_FAILED) return 1;
                munmap(p, 4096);
            } else {
                munmap((void *)1, 4096);
                munmap((void *)1, 4096);
            }
        }
        made += BATCH;
        uint64_t now = bench_now_ns();
        if (now >= end) break;
        if (rate) {
            uint64_t due = start + (uint64_t)((double)made * 1e9 / (double)rate);
            if (due > now) {
                struct timespec ts = {(time_t)(due / 1000000000u), (long)(due % 1000000000u)};
                clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
            }
        }
    }
    bench_done(start, made);
    return 0;
}
