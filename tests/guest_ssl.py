"""Shared by tests/test_guest_ssl_*: Python guests whose `ssl` is guest/python's _ssl over
wasitls:tls/memory, built once per run (cached by content), run with `wasitls run`, against real
peers (Python ssl, openssl, PostgreSQL) on loopback."""

from __future__ import annotations

import datetime
import hashlib
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

REPO = Path(__file__).resolve().parent.parent
GUESTS = REPO / "tests" / "guests"
GUEST_PYTHON = REPO / "guest" / "python"
TIMEOUT = 120
# What the third-party guests need, from PyPI as pure-Python wheels (pip's own client, cached).
PYPI_REQUIREMENTS = ("requests==2.34.2", "urllib3==2.8.0", "pg8000==1.31.6")

sys.path.insert(0, str(REPO / "src"))
from wasitls.guestbuild import build_app, build_guest, guest_cache_dir  # noqa: E402


def progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def build_probe(name: str = "pyssl_probe", extra_path: tuple[Path, ...] = ()) -> Path:
    """tests/guests/<name> (its own wit/ and app.py) with guest/python on its path."""
    return build_guest(GUESTS / name, name.replace("_", "-"), python_path=[*extra_path, GUEST_PYTHON],
                       progress=progress)


def pypi_site() -> Path:
    """A -p directory holding PYPI_REQUIREMENTS, installed once into the cache (skip without network)."""
    key = hashlib.sha256("\n".join(PYPI_REQUIREMENTS).encode()).hexdigest()[:16]
    target = guest_cache_dir().parent / f"pypi-{key}"
    if (target / ".complete").exists():
        return target
    partial = target.with_name(target.name + f".{os.getpid()}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                           "--target", str(partial), "--python-version", "3.14", "--platform", "any",
                           "--only-binary=:all:", "--implementation", "py", *PYPI_REQUIREMENTS],
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        pytest.skip(f"cannot install {', '.join(PYPI_REQUIREMENTS)} from PyPI: {proc.stderr.strip()[-300:]}")
    (partial / ".complete").write_text("\n".join(PYPI_REQUIREMENTS))
    try:
        os.replace(partial, target)
    except OSError:  # another run got there first
        shutil.rmtree(partial, ignore_errors=True)
    return target


def built_app(app_file: Path, *paths: Path) -> Path:
    """`wasitls build APP -p PATH...` through its Python API, into the guest cache."""
    out = guest_cache_dir() / f"built-{app_file.parent.name}-{app_file.stem}-{os.getpid()}.wasm"
    return build_app(app_file, out, list(paths), progress=progress)


@dataclass
class Result:
    status: int
    out: str
    err: str

    def facts(self) -> dict[str, str]:
        found = {}
        for line in self.out.splitlines():
            key, sep, value = line.partition("=")
            if sep and " " not in key:
                found.setdefault(key, value)
        return found

    def __str__(self) -> str:
        return f"status={self.status}\n--- stdout\n{self.out}\n--- stderr\n{self.err}"


def wasitls_cmd(wasm: Path, args, *options: str) -> list[str]:
    return [sys.executable, "-m", "wasitls", "run", *options, str(wasm), *map(str, args)]


def run(wasm: Path, args, *options: str) -> Result:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run(wasitls_cmd(wasm, args, *options), capture_output=True, text=True, timeout=TIMEOUT,
                          stdin=subprocess.DEVNULL, env=env)
    return Result(proc.returncode, proc.stdout, proc.stderr)


class Guest:
    """A guest running in the background (a server): its output read as it comes."""

    def __init__(self, wasm: Path, args, *options: str):
        env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
        self.proc = subprocess.Popen(wasitls_cmd(wasm, args, *options), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, env=env)
        self.lines: list[str] = []

    def wait_for(self, prefix: str) -> str:
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise AssertionError(f"guest ended before {prefix!r}:\n{self.finish()}")
            self.lines.append(line.rstrip("\n"))
            if line.startswith(prefix):
                return line.rstrip("\n")

    def finish(self) -> Result:
        try:
            out, err = self.proc.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        return Result(self.proc.returncode, "\n".join(self.lines) + "\n" + out, err)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- certificates -------------------------------------------------------------------------------------
@dataclass
class Pki:
    """Two unrelated CAs (servers, clients), a server leaf for example.test / 127.0.0.1 / localhost,
    a client leaf, an expired server leaf, and a server leaf from a CA nobody trusts."""

    dir: Path
    ca: Path
    server_key: Path
    server_cert: Path
    server_pem: Path  # key and chain in one file (Python's load_cert_chain)
    client_ca: Path
    client_key: Path
    client_cert: Path
    client_pem: Path
    expired_pem: Path
    rogue_pem: Path


def make_pki(root: Path) -> Pki:
    root.mkdir(parents=True, exist_ok=True)
    ca, client_ca, rogue = trustme.CA(), trustme.CA(), trustme.CA()
    server = ca.issue_cert("example.test", "localhost", "127.0.0.1", common_name="example.test")
    client = client_ca.issue_cert("client.test", common_name="guest-client")
    past = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)
    expired = ca.issue_cert("example.test", "127.0.0.1", not_before=past - datetime.timedelta(days=30),
                            not_after=past)
    stranger = rogue.issue_cert("example.test", "127.0.0.1")
    paths = {}
    for name, blob in (("ca.pem", ca.cert_pem), ("client-ca.pem", client_ca.cert_pem),
                       ("server.key", server.private_key_pem), ("server.crt", server.cert_chain_pems[0]),
                       ("server.pem", server.private_key_and_cert_chain_pem),
                       ("client.key", client.private_key_pem), ("client.crt", client.cert_chain_pems[0]),
                       ("client.pem", client.private_key_and_cert_chain_pem),
                       ("expired.pem", expired.private_key_and_cert_chain_pem),
                       ("rogue.pem", stranger.private_key_and_cert_chain_pem)):
        blob.write_to_path(str(root / name))
        paths[name] = root / name
    return Pki(root, paths["ca.pem"], paths["server.key"], paths["server.crt"], paths["server.pem"],
               paths["client-ca.pem"], paths["client.key"], paths["client.crt"], paths["client.pem"],
               paths["expired.pem"], paths["rogue.pem"])


# -- a Python ssl HTTPS server ------------------------------------------------------------------------------
class HttpsServer(threading.Thread):
    """HTTP/1.1 over Python's ssl: answers every GET with `hello from PATH` (keep-alive), or with a
    body of N bytes for /bytes/N; HTTP/1.0 requests get the answer and a close."""

    def __init__(self, pem: Path, *, client_ca: Path | None = None, alpn: tuple[str, ...] = ("http/1.1",)):
        super().__init__(daemon=True)
        self.ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ctx.load_cert_chain(pem)
        self.ctx.set_alpn_protocols(list(alpn))
        if client_ca is not None:
            self.ctx.verify_mode = ssl.CERT_REQUIRED
            self.ctx.load_verify_locations(client_ca)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self.bindings: list[bytes | None] = []  # each connection's tls-unique, as Python's ssl sees it
        self.errors: list[str] = []

    def run(self) -> None:
        while True:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        try:
            with self.ctx.wrap_socket(raw, server_side=True) as s:
                self.connections += 1
                self.bindings.append(s.get_channel_binding("tls-unique"))
                f = s.makefile("rb")
                while True:
                    request = f.readline()
                    if not request:
                        return
                    while f.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    _, path, version = request.decode().split()
                    if path.startswith("/bytes/"):
                        size = int(path.split("/")[2])
                        s.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n".encode())
                        chunk = b"x" * (1 << 20)
                        while size:
                            n = s.send(chunk[:size])
                            size -= n
                    else:
                        cert = s.getpeercert()
                        who = dict(x[0] for x in cert["subject"]).get("commonName") if cert else None
                        body = f"hello from {path}" + (f" to {who}" if who else "")
                        s.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n{body}".encode())
                    if version == "HTTP/1.0":
                        s.unwrap()
                        return
        except (OSError, ValueError) as e:
            self.errors.append(repr(e))

    def close(self) -> None:
        self.listener.close()


def py_client(port: int, ca: Path, *, cert: Path | None = None, version: str | None = None,
              alpn: tuple[str, ...] = (), line: bytes = b"ping\n") -> str:
    """Python's ssl as a client of a guest server: one line out, one back; the error text otherwise."""
    ctx = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        ctx.load_cert_chain(cert)
    if version == "TLSv1.2":
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    elif version == "TLSv1.3":
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as raw:
            with ctx.wrap_socket(raw, server_hostname="example.test") as s:
                s.sendall(line)
                data = b""
                while not data.endswith(b"\n"):
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                return f"{s.version()} {data.decode().strip()}"
    except (ssl.SSLError, OSError) as e:
        return f"error {type(e).__name__}: {e}"


def need(binary: str, package: str) -> str:
    found = shutil.which(binary) or next((p for p in (f"/usr/lib/postgresql/15/bin/{binary}",)
                                          if os.access(p, os.X_OK)), None)
    if found is None:
        pytest.skip(f"{binary} not installed (apt-get install {package})")
    return found
