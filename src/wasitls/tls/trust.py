"""Which certificate authorities the TLS engine trusts.

A `TrustStore` owns one OpenSSL X509_STORE, built once and shared by every connection that uses it
(building the system store parses a few hundred certificates, which must not happen per connection).
"""

from __future__ import annotations

import ctypes
import os
import re
import ssl
import threading
import weakref

from ..inputfiles import read_input
from . import openssl as o


class TrustError(ValueError):
    """A trust configuration that cannot be used (missing file, no certificate in it)."""


def _free(store: int, roots: list[int]) -> None:
    o.X509_STORE_free(store)
    for x509 in roots:
        o.X509_free(x509)


# the PEM labels PEM_read_bio_X509 reads; counted to tell a damaged block from the end of the text
_CERTIFICATE_BLOCK = re.compile(rb"-----BEGIN (?:X509 )?CERTIFICATE-----")


def parse_pem_certificates(data: bytes) -> list[int]:
    """Every CERTIFICATE block of a PEM text as owned X509* pointers; other blocks are skipped.
    ValueError when a CERTIFICATE block is damaged (bad base64, not an X.509 certificate)."""
    bio = o.BIO_new_mem_buf(data, len(data))  # borrows `data`, which outlives the BIO
    certs: list[int] = []
    try:
        o.ERR_clear_error()
        while True:
            x509 = o.PEM_read_bio_X509(bio, None, None, None)
            if not x509:
                break
            certs.append(x509)
    finally:
        o.BIO_free(bio)
        # The loop always ends on "no start line", or earlier on a damaged block.
        o.ERR_clear_error()
    blocks = len(_CERTIFICATE_BLOCK.findall(data))
    if len(certs) < blocks:
        for x509 in certs:
            o.X509_free(x509)
        raise ValueError(f"PEM certificate block {len(certs) + 1} of {blocks} is damaged (not a valid certificate)")
    return certs


def _system_bundle() -> tuple[str, bool]:
    """(description, use OpenSSL's default paths) — certifi's bundle when the system has no roots."""
    paths = ssl.get_default_verify_paths()
    if paths.cafile:
        return f"system roots ({paths.cafile})", True
    if paths.capath and any(name.endswith(".0") for name in os.listdir(paths.capath)):
        return f"system roots ({paths.capath})", True
    import certifi  # only needed on systems without a CA store

    return f"certifi roots ({certifi.where()})", False


class TrustStore:
    """A set of trusted root certificates, used to verify servers (client side) or clients (server side)."""

    _system: TrustStore | None = None
    _system_lock = threading.Lock()

    def __init__(self, store: int, description: str, roots: list[int]):
        self._store = store
        self._roots = roots  # owned X509* of an explicit store: their names go into CertificateRequest
        self.description = description
        weakref.finalize(self, _free, store, roots)

    @classmethod
    def system(cls) -> TrustStore:
        """The platform's roots (honours SSL_CERT_FILE / SSL_CERT_DIR), or certifi's when it has none."""
        with cls._system_lock:
            if cls._system is None:
                description, default_paths = _system_bundle()
                store = o.X509_STORE_new()
                o.ERR_clear_error()
                if default_paths:
                    ok = o.X509_STORE_set_default_paths(store)
                else:
                    import certifi

                    ok = o.X509_STORE_load_file(store, os.fsencode(certifi.where()))
                o.ERR_clear_error()
                if not ok:
                    o.X509_STORE_free(store)
                    raise TrustError(f"cannot load {description}")
                cls._system = cls(store, description, [])
            return cls._system

    @classmethod
    def from_pem(cls, data: bytes, *, description: str = "PEM roots") -> TrustStore:
        """Exactly the CERTIFICATE blocks in `data`, nothing from the system."""
        try:
            roots = parse_pem_certificates(bytes(data))
        except ValueError as e:
            raise TrustError(f"{description}: {e}") from None
        if not roots:
            raise TrustError(f"{description}: no PEM certificate found")
        store = o.X509_STORE_new()
        for x509 in roots:
            o.X509_STORE_add_cert(store, x509)  # the store takes its own reference
        o.ERR_clear_error()
        return cls(store, f"{description} ({len(roots)} roots)", roots)

    @classmethod
    def from_pem_file(cls, path: str | os.PathLike) -> TrustStore:
        """Exactly the roots of a `ca_file` PEM bundle."""
        try:
            data = read_input(path)
        except OSError as exc:
            raise TrustError(f"cannot read CA file {os.fspath(path)!r}: {exc.strerror}") from exc
        return cls.from_pem(data, description=f"CA file {os.fspath(path)!r}")

    @property
    def x509_store(self) -> int:
        return self._store

    def add_client_ca_names(self, ssl_ptr: int) -> None:
        """Advertise these roots' names in a server's CertificateRequest (never the system's hundreds)."""
        for x509 in self._roots:
            o.SSL_add_client_CA(ssl_ptr, x509)

    def __repr__(self) -> str:
        return f"TrustStore({self.description})"


def chain_passes_through(chain: list[bytes], roots: list[bytes] | tuple[bytes, ...]) -> bool:
    """Whether a chain (DER, already verified against some trust) contains one of `roots` or a
    certificate one of them signed: how roots a guest loads narrow the host's trust."""
    if any(der in roots for der in chain):
        return True
    parsed_roots = [_d2i(der) for der in roots]
    parsed_chain = [_d2i(der) for der in chain]
    try:
        for cert in filter(None, parsed_chain):
            for root in filter(None, parsed_roots):
                if o.X509_check_issued(root, cert) == 0:  # X509_V_OK: names and key ids match
                    key = o.X509_get0_pubkey(root)
                    if key and o.X509_verify(cert, key) == 1:
                        return True
        return False
    finally:
        for x509 in filter(None, parsed_roots + parsed_chain):
            o.X509_free(x509)
        o.ERR_clear_error()


def _d2i(der: bytes) -> int:
    cursor = ctypes.c_void_p(ctypes.cast(ctypes.c_char_p(der), ctypes.c_void_p).value)
    return o.d2i_X509(None, ctypes.byref(cursor), len(der)) or 0
