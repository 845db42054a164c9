"""wasi:tls/types@0.2.0-draft end to end: the tls_client guest (upstream interface only) on wasitls,
against real TLS servers on loopback, good and bad."""

from __future__ import annotations

import datetime
import hashlib
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time

import pytest
import trustme

from engines import ENGINES

FAST_ENGINES = [e for e in ENGINES if e != "reference"]  # sockets need two-borrow calls (see test_wasi_guests)
TIMEOUT = 120


class HttpsServer(threading.Thread):
    """Serves one HTTP response of `body` over TLS to each connection, ending with close_notify."""

    def __init__(self, context: ssl.SSLContext | None, body: bytes = b"", *, plain: bytes | None = None,
                 reset: bool = False):
        super().__init__(daemon=True)
        self.context, self.body, self.plain, self.reset = context, body, plain, reset
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(TIMEOUT)
        self.port = self.sock.getsockname()[1]
        self.errors: list[BaseException] = []

    def run(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn:
            try:
                if self.reset:  # read the ClientHello, then reset the connection
                    conn.recv(1024)
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    return
                if self.plain is not None:
                    conn.recv(1024)
                    conn.sendall(self.plain)
                    return
                tls = self.context.wrap_socket(conn, server_side=True)
                request = b""
                while b"\r\n\r\n" not in request:
                    chunk = tls.recv(4096)
                    if not chunk:
                        return
                    request += chunk
                tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(self.body))
                view = memoryview(self.body)
                while view:
                    n = tls.send(view[:1 << 20])
                    view = view[n:]
                tls.unwrap()
            except (ssl.SSLError, OSError) as e:
                self.errors.append(e)

    def __enter__(self) -> "HttpsServer":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.sock.close()
        self.join(TIMEOUT)


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


@pytest.fixture(scope="module")
def ca_file(ca, tmp_path_factory):
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


def server_context(cert: trustme.LeafCert, *, version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    if version is not None:
        ctx.minimum_version = ctx.maximum_version = version
    return ctx


def run_client(build_guest, engine, ca_file, port, *args, extra=()):
    wasm = build_guest("tls_client")
    cmd = [sys.executable, "-m", "wasitls", "run", "--engine", engine, "--allow-net", f"127.0.0.1:{port}",
           "--allow-net", "localhost", "--ca-file", str(ca_file), *extra, str(wasm), *args]
    return subprocess.run(cmd, capture_output=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)


# every protocol and key type with tiny bodies; the large bodies once, on TLS 1.3 with ECDSA
FETCH_CASES = [(v, k, size) for v in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3)
               for k in (trustme.KeyType.RSA, trustme.KeyType.ECDSA) for size in (0, 1)]
FETCH_CASES += [(ssl.TLSVersion.TLSv1_3, trustme.KeyType.ECDSA, size) for size in (100_000, 4 << 20)]


@pytest.mark.parametrize("engine", FAST_ENGINES)
@pytest.mark.parametrize("version, key_type, size", FETCH_CASES)
def test_fetch_from_python_ssl(build_guest, ca_file, ca, engine, version, key_type, size):
    typed_ca = trustme.CA(key_type=key_type)
    cert = typed_ca.issue_cert("localhost", key_type=key_type)
    ca_path = ca_file.parent / f"{key_type.name}-ca.pem"
    typed_ca.cert_pem.write_to_path(str(ca_path))
    body = os.urandom(size)
    with HttpsServer(server_context(cert, version=version), body) as server:
        proc = run_client(build_guest, engine, ca_path, server.port, "localhost", str(server.port), "/",
                          extra=["--tls-trace"])
    out = proc.stdout.decode()
    assert proc.returncode == 0, proc.stderr.decode(errors="replace") + out
    assert "handshake ok with localhost" in out
    assert "status: HTTP/1.1 200 OK" in out
    assert f"body bytes: {size}\n" in out
    assert f"body sha256: {hashlib.sha256(body).hexdigest()}\n" in out
    assert "close-output done" in out
    trace = proc.stderr.decode()
    expected = "TLSv1.3" if version == ssl.TLSVersion.TLSv1_3 else "TLSv1.2"
    assert f"version={expected}" in trace and "server=localhost" in trace


def refused(build_guest, engine, ca_file, server, server_name="localhost"):
    proc = run_client(build_guest, engine, ca_file, server.port, "127.0.0.1" if server_name != "localhost"
                      else "localhost", str(server.port), "/", server_name)
    out = proc.stdout.decode()
    assert proc.returncode == 1, out + proc.stderr.decode(errors="replace")
    assert out.startswith("handshake failed: "), out
    assert "Traceback" not in proc.stderr.decode(errors="replace")
    return out


@pytest.mark.parametrize("engine", FAST_ENGINES)
def test_refusals_say_why(build_guest, ca, ca_file, engine):
    now = datetime.datetime.now(datetime.timezone.utc)
    cases = [
        (ca.issue_cert("localhost", not_after=now - datetime.timedelta(days=1),
                       not_before=now - datetime.timedelta(days=30)), "localhost", "expired"),
        (ca.issue_cert("localhost", not_before=now + datetime.timedelta(days=10),
                       not_after=now + datetime.timedelta(days=40)), "localhost", "not yet valid"),
        (ca.issue_cert("other.example"), "localhost", "localhost"),
        (trustme.CA().issue_cert("localhost"), "localhost", "issuer"),
    ]
    for cert, name, needle in cases:
        with HttpsServer(server_context(cert)) as server:
            out = refused(build_guest, engine, ca_file, server, name)
        assert needle in out.lower(), (needle, out)


@pytest.mark.parametrize("engine", FAST_ENGINES)
def test_plain_tcp_and_reset_are_reported(build_guest, ca_file, engine):
    with HttpsServer(None, plain=b"HTTP/1.1 400 Bad Request\r\n\r\n") as server:
        out = refused(build_guest, engine, ca_file, server)
    assert "does not speak tls" in out.lower()
    with HttpsServer(None, reset=True) as server:
        out = refused(build_guest, engine, ca_file, server)
    assert "reset" in out.lower() or "closed" in out.lower()


@pytest.mark.parametrize("engine", FAST_ENGINES)
def test_openssl_s_server(build_guest, ca, ca_file, engine, tmp_path):
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl not installed: apt-get install openssl")
    cert = ca.issue_cert("localhost")
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    body = os.urandom(300_000)
    (tmp_path / "page.bin").write_bytes(body)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([openssl, "s_server", "-accept", f"127.0.0.1:{port}", "-key", "key.pem",
                               "-cert", "cert.pem", "-WWW", "-quiet"], cwd=tmp_path,
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        proc = run_client(build_guest, engine, ca_file, port, "localhost", str(port), "/page.bin")
    finally:
        server.kill()
        server.wait()
    out = proc.stdout.decode()
    assert "status: HTTP/1.0 200 ok" in out, out + proc.stderr.decode(errors="replace")
    assert f"body sha256: {hashlib.sha256(body).hexdigest()}\n" in out
