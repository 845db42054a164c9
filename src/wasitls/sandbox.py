"""The filesystem sandbox: every path a guest names is resolved beneath a directory it was granted.

This module is the security boundary of the filesystem, shared by every front end that takes paths
from a guest (`wasi:filesystem/types` today, preview 1's `path_*` calls next). Each function takes a
directory fd (`start`) and a path as bytes, and acts on what the path names beneath `start`, never
above it: absolute paths, `..` above the start and symbolic links that lead outside all fail with
`PathEscape` (EPERM). Everything else fails with the OSError the OS gave, errno intact; mapping
errno to a front end's error codes is the front end's business.

How: `openat2(RESOLVE_BENEATH)` on Linux; otherwise a walk one component at a time that holds every
directory it passed through and follows symbolic links itself (`open_beneath`). Operations on the
last component (mkdir, unlink, rename, ...) open its parent that way and then act on one name the
kernel will not follow (`parent_beneath`). Corners (trailing slashes, `.` and `..` at the end) follow
wasmtime 49 with cap-std underneath.
"""

from __future__ import annotations

import errno
import os
from contextlib import contextmanager
from typing import Iterator

from . import libc

_O_PATH = getattr(os, "O_PATH", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
# a directory opened only to resolve names in it; O_PATH needs no read permission on it
_DIR_LOOKUP = (_O_PATH or os.O_RDONLY) | _O_DIRECTORY | _O_CLOEXEC
MAX_SYMLINKS = 40  # Linux's limit on symbolic links followed in one resolution

# cleared (for the rest of the process) when the kernel turns out not to have openat2
_openat2_ok = libc.HAS_OPENAT2


class PathEscape(PermissionError):
    """A path that leads outside the directory it is resolved beneath."""

    def __init__(self) -> None:
        super().__init__(errno.EPERM, "a path led outside of the filesystem")


def _checked(path: bytes) -> bytes:
    if b"\0" in path:  # os would raise ValueError; a guest's bad path is an error, not a crash
        raise OSError(errno.EINVAL, "a path contains a NUL byte")
    return path


# -- directories granted -------------------------------------------------------------------------

def open_directory(host_path: str | os.PathLike) -> int:
    """A granted directory, opened as wasmtime opens a preopen (O_PATH: names only, no reads)."""
    return os.open(host_path, _DIR_LOOKUP)


@contextmanager
def reopened_directory(fd: int) -> Iterator[int]:
    """The directory `fd` itself opened for reading (listing, fsync), which O_PATH cannot do."""
    new = os.open(b".", os.O_RDONLY | _O_DIRECTORY | _O_CLOEXEC, dir_fd=fd)
    try:
        yield new
    finally:
        os.close(new)


# -- open -----------------------------------------------------------------------------------------

def open_beneath(start: int, path: bytes, flags: int, mode: int = 0) -> int:
    """openat(start, path, flags, mode) that never resolves to anything outside `start`.

    O_NOFOLLOW in `flags` means the last component is not followed (it may itself be a link).
    """
    global _openat2_ok
    _checked(path)
    if _openat2_ok:
        for _ in range(4):  # EAGAIN: something was renamed on the host meanwhile
            try:
                return libc.openat2(start, path, flags, mode, libc.RESOLVE_BENEATH | libc.RESOLVE_NO_MAGICLINKS)
            except OSError as e:
                if e.errno == errno.EAGAIN:
                    continue
                if e.errno == errno.EXDEV:
                    raise PathEscape() from None
                if e.errno == errno.ENOSYS:
                    _openat2_ok = False
                elif e.errno != errno.EPERM:  # EPERM: some seccomp sandboxes' way of saying ENOSYS
                    raise
                break
    return _open_by_walk(start, path, flags, mode)


def _open_by_walk(start: int, path: bytes, flags: int, mode: int) -> int:
    """The walk `openat2(RESOLVE_BENEATH)` does, done one component at a time.

    Every directory passed through stays open on a stack, so `..` is popped off it rather than asked
    of the OS (a directory moved elsewhere meanwhile cannot lead out); a component is opened with
    O_NOFOLLOW, so only links we read and expand ourselves are followed.
    """
    if not path:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT))
    if path.startswith(b"/"):
        raise PathEscape()
    follow_last = not flags & _O_NOFOLLOW
    trailing_slash = path.endswith(b"/")
    work = [c for c in path.split(b"/") if c]
    work.reverse()  # a stack: the next component is at the end
    links = 0
    stack: list[int] = []  # directories passed through, each an fd we own
    cur = start
    try:
        while True:
            name = work.pop()
            last = not work
            if name in (b".", b".."):
                if name == b"..":
                    if not stack:
                        raise PathEscape()
                    os.close(cur)
                    cur = stack.pop()
                if last:
                    return os.open(b".", flags & ~_O_NOFOLLOW, mode, dir_fd=cur)
                continue
            if last and trailing_slash and flags & os.O_CREAT:
                raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR))  # the kernel's answer to "name/"
            if not last or follow_last or trailing_slash:
                try:
                    target = os.readlink(name, dir_fd=cur)
                except OSError as e:
                    if e.errno not in (errno.EINVAL, errno.ENOENT):
                        raise
                else:
                    links += 1
                    if links > MAX_SYMLINKS:
                        raise OSError(errno.ELOOP, os.strerror(errno.ELOOP))
                    if not target:
                        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT))
                    if target.startswith(b"/"):
                        raise PathEscape()
                    if last and target.endswith(b"/"):
                        trailing_slash = True
                    parts = [c for c in target.split(b"/") if c] or [b"."]
                    work.extend(reversed(parts))
                    continue
            if last:
                return os.open(name, flags | _O_NOFOLLOW | (_O_DIRECTORY if trailing_slash else 0), mode, dir_fd=cur)
            # O_NOFOLLOW: if `name` became a link since readlink said it was not one, this fails (ELOOP
            # or ENOTDIR) rather than following it
            fd = os.open(name, _DIR_LOOKUP | _O_NOFOLLOW, dir_fd=cur)
            stack.append(cur)
            cur = fd
    finally:
        for fd in stack:
            if fd != start:
                os.close(fd)
        if cur != start:
            os.close(cur)


# -- stat and times ---------------------------------------------------------------------------------

def _rust_components(path: bytes) -> list[bytes]:
    """The components Rust's Path sees: empty and `.` dropped (but a leading `.`), `/` first if rooted."""
    comps = [b"/"] if path.startswith(b"/") else []
    for i, part in enumerate(path.split(b"/")):
        if part == b"." and i == 0 and not comps:
            comps.append(part)
        elif part and part != b".":
            comps.append(part)
    return comps


def stat_beneath(start: int, path: bytes, follow: bool) -> libc.Stat:
    comps = _rust_components(_checked(path))
    # cap-std's shortcut, kept for its quirk: one plain name, not followed, is stat'd as that name,
    # so "file/" and "link/" answer for the file and the link
    if not follow and len(comps) == 1 and comps[0] not in (b"/", b".", b".."):
        return libc.statx(start, comps[0], libc.AT_SYMLINK_NOFOLLOW)
    fd = open_beneath(start, path, (_O_PATH or os.O_RDONLY) | _O_CLOEXEC | (0 if follow else _O_NOFOLLOW))
    try:
        return libc.fstatx(fd)
    finally:
        os.close(fd)


def set_times_beneath(start: int, path: bytes, times: libc.Times, follow: bool) -> None:
    """utimensat beneath `start`; `times` may hold UTIME_NOW and UTIME_OMIT."""
    if not follow:
        with parent_beneath(start, path) as (parent, name):
            return libc.utimensat(parent, name, times, libc.AT_SYMLINK_NOFOLLOW)
    # following: on a descriptor opened for writing, else reading, else by its /proc path
    for access, tolerated in ((os.O_WRONLY, (errno.EACCES, errno.EISDIR, errno.ENXIO)), (os.O_RDONLY, (errno.EACCES,))):
        try:
            fd = open_beneath(start, path, access | _O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK)
        except OSError as e:
            if e.errno not in tolerated:
                raise
            continue
        try:
            return libc.futimens(fd, times)
        finally:
            os.close(fd)
    fd = open_beneath(start, path, _O_PATH | _O_CLOEXEC)
    try:
        libc.utimensat(libc.AT_FDCWD, f"/proc/self/fd/{fd}".encode(), times, 0)
    finally:
        os.close(fd)


# -- operations on the last component ----------------------------------------------------------------

def _requires_dir(path: bytes) -> bool:
    return path.endswith(b"/") or path.endswith(b"/.")


def strip_dir_suffix(path: bytes) -> bytes:
    """mkdir and rename read "a/" as "a" (not as "a/."), so drop trailing slashes."""
    while len(path) > 1 and path.endswith(b"/"):
        path = path[:-1]
    return path


def split_parent(path: bytes) -> tuple[bytes, bytes]:
    """(the directory to open, the one name to act on in it), as cap-std splits them.

    A path ending in `/`, `/.` or `..` names a directory, acted on as `.` inside itself.
    """
    if not path:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT))
    if not _requires_dir(path):
        head, sep, name = path.rpartition(b"/")
        if name == b"." and not sep:
            return b"", b"."
        if name not in (b".", b".."):
            dirname = head.rstrip(b"/")
            if sep and not dirname and path.startswith(b"/"):
                dirname = b"/"
            return dirname, name
    return path, b"."


@contextmanager
def parent_beneath(start: int, path: bytes) -> Iterator[tuple[int, bytes]]:
    """(a directory fd, a single name) for acting on the last component of `path` beneath `start`.

    The name is not resolved: pass it to an *at call that does not follow links (or that acts on the
    link itself: unlink, rename, symlink, readlink).
    """
    dirname, name = split_parent(_checked(path))
    if not dirname:
        yield start, name
        return
    fd = open_beneath(start, dirname, _DIR_LOOKUP)
    try:
        yield fd, name
    finally:
        os.close(fd)


def mkdir_beneath(start: int, path: bytes, mode: int = 0o777) -> None:
    with parent_beneath(start, strip_dir_suffix(path)) as (parent, name):
        os.mkdir(name, mode, dir_fd=parent)


def rmdir_beneath(start: int, path: bytes) -> None:
    with parent_beneath(start, path) as (parent, name):
        os.rmdir(name, dir_fd=parent)


def unlink_beneath(start: int, path: bytes) -> None:
    with parent_beneath(start, path) as (parent, name):
        os.unlink(name, dir_fd=parent)


def link_beneath(old_start: int, old_path: bytes, new_start: int, new_path: bytes) -> None:
    """A hard link to `old_path` (a link itself, not followed) at `new_path`."""
    with parent_beneath(old_start, old_path) as (old_parent, old_name), \
            parent_beneath(new_start, new_path) as (new_parent, new_name):
        os.link(old_name, new_name, src_dir_fd=old_parent, dst_dir_fd=new_parent, follow_symlinks=False)


def rename_beneath(old_start: int, old_path: bytes, new_start: int, new_path: bytes) -> None:
    # a trailing slash is dropped to find the parent but put back on the name, so that the kernel
    # still requires a directory there
    with parent_beneath(old_start, strip_dir_suffix(old_path)) as (old_parent, old_name), \
            parent_beneath(new_start, strip_dir_suffix(new_path)) as (new_parent, new_name):
        if old_path.endswith(b"/"):
            old_name += b"/"
        if new_path.endswith(b"/"):
            new_name += b"/"
        os.rename(old_name, new_name, src_dir_fd=old_parent, dst_dir_fd=new_parent)


def symlink_beneath(target: bytes, start: int, path: bytes) -> None:
    """A symbolic link at `path` to `target`; never an absolute one, which another program would follow."""
    if _checked(target).startswith(b"/"):
        raise PathEscape()
    with parent_beneath(start, path) as (parent, name):
        os.symlink(target, name, dir_fd=parent)


def readlink_beneath(start: int, path: bytes) -> bytes:
    with parent_beneath(start, path) as (parent, name):
        target = os.readlink(name, dir_fd=parent)
    if target.startswith(b"/"):  # would tell the guest about the host outside its tree
        raise PathEscape()
    return target
