"""wasi:sockets/udp-create-socket@0.2.9."""

from __future__ import annotations

import socket
from typing import Any

from ...component.host import HostInterface
from .network import FAMILIES, fail
from .udp import UdpSocket


class UdpCreateSocket(HostInterface):
    wit = "wasi:sockets/udp-create-socket@0.2.9"

    def __init__(self, ctx: Any = None):
        self.ctx = ctx

    def create_udp_socket(self, address_family: str) -> UdpSocket:
        # non-blocking, and IPv6 sockets IPv6-only, as in wasmtime; no network capability is needed yet
        try:
            sock = socket.socket(FAMILIES[address_family], socket.SOCK_DGRAM)
        except OSError as e:
            raise fail(e) from None
        try:
            sock.setblocking(False)
            if address_family == "ipv6":
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        except OSError as e:
            sock.close()
            raise fail(e) from None
        return UdpSocket(self.ctx, address_family, sock)
