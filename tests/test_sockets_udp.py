"""wasi:sockets/udp and udp-create-socket driven from Python, the way a guest would call them, against real
loopback peers."""

from __future__ import annotations

import socket
from types import SimpleNamespace

import pytest

from sockets_helpers import (FAMILIES, LOOPBACK, PY_FAMILY, TIMEOUT, UNSPECIFIED, addr, block, blocking_bind, code,
                             inherit_network, make, port_of)
from wasitls.component.values import Err, Trap
from wasitls.wasi.sockets.network import open_resources

pytestmark = pytest.mark.usefixtures("close_guest_sockets")


def bound_udp(g: SimpleNamespace, family: str):
    sock = g.udp.create_udp_socket(family)
    sock.start_bind(g.network, addr(family, 0))
    sock.finish_bind()
    return sock


def receive_one(incoming) -> dict:
    pollable = incoming.subscribe()
    while True:
        got = incoming.receive(10)
        if got:
            assert len(got) == 1
            return got[0]
        block(pollable)


@pytest.mark.parametrize("family", FAMILIES)
def test_udp_round_trip(family):
    g = make()
    sock = bound_udp(g, family)
    assert sock.address_family() == family
    local_port = port_of(sock.local_address())
    with pytest.raises(Err, match="invalid-state"):
        sock.remote_address()
    assert sock.subscribe().ready()

    peer = socket.socket(PY_FAMILY[family], socket.SOCK_DGRAM)
    peer.bind((LOOPBACK[family], 0))
    peer.settimeout(TIMEOUT)
    peer_port = peer.getsockname()[1]

    # unconnected: every datagram names its destination
    incoming, outgoing = sock.stream(None)
    assert incoming.receive(0) == [] and incoming.receive(5) == []
    assert outgoing.check_send() == 16
    assert outgoing.send([{"data": b"one", "remote-address": addr(family, peer_port)},
                          {"data": b"two", "remote-address": addr(family, peer_port)}]) == 2
    data, source = peer.recvfrom(100)
    assert data == b"one" and source[1] == local_port
    assert peer.recvfrom(100)[0] == b"two"
    peer.sendto(b"back", source)
    datagram = receive_one(incoming)
    assert datagram["data"] == b"back"
    assert port_of(datagram["remote-address"]) == peer_port

    with pytest.raises(Trap):
        sock.stream(addr(family, peer_port))  # the first streams are still alive
    incoming.drop()
    outgoing.drop()

    # connected: sends need no address, and only the peer's datagrams arrive
    incoming, outgoing = sock.stream(addr(family, peer_port))
    assert port_of(sock.remote_address()) == peer_port
    outgoing.check_send()
    assert outgoing.send([{"data": b"connected", "remote-address": None}]) == 1
    assert peer.recvfrom(100)[0] == b"connected"
    outgoing.check_send()
    with pytest.raises(Err, match="invalid-argument"):
        outgoing.send([{"data": b"x", "remote-address": addr(family, peer_port + 1 if peer_port < 65535 else 1)}])
    peer.sendto(b"reply", source)
    assert receive_one(incoming)["data"] == b"reply"
    incoming.drop()
    outgoing.drop()

    # stream(None) again disconnects
    incoming, outgoing = sock.stream(None)
    with pytest.raises(Err, match="invalid-state"):
        sock.remote_address()
    incoming.drop()
    outgoing.drop()
    peer.close()
    sock.drop()
    assert open_resources(g.ctx) == []


def test_udp_send_permits_and_errors():
    g = make(allow_net=["127.0.0.1:9"])  # may send to one address only
    sock = bound_udp(g, "ipv4")
    incoming, outgoing = sock.stream(None)
    with pytest.raises(Trap):
        outgoing.send([{"data": b"x", "remote-address": addr("ipv4", 9)}])  # no check-send first
    assert outgoing.check_send() == 16
    with pytest.raises(Trap):
        outgoing.send([{"data": b"x", "remote-address": addr("ipv4", 9)}] * 17)
    assert outgoing.check_send() == 16
    assert outgoing.send([]) == 0
    outgoing.check_send()
    with pytest.raises(Err, match="access-denied"):
        outgoing.send([{"data": b"x", "remote-address": addr("ipv4", 10)}])
    outgoing.check_send()
    with pytest.raises(Err, match="invalid-argument"):
        outgoing.send([{"data": b"x", "remote-address": None}])  # unconnected: an address is required
    outgoing.check_send()
    with pytest.raises(Err, match="datagram-too-large"):
        outgoing.send([{"data": bytes(65536), "remote-address": addr("ipv4", 9)}])
    outgoing.check_send()
    # the first datagram goes out, the second fails: send reports one, not the error
    assert outgoing.send([{"data": b"ok", "remote-address": addr("ipv4", 9)},
                          {"data": b"no", "remote-address": addr("ipv4", 10)}]) == 1
    incoming.drop()
    outgoing.drop()
    sock.drop()


def test_udp_state_machine_errors():
    g = make()
    sock = g.udp.create_udp_socket("ipv4")
    with pytest.raises(Err, match="not-in-progress"):
        sock.finish_bind()
    with pytest.raises(Err, match="invalid-state"):
        sock.stream(None)
    with pytest.raises(Err, match="invalid-state"):
        sock.local_address()
    with pytest.raises(Err, match="invalid-argument"):
        sock.start_bind(g.network, addr("ipv6", 0))
    sock.start_bind(g.network, addr("ipv4", 0))
    with pytest.raises(Err, match="invalid-state"):
        sock.stream(None)  # bind not finished
    with pytest.raises(Err, match="invalid-state"):
        sock.start_bind(g.network, addr("ipv4", 0))
    sock.finish_bind()
    with pytest.raises(Err, match="invalid-argument"):
        sock.stream(addr("ipv4", 0))
    with pytest.raises(Err, match="invalid-argument"):
        sock.stream(addr("ipv4", 53, "0.0.0.0"))
    sock.set_unicast_hop_limit(7)
    assert sock.unicast_hop_limit() == 7
    with pytest.raises(Err, match="invalid-argument"):
        sock.set_unicast_hop_limit(0)
    sock.set_receive_buffer_size(100000)
    assert sock.receive_buffer_size() > 0
    with pytest.raises(Err, match="invalid-argument"):
        sock.set_send_buffer_size(0)
    sock.drop()


def test_udp_ephemeral_bind_needs_some_network():
    g = make(allow_net=["127.0.0.1:53"], allow_listen=[])
    sock = g.udp.create_udp_socket("ipv4")
    with pytest.raises(Err, match="access-denied"):
        sock.start_bind(g.network, addr("ipv4", 5353))  # a fixed port is a server's bind
    sock.start_bind(g.network, addr("ipv4", 0))  # a client's ephemeral port is allowed
    sock.finish_bind()
    sock.drop()


# -- wasmtime's own p2 socket test programs, re-expressed over the interface classes -------------
# (crates/test-programs/src/bin/p2_udp_*.rs: a guest passing them on `wasmtime run -S inherit-network`
# must see the same results here; their helpers are in sockets_helpers.py)

@pytest.mark.parametrize("family", FAMILIES)
def test_wasmtime_udp_states_and_connect(family):
    g = inherit_network()
    loopback = addr(family, 0)
    sock = g.udp.create_udp_socket(family)
    assert [code(sock.finish_bind), code(sock.stream, None), code(sock.local_address),
            code(sock.remote_address)] == ["not-in-progress", "invalid-state", "invalid-state", "invalid-state"]
    options = [("unicast_hop_limit",), ("set_unicast_hop_limit", 255), ("receive_buffer_size",),
               ("set_receive_buffer_size", 16000), ("send_buffer_size",), ("set_send_buffer_size", 16000)]
    assert [code(getattr(sock, n), *a) for n, *a in options] == ["ok"] * len(options)
    assert code(sock.stream, addr(family, 47)) == "invalid-state"  # must be bound first
    blocking_bind(g, sock, loopback)
    assert [code(sock.start_bind, g.network, loopback), code(sock.finish_bind), code(sock.local_address),
            code(sock.remote_address)] == ["invalid-state", "not-in-progress", "ok", "invalid-state"]
    streams = sock.stream(addr(family, 54321))
    assert [code(sock.start_bind, g.network, loopback), code(sock.finish_bind), code(sock.local_address),
            code(sock.remote_address)] == ["invalid-state", "not-in-progress", "ok", "ok"]
    assert [code(getattr(sock, n), *a) for n, *a in options] == ["ok"] * len(options)
    for s in streams:
        s.drop()

    client = g.udp.create_udp_socket(family)  # connect, disconnect, reconnect
    blocking_bind(g, client, addr(family, 0, UNSPECIFIED[family]))
    remote1, remote2 = addr(family, 4321), addr(family, 4320)
    for target in (None, None, remote1, remote1, remote2, None, remote1):
        for s in client.stream(target):
            s.drop()
        if target is None:
            assert code(client.remote_address) == "invalid-state"
        else:
            assert client.remote_address() == target
    assert code(client.local_address) == "ok"
    for _ in range(20):  # reconnecting with a receive pending
        for target in (None, remote1):
            rx, tx = client.stream(target)
            assert rx.receive(1) == []
            rx.drop()
            tx.drop()

    sock = g.udp.create_udp_socket(family)
    blocking_bind(g, sock, addr(family, 0, UNSPECIFIED[family]))
    assert code(sock.stream, addr(family, 47, UNSPECIFIED[family])) == "invalid-argument"
    assert code(sock.stream, addr(family, 0)) == "invalid-argument"
    assert code(sock.stream, addr("ipv6" if family == "ipv4" else "ipv4", 47)) == "invalid-argument"
    if family == "ipv6":
        assert code(sock.stream, addr("ipv6", 47, "::ffff:127.0.0.1")) == "invalid-argument"

    for _ in range(32):  # connect and send: a ready pollable means check-send permits
        c = g.udp.create_udp_socket(family)
        blocking_bind(g, c, addr(family, 0))
        rx, tx = c.stream(remote2)
        block(tx.subscribe())
        assert tx.check_send() > 0
        assert tx.send([{"data": b"hello", "remote-address": None}]) == 1
        for r in (rx, tx, c):
            r.drop()


@pytest.mark.parametrize("family", FAMILIES)
def test_wasmtime_udp_sample_application(family):
    g = inherit_network()
    server = g.udp.create_udp_socket(family)
    blocking_bind(g, server, addr(family, 0))
    server_incoming, server_outgoing = server.stream(None)
    address = server.local_address()

    def blocking_receive(stream, at_least):
        got, pollable = [], stream.subscribe()
        while len(got) < at_least:
            got += stream.receive(100 - len(got))
            if len(got) < at_least:
                block(pollable)
        return got

    client = g.udp.create_udp_socket(family)
    blocking_bind(g, client, addr(family, 0, UNSPECIFIED[family]))
    client_incoming, client_outgoing = client.stream(address)
    assert client_outgoing.check_send() >= 2
    assert client_outgoing.send([{"data": b"", "remote-address": None},
                                 {"data": b"Hello, world!", "remote-address": address}]) == 2
    client_address = client.local_address()
    for r in (client_incoming, client_outgoing, client):
        r.drop()
    datagrams = blocking_receive(server_incoming, 2)
    assert [d["data"] for d in datagrams] == [b"", b"Hello, world!"]
    assert all(d["remote-address"] == client_address for d in datagrams)

    client = g.udp.create_udp_socket(family)
    blocking_bind(g, client, addr(family, 0, UNSPECIFIED[family]))
    _, client_outgoing = client.stream(None)
    client_outgoing.check_send()
    assert client_outgoing.send([{"data": b"Greetings, planet!", "remote-address": address}]) == 1
    assert [d["data"] for d in blocking_receive(server_incoming, 1)] == [b"Greetings, planet!"]
