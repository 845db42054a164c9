"""TLS over byte streams: the one glue between the TLS core (tls/) and wasi:io byte sources and sinks.

Every TLS front end (wasi:tls, wasitls:tls, and next preview-1 sockets, the guest `ssl` module and
wasi:http) makes its connections here and uses only this public API:

    GuestTls(settings, lifetime)      one guest's TLS: the host's settings, its live connections
      .client(name, raw_in, raw_out)  a TlsConnection over a raw source and sink (see wasi/io/streams.py)
      .server(raw_in, raw_out)
    TlsConnection
      handshake   configure_alpn_ids, configure_server_identities, stop_at_server_identity,
                  stop_at_client_identity_request, request_client_identity, paused_at, go_on,
                  advance, abort, handshake_settled
      readiness   when(predicate), when_sent() (poll sources), wait_for_input(), wait_for_output()
      data        read, readable, read_ahead, write, write_permit, flush, close_output,
                  plaintext_source(), plaintext_sink() (stream backends for wasi:io)
      facts       facts(), failure, peer_closed, server_identity_seen, client_identity_requested,
                  client_identities, client_hello
      lifetime    hold, unhold, release (a released connection is failed: its streams give errors)
    trace_field(value)                one field of a trace line holding text a peer chose, escaped

One readiness check feeds the engine at most TURN_BYTES of raw input, then asks poll to come back
at once: a peer that streams records cannot keep a guest inside one poll call.

Plaintext has one path: every read decrypts into the connection's one read buffer and lends a view
of it (valid until the next read); readiness asks the engine whether plaintext or an end is pending,
without decrypting anything.
"""

from __future__ import annotations

import time
import weakref
from dataclasses import dataclass
from typing import Any, Callable

from .lifetime import Lifetime
from .tls import engine as tls_engine
from .tls.config import TlsConfigError
from .wasi.io.poll import Wait, wait_any
from .wasi.io.streams import MAX_READ, StreamClosed, StreamFailed

WRITE_LIMIT = 1 << 16  # ciphertext waiting for the raw output before plaintext writes are held back
RECORD_SLACK = 1 << 14  # raw bytes read beyond the plaintext wanted: record headers and tags
CLOSE_TIMEOUT = 5.0  # how long close-output waits for close_notify to leave
# Raw bytes one readiness check feeds the engine: a peer streaming records cannot keep the host in
# one poll call; poll goes round (other pollables are served) and comes back at once.
TURN_BYTES = 1 << 16

# The handshake's points where the engine stops, in the draft API's terms.
_POINT_OF_PAUSE = {
    tls_engine.ServerIdentityReceived: "server-identity",  # client: verify-server-identity
    tls_engine.ClientIdentityRequested: "client-identity-request",  # client
    tls_engine.ClientHelloReceived: "client-hello",  # server: receive-client-hello
}


def _raw_wanted(plaintext: int) -> int:
    """Raw bytes to ask for to decrypt `plaintext` bytes: records add headers and tags."""
    return min(plaintext + (plaintext >> 9) + RECORD_SLACK, MAX_READ)


class GuestTls:
    """One guest's TLS: the host's settings (tls.config.TlsSettings) and the connections it has open,
    whose trace lines are written when the guest ends with them still open."""

    def __init__(self, settings: Any, lifetime: Lifetime):
        self.settings = settings
        self.live: weakref.WeakSet[TlsConnection] = weakref.WeakSet()
        lifetime.at_end(self._end_all)

    def client(self, server_name: str, raw_in: Any, raw_out: Any, **options: Any) -> "TlsConnection":
        """A client connection to `server_name`; ValueError for an empty name or one with a NUL."""
        engine = self._engine(self.settings.client_engine, server_name, **options)
        return self._track(TlsConnection(self.settings, engine, raw_in, raw_out))

    def server(self, raw_in: Any, raw_out: Any, **options: Any) -> "TlsConnection":
        engine = self._engine(self.settings.server_engine, **options)
        return self._track(TlsConnection(self.settings, engine, raw_in, raw_out))

    def _engine(self, make: Callable[..., Any], *args: Any, **options: Any) -> Any:
        try:
            return make(*args, **options)
        except TlsConfigError as e:
            # settings built at first use (the system trust store) failed: the guest gets a bare
            # error value, the trace says why
            if self.settings.trace is not None:
                self.settings.trace(f"tls: settings failed: {e}")
            raise

    def _track(self, conn: "TlsConnection") -> "TlsConnection":
        self.live.add(conn)
        return conn

    def _end_all(self) -> None:
        for conn in list(self.live):
            conn._end(conn._how_it_ended("still open when the guest exited"))


@dataclass(frozen=True)
class TlsFacts:
    """What the handshake negotiated (and, for a server after post-handshake auth, learned since)."""

    protocol_version: int  # 0x0303 (TLS 1.2) or 0x0304 (TLS 1.3)
    protocol_name: str  # "TLSv1.3"
    cipher_suite: int  # IANA id
    cipher_suite_name: str  # IANA name
    alpn_id: bytes | None
    server_name: str | None  # client: as given; server: the SNI received
    peer_identity: Any  # tls.identity.PublicIdentity | None
    local_identity: Any  # tls.identity.PrivateIdentity | None
    tls_unique: bytes | None = None  # TLS 1.2: the channel binding of RFC 5929


class _Wire:
    """Moves bytes between the engine and the raw source and sink; never blocks, never interprets."""

    def __init__(self, engine: Any, raw_in: Any, raw_out: Any):
        self._engine = engine
        self.raw_in = raw_in
        self.raw_out = raw_out
        self.outgoing = bytearray()  # ciphertext the raw output has not taken yet
        self.raw_eof = False
        self.send_error: str | None = None
        self.cut_short = False  # the last turn stopped at TURN_BYTES: more input may be waiting

    def send(self) -> None:
        data = self._engine.data_to_send()
        if data:
            self.outgoing += data
        sink = self.raw_out
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

    def receive(self, max_bytes: int) -> int:
        """Feeds what the raw input has now (at most max_bytes) into the engine; the byte count,
        1 for an end, 0 if nothing came."""
        if self.raw_eof:
            return 0
        try:
            data = self.raw_in.read(max_bytes)
        except StreamClosed:
            self.raw_eof = True
            self._engine.receive_data(b"")
        except StreamFailed:
            self.raw_eof = True
            self._engine.connection_reset()
        else:
            if not data:
                return 0
            # a raw source may lend a view of its buffer (TLS inside TLS): the engine takes bytes
            self._engine.receive_data(data if isinstance(data, bytes) else bytes(data))
            return len(data)
        return 1

    def wait(self, *, for_input: bool) -> Wait:
        if for_input and self.cut_short:
            return Wait(deadline_ns=0)  # the turn stopped early, not for want of input: come back now
        sources: list[Any] = []
        if for_input and not self.raw_eof:
            sources.append(self.raw_in)
        if self.outgoing:
            sources.append(self.raw_out)
        return Wait(also=tuple(sources))


class TlsConnection:
    """One TLS connection over a raw byte source and sink; released when its last holder lets go."""

    def __init__(self, settings: Any, engine: Any, raw_in: Any, raw_out: Any):
        self.settings = settings  # tls.config.TlsSettings
        self._engine = engine
        self.role = "server" if isinstance(engine, tls_engine.ServerEngine) else "client"
        self._wire = _Wire(engine, raw_in, raw_out)
        self.started = time.monotonic()
        self.handshake_seconds: float | None = None
        self.peer_closed: str | None = None  # None, or why the peer's side ended
        self.peer_closed_clean = False
        self.error: str | None = None
        self.output_closed = False
        self.ended: str | None = None
        # The one plaintext buffer: [_held_start:_held_stop] is decrypted and not yet handed out.
        self._buffer = bytearray()
        self._held_start = self._held_stop = 0
        self._flushing = False
        # what the handshake's pauses brought, kept after the guest resumes past them
        self.server_identity_seen: Any = None  # client: the verified chain the server sent
        self.client_identity_requested = False  # client: the server sent a CertificateRequest
        self.client_identities: list[Any] = []  # server: each client identity received (or None), in order
        self.holders = 1  # the connection resource; plaintext streams add themselves
        self.close_notify_on_drop = False  # draft API: no close call, dropping the output ends it

    # -- the engine's events ----------------------------------------------------------------
    def _absorb_events(self) -> Any:
        """Takes the engine's events in; returns the one it stopped at: NeedData, PlaintextReady,
        None (paused until the caller acts), PeerClosed or Failed."""
        while True:
            event = self._engine.next_event()
            if event is None or isinstance(event, (tls_engine.NeedData, tls_engine.PlaintextReady)):
                return event
            if isinstance(event, tls_engine.HandshakeComplete):
                self.handshake_seconds = time.monotonic() - self.started
            elif isinstance(event, tls_engine.ServerIdentityReceived):
                self.server_identity_seen = event.identity
            elif isinstance(event, tls_engine.ClientIdentityRequested):
                self.client_identity_requested = True
            elif isinstance(event, tls_engine.ClientIdentityReceived):
                self.client_identities.append(event.identity)
            elif isinstance(event, tls_engine.Failed):
                self._fail(event.reason)
                return event
            elif isinstance(event, tls_engine.PeerClosed):
                if self.peer_closed is None:
                    self.peer_closed, self.peer_closed_clean = event.reason, event.clean
                return event

    def _fail(self, reason: str) -> None:
        # The trace line waits for the release, so it counts the alert that is still to be sent.
        if self.error is None:
            self.error = reason

    @property
    def failure(self) -> str | None:
        if self.error is None and self._wire.send_error is not None:
            self._fail(self._wire.send_error)
        return self.error

    def _pump(self, until: Callable[[], bool]) -> None:
        """One non-blocking turn: send what is queued, read raw input until `until()` holds, at most
        TURN_BYTES of it."""
        wire = self._wire
        wire.send()
        wire.cut_short = False
        taken = 0
        while not until():
            if taken >= TURN_BYTES:
                wire.cut_short = True
                break
            got = wire.receive(RECORD_SLACK)
            if not got:
                break
            taken += got
            self._absorb_events()
            wire.send()  # a record may need an answer (handshake messages, key updates)
        wire.send()

    # -- handshake ---------------------------------------------------------------------------
    def advance(self, until: Callable[[], bool] | None = None) -> None:
        """Drive the handshake (a client's first call writes its ClientHello) and move bytes,
        without blocking, until `until()` (default: settled or paused) holds or nothing can move now."""
        self._absorb_events()
        self._pump(self.settled_or_paused if until is None else until)

    def settled_or_paused(self) -> bool:
        return self._engine.paused is not None or self.handshake_settled()

    def handshake_settled(self) -> bool:
        return self._engine.handshake_complete or self.failure is not None

    @property
    def handshake_complete(self) -> bool:
        return self._engine.handshake_complete

    @property
    def paused_at(self) -> str | None:
        """The point the handshake is stopped at: "client-hello", "server-identity",
        "client-identity-request", or None."""
        pause = self._engine.paused
        return None if pause is None else _POINT_OF_PAUSE[type(pause)]

    @property
    def client_hello(self) -> Any:
        """Server: the ClientHello received (server_name, alpn_ids, cipher_suites), once it has come."""
        return getattr(self._engine, "client_hello", None)

    def go_on(self, client_identity: Any = None) -> None:
        """Resume past the point the handshake is stopped at; at "client-identity-request",
        `client_identity` (a tls.identity.PrivateIdentity or None) is the answer."""
        point, engine = self.paused_at, self._engine
        if point == "client-identity-request":
            engine.respond_client_identity(client_identity)
        elif point == "server-identity":
            engine.verify_accept()
        elif point is not None:
            engine.resume()

    def stop_at_server_identity(self) -> None:
        """Client: stop once the server's chain is verified, until go_on() or abort()."""
        self._engine.pause_on_verify = True

    def stop_at_client_identity_request(self) -> None:
        """Client: stop at the server's CertificateRequest, until go_on(identity) or abort()."""
        self._engine.pause_on_cert_request = True

    def configure_alpn_ids(self, ids: list[bytes]) -> None:
        """ValueError for a bad id or once it is too late (client: started; server: past the ClientHello)."""
        self._refusing_as_value_error(self._engine.configure_alpn_ids, ids)

    def configure_server_identities(self, identities: list[Any]) -> None:
        self._refusing_as_value_error(self._engine.configure_server_identities, identities)

    def request_client_identity(self, *, required: bool = False) -> None:
        """Server: ask for a client certificate, in the handshake or (TLS 1.3) after it; a new entry
        in client_identities answers (`required`: in the handshake, none is a failure with an alert).
        ValueError when the connection cannot ask now."""
        self._refusing_as_value_error(lambda: self._engine.request_client_identity(required=required))
        self._wire.send()

    @staticmethod
    def _refusing_as_value_error(fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except tls_engine.TLSUsageError as e:
            raise ValueError(str(e)) from None

    def abort(self) -> None:
        """Give up: an alert at a pause, close_notify once connected; when_sent() says when it left."""
        self._engine.abort()
        self._absorb_events()

    def when(self, until: Callable[[], bool]) -> "_Until":
        """A poll source ready when `until()` holds, moving bytes meanwhile (not resuming pauses)."""
        return _Until(self, until)

    def when_sent(self) -> "_Sent":
        """A poll source ready once what was written (an abort's alert) has left for the raw output."""
        return _Sent(self)

    def wait_for_input(self) -> Wait:
        return self._wire.wait(for_input=True)

    # -- facts -------------------------------------------------------------------------------
    def facts(self) -> TlsFacts | None:
        """What was negotiated; None until the handshake has completed."""
        e = self._engine
        if not e.handshake_complete:
            return None
        return TlsFacts(e.protocol_version, e.protocol_name, e.cipher_suite, e.cipher_suite_name, e.alpn_id,
                        e.server_name, e.peer_identity, e.local_identity, e.tls_unique)

    # -- application data ----------------------------------------------------------------------
    def read(self, n: int) -> bytes | memoryview:
        """Up to min(n, MAX_READ) bytes of plaintext, b"" when none has arrived; a view of the
        connection's read buffer, valid until the next read (the caller copies it). Raises
        StreamClosed after the peer's close_notify, StreamFailed on a failure or a truncation."""
        limit = min(n, MAX_READ)
        if limit <= 0:
            return b""
        if self._held_start == self._held_stop:
            self._decrypt(limit)
        if self._held_start < self._held_stop:
            taken = min(limit, self._held_stop - self._held_start)
            view = memoryview(self._buffer)[self._held_start:self._held_start + taken]
            self._held_start += taken
            self._wire.send()  # reading may have produced records to send (key updates)
            return view
        if self.failure is not None and not self._engine.handshake_complete:
            raise StreamFailed(self.failure)
        if self.peer_closed is not None:
            if self.peer_closed_clean:
                raise StreamClosed
            reason = "the peer closed the connection without close_notify (truncated)" \
                if "reset" not in self.peer_closed else self.peer_closed
            self._fail(reason)
            raise StreamFailed(reason)
        if self.failure is not None:
            raise StreamFailed(self.failure)
        self._wire.send()
        return b""

    def readable(self) -> bool:
        """True when read() would hand out plaintext or report an end; reads raw input until then.
        Nothing is decrypted into a buffer here: the engine keeps what has arrived."""
        self._pump(self._input_ready)
        return self._input_ready()

    def _input_ready(self) -> bool:
        if self._held_start < self._held_stop or self.peer_closed is not None or self.failure is not None:
            return True
        return self._engine.handshake_complete and isinstance(self._absorb_events(), tls_engine.PlaintextReady)

    def read_ahead(self) -> None:
        """Decrypt what has arrived into the read buffer (up to MAX_READ held): post-handshake
        messages (a client's certificate) may sit behind application data nobody has read yet."""
        held = self._held_stop - self._held_start
        if held < MAX_READ:
            self._decrypt(MAX_READ - held)

    def _decrypt(self, wanted: int) -> None:
        """Decrypts up to `wanted` more bytes after what the buffer holds, reading raw input only
        while the read is not full."""
        engine = self._engine
        if not engine.handshake_complete or self.error is not None or self.peer_closed is not None:
            return
        held = self._held_stop - self._held_start
        if held == 0:
            self._held_start = self._held_stop = 0
        if len(self._buffer) - self._held_stop < wanted:
            # a new buffer, never a resize: a view lent by the last read may still be alive
            grown = bytearray(max(held + wanted, len(self._buffer)))
            grown[:held] = self._buffer[self._held_start:self._held_stop]  # only when read_ahead holds some
            self._buffer, self._held_start, self._held_stop = grown, 0, held
        view = memoryview(self._buffer)
        stop = self._held_stop + wanted
        self._held_stop += engine.read_plaintext_into(view[self._held_stop:stop])
        while self._held_stop < stop:  # raw reads bounded by what this read still wants
            if not self._wire.receive(_raw_wanted(stop - self._held_stop)):
                break
            more = engine.read_plaintext_into(view[self._held_stop:stop])
            if not more:
                break
            self._held_stop += more
        self._absorb_events()  # once per read: ends, failures and client identities the reads noticed

    def write_permit(self) -> int:
        """Plaintext bytes write() takes now (0 while ciphertext waits or a flush is in progress);
        StreamFailed / StreamClosed once the connection or our side of it has ended."""
        self._wire.send()
        if self.failure is not None:
            raise StreamFailed(self.failure)
        if self.output_closed:
            raise StreamClosed
        queued = len(self._wire.outgoing)
        if self._flushing:
            if queued:
                return 0
            self._flushing = False
        return max(0, WRITE_LIMIT - queued)

    def write(self, data: bytes | memoryview) -> None:
        if self.failure is not None:
            raise StreamFailed(self.failure)
        view = memoryview(data)
        while view:
            try:
                taken = self._engine.send_plaintext(view)
            except tls_engine.TLSUsageError as e:  # a stream error for the guest, never a trap
                raise StreamFailed(str(e)) from None
            if not taken:
                raise StreamFailed(self._engine.failure or "the TLS connection refused the data")
            view = view[taken:]
        self._wire.send()

    def flush(self) -> None:
        self._flushing = True
        self._wire.send()

    def wait_for_output(self) -> Wait:
        return self._wire.wait(for_input=False)

    def plaintext_source(self) -> "PlainSource":
        return PlainSource(self)

    def plaintext_sink(self) -> "PlainSink":
        return PlainSink(self)

    def close_output(self) -> None:
        """close-output: send close_notify, then close the raw output once it has left."""
        if self.output_closed:
            return
        self.output_closed = True
        self._engine.close()
        wire = self._wire
        deadline = time.monotonic() + CLOSE_TIMEOUT
        wire.send()
        while wire.outgoing and self.failure is None and time.monotonic() < deadline:
            wait_any([_SinkOrDeadline(wire.raw_out, deadline)])
            wire.send()
        close = getattr(wire.raw_out, "close", None)
        if close is not None:
            close()

    # -- lifetime ------------------------------------------------------------------------------
    def hold(self) -> None:
        self.holders += 1

    def unhold(self) -> None:
        """One holder (the connection resource, a plaintext stream) is gone; the last releases."""
        self.holders -= 1
        if self.holders <= 0:
            self.release()

    def release(self) -> None:
        self._end(self._how_it_ended("dropped by the guest"))
        self._engine.release()
        # whatever still refers to the connection (a future of finish) sees a failure, never a live one
        self._fail("the connection was dropped")
        self._wire.outgoing.clear()

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
        e = self._engine
        subject = issuer = None
        if e.handshake_complete and e.peer_identity is not None:
            subject, issuer = _names(e.peer_identity.export_x509_chain()[0])
        hs = "-" if self.handshake_seconds is None else f"{self.handshake_seconds * 1000:.1f}ms"
        role = "" if self.role == "client" else f"role={self.role} "
        alpn = e.alpn_id if e.handshake_complete else None
        trace(f"tls: {role}server={trace_field(e.server_name)} version={e.protocol_name or '-'}"
              f" cipher={e.cipher_suite_name or '-'} alpn={trace_field(alpn)}"
              f" subject={trace_field(subject, quoted=True)} issuer={trace_field(issuer, quoted=True)}"
              f" sent={e.bytes_sent} received={e.bytes_received} handshake={hs} ended={_escaped(how, specials='')}")


# Characters a trace field shows as they are; anything else (a space, '=', a quote) gets it quoted.
_BARE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_:*/")


def _escaped(text: str, specials: str = "'\\") -> str:
    """Printable ASCII as it is (but `specials`, backslashed), everything else as a Python escape:
    a remote peer's bytes never reach the operator's terminal or log as control codes."""
    out = []
    for ch in text:
        code = ord(ch)
        if ch in specials:
            out.append("\\" + ch)
        elif 0x20 <= code < 0x7F:
            out.append(ch)
        elif code < 0x100:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return "".join(out)


def trace_field(value: str | bytes | None, *, quoted: bool = False) -> str:
    """One trace field holding text a peer chose (SNI, ALPN id, certificate names): "-" for none,
    the text itself when it is a plain token, else a quoted Python literal ('...') with every
    control byte, non-ASCII character and quote escaped. Every such field goes through here."""
    if value is None:
        return "-"
    text = value.decode("latin-1") if isinstance(value, (bytes, bytearray)) else str(value)
    if not quoted and text and all(ch in _BARE for ch in text):
        return text
    return f"'{_escaped(text)}'"


def _names(der: bytes) -> tuple[str, str]:
    """The subject and issuer of a DER certificate (RFC 4514), unescaped: trace_field escapes them."""
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


class _Until:
    """Ready when a condition holds; polling moves bytes (the handshake, post-handshake auth)."""

    def __init__(self, conn: TlsConnection, until: Callable[[], bool]):
        self.conn = conn
        self.until = until

    def poll_ready(self) -> bool:
        self.conn._pump(self.until)
        return bool(self.until())

    def wait_on(self) -> Wait:
        return self.conn.wait_for_input()


class _Sent:
    def __init__(self, conn: TlsConnection):
        self._wire = conn._wire

    def poll_ready(self) -> bool:
        self._wire.send()
        return not self._wire.outgoing or self._wire.send_error is not None

    def wait_on(self) -> Wait:
        return Wait(also=(self._wire.raw_out,))


class PlainSource:
    """The plaintext input-stream's backend; ends in `closed` only after close_notify."""

    def __init__(self, conn: TlsConnection):
        self.conn = conn
        conn.hold()
        self.closed = False

    def read(self, n: int) -> bytes | memoryview:
        return self.conn.read(n)

    def poll_ready(self) -> bool:
        return self.conn.readable()

    def wait_on(self) -> Wait:
        return self.conn.wait_for_input()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.conn.unhold()


class PlainSink:
    """The plaintext output-stream's backend: encrypted and queued for the raw output."""

    def __init__(self, conn: TlsConnection):
        self.conn = conn
        conn.hold()
        self.closed = False

    def check_write(self) -> int:
        return self.conn.write_permit()

    def write(self, data: bytes) -> None:
        self.conn.write(data)

    def flush(self) -> None:
        self.conn.flush()

    def poll_ready(self) -> bool:
        try:
            return self.conn.write_permit() > 0
        except (StreamFailed, StreamClosed):
            return True

    def wait_on(self) -> Wait:
        return self.conn.wait_for_output()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            conn = self.conn
            if conn.close_notify_on_drop and conn._engine.handshake_complete and conn.failure is None:
                conn.close_output()
            conn.unhold()
