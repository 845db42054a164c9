"""wasi:sockets/tcp-create-socket@0.2.9."""

from __future__ import annotations

import socket
from typing import Any

from ...component.linker import HostInterface
from ...component.values import Err
from ...policy import NetworkUse
from .network import new_os_socket
from .tcp import TcpSocket


class TcpCreateSocket(HostInterface):
    wit = "wasi:sockets/tcp-create-socket@0.2.9"

    def __init__(self, ctx: Any = None):
        self.ctx = ctx

    def create_tcp_socket(self, address_family: str) -> TcpSocket:
        # A guest granted no network at all cannot even make a socket, as on `wasmtime run` without
        # -S inherit-network; otherwise the policy applies at bind and connect, address by address.
        if not self.ctx.policy.check(NetworkUse.CREATE_TCP_SOCKET, None):
            raise Err("access-denied")
        return TcpSocket(self.ctx, address_family, new_os_socket(address_family, socket.SOCK_STREAM))
