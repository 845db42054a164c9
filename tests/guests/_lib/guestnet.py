"""Small helpers over the raw wasi:sockets and wasi:io bindings, shared by the test guests."""

import ipaddress

from componentize_py_types import Err
from wit_world.imports import instance_network, ip_name_lookup, network, streams, tcp_create_socket
from wit_world.imports.network import ErrorCode, IpAddressFamily

CHUNK = 65536


def code_name(code) -> str:
    """The WIT spelling of an enum case, e.g. ErrorCode.CONNECTION_REFUSED -> connection-refused."""
    return code.name.lower().replace("_", "-")


def err_name(exc: Err) -> str:
    """Name what an Err carries: an enum case by its WIT name, a stream error by its case."""
    value = exc.value
    if isinstance(value, streams.StreamError_Closed):
        return "closed"
    if isinstance(value, streams.StreamError_LastOperationFailed):
        return "last-operation-failed"
    if value is None:
        return "err"
    return code_name(value)


def fmt_ip(addr) -> str:
    if isinstance(addr, network.IpAddress_Ipv4):
        return str(ipaddress.IPv4Address(bytes(addr.value)))
    packed = b"".join(part.to_bytes(2, "big") for part in addr.value)
    return str(ipaddress.IPv6Address(packed))


def fmt_sockaddr(sa) -> str:
    if isinstance(sa, network.IpSocketAddress_Ipv4):
        return f"{fmt_ip(network.IpAddress_Ipv4(sa.value.address))}:{sa.value.port}"
    return f"[{fmt_ip(network.IpAddress_Ipv6(sa.value.address))}]:{sa.value.port}"


def sockaddr(ip, port: int):
    if isinstance(ip, network.IpAddress_Ipv4):
        return network.IpSocketAddress_Ipv4(network.Ipv4SocketAddress(port, ip.value))
    return network.IpSocketAddress_Ipv6(network.Ipv6SocketAddress(port, 0, ip.value, 0))


def family_of(ip) -> IpAddressFamily:
    return IpAddressFamily.IPV4 if isinstance(ip, network.IpAddress_Ipv4) else IpAddressFamily.IPV6


def wait(pollable) -> None:
    # Drop the pollable right away: a stream may not be dropped while a child pollable lives.
    with pollable:
        pollable.block()


def resolve(net, host: str) -> list:
    """All addresses for host, in the resolver's order; raises Err(ErrorCode)."""
    with ip_name_lookup.resolve_addresses(net, host) as stream:
        found = []
        while True:
            try:
                addr = stream.resolve_next_address()
            except Err as e:
                if e.value != ErrorCode.WOULD_BLOCK:
                    raise
                wait(stream.subscribe())
                continue
            if addr is None:
                return found
            found.append(addr)


def parse_ip(text: str):
    """An IP literal as a WIT ip-address, or None for a host name."""
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if ip.version == 4:
        return network.IpAddress_Ipv4(tuple(ip.packed))
    return network.IpAddress_Ipv6(tuple(int.from_bytes(ip.packed[i : i + 2], "big") for i in range(0, 16, 2)))


def pick_address(addrs: list):
    """Prefer IPv4 so loopback test servers bound to 127.0.0.1 are reached."""
    for addr in addrs:
        if isinstance(addr, network.IpAddress_Ipv4):
            return addr
    return addrs[0]


def connect(host: str, port: int):
    """Resolve and connect; returns (socket, input-stream, output-stream, remote address)."""
    net = instance_network.instance_network()
    # An IP literal needs no lookup, so a host that allows connect but not lookup still works.
    ip = parse_ip(host) or pick_address(resolve(net, host))
    sock = tcp_create_socket.create_tcp_socket(family_of(ip))
    remote = sockaddr(ip, port)
    sock.start_connect(net, remote)
    while True:
        try:
            rx, tx = sock.finish_connect()
            return sock, rx, tx, remote
        except Err as e:
            if e.value != ErrorCode.WOULD_BLOCK:
                raise
            wait(sock.subscribe())


def write_all(out, data: bytes) -> None:
    """Write everything, honouring check-write's budget, then flush."""
    view = memoryview(data)
    while view:
        budget = out.check_write()
        if budget == 0:
            wait(out.subscribe())
            continue
        out.write(bytes(view[:budget]))
        view = view[budget:]
    out.blocking_flush()


def read_chunks(rx, size: int = CHUNK, limit: int | None = None):
    """Yield chunks until the stream reports closed, or until `limit` bytes came."""
    left = limit
    while left is None or left > 0:
        try:
            chunk = rx.blocking_read(size if left is None else min(size, left))
        except Err as e:
            if isinstance(e.value, streams.StreamError_Closed):
                return
            raise
        if left is not None:
            left -= len(chunk)
        if chunk:
            yield chunk
