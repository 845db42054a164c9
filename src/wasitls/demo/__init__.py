"""`wasitls demo`: the whole thing offline in one command.

A throwaway CA and server certificate, a local HTTPS server on loopback, and the bundled guest
(built once with componentize-py, then cached) fetching a page through wasi:sockets + wasi:tls.
"""

from __future__ import annotations

import http.server
import ssl
import sys
import tempfile
import threading
from pathlib import Path
from typing import Callable

PAGE = b"<html><body><h1>Hello from wasitls</h1><p>TLS by the host, plaintext for the guest.</p></body></html>\n" * 8


class _Handler(http.server.BaseHTTPRequestHandler):
    timeout = 30  # a client that stops talking cannot hold the demo open (server_close joins handlers)

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, *args) -> None:  # keep the demo's output to what the guest prints
        pass

    def finish(self) -> None:
        super().finish()
        try:
            self.request.unwrap()  # send close_notify: a TLS server that just drops TCP truncates
        except (OSError, ValueError):
            pass


class _Server(http.server.ThreadingHTTPServer):
    # ThreadingHTTPServer's handler threads are daemons that server_close does not wait for: a handler
    # still sending close_notify would outlive the demo. These are joined by server_close.
    daemon_threads = False
    block_on_close = True


def _https_server(workdir: Path) -> tuple[_Server, Path]:
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    ca_file = workdir / "demo-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    server = _Server(("127.0.0.1", 0), _Handler)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    return server, ca_file


def build_demo_guest(progress: Callable[[str], None] | None = None) -> Path:
    from ..guestbuild import build_guest

    return build_guest(Path(__file__).resolve().parent / "guest", "https-get", progress=progress)


def run_demo(*, engine: str | None = None, progress: Callable[[str], None] | None = None) -> int:
    from ..host import DEFAULT_ENGINE, Host

    wasm = build_demo_guest(progress)
    with tempfile.TemporaryDirectory(prefix="wasitls-demo-") as tmp:
        server, ca_file = _https_server(Path(tmp))
        port = server.server_address[1]
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            print(f"demo: HTTPS server on https://localhost:{port}/ with a throwaway CA; guest: {wasm.name}",
                  flush=True)
            host = Host(allow_net=[f"localhost:{port}"], ca_file=ca_file, engine=engine or DEFAULT_ENGINE,
                        progress=progress)
            status = host.run(wasm, ["localhost", str(port), "/"], argv0="https-get.wasm")
        finally:
            server.shutdown()
            server.server_close()  # closes the listener and joins the request handlers
            thread.join()
    print(f"demo: guest exited with status {status}", file=sys.stderr)
    return status
