/* htls.c: the BSD socket calls of htls.h over the WasmEdge socket extension (V2 dialect). */
#include "htls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define IMPORT(name) __attribute__((import_module("wasi_snapshot_preview1"), import_name(#name)))

typedef struct { uint8_t *buf; uint32_t buf_len; } wasi_address;
typedef struct { const void *buf; uint32_t len; } wasi_ciovec;
typedef struct { void *buf; uint32_t len; } wasi_iovec;
typedef struct { uint32_t family; uint32_t data_len; uint8_t *data; } wasi_sockaddr;
typedef struct wasi_addrinfo {
    uint16_t flags; uint8_t family; uint8_t socktype; uint32_t protocol; uint32_t addrlen;
    wasi_sockaddr *addr; char *canonname; uint32_t canonnamelen; struct wasi_addrinfo *next;
} wasi_addrinfo;

int32_t __htls_sock_open(int32_t af, int32_t type, int32_t *fd) IMPORT(sock_open);
int32_t __htls_sock_bind(int32_t fd, wasi_address *addr, uint32_t port) IMPORT(sock_bind);
int32_t __htls_sock_connect(int32_t fd, wasi_address *addr, uint32_t port) IMPORT(sock_connect);
int32_t __htls_sock_listen(int32_t fd, int32_t backlog) IMPORT(sock_listen);
int32_t __htls_sock_getsockopt(int32_t fd, int32_t level, int32_t name, void *value, uint32_t len) IMPORT(sock_getsockopt);
int32_t __htls_sock_setsockopt(int32_t fd, int32_t level, int32_t name, const void *value, uint32_t len) IMPORT(sock_setsockopt);
int32_t __htls_sock_getlocaladdr(int32_t fd, wasi_address *addr, uint32_t *port) IMPORT(sock_getlocaladdr);
int32_t __htls_sock_getpeeraddr(int32_t fd, wasi_address *addr, uint32_t *port) IMPORT(sock_getpeeraddr);
int32_t __htls_sock_send_to(int32_t fd, const wasi_ciovec *iovs, uint32_t n, wasi_address *addr, uint32_t port,
                            int32_t flags, uint32_t *nwritten) IMPORT(sock_send_to);
int32_t __htls_sock_recv_from(int32_t fd, wasi_iovec *iovs, uint32_t n, wasi_address *addr, int32_t flags,
                              uint32_t *port, uint32_t *nread, uint16_t *oflags) IMPORT(sock_recv_from);
int32_t __htls_sock_getaddrinfo(const char *node, uint32_t node_len, const char *service, uint32_t service_len,
                                const wasi_addrinfo *hints, wasi_addrinfo **res, uint32_t max,
                                uint32_t *count) IMPORT(sock_getaddrinfo);

static int fail(int32_t err) { errno = err; return -1; }

/* a sockaddr_in/in6 as the extension's V2 address: 128 bytes, u16 family then the octets */
static int to_wasi(const struct sockaddr *sa, socklen_t len, uint8_t raw[128], wasi_address *out, uint32_t *port) {
    memset(raw, 0, 128);
    out->buf = raw; out->buf_len = 128;
    if (sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        raw[0] = 1; memcpy(raw + 2, &in->sin_addr, 4); *port = ntohs(in->sin_port);
        return 0;
    }
    if (sa->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        raw[0] = 2; memcpy(raw + 2, &in6->sin6_addr, 16); *port = ntohs(in6->sin6_port);
        return 0;
    }
    return fail(EAFNOSUPPORT);
}

static void from_wasi(const uint8_t raw[128], uint32_t port, struct sockaddr *sa, socklen_t *len) {
    if (!sa || !len) return;
    struct sockaddr_storage ss; memset(&ss, 0, sizeof ss);
    socklen_t size;
    if (raw[0] == 2) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        in6->sin6_family = AF_INET6; in6->sin6_port = htons(port); memcpy(&in6->sin6_addr, raw + 2, 16);
        size = sizeof *in6;
    } else {
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;
        in->sin_family = AF_INET; in->sin_port = htons(port); memcpy(&in->sin_addr, raw + 2, 4);
        size = sizeof *in;
    }
    memcpy(sa, &ss, *len < size ? *len : size);
    *len = size;
}

int socket(int domain, int type, int protocol) {
    (void)protocol;
    int kind = type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC);
    int32_t socktype = kind == SOCK_DGRAM ? 1 : kind == SOCK_STREAM ? 2 : -1;
    if (socktype < 0) return fail(EPROTOTYPE);
    int32_t fd, err = __htls_sock_open(domain == AF_INET6 ? 2 : domain == AF_INET ? 1 : domain, socktype, &fd);
    if (err) return fail(err);
    if (type & SOCK_NONBLOCK) {
        __wasi_fdstat_t st;
        if (__wasi_fd_fdstat_get(fd, &st) == 0) __wasi_fd_fdstat_set_flags(fd, st.fs_flags | __WASI_FDFLAGS_NONBLOCK);
    }
    return fd;
}

int connect(int fd, const struct sockaddr *addr, socklen_t len) {
    uint8_t raw[128]; wasi_address a; uint32_t port;
    if (to_wasi(addr, len, raw, &a, &port)) return -1;
    int32_t err = __htls_sock_connect(fd, &a, port);
    return err ? fail(err) : 0;
}

int bind(int fd, const struct sockaddr *addr, socklen_t len) {
    uint8_t raw[128]; wasi_address a; uint32_t port;
    if (to_wasi(addr, len, raw, &a, &port)) return -1;
    int32_t err = __htls_sock_bind(fd, &a, port);
    return err ? fail(err) : 0;
}

int listen(int fd, int backlog) {
    int32_t err = __htls_sock_listen(fd, backlog);
    return err ? fail(err) : 0;
}

/* (level, name) of the C API -> the extension's */
static int option(int level, int name, int32_t *xlevel, int32_t *xname) {
    if (level == TIMECRAFT_LEVEL) { *xlevel = level; *xname = name; return 0; }
    if (level == SOL_SOCKET) {
        *xlevel = 0;
        switch (name) {
        case SO_REUSEADDR: *xname = 0; return 0;
        case SO_TYPE: *xname = 1; return 0;
        case SO_ERROR: *xname = 2; return 0;
        case SO_BROADCAST: *xname = 4; return 0;
        case SO_SNDBUF: *xname = 5; return 0;
        case SO_RCVBUF: *xname = 6; return 0;
        case SO_KEEPALIVE: *xname = 7; return 0;
        case SO_ACCEPTCONN: *xname = 13; return 0;
        }
    }
    if (level == IPPROTO_TCP && name == TCP_NODELAY) { *xlevel = 6; *xname = 15; return 0; }
    return fail(ENOPROTOOPT);
}

int setsockopt(int fd, int level, int name, const void *value, socklen_t len) {
    int32_t xlevel, xname;
    if (option(level, name, &xlevel, &xname)) return -1;
    int32_t err = __htls_sock_setsockopt(fd, xlevel, xname, value, len);
    return err ? fail(err) : 0;
}

int htls_getsockopt(int fd, int level, int name, void *__restrict value, socklen_t *__restrict len) {
    int32_t xlevel, xname;
    if (option(level, name, &xlevel, &xname)) return -1;
    int32_t err = __htls_sock_getsockopt(fd, xlevel, xname, value, *len);
    if (err) return fail(err);
    if (level == TIMECRAFT_LEVEL) *len = strnlen(value, *len);
    else if (level == SOL_SOCKET && name == SO_TYPE) *(int *)value = *(int *)value == 1 ? SOCK_DGRAM : SOCK_STREAM;
    return 0;
}

int getsockname(int fd, struct sockaddr *__restrict addr, socklen_t *__restrict len) {
    uint8_t raw[128] = {0}; wasi_address a = {raw, 128}; uint32_t port;
    int32_t err = __htls_sock_getlocaladdr(fd, &a, &port);
    if (err) return fail(err);
    from_wasi(raw, port, addr, len);
    return 0;
}

int getpeername(int fd, struct sockaddr *__restrict addr, socklen_t *__restrict len) {
    uint8_t raw[128] = {0}; wasi_address a = {raw, 128}; uint32_t port;
    int32_t err = __htls_sock_getpeeraddr(fd, &a, &port);
    if (err) return fail(err);
    from_wasi(raw, port, addr, len);
    return 0;
}

ssize_t sendto(int fd, const void *buf, size_t len, int flags, const struct sockaddr *to, socklen_t tolen) {
    if (!to) return send(fd, buf, len, flags);
    uint8_t raw[128]; wasi_address a; uint32_t port, n;
    if (to_wasi(to, tolen, raw, &a, &port)) return -1;
    wasi_ciovec iov = {buf, len};
    int32_t err = __htls_sock_send_to(fd, &iov, 1, &a, port, 0, &n);
    return err ? fail(err) : (ssize_t)n;
}

ssize_t recvfrom(int fd, void *__restrict buf, size_t len, int flags, struct sockaddr *__restrict from,
                 socklen_t *__restrict fromlen) {
    uint8_t raw[128] = {0}; wasi_address a = {raw, 128}; uint32_t port = 0, n; uint16_t oflags;
    wasi_iovec iov = {buf, len};
    int32_t err = __htls_sock_recv_from(fd, &iov, 1, &a, flags & MSG_PEEK ? 1 : 0, &port, &n, &oflags);
    if (err) return fail(err);
    from_wasi(raw, port, from, fromlen);
    return n;
}

#define MAX_RESULTS 16

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints, struct addrinfo **res) {
    wasi_addrinfo wh; memset(&wh, 0, sizeof wh);
    if (hints) {
        wh.flags = (hints->ai_flags & AI_PASSIVE ? 1 : 0) | (hints->ai_flags & AI_NUMERICHOST ? 4 : 0) |
                   (hints->ai_flags & AI_NUMERICSERV ? 8 : 0);
        wh.family = hints->ai_family == AF_INET ? 1 : hints->ai_family == AF_INET6 ? 2 : 0;
        wh.socktype = hints->ai_socktype == SOCK_DGRAM ? 1 : hints->ai_socktype == SOCK_STREAM ? 2 : 0;
    }
    /* the guest allocates the nodes the host fills: one block, freed by freeaddrinfo */
    struct block {  /* `out` first: freeaddrinfo frees the block through it */
        struct addrinfo out[MAX_RESULTS]; struct sockaddr_in6 addrs[MAX_RESULTS];
        wasi_addrinfo w[MAX_RESULTS]; wasi_sockaddr sa[MAX_RESULTS]; uint8_t data[MAX_RESULTS][18];
    } *b = calloc(1, sizeof *b);
    if (!b) return EAI_MEMORY;
    for (int i = 0; i < MAX_RESULTS; i++) {
        b->sa[i].data = b->data[i]; b->sa[i].data_len = 18;
        b->w[i].addr = &b->sa[i];
        b->w[i].next = i + 1 < MAX_RESULTS ? &b->w[i + 1] : NULL;
    }
    wasi_addrinfo *first = b->w; uint32_t count = 0;
    int32_t err = __htls_sock_getaddrinfo(node ? node : "", node ? strlen(node) : 0, service ? service : "",
                                          service ? strlen(service) : 0, &wh, &first, MAX_RESULTS, &count);
    if (err || count == 0) { free(b); return err == EAGAIN ? EAI_AGAIN : EAI_NONAME; }
    for (uint32_t i = 0; i < count; i++) {
        struct addrinfo *ai = &b->out[i];
        uint16_t port = (uint16_t)(b->data[i][0] << 8 | b->data[i][1]);
        if (b->w[i].family == 2) {
            struct sockaddr_in6 *in6 = &b->addrs[i];
            in6->sin6_family = AF_INET6; in6->sin6_port = htons(port); memcpy(&in6->sin6_addr, b->data[i] + 2, 16);
            ai->ai_family = AF_INET6; ai->ai_addrlen = sizeof *in6;
        } else {
            struct sockaddr_in *in = (struct sockaddr_in *)&b->addrs[i];
            in->sin_family = AF_INET; in->sin_port = htons(port); memcpy(&in->sin_addr, b->data[i] + 2, 4);
            ai->ai_family = AF_INET; ai->ai_addrlen = sizeof *in;
        }
        ai->ai_addr = (struct sockaddr *)&b->addrs[i];
        ai->ai_socktype = b->w[i].socktype == 1 ? SOCK_DGRAM : SOCK_STREAM;
        ai->ai_protocol = b->w[i].socktype == 1 ? IPPROTO_UDP : IPPROTO_TCP;
        ai->ai_next = i + 1 < count ? &b->out[i + 1] : NULL;
    }
    *res = b->out;
    return 0;
}

void freeaddrinfo(struct addrinfo *res) { free(res); }

const char *gai_strerror(int code) {
    switch (code) {
    case EAI_NONAME: return "name does not resolve (or the host's policy refuses it)";
    case EAI_AGAIN: return "temporary failure in name resolution";
    case EAI_MEMORY: return "out of memory";
    default: return "name resolution failed";
    }
}

int htls_client(int fd, const char *server_name) {
    return setsockopt(fd, TIMECRAFT_LEVEL, HTLS_OPTION, server_name, strlen(server_name));
}

int htls_server(int fd, const char *identity_name) {
    return setsockopt(fd, TIMECRAFT_LEVEL, HTLS_SERVER, identity_name, strlen(identity_name));
}

int htls_set_alpn(int fd, const char *ids) {
    return setsockopt(fd, TIMECRAFT_LEVEL, HTLS_ALPN, ids, strlen(ids));
}

int htls_get(int fd, int option, char *buf, size_t len) {
    socklen_t n = len;
    return getsockopt(fd, TIMECRAFT_LEVEL, option, buf, &n);
}

int htls_dial(const char *host, const char *port, int tls) {
    struct addrinfo hints, *res, *ai;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, port, &hints, &res)) return fail(ENOENT);
    int fd = -1, saved = ECONNREFUSED;
    for (ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd < 0) { saved = errno; continue; }
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) break;
        saved = errno; close(fd); fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) return fail(saved);
    if (tls && htls_client(fd, host)) { saved = errno; close(fd); return fail(saved); }
    return fd;
}
