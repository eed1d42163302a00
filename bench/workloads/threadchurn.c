// build: -O2 -pthread
/* Multi-threaded churn on one address space (issue 21): THREADS threads, each mmap-ing a
 * 64 KiB anonymous block, writing its first page and munmap-ing it, as fast as it can. Blocks
 * are all the same size, so the kernel hands one thread's freed range to another at once: the
 * case where the order of the records in the ring buffer and the kernel's order differ.
 * Usage: threadchurn [THREADS] [ROUNDS per thread] */
#include <pthread.h>
#include <sys/mman.h>

#include "bench.h"

#define BLOCK (64 * 1024)

static uint64_t rounds;

static void *worker(void *arg) {
    (void)arg;
    for (uint64_t i = 0; i < rounds; i++) {
        char *p = mmap(NULL, BLOCK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            perror("mmap");
            exit(1);
        }
        p[0] = (char)i;
        if (munmap(p, BLOCK) != 0) {
            perror("munmap");
            exit(1);
        }
    }
    return NULL;
}

int main(int argc, char **argv) {
    uint64_t threads = bench_arg(argc, argv, 1, 4);
    rounds = bench_arg(argc, argv, 2, 20000);
    if (threads < 1 || threads > 64) {
        fprintf(stderr, "threadchurn: 1 to 64 threads\n");
        return 2;
    }
    pthread_t tid[64];
    uint64_t start = bench_start();
    for (uint64_t t = 0; t < threads; t++) {
        if (pthread_create(&tid[t], NULL, worker, NULL) != 0) {
            fprintf(stderr, "threadchurn: pthread_create failed\n");
            return 1;
        }
    }
    for (uint64_t t = 0; t < threads; t++) pthread_join(tid[t], NULL);
    bench_done(start, threads * rounds);
    return 0;
}
