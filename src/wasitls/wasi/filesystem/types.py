"""wasi:filesystem/types@0.2.9: descriptors over real host directories, sandboxed beneath their preopen.

A `descriptor` holds an OS file descriptor (shared, reference-counted, with the streams made from it)
and, as wasmtime keeps them, two kinds of rights:

    perms       what the host granted (a directory: read, mutate; a file: read, write), inherited by
                everything opened beneath a preopen and checked before the OS is asked
    open_mode   what the guest asked for when it opened it (read, write); only `get-flags` reports it,
                the OS enforces it (a write to a read-only descriptor fails with bad-descriptor)

Every path a guest names goes to `wasitls.sandbox`, which resolves it beneath the directory
descriptor it is relative to, never above (an escape is EPERM, here `not-permitted`); this file maps
the WIT onto it and errno onto `error-code`.

Error codes, flag handling, and the corners of path handling (trailing slashes, `.` and `..` at the
end) follow wasmtime 49 (cap-std underneath), measured against `wasmtime run`.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
from contextlib import contextmanager
from stat import S_ISBLK, S_ISCHR, S_ISDIR, S_ISLNK, S_ISREG
from typing import Any, Iterator

from ... import libc, sandbox
from ...component.linker import HostInterface
from ...component.values import Err, Trap
from ..io.error import IoError
from ..io.poll import Wait
from ..io.streams import InputStream, OutputStream, StreamClosed, StreamFailed
from .siphash import siphash13

# wasmtime never reads or hands out more than this at once (its MAX_READ_SIZE_ALLOC), and a file
# output stream accepts this much per check-write
MAX_READ_SIZE = 64 * 1024
FILE_WRITE_CAPACITY = 64 * 1024

# host-granted rights (wasmtime's DirPerms and FilePerms); a preopen gets all of them by default
DIR_PERMS_ALL = frozenset({"read", "mutate"})
FILE_PERMS_ALL = frozenset({"read", "write"})

_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_I64_MAX = 2**63 - 1


# -- types, in the WIT's order -------------------------------------------------------------------

def _i64(n: int) -> int:
    """A filesize as the OS's signed offset: values past 2**63 wrap negative and the OS says `invalid`."""
    n &= (1 << 64) - 1
    return n - (1 << 64) if n > _I64_MAX else n


def _descriptor_type(mode: int) -> str:
    # wasmtime knows no fifo or socket: both are `unknown`
    if S_ISDIR(mode):
        return "directory"
    if S_ISLNK(mode):
        return "symbolic-link"
    if S_ISBLK(mode):
        return "block-device"
    if S_ISCHR(mode):
        return "character-device"
    if S_ISREG(mode):
        return "regular-file"
    return "unknown"


# descriptor-flags: O_SYNC includes O_DSYNC's bit on Linux, so test whole masks; wasmtime's pairing
_SYNC_FLAGS = (
    (getattr(os, "O_DSYNC", 0), "requested-write-sync"),
    (getattr(os, "O_RSYNC", 0), "data-integrity-sync"),
    (getattr(os, "O_SYNC", 0), "file-integrity-sync"),
)


def _datetime(t: tuple[int, int] | None) -> dict[str, int] | None:
    return {"seconds": t[0], "nanoseconds": t[1]} if t is not None and t[0] >= 0 else None


def _descriptor_stat(st: libc.Stat) -> dict[str, Any]:
    return {
        "type": _descriptor_type(st.mode), "link-count": st.nlink, "size": st.size,
        "data-access-timestamp": _datetime(st.atime), "data-modification-timestamp": _datetime(st.mtime),
        "status-change-timestamp": _datetime(st.btime),  # what wasmtime reports here: the creation time
    }


def _timespecs(atime: Any, mtime: Any) -> libc.Times:
    return _timespec(atime), _timespec(mtime)


def _timespec(ts: Any) -> tuple[int, int]:
    """A new-timestamp as utimensat's timespec."""
    case = ts.case if hasattr(ts, "case") else ts
    if case == "no-change":
        return (0, libc.UTIME_OMIT)
    if case == "now":
        return (0, libc.UTIME_NOW)
    value = ts.value
    seconds = value["seconds"] + value["nanoseconds"] // 1_000_000_000
    if seconds > _I64_MAX:  # past what the host's time type holds
        raise Err("overflow")
    return (seconds, value["nanoseconds"] % 1_000_000_000)


# error-code: errno as wasmtime maps it; every other errno is `io` (EXDEV, EROFS, EAGAIN, ... too)
_ERRNO_CODES = {
    errno.EPIPE: "pipe", errno.EPERM: "not-permitted", errno.ENOENT: "no-entry",
    errno.ENOMEM: "insufficient-memory", errno.EIO: "io", errno.EBADF: "bad-descriptor", errno.EBUSY: "busy",
    errno.EACCES: "access", errno.ENOTDIR: "not-directory", errno.EISDIR: "is-directory",
    errno.EINVAL: "invalid", errno.EEXIST: "exist", errno.EFBIG: "file-too-large",
    errno.ENOSPC: "insufficient-space", errno.ESPIPE: "invalid-seek", errno.EMLINK: "too-many-links",
    errno.ENAMETOOLONG: "name-too-long", errno.ENOTEMPTY: "not-empty", errno.ELOOP: "loop",
    errno.EOVERFLOW: "overflow", errno.EILSEQ: "illegal-byte-sequence", errno.ENOTSUP: "unsupported",
    errno.EOPNOTSUPP: "unsupported", errno.EALREADY: "already", errno.EINPROGRESS: "in-progress",
    errno.EINTR: "interrupted",
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


_ADVICE = {
    "normal": os.POSIX_FADV_NORMAL, "sequential": os.POSIX_FADV_SEQUENTIAL, "random": os.POSIX_FADV_RANDOM,
    "will-need": os.POSIX_FADV_WILLNEED, "dont-need": os.POSIX_FADV_DONTNEED, "no-reuse": os.POSIX_FADV_NOREUSE,
} if hasattr(os, "posix_fadvise") else {}


def _metadata_hash_value(st: libc.Stat) -> dict[str, int]:
    # wasmtime's hash: Rust's DefaultHasher (SipHash-1-3, zero key) over dev and ino, the upper
    # half that xor pi's bits, so the same file hashes the same under both hosts
    lower = siphash13(struct.pack("<QQ", st.dev, st.ino))
    return {"lower": lower, "upper": lower ^ 4614256656552045848}


def _path(path: str) -> bytes:
    if "\0" in path:
        raise Err("invalid")
    return path.encode("utf-8")


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
        fd = sandbox.open_directory(host_path)
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
                with sandbox.reopened_directory(self.fd) as fd:
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
            return _descriptor_type(libc.fstatx(self.fd).mode)

    def set_size(self, size: int) -> None:
        self._file()._require("write")
        with _os_errors():
            os.ftruncate(self.fd, _i64(size))

    def set_times(self, data_access_timestamp: Any, data_modification_timestamp: Any) -> None:
        times = _timespecs(data_access_timestamp, data_modification_timestamp)
        self._require("mutate" if self.is_dir else "write")
        with _os_errors():
            libc.futimens(self.fd, times)

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
        with _os_errors(), sandbox.reopened_directory(self.fd) as fd:
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
                with sandbox.reopened_directory(self.fd) as fd:
                    os.fsync(fd)
            else:
                os.fsync(self.fd)

    def create_directory_at(self, path: str) -> None:
        self._dir()._require("mutate")
        with _os_errors():
            sandbox.mkdir_beneath(self.fd, _path(path))

    def stat(self) -> dict[str, Any]:
        with _os_errors():
            return _descriptor_stat(libc.fstatx(self.fd))

    def stat_at(self, path_flags: set[str], path: str) -> dict[str, Any]:
        self._dir()._require("read")
        with _os_errors():
            return _descriptor_stat(sandbox.stat_beneath(self.fd, _path(path), "symlink-follow" in path_flags))

    def set_times_at(self, path_flags: set[str], path: str, data_access_timestamp: Any,
                     data_modification_timestamp: Any) -> None:
        self._dir()
        times = _timespecs(data_access_timestamp, data_modification_timestamp)
        self._require("mutate")
        with _os_errors():
            sandbox.set_times_beneath(self.fd, _path(path), times, "symlink-follow" in path_flags)

    def link_at(self, old_path_flags: set[str], old_path: str, new_descriptor: "Descriptor", new_path: str) -> None:
        self._dir()
        new_descriptor._dir()
        self._require("mutate")
        new_descriptor._require("mutate")
        if "symlink-follow" in old_path_flags:
            raise Err("invalid")
        with _os_errors():
            sandbox.link_beneath(self.fd, _path(old_path), new_descriptor.fd, _path(new_path))

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
            fd = sandbox.open_beneath(self.fd, _path(path), oflags, 0o666)
            try:
                is_dir = S_ISDIR(os.fstat(fd).st_mode)
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
        with _os_errors():
            target = sandbox.readlink_beneath(self.fd, _path(path))
        try:
            return target.decode("utf-8")
        except UnicodeDecodeError:
            raise Err("illegal-byte-sequence") from None

    def remove_directory_at(self, path: str) -> None:
        self._dir()._require("mutate")
        with _os_errors():
            sandbox.rmdir_beneath(self.fd, _path(path))

    def rename_at(self, old_path: str, new_descriptor: "Descriptor", new_path: str) -> None:
        self._dir()
        new_descriptor._dir()
        self._require("mutate")
        new_descriptor._require("mutate")
        with _os_errors():
            sandbox.rename_beneath(self.fd, _path(old_path), new_descriptor.fd, _path(new_path))

    def symlink_at(self, old_path: str, new_path: str) -> None:
        self._dir()._require("mutate")
        with _os_errors():
            sandbox.symlink_beneath(_path(old_path), self.fd, _path(new_path))

    def unlink_file_at(self, path: str) -> None:
        self._dir()._require("mutate")
        with _os_errors():
            sandbox.unlink_beneath(self.fd, _path(path))

    def is_same_object(self, other: "Descriptor") -> bool:
        try:
            a = libc.fstatx(self.fd)
            b = libc.fstatx(other.fd)
        except OSError as e:  # wasmtime traps here: the function has no error case
            raise Trap(f"is-same-object: {e}") from None
        return (a.dev, a.ino) == (b.dev, b.ino)

    def metadata_hash(self) -> dict[str, int]:
        with _os_errors():
            return _metadata_hash_value(libc.fstatx(self.fd))

    def metadata_hash_at(self, path_flags: set[str], path: str) -> dict[str, int]:
        self._dir()
        with _os_errors():
            return _metadata_hash_value(sandbox.stat_beneath(self.fd, _path(path), "symlink-follow" in path_flags))

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


# -- the backends of read-via-stream, write-via-stream and append-via-stream --------------------

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
                    raise OSError(errno.EIO, "write returned 0")
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
            if e.errno not in (errno.EOPNOTSUPP, errno.ENOSYS):
                raise
            _RWF_APPEND = 0
    return os.pwrite(fd, data, os.fstat(fd).st_size)


