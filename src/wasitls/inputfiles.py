"""Files the person running the host names as input (a component, CA bundles, keys, certificates,
passphrase files), opened under one rule:

  - only a regular file is read: a character device (/dev/zero), a FIFO, a socket or a directory is
    refused, judged by fstat of the descriptor we opened (no window between a check and the open);
    a FIFO is opened without blocking, so naming one does not hang the start;
  - a file larger than its kind's bound is refused before it is read, and never more than the bound
    is read (a file that grows meanwhile is refused too).

Refusals are `InputFileError`, an OSError whose `strerror` says why ("not a regular file"), so a
caller's `except OSError` names the file and the reason in one line.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import BinaryIO, TextIO

MiB = 1 << 20
# a PEM bundle, a key, a certificate or a passphrase: the system's CA bundle is ~0.2 MiB
CREDENTIAL_LIMIT = 8 * MiB
# a component: the largest guests we know (componentize-py, with CPython inside) are ~40 MiB
COMPONENT_LIMIT = 1024 * MiB
_KIND = {CREDENTIAL_LIMIT: "a certificate, key or passphrase file", COMPONENT_LIMIT: "a component"}


class InputFileError(OSError):
    """A named input that is not a regular file, or is larger than its kind allows."""


def _too_large(limit: int, name: str) -> InputFileError:
    if limit >= 1024 * MiB and limit % (1024 * MiB) == 0:
        size = f"{limit // (1024 * MiB)} GiB"
    else:
        size = f"{limit // MiB} MiB" if limit >= MiB else f"{limit} bytes"
    return InputFileError(errno.EFBIG, f"larger than {size}, the limit for {_KIND.get(limit, 'such a file')}", name)


def open_input(path: str | os.PathLike, limit: int) -> tuple[BinaryIO, os.stat_result]:
    """The file at `path` opened for reading, with its status; refuses what is not a regular file
    of at most `limit` bytes. Other open errors (missing, no permission, a directory) are the OS's."""
    name = os.fspath(path)
    # O_NONBLOCK: a FIFO with no writer would otherwise block the open; O_NOCTTY: a terminal is not ours
    fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), name)
        if not stat.S_ISREG(st.st_mode):
            raise InputFileError(errno.EINVAL, "not a regular file", name)
        if st.st_size > limit:
            raise _too_large(limit, name)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb"), st
    except BaseException:
        os.close(fd)
        raise


def read_bounded(file: BinaryIO, name: str, limit: int) -> bytes:
    """All of an open input file, refused if it has grown beyond `limit` since it was opened."""
    data = file.read(limit + 1)
    if len(data) > limit:
        raise _too_large(limit, name)
    return data


def read_input(path: str | os.PathLike, limit: int = CREDENTIAL_LIMIT) -> bytes:
    """The bytes of the regular file at `path`, at most `limit` of them (see `open_input`)."""
    file, _ = open_input(path, limit)
    with file:
        return read_bounded(file, os.fspath(path), limit)


def open_output_append(path: str | os.PathLike) -> TextIO:
    """A file we append lines to (the TLS key log): a regular file (made if missing), or a FIFO or
    character device that is already there (/dev/stderr, a pipe a reader holds open). A directory is
    refused by the OS, a block device or socket here; a FIFO with no reader is refused rather than
    waited for (ENXIO)."""
    name = os.fspath(path)
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY
    try:
        fd = os.open(name, flags, 0o600)  # owner-only when we make it: it holds session secrets
    except OSError as e:
        if e.errno == errno.ENXIO:
            raise InputFileError(e.errno, "a FIFO with no reader", name) from None
        raise
    try:
        st = os.fstat(fd)
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISFIFO(st.st_mode) or stat.S_ISCHR(st.st_mode)):
            raise InputFileError(errno.EINVAL, "not a regular file, FIFO or character device", name)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "a", buffering=1, encoding="ascii")
    except BaseException:
        os.close(fd)
        raise
