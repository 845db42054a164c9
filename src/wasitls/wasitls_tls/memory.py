"""wasitls:tls/memory@0.1.0: TLS over memory, for a guest's `ssl` module.

A thin adapter on the sans-I/O engine (tls/engine.py): the guest hands in the peer's ciphertext with
each call and gets back the ciphertext to send, so there is no pump and no stream here. Trust,
host-held identities, trace and key log are the host's TLS settings, as for `wasitls:tls/tls`.

The guest's settings meet the host's policy here, never in guest code:
- a client always verifies the chain and the host name unless the host runs with
  `--tls-guest-insecure` (verify-mode none / check-hostname false are refused otherwise);
- roots the guest loads narrow the host's trust (the peer must pass the host's checks AND chain
  through one of them) unless the host runs with `--tls-guest-roots own`, where they replace it
  for that connection (CPython's behaviour).
"""

from __future__ import annotations

import ctypes
import time
import weakref
from typing import Any

from ..component.host import HostInterface
from ..component.values import Err, Variant  # noqa: F401 (Variant: records are dicts, enums str)
from ..tls import engine as E
from ..tls import openssl as o
from ..tls.identity import PublicIdentity
from ..tls.trust import TrustError, TrustStore
from ..wasi.ctx import WasiCtx
from .tls import PrivateIdentity

_VERSIONS = {0: None, 0x0303: E.TLS1_2, 0x0304: E.TLS1_3}
_READ_MAX = 1 << 20  # plaintext one read hands the guest at most

# X509_V_ERR_* for the verify failures the engine names (SSLCertVerificationError.verify_code)
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

# X509_check_issued / X509_verify / X509_get0_pubkey: is a certificate directly issued by a guest root
o.libcrypto.X509_check_issued.restype = ctypes.c_int
o.libcrypto.X509_check_issued.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
o.libcrypto.X509_verify.restype = ctypes.c_int
o.libcrypto.X509_verify.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
o.libcrypto.X509_get0_pubkey.restype = ctypes.c_void_p
o.libcrypto.X509_get0_pubkey.argtypes = [ctypes.c_void_p]


def _error(kind: str, reason: str = "", code: str = "", verify_code: int = 0) -> dict:
    return {"kind": kind, "code": code, "reason": reason, "verify-code": verify_code}


def _failure(reason: str) -> dict:
    """An engine failure reason as the guest's error record (kind, OpenSSL-style code, reason)."""
    for prefix in ("certificate verify failed: ", "hostname mismatch", "IP address mismatch",
                   "the guest's roots"):
        if reason.startswith(prefix):
            message = reason[len("certificate verify failed: "):] if prefix.startswith("certificate") else reason
            code = 62 if prefix == "hostname mismatch" else 64 if prefix == "IP address mismatch" else 0
            for text, number in _VERIFY_CODES.items():
                if message.startswith(text):
                    code = number
                    break
            return _error("certificate-verify-failed", message, "CERTIFICATE_VERIFY_FAILED", code)
    if reason.startswith("peer sent alert: "):
        alert = reason[len("peer sent alert: "):].lower()
        # OpenSSL's reason codes name an alert by the TLS version that defined it
        prefix = "TLSV13_ALERT_" if alert in ("certificate required", "missing extension") else "TLSV1_ALERT_" \
            if alert in ("unknown ca", "access denied", "decrypt error", "protocol version", "decode error",
                         "internal error", "insufficient security", "user cancelled", "no renegotiation",
                         "unknown psk identity", "unrecognized name", "inappropriate fallback") else "SSLV3_ALERT_"
        return _error("protocol", reason, prefix + alert.upper().replace(" ", "_"))
    if reason.startswith("truncated") or reason.startswith("peer closed the connection"):
        return _error("eof", reason, "UNEXPECTED_EOF_WHILE_READING")
    for prefix in ("TLS handshake failed: ", "TLS error: "):
        if reason.startswith(prefix):  # OpenSSL's reason text: its code is the same words in capitals
            text = reason[len(prefix):]
            return _error("protocol", text, text.upper().replace(" ", "_").replace("-", "_"))
    return _error("protocol", reason, "")


class _TrustCache:
    """TLS configs per (roots, versions), built once per guest: each is an OpenSSL context."""

    def __init__(self, settings: Any):
        self.settings = settings
        self.configs: dict[tuple, E.TLSConfig] = {}
        self.stores: dict[tuple, TrustStore] = {}

    def store(self, roots: tuple[bytes, ...]) -> TrustStore:
        store = self.stores.get(roots)
        if store is None:
            pem = b"".join(_der_to_pem(der) for der in roots)
            store = self.stores[roots] = TrustStore.from_pem(pem, description="the guest's roots")
        return store

    def config(self, trust: TrustStore | None, min_version: int | None, max_version: int | None) -> E.TLSConfig:
        key = (id(trust), min_version, max_version)
        config = self.configs.get(key)
        if config is None:
            base = trust if trust is not None else self.settings.trust
            config = self.configs[key] = E.TLSConfig(base, min_version=min_version or E.TLS1_2,
                                                     max_version=max_version, keylog=self.settings.keylog)
        return config


def _der_to_pem(der: bytes) -> bytes:
    import base64

    body = base64.encodebytes(der).replace(b"\n", b"")
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return b"-----BEGIN CERTIFICATE-----\n" + b"\n".join(lines) + b"\n-----END CERTIFICATE-----\n"


def _chain_passes_through(chain: list[bytes], roots: tuple[bytes, ...]) -> bool:
    """Whether a (host-verified) chain contains one of `roots` or a certificate one of them issued."""
    if any(der in roots for der in chain):
        return True
    parsed_roots = [_d2i(der) for der in roots]
    parsed_chain = [_d2i(der) for der in chain]
    try:
        for cert in parsed_chain:
            for root in parsed_roots:
                if cert and root and o.libcrypto.X509_check_issued(root, cert) == 0:
                    key = o.libcrypto.X509_get0_pubkey(root)
                    if key and o.libcrypto.X509_verify(cert, key) == 1:
                        return True
        return False
    finally:
        for x509 in parsed_roots + parsed_chain:
            if x509:
                o.X509_free(x509)
        o.ERR_clear_error()


def _d2i(der: bytes) -> int:
    cursor = ctypes.c_void_p(ctypes.cast(ctypes.c_char_p(der), ctypes.c_void_p).value)
    return o.d2i_X509(None, ctypes.byref(cursor), len(der)) or 0


class Connection:
    """The `connection` resource: one engine, fed and drained by the guest."""

    def __init__(self, iface: "Memory", engine: Any, role: str, settings: dict, narrow_roots: tuple[bytes, ...]):
        self.iface = iface
        self.engine = engine
        self.role = role
        self.settings = settings
        self.narrow_roots = narrow_roots  # the guest's roots, when they only narrow the host's trust
        self.started = time.monotonic()
        self.handshake_seconds: float | None = None
        self.error: dict | None = None
        self.ended: str | None = None
        self.shutdown_sent = False
        self._buffer = bytearray()
        iface.live.add(self)

    # -- feeding and draining ----------------------------------------------------------------
    def _feed(self, incoming: bytes) -> None:
        if incoming:
            self.engine.receive_data(bytes(incoming))

    def _out(self) -> bytes:
        return self.engine.data_to_send()

    def receive_eof(self) -> None:
        self.engine.receive_data(b"")

    def _fail(self, error: dict) -> dict:
        if self.error is None:
            self.error = error
        return self.error

    # -- handshake ---------------------------------------------------------------------------
    def handshake(self, incoming: bytes) -> tuple:
        self._feed(incoming)
        engine = self.engine
        if self.error is not None:
            return self._out(), Err(self.error)
        if isinstance(engine.paused, E.ClientHelloReceived):
            engine.resume()  # the guest has seen the ClientHello (and reconfigured, if it wanted)
        while True:
            event = engine.next_event()
            if event is None and engine.paused is None and engine.handshake_complete:
                return self._out(), "complete"
            if isinstance(event, E.NeedData) or event is None:
                if engine.handshake_complete:
                    return self._out(), "complete"
                return self._out(), Err(_error("want-read"))
            if isinstance(event, E.ClientHelloReceived):
                return self._out(), "client-hello"
            if isinstance(event, E.ServerIdentityReceived):
                if _chain_passes_through(event.identity.export_x509_chain(), self.narrow_roots):
                    engine.verify_accept()
                    continue
                reason = "the guest's roots: the server's chain leads to none of the CAs the guest loaded"
                engine.abort()
                return self._out(), Err(self._fail(_failure(reason)))
            if isinstance(event, E.ClientIdentityReceived):
                if self.narrow_roots and event.identity is not None and not _chain_passes_through(
                        event.identity.export_x509_chain(), self.narrow_roots):
                    engine.abort()
                    reason = "the guest's roots: the client's chain leads to none of the CAs the guest loaded"
                    return self._out(), Err(self._fail(_failure(reason)))
                continue
            if isinstance(event, E.HandshakeComplete):
                self.handshake_seconds = time.monotonic() - self.started
                return self._out(), "complete"
            if isinstance(event, E.Failed):
                return self._out(), Err(self._fail(_failure(event.reason)))
            if isinstance(event, E.PeerClosed):
                return self._out(), Err(self._fail(_failure("peer closed the connection during the handshake")))
            if isinstance(event, E.ClientIdentityRequested):  # not asked for: the engine never pauses here
                continue

    def reconfigure(self, settings: dict) -> None:
        if not isinstance(self.engine.paused, E.ClientHelloReceived):
            raise Err(_error("refused", "reconfigure is only possible at the ClientHello"))
        try:
            self.iface._server_engine(settings, stop=False, existing=self.engine)
        except (ValueError, E.TLSUsageError) as e:
            raise Err(_error("refused", str(e))) from None
        self.settings = settings
        self.narrow_roots = self.iface._narrow_roots(settings)

    # -- application data --------------------------------------------------------------------
    def read(self, incoming: bytes, max: int) -> tuple:
        self._feed(incoming)
        engine = self.engine
        data = self._decrypt(max)
        if data:
            return self._out(), data
        while True:
            event = engine.next_event()
            if event is None:
                data = self._decrypt(max)
                if data:
                    return self._out(), data
                return self._out(), Err(_error("want-read"))
            if isinstance(event, E.NeedData):
                return self._out(), Err(_error("want-read"))
            if isinstance(event, E.PeerClosed):
                if event.clean:
                    return self._out(), Err(_error("zero-return", "TLS/SSL connection has been closed (EOF)"))
                return self._out(), Err(_error("eof", "EOF occurred in violation of protocol",
                                                "UNEXPECTED_EOF_WHILE_READING"))
            if isinstance(event, E.Failed):
                return self._out(), Err(self._fail(_failure(event.reason)))
            # post-handshake events (a client identity received): nothing for the guest to do

    def _decrypt(self, max: int) -> memoryview | bytes:
        """What the engine can decrypt now, up to `max` (at most 1 MiB): a view of a buffer reused
        by the next read (lowering copies it into guest memory at once)."""
        limit = min(max, _READ_MAX)
        if limit <= 0:
            return b""
        if len(self._buffer) < limit:  # grown to what reads ask for: small readers stay small
            self._buffer = bytearray(limit)
        view = memoryview(self._buffer)[:limit]
        n = self.engine.read_plaintext_into(view) if self.engine.handshake_complete else 0
        return view[:n] if n else b""

    def write(self, incoming: bytes, data: bytes) -> tuple:
        self._feed(incoming)
        if self.error is not None:
            return self._out(), Err(self.error)
        try:
            taken = self.engine.send_plaintext(data)
        except E.TLSUsageError as e:
            return self._out(), Err(_error("protocol", str(e)))
        if not taken and data:
            return self._out(), Err(self._fail(_failure(self.engine.failure or "TLS error")))
        return self._out(), taken

    def shutdown(self, incoming: bytes) -> tuple:
        self._feed(incoming)
        engine = self.engine
        if not self.shutdown_sent:
            self.shutdown_sent = True
            engine.close()
        while True:
            event = engine.next_event()
            if isinstance(event, E.PeerClosed):
                return self._out(), None
            if isinstance(event, E.Failed):
                return self._out(), Err(self._fail(_failure(event.reason)))
            if event is None:
                engine.read_plaintext()  # data after our close_notify is discarded
                continue
            if isinstance(event, E.NeedData):
                return self._out(), Err(_error("want-read"))

    def pending(self) -> int:
        return 0  # read() always hands over everything decrypted (up to max); nothing is held back

    def facts(self) -> dict:
        e = self.engine
        done = e.handshake_complete
        local = e.local_identity
        return {
            "handshake-complete": done,
            "protocol": e.protocol_name if done else None,
            "cipher": e.cipher_suite_name if done else None,
            "alpn-id": e.alpn_id if done else None,
            "server-name": e.server_name,
            "peer-chain": e.peer_identity.export_x509_chain() if done and e.peer_identity else [],
            "local-chain": local.public_identity().export_x509_chain() if local is not None else [],
        }

    # -- end ---------------------------------------------------------------------------------
    def drop(self) -> None:
        self._end("dropped by the guest")
        self.engine.release()

    def _end(self, otherwise: str) -> None:
        if self.ended is not None:
            return
        if self.error is not None and self.error["kind"] not in ("want-read", "zero-return"):
            how = f"failed: {self.error['reason']}"
        elif self.shutdown_sent:
            how = "closed by us (close_notify sent)"
        else:
            how = otherwise
        self.ended = how
        trace = self.iface.ctx.tls.trace
        if trace is None:
            return
        from ..tls.connection import _names  # the trace line's format is the tls interfaces' own

        e = self.engine
        subject = issuer = "-"
        if e.handshake_complete and e.peer_identity is not None:
            subject, issuer = _names(e.peer_identity.export_x509_chain()[0])
        hs = "-" if self.handshake_seconds is None else f"{self.handshake_seconds * 1000:.1f}ms"
        role = "role=client " if self.role == "client" else "role=server "
        trace(f"tls: api=memory {role}server={e.server_name or '-'} version={e.protocol_name or '-'}"
              f" cipher={e.cipher_suite_name or '-'} subject={subject!r} issuer={issuer!r}"
              f" sent={e.bytes_sent} received={e.bytes_received} handshake={hs} ended={how}")


class Memory(HostInterface):
    wit = "wasitls:tls/memory@0.1.0"
    resources = {"connection": Connection}

    def __init__(self, ctx: WasiCtx):
        self.ctx = ctx
        self.live: weakref.WeakSet[Connection] = weakref.WeakSet()
        self._cache: _TrustCache | None = None
        # trace lines for connections still open when the guest ends
        ctx.extras.setdefault("closers", []).append(self._end_all)

    def _end_all(self) -> None:
        for conn in list(self.live):
            conn._end("still open when the guest exited")

    @property
    def tls(self) -> Any:
        return self.ctx.tls

    def _trust(self) -> _TrustCache:
        if self._cache is None:
            self._cache = _TrustCache(self.tls)
        return self._cache

    def policy(self) -> dict:
        return {"may-skip-verification": bool(getattr(self.tls, "guest_insecure", False)),
                "may-replace-roots": getattr(self.tls, "guest_roots", "narrow") == "own"}

    def _narrow_roots(self, settings: dict) -> tuple[bytes, ...]:
        if self.policy()["may-replace-roots"]:
            return ()
        return tuple(bytes(r) for r in settings["roots"])

    def _versions(self, settings: dict) -> tuple[int | None, int | None]:
        try:
            return _VERSIONS[settings["min-version"]], _VERSIONS[settings["max-version"]]
        except KeyError:
            raise Err(_error("refused", "TLS versions are TLS 1.2 (0x0303) and TLS 1.3 (0x0304)")) from None

    def _own_trust(self, settings: dict) -> TrustStore | None:
        roots = tuple(bytes(r) for r in settings["roots"])
        if not roots or not self.policy()["may-replace-roots"]:
            return None
        try:
            return self._trust().store(roots)
        except TrustError as e:
            raise Err(_error("refused", str(e))) from None

    def connection_client(self, settings: dict) -> Connection:
        policy = self.policy()
        verify = settings["verify-mode"] != "none"
        if not policy["may-skip-verification"]:
            if not verify:
                raise Err(_error("refused", "this host does not let guests turn off certificate verification "
                                            "(verify_mode=CERT_NONE); run it with --tls-guest-insecure to allow it"))
            if not settings["check-hostname"]:
                raise Err(_error("refused", "this host does not let guests turn off host name checks "
                                            "(check_hostname=False); run it with --tls-guest-insecure to allow it"))
        min_v, max_v = self._versions(settings)
        config = self._trust().config(self._own_trust(settings), min_v, max_v)
        narrow = self._narrow_roots(settings)
        identity = settings["identity"]
        try:
            engine = E.ClientEngine(
                config, settings["server-name"], alpn_ids=settings["alpn-ids"],
                pause_on_verify=bool(narrow) and verify,
                client_identity=identity.inner if identity is not None else None,
                verify_peer=verify, check_name=settings["check-hostname"] and verify,
            )
        except ValueError as e:
            raise Err(_error("refused", str(e))) from None
        return Connection(self, engine, "client", settings, narrow if verify else ())

    def _server_engine(self, settings: dict, *, stop: bool, existing: Any = None) -> Any:
        identity = settings["identity"]
        identities = [identity.inner] if identity is not None else []
        own = self._own_trust(settings)
        client_trust = own if own is not None else self.tls.client_trust
        if existing is None:
            min_v, max_v = self._versions(settings)
            engine = E.ServerEngine(self._trust().config(None, min_v, max_v), identities=identities,
                                    alpn_ids=settings["alpn-ids"], pause_on_client_hello=stop,
                                    client_trust=client_trust)
        else:
            engine = existing
            engine.configure_server_identities(identities)
            engine.configure_alpn_ids(settings["alpn-ids"])
            engine.client_trust = client_trust
        if settings["verify-mode"] != "none":
            engine.request_client_identity(required=settings["verify-mode"] == "required")
        return engine

    def connection_server(self, settings: dict, stop_at_client_hello: bool) -> Connection:
        try:
            engine = self._server_engine(settings, stop=stop_at_client_hello)
        except ValueError as e:
            raise Err(_error("refused", str(e))) from None
        return Connection(self, engine, "server", settings, self._narrow_roots(settings))


__all__ = ["Memory", "Connection", "PrivateIdentity", "PublicIdentity"]
