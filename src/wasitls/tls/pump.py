"""The pump: moves bytes between a sans-I/O TLS engine and the guest's raw wasi:io streams.

It never blocks: each call moves what can move now, and `wait` says what to wait on next.
Backpressure: raw input is read only while someone wants what it brings (see `pump(until=...)`),
and the connection holds plaintext writes back while ciphertext waits for the raw output.
"""

from __future__ import annotations

from typing import Any, Callable

from ..wasi.io.poll import Wait
from ..wasi.io.streams import StreamClosed, StreamFailed

READ_CHUNK = 1 << 16  # raw bytes per read when nothing says how many are wanted
MAX_READ_CHUNK = (1 << 20) + (1 << 14)  # the most one read takes: a full plaintext read + overhead


class TlsPump:
    def __init__(self, engine: Any, raw_in: Any, raw_out: Any, on_input: Callable[[], None]):
        self.engine = engine
        self.raw_in = raw_in  # the guest's input-stream resource; its backend is read directly
        self.raw_out = raw_out
        self.on_input = on_input  # lets the connection absorb the engine's events after each input
        self.outgoing = bytearray()  # ciphertext the raw output has not taken yet
        self.raw_eof = False
        self.send_error: str | None = None

    def send(self) -> None:
        data = self.engine.data_to_send()
        if data:
            self.outgoing += data
        sink = self.raw_out.sink
        while self.outgoing and self.send_error is None:
            try:
                permit = sink.check_write()
                if not permit:
                    return
                n = min(permit, len(self.outgoing))
                sink.write(bytes(self.outgoing[:n]))
                del self.outgoing[:n]
                if not self.outgoing:
                    sink.flush()
            except StreamClosed:
                self.send_error = "the connection was closed while sending"
            except StreamFailed as e:
                self.send_error = f"sending failed: {e.error.message}"
        if self.send_error is not None:
            self.outgoing.clear()

    def receive(self, max_bytes: int = READ_CHUNK, *, absorb: bool = True) -> bool:
        """Feeds what the raw input has now (at most max_bytes) into the engine; True if anything
        (data or an end) came. absorb=False leaves the engine's events to the caller."""
        if self.raw_eof:
            return False
        try:
            data = self.raw_in.source.read(min(max_bytes, MAX_READ_CHUNK))
        except StreamClosed:
            self.raw_eof = True
            self.engine.receive_data(b"")
        except StreamFailed:
            self.raw_eof = True
            self.engine.connection_reset()
        else:
            if not data:
                return False
            # a raw stream may lend a view of its buffer (TLS inside TLS): the engine takes bytes
            self.engine.receive_data(data if isinstance(data, bytes) else bytes(data))
        if absorb:
            self.on_input()
        return True

    def pump(self, until: Callable[[], bool] | None = None) -> None:
        """One non-blocking round: send what is queued; with `until`, read raw input until it holds."""
        self.send()
        if until is not None:
            while not until() and self.receive():
                self.send()  # a record may need an answer (handshake messages, key updates)
        self.send()

    def wait(self, *, for_input: bool) -> Wait:
        sources: list[Any] = []
        if for_input and not self.raw_eof:
            sources.append(self.raw_in.source)
        if self.outgoing:
            sources.append(self.raw_out.sink)
        return Wait(also=tuple(sources))
