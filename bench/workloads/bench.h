/* Shared by the benchmark workloads (`cargo xtask bench`): the clock around the measured work,
 * the optional stop before it (for `tracer attach`), and the one line of results.
 *
 * With BENCH_STOP=1 in the environment a workload stops itself (SIGSTOP) right before its
 * measured work, so the bench can attach a tracer to it and then resume it (SIGCONT). With
 * BENCH_DELAY_MS=N it sleeps N ms first, for tools that enable their events only after the
 * program started. Every workload prints one line on stdout when done:
 *     elapsed_ns=<ns of the measured work> cpu_ns=<CPU time of all its threads> ops=<items>
 * The bench's ratios use elapsed_ns, never the tracer's start-up or teardown; cpu_ns is less
 * sensitive to other programs competing for the CPUs (probes run in the program's context, so
 * their cost is in it). */
#ifndef BENCH_H
#define BENCH_H

#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static inline uint64_t bench_clock_ns(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline uint64_t bench_now_ns(void) { return bench_clock_ns(CLOCK_MONOTONIC); }

/* CPU time of the process when its measured work started. */
static uint64_t bench_cpu_start_ns;

/* Waits or stops here when asked to; returns the start of the measured work. */
static inline uint64_t bench_start(void) {
    const char *delay = getenv("BENCH_DELAY_MS");
    if (delay) {
        uint64_t ms = strtoull(delay, NULL, 10);
        struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000};
        nanosleep(&ts, NULL);
    }
    const char *stop = getenv("BENCH_STOP");
    if (stop && strcmp(stop, "1") == 0) raise(SIGSTOP);
    bench_cpu_start_ns = bench_clock_ns(CLOCK_PROCESS_CPUTIME_ID);
    return bench_now_ns();
}

static inline void bench_done(uint64_t start_ns, uint64_t ops) {
    uint64_t elapsed = bench_now_ns() - start_ns;
    uint64_t cpu = bench_clock_ns(CLOCK_PROCESS_CPUTIME_ID) - bench_cpu_start_ns;
    printf("elapsed_ns=%llu cpu_ns=%llu ops=%llu\n", (unsigned long long)elapsed,
           (unsigned long long)cpu, (unsigned long long)ops);
    fflush(stdout);
}

/* xorshift64*: a fixed seed, so every run does the same work. */
static inline uint64_t bench_rand(uint64_t *state) {
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1Dull;
}

static inline uint64_t bench_arg(int argc, char **argv, int i, uint64_t fallback) {
    return argc > i ? strtoull(argv[i], NULL, 10) : fallback;
}

#endif
