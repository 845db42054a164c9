"""HTTP peers for the wasi:http tests: a private CA, Python http.server (plain and behind ssl),
`openssl s_server -WWW`, nginx (HTTP/2, client certificates). Every body of /pattern/N follows the
pattern byte i = i % 251, so a guest checks it without holding it."""

from __future__ import annotations

import hashlib
import os
import http.server
import shutil
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

PATTERN = bytes(i % 251 for i in range(251))


def pattern(offset: int, size: int) -> bytes:
    start = offset % 251
    return (PATTERN * ((start + size) // 251 + 1))[start:start + size]


def pattern_digest(size: int) -> str:
    h = hashlib.sha256()
    for off in range(0, size, 1 << 20):
        h.update(pattern(off, min(1 << 20, size - off)))
    return h.hexdigest()[:16]


class Pki:
    """A private CA (trustme) with a server certificate for localhost and a client one."""

    def __init__(self, root: Path):
        import trustme

        self.root = root
        self.ca = trustme.CA(organization_name="wasitls http test CA")
        self.ca_pem = root / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_pem))
        server = self.ca.issue_cert("localhost")  # not 127.0.0.1: connecting by IP is a name mismatch
        self.server_cert, self.server_key = root / "server.pem", root / "server.key"
        for blob in server.cert_chain_pems:
            blob.write_to_path(str(self.server_cert), append=True)
        server.private_key_pem.write_to_path(str(self.server_key))
        client = self.ca.issue_cert("guest-client@example.test", common_name="wasitls guest client")
        self.client_cert, self.client_key = root / "client.pem", root / "client.key"
        for blob in client.cert_chain_pems:
            blob.write_to_path(str(self.client_cert), append=True)
        client.private_key_pem.write_to_path(str(self.client_key))


class PatternHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        path = self.path
        if path.startswith("/redirect"):
            self._reply(302, b"", [("location", "/pattern/1000")])
        elif path.startswith("/pattern/"):
            size = int(path.split("/")[2])
            self.send_response(200)
            self.send_header("content-type", "application/octet-stream")
            self.send_header("x-test", "pattern")
            self.send_header("content-length", str(size))
            self.end_headers()
            for off in range(0, size, 1 << 20):
                self.wfile.write(pattern(off, min(1 << 20, size - off)))
        elif path.startswith("/trailers"):
            self.send_response(200)
            self.send_header("transfer-encoding", "chunked")
            self.send_header("trailer", "x-checksum")
            self.end_headers()
            body = b"chunked body with a trailer\n"
            self.wfile.write(b"%x\r\n%s\r\n0\r\nx-checksum: %s\r\n\r\n" % (len(body), body,
                                                                          hashlib.sha256(body).hexdigest()[:8].encode()))
        elif path.startswith("/json"):
            import json
            body = json.dumps({"method": "GET", "x-test": self.headers.get("x-test"),
                               "accept": self.headers.get("accept")}).encode()
            self._reply(200, body, [("content-type", "application/json")])
        elif path.startswith("/stall"):
            self.rfile.read(1)  # never answers: the client's first-byte timeout fires
        elif path.startswith("/cut"):
            self.send_response(200)
            self.send_header("content-length", "100000")
            self.end_headers()
            self.wfile.write(pattern(0, 1000))
            self.close_connection = True
        else:
            self._reply(200, b"hello from http.server\n", [("content-type", "text/plain"), ("x-test", "yes")])

    def do_POST(self) -> None:
        h, total = hashlib.sha256(), 0
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b""):
                        pass
                    break
                left = size
                while left:
                    data = self.rfile.read(min(left, 1 << 16))
                    h.update(data)
                    total += len(data)
                    left -= len(data)
                self.rfile.readline()
        else:
            left = int(self.headers.get("content-length", 0))
            while left:
                data = self.rfile.read(min(left, 1 << 16))
                h.update(data)
                total += len(data)
                left -= len(data)
        self._reply(200, f"received {total} {h.hexdigest()[:16]}\n".encode(), [("content-type", "text/plain")])

    def _reply(self, status: int, body: bytes, headers: list) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


class PythonServer:
    """http.server on a loopback port, behind ssl when given a context."""

    def __init__(self, context: ssl.SSLContext | None = None):
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), PatternHandler)
        self.httpd.daemon_threads = True
        if context is not None:
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def server_context(pki: Pki) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki.server_cert, pki.server_key)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen | None = None, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port}")


def openssl_www(pki: Pki, docroot: Path) -> tuple[subprocess.Popen, int]:
    """`openssl s_server -WWW`: serves files below docroot over TLS (HTTP/1.0 replies)."""
    port = free_port()
    proc = subprocess.Popen(["openssl", "s_server", "-quiet", "-WWW", "-accept", str(port), "-cert", str(pki.server_cert),
                             "-key", str(pki.server_key)], cwd=docroot, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_port(port, proc)
    return proc, port


def find_nginx() -> str | None:
    return shutil.which("nginx") or (Path("/usr/sbin/nginx").exists() and "/usr/sbin/nginx") or None


NGINX_CONF = """
daemon off;
{user}
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {root}/tmp; proxy_temp_path {root}/tmp; fastcgi_temp_path {root}/tmp;
  uwsgi_temp_path {root}/tmp; scgi_temp_path {root}/tmp;
  server {{
    listen 127.0.0.1:{h2_port} ssl http2;
    server_name localhost;
    ssl_certificate {cert}; ssl_certificate_key {key};
    root {docroot};
    location /proto {{ add_header x-test $server_protocol; return 200 "protocol $server_protocol\\n"; }}
    location /echo {{ client_max_body_size 0; proxy_pass http://127.0.0.1:{backend}; }}
  }}
  server {{
    listen 127.0.0.1:{mtls_port} ssl http2;
    server_name localhost;
    ssl_certificate {cert}; ssl_certificate_key {key};
    ssl_client_certificate {ca}; ssl_verify_client on;
    location / {{ return 200 "client $ssl_client_s_dn verify $ssl_client_verify\\n"; }}
  }}
}}
"""


# one process, so the kill that ends a test ends nginx (a killed master leaves its workers running)
NGINX_TLS_CONF = """\
daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
events {{ worker_connections 64; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  server {{
    listen 127.0.0.1:{port} ssl;
{extra}    ssl_certificate {cert};
    ssl_certificate_key {key};
    ssl_protocols {version};
    default_type text/plain;
    location / {{ return 200 "{body}"; }}
  }}
}}
"""


def nginx_tls_conf(dir: Path, port: int, *, cert: Path, key: Path, version: str, body: str,
                   client_ca: Path | None = None, server_name: str | None = None) -> str:
    """An nginx configuration answering every HTTPS request with `body` (nginx variables and `\\n`
    escapes allowed), requiring a client certificate when `client_ca` is given."""
    extra = f"    server_name {server_name};\n" if server_name else ""
    if client_ca is not None:
        extra += f"    ssl_client_certificate {client_ca};\n    ssl_verify_client on;\n"
    return NGINX_TLS_CONF.format(dir=dir, port=port, cert=cert, key=key, version=version, body=body, extra=extra)


def start_nginx(pki: Pki, root: Path, docroot: Path, backend_port: int) -> tuple[subprocess.Popen, int, int]:
    nginx = find_nginx()
    (root / "tmp").mkdir(exist_ok=True)
    h2_port, mtls_port = free_port(), free_port()
    conf = root / "nginx.conf"
    # as root, nginx's workers would be `nobody`, who cannot read pytest's private temporary directories
    user = "user root;" if os.geteuid() == 0 else ""
    conf.write_text(NGINX_CONF.format(user=user, root=root, h2_port=h2_port, mtls_port=mtls_port, cert=pki.server_cert,
                                      key=pki.server_key, ca=pki.ca_pem, docroot=docroot, backend=backend_port))
    proc = subprocess.Popen([nginx, "-c", str(conf), "-p", str(root), "-e", str(root / "error.log")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_port(h2_port, proc)
    wait_port(mtls_port, proc)
    return proc, h2_port, mtls_port
