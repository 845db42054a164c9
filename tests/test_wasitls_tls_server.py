"""wasitls:tls@0.1.0 server side: the seed's minimal server and server showcase (guests
tls_min_server, tls_server_showcase) against real clients on loopback: openssl s_client,
gnutls-cli, curl and Python ssl; TLS 1.2 and 1.3, RSA and ECDSA. Identities by SNI, ALPN chosen
from the ClientHello, client certificates during the handshake and after it (TLS 1.3)."""

from __future__ import annotations

import re
import socket
import ssl
import subprocess

import pytest

from wasitls_tls_helpers import (MATRIX, TIMEOUT, VERSIONS, GuestServer, body_facts, client_hello_bytes, h2_get,
                                 iana_suite, need, py_client_context, py_https_get, readable, wasitls_command)



@pytest.fixture(scope="module")
def min_server(build_guest):
    return build_guest("tls_min_server")


@pytest.fixture(scope="module")
def showcase(build_guest):
    return build_guest("tls_server_showcase")


def s_client(pki, port, version, *, server_name="localhost", alpn=None, cert=None, request="GET / HTTP/1.1"):
    """openssl s_client with an HTTP request on stdin; its whole output."""
    openssl = need("openssl", "openssl")
    cmd = [openssl, "s_client", "-connect", f"127.0.0.1:{port}", "-servername", server_name, "-CAfile", str(pki.ca),
           "-verify_return_error", "-verify_hostname", server_name, "-ign_eof",
           {"TLSv1.2": "-tls1_2", "TLSv1.3": "-tls1_3"}[version]]
    if alpn:
        cmd += ["-alpn", alpn]
    if cert is not None:
        cmd += ["-cert", str(cert.cert), "-key", str(cert.key)]
    stdin = f"{request}\r\nHost: {server_name}\r\nConnection: close\r\n\r\n".encode()
    return subprocess.run(cmd, input=stdin, capture_output=True, timeout=TIMEOUT).stdout.decode(errors="replace")


GNUTLS_VERSIONS = {"TLSv1.2": "NORMAL:-VERS-ALL:+VERS-TLS1.2", "TLSv1.3": "NORMAL:-VERS-ALL:+VERS-TLS1.3"}


def gnutls_cli(pki, port, version, *, server_name="localhost", alpn=None, cert=None, request="GET / HTTP/1.1"):
    binary = need("gnutls-cli", "gnutls-bin")
    cmd = [binary, "-p", str(port), "--x509cafile", str(pki.ca), "--priority", GNUTLS_VERSIONS[version]]
    if alpn:
        cmd += ["--alpn", alpn]
    if cert is not None:
        cmd += ["--x509certfile", str(cert.cert), "--x509keyfile", str(cert.key)]
    if server_name != "localhost":
        cmd += ["--sni-hostname", server_name, "--verify-hostname", server_name]
    stdin = f"{request}\r\nHost: {server_name}\r\nConnection: close\r\n\r\n".encode()
    proc = subprocess.run([*cmd, "localhost"], input=stdin, capture_output=True, timeout=TIMEOUT)
    return proc.stdout.decode(errors="replace") + proc.stderr.decode(errors="replace")


def curl(pki, port, version, *, server_name="localhost", http="--http1.1", cert=None, path="/"):
    """curl -v; (exit status, body, verbose log)."""
    binary = need("curl", "curl")
    cmd = [binary, "-sS", "-v", "--cacert", str(pki.ca), "--resolve", f"{server_name}:{port}:127.0.0.1", http,
           {"TLSv1.2": "--tlsv1.2", "TLSv1.3": "--tlsv1.3"}[version], "--tls-max", version[4:],
           "-w", "\nhttp_version=%{http_version}\nhttp_code=%{http_code}\n"]
    if cert is not None:
        cmd += ["--cert", str(cert.cert), "--key", str(cert.key)]
    proc = subprocess.run([*cmd, f"https://{server_name}:{port}{path}"], capture_output=True, timeout=TIMEOUT)
    return proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")


def s_client_facts(out: str) -> dict[str, str]:
    session = re.search(r"^New, (\S+), Cipher is (\S+)$", out, re.M)
    found = {"protocol": session.group(1), "cipher": session.group(2),
             "verify": re.search(r"Verify return code: (\d+)", out).group(1),
             "subject": re.search(r"^subject=(.*)$", out, re.M).group(1)}
    alpn = re.search(r"^ALPN protocol: (\S+)$", out, re.M)
    found["alpn"] = alpn.group(1) if alpn else ("none" if "No ALPN negotiated" in out else "?")
    return found


def gnutls_facts(out: str) -> dict[str, str]:
    description = re.search(r"- Description: \((TLS1\.\d)-X\.509\)", out)
    alpn = re.search(r"- Application protocol: (\S+)", out)
    return {"protocol": description.group(1) if description else "?", "alpn": alpn.group(1) if alpn else "none",
            "trusted": str("The certificate is trusted" in out),
            "subject": re.search(r"subject `([^']*)'", out).group(1) if "subject `" in out else "?"}


def curl_facts(log: str) -> dict[str, str]:
    connection = re.search(r"SSL connection using (\S+) / (\S+)", log)
    alpn = re.search(r"ALPN: server accepted (\S+)", log)
    return {"protocol": connection.group(1), "cipher": connection.group(2), "alpn": alpn.group(1) if alpn else "none"}


def conn_facts(run, n: int) -> dict[str, str]:
    return run.facts(f"conn={n} ")


# -- the minimal server ---------------------------------------------------------------------------

@pytest.mark.parametrize("key_type", ["RSA", "ECDSA"])
@pytest.mark.parametrize("source", ["file", "host"])
def test_minimal_server_against_four_clients(min_server, pkis, key_type, source):
    """The seed's minimal server (one identity, from files or held by the host) serves openssl
    s_client (TLS 1.2), gnutls-cli (TLS 1.3), curl (TLS 1.2) and Python ssl (TLS 1.3) in turn;
    each verifies the server certificate against the CA and gets its own answer."""
    pki = pkis[key_type]
    spec = pki.localhost.guest_spec() if source == "file" else "host:server"
    cmd = wasitls_command(min_server, [0, 4, spec], pki=pki, listen=True, identities={"server": pki.localhost})
    with GuestServer(cmd) as guest:
        openssl_out = s_client(pki, guest.port, "TLSv1.2", request="GET /s_client HTTP/1.1")
        gnutls_out = gnutls_cli(pki, guest.port, "TLSv1.3", request="GET /gnutls HTTP/1.1")
        curl_status, curl_body, curl_log = curl(pki, guest.port, "TLSv1.2", path="/curl")
        py_view, py_response = py_https_get(py_client_context(pki, "TLSv1.3"), guest.port, "localhost", "/python")
        run = guest.finish()
    assert run.returncode == 0, run
    requests = ["GET /s_client HTTP/1.1", "GET /gnutls HTTP/1.1", "GET /curl HTTP/1.1", "GET /python HTTP/1.1"]
    assert run.lines[1:] == [line for n, r in enumerate(requests) for line in (f"conn={n} handshake=ok",
                                                                                 f"conn={n} request={r}")], run
    assert "ok 0\n" in openssl_out
    assert s_client_facts(openssl_out)["protocol"] == "TLSv1.2"
    assert s_client_facts(openssl_out)["verify"] == "0"
    assert s_client_facts(openssl_out)["subject"].endswith("CN = localhost")
    assert "ok 1\n" in gnutls_out
    assert gnutls_facts(gnutls_out)["protocol"] == "TLS1.3"
    assert gnutls_facts(gnutls_out)["trusted"] == "True"
    assert curl_status == 0, curl_log
    assert curl_body.startswith("ok 2\n")
    assert curl_facts(curl_log)["protocol"] == "TLSv1.2"
    assert py_view.version == "TLSv1.3" and py_view.peer_der == pki.localhost.der
    assert py_response.endswith(b"\r\n\r\nok 3\n")
    assert py_view.closed_cleanly  # dropping the plaintext output sent close_notify
    assert len([line for line in run.err.splitlines() if line.startswith("tls: ")]) == 4, run.err


# -- the server showcase --------------------------------------------------------------------------

def showcase_cmd(wasm, pki, count, *options, identities=None, source="file"):
    if source == "file":
        ids = [pki.example.guest_spec(), pki.localhost.guest_spec()]
    else:
        ids, identities = ["host:one", "host:two"], {"one": pki.example, "two": pki.localhost}
    return wasitls_command(wasm, [0, count, "example.com", *ids, *options], pki=pki, listen=True,
                           identities=identities)


def offered_suites(ctx: ssl.SSLContext, version: str) -> list[int]:
    """The cipher suites a Python client offers for `version` (its ClientHello order, no SCSV)."""
    suites = [c["id"] & 0xFFFF for c in ctx.get_ciphers()]
    tls13 = version == "TLSv1.3"
    return [s for s in suites if (s >> 8 == 0x13) == tls13]


@pytest.mark.parametrize("version, key_type", MATRIX)
def test_showcase_sni_alpn_client_auth_python(showcase, pkis, version, key_type):
    """Python clients: SNI example.com gets identity 1 and h2 (and an HTTP/2 answer), any other name
    identity 2 and http/1.1; the ClientHello the guest saw is the one the client sent; the client
    certificate requested during the handshake is the one the client had (or none)."""
    pki = pkis[key_type]
    with GuestServer(showcase_cmd(showcase, pki, 2)) as guest:
        ctx0 = py_client_context(pki, version, cert=pki.alice, alpn=["h2", "http/1.1"])
        with socket.create_connection(("127.0.0.1", guest.port), timeout=TIMEOUT) as raw:
            with ctx0.wrap_socket(raw, server_hostname="example.com") as tls:
                alpn0, version0, cipher0 = tls.selected_alpn_protocol(), tls.version(), tls.cipher()[0]
                server0 = tls.getpeercert(binary_form=True)
                status, body = h2_get(tls, "example.com")
        ctx1 = py_client_context(pki, version, alpn=["http/1.1"])
        view1, response1 = py_https_get(ctx1, guest.port, "localhost", "/page")
        run = guest.finish()
    assert run.returncode == 0, run
    first, second = conn_facts(run, 0), conn_facts(run, 1)

    assert first["hello.server-name"] == "example.com"
    assert first["hello.alpn-ids"] == "h2,http/1.1"
    suites = [int(s, 16) for s in first["hello.cipher-suites"].split(",")]
    assert [s for s in suites if s != 0x00FF] == offered_suites(ctx0, version)
    assert first["configured"] == "identity1"
    assert first["client-cert"] == pki.alice.described()
    assert (first["handshake"], first["server-name"], first["alpn-id"]) == ("ok", "example.com", "h2")
    assert first["client-identity"] == pki.alice.described()
    assert first["server-identity"] == pki.example.described()
    assert first["protocol-version"] == f"0x{VERSIONS[version]:04x}"
    assert first["cipher-suite"] == f"0x{iana_suite(cipher0):04x}"
    assert first["request"] == "h2"
    assert (alpn0, version0, server0) == ("h2", version, pki.example.der)
    assert status == 200
    assert body == f"alpn-id=h2\nclient-identity={pki.alice.fingerprint}\n".encode()

    assert (second["hello.server-name"], second["hello.alpn-ids"]) == ("localhost", "http/1.1")
    assert second["configured"] == "identity2"
    assert second["client-cert"] == "none"
    assert (second["alpn-id"], second["client-identity"]) == ("http/1.1", "none")
    assert second["server-identity"] == pki.localhost.described()
    assert second["cipher-suite"] == f"0x{iana_suite(view1.cipher):04x}"
    assert second["request"] == "GET /page HTTP/1.1"
    assert (view1.alpn, view1.version, view1.peer_der) == ("http/1.1", version, pki.localhost.der)
    assert body_facts(response1) == {"path": "/page", "alpn-id": "http/1.1", "client-identity": "none",
                                     "post-handshake": "not-requested"}


@pytest.mark.parametrize("version, key_type", MATRIX)
def test_showcase_against_openssl_s_client(showcase, pkis, version, key_type):
    """s_client, SNI example.com offering http/1.1 where the guest configured no ALPN ids: no ALPN id
    is negotiated (and no alert: a server without ids ignores the offer); identity 1; its client
    certificate reaches the guest."""
    pki = pkis[key_type]
    with GuestServer(showcase_cmd(showcase, pki, 1, "--alpn1=")) as guest:
        out = s_client(pki, guest.port, version, server_name="example.com", alpn="http/1.1", cert=pki.bob)
        run = guest.finish()
    assert run.returncode == 0, run
    facts, seen = conn_facts(run, 0), s_client_facts(out)
    assert (facts["hello.server-name"], facts["hello.alpn-ids"], facts["configured"]) == (
        "example.com", "http/1.1", "identity1")
    assert facts["client-cert"] == facts["client-identity"] == pki.bob.described()
    assert facts["alpn-id"] == seen["alpn"] == "none"
    assert facts["server-identity"] == pki.example.described()
    assert facts["protocol-version"] == f"0x{VERSIONS[seen['protocol']]:04x}" and seen["protocol"] == version
    assert facts["cipher-suite"] == f"0x{iana_suite(seen['cipher']):04x}"
    assert seen["verify"] == "0" and seen["subject"].endswith("CN = example.com")
    assert f"client-identity={pki.bob.fingerprint}" in out


@pytest.mark.parametrize("version", ["TLSv1.2", "TLSv1.3"])
def test_alpn_without_overlap_alert_and_escaped_trace(showcase, pkis, version):
    """Issue 10 T1: a guest server that configured ALPN ids none of which the client offers sends the
    fatal no_application_protocol alert (RFC 7301 3.2), and the guest's handshake fails. Issue 10 T2:
    an SNI with a control byte (BEL) and a quote reaches --tls-trace escaped, never as raw bytes."""
    pki = pkis["ECDSA"]
    with GuestServer(showcase_cmd(showcase, pki, 2, "--no-client-auth")) as guest:
        ctx = py_client_context(pki, version, alpn=["http/1.1"])
        with socket.create_connection(("127.0.0.1", guest.port), timeout=TIMEOUT) as raw:
            with pytest.raises(ssl.SSLError, match="alert no application protocol"):
                ctx.wrap_socket(raw, server_hostname="example.com")
        ctx = py_client_context(pki, version)
        ctx.check_hostname = False  # the odd name below is only for the trace; the chain is still checked
        with socket.create_connection(("127.0.0.1", guest.port), timeout=TIMEOUT) as raw:
            with ctx.wrap_socket(raw, server_hostname="bell\x07'.test") as tls:
                tls.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                answer = b"".join(iter(lambda: tls.recv(65536), b""))
        run = guest.finish()
    assert run.returncode == 0, run
    assert conn_facts(run, 0)["handshake"] == "failed" and conn_facts(run, 1)["handshake"] == "ok", run
    assert answer.startswith(b"HTTP/1.1 200"), answer
    trace = [line for line in run.err.splitlines() if line.startswith("tls: ")]
    assert len(trace) == 2, run.err
    assert "server=example.com " in trace[0] and "ended=failed: no ALPN id in common with the client" in trace[0]
    assert "server='bell\\x07\\'.test' " in trace[1], trace[1]
    assert "\x07" not in run.err


@pytest.mark.parametrize("version, key_type", MATRIX)
def test_showcase_against_curl(showcase, pkis, version, key_type):
    """curl --http2 to example.com negotiates h2 and gets the guest's HTTP/2 answer; curl --http1.1
    to localhost gets identity 2 and http/1.1; both with `--cert --key`; identities held by the host."""
    pki = pkis[key_type]
    with GuestServer(showcase_cmd(showcase, pki, 2, source="host")) as guest:
        status0, body0, log0 = curl(pki, guest.port, version, server_name="example.com", http="--http2",
                                    cert=pki.alice)
        status1, body1, log1 = curl(pki, guest.port, version, http="--http1.1", cert=pki.bob, path="/one")
        run = guest.finish()
    assert run.returncode == 0, run
    assert status0 == 0 and status1 == 0, (log0, log1)
    first, second = conn_facts(run, 0), conn_facts(run, 1)
    assert (first["configured"], first["alpn-id"], first["request"]) == ("identity1", "h2", "h2")
    assert first["hello.alpn-ids"] == "h2,http/1.1"
    assert first["client-identity"] == pki.alice.described()
    assert curl_facts(log0) == {"protocol": version, "cipher": curl_facts(log0)["cipher"], "alpn": "h2"}
    assert first["cipher-suite"] == f"0x{iana_suite(curl_facts(log0)['cipher']):04x}"
    assert body0.endswith("http_version=2\nhttp_code=200\n")
    assert f"client-identity={pki.alice.fingerprint}" in body0
    assert (second["configured"], second["alpn-id"], second["hello.alpn-ids"]) == ("identity2", "http/1.1", "http/1.1")
    assert second["client-identity"] == pki.bob.described()
    assert second["server-identity"] == pki.localhost.described()
    assert second["protocol-version"] == f"0x{VERSIONS[version]:04x}"
    assert curl_facts(log1)["alpn"] == "http/1.1"
    assert f"path=/one\nalpn-id=http/1.1\nclient-identity={pki.bob.fingerprint}\n" in body1
    assert body1.endswith("http_version=1.1\nhttp_code=200\n")


@pytest.mark.parametrize("version, key_type", MATRIX)
def test_showcase_against_gnutls_cli(showcase, pkis, version, key_type):
    """gnutls-cli to localhost with ALPN http/1.1 and a client certificate: identity 2, http/1.1."""
    pki = pkis[key_type]
    with GuestServer(showcase_cmd(showcase, pki, 1)) as guest:
        out = gnutls_cli(pki, guest.port, version, alpn="http/1.1", cert=pki.alice, request="GET /gnutls HTTP/1.1")
        run = guest.finish()
    assert run.returncode == 0, run
    facts, seen = conn_facts(run, 0), gnutls_facts(out)
    assert (facts["hello.server-name"], facts["configured"], facts["alpn-id"]) == ("localhost", "identity2", "http/1.1")
    assert facts["client-identity"] == pki.alice.described()
    assert facts["protocol-version"] == f"0x{VERSIONS[version]:04x}" and seen["protocol"] == version.replace("v", "")
    assert seen["alpn"] == "http/1.1" and seen["trusted"] == "True"
    assert "CN=localhost" in seen["subject"]
    assert f"path=/gnutls\nalpn-id=http/1.1\nclient-identity={pki.alice.fingerprint}\n" in out


# -- client certificates: custom checks, host checks, after the handshake ------------------------

@pytest.mark.parametrize("version", ["TLSv1.2", "TLSv1.3"])
def test_showcase_custom_client_check_aborts(showcase, pkis, version):
    """--require-cn=bob, alice connects: the guest aborts; no application data reaches the client.
    (Deviation: OpenSSL 3.0 cannot pause after verifying a client certificate, so the handshake has
    completed when the guest decides and abort sends close_notify.)"""
    pki = pkis["ECDSA"]
    with GuestServer(showcase_cmd(showcase, pki, 1, "--require-cn=bob")) as guest:
        ctx = py_client_context(pki, version, cert=pki.alice, alpn=["http/1.1"])
        try:
            _, response = py_https_get(ctx, guest.port, "localhost")
        except (ssl.SSLError, OSError) as e:
            response = repr(e).encode()
        run = guest.finish()
    assert run.returncode == 0, run
    facts = conn_facts(run, 0)
    assert facts["client-cert"] == pki.alice.described()
    assert (facts["custom-check"], facts["abort"]) == ("mismatch", "done")
    assert "handshake" not in facts and "request" not in facts
    assert b"HTTP/1.1" not in response


def test_showcase_custom_client_check_passes(showcase, pkis):
    pki = pkis["RSA"]
    with GuestServer(showcase_cmd(showcase, pki, 1, "--require-cn=alice")) as guest:
        _, response = py_https_get(py_client_context(pki, "TLSv1.3", cert=pki.alice), guest.port, "localhost")
        run = guest.finish()
    facts = conn_facts(run, 0)
    assert (facts["custom-check"], facts["handshake"], facts["client-identity"]) == ("pass", "ok", pki.alice.described())
    assert body_facts(response)["client-identity"] == pki.alice.fingerprint


@pytest.mark.parametrize("version", ["TLSv1.2", "TLSv1.3"])
def test_showcase_untrusted_client_certificate_fails(showcase, pkis, version):
    """mallory's certificate does not chain to --client-ca-file: the host rejects it whatever the
    guest would say; the client gets an alert and no data; --tls-trace says why."""
    pki = pkis["RSA"]
    with GuestServer(showcase_cmd(showcase, pki, 1)) as guest:
        ctx = py_client_context(pki, version, cert=pki.mallory, alpn=["http/1.1"])
        try:
            _, response = py_https_get(ctx, guest.port, "localhost")
        except (ssl.SSLError, OSError) as e:
            response = repr(e).encode()
        run = guest.finish()
    assert run.returncode == 0, run
    facts = conn_facts(run, 0)
    assert facts["client-cert"] == "failed"
    assert facts["handshake"] == "failed"
    assert b"HTTP/1.1" not in response
    assert b"ALERT" in response.upper() or b"EOF" in response.upper(), response
    trace = [line for line in run.err.splitlines() if line.startswith("tls: ")]
    assert len(trace) == 1 and "ended=failed: " in trace[0], run.err


@pytest.mark.parametrize("key_type", ["RSA", "ECDSA"])
def test_post_handshake_client_identity_on_secure(showcase, pkis, key_type):
    """TLS 1.3 post-handshake auth: no certificate asked during the handshake; `GET /secure` makes the
    guest call server-connection.request-client-identity and the Python client (post_handshake_auth)
    answers with alice; `GET /` asks nothing."""
    pki = pkis[key_type]
    with GuestServer(showcase_cmd(showcase, pki, 2, "--no-client-auth")) as guest:
        ctx = py_client_context(pki, "TLSv1.3", cert=pki.alice, alpn=["http/1.1"], post_handshake_auth=True)
        _, secure = py_https_get(ctx, guest.port, "localhost", "/secure")
        _, plain = py_https_get(ctx, guest.port, "localhost", "/")
        run = guest.finish()
    assert run.returncode == 0, run
    first, second = conn_facts(run, 0), conn_facts(run, 1)
    assert "client-cert" not in first
    assert first["client-identity"] == "none"  # the facts printed right after the handshake
    assert first["request"] == "GET /secure HTTP/1.1"
    assert first["post-handshake"] == pki.alice.fingerprint
    assert body_facts(secure) == {"path": "/secure", "alpn-id": "http/1.1", "client-identity": pki.alice.fingerprint,
                                  "post-handshake": pki.alice.fingerprint}
    assert "post-handshake" not in second
    assert body_facts(plain)["post-handshake"] == "not-requested"


@pytest.mark.parametrize("case", ["tls12", "client-without-pha"])
def test_post_handshake_client_identity_unavailable(showcase, pkis, case):
    """Post-handshake auth needs TLS 1.3 and a client that offered it: otherwise the request is an
    error (result or future), the connection goes on and the client gets its answer."""
    pki = pkis["ECDSA"]
    version = "TLSv1.2" if case == "tls12" else "TLSv1.3"
    with GuestServer(showcase_cmd(showcase, pki, 1, "--no-client-auth")) as guest:
        ctx = py_client_context(pki, version, cert=pki.alice, alpn=["http/1.1"], post_handshake_auth=case == "tls12")
        _, secure = py_https_get(ctx, guest.port, "localhost", "/secure")
        run = guest.finish()
    assert run.returncode == 0, run
    assert conn_facts(run, 0)["post-handshake"] == "failed"
    assert body_facts(secure) == {"path": "/secure", "alpn-id": "http/1.1", "client-identity": "none",
                                  "post-handshake": "failed"}


# -- nothing leaves before the guest has seen the ClientHello --------------------------------------

@pytest.mark.parametrize("version", ["TLSv1.2", "TLSv1.3"])
def test_no_server_hello_before_guest_saw_client_hello(showcase, pkis, version):
    """The guest holds the handshake right after receive-client-hello: no byte reaches the client
    meanwhile. Released, it picks identity 1 and ALPN h2 by the SNI, and the ServerHello (which
    carries the ALPN choice in TLS 1.2) reflects that choice."""
    pki = pkis["RSA"]
    with GuestServer(showcase_cmd(showcase, pki, 1, "--hold-after-hello", "--no-client-auth")) as guest:
        obj, incoming, outgoing, hello = client_hello_bytes("example.com", ["http/1.1", "h2"], version)
        with socket.create_connection(("127.0.0.1", guest.port), timeout=TIMEOUT) as raw:
            raw.sendall(hello)
            guest.wait_for("conn=0 hold")
            assert not readable(raw, 0.5), "the host answered before the guest chose"
            guest.release()
            while True:  # drive the client side through memory BIOs
                try:
                    obj.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    pass
                if outgoing.pending:
                    raw.sendall(outgoing.read())
                data = raw.recv(65536)
                assert data, "connection closed during the handshake"
                incoming.write(data)
            if outgoing.pending:
                raw.sendall(outgoing.read())
            assert obj.selected_alpn_protocol() == "h2"
            assert obj.getpeercert(binary_form=True) == pki.example.der
            assert obj.version() == version
        run = guest.finish()
    facts = conn_facts(run, 0)
    assert facts["hello.server-name"] == "example.com"
    assert facts["hello.alpn-ids"] == "http/1.1,h2"
    assert (facts["configured"], facts["alpn-id"]) == ("identity1", "h2")


# -- identity choice and chains --------------------------------------------------------------------

@pytest.mark.parametrize("cipher, chosen", [("ECDHE-ECDSA-AES128-GCM-SHA256", "ECDSA"),
                                            ("ECDHE-RSA-AES128-GCM-SHA256", "RSA")])
@pytest.mark.parametrize("order", ["RSA;ECDSA", "ECDSA;RSA"])
def test_showcase_picks_among_identities_by_client_hello(showcase, pkis, cipher, chosen, order):
    """configure-server-identities with an RSA and an ECDSA identity: the host picks the one the
    client can use (a TLS 1.2 client offering only ECDSA or only RSA suites), whatever the order."""
    specs = ";".join(f"file:/all/{kt}/localhost.key,/all/{kt}/localhost.crt" for kt in order.split(";"))
    pki = pkis["RSA"]
    cmd = wasitls_command(showcase, [0, 1, "example.com", pki.example.guest_spec(), specs, "--no-client-auth"],
                          pki=pki, listen=True, extra=["--dir", f"{pki.dir.parent}::/all"])
    with GuestServer(cmd) as guest:
        ctx = py_client_context(pki, "TLSv1.2", alpn=["http/1.1"])
        ctx.load_verify_locations(pkis["ECDSA"].ca)
        ctx.set_ciphers(cipher)
        view, response = py_https_get(ctx, guest.port, "localhost")
        run = guest.finish()
    assert run.returncode == 0, run
    assert view.cipher == cipher and view.peer_der == pkis[chosen].localhost.der
    facts = conn_facts(run, 0)
    assert facts["server-identity"] == pkis[chosen].localhost.described()
    assert facts["cipher-suite"] == f"0x{iana_suite(cipher):04x}"


def test_showcase_client_without_sni(showcase, pkis):
    """A client that sends no SNI: client-hello server-name and the connection's server-name are
    none, and the guest's `other names` branch (identity 2) serves it."""
    pki = pkis["ECDSA"]
    openssl = need("openssl", "openssl")
    with GuestServer(showcase_cmd(showcase, pki, 1, "--no-client-auth")) as guest:
        out = subprocess.run([openssl, "s_client", "-connect", f"127.0.0.1:{guest.port}", "-noservername",
                              "-CAfile", str(pki.ca), "-verify_return_error", "-alpn", "http/1.1", "-ign_eof"],
                             input=b"GET /nosni HTTP/1.1\r\nHost: x\r\n\r\n", capture_output=True,
                             timeout=TIMEOUT).stdout.decode(errors="replace")
        run = guest.finish()
    facts = conn_facts(run, 0)
    assert (facts["hello.server-name"], facts["server-name"], facts["configured"]) == ("none", "none", "identity2")
    assert s_client_facts(out)["subject"].endswith("CN = localhost")
    assert "path=/nosni\n" in out


@pytest.fixture(scope="module")
def chained(tmp_path_factory):
    """A root CA, an intermediate, and a server (localhost) and client (carol) leaf issued by the
    intermediate, each written as leaf + intermediate PEM."""
    import trustme
    from wasitls_tls_helpers import write_leaf
    root = tmp_path_factory.mktemp("chained")
    ca = trustme.CA()
    child = ca.create_child_ca()
    ca.cert_pem.write_to_path(str(root / "root.pem"))
    leaves = {}
    for name, cert in (("server", child.issue_cert("localhost", common_name="localhost")),
                       ("carol", child.issue_cert("carol@example.com", common_name="carol"))):
        leaf = write_leaf(root, name, cert)
        leaf.cert.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
        leaves[name] = leaf
    return root, leaves


def test_server_sends_its_whole_chain(min_server, chained):
    """A server identity parsed with leaf + intermediate: a client trusting only the root verifies it."""
    root, leaves = chained
    cmd = [*wasitls_command(min_server, [0, 1, "file:/c/server.key,/c/server.crt"], listen=True,
                            extra=["--dir", f"{root}::/c"])]
    with GuestServer(cmd) as guest:
        ctx = ssl.create_default_context(cafile=str(root / "root.pem"))
        view, response = py_https_get(ctx, guest.port, "localhost", "/chain")
        run = guest.finish()
    assert run.returncode == 0, run
    assert view.peer_der == leaves["server"].der
    assert response.endswith(b"ok 0\n")


@pytest.mark.parametrize("client, outcome", [("localhost", "ok"), ("alice", "failed")])
def test_client_certificates_checked_against_ca_file_without_client_ca_file(showcase, pkis, client, outcome):
    """Without --client-ca-file, client certificates are verified against --ca-file: a certificate
    from that CA is accepted, alice's (from the client CA) is refused by the host."""
    pki = pkis["RSA"]
    cmd = wasitls_command(showcase, [0, 1, "example.com", pki.example.guest_spec(), pki.localhost.guest_spec()],
                          pki=pki, listen=True, client_ca=False)
    assert "--client-ca-file" not in cmd
    leaf = getattr(pki, client)
    with GuestServer(cmd) as guest:
        try:
            _, response = py_https_get(py_client_context(pki, "TLSv1.2", cert=leaf), guest.port, "localhost")
        except (ssl.SSLError, OSError) as e:
            response = repr(e).encode()
        run = guest.finish()
    facts = conn_facts(run, 0)
    if outcome == "ok":
        # the Python client completes its chain from its own trust store (the same CA): 2 certificates
        assert facts["client-cert"] == facts["client-identity"] == leaf.described(chain=2)
        assert body_facts(response)["client-identity"] == leaf.fingerprint
    else:
        assert (facts["client-cert"], facts["handshake"]) == ("failed", "failed")
        assert b"HTTP/1.1" not in response


@pytest.mark.parametrize("size", [100, 300_000])
def test_post_handshake_client_identity_with_data_in_flight(showcase, pkis, size):
    """The client sends `GET /secure` with a body right away; the guest asks for a certificate
    after reading only the head. The client's Certificate arrives behind the body: the host reads
    ahead to it, and the guest then reads the whole body intact."""
    import hashlib
    import os
    pki = pkis["ECDSA"]
    payload = os.urandom(size)
    with GuestServer(showcase_cmd(showcase, pki, 1, "--no-client-auth")) as guest:
        ctx = py_client_context(pki, "TLSv1.3", cert=pki.alice, alpn=["http/1.1"], post_handshake_auth=True)
        with socket.create_connection(("127.0.0.1", guest.port), timeout=TIMEOUT) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                # all of it before reading anything (one thread: an SSL object is not for two at once)
                tls.sendall(b"GET /secure HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n%s"
                            % (size, payload))
                response = b""
                while b"request-body=" not in response or not response.endswith(b"\n"):
                    chunk = tls.recv(65536)
                    if not chunk:
                        break
                    response += chunk
        run = guest.finish()
    assert run.returncode == 0, run
    assert conn_facts(run, 0)["post-handshake"] == pki.alice.fingerprint
    assert body_facts(response) == {"path": "/secure", "alpn-id": "http/1.1", "client-identity": pki.alice.fingerprint,
                                    "post-handshake": pki.alice.fingerprint,
                                    "request-body": f"{size} {hashlib.sha256(payload).hexdigest()}"}
