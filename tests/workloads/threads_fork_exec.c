// build: -O1 -g -pthread
/* A process to attach to in the middle of its life, with threads, a fork and an exec.
 * Prints "pid N" and stops itself (A). After SIGCONT: maps memory, starts one more thread,
 * stops (B). Forks: the child maps memory, prints "child N" on stderr, stops (C), then execs
 * `EXEC_PATH 0` (a program that stops itself, D). The parent waits for the child, stops (E),
 * exits. Usage: threads_fork_exec EXEC_PATH */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int done;

static void *worker(void *arg) {
    char *block = malloc(100000 + (size_t)arg * 1000);
    if (block) block[0] = 1;
    pthread_mutex_lock(&lock);
    while (!done) pthread_cond_wait(&cond, &lock);
    pthread_mutex_unlock(&lock);
    free(block);
    return NULL;
}

static void *map(size_t pages) {
    char *p = mmap(NULL, pages * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) exit(3);
    for (size_t i = 0; i < pages; i++) p[i * 4096] = 1;
    return p;
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    pthread_t threads[4];
    for (long i = 0; i < 3; i++) pthread_create(&threads[i], NULL, worker, (void *)i);
    printf("pid %d\n", getpid());
    fflush(stdout);
    raise(SIGSTOP); /* A: the tracer attaches here */

    char *a = map(20);
    mprotect(a + 4096, 4096, PROT_READ);
    pthread_create(&threads[3], NULL, worker, (void *)3L);
    char *b = malloc(300000);
    if (b) b[0] = 1;
    raise(SIGSTOP); /* B */

    pid_t child = fork();
    if (child == 0) {
        munmap(a, 8 * 4096);
        map(7);
        fprintf(stderr, "child %d\n", getpid());
        raise(SIGSTOP); /* C */
        execl(argv[1], argv[1], "0", (char *)NULL);
        _exit(127);
    }
    int status;
    waitpid(child, &status, 0);
    raise(SIGSTOP); /* E */
    pthread_mutex_lock(&lock);
    done = 1;
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&lock);
    for (int i = 0; i < 4; i++) pthread_join(threads[i], NULL);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 4;
}
