"""TLS settings of one host: trust anchors, host-held identities, trace and key log; built once."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from .trust import TrustError, TrustStore


class TlsConfigError(ValueError):
    """A bad TLS option (unreadable CA file, malformed identity): one line for the person who gave it."""


class KeyLog:
    """NSS key-log lines appended to a file, one connection's secrets per line, as Wireshark reads them."""

    def __init__(self, path: str):
        self.path = path
        self.lock = threading.Lock()
        try:
            self.file = open(path, "a", buffering=1)
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
        from .engine import TLSConfig

        self.trust = trust
        self.trace = trace
        self.keylog = keylog
        self.identities = identities
        self.client_trust = client_trust
        self.client_config = TLSConfig(trust, keylog=keylog)  # one OpenSSL context for every client

    def client_engine(self, server_name: str, **options: Any) -> Any:
        from .engine import ClientEngine

        return ClientEngine(self.client_config, server_name, **options)


def _parse_identities(identities: Mapping[str, tuple[str, ...]] | Iterable[str]) -> dict[str, Any]:
    """`NAME=KEY.pem,CERT.pem[,PASSPHRASE_FILE]` specs (or a mapping NAME -> (key, cert[, passfile]))."""
    from .identity import IdentityError, PrivateIdentity

    specs: list[tuple[str, list[str]]] = []
    if isinstance(identities, Mapping):
        specs = [(name, [str(f) for f in files]) for name, files in identities.items()]
    else:
        for spec in identities:
            name, sep, files = spec.partition("=")
            parts = files.split(",")
            if not (sep and name and len(parts) in (2, 3) and all(parts)):
                raise TlsConfigError(f"--identity {spec!r}: expected NAME=KEY.pem,CERT.pem[,PASSPHRASE_FILE]")
            specs.append((name, parts))
    out = {}
    for name, files in specs:
        if len(files) not in (2, 3):
            raise TlsConfigError(f"identity {name!r}: expected key, certificate[, passphrase file]")
        try:
            key_data, cert_data = (Path(f).read_bytes() for f in files[:2])
            # The passphrase file's content, without a final newline, is the passphrase.
            passphrase = Path(files[2]).read_bytes().rstrip(b"\r\n") if len(files) == 3 else None
        except OSError as e:
            raise TlsConfigError(f"identity {name!r}: {e.filename}: {e.strerror}") from None
        try:
            out[name] = PrivateIdentity.parse(key_data, cert_data, passphrase)
        except IdentityError as e:
            raise TlsConfigError(f"identity {name!r}: {e}") from None
    return out


def build_tls_config(*, ca_file: str | None = None, trace: bool | Callable[[str], None] = False,
                     keylog: str | None = None, identities: Any = (), client_ca_file: str | None = None) -> TlsSettings:
    try:
        trust = TrustStore.from_pem_file(ca_file) if ca_file else TrustStore.system()
        client_trust = TrustStore.from_pem_file(client_ca_file) if client_ca_file else None
    except (TrustError, OSError) as e:
        raise TlsConfigError(str(e)) from None
    trace_fn = _stderr_trace if trace is True else (trace or None)
    return TlsSettings(trust=trust, trace=trace_fn, keylog=KeyLog(os.fspath(keylog)) if keylog else None,
                       identities=_parse_identities(identities), client_trust=client_trust)
