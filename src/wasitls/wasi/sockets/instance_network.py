"""wasi:sockets/instance-network@0.2.9: the network every guest instance is given."""

from __future__ import annotations

from typing import Any

from ...component.linker import HostInterface
from .network import NetworkCapability


class InstanceNetwork(HostInterface):
    wit = "wasi:sockets/instance-network@0.2.9"

    def __init__(self, ctx: Any = None):
        self.ctx = ctx

    def instance_network(self) -> NetworkCapability:
        # like wasmtime, every guest gets one; what it may reach is decided per call by the policy
        return NetworkCapability()
