"""The standard `ssl` module in a Python guest (guest/python's _ssl over wasitls:tls/memory): stdlib
code unchanged (ssl, http.client, urllib, asyncio) against Python ssl and openssl, TLS 1.2 and 1.3,
both directions; failures as SSLError / SSLCertVerificationError with reasons; the host's policy."""

from __future__ import annotations

import subprocess
import time

import pytest

from guest_ssl import Guest, HttpsServer, build_probe, free_port, make_pki, need, py_client, run

VERSIONS = {"TLSv1.2": "--tls12", "TLSv1.3": "--tls13"}


@pytest.fixture(scope="module")
def probe():
    return build_probe()


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pyssl-pki"))


@pytest.fixture(scope="module")
def https(pki):
    server = HttpsServer(pki.server_pem)
    server.start()
    yield server
    server.close()


@pytest.fixture(scope="module")
def https_mtls(pki):
    server = HttpsServer(pki.server_pem, client_ca=pki.client_ca)
    server.start()
    yield server
    server.close()


def trusting(pki, *more: str) -> list[str]:
    return ["--allow-net", "127.0.0.1", "--allow-net", "localhost", "--ca-file", str(pki.ca), *more]


# -- clients ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("version", VERSIONS)
def test_wrap_socket_client_against_python_ssl(probe, pki, https, version):
    r = run(probe, ["client", "127.0.0.1", https.port, "example.test", VERSIONS[version], "--alpn", "h2,http/1.1"],
            *trusting(pki))
    assert r.status == 0, r
    f = r.facts()
    assert f["version"] == version
    assert f["alpn"] == "http/1.1"
    assert "'commonName': 'example.test'" in f["peer_subject"]
    assert "('IP Address', '127.0.0.1')" in f["peer_san"]
    assert int(f["peer_der_len"]) > 300
    assert f["body"] == "hello from /"
    # tls-unique: the same bytes on both ends for TLS 1.2; none for TLS 1.3 (RFC 9266)
    assert f["tls_unique"] == (https.bindings[-1].hex() if version == "TLSv1.2" else "None")


def test_non_blocking_socket_with_selectors(probe, pki, https):
    r = run(probe, ["nbclient", "127.0.0.1", https.port, "example.test"], *trusting(pki))
    assert r.status == 0, r
    assert r.facts()["version"] == "TLSv1.3"
    assert r.facts()["timeout"] == "0.0 received=51"  # non-blocking all along
    assert r.facts()["body"] == "hello from /"


def test_wrap_bio_memorybio_client(probe, pki, https):
    r = run(probe, ["bio", "127.0.0.1", https.port, "example.test"], *trusting(pki))
    assert r.status == 0, r
    assert r.facts()["version"] == "TLSv1.3"
    assert r.facts()["body"] == "hello from /"


def test_http_client_keep_alive(probe, pki, https):
    before = https.connections
    r = run(probe, ["https", "localhost", https.port, "/a", "/b"], *trusting(pki))
    assert r.status == 0, r
    assert "body=hello from /a" in r.out and "body=hello from /b" in r.out
    assert r.facts()["connections"] == "1"
    assert https.connections == before + 1  # both requests on one TLS connection


def test_urlopen_https(probe, pki, https):
    r = run(probe, ["urlopen", f"https://localhost:{https.port}/u"], *trusting(pki))
    assert r.status == 0, r
    assert r.facts()["body"] == "hello from /u"


def test_asyncio_open_connection(probe, pki, https):
    # asyncio's event loop makes its self-pipe from a loopback listener: the guest needs to bind one
    r = run(probe, ["aclient", "127.0.0.1", https.port, "example.test"],
            *trusting(pki, "--allow-listen", "127.0.0.1:0"))
    assert r.status == 0, r
    assert r.facts()["version"] == "TLSv1.3"
    assert r.facts()["body"] == "hello from /"


@pytest.mark.parametrize("version", VERSIONS)
def test_client_against_openssl_s_server(probe, pki, version):
    openssl = need("openssl", "openssl")
    port = free_port()
    flag = "-tls1_2" if version == "TLSv1.2" else "-tls1_3"
    server = subprocess.Popen([openssl, "s_server", "-accept", f"127.0.0.1:{port}", "-cert", str(pki.server_cert),
                               "-key", str(pki.server_key), flag, "-www", "-alpn", "http/1.1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        _wait_port(port)
        r = run(probe, ["client", "127.0.0.1", port, "example.test", "--alpn", "http/1.1"], *trusting(pki))
    finally:
        server.kill()
        server.wait()
    assert r.status == 0, r
    assert r.facts()["version"] == version
    assert r.facts()["alpn"] == "http/1.1"
    assert int(r.facts()["received"]) > 100  # s_server -www's status page


def test_client_certificate_from_the_host(probe, pki, https_mtls):
    r = run(probe, ["client", "127.0.0.1", https_mtls.port, "example.test", "--identity", "me"],
            *trusting(pki, "--identity", f"me={pki.client_key},{pki.client_cert}"))
    assert r.status == 0, r
    assert r.facts()["body"] == "hello from / to guest-client"


def test_client_certificate_from_guest_files(probe, pki, https_mtls):
    r = run(probe, ["client", "127.0.0.1", https_mtls.port, "example.test", "--cert", "/pki/client.crt",
                    "--key", "/pki/client.key"], *trusting(pki, "--dir", f"{pki.dir}::/pki"))
    assert r.status == 0, r
    assert r.facts()["body"] == "hello from / to guest-client"


# -- failures a person can act on ---------------------------------------------------------------------
def test_wrong_host_name(probe, pki, https):
    r = run(probe, ["client", "127.0.0.1", https.port, "wrong.test"], *trusting(pki))
    assert r.status == 1, r
    assert r.facts()["error"] == "SSLCertVerificationError verify_code=62"
    assert "hostname mismatch" in r.facts()["reason"] and "wrong.test" in r.facts()["reason"]


@pytest.mark.parametrize("which, code, words", [
    ("rogue_pem", 20, "unable to get local issuer certificate"),
    ("expired_pem", 10, "certificate has expired"),
])
def test_untrusted_and_expired_servers(probe, pki, which, code, words):
    server = HttpsServer(getattr(pki, which))
    server.start()
    try:
        r = run(probe, ["client", "127.0.0.1", server.port, "example.test"], *trusting(pki))
    finally:
        server.close()
    assert r.status == 1, r
    assert r.facts()["error"] == f"SSLCertVerificationError verify_code={code}"
    assert r.facts()["reason"].startswith("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: " + words)


def test_server_requiring_a_certificate_the_guest_lacks(probe, pki, https_mtls):
    r = run(probe, ["client", "127.0.0.1", https_mtls.port, "example.test"], *trusting(pki))
    assert r.status == 1, r
    assert r.facts()["error"] == "SSLError"
    assert "certificate required" in r.facts()["reason"], r


# -- the host's policy -------------------------------------------------------------------------------
def test_checks_cannot_be_turned_off_by_default(probe, pki):
    r = run(probe, ["insecure"], *trusting(pki))
    assert r.status == 0, r
    for what in ("check_hostname", "cert_none", "bare_context"):
        assert r.facts()[what].startswith("refused reason=[WASITLS: WASITLS_REFUSED] this host does not let guests")
        assert "--tls-guest-insecure" in r.facts()[what]


def test_checks_off_when_the_host_allows_it(probe, pki):
    server = HttpsServer(pki.rogue_pem)
    server.start()
    try:
        refused = run(probe, ["client", "127.0.0.1", server.port, "example.test", "--insecure"], *trusting(pki))
        allowed = run(probe, ["client", "127.0.0.1", server.port, "example.test", "--insecure"],
                      *trusting(pki, "--tls-guest-insecure"))
    finally:
        server.close()
    assert refused.status == 1 and "WASITLS_REFUSED" in refused.facts()["reason"], refused
    assert allowed.status == 0, allowed
    assert allowed.facts()["body"] == "hello from /"


def test_guest_roots_narrow_the_hosts_trust(probe, pki, https):
    """By default a guest's load_verify_locations can only narrow trust: its CA must be on the
    server's chain, and the chain must still pass the host's own trust."""
    mount = ["--dir", f"{pki.dir}::/pki"]
    same = run(probe, ["client", "127.0.0.1", https.port, "example.test", "--cafile", "/pki/ca.pem"],
               *trusting(pki, *mount))
    other = run(probe, ["client", "127.0.0.1", https.port, "example.test", "--cafile", "/pki/client-ca.pem"],
                *trusting(pki, *mount))
    # a root the host does not trust adds nothing
    not_added = run(probe, ["client", "127.0.0.1", https.port, "example.test", "--cafile", "/pki/ca.pem"],
                    "--allow-net", "127.0.0.1", "--ca-file", str(pki.client_ca), *mount)
    assert same.status == 0, same
    assert other.status == 1 and "none of the CAs the guest loaded" in other.facts()["reason"], other
    assert not_added.status == 1 and "unable to get local issuer certificate" in not_added.facts()["reason"], not_added


def test_guest_roots_replace_the_hosts_trust_when_allowed(probe, pki, https):
    r = run(probe, ["client", "127.0.0.1", https.port, "example.test", "--cafile", "/pki/ca.pem"],
            "--allow-net", "127.0.0.1", "--ca-file", str(pki.client_ca), "--dir", f"{pki.dir}::/pki",
            "--tls-guest-roots", "own")
    assert r.status == 0, r
    assert r.facts()["body"] == "hello from /"


# -- servers ------------------------------------------------------------------------------------------
def serve(probe, pki, scenario, count, *args, options=()):
    port = free_port()
    guest = Guest(probe, [scenario, port, count, *args], "--allow-listen", f"127.0.0.1:{port}",
                  "--dir", f"{pki.dir}::/pki", "--identity", f"web={pki.server_key},{pki.server_cert}",
                  *options)
    guest.wait_for("listening=1")
    return guest, port


@pytest.mark.parametrize("version", VERSIONS)
def test_server_with_sni_callback_and_alpn(probe, pki, version):
    guest, port = serve(probe, pki, "server", 2, "--cert", "/pki/server.crt", "--key", "/pki/server.key",
                        "--sni", "--alpn", "h2,http/1.1", "--unwrap")
    first = py_client(port, pki.ca, version=version, alpn=("h2",))
    second = py_client(port, pki.ca, version=version, alpn=("spdy/1",))  # no match: no ALPN, as CPython
    r = guest.finish()
    assert first == f"{version} echo ping" and second == f"{version} echo ping", r
    assert "sni=example.test" in r.out
    assert f"served version={version} alpn=h2 client=- line=ping" in r.out
    assert f"served version={version} alpn=None client=- line=ping" in r.out
    assert r.out.count("unwrapped=SSLSocket") == 2, r  # as CPython: unwrap() hands back the same socket


def test_server_requires_client_certificates(probe, pki):
    guest, port = serve(probe, pki, "server", 3, "--identity", "web", "--require-cert", "--cafile", "/pki/client-ca.pem",
                        options=("--client-ca-file", str(pki.client_ca)))
    with_cert = py_client(port, pki.ca, cert=pki.client_pem)
    without = py_client(port, pki.ca)
    openssl = need("openssl", "openssl")
    s_client = subprocess.run([openssl, "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "example.test",
                               "-CAfile", str(pki.ca), "-cert", str(pki.client_cert), "-key", str(pki.client_key),
                               "-tls1_2", "-quiet"], input=b"from openssl\n", capture_output=True, timeout=60)
    r = guest.finish()
    assert with_cert == "TLSv1.3 echo ping", r
    assert "certificate required" in without, (without, r)
    assert b"echo from openssl" in s_client.stdout, (s_client, r)
    assert "served version=TLSv1.3 alpn=None client=guest-client line=ping" in r.out
    assert "served version=TLSv1.2 alpn=None client=guest-client line=from openssl" in r.out
    assert "server_error=SSLError reason=[SSL: PEER_DID_NOT_RETURN_A_CERTIFICATE]" in r.out


def test_asyncio_start_server(probe, pki):
    guest, port = serve(probe, pki, "aserver", 1, "--identity", "web",
                        options=("--allow-listen", "127.0.0.1:0", "--allow-net", "127.0.0.1"))
    answer = py_client(port, pki.ca, version="TLSv1.2", line=b"async hello\n")
    r = guest.finish()
    assert answer == "TLSv1.2 echo async hello", r
    assert "served version=TLSv1.2 alpn=None client=- line=async hello" in r.out


def _wait_port(port: int) -> None:
    import socket

    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")


def test_server_guest_roots_narrow_client_trust(probe, pki):
    """A server guest's load_verify_locations narrows which client certificates pass: the client's
    chain passes the host's --client-ca-file but does not lead to the CA the guest loaded."""
    guest, port = serve(probe, pki, "server", 1, "--identity", "web", "--require-cert", "--cafile", "/pki/ca.pem",
                        options=("--client-ca-file", str(pki.client_ca)))
    answer = py_client(port, pki.ca, cert=pki.client_pem)
    r = guest.finish()
    assert "echo" not in answer, (answer, r)
    assert "server_error=SSLCertVerificationError" in r.out and "none of the CAs the guest loaded" in r.out, r
