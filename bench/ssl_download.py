"""The standard `ssl` module in a guest (guest/python over wasitls:tls/memory) against native Python.

    python bench/ssl_download.py [--mib 256] [--runs 3] [--handshakes 50]

A local `openssl s_server -WWW` serves a file of MIB mebibytes over TLS on loopback (throwaway CA).
1. Download: bench/guests/ssl_client.py, built with `wasitls build` (http.client.HTTPSConnection,
   readinto a 1 MiB buffer) against the same file run natively with CPython's ssl. Target: the guest
   at least 0.5x native (the ciphertext now crosses guest memory twice).
2. Handshakes: N connections (TCP connect, handshake, close) by the same ssl guest against a guest on
   wasitls:tls directly (bench/guests/ssl_handshakes_raw). Target: within 1.5x.
Seconds are measured inside each client around the work (process start-up excluded); best of N runs.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
CLIENT = ROOT / "bench" / "guests" / "ssl_client.py"

from wasitls.devtools.http_peers import free_port, wait_port  # noqa: E402


def measure(name: str, cmd: list[str], env: dict[str, str]) -> dict[str, str]:
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)
    facts = dict(re.findall(r"^([a-z ]+): (.*)$", done.stdout, re.MULTILINE))
    if done.returncode != 0 or "seconds" not in facts:
        raise SystemExit(f"{name} failed (exit {done.returncode}):\n{done.stdout}{done.stderr[-3000:]}")
    return facts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--handshakes", type=int, default=50)
    ns = ap.parse_args()

    import trustme

    from wasitls.devtools import GUEST_LIB
    from wasitls.guestbuild import build_app, build_guest, guest_cache_dir

    say = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    ssl_guest = build_app(CLIENT, guest_cache_dir() / "bench-ssl-client.wasm", progress=say)
    raw_guest = build_guest(ROOT / "bench" / "guests" / "ssl_handshakes_raw", "ssl-handshakes-raw",
                            python_path=[GUEST_LIB], progress=say)
    size = ns.mib << 20
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    with tempfile.TemporaryDirectory(prefix="wasitls-ssl-bench-") as tmp_name:
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
        server = subprocess.Popen([shutil.which("openssl") or "openssl", "s_server", "-accept", f"127.0.0.1:{port}",
                                   "-key", "key.pem", "-cert", "cert.pem", "-WWW", "-quiet"], cwd=tmp,
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        run = [sys.executable, "-m", "wasitls", "run", "--allow-net", f"localhost:{port}", "--ca-file",
               str(tmp / "ca.pem")]
        download = ["download", "localhost", str(port), "/file.bin", str(tmp / "ca.pem")]
        handshakes = ["handshakes", "localhost", str(port), str(ns.handshakes), str(tmp / "ca.pem")]
        guest_download = [*download[:-1], "-"]  # the guest trusts what the host trusts
        guest_handshakes = [*handshakes[:-1], "-"]
        clients = {
            "download: guest ssl": [*run, str(ssl_guest), *guest_download],
            "download: native ssl": [sys.executable, str(CLIENT), *download],
            "handshakes: guest ssl": [*run, str(ssl_guest), *guest_handshakes],
            "handshakes: guest wasitls:tls": [*run, str(raw_guest), "localhost", str(port), str(ns.handshakes)],
        }
        best: dict[str, float] = {}
        try:
            wait_port(port, server)
            for n in range(ns.runs):
                for name, cmd in clients.items():
                    facts = measure(name, cmd, env)
                    if name.startswith("download") and int(facts["body bytes"]) != size:
                        raise SystemExit(f"{name}: {facts['body bytes']} bytes, not {size}")
                    seconds = float(facts["seconds"])
                    best[name] = min(best.get(name, seconds), seconds)
                    what = (f"{size / seconds / 1e6:8.1f} MB/s ({facts['cipher']})" if name.startswith("download")
                            else f"{seconds / ns.handshakes * 1000:8.2f} ms per connection")
                    print(f"run {n + 1}: {name:30s} {what}", flush=True)
        finally:
            server.kill()
            server.wait()
    guest, native = best["download: guest ssl"], best["download: native ssl"]
    hs_ssl, hs_raw = best["handshakes: guest ssl"], best["handshakes: guest wasitls:tls"]
    print(f"best of {ns.runs}: download {ns.mib} MiB: guest ssl {size / guest / 1e6:.1f} MB/s, native ssl "
          f"{size / native / 1e6:.1f} MB/s; ratio guest/native {native / guest:.2f}x (target >= 0.5x)")
    print(f"handshakes: guest ssl {hs_ssl / ns.handshakes * 1000:.2f} ms, guest wasitls:tls "
          f"{hs_raw / ns.handshakes * 1000:.2f} ms per connection; ratio {hs_ssl / hs_raw:.2f}x (target <= 1.5x)")


if __name__ == "__main__":
    main()
