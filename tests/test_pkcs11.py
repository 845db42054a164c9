"""Identities whose private keys live in a PKCS#11 token (issue 14): `--identity NAME=pkcs11:URI,CERT.pem`.

A SoftHSM2 token is made in a temporary directory, with an RSA and an EC key generated inside it as
sensitive and never extractable; a test CA signs certificates for their public keys. A guest server
on a token identity answers openssl s_client and curl, a guest client presents one to nginx with
`ssl_verify_client on`, and each way it can go wrong is one line before the guest runs.
"""

from __future__ import annotations

import ctypes
import datetime
import hashlib
import ipaddress
import os
import re
import socket
import ssl
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from wasitls.devtools.http_peers import nginx_tls_conf
from wasitls_tls_helpers import (MATRIX, TIMEOUT, GuestServer, PeerProcess, free_port, need, run_guest, sha256,
                                 wasitls_command)

SOFTHSM2_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
PKCS11_ENGINE = "/usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so"
PIN = "1234"
LABELS = {"RSA": "rsa", "ECDSA": "ec"}


@dataclass
class Token:
    dir: Path
    pin_file: Path
    ca: Path  # the test CA that issued the token keys' certificates
    certs: dict  # key type -> PEM certificate of the token key
    ders: dict  # key type -> DER of that certificate

    def uri(self, key_type: str) -> str:
        return f"pkcs11:token=wasitls;object={LABELS[key_type]};type=private"

    def identity(self, name: str, key_type: str, uri: str | None = None, cert: Path | None = None) -> list[str]:
        return ["--identity", f"{name}={uri or self.uri(key_type)},{cert or self.certs[key_type]}"]

    def options(self, pin_file: Path | None = None) -> list[str]:
        return ["--pkcs11-module", SOFTHSM2_MODULE, "--pkcs11-pin-file", str(pin_file or self.pin_file)]


def _run(*cmd: str) -> str:
    proc = subprocess.run(cmd, capture_output=True, timeout=TIMEOUT)
    assert proc.returncode == 0, (cmd, proc.stdout, proc.stderr)
    return proc.stdout.decode(errors="replace") + proc.stderr.decode(errors="replace")


def _issue(ca_key, ca_name, public_der: bytes, common_name: str) -> x509.Certificate:
    """A certificate for a public key read from the token (the CA never sees the private key)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    return (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(ca_name)
            .public_key(serialization.load_der_public_key(public_der))
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
            .sign(ca_key, hashes.SHA256()))


@pytest.fixture(scope="session")
def token(tmp_path_factory):
    softhsm2_util = need("softhsm2-util", "softhsm2")
    pkcs11_tool = need("pkcs11-tool", "opensc")
    for path, package in ((SOFTHSM2_MODULE, "softhsm2"), (PKCS11_ENGINE, "libengine-pkcs11-openssl")):
        if not os.path.exists(path):
            pytest.skip(f"{path} missing (apt-get install {package})")
    root = tmp_path_factory.mktemp("token")
    (root / "tokens").mkdir()
    conf = root / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {root / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n")
    saved = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(conf)  # for the wasitls processes the tests start, too
    _run(softhsm2_util, "--init-token", "--free", "--label", "wasitls", "--pin", PIN, "--so-pin", "5678")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "wasitls token test CA")])
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_cert = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=2))
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
               .sign(ca_key, hashes.SHA256()))
    (root / "ca.pem").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    certs, ders = {}, {}
    for key_type, key_spec, key_id in (("RSA", "rsa:2048", "01"), ("ECDSA", "EC:prime256v1", "02")):
        label = LABELS[key_type]
        # generated inside the token: pkcs11-tool makes private keys sensitive and not extractable
        _run(pkcs11_tool, "--module", SOFTHSM2_MODULE, "--login", "--pin", PIN, "--keypairgen", "--key-type", key_spec,
             "--label", label, "--id", key_id, "--usage-sign")
        public = root / f"{label}.pub.der"
        _run(pkcs11_tool, "--module", SOFTHSM2_MODULE, "--read-object", "--type", "pubkey", "--label", label,
             "-o", str(public))
        cert = _issue(ca_key, ca_name, public.read_bytes(), "localhost")
        certs[key_type] = root / f"{label}.crt"
        certs[key_type].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        ders[key_type] = cert.public_bytes(serialization.Encoding.DER)
    (root / "pin").write_text(PIN + "\n")
    yield Token(root, root / "pin", root / "ca.pem", certs, ders)
    if saved is None:
        os.environ.pop("SOFTHSM2_CONF", None)
    else:
        os.environ["SOFTHSM2_CONF"] = saved


# -- the key stays in the token ---------------------------------------------------------------------

CKA_CLASS, CKA_LABEL, CKA_VALUE, CKA_PRIVATE_EXPONENT, CKA_SENSITIVE, CKA_EXTRACTABLE = 0x0, 0x3, 0x11, 0x123, 0x103, 0x162
CKO_PRIVATE_KEY, CKU_USER, CKF_SERIAL_SESSION = 3, 1, 0x4
CKR_ATTRIBUTE_SENSITIVE = 0x11


class CkAttribute(ctypes.Structure):
    _fields_ = [("type", ctypes.c_ulong), ("value", ctypes.c_void_p), ("length", ctypes.c_ulong)]


def _private_key_attributes(label: str, secret_attribute: int) -> tuple[int, bool, bool, int]:
    """Asks the token itself (PKCS#11 C_GetAttributeValue, as any program could) for the key's secret
    part: (return code, CKA_SENSITIVE, CKA_EXTRACTABLE, the length it gave for the secret)."""
    p11 = ctypes.CDLL(SOFTHSM2_MODULE)
    ulong = ctypes.c_ulong
    initialised = p11.C_Initialize(None)
    assert initialised in (0, 0x191)  # CKR_OK, or already initialised (then not ours to finalise)
    try:
        count = ulong(0)
        assert p11.C_GetSlotList(ctypes.c_ubyte(1), None, ctypes.byref(count)) == 0
        slots = (ulong * count.value)()
        assert p11.C_GetSlotList(ctypes.c_ubyte(1), slots, ctypes.byref(count)) == 0
        info = ctypes.create_string_buffer(512)  # CK_TOKEN_INFO starts with its 32-byte label
        slot = next(s for s in slots if p11.C_GetTokenInfo(ulong(s), info) == 0 and info.raw[:32].rstrip() == b"wasitls")
        session = ulong(0)
        assert p11.C_OpenSession(ulong(slot), ulong(CKF_SERIAL_SESSION), None, None, ctypes.byref(session)) == 0
        assert p11.C_Login(session, ulong(CKU_USER), PIN.encode(), ulong(len(PIN))) == 0
        klass, name = ulong(CKO_PRIVATE_KEY), label.encode()
        template = (CkAttribute * 2)(CkAttribute(CKA_CLASS, ctypes.cast(ctypes.byref(klass), ctypes.c_void_p),
                                                 ctypes.sizeof(klass)),
                                     CkAttribute(CKA_LABEL, ctypes.cast(ctypes.c_char_p(name), ctypes.c_void_p),
                                                 len(name)))
        assert p11.C_FindObjectsInit(session, template, ulong(2)) == 0
        handle, found = ulong(0), ulong(0)
        assert p11.C_FindObjects(session, ctypes.byref(handle), ulong(1), ctypes.byref(found)) == 0
        p11.C_FindObjectsFinal(session)
        assert found.value == 1
        flags = [ctypes.c_ubyte(9), ctypes.c_ubyte(9)]
        wanted = (CkAttribute * 2)(*(CkAttribute(t, ctypes.cast(ctypes.byref(f), ctypes.c_void_p), 1)
                                     for t, f in zip((CKA_SENSITIVE, CKA_EXTRACTABLE), flags)))
        assert p11.C_GetAttributeValue(session, handle, wanted, ulong(2)) == 0
        secret = ctypes.create_string_buffer(4096)
        value = (CkAttribute * 1)(CkAttribute(secret_attribute, ctypes.cast(secret, ctypes.c_void_p), len(secret)))
        status = p11.C_GetAttributeValue(session, handle, value, ulong(1))
        p11.C_CloseSession(session)
        return status, bool(flags[0].value), bool(flags[1].value), value[0].length
    finally:
        if initialised == 0:
            p11.C_Finalize(None)


@pytest.mark.parametrize("key_type, secret", [("RSA", CKA_PRIVATE_EXPONENT), ("ECDSA", CKA_VALUE)])
def test_token_key_cannot_be_read_out(token, key_type, secret):
    """The token refuses the private key's secret part: sensitive, not extractable; and what the
    engine gives OpenSSL (the path the host uses) holds no private key material to write out."""
    status, sensitive, extractable, length = _private_key_attributes(LABELS[key_type], secret)
    assert (sensitive, extractable) == (True, False)
    assert status == CKR_ATTRIBUTE_SENSITIVE
    assert length == ctypes.c_ulong(-1).value  # CK_UNAVAILABLE_INFORMATION
    out = token.dir / f"exported-{key_type}.pem"
    proc = subprocess.run(["openssl", "pkey", "-engine", "pkcs11", "-inform", "engine", "-passin", f"file:{token.pin_file}",
                           "-in", f"{token.uri(key_type)}?pin-source=file:{token.pin_file}", "-out", str(out)],
                          capture_output=True, timeout=TIMEOUT)
    exported = out.read_bytes() if out.exists() else b""
    if proc.returncode == 0 and exported:  # EC: OpenSSL writes a key whose private scalar is zero
        from cryptography.hazmat.primitives.serialization import load_pem_private_key
        assert load_pem_private_key(exported, None).private_numbers().private_value == 0
    else:
        assert b"PRIVATE KEY" not in exported


# -- a guest server on a token identity -------------------------------------------------------------

@pytest.fixture(scope="module")
def min_server(build_guest):
    return build_guest("tls_min_server")


@pytest.mark.parametrize("version, key_type", MATRIX)
def test_guest_server_on_token_identity(token, min_server, version, key_type):
    """wasitls:tls/identities.get hands the guest the token identity; openssl s_client, curl and Python
    ssl verify the handshake (signed in the token) against the test CA."""
    cmd = wasitls_command(min_server, [0, 3, "host:server"], listen=True,
                          extra=[*token.identity("server", key_type), *token.options()])
    flag = {"TLSv1.2": "-tls1_2", "TLSv1.3": "-tls1_3"}[version]
    with GuestServer(cmd) as guest:
        s_client = subprocess.run(
            [need("openssl", "openssl"), "s_client", "-connect", f"127.0.0.1:{guest.port}", "-servername", "localhost",
             "-CAfile", str(token.ca), "-verify_return_error", "-verify_hostname", "localhost", "-ign_eof", flag],
            input=b"GET /s_client HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", capture_output=True,
            timeout=TIMEOUT).stdout.decode(errors="replace")
        curl = subprocess.run(
            [need("curl", "curl"), "-sS", "-v", "--cacert", str(token.ca), "--resolve", f"localhost:{guest.port}:127.0.0.1",
             "--http1.1", f"--tlsv{version[4:]}", "--tls-max", version[4:], f"https://localhost:{guest.port}/curl"],
            capture_output=True, timeout=TIMEOUT)
        context = ssl.create_default_context(cafile=str(token.ca))
        context.minimum_version = context.maximum_version = {"TLSv1.2": ssl.TLSVersion.TLSv1_2,
                                                             "TLSv1.3": ssl.TLSVersion.TLSv1_3}[version]
        with socket.create_connection(("127.0.0.1", guest.port), timeout=TIMEOUT) as raw:
            with context.wrap_socket(raw, server_hostname="localhost") as tls:
                py_der, py_version = tls.getpeercert(binary_form=True), tls.version()
                tls.sendall(b"GET /python HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                py_response = b"".join(iter(lambda: tls.recv(4096), b""))
        run = guest.finish()
    assert run.returncode == 0, run
    assert "ok 0\n" in s_client, s_client
    assert re.search(rf"^New, {version}, Cipher is ", s_client, re.M), s_client
    assert "Verify return code: 0 (ok)" in s_client
    assert curl.returncode == 0, curl.stderr
    assert curl.stdout.startswith(b"ok 1\n")
    assert f"SSL connection using {version} ".encode() in curl.stderr
    assert (py_version, py_der) == (version, token.ders[key_type])
    assert py_response.endswith(b"\r\n\r\nok 2\n")
    assert [line for line in run.lines if "handshake=" in line] == [f"conn={n} handshake=ok" for n in range(3)]


# -- a guest client presenting a token identity -----------------------------------------------------

@pytest.fixture(scope="module")
def client_showcase(build_guest):
    return build_guest("tls_client_showcase")


@pytest.mark.parametrize("version, key_type", [("TLSv1.3", "RSA"), ("TLSv1.2", "ECDSA")])
def test_guest_client_presents_token_identity_to_nginx(token, client_showcase, pkis, tmp_path, version, key_type):
    """nginx with ssl_verify_client on (trusting the token CA) accepts the guest's answer to its
    certificate request: the token identity the host holds; the signature is made in the token."""
    pki = pkis[key_type]
    port = free_port()
    conf = tmp_path / "nginx.conf"
    conf.write_text(nginx_tls_conf(tmp_path, port, cert=pki.localhost.cert, key=pki.localhost.key, version=version,
                                   client_ca=token.ca, body="protocol=$ssl_protocol\\nverify=$ssl_client_verify\\n"
                                                            "fingerprint=$ssl_client_fingerprint\\n"))
    nginx = PeerProcess([need("nginx", "nginx"), "-p", str(tmp_path), "-c", str(conf)], port=port)
    try:
        run = run_guest(wasitls_command(client_showcase, ["127.0.0.1", port, "localhost", "--alpn=http/1.1",
                                                           "--client-id=host:me"],
                                        pki=pki, extra=[*token.identity("me", key_type), *token.options()]))
    finally:
        nginx.stop()
    assert run.returncode == 0, run
    facts = run.facts()
    assert (facts["client-identity-request"], facts["responded"]) == ("some", sha256(token.ders[key_type]))
    body = dict(line.split("=", 1) for line in run.response.split("\r\n\r\n", 1)[1].splitlines() if "=" in line)
    assert (body["protocol"], body["verify"]) == (version, "SUCCESS")
    assert body["fingerprint"] == hashlib.sha1(token.ders[key_type]).hexdigest()


# -- errors: one line at start-up, exit 2, the guest never runs --------------------------------------

def _start(token, min_server, *options: str, env: dict | None = None):
    cmd = [sys.executable, "-m", "wasitls", "run", "--allow-listen", "127.0.0.1:0", *options, str(min_server),
           "0", "1", "host:server"]
    proc = subprocess.run(cmd, capture_output=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL,
                          env={**os.environ, **(env or {})})
    return proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")


def _error_cases(token: Token) -> dict:
    wrong_pin = token.dir / "wrong-pin"
    wrong_pin.write_text("0000\n")
    rsa = token.uri("RSA")
    return {
        "wrong PIN": (token.identity("server", "RSA") + token.options(wrong_pin), {},
                      "wrong PIN: the token refused it"),
        "missing token": (token.identity("server", "RSA", uri="pkcs11:token=absent;object=rsa") + token.options(), {},
                          "no token matches token=absent"),
        "missing object": (token.identity("server", "RSA", uri="pkcs11:token=wasitls;object=absent") + token.options(),
                           {}, "no private key matches object=absent in the token"),
        "certificate of another key": (token.identity("server", "RSA", cert=token.certs["ECDSA"]) + token.options(), {},
                                       "the private key does not match the end-entity certificate"),
        "module missing": (token.identity("server", "RSA") + ["--pkcs11-module", str(token.dir / "absent.so"),
                                                               "--pkcs11-pin-file", str(token.pin_file)], {},
                           f"PKCS#11 module {token.dir / 'absent.so'}: no such file"),
        "engine missing": (token.identity("server", "RSA") + token.options(), {"OPENSSL_ENGINES": str(token.dir)},
                           "the OpenSSL pkcs11 engine is not installed (Debian: apt-get install libengine-pkcs11-openssl)"),
        "PIN in the URI": (token.identity("server", "RSA", uri=f"{rsa}?pin-value={PIN}") + token.options(), {},
                           "pin-value in a PKCS#11 URI is refused"),
        "no PIN": (token.identity("server", "RSA") + ["--pkcs11-module", SOFTHSM2_MODULE], {},
                   "no PIN for the token: give --pkcs11-pin-file FILE"),
    }


@pytest.mark.parametrize("case", ["wrong PIN", "missing token", "missing object", "certificate of another key",
                                  "module missing", "engine missing", "PIN in the URI", "no PIN"])
def test_start_up_errors_are_one_line(token, min_server, case):
    options, env, expected = _error_cases(token)[case]
    status, out, err = _start(token, min_server, *options, env=env)
    assert status == 2, (out, err)
    assert out == ""  # the guest never ran (it prints `listening on` first)
    assert err.count("\n") == 1 and err.startswith("wasitls: error: identity 'server': "), err
    assert expected in err, err
    assert PIN not in err.replace(str(token.dir), "")  # never echoed, not even a refused pin-value


def test_pin_source_in_uri_and_module_from_environment(token, min_server):
    """The URI's pin-source=file: names the PIN file, WASITLS_PKCS11_MODULE the module: the host starts."""
    uri = f"{token.uri('ECDSA')}?pin-source=file:{token.pin_file}"
    cmd = wasitls_command(min_server, [0, 1, "host:server"], listen=True, extra=token.identity("server", "ECDSA", uri=uri))
    env = {**os.environ, "WASITLS_PKCS11_MODULE": SOFTHSM2_MODULE}
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        first = proc.stdout.readline().decode()
    finally:
        proc.kill()
        proc.communicate()
    assert first.startswith("listening on 127.0.0.1:"), proc.stderr


def test_embedding_api_token_identity(token):
    """Host(identities={NAME: (pkcs11 URI, CERT)}, pkcs11_module=..., pkcs11_pin_file=...) builds the
    same PrivateIdentity a key file does, with the token's certificate."""
    from wasitls import Host
    from wasitls.tls.identity import PrivateIdentity

    host = Host(identities={"web": (token.uri("RSA"), str(token.certs["RSA"]))}, pkcs11_module=SOFTHSM2_MODULE,
                pkcs11_pin_file=str(token.pin_file))
    identity = host._tls().identities["web"]
    assert isinstance(identity, PrivateIdentity)
    assert identity.public_identity().export_x509_chain() == [token.ders["RSA"]]


# -- preview-1 hTLS: the same identities by name ---------------------------------------------------

@pytest.fixture(scope="module")
def socktool():
    from wasitls.devtools.preview1_build import build_c
    return build_c("socktool", sdk=True)


def test_preview1_server_side_htls_on_token_identity(token, socktool):
    """A preview-1 module serving hTLS with `--identity site=pkcs11:...`: curl verifies it against the test CA."""
    curl = need("curl", "curl")
    port = free_port()
    cmd = [sys.executable, "-m", "wasitls", "run", "--allow-listen", f"127.0.0.1:{port}",
           *token.identity("site", "ECDSA"), *token.options(), str(socktool), "https-server", "127.0.0.1", str(port),
           "site", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "bind: ok\n", proc.stderr
        assert proc.stdout.readline() == "listen: ok\n"
        fetched = subprocess.run([curl, "-sS", "--cacert", str(token.ca), f"https://localhost:{port}/"],
                                 capture_output=True, text=True, timeout=TIMEOUT)
        proc.communicate(timeout=TIMEOUT)
    finally:
        proc.kill()
    assert fetched.returncode == 0, fetched.stderr
    assert fetched.stdout.startswith("hello over host TLS"), fetched


def test_preview1_client_identity_by_name_on_token_identity(token, socktool, tmp_path):
    """A preview-1 client names the token identity (the hTLS identity option); Python ssl, requiring a
    client certificate from the test CA, completes the handshake."""
    import trustme
    from test_wasi_tls import HttpsServer, server_context

    server_ca = trustme.CA()
    server_ca.cert_pem.write_to_path(str(tmp_path / "server-ca.pem"))
    context = server_context(server_ca.issue_cert("localhost"), version=ssl.TLSVersion.TLSv1_3)
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cafile=str(token.ca))
    with HttpsServer(context, b"ok") as server:
        proc = subprocess.run([sys.executable, "-m", "wasitls", "run", "--allow-net", "127.0.0.1", "--ca-file",
                               str(tmp_path / "server-ca.pem"), *token.identity("me", "RSA"), *token.options(),
                               str(socktool), "fetch", "127.0.0.1", str(server.port), "localhost", "", "me"],
                              capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "identity: ok" in proc.stdout
    assert server.errors == []


# -- the URI form -----------------------------------------------------------------------------------

def test_uri_forms():
    """RFC 7512 as the host reads it: path attributes percent-decoded and passed on without the query;
    pin-source as a file (file:/p, file:///p, a path); module-path; the rest refused, never echoing a PIN."""
    from wasitls.tls.pkcs11 import TokenError, parse_uri, redacted

    uri = parse_uri("pkcs11:token=my%20token;object=web;id=%01?pin-source=file:///run/pin&module-path=/m.so")
    assert uri.attributes == {"token": "my token", "object": "web", "id": "\x01"}
    assert uri.engine_uri == "pkcs11:token=my%20token;object=web;id=%01"
    assert (uri.pin_source, uri.module_path) == ("/run/pin", "/m.so")
    assert parse_uri("pkcs11:object=a?pin-source=file:/p").pin_source == "/p"
    assert parse_uri("pkcs11:object=a?pin-source=/p").pin_source == "/p"
    for text, says in [("pkcs11:", "names no key"), ("pkcs11:object", "not an attribute"),
                       ("pkcs11:object=a?pin-source=%7Cpinentry", "running a command for the PIN is not supported"),
                       ("pkcs11:object=a?pin-source=https://x/pin", "only file: pin sources"),
                       ("pkcs11:object=a?module-name=softhsm2", "'module-name' is not supported"),
                       ("pkcs11:object=a?pin-value=1234", "pin-value in a PKCS#11 URI is refused"),
                       ("pkcs11:object=a,/tmp/cert.pem", "'/' in the URI's path")]:
        with pytest.raises(TokenError) as raised:
            parse_uri(text)
        assert says in str(raised.value) and "1234" not in str(raised.value)
    assert redacted("pkcs11:object=a?pin-value=1234&x=y") == "pkcs11:object=a?pin-value=...&x=y"
