"""Shared by the tests of wasitls:tls@0.1.0 (the full draft TLS API): certificates, running the
guests under tests/guests/tls_*, real TLS peers on loopback, and reading what both sides report.

Guests print facts as `key=value` lines (server guests prefix them with `conn=<n> `); identities
are `sha256:<hex of the leaf DER> chain=<n> subject=<...>`; versions and suites `0x%04x`.
"""

from __future__ import annotations

import hashlib
import os
import queue
import select
import shutil
import socket
import ssl
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization

TIMEOUT = 60
VERSIONS = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}
PY_VERSIONS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}
KEY_TYPES = {"RSA": trustme.KeyType.RSA, "ECDSA": trustme.KeyType.ECDSA}
# (protocol, key type) combinations every peer is run with
MATRIX = [("TLSv1.2", "RSA"), ("TLSv1.2", "ECDSA"), ("TLSv1.3", "RSA"), ("TLSv1.3", "ECDSA")]


# -- binaries -------------------------------------------------------------------------------------

def need(binary: str, package: str) -> str:
    """The path of a peer binary, or skip naming the Debian package to install."""
    found = shutil.which(binary) or next((p for p in (f"/usr/sbin/{binary}", f"/sbin/{binary}")
                                          if os.access(p, os.X_OK)), None)
    if found is None:
        pytest.skip(f"{binary} not installed (apt-get install {package})")
    return found


# -- certificates ---------------------------------------------------------------------------------

def sha256(der: bytes) -> str:
    return "sha256:" + hashlib.sha256(der).hexdigest()


def subject_text(der: bytes) -> str:
    """The subject as the guests print it: `O=..,OU=..,CN=..` in certificate order."""
    names = {"commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU", "countryName": "C"}
    cert = x509.load_der_x509_certificate(der)
    return ",".join(f"{names.get(a.oid._name, a.oid.dotted_string)}={a.value}" for a in cert.subject)


@dataclass
class Leaf:
    key: Path
    cert: Path  # PEM: leaf, then the issuing chain when it has one
    der: bytes  # the leaf certificate

    @property
    def fingerprint(self) -> str:
        return sha256(self.der)

    @property
    def sha1(self) -> str:
        return hashlib.sha1(self.der).hexdigest()

    @property
    def subject(self) -> str:
        return subject_text(self.der)

    def described(self, chain: int = 1) -> str:
        """How a guest prints this identity (a chain of `chain` certificates)."""
        return f"{self.fingerprint} chain={chain} subject={self.subject}"

    def guest_spec(self, kind: str = "file", root: str = "/pki") -> str:
        return f"{kind}:{root}/{self.key.name},{root}/{self.cert.name}"


@dataclass
class Pki:
    """One key type's certificates, written to `dir` (preopened as /pki in guests)."""

    key_type: str
    dir: Path
    ca: Path  # roots for server certificates (--ca-file)
    client_ca: Path  # roots for client certificates (--client-ca-file)
    localhost: Leaf  # server: localhost, 127.0.0.1, CN=localhost
    example: Leaf  # server: example.com, CN=example.com
    alice: Leaf  # client, CN=alice, from client_ca
    bob: Leaf  # client, CN=bob, from client_ca
    mallory: Leaf  # client from a CA nobody trusts
    stranger: Leaf  # server certificate for localhost from a CA nobody trusts
    _cas: dict = field(default_factory=dict, repr=False)


def write_leaf(root: Path, name: str, cert: trustme.LeafCert) -> Leaf:
    key, crt = root / f"{name}.key", root / f"{name}.crt"
    cert.private_key_pem.write_to_path(str(key))
    cert.cert_chain_pems[0].write_to_path(str(crt))
    der = x509.load_pem_x509_certificate(cert.cert_chain_pems[0].bytes()).public_bytes(serialization.Encoding.DER)
    return Leaf(key, crt, der)


def make_pki(root: Path, key_type: str) -> Pki:
    kt = KEY_TYPES[key_type]
    root.mkdir(parents=True, exist_ok=True)
    server_ca, client_ca, rogue_ca = trustme.CA(key_type=kt), trustme.CA(key_type=kt), trustme.CA(key_type=kt)
    server_ca.cert_pem.write_to_path(str(root / "ca.pem"))
    client_ca.cert_pem.write_to_path(str(root / "client-ca.pem"))
    pki = Pki(
        key_type, root, root / "ca.pem", root / "client-ca.pem",
        localhost=write_leaf(root, "localhost", server_ca.issue_cert("localhost", "127.0.0.1", common_name="localhost",
                                                                       key_type=kt)),
        example=write_leaf(root, "example", server_ca.issue_cert("example.com", common_name="example.com", key_type=kt)),
        alice=write_leaf(root, "alice", client_ca.issue_cert("alice@example.com", common_name="alice", key_type=kt)),
        bob=write_leaf(root, "bob", client_ca.issue_cert("bob@example.com", common_name="bob", key_type=kt)),
        mallory=write_leaf(root, "mallory", rogue_ca.issue_cert("mallory@example.com", common_name="mallory",
                                                                  key_type=kt)),
        stranger=write_leaf(root, "stranger", rogue_ca.issue_cert("localhost", common_name="localhost", key_type=kt)),
    )
    pki._cas = {"server": server_ca, "client": client_ca, "rogue": rogue_ca}
    return pki


# -- running guests -------------------------------------------------------------------------------

def wasitls_command(wasm: Path, args, *, pki: Pki | None = None, identities: dict[str, Leaf] | None = None,
                    listen: bool = False, client_ca: bool = True, extra=()) -> list[str]:
    cmd = [sys.executable, "-m", "wasitls", "run", "--engine", "fast", "--tls-trace",
           "--allow-net", "127.0.0.1", "--allow-net", "localhost"]
    if listen:
        cmd += ["--allow-listen", "127.0.0.1:0"]
    if pki is not None:
        cmd += ["--ca-file", str(pki.ca), "--dir", f"{pki.dir}::/pki"]
        if client_ca:
            cmd += ["--client-ca-file", str(pki.client_ca)]
    for name, leaf in (identities or {}).items():
        cmd += ["--identity", f"{name}={leaf.key},{leaf.cert}"]
    return [*cmd, *extra, str(wasm), *map(str, args)]


@dataclass
class Run:
    returncode: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        return self.out.splitlines()

    def facts(self, prefix: str = "") -> dict[str, str]:
        """key=value lines (with `prefix` removed, others skipped) up to the `response:` marker; first wins."""
        found: dict[str, str] = {}
        for line in self.lines:
            if line == "response:":
                break
            if prefix:
                if not line.startswith(prefix):
                    continue
                line = line[len(prefix):]
            key, sep, value = line.partition("=")
            if sep and key not in found:
                found[key] = value
        return found

    @property
    def response(self) -> str:
        marker = "\nresponse:\n"
        return self.out.split(marker, 1)[1] if marker in self.out else ""

    def __str__(self) -> str:
        return f"exit {self.returncode}\n--- stdout\n{self.out}\n--- stderr\n{self.err}"


def run_guest(cmd: list[str], stdin: bytes | None = None) -> Run:
    proc = subprocess.run(cmd, input=stdin, capture_output=True, timeout=TIMEOUT,
                          stdin=None if stdin is not None else subprocess.DEVNULL)
    return Run(proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace"))


class GuestServer:
    """A guest process with stdin open (for its hold points); a server (`listening=True`) learns
    its port from its first line, `listening on 127.0.0.1:<port>`. Output is read by threads, so a
    chatty guest never blocks and lines are seen as soon as they are printed."""

    def __init__(self, cmd: list[str], listening: bool = True):
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.seen: list[str] = []  # stdout lines handed out by readline()
        self._lines: queue.Queue = queue.Queue()
        self._err: list[bytes] = []
        self._threads = [threading.Thread(target=self._read_out, daemon=True),
                         threading.Thread(target=lambda: self._err.append(self.proc.stderr.read()), daemon=True)]
        for thread in self._threads:
            thread.start()
        if not listening:
            return
        first = self.readline()
        if not first.startswith("listening on 127.0.0.1:"):
            self.proc.kill()
            raise AssertionError(f"guest server did not start: {first!r} {self.finish()}")
        self.port = int(first.rsplit(":", 1)[1])

    def _read_out(self) -> None:
        for line in iter(self.proc.stdout.readline, b""):
            self._lines.put(line.decode(errors="replace").rstrip("\n"))
        self._lines.put(None)  # end of output

    def readline(self) -> str:
        """The next stdout line; None once the output ended."""
        try:
            line = self._lines.get(timeout=TIMEOUT)
        except queue.Empty:
            raise AssertionError(f"guest printed nothing for {TIMEOUT}s; so far: {self.seen}") from None
        if line is None:
            self._lines.put(None)
            return None
        self.seen.append(line)
        return line

    def wait_for(self, wanted: str) -> None:
        """Read lines until one equals `wanted`."""
        while (line := self.readline()) != wanted:
            if line is None:
                raise AssertionError(f"guest ended before {wanted!r}: {self.finish()}")

    def release(self) -> None:
        self.proc.stdin.write(b"\n")
        self.proc.stdin.flush()

    def finish(self) -> Run:
        """Wait for the guest to end: everything it printed (stdout and stderr) and its exit status."""
        if not self.proc.stdin.closed:
            self.proc.stdin.close()
        try:
            self.proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for thread in self._threads:
            thread.join(TIMEOUT)
        lines = list(self.seen)
        while (line := self._lines.get_nowait() if not self._lines.empty() else None) is not None:
            lines.append(line)
        text = "".join(line + "\n" for line in lines)
        return Run(self.proc.returncode, text, b"".join(self._err).decode(errors="replace"))

    def __enter__(self) -> "GuestServer":
        return self

    def __exit__(self, *exc) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


# -- peers ----------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, proc: subprocess.Popen | None = None) -> None:
    """Until something accepts on 127.0.0.1:port (probing with a bare connect)."""
    import time
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"peer exited early: {proc.args}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")


def iana_suite(name: str) -> int:
    """The IANA code of an OpenSSL cipher-suite name (TLS 1.2 or 1.3)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.set_ciphers("ALL:@SECLEVEL=0")
    for cipher in ctx.get_ciphers():
        if cipher["name"] == name:
            return cipher["id"] & 0xFFFF
    raise KeyError(name)


def pem_to_der(pem: str) -> bytes:
    return x509.load_pem_x509_certificate(pem.encode()).public_bytes(serialization.Encoding.DER)


@dataclass
class PeerView:
    """What a Python ssl peer saw of one connection."""

    version: str | None = None
    cipher: str | None = None
    alpn: str | None = None
    peer_der: bytes | None = None
    server_name: str | None = None
    received: bytes = b""
    error: BaseException | None = None
    handshake_done: threading.Event = field(default_factory=threading.Event)
    closed_cleanly: bool | None = None  # the other side's close_notify came (None: not looked at)


class PyTlsServer(threading.Thread):
    """A Python ssl server on loopback: `count` connections, one after the other. Each: handshake,
    read an HTTP head, answer `200 OK` with `body` (default `hello from python`), then close_notify.
    With `read_everything`, read until the client ends instead, and answer nothing."""

    def __init__(self, ctx: ssl.SSLContext, count: int = 1, *, read_everything: bool = False,
                 body: bytes = b"hello from python\n"):
        super().__init__(daemon=True)
        self.ctx, self.count, self.read_everything, self.body = ctx, count, read_everything, body
        self.views: list[PeerView] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(TIMEOUT)
        self.port = self.sock.getsockname()[1]
        ctx.sni_callback = self._sni

    def _sni(self, sslobj, name, ctx):
        self._current.server_name = name

    def run(self) -> None:
        for _ in range(self.count):
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            view = self._current = PeerView()
            self.views.append(view)
            conn.settimeout(TIMEOUT)
            with conn:
                try:
                    tls = self.ctx.wrap_socket(conn, server_side=True)
                    view.version, view.cipher = tls.version(), tls.cipher()[0]
                    view.alpn = tls.selected_alpn_protocol()
                    view.peer_der = tls.getpeercert(binary_form=True)
                    view.handshake_done.set()
                    while self.read_everything or b"\r\n\r\n" not in view.received:
                        chunk = tls.recv(4096)
                        if not chunk:
                            break
                        view.received += chunk
                    if not self.read_everything:
                        body = self.body
                        tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                                    % (len(body), body))
                        try:
                            tls.unwrap()  # sends close_notify, waits for the guest's
                            view.closed_cleanly = True
                        except (ssl.SSLError, OSError):
                            view.closed_cleanly = False
                except (ssl.SSLError, OSError) as e:
                    view.error = e

    def __enter__(self) -> "PyTlsServer":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.sock.close()
        self.join(TIMEOUT)


def py_server_context(leaf: Leaf, version: str | None = None, *, client_ca: Path | None = None,
                      verify: ssl.VerifyMode = ssl.CERT_NONE, alpn: list[str] | None = None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(leaf.cert, leaf.key)
    if version is not None:
        ctx.minimum_version = ctx.maximum_version = PY_VERSIONS[version]
    if client_ca is not None:
        ctx.load_verify_locations(client_ca)
    ctx.verify_mode = verify
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


def py_client_context(pki: Pki, version: str | None = None, *, cert: Leaf | None = None,
                      alpn: list[str] | None = None, post_handshake_auth: bool = False) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    if version is not None:
        ctx.minimum_version = ctx.maximum_version = PY_VERSIONS[version]
    if cert is not None:
        ctx.load_cert_chain(cert.cert, cert.key)
    if alpn:
        ctx.set_alpn_protocols(alpn)
    ctx.post_handshake_auth = post_handshake_auth
    return ctx


def py_https_get(ctx: ssl.SSLContext, port: int, server_name: str, path: str = "/") -> tuple[PeerView, bytes]:
    """One HTTP/1.1 GET over TLS; the client's view of the connection and the whole response."""
    view = PeerView()
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw:
        with ctx.wrap_socket(raw, server_hostname=server_name) as tls:
            view.version, view.cipher = tls.version(), tls.cipher()[0]
            view.alpn = tls.selected_alpn_protocol()
            view.peer_der = tls.getpeercert(binary_form=True)
            tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {server_name}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while True:
                try:
                    chunk = tls.recv(65536)
                except ssl.SSLEOFError:
                    view.closed_cleanly = False
                    break
                if not chunk:
                    view.closed_cleanly = True
                    break
                data += chunk
    return view, data


def http_body(response: bytes | str) -> str:
    text = response.decode(errors="replace") if isinstance(response, bytes) else response
    return text.split("\r\n\r\n", 1)[1] if "\r\n\r\n" in text else ""


def body_facts(response: bytes | str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in http_body(response).splitlines() if "=" in line)


def client_hello_bytes(server_name: str = "localhost", alpn: list[str] | None = None,
                       version: str | None = None) -> tuple[ssl.SSLObject, ssl.MemoryBIO, ssl.MemoryBIO, bytes]:
    """A Python ssl client's first flight (its ClientHello), made with memory BIOs."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    if version is not None:
        ctx.minimum_version = ctx.maximum_version = PY_VERSIONS[version]
    if alpn:
        ctx.set_alpn_protocols(alpn)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=server_name)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return obj, incoming, outgoing, outgoing.read()


def readable(sock: socket.socket, wait: float) -> bool:
    """Whether sock has data (or EOF) within `wait` seconds."""
    ready, _, _ = select.select([sock], [], [], wait)
    return bool(ready)



class PeerProcess:
    """A TLS peer binary (openssl, gnutls-serv, nginx, ...) with stdout and stderr merged into one log."""

    def __init__(self, cmd: list[str], *, ready: str | None = None, port: int | None = None,
                 stdin: bytes | None = None, cwd: Path | None = None):
        self.cmd = cmd
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=cwd)
        self.log = b""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._ready = threading.Event()
        self._wanted = ready.encode() if ready else None
        self._reader.start()
        if stdin is not None:
            self.proc.stdin.write(stdin)
            self.proc.stdin.close()
        if ready is not None and not self._ready.wait(TIMEOUT):
            self.stop()
            raise AssertionError(f"{cmd[0]} never printed {ready!r}: {self.log.decode(errors='replace')}")
        if port is not None:
            wait_listening(port, self.proc)

    def _read(self) -> None:
        for line in iter(self.proc.stdout.readline, b""):
            self.log += line
            if self._wanted is not None and self._wanted in line:
                self._ready.set()

    def output(self, stop: bool = False) -> str:
        """The whole log, once the process ended (terminated first when `stop`)."""
        if stop and self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(TIMEOUT)
        return self.log.decode(errors="replace")

    def stop(self) -> str:
        return self.output(stop=True)

    def __enter__(self) -> "PeerProcess":
        return self

    def __exit__(self, *exc) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


# -- a minimal HTTP/2 exchange (for servers that pick h2) --------------------------------------------

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def h2_frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload


def h2_get(tls, authority: str) -> tuple[int | None, bytes]:
    """GET / on stream 1 over an h2 connection; (status, body). Only `:status 200` is decoded."""
    headers = b"\x82\x87\x84\x41" + bytes([len(authority)]) + authority.encode()  # GET https / :authority
    tls.sendall(H2_PREFACE + h2_frame(4, 0, 0) + h2_frame(1, 0x05, 1, headers))
    data, status, body = b"", None, b""
    while True:
        while len(data) >= 9 and len(data) >= 9 + int.from_bytes(data[:3], "big"):
            length = int.from_bytes(data[:3], "big")
            kind, payload = data[3], data[9 : 9 + length]
            data = data[9 + length :]
            if kind == 1 and payload[:1] == b"\x88":
                status = 200
            elif kind == 0:
                body += payload
            elif kind == 7:
                return status, body
        try:
            chunk = tls.recv(65536)
        except (ssl.SSLError, OSError):
            chunk = b""
        if not chunk:
            return status, body
        data += chunk
