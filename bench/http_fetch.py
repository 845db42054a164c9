"""Outgoing HTTPS: a JS guest's `fetch` of a large file on wasitls against a native Python `ssl` client.

    python bench/http_fetch.py [--mib 256] [--runs 3]

nginx (or, without it, `openssl s_server -WWW`) serves MIB mebibytes over HTTPS on loopback with a
certificate from a throwaway CA. The guest (tests/guests/http_js_fetch: `fetch`, reading the body
stream to its end) runs on `python -m wasitls run --ca-file CA`; its time is the run's wall time minus
that of the same run fetching a 1-byte file (start-up, compile cache hits). The native client is
`ssl` over a socket reading into a 1 MiB buffer. Best of N runs each, and the ratio.

Then the same guest over plain HTTP (Python's http.server with the same files), on wasitls and on
`wasmtime run -S http` when the wasmtime CLI is installed: what the guest itself costs on a native
host, with no TLS at all, bounds what any host can reach over HTTPS.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from wasitls.devtools import build_js_guest, find_wasmtime_cli  # noqa: E402
from wasitls.devtools.http_peers import PATTERN, Pki, PythonServer, find_nginx, openssl_www, start_nginx  # noqa: E402


def native(port: int, path: str, ca: Path) -> float:
    ctx = ssl.create_default_context(cafile=str(ca))
    buf = bytearray(1 << 20)
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as raw, ctx.wrap_socket(raw, server_hostname="localhost") as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
        while True:
            try:
                n = s.recv_into(buf)
            except ssl.SSLZeroReturnError:
                break
            if not n:
                break
    return time.perf_counter() - started


def guest(wasm: Path, url: str, ca: Path | None, runner: list[str] | None = None) -> float:
    if runner is None:
        runner = [sys.executable, "-m", "wasitls", "run", "--allow-net", url.split("/")[2].rpartition(":")[0]]
        runner += ["--ca-file", str(ca)] if ca is not None else []
    started = time.perf_counter()
    out = subprocess.run([*runner, str(wasm), "get", url], capture_output=True, text=True, check=True).stdout
    assert " 200 " in out and "pattern=true" in out, out
    return time.perf_counter() - started


def timed(wasm: Path, base: str, runs: int, ca: Path | None = None, runner: list[str] | None = None) -> float:
    """Best time for big.bin less the best for one.bin (start-up and compile-cache hits)."""
    guest(wasm, f"{base}/one.bin", ca, runner)  # compile once
    startup = min(guest(wasm, f"{base}/one.bin", ca, runner) for _ in range(runs))
    return min(guest(wasm, f"{base}/big.bin", ca, runner) for _ in range(runs)) - startup


class QuietFiles(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def plain_server(www: Path) -> http.server.ThreadingHTTPServer:
    handler = functools.partial(QuietFiles, directory=str(www))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    wasm = build_js_guest("http_js_fetch", disable=("fetch-event",))
    with tempfile.TemporaryDirectory(prefix="wasitls-http-fetch-") as tmp:
        root = Path(tmp)
        pki = Pki(root)
        www = root / "www"
        www.mkdir()
        size = args.mib << 20
        with open(www / "big.bin", "wb") as f:
            block = PATTERN * ((1 << 20) // 251 + 2)
            for off in range(0, size, 1 << 20):
                start = off % 251
                f.write(block[start:start + min(1 << 20, size - off)])
        (www / "one.bin").write_bytes(PATTERN[:1])
        if find_nginx():
            backend = PythonServer()
            proc, port, _ = start_nginx(pki, root, www, backend.port)
            server = "nginx"
        else:
            proc, port = openssl_www(pki, www)
            server = "openssl s_server -WWW"
        try:
            ours = timed(wasm, f"https://localhost:{port}", args.runs, pki.ca_pem)
            theirs = min(native(port, "/big.bin", pki.ca_pem) for _ in range(args.runs))
        finally:
            proc.terminate()
            proc.wait()
        httpd = plain_server(www)
        try:
            base = f"http://127.0.0.1:{httpd.server_address[1]}"
            plain = {"JS fetch on wasitls": timed(wasm, base, args.runs)}
            wasmtime = find_wasmtime_cli()
            if wasmtime is not None:
                plain["JS fetch on wasmtime -S http"] = timed(wasm, base, args.runs,
                                                              runner=[str(wasmtime), "run", "-S", "http", "-S", "cli"])
        finally:
            httpd.shutdown()
            httpd.server_close()
    mib = args.mib
    print(f"{mib} MiB over HTTPS from {server}, best of {args.runs} (start-up excluded)")
    print(f"  native Python ssl              {theirs:6.2f} s  {mib / theirs:7.1f} MiB/s")
    print(f"  JS fetch on wasitls            {ours:6.2f} s  {mib / ours:7.1f} MiB/s  {theirs / ours:5.2f}x native ssl")
    print("the same guest over plain HTTP (http.server): what the guest costs without TLS")
    for label, t in plain.items():
        print(f"  {label:30} {t:6.2f} s  {mib / t:7.1f} MiB/s  {theirs / t:5.2f}x native ssl over HTTPS")


if __name__ == "__main__":
    main()
