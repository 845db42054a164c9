"""wasi:http/outgoing-handler: a JS guest's `fetch` and a Python guest's wasi:http calls, against
http.server (plain and behind ssl), `openssl s_server -WWW` and nginx (HTTP/2, client certificates),
with the host's TLS, trust, identities and policy; beside `wasmtime run -S http` where it can go."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys

import pytest

from guests import JS_INSTALL_HINT, build_js_guest, find_jco
from wasitls.devtools.http_peers import (Pki, PythonServer, find_nginx, openssl_www, pattern, pattern_digest, server_context,
                        start_nginx)

TIMEOUT = 120
QUIET_ENV = {k: v for k, v in os.environ.items() if k not in ("RUST_BACKTRACE", "RUST_LIB_BACKTRACE")}
BIG = 8 << 20


def wasitls(wasm, *args, options=(), timeout=TIMEOUT):
    cmd = [sys.executable, "-m", "wasitls", "run", *options, str(wasm), *args]
    proc = subprocess.run(cmd, capture_output=True, timeout=timeout, env=QUIET_ENV)
    err = b"".join(l for l in proc.stderr.splitlines(keepends=True) if not l.startswith(b"wasitls: compiling"))
    return proc.returncode, proc.stdout.decode(), err.decode()


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return Pki(tmp_path_factory.mktemp("http-pki"))


@pytest.fixture(scope="module")
def plain(pki):
    server = PythonServer()
    yield server
    server.close()


@pytest.fixture(scope="module")
def tls(pki):
    server = PythonServer(server_context(pki))
    yield server
    server.close()


@pytest.fixture(scope="module")
def js_fetch():
    if find_jco() is None:
        pytest.skip(JS_INSTALL_HINT)
    return build_js_guest("http_js_fetch", disable=("fetch-event",))


@pytest.fixture(scope="module")
def py_client(build_guest):
    return build_guest("http_py_client")


# -- fetch from JavaScript ------------------------------------------------------------------------

def test_js_fetch_plain_http_matches_wasmtime(js_fetch, plain, wasmtime_cli):
    base = f"http://127.0.0.1:{plain.port}"
    args = ["text", f"{base}/", "get", f"{base}/pattern/1000000", "get", f"{base}/redirect",
            "post", f"{base}/echo", "300000", "post-bytes", f"{base}/echo", "1000", "head", f"{base}/",
            "get", "http://127.0.0.1:1/"]
    ours = wasitls(js_fetch, *args, options=["--allow-net", "127.0.0.1"])
    theirs = subprocess.run([str(wasmtime_cli), "run", "-S", "http", str(js_fetch), *args], capture_output=True,
                            timeout=TIMEOUT, env=QUIET_ENV)
    assert ours == (theirs.returncode, theirs.stdout.decode(), theirs.stderr.decode())
    out = ours[1]
    assert 'text 200 "hello from http.server\\n"' in out
    assert "body=1000000 pattern=true" in out
    assert "get 302 redirected=false" in out  # StarlingMonkey hands the redirect to the script, as on wasmtime
    assert f"post 200 received 300000 {pattern_digest(300000)}" in out
    assert "get error TypeError" in out  # connection refused


def test_js_fetch_in_parallel_and_json(js_fetch, tls, pki):
    base = f"https://localhost:{tls.port}"
    code, out, err = wasitls(js_fetch, "parallel", f"{base}/pattern/300000", "6", "json", f"{base}/json",
                             options=["--allow-net", "localhost", "--ca-file", str(pki.ca_pem)])
    assert code == 0, err
    assert out == "parallel " + " ".join(["200:300000"] * 6) + "\njson 200 accept,method,x-test\n"


def test_js_fetch_https_private_ca(js_fetch, tls, pki, wasmtime_cli):
    base = f"https://localhost:{tls.port}"
    args = ["get", f"{base}/pattern/{BIG}", "post", f"{base}/echo", str(BIG // 2), "text", f"{base}/"]
    code, out, err = wasitls(js_fetch, *args, options=["--allow-net", "localhost", "--ca-file", str(pki.ca_pem),
                                                       "--tls-trace"])
    assert code == 0, err
    assert out == (f"get 200 redirected=false url={base}/pattern/{BIG} content-type=\"application/octet-stream\" "
                   f"x-test=\"pattern\" body={BIG} pattern=true\n"
                   f"post 200 received {BIG // 2} {pattern_digest(BIG // 2)}\n"
                   f'text 200 "hello from http.server\\n"\n')
    # one TLS connection carried all three requests (keep-alive), checked against our CA
    traces = [l for l in err.splitlines() if l.startswith("tls: ")]
    assert len(traces) == 1 and "server=localhost" in traces[0] and "wasitls http test CA" in traces[0], err
    # wasmtime trusts only the roots compiled into it: the same guest fails on a private CA
    theirs = subprocess.run([str(wasmtime_cli), "run", "-S", "http", str(js_fetch), "text", f"{base}/"],
                            capture_output=True, timeout=TIMEOUT, env=QUIET_ENV)
    assert "text error TypeError" in theirs.stdout.decode()


def test_js_fetch_refused_by_policy(js_fetch, plain):
    code, out, _ = wasitls(js_fetch, "text", f"http://127.0.0.1:{plain.port}/", options=["--allow-net", "localhost:1"])
    assert code == 0 and out.startswith("text error ")


# -- wasi:http from Python, by hand ---------------------------------------------------------------

def test_py_client_https_bodies_and_trailers(py_client, tls, pki):
    base = f"https://localhost:{tls.port}"
    code, out, err = wasitls(py_client, "get", f"{base}/pattern/{BIG}", "post", f"{base}/echo", str(3 << 20),
                             "get", f"{base}/trailers",
                             options=["--allow-net", "localhost", "--ca-file", str(pki.ca_pem)])
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == (f"status 200 content-type=application/octet-stream x-test=pattern body {BIG} "
                        f"sha256 {pattern_digest(BIG)} trailers []")
    assert lines[1].startswith(f"status 200 content-type=text/plain x-test=- body ")
    import hashlib
    reply = f"received {3 << 20} {pattern_digest(3 << 20)}\n".encode()
    assert lines[1].endswith(f"sha256 {hashlib.sha256(reply).hexdigest()[:16]} trailers []")
    body = b"chunked body with a trailer\n"
    assert lines[2].endswith(f"trailers ['x-checksum={hashlib.sha256(body).hexdigest()[:8]}']")


def test_py_client_error_codes(py_client, tls, plain, pki):
    https = f"https://localhost:{tls.port}"
    code, out, err = wasitls(py_client,
                             "get", f"{https}/",  # the system store does not know our CA
                             "get", f"http://localhost:{plain.port}/",  # not allowed: localhost only on tls.port
                             "get", f"http://127.0.0.1:{plain.port}/",  # an IP literal is checked too
                             "get", "http://nonexistent.invalid/",
                             "timeout", f"http://localhost:{tls.port}/stall", "300",  # TLS port, plain request
                             options=["--allow-net", f"localhost:{tls.port}", "--allow-net", "nonexistent.invalid"])
    assert code == 0, err
    assert out.splitlines() == [
        "error ErrorCode_TlsCertificateError",
        "error ErrorCode_DestinationIpProhibited",
        "error ErrorCode_DestinationIpProhibited",
        "error ErrorCode_DnsError info_code=None,rcode='NXDOMAIN'",
        "error ErrorCode_ConnectionTerminated",  # the TLS server drops a plaintext request
    ]


def test_py_client_hostname_mismatch_and_timeouts(py_client, tls, plain, pki):
    code, out, err = wasitls(py_client,
                             "get", f"https://127.0.0.1:{tls.port}/",  # the certificate names localhost only
                             "timeout", f"http://127.0.0.1:{plain.port}/stall", "300",
                             "get", f"http://127.0.0.1:{plain.port}/cut",
                             "get", "http://127.0.0.1:1/",
                             "drop", f"http://127.0.0.1:{plain.port}/pattern/{BIG}",
                             "get", f"http://127.0.0.1:{plain.port}/",
                             options=["--allow-net", "127.0.0.1", "--ca-file",
                                      str(pki.ca_pem)])
    assert code == 0, err
    lines = out.splitlines()
    assert lines[:4] == [
        "error ErrorCode_TlsCertificateError",
        "error ErrorCode_ConnectionReadTimeout",
        "error ErrorCode_HttpResponseIncomplete",
        "error ErrorCode_ConnectionRefused",
    ]
    assert lines[4] == "status 200 first byte 1; dropped"
    assert lines[5].startswith("status 200 content-type=text/plain x-test=yes body 23 ")


def test_py_client_openssl_s_server_www(py_client, pki, tmp_path):
    (tmp_path / "page.bin").write_bytes(pattern(0, 2_000_000))
    proc, port = openssl_www(pki, tmp_path)
    try:
        code, out, err = wasitls(py_client, "get", f"https://localhost:{port}/page.bin",
                                 options=["--allow-net", "localhost", "--ca-file", str(pki.ca_pem)])
    finally:
        proc.kill()
        proc.wait()
    assert code == 0, err
    assert out == f"status 200 content-type=text/plain x-test=- body 2000000 sha256 {pattern_digest(2_000_000)} trailers []\n"


# -- nginx: HTTP/2 by ALPN, client certificates ---------------------------------------------------

@pytest.fixture(scope="module")
def nginx(pki, plain, tmp_path_factory):
    if find_nginx() is None:
        pytest.skip("nginx not installed (apt-get install nginx)")
    root = tmp_path_factory.mktemp("nginx")
    docroot = root / "www"
    docroot.mkdir()
    (docroot / "big.bin").write_bytes(pattern(0, BIG))
    (docroot / "mid.bin").write_bytes(pattern(0, 1 << 20))
    proc, h2_port, mtls_port = start_nginx(pki, root, docroot, plain.port)
    yield h2_port, mtls_port
    proc.terminate()
    proc.wait()


def test_http2_with_nginx(py_client, js_fetch, nginx, pki):
    h2_port, _ = nginx
    base = f"https://localhost:{h2_port}"
    options = ["--allow-net", "localhost", "--ca-file", str(pki.ca_pem), "--tls-trace"]
    code, out, err = wasitls(py_client, "get", f"{base}/proto", "get", f"{base}/big.bin",
                             "post", f"{base}/echo", str(2 << 20), "get", f"{base}/proto", options=options)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("status 200 content-type=text/plain x-test=HTTP/2.0 body 18 ")
    assert lines[1] == f"status 200 content-type=text/plain x-test=- body {BIG} sha256 {pattern_digest(BIG)} trailers []"
    assert lines[2].startswith("status 200 content-type=text/plain x-test=- body ")
    assert lines[3].startswith("status 200 content-type=text/plain x-test=HTTP/2.0 ")
    assert len([l for l in err.splitlines() if l.startswith("tls: ")]) == 1, err  # one connection, multiplexed
    code, out, err = wasitls(js_fetch, "get", f"{base}/big.bin", "text", f"{base}/proto", options=options)
    assert code == 0, err
    assert f"body={BIG} pattern=true" in out and 'text 200 "protocol HTTP/2.0\\n"' in out


def test_client_certificate_per_destination(py_client, nginx, pki):
    _, mtls_port = nginx
    url = f"https://localhost:{mtls_port}/"
    base = ["--allow-net", "localhost", "--ca-file", str(pki.ca_pem)]
    # without an identity nginx answers 400 (no required SSL certificate was sent)
    code, out, err = wasitls(py_client, "get", url, options=base)
    assert code == 0 and out.startswith("status 400 "), (out, err)
    identity = ["--identity", f"client={pki.client_key},{pki.client_cert}"]
    code, out, err = wasitls(py_client, "get", url, options=base + identity + ["--http-client-identity", "localhost=client"])
    assert code == 0, err
    assert out.startswith("status 200 ") and "body 7" not in out
    code, out, err = wasitls(py_client, "get", url, options=base + identity + ["--http-client-identity", "other.test=client"])
    assert out.startswith("status 400 ")  # the identity is only for the host it is given for
    code, out, err = wasitls(py_client, "get", url, options=base + ["--http-client-identity", "localhost=nope"])
    assert code == 2 and "no --identity named 'nope'" in err and "Traceback" not in err


def test_py_client_tls_alert_received(py_client, pki):
    # a TLS 1.3 server that requires a client certificate: the client's handshake ends before the
    # server's verdict, which then arrives as an alert where the response was expected
    context = server_context(pki)
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(pki.ca_pem)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    server = PythonServer(context)
    try:
        code, out, err = wasitls(py_client, "get", f"https://localhost:{server.port}/",
                                 options=["--allow-net", "localhost", "--ca-file", str(pki.ca_pem)])
    finally:
        server.close()
    assert code == 0, err
    assert out == "error ErrorCode_TlsAlertReceived alert_id=116,alert_message='certificate required'\n"


def requests_guest(tmp_path_factory) -> "os.PathLike":
    """tests/guests/http_py_requests with requests, its dependencies and requests-wasi-http bundled
    (guest builds are hermetic: a guest holds only the packages its python_path gives)."""
    import importlib
    import shutil
    from pathlib import Path

    from guests import GUESTS_DIR
    from wasitls.guestbuild import build_guest

    lib = tmp_path_factory.mktemp("requests-lib")
    for name in ("requests", "urllib3", "idna", "certifi", "charset_normalizer", "wasi_http_adapter",
                 "typing_extensions"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        source = Path(module.__file__)
        if source.name == "__init__.py":
            shutil.copytree(source.parent, lib / name, ignore=shutil.ignore_patterns("__pycache__", "*.so"))
        else:
            shutil.copy(source, lib / source.name)
    return build_guest(GUESTS_DIR / "http_py_requests", "http-py-requests", python_path=[lib],
                       progress=lambda line: print(line, file=sys.stderr, flush=True))


def test_requests_in_a_python_guest(tmp_path_factory, tls, pki):
    pytest.importorskip("wasi_http_adapter", reason="pip install requests-wasi-http (bundled into the guest)")
    wasm = requests_guest(tmp_path_factory)
    base = f"https://localhost:{tls.port}"
    code, out, err = wasitls(wasm, "get", f"{base}/pattern/{3 << 20}", "post", f"{base}/echo", "300000",
                             "get", f"{base}/redirect", "get", f"https://127.0.0.1:{tls.port}/",
                             "stream", f"{base}/pattern/{5 << 20}", "timeout", f"{base}/stall",
                             options=["--allow-net", "localhost", "--allow-net", "127.0.0.1", "--ca-file",
                                      str(pki.ca_pem)])
    assert code == 0, err
    assert out.splitlines() == [
        f"get 200 application/octet-stream {3 << 20} {pattern_digest(3 << 20)} history=[]",
        f"post 200 received 300000 {pattern_digest(300000)}",
        f"get 200 application/octet-stream 1000 {pattern_digest(1000)} history=[302]",  # requests follows it
        "error ConnectionError",  # the certificate does not name 127.0.0.1
        f"stream 200 {5 << 20}",
        # request-options' first-byte timeout: connection-read-timeout, which requests-wasi-http 0.1.0 calls
        # ConnectTimeout (it looks for "firstbyte" in the case's name, which no error-code case has)
        "error ConnectTimeout",
    ]


def test_py_client_connect_timeout(py_client):
    # a listener whose accept queue is full drops further SYNs: the connect hangs until the timeout
    import socket
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(8):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        fillers.append(s)
    try:
        code, out, err = wasitls(py_client, "connect-timeout", f"http://127.0.0.1:{port}/", "300",
                                 options=["--allow-net", "127.0.0.1"])
    finally:
        for s in fillers:
            s.close()
        listener.close()
    assert code == 0, err
    assert out == "error ErrorCode_ConnectionTimeout\n"


def test_tls_keylog_and_trace_cover_http(py_client, tls, pki, tmp_path):
    keylog = tmp_path / "keys.log"
    code, out, err = wasitls(py_client, "get", f"https://localhost:{tls.port}/",
                             options=["--allow-net", "localhost", "--ca-file", str(pki.ca_pem), "--tls-keylog",
                                      str(keylog), "--tls-trace"])
    assert code == 0 and out.startswith("status 200 "), err
    assert any(line.split()[0] in ("CLIENT_RANDOM", "CLIENT_TRAFFIC_SECRET_0") for line in keylog.read_text().splitlines())
    assert [l for l in err.splitlines() if l.startswith("tls: server=localhost ")], err


def test_http2_connection_window_comes_back(py_client, nginx, pki):
    # 24 MiB in 24 streams of one HTTP/2 connection: more than its receive window (16 MiB), so every
    # byte read must be handed back to the connection's window, also after each stream ended
    h2_port, _ = nginx
    args = []
    for _ in range(24):
        args += ["get", f"https://localhost:{h2_port}/mid.bin"]
    code, out, err = wasitls(py_client, *args, options=["--allow-net", "localhost", "--ca-file", str(pki.ca_pem),
                                                        "--tls-trace"])
    assert code == 0, err
    assert out.splitlines() == [f"status 200 content-type=text/plain x-test=- body {1 << 20} "
                                f"sha256 {pattern_digest(1 << 20)} trailers []"] * 24
    assert len([l for l in err.splitlines() if l.startswith("tls: ")]) == 1
