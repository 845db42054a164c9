"""The glue between the TLS core and byte streams (tls_streams.py) against hostile raw-socket peers on
loopback, driven as a guest's poll would drive it: one readiness check does bounded work, so the
other pollables of the same poll are served while a peer floods, and a handshake that never
completes is failed with a reason once it has taken MAX_HANDSHAKE_BYTES."""

from __future__ import annotations

import time

import pytest
import trustme

from sockets_helpers import connect, make, server
from wasitls.lifetime import Lifetime
from wasitls.tls.config import build_tls_config
from wasitls.tls.engine import MAX_HANDSHAKE_BYTES
from wasitls.tls_streams import RECORD_SLACK, TURN_BYTES, GuestTls
from wasitls.wasi.io.poll import Deadline, wait_any
from wasitls.wasi.io.streams import StreamFailed

pytestmark = pytest.mark.usefixtures("close_guest_sockets")

# A handshake record (TLS 1.2 framing) holding one empty HelloRequest: OpenSSL's client accepts and
# ignores these before the ServerHello.
HELLO_REQUEST = bytes([0x16, 0x03, 0x03, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00])
FLOOD_LIMIT = 256 << 20  # the peer gives up after this much (the unfixed host read it all in one poll)


def flooding_peer(conn):
    """Read the ClientHello, then stream HelloRequest records until the client goes away."""
    conn.recv(65536)
    chunk, sent = HELLO_REQUEST * 50_000, 0
    try:
        while sent < FLOOD_LIMIT:
            conn.sendall(chunk)
            sent += len(chunk)
    except OSError:  # the client hung up, as it should
        pass
    return sent


@pytest.fixture(scope="module")
def ca_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(path))
    return str(path)


def test_handshake_record_flood_is_bounded_per_turn_and_in_total(ca_file):
    """Issue 10 F13: a peer streaming HelloRequest records kept the host inside one poll call (a
    guest's 2 s timeout fired after 60 s and 1.5 GB). Now every poll with an expired timeout
    returns that timeout after one turn of at most TURN_BYTES, and the handshake fails, naming
    the flood, once it has taken MAX_HANDSHAKE_BYTES."""
    lines: list[str] = []
    g = make()
    port, done = server("ipv4", flooding_peer)
    sock, rx, tx = connect(g, "ipv4", port)
    tls = GuestTls(build_tls_config(ca_file=ca_file, trace=lines.append), Lifetime())
    conn = tls.client("localhost", rx.source, tx.sink)
    conn.advance()  # the ClientHello leaves
    handshake = conn.when(conn.handshake_settled)
    give_up = time.monotonic() + 60  # a hang detector only: the peer floods for as long as it is read
    while not conn.handshake_settled():
        before = conn._engine.bytes_received
        ready = wait_any([handshake, Deadline(0)])  # the guest's other pollable: a timeout that has fired
        assert 1 in ready, "the timeout was not served"
        assert conn._engine.bytes_received - before <= TURN_BYTES + RECORD_SLACK
        assert time.monotonic() < give_up, "the handshake was never failed"
    assert "without completing the handshake" in conn.failure, conn.failure
    assert conn._engine.bytes_received <= MAX_HANDSHAKE_BYTES + RECORD_SLACK
    with pytest.raises(StreamFailed):
        conn.write_permit()
    conn.release()
    rx.drop(), tx.drop(), sock.drop()
    assert done.result(30) < FLOOD_LIMIT  # the peer was cut off, not served to the end
    assert len(lines) == 1 and "ended=failed: the peer sent over 256 KiB without completing" in lines[0], lines


def test_settings_failing_at_first_use_are_traced():
    """Issue 10 F8: settings built at the first TLS use (only the system trust store now) that fail
    are a bare error for the guest; the trace line says why instead of nothing."""
    from wasitls.tls.config import LazyTlsSettings, TlsConfigError

    def build():
        raise TlsConfigError("cannot load system roots (/nowhere)")

    lines: list[str] = []
    tls = GuestTls(LazyTlsSettings(build=build, trace=lines.append, keylog=None), Lifetime())
    with pytest.raises(ValueError):
        tls.client("localhost", None, None)
    assert lines == ["tls: settings failed: cannot load system roots (/nowhere)"]
