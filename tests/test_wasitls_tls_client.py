"""wasitls:tls@0.1.0 client side: the seed's minimal client and client showcase (guests
tls_min_client, tls_client_showcase) against real servers on loopback: openssl s_server,
gnutls-serv, nginx with `ssl_verify_client on`, and Python ssl; TLS 1.2 and 1.3, RSA and ECDSA.
Every fact the guest prints is checked against what the server reports."""

from __future__ import annotations

import re
import ssl

import pytest

from wasitls.devtools.http_peers import nginx_tls_conf
from wasitls_tls_helpers import (MATRIX, VERSIONS, GuestServer, PeerProcess, PyTlsServer, free_port, iana_suite,
                                 need, pem_to_der, py_server_context, run_guest, wasitls_command)


# The suite each openssl/gnutls server is pinned to, so the guest's cipher-suite is known exactly.
OPENSSL_SUITES = {("TLSv1.2", "RSA"): "ECDHE-RSA-AES128-GCM-SHA256", ("TLSv1.2", "ECDSA"): "ECDHE-ECDSA-AES128-GCM-SHA256",
                  ("TLSv1.3", "RSA"): "TLS_CHACHA20_POLY1305_SHA256", ("TLSv1.3", "ECDSA"): "TLS_CHACHA20_POLY1305_SHA256"}
GNUTLS_PRIORITY = {"TLSv1.2": "NORMAL:-VERS-ALL:+VERS-TLS1.2:-CIPHER-ALL:+AES-128-GCM",
                   "TLSv1.3": "NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+CHACHA20-POLY1305"}
GNUTLS_SUITES = OPENSSL_SUITES  # the same suites, in GnuTLS words


@pytest.fixture(scope="module")
def min_client(build_guest):
    return build_guest("tls_min_client")


@pytest.fixture(scope="module")
def showcase(build_guest):
    return build_guest("tls_client_showcase")


def s_server(pki, version, key_type, port, *extra):
    openssl = need("openssl", "openssl")
    suite = OPENSSL_SUITES[version, key_type]
    pin = ["-ciphersuites", suite] if version == "TLSv1.3" else ["-cipher", suite]
    flag = {"TLSv1.2": "-tls1_2", "TLSv1.3": "-tls1_3"}[version]
    return PeerProcess([openssl, "s_server", "-accept", f"127.0.0.1:{port}", "-key", str(pki.localhost.key),
                        "-cert", str(pki.localhost.cert), flag, *pin, "-www", "-naccept", "1", *extra], ready="ACCEPT")


def s_server_page(page: str) -> dict[str, str]:
    """Protocol, Cipher and the client certificate (DER or None) from an `s_server -www` page."""
    protocol = re.search(r"Protocol\s*: (\S+)", page).group(1)
    cipher = re.search(r"Cipher\s*: (\S+)", page).group(1)
    pem = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", page, re.S)
    return {"protocol": protocol, "cipher": cipher, "client_der": pem_to_der(pem.group(0)) if pem else None}


def check_facts(facts, pki, version, suite_name, *, alpn="none", client=None, server_name="localhost"):
    assert facts["handshake"] == "ok"
    assert facts["server-name"] == server_name
    assert facts["alpn-id"] == alpn
    assert facts["client-identity"] == (client.described() if client else "none")
    assert facts["server-identity"].startswith(pki.localhost.fingerprint + " ")
    assert facts["server-identity"].endswith(f" subject={pki.localhost.subject}")
    assert facts["protocol-version"] == f"0x{VERSIONS[version]:04x}"
    assert facts["cipher-suite"] == f"0x{iana_suite(suite_name):04x}"


# -- the minimal client -------------------------------------------------------------------------

@pytest.mark.parametrize("version, key_type", MATRIX)
def test_minimal_client_against_openssl_s_server(min_client, pkis, version, key_type):
    """The seed's minimal client: connect(name).finish(), GET, print; s_server agrees on protocol and suite."""
    pki, port = pkis[key_type], free_port()
    with s_server(pki, version, key_type, port) as server:
        run = run_guest(wasitls_command(min_client, ["127.0.0.1", port, "localhost"], pki=pki))
        server.output()
    assert run.returncode == 0, run
    assert run.lines[:3] == ["handshake=ok", "response-end=closed", "response:"], run
    page = s_server_page(run.response)
    assert (page["protocol"], page["cipher"]) == (version, OPENSSL_SUITES[version, key_type])
    assert page["client_der"] is None


def test_minimal_client_refuses_untrusted_server(min_client, pkis):
    """Secure by default: a server whose chain does not lead to --ca-file fails the handshake."""
    pki = pkis["ECDSA"]
    ctx = py_server_context(pki.stranger)
    with PyTlsServer(ctx) as server:
        run = run_guest(wasitls_command(min_client, ["127.0.0.1", server.port, "localhost"], pki=pki))
    assert run.returncode == 1, run
    assert run.lines == ["handshake=failed"], run
    trace = [line for line in run.err.splitlines() if line.startswith("tls: ")]
    assert len(trace) == 1 and "ended=failed: certificate verify failed" in trace[0], run.err
    assert isinstance(server.views[0].error, ssl.SSLError)
    assert server.views[0].received == b""


# -- the client showcase --------------------------------------------------------------------------

@pytest.mark.parametrize("version, key_type", MATRIX)
def test_showcase_against_openssl_s_server(showcase, pkis, version, key_type):
    """ALPN h2, a pinned-leaf check on top of the host's, a client certificate from files:
    s_server (-verify, -alpn) reports the same protocol, suite, ALPN id and client certificate."""
    pki, port = pkis[key_type], free_port()
    with s_server(pki, version, key_type, port, "-verify", "1", "-CAfile", str(pki.client_ca),
                  "-alpn", "h2,http/1.1") as server:
        run = run_guest(wasitls_command(showcase, [
            "127.0.0.1", port, "localhost", f"--pin-sha256={pki.localhost.fingerprint[7:]}",
            f"--client-id={pki.alice.guest_spec()}"], pki=pki))
        log = server.output()
    assert run.returncode == 0, run
    facts = run.facts()
    assert facts["server-identity.received"].startswith(pki.localhost.fingerprint + " ")
    assert facts["custom-check"] == "pass"
    assert facts["client-identity-request"] == "some"
    assert facts["responded"] == pki.alice.fingerprint
    suite = OPENSSL_SUITES[version, key_type]
    check_facts(facts, pki, version, suite, alpn="h2", client=pki.alice)
    page = s_server_page(run.response)
    assert (page["protocol"], page["cipher"], page["client_der"]) == (version, suite, pki.alice.der)
    assert "ALPN protocols advertised by the client: h2\n" in log
    assert "ALPN protocols selected: h2\n" in log


@pytest.mark.parametrize("version, key_type", MATRIX)
def test_showcase_against_gnutls_serv(showcase, pkis, version, key_type):
    """The same against GnuTLS (--require-client-cert --verify-client-cert --alpn h2), the client
    certificate given as a PEM chain; gnutls-serv's status page names protocol, cipher and certificate."""
    gnutls_serv = need("gnutls-serv", "gnutls-bin")
    pki, port = pkis[key_type], free_port()
    cmd = [gnutls_serv, "--http", "-p", str(port), "--x509keyfile", str(pki.localhost.key), "--x509certfile",
           str(pki.localhost.cert), "--x509cafile", str(pki.client_ca), "--require-client-cert",
           "--verify-client-cert", "--alpn", "h2", "--priority", GNUTLS_PRIORITY[version]]
    with PeerProcess(cmd, ready="listening on IPv4") as server:
        run = run_guest(wasitls_command(showcase, [
            "127.0.0.1", port, "localhost", "--expect-cn=localhost", f"--client-id={pki.alice.guest_spec('pem')}"],
            pki=pki))
        log = server.stop()
    assert run.returncode == 0, run
    facts = run.facts()
    assert (facts["custom-check"], facts["client-identity-request"]) == ("pass", "some")
    check_facts(facts, pki, version, GNUTLS_SUITES[version, key_type], alpn="h2", client=pki.alice)
    page = " ".join(re.sub(r"<[^>]+>", " ", run.response).split())
    assert f"Protocol version: {version.replace('v', '')}" in page
    assert pki.alice.fingerprint in page  # gnutls-serv prints the client certificate's sha256
    assert "Application protocol: h2" in log


@pytest.fixture
def nginx(tmp_path):
    """start(pki, version) -> port of an nginx with ssl_verify_client on (-p tmpdir, daemon off)."""
    binary = need("nginx", "nginx")
    started = []

    def start(pki, version):
        port = free_port()
        conf = tmp_path / "nginx.conf"
        conf.write_text(nginx_tls_conf(tmp_path, port, cert=pki.localhost.cert, key=pki.localhost.key, version=version,
                                       client_ca=pki.client_ca, server_name="localhost", body=NGINX_BODY))
        started.append(PeerProcess([binary, "-p", str(tmp_path), "-c", str(conf)], port=port))
        return port

    yield start
    for server in started:
        server.stop()


NGINX_BODY = ("protocol=$ssl_protocol\\ncipher=$ssl_cipher\\nalpn=$ssl_alpn_protocol\\nsni=$ssl_server_name\\n"
              "verify=$ssl_client_verify\\nsubject=$ssl_client_s_dn\\nfingerprint=$ssl_client_fingerprint\\n")


def body_of(run) -> dict[str, str]:
    body = run.response.split("\r\n\r\n", 1)[1]
    return dict(line.split("=", 1) for line in body.splitlines() if "=" in line)


@pytest.mark.parametrize("version, key_type", MATRIX)
def test_showcase_against_nginx_with_host_identity(showcase, nginx, pkis, version, key_type):
    """nginx with ssl_verify_client on accepts the client identity the host holds
    (`--identity alice=...`, identities.get): nginx's variables match the guest's facts."""
    pki = pkis[key_type]
    port = nginx(pki, version)
    run = run_guest(wasitls_command(showcase, ["127.0.0.1", port, "localhost", "--alpn=http/1.1",
                                               "--client-id=host:alice"], pki=pki, identities={"alice": pki.alice}))
    assert run.returncode == 0, run
    facts = run.facts()
    assert (facts["client-identity-request"], facts["responded"]) == ("some", pki.alice.fingerprint)
    seen = body_of(run)
    check_facts(facts, pki, version, seen["cipher"], alpn="http/1.1", client=pki.alice)
    assert seen["protocol"] == version
    assert (seen["alpn"], seen["sni"], seen["verify"]) == ("http/1.1", "localhost", "SUCCESS")
    assert seen["fingerprint"] == pki.alice.sha1
    assert "CN=alice" in seen["subject"].split(",")


def test_showcase_against_nginx_without_certificate(showcase, nginx, pkis):
    """Dropping the client-identity-request sends no certificate: nginx answers 400."""
    pki = pkis["RSA"]
    port = nginx(pki, "TLSv1.3")
    run = run_guest(wasitls_command(showcase, ["127.0.0.1", port, "localhost", "--alpn=http/1.1"], pki=pki))
    assert run.returncode == 0, run
    facts = run.facts()
    assert (facts["client-identity-request"], facts["responded"], facts["client-identity"]) == ("some", "nothing", "none")
    assert run.response.startswith("HTTP/1.1 400 ")
    assert "No required SSL certificate was sent" in run.response


@pytest.mark.parametrize("version, key_type", MATRIX)
def test_showcase_against_python_ssl(showcase, pkis, version, key_type):
    """Python ssl server (CERT_OPTIONAL, ALPN h2): every fact matches the server's own view."""
    pki = pkis[key_type]
    ctx = py_server_context(pki.localhost, version, client_ca=pki.client_ca, verify=ssl.CERT_OPTIONAL, alpn=["h2"])
    with PyTlsServer(ctx) as server:
        run = run_guest(wasitls_command(showcase, ["127.0.0.1", server.port, "localhost",
                                                   f"--client-id={pki.alice.guest_spec()}", "--path=/hello"], pki=pki))
    assert run.returncode == 0, run
    view = server.views[0]
    assert view.error is None
    check_facts(run.facts(), pki, version, view.cipher, alpn="h2", client=pki.alice)
    assert (view.version, view.alpn, view.peer_der, view.server_name) == (version, "h2", pki.alice.der, "localhost")
    assert view.received.startswith(b"GET /hello HTTP/1.1\r\n")
    assert run.response.endswith("hello from python\n\n")
    assert run.facts()["response-end"] == "closed"  # the server's close_notify
    assert view.closed_cleanly  # and the guest's, sent when it dropped its plaintext output


def test_showcase_request_dropped_sends_no_certificate(showcase, pkis):
    """A server asks (CERT_OPTIONAL), the guest has no identity and drops the request: no certificate."""
    pki = pkis["ECDSA"]
    ctx = py_server_context(pki.localhost, "TLSv1.3", client_ca=pki.client_ca, verify=ssl.CERT_OPTIONAL)
    with PyTlsServer(ctx) as server:
        run = run_guest(wasitls_command(showcase, ["127.0.0.1", server.port, "localhost", "--alpn="], pki=pki))
    assert run.returncode == 0, run
    facts = run.facts()
    assert (facts["client-identity-request"], facts["responded"]) == ("some", "nothing")
    check_facts(facts, pki, "TLSv1.3", server.views[0].cipher)
    assert server.views[0].peer_der is None


@pytest.mark.parametrize("version", ["TLSv1.2", "TLSv1.3"])
def test_showcase_no_request_resolves_none(showcase, pkis, version):
    """A server that asks for no certificate: receive-client-identity-request resolves none; the
    identity the guest had ready is not sent; alpn-id is none when the server does no ALPN."""
    pki = pkis["RSA"]
    with PyTlsServer(py_server_context(pki.localhost, version)) as server:
        run = run_guest(wasitls_command(showcase, ["127.0.0.1", server.port, "localhost",
                                                   f"--client-id={pki.alice.guest_spec()}"], pki=pki))
    assert run.returncode == 0, run
    facts = run.facts()
    assert facts["client-identity-request"] == "none"
    assert "responded" not in facts
    check_facts(facts, pki, version, server.views[0].cipher)
    assert server.views[0].peer_der is None


@pytest.mark.parametrize("version", ["TLSv1.2", "TLSv1.3"])
@pytest.mark.parametrize("check", ["pin", "cn"])
def test_showcase_custom_check_aborts(showcase, pkis, version, check):
    """A guest check that fails aborts after verify-server-identity: the server gets an alert,
    its handshake fails and no application data ever flows."""
    pki = pkis["ECDSA"]
    option = "--pin-sha256=" + "00" * 32 if check == "pin" else "--expect-cn=somebody-else"
    with PyTlsServer(py_server_context(pki.localhost, version)) as server:
        run = run_guest(wasitls_command(showcase, ["127.0.0.1", server.port, "localhost", option], pki=pki))
    assert run.returncode == 1, run
    facts = run.facts()
    assert facts["server-identity.received"].startswith(pki.localhost.fingerprint + " ")
    assert (facts["custom-check"], facts["abort"], facts["handshake"]) == ("mismatch", "done", "aborted")
    view = server.views[0]
    assert isinstance(view.error, ssl.SSLError), view.error
    assert "ALERT" in str(view.error).upper(), view.error
    assert not view.handshake_done.is_set()
    assert view.received == b""


@pytest.mark.parametrize("leaf, reason", [("stranger", "unable to get local issuer certificate"),
                                          ("example", "hostname mismatch")])
def test_showcase_host_checks_come_first(showcase, pkis, leaf, reason):
    """The guest's own check would pass (its pin matches) but the host's chain or hostname check
    fails: verify-server-identity resolves with an error, the server gets an alert, and
    --tls-trace gives the reason on one line."""
    pki = pkis["RSA"]
    cert = getattr(pki, leaf)
    with PyTlsServer(py_server_context(cert)) as server:
        run = run_guest(wasitls_command(showcase, ["127.0.0.1", server.port, "localhost",
                                                   f"--pin-sha256={cert.fingerprint[7:]}"], pki=pki))
    assert run.returncode == 1, run
    assert run.lines == ["verify-server-identity=failed"], run
    trace = [line for line in run.err.splitlines() if line.startswith("tls: ")]
    assert len(trace) == 1 and "ended=failed: " in trace[0] and reason in trace[0], run.err
    assert "ALERT" in str(server.views[0].error).upper()
    assert server.views[0].received == b""


@pytest.mark.parametrize("version", ["TLSv1.2", "TLSv1.3"])
@pytest.mark.parametrize("point", ["verify", "request"])
def test_showcase_suspended_handshake_sends_nothing(showcase, pkis, version, point):
    """While the guest holds the handshake at a point of interest, the server's handshake does not
    complete (no client Certificate/Finished was sent); once released it does, with the certificate."""
    pki = pkis["RSA"]
    ctx = py_server_context(pki.localhost, version, client_ca=pki.client_ca, verify=ssl.CERT_REQUIRED)
    with PyTlsServer(ctx) as server:
        cmd = wasitls_command(showcase, ["127.0.0.1", server.port, "localhost", f"--hold-at={point}", "--alpn=",
                                         f"--client-id={pki.alice.guest_spec()}"], pki=pki)
        with GuestServer(cmd, listening=False) as guest:
            guest.wait_for(f"hold={point}")
            assert not server.views[0].handshake_done.wait(0.5)
            assert server.views[0].error is None
            guest.release()
            run = guest.finish()
    assert run.returncode == 0, run
    assert server.views[0].handshake_done.is_set()
    assert server.views[0].peer_der == pki.alice.der
    check_facts(run.facts(), pki, version, server.views[0].cipher, client=pki.alice)



def test_client_sends_its_whole_chain(showcase, tmp_path, pkis):
    """A client identity with an intermediate: a server trusting only the client root verifies it,
    and the guest's client-identity is the two-certificate chain."""
    import trustme
    from wasitls_tls_helpers import write_leaf
    pki = pkis["RSA"]
    ca = trustme.CA()
    child = ca.create_child_ca()
    cert = child.issue_cert("carol@example.com", common_name="carol")
    (tmp_path / "root.pem").write_bytes(ca.cert_pem.bytes())
    carol = write_leaf(tmp_path, "carol", cert)
    carol.cert.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    ctx = py_server_context(pki.localhost, "TLSv1.3", client_ca=tmp_path / "root.pem", verify=ssl.CERT_REQUIRED)
    with PyTlsServer(ctx) as server:
        run = run_guest(wasitls_command(showcase, ["127.0.0.1", server.port, "localhost", "--alpn=",
                                                   "--client-id=file:/carol/carol.key,/carol/carol.crt"],
                                        pki=pki, extra=["--dir", f"{tmp_path}::/carol"]))
    assert run.returncode == 0, run
    assert server.views[0].peer_der == carol.der
    assert run.facts()["client-identity"] == carol.described(chain=2)


def test_minimal_client_reads_a_large_response(min_client, pkis):
    """4 MiB through the plaintext input stream `finish` gave, ending in close_notify (`closed`)."""
    import os
    pki = pkis["ECDSA"]
    body = os.urandom(2 << 20).hex().encode()
    with PyTlsServer(py_server_context(pki.localhost, "TLSv1.3"), body=body) as server:
        run = run_guest(wasitls_command(min_client, ["127.0.0.1", server.port, "localhost", "/big"], pki=pki))
    assert run.returncode == 0, run.err
    assert run.lines[:2] == ["handshake=ok", "response-end=closed"]
    assert run.response.split("\r\n\r\n", 1)[1] == body.decode() + "\n"


def test_showcase_connects_by_ip_address(showcase, pkis):
    """connect("127.0.0.1"): the certificate's IP address SAN is checked; no SNI goes out (an IP is
    not a host name) while the connection's server-name is still the name given to connect."""
    pki = pkis["ECDSA"]
    with PyTlsServer(py_server_context(pki.localhost, "TLSv1.3")) as server:
        run = run_guest(wasitls_command(showcase, ["127.0.0.1", server.port, "127.0.0.1", "--alpn="], pki=pki))
    assert run.returncode == 0, run
    check_facts(run.facts(), pki, "TLSv1.3", server.views[0].cipher, server_name="127.0.0.1")
    assert server.views[0].server_name is None
