/* Seed 003's C example, as written (the name with its NUL, sizeof("example.com")), then one
 * HTTP/1.0 request over the socket; prints what came back. argv: HOST PORT. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "htls.h"

int main(int argc, char **argv) {
    const char *host = argc > 1 ? argv[1] : "example.com";
    const char *port = argc > 2 ? argv[2] : "443";

    struct addrinfo hints, *res;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, port, &hints, &res) != 0) { printf("getaddrinfo failed\n"); return 1; }

    int sock = socket(res->ai_family, res->ai_socktype, res->ai_protocol);
    if (connect(sock, res->ai_addr, res->ai_addrlen) != 0) { printf("connect: %s\n", strerror(errno)); return 1; }
    if (setsockopt(sock, TIMECRAFT_LEVEL, HTLS_OPTION, "example.com", sizeof("example.com")) != 0) {
        printf("setsockopt: %s\n", strerror(errno)); return 1;
    }

    // send/recv...
    const char *req = "GET / HTTP/1.0\r\nHost: example.com\r\n\r\n";
    if (send(sock, req, strlen(req), 0) < 0) { printf("send: %s (errno %d)\n", strerror(errno), errno); return 3; }
    char buf[4096]; ssize_t n; size_t total = 0; int first = 1;
    while ((n = recv(sock, buf, sizeof buf - 1, 0)) > 0) {
        buf[n] = 0;
        if (first) { char *eol = strchr(buf, '\r'); if (eol) *eol = 0; printf("status line: %s\n", buf); first = 0; }
        total += n;
    }
    if (n < 0) { printf("recv: %s (errno %d)\n", strerror(errno), errno); return 4; }
    char version[32] = "", cipher[64] = "";
    htls_get(sock, HTLS_VERSION, version, sizeof version);
    htls_get(sock, HTLS_CIPHER, cipher, sizeof cipher);
    printf("received %zu bytes over %s %s\n", total, version, cipher);
    freeaddrinfo(res);
    close(sock);
    return 0;
}
