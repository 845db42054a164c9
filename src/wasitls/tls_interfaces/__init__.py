"""The TLS interfaces we serve, one module per interface, each above the glue (tls_streams.py):

    wasi_tls_types.py       wasi:tls/types@0.2.0-draft (as `wasmtime run -S tls` serves it)
    wasitls_tls.py          wasitls:tls/tls@0.1.0 (our namespace: the full draft TLS API)
    wasitls_identities.py   wasitls:tls/identities@0.1.0
    wasitls_memory.py       wasitls:tls/memory@0.1.0 (TLS over memory, for a guest's ssl module)

Each interface is made with the guest's `tls_streams.GuestTls`, not with its WasiCtx.
"""

from __future__ import annotations

from ..component.linker import HostInterface



def interfaces() -> list[type[HostInterface]]:
    from .wasi_tls_types import Types
    from .wasitls_identities import Identities
    from .wasitls_memory import Memory
    from .wasitls_tls import Tls

    return [Types, Tls, Identities, Memory]
