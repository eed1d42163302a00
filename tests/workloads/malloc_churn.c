// build: -O1 -g
/* Allocator churn: keeps a pool of live blocks of random sizes (16 B to 1 MiB, so both brk
 * and mmap paths of glibc, or whatever allocator is preloaded), replaces random blocks, and
 * stops itself (SIGSTOP) every CHECKPOINT_EVERY rounds and at the end. Prints "pid N" first.
 * Usage: malloc_churn SEED ROUNDS CHECKPOINT_EVERY */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define POOL 512

static unsigned long long state;
static unsigned long long next(void) {
    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;
    return state * 2685821657736338717ULL;
}

int main(int argc, char **argv) {
    if (argc < 4) return 2;
    state = strtoull(argv[1], NULL, 10) * 0x9E3779B97F4A7C15ULL + 1;
    long rounds = atol(argv[2]), every = atol(argv[3]);
    printf("pid %d\n", getpid());
    fflush(stdout);
    static char *pool[POOL];
    for (long r = 1; r <= rounds; r++) {
        for (int i = 0; i < 64; i++) {
            int slot = (int)(next() % POOL);
            free(pool[slot]);
            /* Mostly small blocks, some large ones above the mmap threshold. */
            size_t size = next() % 8 == 0 ? 64 * 1024 + next() % (1024 * 1024) : 16 + next() % 4096;
            pool[slot] = malloc(size);
            if (pool[slot]) memset(pool[slot], (int)r, size < 8192 ? size : 8192);
        }
        if (r % every == 0 || r == rounds) raise(SIGSTOP);
    }
    for (int i = 0; i < POOL; i++) free(pool[i]);
    raise(SIGSTOP);
    return 0;
}
