"""Resources stay flat over many connections: after a warm-up, thousands of TCP connections and of
TLS connections (the host's TLS as client against a Python ssl server, each with a handshake, a
request, an answer and close_notify) leave the process's open descriptors and its resident memory
where they were."""

from __future__ import annotations

import os
import socket
import ssl
import threading

import pytest
import trustme

from reliability_settings import scaled
from sockets_helpers import TIMEOUT, connect, make
from wasitls.lifetime import Lifetime
from wasitls.tls.config import build_tls_config
from wasitls.tls_streams import GuestTls
from wasitls.wasi.io.streams import StreamClosed
from test_hostile_peers import drive

pytestmark = pytest.mark.usefixtures("close_guest_sockets")

TCP_CONNECTIONS = scaled(1000, 20000)
TLS_CONNECTIONS = scaled(500, 5000)
WARM_UP = 100
RSS_SLACK = 16 << 20  # allocator noise; a leak of even 4 KiB per connection would exceed it at full scale


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class LoopServer(threading.Thread):
    """Accepts connections one after another until closed; `serve(conn)` handles each."""

    def __init__(self, serve):
        super().__init__(daemon=True)
        self.serve = serve
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]

    def run(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.settimeout(TIMEOUT)
            try:
                self.serve(conn)
            except (ssl.SSLError, OSError):
                pass
            finally:
                conn.close()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.sock.close()
        self.join(TIMEOUT)


def answer_tcp(conn):
    conn.sendall(conn.recv(100))


def measure(count: int, one) -> tuple[int, int, int, int]:
    for _ in range(WARM_UP):
        one()
    fds, memory = open_fds(), rss()
    for _ in range(count):
        one()
    return fds, open_fds(), memory, rss()


def test_tcp_connections_leave_nothing_behind(passed):
    g = make()
    with LoopServer(answer_tcp) as peer:
        def one():
            sock, rx, tx = connect(g, "ipv4", peer.port)
            sock.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as for TLS below
            tx.blocking_write_and_flush(b"ping")
            assert bytes(rx.blocking_read(10)) == b"ping"
            rx.drop(), tx.drop(), sock.drop()

        fds0, fds1, rss0, rss1 = measure(TCP_CONNECTIONS, one)
    assert fds1 <= fds0 + 2, (fds0, fds1)
    assert rss1 - rss0 < RSS_SLACK, (rss0, rss1)
    passed(f"{TCP_CONNECTIONS} TCP connections: open fds {fds0} -> {fds1}, RSS {rss0 >> 20} -> {rss1 >> 20} MiB")


def test_tls_connections_leave_nothing_behind(tmp_path, passed):
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.num_tickets = 0  # tickets would arrive after our close_notify, and the host keeps no sessions
    ca.issue_cert("localhost").configure_cert(server_ctx)
    tls = GuestTls(build_tls_config(ca_file=str(tmp_path / "ca.pem")), Lifetime())

    def answer_tls(conn):
        with server_ctx.wrap_socket(conn, server_side=True) as t:
            t.sendall(t.recv(100).upper())
            t.unwrap()

    g = make()
    with LoopServer(answer_tls) as peer:
        def one():
            sock, rx, tx = connect(g, "ipv4", peer.port)
            # without it the request waits for the server's delayed ACK of our Finished (Nagle): 40 ms
            sock.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = tls.client("localhost", rx.source, tx.sink)
            conn.advance()
            assert drive(conn, conn.handshake_settled, TIMEOUT) and conn.failure is None, conn.failure
            conn.write(b"ping")
            conn.flush()
            assert drive(conn, conn.readable, TIMEOUT)
            assert bytes(conn.read(100)) == b"PING"
            conn.close_output()
            while True:  # the server's close_notify
                assert drive(conn, conn.readable, TIMEOUT)
                try:
                    conn.read(100)
                except StreamClosed:
                    break
            conn.release()
            rx.drop(), tx.drop(), sock.drop()

        fds0, fds1, rss0, rss1 = measure(TLS_CONNECTIONS, one)
    assert fds1 <= fds0 + 2, (fds0, fds1)
    assert rss1 - rss0 < RSS_SLACK, (rss0, rss1)
    assert len(tls.live) == 0
    passed(f"{TLS_CONNECTIONS} TLS connections (handshake, request, answer, close_notify both ways): "
           f"open fds {fds0} -> {fds1}, RSS {rss0 >> 20} -> {rss1 >> 20} MiB")
