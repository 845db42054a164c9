"""wasi:io/streams@0.2.9: input and output streams over small byte source and sink backends.

stdio, files, TCP and TLS are only backends. A source:
    read(n) -> bytes | memoryview
                            at most n bytes, b"" when nothing is available now;
                            raises StreamClosed at the end, StreamFailed on error.
                            A source may lend a memoryview of its own buffer, valid only until
                            its next read: a consumer copies what it keeps (the engines copy into
                            guest memory at once; splice and the TLS glue copy)
    poll_ready(), wait_on() readiness (see poll.py): ready when read would return data or raise
    close()                 optional, called when the guest drops the stream
A sink:
    check_write() -> int    bytes it accepts now (0: not now, or a flush is still in progress)
    write(data)             at most what check_write allowed
    flush()                 starts flushing what was written
    poll_ready(), wait_on() ready when check_write would be > 0 or raise
    close()                 optional
"""

from __future__ import annotations

import os
from typing import Any

from ...component.linker import HostInterface
from ...component.values import Err, Trap, Variant
from .error import IoError
from .poll import Pollable, Wait, wait_any

BLOCKING_LIMIT = 4096  # blocking-write-and-flush and friends take at most this many bytes (WIT)
MAX_READ = 1 << 20  # one read of any stream (or of a source by the TLS glue) never takes more than this


class StreamClosed(Exception):
    pass


class StreamFailed(Exception):
    def __init__(self, error: IoError | str):
        self.error = error if isinstance(error, IoError) else IoError(error)
        super().__init__(self.error.message)


def _closed() -> Err:
    return Err(Variant("closed"))


def _failed(e: StreamFailed) -> Err:
    return Err(Variant("last-operation-failed", e.error))


class InputStream:
    """The `input-stream` resource."""

    def __init__(self, source: Any):
        self.source = source
        self.done: Err | None = None  # once closed or failed, every later call says `closed`

    @property
    def backend(self) -> Any:
        return self.source

    def backend_ready(self) -> bool:
        return bool(self.source.poll_ready())

    def read(self, len: int) -> bytes | memoryview:
        if self.done is not None:
            raise self.done
        try:
            return self.source.read(min(len, MAX_READ))
        except StreamClosed:
            self.done = _closed()
            raise self.done from None
        except StreamFailed as e:
            self.done = _closed()  # the error is reported once, later calls see `closed`
            raise _failed(e) from None

    def blocking_read(self, len: int) -> bytes:
        while True:
            data = self.read(len)
            if data or len == 0:
                return data
            wait_any([self.source])

    def skip(self, len: int) -> int:
        return _size(self.read(len))

    def blocking_skip(self, len: int) -> int:
        return _size(self.blocking_read(len))

    def subscribe(self) -> Pollable:
        return Pollable(_DoneOr(self))

    def drop(self) -> None:
        close = getattr(self.source, "close", None)
        if close is not None:
            close()


def _size(data: bytes) -> int:
    return len(data)


class _DoneOr:
    """A stream's pollable: ready at once when the stream already ended, else when its backend is."""

    def __init__(self, stream: Any):
        self.stream = stream

    def poll_ready(self) -> bool:
        return self.stream.done is not None or self.stream.backend_ready()

    def wait_on(self) -> Wait:
        return Wait(also=(self.stream.backend,))


class OutputStream:
    """The `output-stream` resource."""

    def __init__(self, sink: Any):
        self.sink = sink
        self.done: Err | None = None

    @property
    def backend(self) -> Any:
        return self.sink

    def backend_ready(self) -> bool:
        return bool(self.sink.poll_ready())

    def _guard(self, fn: Any, *args: Any) -> Any:
        if self.done is not None:
            raise self.done
        try:
            return fn(*args)
        except StreamClosed:
            self.done = _closed()
            raise self.done from None
        except StreamFailed as e:
            self.done = _closed()
            raise _failed(e) from None

    def check_write(self) -> int:
        return self._guard(self.sink.check_write)

    def write(self, contents: bytes) -> None:
        permit = self.check_write()
        if len(contents) > permit:
            raise Trap(f"output-stream.write of {len(contents)} bytes exceeds the {permit} bytes check-write permitted")
        if contents:
            self._guard(self.sink.write, contents)

    def blocking_write_and_flush(self, contents: bytes) -> None:
        if len(contents) > BLOCKING_LIMIT:
            raise Trap(f"blocking-write-and-flush of {len(contents)} bytes exceeds the {BLOCKING_LIMIT}-byte limit")
        view = memoryview(contents)
        while view:
            permit = self._wait_permit()
            n = min(permit, len(view))
            self._guard(self.sink.write, bytes(view[:n]))
            view = view[n:]
        self.blocking_flush()

    def flush(self) -> None:
        self._guard(self.sink.flush)

    def blocking_flush(self) -> None:
        self.flush()
        self._wait_permit()

    def _wait_permit(self) -> int:
        while True:
            permit = self.check_write()
            if permit:
                return permit
            wait_any([self.sink])

    def subscribe(self) -> Pollable:
        return Pollable(_DoneOr(self))

    # The length is checked against the permit before any zeroes exist: it is a guest-chosen u64.
    def write_zeroes(self, len: int) -> None:
        permit = self.check_write()
        if len > permit:
            raise Trap(f"output-stream.write-zeroes of {len} bytes exceeds the {permit} bytes check-write permitted")
        self.write(bytes(len))

    def blocking_write_zeroes_and_flush(self, len: int) -> None:
        if len > BLOCKING_LIMIT:
            raise Trap(f"blocking-write-zeroes-and-flush of {len} bytes exceeds the {BLOCKING_LIMIT}-byte limit")
        self.blocking_write_and_flush(bytes(len))

    def splice(self, src: InputStream, len: int) -> int:
        permit = self.check_write()
        data = src.read(min(len, permit))
        if data:
            self._guard(self.sink.write, bytes(data))  # a source may lend a view of its buffer
        return _size(data)

    def blocking_splice(self, src: InputStream, len: int) -> int:
        permit = self._wait_permit()
        data = src.blocking_read(min(len, permit))
        if data:
            self._guard(self.sink.write, bytes(data))  # a source may lend a view of its buffer
        return _size(data)

    def drop(self) -> None:
        close = getattr(self.sink, "close", None)
        if close is not None:
            close()


class BufferedSink:
    """A sink over a non-blocking byte transport: a bounded buffer drained whenever the transport can take it."""

    capacity = 1 << 16

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.flushing = False
        self.error: StreamFailed | None = None

    # subclasses provide these
    def send(self, data: memoryview) -> int:  # bytes the transport took, 0 if it would block
        raise NotImplementedError

    def fileno(self) -> int | None:
        return None

    def _drain(self) -> None:
        while self.buffer and self.error is None:
            try:
                n = self.send(memoryview(self.buffer))
            except StreamFailed as e:
                self.error = e
                break
            if not n:
                break
            del self.buffer[:n]
        if not self.buffer:
            self.flushing = False

    def check_write(self) -> int:
        self._drain()
        if self.error is not None:
            raise self.error
        if self.flushing:
            return 0
        return self.capacity - len(self.buffer)

    def write(self, data: bytes) -> None:
        self.buffer += data
        self._drain()

    def flush(self) -> None:
        self.flushing = bool(self.buffer)
        self._drain()

    def poll_ready(self) -> bool:
        try:
            return self.check_write() > 0
        except StreamFailed:
            return True

    def wait_on(self) -> Wait:
        fd = self.fileno()
        return Wait(write_fds=(fd,)) if self.buffer and fd is not None else Wait()


class FdSink(BufferedSink):
    """A sink over a file descriptor (pipes, terminals), written without blocking the host."""

    def __init__(self, fd: int):
        super().__init__()
        self.fd = fd
        os.set_blocking(fd, False)

    def fileno(self) -> int:
        return self.fd

    def send(self, data: memoryview) -> int:
        try:
            return os.write(self.fd, data)
        except BlockingIOError:
            return 0
        except BrokenPipeError:
            raise StreamClosed from None
        except OSError as e:
            raise StreamFailed(f"write failed: {e.strerror}") from None


class Streams(HostInterface):
    wit = "wasi:io/streams@0.2.9"
    resources = {"input-stream": InputStream, "output-stream": OutputStream}

    def __init__(self, ctx: Any = None):
        self.ctx = ctx
