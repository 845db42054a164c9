"""`wasitls serve` against `wasmtime serve`: the same handler components over plain HTTP/1.1 keep-alive.

    python bench/http_serve.py [--seconds 5] [--connections 4] [--handlers py,js] [--https]

Each server runs the test handlers (tests/guests/http_py_handler, and http_js_handler when jco is
installed) on a loopback port; one load generator (this script: N threads, each one keep-alive
connection sending `GET /` in a loop for the given time) measures requests per second and the p50
and p99 latencies. Ratios are against wasmtime serve measured in the same run.

"every core": each server as started by default (both use every core: wasmtime serve with threads,
wasitls serve with a worker process per core), wasitls with a fresh instance per request as wasmtime
serve does, also as one process (--workers 1) and, for the Python handler, with --reuse-instances
(StarlingMonkey answers once per instance). "one core": wasmtime serve and wasitls serve (fresh
instances) pinned to one core by taskset, the load generator on the others: the work per request.

--https adds the HTTPS comparison (Python handler), all servers on one core: `wasitls serve
--identity` terminating TLS itself (fresh instances, and --reuse-instances) against nginx terminating
TLS and proxying to `wasmtime serve` (the set-up a user would otherwise deploy; nginx with one
worker), each with a full handshake per request and with keep-alive.
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
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


def measure(cmd: list[str], wasm: Path, args: Any) -> tuple[float, float, float]:
    port = free_port()
    proc = serve(cmd + ["--addr", f"127.0.0.1:{port}", str(wasm)], port)
    try:
        return load(port, args.seconds, args.connections)
    finally:
        proc.terminate()
        proc.wait()


def report(name: str, where: str, results: dict[str, tuple[float, float, float]]) -> None:
    base = results["wasmtime serve"][0]
    for label, (rps, p50, p99) in results.items():
        print(f"  {name:6} {where:10} {label:32} {rps:8.0f} req/s  p50 {p50:7.2f} ms  p99 {p99:7.2f} ms  "
              f"{rps / base:5.2f}x")


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
    cores = sorted(os.sched_getaffinity(0))
    one_core = len(cores) >= 2 and shutil.which("taskset") is not None
    print(f"GET / over HTTP/1.1 keep-alive, {args.connections} connections, {args.seconds:g} s each; "
          f"a fresh instance per request unless --reuse-instances")
    for name, wasm in handlers.items():
        wasitls = [sys.executable, "-m", "wasitls", "serve", "--access-log", "off"]
        runs = {"wasmtime serve": [str(wasmtime), "serve", "-S", "cli"], "wasitls serve": wasitls,
                "wasitls serve --workers 1": wasitls + ["--workers", "1"]}
        if name == "python":
            runs["wasitls serve --reuse-instances"] = wasitls + ["--reuse-instances"]
        report(name, "every core", {label: measure(cmd, wasm, args) for label, cmd in runs.items()})
        if one_core:
            # the server on one core, the load generator on the others: work per request, not parallelism
            pin = ["taskset", "-c", str(cores[0])]
            os.sched_setaffinity(0, cores[1:])
            try:
                report(name, "one core", {label: measure(pin + runs[label], wasm, args)
                                          for label in ("wasmtime serve", "wasitls serve")})
            finally:
                os.sched_setaffinity(0, cores)


    if args.https and "python" in handlers:
        https(handlers["python"], wasmtime, args)


def https(wasm: Path, wasmtime: Path, args: Any) -> None:
    from wasitls.devtools.http_peers import find_nginx

    with tempfile.TemporaryDirectory(prefix="wasitls-bench-https-") as tmp:
        root = Path(tmp)
        pki = Pki(root)
        client = ssl.create_default_context(cafile=str(pki.ca_pem))
        client.set_alpn_protocols(["http/1.1"])
        procs = []
        cores = sorted(os.sched_getaffinity(0))
        pin = ["taskset", "-c", str(cores[0])] if len(cores) >= 2 and shutil.which("taskset") else []
        try:
            servers = {}
            for label, extra in (("wasitls serve", []), ("wasitls serve --reuse-instances", ["--reuse-instances"])):
                port = free_port()
                procs.append(serve(pin + [sys.executable, "-m", "wasitls", "serve", "--access-log", "off", *extra,
                                          "--identity", f"site={pki.server_key},{pki.server_cert}",
                                          "--addr", f"127.0.0.1:{port}", str(wasm)], port, tls=client))
                servers[label] = port
            backend = free_port()
            procs.append(serve(pin + [str(wasmtime), "serve", "-S", "cli", "--addr", f"127.0.0.1:{backend}",
                                      str(wasm)], backend))
            theirs = free_port()
            (root / "nginx.conf").write_text(NGINX_PROXY.format(
                user="user root;" if os.geteuid() == 0 else "", root=root, backend=backend, port=theirs,
                cert=pki.server_cert, key=pki.server_key))
            procs.append(serve(pin + [find_nginx(), "-p", str(root), "-c", str(root / "nginx.conf")], theirs, tls=client))
            servers = {"nginx -> wasmtime serve": theirs, **servers}
            print(f"HTTPS GET /, {args.connections} connections, {args.seconds:g} s each"
                  + (f", servers on core {cores[0]}" if pin else ""))
            if pin:
                os.sched_setaffinity(0, cores[1:])
            for keep_alive, label in ((False, "a full handshake per request"), (True, "keep-alive")):
                rates = {name: load(port, args.seconds, args.connections, tls=client, keep_alive=keep_alive)
                         for name, port in servers.items()}
                base = rates["nginx -> wasmtime serve"][0]
                for name, (rps, p50, p99) in rates.items():
                    print(f"  {label:30} {name:32} {rps:8.0f} req/s  p50 {p50:7.2f} ms  p99 {p99:7.2f} ms  "
                          f"{rps / base:5.2f}x")
        finally:
            os.sched_setaffinity(0, cores)
            for proc in procs:
                proc.terminate()
                proc.wait()


if __name__ == "__main__":
    main()
