/* htls.h: BSD sockets and host TLS (hTLS) for wasm32-wasi (preview 1) programs.
 *
 * wasi-libc for preview 1 has no socket(), connect(), bind(), listen(), setsockopt() or
 * getaddrinfo(): this file declares them and htls.c implements them over the WasmEdge socket
 * extension that wasitls (and Timecraft) serve. Build with the program:
 *
 *     python -m ziglang cc --target=wasm32-wasi -O2 -Iguest/c -o app.wasm app.c guest/c/htls.c
 *
 * hTLS: after connect(), setsockopt(fd, TIMECRAFT_LEVEL, HTLS_OPTION, "name", sizeof("name"))
 * (or htls_client(fd, "name")) makes the host run TLS on the socket; send/recv/read/write then
 * carry plaintext. See docs/preview1.md for the options and errnos.
 */
#ifndef WASITLS_HTLS_H
#define WASITLS_HTLS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <netinet/in.h>

#ifdef __cplusplus
extern "C" {
#endif

/* hTLS: Timecraft's level and option, then wasitls' extensions at the same level */
#define TIMECRAFT_LEVEL 0x74696d65
#define HTLS_OPTION 1              /* set: server name; starts the client handshake */
#define HTLS_ALPN 2                /* set: "h2,http/1.1" (before HTLS_OPTION/HTLS_SERVER); get: the chosen id */
#define HTLS_IDENTITY 3            /* set: name of a host-held identity to present as a client */
#define HTLS_SERVER 4              /* set on an accepted socket: host-held identity; starts the server handshake */
#define HTLS_VERSION 5             /* get: "TLSv1.3" */
#define HTLS_CIPHER 6              /* get: IANA cipher suite name */
#define HTLS_REQUEST_CLIENT_CERT 7 /* set (int 1) before HTLS_SERVER: ask for and verify a client certificate */
#define HTLS_PEER_SUBJECT 8        /* get: the verified peer certificate's subject */

/* socket options wasi-libc (preview 1) does not define: Linux's numbers, translated by htls.c */
#ifndef SO_REUSEADDR
#define SO_REUSEADDR 2
#endif
#ifndef SO_ERROR
#define SO_ERROR 4
#endif
#ifndef SO_BROADCAST
#define SO_BROADCAST 6
#endif
#ifndef SO_SNDBUF
#define SO_SNDBUF 7
#endif
#ifndef SO_RCVBUF
#define SO_RCVBUF 8
#endif
#ifndef SO_KEEPALIVE
#define SO_KEEPALIVE 9
#endif
#ifndef SO_ACCEPTCONN
#define SO_ACCEPTCONN 30
#endif
#ifndef TCP_NODELAY
#define TCP_NODELAY 1
#endif
#ifndef SOMAXCONN
#define SOMAXCONN 128
#endif

/* <netdb.h>, which wasi-libc (preview 1) lacks */
#ifndef AI_PASSIVE
struct addrinfo {
    int ai_flags;
    int ai_family;
    int ai_socktype;
    int ai_protocol;
    socklen_t ai_addrlen;
    struct sockaddr *ai_addr;
    char *ai_canonname;
    struct addrinfo *ai_next;
};
#define AI_PASSIVE 0x01
#define AI_CANONNAME 0x02
#define AI_NUMERICHOST 0x04
#define AI_NUMERICSERV 0x400
#define EAI_NONAME -2
#define EAI_AGAIN -3
#define EAI_FAIL -4
#define EAI_FAMILY -6
#define EAI_SOCKTYPE -7
#define EAI_SERVICE -8
#define EAI_MEMORY -10
#define EAI_SYSTEM -11
#endif

int socket(int domain, int type, int protocol);
int connect(int fd, const struct sockaddr *addr, socklen_t len);
int bind(int fd, const struct sockaddr *addr, socklen_t len);
int listen(int fd, int backlog);
int setsockopt(int fd, int level, int name, const void *value, socklen_t len);
/* wasi-libc has a getsockopt of its own (SO_TYPE only): calls in code that includes this header go to ours */
int htls_getsockopt(int fd, int level, int name, void *__restrict value, socklen_t *__restrict len);
#define getsockopt htls_getsockopt
int getsockname(int fd, struct sockaddr *__restrict addr, socklen_t *__restrict len);
int getpeername(int fd, struct sockaddr *__restrict addr, socklen_t *__restrict len);
ssize_t sendto(int fd, const void *buf, size_t len, int flags, const struct sockaddr *to, socklen_t tolen);
ssize_t recvfrom(int fd, void *__restrict buf, size_t len, int flags, struct sockaddr *__restrict from,
                 socklen_t *__restrict fromlen);
int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints, struct addrinfo **res);
void freeaddrinfo(struct addrinfo *res);
const char *gai_strerror(int code);

/* hTLS helpers: 0 on success, -1 with errno set */
int htls_client(int fd, const char *server_name);
int htls_server(int fd, const char *identity_name);
int htls_set_alpn(int fd, const char *comma_separated_ids);
int htls_get(int fd, int option, char *buf, size_t len);
/* getaddrinfo + socket + connect, then hTLS with `host` as the server name when tls is non-zero */
int htls_dial(const char *host, const char *port, int tls);

#ifdef __cplusplus
}
#endif
#endif
