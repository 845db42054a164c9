"""Private keys that live in a PKCS#11 token (an HSM, a smartcard, SoftHSM), named by an RFC 7512 URI.

The key is never read: OpenSSL 3.0 reaches it through an ENGINE (Debian's libengine-pkcs11-openssl,
libp11 underneath), which hands back an EVP_PKEY whose signatures are made inside the token. That
EVP_PKEY goes into the same `PrivateIdentity` a key file makes, so every place that takes an identity
(wasitls:tls, preview-1 hTLS, a guest server or client) takes a token's one unchanged.

    pkcs11:token=wasitls;object=web?pin-source=file:/run/secrets/pin

Path attributes (token, object, id, serial, ...) go to the engine as written. Of the query attributes,
`pin-source` names a PIN file and `module-path` the PKCS#11 module; `pin-value` is refused, since a
PIN in a URI ends up in command lines, shell history and `ps`.

Threads: libp11 keeps a lock per slot, so connections on several threads may sign with one key at
once. One process loads one PKCS#11 module (the engine has one); a second, different one is refused.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import threading
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator
from urllib.parse import unquote

from . import openssl as o
from .identity import IdentityError, PrivateIdentity

URI_SCHEME = "pkcs11:"
ENGINE_ID = b"pkcs11"
ENGINE_PACKAGE = "libengine-pkcs11-openssl"
SOFTHSM2_MODULE = "/usr/lib/softhsm/libsofthsm2.so"  # Debian's softhsm2, named in the hint of a missing module


class TokenError(IdentityError):
    """A token key that cannot be used: bad URI, no module or engine, wrong PIN, nothing found."""


@dataclass(frozen=True)
class TokenKeyUri:
    text: str  # as given (it never holds a PIN: pin-value is refused)
    engine_uri: str  # "pkcs11:" and the path attributes: what the engine is asked for
    attributes: dict  # the path attributes, percent-decoded
    pin_source: str | None  # a file path, from pin-source
    module_path: str | None  # from module-path

    def describe(self, names: Sequence[str]) -> str:
        found = [f"{n}={self.attributes[n]}" for n in names if n in self.attributes]
        return ";".join(found) or "(any)"


def is_token_uri(text: str) -> bool:
    return text[:len(URI_SCHEME)].lower() == URI_SCHEME


def redacted(text: str) -> str:
    """The URI fit to print: the value of a pin-value attribute (which we refuse) is never echoed."""
    return re.sub(r"(?i)(pin-value=)[^&]*", r"\1...", text)


def _pin_file_of(source: str) -> str:
    """RFC 7512 pin-source is a URI: `file:/path` (or `file:///path`), or, as people write it, a path."""
    if source.startswith("file://"):
        authority, _, path = source[len("file://"):].partition("/")
        if authority not in ("", "localhost"):
            raise TokenError(f"pin-source={source}: only local files are supported")
        return "/" + path
    if source.startswith("file:"):
        return source[len("file:"):]
    if source.startswith("|"):
        raise TokenError(f"pin-source={source}: running a command for the PIN is not supported; "
                         "give a file (pin-source=file:/path)")
    if ":" in source.split("/", 1)[0]:
        raise TokenError(f"pin-source={source}: only file: pin sources are supported")
    return source


def parse_uri(text: str) -> TokenKeyUri:
    """Split an RFC 7512 URI into what the engine gets and what the host handles (PIN file, module)."""
    if not is_token_uri(text):
        raise TokenError("not a PKCS#11 URI (pkcs11:token=...;object=...)")
    path, _, query = text[len(URI_SCHEME):].partition("?")
    if "/" in path:  # RFC 7512 allows no '/' in the path: most likely a third field after the certificate
        raise TokenError("'/' in the URI's path (percent-encode it as %2F); a token identity is pkcs11:URI,CERT.pem "
                         "with no passphrase file (the PIN: pin-source=file:... or --pkcs11-pin-file)")
    attributes: dict[str, str] = {}
    for part in filter(None, path.split(";")):
        name, sep, value = part.partition("=")
        if not sep or not name:
            raise TokenError(f"{part!r} is not an attribute (NAME=VALUE)")
        attributes[name.lower()] = unquote(value)
    if not attributes:
        raise TokenError("names no key (give at least object= or id=)")
    pin_source = module_path = None
    for part in filter(None, query.split("&")):
        name, _, value = part.partition("=")
        name, value = name.lower(), unquote(value)
        if name == "pin-value":
            raise TokenError("pin-value in a PKCS#11 URI is refused: a PIN on the command line shows in ps and "
                             "shell history; put it in a file (pin-source=file:/path or --pkcs11-pin-file)")
        if name == "pin-source":
            pin_source = _pin_file_of(value)
        elif name == "module-path":
            module_path = value
        else:
            raise TokenError(f"query attribute {name!r} is not supported (pin-source, module-path)")
    return TokenKeyUri(text, URI_SCHEME + path, attributes, pin_source, module_path)


# One engine for the process, initialised on the module given first.
_lock = threading.Lock()
_engine: int | None = None
_engine_module: str | None = None


def _engine_for(module: str) -> int:
    global _engine, _engine_module
    if _engine is not None:
        if os.path.realpath(module) != os.path.realpath(_engine_module):
            raise TokenError(f"one PKCS#11 module per process: {_engine_module} is loaded, {module} cannot be too")
        return _engine
    if not os.path.isfile(module):
        raise TokenError(f"PKCS#11 module {module}: no such file (SoftHSM2 on Debian: {SOFTHSM2_MODULE}, "
                         "package softhsm2)")
    o.ERR_clear_error()
    engine = o.ENGINE_by_id(ENGINE_ID)  # found in OpenSSL's engines directory (or $OPENSSL_ENGINES)
    o.ERR_clear_error()
    if not engine:
        raise TokenError(f"the OpenSSL pkcs11 engine is not installed (Debian: apt-get install {ENGINE_PACKAGE})")
    if (o.ENGINE_ctrl_cmd_string(engine, b"MODULE_PATH", os.fsencode(module), 0) != 1
            or o.ENGINE_init(engine) != 1):
        reasons = _drain_errors()
        o.ENGINE_free(engine)
        raise TokenError(f"the OpenSSL pkcs11 engine refused the module {module}: {'; '.join(reasons) or 'no reason'}")
    o.ENGINE_free(engine)  # ENGINE_init's functional reference keeps it for the process
    _engine, _engine_module = engine, module
    return engine


def _drain_errors() -> list[str]:
    reasons = []
    while code := o.ERR_get_error():
        text = o.ERR_reason_error_string(code)
        reasons.append(text.decode(errors="replace") if text else f"error {code:#x}")
    return reasons


@contextmanager
def _stderr_captured() -> Iterator[list[str]]:
    """libp11 prints its diagnosis to stderr; at start-up we keep it to build one line of our own.
    (fd 2 is the process's: this runs while the host starts, before any guest thread writes there.)"""
    sys.stderr.flush()
    saved = os.dup(2)
    said: list[str] = []
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield said
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            said.append(capture.read(8192).decode(errors="replace"))


def _explain(uri: TokenKeyUri, module: str, reasons: list[str], said: str) -> str:
    joined = "; ".join(reasons).lower()
    if "unable to load pkcs#11 module" in joined or "unable to load module" in said.lower():
        detail = next((line for line in said.splitlines() if module in line and "Unable" not in line), "")
        return f"cannot load the PKCS#11 module {module}" + (f" ({detail.strip()})" if detail else "")
    if "pin incorrect" in joined or "pin_incorrect" in joined:
        return "wrong PIN: the token refused it"
    if "pin locked" in joined:
        return "the token's PIN is locked (too many wrong PINs): reset it with the SO PIN"
    if "pin" in joined:
        return f"the token refused the PIN ({'; '.join(reasons)})"
    if "no matching initialized token" in said.lower() or "no matching token" in said.lower():
        return f"no token matches {uri.describe(('token', 'serial', 'manufacturer', 'model', 'slot-id'))} " \
               f"in the PKCS#11 module {module}"
    if "object not found" in joined or "not found" in said.lower():
        return f"no private key matches {uri.describe(('object', 'id', 'type'))} in the token"
    return f"cannot load the private key ({'; '.join(reasons) or said.strip() or 'no reason given'})"


def load_token_key(uri: TokenKeyUri, module: str, pin: bytes) -> int:
    """The EVP_PKEY* of the token's private key (signing happens in the token), or TokenError."""
    with _lock:
        engine = _engine_for(module)
        # libp11 logs in with the PIN it holds; set per key, since keys may sit on different tokens
        if o.ENGINE_ctrl_cmd_string(engine, b"PIN", pin, 0) != 1:
            raise TokenError(f"the pkcs11 engine refused the PIN: {'; '.join(_drain_errors())}")
        o.ERR_clear_error()
        with _stderr_captured() as said:
            key = o.ENGINE_load_private_key(engine, uri.engine_uri.encode(), None, None)
        reasons = _drain_errors()
    if key:
        return key
    raise TokenError(_explain(uri, module, reasons, "".join(said)))


def token_identity(uri: TokenKeyUri | str, x509_chain: bytes | Sequence[bytes], *, module: str,
                   pin: bytes) -> PrivateIdentity:
    """A `PrivateIdentity` whose key stays in the token; the certificate must be the key's."""
    if isinstance(uri, str):
        uri = parse_uri(uri)
    return PrivateIdentity.from_key(load_token_key(uri, module, pin), x509_chain)
