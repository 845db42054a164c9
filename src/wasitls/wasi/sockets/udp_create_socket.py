"""wasi:sockets/udp-create-socket@0.2.9."""

from __future__ import annotations

import socket
from typing import Any

from ...component.host import HostInterface
from .network import new_os_socket
from .udp import UdpSocket


class UdpCreateSocket(HostInterface):
    wit = "wasi:sockets/udp-create-socket@0.2.9"

    def __init__(self, ctx: Any = None):
        self.ctx = ctx

    def create_udp_socket(self, address_family: str) -> UdpSocket:
        # no network capability is needed yet: policy applies at bind and connect
        return UdpSocket(self.ctx, address_family, new_os_socket(address_family, socket.SOCK_DGRAM))
