"""wasi:http's `error-code` variant, made from what the layers below report (DNS, sockets, TLS, HTTP).

Each constructor returns the plain value the canonical ABI lowers (a Variant, records as dicts).
`HttpFailure` carries an error-code through wasi:io (`stream-error.last-operation-failed`), so that
`http-error-code` can recover it from the io `error` resource.
"""

from __future__ import annotations

import errno as E
import socket
from typing import Any

from ..component.values import Variant
from ..wasi.io.error import IoError

# TLS alert descriptions (RFC 8446 6.2, as OpenSSL names them) -> alert number
TLS_ALERTS = {
    "close notify": 0, "unexpected_message": 10, "unexpected message": 10, "bad record mac": 20,
    "decryption failed": 21, "record overflow": 22, "decompression failure": 30, "handshake failure": 40,
    "no certificate": 41, "bad certificate": 42, "unsupported certificate": 43, "certificate revoked": 44,
    "certificate expired": 45, "certificate unknown": 46, "illegal parameter": 47, "unknown CA": 48,
    "access denied": 49, "decode error": 50, "decrypt error": 51, "export restriction": 60,
    "protocol version": 70, "insufficient security": 71, "internal error": 80,
    "inappropriate fallback": 86, "user canceled": 90, "no renegotiation": 100, "missing extension": 109,
    "unsupported extension": 110, "certificate unobtainable": 111, "unrecognized name": 112,
    "bad certificate status response": 113, "bad certificate hash value": 114, "unknown PSK identity": 115,
    "certificate required": 116, "no application protocol": 120,
}


def code(case: str, payload: Any = None) -> Variant:
    return Variant(case, payload)


def internal(message: str | None) -> Variant:
    return Variant("internal-error", message)


def dns_error(rcode: str | None, info_code: int | None = None) -> Variant:
    return Variant("DNS-error", {"rcode": rcode, "info-code": info_code})


def from_gaierror(e: socket.gaierror) -> Variant:
    """getaddrinfo's failure: no such name is NXDOMAIN, a temporary failure SERVFAIL (RFC 1035 rcodes)."""
    if e.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)):
        return dns_error("NXDOMAIN")
    if e.errno in (socket.EAI_AGAIN, socket.EAI_FAIL):
        return dns_error("SERVFAIL")
    return dns_error(None)


def from_connect_errno(n: int) -> Variant:
    """A failed TCP connect."""
    if n == E.ECONNREFUSED:
        return Variant("connection-refused")
    if n == E.ETIMEDOUT:
        return Variant("connection-timeout")
    if n in (E.ENETUNREACH, E.EHOSTUNREACH, E.EADDRNOTAVAIL):
        return Variant("destination-IP-unroutable")
    if n in (E.EHOSTDOWN,):
        return Variant("destination-unavailable")
    if n in (E.EACCES, E.EPERM):
        return Variant("destination-IP-prohibited")
    return internal(f"connect failed: {E.errorcode.get(n, n)}")


def from_tls_failure(reason: str) -> Variant:
    """The TLS engine's failure reason, in words, as the variant's TLS cases."""
    if reason.startswith("peer sent alert: "):
        name = reason[len("peer sent alert: "):]
        return Variant("TLS-alert-received", {"alert-id": TLS_ALERTS.get(name), "alert-message": name})
    if "certificate verify failed" in reason or "mismatch" in reason:
        return Variant("TLS-certificate-error")
    if "reset" in reason or "closed the connection" in reason:
        return Variant("connection-terminated")
    return Variant("TLS-protocol-error")


class HttpFailure(IoError):
    """An io `error` that carries an HTTP error-code (for `http-error-code`)."""

    def __init__(self, error_code: Variant, message: str | None = None):
        super().__init__(message or describe(error_code))
        self.error_code = error_code


def describe(error_code: Variant) -> str:
    """One line for a person (the trace, a refused request's log line)."""
    case, payload = error_code
    if payload is None:
        return case
    if isinstance(payload, dict):
        inner = ", ".join(f"{k}={v!r}" for k, v in payload.items() if v is not None)
        return f"{case}({inner})"
    return f"{case}({payload!r})"
