"""`wasitls serve` against `wasmtime serve`: the same handler components over plain HTTP/1.1 keep-alive.

    python bench/http_serve.py [--seconds 5] [--connections 4] [--handlers py,js] [--https]

Each server runs the test handlers (tests/guests/http_py_handler, and http_js_handler when jco is
installed) on a loopback port; one load generator (this script: N threads, each one keep-alive
connection sending `GET /` in a loop for the given time) measures requests per second and the p50
and p99 latencies. wasitls runs twice: a fresh instance per request as wasmtime serve does, and with
--reuse-instances (only for the Python handler: StarlingMonkey answers once per instance). Ratios
are against wasmtime serve measured in the same run.

--https adds the HTTPS comparison (Python handler, --reuse-instances): `wasitls serve --identity`
terminating TLS itself against nginx terminating TLS and proxying to `wasmtime serve` (the set-up a
user would otherwise deploy; nginx with one worker), each with a full handshake per request and with
keep-alive.
"""

from __future__ import annotations

import argparse
import http.client
import ssl
import tempfile
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from wasitls.devtools import build_js_guest, build_test_guest, find_jco, find_wasmtime_cli  # noqa: E402
from wasitls.devtools.http_peers import Pki, free_port, wait_port  # noqa: E402

NGINX_PROXY = """
daemon off;
{user}
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  upstream backend {{ server 127.0.0.1:{backend}; keepalive 16; }}
  server {{
    listen 127.0.0.1:{port} ssl;
    ssl_certificate {cert}; ssl_certificate_key {key};
    location / {{ proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; }}
  }}
}}
"""


def load(port: int, seconds: float, connections: int, tls: Any = None,
         keep_alive: bool = True) -> tuple[float, float, float]:
    latencies: list[float] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def client() -> None:
        mine = []

        def connect() -> http.client.HTTPConnection:
            if tls is None:
                return http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            return http.client.HTTPSConnection("localhost", port, timeout=30, context=tls)

        conn = connect()
        while time.monotonic() < stop:
            t = time.perf_counter()
            if not keep_alive:
                conn.close()
                conn = connect()
            conn.request("GET", "/")
            response = conn.getresponse()
            response.read()
            mine.append(time.perf_counter() - t)
        conn.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(connections)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    latencies.sort()
    return len(latencies) / elapsed, latencies[len(latencies) // 2] * 1e3, latencies[int(len(latencies) * 0.99)] * 1e3


def serve(cmd: list[str], port: int, tls: Any = None) -> subprocess.Popen:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, proc, timeout=180)
    # one request first: compiles and instantiates before the clock runs
    conn = (http.client.HTTPConnection("127.0.0.1", port, timeout=60) if tls is None
            else http.client.HTTPSConnection("localhost", port, timeout=60, context=tls))
    conn.request("GET", "/")
    conn.getresponse().read()
    conn.close()
    return proc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--handlers", default="py,js")
    ap.add_argument("--https", action="store_true")
    args = ap.parse_args()
    wasmtime = find_wasmtime_cli()
    handlers = {}
    if "py" in args.handlers:
        handlers["python"] = build_test_guest("http_py_handler")
    if "js" in args.handlers and find_jco() is not None:
        handlers["js"] = build_js_guest("http_js_handler", disable=(), wasi_version="0.2.10")
    print(f"GET / over HTTP/1.1 keep-alive, {args.connections} connections, {args.seconds:g} s each")
    for name, wasm in handlers.items():
        runs = {"wasmtime serve": [str(wasmtime), "serve", "-S", "cli"]}
        runs["wasitls serve"] = [sys.executable, "-m", "wasitls", "serve", "--access-log", "off"]
        if name == "python":
            runs["wasitls serve --reuse-instances"] = runs["wasitls serve"] + ["--reuse-instances"]
        runs["wasitls serve --workers 2"] = runs["wasitls serve"] + ["--workers", "2"]
        results = {}
        for label, cmd in runs.items():
            port = free_port()
            proc = serve(cmd + ["--addr", f"127.0.0.1:{port}", str(wasm)], port)
            try:
                results[label] = load(port, args.seconds, args.connections)
            finally:
                proc.terminate()
                proc.wait()
        base = results["wasmtime serve"][0]
        for label, (rps, p50, p99) in results.items():
            print(f"  {name:6} {label:32} {rps:8.0f} req/s  p50 {p50:7.2f} ms  p99 {p99:7.2f} ms  "
                  f"{rps / base:5.2f}x")


    if args.https and "python" in handlers:
        https(handlers["python"], wasmtime, args)


def https(wasm: Path, wasmtime: Path, args: Any) -> None:
    import os
    from wasitls.devtools.http_peers import find_nginx

    with tempfile.TemporaryDirectory(prefix="wasitls-bench-https-") as tmp:
        root = Path(tmp)
        pki = Pki(root)
        client = ssl.create_default_context(cafile=str(pki.ca_pem))
        client.set_alpn_protocols(["http/1.1"])
        procs = []
        try:
            ours = free_port()
            procs.append(serve([sys.executable, "-m", "wasitls", "serve", "--access-log", "off", "--reuse-instances",
                                "--identity", f"site={pki.server_key},{pki.server_cert}",
                                "--addr", f"127.0.0.1:{ours}", str(wasm)], ours, tls=client))
            backend = free_port()
            procs.append(serve([str(wasmtime), "serve", "-S", "cli", "--addr", f"127.0.0.1:{backend}", str(wasm)], backend))
            theirs = free_port()
            (root / "nginx.conf").write_text(NGINX_PROXY.format(
                user="user root;" if os.geteuid() == 0 else "", root=root, backend=backend, port=theirs,
                cert=pki.server_cert, key=pki.server_key))
            procs.append(serve([find_nginx(), "-p", str(root), "-c", str(root / "nginx.conf")], theirs, tls=client))
            print(f"HTTPS GET /, {args.connections} connections, {args.seconds:g} s each")
            for keep_alive, label in ((False, "a full handshake per request"), (True, "keep-alive")):
                rates = {}
                for name, port in (("nginx -> wasmtime serve", theirs), ("wasitls serve", ours)):
                    rates[name] = load(port, args.seconds, args.connections, tls=client, keep_alive=keep_alive)
                base = rates["nginx -> wasmtime serve"][0]
                for name, (rps, p50, p99) in rates.items():
                    print(f"  {label:30} {name:26} {rps:8.0f} req/s  p50 {p50:7.2f} ms  p99 {p99:7.2f} ms  "
                          f"{rps / base:5.2f}x")
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait()


if __name__ == "__main__":
    main()
