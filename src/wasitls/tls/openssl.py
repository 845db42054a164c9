"""ctypes declarations for the parts of OpenSSL 3 (libssl, libcrypto) the TLS engine uses.

Only declarations, constants and a few one-line helpers live here; the engine holds the logic.
Every function gets argtypes/restype so 64-bit pointers are never truncated to C int.
Values of macros come from OpenSSL 3.0's ssl.h, tls1.h, bio.h, err.h and x509_vfy.h.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from ctypes import (
    CFUNCTYPE,
    POINTER,
    c_char_p,
    c_int,
    c_long,
    c_size_t,
    c_uint,
    c_uint16,
    c_uint64,
    c_ulong,
    c_void_p,
)


def _load(soname: str, name: str) -> ctypes.CDLL:
    # The soname first: it is the OpenSSL 3 that Python's own _ssl links; find_library may pick 1.1.
    for path in (soname, ctypes.util.find_library(name)):
        if path:
            try:
                return ctypes.CDLL(path)
            except OSError:
                continue
    raise ImportError(f"wasitls needs OpenSSL 3 ({soname}): install libssl3 (Debian: apt-get install libssl3)")


libcrypto = _load("libcrypto.so.3", "crypto")
libssl = _load("libssl.so.3", "ssl")

OPENSSL_MIN_VERSION = 0x30000020  # 3.0.2 added SSL_set_retry_verify, which the client pause needs
_version = libcrypto.OpenSSL_version_num
_version.restype, _version.argtypes = ctypes.c_ulong, []
if _version() < OPENSSL_MIN_VERSION:
    raise ImportError(f"wasitls needs OpenSSL 3.0.2 or later, found {_version():#x}")

c_void_pp = POINTER(c_void_p)
c_size_t_p = POINTER(c_size_t)


def _declare(lib: ctypes.CDLL, name: str, restype, *argtypes):
    fn = getattr(lib, name)
    fn.restype = restype
    fn.argtypes = list(argtypes)
    return fn


# Callback types (C signatures in the comments).
# int (*)(SSL *s, int *al, void *arg)
ClientHelloCallback = CFUNCTYPE(c_int, c_void_p, POINTER(c_int), c_void_p)
# int (*)(SSL *ssl, void *arg)
CertCallback = CFUNCTYPE(c_int, c_void_p, c_void_p)
# int (*)(X509_STORE_CTX *ctx, void *arg)
CertVerifyCallback = CFUNCTYPE(c_int, c_void_p, c_void_p)
# int (*)(SSL *ssl, const unsigned char **out, unsigned char *outlen,
#         const unsigned char *in, unsigned int inlen, void *arg)
AlpnSelectCallback = CFUNCTYPE(c_int, c_void_p, c_void_pp, POINTER(ctypes.c_ubyte), c_void_p, c_uint, c_void_p)
# void (*)(const SSL *ssl, const char *line)
KeylogCallback = CFUNCTYPE(None, c_void_p, c_char_p)
# void (*)(const SSL *ssl, int where, int ret)
InfoCallback = CFUNCTYPE(None, c_void_p, c_int, c_int)
# int (*)(char *buf, int size, int rwflag, void *u)
PemPasswordCallback = CFUNCTYPE(c_int, c_void_p, c_int, c_int, c_void_p)

# --- libcrypto: errors ---
ERR_get_error = _declare(libcrypto, "ERR_get_error", c_ulong)
ERR_clear_error = _declare(libcrypto, "ERR_clear_error", None)
ERR_reason_error_string = _declare(libcrypto, "ERR_reason_error_string", c_char_p, c_ulong)

ERR_LIB_SSL = 20
_ERR_SYSTEM_FLAG = 0x80000000
_ERR_LIB_OFFSET = 23
_ERR_REASON_MASK = 0x7FFFFF


def err_lib(code: int) -> int:
    return 2 if code & _ERR_SYSTEM_FLAG else (code >> _ERR_LIB_OFFSET) & 0xFF


def err_reason(code: int) -> int:
    return code & (0x7FFFFFFF if code & _ERR_SYSTEM_FLAG else _ERR_REASON_MASK)


# --- libcrypto: BIO ---
BIO_s_mem = _declare(libcrypto, "BIO_s_mem", c_void_p)
BIO_new = _declare(libcrypto, "BIO_new", c_void_p, c_void_p)
BIO_new_mem_buf = _declare(libcrypto, "BIO_new_mem_buf", c_void_p, c_void_p, c_int)
BIO_free = _declare(libcrypto, "BIO_free", c_int, c_void_p)
BIO_write = _declare(libcrypto, "BIO_write", c_int, c_void_p, c_void_p, c_int)
BIO_ctrl = _declare(libcrypto, "BIO_ctrl", c_long, c_void_p, c_int, c_long, c_void_p)
BIO_ctrl_pending = _declare(libcrypto, "BIO_ctrl_pending", c_size_t, c_void_p)
BIO_CTRL_RESET = 1
BIO_CTRL_INFO = 3
BIO_C_SET_BUF_MEM_EOF_RETURN = 130

# --- libcrypto: X509, keys, stacks ---
X509_free = _declare(libcrypto, "X509_free", None, c_void_p)
i2d_X509 = _declare(libcrypto, "i2d_X509", c_int, c_void_p, c_void_pp)
d2i_X509 = _declare(libcrypto, "d2i_X509", c_void_p, c_void_p, c_void_pp, c_long)
PEM_read_bio_X509 = _declare(libcrypto, "PEM_read_bio_X509", c_void_p, c_void_p, c_void_p, c_void_p, c_void_p)
X509_get_subject_name = _declare(libcrypto, "X509_get_subject_name", c_void_p, c_void_p)
X509_NAME_oneline = _declare(libcrypto, "X509_NAME_oneline", c_char_p, c_void_p, c_char_p, c_int)
X509_check_private_key = _declare(libcrypto, "X509_check_private_key", c_int, c_void_p, c_void_p)
X509_verify_cert = _declare(libcrypto, "X509_verify_cert", c_int, c_void_p)
X509_check_issued = _declare(libcrypto, "X509_check_issued", c_int, c_void_p, c_void_p)
X509_verify = _declare(libcrypto, "X509_verify", c_int, c_void_p, c_void_p)
X509_get0_pubkey = _declare(libcrypto, "X509_get0_pubkey", c_void_p, c_void_p)
X509_verify_cert_error_string = _declare(libcrypto, "X509_verify_cert_error_string", c_char_p, c_long)

X509_STORE_new = _declare(libcrypto, "X509_STORE_new", c_void_p)
X509_STORE_free = _declare(libcrypto, "X509_STORE_free", None, c_void_p)
X509_STORE_add_cert = _declare(libcrypto, "X509_STORE_add_cert", c_int, c_void_p, c_void_p)
X509_STORE_set_default_paths = _declare(libcrypto, "X509_STORE_set_default_paths", c_int, c_void_p)
X509_STORE_load_file = _declare(libcrypto, "X509_STORE_load_file", c_int, c_void_p, c_char_p)
X509_STORE_CTX_get_ex_data = _declare(libcrypto, "X509_STORE_CTX_get_ex_data", c_void_p, c_void_p, c_int)
X509_STORE_CTX_set_error = _declare(libcrypto, "X509_STORE_CTX_set_error", None, c_void_p, c_int)
X509_STORE_CTX_get0_untrusted = _declare(libcrypto, "X509_STORE_CTX_get0_untrusted", c_void_p, c_void_p)
X509_VERIFY_PARAM_set1_ip_asc = _declare(libcrypto, "X509_VERIFY_PARAM_set1_ip_asc", c_int, c_void_p, c_char_p)

OPENSSL_sk_num = _declare(libcrypto, "OPENSSL_sk_num", c_int, c_void_p)
OPENSSL_sk_value = _declare(libcrypto, "OPENSSL_sk_value", c_void_p, c_void_p, c_int)

EVP_PKEY_free = _declare(libcrypto, "EVP_PKEY_free", None, c_void_p)
EVP_PKEY_get_base_id = _declare(libcrypto, "EVP_PKEY_get_base_id", c_int, c_void_p)
PEM_read_bio_PrivateKey = _declare(
    libcrypto, "PEM_read_bio_PrivateKey", c_void_p, c_void_p, c_void_p, PemPasswordCallback, c_void_p
)
d2i_PKCS8PrivateKey_bio = _declare(
    libcrypto, "d2i_PKCS8PrivateKey_bio", c_void_p, c_void_p, c_void_p, PemPasswordCallback, c_void_p
)
d2i_AutoPrivateKey = _declare(libcrypto, "d2i_AutoPrivateKey", c_void_p, c_void_p, c_void_pp, c_long)

# --- libcrypto: ENGINE (keys held by a PKCS#11 token through Debian's libengine-pkcs11-openssl) ---
ENGINE_by_id = _declare(libcrypto, "ENGINE_by_id", c_void_p, c_char_p)
ENGINE_ctrl_cmd_string = _declare(libcrypto, "ENGINE_ctrl_cmd_string", c_int, c_void_p, c_char_p, c_char_p, c_int)
ENGINE_init = _declare(libcrypto, "ENGINE_init", c_int, c_void_p)
ENGINE_free = _declare(libcrypto, "ENGINE_free", c_int, c_void_p)
# EVP_PKEY *ENGINE_load_private_key(ENGINE *e, const char *key_id, UI_METHOD *ui, void *callback_data)
ENGINE_load_private_key = _declare(libcrypto, "ENGINE_load_private_key", c_void_p, c_void_p, c_char_p, c_void_p,
                                   c_void_p)

X509_V_OK = 0
X509_V_ERR_APPLICATION_VERIFICATION = 50
X509_V_ERR_HOSTNAME_MISMATCH = 62
X509_V_ERR_IP_ADDRESS_MISMATCH = 64
X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS = 0x4

# --- libssl: contexts ---
TLS_client_method = _declare(libssl, "TLS_client_method", c_void_p)
TLS_server_method = _declare(libssl, "TLS_server_method", c_void_p)
SSL_CTX_new = _declare(libssl, "SSL_CTX_new", c_void_p, c_void_p)
SSL_CTX_free = _declare(libssl, "SSL_CTX_free", None, c_void_p)
SSL_CTX_ctrl = _declare(libssl, "SSL_CTX_ctrl", c_long, c_void_p, c_int, c_long, c_void_p)
SSL_CTX_set_options = _declare(libssl, "SSL_CTX_set_options", c_uint64, c_void_p, c_uint64)
SSL_CTX_set1_cert_store = _declare(libssl, "SSL_CTX_set1_cert_store", None, c_void_p, c_void_p)
SSL_CTX_set_num_tickets = _declare(libssl, "SSL_CTX_set_num_tickets", c_int, c_void_p, c_size_t)
SSL_CTX_set_cert_verify_callback = _declare(
    libssl, "SSL_CTX_set_cert_verify_callback", None, c_void_p, CertVerifyCallback, c_void_p
)
SSL_CTX_set_cert_cb = _declare(libssl, "SSL_CTX_set_cert_cb", None, c_void_p, CertCallback, c_void_p)
SSL_CTX_set_client_hello_cb = _declare(
    libssl, "SSL_CTX_set_client_hello_cb", None, c_void_p, ClientHelloCallback, c_void_p
)
SSL_CTX_set_alpn_select_cb = _declare(
    libssl, "SSL_CTX_set_alpn_select_cb", None, c_void_p, AlpnSelectCallback, c_void_p
)
SSL_CTX_set_keylog_callback = _declare(libssl, "SSL_CTX_set_keylog_callback", None, c_void_p, KeylogCallback)

# --- libssl: connections ---
SSL_new = _declare(libssl, "SSL_new", c_void_p, c_void_p)
SSL_free = _declare(libssl, "SSL_free", None, c_void_p)
SSL_set_bio = _declare(libssl, "SSL_set_bio", None, c_void_p, c_void_p, c_void_p)
SSL_set_connect_state = _declare(libssl, "SSL_set_connect_state", None, c_void_p)
SSL_set_accept_state = _declare(libssl, "SSL_set_accept_state", None, c_void_p)
SSL_do_handshake = _declare(libssl, "SSL_do_handshake", c_int, c_void_p)
SSL_read_ex = _declare(libssl, "SSL_read_ex", c_int, c_void_p, c_void_p, c_size_t, c_size_t_p)
SSL_peek_ex = _declare(libssl, "SSL_peek_ex", c_int, c_void_p, c_void_p, c_size_t, c_size_t_p)
SSL_write_ex = _declare(libssl, "SSL_write_ex", c_int, c_void_p, c_void_p, c_size_t, c_size_t_p)
SSL_pending = _declare(libssl, "SSL_pending", c_int, c_void_p)
SSL_shutdown = _declare(libssl, "SSL_shutdown", c_int, c_void_p)
SSL_get_error = _declare(libssl, "SSL_get_error", c_int, c_void_p, c_int)
SSL_ctrl = _declare(libssl, "SSL_ctrl", c_long, c_void_p, c_int, c_long, c_void_p)
SSL_set_info_callback = _declare(libssl, "SSL_set_info_callback", None, c_void_p, InfoCallback)
SSL_set1_host = _declare(libssl, "SSL_set1_host", c_int, c_void_p, c_char_p)
SSL_set_hostflags = _declare(libssl, "SSL_set_hostflags", None, c_void_p, c_uint)
SSL_get0_param = _declare(libssl, "SSL_get0_param", c_void_p, c_void_p)
SSL_set_verify = _declare(libssl, "SSL_set_verify", None, c_void_p, c_int, c_void_p)
SSL_get_verify_result = _declare(libssl, "SSL_get_verify_result", c_long, c_void_p)
SSL_set_post_handshake_auth = _declare(libssl, "SSL_set_post_handshake_auth", None, c_void_p, c_int)
SSL_verify_client_post_handshake = _declare(libssl, "SSL_verify_client_post_handshake", c_int, c_void_p)
SSL_set_alpn_protos = _declare(libssl, "SSL_set_alpn_protos", c_int, c_void_p, c_char_p, c_uint)
SSL_get0_alpn_selected = _declare(
    libssl, "SSL_get0_alpn_selected", None, c_void_p, c_void_pp, POINTER(c_uint)
)
SSL_client_hello_get0_ext = _declare(
    libssl, "SSL_client_hello_get0_ext", c_int, c_void_p, c_uint, c_void_pp, c_size_t_p
)
SSL_client_hello_get0_ciphers = _declare(libssl, "SSL_client_hello_get0_ciphers", c_size_t, c_void_p, c_void_pp)
SSL_get_ex_data_X509_STORE_CTX_idx = _declare(libssl, "SSL_get_ex_data_X509_STORE_CTX_idx", c_int)
SSL_use_certificate = _declare(libssl, "SSL_use_certificate", c_int, c_void_p, c_void_p)
SSL_use_PrivateKey = _declare(libssl, "SSL_use_PrivateKey", c_int, c_void_p, c_void_p)
SSL_add_client_CA = _declare(libssl, "SSL_add_client_CA", c_int, c_void_p, c_void_p)
SSL_get_certificate = _declare(libssl, "SSL_get_certificate", c_void_p, c_void_p)
SSL_get0_peer_certificate = _declare(libssl, "SSL_get0_peer_certificate", c_void_p, c_void_p)
SSL_get_peer_cert_chain = _declare(libssl, "SSL_get_peer_cert_chain", c_void_p, c_void_p)
SSL_version = _declare(libssl, "SSL_version", c_int, c_void_p)
SSL_get_finished = _declare(libssl, "SSL_get_finished", c_size_t, c_void_p, c_void_p, c_size_t)
SSL_get_peer_finished = _declare(libssl, "SSL_get_peer_finished", c_size_t, c_void_p, c_void_p, c_size_t)
SSL_get_version = _declare(libssl, "SSL_get_version", c_char_p, c_void_p)
SSL_get_current_cipher = _declare(libssl, "SSL_get_current_cipher", c_void_p, c_void_p)
SSL_CIPHER_standard_name = _declare(libssl, "SSL_CIPHER_standard_name", c_char_p, c_void_p)
SSL_CIPHER_get_protocol_id = _declare(libssl, "SSL_CIPHER_get_protocol_id", c_uint16, c_void_p)
SSL_alert_desc_string_long = _declare(libssl, "SSL_alert_desc_string_long", c_char_p, c_int)

# ssl.h / tls1.h / prov_ssl.h constants
TLS1_2_VERSION = 0x0303
TLS1_3_VERSION = 0x0304
SSL_CTRL_MODE = 33
SSL_CTRL_SET_SESS_CACHE_MODE = 44
SSL_CTRL_SET_TLSEXT_HOSTNAME = 55
SSL_CTRL_CHAIN_CERT = 89
SSL_CTRL_SET_VERIFY_CERT_STORE = 106
SSL_CTRL_SET_MIN_PROTO_VERSION = 123
SSL_CTRL_SET_MAX_PROTO_VERSION = 124
SSL_CTRL_SET_RETRY_VERIFY = 136
TLSEXT_NAMETYPE_host_name = 0
SSL_MODE_NO_AUTO_CHAIN = 0x8
SSL_OP_NO_TICKET = 1 << 14
SSL_OP_NO_COMPRESSION = 1 << 17
SSL_OP_NO_RENEGOTIATION = 1 << 30
SSL_VERIFY_PEER = 0x01
SSL_VERIFY_FAIL_IF_NO_PEER_CERT = 0x02
SSL_ERROR_WANT_READ = 2
SSL_ERROR_WANT_X509_LOOKUP = 4
SSL_ERROR_SYSCALL = 5
SSL_ERROR_ZERO_RETURN = 6
SSL_ERROR_WANT_CLIENT_HELLO_CB = 11
SSL_ERROR_WANT_RETRY_VERIFY = 12
SSL_CLIENT_HELLO_SUCCESS = 1
SSL_CLIENT_HELLO_ERROR = 0
SSL_CLIENT_HELLO_RETRY = -1
SSL_TLSEXT_ERR_OK = 0
SSL_TLSEXT_ERR_ALERT_FATAL = 2  # OpenSSL then sends no_application_protocol (RFC 7301 3.2)
SSL_TLSEXT_ERR_NOACK = 3
SSL_CB_EXIT = 0x02
SSL_AD_REASON_OFFSET = 1000
SSL_AD_HANDSHAKE_FAILURE = 40
SSL_R_CERTIFICATE_VERIFY_FAILED = 134
SSL_R_UNEXPECTED_EOF_WHILE_READING = 294
TLSEXT_TYPE_server_name = 0
TLSEXT_TYPE_application_layer_protocol_negotiation = 16


def x509_to_der(x509: int) -> bytes:
    """DER encoding of one X509* (two passes: size, then into our own buffer, so nothing to free)."""
    n = i2d_X509(x509, None)
    if n <= 0:
        raise ValueError("i2d_X509 failed")
    buf = ctypes.create_string_buffer(n)
    cursor = c_void_p(ctypes.addressof(buf))
    i2d_X509(x509, ctypes.byref(cursor))
    return buf.raw


def stack_of_x509_to_der(stack: int | None) -> list[bytes]:
    """DER encodings of every X509* in a STACK_OF(X509) (borrowed, not freed)."""
    if not stack:
        return []
    return [x509_to_der(OPENSSL_sk_value(stack, i)) for i in range(OPENSSL_sk_num(stack))]


def x509_subject(x509: int) -> str:
    buf = ctypes.create_string_buffer(512)
    X509_NAME_oneline(X509_get_subject_name(x509), buf, len(buf))
    return buf.value.decode("utf-8", "replace")
