"""TLS identities: a private key with its certificate chain, and the public chain alone.

These are `private-identity` and `public-identity` of the draft wasi:tls API. Parsing accepts what
people have on disk: PEM or DER keys (PKCS#8, PKCS#1, SEC1, encrypted with a passphrase) and PEM
bundles or DER certificates; anything malformed becomes an `IdentityError` saying what is wrong.
"""

from __future__ import annotations

import ctypes
import threading
import weakref
from collections.abc import Sequence

from . import openssl as o
from .trust import parse_pem_certificates


class IdentityError(ValueError):
    """Key or certificate data that cannot form an identity."""


class PublicIdentity:
    """An X.509 chain: the end-entity certificate first, then intermediates, all DER."""

    def __init__(self, chain: Sequence[bytes]):
        self._chain = tuple(bytes(c) for c in chain)

    def export_x509_chain(self) -> list[bytes]:
        return list(self._chain)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PublicIdentity) and other._chain == self._chain

    def __hash__(self) -> int:
        return hash(self._chain)

    def __repr__(self) -> str:
        return f"PublicIdentity({len(self._chain)} certificates)"


# The passphrase callback runs inside PEM_read_bio_PrivateKey on the calling thread.
_passphrase = threading.local()


@o.PemPasswordCallback
def _passphrase_callback(buf, size, rwflag, u):
    _passphrase.asked = True
    secret = getattr(_passphrase, "value", None)
    if secret is None or len(secret) > size:
        return -1  # never fall back to OpenSSL's terminal prompt
    ctypes.memmove(buf, secret, len(secret))
    return len(secret)


def _parse_private_key(data: bytes, passphrase: bytes | None) -> int:
    _passphrase.value = passphrase
    _passphrase.asked = False
    o.ERR_clear_error()
    try:
        if b"-----BEGIN" in data:
            bio = o.BIO_new_mem_buf(data, len(data))
            try:
                key = o.PEM_read_bio_PrivateKey(bio, None, _passphrase_callback, None)
            finally:
                o.BIO_free(bio)
        else:
            cursor = ctypes.c_void_p(ctypes.cast(ctypes.c_char_p(data), ctypes.c_void_p).value)
            key = o.d2i_AutoPrivateKey(None, ctypes.byref(cursor), len(data))  # PKCS#8, PKCS#1, SEC1
            if not key:
                bio = o.BIO_new_mem_buf(data, len(data))
                try:
                    key = o.d2i_PKCS8PrivateKey_bio(bio, None, _passphrase_callback, None)  # encrypted
                finally:
                    o.BIO_free(bio)
        asked = _passphrase.asked
    finally:
        _passphrase.value = None
        o.ERR_clear_error()
    if key:
        return key
    if asked and passphrase is None:
        raise IdentityError("the private key is encrypted: a passphrase is needed")
    if asked:
        raise IdentityError("cannot decrypt the private key: wrong passphrase")
    raise IdentityError("cannot parse the private key (expected PEM or DER: PKCS#8, PKCS#1 or SEC1)")


def _parse_certificates(chain: bytes | Sequence[bytes]) -> list[int]:
    blobs = [chain] if isinstance(chain, (bytes, bytearray, memoryview)) else list(chain)
    certs: list[int] = []
    try:
        for index, blob in enumerate(blobs):
            blob = bytes(blob)
            if b"-----BEGIN" in blob:
                try:
                    found = parse_pem_certificates(blob)
                except ValueError as e:
                    raise IdentityError(f"certificate {index}: no valid PEM CERTIFICATE block ({e})") from None
                if not found:
                    raise IdentityError(f"certificate {index}: no valid PEM CERTIFICATE block")
                certs.extend(found)
                continue
            cursor = ctypes.c_void_p(ctypes.cast(ctypes.c_char_p(blob), ctypes.c_void_p).value)
            start = cursor.value
            x509 = o.d2i_X509(None, ctypes.byref(cursor), len(blob))
            o.ERR_clear_error()
            if not x509:
                raise IdentityError(f"certificate {index}: not a DER or PEM X.509 certificate")
            certs.append(x509)
            if cursor.value - start != len(blob):
                raise IdentityError(f"certificate {index}: trailing bytes after the DER certificate")
        if not certs:
            raise IdentityError("the certificate chain is empty")
    except BaseException:
        for x509 in certs:
            o.X509_free(x509)
        raise
    return certs


def _free(key: int, certs: list[int]) -> None:
    o.EVP_PKEY_free(key)
    for x509 in certs:
        o.X509_free(x509)


class PrivateIdentity:
    """A private key with its certificate chain (end-entity first). The key never leaves OpenSSL."""

    def __init__(self, key: int, certs: list[int]):
        self._key = key
        self._certs = certs
        self.key_type = o.EVP_PKEY_get_base_id(key)  # OpenSSL holds one certificate per key type
        self._public = PublicIdentity([o.x509_to_der(x509) for x509 in certs])
        weakref.finalize(self, _free, key, certs)

    @classmethod
    def parse(
        cls,
        private_key: bytes,
        x509_chain: bytes | Sequence[bytes],
        passphrase: bytes | str | None = None,
    ) -> PrivateIdentity:
        """Build an identity; `x509_chain` is one PEM/DER blob or a list of them, end-entity first."""
        if isinstance(passphrase, str):
            passphrase = passphrase.encode()
        return cls.from_key(_parse_private_key(bytes(private_key), passphrase), x509_chain)

    @classmethod
    def from_key(cls, key: int, x509_chain: bytes | Sequence[bytes]) -> PrivateIdentity:
        """An identity on an EVP_PKEY* the caller hands over (freed here on failure): a key parsed
        from bytes, or one a PKCS#11 token holds (tls/pkcs11.py), which OpenSSL uses the same way."""
        try:
            certs = _parse_certificates(x509_chain)
        except BaseException:
            o.EVP_PKEY_free(key)
            raise
        if o.X509_check_private_key(certs[0], key) != 1:
            o.ERR_clear_error()
            _free(key, certs)
            raise IdentityError("the private key does not match the end-entity certificate")
        return cls(key, certs)

    def public_identity(self) -> PublicIdentity:
        return self._public

    @property
    def subject(self) -> str:
        return o.x509_subject(self._certs[0])

    def owns_certificate(self, x509: int | None) -> bool:
        """Whether OpenSSL's chosen certificate pointer is this identity's end-entity certificate."""
        return bool(x509) and x509 == self._certs[0]

    def install(self, ssl_ptr: int) -> None:
        """Load key, certificate and chain into one SSL's slot for this key type."""
        o.ERR_clear_error()
        if o.SSL_use_certificate(ssl_ptr, self._certs[0]) != 1 or o.SSL_use_PrivateKey(ssl_ptr, self._key) != 1:
            o.ERR_clear_error()
            raise IdentityError(f"OpenSSL refused the identity {self.subject}")
        for x509 in self._certs[1:]:
            o.SSL_ctrl(ssl_ptr, o.SSL_CTRL_CHAIN_CERT, 1, x509)  # SSL_add1_chain_cert

    def __repr__(self) -> str:
        return f"PrivateIdentity({self.subject})"
