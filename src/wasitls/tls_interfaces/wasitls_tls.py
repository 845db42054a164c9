"""wasitls:tls/tls@0.1.0: the full draft TLS API (wasi-sockets PR 104), done by OpenSSL.

Client and server connections whose handshakes the guest drives from one point of interest to
the next. The TLS engine really stops at each point (tls_streams.TlsConnection.paused_at): `_Driver`
decides when to let it go on, and every future is a readiness check that drives the connection
while polled.

Order of the points (each drive call may come once, in this order; a later one resumes past the
earlier points the engine is still stopped at):
    client: verify-server-identity, receive-client-identity-request, finish | abort
    server: receive-client-hello, request-client-identity, finish | abort

Error results carry no reason (the draft's error types are empty); `--tls-trace` prints why a
connection failed. Where OpenSSL 3.0 cannot stop exactly where the draft says, the function says so.
"""

from __future__ import annotations

from typing import Any, Callable

from ..component.linker import HostInterface
from ..component.values import Err, Ok, Trap
from ..tls.identity import IdentityError, PrivateIdentity as _Private, PublicIdentity as _Public
from ..tls_streams import GuestTls, TlsConnection
from ..wasi.io.poll import Pollable, Wait
from ..wasi.io.streams import InputStream, OutputStream

# Stages of a handshake: how far the guest has asked it to go.
CREATED, FIRST_POINT, SECOND_POINT, FINISHED = 0, 1, 2, 3
# Which stage each point the handshake stops at belongs to: it goes on once the guest is past it.
_STAGE_OF_POINT = {
    "server-identity": FIRST_POINT,  # client: verify-server-identity
    "client-identity-request": SECOND_POINT,  # client: receive-client-identity-request
    "client-hello": FIRST_POINT,  # server: receive-client-hello
}


# -- identities -----------------------------------------------------------------------------------
class PublicIdentity:
    """The `public-identity` resource: a certificate chain, end-entity first."""

    def __init__(self, inner: _Public):
        self.inner = inner

    def export_X509_chain(self) -> list[bytes]:  # noqa: N802 (the draft's own name)
        return list(self.inner.export_x509_chain())


class PrivateIdentity:
    """The `private-identity` resource: the key stays in OpenSSL; only the chain is visible."""

    def __init__(self, inner: _Private):
        self.inner = inner

    def public_identity(self) -> PublicIdentity:
        return PublicIdentity(self.inner.public_identity())


def _parse(private_key: bytes, x509_chain: list[bytes], passphrase: str | None) -> PrivateIdentity:
    try:
        return PrivateIdentity(_Private.parse(private_key, x509_chain, passphrase))
    except (IdentityError, ValueError):  # malformed input is an error result, never a trap
        raise Err(None) from None


def _private(obj: PrivateIdentity | None) -> PrivateIdentity | None:
    return None if obj is None else PrivateIdentity(obj.inner)


def _public(inner: _Public | None) -> PublicIdentity | None:
    return None if inner is None else PublicIdentity(inner)


def _peer_of(conn: TlsConnection) -> _Public | None:
    facts = conn.facts()
    return None if facts is None else facts.peer_identity


# -- driving a handshake --------------------------------------------------------------------------
class _Driver:
    """One connection's handshake: how far the guest has let it go, and the answers it gave."""

    def __init__(self, conn: TlsConnection):
        self.conn = conn
        # The draft has no close call: dropping the plaintext output sends close_notify.
        conn.close_notify_on_drop = True
        self.stage = CREATED
        self.client_identity: PrivateIdentity | None = None  # client: the answer to a certificate request
        self.aborted = False

    def go_to(self, stage: int) -> None:
        """The guest asked for `stage`: refused (error result) if it is not the next one in order."""
        if self.aborted or self.stage >= stage or self.conn.failure is not None:
            raise Err(None)
        self.stage = stage

    def advance(self) -> None:
        """Move bytes and resume past every pause the guest has moved beyond; never blocks."""
        conn = self.conn
        for _ in range(len(_STAGE_OF_POINT) + 2):
            conn.advance(conn.settled_or_paused)
            point = conn.paused_at
            if point is None or self.stage <= _STAGE_OF_POINT[point]:
                return
            conn.go_on(None if self.client_identity is None else self.client_identity.inner)

    def ready(self, predicate: Callable[[], bool]) -> "_Ready":
        return _Ready(self, predicate)

    def abort(self) -> Pollable:
        self.aborted = True
        self.stage = FINISHED
        self.conn.abort()
        return Pollable(self.conn.when_sent())


class _Ready:
    """A poll source for a future: ready when `predicate()` holds, driving the handshake meanwhile."""

    def __init__(self, driver: _Driver, predicate: Callable[[], bool]):
        self.driver = driver
        self.predicate = predicate

    def poll_ready(self) -> bool:
        if self.predicate():
            return True
        self.driver.advance()
        # Past the handshake (post-handshake auth) only reading brings the answer.
        return self.driver.conn.when(self.predicate).poll_ready()

    def wait_on(self) -> Wait:
        return self.driver.conn.wait_for_input()


class _Future:
    """The draft's `future-*` resources: none until ready, then the value once, then an error."""

    def __init__(self, driver: _Driver, predicate: Callable[[], bool], value: Callable[[], Any],
                 failed: Callable[[], bool] | None = None):
        self.driver = driver
        self.source = driver.ready(predicate)
        self.value = value
        self.failed = failed or (lambda: driver.conn.failure is not None)
        self.taken = False

    def subscribe(self) -> Pollable:
        return Pollable(self.source)

    def get(self) -> Any:
        if self.taken:
            return Err(None)
        if not self.source.poll_ready():
            return None
        self.taken = True
        if self.failed():
            return Ok(Err(None))
        return Ok(Ok(self.value()))


class FutureStreams(_Future):
    """`future-streams`: the plaintext input and output streams once the handshake completes."""

    def __init__(self, driver: _Driver):
        conn = driver.conn
        super().__init__(driver, conn.handshake_settled, self._streams)

    def _streams(self) -> tuple[InputStream, OutputStream]:
        conn = self.driver.conn
        return InputStream(conn.plaintext_source()), OutputStream(conn.plaintext_sink())


class FutureClientHello(_Future):
    """`future-client-hello`."""


class FuturePublicIdentity(_Future):
    """`future-public-identity`."""


class FutureClientIdentityRequest(_Future):
    """`future-client-identity-request`."""


# -- what both roles share ------------------------------------------------------------------------
class _Connection:
    """A connection resource: raw streams until the handshake is made, then the facts as they come."""

    def __init__(self, iface: "Tls", input: InputStream, output: OutputStream):
        self.iface = iface
        self.raw: tuple[InputStream, OutputStream] | None = (input, output)
        self.driver: _Driver | None = None

    def _start(self, conn: TlsConnection) -> _Driver:
        self.driver = _Driver(conn)
        return self.driver

    def _facts(self) -> Any:
        return None if self.driver is None else self.driver.conn.facts()

    def _local_identity(self) -> PrivateIdentity | None:
        f = self._facts()
        return None if f is None or f.local_identity is None else PrivateIdentity(f.local_identity)

    def _peer_identity(self) -> PublicIdentity | None:
        f = self._facts()
        return None if f is None else _public(f.peer_identity)

    def alpn_id(self) -> bytes | None:
        f = self._facts()
        return None if f is None else f.alpn_id

    def protocol_version(self) -> int | None:
        f = self._facts()
        return None if f is None else f.protocol_version

    def cipher_suite(self) -> int | None:
        f = self._facts()
        return None if f is None else f.cipher_suite

    def drop(self) -> None:
        if self.driver is not None:
            # Streams handed out keep the connection alive; without them it ends here.
            self.driver.aborted = True
            self.driver.conn.unhold()
        self.raw = None


class _Handshake:
    """A handshake resource; `finish` and `abort` consume it."""

    resource = ""

    def __init__(self, driver: _Driver):
        self.driver = driver
        self.consumed = False

    def _consume(self) -> _Driver:
        if self.consumed:
            raise Trap(f"{self.resource} used after finish or abort")
        self.consumed = True
        return self.driver


# -- client ---------------------------------------------------------------------------------------
class ClientConnection(_Connection):
    """The `client-connection` resource."""

    def __init__(self, iface: "Tls", input: InputStream, output: OutputStream):
        super().__init__(iface, input, output)
        self.name: str | None = None

    def connect(self, server_name: str) -> "ClientHandshake":
        if self.driver is not None or self.raw is None:
            raise Err(None)  # at most once
        try:
            conn = self.iface.tls.client(server_name, self.raw[0].source, self.raw[1].sink)
        except ValueError:  # an empty server name, or one with a NUL
            raise Err(None) from None
        self.name = server_name
        return ClientHandshake(self._start(conn))

    def server_name(self) -> str | None:
        return self.name

    def client_identity(self) -> PrivateIdentity | None:
        return self._local_identity()

    def server_identity(self) -> PublicIdentity | None:
        return self._peer_identity()


class ClientHandshake(_Handshake):
    """The `client-handshake` resource."""

    resource = "client-handshake"

    def configure_alpn_ids(self, value: list[bytes]) -> None:
        d = self.driver
        if self.consumed or d.stage != CREATED or d.aborted:
            raise Err(None)
        try:
            d.conn.configure_alpn_ids(value)
        except ValueError:
            raise Err(None) from None

    def verify_server_identity(self) -> FuturePublicIdentity:
        """Resolves with the chain OpenSSL has verified (chain, dates, host name); the handshake
        stays stopped (SSL_set_retry_verify) until the guest moves on or aborts."""
        d = self.driver
        if self.consumed:
            raise Err(None)
        d.go_to(FIRST_POINT)
        conn = d.conn
        conn.stop_at_server_identity()
        return FuturePublicIdentity(
            d, lambda: conn.server_identity_seen is not None or conn.handshake_settled(),
            lambda: _public(conn.server_identity_seen or _peer_of(conn)),
        )

    def receive_client_identity_request(self) -> FutureClientIdentityRequest:
        """Resolves when the server's CertificateRequest has arrived (none if the handshake went
        past it without one); no client Certificate is sent before the guest answers."""
        d = self.driver
        if self.consumed:
            raise Err(None)
        d.go_to(SECOND_POINT)
        conn = d.conn
        conn.stop_at_client_identity_request()
        return FutureClientIdentityRequest(
            d, lambda: conn.client_identity_requested or conn.handshake_settled(),
            lambda: ClientIdentityRequest(d) if conn.client_identity_requested else None,
        )


class ClientIdentityRequest:
    """The `client-identity-request` resource; dropped unanswered means: no certificate."""

    def __init__(self, driver: _Driver):
        self.driver = driver
        self.answered = False


class ClientHello:
    """The `client-hello` resource: what the client offered, as received."""

    def __init__(self, hello: Any):  # the ClientHello TlsConnection.client_hello holds
        self.hello = hello

    def server_name(self) -> str | None:
        return self.hello.server_name

    def alpn_ids(self) -> list[bytes]:
        return list(self.hello.alpn_ids)

    def cipher_suites(self) -> list[int]:
        return list(self.hello.cipher_suites)


# -- server ---------------------------------------------------------------------------------------
class ServerConnection(_Connection):
    """The `server-connection` resource."""

    def accept(self) -> "ServerHandshake":
        if self.driver is not None or self.raw is None:
            raise Err(None)  # at most once
        return ServerHandshake(self._start(self.iface.tls.server(self.raw[0].source, self.raw[1].sink)))

    def request_client_identity(self) -> FuturePublicIdentity:
        """Post-handshake authentication (TLS 1.3 only: TLS 1.2 renegotiation is disabled). The
        future resolves when the client's answer has been read and verified."""
        d = self.driver
        if d is None or d.aborted or not d.conn.handshake_complete or d.conn.failure is not None:
            raise Err(None)
        conn = d.conn
        seen = len(conn.client_identities)
        try:
            conn.request_client_identity()
        except ValueError:  # TLS 1.2, a request already pending, or a client without PHA
            raise Err(None) from None

        def answered() -> bool:
            conn.read_ahead()  # the answer may sit behind application data
            return len(conn.client_identities) > seen or conn.failure is not None or conn.peer_closed is not None

        def value() -> PublicIdentity | None:
            return _public(conn.client_identities[seen])

        return FuturePublicIdentity(d, answered, value,
                                    failed=lambda: len(conn.client_identities) <= seen)

    def server_name(self) -> str | None:
        hello = None if self.driver is None else self.driver.conn.client_hello
        return None if hello is None else hello.server_name

    def client_identity(self) -> PublicIdentity | None:
        return self._peer_identity()

    def server_identity(self) -> PrivateIdentity | None:
        return self._local_identity()


class ServerHandshake(_Handshake):
    """The `server-handshake` resource."""

    resource = "server-handshake"

    def _configurable(self) -> _Driver:
        d = self.driver
        if self.consumed or d.aborted or d.stage > FIRST_POINT or d.conn.failure is not None:
            raise Err(None)
        return d

    def configure_alpn_ids(self, value: list[bytes]) -> None:
        d = self._configurable()
        try:
            d.conn.configure_alpn_ids(value)
        except ValueError:
            raise Err(None) from None

    def configure_server_identities(self, value: list[PrivateIdentity]) -> None:
        d = self._configurable()
        try:
            d.conn.configure_server_identities([v.inner for v in value])
        except ValueError:
            raise Err(None) from None

    def receive_client_hello(self) -> FutureClientHello:
        """Resolves with the ClientHello; OpenSSL's client-hello callback holds the handshake
        there, so no ServerHello leaves before the guest has chosen identities and ALPN ids."""
        d = self.driver
        if self.consumed:
            raise Err(None)
        d.go_to(FIRST_POINT)
        conn = d.conn
        return FutureClientHello(d, lambda: conn.client_hello is not None or conn.handshake_settled(),
                                 lambda: ClientHello(conn.client_hello),
                                 failed=lambda: conn.client_hello is None)

    def request_client_identity(self) -> FuturePublicIdentity:
        """Asks for a client certificate, verified against --client-ca-file (else --ca-file).
        Deviation (OpenSSL 3.0 servers cannot stop after verifying a client certificate): the
        future resolves when the handshake has completed, before any application data is read;
        an abort() then sends close_notify instead of an alert."""
        d = self.driver
        if self.consumed or d.aborted or d.stage >= SECOND_POINT or d.conn.failure is not None:
            raise Err(None)
        try:
            d.conn.request_client_identity()
        except ValueError:
            raise Err(None) from None
        d.go_to(SECOND_POINT)
        conn = d.conn
        return FuturePublicIdentity(
            d, lambda: bool(conn.client_identities) or conn.handshake_settled(),
            lambda: _public(conn.client_identities[0]) if conn.client_identities else None,
        )


def _finish(handshake: _Handshake) -> FutureStreams:
    d = handshake._consume()
    if not d.aborted:
        d.stage = FINISHED
    return FutureStreams(d)


# -- the interface ----------------------------------------------------------------------------------
class Tls(HostInterface):
    wit = "wasitls:tls/tls@0.1.0"
    resources = {
        "public-identity": PublicIdentity,
        "private-identity": PrivateIdentity,
        "client-connection": ClientConnection,
        "client-handshake": ClientHandshake,
        "server-connection": ServerConnection,
        "server-handshake": ServerHandshake,
        "client-hello": ClientHello,
        "client-identity-request": ClientIdentityRequest,
        "future-streams": FutureStreams,
        "future-client-hello": FutureClientHello,
        "future-public-identity": FuturePublicIdentity,
        "future-client-identity-request": FutureClientIdentityRequest,
    }

    def __init__(self, tls: GuestTls):
        self.tls = tls

    def private_identity_parse(self, private_key: bytes, x509_chain: list[bytes]) -> PrivateIdentity:
        """PEM or DER key (PKCS#8, PKCS#1, SEC1); each chain entry DER or PEM (PEM may hold several)."""
        return _parse(private_key, x509_chain, None)

    def private_identity_parse_encrypted(self, private_key: bytes, x509_chain: list[bytes],
                                         passphrase: str) -> PrivateIdentity:
        return _parse(private_key, x509_chain, passphrase)

    def new_client_connection(self, input: InputStream, output: OutputStream) -> ClientConnection:
        return ClientConnection(self, input, output)

    def new_server_connection(self, input: InputStream, output: OutputStream) -> ServerConnection:
        return ServerConnection(self, input, output)

    def client_handshake_finish(self, this: ClientHandshake) -> FutureStreams:
        return _finish(this)

    def client_handshake_abort(self, this: ClientHandshake) -> Pollable:
        return this._consume().abort()

    def server_handshake_finish(self, this: ServerHandshake) -> FutureStreams:
        return _finish(this)

    def server_handshake_abort(self, this: ServerHandshake) -> Pollable:
        return this._consume().abort()

    def client_identity_request_respond(self, this: ClientIdentityRequest, identities: list[PrivateIdentity]) -> None:
        """Records the answer; `finish` sends it. The first identity offered is the one used."""
        d = this.driver
        if this.answered:
            raise Trap("client-identity-request.respond called twice")
        this.answered = True
        if d.stage > SECOND_POINT:
            raise Trap("client-identity-request.respond called after the handshake went on without it")
        d.client_identity = identities[0] if identities else None
