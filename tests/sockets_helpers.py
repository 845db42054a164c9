"""What the tests of wasi:sockets (tests/test_sockets_*.py) and of wasi:io over TCP (tests/test_wasi_io.py)
share: a guest's view of wasi:sockets under a policy, WIT addresses, blocking on a pollable, Python peers
on loopback, and the helpers of wasmtime's own socket test programs."""

from __future__ import annotations

import socket
import struct
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest

from wasitls.component.values import Err, Variant
from wasitls.policy import Policy
from wasitls.wasi.ctx import WasiCtx
from wasitls.wasi.io.poll import Deadline, wait_any
from wasitls.wasi.sockets.instance_network import InstanceNetwork
from wasitls.wasi.sockets.ip_name_lookup import IpNameLookup
from wasitls.wasi.sockets.network import Network
from wasitls.wasi.sockets.tcp_create_socket import TcpCreateSocket
from wasitls.wasi.sockets.udp_create_socket import UdpCreateSocket

LOOPBACK = {"ipv4": "127.0.0.1", "ipv6": "::1"}
PY_FAMILY = {"ipv4": socket.AF_INET, "ipv6": socket.AF_INET6}
TIMEOUT = 10.0


def ipv6_works() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


FAMILIES = ["ipv4", pytest.param("ipv6", marks=pytest.mark.skipif(not ipv6_works(), reason="no IPv6 loopback"))]


# -- a guest's sockets ----------------------------------------------------------------------------

_guests: list[WasiCtx] = []


def close_guests() -> None:
    """Close every socket of every guest made by make() (the close_guest_sockets fixture's work)."""
    while _guests:
        _guests.pop().close_sockets()


def make(allow_net=("*",), allow_listen=("0",)) -> SimpleNamespace:
    """A guest's view of wasi:sockets under a policy (by default: reach anything, listen on port 0)."""
    ctx = WasiCtx(policy=Policy.build(allow_net=list(allow_net), allow_listen=list(allow_listen)))
    _guests.append(ctx)
    return SimpleNamespace(
        ctx=ctx,
        network=InstanceNetwork(ctx).instance_network(),
        tcp=TcpCreateSocket(ctx),
        udp=UdpCreateSocket(ctx),
        lookup=IpNameLookup(ctx),
        net_iface=Network(ctx),
    )


def addr(family: str, port: int, ip: str | None = None) -> Variant:
    ip = ip or LOOPBACK[family]
    if family == "ipv4":
        return Variant("ipv4", {"port": port, "address": tuple(socket.inet_pton(socket.AF_INET, ip))})
    segments = struct.unpack("!8H", socket.inet_pton(socket.AF_INET6, ip))
    return Variant("ipv6", {"port": port, "flow-info": 0, "address": segments, "scope-id": 0})


def port_of(wit_addr: Variant) -> int:
    return wit_addr.value["port"]


def block(pollable, timeout: float = TIMEOUT) -> None:
    ready = wait_any([pollable.source, Deadline(time.monotonic_ns() + int(timeout * 1e9))])
    assert 0 in ready, "timed out waiting for a pollable"


def connect(g: SimpleNamespace, family: str, port: int):
    sock = g.tcp.create_tcp_socket(family)
    sock.start_connect(g.network, addr(family, port))
    block(sock.subscribe())
    input_stream, output_stream = sock.finish_connect()
    return sock, input_stream, output_stream


def listen(g: SimpleNamespace, family: str):
    sock = g.tcp.create_tcp_socket(family)
    sock.start_bind(g.network, addr(family, 0))
    sock.finish_bind()
    sock.start_listen()
    sock.finish_listen()
    return sock, port_of(sock.local_address())


def read_all(stream, limit: int = 1 << 30) -> bytes:
    """Reads until the stream says closed."""
    out = bytearray()
    pollable = stream.subscribe()
    while len(out) <= limit:
        try:
            data = stream.read(1 << 20)
        except Err as e:
            assert e.value == Variant("closed")
            return bytes(out)
        if data:
            out += data
        else:
            block(pollable)
    raise AssertionError("read more than expected")


def write_all(stream, data: bytes) -> None:
    pollable = stream.subscribe()
    view = memoryview(data)
    while view:
        permit = stream.check_write()
        if not permit:
            block(pollable)
            continue
        stream.write(bytes(view[:permit]))
        view = view[permit:]
    stream.flush()
    while not stream.check_write():
        block(pollable)


def server(family: str, handler, *, rcvbuf: int | None = None):
    """A Python peer listening on loopback; `handler(conn)` runs on a thread for one connection."""
    listener = socket.socket(PY_FAMILY[family], socket.SOCK_STREAM)
    if rcvbuf:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    listener.bind((LOOPBACK[family], 0))
    listener.listen(4)
    listener.settimeout(TIMEOUT)
    pool = ThreadPoolExecutor(1)

    def run():
        try:
            conn, _ = listener.accept()
        finally:
            listener.close()
        conn.settimeout(TIMEOUT)
        with conn:
            return handler(conn)

    return listener.getsockname()[1], pool.submit(run)


def recv_all(conn: socket.socket) -> bytes:
    chunks = []
    while chunk := conn.recv(1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


def free_port(family: str) -> int:
    with socket.socket(PY_FAMILY[family], socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK[family], 0))
        return s.getsockname()[1]


# -- wasmtime's own p2 socket test programs, re-expressed over the interface classes -------------
# (crates/test-programs/src/bin/p2_tcp_*.rs, p2_udp_*.rs, p2_ip_name_lookup.rs: a guest passing
# them on `wasmtime run -S inherit-network` must see the same results here)

class AllowAll:
    """wasmtime's -S inherit-network: every address may be reached and bound."""

    def check(self, use, address):
        return True


def inherit_network() -> SimpleNamespace:
    g = make()
    g.ctx.policy = AllowAll()
    return g


UNSPECIFIED = {"ipv4": "0.0.0.0", "ipv6": "::"}


def blocking_bind(g, sock, address):
    sock.start_bind(g.network, address)
    sock.finish_bind()


def code(fn, *args):
    try:
        fn(*args)
    except Err as e:
        return e.value
    return "ok"
