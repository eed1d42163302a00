// build: -O2
/* Short-lived processes with distinct names, for the soak of `attach --all --group-by comm`
 * (issue 13): TOTAL processes spread evenly over SECONDS, one after another. Every other one
 * renames itself with prctl(PR_SET_NAME) and every fourth of those forks a child that renames
 * itself too; the others exec this program through a symlink of a new name in DIR (the comm
 * after exec is the link's name), as an attacker mints comms. Each allocates and frees a
 * little (brk, mmap, faults) before it exits.
 * Usage: soakspawn TOTAL SECONDS DIR      (soakspawn child: the exec'd work) */
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

static void work(void) {
    char *small = malloc(64 * 1024);
    char *big = malloc(512 * 1024); /* above the mmap threshold */
    if (!small || !big) _exit(1);
    memset(small, 1, 64 * 1024);
    for (size_t off = 0; off < 512 * 1024; off += 4096) big[off] = 1;
    char *m = mmap(NULL, 64 * 1024, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m != MAP_FAILED) {
        m[0] = 1;
        munmap(m, 64 * 1024);
    }
    free(big);
    free(small);
}

static void named(const char *fmt, uint64_t i) {
    char name[16];
    snprintf(name, sizeof name, fmt, (unsigned long long)i);
    prctl(PR_SET_NAME, name, 0, 0, 0);
}

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "child") == 0) {
        work();
        return 0;
    }
    if (argc != 4) {
        fprintf(stderr, "usage: soakspawn TOTAL SECONDS DIR\n");
        return 2;
    }
    uint64_t total = strtoull(argv[1], NULL, 10);
    uint64_t seconds = strtoull(argv[2], NULL, 10);
    const char *dir = argv[3];
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) {
        perror("readlink");
        return 1;
    }
    self[n] = 0;
    uint64_t start = bench_start();
    for (uint64_t i = 0; i < total; i++) {
        /* Paced: process i starts at i * SECONDS / TOTAL. */
        uint64_t due = start + i * seconds * 1000000000ull / total;
        uint64_t now = bench_now_ns();
        if (due > now) {
            struct timespec ts = {(time_t)((due - now) / 1000000000ull),
                                  (long)((due - now) % 1000000000ull)};
            nanosleep(&ts, NULL);
        }
        char link[4200];
        snprintf(link, sizeof link, "%s/sk%06llu-x", dir, (unsigned long long)i);
        int exec = i % 2 == 1;
        if (exec && symlink(self, link) != 0) {
            perror("symlink");
            return 1;
        }
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            return 1;
        }
        if (pid == 0) {
            if (exec) {
                execl(link, link, "child", (char *)NULL);
                _exit(127);
            }
            named("sk%06llu-p", i);
            pid_t grandchild = -1;
            if (i % 4 == 0) {
                grandchild = fork();
                if (grandchild == 0) {
                    named("sk%06llu-g", i);
                    work();
                    _exit(0);
                }
            }
            work();
            if (grandchild > 0) waitpid(grandchild, NULL, 0);
            _exit(0);
        }
        int status;
        if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "soakspawn: process %llu failed\n", (unsigned long long)i);
            return 1;
        }
        if (exec) unlink(link);
    }
    bench_done(start, total);
    return 0;
}
