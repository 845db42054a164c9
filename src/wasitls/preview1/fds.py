"""The preview-1 file descriptor table and what its numbers stand for.

Each entry translates preview 1's fd operations onto an object wasi/ already has: stdio onto the
context's sources and sinks, files and directories onto wasi:filesystem descriptors (so the preopen
sandbox is the one the component host uses), sockets onto wasi:sockets objects (sockets.py).
What preview 1 adds is kept here: a file's position, the append and non-blocking flags, the
preopen's name.
"""

from __future__ import annotations

import os
import time
from typing import Any

from ..component.values import Err, Variant
from ..wasi.filesystem.types import Descriptor
from ..wasi.io.poll import ALWAYS_READY, wait_any
from ..wasi.io.streams import StreamClosed, StreamFailed
from . import witx
from .abi import Errno


class Fd:
    """An open descriptor; the defaults are what a descriptor of no particular kind answers."""

    filetype = witx.FILETYPE_UNKNOWN
    nonblocking = False

    def fdstat(self) -> tuple[int, int, int, int]:
        """(filetype, fdflags, rights_base, rights_inheriting)."""
        flags = witx.FDFLAGS_NONBLOCK if self.nonblocking else 0
        return self.filetype, flags, witx.RIGHTS_ALL, witx.RIGHTS_ALL

    def set_fdflags(self, flags: int) -> None:
        raise Errno(witx.BADF)  # as wasmtime: only files (and here sockets) take flags

    def read(self, n: int) -> bytes | memoryview:
        raise Errno(witx.BADF)

    def write(self, data: bytes) -> int:
        raise Errno(witx.BADF)

    def pread(self, n: int, offset: int) -> bytes:
        raise Errno(witx.BADF)

    def pwrite(self, data: bytes, offset: int) -> int:
        raise Errno(witx.BADF)

    def seek(self, offset: int, whence: int) -> int:
        raise Errno(witx.SPIPE)

    def filestat(self) -> tuple[int, ...]:
        """(dev, ino, filetype, nlink, size, atim, mtim, ctim)."""
        return (0, 0, self.filetype, 0, 0, 0, 0, 0)

    def directory(self) -> Descriptor:
        raise Errno(witx.BADF)  # wasmtime's answer for a path call on anything but a directory

    def file(self) -> "File":
        raise Errno(witx.BADF)

    def readable(self) -> Any:
        """A readiness source (wasi/io/poll.py) ready when a read would not block."""
        return ALWAYS_READY

    def writable(self) -> Any:
        return ALWAYS_READY

    def at_end(self) -> bool:
        """Whether a read would find the end (poll_oneoff flags it as hangup)."""
        return False

    def close(self) -> None:
        pass


def _blocking(fd: Fd, attempt: Any, source: Any) -> Any:
    """Retries `attempt` (returning None for would-block) until it gives a result, unless non-blocking."""
    while True:
        result = attempt()
        if result is not None:
            return result
        if fd.nonblocking:
            raise Errno(witx.AGAIN)
        wait_any([source])


class Stdin(Fd):
    def __init__(self, source: Any, tty: bool):
        self.source = source
        self.filetype = witx.FILETYPE_CHARACTER_DEVICE if tty else witx.FILETYPE_UNKNOWN

    def fdstat(self) -> tuple[int, int, int, int]:
        r = witx.RIGHT["FD_READ"]
        return self.filetype, witx.FDFLAGS_NONBLOCK if self.nonblocking else 0, r, r

    def pread(self, n: int, offset: int) -> bytes:
        raise Errno(witx.SPIPE)

    def read(self, n: int) -> bytes:
        def attempt() -> bytes | None:
            try:
                return self.source.read(n) or (None if n else b"")
            except StreamClosed:
                return b""
            except StreamFailed:
                raise Errno(witx.IO) from None
        return _blocking(self, attempt, self.source)

    def readable(self) -> Any:
        return self.source


class Stdout(Fd):
    def __init__(self, sink: Any, tty: bool):
        self.sink = sink
        self.filetype = witx.FILETYPE_CHARACTER_DEVICE if tty else witx.FILETYPE_UNKNOWN

    def fdstat(self) -> tuple[int, int, int, int]:
        r = witx.RIGHT["FD_WRITE"]
        return self.filetype, witx.FDFLAGS_NONBLOCK if self.nonblocking else 0, r, r

    def pwrite(self, data: bytes, offset: int) -> int:
        raise Errno(witx.SPIPE)

    def write(self, data: bytes) -> int:
        try:
            self.sink.write(data)
        except StreamClosed:
            raise Errno(witx.PIPE) from None
        except StreamFailed:
            raise Errno(witx.IO) from None
        return len(data)

    def writable(self) -> Any:
        return self.sink


def _ns(ts: Any) -> int:
    return 0 if ts is None else ts["seconds"] * 1_000_000_000 + ts["nanoseconds"]


def filestat_of(stat: dict[str, Any], ino: int) -> tuple[int, ...]:
    # as wasmtime: dev 1 and the inode from the metadata hash, which both hosts compute alike
    return (1, ino, witx.FILETYPE_OF.get(stat["type"], 0), stat["link-count"], stat["size"],
            _ns(stat["data-access-timestamp"]), _ns(stat["data-modification-timestamp"]),
            _ns(stat["status-change-timestamp"]))


class _Opened(Fd):
    """A file or directory: a wasi:filesystem descriptor."""

    def __init__(self, descriptor: Descriptor):
        self.descriptor = descriptor

    def filestat(self) -> tuple[int, ...]:
        return filestat_of(self.descriptor.stat(), self.descriptor.metadata_hash()["lower"])

    def close(self) -> None:
        self.descriptor.drop()


class File(_Opened):
    def __init__(self, descriptor: Descriptor, *, append: bool = False, nonblocking: bool = False):
        super().__init__(descriptor)
        self.position = 0
        self.append = append
        self.nonblocking = nonblocking

    @property
    def filetype(self) -> int:  # type: ignore[override]
        return witx.FILETYPE_OF.get(self.descriptor.get_type(), 0)

    def file(self) -> "File":
        return self

    def fdstat(self) -> tuple[int, int, int, int]:
        flags = (witx.FDFLAGS_APPEND if self.append else 0) | (witx.FDFLAGS_NONBLOCK if self.nonblocking else 0)
        sync = self.descriptor.get_flags()
        if "requested-write-sync" in sync:
            flags |= witx.FDFLAGS_DSYNC
        if "file-integrity-sync" in sync:
            flags |= witx.FDFLAGS_SYNC
        base = witx.RIGHTS_ALL
        mode = self.descriptor.open_mode
        if "read" not in mode:
            base &= ~(witx.RIGHT["FD_READ"] | witx.RIGHT["FD_READDIR"])
        if "write" not in mode:
            base &= ~(witx.RIGHT["FD_WRITE"] | witx.RIGHT["FD_ALLOCATE"] | witx.RIGHT["FD_FILESTAT_SET_SIZE"])
        return self.filetype, flags, base, base

    def set_fdflags(self, flags: int) -> None:
        if flags & (witx.FDFLAGS_DSYNC | witx.FDFLAGS_SYNC | witx.FDFLAGS_RSYNC):
            raise Errno(witx.INVAL)  # only APPEND and NONBLOCK change after open
        self.nonblocking = bool(flags & witx.FDFLAGS_NONBLOCK)
        self.append = bool(flags & witx.FDFLAGS_APPEND)

    def read(self, n: int) -> bytes:
        data = self.pread(n, self.position)
        self.position += len(data)
        return data

    def pread(self, n: int, offset: int) -> bytes:
        out = []
        while n > 0:  # the descriptor hands out at most 64 KiB per call
            data, _ = self.descriptor.read(n, offset)
            if not data:
                break
            out.append(data)
            n -= len(data)
            offset += len(data)
        return b"".join(out)

    def write(self, data: bytes) -> int:
        if self.append:
            n = self._append(data)
            self.position = self.descriptor.stat()["size"]
            return n
        n = self.pwrite(data, self.position)
        self.position += n
        return n

    def _append(self, data: bytes) -> int:
        stream = self.descriptor.append_via_stream()
        try:
            stream.write(data)
            stream.flush()
        finally:
            stream.drop()
        return len(data)

    def pwrite(self, data: bytes, offset: int) -> int:
        if self.append:  # as on wasmtime (and Linux): a descriptor opened to append appends
            return self._append(data)
        view = memoryview(data)
        total = 0
        while total < len(view):
            n = self.descriptor.write(bytes(view[total:]), offset + total)
            if not n:
                break
            total += n
        return total

    def seek(self, offset: int, whence: int) -> int:
        if whence == witx.WHENCE_SET:
            base = 0
        elif whence == witx.WHENCE_CUR:
            base = self.position
        elif whence == witx.WHENCE_END:
            base = self.descriptor.stat()["size"]
        else:
            raise Errno(witx.INVAL)
        if base + offset < 0:
            raise Errno(witx.INVAL)
        self.position = base + offset
        return self.position

    def at_end(self) -> bool:
        try:
            return self.position >= self.descriptor.stat()["size"]
        except Err:
            return False

    def allocate(self, offset: int, length: int) -> None:
        if "write" not in self.descriptor.open_mode:
            raise Errno(witx.BADF)
        os.posix_fallocate(self.descriptor.fd, offset, length)

    def set_times(self, atim: int, mtim: int, fstflags: int) -> None:
        self.descriptor.set_times(*timestamps(atim, mtim, fstflags))


class Directory(_Opened):
    filetype = witx.FILETYPE_DIRECTORY

    def __init__(self, descriptor: Descriptor, preopen_path: str | None = None):
        super().__init__(descriptor)
        self.preopen_path = preopen_path

    def directory(self) -> Descriptor:
        return self.descriptor

    def fdstat(self) -> tuple[int, int, int, int]:
        if self.preopen_path is not None:
            return self.filetype, 0, witx.PREOPEN_RIGHTS_BASE, witx.PREOPEN_RIGHTS_INHERITING
        base = witx.RIGHTS_ALL & ~witx.DIRECTORY_RIGHTS_REMOVED
        return self.filetype, 0, base, base

    def seek(self, offset: int, whence: int) -> int:
        raise Errno(witx.BADF)

    def entries(self) -> list[tuple[str, int, int]]:
        """(name, filetype, ino) of each entry: `.` and `..` first, then the directory's order (wasmtime's)."""
        d = self.descriptor
        here = d.metadata_hash()["lower"]
        found = [(".", witx.FILETYPE_DIRECTORY, here), ("..", witx.FILETYPE_DIRECTORY, here)]
        stream = d.read_directory()
        while True:
            entry = stream.read_directory_entry()
            if entry is None:
                return found
            ino = d.metadata_hash_at(set(), entry["name"])["lower"]
            found.append((entry["name"], witx.FILETYPE_OF.get(entry["type"], 0), ino))

    def set_times(self, atim: int, mtim: int, fstflags: int) -> None:
        self.descriptor.set_times(*timestamps(atim, mtim, fstflags))


def timestamps(atim: int, mtim: int, fstflags: int) -> tuple[Any, Any]:
    """fstflags and two times as wasi:filesystem new-timestamp values."""
    def one(value: int, set_flag: int, now_flag: int) -> Any:
        if fstflags & set_flag and fstflags & now_flag:
            raise Errno(witx.INVAL)
        if fstflags & now_flag:
            return "now"
        if fstflags & set_flag:
            return Variant("timestamp", {"seconds": value // 1_000_000_000, "nanoseconds": value % 1_000_000_000})
        return "no-change"
    return (one(atim, witx.FSTFLAGS_ATIM, witx.FSTFLAGS_ATIM_NOW),
            one(mtim, witx.FSTFLAGS_MTIM, witx.FSTFLAGS_MTIM_NOW))


class FdTable:
    """The numbers a guest holds; new descriptors take the lowest free number, as POSIX does."""

    def __init__(self) -> None:
        self.entries: dict[int, Fd] = {}

    def get(self, fd: int) -> Fd:
        entry = self.entries.get(fd)
        if entry is None:
            raise Errno(witx.BADF)
        return entry

    def add(self, entry: Fd) -> int:
        fd = 0
        while fd in self.entries:
            fd += 1
        self.entries[fd] = entry
        return fd

    def remove(self, fd: int) -> Fd:
        entry = self.entries.pop(fd, None)
        if entry is None:
            raise Errno(witx.BADF)
        return entry

    def close_all(self) -> None:
        for entry in list(self.entries.values()):
            try:
                entry.close()
            except Exception:  # noqa: BLE001 - the guest is gone; one failing close must not stop the rest
                pass
        self.entries.clear()


def deadline_after(ns: int) -> int:
    return time.monotonic_ns() + ns
