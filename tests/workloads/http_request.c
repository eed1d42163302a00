// build: -O1
/* A minimal HTTP/1.1 client for the API access tests, so that they can run it as another user
 * (no curl or python needed there): sends one request and prints the whole response.
 * Usage: http_request ADDR METHOD PATH [HEADER]...
 *   ADDR: IPV4:PORT or unix:PATH. Host defaults to ADDR (IPV4:PORT) unless a Host header is
 *   given. Exits 0 when a response came, 2 when the connection failed. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static int connect_to(const char *addr) {
    if (strncmp(addr, "unix:", 5) == 0) {
        struct sockaddr_un un = {.sun_family = AF_UNIX};
        if (strlen(addr + 5) >= sizeof un.sun_path) return -1;
        strcpy(un.sun_path, addr + 5);
        int fd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&un, sizeof un) != 0) return -1;
        return fd;
    }
    char host[64];
    int port;
    if (sscanf(addr, "%63[^:]:%d", host, &port) != 2) return -1;
    struct sockaddr_in in = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
    if (inet_pton(AF_INET, host, &in.sin_addr) != 1) return -1;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&in, sizeof in) != 0) return -1;
    return fd;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: http_request ADDR METHOD PATH [HEADER]...\n");
        return 2;
    }
    int fd = connect_to(argv[1]);
    if (fd < 0) {
        perror("connect");
        return 2;
    }
    static char request[8192];
    size_t len = (size_t)snprintf(request, sizeof request, "%s %s HTTP/1.1\r\n", argv[2], argv[3]);
    int has_host = 0;
    for (int i = 4; i < argc && len < sizeof request; i++) {
        if (strncasecmp(argv[i], "host:", 5) == 0) has_host = 1;
        len += (size_t)snprintf(request + len, sizeof request - len, "%s\r\n", argv[i]);
    }
    if (!has_host && len < sizeof request)
        len += (size_t)snprintf(request + len, sizeof request - len, "Host: %s\r\n",
                                strncmp(argv[1], "unix:", 5) == 0 ? "localhost" : argv[1]);
    if (len < sizeof request)
        len += (size_t)snprintf(request + len, sizeof request - len,
                                "Content-Length: 0\r\nConnection: close\r\n\r\n");
    if (len >= sizeof request) return 2;
    if (write(fd, request, len) != (ssize_t)len) return 2;
    char buf[65536];
    ssize_t got;
    size_t total = 0;
    while ((got = read(fd, buf, sizeof buf)) > 0) {
        fwrite(buf, 1, (size_t)got, stdout);
        total += (size_t)got;
    }
    close(fd);
    return total > 0 ? 0 : 2;
}
