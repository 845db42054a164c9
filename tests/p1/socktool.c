/* Socket extension and hTLS probe: one subcommand per behaviour a test checks; prints one line
 * per fact, errors as "NAME: errno N". */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <fcntl.h>
#include <arpa/inet.h>

#include "htls.h"

static int report(const char *what, int rc) {
    if (rc < 0) printf("%s: errno %d\n", what, errno); else printf("%s: ok\n", what);
    fflush(stdout);
    return rc;
}

static int addr_of(const char *host, int port, struct sockaddr_storage *ss) {
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *in = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, host, &in->sin_addr) == 1) { in->sin_family = AF_INET; in->sin_port = htons(port); return sizeof *in; }
    if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) { in6->sin6_family = AF_INET6; in6->sin6_port = htons(port); return sizeof *in6; }
    return -1;
}

static int tcp_connect(const char *host, int port) {
    struct sockaddr_storage ss; int len = addr_of(host, port, &ss);
    int fd = socket(ss.ss_family, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    if (connect(fd, (struct sockaddr *)&ss, len) < 0) { int e = errno; close(fd); errno = e; return -1; }
    return fd;
}

static void drain(int fd, const char *what) {
    char buf[65536]; ssize_t n; size_t total = 0; unsigned long sum = 0; char head[64] = "";
    while ((n = read(fd, buf, sizeof buf)) > 0) {
        if (!total) { memcpy(head, buf, n < 63 ? n : 63); head[n < 63 ? n : 63] = 0; char *e = strpbrk(head, "\r\n"); if (e) *e = 0; }
        for (ssize_t i = 0; i < n; i++) sum = sum * 31 + (unsigned char)buf[i];
        total += n;
    }
    printf("%s: %zu bytes, first line \"%s\", checksum %lu, end %s\n", what, total, head, sum,
           n == 0 ? "eof" : "error");
    if (n < 0) printf("%s read: errno %d\n", what, errno);
    fflush(stdout);
}

static void print_tls(int fd) {
    char v[32] = "", c[80] = "", a[32] = "", s[256] = "";
    htls_get(fd, HTLS_VERSION, v, sizeof v);
    htls_get(fd, HTLS_CIPHER, c, sizeof c);
    htls_get(fd, HTLS_ALPN, a, sizeof a);
    htls_get(fd, HTLS_PEER_SUBJECT, s, sizeof s);
    printf("tls: version %s cipher %s alpn \"%s\" peer \"%s\"\n", v, c, a, s);
    fflush(stdout);
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    const char *cmd = argv[1];

    if (!strcmp(cmd, "echo-client")) {  /* HOST PORT MSG: send, shut down writing, read to the end */
        int fd = tcp_connect(argv[2], atoi(argv[3]));
        if (report("connect", fd) < 0) return 1;
        struct sockaddr_storage ss; socklen_t len = sizeof ss; char ip[64];
        getpeername(fd, (struct sockaddr *)&ss, &len);
        inet_ntop(ss.ss_family, ss.ss_family == AF_INET ? (void *)&((struct sockaddr_in *)&ss)->sin_addr
                                                        : (void *)&((struct sockaddr_in6 *)&ss)->sin6_addr, ip, sizeof ip);
        printf("peer %s %d\n", ip, ntohs(((struct sockaddr_in *)&ss)->sin_port));
        send(fd, argv[4], strlen(argv[4]), 0);
        shutdown(fd, SHUT_WR);
        drain(fd, "reply");
        close(fd);
        return 0;
    }
    if (!strcmp(cmd, "server")) {  /* HOST PORT N: accept N connections, answer each with its bytes upper-cased */
        struct sockaddr_storage ss; int len = addr_of(argv[2], atoi(argv[3]), &ss);
        int fd = socket(ss.ss_family, SOCK_STREAM, 0);
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (report("bind", bind(fd, (struct sockaddr *)&ss, len)) < 0) return 1;
        if (report("listen", listen(fd, 8)) < 0) return 1;
        for (int i = 0, n = atoi(argv[4]); i < n; i++) {
            int c = accept(fd, NULL, NULL);
            if (report("accept", c) < 0) return 1;
            char buf[4096]; ssize_t got; size_t total = 0;
            while ((got = recv(c, buf, sizeof buf, 0)) > 0) {
                for (ssize_t k = 0; k < got; k++) if (buf[k] >= 'a' && buf[k] <= 'z') buf[k] -= 32;
                send(c, buf, got, 0); total += got;
            }
            printf("served %zu bytes\n", total); fflush(stdout);
            close(c);
        }
        close(fd);
        return 0;
    }
    if (!strcmp(cmd, "udp")) {  /* HOST PORT MSG: send a datagram, print the answer and who sent it */
        struct sockaddr_storage ss; int len = addr_of(argv[2], atoi(argv[3]), &ss);
        int fd = socket(ss.ss_family, SOCK_DGRAM, 0);
        if (report("sendto", sendto(fd, argv[4], strlen(argv[4]), 0, (struct sockaddr *)&ss, len)) < 0) return 1;
        char buf[2048]; struct sockaddr_storage from; socklen_t flen = sizeof from;
        ssize_t n = recvfrom(fd, buf, sizeof buf - 1, 0, (struct sockaddr *)&from, &flen);
        if (report("recvfrom", n) < 0) return 1;
        buf[n] = 0;
        printf("datagram \"%s\" from port %d\n", buf, ntohs(((struct sockaddr_in *)&from)->sin_port));
        return 0;
    }
    if (!strcmp(cmd, "udp-server")) {  /* HOST PORT: answer one datagram, upper-cased */
        struct sockaddr_storage ss; int len = addr_of(argv[2], atoi(argv[3]), &ss);
        int fd = socket(ss.ss_family, SOCK_DGRAM, 0);
        if (report("bind", bind(fd, (struct sockaddr *)&ss, len)) < 0) return 1;
        char buf[2048]; struct sockaddr_storage from; socklen_t flen = sizeof from;
        ssize_t n = recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &flen);
        if (report("recvfrom", n) < 0) return 1;
        for (ssize_t k = 0; k < n; k++) if (buf[k] >= 'a' && buf[k] <= 'z') buf[k] -= 32;
        report("sendto", sendto(fd, buf, n, 0, (struct sockaddr *)&from, flen));
        return 0;
    }
    if (!strcmp(cmd, "nonblocking-connect")) {  /* HOST PORT */
        struct sockaddr_storage ss; int len = addr_of(argv[2], atoi(argv[3]), &ss);
        int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK, 0);
        int rc = connect(fd, (struct sockaddr *)&ss, len);
        printf("connect: %s\n", rc == 0 ? "ok" : errno == EINPROGRESS ? "in progress" : "failed");
        struct pollfd p = {fd, POLLOUT, 0};
        int polls = 0;
        while (poll(&p, 1, 5000) == 0) polls++;
        int err = 0; socklen_t elen = sizeof err;
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen);
        printf("so_error: %d\n", err);
        char buf[16];
        ssize_t n = read(fd, buf, sizeof buf);
        printf("nonblocking read: %s\n", n < 0 && errno == EAGAIN ? "EAGAIN" : n < 0 ? "error" : "data");
        return 0;
    }
    if (!strcmp(cmd, "options")) {  /* HOST PORT: socket options set and read back */
        int fd = tcp_connect(argv[2], atoi(argv[3])), one = 1, v; socklen_t l = sizeof v;
        report("keepalive", setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one));
        getsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &v, &l); printf("keepalive now %d\n", v);
        report("nodelay", setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one));
        getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &v, &l); printf("nodelay now %d\n", v);
        int size = 65536;
        report("rcvbuf", setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size));
        getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, &l); printf("rcvbuf at least asked %d\n", v >= 65536);
        getsockopt(fd, SOL_SOCKET, SO_TYPE, &v, &l); printf("type stream %d\n", v == SOCK_STREAM);
        report("wrong size", setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, 2));
        report("unknown", setsockopt(fd, SOL_SOCKET, 12345, &one, sizeof one));
        return 0;
    }
    if (!strcmp(cmd, "resolve")) {  /* NAME */
        struct addrinfo hints, *res, *ai;
        memset(&hints, 0, sizeof hints);
        hints.ai_socktype = SOCK_STREAM;
        int rc = getaddrinfo(argv[2], "80", &hints, &res);
        if (rc) { printf("getaddrinfo: %s\n", gai_strerror(rc)); return 1; }
        for (ai = res; ai; ai = ai->ai_next) {
            char ip[64];
            void *a = ai->ai_family == AF_INET ? (void *)&((struct sockaddr_in *)ai->ai_addr)->sin_addr
                                               : (void *)&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr;
            inet_ntop(ai->ai_family, a, ip, sizeof ip);
            printf("address %s port %d\n", ip, ntohs(((struct sockaddr_in *)ai->ai_addr)->sin_port));
        }
        freeaddrinfo(res);
        return 0;
    }
    if (!strcmp(cmd, "connect")) {  /* HOST PORT: just the connect's result */
        report("connect", tcp_connect(argv[2], atoi(argv[3])));
        return 0;
    }
    if (!strcmp(cmd, "bind")) {  /* HOST PORT [udp] */
        struct sockaddr_storage ss; int len = addr_of(argv[2], atoi(argv[3]), &ss);
        int fd = socket(ss.ss_family, argc > 4 ? SOCK_DGRAM : SOCK_STREAM, 0);
        report("bind", bind(fd, (struct sockaddr *)&ss, len));
        return 0;
    }
    if (!strcmp(cmd, "sendto")) {  /* HOST PORT: an unconnected datagram */
        struct sockaddr_storage ss; int len = addr_of(argv[2], atoi(argv[3]), &ss);
        int fd = socket(ss.ss_family, SOCK_DGRAM, 0);
        report("sendto", sendto(fd, "x", 1, 0, (struct sockaddr *)&ss, len));
        return 0;
    }
    if (!strcmp(cmd, "fetch")) {  /* HOST PORT NAME [ALPN] [IDENTITY] [nonblocking]: hTLS GET / */
        int fd = tcp_connect(argv[2], atoi(argv[3]));
        if (report("connect", fd) < 0) return 1;
        if (argc > 5 && *argv[5]) report("alpn", htls_set_alpn(fd, argv[5]));
        if (argc > 6 && *argv[6]) report("identity", setsockopt(fd, TIMECRAFT_LEVEL, HTLS_IDENTITY, argv[6], strlen(argv[6])));
        if (report("htls", htls_client(fd, argv[4])) < 0) return 1;
        if (argc > 7 && !strcmp(argv[7], "nonblocking")) {  /* EAGAIN until the handshake is done, poll says when */
            fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
            const char *req = "GET / HTTP/1.0\r\n\r\n"; size_t off = 0; int again = 0, polls = 0;
            while (off < strlen(req)) {
                ssize_t n = write(fd, req + off, strlen(req) - off);
                if (n > 0) { off += n; continue; }
                if (errno != EAGAIN) { report("write", -1); return 1; }
                again++;
                struct pollfd p = {fd, POLLOUT, 0}; poll(&p, 1, -1); polls++;
            }
            printf("write: ok after %s\n", again ? "EAGAIN" : "no wait");
            char buf[65536]; size_t total = 0; ssize_t n;
            for (;;) {
                n = read(fd, buf, sizeof buf);
                if (n > 0) { total += n; continue; }
                if (n == 0) break;
                if (errno != EAGAIN) break;
                struct pollfd p = {fd, POLLIN, 0}; poll(&p, 1, -1); polls++;
            }
            printf("nonblocking: %zu bytes, end %s\n", total, n == 0 ? "eof" : "error");
            printf("polls: %d\n", polls);
            if (n < 0) printf("read: errno %d\n", errno);
            print_tls(fd);
            close(fd);
            return 0;
        }
        const char *req = "GET / HTTP/1.0\r\n\r\n";
        if (report("send", send(fd, req, strlen(req), 0)) < 0) {
            int err = 0; socklen_t l = sizeof err; getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l);
            printf("so_error: %d\n", err);
            char b[8]; report("recv", recv(fd, b, sizeof b, 0));
            close(fd);
            return 1;
        }
        if (argc > 7 && !strcmp(argv[7], "shutdown")) report("shutdown", shutdown(fd, SHUT_WR));
        drain(fd, "response");
        print_tls(fd);
        close(fd);
        return 0;
    }
    if (!strcmp(cmd, "rules")) {  /* HOST PORT NAME: the option's misuses, each refused */
        int one = 1;
        int u = socket(AF_INET, SOCK_DGRAM, 0);
        report("on udp", htls_client(u, argv[4]));
        int l = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_storage ss; int len = addr_of("127.0.0.1", 0, &ss);
        setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        bind(l, (struct sockaddr *)&ss, len); listen(l, 1);
        report("on listening", htls_client(l, argv[4]));
        int n = socket(AF_INET, SOCK_STREAM, 0);
        report("before connect", htls_client(n, argv[4]));
        int fd = tcp_connect(argv[2], atoi(argv[3]));
        report("empty name", setsockopt(fd, TIMECRAFT_LEVEL, HTLS_OPTION, "", 0));
        report("first", htls_client(fd, argv[4]));
        report("second", htls_client(fd, argv[4]));
        close(fd);
        fd = tcp_connect(argv[2], atoi(argv[3]));
        send(fd, "x", 1, 0);
        report("after send", htls_client(fd, argv[4]));
        close(fd);
        report("unknown option", setsockopt(tcp_connect(argv[2], atoi(argv[3])), TIMECRAFT_LEVEL, 99, "x", 1));
        return 0;
    }
    if (!strcmp(cmd, "https-server")) {  /* HOST PORT IDENTITY N [client-cert]: server-side hTLS */
        struct sockaddr_storage ss; int len = addr_of(argv[2], atoi(argv[3]), &ss);
        int fd = socket(ss.ss_family, SOCK_STREAM, 0), one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (report("bind", bind(fd, (struct sockaddr *)&ss, len)) < 0) return 1;
        if (report("listen", listen(fd, 8)) < 0) return 1;
        for (int i = 0, count = atoi(argv[5]); i < count; i++) {
            int c = accept(fd, NULL, NULL);
            if (argc > 6) setsockopt(c, TIMECRAFT_LEVEL, HTLS_REQUEST_CLIENT_CERT, &one, sizeof one);
            htls_set_alpn(c, "http/1.1");
            if (report("htls server", htls_server(c, argv[4])) < 0) return 1;
            char req[4096]; size_t got = 0; ssize_t n;
            while (got < sizeof req - 1 && (n = recv(c, req + got, sizeof req - 1 - got, 0)) > 0) {
                got += n; req[got] = 0;
                if (strstr(req, "\r\n\r\n")) break;
            }
            if (got == 0) { printf("request: errno %d\n", errno); close(c); continue; }
            char subject[256] = "", body[512];
            htls_get(c, HTLS_PEER_SUBJECT, subject, sizeof subject);
            int blen = snprintf(body, sizeof body, "hello over host TLS; client \"%s\"\n", subject);
            char head[128];
            int hlen = snprintf(head, sizeof head, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n", blen);
            send(c, head, hlen, 0); send(c, body, blen, 0);
            printf("served client \"%s\"\n", subject); fflush(stdout);
            close(c);
        }
        return 0;
    }
    return 2;
}
