"""wasi:sockets under the capability policy: what a UDP client hears (issue 10: O1), the limits of name
lookups (F11), and an embedder's own policy deciding per connection for a real guest (issue 9)."""

from __future__ import annotations

import os
import resource
import select
import socket
import time
from types import SimpleNamespace

import pytest

from wasitls import Host
from wasitls.component.values import Err, Variant
from wasitls.policy import NetworkUse, Policy
from wasitls.wasi.ctx import WasiCtx
from wasitls.wasi.io.poll import Deadline, wait_any
from wasitls.wasi.sockets.instance_network import InstanceNetwork
from wasitls.wasi.sockets.ip_name_lookup import MAX_LOOKUPS, IpNameLookup
from wasitls.wasi.sockets.udp import MAX_DROPPED_PER_RECEIVE
from wasitls.wasi.sockets.udp_create_socket import UdpCreateSocket

TIMEOUT = 10.0
_guests: list[WasiCtx] = []


@pytest.fixture(autouse=True)
def close_guest_sockets():
    """What the host does when a guest exits: close every socket it still has."""
    yield
    while _guests:
        _guests.pop().close_sockets()


def make(policy: Policy) -> SimpleNamespace:
    ctx = WasiCtx(policy=policy)
    _guests.append(ctx)
    return SimpleNamespace(ctx=ctx, network=InstanceNetwork(ctx).instance_network(), udp=UdpCreateSocket(ctx),
                           lookup=IpNameLookup(ctx))


def v4(ip: str, port: int) -> Variant:
    return Variant("ipv4", {"port": port, "address": tuple(socket.inet_aton(ip))})


def block(pollable) -> None:
    ready = wait_any([pollable.source, Deadline(time.monotonic_ns() + int(TIMEOUT * 1e9))])
    assert 0 in ready, "timed out waiting for a pollable"


def udp_peer() -> socket.socket:
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    return peer


def receive_until(incoming, wanted: bytes) -> list[tuple[bytes, int]]:
    """Every datagram received, as (data, sender port), up to and including `wanted`."""
    got: list[tuple[bytes, int]] = []
    while not any(data == wanted for data, _ in got):
        batch = incoming.receive(100)
        if not batch:
            block(incoming.subscribe())
        got += [(d["data"], d["remote-address"].value["port"]) for d in batch]
    return got


def client_socket(g, bind_ip: str = "0.0.0.0"):
    sock = g.udp.create_udp_socket("ipv4")
    sock.start_bind(g.network, v4(bind_ip, 0))
    sock.finish_bind()
    incoming, outgoing = sock.stream(None)
    return sock, incoming, outgoing, sock.local_address().value["port"]


# -- O1: an ephemeral UDP bind under --allow-net alone is a client, not a listener ----------------------

def test_udp_client_hears_only_peers_it_may_send_to():
    allowed, stranger = udp_peer(), udp_peer()
    g = make(Policy.build(allow_net=[f"127.0.0.1:{allowed.getsockname()[1]}"]))
    sock, incoming, outgoing, port = client_socket(g)
    stranger.sendto(b"from a stranger", ("127.0.0.1", port))
    allowed.sendto(b"from the server", ("127.0.0.1", port))
    assert receive_until(incoming, b"from the server") == [(b"from the server", allowed.getsockname()[1])]
    # a fixed port is a server's bind, and --allow-net grants none
    other = g.udp.create_udp_socket("ipv4")
    with pytest.raises(Err, match="access-denied"):
        other.start_bind(g.network, v4("0.0.0.0", 5353))
    for s in (incoming, outgoing, sock, other):
        s.drop()
    allowed.close()
    stranger.close()


def test_udp_listener_granted_by_allow_listen_hears_everyone():
    stranger, marker = udp_peer(), udp_peer()
    g = make(Policy.build(allow_listen=["127.0.0.1:0"]))
    sock, incoming, outgoing, port = client_socket(g, "127.0.0.1")
    stranger.sendto(b"anyone", ("127.0.0.1", port))
    marker.sendto(b"last", ("127.0.0.1", port))
    assert [data for data, _ in receive_until(incoming, b"last")] == [b"anyone", b"last"]
    for s in (incoming, outgoing, sock):
        s.drop()
    stranger.close()
    marker.close()


def test_a_flood_of_refused_datagrams_does_not_hold_receive():
    stranger = udp_peer()
    g = make(Policy.build(allow_net=["127.0.0.1:9"]))
    sock, incoming, outgoing, port = client_socket(g)
    stranger.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    for _ in range(MAX_DROPPED_PER_RECEIVE + 10):
        stranger.sendto(b"x", ("127.0.0.1", port))
    block(incoming.subscribe())
    assert incoming.receive(10) == []  # returns after a bounded number of refused datagrams
    assert incoming.subscribe().ready()  # the rest waits for the next call
    for s in (incoming, outgoing, sock):
        s.drop()
    stranger.close()


# -- F11: resolve-addresses under limits ---------------------------------------------------------------

def resolve_error(stream) -> str | None:
    while True:
        try:
            addr = stream.resolve_next_address()
        except Err as e:
            if e.value != "would-block":
                return e.value
            block(stream.subscribe())
            continue
        if addr is None:
            return None


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_lookups_in_progress_are_bounded():
    g = make(Policy.build(allow_net=["*"]))
    before = open_fds()
    started = [g.lookup.resolve_addresses(g.network, "localhost") for _ in range(MAX_LOOKUPS)]
    over = g.lookup.resolve_addresses(g.network, "localhost")
    assert resolve_error(over) == "temporary-resolver-failure"
    assert open_fds() == before + 2 * MAX_LOOKUPS  # one pipe each, none for the refused one
    finished = started.pop()
    # wait for its thread to end (its pipe turns readable) without the guest seeing it: the drop frees the slot
    assert select.select(finished.wait_on().read_fds, [], [], TIMEOUT)[0]
    finished.drop()
    again = g.lookup.resolve_addresses(g.network, "localhost")
    assert resolve_error(again) is None
    for stream in started:  # a finished lookup gives its pipe back once the guest sees it done
        assert resolve_error(stream) is None
    assert open_fds() == before
    again.drop()
    for stream in started:
        stream.drop()


def test_running_out_of_descriptors_is_an_error_value():
    g = make(Policy.build(allow_net=["*"]))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    fillers: list[int] = []
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, open_fds() + 64), hard))
    try:
        while True:
            try:
                fillers.append(os.open(os.devnull, os.O_RDONLY))
            except OSError:
                break
        stream = g.lookup.resolve_addresses(g.network, "localhost")  # used to trap with OSError EMFILE
        for fd in fillers:
            os.close(fd)
        fillers.clear()
        assert resolve_error(stream) == "new-socket-limit"
        stream.drop()
        later = g.lookup.resolve_addresses(g.network, "localhost")
        assert resolve_error(later) is None  # the failed one held no slot
        later.drop()
    finally:
        for fd in fillers:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# -- an embedder's callable policy, through a real guest ----------------------------------------------

def test_a_callable_policy_decides_per_connection_for_a_guest(build_guest, tmp_path):
    wasm = build_guest("wasi_probe")
    allowed = socket.create_server(("127.0.0.1", 0))
    denied = socket.create_server(("127.0.0.1", 0))
    allowed_port, denied_port = allowed.getsockname()[1], denied.getsockname()[1]
    asked: list[tuple[NetworkUse, object]] = []

    def decide(use, address):
        asked.append((use, address))
        if use is NetworkUse.NAME_LOOKUP:
            return address == "localhost"
        return use is NetworkUse.TCP_CONNECT and address.port == allowed_port

    host = Host(policy=decide)

    def run(*args: str) -> str:
        out = tmp_path / "out"
        with open(out, "wb") as f:
            host.stdout = f
            assert host.run(wasm, list(args)) == 0
        return out.read_text()

    assert run("tcp-refused", "127.0.0.1", str(allowed_port)) == "connect error: none, connected\n"
    assert run("tcp-refused", "127.0.0.1", str(denied_port)) == "connect error: access-denied\n"
    assert [(use, (str(a.ip), a.port)) for use, a in asked] == [
        (NetworkUse.TCP_CONNECT, ("127.0.0.1", allowed_port)), (NetworkUse.TCP_CONNECT, ("127.0.0.1", denied_port))]
    asked.clear()
    assert "address 127.0.0.1\n" in run("lookup", "localhost")
    assert run("lookup", "example.com") == "lookup example.com: error name-unresolvable\n"
    assert asked == [(NetworkUse.NAME_LOOKUP, "localhost"), (NetworkUse.NAME_LOOKUP, "example.com")]
    allowed.close()
    denied.close()
