// build: -O2 -pthread
/* A realistic allocator program: a worker thread (so glibc gives it its own arena, which grows
 * with mprotect and gives memory back with madvise) handles "requests". Each request parses a
 * batch of generated records into small heap strings, indexes them in a hash table that grows
 * by realloc, sorts them, and builds a response in a buffer that grows by realloc (large ones
 * move with mremap), then frees everything. CPU work dominates; allocator syscalls come at a
 * realistic pace (about 16k per second here).
 * Usage: mixed [REQUESTS] */
#include <malloc.h>
#include <pthread.h>

#include "bench.h"

struct entry {
    char *key;
    uint64_t value;
};

static int by_key(const void *a, const void *b) {
    return strcmp(((const struct entry *)a)->key, ((const struct entry *)b)->key);
}

static uint64_t hash(const char *s) {
    uint64_t h = 1469598103934665603ull;
    while (*s) h = (h ^ (unsigned char)*s++) * 1099511628211ull;
    return h;
}

static uint64_t checksum;

static void request(uint64_t *rng) {
    uint64_t n = 100 + bench_rand(rng) % 900;
    struct entry *items = malloc(n * sizeof *items);
    size_t cap = 64;
    struct entry **table = calloc(cap, sizeof *table);
    size_t used = 0;
    for (uint64_t i = 0; i < n; i++) {
        char buf[64];
        int len = snprintf(buf, sizeof buf, "rec-%llu-%llx",
                           (unsigned long long)(bench_rand(rng) % 5000),
                           (unsigned long long)bench_rand(rng));
        items[i].key = malloc((size_t)len + 1);
        memcpy(items[i].key, buf, (size_t)len + 1);
        items[i].value = hash(buf);
        if (2 * (used + 1) > cap) {
            /* Grow and rehash. */
            size_t bigger = cap * 2;
            struct entry **t = calloc(bigger, sizeof *t);
            for (size_t j = 0; j < cap; j++)
                if (table[j]) {
                    size_t h = table[j]->value & (bigger - 1);
                    while (t[h]) h = (h + 1) & (bigger - 1);
                    t[h] = table[j];
                }
            free(table);
            table = t;
            cap = bigger;
        }
        size_t h = items[i].value & (cap - 1);
        while (table[h]) h = (h + 1) & (cap - 1);
        table[h] = &items[i];
        used++;
    }
    qsort(items, n, sizeof *items, by_key);
    /* The response: a buffer grown by doubling; one request in twelve produces a large one,
     * which crosses the mmap threshold and then grows by mremap. */
    size_t out_cap = 4096, out_len = 0;
    char *out = malloc(out_cap);
    uint64_t repeat = bench_rand(rng) % 12 == 0 ? 16 : 1;
    for (uint64_t r = 0; r < repeat; r++)
        for (uint64_t i = 0; i < n; i++) {
            size_t len = strlen(items[i].key);
            if (out_len + len + 2 > out_cap) {
                out_cap *= 2;
                out = realloc(out, out_cap);
            }
            memcpy(out + out_len, items[i].key, len);
            out_len += len;
            out[out_len++] = '\n';
        }
    checksum += hash(out + out_len / 2 > out ? "x" : "y") + out_len;
    free(out);
    for (uint64_t i = 0; i < n; i++) free(items[i].key);
    free(items);
    free(table);
}

static void *worker(void *arg) {
    uint64_t requests = *(uint64_t *)arg;
    uint64_t rng = 0x243f6a8885a308d3ull;
    for (uint64_t i = 0; i < requests; i++) request(&rng);
    return NULL;
}

int main(int argc, char **argv) {
    uint64_t requests = bench_arg(argc, argv, 1, 4000);
    /* A fixed mmap threshold, as services often set (mallopt or MALLOC_MMAP_THRESHOLD_), so
     * large buffers keep coming from mmap instead of glibc raising the threshold as it goes. */
    mallopt(M_MMAP_THRESHOLD, 128 * 1024);
    uint64_t start = bench_start();
    pthread_t t;
    if (pthread_create(&t, NULL, worker, &requests) != 0) return 1;
    pthread_join(t, NULL);
    bench_done(start, requests);
    return checksum == 42; /* keeps the work from being optimised away */
}
