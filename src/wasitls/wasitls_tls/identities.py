"""wasitls:tls/identities@0.1.0: private identities the host holds (`--identity NAME=KEY,CERT`).

The guest gets a handle by name; the key stays in OpenSSL on the host and never enters guest memory.
"""

from __future__ import annotations

from ..component.host import HostInterface
from ..wasi.ctx import WasiCtx
from .tls import PrivateIdentity


class Identities(HostInterface):
    wit = "wasitls:tls/identities@0.1.0"

    def __init__(self, ctx: WasiCtx):
        self.ctx = ctx

    def get(self, name: str) -> PrivateIdentity | None:
        inner = self.ctx.tls.identities.get(name)
        return None if inner is None else PrivateIdentity(inner)
