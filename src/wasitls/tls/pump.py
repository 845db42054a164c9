"""The pump: moves bytes between a sans-I/O TLS engine and the guest's raw wasi:io streams.

It never blocks: each call moves what can move now; readiness says what to wait on next. The
plaintext streams handed to the guest are ordinary wasi:io streams over `PlainSource`/`PlainSink`.
Backpressure: raw input is read only while the guest wants plaintext, and plaintext writes are
refused (check-write 0) while more than `LIMIT` bytes of ciphertext wait for the raw output.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from ..wasi.io.error import IoError
from ..wasi.io.poll import Wait
from ..wasi.io.streams import StreamClosed, StreamFailed

LIMIT = 1 << 16  # ciphertext waiting for the raw output before plaintext writes are held back
READ_CHUNK = 1 << 16


class TlsPump:
    def __init__(self, engine: Any, raw_in: Any, raw_out: Any, *, on_end: Callable[["TlsPump"], None] | None = None):
        self.engine = engine
        self.raw_in = raw_in  # the guest's input-stream resource; we read its backend directly
        self.raw_out = raw_out
        self.outgoing = bytearray()
        self.raw_eof = False
        self.failure: str | None = None  # why the connection failed, for the guest and the trace
        self.bytes_in = 0  # raw bytes from the peer
        self.bytes_out = 0  # raw bytes to the peer
        self.started = time.monotonic()
        self.handshake_seconds: float | None = None
        self.ended: str | None = None
        self.on_end = on_end

    # -- moving bytes ------------------------------------------------------------------------
    def _send_raw(self) -> None:
        data = self.engine.data_to_send()
        if data:
            self.outgoing += data
        sink = self.raw_out.sink
        while self.outgoing and self.failure is None:
            try:
                permit = sink.check_write()
                if not permit:
                    return
                n = min(permit, len(self.outgoing))
                sink.write(bytes(self.outgoing[:n]))
                del self.outgoing[:n]
                self.bytes_out += n
                if not self.outgoing:
                    sink.flush()
            except StreamClosed:
                self.fail("the connection was closed while sending")
            except StreamFailed as e:
                self.fail(f"sending failed: {e.error.message}")

    def _receive_raw(self) -> bool:
        """Feeds what the raw input has now into the engine; True if anything (data or EOF) arrived."""
        if self.raw_eof or self.failure is not None:
            return False
        try:
            data = self.raw_in.source.read(READ_CHUNK)
        except StreamClosed:
            self.raw_eof = True
            self.engine.receive_data(b"")
            return True
        except StreamFailed as e:
            self.raw_eof = True
            self.fail(_reset_reason(e.error))
            return True
        if not data:
            return False
        self.bytes_in += len(data)
        self.engine.receive_data(data)
        return True

    def pump(self, until: Callable[[], bool] | None = None) -> None:
        """One non-blocking round: send what is queued; with `until`, read raw input until it holds."""
        self._send_raw()
        if until is not None:
            while not until() and self._receive_raw():
                self._send_raw()  # a record may need an answer (handshake messages, key updates)
        self._send_raw()

    def wait(self, *, for_input: bool) -> Wait:
        sources: list[Any] = []
        if for_input and not self.raw_eof:
            sources.append(self.raw_in.source)
        if self.outgoing:
            sources.append(self.raw_out.sink)
        return Wait(also=tuple(sources))

    def fail(self, reason: str) -> None:
        if self.failure is None:
            self.failure = reason
        self.end(f"failed: {reason}")

    def end(self, how: str) -> None:
        if self.ended is None:
            self.ended = how
            if self.on_end is not None:
                self.on_end(self)


def _reset_reason(error: IoError) -> str:
    if error.net_code == "connection-reset":
        return "connection reset by peer"
    return f"the connection failed: {error.message}"
