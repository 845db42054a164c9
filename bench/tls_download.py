"""Downloading a file over TLS: a componentize-py guest on wasitls against a native Python `ssl` client.

    python bench/tls_download.py [--mib 256] [--server openssl|nginx] [--block BYTES] [--runs N]

A local server (`openssl s_server -WWW`, or nginx) serves a file of MIB mebibytes of random bytes over
TLS on loopback, with a certificate from a throwaway CA (trustme). Two clients fetch it, one after the
other, each in its own process:
  - the guest bench/guests/tls_download on `python -m wasitls run --ca-file CA`: wasi:sockets for TCP,
    wasi:tls/types@0.2.0-draft for TLS (done by the host with OpenSSL), `blocking-read` calls of
    BLOCK bytes (default 1 MiB), counting bytes;
  - a native Python client: `ssl` over a socket, `recv_into` a 1 MiB buffer, counting bytes.
Both time from before the TCP connect to the end of the body (process start-up excluded; the
guest reads wasi:clocks/monotonic-clock). The best of N runs of each is printed, with the ratio
(target: the guest at least 0.7x the native client).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from wasitls.devtools.http_peers import free_port, wait_port  # noqa: E402


def native_client(host: str, port: int, path: str, ca: str) -> None:
    """The baseline, run in its own process: prints the same lines as the guest."""
    ctx = ssl.create_default_context(cafile=ca)
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    started = time.perf_counter()
    with socket.create_connection((host, port)) as raw, ctx.wrap_socket(raw, server_hostname=host) as s:
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        head = b""
        status = None
        body = 0
        while True:
            try:
                n = s.recv_into(buf)
            except ssl.SSLZeroReturnError:
                break
            if not n:
                break
            if status is None:
                head += bytes(view[:n])
                end = head.find(b"\r\n\r\n")
                if end >= 0:
                    status = head[: head.find(b"\r\n")].decode("latin-1")
                    body = len(head) - end - 4
            else:
                body += n
        seconds = time.perf_counter() - started
        cipher = s.cipher()
    print(f"status: {status}")
    print(f"body bytes: {body}")
    print(f"seconds: {seconds:.6f}")
    print(f"cipher: {cipher[1]} {cipher[0]}", flush=True)




def start_server(kind: str, tmp: Path, port: int) -> subprocess.Popen:
    if kind == "openssl":
        cmd = [shutil.which("openssl") or "openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-key", "key.pem",
               "-cert", "cert.pem", "-WWW", "-quiet"]
        return subprocess.Popen(cmd, cwd=tmp, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    (tmp / "nginx.conf").write_text(f"""
daemon off;
master_process off;
worker_processes 1;
{"user root;" if os.geteuid() == 0 else ""}
error_log {tmp}/error.log;
pid {tmp}/nginx.pid;
events {{ worker_connections 16; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy; fastcgi_temp_path {tmp}/fastcgi;
  uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
  sendfile off;
  server {{
    listen 127.0.0.1:{port} ssl;
    ssl_certificate {tmp}/cert.pem;
    ssl_certificate_key {tmp}/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    root {tmp};
  }}
}}
""")
    return subprocess.Popen([nginx, "-p", str(tmp), "-c", str(tmp / "nginx.conf")], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def parse(out: str) -> dict[str, str]:
    return dict(re.findall(r"^([a-z ]+): (.*)$", out, re.MULTILINE))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--server", choices=["openssl", "nginx"], default="openssl")
    ap.add_argument("--block", type=int, default=1 << 20, help="the guest's blocking-read size")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--engine", default="fast")
    ap.add_argument("--native-client", nargs=4, metavar=("HOST", "PORT", "PATH", "CA"), help=argparse.SUPPRESS)
    ns = ap.parse_args()
    if ns.native_client:
        host, port, path, ca = ns.native_client
        native_client(host, int(port), path, ca)
        return

    import trustme

    from wasitls.devtools import build_checkout_guest

    wasm = build_checkout_guest(ROOT / "bench" / "guests" / "tls_download", "tls-download")
    size = ns.mib << 20
    with tempfile.TemporaryDirectory(prefix="wasitls-tls-bench-") as tmp_name:
        tmp = Path(tmp_name)
        ca = trustme.CA()
        cert = ca.issue_cert("localhost")
        ca.cert_pem.write_to_path(str(tmp / "ca.pem"))
        cert.private_key_pem.write_to_path(str(tmp / "key.pem"))
        cert.cert_chain_pems[0].write_to_path(str(tmp / "cert.pem"))
        with open(tmp / "file.bin", "wb") as f:
            block = os.urandom(1 << 20)
            for _ in range(ns.mib):
                f.write(block)
        port = free_port()
        server = start_server(ns.server, tmp, port)
        env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
        clients = {
            "wasitls guest": [sys.executable, "-m", "wasitls", "run", "--engine", ns.engine, "--allow-net",
                              f"localhost:{port}", "--ca-file", str(tmp / "ca.pem"), "--tls-trace", str(wasm),
                              "localhost", str(port), "/file.bin", str(ns.block)],
            "native Python ssl": [sys.executable, __file__, "--native-client", "localhost", str(port), "/file.bin",
                                  str(tmp / "ca.pem")],
        }
        best: dict[str, float] = {}
        try:
            wait_port(port, server)
            for run in range(ns.runs):
                for name, cmd in clients.items():
                    t = time.perf_counter()
                    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600,
                                          stdin=subprocess.DEVNULL)
                    wall = time.perf_counter() - t
                    facts = parse(done.stdout)
                    if done.returncode != 0 or int(facts.get("body bytes", -1)) != size:
                        raise SystemExit(f"{name} failed (exit {done.returncode}):\n{done.stdout}{done.stderr[-2000:]}")
                    seconds = float(facts["seconds"])
                    best[name] = min(best.get(name, seconds), seconds)
                    cipher = facts.get("cipher") or " ".join(re.findall(r"version=(\S+) cipher=(\S+)", done.stderr)[0])
                    print(f"run {run + 1}: {name:18s} {size / seconds / 1e6:8.1f} MB/s  ({seconds:.3f} s for "
                          f"{ns.mib} MiB; process {wall:.2f} s; {facts['status']}; {cipher})", flush=True)
        finally:
            server.kill()
            server.wait()
    guest, native = best["wasitls guest"], best["native Python ssl"]
    print(f"best of {ns.runs}: wasitls guest {size / guest / 1e6:.1f} MB/s, native Python ssl "
          f"{size / native / 1e6:.1f} MB/s ({ns.server} server)")
    print(f"ratio guest/native: {native / guest:.2f}x   target >= 0.7x")


if __name__ == "__main__":
    main()
