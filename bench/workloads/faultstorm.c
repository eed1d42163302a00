// build: -O2
/* Page-fault storm: maps MIB MiB of anonymous memory, writes one byte to every page (one minor
 * fault each; transparent huge pages are turned off for the range so faults stay 4 KiB), unmaps
 * it, ROUNDS times.
 * Usage: faultstorm [ROUNDS] [MIB] */
#include <sys/mman.h>

#include "bench.h"

int main(int argc, char **argv) {
    uint64_t rounds = bench_arg(argc, argv, 1, 16);
    uint64_t len = bench_arg(argc, argv, 2, 256) << 20;
    uint64_t pages = 0;
    uint64_t start = bench_start();
    for (uint64_t r = 0; r < rounds; r++) {
        char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            perror("mmap");
            return 1;
        }
        madvise(p, len, MADV_NOHUGEPAGE);
        for (uint64_t off = 0; off < len; off += 4096) p[off] = (char)r;
        munmap(p, len);
        pages += len / 4096;
    }
    bench_done(start, pages);
    return 0;
}
