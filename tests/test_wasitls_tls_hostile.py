"""A wasitls:tls@0.1.0 guest server (the seed's minimal server) against clients a TLS test suite
would send: another TLS implementation (tlslite-ng, pure Python), fragmented and malformed
handshakes, old protocol versions, non-TLS bytes, clients that vanish. The host answers as OpenSSL
does (an alert where TLS has one), the guest sees a failed handshake and serves the next client."""

from __future__ import annotations

import socket
import ssl

import pytest

from wasitls_tls_helpers import TIMEOUT, GuestServer, client_hello_bytes, py_client_context, wasitls_command

tlslite_api = pytest.importorskip("tlslite.api", reason="tlslite-ng not installed: pip install tlslite-ng "
                                                        "(it is in the test extras: pip install -e '.[test]')")


ALERT, HANDSHAKE = 0x15, 0x16


@pytest.fixture(scope="module")
def min_server(build_guest):
    return build_guest("tls_min_server")


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    sock.settimeout(TIMEOUT)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def alert_description(reply: bytes) -> int | None:
    """The description of the first record if it is a plaintext fatal alert."""
    if len(reply) >= 7 and reply[0] == ALERT and reply[5] == 2:
        return reply[6]
    return None


def tlslite_get(port: int, pki, version: tuple[int, int], path: str) -> tuple[bytes, tuple[int, int], bytes]:
    """A tlslite-ng client: (response, negotiated version, the server's leaf certificate DER)."""
    settings = tlslite_api.HandshakeSettings()
    settings.minVersion = settings.maxVersion = version
    with connect(port) as sock:
        conn = tlslite_api.TLSConnection(sock)
        conn.handshakeClientCert(settings=settings, serverName="localhost")
        leaf = conn.session.serverCertChain.x509List[0].bytes
        negotiated = conn.version
        conn.write(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        response = b""
        while True:
            try:
                chunk = conn.read()
            except (tlslite_api.TLSAbruptCloseError, tlslite_api.TLSRemoteAlert):
                break
            if not chunk:
                break
            response += chunk
        conn.close()
    return response, negotiated, bytes(leaf)


def test_tlslite_ng_client_tls12_and_tls13(min_server, pkis):
    """A second TLS implementation as the client: both versions complete, the guest's identity is
    what tlslite-ng received, and each gets its own answer."""
    pki = pkis["RSA"]
    cmd = wasitls_command(min_server, [0, 2, pki.localhost.guest_spec()], pki=pki, listen=True)
    with GuestServer(cmd) as guest:
        r12, v12, leaf12 = tlslite_get(guest.port, pki, (3, 3), "/tlslite12")
        r13, v13, leaf13 = tlslite_get(guest.port, pki, (3, 4), "/tlslite13")
        run = guest.finish()
    assert run.returncode == 0, run
    assert (v12, v13) == ((3, 3), (3, 4))
    assert leaf12 == leaf13 == pki.localhost.der
    assert r12.endswith(b"\r\n\r\nok 0\n") and r13.endswith(b"\r\n\r\nok 1\n")
    assert run.lines[1:] == ["conn=0 handshake=ok", "conn=0 request=GET /tlslite12 HTTP/1.1",
                             "conn=1 handshake=ok", "conn=1 request=GET /tlslite13 HTTP/1.1"], run


def fragmented_client(port: int, pki) -> bytes:
    """A Python ssl client whose ClientHello is cut into one-byte handshake records (legal TLS)."""
    obj, incoming, outgoing, hello = client_hello_bytes("localhost", version="TLSv1.2")
    body = hello[5:5 + int.from_bytes(hello[3:5], "big")]
    with connect(port) as sock:
        sock.sendall(b"".join(b"\x16\x03\x01\x00\x01" + body[i:i + 1] for i in range(len(body))))
        while True:  # run the rest of the handshake over the socket
            try:
                obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                if out := outgoing.read():
                    sock.sendall(out)
                data = sock.recv(65536)
                if not data:
                    raise AssertionError("the server closed during a fragmented handshake")
                incoming.write(data)
        sock.sendall(outgoing.read())
        obj.write(b"GET /fragmented HTTP/1.1\r\n\r\n")
        sock.sendall(outgoing.read())
        response = b""
        while b"ok " not in response:
            data = sock.recv(65536)
            if not data:
                break
            incoming.write(data)
            try:
                response += obj.read(65536)
            except ssl.SSLWantReadError:
                pass
    return response


HOSTILE = [
    # (name, bytes the client sends, what the server must answer)
    ("application data before any handshake", b"\x17\x03\x03\x00\x05hello", "unexpected_message"),
    ("a record longer than TLS allows", b"\x16\x03\x01\x48\x01" + b"\x01" * 100, "record_overflow"),
    ("a ClientHello too short to parse", b"\x16\x03\x01\x00\x08\x01\x00\x00\x04\x03\x03\x00\x00", "decode_error"),
    ("plain HTTP", b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", "close"),
    ("half a ClientHello, then gone", None, "any"),  # nobody reads the answer
]
DESCRIPTIONS = {"unexpected_message": 10, "record_overflow": 22, "decode_error": 50, "protocol_version": 70}


def test_hostile_clients_get_alerts_and_the_server_goes_on(min_server, pkis):
    """Each malformed client gets OpenSSL's fatal alert (or a close where TLS has none), the guest
    sees `handshake=failed` and serves the next; an SSLv3/TLS 1.0-only client gets protocol_version;
    a fragmented ClientHello completes; a normal client is served at the end."""
    pki = pkis["RSA"]
    count = len(HOSTILE) + 3
    cmd = wasitls_command(min_server, [0, count, pki.localhost.guest_spec()], pki=pki, listen=True)
    replies = {}
    with GuestServer(cmd) as guest:
        for name, data, _ in HOSTILE:
            with connect(guest.port) as sock:
                if data is None:
                    data = client_hello_bytes("localhost")[3]
                    sock.sendall(data[: len(data) // 2])
                    sock.shutdown(socket.SHUT_WR)
                else:
                    sock.sendall(data)
                replies[name] = read_until_closed(sock)
        settings = tlslite_api.HandshakeSettings()
        settings.minVersion = settings.maxVersion = (3, 1)  # TLS 1.0 only
        with connect(guest.port) as sock:
            with pytest.raises(tlslite_api.TLSRemoteAlert) as old:
                tlslite_api.TLSConnection(sock).handshakeClientCert(settings=settings, serverName="localhost")
        fragmented = fragmented_client(guest.port, pki)
        ctx = py_client_context(pki, "TLSv1.3")
        with connect(guest.port) as sock, ctx.wrap_socket(sock, server_hostname="localhost") as tls:
            tls.sendall(b"GET /last HTTP/1.1\r\n\r\n")
            last = read_until_closed(tls)
        run = guest.finish()
    for name, _, expected in HOSTILE:
        if expected == "any":
            continue
        if expected == "close":
            assert alert_description(replies[name]) is None, (name, replies[name])
        else:
            assert alert_description(replies[name]) == DESCRIPTIONS[expected], (name, replies[name])
    assert old.value.description == DESCRIPTIONS["protocol_version"]
    assert fragmented.endswith(b"ok %d\n" % (len(HOSTILE) + 1)), fragmented
    assert last.endswith(b"ok %d\n" % (len(HOSTILE) + 2)), last
    failed = [f"conn={n} handshake=failed" for n in range(len(HOSTILE) + 1)]
    assert [line for line in run.lines if "handshake=failed" in line] == failed, run
    assert run.returncode == 0, run
    assert "Traceback" not in run.err and "internal error" not in run.err, run.err
    # one trace line per connection, failures named, the alert counted in the bytes sent
    traces = [line for line in run.err.splitlines() if line.startswith("tls: ")]
    assert len(traces) == count, run.err
    assert " sent=7 " in traces[0] and "ended=failed: peer does not speak TLS" in traces[0], traces[0]
