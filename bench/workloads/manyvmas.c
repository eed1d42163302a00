// build: -O2
/* One process with many VMAs (issue 16): maps VMAS pages and makes every other page read-only,
 * so that no two neighbours merge (VMAS VMAs), then toggles one page in the middle CALLS times
 * (each call splits or merges VMAs: a record the daemon applies to the whole address space),
 * prints its line and stays alive HOLD seconds (or until killed) so the page can be loaded.
 * Usage: manyvmas [VMAS] [CALLS] [HOLD seconds] */
#include <sys/mman.h>
#include <unistd.h>

#include "bench.h"

int main(int argc, char **argv) {
    uint64_t vmas = bench_arg(argc, argv, 1, 30000);
    uint64_t calls = bench_arg(argc, argv, 2, 30000);
    uint64_t hold = bench_arg(argc, argv, 3, 0);
    long page = sysconf(_SC_PAGESIZE);
    uint64_t start = bench_start();
    char *base = mmap(NULL, vmas * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                      -1, 0);
    if (base == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    for (uint64_t i = 1; i < vmas; i += 2) {
        if (mprotect(base + i * page, page, PROT_READ) != 0) {
            perror("mprotect");
            return 1;
        }
    }
    /* An even (writable) page between two read-only ones: read-only merges three VMAs into
     * one, writable splits them again. */
    char *middle = base + (vmas / 4 * 2) * page;
    for (uint64_t i = 0; i < calls; i++) {
        if (mprotect(middle, page, (i & 1) ? PROT_READ | PROT_WRITE : PROT_READ) != 0) {
            perror("mprotect");
            return 1;
        }
    }
    if (calls & 1) mprotect(middle, page, PROT_READ | PROT_WRITE);
    bench_done(start, vmas / 2 + calls);
    for (uint64_t s = 0; s < hold; s++) sleep(1);
    return 0;
}
