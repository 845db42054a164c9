"""_ssl for componentize-py guests on wasitls: CPython's `ssl.py` runs unchanged on top of it.

The TLS connection runs on the host (wasitls:tls/memory, the same OpenSSL engine, trust, host-held
identities, trace and key log as wasitls:tls); this module only carries ciphertext between the host
and the guest's own transport: an ordinary socket (SSLSocket) or a pair of MemoryBIOs (SSLObject,
asyncio). Private keys loaded with `load_cert_chain` are handed to the host and never used here;
`load_cert_chain("host-identity:NAME")` uses a key the host holds (`wasitls run --identity NAME=...`).

What the host's owner did not allow is refused with an SSLError saying so: turning certificate or
host name checks off (`--tls-guest-insecure`), roots that replace the host's trust
(`--tls-guest-roots own`; by default a guest's roots only narrow it).
"""

import _socket
import encodings.idna  # noqa: F401 (ssl.py encodes host names as IDNA; a snapshot only has what was imported)
import os
import weakref

from componentize_py_types import Err as _WitErr, Ok as _WitOk
from wit_world.imports import memory as _memory, tls as _tls

try:
    from wit_world.imports import identities as _identities
except ImportError:  # a world without wasitls:tls/identities: no host-held identities
    _identities = None

import _wasitls_x509

# -- versions -----------------------------------------------------------------------------------
# What the host runs is OpenSSL 3; libraries (urllib3) read these to decide what ssl can do.
OPENSSL_VERSION_NUMBER = 0x30000000
OPENSSL_VERSION_INFO = (3, 0, 0, 0, 0)
OPENSSL_VERSION = "OpenSSL 3.0.0 (TLS done by the wasitls host)"
_OPENSSL_API_VERSION = (3, 0, 0, 0, 0)
_DEFAULT_CIPHERS = "@SECLEVEL=2:ECDH+AESGCM:ECDH+CHACHA20:ECDH+AES:DHE+AES:!aNULL:!eNULL:!aDSS:!SHA1:!AESCCM"

# -- constants (OpenSSL's values, as CPython's _ssl exports them) -------------------------------
CERT_NONE, CERT_OPTIONAL, CERT_REQUIRED = 0, 1, 2

PROTOCOL_SSLv23 = PROTOCOL_TLS = 2
PROTOCOL_TLS_CLIENT = 16
PROTOCOL_TLS_SERVER = 17

PROTO_MINIMUM_SUPPORTED = -2
PROTO_MAXIMUM_SUPPORTED = -1
PROTO_SSLv3 = 0x0300
PROTO_TLSv1 = 0x0301
PROTO_TLSv1_1 = 0x0302
PROTO_TLSv1_2 = 0x0303
PROTO_TLSv1_3 = 0x0304

SSL_ERROR_SSL = 1
SSL_ERROR_WANT_READ = 2
SSL_ERROR_WANT_WRITE = 3
SSL_ERROR_WANT_X509_LOOKUP = 4
SSL_ERROR_SYSCALL = 5
SSL_ERROR_ZERO_RETURN = 6
SSL_ERROR_WANT_CONNECT = 7
SSL_ERROR_EOF = 8
SSL_ERROR_INVALID_ERROR_CODE = 10

OP_ALL = 0x80000850
OP_NO_SSLv2 = 0
OP_NO_SSLv3 = 0x02000000
OP_NO_TLSv1 = 0x04000000
OP_NO_TLSv1_1 = 0x10000000
OP_NO_TLSv1_2 = 0x08000000
OP_NO_TLSv1_3 = 0x20000000
OP_CIPHER_SERVER_PREFERENCE = 0x00400000
OP_SINGLE_DH_USE = 0
OP_SINGLE_ECDH_USE = 0
OP_NO_COMPRESSION = 0x00020000
OP_NO_TICKET = 0x00004000
OP_NO_RENEGOTIATION = 0x40000000
OP_ENABLE_MIDDLEBOX_COMPAT = 0x00100000
OP_IGNORE_UNEXPECTED_EOF = 0x00000080
OP_LEGACY_SERVER_CONNECT = 0x00000004
OP_ENABLE_KTLS = 0x00000008

VERIFY_DEFAULT = 0
VERIFY_CRL_CHECK_LEAF = 0x4
VERIFY_CRL_CHECK_CHAIN = 0xC
VERIFY_X509_STRICT = 0x20
VERIFY_ALLOW_PROXY_CERTS = 0x40
VERIFY_X509_TRUSTED_FIRST = 0x8000
VERIFY_X509_PARTIAL_CHAIN = 0x80000

HOSTFLAG_ALWAYS_CHECK_SUBJECT = 0x1
HOSTFLAG_NO_WILDCARDS = 0x2
HOSTFLAG_NO_PARTIAL_WILDCARDS = 0x4
HOSTFLAG_MULTI_LABEL_WILDCARDS = 0x8
HOSTFLAG_SINGLE_LABEL_SUBDOMAINS = 0x10
HOSTFLAG_NEVER_CHECK_SUBJECT = 0x20

ENCODING_PEM = 1
ENCODING_DER = 2

ALERT_DESCRIPTION_CLOSE_NOTIFY = 0
ALERT_DESCRIPTION_UNEXPECTED_MESSAGE = 10
ALERT_DESCRIPTION_BAD_RECORD_MAC = 20
ALERT_DESCRIPTION_RECORD_OVERFLOW = 22
ALERT_DESCRIPTION_DECOMPRESSION_FAILURE = 30
ALERT_DESCRIPTION_HANDSHAKE_FAILURE = 40
ALERT_DESCRIPTION_BAD_CERTIFICATE = 42
ALERT_DESCRIPTION_UNSUPPORTED_CERTIFICATE = 43
ALERT_DESCRIPTION_CERTIFICATE_REVOKED = 44
ALERT_DESCRIPTION_CERTIFICATE_EXPIRED = 45
ALERT_DESCRIPTION_CERTIFICATE_UNKNOWN = 46
ALERT_DESCRIPTION_ILLEGAL_PARAMETER = 47
ALERT_DESCRIPTION_UNKNOWN_CA = 48
ALERT_DESCRIPTION_ACCESS_DENIED = 49
ALERT_DESCRIPTION_DECODE_ERROR = 50
ALERT_DESCRIPTION_DECRYPT_ERROR = 51
ALERT_DESCRIPTION_PROTOCOL_VERSION = 70
ALERT_DESCRIPTION_INSUFFICIENT_SECURITY = 71
ALERT_DESCRIPTION_INTERNAL_ERROR = 80
ALERT_DESCRIPTION_USER_CANCELLED = 90
ALERT_DESCRIPTION_NO_RENEGOTIATION = 100
ALERT_DESCRIPTION_UNSUPPORTED_EXTENSION = 110
ALERT_DESCRIPTION_CERTIFICATE_UNOBTAINABLE = 111
ALERT_DESCRIPTION_UNRECOGNIZED_NAME = 112
ALERT_DESCRIPTION_BAD_CERTIFICATE_STATUS_RESPONSE = 113
ALERT_DESCRIPTION_BAD_CERTIFICATE_HASH_VALUE = 114
ALERT_DESCRIPTION_UNKNOWN_PSK_IDENTITY = 115

HAS_SNI = True
HAS_ECDH = True
HAS_NPN = False
HAS_ALPN = True
HAS_SSLv2 = False
HAS_SSLv3 = False
HAS_TLSv1 = False
HAS_TLSv1_1 = False
HAS_TLSv1_2 = True
HAS_TLSv1_3 = True
HAS_PSK = False
HAS_PSK_TLS13 = False
HAS_PHA = False
HAS_TLS_UNIQUE = True

HOST_IDENTITY_PREFIX = "host-identity:"
_CLIENT_IDENTITY_LOOKUP_NOTE = "wasitls run --identity NAME=KEY.pem,CERT.pem"
_READ_CHUNK = 1 << 20  # plaintext asked of the host per call: big reads cross the boundary rarely
_RECV_CHUNK = 1 << 20  # ciphertext read from the socket per recv


# -- errors -------------------------------------------------------------------------------------
class SSLError(OSError):
    """An error in the SSL implementation (a TLS failure, or the host refusing a setting)."""

    def __str__(self):
        if isinstance(self.strerror, str):
            return self.strerror
        return super().__str__()


class SSLZeroReturnError(SSLError):
    """SSL/TLS session closed cleanly."""


class SSLWantReadError(SSLError):
    """Non-blocking SSL socket needs to read more data before the requested operation can be completed."""


class SSLWantWriteError(SSLError):
    """Non-blocking SSL socket needs to write more data before the requested operation can be completed."""


class SSLSyscallError(SSLError):
    """System error when attempting SSL operation."""


class SSLEOFError(SSLError):
    """SSL/TLS connection terminated abruptly."""


class SSLCertVerificationError(SSLError, ValueError):
    """A certificate could not be verified."""


def _ssl_error(cls, errno, code, message, library="SSL"):
    text = f"[{library}: {code}] {message}" if code else message
    err = cls(errno, text)
    err.library = library if code else None
    err.reason = code or None
    return err


def _raise_for(error):
    """A host error record as the SSLError subclass CPython would raise."""
    kind = error.kind
    K = _memory.ErrorKind
    if kind == K.WANT_READ:
        raise _ssl_error(SSLWantReadError, SSL_ERROR_WANT_READ, "", "The operation did not complete (read)")
    if kind == K.ZERO_RETURN:
        raise _ssl_error(SSLZeroReturnError, SSL_ERROR_ZERO_RETURN, "", "TLS/SSL connection has been closed (EOF)")
    if kind == K.EOF:
        raise _ssl_error(SSLEOFError, SSL_ERROR_EOF, error.code, "EOF occurred in violation of protocol")
    if kind == K.CERTIFICATE_VERIFY_FAILED:
        err = _ssl_error(SSLCertVerificationError, SSL_ERROR_SSL, "CERTIFICATE_VERIFY_FAILED",
                         f"certificate verify failed: {error.reason}")
        err.verify_code = error.verify_code
        err.verify_message = error.reason
        raise err
    raise _ssl_error(SSLError, SSL_ERROR_SSL, error.code, error.reason)


def _refused(message):
    return _ssl_error(SSLError, SSL_ERROR_SSL, "WASITLS_REFUSED", message, library="WASITLS")


_policy = None


def _host_policy():
    global _policy
    if _policy is None:
        _policy = _memory.policy()
    return _policy


# -- random, paths, ASN.1 objects ---------------------------------------------------------------
def RAND_status():
    return True


def RAND_add(string, entropy):
    return None


def RAND_bytes(n):
    if n < 0:
        raise ValueError("num must be positive")
    return os.urandom(n)


def get_default_verify_paths():
    # The host's trust is what counts; these only say where a guest would find files of its own.
    return ("SSL_CERT_FILE", "/etc/ssl/cert.pem", "SSL_CERT_DIR", "/etc/ssl/certs")


def txt2obj(txt, name=False):
    found = _wasitls_x509.lookup_object(txt, by_name=name)
    if found is None:
        raise ValueError(f"unknown object '{txt}'")
    return found


def nid2obj(nid):
    found = _wasitls_x509.object_by_nid(nid)
    if found is None:
        raise ValueError(f"unknown NID {nid}")
    return found


def _test_decode_cert(path):
    with open(path, "rb") as f:
        ders = _wasitls_x509.pem_to_ders(f.read())
    if not ders:
        raise _ssl_error(SSLError, SSL_ERROR_SSL, "NO_START_LINE", "no start line")
    return _wasitls_x509.decode_certificate(ders[0])


# -- certificates and sessions --------------------------------------------------------------------
class Certificate:
    """One certificate of a chain (get_verified_chain / get_unverified_chain)."""

    def __init__(self, der):
        self._der = bytes(der)

    def public_bytes(self, format=ENCODING_PEM):
        if format == ENCODING_DER:
            return self._der
        if format == ENCODING_PEM:
            return _wasitls_x509.der_to_pem(self._der)
        raise ValueError("Unsupported format")

    def get_info(self):
        return _wasitls_x509.decode_certificate(self._der)

    def __eq__(self, other):
        return isinstance(other, Certificate) and other._der == self._der

    def __hash__(self):
        return hash(self._der)

    def __repr__(self):
        return f"<Certificate '{_wasitls_x509.subject_text(self._der)}'>"


class SSLSession:
    """Sessions are not resumed over wasitls (tickets are off on the host); none is ever returned."""

    def __init__(self, *args, **kwargs):
        raise TypeError("cannot create '_ssl.SSLSession' instances")


# -- MemoryBIO ------------------------------------------------------------------------------------
class MemoryBIO:
    """A buffer of bytes, as CPython's: written at one end, read at the other."""

    def __init__(self):
        self._buffer = bytearray()
        self._eof_written = False

    @property
    def pending(self):
        return len(self._buffer)

    @property
    def eof(self):
        return self._eof_written and not self._buffer

    def read(self, size=-1):
        n = len(self._buffer) if size is None or size < 0 else min(size, len(self._buffer))
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        return data

    def write(self, b):
        if self._eof_written:
            raise _ssl_error(SSLError, SSL_ERROR_SSL, "", "cannot write() after write_eof()")
        view = memoryview(b)
        if not view.c_contiguous:
            raise BufferError("buffer is not contiguous")
        self._buffer += view.cast("B")
        return view.nbytes

    def write_eof(self):
        self._eof_written = True


# -- the context ------------------------------------------------------------------------------------
def _settable_version(value):
    if value not in (PROTO_MINIMUM_SUPPORTED, PROTO_MAXIMUM_SUPPORTED, PROTO_SSLv3, PROTO_TLSv1,
                     PROTO_TLSv1_1, PROTO_TLSv1_2, PROTO_TLSv1_3):
        raise ValueError(f"Unsupported TLS/SSL version 0x{value:x}")
    return value


class _SSLContext:
    """The settings shared by the connections made from it; the host applies them per connection."""

    def __new__(cls, protocol=PROTOCOL_TLS, *args, **kwargs):
        if protocol not in (PROTOCOL_TLS, PROTOCOL_TLS_CLIENT, PROTOCOL_TLS_SERVER):
            raise ValueError(f"invalid or unsupported protocol version {protocol}")
        self = super().__new__(cls)
        client = protocol == PROTOCOL_TLS_CLIENT
        self._protocol = protocol
        self._verify_mode = CERT_REQUIRED if client else CERT_NONE
        self._check_hostname = client
        self._options = (OP_ALL | OP_NO_SSLv2 | OP_NO_SSLv3 | OP_NO_COMPRESSION | OP_CIPHER_SERVER_PREFERENCE
                         | OP_SINGLE_DH_USE | OP_SINGLE_ECDH_USE | OP_ENABLE_MIDDLEBOX_COMPAT | OP_NO_RENEGOTIATION)
        self._verify_flags = VERIFY_X509_TRUSTED_FIRST
        self._minimum_version = PROTO_MINIMUM_SUPPORTED
        self._maximum_version = PROTO_MAXIMUM_SUPPORTED
        self._host_flags = HOSTFLAG_NO_PARTIAL_WILDCARDS
        self._roots = []  # DER certificates from load_verify_locations
        self._identity = None  # a wasitls:tls private-identity (key on the host)
        self._alpn_ids = []
        self._sni_callback = None
        self._msg_cb = None
        self.post_handshake_auth = False
        self.keylog_filename = None  # key logging is the host's: wasitls run --tls-keylog FILE
        self.security_level = 2
        self.num_tickets = 0
        return self

    # -- properties ssl.py reaches through super() --------------------------------------------
    @property
    def protocol(self):
        return self._protocol

    @property
    def verify_mode(self):
        return self._verify_mode

    @verify_mode.setter
    def verify_mode(self, value):
        if value not in (CERT_NONE, CERT_OPTIONAL, CERT_REQUIRED):
            raise ValueError("invalid value for verify_mode")
        if value == CERT_NONE and self._check_hostname:
            raise ValueError("Cannot set verify_mode to CERT_NONE when check_hostname is enabled.")
        if value == CERT_NONE and self._protocol == PROTOCOL_TLS_CLIENT:
            self._refuse_if_insecure("certificate verification (verify_mode=CERT_NONE)")
        self._verify_mode = value

    @property
    def check_hostname(self):
        return self._check_hostname

    @check_hostname.setter
    def check_hostname(self, value):
        value = bool(value)
        if value and self._verify_mode == CERT_NONE:
            self._verify_mode = CERT_REQUIRED
        if not value and self._protocol == PROTOCOL_TLS_CLIENT:
            self._refuse_if_insecure("host name checks (check_hostname=False)")
        self._check_hostname = value

    @staticmethod
    def _refuse_if_insecure(what):
        if not _host_policy().may_skip_verification:
            raise _refused(f"this host does not let guests turn off {what}; "
                           "the person running it can allow it with --tls-guest-insecure")

    @property
    def options(self):
        return self._options

    @options.setter
    def options(self, value):
        self._options = int(value)

    @property
    def verify_flags(self):
        return self._verify_flags

    @verify_flags.setter
    def verify_flags(self, value):
        self._verify_flags = int(value)

    @property
    def minimum_version(self):
        return self._minimum_version

    @minimum_version.setter
    def minimum_version(self, value):
        self._minimum_version = _settable_version(int(value))

    @property
    def maximum_version(self):
        return self._maximum_version

    @maximum_version.setter
    def maximum_version(self, value):
        self._maximum_version = _settable_version(int(value))

    @property
    def sni_callback(self):
        return self._sni_callback

    @sni_callback.setter
    def sni_callback(self, callback):
        if self._protocol == PROTOCOL_TLS_CLIENT:
            raise ValueError("sni_callback cannot be set on TLS_CLIENT context")
        if callback is not None and not callable(callback):
            raise TypeError("not a callable object")
        self._sni_callback = callback

    @property
    def _msg_callback(self):
        return self._msg_cb

    @_msg_callback.setter
    def _msg_callback(self, callback):
        self._msg_cb = callback  # never called: the handshake's messages stay on the host

    # -- loading ------------------------------------------------------------------------------------
    def load_cert_chain(self, certfile, keyfile=None, password=None):
        """Hand a key and chain to the host (never used by guest code), or name a host-held identity:
        `load_cert_chain("host-identity:NAME")`."""
        certfile = os.fsdecode(certfile)
        if certfile.startswith(HOST_IDENTITY_PREFIX):
            name = certfile[len(HOST_IDENTITY_PREFIX):]
            identity = _identities.get(name) if _identities is not None else None
            if identity is None:
                raise _ssl_error(SSLError, SSL_ERROR_SSL, "NO_HOST_IDENTITY",
                                 f"the host holds no identity named {name!r} ({_CLIENT_IDENTITY_LOOKUP_NOTE})",
                                 library="WASITLS")
            self._identity = identity
            return
        with open(certfile, "rb") as f:
            chain = f.read()
        if keyfile is None:
            key = chain
        else:
            with open(os.fsdecode(keyfile), "rb") as f:
                key = f.read()
        if callable(password):
            password = password()
        if isinstance(password, (bytes, bytearray)):
            password = bytes(password).decode("utf-8")
        if password is not None and not isinstance(password, str):
            raise TypeError("password should be a string or callable")
        try:
            if password is None:
                self._identity = _tls.PrivateIdentity.parse(key, [chain])
            else:
                self._identity = _tls.PrivateIdentity.parse_encrypted(key, [chain], password)
        except _WitErr:
            raise _ssl_error(SSLError, 9, "PEM_LIB", "the host could not use this key and certificate "
                             "(malformed, not matching, or the key is encrypted and the password is wrong)") from None

    def load_verify_locations(self, cafile=None, capath=None, cadata=None):
        """Roots for this context's connections: by default they only narrow the host's trust."""
        if cafile is None and capath is None and cadata is None:
            raise TypeError("cafile, capath and cadata cannot be all omitted")
        found = []
        if cafile is not None:
            with open(os.fsdecode(cafile), "rb") as f:
                found += _wasitls_x509.pem_to_ders(f.read())
        if capath is not None:
            for name in sorted(os.listdir(capath)):
                path = os.path.join(os.fsdecode(capath), name)
                if os.path.isfile(path):
                    with open(path, "rb") as f:
                        found += _wasitls_x509.pem_to_ders(f.read())
        if cadata is not None:
            if isinstance(cadata, str):
                found += _wasitls_x509.pem_to_ders(cadata.encode("ascii"))
            else:
                found += _wasitls_x509.split_ders(bytes(memoryview(cadata)))
        if not found:
            raise _ssl_error(SSLError, 136, "NO_CERTIFICATE_OR_CRL_FOUND", "no certificate or crl found",
                             library="X509")
        for der in found:
            if der not in self._roots:
                self._roots.append(der)

    def set_default_verify_paths(self):
        """The host's trust is the default: nothing to load in the guest."""

    def load_dh_params(self, path):
        """DH parameters are the host's (ephemeral ECDHE and TLS 1.3 groups)."""

    def set_ciphers(self, ciphers):
        """Cipher suites are the host's defaults (TLS 1.2 and 1.3, OpenSSL's secure list)."""
        if not isinstance(ciphers, str):
            raise TypeError("ciphers must be a str")

    def set_ecdh_curve(self, name):
        """Key exchange groups are the host's defaults."""

    def get_ciphers(self):
        return [{"id": 0x03001301 + i, "name": name, "protocol": "TLSv1.3", "description": name,
                 "strength_bits": bits, "alg_bits": bits, "aead": True, "symmetric": sym,
                 "digest": None, "kea": "kx-any", "auth": "auth-any"}
                for i, (name, bits, sym) in enumerate([("TLS_AES_256_GCM_SHA384", 256, "aes-256-gcm"),
                                                       ("TLS_CHACHA20_POLY1305_SHA256", 256, "chacha20-poly1305"),
                                                       ("TLS_AES_128_GCM_SHA256", 128, "aes-128-gcm")])]

    def _set_alpn_protocols(self, protos):
        data, ids, i = bytes(protos), [], 0
        while i < len(data):
            n = data[i]
            ids.append(data[i + 1:i + 1 + n])
            i += 1 + n
        self._alpn_ids = ids

    def session_stats(self):
        return {key: 0 for key in ("number", "connect", "connect_good", "connect_renegotiate", "accept",
                                   "accept_good", "accept_renegotiate", "hits", "misses", "timeouts",
                                   "cache_full")}

    def cert_store_stats(self):
        return {"x509": len(self._roots), "crl": 0, "x509_ca": len(self._roots)}

    def get_ca_certs(self, binary_form=False):
        if binary_form:
            return list(self._roots)
        return [_wasitls_x509.decode_certificate(der) for der in self._roots]

    def set_psk_client_callback(self, callback, identity_hint=None):
        raise NotImplementedError("TLS-PSK is not available over wasitls")

    def set_psk_server_callback(self, callback, identity_hint=None):
        raise NotImplementedError("TLS-PSK is not available over wasitls")

    # -- connections --------------------------------------------------------------------------------
    def _wrap_socket(self, sock, server_side, server_hostname=None, *, owner=None, session=None):
        return _SSLSocket(self, bool(server_side), server_hostname, owner, session, sock=sock)

    def _wrap_bio(self, incoming, outgoing, server_side, server_hostname=None, *, owner=None, session=None):
        return _SSLSocket(self, bool(server_side), server_hostname, owner, session, bios=(incoming, outgoing))

    def _settings(self, server_side, server_hostname):
        versions = []
        for value, unset in ((self._minimum_version, PROTO_MINIMUM_SUPPORTED),
                             (self._maximum_version, PROTO_MAXIMUM_SUPPORTED)):
            if value == unset:
                versions.append(0)
            else:
                versions.append(min(max(value, PROTO_TLSv1_2), PROTO_TLSv1_3))  # the host speaks 1.2 and 1.3
        if self._options & OP_NO_TLSv1_2 and versions[0] in (0, PROTO_TLSv1_2):
            versions[0] = PROTO_TLSv1_3
        if self._options & OP_NO_TLSv1_3 and versions[1] in (0, PROTO_TLSv1_3):
            versions[1] = PROTO_TLSv1_2
        mode = {CERT_NONE: _memory.VerifyMode.NONE, CERT_OPTIONAL: _memory.VerifyMode.OPTIONAL,
                CERT_REQUIRED: _memory.VerifyMode.REQUIRED}[self._verify_mode]
        if not server_side and mode == _memory.VerifyMode.OPTIONAL:
            mode = _memory.VerifyMode.REQUIRED  # a server always sends a certificate: checked as required
        return _memory.Settings(
            server_name=None if server_side else server_hostname,
            check_hostname=self._check_hostname if not server_side else False,
            verify_mode=mode, roots=list(self._roots), identity=self._identity,
            alpn_ids=list(self._alpn_ids), min_version=versions[0], max_version=versions[1],
        )


# -- a connection -------------------------------------------------------------------------------------
class _SSLSocket:
    """One TLS connection run by the host; its ciphertext goes over a socket or a MemoryBIO pair."""

    def __init__(self, context, server_side, server_hostname, owner, session, *, sock=None, bios=None):
        if server_hostname is not None and not isinstance(server_hostname, str):
            server_hostname = server_hostname.decode("ascii") if isinstance(server_hostname, bytes) \
                else str(server_hostname)
        if server_side and context.protocol == PROTOCOL_TLS_CLIENT:
            raise ValueError("Cannot create a server socket with a PROTOCOL_TLS_CLIENT context")
        if not server_side and context.protocol == PROTOCOL_TLS_SERVER:
            raise ValueError("Cannot create a client socket with a PROTOCOL_TLS_SERVER context")
        self._context = context
        self.server_side = server_side
        self.server_hostname = server_hostname
        self._owner = None if owner is None else weakref.ref(owner)
        self._sock = None if sock is None else weakref.ref(sock)
        self._bios = bios
        self._plain = b""  # plaintext the host decrypted beyond what a read asked for, from _plain_at
        self._plain_at = 0
        self._unsent = b""  # ciphertext a non-blocking socket did not take yet
        self._eof_fed = False
        self._facts = None
        self._client_hello_seen = False
        settings = context._settings(server_side, server_hostname)
        try:
            if server_side:
                self._conn = _memory.Connection.server(settings, context.sni_callback is not None)
            else:
                if not (settings.check_hostname and settings.verify_mode != _memory.VerifyMode.NONE):
                    context._refuse_if_insecure("certificate or host name checks for this connection")
                self._conn = _memory.Connection.client(settings)
        except _WitErr as e:
            if e.value.kind == _memory.ErrorKind.REFUSED:
                raise _refused(e.value.reason) from None
            _raise_for(e.value)

    # -- attributes ssl.py reads ------------------------------------------------------------------
    @property
    def context(self):
        return self._context

    @context.setter
    def context(self, ctx):
        if not isinstance(ctx, _SSLContext):
            raise TypeError("The value must be a SSLContext")
        self._context = ctx  # a server's SNI callback switching contexts: applied at the ClientHello

    @property
    def owner(self):
        return None if self._owner is None else self._owner()

    @owner.setter
    def owner(self, value):
        self._owner = None if value is None else weakref.ref(value)

    @property
    def session(self):
        return None

    @session.setter
    def session(self, value):
        if value is not None:
            raise ValueError("Session resumption is not available over wasitls")

    @property
    def session_reused(self):
        return False

    # -- moving ciphertext ----------------------------------------------------------------------
    def _take_incoming(self):
        if self._bios is not None:
            return self._bios[0].read()
        return b""

    def _send(self, data):
        if self._bios is not None:
            if data:
                self._bios[1].write(data)
            return
        if self._unsent:
            data = self._unsent + data
            self._unsent = b""
        if not data:
            return
        sock = self._socket()
        if sock.gettimeout() == 0.0:  # non-blocking: keep what the socket does not take
            try:
                sent = _socket.socket.send(sock, data)
            except BlockingIOError:
                sent = 0
            self._unsent = data[sent:]
            return
        _socket.socket.sendall(sock, data)

    def _socket(self):
        sock = self._sock() if self._sock is not None else None
        if sock is None:
            raise _ssl_error(SSLError, SSL_ERROR_SYSCALL, "", "Underlying socket has been closed.")
        return sock

    def _more_incoming(self):
        """The peer's next bytes; b"" after the end was passed to the host; raises SSLWantReadError."""
        if self._bios is not None:
            incoming = self._bios[0]
            if incoming.pending:
                return incoming.read()
            if incoming.eof and not self._eof_fed:
                self._eof_fed = True
                self._conn.receive_eof()
                return b""
            if self._eof_fed:
                return None
            raise _ssl_error(SSLWantReadError, SSL_ERROR_WANT_READ, "", "The operation did not complete (read)")
        sock = self._socket()
        if self._unsent:
            self._send(b"")
            if self._unsent:
                raise _ssl_error(SSLWantWriteError, SSL_ERROR_WANT_WRITE, "",
                                 "The operation did not complete (write)")
        if self._eof_fed:
            return None
        try:
            data = _socket.socket.recv(sock, _RECV_CHUNK)
        except BlockingIOError:
            raise _ssl_error(SSLWantReadError, SSL_ERROR_WANT_READ, "",
                             "The operation did not complete (read)") from None
        except TimeoutError:
            raise TimeoutError("The read operation timed out") from None
        if not data:
            self._eof_fed = True
            self._conn.receive_eof()
        return data

    def _run(self, call):
        """Run `call(incoming)` until it completes, carrying ciphertext both ways."""
        incoming = self._take_incoming()
        while True:
            outgoing, result = call(incoming)
            try:
                self._send(outgoing)
            except OSError as e:
                self._explain_send_failure(e)
            if isinstance(result, _WitOk):
                return result.value
            error = result.value
            if error.kind != _memory.ErrorKind.WANT_READ:
                _raise_for(error)
            incoming = self._more_incoming()
            if incoming is None:  # the peer's bytes ended and the host still wants more
                raise _ssl_error(SSLEOFError, SSL_ERROR_EOF, "UNEXPECTED_EOF_WHILE_READING",
                                 "EOF occurred in violation of protocol")

    def _explain_send_failure(self, error):
        """The peer stopped taking our bytes: if it said why first (an alert, e.g. "certificate
        required" after a TLS 1.3 handshake), raise that instead of the bare socket error."""
        if self._bios is None and not self._eof_fed:
            try:
                data = _socket.socket.recv(self._socket(), _RECV_CHUNK)
            except OSError:
                data = b""
            if data:
                _, result = self._conn.read(data, 1)
                if isinstance(result, _WitErr) and result.value.kind != _memory.ErrorKind.WANT_READ:
                    _raise_for(result.value)
        raise error

    # -- the handshake --------------------------------------------------------------------------
    def do_handshake(self):
        while True:
            status = self._run(self._conn.handshake)
            if status == _memory.HandshakeStatus.COMPLETE:
                self._facts = self._conn.facts()
                return
            self._at_client_hello()

    def _at_client_hello(self):
        """Server: the SNI callback sees the name and may switch this connection's context."""
        callback = self._context.sni_callback
        if callback is not None and not self._client_hello_seen:
            self._client_hello_seen = True
            name = self._conn.facts().server_name
            first = self._context
            alert = callback(self.owner or self, name, first)
            if alert is not None:
                raise _ssl_error(SSLError, SSL_ERROR_SSL, "TLSV1_ALERT_INTERNAL_ERROR" if alert == 80 else
                                 "SSLV3_ALERT_HANDSHAKE_FAILURE",
                                 f"the server name callback refused the connection (alert {alert})")
            try:
                self._conn.reconfigure(self._context._settings(True, None))
            except _WitErr as e:
                _raise_for(e.value)

    def _need_handshake(self):
        if self._facts is None:
            raise ValueError("handshake not done yet")

    # -- application data -----------------------------------------------------------------------
    def read(self, len=1024, buffer=None):
        if len < 0 and buffer is None:
            raise ValueError("size should not be negative")
        if buffer is not None and (len <= 0 or len > memoryview(buffer).nbytes):
            len = memoryview(buffer).nbytes
        if len == 0:
            return 0 if buffer is not None else b""
        if self._plain_at >= self._plain.__len__():
            try:
                self._plain = self._run_read(max(len, _READ_CHUNK))
            except SSLZeroReturnError:
                return 0 if buffer is not None else b""
            self._plain_at = 0
        start = self._plain_at
        data = self._plain[start:start + len] if start or len < self._plain.__len__() else self._plain
        self._plain_at = start + data.__len__()
        if buffer is None:
            return data
        n = data.__len__()
        memoryview(buffer).cast("B")[:n] = data
        return n

    def _run_read(self, want):
        return self._run(lambda incoming: self._conn.read(incoming, want))

    def write(self, b):
        view = memoryview(b).cast("B")
        if not view.nbytes:
            return 0
        total = 0
        while total < view.nbytes:
            chunk = bytes(view[total:total + _READ_CHUNK])
            total += self._run(lambda incoming: self._conn.write(incoming, chunk))
        return total

    def pending(self):
        return self._plain.__len__() - self._plain_at

    def shutdown(self):
        try:
            self._run(self._conn.shutdown)
        except SSLEOFError:
            pass  # the peer went away without answering our close_notify: the connection is over
        if self._sock is not None:
            return self._sock()
        return None

    def verify_client_post_handshake(self):
        raise _ssl_error(SSLError, SSL_ERROR_SSL, "WASITLS_UNSUPPORTED",
                         "post-handshake authentication is not offered over wasitls:tls/memory",
                         library="WASITLS")

    # -- facts --------------------------------------------------------------------------------------
    def getpeercert(self, binary_form=False):
        self._need_handshake()
        chain = self._facts.peer_chain
        if not chain:
            return None
        if binary_form:
            return chain[0]
        if self._context.verify_mode == CERT_NONE:
            return {}  # as CPython: a certificate that was not verified is not described
        return _wasitls_x509.decode_certificate(chain[0])

    def get_verified_chain(self):
        return self.get_unverified_chain()

    def get_unverified_chain(self):
        if self._facts is None:
            return None
        return [Certificate(der) for der in self._facts.peer_chain]

    def selected_alpn_protocol(self):
        if self._facts is None or self._facts.alpn_id is None:
            return None
        return bytes(self._facts.alpn_id).decode("ascii", "replace")

    def selected_npn_protocol(self):
        return None

    def cipher(self):
        if self._facts is None or self._facts.cipher is None:
            return None
        name = self._facts.cipher
        bits = 128 if "_128_" in name else 256
        return (_openssl_cipher_name(name), self._facts.protocol, bits)

    def shared_ciphers(self):
        return None

    def compression(self):
        return None

    def version(self):
        return None if self._facts is None else self._facts.protocol

    def get_channel_binding(self, cb_type="tls-unique"):
        if cb_type != "tls-unique":
            raise ValueError(f"{cb_type} channel binding type not implemented")
        if self._facts is None or self._facts.tls_unique is None:
            return None  # TLS 1.3 defines no tls-unique (RFC 9266)
        return bytes(self._facts.tls_unique)


_IANA_TO_OPENSSL = {
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256": "DHE-RSA-AES128-GCM-SHA256",
    "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384": "DHE-RSA-AES256-GCM-SHA384",
}


def _openssl_cipher_name(iana):
    """cipher()[0] is OpenSSL's name, as CPython gives it (TLS 1.3 names are the IANA ones)."""
    return _IANA_TO_OPENSSL.get(iana, iana)
