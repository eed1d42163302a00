// build: -O1
/* A process to attach to. Maps and unmaps PRE regions of 5 pages right away, prints "ready",
 * then waits for a line on stdin. On "go" it maps and unmaps POST regions of 5 pages, forks a
 * child that maps and unmaps CHILD regions of 3 pages, waits for it, and exits.
 * Usage: attach_target PRE POST CHILD. With "spin" instead of "go" it loops mapping 5-page
 * regions until killed (an unrelated busy process). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

static void churn(long times, long pages) {
    for (long i = 0; i < times; i++) {
        char *p = mmap(NULL, pages * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) exit(1);
        p[0] = 1;
        munmap(p, pages * 4096);
    }
}

int main(int argc, char **argv) {
    if (argc < 4) return 2;
    long pre = atol(argv[1]), post = atol(argv[2]), child = atol(argv[3]);
    churn(pre, 5);
    printf("ready\n");
    fflush(stdout);
    char line[32];
    if (!fgets(line, sizeof line, stdin)) return 3;
    if (strncmp(line, "spin", 4) == 0)
        for (;;) churn(1, 5);
    churn(post, 5);
    pid_t pid = fork();
    if (pid == 0) {
        churn(child, 3);
        _exit(0);
    }
    int status;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 4;
}
