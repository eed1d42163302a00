// build: -O1 -g
/* Maps a little memory, stops itself once (a quiescent point for the model tests), exits. */
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>

int main(void) {
    char *p = mmap(NULL, 5 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return 1;
    p[0] = 1;
    char *q = malloc(50000);
    if (q) q[0] = 1;
    raise(SIGSTOP);
    return 0;
}
