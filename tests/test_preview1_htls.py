"""hTLS for preview-1 modules: `sock_setsockopt(fd, 0x74696d65, 1, name, len)` makes the host run
TLS on the socket with its OpenSSL engine and trust. Against Python ssl, openssl s_server and
gnutls-serv; the certificate matrix, plain TCP and truncation each fail with EPROTO (65) and a
traced reason; the option's rules; non-blocking use; client identity, ALPN, version and cipher
read-back; server-side hTLS answering curl."""

from __future__ import annotations

import datetime
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

from wasitls.devtools.http_peers import nginx_tls_conf
from wasitls.devtools.preview1_build import build_c
from test_wasi_tls import (HttpsServer, self_signed_context, server_context, server_process, trace_lines,
                           typed_ca_file, write_identity)

EINVAL, ENOTCONN, ENOPROTOOPT, EPROTO = 28, 53, 50, 65
TIMEOUT = 60


@pytest.fixture(scope="module")
def socktool():
    return build_c("socktool", sdk=True)


@pytest.fixture(scope="module")
def seed_example():
    return build_c("seed_example", sdk=True)


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


@pytest.fixture(scope="module")
def ca_file(ca, tmp_path_factory):
    path = tmp_path_factory.mktemp("p1ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


def wasitls(module, *args, ca_file=None, extra=()):
    cmd = [sys.executable, "-m", "wasitls", "run", "--allow-net", "127.0.0.1", "--allow-net", "localhost", "--tls-trace"]
    if ca_file is not None:
        cmd += ["--ca-file", str(ca_file)]
    return [*cmd, *extra, str(module), *args]


def run(cmd):
    proc = subprocess.run(cmd, capture_output=True, timeout=TIMEOUT)
    return proc.returncode, proc.stdout.decode(), proc.stderr


def checksum(data: bytes) -> int:
    """socktool's: h = h * 31 + byte, in a 32-bit unsigned long."""
    h = 0
    for b in data:
        h = (h * 31 + b) & 0xFFFFFFFF
    return h


def response_of(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
@pytest.mark.parametrize("key_type", [trustme.KeyType.RSA, trustme.KeyType.ECDSA])
def test_the_seeds_c_example(seed_example, tmp_path, version, key_type):
    """The seed's lines as written: the name passed with sizeof, so with its NUL (stripped by the host)."""
    typed_ca, ca_path = typed_ca_file(tmp_path, key_type)
    body = os.urandom(100_000)
    with HttpsServer(server_context(typed_ca.issue_cert("example.com", key_type=key_type), version=version),
                     body) as server:
        code, out, err = run(wasitls(seed_example, "localhost", str(server.port), ca_file=ca_path))
    assert code == 0, out + err.decode()
    expected = "TLSv1.3" if version == ssl.TLSVersion.TLSv1_3 else "TLSv1.2"
    assert "status line: HTTP/1.1 200 OK" in out
    assert f"received {len(response_of(body))} bytes over {expected}" in out
    assert server.sni == ["example.com"] and server.version == expected
    # closing the socket sent close_notify, answered by the server's
    assert server.errors == [] and server.client_close_notify
    [trace] = trace_lines(err)
    assert trace["server"] == "example.com" and trace["ended"] == "closed (close_notify both ways)"


def test_openssl_s_server_and_gnutls_serv(socktool, ca, ca_file, tmp_path):
    write_identity(tmp_path, ca.issue_cert("localhost"))
    page = os.urandom(300_000)
    (tmp_path / "page.bin").write_bytes(page)
    openssl = shutil.which("openssl") or pytest.skip("openssl not installed")

    def s_server(port):
        return [openssl, "s_server", "-accept", f"127.0.0.1:{port}", "-key", "key.pem", "-cert", "cert.pem",
                "-WWW", "-quiet"]

    with server_process(s_server, tmp_path) as port:
        code, out, err = run(wasitls(socktool, "fetch", "127.0.0.1", str(port), "localhost", ca_file=ca_file))
    assert code == 0, out + err.decode()
    assert 'first line "HTTP/1.0 200 ok"' in out and "end eof" in out
    gnutls = shutil.which("gnutls-serv")
    if gnutls is None:
        return

    def serv(port):
        return [gnutls, "--http", "--httpdata", "page.bin", "--port", str(port), "--quiet", "--x509keyfile",
                "key.pem", "--x509certfile", "cert.pem"]

    with server_process(serv, tmp_path) as port:
        code, out, err = run(wasitls(socktool, "fetch", "127.0.0.1", str(port), "localhost", ca_file=ca_file))
    assert code == 0, out + err.decode()
    assert 'first line "HTTP/1.0 200 OK"' in out and "end eof" in out
    [trace] = trace_lines(err)
    assert trace["ended"] == "closed (close_notify both ways)"


def test_body_arrives_intact(socktool, ca, ca_file):
    body = os.urandom(700_000)
    with HttpsServer(server_context(ca.issue_cert("localhost")), body) as server:
        code, out, err = run(wasitls(socktool, "fetch", "127.0.0.1", str(server.port), "localhost", ca_file=ca_file))
    assert code == 0, out + err.decode()
    assert f"response: {len(response_of(body))} bytes" in out
    assert f"checksum {checksum(response_of(body))}, end eof" in out


REFUSALS = {
    "expired": "certificate verify failed: certificate has expired",
    "wrong host name": "hostname mismatch: certificate is not valid for 'localhost'",
    "untrusted CA": "certificate verify failed: unable to get local issuer certificate (untrusted issuer)",
    "self-signed": "certificate verify failed: self-signed certificate",
    "plain TCP": "peer does not speak TLS",
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refused_handshakes_are_eproto_and_traced(socktool, ca, ca_file, tmp_path, case):
    now = datetime.datetime.now(datetime.timezone.utc)
    day = datetime.timedelta(days=1)
    if case == "expired":
        server = HttpsServer(server_context(ca.issue_cert("localhost", not_before=now - 30 * day, not_after=now - day)))
    elif case == "wrong host name":
        server = HttpsServer(server_context(ca.issue_cert("other.example")))
    elif case == "untrusted CA":
        server = HttpsServer(server_context(trustme.CA().issue_cert("localhost")))
    elif case == "self-signed":
        server = HttpsServer(self_signed_context(tmp_path, "localhost"))
    else:
        server = HttpsServer(None, plain=b"HTTP/1.1 400 Bad Request\r\n\r\n")
    with server:
        code, out, err = run(wasitls(socktool, "fetch", "127.0.0.1", str(server.port), "localhost", ca_file=ca_file))
    # the first write fails, then SO_ERROR and the next read say the same
    assert f"send: errno {EPROTO}" in out and f"so_error: {EPROTO}" in out and f"recv: errno {EPROTO}" in out, out
    [trace] = trace_lines(err)
    assert trace["ended"].startswith("failed: " + REFUSALS[case]), trace
    assert "Traceback" not in err.decode()


def test_truncation_is_an_error_not_an_end(socktool, ca, ca_file):
    body = os.urandom(50_000)
    with HttpsServer(server_context(ca.issue_cert("localhost")), body, ending="truncate") as server:
        code, out, err = run(wasitls(socktool, "fetch", "127.0.0.1", str(server.port), "localhost", ca_file=ca_file))
    assert f"response: {len(response_of(body))} bytes" in out and "end error" in out
    assert f"response read: errno {EPROTO}" in out
    [trace] = trace_lines(err)
    assert "truncated" in trace["ended"]


def test_shutdown_for_writing_sends_close_notify_then_fin(socktool, ca, ca_file):
    body = os.urandom(10_000)
    with HttpsServer(server_context(ca.issue_cert("localhost")), body) as server:
        code, out, err = run(wasitls(socktool, "fetch", "127.0.0.1", str(server.port), "localhost", "", "",
                                     "shutdown", ca_file=ca_file))
    assert code == 0, out + err.decode()
    assert "shutdown: ok" in out and f"response: {len(response_of(body))} bytes" in out and "end eof" in out
    # the server's unwrap returned: our close_notify came, then the TCP FIN (nothing after it)
    assert server.errors == [] and server.client_close_notify and server.after_close_notify == b""


def test_the_options_rules(socktool, ca, ca_file):
    """EINVAL on UDP, on a listening socket, with an empty name, a second time and after I/O;
    ENOTCONN before connect; ENOPROTOOPT for an option we do not define."""
    with HttpsServer(server_context(ca.issue_cert("localhost")), b"") as server:
        code, out, err = run(wasitls(socktool, "rules", "127.0.0.1", str(server.port), "localhost", ca_file=ca_file,
                                     extra=("--allow-listen", "127.0.0.1:0")))
    assert out.splitlines() == [
        f"on udp: errno {EINVAL}", f"on listening: errno {EINVAL}", f"before connect: errno {ENOTCONN}",
        f"empty name: errno {EINVAL}", "first: ok", f"second: errno {EINVAL}", f"after send: errno {EINVAL}",
        f"unknown option: errno {ENOPROTOOPT}"], out + err.decode()


class SlowHandshakeServer(threading.Thread):
    """Waits before answering the ClientHello, so a non-blocking guest meets EAGAIN and must poll."""

    def __init__(self, context, body, delay=0.5):
        super().__init__(daemon=True)
        self.context, self.body, self.delay = context, body, delay
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(TIMEOUT)
        self.port = self.sock.getsockname()[1]

    def run(self):
        conn, _ = self.sock.accept()
        time.sleep(self.delay)
        with self.context.wrap_socket(conn, server_side=True) as tls:
            request = b""
            while b"\r\n\r\n" not in request:
                request += tls.recv(4096)
            tls.sendall(response_of(self.body))
            tls.unwrap()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.sock.close()
        self.join(TIMEOUT)


def test_nonblocking_waits_in_poll_not_in_a_loop(socktool, ca, ca_file):
    body = os.urandom(2_000_000)
    with SlowHandshakeServer(server_context(ca.issue_cert("localhost")), body) as server:
        code, out, err = run(wasitls(socktool, "fetch", "127.0.0.1", str(server.port), "localhost", "", "",
                                     "nonblocking", ca_file=ca_file))
    assert code == 0, out + err.decode()
    assert "write: ok after EAGAIN" in out  # the handshake was still running
    assert f"nonblocking: {len(response_of(body))} bytes, end eof" in out
    # poll returns only when the socket is ready: a handful of polls, not a spin through the handshake
    polls = int(out.split("polls: ")[1].split()[0])
    assert polls < 100, out


def test_client_identity_alpn_and_read_back(socktool, ca, ca_file, tmp_path):
    client = ca.issue_cert("client.example")
    client.private_key_pem.write_to_path(str(tmp_path / "ckey.pem"))
    client.cert_chain_pems[0].write_to_path(str(tmp_path / "ccert.pem"))
    context = server_context(ca.issue_cert("localhost"), version=ssl.TLSVersion.TLSv1_2)
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cadata=ca.cert_pem.bytes().decode())
    context.set_alpn_protocols(["http/1.1"])
    with HttpsServer(context, b"ok") as server:
        code, out, err = run(wasitls(socktool, "fetch", "127.0.0.1", str(server.port), "localhost", "h2,http/1.1",
                                     "me", ca_file=ca_file,
                                     extra=("--identity", f"me={tmp_path / 'ckey.pem'},{tmp_path / 'ccert.pem'}")))
    assert code == 0, out + err.decode()
    assert "alpn: ok" in out and "identity: ok" in out
    assert 'alpn "http/1.1"' in out and "version TLSv1.2 cipher TLS_" in out
    assert server.errors == []
    # an identity the host does not hold
    with HttpsServer(server_context(ca.issue_cert("localhost")), b"ok") as server:
        code, out, err = run(wasitls(socktool, "fetch", "127.0.0.1", str(server.port), "localhost", "", "nobody",
                                     ca_file=ca_file))
    assert "identity: errno 44" in out


def test_keylog(socktool, ca, ca_file, tmp_path):
    with HttpsServer(server_context(ca.issue_cert("localhost")), b"x") as server:
        code, out, err = run(wasitls(socktool, "fetch", "127.0.0.1", str(server.port), "localhost", ca_file=ca_file,
                                     extra=("--tls-keylog", str(tmp_path / "keys.log"))))
    assert code == 0
    assert "CLIENT_TRAFFIC_SECRET_0" in (tmp_path / "keys.log").read_text()


def test_server_side_htls_answers_curl(socktool, ca, ca_file, tmp_path):
    curl = shutil.which("curl") or pytest.skip("curl not installed")
    server_cert = ca.issue_cert("localhost")
    write_identity(tmp_path, server_cert)
    client = ca.issue_cert("curl-client")
    client.private_key_pem.write_to_path(str(tmp_path / "ckey.pem"))
    client.cert_chain_pems[0].write_to_path(str(tmp_path / "ccert.pem"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "wasitls", "run", "--allow-listen", f"127.0.0.1:{port}", "--client-ca-file",
           str(ca_file), "--identity", f"site={tmp_path / 'key.pem'},{tmp_path / 'cert.pem'}", "--tls-trace",
           str(socktool), "https-server", "127.0.0.1", str(port), "site", "2", "ask-client-cert"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "bind: ok\n"
        assert proc.stdout.readline() == "listen: ok\n"
        base = [curl, "-sS", "--cacert", str(ca_file), f"https://localhost:{port}/"]
        with_cert = subprocess.run([*base, "--cert", str(tmp_path / "ccert.pem"), "--key", str(tmp_path / "ckey.pem")],
                                   capture_output=True, text=True, timeout=TIMEOUT)
        without = subprocess.run(base, capture_output=True, text=True, timeout=TIMEOUT)
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        proc.kill()
    from cryptography import x509

    subject = x509.load_pem_x509_certificate(client.cert_chain_pems[0].bytes()).subject.rfc4514_string()
    assert with_cert.stdout == f'hello over host TLS; client "{subject}"\n', with_cert
    assert without.stdout.startswith('hello over host TLS; client ""'), without
    assert "role=server" in err


@pytest.mark.parametrize("version", ["TLSv1.2", "TLSv1.3"])
def test_nginx_with_an_ecdsa_certificate(socktool, tmp_path, version):
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if nginx is None:
        pytest.skip("nginx not installed: apt-get install nginx")
    typed_ca, ca_path = typed_ca_file(tmp_path, trustme.KeyType.ECDSA)
    write_identity(tmp_path, typed_ca.issue_cert("localhost", key_type=trustme.KeyType.ECDSA))

    def argv(port):
        conf = tmp_path / f"nginx-{port}.conf"
        conf.write_text(nginx_tls_conf(tmp_path, port, cert=tmp_path / "cert.pem", key=tmp_path / "key.pem",
                                       version=version, body="protocol=$ssl_protocol sni=$ssl_server_name\\n"))
        return [nginx, "-p", str(tmp_path), "-c", str(conf)]

    with server_process(argv, tmp_path) as port:
        code, out, err = run(wasitls(socktool, "fetch", "127.0.0.1", str(port), "localhost", ca_file=ca_path))
    assert code == 0, out + err.decode()
    assert 'first line "HTTP/1.1 200 OK"' in out and "end eof" in out
    assert f"tls: version {version} cipher " in out
    [trace] = trace_lines(err)
    assert trace["version"] == version
