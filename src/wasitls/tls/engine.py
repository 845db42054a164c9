"""The sans-I/O TLS engine: OpenSSL 3 driven through memory BIOs, bytes in and bytes out.

An engine never touches a socket, a clock or a thread. The caller feeds it the raw bytes read from
the peer (`receive_data`), asks what happened (`next_event`) and, after every call that may have
produced records (next_event, read_plaintext, send_plaintext, resume, abort, close), writes out
`data_to_send()`: even reading can produce records (key updates, post-handshake auth). The handshake stops at the points the draft wasi:tls API exposes:

=============================  =============================================================
pause event                    OpenSSL mechanism
=============================  =============================================================
ClientHelloReceived (server)   client-hello callback returns SSL_CLIENT_HELLO_RETRY
                               (SSL_ERROR_WANT_CLIENT_HELLO_CB); nothing has been sent yet
ServerIdentityReceived         cert-verify callback runs X509_verify_cert, then
(client)                       SSL_set_retry_verify (SSL_ERROR_WANT_RETRY_VERIFY); the chain
                               is verified and nothing of the client's next flight is sent
ClientIdentityRequested        cert callback returns -1 (SSL_ERROR_WANT_X509_LOOKUP) before the
(client)                       client's Certificate message is written
=============================  =============================================================

States and what `next_event()` does in each (the moves between them: `_TRANSITIONS`):

    IDLE         the handshake has not started: start it (a client writes its ClientHello)
    HANDSHAKING  run SSL_do_handshake: NeedData, a pause event, HandshakeComplete or Failed
    PAUSED       None (nothing happens until the caller resumes or aborts)
    ABORTING     (inside abort() only: the paused callback runs again and fails, writing the alert)
    CONNECTED    NeedData when no plaintext is waiting, PlaintextReady when read_plaintext has some
    CLOSED       the peer closed: PeerClosed, every time
    FAILED       Failed, every time

Limits a peer cannot push past: a handshake fails once it has taken MAX_HANDSHAKE_BYTES of raw
input; a server with ALPN ids none of which the client offers sends no_application_protocol.

Deviations from the draft API, all forced by OpenSSL 3.0:
- A server cannot suspend after verifying a client certificate (SSL_set_retry_verify is client
  only). ClientIdentityReceived comes with the end of the handshake, before any plaintext has
  been read; abort() then sends close_notify, not a fatal alert, since OpenSSL offers no call to
  send an alert after the handshake.
- Post-handshake client authentication needs TLS 1.3; TLS 1.2 renegotiation is disabled
  (SSL_OP_NO_RENEGOTIATION) and request_client_identity() refuses on a TLS 1.2 connection.
- A client answers post-handshake certificate requests without pausing, with the identity it
  last responded with (or was constructed with), or none.
- With several server identities OpenSSL keeps one per key type (RSA, ECDSA, Ed25519...): the
  first of each type wins and OpenSSL chooses among types from the client's signature algorithms.
"""

from __future__ import annotations

import ctypes
import enum
import ipaddress
import os
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from . import openssl as o
from .identity import PrivateIdentity, PublicIdentity
from .trust import TrustStore

TLS1_2 = o.TLS1_2_VERSION
TLS1_3 = o.TLS1_3_VERSION
MAX_SEND = 1 << 20  # plaintext accepted per send_plaintext call, so ciphertext cannot pile up unbounded
# Raw bytes a handshake may take from the peer before it is failed: OpenSSL bounds each message
# (a certificate chain to 100 KiB), not a stream of tiny records it accepts and ignores.
MAX_HANDSHAKE_BYTES = 1 << 18
READ_BUFFER = 1 << 16


class TLSUsageError(Exception):
    """The caller used the engine in a way its state does not allow (the peer did nothing wrong)."""


# ---------------------------------------------------------------------------------------------
# Events
# ---------------------------------------------------------------------------------------------
class Event:
    """Base of everything next_event() returns."""


@dataclass(frozen=True)
class NeedData(Event):
    """Write out data_to_send(), then feed the peer's next bytes with receive_data()."""


@dataclass(frozen=True)
class ClientHelloReceived(Event):
    """Server paused before any ServerHello: choose identities and ALPN ids, then resume()."""

    server_name: str | None
    alpn_ids: tuple[bytes, ...]
    cipher_suites: tuple[int, ...]


@dataclass(frozen=True)
class ServerIdentityReceived(Event):
    """Client paused after OpenSSL verified the server's chain: resume() or abort()."""

    identity: PublicIdentity


@dataclass(frozen=True)
class ClientIdentityRequested(Event):
    """Client paused on a CertificateRequest: respond_client_identity(identity or None)."""


@dataclass(frozen=True)
class ClientIdentityReceived(Event):
    """Server: the client's verified chain (None if it sent none); abort() to refuse it."""

    identity: PublicIdentity | None
    post_handshake: bool = False


@dataclass(frozen=True)
class PlaintextReady(Event):
    """Decrypted application data waits: read_plaintext() / read_plaintext_into() return it."""


@dataclass(frozen=True)
class HandshakeComplete(Event):
    """Plaintext may flow: send_plaintext() / read_plaintext()."""


@dataclass(frozen=True)
class PeerClosed(Event):
    """The peer ended the connection; clean means it sent close_notify (no truncation)."""

    clean: bool
    reason: str


@dataclass(frozen=True)
class Failed(Event):
    """The connection is dead; `reason` says why in words a person can act on."""

    reason: str


class _State(enum.Enum):
    IDLE = "idle"
    HANDSHAKING = "handshaking"
    PAUSED = "paused"
    ABORTING = "aborting"
    CONNECTED = "connected"
    CLOSED = "closed"
    FAILED = "failed"


IDLE, HANDSHAKING, PAUSED, ABORTING, CONNECTED, CLOSED, FAILED = _State

# Every move of an engine, as h11 keeps its states: state -> {what happened: next state}. A move not
# listed here is a bug in the engine, never a peer's doing (every path that fails goes to FAILED).
_TRANSITIONS: dict[_State, dict[str, _State]] = {
    IDLE:        {"start": HANDSHAKING, "fail": FAILED},
    HANDSHAKING: {"pause": PAUSED, "complete": CONNECTED, "fail": FAILED},
    PAUSED:      {"resume": HANDSHAKING, "abort": ABORTING, "fail": FAILED},
    ABORTING:    {"fail": FAILED},
    CONNECTED:   {"peer closed": CLOSED, "fail": FAILED},
    CLOSED:      {"fail": FAILED},
    FAILED:      {"fail": FAILED},
}


_NEED_DATA, _PLAINTEXT_READY = NeedData(), PlaintextReady()
_PAUSES = (o.SSL_ERROR_WANT_CLIENT_HELLO_CB, o.SSL_ERROR_WANT_RETRY_VERIFY, o.SSL_ERROR_WANT_X509_LOOKUP)
_TLS_RECORD_STARTS = (0x15, 0x16)  # alert, handshake: the only record types a peer may open with

_VERIFY_HINTS = {
    20: " (untrusted issuer)",  # X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY
    21: " (untrusted issuer)",  # X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE
    19: " (untrusted root)",  # X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN
}


# ---------------------------------------------------------------------------------------------
# Configuration: one SSL_CTX per role, built once and shared by that config's connections
# ---------------------------------------------------------------------------------------------
def _free_contexts(contexts: dict) -> None:
    for ctx in contexts.values():
        o.SSL_CTX_free(ctx)
    contexts.clear()


class EngineConfig:
    """Settings shared by many connections: trust, protocol versions, key logging.

    Each role's SSL_CTX is built on first use and reused; change settings by making a new config.
    """

    def __init__(
        self,
        trust: TrustStore | None = None,
        *,
        min_version: int = TLS1_2,
        max_version: int | None = None,
        keylog: Callable[[str], None] | str | os.PathLike | None = None,
    ):
        for version in (min_version, max_version or TLS1_3):
            if version not in (TLS1_2, TLS1_3):
                raise ValueError("TLS versions are TLS1_2 (0x0303) or TLS1_3 (0x0304)")
        self.trust = trust
        self.min_version = min_version
        self.max_version = max_version
        self._keylog = _keylog_callback(keylog) if keylog is not None else None
        self._contexts: dict[str, int] = {}
        self._lock = threading.Lock()
        weakref.finalize(self, _free_contexts, self._contexts)

    def trust_store(self) -> TrustStore:
        return self.trust if self.trust is not None else TrustStore.system()

    def context(self, role: str) -> int:
        with self._lock:
            ctx = self._contexts.get(role)
            if ctx is None:
                ctx = self._contexts[role] = self._new_context(role)
            return ctx

    def _new_context(self, role: str) -> int:
        server = role == "server"
        ctx = o.SSL_CTX_new(o.TLS_server_method() if server else o.TLS_client_method())
        if not ctx:
            raise MemoryError("SSL_CTX_new failed")
        o.SSL_CTX_ctrl(ctx, o.SSL_CTRL_SET_MIN_PROTO_VERSION, self.min_version, None)
        if self.max_version:
            o.SSL_CTX_ctrl(ctx, o.SSL_CTRL_SET_MAX_PROTO_VERSION, self.max_version, None)
        o.SSL_CTX_set_options(ctx, o.SSL_OP_NO_RENEGOTIATION | o.SSL_OP_NO_COMPRESSION | o.SSL_OP_NO_TICKET)
        o.SSL_CTX_set1_cert_store(ctx, self.trust_store().x509_store)
        # Send exactly the chain an identity was parsed with, never one completed from the trust store.
        o.SSL_CTX_ctrl(ctx, o.SSL_CTRL_MODE, o.SSL_MODE_NO_AUTO_CHAIN, None)
        if self._keylog is not None:
            o.SSL_CTX_set_keylog_callback(ctx, self._keylog)
        if server:
            # No resumption: no session cache growing over thousands of connections, no tickets.
            o.SSL_CTX_ctrl(ctx, o.SSL_CTRL_SET_SESS_CACHE_MODE, 0, None)
            o.SSL_CTX_set_num_tickets(ctx, 0)
            o.SSL_CTX_set_client_hello_cb(ctx, _client_hello_cb, None)
            o.SSL_CTX_set_alpn_select_cb(ctx, _alpn_select_cb, None)
        else:
            o.SSL_CTX_set_cert_verify_callback(ctx, _cert_verify_cb, None)
            o.SSL_CTX_set_cert_cb(ctx, _cert_cb, None)
        return ctx


def _keylog_callback(keylog) -> o.KeylogCallback:
    if callable(keylog):
        write = keylog
    else:
        path = os.fspath(keylog)

        def write(line: str) -> None:
            with open(path, "a", encoding="ascii") as f:
                f.write(line + "\n")

    def on_line(ssl, line):
        try:
            write(line.decode("ascii"))
        except Exception:  # a broken key log must not break the connection
            pass

    return o.KeylogCallback(on_line)


_default_config: EngineConfig | None = None


def default_config() -> EngineConfig:
    global _default_config
    if _default_config is None:
        _default_config = EngineConfig()
    return _default_config


# ---------------------------------------------------------------------------------------------
# OpenSSL callbacks: module-level (alive forever), dispatched to the engine owning the SSL*
# ---------------------------------------------------------------------------------------------
_engines: dict[int, weakref.ref] = {}
_STORE_CTX_SSL_INDEX = o.SSL_get_ex_data_X509_STORE_CTX_idx()


def _engine_for(ssl: int | None):
    ref = _engines.get(ssl) if ssl else None
    return ref() if ref is not None else None


def _dispatch(ssl, method: str, unowned, on_error, *args):
    """Call engine.method(*args); `unowned` for an SSL no engine owns, `on_error` if it raises."""
    engine = _engine_for(ssl)
    if engine is None:
        return unowned
    try:
        return getattr(engine, method)(*args)
    except BaseException as exc:  # an exception must not unwind through OpenSSL's C frames
        engine._callback_error = exc
        return on_error


@o.ClientHelloCallback
def _client_hello_cb(ssl, alert, arg):
    alert[0] = o.SSL_AD_HANDSHAKE_FAILURE  # sent only if the callback fails
    return _dispatch(ssl, "_on_client_hello", o.SSL_CLIENT_HELLO_SUCCESS, o.SSL_CLIENT_HELLO_ERROR)


@o.AlpnSelectCallback
def _alpn_select_cb(ssl, out, outlen, offered, offered_len, arg):
    return _dispatch(
        ssl, "_on_alpn_select", o.SSL_TLSEXT_ERR_NOACK, o.SSL_TLSEXT_ERR_NOACK, out, outlen, offered, offered_len
    )


@o.CertVerifyCallback
def _cert_verify_cb(store_ctx, arg):
    ssl = o.X509_STORE_CTX_get_ex_data(store_ctx, _STORE_CTX_SSL_INDEX)
    if _engine_for(ssl) is None:
        return o.X509_verify_cert(store_ctx)
    return _dispatch(ssl, "_on_verify", 0, 0, store_ctx)


@o.CertCallback
def _cert_cb(ssl, arg):
    return _dispatch(ssl, "_on_certificate_request", 1, 0)


@o.InfoCallback
def _info_cb(ssl, where, ret):
    # A state machine run that ends with 1 has consumed a whole flight (ret <= 0: waiting or failed).
    if where & o.SSL_CB_EXIT and ret == 1:
        _dispatch(ssl, "_on_flight_processed", None, None)


def _release(ssl: int) -> None:
    _engines.pop(ssl, None)
    o.SSL_free(ssl)  # frees both memory BIOs too


def _checked_alpn_ids(ids: Iterable[bytes]) -> tuple[bytes, ...]:
    out = tuple(bytes(i) for i in ids)
    for i in out:
        if not 1 <= len(i) <= 255:
            raise ValueError(f"ALPN ids are 1 to 255 bytes long, not {len(i)}: {i!r}")
    return out


def _parse_alpn_list(data: bytes) -> tuple[bytes, ...]:
    """The protocol names of an ALPN ProtocolNameList (without its 2-byte length prefix)."""
    ids, i = [], 0
    while i < len(data):
        n = data[i]
        ids.append(data[i + 1 : i + 1 + n])
        i += 1 + n
    return tuple(ids)


def _preview(data: bytes) -> str:
    first_line = data[:64].split(b"\r\n")[0].split(b"\n")[0]
    if first_line and all(32 <= b < 127 for b in first_line):
        return f"received {first_line.decode('ascii')!r}"
    return "not a TLS record (first bytes " + data[:8].hex(" ") + ")"


# ---------------------------------------------------------------------------------------------
# The engine
# ---------------------------------------------------------------------------------------------
class _Engine:
    _role = ""

    def __init__(self, config: EngineConfig | None):
        self.config = config or default_config()
        ssl = o.SSL_new(self.config.context(self._role))
        if not ssl:
            raise MemoryError("SSL_new failed")
        self._ssl = ssl
        self._rbio = o.BIO_new(o.BIO_s_mem())
        self._wbio = o.BIO_new(o.BIO_s_mem())
        # An empty input BIO means "wait for more" (retry), not end of stream.
        o.BIO_ctrl(self._rbio, o.BIO_C_SET_BUF_MEM_EOF_RETURN, -1, None)
        o.SSL_set_bio(ssl, self._rbio, self._wbio)
        _engines[ssl] = weakref.ref(self)
        self._release = weakref.finalize(self, _release, ssl)

        self._state = IDLE
        self._events: deque[Event] = deque()
        self._terminal: Event | None = None
        self._pause: Event | None = None
        self._passed: set[type] = set()  # pauses the caller has moved past: their callbacks proceed
        self._reason: str | None = None  # why we failed the handshake ourselves, if we did
        self._callback_error: BaseException | None = None
        self._eof = False
        self._not_tls: str | None = None  # server: why the first bytes did not look like TLS
        self._sent_close = False
        self._read_buffer: ctypes.Array | None = None
        self._nbytes = ctypes.c_size_t()  # the size_t* out-parameter of SSL_read_ex / SSL_write_ex
        self._nbytes_ref = ctypes.byref(self._nbytes)
        self._alpn_ids: tuple[bytes, ...] = ()

        # Facts: None until known; the negotiated ones are recorded when the handshake completes.
        self.handshake_complete = False
        self.server_name: str | None = None  # client: as given; server: the SNI the client sent
        self.protocol_version: int | None = None  # 0x0303 (TLS 1.2) or 0x0304 (TLS 1.3)
        self.protocol_name: str | None = None  # "TLSv1.3"
        self.cipher_suite: int | None = None  # IANA id, e.g. 0x1301
        self.cipher_suite_name: str | None = None  # IANA name, e.g. "TLS_AES_128_GCM_SHA256"
        self.alpn_id: bytes | None = None
        self.tls_unique: bytes | None = None  # RFC 5929 channel binding: the client's Finished (TLS 1.2)
        self.peer_identity: PublicIdentity | None = None  # the peer's verified chain, as it sent it
        self.local_identity: PrivateIdentity | None = None  # the identity we presented, if any
        self.bytes_received = 0  # raw bytes fed in
        self.bytes_sent = 0  # raw bytes handed out
        self.plaintext_received = 0
        self.plaintext_sent = 0

    def _move(self, happened: str) -> None:
        try:
            self._state = _TRANSITIONS[self._state][happened]
        except KeyError:
            raise AssertionError(f"TLS engine bug: {happened!r} while {self._state.value}") from None

    @property
    def _aborting(self) -> bool:
        return self._state is ABORTING

    # -- raw side -----------------------------------------------------------------------------
    def receive_data(self, data: bytes) -> None:
        """Raw bytes read from the peer; b"" means the peer closed its side of the TCP stream."""
        if self._state is _State.FAILED:
            return
        if not data:
            self._eof = True
            o.BIO_ctrl(self._rbio, o.BIO_C_SET_BUF_MEM_EOF_RETURN, 0, None)
            return
        if not self.bytes_received:  # the first bytes: do they look like TLS at all?
            if data[0] not in _TLS_RECORD_STARTS or (len(data) > 1 and data[1] != 0x03):
                if self._role == "client":
                    self._fail(f"peer does not speak TLS ({_preview(data)})")
                    return
                # A server lets OpenSSL answer (an alert to a broken client, an SSLv2-format hello
                # parsed) and only names the failure, if any, by these first bytes.
                self._not_tls = f"peer does not speak TLS ({_preview(data)})"
        self.bytes_received += len(data)
        if not self.handshake_complete and self.bytes_received > MAX_HANDSHAKE_BYTES:
            self._fail(f"the peer sent over {MAX_HANDSHAKE_BYTES >> 10} KiB without completing the handshake"
                       " (a flood of handshake records?)")
            return
        o.BIO_write(self._rbio, data, len(data))

    def connection_reset(self) -> None:
        """The transport reported a reset (ECONNRESET): no more bytes will come either way."""
        if self._state is _State.CONNECTED:
            self._peer_closed(False, "connection reset by peer")
        elif self._state not in (_State.CLOSED, _State.FAILED):
            self._fail("connection reset by peer during handshake")

    def data_to_send(self) -> bytes:
        """Raw bytes to write to the peer (handshake records, ciphertext, alerts)."""
        if not self._release.alive:
            return b""
        pending = o.BIO_ctrl_pending(self._wbio)
        if not pending:
            return b""
        start = ctypes.c_void_p()
        o.BIO_ctrl(self._wbio, o.BIO_CTRL_INFO, 0, ctypes.byref(start))  # BIO_get_mem_data
        data = ctypes.string_at(start.value, pending)
        o.BIO_ctrl(self._wbio, o.BIO_CTRL_RESET, 0, None)
        self.bytes_sent += pending
        return data

    # -- events ---------------------------------------------------------------------------------
    def next_event(self) -> Event | None:
        """What happened; drives the handshake. None only while paused: nothing happens until the
        caller resumes or aborts."""
        if not self._events:
            if self._state is _State.IDLE:
                self._move("start")
            if self._state is _State.HANDSHAKING:
                self._handshake_step()
            elif self._state is _State.CONNECTED:
                self._connected_step()
        if self._events:
            return self._events.popleft()
        if self._state is _State.HANDSHAKING:
            return _NEED_DATA
        if self._state is _State.CONNECTED:
            return _PLAINTEXT_READY if o.SSL_pending(self._ssl) > 0 else _NEED_DATA
        return self._terminal  # CLOSED/FAILED: the terminal event; PAUSED: None (no terminal yet)

    @property
    def paused(self) -> Event | None:
        """The pause event the handshake waits on, if any."""
        return self._pause

    @property
    def failure(self) -> str | None:
        return self._terminal.reason if isinstance(self._terminal, Failed) else None

    def resume(self) -> None:
        """Continue a paused handshake; the next next_event() drives it on."""
        if self._state is not _State.PAUSED:
            raise TLSUsageError(f"resume() needs a paused handshake; it is {self._state.value}")
        self._passed.add(type(self._pause))
        self._pause = None
        self._move("resume")

    def abort(self) -> None:
        """Give up: an alert if OpenSSL can still send one (at a pause), close_notify once connected."""
        if self._state is _State.FAILED:
            return
        self._reason = "aborted by the application"
        if self._state is _State.PAUSED:
            self._pause = None
            self._move("abort")
            self._handshake_step()  # the callback now fails, so OpenSSL writes the alert
        elif self._state in (_State.CONNECTED, _State.CLOSED):
            self._shutdown()
        self._fail(self._reason)

    def close(self) -> None:
        """Send close_notify (after the handshake); before it, the same as abort()."""
        if self._state in (_State.CONNECTED, _State.CLOSED):
            self._shutdown()
        elif self._state is not _State.FAILED:
            self.abort()

    def release(self) -> None:
        """Free the OpenSSL objects now instead of at garbage collection; the engine is then dead."""
        if self._release.alive:
            self._release()
            self._move("fail")  # every later call takes a path that never touches OpenSSL
            self._pause = None
            self._terminal = self._terminal or Failed("the connection was released")

    # -- plaintext side ---------------------------------------------------------------------------
    def send_plaintext(self, data: bytes | bytearray | memoryview) -> int:
        """Encrypt application data; returns how much was taken (at most MAX_SEND bytes)."""
        if self._state not in (_State.CONNECTED, _State.CLOSED) or self._sent_close:
            raise TLSUsageError(f"cannot send plaintext on a connection that is {self._state.value}")
        if isinstance(data, bytes):
            n = min(len(data), MAX_SEND)
            pointer = data
        else:
            view = memoryview(data).cast("B")
            n = min(len(view), MAX_SEND)
            pointer = (ctypes.c_char * n).from_buffer(view) if not view.readonly else bytes(view[:n])
        if n == 0:
            return 0
        o.ERR_clear_error()
        if not o.SSL_write_ex(self._ssl, pointer, n, self._nbytes_ref):
            self._fail(self._failure_reason(handshake=False))
            return 0
        written = self._nbytes.value
        self.plaintext_sent += written
        return written

    def read_plaintext(self, max_bytes: int = READ_BUFFER) -> bytes:
        """Decrypted application data available now, at most min(max_bytes, READ_BUFFER) bytes
        (b"" if none: then next_event() says whether to feed more bytes or the peer closed)."""
        if self._read_buffer is None:  # allocated on first use: idle connections stay small
            self._read_buffer = (ctypes.c_char * READ_BUFFER)()
        buffer = self._read_buffer
        n = self._read_into(ctypes.addressof(buffer), min(max_bytes, READ_BUFFER))
        return ctypes.string_at(buffer, n) if n else b""

    def read_plaintext_into(self, buffer) -> int:
        """Like read_plaintext, but decrypts straight into a writable buffer (bytearray, memoryview,
        ctypes array: e.g. a guest's linear memory), saving a copy; returns the byte count."""
        view = memoryview(buffer).cast("B")
        if not len(view):
            return 0
        return self._read_into(ctypes.addressof(ctypes.c_char.from_buffer(view)), len(view))

    def _read_into(self, address: int, size: int) -> int:
        if self._state is not _State.CONNECTED or size <= 0:
            return 0
        total = 0
        nbytes, nbytes_ref, ssl, read = self._nbytes, self._nbytes_ref, self._ssl, o.SSL_read_ex
        o.ERR_clear_error()  # once: a successful read leaves the queue empty, as SSL_get_error needs
        while total < size:
            if not read(ssl, address + total, size - total, nbytes_ref):
                self._after_read_error(o.SSL_get_error(ssl, 0))
                break
            total += nbytes.value
        self.plaintext_received += total
        return total

    # -- driving OpenSSL -----------------------------------------------------------------------------
    def _handshake_step(self) -> None:
        o.ERR_clear_error()
        rc = o.SSL_do_handshake(self._ssl)
        if rc == 1:
            self.handshake_complete = True
            self._move("complete")
            self._on_handshake_complete()
            self._events.append(HandshakeComplete())
            return
        err = o.SSL_get_error(self._ssl, rc)
        if err == o.SSL_ERROR_WANT_READ:
            return
        if err == o.SSL_ERROR_ZERO_RETURN:  # a close_notify instead of the next handshake message
            self._fail("peer closed the connection during the handshake")
            return
        if err in _PAUSES and self._pause is not None and not self._aborting:
            self._move("pause")
            return
        self._fail(self._failure_reason(handshake=True))

    def _connected_step(self) -> None:
        if o.SSL_pending(self._ssl) > 0:
            return
        o.ERR_clear_error()
        if not o.SSL_peek_ex(self._ssl, self._peek_buffer, 1, self._nbytes_ref):
            self._after_read_error(o.SSL_get_error(self._ssl, 0))
        elif self._state is _State.CONNECTED:
            self._after_read()  # handshake messages processed before the data just peeked at

    _peek_buffer = ctypes.create_string_buffer(1)  # SSL_peek_ex copies one byte here; never read

    def _after_read_error(self, err: int) -> None:
        if err == o.SSL_ERROR_WANT_READ:
            self._after_read()
            return
        if err == o.SSL_ERROR_ZERO_RETURN:
            self._peer_closed(True, "peer sent close_notify")
            return
        codes = self._drain_errors()
        if _alert_in(codes) is None and (self._eof or err == o.SSL_ERROR_SYSCALL):
            self._peer_closed(False, "truncated: peer closed without close_notify")
        else:
            self._fail(self._failure_reason(handshake=False, codes=codes))

    def _after_read(self) -> None:
        """Hook for post-handshake work noticed while reading (server: client identity)."""

    def _on_handshake_complete(self) -> None:
        ssl = self._ssl
        self.protocol_version = o.SSL_version(ssl)
        self.protocol_name = o.SSL_get_version(ssl).decode()
        cipher = o.SSL_get_current_cipher(ssl)
        self.cipher_suite = o.SSL_CIPHER_get_protocol_id(cipher)
        self.cipher_suite_name = o.SSL_CIPHER_standard_name(cipher).decode()
        data, length = ctypes.c_void_p(), ctypes.c_uint()
        o.SSL_get0_alpn_selected(ssl, ctypes.byref(data), ctypes.byref(length))
        self.alpn_id = ctypes.string_at(data.value, length.value) if length.value else None
        self.peer_identity = self._fetch_peer_identity()
        if self.protocol_version == TLS1_2:  # tls-unique is not defined for TLS 1.3 (RFC 9266)
            finished = ctypes.create_string_buffer(64)
            # no resumption here: the first Finished of the handshake is always the client's
            get = o.SSL_get_finished if self._role == "client" else o.SSL_get_peer_finished
            n = get(ssl, finished, len(finished))
            self.tls_unique = finished.raw[:n]

    def _fetch_peer_identity(self) -> PublicIdentity | None:
        chain = o.stack_of_x509_to_der(o.SSL_get_peer_cert_chain(self._ssl))
        return PublicIdentity(chain) if chain else None

    def _shutdown(self) -> None:
        if not self._sent_close:
            self._sent_close = True
            o.ERR_clear_error()
            o.SSL_shutdown(self._ssl)
            o.ERR_clear_error()

    def _pause_with(self, event: Event) -> None:
        self._pause = event
        self._events.append(event)

    def _peer_closed(self, clean: bool, reason: str) -> None:
        self._move("peer closed")
        self._terminal = PeerClosed(clean, reason)

    def _fail(self, reason: str) -> None:
        if self._state is not _State.FAILED:
            self._move("fail")
            self._pause = None
            self._terminal = Failed(reason)

    @staticmethod
    def _drain_errors() -> list[int]:
        codes = []
        while code := o.ERR_get_error():
            codes.append(code)
        return codes

    def _failure_reason(self, *, handshake: bool, codes: list[int] | None = None) -> str:
        if codes is None:
            codes = self._drain_errors()
        if self._reason is not None:
            return self._reason
        if self._callback_error is not None:
            return f"internal error in a TLS callback: {self._callback_error!r}"
        alert = _alert_in(codes)
        if alert is None and self._not_tls is not None and not self.handshake_complete:
            return self._not_tls
        if alert is not None:
            return alert
        verify = o.SSL_get_verify_result(self._ssl)
        if verify != o.X509_V_OK and any(
            o.err_reason(c) == o.SSL_R_CERTIFICATE_VERIFY_FAILED for c in codes
        ):
            return self._verify_failure(verify)
        if handshake and (self._eof or any(o.err_reason(c) == o.SSL_R_UNEXPECTED_EOF_WHILE_READING for c in codes)):
            return "peer closed the connection during the handshake"
        for code in codes:
            text = o.ERR_reason_error_string(code)
            if text:
                prefix = "TLS handshake failed" if handshake else "TLS error"
                return f"{prefix}: {text.decode()}"
        return "TLS handshake failed" if handshake else "TLS error"

    def _verify_failure(self, code: int) -> str:
        text = o.X509_verify_cert_error_string(code).decode()
        return f"certificate verify failed: {text}{_VERIFY_HINTS.get(code, '')}"


# TLS 1.3 alerts (RFC 8446 6.2) that OpenSSL 3.0's SSL_alert_desc_string_long calls "unknown"
_ALERTS_OPENSSL_DOES_NOT_NAME = {109: "missing extension", 116: "certificate required"}


def _alert_in(codes: list[int]) -> str | None:
    """'peer sent alert: ...' if OpenSSL's error queue records an alert received from the peer."""
    for code in codes:
        reason = o.err_reason(code)
        if o.err_lib(code) == o.ERR_LIB_SSL and o.SSL_AD_REASON_OFFSET <= reason < o.SSL_AD_REASON_OFFSET + 256:
            alert = reason - o.SSL_AD_REASON_OFFSET
            desc = o.SSL_alert_desc_string_long(alert).decode()
            if desc == "unknown":
                desc = _ALERTS_OPENSSL_DOES_NOT_NAME.get(alert, f"alert {alert}")
            return f"peer sent alert: {desc}"
    return None


class ClientEngine(_Engine):
    """A TLS client. The chain is always verified against `config`'s trust; `server_name` (a DNS
    name, sent as SNI, or an IP literal, matched to IP SANs and not sent) against the certificate.
    With server_name None no name is checked: the caller must check the identity itself."""

    _role = "client"

    def __init__(
        self,
        config: EngineConfig | None,
        server_name: str | None,
        *,
        alpn_ids: Iterable[bytes] = (),
        pause_on_verify: bool = False,
        pause_on_cert_request: bool = False,
        client_identity: PrivateIdentity | None = None,
        verify_peer: bool = True,
        check_name: bool = True,
    ):
        super().__init__(config)
        # False only where the host's owner allowed a guest to skip checks (memory TLS, --tls-guest-insecure)
        self.verify_peer = verify_peer
        self.check_name = check_name
        self.pause_on_verify = pause_on_verify
        self.pause_on_cert_request = pause_on_cert_request
        self._client_identity = client_identity
        ssl = self._ssl
        o.SSL_set_connect_state(ssl)
        o.SSL_set_verify(ssl, o.SSL_VERIFY_PEER, None)
        o.SSL_set_post_handshake_auth(ssl, 1)  # lets TLS 1.3 servers ask for a certificate later
        if server_name is not None:
            self._set_server_name(server_name)
        self.configure_alpn_ids(alpn_ids)

    def _set_server_name(self, name: str) -> None:
        if not name or "\x00" in name:
            raise ValueError(f"invalid server name {name!r}")
        self.server_name = name
        try:
            ip = ipaddress.ip_address(name.strip("[]"))
        except ValueError:
            ip = None
        if ip is not None:
            # An IP literal is checked against the certificate's IP SANs and never sent as SNI.
            if self.check_name:
                o.X509_VERIFY_PARAM_set1_ip_asc(o.SSL_get0_param(self._ssl), str(ip).encode())
            return
        try:
            host = name.encode("ascii")
        except UnicodeEncodeError:
            host = name.encode("idna")
        o.SSL_ctrl(self._ssl, o.SSL_CTRL_SET_TLSEXT_HOSTNAME, o.TLSEXT_NAMETYPE_host_name, host)
        if not self.check_name:
            return
        o.SSL_set1_host(self._ssl, host)
        o.SSL_set_hostflags(self._ssl, o.X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS)

    def configure_alpn_ids(self, ids: Iterable[bytes]) -> None:
        """ALPN ids to offer, most preferred first; only before the handshake starts."""
        if self._state is not _State.IDLE:
            raise TLSUsageError("ALPN ids can only be configured before the handshake starts")
        self._alpn_ids = _checked_alpn_ids(ids)
        if self._alpn_ids:
            wire = b"".join(bytes([len(i)]) + i for i in self._alpn_ids)
            if o.SSL_set_alpn_protos(self._ssl, wire, len(wire)) != 0:  # 0 is success here
                raise MemoryError("SSL_set_alpn_protos failed")

    def verify_accept(self) -> None:
        """Accept the server identity the handshake paused on (OpenSSL has already verified it)."""
        if not isinstance(self._pause, ServerIdentityReceived):
            raise TLSUsageError("verify_accept() needs a handshake paused at ServerIdentityReceived")
        self.resume()

    def respond_client_identity(self, identity: PrivateIdentity | None) -> None:
        """Answer the CertificateRequest the handshake paused on (None: send no certificate)."""
        if not isinstance(self._pause, ClientIdentityRequested):
            raise TLSUsageError("respond_client_identity() needs a handshake paused at ClientIdentityRequested")
        self._client_identity = identity
        self.resume()

    # Called by OpenSSL through the module-level callbacks.
    def _on_verify(self, store_ctx: int) -> int:
        if self._aborting:
            o.X509_STORE_CTX_set_error(store_ctx, o.X509_V_ERR_APPLICATION_VERIFICATION)
            return 0
        if o.X509_verify_cert(store_ctx) != 1 and self.verify_peer:
            return 0  # OpenSSL sends the alert that matches the verification error
        if self.pause_on_verify and ServerIdentityReceived not in self._passed:
            chain = o.stack_of_x509_to_der(o.X509_STORE_CTX_get0_untrusted(store_ctx))
            self._pause_with(ServerIdentityReceived(PublicIdentity(chain)))
            return 1 if o.SSL_ctrl(self._ssl, o.SSL_CTRL_SET_RETRY_VERIFY, 0, None) > 0 else 0
        return 1

    def _on_certificate_request(self) -> int:
        if self._aborting:
            return 0
        in_handshake = not self.handshake_complete
        if in_handshake and self.pause_on_cert_request and ClientIdentityRequested not in self._passed:
            self._pause_with(ClientIdentityRequested())
            return -1
        identity = self._client_identity
        if identity is not None:
            identity.install(self._ssl)
            self.local_identity = identity
        return 1

    def _verify_failure(self, code: int) -> str:
        if code == o.X509_V_ERR_HOSTNAME_MISMATCH:
            return f"hostname mismatch: certificate is not valid for {self.server_name!r}"
        if code == o.X509_V_ERR_IP_ADDRESS_MISMATCH:
            return f"IP address mismatch: certificate is not valid for {self.server_name!r}"
        return super()._verify_failure(code)


class ServerEngine(_Engine):
    """A TLS server. By default it pauses at the ClientHello so the caller can pick identities."""

    _role = "server"

    def __init__(
        self,
        config: EngineConfig | None = None,
        *,
        identities: Iterable[PrivateIdentity] = (),
        alpn_ids: Iterable[bytes] = (),
        pause_on_client_hello: bool = True,
        client_trust: TrustStore | None = None,
        refuse_unmatched_alpn: bool = True,
    ):
        super().__init__(config)
        self.pause_on_client_hello = pause_on_client_hello
        # RFC 7301 3.2; False ignores the client's offer instead, as CPython's ssl server does
        self.refuse_unmatched_alpn = refuse_unmatched_alpn
        self.client_trust = client_trust
        self._identities = list(identities)
        self._alpn_ids = _checked_alpn_ids(alpn_ids)
        self._alpn_buffers: list[ctypes.Array] = []
        self.client_hello: ClientHelloReceived | None = None  # what the client offered, once received
        self._identities_installed = False
        self._client_identity_requested = False
        self._verifying_clients = False
        self._pha: str | None = None  # post-handshake auth: None, "requested", then "answered"
        o.SSL_set_accept_state(self._ssl)

    def _configurable(self) -> bool:
        return self._state is _State.IDLE or isinstance(self._pause, ClientHelloReceived)

    def configure_server_identities(self, identities: Iterable[PrivateIdentity]) -> None:
        """Certificates to offer, most preferred first; until the handshake passes the ClientHello."""
        if not self._configurable():
            raise TLSUsageError("server identities can only be configured up to the ClientHello pause")
        self._identities = list(identities)

    def configure_alpn_ids(self, ids: Iterable[bytes]) -> None:
        """ALPN ids the server accepts, most preferred first; until the ClientHello pause."""
        if not self._configurable():
            raise TLSUsageError("ALPN ids can only be configured up to the ClientHello pause")
        self._alpn_ids = _checked_alpn_ids(ids)

    def request_client_identity(self, *, required: bool = False) -> None:
        """Ask for a client certificate: in the handshake (until the ClientHello pause) or, on
        TLS 1.3, afterwards (post-handshake auth); a ClientIdentityReceived event answers.
        `required`: a client that sends none fails the handshake (alert: certificate required)."""
        if self._configurable():
            self._client_identity_requested = True
            self._verify_clients()
            if required:
                o.SSL_set_verify(self._ssl, o.SSL_VERIFY_PEER | o.SSL_VERIFY_FAIL_IF_NO_PEER_CERT, None)
            return
        if self._state is not _State.CONNECTED:
            raise TLSUsageError(f"cannot request a client identity on a connection that is {self._state.value}")
        if self._pha is not None:
            raise TLSUsageError("a post-handshake client identity request is already pending")
        if o.SSL_version(self._ssl) != TLS1_3:
            raise TLSUsageError(
                "post-handshake client authentication needs TLS 1.3 (TLS 1.2 renegotiation is not supported)"
            )
        self._verify_clients()
        o.ERR_clear_error()
        if o.SSL_verify_client_post_handshake(self._ssl) != 1:
            o.ERR_clear_error()
            raise TLSUsageError("the client did not offer post-handshake authentication")
        o.SSL_do_handshake(self._ssl)  # writes the CertificateRequest now
        o.ERR_clear_error()
        # The next complete run of the state machine is the client's answer.
        o.SSL_set_info_callback(self._ssl, _info_cb)
        self._pha = "requested"

    def _verify_clients(self) -> None:
        if self._verifying_clients:  # once: CA names would otherwise be listed twice
            return
        self._verifying_clients = True
        trust = self.client_trust
        if trust is None:
            trust = self.config.trust_store()  # the context's own store already
        else:
            o.SSL_ctrl(self._ssl, o.SSL_CTRL_SET_VERIFY_CERT_STORE, 1, trust.x509_store)  # set1: up-ref
        trust.add_client_ca_names(self._ssl)
        o.SSL_set_verify(self._ssl, o.SSL_VERIFY_PEER, None)

    def _fetch_peer_identity(self) -> PublicIdentity | None:
        leaf = o.SSL_get0_peer_certificate(self._ssl)
        if not leaf:
            return None  # a server's peer chain omits the leaf
        chain = o.stack_of_x509_to_der(o.SSL_get_peer_cert_chain(self._ssl))
        return PublicIdentity([o.x509_to_der(leaf), *chain])

    def _on_handshake_complete(self) -> None:
        super()._on_handshake_complete()
        chosen = o.SSL_get_certificate(self._ssl)
        self.local_identity = next((i for i in self._identities if i.owns_certificate(chosen)), None)
        if self._client_identity_requested:
            self._events.append(ClientIdentityReceived(self.peer_identity))

    def _after_read(self) -> None:
        if self._pha == "answered":
            self._pha = None
            o.SSL_set_info_callback(self._ssl, o.InfoCallback())  # NULL: no more calls per state change
            self.peer_identity = self._fetch_peer_identity()
            self._events.append(ClientIdentityReceived(self.peer_identity, post_handshake=True))

    # Called by OpenSSL through the module-level callbacks.
    def _on_flight_processed(self) -> None:
        if self._pha == "requested":
            self._pha = "answered"

    def _on_client_hello(self) -> int:
        if self._aborting:
            return o.SSL_CLIENT_HELLO_ERROR
        if self.client_hello is None:
            self.client_hello = self._read_client_hello()
            self.server_name = self.client_hello.server_name
            if self.pause_on_client_hello:
                self._pause_with(self.client_hello)
                return o.SSL_CLIENT_HELLO_RETRY
        if not self._identities_installed:  # once: a HelloRetryRequest brings a second ClientHello
            if not self._identities:
                self._reason = "no server identity configured"
                return o.SSL_CLIENT_HELLO_ERROR
            seen_key_types = set()
            for identity in self._identities:
                if identity.key_type not in seen_key_types:
                    seen_key_types.add(identity.key_type)
                    identity.install(self._ssl)
            self._alpn_buffers = [ctypes.create_string_buffer(i, len(i)) for i in self._alpn_ids]
            self._identities_installed = True
        return o.SSL_CLIENT_HELLO_SUCCESS

    def _read_client_hello(self) -> ClientHelloReceived:
        ssl = self._ssl
        out, length = ctypes.c_void_p(), ctypes.c_size_t()
        server_name = None
        if o.SSL_client_hello_get0_ext(ssl, o.TLSEXT_TYPE_server_name, ctypes.byref(out), ctypes.byref(length)):
            data = ctypes.string_at(out.value, length.value)
            # ServerNameList: u16 length, then (u8 type, u16 length, name)...; type 0 is host_name
            i = 2
            while i + 3 <= len(data):
                kind, n = data[i], int.from_bytes(data[i + 1 : i + 3], "big")
                if kind == 0:
                    server_name = data[i + 3 : i + 3 + n].decode("ascii", "replace")
                    break
                i += 3 + n
        alpn_ids: tuple[bytes, ...] = ()
        if o.SSL_client_hello_get0_ext(
            ssl, o.TLSEXT_TYPE_application_layer_protocol_negotiation, ctypes.byref(out), ctypes.byref(length)
        ):
            alpn_ids = _parse_alpn_list(ctypes.string_at(out.value, length.value)[2:])
        n = o.SSL_client_hello_get0_ciphers(ssl, ctypes.byref(out))
        raw = ctypes.string_at(out.value, n) if n else b""
        suites = tuple(int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw) - 1, 2))
        return ClientHelloReceived(server_name, alpn_ids, suites)

    def _on_alpn_select(self, out, outlen, offered, offered_len) -> int:
        if not self._alpn_ids:  # a server that configured no ids does not do ALPN: ignore the offer
            return o.SSL_TLSEXT_ERR_NOACK
        client_ids = set(_parse_alpn_list(ctypes.string_at(offered, offered_len)))
        for wanted, buffer in zip(self._alpn_ids, self._alpn_buffers):
            if wanted in client_ids:  # the server's order of preference decides
                out[0] = ctypes.addressof(buffer)
                outlen[0] = len(wanted)
                return o.SSL_TLSEXT_ERR_OK
        if not self.refuse_unmatched_alpn:
            return o.SSL_TLSEXT_ERR_NOACK
        # RFC 7301 3.2: a server that supports none of the client's protocols SHALL send a fatal alert
        self._reason = "no ALPN id in common with the client (no_application_protocol sent)"
        return o.SSL_TLSEXT_ERR_ALERT_FATAL
