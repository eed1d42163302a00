// build: -O1 -g -pthread
/* Threads racing on one address space: each of THREADS threads maps, unmaps, mprotects and
 * mremaps 64 KiB blocks as fast as it can, so that a block one thread gives back is at once
 * handed to another (the kernel reuses the lowest free range). The main thread stops the
 * whole process (SIGSTOP: every thread stops on its way back to user space, after its
 * syscall completed) every INTERVAL_US microseconds, CHECKPOINTS times, then exits.
 * Prints "pid N" first. Usage: thread_race THREADS CHECKPOINTS INTERVAL_US SEED [OPS]
 * With OPS, each thread stops after OPS operations (syscalls) and the process exits when all have (a
 * fixed amount of multi-threaded churn, for benchmarks; CHECKPOINTS is then ignored), and the
 * time the threads took is printed last: "elapsed_us N cpu_us M" (wall clock, and CPU time of
 * the process, which includes what probes cost it in the kernel). */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define BLOCK (64 * 1024)
#define SLOTS 16
/* Slots from LASTING on keep their block for about 4096 visits: a block a race lost from the
 * model stays lost long enough for a checkpoint to see it. */
#define LASTING 8
#define MAX_THREADS 64

static volatile int stop;
static long ops_per_thread;

struct slot {
    char *addr;
    size_t len;
};

static uint64_t next_random(uint64_t *state) {
    /* xorshift64: a fixed sequence per thread for a given seed. */
    uint64_t x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *state = x;
}

static void *racer(void *arg) {
    uint64_t state = (uint64_t)(uintptr_t)arg * 0x9E3779B97F4A7C15ull + 1;
    struct slot slots[SLOTS] = {{0}};
    for (long done = 0; !stop && (ops_per_thread == 0 || done < ops_per_thread); done++) {
        uint64_t r = next_random(&state);
        struct slot *s = &slots[r % SLOTS];
        unsigned op = (unsigned)(r >> 8) % 10;
        if (s->addr != NULL && s - slots >= LASTING && (r >> 20) % 4096 != 0) {
            done--; /* a visit without a syscall is not an operation */
            continue;
        }
        if (s->addr == NULL) {
            void *p = mmap(NULL, BLOCK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (p != MAP_FAILED) {
                s->addr = p;
                s->len = BLOCK;
            }
        } else if (op < 4) {
            munmap(s->addr, s->len);
            s->addr = NULL;
        } else if (op < 6) {
            int prot = (r >> 16) & 1 ? PROT_READ : PROT_READ | PROT_WRITE;
            mprotect(s->addr, s->len, prot);
        } else if (s->len == BLOCK) {
            /* Grow to two blocks: moves (freeing the old block) when the next one is taken. */
            void *p = mremap(s->addr, BLOCK, 2 * BLOCK, MREMAP_MAYMOVE);
            if (p != MAP_FAILED) {
                s->addr = p;
                s->len = 2 * BLOCK;
            }
        } else {
            /* Shrink back: frees the tail block. */
            void *p = mremap(s->addr, s->len, BLOCK, 0);
            if (p != MAP_FAILED) s->len = BLOCK;
        }
    }
    for (int i = 0; i < SLOTS; i++)
        if (slots[i].addr) munmap(slots[i].addr, slots[i].len);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 5) return 2;
    int threads = atoi(argv[1]);
    int checkpoints = atoi(argv[2]);
    useconds_t interval = (useconds_t)atoi(argv[3]);
    uint64_t seed = strtoull(argv[4], NULL, 10);
    if (argc > 5) ops_per_thread = atol(argv[5]);
    if (ops_per_thread > 0) checkpoints = 0;
    if (threads < 1 || threads > MAX_THREADS) return 2;
    printf("pid %d\n", getpid());
    fflush(stdout);
    pthread_t ids[MAX_THREADS];
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < threads; i++)
        if (pthread_create(&ids[i], NULL, racer, (void *)(uintptr_t)(seed * MAX_THREADS + i + 1)))
            return 3;
    for (int c = 0; c < checkpoints; c++) {
        usleep(interval);
        kill(getpid(), SIGSTOP);
    }
    if (ops_per_thread == 0) stop = 1;
    for (int i = 0; i < threads; i++) pthread_join(ids[i], NULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (ops_per_thread > 0) {
        struct rusage u;
        getrusage(RUSAGE_SELF, &u);
        long cpu = (u.ru_utime.tv_sec + u.ru_stime.tv_sec) * 1000000L + u.ru_utime.tv_usec +
                   u.ru_stime.tv_usec;
        printf("elapsed_us %ld cpu_us %ld\n",
               (long)((t1.tv_sec - t0.tv_sec) * 1000000 + (t1.tv_nsec - t0.tv_nsec) / 1000), cpu);
    }
    return 0;
}
