"""wasi:sockets/network and instance-network driven from Python: whether a guest has a network at all,
the network-error-code of a failed stream operation, and the sockets the host closes when a guest exits."""

from __future__ import annotations

import socket
import struct

import pytest

from sockets_helpers import TIMEOUT, addr, block, connect, listen, make, server
from wasitls.component.values import Err, Variant
from wasitls.wasi.io.error import IoError
from wasitls.wasi.sockets.network import open_resources

pytestmark = pytest.mark.usefixtures("close_guest_sockets")


def test_no_network_policy_denies_everything():
    # As `wasmtime run` without -S inherit-network: with no network granted, not even a socket is made.
    g = make(allow_net=[], allow_listen=[])
    for family in ("ipv4", "ipv6"):
        with pytest.raises(Err) as e:
            g.tcp.create_tcp_socket(family)
        assert e.value.value == "access-denied"
        with pytest.raises(Err) as e:
            g.udp.create_udp_socket(family)
        assert e.value.value == "access-denied"
    assert open_resources(g.ctx) == []


def test_any_grant_allows_sockets_and_denies_outside_it():
    # With some network granted, sockets are made and each connect or bind is checked on its own.
    g = make(allow_net=["127.0.0.1:1"], allow_listen=[])
    tcp = g.tcp.create_tcp_socket("ipv4")
    with pytest.raises(Err, match="access-denied"):
        tcp.start_connect(g.network, addr("ipv4", 80))
    with pytest.raises(Err, match="access-denied"):
        tcp.start_bind(g.network, addr("ipv4", 8080))
    udp = g.udp.create_udp_socket("ipv4")
    with pytest.raises(Err, match="access-denied"):
        udp.start_bind(g.network, addr("ipv4", 5353))
    tcp.drop()
    udp.drop()
    g = make(allow_net=[], allow_listen=["127.0.0.1:0"])
    tcp = g.tcp.create_tcp_socket("ipv4")
    with pytest.raises(Err, match="access-denied"):
        tcp.start_connect(g.network, addr("ipv4", 80))
    tcp.drop()


def test_connection_reset_reports_network_error_code():
    g = make()

    def handler(conn):
        conn.recv(10)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with RST

    port, done = server("ipv4", handler)
    sock, input_stream, output_stream = connect(g, "ipv4", port)
    output_stream.blocking_write_and_flush(b"x")
    done.result(TIMEOUT)
    block(input_stream.subscribe())
    with pytest.raises(Err) as e:
        input_stream.read(10)
    case, error = e.value.value
    assert case == "last-operation-failed"
    assert isinstance(error, IoError)
    assert g.net_iface.network_error_code(error) == "connection-reset"
    assert error.to_debug_string() == "ConnectionReset"  # wasmtime's words (its socket error enum)
    with pytest.raises(Err) as e:
        input_stream.read(10)
    assert e.value.value == Variant("closed")
    assert g.net_iface.network_error_code(IoError("not a socket error")) is None
    sock.drop()


def test_closers_close_every_socket_at_exit():
    g = make()
    listener, port = listen(g, "ipv4")
    client, input_stream, output_stream = connect(g, "ipv4", port)
    block(listener.subscribe())
    accepted, *_ = listener.accept()
    udp = g.udp.create_udp_socket("ipv4")
    assert len(open_resources(g.ctx)) == 4
    g.ctx.lifetime.end()
    assert open_resources(g.ctx) == []
    assert listener.sock.fileno() == -1 and accepted.sock.fileno() == -1 and udp.sock.fileno() == -1
    with pytest.raises(Err) as e:
        input_stream.read(1)
    assert e.value.value == Variant("closed")
