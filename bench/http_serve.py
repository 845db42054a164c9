"""`wasitls serve` against `wasmtime serve`: the same handler components over plain HTTP/1.1 keep-alive.

    python bench/http_serve.py [--seconds 5] [--connections 4] [--handlers py,js]

Each server runs the test handlers (tests/guests/http_py_handler, and http_js_handler when jco is
installed) on a loopback port; one load generator (this script: N threads, each one keep-alive
connection sending `GET /` in a loop for the given time) measures requests per second and the p50
and p99 latencies. wasitls runs twice: a fresh instance per request as wasmtime serve does, and with
--reuse-instances (only for the Python handler: StarlingMonkey answers once per instance). Ratios
are against wasmtime serve measured in the same run.
"""

from __future__ import annotations

import argparse
import http.client
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

from guests import build_js_guest, build_test_guest, find_jco, find_wasmtime_cli  # noqa: E402
from http_peers import free_port, wait_port  # noqa: E402


def load(port: int, seconds: float, connections: int) -> tuple[float, float, float]:
    latencies: list[float] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def client() -> None:
        mine = []
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while time.monotonic() < stop:
            t = time.perf_counter()
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


def serve(cmd: list[str], port: int) -> subprocess.Popen:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, proc, timeout=180)
    # one request first: compiles and instantiates before the clock runs
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("GET", "/")
    conn.getresponse().read()
    conn.close()
    return proc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--handlers", default="py,js")
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


if __name__ == "__main__":
    main()
