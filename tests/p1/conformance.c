/* Preview-1 conformance: what a C program sees of args, environ, clocks, random, files in a
 * preopen, directories, stdio and exit codes. Its output must be the same on every host. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void list(const char *path) {
    DIR *d = opendir(path);
    if (!d) { printf("opendir %s: %s\n", path, strerror(errno)); return; }
    char *names[64]; int n = 0; struct dirent *e;
    while ((e = readdir(d)) && n < 64) names[n++] = strdup(e->d_name);
    closedir(d);
    qsort(names, n, sizeof *names, cmp);
    printf("ls %s:", path);
    for (int i = 0; i < n; i++) { printf(" %s", names[i]); free(names[i]); }
    printf("\n");
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) printf("arg %d: %s\n", i, argv[i]);
    printf("env GREETING=%s\n", getenv("GREETING") ? getenv("GREETING") : "(unset)");
    printf("env MISSING=%s\n", getenv("MISSING") ? getenv("MISSING") : "(unset)");

    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a); clock_gettime(CLOCK_MONOTONIC, &b);
    printf("monotonic ordered: %d\n", b.tv_sec > a.tv_sec || (b.tv_sec == a.tv_sec && b.tv_nsec >= a.tv_nsec));
    clock_gettime(CLOCK_REALTIME, &a);
    printf("realtime after 2020: %d\n", a.tv_sec > 1577836800);
    struct timespec nap = {0, 20 * 1000 * 1000};
    clock_gettime(CLOCK_MONOTONIC, &a); nanosleep(&nap, NULL); clock_gettime(CLOCK_MONOTONIC, &b);
    printf("slept at least 20ms: %d\n", (b.tv_sec - a.tv_sec) * 1000000000LL + (b.tv_nsec - a.tv_nsec) >= 20000000LL);
    unsigned char r[32] = {0}; int nonzero = 0;
    arc4random_buf(r, sizeof r);
    for (int i = 0; i < 32; i++) nonzero |= r[i];
    printf("random: %d\n", nonzero != 0);

    /* files in the preopen */
    FILE *f = fopen("/data/new.txt", "w");
    if (!f) { printf("fopen: %s\n", strerror(errno)); return 1; }
    fprintf(f, "line one\nline two\n"); fclose(f);
    f = fopen("/data/new.txt", "a"); fprintf(f, "appended\n"); fclose(f);
    int fd = open("/data/new.txt", O_RDONLY);
    char buf[128]; ssize_t n = read(fd, buf, sizeof buf - 1); buf[n > 0 ? n : 0] = 0;
    printf("read %zd: %s", n, buf);
    printf("seek end: %lld\n", (long long)lseek(fd, 0, SEEK_END));
    printf("seek set 5: %lld\n", (long long)lseek(fd, 5, SEEK_SET));
    n = read(fd, buf, 3); buf[n] = 0; printf("after seek: %s\n", buf);
    printf("tell: %lld\n", (long long)lseek(fd, 0, SEEK_CUR));
    printf("pread: %zd\n", pread(fd, buf, 4, 0)); buf[4] = 0; printf("pread data: %s\n", buf);
    struct stat st; fstat(fd, &st);
    printf("fstat size %lld regular %d\n", (long long)st.st_size, S_ISREG(st.st_mode));
    close(fd);
    printf("stat missing: %d %s\n", stat("/data/missing", &st), strerror(errno));
    printf("mkdir: %d\n", mkdir("/data/sub", 0755));
    printf("mkdir again: %d %s\n", mkdir("/data/sub", 0755), strerror(errno));
    printf("stat dir: %d isdir %d\n", stat("/data/sub", &st), S_ISDIR(st.st_mode));
    printf("rename: %d\n", rename("/data/new.txt", "/data/sub/moved.txt"));
    printf("symlink: %d\n", symlink("moved.txt", "/data/sub/link"));
    char target[64] = {0};
    printf("readlink: %zd %s\n", readlink("/data/sub/link", target, sizeof target - 1), target);
    printf("lstat link: %d islnk %d\n", lstat("/data/sub/link", &st), S_ISLNK(st.st_mode));
    printf("stat via link size: %d %lld\n", stat("/data/sub/link", &st), (long long)st.st_size);
    printf("truncate: %d\n", truncate("/data/sub/moved.txt", 4));
    stat("/data/sub/moved.txt", &st); printf("size after truncate: %lld\n", (long long)st.st_size);
    list("/data");
    list("/data/sub");
    printf("rmdir non-empty: %d %s\n", rmdir("/data/sub"), strerror(errno));
    printf("unlink link: %d\n", unlink("/data/sub/link"));
    printf("unlink file: %d\n", unlink("/data/sub/moved.txt"));
    printf("rmdir: %d\n", rmdir("/data/sub"));
    printf("escape: %d %s\n", open("/data/../etc/passwd", O_RDONLY) >= 0, strerror(errno));
    printf("outside preopen: %d\n", open("/etc/passwd", O_RDONLY) >= 0);
    f = fopen("/data/input.txt", "r");
    if (f) { fgets(buf, sizeof buf, f); printf("input.txt: %s", buf); fclose(f); }

    /* stdin to end, stderr */
    size_t total = 0; char in[256];
    while ((n = read(0, in, sizeof in)) > 0) total += n;
    printf("stdin bytes: %zu\n", total);
    fprintf(stderr, "to stderr\n");
    fflush(stdout);
    return argc > 1 ? atoi(argv[argc - 1]) : 0;
}
