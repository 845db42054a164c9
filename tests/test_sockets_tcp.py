"""wasi:sockets/tcp and tcp-create-socket driven from Python, the way a guest would call them, against real
loopback peers."""

from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest

from sockets_helpers import (FAMILIES, LOOPBACK, TIMEOUT, UNSPECIFIED, addr, block, blocking_bind, code, connect,
                             free_port, inherit_network, ipv6_works, listen, make, port_of, read_all, recv_all,
                             server, write_all)
from wasitls.component.values import Err, Variant
from wasitls.wasi.sockets.network import open_resources

pytestmark = pytest.mark.usefixtures("close_guest_sockets")


# -- TCP client --------------------------------------------------------------------------------

@pytest.mark.parametrize("family", FAMILIES)
def test_tcp_connect_both_directions(family):
    g = make()

    def handler(conn):
        request = recv_all(conn)  # until the guest shuts down its sending side
        conn.sendall(b"reply:" + request)
        return request

    port, done = server(family, handler)
    sock, input_stream, output_stream = connect(g, family, port)
    assert sock.address_family() == family
    assert port_of(sock.remote_address()) == port
    assert sock.remote_address().case == family
    assert port_of(sock.local_address()) != 0
    assert not sock.is_listening()

    write_all(output_stream, b"hello over tcp")
    sock.shutdown("send")
    assert done.result(TIMEOUT) == b"hello over tcp"
    assert read_all(input_stream) == b"reply:hello over tcp"

    output_stream.drop()
    input_stream.drop()
    sock.drop()
    assert open_resources(g.ctx) == []


def test_tcp_connect_refused():
    g = make()
    sock = g.tcp.create_tcp_socket("ipv4")
    sock.start_connect(g.network, addr("ipv4", free_port("ipv4")))
    block(sock.subscribe())
    with pytest.raises(Err) as e:
        sock.finish_connect()
    assert e.value.value == "connection-refused"
    # a failed connect leaves the socket closed: every later operation is invalid-state
    with pytest.raises(Err, match="invalid-state"):
        sock.start_connect(g.network, addr("ipv4", 80))
    with pytest.raises(Err, match="invalid-state"):
        sock.local_address()
    with pytest.raises(Err, match="invalid-state"):
        sock.keep_alive_enabled()
    with pytest.raises(Err, match="not-in-progress"):
        sock.finish_connect()
    sock.drop()


def test_tcp_connect_policy():
    g = make(allow_net=["127.0.0.1:1"], allow_listen=[])
    sock = g.tcp.create_tcp_socket("ipv4")
    with pytest.raises(Err) as e:
        sock.start_connect(g.network, addr("ipv4", 2))
    assert e.value.value == "access-denied"
    with pytest.raises(Err, match="access-denied"):
        sock.start_connect(g.network, addr("ipv4", 1, "127.0.0.2"))
    with pytest.raises(Err, match="access-denied"):
        sock.start_bind(g.network, addr("ipv4", 0))
    # the allowed address gets through the policy (and is refused by the OS: nobody listens there)
    sock.start_connect(g.network, addr("ipv4", 1))
    block(sock.subscribe())
    with pytest.raises(Err, match="connection-refused"):
        sock.finish_connect()
    sock.drop()


# -- TCP server --------------------------------------------------------------------------------

@pytest.mark.parametrize("family", FAMILIES)
def test_tcp_listen_accept(family):
    g = make()
    listener, port = listen(g, family)
    assert listener.is_listening()
    assert port != 0
    with pytest.raises(Err, match="would-block"):
        listener.accept()
    pollable = listener.subscribe()
    assert not pollable.ready()

    def client():
        with socket.create_connection((LOOPBACK[family], port), timeout=TIMEOUT) as c:
            c.sendall(b"from client")
            c.shutdown(socket.SHUT_WR)
            return c.getsockname()[1], recv_all(c)

    with ThreadPoolExecutor(1) as pool:
        result = pool.submit(client)
        block(pollable)
        accepted, input_stream, output_stream = listener.accept()
        assert accepted.address_family() == family
        assert not accepted.is_listening()
        assert port_of(accepted.local_address()) == port
        assert read_all(input_stream) == b"from client"
        write_all(output_stream, b"from guest")
        accepted.drop()  # closing the socket ends the connection
        client_port, reply = result.result(TIMEOUT)
    assert reply == b"from guest"
    assert client_port != port
    listener.set_listen_backlog_size(16)  # a listening socket takes a new backlog on Linux
    listener.drop()
    assert open_resources(g.ctx) == []


def test_accepted_remote_address_and_options():
    g = make()
    listener, port = listen(g, "ipv4")
    listener.set_keep_alive_enabled(True)
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as c:
        block(listener.subscribe())
        accepted, input_stream, output_stream = listener.accept()
        assert port_of(accepted.remote_address()) == c.getsockname()[1]
        assert accepted.remote_address().value["address"] == (127, 0, 0, 1)
        assert accepted.keep_alive_enabled()  # inherited from the listener
        accepted.drop()
    listener.drop()


def test_bind_policy_by_port():
    g = make(allow_listen=["127.0.0.1:0"])
    sock = g.tcp.create_tcp_socket("ipv4")
    with pytest.raises(Err, match="access-denied"):
        sock.start_bind(g.network, addr("ipv4", 0, "127.0.0.2"))
    with pytest.raises(Err, match="access-denied"):
        sock.start_bind(g.network, addr("ipv4", free_port("ipv4")))
    sock.start_bind(g.network, addr("ipv4", 0))
    sock.finish_bind()
    sock.drop()


def test_bind_address_in_use():
    g = make()
    first, port = listen(g, "ipv4")
    g2 = make(allow_listen=[str(port)])
    second = g2.tcp.create_tcp_socket("ipv4")
    with pytest.raises(Err, match="address-in-use"):
        second.start_bind(g2.network, addr("ipv4", port))
    # the failed bind leaves the socket unbound, so binding again is allowed
    with pytest.raises(Err, match="not-in-progress"):
        second.finish_bind()
    first.drop()
    second.drop()


# -- shutdown, drop ----------------------------------------------------------------------------

def test_shutdown():
    g = make()
    got_eof = threading.Event()

    def handler(conn):
        data = recv_all(conn)
        got_eof.set()
        conn.sendall(b"after your fin")  # the guest shut down receiving: it never sees this
        return data

    port, done = server("ipv4", handler)
    sock, input_stream, output_stream = connect(g, "ipv4", port)
    write_all(output_stream, b"last words")
    sock.shutdown("send")
    sock.shutdown("send")  # idempotent
    assert done.result(TIMEOUT) == b"last words"
    assert got_eof.is_set()
    with pytest.raises(Err) as e:
        output_stream.check_write()
    assert e.value.value == Variant("closed")

    sock.shutdown("receive")
    with pytest.raises(Err) as e:
        input_stream.read(100)
    assert e.value.value == Variant("closed")
    assert input_stream.subscribe().ready()
    sock.shutdown("both")
    sock.drop()


def test_shutdown_send_waits_for_buffered_bytes():
    """shutdown(send) with bytes still buffered sends them first, even while the guest waits elsewhere.

    wasmtime finishes such a write in a background task; here the flusher thread does.
    """
    g = make()
    release = threading.Event()

    def handler(conn):
        release.wait(TIMEOUT)
        return recv_all(conn)

    port, done = server("ipv4", handler, rcvbuf=4096)
    sock, input_stream, output_stream = connect(g, "ipv4", port)
    sock.set_send_buffer_size(4096)
    payload = bytes(range(256)) * 8192  # 2 MiB: more than the kernel and our buffer hold together
    sent = 0
    while output_stream.check_write() and sent < len(payload):
        n = min(output_stream.check_write(), len(payload) - sent)
        output_stream.write(payload[sent:sent + n])
        sent += n
    assert sent < len(payload)
    sock.shutdown("send")
    assert output_stream.check_write() == 0  # the shutdown is pending behind the buffered bytes
    release.set()
    # the guest only sleeps; the bytes and then the FIN still reach the peer
    assert done.result(TIMEOUT) == payload[:sent]
    pollable = output_stream.subscribe()
    block(pollable)
    with pytest.raises(Err) as e:
        output_stream.check_write()
    assert e.value.value == Variant("closed")
    sock.drop()


def test_dropping_output_stream_does_not_shut_down():
    """As in wasmtime: only shutdown(send) or dropping the socket ends the sending side."""
    g = make()
    port, done = server("ipv4", recv_all)
    sock, input_stream, output_stream = connect(g, "ipv4", port)
    write_all(output_stream, b"data")
    output_stream.drop()
    time.sleep(0.2)
    assert not done.done()
    input_stream.drop()
    sock.drop()
    assert done.result(TIMEOUT) == b"data"


# -- options -----------------------------------------------------------------------------------

@pytest.mark.parametrize("family", FAMILIES)
def test_tcp_options(family):
    g = make()
    sock = g.tcp.create_tcp_socket(family)
    assert sock.address_family() == family
    assert not sock.is_listening()

    sock.set_keep_alive_enabled(True)
    assert sock.keep_alive_enabled() is True
    sock.set_keep_alive_enabled(False)
    assert sock.keep_alive_enabled() is False

    sock.set_keep_alive_idle_time(1_500_000_000)  # whole seconds, rounded up as wasmtime (rustix) does
    assert sock.keep_alive_idle_time() == 2_000_000_000
    sock.set_keep_alive_interval(2_000_000_001)
    assert sock.keep_alive_interval() == 3_000_000_000
    sock.set_keep_alive_idle_time(1)  # clamped up to a second, never 0
    assert sock.keep_alive_idle_time() == 1_000_000_000
    sock.set_keep_alive_interval(30 * 10**9)
    assert sock.keep_alive_interval() == 30 * 10**9
    sock.set_keep_alive_count(5)
    assert sock.keep_alive_count() == 5
    sock.set_keep_alive_count(1000)  # clamped
    assert sock.keep_alive_count() == 127
    for setter in (sock.set_keep_alive_idle_time, sock.set_keep_alive_interval, sock.set_keep_alive_count,
                   sock.set_hop_limit, sock.set_receive_buffer_size, sock.set_send_buffer_size,
                   sock.set_listen_backlog_size):
        with pytest.raises(Err, match="invalid-argument"):
            setter(0)

    sock.set_hop_limit(42)
    assert sock.hop_limit() == 42
    sock.set_receive_buffer_size(65536)
    assert 0 < sock.receive_buffer_size()
    sock.set_send_buffer_size(65536)
    assert 0 < sock.send_buffer_size()
    sock.set_receive_buffer_size(2**64 - 1)  # a hint the OS clamps, never an error
    sock.set_listen_backlog_size(2**64 - 1)
    sock.drop()


# -- state machine misuse ----------------------------------------------------------------------

def test_tcp_state_machine_errors():
    g = make()
    sock = g.tcp.create_tcp_socket("ipv4")
    with pytest.raises(Err, match="not-in-progress"):
        sock.finish_bind()
    with pytest.raises(Err, match="not-in-progress"):
        sock.finish_connect()
    with pytest.raises(Err, match="not-in-progress"):
        sock.finish_listen()
    with pytest.raises(Err, match="invalid-state"):
        sock.start_listen()  # must be bound first
    with pytest.raises(Err, match="invalid-state"):
        sock.accept()
    with pytest.raises(Err, match="invalid-state"):
        sock.local_address()
    with pytest.raises(Err, match="invalid-state"):
        sock.remote_address()
    with pytest.raises(Err, match="invalid-state"):
        sock.shutdown("both")
    assert sock.subscribe().ready()  # nothing in progress: ready at once

    # addresses the socket cannot use
    with pytest.raises(Err, match="invalid-argument"):
        sock.start_bind(g.network, addr("ipv6", 0))  # wrong family
    with pytest.raises(Err, match="invalid-argument"):
        sock.start_bind(g.network, addr("ipv4", 0, "224.0.0.1"))  # multicast
    with pytest.raises(Err, match="invalid-argument"):
        sock.start_connect(g.network, addr("ipv4", 0))  # port 0
    with pytest.raises(Err, match="invalid-argument"):
        sock.start_connect(g.network, addr("ipv4", 80, "0.0.0.0"))
    with pytest.raises(Err, match="invalid-argument"):
        sock.start_connect(g.network, addr("ipv4", 80, "255.255.255.255"))

    sock.start_bind(g.network, addr("ipv4", 0))
    with pytest.raises(Err, match="invalid-state"):
        sock.local_address()  # not until finish-bind
    with pytest.raises(Err, match="invalid-state"):
        sock.start_bind(g.network, addr("ipv4", 0))
    sock.finish_bind()
    with pytest.raises(Err, match="not-in-progress"):
        sock.finish_bind()
    assert port_of(sock.local_address()) != 0
    sock.start_listen()
    with pytest.raises(Err, match="invalid-state"):
        sock.start_listen()
    with pytest.raises(Err, match="invalid-state"):
        sock.set_listen_backlog_size(10)  # between start-listen and finish-listen
    sock.finish_listen()
    with pytest.raises(Err, match="invalid-state"):
        sock.start_connect(g.network, addr("ipv4", 80))
    with pytest.raises(Err, match="not-in-progress"):
        sock.finish_listen()
    sock.drop()


def test_tcp_connect_in_progress_errors():
    g = make()
    listener, port = listen(g, "ipv4")
    sock = g.tcp.create_tcp_socket("ipv4")
    sock.start_connect(g.network, addr("ipv4", port))
    # until the pollable has seen the connect end, a second one is a concurrency conflict
    with pytest.raises(Err, match="concurrency-conflict"):
        sock.start_connect(g.network, addr("ipv4", port))
    with pytest.raises(Err, match="invalid-state"):
        sock.start_bind(g.network, addr("ipv4", 0))
    with pytest.raises(Err, match="invalid-state"):
        sock.keep_alive_enabled()  # no options while connecting (wasmtime)
    with pytest.raises(Err, match="invalid-state"):
        sock.local_address()
    block(sock.subscribe())
    with pytest.raises(Err, match="invalid-state"):
        sock.start_connect(g.network, addr("ipv4", port))
    sock.finish_connect()
    with pytest.raises(Err, match="not-in-progress"):
        sock.finish_connect()
    with pytest.raises(Err, match="invalid-state"):
        sock.start_listen()
    with pytest.raises(Err, match="invalid-state"):
        sock.set_listen_backlog_size(5)
    sock.drop()
    listener.drop()


def test_ipv6_socket_refuses_ipv4_mapped_addresses():
    if not ipv6_works():
        pytest.skip("no IPv6 loopback")
    g = make()
    sock = g.tcp.create_tcp_socket("ipv6")
    with pytest.raises(Err, match="invalid-argument"):
        sock.start_connect(g.network, addr("ipv6", 80, "::ffff:127.0.0.1"))
    with pytest.raises(Err, match="invalid-argument"):
        sock.start_bind(g.network, addr("ipv6", 0, "::ffff:127.0.0.1"))
    with pytest.raises(Err, match="invalid-argument"):
        sock.start_bind(g.network, addr("ipv4", 0))
    sock.drop()


# -- wasmtime's own p2 socket test programs, re-expressed over the interface classes -------------
# (crates/test-programs/src/bin/p2_tcp_*.rs: a guest passing them on `wasmtime run -S inherit-network`
# must see the same results here; their helpers are in sockets_helpers.py)

SECOND = 1_000_000_000


def blocking_listen(sock):
    sock.start_listen()
    sock.finish_listen()


def blocking_connect(g, sock, address):
    sock.start_connect(g.network, address)
    pollable = sock.subscribe()
    while True:
        try:
            return sock.finish_connect()
        except Err as e:
            if e.value != "would-block":
                raise
            block(pollable)


def blocking_accept(sock):
    pollable = sock.subscribe()
    while True:
        try:
            return sock.accept()
        except Err as e:
            if e.value != "would-block":
                raise
            block(pollable)


def connected_pair(g, family):
    listener = g.tcp.create_tcp_socket(family)
    blocking_bind(g, listener, addr(family, 0))
    blocking_listen(listener)
    client = g.tcp.create_tcp_socket(family)
    client_in, client_out = blocking_connect(g, client, listener.local_address())
    accepted, accepted_in, accepted_out = blocking_accept(listener)
    return (SimpleNamespace(socket=accepted, input=accepted_in, output=accepted_out),
            SimpleNamespace(socket=client, input=client_in, output=client_out), listener)


ALL_OPTIONS_OK = [
    ("set_listen_backlog_size", 32), ("keep_alive_enabled",), ("set_keep_alive_enabled", False),
    ("keep_alive_idle_time",), ("set_keep_alive_idle_time", 1), ("keep_alive_interval",),
    ("set_keep_alive_interval", 1), ("keep_alive_count",), ("set_keep_alive_count", 1), ("hop_limit",),
    ("set_hop_limit", 255), ("receive_buffer_size",), ("set_receive_buffer_size", 16000),
    ("send_buffer_size",), ("set_send_buffer_size", 16000),
]


@pytest.mark.parametrize("family", FAMILIES)
def test_wasmtime_tcp_states(family):
    g = inherit_network()
    loopback = addr(family, 0)

    sock = g.tcp.create_tcp_socket(family)  # unbound
    assert [code(sock.finish_bind), code(sock.finish_connect), code(sock.start_listen), code(sock.finish_listen),
            code(sock.accept), code(sock.shutdown, "both"), code(sock.local_address), code(sock.remote_address)] == \
        ["not-in-progress", "not-in-progress", "invalid-state", "not-in-progress", "invalid-state",
         "invalid-state", "invalid-state", "invalid-state"]
    assert not sock.is_listening() and sock.address_family() == family
    assert [code(getattr(sock, name), *args) for name, *args in ALL_OPTIONS_OK] == ["ok"] * len(ALL_OPTIONS_OK)

    sock = g.tcp.create_tcp_socket(family)  # bound
    blocking_bind(g, sock, loopback)
    assert [code(sock.start_bind, g.network, loopback), code(sock.finish_bind), code(sock.finish_connect),
            code(sock.finish_listen), code(sock.accept), code(sock.shutdown, "both"), code(sock.local_address),
            code(sock.remote_address)] == \
        ["invalid-state", "not-in-progress", "not-in-progress", "not-in-progress", "invalid-state",
         "invalid-state", "ok", "invalid-state"]
    assert [code(getattr(sock, name), *args) for name, *args in ALL_OPTIONS_OK] == ["ok"] * len(ALL_OPTIONS_OK)

    blocking_listen(sock)  # listening
    assert [code(sock.start_bind, g.network, loopback), code(sock.finish_bind),
            code(sock.start_connect, g.network, loopback), code(sock.finish_connect), code(sock.start_listen),
            code(sock.finish_listen), code(sock.shutdown, "both"), code(sock.local_address),
            code(sock.remote_address)] == \
        ["invalid-state", "not-in-progress", "invalid-state", "not-in-progress", "invalid-state",
         "not-in-progress", "invalid-state", "ok", "invalid-state"]
    assert sock.is_listening()
    assert [code(getattr(sock, name), *args) for name, *args in ALL_OPTIONS_OK] == ["ok"] * len(ALL_OPTIONS_OK)

    client = g.tcp.create_tcp_socket(family)  # connected
    listener_address = sock.local_address()
    blocking_connect(g, client, listener_address)
    assert [code(client.start_bind, g.network, loopback), code(client.finish_bind),
            code(client.start_connect, g.network, listener_address), code(client.finish_connect),
            code(client.start_listen), code(client.finish_listen), code(client.accept),
            code(client.local_address), code(client.remote_address)] == \
        ["invalid-state", "not-in-progress", "invalid-state", "not-in-progress", "invalid-state",
         "not-in-progress", "invalid-state", "ok", "ok"]
    assert not client.is_listening()
    assert [code(getattr(client, name), *args) for name, *args in ALL_OPTIONS_OK[1:]] == \
        ["ok"] * (len(ALL_OPTIONS_OK) - 1)


@pytest.mark.parametrize("family", FAMILIES)
def test_wasmtime_tcp_bind(family):
    g = inherit_network()
    for ip in (LOOPBACK[family], UNSPECIFIED[family]):
        sock = g.tcp.create_tcp_socket(family)  # ephemeral port
        blocking_bind(g, sock, addr(family, 0, ip))
        bound = sock.local_address()
        assert bound.value["address"] == addr(family, 0, ip).value["address"] and port_of(bound) != 0

        sock = g.tcp.create_tcp_socket(family)  # specific port
        port = free_port(family)
        blocking_bind(g, sock, addr(family, port, ip))
        assert sock.local_address() == addr(family, port, ip)

        first = g.tcp.create_tcp_socket(family)  # address in use
        blocking_bind(g, first, addr(family, 0, ip))
        blocking_listen(first)
        second = g.tcp.create_tcp_socket(family)
        assert code(second.start_bind, g.network, first.local_address()) == "address-in-use"

    # SO_REUSEADDR: a port left in TIME_WAIT by a closed connection can be bound again at once
    client = g.tcp.create_tcp_socket(family)
    listener = g.tcp.create_tcp_socket(family)
    port = free_port(family)
    blocking_bind(g, listener, addr(family, port))
    blocking_listen(listener)
    client_streams = blocking_connect(g, client, addr(family, port))
    accepted, accepted_in, accepted_out = blocking_accept(listener)
    accepted_out.blocking_write_zeroes_and_flush(10)
    for resource in (accepted_in, accepted_out, accepted, listener, *client_streams):
        resource.drop()
    again = g.tcp.create_tcp_socket(family)
    blocking_bind(g, again, addr(family, port))
    blocking_listen(again)
    client.drop()

    reserved = "192.0.2.0" if family == "ipv4" else "2001:db8::"
    assert code(g.tcp.create_tcp_socket(family).start_bind, g.network, addr(family, 0, reserved)) == \
        "address-not-bindable"
    wrong = addr("ipv6" if family == "ipv4" else "ipv4", 0)
    assert code(g.tcp.create_tcp_socket(family).start_bind, g.network, wrong) == "invalid-argument"
    if family == "ipv6":
        v4, v6 = g.tcp.create_tcp_socket("ipv4"), g.tcp.create_tcp_socket("ipv6")
        assert code(v4.start_bind, g.network, addr("ipv4", 0, "255.255.255.255")) == "invalid-argument"
        assert code(v4.start_bind, g.network, addr("ipv4", 0, "224.254.0.0")) == "invalid-argument"
        assert code(v6.start_bind, g.network, addr("ipv6", 0, "ff00::")) == "invalid-argument"
        assert code(v6.start_bind, g.network, addr("ipv6", 0, "::ffff:127.0.0.1")) == "invalid-argument"


@pytest.mark.parametrize("family", FAMILIES)
def test_wasmtime_tcp_connect(family):
    g = inherit_network()
    some_port = 47
    assert code(blocking_connect, g, g.tcp.create_tcp_socket(family), addr(family, some_port, UNSPECIFIED[family])) \
        == "invalid-argument"
    assert code(blocking_connect, g, g.tcp.create_tcp_socket(family), addr(family, 0)) == "invalid-argument"
    wrong = addr("ipv6" if family == "ipv4" else "ipv4", some_port)
    assert code(blocking_connect, g, g.tcp.create_tcp_socket(family), wrong) == "invalid-argument"

    listener = g.tcp.create_tcp_socket(family)
    blocking_bind(g, listener, addr(family, 0))
    blocking_listen(listener)
    client = g.tcp.create_tcp_socket(family)  # explicitly bound client
    blocking_bind(g, client, addr(family, 0))
    blocking_connect(g, client, listener.local_address())

    if family == "ipv6":
        v4_listener = g.tcp.create_tcp_socket("ipv4")
        blocking_bind(g, v4_listener, addr("ipv4", 0))
        blocking_listen(v4_listener)
        v4_port = port_of(v4_listener.local_address())
        v6_client = g.tcp.create_tcp_socket("ipv6")
        assert code(blocking_connect, g, v6_client, v4_listener.local_address()) == "invalid-argument"
        assert code(blocking_connect, g, v6_client, addr("ipv6", v4_port, "::ffff:127.0.0.1")) == "invalid-argument"
        for bad in (addr("ipv4", some_port, "255.255.255.255"), addr("ipv4", some_port, "224.254.0.0")):
            assert code(blocking_connect, g, g.tcp.create_tcp_socket("ipv4"), bad) == "invalid-argument"
        assert code(blocking_connect, g, v6_client, addr("ipv6", some_port, "ff00::")) == "invalid-argument"


@pytest.mark.parametrize("family", FAMILIES)
def test_wasmtime_tcp_sockopts(family):
    g = inherit_network()
    sock = g.tcp.create_tcp_socket(family)  # defaults
    sock.keep_alive_enabled()
    assert sock.keep_alive_idle_time() > 0 and sock.keep_alive_interval() > 0 and sock.keep_alive_count() > 0
    assert sock.hop_limit() > 0 and sock.receive_buffer_size() > 0 and sock.send_buffer_size() > 0

    for name, value, expected in [  # input ranges: 0 is refused, anything else is clamped
        ("set_listen_backlog_size", 1, "ok"), ("set_listen_backlog_size", 2**64 - 1, "ok"),
        ("set_keep_alive_idle_time", 1, "ok"), ("set_keep_alive_idle_time", 2**64 - 1, "ok"),
        ("set_keep_alive_interval", 1, "ok"), ("set_keep_alive_interval", 2**64 - 1, "ok"),
        ("set_keep_alive_count", 1, "ok"), ("set_keep_alive_count", 2**32 - 1, "ok"),
        ("set_hop_limit", 1, "ok"), ("set_hop_limit", 255, "ok"),
        ("set_receive_buffer_size", 1, "ok"), ("set_receive_buffer_size", 2**64 - 1, "ok"),
        ("set_send_buffer_size", 1, "ok"), ("set_send_buffer_size", 2**64 - 1, "ok"),
    ]:
        sock = g.tcp.create_tcp_socket(family)
        assert code(getattr(sock, name), value) == expected, name
        assert code(getattr(sock, name), 0) == "invalid-argument", name
    sock = g.tcp.create_tcp_socket(family)
    sock.set_keep_alive_idle_time(1)
    assert 0 < sock.keep_alive_idle_time() <= SECOND
    sock.set_keep_alive_interval(1)
    assert 0 < sock.keep_alive_interval() <= SECOND

    def configure(s, n, buffer):
        s.set_keep_alive_idle_time(n * SECOND)
        s.set_keep_alive_interval(n * SECOND)
        s.set_keep_alive_count(n)
        s.set_hop_limit(n)
        s.set_receive_buffer_size(buffer)
        s.set_send_buffer_size(buffer)

    def readback(s):
        return (s.keep_alive_enabled(), s.keep_alive_idle_time(), s.keep_alive_interval(), s.keep_alive_count(),
                s.hop_limit(), s.receive_buffer_size(), s.send_buffer_size())

    sock = g.tcp.create_tcp_socket(family)  # readback
    sock.set_keep_alive_enabled(True)
    configure(sock, 42, 0x10000)
    assert readback(sock) == (True, 42 * SECOND, 42 * SECOND, 42, 42, 0x10000, 0x10000)

    for configure_after_listen in (False, True):  # accepted sockets inherit the listener's options
        listener = g.tcp.create_tcp_socket(family)
        default_keep_alive = listener.keep_alive_enabled()
        if not configure_after_listen:
            listener.set_keep_alive_enabled(not default_keep_alive)
            configure(listener, 42, 0x10000)
        blocking_bind(g, listener, addr(family, 0))
        blocking_listen(listener)
        if configure_after_listen:
            listener.set_keep_alive_enabled(not default_keep_alive)
            configure(listener, 42, 0x10000)
        blocking_connect(g, g.tcp.create_tcp_socket(family), listener.local_address())
        accepted, _, _ = blocking_accept(listener)
        expected = (not default_keep_alive, 42 * SECOND, 42 * SECOND, 42, 42, 0x10000, 0x10000)
        assert readback(accepted) == expected
        listener.set_keep_alive_enabled(default_keep_alive)
        configure(listener, 43, 0x20000)
        assert readback(accepted) == expected


@pytest.mark.parametrize("family", FAMILIES)
def test_wasmtime_tcp_streams(family):
    g = inherit_network()

    server, client, _ = connected_pair(g, family)  # closed by the peer's shutdown
    server.socket.shutdown("both")
    for resource in (server.input, server.output, server.socket):
        resource.drop()
    block(client.input.subscribe())
    assert code(client.input.read, 10) == Variant("closed")
    assert code(client.input.read, 0) == Variant("closed")

    server, client, _ = connected_pair(g, family)  # closed by a local shutdown, even with data waiting
    server.output.blocking_write_and_flush(b"Lorem ipsum dolor sit amet")
    block(client.input.subscribe())
    client.socket.shutdown("receive")
    assert code(client.input.read, 10) == Variant("closed")
    assert code(client.input.read, 0) == Variant("closed")

    server, client, _ = connected_pair(g, family)  # output closed by a local shutdown
    assert client.output.check_write() >= 3
    client.socket.shutdown("send")
    assert code(client.output.write, b"Hi!") == Variant("closed")
    assert code(client.output.check_write) == Variant("closed")
    assert code(client.output.flush) == Variant("closed")

    server, client, _ = connected_pair(g, family)  # shutdown loses no data: the peer is the same guest
    client.socket.set_send_buffer_size(1024)
    small = client.socket.send_buffer_size()
    big = min(client.output.check_write(), 100 * small)
    assert big > small
    client.output.write(bytes(big))
    client.socket.shutdown("send")
    assert len(read_all(server.input)) == big

    server, client, _ = connected_pair(g, family)  # check-write is not rate limited
    block(client.output.subscribe())
    assert all(client.output.check_write() > 0 for _ in range(1000))

    server, client, _ = connected_pair(g, family)  # many small non-blocking writes all arrive
    block(client.output.subscribe())
    for _ in range(300):
        assert client.output.check_write() > 0
        client.output.write(b"x")
    client.socket.shutdown("send")
    assert len(read_all(server.input)) == 300


@pytest.mark.parametrize("family", FAMILIES)
def test_wasmtime_tcp_sample_application(family):
    g = inherit_network()
    listener = g.tcp.create_tcp_socket(family)
    blocking_bind(g, listener, addr(family, 0))
    listener.set_listen_backlog_size(32)
    blocking_listen(listener)
    address = listener.local_address()
    for message in (b"Hello, world!", b"Greetings, planet!"):
        client = g.tcp.create_tcp_socket(family)
        client_in, client_out = blocking_connect(g, client, address)
        client_out.blocking_write_and_flush(message)
        client_out.drop()
        client_in.drop()
        client.drop()  # gone before the server even accepts
        accepted, input_stream, _ = blocking_accept(listener)
        assert input_stream.read(0) == b""
        assert input_stream.blocking_read(len(message)) == message
        accepted.drop()
    listener.drop()
