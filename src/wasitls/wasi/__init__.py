"""WASI 0.2 in Python: one module per interface, named after it. `interfaces()` lists what we serve."""

from __future__ import annotations

from ..component.linker import HostInterface, interfaces_in

# the modules of wasi:cli/imports@0.2.9 in WIT package order (wasi:tls is served from tls_interfaces/)
MODULES = [
    "cli.environment", "cli.exit", "cli.stdio", "cli.terminal",
    "clocks.monotonic_clock", "clocks.wall_clock",
    "filesystem.types", "filesystem.preopens",
    "io.error", "io.poll", "io.streams",
    "random.random", "random.insecure", "random.insecure_seed",
    "sockets.network", "sockets.instance_network", "sockets.tcp", "sockets.tcp_create_socket",
    "sockets.udp", "sockets.udp_create_socket", "sockets.ip_name_lookup",
]


def interfaces() -> list[type[HostInterface]]:
    """Every host interface class these modules define (a class with a `wit` name)."""
    return interfaces_in(__name__, MODULES)
