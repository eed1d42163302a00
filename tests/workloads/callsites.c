// build: -O2 -fomit-frame-pointer
// Call sites with known amounts (tests/tests/callsites.rs): each noinline function grows
// memory by its own path, so the tracer's stacks must name it. Built without frame pointers
// and without debug info, as release builds are: unwinding goes through .eh_frame.
//
// grow_brk:    32 MiB in 14 KiB mallocs (below glibc's mmap threshold: brk; under jemalloc
//              its largest small size class, two to a 28 KiB slab: no rounding either way)
// grow_mmap:   16 mallocs of 4 MiB (above it: one mmap each), freed by free_mmaps
// grow_direct: a direct 24 MiB anonymous mmap, then touch_pages touches every page
//
// An argument `brk-mib=N` (1 to 128) makes grow_brk allocate N MiB instead of 32 (tests of
// `tracer diff` and check files compare runs that differ in it).
//
// `callsites hold` prints `pid N`, then waits for SIGUSR1 before the work and again before it
// exits (tests that attach or read the served profile mid-run).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#define BRK_BLOCK 14336
#define BRK_TOTAL (32 << 20)
#define BRK_MAX (128 << 20)
#define MMAP_BLOCK (4 << 20)
#define MMAP_COUNT 16
#define DIRECT_BYTES (24 << 20)

static void *brk_blocks[BRK_MAX / BRK_BLOCK + 1];
static size_t brk_total = BRK_TOTAL;
static void *mmap_blocks[MMAP_COUNT];

__attribute__((noinline)) static void grow_brk(void) {
    for (size_t i = 0; i < brk_total / BRK_BLOCK; i++) {
        brk_blocks[i] = malloc(BRK_BLOCK);
        // Keep the compiler from dropping the allocation.
        __asm__ volatile("" : : "r"(brk_blocks[i]) : "memory");
    }
}

__attribute__((noinline)) static void grow_mmap(void) {
    for (int i = 0; i < MMAP_COUNT; i++) {
        mmap_blocks[i] = malloc(MMAP_BLOCK);
        __asm__ volatile("" : : "r"(mmap_blocks[i]) : "memory");
    }
}

__attribute__((noinline)) static void free_mmaps(void) {
    for (int i = 0; i < MMAP_COUNT; i++)
        free(mmap_blocks[i]);
}

__attribute__((noinline)) static char *grow_direct(void) {
    char *p = mmap(NULL, DIRECT_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        perror("mmap");
        exit(1);
    }
    // One fault per page, not per huge page: the test counts them.
    madvise(p, DIRECT_BYTES, MADV_NOHUGEPAGE);
    return p;
}

__attribute__((noinline)) static void touch_pages(char *p) {
    long page = sysconf(_SC_PAGESIZE);
    for (long off = 0; off < DIRECT_BYTES; off += page)
        p[off] = 1;
}

static void wait_usr1(void) {
    sigset_t set;
    int sig;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigwait(&set, &sig);
}

int main(int argc, char **argv) {
    int hold = argc > 1 && strcmp(argv[1], "hold") == 0;
    for (int i = 1; i < argc; i++) {
        if (strncmp(argv[i], "brk-mib=", 8) == 0) {
            long mib = atol(argv[i] + 8);
            if (mib < 1 || mib > BRK_MAX >> 20) {
                fprintf(stderr, "brk-mib: 1 to %d\n", BRK_MAX >> 20);
                return 2;
            }
            brk_total = (size_t)mib << 20;
        }
    }
    if (hold) {
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGUSR1);
        sigprocmask(SIG_BLOCK, &set, NULL);
        // write(2), not stdio: stdio's buffer would be the first malloc, and the heap would
        // exist before the work (an attached tracer would not see it grow).
        char line[32];
        int n = snprintf(line, sizeof line, "pid %d\n", getpid());
        if (write(1, line, n) != n)
            return 1;
        wait_usr1();
    } else {
        // Let the tracer read the records of the loader's mappings while the process lives:
        // it names libc from /proc/PID/map_files, which a process that exited no longer has
        // (docs/callsites.md, limits).
        usleep(300000);
    }
    grow_brk();
    grow_mmap();
    char *direct = grow_direct();
    touch_pages(direct);
    free_mmaps();
    printf("done\n");
    fflush(stdout);
    if (hold)
        wait_usr1();
    return 0;
}
