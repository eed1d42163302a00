// build: -O2
/* An idle-ish service for the daemon-cost measurement: every PERIOD_MS it allocates a block
 * above the mmap threshold (an mmap), writes two of its pages (two faults), frees it (a munmap)
 * and churns a few small blocks; it sleeps the rest of the time. Exits after SECONDS.
 * Usage: idle [PERIOD_MS] [SECONDS] */
#include <malloc.h>
#include <unistd.h>

#include "bench.h"

/* Blocks go through here, so the compiler cannot elide a malloc/free pair. */
static char *volatile sink;

int main(int argc, char **argv) {
    uint64_t period_ms = bench_arg(argc, argv, 1, 100);
    uint64_t seconds = bench_arg(argc, argv, 2, 30);
    mallopt(M_MMAP_THRESHOLD, 128 * 1024);
    uint64_t start = bench_start();
    uint64_t rounds = 0;
    while (bench_now_ns() - start < seconds * 1000000000ull) {
        sink = malloc(256 * 1024);
        char *big = sink;
        big[0] = 1;
        big[128 * 1024] = 1;
        for (int i = 0; i < 8; i++) {
            sink = malloc(32 + 64 * (size_t)i);
            free(sink);
        }
        free(big);
        rounds++;
        usleep((useconds_t)(period_ms * 1000));
    }
    bench_done(start, rounds);
    return 0;
}
