"""A TLS connection as the WASI interfaces see it: engine + pump + plaintext stream backends + trace.

Shared by wasi:tls/types and the full draft API, so both get the same pump, backpressure, errors
and trace lines.
"""

from __future__ import annotations

import time
from typing import Any

from ..wasi.io.poll import Wait
from ..wasi.io.streams import StreamClosed, StreamFailed
from .pump import LIMIT, TlsPump


class TlsConnection:
    def __init__(self, settings: Any, engine: Any, raw_in: Any, raw_out: Any, *, server_name: str | None):
        self.settings = settings  # tls.config.TlsSettings
        self.engine = engine
        self.server_name = server_name
        self.pump = TlsPump(engine, raw_in, raw_out, on_end=self._trace)
        self.output_closed = False

    @classmethod
    def client(cls, settings: Any, server_name: str, raw_in: Any, raw_out: Any, **options: Any) -> "TlsConnection":
        engine = settings.client_engine(server_name, **options)
        return cls(settings, engine, raw_in, raw_out, server_name=server_name)

    # -- handshake ---------------------------------------------------------------------------
    def start(self) -> None:
        self.pump.pump(until=self._handshake_settled)

    def _handshake_settled(self) -> bool:
        self._absorb_engine_state()
        return self.engine.handshake_done or self.failure is not None

    def _absorb_engine_state(self) -> None:
        if self.pump.failure is None and self.engine.failure is not None:
            self.pump.fail(self.engine.failure)
        if self.engine.handshake_done and self.pump.handshake_seconds is None:
            self.pump.handshake_seconds = time.monotonic() - self.pump.started

    @property
    def failure(self) -> str | None:
        return self.pump.failure

    def handshake_readiness(self) -> "_Readiness":
        return _Readiness(self, self._handshake_settled)

    # -- application data --------------------------------------------------------------------
    def plaintext_source(self) -> "PlainSource":
        return PlainSource(self)

    def plaintext_sink(self) -> "PlainSink":
        return PlainSink(self)

    def close_output(self) -> None:
        """close-output: send close_notify, then close the raw output once it has left."""
        if self.output_closed:
            return
        self.output_closed = True
        self.engine.close()
        deadline = time.monotonic() + 5.0
        from ..wasi.io.poll import wait_any
        while self.pump.outgoing or self.engine.pending_output():
            self.pump.pump()
            if not (self.pump.outgoing or self.engine.pending_output()) or self.pump.failure:
                break
            if time.monotonic() > deadline:
                break
            wait_any([_Deadline(deadline, self.pump.raw_out.sink)])
        close = getattr(self.pump.raw_out.sink, "close", None)
        if close is not None:
            close()
        if self.engine.peer_closed:
            self.pump.end("closed (close_notify both ways)")

    def release(self) -> None:
        if self.pump.ended is None:
            self.pump.end("dropped by the guest")
        self.engine.free()

    # -- trace ---------------------------------------------------------------------------------
    def _trace(self, pump: TlsPump) -> None:
        trace = self.settings.trace
        if trace is None:
            return
        e = self.engine
        facts = e.facts() if e.handshake_done else {}
        hs = "" if pump.handshake_seconds is None else f" handshake={pump.handshake_seconds * 1000:.1f}ms"
        trace(
            f"tls: {self.server_name or '-'} {facts.get('version', '-')} {facts.get('cipher', '-')}"
            f" subject={facts.get('peer_subject', '-')!r} issuer={facts.get('peer_issuer', '-')!r}"
            f" sent={pump.bytes_out} received={pump.bytes_in}{hs} ended={pump.ended}"
        )


class _Deadline:
    def __init__(self, deadline: float, sink: Any):
        self.deadline_ns = int(deadline * 1e9)
        self.sink = sink

    def poll_ready(self) -> bool:
        return self.sink.poll_ready() or time.monotonic_ns() >= self.deadline_ns

    def wait_on(self) -> Wait:
        return Wait(deadline_ns=self.deadline_ns, also=(self.sink,))


class _Readiness:
    def __init__(self, conn: TlsConnection, settled: Any):
        self.conn = conn
        self.settled = settled

    def poll_ready(self) -> bool:
        self.conn.pump.pump(until=self.settled)
        return self.settled()

    def wait_on(self) -> Wait:
        return self.conn.pump.wait(for_input=True)


class PlainSource:
    """Decrypted bytes for the guest's input-stream."""

    def __init__(self, conn: TlsConnection):
        self.conn = conn

    def _settled(self) -> bool:
        e = self.conn.engine
        self.conn._absorb_engine_state()
        return e.plaintext_pending() > 0 or e.peer_closed is not None or self.conn.failure is not None

    def read(self, n: int) -> bytes:
        conn = self.conn
        e = conn.engine
        data = e.read_plaintext(n)
        if data:
            conn.pump.pump()  # reading may have produced records to send (key update, tickets)
            return data
        conn.pump.pump(until=self._settled)
        data = e.read_plaintext(n)
        if data:
            return data
        if conn.failure is not None:
            raise StreamFailed(conn.failure)
        if e.peer_closed == "clean":
            conn.pump.end("closed by the peer (close_notify)") if conn.output_closed else None
            raise StreamClosed
        if e.peer_closed is not None or conn.pump.raw_eof:
            reason = "the peer closed the connection without close_notify (truncated)"
            conn.pump.fail(reason)
            raise StreamFailed(reason)
        return b""

    def poll_ready(self) -> bool:
        self.conn.pump.pump(until=self._settled)
        return self._settled()

    def wait_on(self) -> Wait:
        return self.conn.pump.wait(for_input=True)


class PlainSink:
    """Plaintext from the guest's output-stream, encrypted and queued for the raw output."""

    capacity = LIMIT

    def __init__(self, conn: TlsConnection):
        self.conn = conn
        self.flushing = False

    def check_write(self) -> int:
        conn = self.conn
        conn.pump.pump()
        conn._absorb_engine_state()
        if conn.failure is not None:
            raise StreamFailed(conn.failure)
        if conn.output_closed:
            raise StreamClosed
        queued = len(conn.pump.outgoing)
        if self.flushing:
            if queued:
                return 0
            self.flushing = False
        return max(0, self.capacity - queued)

    def write(self, data: bytes) -> None:
        self.conn.engine.send_plaintext(data)
        self.conn.pump.pump()

    def flush(self) -> None:
        self.flushing = True
        self.conn.pump.pump()

    def poll_ready(self) -> bool:
        try:
            return self.check_write() > 0
        except (StreamFailed, StreamClosed):
            return True

    def wait_on(self) -> Wait:
        return self.conn.pump.wait(for_input=False)
