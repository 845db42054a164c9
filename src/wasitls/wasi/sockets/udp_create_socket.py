"""wasi:sockets/udp-create-socket@0.2.9."""

from __future__ import annotations

import socket
from typing import Any

from ...component.linker import HostInterface
from ...component.values import Err
from ...policy import NetworkUse
from .network import new_os_socket
from .udp import UdpSocket


class UdpCreateSocket(HostInterface):
    wit = "wasi:sockets/udp-create-socket@0.2.9"

    def __init__(self, ctx: Any = None):
        self.ctx = ctx

    def create_udp_socket(self, address_family: str) -> UdpSocket:
        # A guest granted no network at all cannot even make a socket, as on `wasmtime run` without
        # -S inherit-network; otherwise the policy applies at bind and connect, address by address.
        if not self.ctx.policy.check(NetworkUse.CREATE_UDP_SOCKET, None):
            raise Err("access-denied")
        return UdpSocket(self.ctx, address_family, new_os_socket(address_family, socket.SOCK_DGRAM))
