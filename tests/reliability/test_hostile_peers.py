"""Hostile TLS peers against the host's TLS (tls_streams over real wasi:sockets TCP on loopback),
in both roles, driven as a guest's poll drives it. Every case ends in an error value (a failed
handshake with a reason, or a stream error) within a bound, never a hang, a trap or a success:
a peer that never answers, garbage, alerts, resets, truncation, oversized records and certificate
chains, record floods, and truncation after the handshake."""

from __future__ import annotations

import datetime
import os
import socket
import ssl
import struct
import threading
import time

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sockets_helpers import block, connect, listen, make, server
from wasitls.lifetime import Lifetime
from wasitls.tls.config import build_tls_config
from wasitls.tls_streams import GuestTls
from wasitls.wasi.io.poll import Deadline, wait_any
from wasitls.wasi.io.streams import StreamClosed, StreamFailed
from wasitls_tls_helpers import client_hello_bytes

pytestmark = pytest.mark.usefixtures("close_guest_sockets")

BOUND = 10.0  # seconds: a case still pending after this is a hang (the host answered all in < 1 s)
ALERT_HANDSHAKE_FAILURE = bytes([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 40])
HELLO_REQUEST = bytes([0x16, 0x03, 0x03, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00])
OVERSIZED_RECORD = bytes([0x16, 0x03, 0x03, 0xFF, 0xFF]) + bytes(4096)  # 65535 > 2^14 + 2048


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


@pytest.fixture(scope="module")
def tls(ca, tmp_path_factory):
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return GuestTls(build_tls_config(ca_file=str(path)), Lifetime())


def drive(conn, until, bound: float) -> bool:
    """Poll the connection beside a timer, as a guest would; False if the timer came first."""
    source, timer = conn.when(until), Deadline(time.monotonic_ns() + int(bound * 1e9))
    while not until():
        if 1 in wait_any([source, timer]) and not until():
            return False
    return True


def reset(conn: socket.socket) -> None:
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def flood(conn: socket.socket, record: bytes) -> None:
    chunk = record * 50_000
    try:
        for _ in range(2000):
            conn.sendall(chunk)
    except OSError:
        pass


def huge_certificate(tmp_path) -> tuple[str, str]:
    """A self-signed certificate of ~200 KB (8000 names): over OpenSSL's 100 KiB chain limit."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    names = [x509.DNSName(f"host-{i:05d}.example.test") for i in range(8000)]
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(names), critical=False).sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "huge.pem", tmp_path / "huge.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


# -- the host as client: peer = a hostile server ----------------------------------------------------

def held(conn, release: threading.Event) -> None:
    conn.recv(65536)
    release.wait(BOUND)


CLIENT_CASES = {
    # name: (what the server does after accepting, the failure expected)
    "garbage (HTTP)": (lambda c: (c.recv(65536), c.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")),
                       "peer does not speak TLS"),
    "garbage (random)": (lambda c: (c.recv(65536), c.sendall(b"\x00" + os.urandom(4000))), "peer does not speak TLS"),
    "fatal alert": (lambda c: (c.recv(65536), c.sendall(ALERT_HANDSHAKE_FAILURE)), "peer sent alert: handshake failure"),
    "reset": (lambda c: (c.recv(65536), reset(c)), "reset"),
    "closed at once": (lambda c: c.recv(65536), "peer closed the connection during the handshake"),
    "truncated record": (lambda c: (c.recv(65536), c.sendall(bytes([0x16, 3, 3, 0, 100]) + bytes(10))),
                         "peer closed the connection during the handshake"),
    "oversized record": (lambda c: (c.recv(65536), c.sendall(OVERSIZED_RECORD)), "TLS handshake failed"),
    "HelloRequest flood": (lambda c: (c.recv(65536), flood(c, HELLO_REQUEST)), "without completing the handshake"),
}


def test_hostile_servers(tls, passed):
    for name, (behave, reason) in CLIENT_CASES.items():
        g = make()
        port, done = server("ipv4", behave)
        sock, rx, tx = connect(g, "ipv4", port)
        conn = tls.client("localhost", rx.source, tx.sink)
        conn.advance()
        assert drive(conn, conn.handshake_settled, BOUND), f"{name}: still pending after {BOUND} s"
        assert conn.failure is not None and reason in conn.failure, (name, conn.failure)
        with pytest.raises(StreamFailed):
            conn.write_permit()
        conn.release()
        rx.drop(), tx.drop(), sock.drop()
        done.result(BOUND)
    passed(f"{len(CLIENT_CASES)} hostile servers ({', '.join(CLIENT_CASES)}): each a failed handshake with its reason")


def test_server_that_never_answers_leaves_the_guest_in_charge(tls, passed):
    """No TLS timeout of its own: the guest's timer fires, its abort is the error value."""
    release = threading.Event()
    g = make()
    port, done = server("ipv4", lambda c: held(c, release))
    sock, rx, tx = connect(g, "ipv4", port)
    conn = tls.client("localhost", rx.source, tx.sink)
    conn.advance()
    assert not drive(conn, conn.handshake_settled, 0.2)  # the guest's timer came first
    conn.abort()
    assert conn.failure == "aborted by the application"
    conn.release()
    release.set()
    rx.drop(), tx.drop(), sock.drop()
    done.result(BOUND)
    passed("a server that never answers: the guest's timer fires, abort is an error value")


def test_oversized_chain_and_truncation_after_the_handshake(tls, ca, tmp_path, passed):
    cert, key = huge_certificate(tmp_path)
    huge = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    huge.load_cert_chain(cert, key)

    def serve_huge(c):
        try:
            huge.wrap_socket(c, server_side=True)
        except (ssl.SSLError, OSError):
            pass

    leaf = ca.issue_cert("localhost")
    normal = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    leaf.configure_cert(normal)

    def serve_then_vanish(c):
        with normal.wrap_socket(c, server_side=True) as t:  # t took c's descriptor
            t.sendall(b"partial answer")
            time.sleep(0.1)  # the answer arrives before the reset (which would discard it)
            reset(t)  # the TCP connection ends without close_notify

    outcomes = []
    for behave in (serve_huge, serve_then_vanish):
        g = make()
        port, done = server("ipv4", behave)
        sock, rx, tx = connect(g, "ipv4", port)
        conn = tls.client("localhost", rx.source, tx.sink)
        conn.advance()
        assert drive(conn, conn.handshake_settled, BOUND)
        if behave is serve_huge:
            assert conn.failure is not None and not conn.handshake_complete, conn.failure
            outcomes.append(conn.failure)
        else:
            assert conn.failure is None and conn.handshake_complete
            source = conn.plaintext_source()
            got = b""
            with pytest.raises(StreamFailed) as failed:
                while True:
                    assert drive(conn, conn.readable, BOUND)
                    got += bytes(conn.read(100))
            assert got == b"partial answer"
            outcomes.append(str(failed.value))
            source.close()
        done.result(BOUND)
        conn.release()
        rx.drop(), tx.drop(), sock.drop()
    passed(f"a 200 KB certificate chain ({outcomes[0]}) and a reset after the handshake ({outcomes[1]}): "
           "error values")


# -- the host as server: peer = a hostile client ----------------------------------------------------

def fragmented_hello_flood(c) -> None:
    """A ClientHello header announcing 100000 bytes, then one byte per record, without end."""
    first = bytes([0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0x01, 0x86, 0xA0])
    try:
        c.sendall(first)
    except OSError:
        return
    flood(c, bytes([0x16, 0x03, 0x03, 0x00, 0x01, 0x00]))


def truncated_hello(c) -> None:
    hello = client_hello_bytes("localhost")[3]
    c.sendall(hello[: len(hello) // 2])


SERVER_CASES = {
    "garbage (HTTP)": (lambda c: c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"), "peer does not speak TLS"),
    # OpenSSL's server takes an alert before any ClientHello as an unexpected message
    "fatal alert": (lambda c: c.sendall(ALERT_HANDSHAKE_FAILURE), "TLS handshake failed"),
    "reset": (lambda c: reset(c), "reset"),
    "truncated ClientHello": (truncated_hello, "peer closed the connection during the handshake"),
    "oversized record": (lambda c: c.sendall(OVERSIZED_RECORD), "TLS handshake failed"),
    "fragmented ClientHello flood": (fragmented_hello_flood, ""),
}


def test_hostile_clients(tls, passed):
    reasons = {}
    for name, (behave, reason) in SERVER_CASES.items():
        g = make()
        listener, port = listen(g, "ipv4")
        peer = socket.create_connection(("127.0.0.1", port), timeout=BOUND)
        block(listener.subscribe())
        accepted, rx, tx = listener.accept()
        thread = threading.Thread(target=lambda: (behave(peer), peer.close()), daemon=True)
        thread.start()
        conn = tls.server(rx.source, tx.sink)
        assert drive(conn, conn.settled_or_paused, BOUND), f"{name}: still pending after {BOUND} s"
        assert conn.failure is not None and reason in conn.failure, (name, conn.failure)
        reasons[name] = conn.failure
        conn.release()
        rx.drop(), tx.drop(), accepted.drop(), listener.drop()
        thread.join(BOUND)
    passed(f"{len(SERVER_CASES)} hostile clients ({', '.join(SERVER_CASES)}): each a failed handshake "
           f"(flood: {reasons['fragmented ClientHello flood']})")
