"""wasi:http 0.2.9: one module per interface, named after it, reading like its WIT; and under them
the HTTP client (client.py: h11 / h2 engines, a keep-alive pool) and its transport (transport.py:
sockets through the policy, TLS through the project's TLS core).

Why a package beside wasi/ rather than inside it: HTTP sits above TLS and sockets. Its transport
makes TLS connections, which nothing in wasi/ may import; tls/ and wasi/ know nothing of HTTP.
Imports point down only: http -> tls, wasi (io streams, sockets' stream backends), policy.
"""

from __future__ import annotations

from ..component.linker import HostInterface, interfaces_in

# the interfaces of wasi:http@0.2.9 we serve to guests, in WIT package order
MODULES = ["types", "outgoing_handler"]


def interfaces() -> list[type[HostInterface]]:
    """Every host interface class these modules define (a class with a `wit` name)."""
    return interfaces_in(__name__, MODULES)
