"""A TLS connection as WASI interfaces see it: engine + pump + plaintext stream backends + trace.

Shared by every TLS interface we serve, so all get the same pump, backpressure, errors and trace.
"""

from __future__ import annotations

import time
import weakref
from typing import Any

from ..wasi.io.poll import Wait, wait_any
from ..wasi.io.streams import StreamClosed, StreamFailed
from . import engine as tls_engine
from .pump import TlsPump

WRITE_LIMIT = 1 << 16  # ciphertext waiting for the raw output before plaintext writes are held back
READ_AHEAD = 1 << 16
READ_LIMIT = 1 << 20  # the most plaintext one guest read decrypts (and so holds) at a time
RECORD_SLACK = 1 << 14  # raw bytes read beyond the plaintext wanted: record headers and tags
CLOSE_TIMEOUT = 5.0  # how long close-output waits for close_notify to leave


_LIVE_KEY = "tls:connections"


def track(ctx: Any, conn: "TlsConnection") -> "TlsConnection":
    """Remember a guest's connection so its trace line is printed even if the guest exits with
    it still open (the host's closers run after the guest ends)."""
    live = ctx.extras.get(_LIVE_KEY)
    if live is None:
        live = ctx.extras[_LIVE_KEY] = weakref.WeakSet()

        def end_all() -> None:
            for c in list(live):
                c._end(c._how_it_ended("still open when the guest exited"))

        ctx.extras.setdefault("closers", []).append(end_all)
    live.add(conn)
    return conn


class TlsConnection:
    """One TLS connection over a guest's raw streams; released when its last holder lets go."""

    def __init__(self, settings: Any, engine: Any, raw_in: Any, raw_out: Any, *, server_name: str | None,
                 role: str = "client"):
        self.settings = settings  # tls.config.TlsSettings
        self.engine = engine
        self.role = role
        self.server_name = server_name
        self.pump = TlsPump(engine, raw_in, raw_out, self._absorb_events)
        self.started = time.monotonic()
        self.handshake_seconds: float | None = None
        self.peer_closed: str | None = None  # None, or why the peer's side ended
        self.peer_closed_clean = False
        self.error: str | None = None
        self.output_closed = False
        self.ended: str | None = None
        self.ahead = b""  # plaintext decrypted ahead of the guest's reads
        self._read_buffer = bytearray()  # read_flowing decrypts here
        # what the handshake's pauses brought, kept after the guest resumes past them
        self.server_identity_seen: Any = None  # client: the verified chain the server sent
        self.client_identity_requested = False  # client: the server sent a CertificateRequest
        self.client_identities: list[Any] = []  # server: ClientIdentityReceived events, in order
        self.holders = 1  # the connection resource; plaintext streams add themselves
        self.close_notify_on_drop = False  # draft API: no close call, dropping the output ends it

    @classmethod
    def client(cls, settings: Any, server_name: str, raw_in: Any, raw_out: Any, **options: Any) -> "TlsConnection":
        return cls(settings, settings.client_engine(server_name, **options), raw_in, raw_out, server_name=server_name)

    @classmethod
    def server(cls, settings: Any, raw_in: Any, raw_out: Any) -> "TlsConnection":
        from .engine import ServerEngine

        # Client certificates are checked against --client-ca-file, else the host's TLS trust.
        engine = ServerEngine(settings.client_config, client_trust=settings.client_trust)
        return cls(settings, engine, raw_in, raw_out, server_name=None, role="server")

    # -- the engine's events ----------------------------------------------------------------
    def _absorb_events(self) -> None:
        while True:
            event = self.engine.next_event()
            if event is None or isinstance(event, tls_engine.NeedData):
                return
            if isinstance(event, tls_engine.HandshakeComplete):
                self.handshake_seconds = time.monotonic() - self.started
            elif isinstance(event, tls_engine.ServerIdentityReceived):
                self.server_identity_seen = event.identity
            elif isinstance(event, tls_engine.ClientIdentityRequested):
                self.client_identity_requested = True
            elif isinstance(event, tls_engine.ClientIdentityReceived):
                self.client_identities.append(event)
            elif isinstance(event, tls_engine.Failed):
                self._fail(event.reason)
                return
            elif isinstance(event, tls_engine.PeerClosed):
                if self.peer_closed is None:
                    self.peer_closed, self.peer_closed_clean = event.reason, event.clean
                return

    def _fail(self, reason: str) -> None:
        # The trace line waits for the release, so it counts the alert that is still to be sent.
        if self.error is None:
            self.error = reason

    @property
    def failure(self) -> str | None:
        if self.error is None and self.pump.send_error is not None:
            self._fail(self.pump.send_error)
        return self.error

    # -- handshake ---------------------------------------------------------------------------
    def start(self) -> None:
        self.advance(self.handshake_settled)

    def advance(self, until: Any) -> None:
        """Drive the handshake (a client's first call writes its ClientHello) and move bytes,
        without blocking, until `until()` holds or nothing more can move now."""
        self._absorb_events()
        self.pump.pump(until=until)

    def settled_or_paused(self) -> bool:
        return self.engine.paused is not None or self.handshake_settled()

    def handshake_settled(self) -> bool:
        return self.engine.handshake_complete or self.failure is not None

    def handshake_readiness(self) -> "_Readiness":
        return _Readiness(self)

    def fill_ahead(self, limit: int = READ_AHEAD) -> bool:
        """Decrypt what has arrived into `ahead` (up to `limit`); True when there is plaintext or
        an end to report. Reading also processes post-handshake messages (client identities)."""
        if not self.ahead:
            self.ahead = self.engine.read_plaintext(limit)
            self._absorb_events()
        elif len(self.ahead) < limit:  # only while waiting on a post-handshake client identity
            self.ahead += self.engine.read_plaintext(limit - len(self.ahead))
            self._absorb_events()
        return bool(self.ahead) or self.peer_closed is not None or self.failure is not None

    def read_flowing(self, n: int) -> bytes | memoryview:
        """Plaintext available now, up to min(n, READ_LIMIT): decrypts what has arrived, reading raw
        input only while the read is not full; b"" when none (the slow path then says why).
        The data is a view of the connection's read buffer, valid until the next read: the caller
        copies it (the engines copy results into guest memory at once) instead of us copying twice."""
        engine, pump = self.engine, self.pump
        limit = min(n, READ_LIMIT)
        if limit <= 0 or not engine.handshake_complete or self.error is not None or self.peer_closed is not None:
            return b""
        if len(self._read_buffer) < limit:  # grown to what reads ask for: small readers stay small
            self._read_buffer = bytearray(limit)
        view = memoryview(self._read_buffer)
        got = engine.read_plaintext_into(view[:limit])
        while got < limit:  # raw reads bounded by what this read still wants
            wanted = limit - got
            if not pump.receive(wanted + (wanted >> 9) + RECORD_SLACK, absorb=False):
                break
            more = engine.read_plaintext_into(view[got:limit])
            if not more:
                break
            got += more
        self._absorb_events()  # once per read: ends, failures and client identities the reads noticed
        return view[:got] if got else b""

    # -- application data ------------------------------------------------------------------------
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
        deadline = time.monotonic() + CLOSE_TIMEOUT
        self.pump.send()
        while self.pump.outgoing and self.failure is None and time.monotonic() < deadline:
            wait_any([_SinkOrDeadline(self.pump.raw_out.sink, deadline)])
            self.pump.send()
        close = getattr(self.pump.raw_out.sink, "close", None)
        if close is not None:
            close()

    def hold(self) -> None:
        self.holders += 1

    def unhold(self) -> None:
        """One holder (the connection resource, a plaintext stream) is gone; the last releases."""
        self.holders -= 1
        if self.holders <= 0:
            self.release()

    def release(self) -> None:
        self._end(self._how_it_ended("dropped by the guest"))
        self.engine.release()

    def _how_it_ended(self, otherwise: str) -> str:
        if self.error is not None:
            return f"failed: {self.error}"
        if self.peer_closed_clean and self.output_closed:
            return "closed (close_notify both ways)"
        if self.output_closed:
            return "closed by us (close_notify sent)"
        if self.peer_closed is not None:
            return f"closed by the peer ({self.peer_closed})"
        return otherwise

    # -- trace -------------------------------------------------------------------------------------
    def _end(self, how: str) -> None:
        if self.ended is not None:
            return
        self.ended = how
        trace = self.settings.trace
        if trace is None:
            return
        e = self.engine
        subject = issuer = "-"
        if e.handshake_complete and e.peer_identity is not None:
            subject, issuer = _names(e.peer_identity.export_x509_chain()[0])
        hs = "-" if self.handshake_seconds is None else f"{self.handshake_seconds * 1000:.1f}ms"
        role = "" if self.role == "client" else f"role={self.role} "
        name = self.server_name if self.role == "client" else e.server_name
        trace(f"tls: {role}server={name or '-'} version={e.protocol_name or '-'}"
              f" cipher={e.cipher_suite_name or '-'} subject={subject!r} issuer={issuer!r}"
              f" sent={e.bytes_sent} received={e.bytes_received} handshake={hs} ended={how}")


def _names(der: bytes) -> tuple[str, str]:
    try:
        from cryptography import x509
        cert = x509.load_der_x509_certificate(der)
        return cert.subject.rfc4514_string(), cert.issuer.rfc4514_string()
    except Exception:  # a trace line must never break a connection
        return "?", "?"


class _SinkOrDeadline:
    def __init__(self, sink: Any, deadline: float):
        self.sink = sink
        self.deadline_ns = int(deadline * 1e9)

    def poll_ready(self) -> bool:
        return self.sink.poll_ready() or time.monotonic_ns() >= self.deadline_ns

    def wait_on(self) -> Wait:
        return Wait(deadline_ns=self.deadline_ns, also=(self.sink,))


class _Readiness:
    """Ready once the handshake has finished or failed."""

    def __init__(self, conn: TlsConnection):
        self.conn = conn

    def poll_ready(self) -> bool:
        self.conn.pump.pump(until=self.conn.handshake_settled)
        return self.conn.handshake_settled()

    def wait_on(self) -> Wait:
        return self.conn.pump.wait(for_input=True)


class PlainSource:
    """Decrypted bytes for the guest's input-stream; ends in `closed` only after close_notify."""

    def __init__(self, conn: TlsConnection):
        self.conn = conn
        conn.hold()
        self.closed = False

    def _fill(self) -> bool:
        return self.conn.fill_ahead()

    def read(self, n: int) -> bytes | memoryview:
        """Up to n bytes; a memoryview valid until the next read (see read_flowing)."""
        conn = self.conn
        if not conn.ahead:
            data = conn.read_flowing(n)
            if data:
                conn.pump.send()  # reading may have produced records to send (key updates)
                return data
            conn.pump.pump(until=self._fill)
        if conn.ahead:
            data, conn.ahead = conn.ahead[:n], conn.ahead[n:]
            conn.pump.send()  # reading may have produced records to send (key updates)
            return data
        if conn.failure is not None and not conn.engine.handshake_complete:
            raise StreamFailed(conn.failure)
        if conn.peer_closed is not None:
            if conn.peer_closed_clean:
                raise StreamClosed
            reason = "the peer closed the connection without close_notify (truncated)" \
                if "reset" not in conn.peer_closed else conn.peer_closed
            conn._fail(reason)
            raise StreamFailed(reason)
        if conn.failure is not None:
            raise StreamFailed(conn.failure)
        return b""

    def poll_ready(self) -> bool:
        if self.conn.ahead:
            return True
        self.conn.pump.pump(until=self._fill)
        return self._fill()

    def wait_on(self) -> Wait:
        return self.conn.pump.wait(for_input=True)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.conn.unhold()


class PlainSink:
    """Plaintext from the guest's output-stream, encrypted and queued for the raw output."""

    def __init__(self, conn: TlsConnection):
        self.conn = conn
        conn.hold()
        self.flushing = False
        self.closed = False

    def check_write(self) -> int:
        conn = self.conn
        conn.pump.send()
        if conn.failure is not None:
            raise StreamFailed(conn.failure)
        if conn.output_closed:
            raise StreamClosed
        queued = len(conn.pump.outgoing)
        if self.flushing:
            if queued:
                return 0
            self.flushing = False
        return max(0, WRITE_LIMIT - queued)

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            taken = self.conn.engine.send_plaintext(view)
            if not taken:
                raise StreamFailed(self.conn.engine.failure or "the TLS connection refused the data")
            view = view[taken:]
        self.conn.pump.send()

    def flush(self) -> None:
        self.flushing = True
        self.conn.pump.send()

    def poll_ready(self) -> bool:
        try:
            return self.check_write() > 0
        except (StreamFailed, StreamClosed):
            return True

    def wait_on(self) -> Wait:
        return self.conn.pump.wait(for_input=False)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            conn = self.conn
            if conn.close_notify_on_drop and conn.engine.handshake_complete and conn.failure is None:
                conn.close_output()
            conn.unhold()
