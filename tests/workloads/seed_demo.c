// build: -O0 -g
/* The seed experiments, the tracer's demo workload (`cargo xtask run`):
 *  1. malloc(1) in a fresh glibc process makes the heap appear via brk: +132 KiB (0x21000).
 *  2. malloc(200 KiB), above the 128 KiB mmap threshold, is an anonymous private mmap, and
 *     free() of it is a munmap of the same range; free() of the 1-byte block returns nothing.
 *  3. sbrk(0) then brk(b + 4) moves the break by 4 bytes (the kernel rounds the VMA).
 *  4. Touching N fresh pages of an anonymous mapping makes N minor write faults.
 * Progress goes out with write(2), never stdio: stdio's buffer would be the first malloc. */
#define _DEFAULT_SOURCE
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static void say(const char *s) { (void)!write(1, s, strlen(s)); }

int main(int argc, char **argv) {
    long pages = argc > 1 ? atol(argv[1]) : 64;

    say("seed_demo: malloc(1)\n");
    char *volatile small = malloc(1);
    small[0] = 1;

    say("seed_demo: malloc(200 KiB) then free it\n");
    char *volatile big = malloc(200 * 1024);
    big[0] = 1;
    free(big);

    say("seed_demo: free the 1-byte block\n");
    free(small);

    say("seed_demo: sbrk(0), brk(b + 4)\n");
    char *b = sbrk(0);
    if (brk(b + 4) != 0) return 1;

    say("seed_demo: touch fresh anonymous pages\n");
    size_t len = (size_t)(pages > 0 ? pages : 1) * 4096;
    char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return 1;
    madvise(m, len, MADV_NOHUGEPAGE);
    for (long i = 0; i < pages; i++) m[i * 4096] = 1;
    munmap(m, len);
    say("seed_demo: done\n");
    return 0;
}
