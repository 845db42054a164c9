/* The preview-1 calls libc hides: fd_readdir with cookies and small buffers, fd_renumber,
 * poll_oneoff over clocks and files, timestamps, hard links, fd_filestat_set_size, sync, advise.
 * Prints only what every host must agree on. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <wasi/api.h>

static int dir_fd(const char *path) { return open(path, O_RDONLY | O_DIRECTORY); }

int main(void) {
    mkdir("/data/d", 0755);
    const char *names[] = {"alpha", "beta", "gamma", "a-much-longer-name-than-the-others"};
    for (int i = 0; i < 4; i++) {
        char p[128]; snprintf(p, sizeof p, "/data/d/%s", names[i]);
        FILE *f = fopen(p, "w"); fputs(names[i], f); fclose(f);
    }
    int d = dir_fd("/data/d");
    /* read the directory 40 bytes at a time, resuming at each entry's d_next */
    __wasi_dircookie_t cookie = 0; int entries = 0, calls = 0, names_seen = 0;
    for (;;) {
        uint8_t buf[40]; __wasi_size_t used;
        if (__wasi_fd_readdir(d, buf, sizeof buf, cookie, &used)) { printf("readdir failed\n"); break; }
        calls++;
        if (used < sizeof(__wasi_dirent_t)) break;
        __wasi_dirent_t ent; memcpy(&ent, buf, sizeof ent);
        if (used < sizeof ent + ent.d_namlen) {  /* the name was cut: ask again with room for it */
            uint8_t *big = malloc(sizeof ent + ent.d_namlen);
            __wasi_fd_readdir(d, big, sizeof ent + ent.d_namlen, cookie, &used);
            free(big);
        }
        entries++;
        if (ent.d_type == __WASI_FILETYPE_REGULAR_FILE) names_seen++;
        cookie = ent.d_next;
        if (entries > 20) break;
    }
    printf("readdir: %d entries, %d regular files\n", entries, names_seen);
    /* cookie past the end */
    uint8_t tail[256]; __wasi_size_t used;
    printf("readdir past end: %d used %u\n", __wasi_fd_readdir(d, tail, sizeof tail, 100, &used), (unsigned)used);

    /* fd_renumber: the second number now names the first file */
    int a = open("/data/d/alpha", O_RDONLY), b = open("/data/d/beta", O_RDONLY);
    printf("renumber: %d\n", __wasi_fd_renumber(a, b));
    char buf[16] = {0}; read(b, buf, sizeof buf - 1);
    printf("after renumber reads: %s\n", buf);
    printf("old number closed: %d\n", __wasi_fd_close(a));
    printf("renumber bad fd: %d\n", __wasi_fd_renumber(999, b));

    /* poll_oneoff: a 10 ms relative clock and an always-ready file */
    __wasi_subscription_t subs[2]; memset(subs, 0, sizeof subs);
    subs[0].userdata = 7; subs[0].u.tag = __WASI_EVENTTYPE_CLOCK;
    subs[0].u.u.clock.id = __WASI_CLOCKID_MONOTONIC; subs[0].u.u.clock.timeout = 10 * 1000 * 1000;
    __wasi_event_t ev[2]; __wasi_size_t nev;
    printf("poll clock: %d", __wasi_poll_oneoff(subs, ev, 1, &nev));
    printf(" events %u userdata %llu type %d\n", (unsigned)nev, (unsigned long long)ev[0].userdata, ev[0].type);
    subs[1].userdata = 8; subs[1].u.tag = __WASI_EVENTTYPE_FD_READ; subs[1].u.u.fd_read.file_descriptor = b;
    subs[0].u.u.clock.timeout = 5ULL * 1000 * 1000 * 1000;
    printf("poll file+clock: %d", __wasi_poll_oneoff(subs, ev, 2, &nev));
    printf(" events %u first userdata %llu type %d\n", (unsigned)nev, (unsigned long long)ev[0].userdata, ev[0].type);
    subs[1].u.u.fd_read.file_descriptor = 4242;
    __wasi_poll_oneoff(subs + 1, ev, 1, &nev);
    printf("poll bad fd: events %u error %d\n", (unsigned)nev, ev[0].error);
    printf("poll nothing: %d\n", __wasi_poll_oneoff(subs, ev, 0, &nev));

    /* an absolute realtime deadline already past */
    struct timespec now; clock_gettime(CLOCK_REALTIME, &now);
    subs[0].u.u.clock.id = __WASI_CLOCKID_REALTIME; subs[0].u.u.clock.flags = __WASI_SUBCLOCKFLAGS_SUBSCRIPTION_CLOCK_ABSTIME;
    subs[0].u.u.clock.timeout = (uint64_t)(now.tv_sec - 1) * 1000000000ULL;
    printf("poll past deadline: %d", __wasi_poll_oneoff(subs, ev, 1, &nev));
    printf(" events %u\n", (unsigned)nev);

    /* timestamps */
    struct timespec times[2] = {{1000000000, 5}, {1200000000, 7}};
    printf("utimensat: %d\n", utimensat(AT_FDCWD, "/data/d/gamma", times, 0));
    struct stat st; stat("/data/d/gamma", &st);
    printf("mtime %lld.%09ld atime %lld\n", (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec, (long long)st.st_atim.tv_sec);
    /* hard link */
    printf("link: %d\n", link("/data/d/gamma", "/data/d/gamma2"));
    stat("/data/d/gamma", &st); printf("nlink %d\n", (int)st.st_nlink);
    /* sizes, sync, advise */
    int w = open("/data/d/beta", O_RDWR);
    printf("ftruncate: %d\n", ftruncate(w, 10));
    fstat(w, &st); printf("size %lld\n", (long long)st.st_size);
    printf("fsync: %d fdatasync: %d\n", fsync(w), fdatasync(w));
    printf("advise: %d\n", __wasi_fd_advise(w, 0, 10, __WASI_ADVICE_SEQUENTIAL));
    printf("pwrite: %zd\n", pwrite(w, "XY", 2, 3));
    char back[11] = {0}; pread(w, back, 10, 0);
    printf("pread: %.4s len %zu\n", back, strlen(back));
    __wasi_fdstat_t fst; __wasi_fd_fdstat_get(w, &fst);
    printf("fdstat filetype %d flags %d\n", fst.fs_filetype, fst.fs_flags);
    __wasi_fd_fdstat_get(d, &fst);
    printf("dir fdstat filetype %d\n", fst.fs_filetype);
    __wasi_fd_fdstat_get(3, &fst);
    printf("preopen fdstat filetype %d base %llx inheriting %llx\n", fst.fs_filetype,
           (unsigned long long)fst.fs_rights_base, (unsigned long long)fst.fs_rights_inheriting);
    __wasi_prestat_t pre; printf("prestat 3: %d len %u\n", __wasi_fd_prestat_get(3, &pre), (unsigned)pre.u.dir.pr_name_len);
    printf("prestat 0: %d\n", __wasi_fd_prestat_get(0, &pre));
    printf("seek dir: %d\n", (int)lseek(d, 0, SEEK_CUR) < 0);
    printf("read dir: %d\n", (int)read(d, buf, 1) < 0);

    /* the errno of each misuse, straight from the host */
    __wasi_size_t n; __wasi_filesize_t pos; __wasi_iovec_t iov = {(uint8_t *)buf, 4};
    __wasi_ciovec_t ciov = {(const uint8_t *)"abcd", 4}; __wasi_fd_t nfd;
    printf("errno read dir %d\n", __wasi_fd_read(d, &iov, 1, &n));
    printf("errno write dir %d\n", __wasi_fd_write(d, &ciov, 1, &n));
    printf("errno pread dir %d\n", __wasi_fd_pread(d, &iov, 1, 0, &n));
    printf("errno seek stdout %d\n", __wasi_fd_seek(1, 0, __WASI_WHENCE_CUR, &pos));
    printf("errno tell stdin %d\n", __wasi_fd_tell(0, &pos));
    printf("errno pread stdin %d\n", __wasi_fd_pread(0, &iov, 1, 0, &n));
    printf("errno pread stdout %d\n", __wasi_fd_pread(1, &iov, 1, 0, &n));
    printf("errno pwrite stdout %d\n", __wasi_fd_pwrite(1, &ciov, 1, 0, &n));
    printf("errno pwrite stdin %d\n", __wasi_fd_pwrite(0, &ciov, 1, 0, &n));
    printf("errno write stdin %d\n", __wasi_fd_write(0, &ciov, 1, &n));
    printf("errno sync stdout %d\n", __wasi_fd_sync(1));
    printf("errno sync dir %d\n", __wasi_fd_sync(d));
    printf("errno setflags stdout %d\n", __wasi_fd_fdstat_set_flags(1, __WASI_FDFLAGS_NONBLOCK));
    printf("errno setflags dir %d\n", __wasi_fd_fdstat_set_flags(d, 0));
    printf("errno setflags sync %d\n", __wasi_fd_fdstat_set_flags(w, __WASI_FDFLAGS_SYNC));
    printf("errno open under file %d\n", __wasi_path_open(w, 0, "x", 0, 0, 0, 0, &nfd));
    printf("errno readdir file %d\n", __wasi_fd_readdir(w, (uint8_t *)buf, 8, 0, &n));
    printf("errno advise dir %d\n", __wasi_fd_advise(d, 0, 1, 0));
    printf("errno seek negative %d\n", __wasi_fd_seek(w, -5, __WASI_WHENCE_SET, &pos));
    printf("errno close twice %d %d\n", __wasi_fd_close(w), __wasi_fd_close(w));
    printf("errno open missing %d\n", __wasi_path_open(3, 0, "nope/x", 0, 0, 0, 0, &nfd));
    printf("errno open excl %d\n", __wasi_path_open(3, 0, "d/alpha", __WASI_OFLAGS_CREAT | __WASI_OFLAGS_EXCL,
                                                     __WASI_RIGHTS_FD_WRITE, 0, 0, &nfd));
    printf("errno dir as file %d\n", __wasi_path_open(3, 0, "d/alpha", __WASI_OFLAGS_DIRECTORY, 0, 0, 0, &nfd));
    printf("errno rmdir file %d\n", __wasi_path_remove_directory(3, "d/alpha"));
    printf("errno unlink dir %d\n", __wasi_path_unlink_file(3, "d"));
    printf("errno escape %d\n", __wasi_path_open(3, 0, "../x", 0, 0, 0, 0, &nfd));
    return 0;
}
