// build: -O1 -g
/* Marks phases for the tracer (`POST $TRACER_API_URL/api/v1/phases?name=...`, the way a test
 * harness would, with the token the tracer gives it in $TRACER_API_TOKEN): allocates and touches MIB MiB, marks "loaded", frees it, marks "freed".
 * Exits 3 if a mark was not acknowledged with HTTP 200.
 * Usage: phase_marks MIB */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Sends one POST to http://HOST:PORT (an IPv4 address, as the tracer exports it). */
static int mark(const char *name) {
    const char *url = getenv("TRACER_API_URL");
    if (!url || strncmp(url, "http://", 7) != 0) return -1;
    char host[64];
    int port;
    if (sscanf(url + 7, "%63[^:]:%d", host, &port) != 2) return -1;
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) return -1;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) return -1;
    /* The tracer hands its command a token: marks (POSTs) need authorization. */
    const char *token = getenv("TRACER_API_TOKEN");
    char request[512];
    int len = snprintf(request, sizeof request,
                       "POST /api/v1/phases?name=%s HTTP/1.1\r\nHost: %s\r\n"
                       "Authorization: Bearer %.128s\r\n"
                       "Content-Length: 0\r\nConnection: close\r\n\r\n",
                       name, host, token ? token : "");
    if (len < 0 || (size_t)len >= sizeof request) return -1;
    if (write(fd, request, (size_t)len) != len) return -1;
    char response[512] = {0};
    ssize_t got = read(fd, response, sizeof response - 1);
    close(fd);
    return got > 12 && strncmp(response + 9, "200", 3) == 0 ? 0 : -1;
}

int main(int argc, char **argv) {
    size_t bytes = (size_t)(argc > 1 ? atol(argv[1]) : 64) << 20;
    char *block = malloc(bytes);
    if (!block) return 1;
    /* Volatile stores: a memset of memory that is only freed afterwards may be optimised
     * away. */
    for (size_t i = 0; i < bytes; i += 4096) ((volatile char *)block)[i] = 1;
    if (mark("loaded") != 0) return 3;
    free(block);
    if (mark("freed") != 0) return 3;
    return 0;
}
