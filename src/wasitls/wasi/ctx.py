"""What one running guest has: arguments, environment, stdio, the capability policy, resolved once."""

from __future__ import annotations

import errno
import os
import select
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from ..policy import Policy
from .io.poll import Wait
from .io.streams import StreamClosed, StreamFailed


class FdSource:
    """A readable file descriptor (stdin, a pipe), read only when the OS says data is there.

    The descriptor is left in blocking mode: it is often shared with the shell that started us.
    """

    def __init__(self, fd: int):
        self.fd = fd
        self.eof = False

    def _readable(self) -> bool:
        p = select.poll()
        p.register(self.fd, select.POLLIN)
        return bool(p.poll(0))

    def read(self, n: int) -> bytes:
        if self.eof:
            raise StreamClosed
        if n == 0 or not self._readable():
            return b""
        try:
            data = os.read(self.fd, n)
        except OSError as e:
            if e.errno != errno.EBADF:
                raise StreamFailed(f"read failed: {e.strerror}") from None
            data = b""  # a closed stdin is at end of file (Rust's std, so wasmtime, reads it so)
        if not data:
            self.eof = True
            raise StreamClosed
        return data

    def poll_ready(self) -> bool:
        return self.eof or self._readable()

    def wait_on(self) -> Wait:
        return Wait(read_fds=(self.fd,))


class EmptySource:
    def read(self, n: int) -> bytes:
        raise StreamClosed

    def poll_ready(self) -> bool:
        return True

    def wait_on(self) -> Wait:
        return Wait()


class BytesSource:
    """stdin given as bytes through the Python API."""

    def __init__(self, data: bytes):
        self.view = memoryview(bytes(data))

    def read(self, n: int) -> bytes:
        if not self.view:
            raise StreamClosed
        chunk, self.view = self.view[:n], self.view[n:]
        return bytes(chunk)

    def poll_ready(self) -> bool:
        return True

    def wait_on(self) -> Wait:
        return Wait()


class WriterSink:
    """stdout/stderr: every write reaches the file before the call returns, so nothing is lost at exit."""

    capacity = 1 << 16

    def __init__(self, target: int | BinaryIO):
        self.target = target

    def check_write(self) -> int:
        return self.capacity

    def write(self, data: bytes) -> None:
        if isinstance(self.target, int):
            view = memoryview(data)
            try:
                while view:
                    view = view[os.write(self.target, view):]
            except BrokenPipeError:
                raise StreamClosed from None
            except OSError as e:
                if e.errno != errno.EBADF:
                    raise StreamFailed(f"write failed: {e.strerror}") from None
                # a closed (or read-only) stdout/stderr swallows output, as Rust's std does for wasmtime
        else:
            self.target.write(data)

    def flush(self) -> None:
        flush = getattr(self.target, "flush", None)
        if flush is not None:
            flush()

    def poll_ready(self) -> bool:
        return True

    def wait_on(self) -> Wait:
        return Wait()


@dataclass
class WasiCtx:
    args: list[str] = field(default_factory=list)
    env: list[tuple[str, str]] = field(default_factory=list)
    policy: Policy = field(default_factory=Policy)
    stdin: Any = field(default_factory=EmptySource)  # a source (see io/streams.py)
    stdout: Any = field(default_factory=lambda: WriterSink(1))  # a sink
    stderr: Any = field(default_factory=lambda: WriterSink(2))
    stdin_tty: bool = False
    stdout_tty: bool = False
    stderr_tty: bool = False
    cwd: str | None = None  # wasi:cli/environment.initial-cwd
    tls: Any = None  # tls.config.TlsSettings, shared by the host's runs
    extras: dict[str, Any] = field(default_factory=dict)  # per-guest state other packages keep (TLS config, ...)
