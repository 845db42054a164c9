"""TLS settings of one host: trust anchors, host-held identities, trace and key log; built once.

A host builds them lazily (`build_tls_config(..., lazy=True)`): loading the system trust store and
OpenSSL costs ~30 ms, which a guest that never uses TLS should not pay at every start. Every file the
person named (--ca-file, --client-ca-file, --identity) is read and parsed in full before the guest
runs, so a bad one is one line up front naming it; only the system store waits for the first TLS use.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

from ..inputfiles import open_output_append, read_input

if TYPE_CHECKING:
    from .trust import TrustStore


class TlsConfigError(ValueError):
    """A bad TLS option (unreadable CA file, malformed identity): one line for the person who gave it."""


class KeyLog:
    """NSS key-log lines appended to a file, one connection's secrets per line, as Wireshark reads them."""

    def __init__(self, path: str):
        self.path = path
        self.lock = threading.Lock()
        try:
            self.file = open_output_append(path)
        except OSError as e:
            raise TlsConfigError(f"--tls-keylog {path}: {e.strerror}") from None

    def __call__(self, line: str) -> None:
        with self.lock:
            self.file.write(line.rstrip("\n") + "\n")


def _stderr_trace(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class TlsSettings:
    def __init__(self, *, trust: TrustStore, trace: Callable[[str], None] | None, keylog: KeyLog | None,
                 identities: dict[str, Any], client_trust: TrustStore | None):
        from .engine import EngineConfig

        self.trust = trust
        self.trace = trace
        self.keylog = keylog
        self.identities = identities
        self.client_trust = client_trust
        # the engines' config (one SSL_CTX per role) for every connection: clients and, despite
        # the name, servers too
        self.client_config = EngineConfig(trust, keylog=keylog)

    def client_engine(self, server_name: str, *, config: Any = None, **options: Any) -> Any:
        """`config`: an EngineConfig of other trust or versions than the host's (memory TLS)."""
        from .engine import ClientEngine

        return ClientEngine(config or self.client_config, server_name, **options)

    def server_engine(self, *, config: Any = None, **options: Any) -> Any:
        from .engine import ServerEngine

        # Client certificates are checked against --client-ca-file, else the host's TLS trust.
        options.setdefault("client_trust", self.client_trust)
        return ServerEngine(config or self.client_config, **options)


class LazyTlsSettings(TlsSettings):
    """TlsSettings whose trust stores, identities and client context are built on first use.

    `trace` and `keylog` are set at once; the first access to any other attribute builds them all
    (a bad file found only then raises TlsConfigError, naming it, inside the TLS call that needed it).
    """

    _LAZY = frozenset({"trust", "identities", "client_trust", "client_config"})

    def __init__(self, *, build: Callable[[], dict[str, Any]], trace: Callable[[str], None] | None,
                 keylog: KeyLog | None):
        self.trace = trace
        self.keylog = keylog
        self._build = build
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:  # only called for attributes not yet set
        if name not in LazyTlsSettings._LAZY:
            raise AttributeError(name)
        with self._lock:
            if "client_config" not in self.__dict__:
                from .engine import EngineConfig

                built = self._build()
                built["client_config"] = EngineConfig(built["trust"], keylog=self.keylog)
                self.__dict__.update(built)  # all at once: a failed build is tried again next time
        return self.__dict__[name]


def _read_pem_file(option: str, path: str, marker: bytes) -> bytes:
    """The cheap part of validating a PEM file: it can be read and holds a block of the right kind."""
    try:
        data = read_input(path)
    except OSError as e:
        raise TlsConfigError(f"{option} {path}: {e.strerror}") from None
    if marker not in data:
        raise TlsConfigError(f"{option} {path}: no PEM certificate found")
    return data


def _load_trust_file(option: str, path: str) -> TrustStore:
    """Exactly the roots of a CA file, every block parsed: a damaged one is one line naming the file."""
    from .trust import TrustError, TrustStore

    data = _read_pem_file(option, path, b"CERTIFICATE-----")
    try:
        return TrustStore.from_pem(data, description=f"{option} {path}")
    except TrustError as e:
        raise TlsConfigError(str(e)) from None


IDENTITY_FORMS = "NAME=KEY.pem,CERT.pem[,PASSPHRASE_FILE] or NAME=pkcs11:URI,CERT.pem"


def _parse_identities(identities: Mapping[str, tuple[str, ...]] | Iterable[str], *,
                      pkcs11_module: str | None = None, pkcs11_pin_file: str | None = None) -> dict[str, Any]:
    """`NAME=KEY.pem,CERT.pem[,PASSPHRASE_FILE]` or `NAME=pkcs11:URI,CERT.pem` specs (or a mapping
    NAME -> (key, cert[, passfile]) / (pkcs11 URI, cert))."""
    from .identity import IdentityError, PrivateIdentity
    from .pkcs11 import is_token_uri

    specs: list[tuple[str, list[str]]] = []
    if isinstance(identities, Mapping):
        specs = [(name, [str(f) for f in files]) for name, files in identities.items()]
    else:
        for spec in identities:
            name, sep, files = spec.partition("=")
            if is_token_uri(files):
                # a URI may hold commas (RFC 7512 allows them unescaped): the certificate follows the last
                uri, comma, cert = files.rpartition(",")
                parts = [uri, cert] if comma else [files]
            else:
                parts = files.split(",")
            if not (sep and name and len(parts) in (2, 3) and all(parts)):
                raise TlsConfigError(f"--identity {spec!r}: expected {IDENTITY_FORMS}")
            specs.append((name, parts))
    out = {}
    for name, files in specs:
        if files and is_token_uri(files[0]):
            out[name] = _token_identity(name, files, pkcs11_module, pkcs11_pin_file)
            continue
        if len(files) not in (2, 3):
            raise TlsConfigError(f"identity {name!r}: expected key, certificate[, passphrase file]")
        try:
            key_data, cert_data = (read_input(f) for f in files[:2])
            # The passphrase file's content, without a final newline, is the passphrase.
            passphrase = read_input(files[2]).rstrip(b"\r\n") if len(files) == 3 else None
        except OSError as e:
            raise TlsConfigError(f"identity {name!r}: {e.filename}: {e.strerror}") from None
        try:
            out[name] = PrivateIdentity.parse(key_data, cert_data, passphrase)
        except IdentityError as e:
            raise TlsConfigError(f"identity {name!r}: {e}") from None
    return out


def _token_identity(name: str, parts: list[str], module: str | None, pin_file: str | None) -> Any:
    """An identity whose key a PKCS#11 token holds; module: the URI's module-path, else --pkcs11-module,
    else $WASITLS_PKCS11_MODULE; PIN: the URI's pin-source file, else --pkcs11-pin-file."""
    from .pkcs11 import TokenError, parse_uri, redacted, token_identity

    if len(parts) != 2:
        raise TlsConfigError(f"identity {name!r}: expected pkcs11:URI,CERT.pem (the PIN comes from a file: "
                             "pin-source=file:... in the URI or --pkcs11-pin-file)")
    try:
        uri = parse_uri(parts[0])
        module = uri.module_path or module or os.environ.get("WASITLS_PKCS11_MODULE")
        if not module:
            raise TokenError("no PKCS#11 module: give --pkcs11-module PATH (or WASITLS_PKCS11_MODULE, or "
                             "module-path= in the URI)")
        pin_path = uri.pin_source or pin_file
        if not pin_path:
            raise TokenError("no PIN for the token: give --pkcs11-pin-file FILE (or pin-source=file:FILE in the URI)")
        try:
            # the file's content, without a final newline, is the PIN
            pin = read_input(pin_path).rstrip(b"\r\n")
            cert_data = read_input(parts[1])
        except OSError as e:
            raise TlsConfigError(f"identity {name!r}: {e.filename}: {e.strerror}") from None
        if not pin:
            raise TokenError(f"the PIN file {pin_path} is empty")
        return token_identity(uri, cert_data, module=module, pin=pin)
    except TlsConfigError:
        raise
    except TokenError as e:
        raise TlsConfigError(f"identity {name!r}: {redacted(parts[0])}: {e}") from None
    except ValueError as e:  # IdentityError: the certificate, or a certificate that is not the key's
        raise TlsConfigError(f"identity {name!r}: {parts[0]} with {parts[1]}: {e}") from None


def _system_trust() -> TrustStore:
    from .trust import TrustError, TrustStore

    try:
        return TrustStore.system()
    except TrustError as e:
        raise TlsConfigError(str(e)) from None


def build_tls_config(*, ca_file: str | None = None, trace: bool | Callable[[str], None] = False,
                     keylog: str | None = None, identities: Any = (), client_ca_file: str | None = None,
                     pkcs11_module: str | None = None, pkcs11_pin_file: str | None = None,
                     lazy: bool = False) -> TlsSettings:
    """The host's TLS settings; `lazy` defers loading the system trust store (and OpenSSL, when no
    TLS file was given) to the first TLS use."""
    trace_fn = _stderr_trace if trace is True else (trace or None)
    # Files the person named are parsed now, every block (only those who give one pay for OpenSSL):
    # a damaged CA file or a key that does not match its certificate stops the host before the guest
    # runs, instead of surfacing as a bare error value at the first TLS call.
    ca_trust = _load_trust_file("--ca-file", ca_file) if ca_file else None
    client_trust = _load_trust_file("--client-ca-file", client_ca_file) if client_ca_file else None
    parsed = (_parse_identities(identities, pkcs11_module=pkcs11_module, pkcs11_pin_file=pkcs11_pin_file)
              if identities else {})
    keylog_now = KeyLog(os.fspath(keylog)) if keylog else None
    if lazy:
        def build() -> dict[str, Any]:
            return {"trust": ca_trust or _system_trust(), "client_trust": client_trust, "identities": parsed}

        return LazyTlsSettings(build=build, trace=trace_fn, keylog=keylog_now)
    return TlsSettings(trust=ca_trust or _system_trust(), trace=trace_fn, keylog=keylog_now,
                       identities=parsed, client_trust=client_trust)
