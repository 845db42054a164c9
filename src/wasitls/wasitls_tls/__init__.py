"""Package wasitls:tls@0.1.0 (our namespace): the full draft TLS API, one module per interface."""

from __future__ import annotations

from ..component.host import HostInterface


def interfaces() -> list[type[HostInterface]]:
    from .identities import Identities
    from .memory import Memory
    from .tls import Tls

    return [Tls, Identities, Memory]
