"""`wasitls serve`: Python and JS wasi:http handlers behind the host's HTTP/1.1, HTTP/2 and TLS, driven
by curl, Python ssl, openssl s_client and h2load."""

from __future__ import annotations

import base64
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time

import pytest

from guests import JS_INSTALL_HINT, build_js_guest, find_jco
from wasitls.devtools.http_peers import Pki, pattern_digest

STARTUP = 120


class Served:
    """A `wasitls serve` process on a free loopback port, ready once it says where it serves."""

    def __init__(self, wasm, *options, port: int = 0):
        cmd = [sys.executable, "-m", "wasitls", "serve", "--addr", f"127.0.0.1:{port}", *options, str(wasm)]
        # the guest's output and the server's lines (access log, errors) in one stream
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self.ports: set[int] = set()
        deadline = time.monotonic() + STARTUP
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"wasitls serve exited {self.proc.wait()}: {''.join(self.lines)}")
            self.lines.append(line)
            m = re.search(r"serving (https?)://127\.0\.0\.1:(\d+)/", line)
            if m:
                self.scheme, self.port = m.group(1), int(m.group(2))
                break
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"

    def access_lines(self) -> list[str]:
        return [l for l in self.lines if '" ' in l and l.startswith("127.0.0.1 - - [")]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        status = self.proc.wait(timeout=60)
        self.reader.join(timeout=5)
        return status


def curl(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-sS", *args], capture_output=True, timeout=timeout)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve-pki")
    pki = Pki(root)
    other = pki.ca.issue_cert("other.test")  # a second identity, chosen by SNI
    pki.other_cert, pki.other_key = root / "other.pem", root / "other.key"
    for blob in other.cert_chain_pems:
        blob.write_to_path(str(pki.other_cert), append=True)
    other.private_key_pem.write_to_path(str(pki.other_key))
    return pki


@pytest.fixture(scope="module")
def py_handler(build_guest):
    return build_guest("http_py_handler")


@pytest.fixture(scope="module")
def js_handler():
    if find_jco() is None:
        pytest.skip(JS_INSTALL_HINT)
    return build_js_guest("http_js_handler", disable=(), wasi_version="0.2.10")


@pytest.fixture(scope="module")
def plain(py_handler):
    served = Served(py_handler, "--header-timeout", "1")
    yield served
    served.stop()


@pytest.fixture(scope="module")
def https(py_handler, pki):
    served = Served(py_handler, "--identity", f"local={pki.server_key},{pki.server_cert}",
                    "--identity", f"other={pki.other_key},{pki.other_cert}", "--client-ca-file", str(pki.ca_pem))
    yield served
    served.stop()


def client_args(pki) -> list[str]:
    return ["--cacert", str(pki.ca_pem), "--cert", str(pki.client_cert), "--key", str(pki.client_key)]


# -- plain HTTP/1.1 -----------------------------------------------------------------------------------

def test_plain_http11_keep_alive_and_bodies(plain, tmp_path):
    before = len(plain.access_lines())
    upload = tmp_path / "upload.bin"
    upload.write_bytes(os.urandom(3 << 20))
    r = curl("--http1.1", "-v", plain.url("/"), "-o", str(tmp_path / "a"), plain.url("/"), "-o", str(tmp_path / "b"),
             "--next", "--http1.1", "-v", "--data-binary", f"@{upload}", plain.url("/echo"), "-o", str(tmp_path / "c"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "a").read_text() == "hello from a Python handler: GET / http 127.0.0.1:%d\n" % plain.port
    assert (tmp_path / "c").read_bytes() == upload.read_bytes()
    assert b"Re-using existing connection" in r.stderr  # keep-alive: one connection for all three
    assert b"< HTTP/1.1 100 Continue" in r.stderr  # curl sends a large body with Expect: 100-continue
    time.sleep(0.1)
    lines = plain.access_lines()[before:]
    assert [l.split('"')[1] for l in lines] == ["GET / HTTP/1.1", "GET / HTTP/1.1", "POST /echo HTTP/1.1"]
    assert lines[2].split('"')[2].split()[:2] == ["200", str(3 << 20)]


def test_trap_gives_500_and_the_server_goes_on(plain):
    r = curl("-i", plain.url("/trap"))
    assert r.stdout.startswith(b"HTTP/1.1 500 Internal Server Error")
    assert curl("-i", plain.url("/no-response")).stdout.startswith(b"HTTP/1.1 500 ")
    assert curl(plain.url("/")).stdout.startswith(b"hello from a Python handler")
    assert any("the handler trapped" in l for l in plain.lines)


def test_streams_256_mib(plain):
    size = 256 << 20
    r = curl(plain.url(f"/stream/{size}"), "-o", "/dev/null", "-w", "%{size_download} %{http_code}")
    assert r.stdout.decode() == f"{size} 200"


def test_slowloris_does_not_block_others(plain):
    slow = socket.create_connection(("127.0.0.1", plain.port))
    slow.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # and then nothing more, for longer than --header-timeout
    started = time.monotonic()
    for _ in range(3):
        assert curl(plain.url("/")).stdout.startswith(b"hello from a Python handler")
    slow.settimeout(10)
    reply = slow.recv(4096)  # the server gives up on it: the connection ends
    assert time.monotonic() - started < 10
    assert reply == b"" or reply.startswith(b"HTTP/1.1 408")
    slow.close()


# -- HTTPS: HTTP/2 and HTTP/1.1 by ALPN, SNI, client certificates ---------------------------------------

def test_https_http2_and_http11_with_client_certificate(https, pki):
    for version, expected in (("--http2", b"HTTP/2 200"), ("--http1.1", b"HTTP/1.1 200")):
        r = curl(version, "-i", *client_args(pki), https.url("/", "localhost"),
                 "--resolve", f"localhost:{https.port}:127.0.0.1")
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith(expected)
        assert r.stdout.endswith(f"hello from a Python handler: GET / https localhost:{https.port}\n".encode())
    # the verified client certificate reaches the guest as RFC 9440's client-cert; a forged one does not
    r = curl("--http2", *client_args(pki), "-H", "client-cert: :Zm9yZ2Vk:", https.url("/client-cert", "localhost"),
             "--resolve", f"localhost:{https.port}:127.0.0.1")
    sent = r.stdout.strip()
    assert sent.startswith(b":") and sent.endswith(b":")
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding
    leaf = x509.load_pem_x509_certificate(pki.client_cert.read_bytes())
    assert base64.b64decode(sent[1:-1]) == leaf.public_bytes(Encoding.DER)


def test_https_without_client_certificate_is_refused(https, pki):
    r = curl("--cacert", str(pki.ca_pem), https.url("/", "localhost"), "--resolve", f"localhost:{https.port}:127.0.0.1")
    assert r.returncode != 0 and b"hello" not in r.stdout


def test_https_identity_chosen_by_sni_with_python_ssl(https, pki):
    ctx = ssl.create_default_context(cafile=str(pki.ca_pem))
    ctx.load_cert_chain(pki.client_cert, pki.client_key)
    ctx.set_alpn_protocols(["http/1.1"])
    for name in ("localhost", "other.test"):
        with socket.create_connection(("127.0.0.1", https.port)) as raw:
            with ctx.wrap_socket(raw, server_hostname=name) as tls:  # verifies the certificate names `name`
                assert tls.selected_alpn_protocol() == "http/1.1"
                tls.sendall(f"GET /stream/100000 HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n".encode())
                data = b""
                while chunk := tls.recv(65536):
                    data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK") and len(body) == 100000


def test_openssl_s_client(https, pki):
    request = b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{https.port}", "-servername", "localhost",
                        "-CAfile", str(pki.ca_pem), "-cert", str(pki.client_cert), "-key", str(pki.client_key),
                        "-alpn", "http/1.1", "-ign_eof", "-verify_return_error"],
                       input=request, capture_output=True, timeout=60)
    out = r.stdout.decode()
    assert "Verify return code: 0 (ok)" in out
    assert "ALPN protocol: http/1.1" in out
    assert f"hello from a Python handler: GET / https localhost" in out


@pytest.mark.skipif(shutil.which("h2load") is None, reason="h2load not installed (apt-get install nghttp2-client)")
def test_h2load(py_handler, pki):
    # h2load cannot present a client certificate: a server without --client-ca-file
    served = Served(py_handler, "--identity", f"local={pki.server_key},{pki.server_cert}", "--reuse-instances")
    try:
        r = subprocess.run(["h2load", "-n", "200", "-c", "4", "-m", "4", served.url("/")], capture_output=True,
                           timeout=120, text=True)
        assert "200 succeeded, 0 failed, 0 errored" in r.stdout, r.stdout
        r = subprocess.run(["h2load", "--h1", "-n", "100", "-c", "2", served.url("/")], capture_output=True,
                           timeout=120, text=True)
        assert "100 succeeded, 0 failed, 0 errored" in r.stdout, r.stdout
    finally:
        served.stop()


def test_js_handler_over_https(js_handler, pki, tmp_path):
    served = Served(js_handler, "--identity", f"local={pki.server_key},{pki.server_cert}")
    try:
        base = ["--cacert", str(pki.ca_pem), "--resolve", f"localhost:{served.port}:127.0.0.1"]
        r = curl("--http2", *base, served.url("/", "localhost"), "-o", str(tmp_path / "hello"),
                 served.url("/stream/3000000", "localhost"), "-o", "/dev/null", "-w", "%{http_version} %{size_download}\n")
        assert r.stdout.decode() == "2 31\n2 3000000\n"
        assert (tmp_path / "hello").read_bytes() == b"hello from a JS handler: GET /\n"
        upload = tmp_path / "up.bin"
        upload.write_bytes(os.urandom(1 << 20))
        r = curl("--http1.1", *base, "--data-binary", f"@{upload}", served.url("/echo", "localhost"))
        assert r.stdout == upload.read_bytes()
    finally:
        served.stop()


# -- lifecycle --------------------------------------------------------------------------------------

def test_sigterm_lets_the_request_in_flight_finish(py_handler):
    served = Served(py_handler)
    result = {}

    def slow_request() -> None:
        result["r"] = curl(served.url("/sleep/1500"))

    thread = threading.Thread(target=slow_request)
    thread.start()
    deadline = time.monotonic() + 30
    while not any("sleeping 1500 ms" in l for l in served.lines):  # the guest has the request
        assert time.monotonic() < deadline
        time.sleep(0.02)
    status = served.stop()
    thread.join()
    assert status == 0
    assert result["r"].stdout == b"slept 1500 ms\n"
    assert curl(served.url("/")).returncode != 0  # nothing listens any more


def test_workers_share_the_port(py_handler):
    from wasitls.devtools.http_peers import free_port

    served = Served(py_handler, "--workers", "2", port=free_port())
    try:
        deadline = time.monotonic() + STARTUP
        while len({l for l in served.lines if "serving http" in l}) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        pids = {re.search(r"pid (\d+)", l).group(1) for l in served.lines if "serving http" in l}
        assert len(pids) == 2, served.lines
        if len(os.sched_getaffinity(0)) >= 2:  # each worker on a core of its own
            assert {frozenset(os.sched_getaffinity(int(pid))) for pid in pids} == {
                frozenset({core}) for core in sorted(os.sched_getaffinity(0))[:2]}
        for _ in range(6):
            assert curl(served.url("/")).stdout.startswith(b"hello from a Python handler")
    finally:
        assert served.stop() == 0


def test_a_1_gib_body_streams_through_without_piling_up(py_handler, tmp_path):
    # 1 GiB up to the guest and back down (spliced, so the guest's own memory stays out of it): the
    # server's peak memory stays far below it (a server of its own: the peak is over its whole life)
    served = Served(py_handler)
    try:
        upload = tmp_path / "sparse.bin"
        with open(upload, "wb") as f:
            f.truncate(1 << 30)
        r = curl("-T", str(upload), "-X", "POST", served.url("/splice"), "-o", "/dev/null",
                 "-w", "%{size_download} %{http_code}", timeout=600)
        assert r.stdout.decode() == f"{1 << 30} 200", r.stderr
        status = next(l for l in open(f"/proc/{served.proc.pid}/status") if l.startswith("VmHWM:"))
        assert int(status.split()[1]) < 300 * 1024, status
    finally:
        served.stop()


def test_bad_input_is_one_line(py_handler, build_guest, plain):
    command = build_guest("http_py_client")  # a command, not a handler
    for args, message in (
        (["--addr", "nonsense", str(py_handler)], "--addr 'nonsense': expected HOST:PORT"),
        (["--addr", "127.0.0.1:0", str(command)], "exports no wasi:http/incoming-handler"),
        (["--addr", "127.0.0.1:0", "--client-ca-file", str(py_handler), str(py_handler)], "needs TLS"),
        (["--addr", f"127.0.0.1:{plain.port}", str(py_handler)], "Address already in use"),
    ):
        r = subprocess.run([sys.executable, "-m", "wasitls", "serve", *args], capture_output=True, text=True,
                           timeout=STARTUP)
        lines = [l for l in r.stderr.splitlines() if not l.startswith("wasitls: compiling")]
        assert r.returncode == 2 and len(lines) == 1 and message in lines[0], r.stderr


@pytest.mark.parametrize("which", ["python", "js"])
def test_handler_instances_after_the_first_replay_its_plan(which, request):
    # a fresh instance per request is affordable because instantiating replays the first walk's plan
    # (component/plan.py); a handler the plan could not describe would be walked every time
    from wasitls.component.plan import Plan
    from wasitls.host import Host

    wasm = request.getfixturevalue("py_handler" if which == "python" else "js_handler")
    host = Host(stdin=b"")
    loaded = host.load(str(wasm))
    for _ in range(2):
        ctx = host._ctx(["handler"])
        loaded.instantiate(host.linker(ctx))
        ctx.lifetime.end()
    assert isinstance(loaded.plan, Plan)


def test_by_default_a_worker_per_core_on_a_fixed_port(py_handler):
    # as wasmtime serve uses every core; an ephemeral port (0) cannot be shared, so it gets one
    from wasitls.devtools.http_peers import free_port
    from wasitls.serve import AUTO_WORKERS_MAX

    expected = min(len(os.sched_getaffinity(0)), AUTO_WORKERS_MAX)
    served = Served(py_handler, port=free_port())
    try:
        deadline = time.monotonic() + STARTUP
        while len([l for l in served.lines if "serving http" in l]) < expected and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)  # no more than expected come
        assert len({l for l in served.lines if "serving http" in l}) == expected, served.lines
        assert curl(served.url("/")).stdout.startswith(b"hello from a Python handler")
    finally:
        assert served.stop() == 0


def test_a_component_that_cannot_serve_is_reported_once(tmp_path):
    from wasitls.devtools.http_peers import free_port

    bad = tmp_path / "bad.wasm"
    bad.write_bytes(b"not wasm")
    r = subprocess.run([sys.executable, "-m", "wasitls", "serve", "--workers", "3", "--addr",
                        f"127.0.0.1:{free_port()}", str(bad)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.count("not a WebAssembly file") == 1, r.stderr
    assert "Traceback" not in r.stderr


def test_max_concurrent_bounds_all_workers_together(py_handler):
    # --max-concurrent 1 on a fixed port: one worker (auto never starts more workers than requests),
    # so two slow requests run one after the other
    from wasitls.devtools.http_peers import free_port

    served = Served(py_handler, "--max-concurrent", "1", port=free_port())
    try:
        time.sleep(1)
        assert len({l for l in served.lines if "serving http" in l}) == 1, served.lines
        results = []

        def slow() -> None:
            start = time.monotonic()
            results.append((curl(served.url("/sleep/700")).stdout, time.monotonic() - start))

        threads = [threading.Thread(target=slow) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert [r[0] for r in results] == [b"slept 700 ms\n"] * 2
        assert max(r[1] for r in results) >= 1.4  # the second waited for the first
    finally:
        assert served.stop() == 0
    r = subprocess.run([sys.executable, "-m", "wasitls", "serve", "--workers", "3", "--max-concurrent", "2",
                        "--addr", f"127.0.0.1:{free_port()}", str(py_handler)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "each worker needs" in r.stderr, r.stderr
