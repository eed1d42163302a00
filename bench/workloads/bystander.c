// build: -O2
/* The bystander of issue 14: a process the tracer does NOT trace, making syscalls while the
 * tracer traces another one. Any syscall tracepoint puts every thread on the slow syscall path,
 * and raw syscall tracepoints run their programs for every syscall of every process: this loop
 * shows what that costs processes the tracer does not watch.
 * Usage: bystander [CALLS] [mm]   (getppid by default; with "mm", mmap + munmap of one page) */
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "bench.h"

int main(int argc, char **argv) {
    uint64_t calls = bench_arg(argc, argv, 1, 1000000);
    int mm = argc > 2 && strcmp(argv[2], "mm") == 0;
    uint64_t start = bench_start();
    for (uint64_t i = 0; i < calls; i++) {
        if (mm) {
            void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (p != MAP_FAILED) munmap(p, 4096);
        } else {
            /* syscall(): glibc caches nothing for getppid, but be explicit. */
            syscall(SYS_getppid);
        }
    }
    bench_done(start, calls);
    return 0;
}
