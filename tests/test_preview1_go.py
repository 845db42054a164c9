"""Go (GOOS=wasip1) guests on the SDK in guest/go: `http.Get("https://...")` over hTLS (the SDK's
import points http.DefaultTransport at it), a 64 MiB body sha256-checked, and an HTTPS server with
no TLS code of its own (server-side hTLS) answering curl with and without a client certificate."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys

import pytest
import trustme
from cryptography import x509

from wasitls.devtools.preview1_build import build_go
from test_wasi_tls import server_process, write_identity

TIMEOUT = 120
MiB = 1 << 20


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


@pytest.fixture(scope="module")
def pki(ca, tmp_path_factory):
    root = tmp_path_factory.mktemp("gopki")
    ca.cert_pem.write_to_path(str(root / "ca.pem"))
    write_identity(root, ca.issue_cert("localhost"))
    client = ca.issue_cert("go-client")
    client.private_key_pem.write_to_path(str(root / "ckey.pem"))
    client.cert_chain_pems[0].write_to_path(str(root / "ccert.pem"))
    return root


def test_http_get_of_64_mib_over_htls(pki):
    httpget = build_go("httpget")
    body = os.urandom(64 * MiB)
    (pki / "big.bin").write_bytes(body)
    openssl = shutil.which("openssl") or pytest.skip("openssl not installed")

    def s_server(port):
        return [openssl, "s_server", "-accept", f"127.0.0.1:{port}", "-key", "key.pem", "-cert", "cert.pem",
                "-WWW", "-quiet"]

    with server_process(s_server, pki) as port:
        proc = subprocess.run([sys.executable, "-m", "wasitls", "run", "--allow-net", f"localhost:{port}", "--ca-file",
                               str(pki / "ca.pem"), "--tls-trace", str(httpget), f"https://localhost:{port}/big.bin"],
                              capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines() == ["status 200", f"bytes {len(body)}", f"sha256 {hashlib.sha256(body).hexdigest()}"]
    # the host did the TLS: one trace line for it
    assert [line for line in proc.stderr.splitlines() if line.startswith("tls: server=localhost version=TLSv1.")]


def test_http_get_refuses_an_untrusted_server(pki):
    httpget = build_go("httpget")
    openssl = shutil.which("openssl") or pytest.skip("openssl not installed")

    def s_server(port):
        return [openssl, "s_server", "-accept", f"127.0.0.1:{port}", "-key", "key.pem", "-cert", "cert.pem", "-WWW",
                "-quiet"]

    with server_process(s_server, pki) as port:
        proc = subprocess.run([sys.executable, "-m", "wasitls", "run", "--allow-net", f"localhost:{port}", "--tls-trace",
                               str(httpget), f"https://localhost:{port}/"], capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 1
    assert proc.stdout.startswith("error: ") and "protocol error" in proc.stdout.lower(), proc.stdout
    assert "failed: certificate verify failed" in proc.stderr


def test_go_https_server_on_server_side_htls(pki):
    curl = shutil.which("curl") or pytest.skip("curl not installed")
    server = build_go("httpsserver")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "wasitls", "run", "--allow-listen", f"127.0.0.1:{port}",
                             "--identity", f"site={pki / 'key.pem'},{pki / 'cert.pem'}", "--client-ca-file",
                             str(pki / "ca.pem"), str(server), f"127.0.0.1:{port}", "site", "2", "client-cert"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "listening\n", proc.stderr.read() if proc.poll() is not None else ""
        base = [curl, "-sS", "--cacert", str(pki / "ca.pem"), f"https://localhost:{port}/page"]
        with_cert = subprocess.run([*base, "--cert", str(pki / "ccert.pem"), "--key", str(pki / "ckey.pem")],
                                   capture_output=True, text=True, timeout=TIMEOUT)
        without = subprocess.run(base, capture_output=True, text=True, timeout=TIMEOUT)
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        proc.kill()
    subject = x509.load_pem_x509_certificate((pki / "ccert.pem").read_bytes()).subject.rfc4514_string()
    assert with_cert.stdout.startswith("hello /page from a Go guest over TLSv1."), with_cert
    assert with_cert.stdout.endswith(f'client "{subject}"\n')
    assert without.stdout.endswith('client ""\n'), without
    assert out.endswith("served 2\n"), err


def test_plain_dial_carries_tls_done_in_the_guest(pki):
    """htls.Dial is plain TCP: the guest's own crypto/tls runs over it (the bench's baseline)."""
    httpget = build_go("httpget")
    body = os.urandom(300_000)
    (pki / "page.bin").write_bytes(body)
    openssl = shutil.which("openssl") or pytest.skip("openssl not installed")

    def s_server(port):
        return [openssl, "s_server", "-accept", f"127.0.0.1:{port}", "-key", "key.pem", "-cert", "cert.pem", "-WWW",
                "-quiet"]

    with server_process(s_server, pki) as port:
        proc = subprocess.run([sys.executable, "-m", "wasitls", "run", "--allow-net", f"localhost:{port}", "--dir",
                               f"{pki}::/pki", "--tls-trace", str(httpget), "-intls", "-ca", "/pki/ca.pem",
                               f"https://localhost:{port}/page.bin"], capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[1:] == [f"bytes {len(body)}", f"sha256 {hashlib.sha256(body).hexdigest()}"]
    assert "tls: " not in proc.stderr  # the host did no TLS


def test_timecraft_dialer_order_sets_the_option_after_connect(ca, pki):
    """Timecraft's Go dialer: non-blocking connect, poll for writability, SO_ERROR, net.FileConn,
    and only then the hTLS option; raw imports, no SDK."""
    from test_wasi_tls import HttpsServer, server_context

    program = build_go("lateoption")
    body = os.urandom(50_000)
    with HttpsServer(server_context(ca.issue_cert("example.com")), body) as server:
        proc = subprocess.run([sys.executable, "-m", "wasitls", "run", "--allow-net", "127.0.0.1", "--ca-file",
                               str(pki / "ca.pem"), str(program), "127.0.0.1", str(server.port), "example.com"],
                              capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    expected = len(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body)) + len(body)
    assert proc.stdout.splitlines() == ["connect in progress or done: true", "so_error: 0", "htls option: 0",
                                        f"read {expected} bytes, err <nil>"]
    assert server.sni == ["example.com"] and server.client_close_notify
