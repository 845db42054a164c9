"""wasi:tls/types@0.2.0-draft end to end: the tls_client guest (upstream interface only) on wasitls,
against real TLS servers on loopback (Python ssl, `openssl s_server`, `gnutls-serv`), good and bad;
the stream ends, backpressure, --tls-trace, --tls-keylog."""

from __future__ import annotations

import ast
import contextlib
import datetime
import hashlib
import os
import re
import select
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from engines import ENGINES

FAST_ENGINES = [e for e in ENGINES if e != "reference"]  # sockets need two-borrow calls (see test_wasi_guests)
TIMEOUT = 120
SRC = Path(__file__).resolve().parent.parent / "src"
MiB = 1 << 20


def checkout_env() -> dict[str, str]:
    """The environment for `python -m wasitls`: this checkout's source first, whatever is installed."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), *filter(None, [env.get("PYTHONPATH")])])
    return env


LINGER_RESET = b"\x01\x00\x00\x00\x00\x00\x00\x00"  # SO_LINGER on, 0 s: close() sends RST


class HttpsServer(threading.Thread):
    """Serves `body` over TLS to one connection and records what it saw.

    http=True answers an HTTP request with `body` as the response body; http=False sends `body` right
    after the handshake. `ending` is how the server ends: "close_notify" (then it waits for the
    client's close_notify, as `unwrap` does), "truncate" (TCP FIN without close_notify) or "reset"."""

    def __init__(self, context: ssl.SSLContext | None, body: bytes = b"", *, plain: bytes | None = None,
                 reset: bool = False, http: bool = True, ending: str = "close_notify"):
        super().__init__(daemon=True)
        self.context, self.body, self.plain, self.reset = context, body, plain, reset
        self.http, self.ending = http, ending
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(TIMEOUT)
        self.port = self.sock.getsockname()[1]
        self.errors: list[BaseException] = []
        self.sni: list[str | None] = []  # the server name of each ClientHello (None: no SNI sent)
        self.version: str | None = None
        self.cipher: str | None = None
        self.client_close_notify = False  # the client's close_notify arrived
        self.after_close_notify: bytes | None = None  # what the raw socket had after it (b"": FIN)
        if context is not None:
            context.sni_callback = lambda _sock, name, _ctx: self.sni.append(name)

    def run(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(TIMEOUT)
            try:
                if self.reset:  # read the ClientHello, then reset the connection
                    conn.recv(1024)
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
                    return
                if self.plain is not None:
                    conn.recv(1024)
                    conn.sendall(self.plain)
                    return
                tls = self.context.wrap_socket(conn, server_side=True, suppress_ragged_eofs=False)
                with tls:  # wrap_socket took conn's descriptor: tls must close it, on every path
                    self.version, self.cipher = tls.version(), tls.cipher()[0]
                    self.exchange(tls)
                    if self.ending == "truncate":
                        socket.socket.shutdown(tls, socket.SHUT_RDWR)  # no close_notify
                    elif self.ending == "reset":
                        tls.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
                    else:
                        with tls.unwrap() as raw:  # sends close_notify, returns once the client's has come
                            self.client_close_notify = True
                            self.after_close_notify = raw.recv(1024)
            except (ssl.SSLError, OSError) as e:
                self.errors.append(e)

    def exchange(self, tls: ssl.SSLSocket) -> None:
        if self.http:
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


def client_command(build_guest, engine, ca_file, port, *args, extra=()) -> list[str]:
    wasm = build_guest("tls_client")
    return [sys.executable, "-m", "wasitls", "run", "--engine", engine, "--allow-net", f"127.0.0.1:{port}",
            "--allow-net", "localhost", "--ca-file", str(ca_file), *extra, str(wasm), *args]


def run_client(build_guest, engine, ca_file, port, *args, extra=()):
    return subprocess.run(client_command(build_guest, engine, ca_file, port, *args, extra=extra),
                          capture_output=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL, env=checkout_env())


def typed_ca_file(tmp_path: Path, key_type: trustme.KeyType) -> tuple[trustme.CA, Path]:
    ca = trustme.CA(key_type=key_type)
    path = tmp_path / f"{key_type.name}-ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return ca, path


def assert_fetched(proc: subprocess.CompletedProcess, body: bytes, status: str = "HTTP/1.1 200 OK") -> str:
    out = proc.stdout.decode()
    assert proc.returncode == 0, proc.stderr.decode(errors="replace") + out
    assert "handshake ok with localhost\nsecond get: error\n" in out
    assert f"status: {status}\n" in out
    assert f"body bytes: {len(body)}\n" in out
    assert f"body sha256: {hashlib.sha256(body).hexdigest()}\n" in out
    assert out.endswith("close-output done\n"), out
    return out


def trace_lines(stderr: bytes) -> list[dict]:
    """The --tls-trace lines on stderr, as dicts."""
    quoted = r"-|'(?:[^'\\]|\\.)*'"  # tls_streams.trace_field: none, or an escaped Python literal
    pattern = re.compile(r"tls: server=(?P<server>\S+) version=(?P<version>\S+) cipher=(?P<cipher>\S+)"
                         r" alpn=(?P<alpn>\S+)"
                         rf" subject=(?P<subject>{quoted}) issuer=(?P<issuer>{quoted})"
                         r" sent=(?P<sent>\d+) received=(?P<received>\d+) handshake=(?P<handshake>\S+)"
                         r" ended=(?P<ended>.*)")
    found = []
    for line in stderr.decode(errors="replace").splitlines():
        if line.startswith("tls:"):
            m = pattern.fullmatch(line)
            assert m, f"malformed trace line: {line!r}"
            d = m.groupdict()
            d["subject"], d["issuer"] = (v if v == "-" else ast.literal_eval(v) for v in (d["subject"], d["issuer"]))
            d["sent"], d["received"] = int(d["sent"]), int(d["received"])
            found.append(d)
    return found


# every protocol and key type with tiny bodies; the large bodies once each, 64 MiB on TLS 1.2 with RSA
FETCH_CASES = [(v, k, size) for v in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3)
               for k in (trustme.KeyType.RSA, trustme.KeyType.ECDSA) for size in (0, 1)]
FETCH_CASES += [(ssl.TLSVersion.TLSv1_3, trustme.KeyType.ECDSA, size) for size in (100_000, 4 * MiB)]
FETCH_CASES += [(ssl.TLSVersion.TLSv1_2, trustme.KeyType.RSA, 64 * MiB)]


@pytest.mark.parametrize("engine", FAST_ENGINES)
@pytest.mark.parametrize("version, key_type, size", FETCH_CASES)
def test_fetch_from_python_ssl(build_guest, tmp_path, engine, version, key_type, size):
    typed_ca, ca_path = typed_ca_file(tmp_path, key_type)
    cert = typed_ca.issue_cert("localhost", key_type=key_type)
    body = os.urandom(size)
    with HttpsServer(server_context(cert, version=version), body) as server:
        proc = run_client(build_guest, engine, ca_path, server.port, "localhost", str(server.port), "/",
                          extra=["--tls-trace"])
    assert_fetched(proc, body)
    expected = "TLSv1.3" if version == ssl.TLSVersion.TLSv1_3 else "TLSv1.2"
    assert server.version == expected
    # close-output sent close_notify (the server's unwrap returned) and nothing came after it
    assert server.errors == [] and server.client_close_notify and server.after_close_notify == b""
    assert server.sni == ["localhost"]
    [trace] = trace_lines(proc.stderr)
    assert (trace["server"], trace["version"]) == ("localhost", expected)


def refused(build_guest, engine, ca_file, server, server_name="localhost", extra=()):
    host = "localhost" if server_name == "localhost" else "127.0.0.1"
    proc = run_client(build_guest, engine, ca_file, server.port, host, str(server.port), "/", server_name, extra=extra)
    out = proc.stdout.decode()
    assert proc.returncode == 1, out + proc.stderr.decode(errors="replace")
    assert out.startswith("handshake failed: ") and out.count("\n") == 1, out
    assert "Traceback" not in proc.stderr.decode(errors="replace")
    return out[len("handshake failed: "):].rstrip("\n")


def self_signed_context(tmp_path: Path, name: str) -> ssl.SSLContext:
    """A server presenting a self-signed leaf certificate (not a CA) for `name`."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    key_path, cert_path = tmp_path / "self-signed-key.pem", tmp_path / "self-signed-cert.pem"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert_path, key_path)
    return ctx


def tls11_only_context(cert: trustme.LeafCert) -> ssl.SSLContext:
    """A server that speaks nothing newer than TLS 1.1 (below our TLS 1.2 minimum)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(ctx)
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    with pytest.warns(DeprecationWarning):
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    return ctx


REFUSALS = ["expired", "not yet valid", "wrong host name", "wrong IP address", "self-signed", "untrusted CA",
            "untrusted CA, root sent", "TLS 1.1 only"]


@pytest.mark.parametrize("engine", FAST_ENGINES)
@pytest.mark.parametrize("case", REFUSALS)
def test_refusals_say_why(build_guest, ca, ca_file, engine, case, tmp_path):
    now = datetime.datetime.now(datetime.timezone.utc)
    day = datetime.timedelta(days=1)
    name = "localhost"
    if case == "expired":
        context = server_context(ca.issue_cert("localhost", not_before=now - 30 * day, not_after=now - day))
        reason = "certificate verify failed: certificate has expired"
    elif case == "not yet valid":
        context = server_context(ca.issue_cert("localhost", not_before=now + 10 * day, not_after=now + 40 * day))
        reason = "certificate verify failed: certificate is not yet valid"
    elif case == "wrong host name":
        context = server_context(ca.issue_cert("other.example"))
        reason = "hostname mismatch: certificate is not valid for 'localhost'"
    elif case == "wrong IP address":
        context, name = server_context(ca.issue_cert("localhost", "127.0.0.2")), "127.0.0.1"
        reason = "IP address mismatch: certificate is not valid for '127.0.0.1'"
    elif case == "self-signed":
        context = self_signed_context(tmp_path, "localhost")
        reason = "certificate verify failed: self-signed certificate"
    elif case == "untrusted CA":
        context = server_context(trustme.CA().issue_cert("localhost"))
        reason = "certificate verify failed: unable to get local issuer certificate (untrusted issuer)"
    elif case == "untrusted CA, root sent":
        other = trustme.CA()
        leaf = other.issue_cert("localhost")
        (tmp_path / "chain.pem").write_bytes(leaf.cert_chain_pems[0].bytes() + other.cert_pem.bytes())
        leaf.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(tmp_path / "chain.pem", tmp_path / "key.pem")
        reason = "certificate verify failed: self-signed certificate in certificate chain (untrusted root)"
    else:
        context = tls11_only_context(ca.issue_cert("localhost"))
        reason = "peer sent alert: protocol version"
    with HttpsServer(context) as server:
        said = refused(build_guest, engine, ca_file, server, name)
    assert said == reason
    assert server.version is None  # the server never completed a handshake


@pytest.mark.parametrize("engine", FAST_ENGINES)
def test_plain_tcp_and_reset_are_reported(build_guest, ca_file, engine):
    with HttpsServer(None, plain=b"HTTP/1.1 400 Bad Request\r\n\r\n") as server:
        said = refused(build_guest, engine, ca_file, server)
    assert said.startswith("peer does not speak TLS"), said
    assert "HTTP/1.1 400" in said  # what it sent instead is shown
    with HttpsServer(None, reset=True) as server:
        said = refused(build_guest, engine, ca_file, server)
    assert said == "connection reset by peer during handshake", said


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def server_process(argv_for_port, cwd: Path):
    """Start a server command on a free loopback port (retrying if another process took it first);
    yield the port once it accepts connections; kill it afterwards."""
    for _attempt in range(5):
        port = free_port()
        proc = subprocess.Popen(argv_for_port(port), cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        if proc.poll() is None:
            break
        proc.wait()
    else:
        raise RuntimeError(f"{argv_for_port(0)[0]} did not start: {proc.stderr.read().decode(errors='replace')}")
    try:
        yield port
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()


def write_identity(tmp_path: Path, cert: trustme.LeafCert) -> None:
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))


@pytest.mark.parametrize("engine", FAST_ENGINES)
@pytest.mark.parametrize("size", [0, 300_000, 64 * MiB])
def test_openssl_s_server(build_guest, ca, ca_file, engine, tmp_path, size):
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl not installed: apt-get install openssl")
    write_identity(tmp_path, ca.issue_cert("localhost"))
    body = os.urandom(size)
    (tmp_path / "page.bin").write_bytes(body)

    def argv(port):
        return [openssl, "s_server", "-accept", f"127.0.0.1:{port}", "-key", "key.pem", "-cert", "cert.pem",
                "-WWW", "-quiet"]

    with server_process(argv, tmp_path) as port:
        proc = run_client(build_guest, engine, ca_file, port, "localhost", str(port), "/page.bin")
    assert_fetched(proc, body, status="HTTP/1.0 200 ok")


GNUTLS_PRIORITY = {"TLSv1.2": "NORMAL:-VERS-ALL:+VERS-TLS1.2", "TLSv1.3": "NORMAL:-VERS-ALL:+VERS-TLS1.3"}
GNUTLS_CASES = [(v, k, size) for v in GNUTLS_PRIORITY for k in (trustme.KeyType.RSA, trustme.KeyType.ECDSA)
                for size in (0, 100_000)]
GNUTLS_CASES += [("TLSv1.3", trustme.KeyType.RSA, 64 * MiB)]


@pytest.mark.parametrize("engine", FAST_ENGINES)
@pytest.mark.parametrize("version, key_type, size", GNUTLS_CASES)
def test_gnutls_serv(build_guest, engine, tmp_path, version, key_type, size):
    gnutls_serv = shutil.which("gnutls-serv")
    if gnutls_serv is None:
        pytest.skip("gnutls-serv not installed: apt-get install gnutls-bin")
    typed_ca, ca_path = typed_ca_file(tmp_path, key_type)
    write_identity(tmp_path, typed_ca.issue_cert("localhost", key_type=key_type))
    body = os.urandom(size)
    (tmp_path / "body.bin").write_bytes(body)

    def argv(port):
        # --httpdata: every request is answered with exactly these bytes as the body
        # (gnutls-serv 3.7 cannot bind one address; it listens on every interface, port chosen here)
        return [gnutls_serv, "--http", "--httpdata", "body.bin", "--port", str(port), "--quiet",
                "--priority", GNUTLS_PRIORITY[version], "--x509keyfile", "key.pem", "--x509certfile", "cert.pem"]

    with server_process(argv, tmp_path) as port:
        proc = run_client(build_guest, engine, ca_path, port, "localhost", str(port), "/", extra=["--tls-trace"])
    assert_fetched(proc, body, status="HTTP/1.0 200 OK")
    [trace] = trace_lines(proc.stderr)
    assert trace["version"] == version
    assert trace["ended"] == "closed (close_notify both ways)"


# --- how the plaintext input ends --------------------------------------------------------------------

@pytest.mark.parametrize("engine", FAST_ENGINES)
@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_stream_ends_closed_only_after_close_notify(build_guest, ca, ca_file, engine, version):
    """close_notify from the peer: every byte, then `closed` (and `closed` again); a TCP close without
    close_notify: every byte, then an error naming the truncation (then `closed`); a reset: an error."""
    body = os.urandom(200_000)
    results = {}
    for ending in ("close_notify", "truncate", "reset"):
        with HttpsServer(server_context(ca.issue_cert("localhost"), version=version), body, http=False,
                         ending=ending) as server:
            proc = run_client(build_guest, engine, ca_file, server.port, "raw", "localhost", str(server.port),
                              str(1 << 30), extra=["--tls-trace"])
        assert "Traceback" not in proc.stderr.decode(errors="replace")
        results[ending] = (proc.stdout.decode(), trace_lines(proc.stderr), server)

    out, [trace], server = results["close_notify"]
    assert out.endswith(f"received bytes: {len(body)}\nreceived sha256: {hashlib.sha256(body).hexdigest()}\n"
                        "end: closed\nread after end: closed\nclose-output done\n"), out
    assert server.client_close_notify and server.errors == []
    assert trace["ended"] == "closed (close_notify both ways)"

    out, [trace], server = results["truncate"]
    truncated = "the peer closed the connection without close_notify (truncated)"
    assert out.endswith(f"received bytes: {len(body)}\nreceived sha256: {hashlib.sha256(body).hexdigest()}\n"
                        f"end: error: {truncated}\nread after end: closed\n"), out
    assert trace["ended"] == f"failed: {truncated}"

    out, [trace], server = results["reset"]
    assert "end: error: connection reset by peer\nread after end: closed\n" in out, out
    assert trace["ended"] == "failed: connection reset by peer"


@pytest.mark.parametrize("engine", FAST_ENGINES)
def test_truncated_response_is_an_error_for_the_http_guest(build_guest, ca, ca_file, engine):
    """The GET path reads to the end: a truncated body must fail it, not look like a short page."""
    body = os.urandom(50_000)
    with HttpsServer(server_context(ca.issue_cert("localhost")), body, ending="truncate") as server:
        proc = run_client(build_guest, engine, ca_file, server.port, "localhost", str(server.port), "/")
    out = proc.stdout.decode()
    assert proc.returncode == 1, out
    assert out.endswith("read failed after %d bytes: error: the peer closed the connection without close_notify"
                        " (truncated)\n" % (len(body) + len(b"HTTP/1.1 200 OK\r\nContent-Length: 50000\r\n"
                                                              b"Connection: close\r\n\r\n"))), out
    assert "body sha256" not in out


# --- server name: SNI for names, IP literals checked against IP SANs and never sent ----------------------

@pytest.mark.parametrize("engine", FAST_ENGINES)
def test_sni_for_names_and_none_for_ip_literals(build_guest, ca, ca_file, engine):
    body = b"by address\n"
    with HttpsServer(server_context(ca.issue_cert("localhost", "127.0.0.1")), body) as server:
        proc = run_client(build_guest, engine, ca_file, server.port, "127.0.0.1", str(server.port), "/",
                          "127.0.0.1")
    out = proc.stdout.decode()
    assert proc.returncode == 0, out + proc.stderr.decode(errors="replace")
    assert "handshake ok with 127.0.0.1\n" in out and f"body sha256: {hashlib.sha256(body).hexdigest()}\n" in out
    assert server.sni == [None]  # the ClientHello carried no server_name extension
    with HttpsServer(server_context(ca.issue_cert("localhost", "127.0.0.1")), body) as server:
        proc = run_client(build_guest, engine, ca_file, server.port, "127.0.0.1", str(server.port), "/",
                          "localhost")
    assert proc.returncode == 0, proc.stdout.decode() + proc.stderr.decode(errors="replace")
    assert server.sni == ["localhost"]


# --- backpressure ------------------------------------------------------------------------------------

class SlowReader(HttpsServer):
    """Reads nothing until `go` is set; then everything up to the client's close_notify, and answers
    with the byte count and sha256 of what arrived."""

    def __init__(self, context: ssl.SSLContext):
        super().__init__(context, http=False)
        self.go = threading.Event()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)  # accepted sockets inherit it

    def exchange(self, tls: ssl.SSLSocket) -> None:
        self.go.wait(TIMEOUT)
        digest, count = hashlib.sha256(), 0
        while chunk := tls.recv(1 << 16):
            digest.update(chunk)
            count += len(chunk)
        tls.sendall(f"got {count} bytes sha256 {digest.hexdigest()}\n".encode())


def flood_bound() -> int:
    """How much a write-ahead may take while the peer reads nothing: the client's kernel send buffer at
    its largest (tcp_wmem max), the server's small receive buffer, and 4 MiB for the host's stream
    buffers and TLS records, which are bounded by far less."""
    try:
        wmem_max = int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
    except (OSError, IndexError, ValueError):
        wmem_max = 4 * MiB
    return wmem_max + 4 * MiB


@pytest.mark.parametrize("engine", FAST_ENGINES)
def test_writes_are_held_back_while_the_peer_does_not_read(build_guest, ca, ca_file, engine, tmp_path):
    """The guest writes 64 MiB as fast as check-write lets it while the server reads nothing: check-write
    must stay at 0 (its pollable not ready) after a bounded amount, i.e. the host does not buffer the
    rest. Once the server reads, every byte arrives, close-output ends our side, and the reply is read."""
    bound = flood_bound()
    flood = max(64 * MiB, 4 * bound)  # far more than may be held anywhere
    with SlowReader(server_context(ca.issue_cert("localhost"))) as server:
        cmd = client_command(build_guest, engine, ca_file, server.port, "flood", "localhost", str(server.port),
                             str(flood))
        with open(tmp_path / "stderr", "wb") as stderr:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL,
                                    env=checkout_env())
            watchdog = threading.Timer(TIMEOUT, proc.kill)
            watchdog.start()
            try:
                lines = []
                for line in proc.stdout:  # the server starts reading when the guest says it is held back
                    lines.append(line.decode())
                    if line.startswith((b"stalled after", b"sent bytes")):
                        server.go.set()
                proc.wait()
            finally:
                watchdog.cancel()
                server.go.set()
    out = "".join(lines)
    assert proc.returncode == 0, out + (tmp_path / "stderr").read_text(errors="replace")
    stalled = re.search(r"^stalled after (\d+) bytes$", out, re.MULTILINE)
    assert stalled, f"check-write never held the guest back: the host took all {flood} bytes\n{out}"
    assert int(stalled.group(1)) < bound, out
    sent = re.search(r"^sent sha256: (\w+)$", out, re.MULTILINE).group(1)
    assert f"sent bytes: {flood}\n" in out
    assert f"reply: got {flood} bytes sha256 {sent}\n" in out  # nothing lost or reordered
    assert "check-write after close-output: closed\n" in out  # close-output ended the plaintext output
    assert out.endswith("end: closed\n"), out  # reads still work after close-output, to close_notify
    assert server.client_close_notify and server.errors == []



@pytest.mark.parametrize("engine", FAST_ENGINES)
@pytest.mark.parametrize("ending", ["reset", "truncate"])
def test_writes_fail_once_the_peer_is_gone(build_guest, ca, ca_file, engine, ending):
    """A guest writing to a peer that went away (reset, or closed without reading) gets an error from
    the plaintext output, not an endless wait."""
    with HttpsServer(server_context(ca.issue_cert("localhost")), http=False, ending=ending) as server:
        proc = run_client(build_guest, engine, ca_file, server.port, "flood", "localhost", str(server.port),
                          str(1 << 30), extra=["--tls-trace"])
    out = proc.stdout.decode()
    assert proc.returncode == 0, out + proc.stderr.decode(errors="replace")
    failed = re.search(r"^write failed after (\d+) bytes: error: (.+)$", out, re.MULTILINE)
    assert failed, out
    assert int(failed.group(1)) < 1 << 30
    [trace] = trace_lines(proc.stderr)
    assert trace["ended"] == f"failed: {failed.group(2)}"


# --- --tls-trace and --tls-keylog -------------------------------------------------------------------------

class CountingRelay(threading.Thread):
    """A loopback TCP relay for one connection to `target_port`, counting the bytes each way."""

    def __init__(self, target_port: int):
        super().__init__(daemon=True)
        self.target_port = target_port
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(TIMEOUT)
        self.port = self.sock.getsockname()[1]
        self.up = self.down = 0  # client -> server, server -> client

    def run(self) -> None:
        try:
            client, _ = self.sock.accept()
        except OSError:
            return
        with client, socket.create_connection(("127.0.0.1", self.target_port)) as server:
            peer = {client: server, server: client}
            reading = [client, server]
            while reading:
                ready, _, _ = select.select(reading, [], [], TIMEOUT)
                if not ready:
                    return
                for s in ready:
                    data = s.recv(1 << 16)
                    if not data:  # pass the half-close on
                        reading.remove(s)
                        with contextlib.suppress(OSError):
                            peer[s].shutdown(socket.SHUT_WR)
                        continue
                    peer[s].sendall(data)
                    if s is client:
                        self.up += len(data)
                    else:
                        self.down += len(data)

    def __enter__(self) -> "CountingRelay":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.sock.close()
        self.join(TIMEOUT)


def names_of(pem: bytes) -> tuple[str, str]:
    cert = x509.load_pem_x509_certificate(pem)
    return cert.subject.rfc4514_string(), cert.issuer.rfc4514_string()


# (protocol, key type, the one TLS 1.2 suite the server allows as OpenSSL names it, its IANA name)
TRACE_CASES = [
    ("TLSv1.2", trustme.KeyType.RSA, "ECDHE-RSA-AES128-GCM-SHA256", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"),
    ("TLSv1.2", trustme.KeyType.ECDSA, "ECDHE-ECDSA-CHACHA20-POLY1305",
     "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"),
    ("TLSv1.3", trustme.KeyType.ECDSA, None, None),
]


@pytest.mark.parametrize("engine", FAST_ENGINES)
@pytest.mark.parametrize("version, key_type, suite, iana", TRACE_CASES)
def test_tls_trace_line_matches_what_was_negotiated(build_guest, tmp_path, engine, version, key_type, suite, iana):
    typed_ca, ca_path = typed_ca_file(tmp_path, key_type)
    cert = typed_ca.issue_cert("localhost", key_type=key_type)
    context = server_context(cert, version=getattr(ssl.TLSVersion, version.replace(".", "_")))
    if suite is not None:
        context.set_ciphers(suite)
    body = os.urandom(123_456)
    with HttpsServer(context, body) as server, CountingRelay(server.port) as relay:
        proc = run_client(build_guest, engine, ca_path, relay.port, "localhost", str(relay.port), "/",
                          extra=["--tls-trace"])
    assert_fetched(proc, body)
    assert server.version == version and server.cipher == (suite or server.cipher)
    [trace] = trace_lines(proc.stderr)
    subject, issuer = names_of(cert.cert_chain_pems[0].bytes())
    assert issuer == names_of(typed_ca.cert_pem.bytes())[0]
    assert trace["server"] == "localhost"
    assert trace["version"] == version
    assert trace["cipher"] == (iana or server.cipher)  # TLS 1.3 suites have one name
    assert (trace["subject"], trace["issuer"]) == (subject, issuer)
    assert (trace["sent"], trace["received"]) == (relay.up, relay.down)  # TLS bytes on the wire, each way
    assert relay.down > len(body)
    assert re.fullmatch(r"\d+(\.\d+)?ms", trace["handshake"])
    assert trace["ended"] == "closed (close_notify both ways)"


@pytest.mark.parametrize("engine", FAST_ENGINES)
def test_tls_trace_names_a_failed_handshake(build_guest, ca_file, engine):
    with HttpsServer(server_context(trustme.CA().issue_cert("localhost"))) as server:
        proc = run_client(build_guest, engine, ca_file, server.port, "localhost", str(server.port), "/",
                          extra=["--tls-trace"])
    assert proc.returncode == 1
    [trace] = trace_lines(proc.stderr)
    assert trace["server"] == "localhost"
    assert (trace["version"], trace["cipher"], trace["subject"], trace["handshake"]) == ("-", "-", "-", "-")
    assert trace["ended"] == "failed: certificate verify failed: unable to get local issuer certificate (untrusted issuer)"


def keylog_entries(path: Path) -> dict[str, dict[str, str]]:
    """NSS key log: {client random: {label: secret}}, comment lines skipped, every line well-formed."""
    entries: dict[str, dict[str, str]] = {}
    for line in path.read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        assert re.fullmatch(r"[A-Z_0-9]+ [0-9a-f]{64} [0-9a-f]{64,128}", line), line
        label, random, secret = line.split()
        assert label not in entries.get(random, {}), f"{label} logged twice"
        entries.setdefault(random, {})[label] = secret
    return entries


TLS13_LABELS = {"CLIENT_HANDSHAKE_TRAFFIC_SECRET", "SERVER_HANDSHAKE_TRAFFIC_SECRET", "CLIENT_TRAFFIC_SECRET_0",
                "SERVER_TRAFFIC_SECRET_0", "EXPORTER_SECRET"}


@pytest.mark.parametrize("engine", FAST_ENGINES)
@pytest.mark.parametrize("version", ["TLSv1.2", "TLSv1.3"])
def test_tls_keylog_has_the_secrets_the_server_used(build_guest, ca, ca_file, engine, version, tmp_path):
    """Our --tls-keylog lines for a connection equal the server's own (OpenSSL via Python's
    keylog_filename) for the same client random: exactly what Wireshark needs to decrypt it."""
    ours, theirs = tmp_path / "client.keys", tmp_path / "server.keys"
    body = os.urandom(10_000)
    for _ in range(2):  # two connections: the file is appended to, one set of lines each
        context = server_context(ca.issue_cert("localhost"), version=getattr(ssl.TLSVersion, version.replace(".", "_")))
        context.keylog_filename = str(theirs)
        with HttpsServer(context, body) as server:
            proc = run_client(build_guest, engine, ca_file, server.port, "localhost", str(server.port), "/",
                              extra=["--tls-keylog", str(ours)])
        assert_fetched(proc, body)
    assert server.version == version
    client, server_side = keylog_entries(ours), keylog_entries(theirs)
    assert len(client) == 2
    assert client == server_side
    labels = {"CLIENT_RANDOM"} if version == "TLSv1.2" else TLS13_LABELS
    for secrets in client.values():
        assert set(secrets) == labels
        if version == "TLSv1.2":
            assert len(secrets["CLIENT_RANDOM"]) == 96  # the 48-byte master secret


# --- trust and linking ---------------------------------------------------------------------------------

@pytest.mark.parametrize("engine", FAST_ENGINES)
def test_without_ca_file_a_local_ca_is_refused_as_on_wasmtime(build_guest, ca, engine):
    """The default trust is the system's: a private CA fails the handshake as an error value the guest
    prints (exit 1 through wasi:cli/exit), not a trap, as the same guest does on `wasmtime run -S tls`
    (test_wasi_guests.test_tls_client_rejects_a_local_ca_on_wasmtime)."""
    with HttpsServer(server_context(ca.issue_cert("localhost"))) as server:
        cmd = [sys.executable, "-m", "wasitls", "run", "--engine", engine, "--allow-net", f"127.0.0.1:{server.port}",
               "--allow-net", "localhost", str(build_guest("tls_client")), "localhost", str(server.port), "/"]
        proc = subprocess.run(cmd, capture_output=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL, env=checkout_env())
    assert proc.returncode == 1, proc.stderr.decode(errors="replace")
    assert proc.stdout.decode() == ("handshake failed: certificate verify failed: unable to get local issuer"
                                    " certificate (untrusted issuer)\n")
    # nothing from the host but compile progress on a cold cache: no trap, no traceback
    said = [line for line in proc.stderr.decode(errors="replace").splitlines() if not line.startswith("wasitls: compiling")]
    assert said == [], said


@pytest.mark.parametrize("engine", FAST_ENGINES)
def test_a_guest_naming_wasi_0_2_6_links(build_guest, ca, ca_file, engine, tmp_path):
    """The published wasi-tls draft `use`s wasi:io@0.2.6: the same guest with every wasi:* @0.2.9 import
    renamed to @0.2.6 (same length, so the binary stays valid) runs unchanged."""
    wasm = build_guest("tls_client").read_bytes()
    renamed = re.sub(rb"(wasi:[a-z-]+/[a-z-]+)@0\.2\.9", rb"\1@0.2.6", wasm)
    assert b"wasi:io/streams@0.2.6" in renamed and b"wasi:io/streams@0.2.9" not in renamed
    (tmp_path / "tls_client_026.wasm").write_bytes(renamed)
    body = os.urandom(70_000)
    with HttpsServer(server_context(ca.issue_cert("localhost")), body) as server:
        proc = run_client(lambda _name: tmp_path / "tls_client_026.wasm", engine, ca_file, server.port,
                          "localhost", str(server.port), "/")
    assert_fetched(proc, body)


@pytest.mark.parametrize("engine", FAST_ENGINES)
@pytest.mark.parametrize("version", ["TLSv1.2", "TLSv1.3"])
def test_a_server_requiring_a_client_certificate_is_named(build_guest, ca, ca_file, engine, version):
    """The peer's alert, named: TLS 1.2 fails the handshake; in TLS 1.3 the client's handshake is over
    before the server checks its (empty) certificate, so the alert ends the first read instead."""
    context = server_context(ca.issue_cert("localhost"), version=getattr(ssl.TLSVersion, version.replace(".", "_")))
    context.verify_mode = ssl.CERT_REQUIRED
    ca.configure_trust(context)
    with HttpsServer(context, b"never sent") as server:
        proc = run_client(build_guest, engine, ca_file, server.port, "localhost", str(server.port), "/")
    out = proc.stdout.decode()
    assert proc.returncode == 1, out
    if version == "TLSv1.2":
        assert out == "handshake failed: peer sent alert: handshake failure\n"
    else:
        assert out.endswith("read failed after 0 bytes: error: peer sent alert: certificate required\n"), out
    assert "never sent" not in out


def test_an_empty_server_name_is_an_error_value_on_wasmtime(build_guest, wasmtime_cli, ca):
    """What upstream does with a server name it cannot use: the handshake's future resolves to an error."""
    from guests import wasmtime_precompiled

    cwasm = wasmtime_precompiled(wasmtime_cli, build_guest("tls_client"))
    env = {k: v for k, v in os.environ.items() if k not in ("RUST_BACKTRACE", "RUST_LIB_BACKTRACE")}
    with HttpsServer(server_context(ca.issue_cert("localhost"))) as server:
        proc = subprocess.run([str(wasmtime_cli), "run", "--allow-precompiled", "-S", "tls", "-S",
                               "inherit-network,allow-ip-name-lookup", str(cwasm), "localhost", str(server.port), "/",
                               ""], capture_output=True, timeout=TIMEOUT, env=env, stdin=subprocess.DEVNULL)
    assert proc.returncode == 1, proc.stderr.decode(errors="replace")
    assert proc.stdout.decode() == "handshake failed: invalid server name\n"


@pytest.mark.parametrize("engine", FAST_ENGINES)
def test_an_empty_server_name_is_an_error_value(build_guest, ca, ca_file, engine):
    with HttpsServer(server_context(ca.issue_cert("localhost"))) as server:
        proc = run_client(build_guest, engine, ca_file, server.port, "localhost", str(server.port), "/", "")
    assert proc.returncode == 1, proc.stderr.decode(errors="replace")
    assert proc.stdout.decode().startswith("handshake failed: invalid server name")


@pytest.mark.parametrize("engine", FAST_ENGINES)
def test_tls_trace_does_not_need_the_guest_to_drop_its_resources(build_guest, ca, ca_file, engine):
    body = os.urandom(1000)
    with HttpsServer(server_context(ca.issue_cert("localhost")), body) as server:
        proc = run_client(build_guest, engine, ca_file, server.port, "localhost", str(server.port), "/",
                          extra=["--tls-trace", "--env", "TLS_CLIENT_KEEP=1"])
    assert_fetched(proc, body)
    assert server.client_close_notify  # the connection itself was closed properly
    [trace] = trace_lines(proc.stderr)
    assert trace["server"] == "localhost" and trace["version"] == server.version


def test_an_unwritable_keylog_is_one_line_before_the_guest_runs(build_guest, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "wasitls", "run", "--tls-keylog", str(tmp_path / "no" / "keys.log"),
                           str(build_guest("tls_client")), "localhost", "1", "/"], capture_output=True, text=True,
                          timeout=TIMEOUT, stdin=subprocess.DEVNULL, env=checkout_env())
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stdout == ""  # the guest never ran
    assert proc.stderr.splitlines()[-1] == (f"wasitls: error: --tls-keylog {tmp_path / 'no' / 'keys.log'}:"
                                            " No such file or directory")
