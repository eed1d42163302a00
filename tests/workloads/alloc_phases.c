// build: -O1 -g
/* One allocation pattern for every allocator (glibc malloc, or jemalloc, tcmalloc, mimalloc
 * preloaded with LD_PRELOAD): ROUNDS times, replace each of 1024 live blocks (7 in 8 small,
 * 16 B..2 KiB; 1 in 8 medium, 8 KiB..256 KiB, so glibc serves some by brk and some by mmap),
 * touching what it allocates; then free everything. With `leak`, blocks are never freed
 * until the end: each round keeps what it allocated (the regression `tracer diff` catches).
 * Usage: alloc_phases ROUNDS [leak] */
#include <stdlib.h>
#include <string.h>

#define LIVE 1024

static unsigned long long state = 88172645463325252ULL;
static unsigned long long next(void) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
}

int main(int argc, char **argv) {
    long rounds = argc > 1 ? atol(argv[1]) : 10;
    int leak = argc > 2 && strcmp(argv[2], "leak") == 0;
    static char *live[LIVE];
    char **leaked = calloc((size_t)(rounds > 0 ? rounds : 1) * LIVE, sizeof(char *));
    long n_leaked = 0;
    if (!leaked) return 1;
    for (long r = 0; r < rounds; r++) {
        for (int i = 0; i < LIVE; i++) {
            size_t size = next() % 8 ? 16 + next() % 2048 : 8192 + next() % (248 * 1024);
            if (leak && live[i]) leaked[n_leaked++] = live[i];
            else free(live[i]);
            live[i] = malloc(size);
            if (!live[i]) return 1;
            memset(live[i], (int)r, size);
        }
    }
    for (int i = 0; i < LIVE; i++) free(live[i]);
    for (long i = 0; i < n_leaked; i++) free(leaked[i]);
    free(leaked);
    return 0;
}
