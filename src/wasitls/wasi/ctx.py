"""What one running guest has: arguments, environment, stdio, the capability policy, resolved once."""

from __future__ import annotations

import errno
import os
import select
from typing import Any, BinaryIO

from ..lifetime import Lifetime
from ..policy import Policy
from ..records import Record
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


class WasiCtx(Record):
    _fields = ("args", "env", "policy", "stdin", "stdout", "stderr", "stdin_tty", "stdout_tty", "stderr_tty",
               "cwd", "lifetime", "open_sockets")

    def __init__(self, args: list[str] | None = None, env: list[tuple[str, str]] | None = None,
                 policy: Policy | None = None, stdin: Any = None, stdout: Any = None, stderr: Any = None,
                 stdin_tty: bool = False, stdout_tty: bool = False, stderr_tty: bool = False,
                 cwd: str | None = None, lifetime: Lifetime | None = None):
        self.args: list[str] = [] if args is None else args
        self.env: list[tuple[str, str]] = [] if env is None else env
        self.policy = Policy() if policy is None else policy
        self.stdin: Any = EmptySource() if stdin is None else stdin  # a source (see io/streams.py)
        self.stdout: Any = WriterSink(1) if stdout is None else stdout  # a sink
        self.stderr: Any = WriterSink(2) if stderr is None else stderr
        self.stdin_tty = stdin_tty
        self.stdout_tty = stdout_tty
        self.stderr_tty = stderr_tty
        self.cwd = cwd  # wasi:cli/environment.initial-cwd
        self.lifetime = Lifetime() if lifetime is None else lifetime  # hooks the host runs when the guest ends
        self.open_sockets: dict[int, Any] = {}  # wasi:sockets resources holding OS sockets, by id
        self.lifetime.at_end(self.close_sockets)

    def close_sockets(self) -> None:
        """Closes every socket the guest still holds (the guest has ended, or a test is done with it)."""
        for resource in list(self.open_sockets.values()):
            resource.close()
        self.open_sockets.clear()
