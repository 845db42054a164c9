"""The demo guest: `https-get HOST PORT PATH` fetches a page over host TLS and reports on it.

TCP comes from wasi:sockets, TLS from wasi:tls/types: the guest never sees a key or a certificate
check, only plaintext streams.
"""

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import environment, exit as wasi_exit, monotonic_clock, poll, streams
from wit_world.imports import instance_network, ip_name_lookup, tcp_create_socket
from wit_world.imports import wasi_tls_types as tls
from wit_world.imports.network import IpAddress_Ipv4, IpAddressFamily
from wit_world.imports.network import IpSocketAddress_Ipv4, IpSocketAddress_Ipv6, Ipv4SocketAddress, Ipv6SocketAddress


def wait(pollable) -> None:
    with pollable:
        poll.poll([pollable])


def resolve(net, host: str):
    stream = ip_name_lookup.resolve_addresses(net, host)
    with stream:
        while True:
            try:
                addr = stream.resolve_next_address()
            except Err:
                wait(stream.subscribe())
                continue
            if addr is None:
                raise SystemExit(f"{host}: no address")
            return addr


def connect(host: str, port: int):
    net = instance_network.instance_network()
    addr = resolve(net, host)
    if isinstance(addr, IpAddress_Ipv4):
        family = IpAddressFamily.IPV4
        target = IpSocketAddress_Ipv4(Ipv4SocketAddress(port, addr.value))
    else:
        family = IpAddressFamily.IPV6
        target = IpSocketAddress_Ipv6(Ipv6SocketAddress(port, 0, addr.value, 0))
    sock = tcp_create_socket.create_tcp_socket(family)
    sock.start_connect(net, target)
    while True:
        try:
            rx, tx = sock.finish_connect()
            return sock, rx, tx
        except Err as e:
            if getattr(e.value, "name", str(e.value)).lower().replace("_", "-") != "would-block":
                raise
            wait(sock.subscribe())


def write_all(out, data: bytes) -> None:
    while data:
        n = out.check_write()
        if n == 0:
            wait(out.subscribe())
            continue
        out.write(data[:n])
        data = data[n:]
    out.blocking_flush()


def read_response(rx) -> bytes:
    """Reads up to the end of the body (Content-Length), or to a clean close_notify."""
    data = bytearray()
    expected = None
    while expected is None or len(data) < expected:
        try:
            data += rx.blocking_read(65536)
        except Err as e:
            if isinstance(e.value, streams.StreamError_Closed):
                break
            raise
        if expected is None and b"\r\n\r\n" in data:
            head, _, _ = bytes(data).partition(b"\r\n\r\n")
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    expected = len(head) + 4 + int(value)
    return bytes(data)


class Run(exports.Run):
    def run(self) -> None:
        host, port, path = environment.get_arguments()[1:4]
        sock, rx, tx = connect(host, int(port))
        started = monotonic_clock.now()
        future = tls.ClientHandshake.finish(tls.ClientHandshake(host, rx, tx))
        while (result := future.get()) is None:
            wait(future.subscribe())
        outcome = result.value
        if isinstance(outcome, Err):
            print(f"handshake failed: {outcome.value.to_debug_string()}")
            wasi_exit.exit(Err(None))
        connection, tls_in, tls_out = outcome.value
        handshake_ms = (monotonic_clock.now() - started) / 1e6
        write_all(tls_out, f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        response = read_response(tls_in)
        head, _, body = response.partition(b"\r\n\r\n")
        status_line = head.split(b"\r\n")[0].decode()
        print(f"status: {status_line}")
        print(f"body: {len(body)} bytes")
        print(f"handshake: {handshake_ms:.1f} ms")
        connection.close_output()
