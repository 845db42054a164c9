"""The few libc calls Python's `os` module lacks, through ctypes: openat2, statx, utimensat, futimens.

Each raises OSError with the C errno, as `os` does; none knows of WASI or of the sandbox.
"""

from __future__ import annotations

import ctypes
import errno
import os
import sys
from typing import Any

try:
    _libc: Any = ctypes.CDLL(None, use_errno=True)
except OSError:  # pragma: no cover
    _libc = None

AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW = 0x100
AT_EMPTY_PATH = 0x1000
# the tv_nsec values utimensat reads as "now" and "leave as it is" (os.utime cannot say the latter)
UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2


def _raise_errno() -> None:
    err = ctypes.get_errno()
    raise OSError(err, os.strerror(err))


# -- openat2 ----------------------------------------------------------------------------------------

HAS_OPENAT2 = sys.platform.startswith("linux") and _libc is not None
_SYS_OPENAT2 = 437  # the same on every Linux architecture
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_BENEATH = 0x08


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def openat2(dirfd: int, path: bytes, flags: int, mode: int, resolve: int) -> int:
    """The openat2 system call; ENOSYS where the kernel (or a seccomp filter) lacks it."""
    if not HAS_OPENAT2:
        raise OSError(errno.ENOSYS, os.strerror(errno.ENOSYS))
    how = _OpenHow(flags, mode if flags & os.O_CREAT else 0, resolve)
    fd = _libc.syscall(ctypes.c_long(_SYS_OPENAT2), ctypes.c_int(dirfd), ctypes.c_char_p(path),
                       ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how)))
    if fd < 0:
        _raise_errno()
    return fd


# -- statx: stat with the birth time --------------------------------------------------------------

class _StatxTimestamp(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_int64), ("tv_nsec", ctypes.c_uint32), ("_reserved", ctypes.c_int32)]


class _StatxBuf(ctypes.Structure):
    _fields_ = [
        ("mask", ctypes.c_uint32), ("blksize", ctypes.c_uint32), ("attributes", ctypes.c_uint64),
        ("nlink", ctypes.c_uint32), ("uid", ctypes.c_uint32), ("gid", ctypes.c_uint32),
        ("mode", ctypes.c_uint16), ("_spare0", ctypes.c_uint16),
        ("ino", ctypes.c_uint64), ("size", ctypes.c_uint64), ("blocks", ctypes.c_uint64),
        ("attributes_mask", ctypes.c_uint64),
        ("atime", _StatxTimestamp), ("btime", _StatxTimestamp), ("ctime", _StatxTimestamp),
        ("mtime", _StatxTimestamp),
        ("rdev_major", ctypes.c_uint32), ("rdev_minor", ctypes.c_uint32),
        ("dev_major", ctypes.c_uint32), ("dev_minor", ctypes.c_uint32),
        ("_spare", ctypes.c_uint64 * 14),
    ]


_STATX_ATIME, _STATX_MTIME, _STATX_BTIME = 0x20, 0x40, 0x800
_STATX_MASK = 0x7FF | _STATX_BTIME  # basic stats and birth time
_libc_statx = getattr(_libc, "statx", None)


class Stat:
    """What statx reports; a time is (seconds, nanoseconds), or None where the filesystem has none."""

    __slots__ = ("mode", "nlink", "size", "dev", "ino", "atime", "mtime", "btime")

    def __init__(self, mode: int, nlink: int, size: int, dev: int, ino: int,
                 atime: tuple[int, int] | None, mtime: tuple[int, int] | None, btime: tuple[int, int] | None):
        self.mode, self.nlink, self.size, self.dev, self.ino = mode, nlink, size, dev, ino
        self.atime, self.mtime, self.btime = atime, mtime, btime


def statx(dirfd: int, path: bytes, flags: int) -> Stat:
    """statx(dirfd, path, flags); os.stat without the birth time where statx is missing."""
    if _libc_statx is not None:
        buf = _StatxBuf()
        if _libc_statx(dirfd, path, flags, _STATX_MASK, ctypes.byref(buf)) == 0:
            def ts(t: _StatxTimestamp, bit: int) -> tuple[int, int] | None:
                return (t.tv_sec, t.tv_nsec) if buf.mask & bit else None
            return Stat(buf.mode, buf.nlink, buf.size, os.makedev(buf.dev_major, buf.dev_minor), buf.ino,
                        ts(buf.atime, _STATX_ATIME), ts(buf.mtime, _STATX_MTIME), ts(buf.btime, _STATX_BTIME))
        if ctypes.get_errno() != errno.ENOSYS:
            _raise_errno()
    st = (os.stat(dirfd) if flags & AT_EMPTY_PATH else
          os.stat(path, dir_fd=dirfd, follow_symlinks=not flags & AT_SYMLINK_NOFOLLOW))
    return Stat(st.st_mode, st.st_nlink, st.st_size, st.st_dev, st.st_ino,
                divmod(st.st_atime_ns, 10**9), divmod(st.st_mtime_ns, 10**9), None)


def fstatx(fd: int) -> Stat:
    return statx(fd, b"", AT_EMPTY_PATH)


# -- times: utimensat and futimens, for UTIME_OMIT -------------------------------------------------

Times = tuple[tuple[int, int], tuple[int, int]]  # (access, modification), each (seconds, nanoseconds)


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def _timespecs(times: Times) -> Any:
    return (_Timespec * 2)(_Timespec(*times[0]), _Timespec(*times[1]))


def utimensat(dirfd: int, name: bytes, times: Times, flags: int) -> None:
    if _libc.utimensat(dirfd, name, _timespecs(times), flags) != 0:
        _raise_errno()


def futimens(fd: int, times: Times) -> None:
    if _libc.futimens(fd, _timespecs(times)) != 0:
        _raise_errno()
