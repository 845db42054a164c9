"""wasi:filesystem/types@0.2.9: descriptors over real host directories, sandboxed beneath their preopen.

A `descriptor` holds an OS file descriptor (shared, reference-counted, with the streams made from it)
and, as wasmtime keeps them, two kinds of rights:

    perms       what the host granted (a directory: read, mutate; a file: read, write), inherited by
                everything opened beneath a preopen and checked before the OS is asked
    open_mode   what the guest asked for when it opened it (read, write); only `get-flags` reports it,
                the OS enforces it (a write to a read-only descriptor fails with bad-descriptor)

Every path a guest names is resolved beneath the directory descriptor it is relative to, never above:
with `openat2(RESOLVE_BENEATH)` on Linux, otherwise by a walk one component at a time that holds every
directory it passed through and follows symbolic links itself (`_open_beneath`). Absolute paths, `..`
above the start, and symbolic links that lead outside all fail with `not-permitted`. Operations on the
last component of a path (mkdir, unlink, rename, ...) open its parent that way and then act on one
name that the kernel will not follow (`_parent`). Those two functions are the whole sandbox.

Error codes, flag handling, and the corners of path handling (trailing slashes, `.` and `..` at the
end) follow wasmtime 49 (cap-std underneath), measured against `wasmtime run`.
"""

from __future__ import annotations

import ctypes
import errno as E
import fcntl
import os
import stat as S
import struct
import sys
from contextlib import contextmanager
from typing import Any, Iterator

from ...component.host import HostInterface
from ...component.values import Err, Trap
from ..io.error import IoError
from ..io.poll import Wait
from ..io.streams import InputStream, OutputStream, StreamClosed, StreamFailed

# wasmtime never reads or hands out more than this at once (its MAX_READ_SIZE_ALLOC), and a file
# output stream accepts this much per check-write
MAX_READ_SIZE = 64 * 1024
FILE_WRITE_CAPACITY = 64 * 1024

# host-granted rights (wasmtime's DirPerms and FilePerms); a preopen gets all of them by default
DIR_PERMS_ALL = frozenset({"read", "mutate"})
FILE_PERMS_ALL = frozenset({"read", "write"})

_O_PATH = getattr(os, "O_PATH", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
# a directory opened only to resolve names in it; O_PATH needs no read permission on it
_DIR_LOOKUP = (_O_PATH or os.O_RDONLY) | _O_DIRECTORY | _O_CLOEXEC
MAX_SYMLINKS = 40  # Linux's limit on symbolic links followed in one resolution
_I64_MAX = 2**63 - 1


# -- error-code ----------------------------------------------------------------------------------

# errno -> error-code as wasmtime maps it; every other errno is `io` (EXDEV, EROFS, EAGAIN, ... too)
_ERRNO_CODES = {
    E.EPIPE: "pipe", E.EPERM: "not-permitted", E.ENOENT: "no-entry", E.ENOMEM: "insufficient-memory",
    E.EIO: "io", E.EBADF: "bad-descriptor", E.EBUSY: "busy", E.EACCES: "access", E.ENOTDIR: "not-directory",
    E.EISDIR: "is-directory", E.EINVAL: "invalid", E.EEXIST: "exist", E.EFBIG: "file-too-large",
    E.ENOSPC: "insufficient-space", E.ESPIPE: "invalid-seek", E.EMLINK: "too-many-links",
    E.ENAMETOOLONG: "name-too-long", E.ENOTEMPTY: "not-empty", E.ELOOP: "loop", E.EOVERFLOW: "overflow",
    E.EILSEQ: "illegal-byte-sequence", E.ENOTSUP: "unsupported", E.EOPNOTSUPP: "unsupported",
    E.EALREADY: "already", E.EINPROGRESS: "in-progress", E.EINTR: "interrupted",
}


def error_code(e: OSError) -> str:
    return _ERRNO_CODES.get(e.errno, "io")


def io_error(e: OSError) -> IoError:
    """An OS error as a wasi:io error, worded as Rust words it, carrying its filesystem error-code."""
    if e.errno is None:
        return IoError(str(e), fs_code="io")
    return IoError(f"{os.strerror(e.errno)} (os error {e.errno})", fs_code=error_code(e))


@contextmanager
def _os_errors() -> Iterator[None]:
    try:
        yield
    except OSError as e:
        raise Err(error_code(e)) from None


def _escape() -> OSError:
    return PermissionError(E.EPERM, "a path led outside of the filesystem")


# -- values ----------------------------------------------------------------------------------------

_ADVICE = {
    "normal": os.POSIX_FADV_NORMAL, "sequential": os.POSIX_FADV_SEQUENTIAL, "random": os.POSIX_FADV_RANDOM,
    "will-need": os.POSIX_FADV_WILLNEED, "dont-need": os.POSIX_FADV_DONTNEED, "no-reuse": os.POSIX_FADV_NOREUSE,
} if hasattr(os, "posix_fadvise") else {}

# O_SYNC includes O_DSYNC's bit on Linux, so test whole masks; wasmtime's pairing of bits and names
_SYNC_FLAGS = (
    (getattr(os, "O_DSYNC", 0), "requested-write-sync"),
    (getattr(os, "O_RSYNC", 0), "data-integrity-sync"),
    (getattr(os, "O_SYNC", 0), "file-integrity-sync"),
)


def _descriptor_type(mode: int) -> str:
    # wasmtime knows no fifo or socket: both are `unknown`
    if S.S_ISDIR(mode):
        return "directory"
    if S.S_ISLNK(mode):
        return "symbolic-link"
    if S.S_ISBLK(mode):
        return "block-device"
    if S.S_ISCHR(mode):
        return "character-device"
    if S.S_ISREG(mode):
        return "regular-file"
    return "unknown"


def _i64(n: int) -> int:
    """A filesize as the OS's signed offset: values past 2**63 wrap negative and the OS says `invalid`."""
    n &= (1 << 64) - 1
    return n - (1 << 64) if n > _I64_MAX else n


def _path(path: str) -> bytes:
    if "\0" in path:
        raise Err("invalid")
    return path.encode("utf-8")


UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2


def _timespecs(atime: Any, mtime: Any) -> tuple[tuple[int, int], tuple[int, int]]:
    return _timespec(atime), _timespec(mtime)


def _timespec(ts: Any) -> tuple[int, int]:
    case = ts.case if hasattr(ts, "case") else ts
    if case == "no-change":
        return (0, UTIME_OMIT)
    if case == "now":
        return (0, UTIME_NOW)
    value = ts.value
    seconds = value["seconds"] + value["nanoseconds"] // 1_000_000_000
    if seconds > _I64_MAX:  # past what the host's time type holds
        raise Err("overflow")
    return (seconds, value["nanoseconds"] % 1_000_000_000)


def _datetime(sec: int, nsec: int) -> dict[str, int] | None:
    return {"seconds": sec, "nanoseconds": nsec} if sec >= 0 else None


# -- resources ---------------------------------------------------------------------------------------

class Descriptor:
    """The `descriptor` resource: a file or a directory."""

    def __init__(self, handle: "_Handle", *, is_dir: bool, perms: frozenset[str],
                 file_perms: frozenset[str] = frozenset(), open_mode: frozenset[str]):
        self.handle = handle
        self.is_dir = is_dir
        self.perms = perms  # a directory's DirPerms, or a file's FilePerms
        self.file_perms = file_perms  # for a directory: what files opened beneath it get
        self.open_mode = open_mode
        self._dropped = False

    @classmethod
    def open_preopen(cls, host_path: str | os.PathLike, *, dir_perms: frozenset[str] = DIR_PERMS_ALL,
                     file_perms: frozenset[str] = FILE_PERMS_ALL) -> "Descriptor":
        """A preopened directory, opened the way wasmtime opens one (O_PATH: names only, no reads)."""
        fd = os.open(host_path, _DIR_LOOKUP)
        return cls(_Handle(fd), is_dir=True, perms=frozenset(dir_perms), file_perms=frozenset(file_perms),
                   open_mode=frozenset({"read", "write"}))

    @property
    def fd(self) -> int:
        return self.handle.fd

    def _file(self) -> "Descriptor":
        if self.is_dir:
            raise Err("bad-descriptor")
        return self

    def _dir(self) -> "Descriptor":
        if not self.is_dir:
            raise Err("not-directory")
        return self

    def _require(self, perm: str) -> None:
        if perm not in self.perms:
            raise Err("not-permitted")

    # -- WIT methods, in WIT order ---------------------------------------------------------------

    def read_via_stream(self, offset: int) -> InputStream:
        if self.is_dir:
            raise Err("is-directory")
        if "read" not in self.perms:
            raise Err("bad-descriptor")
        return InputStream(_FileSource(self.handle.retain(), offset))

    def write_via_stream(self, offset: int) -> OutputStream:
        self._file()
        if "write" not in self.perms:
            raise Err("bad-descriptor")
        return OutputStream(_FileSink(self.handle.retain(), offset))

    def append_via_stream(self) -> OutputStream:
        self._file()
        if "write" not in self.perms:
            raise Err("bad-descriptor")
        return OutputStream(_FileSink(self.handle.retain(), None))

    def advise(self, offset: int, length: int, advice: str) -> None:
        self._file()
        with _os_errors():
            os.posix_fadvise(self.fd, _i64(offset), _i64(length), _ADVICE[advice])

    def sync_data(self) -> None:
        with _os_errors():
            if self.is_dir:
                with _reopened_dir(self.fd) as fd:
                    os.fdatasync(fd)
            else:
                os.fdatasync(self.fd)

    def get_flags(self) -> set[str]:
        with _os_errors():
            status = fcntl.fcntl(self.fd, fcntl.F_GETFL)
        flags = {name for bit, name in _SYNC_FLAGS if bit and status & bit == bit}
        if "read" in self.open_mode:
            flags.add("read")
        if "write" in self.open_mode:
            flags.add("mutate-directory" if self.is_dir else "write")
        return flags

    def get_type(self) -> str:
        if self.is_dir:
            return "directory"
        with _os_errors():
            return _statx(self.fd, b"", _AT_EMPTY_PATH).type

    def set_size(self, size: int) -> None:
        self._file()._require("write")
        with _os_errors():
            os.ftruncate(self.fd, _i64(size))

    def set_times(self, data_access_timestamp: Any, data_modification_timestamp: Any) -> None:
        times = _timespecs(data_access_timestamp, data_modification_timestamp)
        self._require("mutate" if self.is_dir else "write")
        with _os_errors():
            _futimens(self.fd, times)

    def read(self, length: int, offset: int) -> tuple[bytes, bool]:
        self._file()._require("read")
        with _os_errors():
            data = os.pread(self.fd, min(length, MAX_READ_SIZE), _i64(offset))
        return data, not data

    def write(self, buffer: bytes, offset: int) -> int:
        self._file()._require("write")
        with _os_errors():
            return os.pwrite(self.fd, buffer, _i64(offset))

    def read_directory(self) -> "DirectoryEntryStream":
        self._dir()._require("read")
        entries: list[dict[str, str] | Err] = []
        with _os_errors(), _reopened_dir(self.fd) as fd:
            for name in os.listdir(fd):
                try:
                    kind = _descriptor_type(os.stat(os.fsencode(name), dir_fd=fd, follow_symlinks=False).st_mode)
                    name.encode("utf-8")
                except OSError as e:
                    entries.append(Err(error_code(e)))
                except UnicodeEncodeError:
                    entries.append(Err("illegal-byte-sequence"))
                else:
                    entries.append({"type": kind, "name": name})
        return DirectoryEntryStream(entries)

    def sync(self) -> None:
        with _os_errors():
            if self.is_dir:
                with _reopened_dir(self.fd) as fd:
                    os.fsync(fd)
            else:
                os.fsync(self.fd)

    def create_directory_at(self, path: str) -> None:
        self._dir()._require("mutate")
        with _os_errors(), _parent(self.fd, _strip_dir_suffix(_path(path))) as (parent, name):
            os.mkdir(name, 0o777, dir_fd=parent)

    def stat(self) -> dict[str, Any]:
        with _os_errors():
            return _statx(self.fd, b"", _AT_EMPTY_PATH).descriptor_stat()

    def stat_at(self, path_flags: set[str], path: str) -> dict[str, Any]:
        self._dir()._require("read")
        with _os_errors():
            return _stat_beneath(self.fd, _path(path), "symlink-follow" in path_flags).descriptor_stat()

    def set_times_at(self, path_flags: set[str], path: str, data_access_timestamp: Any,
                     data_modification_timestamp: Any) -> None:
        self._dir()
        times = _timespecs(data_access_timestamp, data_modification_timestamp)
        self._require("mutate")
        with _os_errors():
            if "symlink-follow" in path_flags:
                _set_times_following(self.fd, _path(path), times)
            else:
                with _parent(self.fd, _path(path)) as (parent, name):
                    _utimensat(parent, name, times, _AT_SYMLINK_NOFOLLOW)

    def link_at(self, old_path_flags: set[str], old_path: str, new_descriptor: "Descriptor", new_path: str) -> None:
        self._dir()
        new_descriptor._dir()
        self._require("mutate")
        new_descriptor._require("mutate")
        if "symlink-follow" in old_path_flags:
            raise Err("invalid")
        with _os_errors(), _parent(self.fd, _path(old_path)) as (old_parent, old_name), \
                _parent(new_descriptor.fd, _path(new_path)) as (new_parent, new_name):
            os.link(old_name, new_name, src_dir_fd=old_parent, dst_dir_fd=new_parent, follow_symlinks=False)

    def open_at(self, path_flags: set[str], path: str, open_flags: set[str], flags: set[str]) -> "Descriptor":
        self._dir()._require("read")
        create, truncate = "create" in open_flags, "truncate" in open_flags
        if "mutate" not in self.perms and (create or truncate or "write" in flags):
            raise Err("not-permitted")
        # A descriptor not opened for writing is opened for reading, whatever the guest asked.
        open_mode = {"read"} if "read" in flags or "write" not in flags else set()
        if create or truncate or "write" in flags:
            open_mode.add("write")
        if flags & {"file-integrity-sync", "data-integrity-sync", "requested-write-sync"}:
            raise Err("unsupported")
        if "directory" in open_flags and open_flags & {"create", "exclusive", "truncate"}:
            raise Err("invalid")
        if "write" in open_mode and "write" not in self.file_perms:
            raise Err("not-permitted")

        access = {frozenset({"read"}): os.O_RDONLY, frozenset({"write"}): os.O_WRONLY}.get(
            frozenset(open_mode), os.O_RDWR)
        oflags = access | _O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK  # never block opening a FIFO
        if create and "exclusive" in open_flags:
            oflags |= os.O_CREAT | os.O_EXCL
        elif create:
            oflags |= os.O_CREAT | (os.O_TRUNC if truncate else 0)
        elif truncate:
            oflags |= os.O_TRUNC
        if "symlink-follow" not in path_flags:
            oflags |= _O_NOFOLLOW
        with _os_errors():
            fd = _open_beneath(self.fd, _path(path), oflags, 0o666)
            try:
                is_dir = S.S_ISDIR(os.fstat(fd).st_mode)
            except BaseException:
                os.close(fd)
                raise
        if is_dir:
            return Descriptor(_Handle(fd), is_dir=True, perms=self.perms, file_perms=self.file_perms,
                              open_mode=frozenset(open_mode))
        if "directory" in open_flags:
            os.close(fd)
            raise Err("not-directory")
        return Descriptor(_Handle(fd), is_dir=False, perms=self.file_perms, open_mode=frozenset(open_mode))

    def readlink_at(self, path: str) -> str:
        self._dir()._require("read")
        with _os_errors(), _parent(self.fd, _path(path)) as (parent, name):
            target = os.readlink(name, dir_fd=parent)
        if target.startswith(b"/"):  # would tell the guest about the host outside its tree
            raise Err("not-permitted")
        try:
            return target.decode("utf-8")
        except UnicodeDecodeError:
            raise Err("illegal-byte-sequence") from None

    def remove_directory_at(self, path: str) -> None:
        self._dir()._require("mutate")
        with _os_errors(), _parent(self.fd, _path(path)) as (parent, name):
            os.rmdir(name, dir_fd=parent)

    def rename_at(self, old_path: str, new_descriptor: "Descriptor", new_path: str) -> None:
        self._dir()
        new_descriptor._dir()
        self._require("mutate")
        new_descriptor._require("mutate")
        old, new = _path(old_path), _path(new_path)
        # a trailing slash is dropped to find the parent but put back on the name, so that the
        # kernel still requires a directory there
        with _os_errors(), _parent(self.fd, _strip_dir_suffix(old)) as (old_parent, old_name), \
                _parent(new_descriptor.fd, _strip_dir_suffix(new)) as (new_parent, new_name):
            if old.endswith(b"/"):
                old_name += b"/"
            if new.endswith(b"/"):
                new_name += b"/"
            os.rename(old_name, new_name, src_dir_fd=old_parent, dst_dir_fd=new_parent)

    def symlink_at(self, old_path: str, new_path: str) -> None:
        self._dir()._require("mutate")
        target = _path(old_path)
        if target.startswith(b"/"):  # one the guest could not follow, but another program might
            raise Err("not-permitted")
        with _os_errors(), _parent(self.fd, _path(new_path)) as (parent, name):
            os.symlink(target, name, dir_fd=parent)

    def unlink_file_at(self, path: str) -> None:
        self._dir()._require("mutate")
        with _os_errors(), _parent(self.fd, _path(path)) as (parent, name):
            os.unlink(name, dir_fd=parent)

    def is_same_object(self, other: "Descriptor") -> bool:
        try:
            a = _statx(self.fd, b"", _AT_EMPTY_PATH)
            b = _statx(other.fd, b"", _AT_EMPTY_PATH)
        except OSError as e:  # wasmtime traps here: the function has no error case
            raise Trap(f"is-same-object: {e}") from None
        return (a.dev, a.ino) == (b.dev, b.ino)

    def metadata_hash(self) -> dict[str, int]:
        with _os_errors():
            return _statx(self.fd, b"", _AT_EMPTY_PATH).metadata_hash()

    def metadata_hash_at(self, path_flags: set[str], path: str) -> dict[str, int]:
        self._dir()
        with _os_errors():
            return _stat_beneath(self.fd, _path(path), "symlink-follow" in path_flags).metadata_hash()

    def drop(self) -> None:
        if not self._dropped:
            self._dropped = True
            self.handle.release()

    def __repr__(self) -> str:
        return f"<descriptor fd={self.handle.fd} {'dir' if self.is_dir else 'file'}>"


class DirectoryEntryStream:
    """The `directory-entry-stream` resource: entries read when the stream was made, `.` and `..` left out."""

    def __init__(self, entries: list[dict[str, str] | Err]):
        self.entries = entries
        self.next = 0

    def read_directory_entry(self) -> dict[str, str] | None:
        if self.next >= len(self.entries):
            return None
        entry = self.entries[self.next]
        self.next += 1
        if isinstance(entry, Err):
            raise entry
        return entry


class Types(HostInterface):
    wit = "wasi:filesystem/types@0.2.9"
    resources = {"descriptor": Descriptor, "directory-entry-stream": DirectoryEntryStream}

    def __init__(self, ctx: Any = None):
        self.ctx = ctx

    def filesystem_error_code(self, err: IoError) -> str | None:
        return getattr(err, "fs_code", None)


# -- metadata: statx, for the birth time wasmtime reports as status-change-timestamp ----------------

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
_AT_SYMLINK_NOFOLLOW = 0x100
_AT_EMPTY_PATH = 0x1000

try:
    _libc: Any = ctypes.CDLL(None, use_errno=True)
except OSError:  # pragma: no cover
    _libc = None
_libc_statx = getattr(_libc, "statx", None)


class _Meta:
    """What a descriptor-stat and a metadata hash are made from."""

    __slots__ = ("type", "nlink", "size", "atime", "mtime", "btime", "dev", "ino")

    def descriptor_stat(self) -> dict[str, Any]:
        return {
            "type": self.type, "link-count": self.nlink, "size": self.size,
            "data-access-timestamp": self.atime, "data-modification-timestamp": self.mtime,
            "status-change-timestamp": self.btime,  # what wasmtime reports here: the creation time
        }

    def metadata_hash(self) -> dict[str, int]:
        # wasmtime's hash: Rust's DefaultHasher (SipHash-1-3, zero key) over dev and ino, the upper
        # half that xor pi's bits, so the same file hashes the same under both hosts
        lower = _siphash13(struct.pack("<QQ", self.dev, self.ino))
        return {"lower": lower, "upper": lower ^ 4614256656552045848}


def _statx(dirfd: int, path: bytes, flags: int) -> _Meta:
    m = _Meta()
    if _libc_statx is not None:
        buf = _StatxBuf()
        if _libc_statx(dirfd, path, flags, _STATX_MASK, ctypes.byref(buf)) != 0:
            err = ctypes.get_errno()
            if err != E.ENOSYS:
                raise OSError(err, os.strerror(err))
        else:
            m.type = _descriptor_type(buf.mode)
            m.nlink, m.size, m.ino = buf.nlink, buf.size, buf.ino
            m.dev = os.makedev(buf.dev_major, buf.dev_minor)
            m.atime = _datetime(buf.atime.tv_sec, buf.atime.tv_nsec) if buf.mask & _STATX_ATIME else None
            m.mtime = _datetime(buf.mtime.tv_sec, buf.mtime.tv_nsec) if buf.mask & _STATX_MTIME else None
            m.btime = _datetime(buf.btime.tv_sec, buf.btime.tv_nsec) if buf.mask & _STATX_BTIME else None
            return m
    st = (os.stat(dirfd) if flags & _AT_EMPTY_PATH else
          os.stat(path, dir_fd=dirfd, follow_symlinks=not flags & _AT_SYMLINK_NOFOLLOW))
    m.type = _descriptor_type(st.st_mode)
    m.nlink, m.size, m.dev, m.ino = st.st_nlink, st.st_size, st.st_dev, st.st_ino
    m.atime = _datetime(st.st_atime_ns // 10**9, st.st_atime_ns % 10**9)
    m.mtime = _datetime(st.st_mtime_ns // 10**9, st.st_mtime_ns % 10**9)
    m.btime = None
    return m


_M64 = (1 << 64) - 1


def _siphash13(data: bytes) -> int:
    v0, v1, v2, v3 = 0x736F6D6570736575, 0x646F72616E646F6D, 0x6C7967656E657261, 0x7465646279746573

    def rotl(x: int, b: int) -> int:
        return ((x << b) | (x >> (64 - b))) & _M64

    def sipround() -> None:
        nonlocal v0, v1, v2, v3
        v0 = (v0 + v1) & _M64; v1 = rotl(v1, 13) ^ v0; v0 = rotl(v0, 32)  # noqa: E702
        v2 = (v2 + v3) & _M64; v3 = rotl(v3, 16) ^ v2  # noqa: E702
        v0 = (v0 + v3) & _M64; v3 = rotl(v3, 21) ^ v0  # noqa: E702
        v2 = (v2 + v1) & _M64; v1 = rotl(v1, 17) ^ v2; v2 = rotl(v2, 32)  # noqa: E702

    whole = len(data) - len(data) % 8
    for i in range(0, whole, 8):
        (m,) = struct.unpack_from("<Q", data, i)
        v3 ^= m
        sipround()
        v0 ^= m
    m = (len(data) & 0xFF) << 56
    for i, byte in enumerate(data[whole:]):
        m |= byte << (8 * i)
    v3 ^= m
    sipround()
    v0 ^= m
    v2 ^= 0xFF
    sipround()
    sipround()
    sipround()
    return v0 ^ v1 ^ v2 ^ v3


# -- times: utimensat and futimens, for UTIME_OMIT, which os.utime cannot say -----------------------

class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def _times(times: tuple[tuple[int, int], tuple[int, int]]) -> Any:
    return (_Timespec * 2)(_Timespec(*times[0]), _Timespec(*times[1]))


def _check(result: int) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _utimensat(dirfd: int, name: bytes, times: Any, flags: int) -> None:
    _check(_libc.utimensat(dirfd, name, _times(times), flags))


def _futimens(fd: int, times: Any) -> None:
    _check(_libc.futimens(fd, _times(times)))


def _set_times_following(start: int, path: bytes, times: Any) -> None:
    """set-times-at following symlinks: on a descriptor opened for writing, else reading, else by path."""
    for access, tolerated in ((os.O_WRONLY, (E.EACCES, E.EISDIR, E.ENXIO)), (os.O_RDONLY, (E.EACCES,))):
        try:
            fd = _open_beneath(start, path, access | _O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK, 0)
        except OSError as e:
            if e.errno not in tolerated:
                raise
            continue
        try:
            return _futimens(fd, times)
        finally:
            os.close(fd)
    fd = _open_beneath(start, path, _O_PATH | _O_CLOEXEC, 0)
    try:
        _utimensat(-100, f"/proc/self/fd/{fd}".encode(), times, 0)  # AT_FDCWD
    finally:
        os.close(fd)


# -- file streams ----------------------------------------------------------------------------------

class _Handle:
    """An OS file descriptor shared by a descriptor and the streams made from it, closed with the last."""

    def __init__(self, fd: int):
        self.fd = fd
        self.refs = 1

    def retain(self) -> "_Handle":
        self.refs += 1
        return self

    def release(self) -> None:
        self.refs -= 1
        if self.refs <= 0 and self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)

    def __del__(self) -> None:
        if self.fd >= 0:
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = -1


class _FileSource:
    """read-via-stream: reads at an advancing offset; a file is always ready."""

    def __init__(self, handle: _Handle, offset: int):
        self.handle = handle
        self.position = offset

    def read(self, n: int) -> bytes:
        if n == 0:
            return b""
        try:
            data = os.pread(self.handle.fd, min(n, MAX_READ_SIZE), _i64(self.position))
        except OSError as e:
            raise StreamFailed(io_error(e)) from None
        if not data:
            raise StreamClosed
        self.position += len(data)
        return data

    def poll_ready(self) -> bool:
        return True

    def wait_on(self) -> Wait:
        return Wait()

    def close(self) -> None:
        self.handle.release()


class _FileSink:
    """write-via-stream (at an advancing offset) and append-via-stream (offset None).

    Writes reach the file before `write` returns. As in wasmtime, a failed write is reported by the
    next check-write or flush.
    """

    def __init__(self, handle: _Handle, offset: int | None):
        self.handle = handle
        self.position = offset
        self.error: StreamFailed | None = None

    def _raise_error(self) -> None:
        if self.error is not None:
            error, self.error = self.error, None
            raise error

    def check_write(self) -> int:
        self._raise_error()
        return FILE_WRITE_CAPACITY

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                if self.position is None:
                    n = _append(self.handle.fd, view)
                else:
                    n = os.pwrite(self.handle.fd, view, _i64(self.position))
                    self.position += n
                if n == 0:
                    raise OSError(E.EIO, "write returned 0")
                view = view[n:]
        except OSError as e:
            self.error = StreamFailed(io_error(e))

    def flush(self) -> None:
        self._raise_error()

    def poll_ready(self) -> bool:
        return True

    def wait_on(self) -> Wait:
        return Wait()

    def close(self) -> None:
        self.handle.release()


_RWF_APPEND = getattr(os, "RWF_APPEND", 0)


def _append(fd: int, data: memoryview) -> int:
    """Writes at the end of the file whatever the descriptor's offset (it was not opened O_APPEND)."""
    global _RWF_APPEND
    if _RWF_APPEND:
        try:
            return os.pwritev(fd, [data], 0, _RWF_APPEND)
        except OSError as e:
            if e.errno not in (E.EOPNOTSUPP, E.ENOSYS):
                raise
            _RWF_APPEND = 0
    return os.pwrite(fd, data, os.fstat(fd).st_size)


# -- the sandbox: path resolution beneath a directory ---------------------------------------------

_openat2_ok = sys.platform.startswith("linux") and _libc is not None
_SYS_OPENAT2 = 437  # the same on every Linux architecture
_RESOLVE_BENEATH, _RESOLVE_NO_MAGICLINKS = 0x08, 0x02


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def _open_beneath(start: int, path: bytes, flags: int, mode: int = 0) -> int:
    """openat(start, path, flags) that never resolves to anything outside `start`."""
    global _openat2_ok
    if _openat2_ok:
        how = _OpenHow(flags, mode if flags & os.O_CREAT else 0, _RESOLVE_BENEATH | _RESOLVE_NO_MAGICLINKS)
        for _ in range(4):  # EAGAIN: something was renamed on the host meanwhile
            fd = _libc.syscall(ctypes.c_long(_SYS_OPENAT2), ctypes.c_int(start), ctypes.c_char_p(path),
                               ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how)))
            if fd >= 0:
                return fd
            err = ctypes.get_errno()
            if err == E.EAGAIN:
                continue
            if err == E.EXDEV:
                raise _escape()
            if err == E.ENOSYS:
                _openat2_ok = False
            elif err != E.EPERM:  # EPERM: some seccomp sandboxes' way of saying ENOSYS
                raise OSError(err, os.strerror(err))
            break
    return _open_manually(start, path, flags, mode)


def _open_manually(start: int, path: bytes, flags: int, mode: int) -> int:
    """The walk `openat2(RESOLVE_BENEATH)` does, done one component at a time.

    Every directory passed through stays open on a stack, so `..` is popped off it rather than asked
    of the OS (a directory moved elsewhere meanwhile cannot lead out); a component is opened with
    O_NOFOLLOW, so only links we read and expand ourselves are followed.
    """
    if not path:
        raise FileNotFoundError(E.ENOENT, os.strerror(E.ENOENT))
    if path.startswith(b"/"):
        raise _escape()
    follow_last = not flags & _O_NOFOLLOW
    trailing_slash = path.endswith(b"/")
    work = [c for c in path.split(b"/") if c]
    work.reverse()  # a stack: the next component is at the end
    if not work:
        raise _escape()
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
                        raise _escape()
                    os.close(cur)
                    cur = stack.pop()
                if last:
                    return os.open(b".", flags & ~_O_NOFOLLOW, mode, dir_fd=cur)
                continue
            if last and trailing_slash and flags & os.O_CREAT:
                raise IsADirectoryError(E.EISDIR, os.strerror(E.EISDIR))  # the kernel's answer to "name/"
            if not last or follow_last or trailing_slash:
                try:
                    target = os.readlink(name, dir_fd=cur)
                except OSError as e:
                    if e.errno not in (E.EINVAL, E.ENOENT):
                        raise
                else:
                    links += 1
                    if links > MAX_SYMLINKS:
                        raise OSError(E.ELOOP, os.strerror(E.ELOOP))
                    if not target:
                        raise FileNotFoundError(E.ENOENT, os.strerror(E.ENOENT))
                    if target.startswith(b"/"):
                        raise _escape()
                    if last and target.endswith(b"/"):
                        trailing_slash = True
                    parts = [c for c in target.split(b"/") if c] or [b"."]
                    work.extend(reversed(parts))
                    continue
            if last:
                return os.open(name, flags | _O_NOFOLLOW | (_O_DIRECTORY if trailing_slash else 0), mode, dir_fd=cur)
            fd = os.open(name, _DIR_LOOKUP | _O_NOFOLLOW, dir_fd=cur)
            stack.append(cur)
            cur = fd
    finally:
        for fd in stack:
            if fd != start:
                os.close(fd)
        if cur != start:
            os.close(cur)


def _rust_components(path: bytes) -> list[bytes]:
    """The components Rust's Path sees: empty and `.` dropped (but a leading `.`), `/` first if rooted."""
    comps = [b"/"] if path.startswith(b"/") else []
    for i, part in enumerate(path.split(b"/")):
        if part == b"." and i == 0 and not comps:
            comps.append(part)
        elif part and part != b".":
            comps.append(part)
    return comps


def _stat_beneath(start: int, path: bytes, follow: bool) -> _Meta:
    comps = _rust_components(path)
    # cap-std's shortcut, kept for its quirk: one plain name, not followed, is stat'd as that name,
    # so "file/" and "link/" answer for the file and the link
    if not follow and len(comps) == 1 and comps[0] not in (b"/", b".", b".."):
        return _statx(start, comps[0], _AT_SYMLINK_NOFOLLOW)
    fd = _open_beneath(start, path, (_O_PATH or os.O_RDONLY) | _O_CLOEXEC | (0 if follow else _O_NOFOLLOW))
    try:
        return _statx(fd, b"", _AT_EMPTY_PATH)
    finally:
        os.close(fd)


def _requires_dir(path: bytes) -> bool:
    return path.endswith(b"/") or path.endswith(b"/.")


def _strip_dir_suffix(path: bytes) -> bytes:
    """create-directory-at and rename-at read "a/" as "a" (not as "a/."), so drop trailing slashes."""
    while len(path) > 1 and path.endswith(b"/"):
        path = path[:-1]
    return path


def _split_parent(path: bytes) -> tuple[bytes, bytes]:
    """(the directory to open, the one name to act on in it), as cap-std splits them.

    A path ending in `/`, `/.` or `..` names a directory, acted on as `.` inside itself.
    """
    if not path:
        raise FileNotFoundError(E.ENOENT, os.strerror(E.ENOENT))
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
def _parent(start: int, path: bytes) -> Iterator[tuple[int, bytes]]:
    """(a directory fd, a single name) for acting on the last component of `path` beneath `start`."""
    dirname, name = _split_parent(path)
    if not dirname:
        yield start, name
        return
    fd = _open_beneath(start, dirname, _DIR_LOOKUP)
    try:
        yield fd, name
    finally:
        os.close(fd)


@contextmanager
def _reopened_dir(fd: int) -> Iterator[int]:
    """The directory itself opened for reading (a preopen's own fd can only name things)."""
    new = os.open(b".", os.O_RDONLY | _O_DIRECTORY | _O_CLOEXEC, dir_fd=fd)
    try:
        yield new
    finally:
        os.close(new)
