// build: -O2
/* Allocator churn across the mmap threshold: a pool of live blocks where random blocks are
 * freed and replaced by new ones of random sizes, about half above glibc's mmap threshold (an
 * mmap at malloc, a munmap at free) and the rest from the brk heap, which a low trim threshold
 * grows and shrinks with brk. Each new block is written, page by page for the first few pages,
 * so it also faults. The threshold is fixed with mallopt so glibc does not raise it as it goes.
 * Usage: churn [ROUNDS]   (one round: one free and one malloc) */
#include <malloc.h>

#include "bench.h"

#define SLOTS 32
#define PAGE 4096

int main(int argc, char **argv) {
    uint64_t rounds = bench_arg(argc, argv, 1, 200000);
    mallopt(M_MMAP_THRESHOLD, 128 * 1024);
    mallopt(M_TRIM_THRESHOLD, 64 * 1024);
    mallopt(M_TOP_PAD, 0);
    char *slot[SLOTS] = {0};
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    uint64_t start = bench_start();
    for (uint64_t i = 0; i < rounds; i++) {
        uint64_t r = bench_rand(&rng);
        unsigned k = (unsigned)(r % SLOTS);
        free(slot[k]);
        size_t size;
        switch ((r >> 8) % 8) {
        case 0: case 1: case 2: case 3:
            size = 128 * 1024 + (r >> 16) % (384 * 1024); /* mmap'd */
            break;
        case 4: case 5:
            size = 16 * 1024 + (r >> 16) % (96 * 1024); /* heap top: brk up and down */
            break;
        default:
            size = 16 + (r >> 16) % 2048; /* small, from the bins */
            break;
        }
        char *p = malloc(size);
        /* Touch at most two pages: a fault or two per mmap'd block, fewer on the heap. */
        for (size_t off = 0; off < size && off < 2 * PAGE; off += PAGE) p[off] = (char)i;
        slot[k] = p;
    }
    for (unsigned k = 0; k < SLOTS; k++) free(slot[k]);
    bench_done(start, rounds);
    return 0;
}
