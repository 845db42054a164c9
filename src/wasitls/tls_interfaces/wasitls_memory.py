"""wasitls:tls/memory@0.1.0: TLS over memory, for a guest's `ssl` module.

A thin adapter on the glue (tls_streams.py): each connection is a `TlsConnection` whose raw source
is the ciphertext the guest hands in with each call and whose raw sink collects what the call gives
back to send. Nothing here waits: every call feeds, moves the connection as far as it can, and
returns. Trust, host-held identities, trace and key log are the guest's GuestTls, as for wasitls:tls.

The guest's settings meet the host's policy here, never in guest code:
- a client always verifies the chain and the host name unless the host runs with
  `--tls-guest-insecure` (verify-mode none / check-hostname false are refused otherwise);
- roots the guest loads narrow the host's trust (the peer must pass the host's checks AND chain
  through one of them) unless the host runs with `--tls-guest-roots own`, where they replace it
  for that connection (CPython's behaviour).
"""

from __future__ import annotations

import base64
from typing import Any

from ..component.linker import HostInterface
from ..component.values import Err
from ..tls.engine import TLS1_2, TLS1_3, EngineConfig
from ..tls.trust import TrustError, TrustStore, chain_passes_through
from ..tls_streams import GuestTls, TlsConnection
from ..wasi.io.poll import Wait
from ..wasi.io.streams import MAX_READ, StreamClosed, StreamFailed

_VERSIONS = {0: None, 0x0303: TLS1_2, 0x0304: TLS1_3}

# X509_V_ERR_* of the verify failures the engine names (SSLCertVerificationError.verify_code)
_VERIFY_CODES = {
    "certificate has expired": 10,
    "certificate is not yet valid": 9,
    "self-signed certificate in certificate chain": 19,
    "self signed certificate in certificate chain": 19,
    "self-signed certificate": 18,
    "self signed certificate": 18,
    "unable to get local issuer certificate": 20,
    "unable to verify the first certificate": 21,
    "certificate revoked": 23,
    "invalid CA certificate": 24,
    "unsupported certificate purpose": 26,
}
# OpenSSL's reason codes name an alert by the TLS version that defined it
_TLS13_ALERTS = {"certificate required", "missing extension"}
_TLS1_ALERTS = {"unknown ca", "access denied", "decrypt error", "protocol version", "decode error", "internal error",
                "insufficient security", "user cancelled", "no renegotiation", "unknown psk identity",
                "unrecognized name", "inappropriate fallback"}
NOT_OURS = "the guest's roots: the {}'s chain leads to none of the CAs the guest loaded"


def _error(kind: str, reason: str = "", code: str = "", verify_code: int = 0) -> dict:
    return {"kind": kind, "code": code, "reason": reason, "verify-code": verify_code}


WANT_READ = _error("want-read")


def _failure(reason: str) -> dict:
    """A connection's failure reason as the guest's error record (kind, OpenSSL-style code, reason)."""
    verify = None
    if reason.startswith("certificate verify failed: "):
        verify = reason[len("certificate verify failed: "):]
    elif reason.startswith(("hostname mismatch", "IP address mismatch", "the guest's roots")):
        verify = reason
    if verify is not None:
        code = 62 if verify.startswith("hostname") else 64 if verify.startswith("IP address") else 0
        code = next((n for text, n in _VERIFY_CODES.items() if verify.startswith(text)), code)
        return _error("certificate-verify-failed", verify, "CERTIFICATE_VERIFY_FAILED", code)
    if reason.startswith("peer sent alert: "):
        alert = reason[len("peer sent alert: "):].lower()
        prefix = "TLSV13_ALERT_" if alert in _TLS13_ALERTS else "TLSV1_ALERT_" if alert in _TLS1_ALERTS else "SSLV3_ALERT_"
        return _error("protocol", reason, prefix + alert.upper().replace(" ", "_"))
    if reason.startswith(("truncated", "the peer closed the connection without close_notify",
                          "peer closed the connection", "connection reset")):
        return _error("eof", reason, "UNEXPECTED_EOF_WHILE_READING")
    for prefix in ("TLS handshake failed: ", "TLS error: "):
        if reason.startswith(prefix):  # OpenSSL's reason text: its code is the same words in capitals
            text = reason[len(prefix):]
            return _error("protocol", text, text.upper().replace(" ", "_").replace("-", "_"))
    return _error("protocol", reason)


# -- the raw side: the guest's ciphertext ------------------------------------------------------------
class _Incoming:
    """The raw source: the peer's bytes the guest has handed in, then (maybe) their end."""

    def __init__(self) -> None:
        self.data = b""  # kept as handed in: a read that takes it all copies nothing
        self.ended = False

    def feed(self, data: bytes) -> None:
        if data:
            self.data = self.data + data if self.data else data

    def read(self, n: int) -> bytes:
        data = self.data
        if data:
            if len(data) <= n:
                self.data = b""
                return data
            self.data = data[n:]
            return data[:n]
        if self.ended:
            raise StreamClosed
        return b""  # nothing more until the guest's next call

    def poll_ready(self) -> bool:
        return True

    def wait_on(self) -> Wait:
        return Wait()


class _Outgoing:
    """The raw sink: what the guest must send to the peer, handed back with each call."""

    def __init__(self) -> None:
        self.data = bytearray()

    def check_write(self) -> int:
        return MAX_READ

    def write(self, data: bytes) -> None:
        self.data += data

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data = bytes(self.data)
        self.data.clear()
        return data

    def poll_ready(self) -> bool:
        return True

    def wait_on(self) -> Wait:
        return Wait()


# -- the resource ------------------------------------------------------------------------------------
class Connection:
    """The `connection` resource."""

    def __init__(self, conn: TlsConnection, incoming: _Incoming, outgoing: _Outgoing, narrow: tuple[bytes, ...]):
        self.conn = conn
        self.incoming = incoming
        self.outgoing = outgoing
        self.narrow = narrow  # the guest's roots, when they only narrow the host's trust
        self.refused: dict | None = None  # our own refusal (the guest's roots), reported as the failure
        self.shutdown_sent = False

    def _done(self, result: Any) -> tuple:
        return self.outgoing.take(), result

    def _failed(self) -> tuple:
        return self._done(Err(self.refused or _failure(self.conn.failure or "TLS error")))

    def receive_eof(self) -> None:
        self.incoming.ended = True

    # -- handshake ---------------------------------------------------------------------------
    def handshake(self, incoming: bytes) -> tuple:
        self.incoming.feed(incoming)
        conn = self.conn
        if conn.paused_at == "client-hello":
            conn.go_on()  # the guest has seen the ClientHello (and reconfigured, if it wanted)
        while True:
            conn.advance()
            if conn.failure is not None or self.refused is not None:
                return self._failed()
            point = conn.paused_at
            if point == "client-hello":
                return self._done("client-hello")
            if point == "server-identity":  # stopped only to narrow: the host's checks passed
                if not chain_passes_through(conn.server_identity_seen.export_x509_chain(), self.narrow):
                    return self._refuse("server")
                conn.go_on()
                continue
            if conn.handshake_complete:
                if self.narrow and conn.role == "server":
                    for identity in conn.client_identities:
                        if identity is not None and not chain_passes_through(identity.export_x509_chain(),
                                                                             self.narrow):
                            return self._refuse("client")
                return self._done("complete")
            return self._done(Err(WANT_READ))

    def _refuse(self, whose: str) -> tuple:
        self.refused = _failure(NOT_OURS.format(whose))
        self.conn.abort()  # an alert at a pause; close_notify once the handshake is over
        return self._failed()

    def reconfigure(self, settings: dict) -> None:
        """At the ClientHello: the identity, ALPN ids and client verification of another context."""
        conn = self.conn
        if conn.paused_at != "client-hello":
            raise Err(_error("refused", "reconfigure is only possible at the ClientHello"))
        try:
            identity = settings["identity"]
            conn.configure_server_identities([identity.inner] if identity is not None else [])
            conn.configure_alpn_ids(settings["alpn-ids"])
            if settings["verify-mode"] != "none":
                conn.request_client_identity(required=settings["verify-mode"] == "required")
        except ValueError as e:
            raise Err(_error("refused", str(e))) from None
        self.narrow = self.narrow or tuple(bytes(r) for r in settings["roots"])

    # -- application data --------------------------------------------------------------------
    def read(self, incoming: bytes, max: int) -> tuple:
        self.incoming.feed(incoming)
        try:
            data = self.conn.read(max)
        except StreamClosed:
            return self._done(Err(_error("zero-return", "TLS/SSL connection has been closed (EOF)")))
        except StreamFailed as e:
            return self._done(Err(self.refused or _failure(e.error.message)))
        return self._done(data if data else Err(WANT_READ))

    def write(self, incoming: bytes, data: bytes) -> tuple:
        self.incoming.feed(incoming)
        if self.conn.failure is not None or self.refused is not None:
            return self._failed()
        try:
            self.conn.write(data)
        except StreamFailed as e:
            return self._done(Err(_failure(e.error.message)))
        return self._done(len(data))

    def shutdown(self, incoming: bytes) -> tuple:
        self.incoming.feed(incoming)
        conn = self.conn
        if not self.shutdown_sent:
            self.shutdown_sent = True
            conn.close_output()
        while True:  # until the peer's close_notify; what it still sends before it is dropped
            try:
                if not conn.read(MAX_READ):
                    return self._done(Err(WANT_READ))
            except (StreamClosed, StreamFailed):
                return self._done(None)

    def pending(self) -> int:
        return 0  # read() hands over everything decrypted (up to max); the guest keeps the rest

    def facts(self) -> dict:
        conn = self.conn
        f = conn.facts()
        hello = conn.client_hello
        if f is None:
            return {"handshake-complete": False, "protocol": None, "cipher": None, "alpn-id": None,
                    "server-name": hello.server_name if hello is not None else None,
                    "peer-chain": [], "local-chain": [], "tls-unique": None}
        return {
            "handshake-complete": True, "protocol": f.protocol_name, "cipher": f.cipher_suite_name,
            "alpn-id": f.alpn_id, "server-name": f.server_name,
            "peer-chain": f.peer_identity.export_x509_chain() if f.peer_identity is not None else [],
            "local-chain": f.local_identity.public_identity().export_x509_chain() if f.local_identity else [],
            "tls-unique": f.tls_unique,
        }

    def drop(self) -> None:
        self.conn.release()


# -- the interface -------------------------------------------------------------------------------------
class Memory(HostInterface):
    wit = "wasitls:tls/memory@0.1.0"
    resources = {"connection": Connection}

    def __init__(self, tls: GuestTls):
        self.tls = tls
        self.configs: dict[tuple, EngineConfig] = {}  # per (trust, versions): each is an OpenSSL context
        self.stores: dict[tuple[bytes, ...], TrustStore] = {}

    def policy(self) -> dict:
        settings = self.tls.settings
        return {"may-skip-verification": bool(getattr(settings, "guest_insecure", False)),
                "may-replace-roots": getattr(settings, "guest_roots", "narrow") == "own"}

    # -- what the guest's settings become on the host ----------------------------------------------
    def _roots(self, settings: dict) -> tuple[bytes, ...]:
        return tuple(bytes(r) for r in settings["roots"])

    def _narrow(self, settings: dict) -> tuple[bytes, ...]:
        return () if self.policy()["may-replace-roots"] else self._roots(settings)

    def _own_trust(self, settings: dict) -> TrustStore | None:
        roots = self._roots(settings)
        if not roots or not self.policy()["may-replace-roots"]:
            return None
        if roots not in self.stores:
            pem = b"".join(b"-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(der) + b"-----END CERTIFICATE-----\n"
                           for der in roots)
            try:
                self.stores[roots] = TrustStore.from_pem(pem, description="the guest's roots")
            except TrustError as e:
                raise Err(_error("refused", str(e))) from None
        return self.stores[roots]

    def _config(self, settings: dict, trust: TrustStore | None) -> EngineConfig | None:
        """None for the host's own (trust and versions untouched), else one per combination."""
        try:
            versions = _VERSIONS[settings["min-version"]], _VERSIONS[settings["max-version"]]
        except KeyError:
            raise Err(_error("refused", "TLS versions are TLS 1.2 (0x0303) and TLS 1.3 (0x0304)")) from None
        if trust is None and versions == (None, None):
            return None
        key = (id(trust), *versions)
        if key not in self.configs:
            host = self.tls.settings
            self.configs[key] = EngineConfig(trust if trust is not None else host.trust,
                                             min_version=versions[0] or TLS1_2, max_version=versions[1],
                                             keylog=host.keylog)
        return self.configs[key]

    def connection_client(self, settings: dict) -> Connection:
        verify = settings["verify-mode"] != "none"
        if not self.policy()["may-skip-verification"]:
            for off, what in ((not verify, "certificate verification (verify_mode=CERT_NONE)"),
                              (not settings["check-hostname"], "host name checks (check_hostname=False)")):
                if off:
                    raise Err(_error("refused", f"this host does not let guests turn off {what}; "
                                                "run it with --tls-guest-insecure to allow it"))
        config = self._config(settings, self._own_trust(settings))
        identity = settings["identity"]
        incoming, outgoing = _Incoming(), _Outgoing()
        try:
            conn = self.tls.client(settings["server-name"], incoming, outgoing, config=config,
                                   alpn_ids=settings["alpn-ids"],
                                   client_identity=identity.inner if identity is not None else None,
                                   verify_peer=verify, check_name=verify and settings["check-hostname"])
        except ValueError as e:
            raise Err(_error("refused", str(e))) from None
        narrow = self._narrow(settings) if verify else ()
        if narrow:
            conn.stop_at_server_identity()
        return Connection(conn, incoming, outgoing, narrow)

    def connection_server(self, settings: dict, stop_at_client_hello: bool) -> Connection:
        identity = settings["identity"]
        own = self._own_trust(settings)
        incoming, outgoing = _Incoming(), _Outgoing()
        options: dict[str, Any] = {"config": self._config(settings, None),
                                   "identities": [identity.inner] if identity is not None else [],
                                   "alpn_ids": settings["alpn-ids"], "pause_on_client_hello": stop_at_client_hello,
                                   # CPython's ssl server goes on without ALPN when no offer matches
                                   "refuse_unmatched_alpn": False}
        if own is not None:
            options["client_trust"] = own
        try:
            conn = self.tls.server(incoming, outgoing, **options)
            if settings["verify-mode"] != "none":
                conn.request_client_identity(required=settings["verify-mode"] == "required")
        except ValueError as e:
            raise Err(_error("refused", str(e))) from None
        return Connection(conn, incoming, outgoing, self._narrow(settings))
