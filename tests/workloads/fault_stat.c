// build: -O1
/* Touches N pages (argv[1], default 20000) of fresh anonymous memory, then reads its own
 * minflt and majflt from /proc/self/stat as the last thing it does and prints them:
 * `minflt=<n> majflt=<n>`. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int main(int argc, char **argv) {
    long pages = argc > 1 ? atol(argv[1]) : 20000;
    char *m = mmap(NULL, pages * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return 1;
    for (long i = 0; i < pages; i++) m[i * 4096] = (char)i;
    static char buf[4096];
    int fd = open("/proc/self/stat", O_RDONLY);
    ssize_t n = read(fd, buf, sizeof buf - 1);
    if (n <= 0) return 1;
    buf[n] = 0;
    /* Fields after the last ')': state(3) ... minflt(10) cminflt(11) majflt(12). */
    char *p = strrchr(buf, ')') + 2;
    unsigned long f[12] = {0};
    char *save = NULL;
    char *tok = strtok_r(p, " ", &save);
    for (int i = 3; tok && i <= 12; i++, tok = strtok_r(NULL, " ", &save)) f[i - 1] = strtoul(tok, NULL, 10);
    char out[128];
    int len = snprintf(out, sizeof out, "minflt=%lu majflt=%lu\n", f[9], f[11]);
    (void)!write(1, out, (size_t)len);
    return 0;
}
