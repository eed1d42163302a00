// build: -O1 -g
/* Runs itself again from a sealed memfd (as systemd and container runtimes start helpers: the
 * kernel names such a process after the memfd, e.g. `memfd:sealed-91`), then grows its brk
 * heap between self-stops. Prints "pid N" from the memfd image first, without malloc: the
 * heap is still empty at the first stop.
 * Usage: memfd_heap            (copies itself into a memfd and execs that)
 *        memfd_heap norandom   (the same without address randomisation, as `setarch -R`: the
 *                               heap starts right after the bss, and brk extends the bss VMA)
 *        memfd_heap run        (the work; also what a static PIE build runs directly) */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <unistd.h>

static char bss[1 << 16];

static int exec_from_memfd(char **argv) {
    int src = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    int fd = memfd_create("sealed-91", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (src < 0 || fd < 0) return 1;
    char buf[65536];
    ssize_t n;
    while ((n = read(src, buf, sizeof buf)) > 0)
        if (write(fd, buf, n) != n) return 1;
    if (n < 0) return 1;
    close(src);
    if (fcntl(fd, F_ADD_SEALS, F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE) != 0)
        return 1;
    char *args[] = {argv[0], "run", NULL};
    extern char **environ;
    fexecve(fd, args, environ);
    perror("fexecve");
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 2) return exec_from_memfd(argv);
    if (strcmp(argv[1], "norandom") == 0) {
        if (personality(ADDR_NO_RANDOMIZE) == -1) return 1;
        return exec_from_memfd(argv);
    }
    memset(bss, 1, sizeof bss);
    char line[32];
    int n = snprintf(line, sizeof line, "pid %d\n", getpid());
    if (write(1, line, n) != n) return 1;
    raise(SIGSTOP);
    /* Small blocks: glibc takes them from the brk heap. */
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 2000; i++) {
            char *p = malloc(200);
            if (!p) return 1;
            memset(p, i, 200);
        }
        char *top = sbrk(0);
        if (sbrk(64 * 1024) == (void *)-1) return 1;
        memset(top, 1, 64 * 1024);
        raise(SIGSTOP);
    }
    return 0;
}
